#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
# tests/e2e/hca-rxe-early.sh - a guest init hook (boot-guest --extra-init)
# for the two-site scenario: as soon as a hot-plugged NIC appears (anything
# but lo and eth0, the management NIC), make the soft-RoCE device rxe0 on
# it, while the link is still down.  tests/vm/mpi-node-init's watcher then
# renames it hca0, adds the address and sets it up as before; rxe0's port
# goes ACTIVE with the carrier, i.e. with ninja.ko's "EVENT link-up", the
# event ninja-migrate waits for before it sends RESUME.  Without this, the
# busy guest (the drained rank spins) could make rxe0 only after RESUME,
# and the ranks came back on tcp at the InfiniBand site.
(
	while :; do
		if [ ! -e /sys/class/infiniband/rxe0 ]; then
			for d in /sys/class/net/*; do
				n=${d##*/}
				case "$n" in lo|eth0) continue ;; esac
				rdma link add rxe0 type rxe netdev "$n" && break
			done
		fi
		sleep 0.1
	done
) < /dev/null > /dev/null 2>&1 &
