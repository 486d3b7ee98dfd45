# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
#
# tests/lib.sh - what every test runner needs, sourced by tests/*/run-tests
# (bash).  One result format for all of them:
#
#   PASS NAME[: detail]
#   FAIL NAME[: detail]
#   ...
#   N passed, M failed              (the last line; CI greps it)
#
# Functions:
#   nt_init NAME          work directory NT_WORK (/tmp/ninja-NAME.XXXXXX),
#                         counters, the EXIT trap (children killed, NT_WORK
#                         removed unless NINJA_KEEP=1 (or KEEP=1) or a test
#                         failed and NT_KEEP_ON_FAIL=1; the "kept" line goes
#                         to fd NT_MSG_FD, default 2); INT/TERM/HUP exit 130
#   nt_on_exit FUNC       run FUNC in the EXIT trap (before the cleanup)
#   nt_track PID...       kill PID at exit (and in nt_kill_tracked)
#   nt_kill_tracked       kill every tracked process now and reap them
#   nt_result NAME ok|fail [DETAIL]   one result line, counted
#   nt_summary            the final line; returns 1 if any test failed
#   nt_want NAME          true if NAME is selected (NT_ONLY empty: all)
#   nt_wait_for SECS CMD...  run CMD every 50 ms until it succeeds; 1 after SECS
#   nt_start_agent SOCK [LOG] [ARGS...]  ninja-agent ($NT_AGENT) on unix:SOCK,
#                         log in LOG (default SOCK.log); NT_AGENT_PID; waits
#                         for the socket (5 s)
#   nt_stop_agent [PID]   SIGTERM, wait up to 5 s for it to exit
#   nt_fail_total         prints what nt_summary would print, for runners
#                         that cannot go on ("0 passed, 1 failed")

NT_PASS=0
NT_FAIL=0
NT_PIDS=()
NT_EXIT_HOOKS=()
NT_ONLY=()
NT_WORK=
: "${NT_KEEP_ON_FAIL:=0}"

nt_init() {
	NT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/ninja-$1.XXXXXX") || exit 1
	trap nt_cleanup EXIT
	trap 'exit 130' INT TERM HUP
}

nt_on_exit() {
	NT_EXIT_HOOKS+=("$1")
}

nt_track() {
	NT_PIDS+=("$@")
}

nt_kill_tracked() {
	local p
	for p in "${NT_PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	for p in "${NT_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	NT_PIDS=()
}

nt_cleanup() {
	local h
	for h in "${NT_EXIT_HOOKS[@]}"; do
		"$h"
	done
	nt_kill_tracked
	[ -n "$NT_WORK" ] || return 0
	if [ "${NINJA_KEEP:-${KEEP:-0}}" = 1 ] ||
	   { [ "$NT_KEEP_ON_FAIL" = 1 ] && [ "$NT_FAIL" != 0 ]; }; then
		echo "run-tests: logs kept in $NT_WORK" >&"${NT_MSG_FD:-2}"
	else
		rm -rf "$NT_WORK"
	fi
}

nt_result() {
	if [ "$2" = ok ]; then
		NT_PASS=$((NT_PASS + 1))
		echo "PASS $1${3:+: $3}"
	else
		NT_FAIL=$((NT_FAIL + 1))
		echo "FAIL $1${3:+: $3}"
	fi
}

nt_summary() {
	echo "$NT_PASS passed, $NT_FAIL failed"
	[ "$NT_FAIL" = 0 ]
}

nt_fail_total() {
	echo "$NT_PASS passed, $((NT_FAIL + 1)) failed"
}

nt_want() {
	[ ${#NT_ONLY[@]} -eq 0 ] && return 0
	local t
	for t in "${NT_ONLY[@]}"; do
		[ "$t" = "$1" ] && return 0
	done
	return 1
}

nt_wait_for() {
	local n=$(($1 * 20)) i=0
	shift
	while ! "$@"; do
		i=$((i + 1))
		[ "$i" -ge "$n" ] && return 1
		sleep 0.05
	done
	return 0
}

nt_start_agent() {
	local sock=$1 log=${2:-$1.log}
	shift $(($# < 2 ? $# : 2))
	"${NT_AGENT:?NT_AGENT is not set}" --listen "unix:$sock" "$@" >"$log" 2>&1 &
	NT_AGENT_PID=$!
	nt_track "$NT_AGENT_PID"
	nt_wait_for 5 test -S "$sock" || { echo "agent did not create $sock"; return 1; }
}

nt_stop_agent() {
	local pid=${1:-$NT_AGENT_PID}
	kill -TERM "$pid" 2>/dev/null
	nt_wait_for 5 eval "! kill -0 $pid 2>/dev/null"
	wait "$pid" 2>/dev/null
}
