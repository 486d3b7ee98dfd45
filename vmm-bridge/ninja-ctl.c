// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja-ctl.c - host controller CLI for the Ninja control protocol: drives
 * one or more node agents (ninja-agent's unix socket, or a VM's
 * virtio-serial chardev socket) through QUIESCE / RESUME / CANCEL.
 *
 *   ninja-ctl --control unix:PATH [--control unix:PATH2 ...] [--epoch N]
 *             [--deadline SEC] [--rails LIST] [--json] [--verbose]
 *             quiesce | resume | cancel | status
 *             | cycle [--count N] [--pause-ms M] | event KIND [k=v ...]
 *
 * The protocol driver (QUIESCE / RESUME / CANCEL / STATUS over a group of
 * channels) is vmm_guest.c, shared with ninja-migrate; this file is the
 * command line and the output.  Exit statuses: vmm_exit.h (0 ok, 1 usage
 * or connection error, 2 deadline, 7 refused, 8 fewer ranks than
 * --expect).  See docs/protocol.md for the protocol and usage() for the
 * commands.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm_chan.h"

#include "vmm_exit.h"
#include "vmm_guest.h"

enum vmm_op {
	VMM_OP_QUIESCE,
	VMM_OP_RESUME,
	VMM_OP_CANCEL,
	VMM_OP_STATUS,
	VMM_OP_EVENT,
};

static const char *const op_names[] = {
	"quiesce", "resume", "cancel", "status", "event",
};

static struct {
	const char **control;	/* opt.ncontrol entries */
	int ncontrol;
	uint64_t epoch;		/* 0: derive from the nodes */
	double deadline_s;
	const char *rails;
	bool json, verbose;
	unsigned long count, pause_ms;
	unsigned long expect;	/* ranks a quiesce must find (0: any) */
} opt = { .deadline_s = 30.0, .count = 1 };

/* The nodes (nnodes == opt.ncontrol), all of them, and those involved in
 * the current request (NULL: not involved). */
static struct vmm_guest *nodes;
static struct vmm_guest **all, **inv;
static int nnodes;

/* The operation in progress. */
static struct {
	enum vmm_op op;
	unsigned int reports;
} cur;

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("ninja-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see ninja-ctl --help)\n", stderr);
	exit(VMM_EXIT_USAGE);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ninja-ctl --control unix:PATH [--control unix:PATH2 ...] [options] COMMAND\n"
		"\n"
		"Commands:\n"
		"  quiesce             QUIESCE every node; exit 0 once each reported SAFE.\n"
		"                      At the deadline: CANCEL everywhere, exit 2.\n"
		"  resume              RESUME every node; print each rank's REPORT; exit 0\n"
		"                      once each node reported RESUMED.\n"
		"  cancel              CANCEL the current epoch (ranks resume on old rails).\n"
		"  status              print each node's STATUS line.\n"
		"  cycle               repeat quiesce + resume (--count N, --pause-ms M between)\n"
		"                      and print per-cycle phase times.\n"
		"  event KIND [k=v..]  send \"EVENT <t_ns> KIND k=v.. real_ns=<ns>\" (forwarded\n"
		"                      to ranks; t_ns CLOCK_MONOTONIC, real_ns CLOCK_REALTIME),\n"
		"                      e.g. to simulate a device event on a bare machine.\n"
		"\n"
		"Options:\n"
		"  --control unix:PATH  a node's control socket (repeat for several nodes)\n"
		"  --epoch N            epoch to use (default: quiesce/cycle: latest node\n"
		"                       epoch + 1, 4294967295 wraps to 1; resume/cancel: the\n"
		"                       nodes' current epoch)\n"
		"  --expect N           quiesce/cycle: the nodes must have N ranks in all;\n"
		"                       fewer SAFE ranks: CANCEL, exit 8 (default: any)\n"
		"  --deadline SEC       give up after SEC seconds per phase (default 30)\n"
		"  --rails LIST         rail hint for RESUME (rails=LIST, e.g. verbs,tcp)\n"
		"  --count N            cycle: number of cycles (default 1)\n"
		"  --pause-ms M         cycle: pause between cycles (default 0)\n"
		"  --json               print one JSON object per line on stdout\n"
		"  --verbose, -v        log every protocol line to stderr\n"
		"\n"
		"Exit status: 0 ok, 1 usage or connection error (nothing done), 2 deadline\n"
		"(a quiesce is cancelled), 7 a node refused the request (ERR) or another\n"
		"controller took the epoch, 8 fewer ranks than --expect (cancelled).\n");
}

/* ---- JSON output (json-c) --------------------------------------------- */

struct vmm_json {
	json_object *o;
};

/* A JSON string of s[0..n): bytes >= 0x80 are taken as Latin-1 code
 * points (whatever a name holds, the output stays valid UTF-8). */
static json_object *json_bytes(const char *s, size_t n)
{
	char *u = malloc(2 * n + 1);
	json_object *o;
	size_t i, k = 0;

	if (!u)
		return json_object_new_string_len(s, (int)n);
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x80) {
			u[k++] = (char)ch;
		} else {
			u[k++] = (char)(0xc0 | (ch >> 6));
			u[k++] = (char)(0x80 | (ch & 0x3f));
		}
	}
	o = json_object_new_string_len(u, (int)k);
	free(u);
	return o;
}

static void json_begin(struct vmm_json *j, const char *type)
{
	/* Milliseconds with 3 decimals, as the text output prints them. */
	json_c_set_serialization_double_format("%.3f", JSON_C_OPTION_GLOBAL);
	j->o = json_object_new_object();
	json_object_object_add(j->o, "type", json_object_new_string(type));
}

static void json_strn(struct vmm_json *j, const char *k, const char *v,
		      size_t n)
{
	json_object_object_add(j->o, k, json_bytes(v, n));
}

static void json_str(struct vmm_json *j, const char *k, const char *v)
{
	json_strn(j, k, v, strlen(v));
}

static void json_u64(struct vmm_json *j, const char *k, uint64_t v)
{
	json_object_object_add(j->o, k, json_object_new_uint64(v));
}

static void json_double(struct vmm_json *j, const char *k, double v)
{
	json_object_object_add(j->o, k, json_object_new_double(v));
}

static void json_ms(struct vmm_json *j, const char *k, int64_t ns)
{
	json_double(j, k, (double)ns / 1e6);
}

static void json_flag(struct vmm_json *j, const char *k, bool v)
{
	json_object_object_add(j->o, k, json_object_new_boolean(v));
}

/* The k=v tokens of m: numbers as numbers, the rest as strings.  A key
 * already present (ours, or an earlier token's) is not replaced. */
static void json_kv(struct vmm_json *j, const struct ninja_msg *m)
{
	char key[NINJA_LINE_MAX];
	int k;

	for (k = m->npos; k < m->ntok; k++) {
		const struct ninja_tok *t = &m->tok[k];
		const char *eq = memchr(t->p, '=', t->len);
		size_t kl, vl;
		uint64_t v;

		if (!eq)
			continue;
		kl = (size_t)(eq - t->p);
		vl = t->len - kl - 1;
		memcpy(key, t->p, kl);
		key[kl] = '\0';
		if (json_object_object_get_ex(j->o, key, NULL))
			continue;
		/* A job id is a name even when it looks like a number. */
		if (vl && !ninja_parse_u64(eq + 1, vl, &v) &&
		    strcmp(key, "job") != 0)
			json_u64(j, key, v);
		else
			json_strn(j, key, eq + 1, vl);
	}
}

static void json_end(struct vmm_json *j)
{
	printf("%s\n", json_object_to_json_string_ext(j->o,
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(j->o);
	j->o = NULL;
}

/* ---- helpers --------------------------------------------------------- */

static int64_t deadline_ns(void)
{
	return (int64_t)(opt.deadline_s * 1e9);
}

/* A REPORT of the current epoch, as it arrives (vmm_guest callback):
 * "unix:/x: job=J rank=R k=v..." */
static void print_report(struct vmm_guest *g, const struct ninja_msg *m,
			 void *arg)
{
	(void)arg;
	cur.reports++;
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "report");
		json_str(&j, "cmd", op_names[cur.op]);
		json_str(&j, "node", g->vm);
		json_u64(&j, "epoch", m->epoch);
		json_kv(&j, m);
		json_end(&j);
		return;
	}
	/* Everything after "REPORT <epoch>" as the rank sent it. */
	printf("%s: %s\n", g->vm, m->npos < m->ntok ?
	       m->tok[m->npos].p : "(empty report)");
	fflush(stdout);
}

/* Involve every live node (or none) in the next request. */
static void involve(bool every)
{
	int i;

	for (i = 0; i < nnodes; i++)
		inv[i] = every && !nodes[i].lost ? &nodes[i] : NULL;
	cur.reports = 0;
}

static unsigned int sum_done_ranks(void)
{
	unsigned int r = 0;
	int i;

	for (i = 0; i < nnodes; i++)
		if (inv[i])
			r += inv[i]->done_ranks;
	return r;
}

static int involved_count(void)
{
	int i, k = 0;

	for (i = 0; i < nnodes; i++)
		k += inv[i] != NULL;
	return k;
}

static bool any_lost(void)
{
	int i;

	for (i = 0; i < nnodes; i++)
		if (nodes[i].lost)
			return true;
	return false;
}

/*
 * Why the request failed (r == -1): the first involved node's message,
 * "protocol error" if a node refused, and the exit status.
 */
static int failure(const char **why, const char **err)
{
	int i, code = VMM_EXIT_USAGE;

	*why = "connection lost";
	*err = "";
	for (i = 0; i < nnodes; i++) {
		if (!inv[i] || !inv[i]->failed)
			continue;
		if (!(*err)[0])
			*err = inv[i]->errmsg;
		if (inv[i]->rejected && code != VMM_EXIT_REFUSED) {
			code = VMM_EXIT_REFUSED;
			*why = "protocol error";
			*err = inv[i]->errmsg;
		}
	}
	return code;
}

/*
 * "unix:/a (2 of 3 ranks safe), unix:/b (no status)" for unfinished nodes;
 * with exactly one, "unix:/a not safe after 2.0 s (2 of 3 ranks safe)".
 */
static void describe_pending(char *buf, size_t size, bool quiesce, int *count,
			     double secs)
{
	const char *what = quiesce ? "not safe" : "not resumed";
	size_t off = 0;
	int i;

	*count = 0;
	buf[0] = '\0';
	for (i = 0; i < nnodes; i++) {
		const struct vmm_guest *n = inv[i];
		int w;

		if (!n || n->done)
			continue;
		if (n->lost)
			w = snprintf(buf + off, size - off, "%s%s (connection lost)",
				     *count ? ", " : "", n->vm);
		else if (!n->have_status)
			w = snprintf(buf + off, size - off, "%s%s (no status)",
				     *count ? ", " : "", n->vm);
		else if (quiesce)
			w = snprintf(buf + off, size - off,
				     "%s%s (%u of %u ranks safe)",
				     *count ? ", " : "", n->vm, n->safe,
				     n->ranks);
		else
			w = snprintf(buf + off, size - off,
				     "%s%s (%u of %u ranks resumed)",
				     *count ? ", " : "", n->vm,
				     n->ranks - n->resuming, n->ranks);
		(*count)++;
		if (w < 0 || (size_t)w >= size - off)
			break;
		off += (size_t)w;
	}
	if (*count == 1) {
		/* Move " (detail)" after "not safe after N s". */
		char *paren = strstr(buf, " (");
		char detail[128];

		if (paren) {
			snprintf(detail, sizeof(detail), "%s", paren);
			snprintf(paren, size - (size_t)(paren - buf),
				 " %s after %.1f s%s", what, secs, detail);
		}
	} else if (*count > 1) {
		snprintf(buf + off, size - off, " %s after %.1f s", what, secs);
	}
}

/* Fresh STATUS from unfinished nodes (for the failure message), <= 0.5 s. */
static void final_status(void)
{
	struct vmm_guest *p[nnodes];
	int i;

	for (i = 0; i < nnodes; i++)
		p[i] = inv[i] && !inv[i]->done && !inv[i]->lost ? inv[i] : NULL;
	vmm_guests_status(p, nnodes, vmm_now_ns() + 500000000LL);
	/* Answering STATUS did not finish their request. */
	for (i = 0; i < nnodes; i++)
		if (p[i])
			p[i]->done = false;
}

/* After a failed quiesce: CANCEL everywhere, wait briefly for RESUMED. */
static bool cancel_everywhere(uint32_t e)
{
	struct vmm_guest *c[nnodes];
	int i;

	/* Nodes that refused the QUIESCE (ERR) are not in this epoch. */
	for (i = 0; i < nnodes; i++)
		c[i] = inv[i] && !inv[i]->rejected && !inv[i]->lost ?
		       inv[i] : NULL;
	return vmm_guests_finish(c, nnodes, e, true,
				 vmm_now_ns() + 5000000000LL) == 0;
}

/* How a failed quiesce ended, for its one line. */
static const char *cancel_outcome(bool cancelled)
{
	return cancelled ? "cancelled, job continues" :
	       "CANCEL sent but not every node confirmed it";
}

/*
 * Every node is SAFE, but for fewer ranks than --expect: ranks that never
 * registered are not drained, so this is no SAFE.  CANCEL, one line.
 */
static int too_few_ranks(uint32_t e, int64_t took)
{
	unsigned int safe = sum_done_ranks();
	char per[512];
	size_t off = 0;
	bool cancelled;
	int i;

	per[0] = '\0';
	for (i = 0; i < nnodes && off < sizeof(per); i++)
		if (inv[i])
			off += (size_t)snprintf(per + off, sizeof(per) - off,
						"%s%s %u", off ? ", " : "",
						inv[i]->vm, inv[i]->done_ranks);
	cancelled = cancel_everywhere(e);
	fprintf(stderr, "ninja-ctl: quiesce epoch %" PRIu32 ": only %u of %lu expected rank(s) registered (%s); %s\n",
		e, safe, opt.expect, per, cancel_outcome(cancelled));
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "quiesce");
		json_u64(&j, "epoch", e);
		json_str(&j, "result", "too few ranks");
		json_u64(&j, "ranks", safe);
		json_u64(&j, "expected", opt.expect);
		json_flag(&j, "cancelled", cancelled);
		json_ms(&j, "quiesce_ms", took);
		json_end(&j);
	}
	return VMM_EXIT_RANKS;
}

/* QUIESCE epoch e on every node.  Returns an exit status; *took = time. */
static int do_quiesce(uint32_t e, int64_t *took, bool cycle)
{
	int64_t t0 = vmm_now_ns();
	char pend[1024], err[sizeof(nodes->errmsg)];
	const char *why, *errp;
	int r, npend, code;
	bool cancelled;

	involve(true);
	cur.op = VMM_OP_QUIESCE;
	if (opt.verbose)
		vmm_log("quiesce epoch %" PRIu32 " on %d node(s)", e, nnodes);
	r = vmm_guests_quiesce(inv, nnodes, e, t0 + deadline_ns());
	*took = vmm_now_ns() - t0;
	if (r == 0 && opt.expect && sum_done_ranks() < opt.expect)
		return too_few_ranks(e, *took);
	if (r == 0) {
		if (cycle) {
			/* cmd_cycle() prints one line per cycle. */
		} else if (opt.json) {
			struct vmm_json j;

			json_begin(&j, "quiesce");
			json_u64(&j, "epoch", e);
			json_str(&j, "result", "ok");
			json_u64(&j, "nodes", (uint64_t)involved_count());
			json_u64(&j, "ranks", sum_done_ranks());
			json_ms(&j, "quiesce_ms", *took);
			json_end(&j);
		} else {
			printf("ninja-ctl: quiesce epoch %" PRIu32 ": %d node(s) safe (%u ranks) in %.1f ms\n",
			       e, involved_count(), sum_done_ranks(),
			       (double)*took / 1e6);
			fflush(stdout);
		}
		return VMM_EXIT_OK;
	}
	if (r == -2) {
		final_status();
		why = "deadline";
		errp = "";
		code = VMM_EXIT_DRAIN;
	} else {
		code = failure(&why, &errp);
	}
	snprintf(err, sizeof(err), "%s", errp);
	describe_pending(pend, sizeof(pend), true, &npend, (double)*took / 1e9);
	cancelled = cancel_everywhere(e);
	if (r == -2)
		fprintf(stderr, "ninja-ctl: quiesce epoch %" PRIu32 ": %s %s; %s\n",
			e, npend == 1 ? "node" : "nodes", pend,
			cancel_outcome(cancelled));
	else
		fprintf(stderr, "ninja-ctl: quiesce epoch %" PRIu32 ": failed (%s%s%s) after %.1f s; %s\n",
			e, why, err[0] ? ": " : "", err, (double)*took / 1e9,
			cancel_outcome(cancelled));
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "quiesce");
		json_u64(&j, "epoch", e);
		json_str(&j, "result", why);
		json_str(&j, "not_safe", pend);
		json_flag(&j, "cancelled", cancelled);
		json_ms(&j, "quiesce_ms", *took);
		json_end(&j);
	}
	return code;
}

/* RESUME (or CANCEL) epoch e.  Returns an exit status. */
static int do_resume(enum vmm_op op, uint32_t e, int64_t *took, bool cycle)
{
	int64_t t0 = vmm_now_ns();
	char pend[1024];
	const char *why = "deadline", *err = "";
	int i, r, npend, code = VMM_EXIT_DRAIN;

	involve(true);
	cur.op = op;
	for (i = 0; i < nnodes; i++) {
		struct vmm_guest *n = inv[i];

		/* A node running another epoch has nothing to resume. */
		if (n && !cycle && !opt.epoch && n->ch.node_epoch != e &&
		    !strcmp(n->phase, "running")) {
			if (opt.verbose)
				vmm_log("%s: running epoch %" PRIu32 ", not involved",
					n->vm, n->ch.node_epoch);
			inv[i] = NULL;
		}
	}
	r = vmm_guests_finish(inv, nnodes, e, op == VMM_OP_CANCEL,
			      t0 + deadline_ns());
	*took = vmm_now_ns() - t0;
	if (r == 0) {
		if (cycle) {
			/* cmd_cycle() prints one line per cycle. */
		} else if (opt.json) {
			struct vmm_json j;

			json_begin(&j, op_names[op]);
			json_u64(&j, "epoch", e);
			json_str(&j, "result", "ok");
			json_u64(&j, "nodes", (uint64_t)involved_count());
			json_u64(&j, "ranks", sum_done_ranks());
			json_u64(&j, "reports", cur.reports);
			json_ms(&j, "resume_ms", *took);
			json_end(&j);
		} else {
			printf("ninja-ctl: %s epoch %" PRIu32 ": %d node(s) resumed (%u ranks, %u reports) in %.1f ms\n",
			       op_names[op], e, involved_count(),
			       sum_done_ranks(), cur.reports,
			       (double)*took / 1e6);
			fflush(stdout);
		}
		return VMM_EXIT_OK;
	}
	if (r == -2)
		final_status();
	else
		code = failure(&why, &err);
	describe_pending(pend, sizeof(pend), false, &npend, (double)*took / 1e9);
	if (r == -2)
		fprintf(stderr, "ninja-ctl: %s epoch %" PRIu32 ": %s %s\n",
			op_names[op], e, npend == 1 ? "node" : "nodes", pend);
	else
		fprintf(stderr, "ninja-ctl: %s epoch %" PRIu32 ": failed (%s%s%s) after %.1f s\n",
			op_names[op], e, why, err[0] ? ": " : "", err,
			(double)*took / 1e9);
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, op_names[op]);
		json_u64(&j, "epoch", e);
		json_str(&j, "result", why);
		json_str(&j, "not_resumed", pend);
		json_ms(&j, "resume_ms", *took);
		json_end(&j);
	}
	return code;
}

/* Print the STATUS line of every node that answered. */
static void print_status(void)
{
	struct ninja_msg m;
	int i;

	for (i = 0; i < nnodes; i++) {
		struct vmm_guest *n = &nodes[i];

		if (!n->done || !n->status[0])
			continue;
		if (!opt.json) {
			printf("%s: %s\n", n->vm, n->status);
			continue;
		}
		if (!ninja_parse_line(n->status, strlen(n->status), &m)) {
			struct vmm_json j;

			json_begin(&j, "status");
			json_str(&j, "node", n->vm);
			json_kv(&j, &m);
			json_end(&j);
		}
	}
	fflush(stdout);
}

static int cmd_status(void)
{
	int r;

	involve(true);
	cur.op = VMM_OP_STATUS;
	r = vmm_guests_status(inv, nnodes, vmm_now_ns() + deadline_ns());
	print_status();
	if (r == -2) {
		fprintf(stderr, "ninja-ctl: status: no answer within %.1f s\n",
			opt.deadline_s);
		return VMM_EXIT_DRAIN;
	}
	if (r) {
		const char *why, *err;

		failure(&why, &err);
		fprintf(stderr, "ninja-ctl: status: %s\n", err);
		return VMM_EXIT_USAGE;
	}
	return VMM_EXIT_OK;
}

static int cmd_event(int argc, char **argv)
{
	char line[NINJA_LINE_MAX + 1];
	struct ninja_msg m;
	/* As kmod/ninja_notify.c: t_ns monotonic, real_ns wall clock. */
	int64_t t = vmm_now_ns(), real = vmm_wall_ns();
	bool has_real = false;
	int i, n, r;

	if (argc < 1)
		die_usage("event: KIND missing");
	n = snprintf(line, sizeof(line), "EVENT %" PRId64, t);
	for (i = 0; i < argc && n < (int)sizeof(line); i++) {
		n += snprintf(line + n, sizeof(line) - n, " %s", argv[i]);
		if (!strncmp(argv[i], "real_ns=", 8))
			has_real = true;
	}
	if (!has_real && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " real_ns=%" PRId64,
			      real);
	if (n >= NINJA_LINE_MAX)
		die_usage("event: line too long");
	r = ninja_parse_line(line, (size_t)n, &m);
	if (r)
		die_usage("event: '%s' is not a valid protocol line: %s "
			  "(KIND is one token, then key=value pairs)", line,
			  ninja_strerror(r));
	involve(true);
	cur.op = VMM_OP_EVENT;
	/* STATUS behind the EVENT confirms the node has taken it. */
	for (i = 0; i < nnodes; i++)
		vmm_guest_send(&nodes[i], vmm_now_ns() + 5000000000LL, "%s",
			       line);
	r = vmm_guests_status(inv, nnodes, vmm_now_ns() + deadline_ns());
	if (r == -2) {
		fprintf(stderr, "ninja-ctl: event: no confirmation within %.1f s\n",
			opt.deadline_s);
		return VMM_EXIT_DRAIN;
	}
	if (r || any_lost()) {
		const char *why, *err;

		failure(&why, &err);
		fprintf(stderr, "ninja-ctl: event: %s\n", err);
		return VMM_EXIT_USAGE;
	}
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "event");
		json_u64(&j, "t_ns", (uint64_t)t);
		json_strn(&j, "kind", m.tok[2].p, m.tok[2].len);
		json_u64(&j, "nodes", (uint64_t)nnodes);
		json_end(&j);
	} else {
		printf("ninja-ctl: event %s sent to %d node(s)\n", argv[0],
		       nnodes);
	}
	return VMM_EXIT_OK;
}

/* Wait pause_ms while still reading what nodes send. */
static void pause_reading(unsigned long ms)
{
	cur.op = VMM_OP_STATUS;
	vmm_guests_pump(all, nnodes, vmm_now_ns() + (int64_t)ms * 1000000);
}

struct vmm_stat {
	double min, max, sum;
};

static void stat_add(struct vmm_stat *s, double v, unsigned long i)
{
	if (i == 0 || v < s->min)
		s->min = v;
	if (i == 0 || v > s->max)
		s->max = v;
	s->sum += v;
}

static int cmd_cycle(uint32_t e)
{
	struct vmm_stat sq = { 0 }, sr = { 0 };
	unsigned long i;
	int r;

	for (i = 0; i < opt.count; i++, e = ninja_epoch_next(e)) {
		int64_t tq, tr;
		unsigned int ranks;

		r = do_quiesce(e, &tq, true);
		if (r) {
			fprintf(stderr, "ninja-ctl: cycle %lu/%lu failed in quiesce\n",
				i + 1, opt.count);
			return r;
		}
		ranks = sum_done_ranks();
		r = do_resume(VMM_OP_RESUME, e, &tr, true);
		if (r) {
			fprintf(stderr, "ninja-ctl: cycle %lu/%lu failed in resume\n",
				i + 1, opt.count);
			return r;
		}
		stat_add(&sq, (double)tq / 1e6, i);
		stat_add(&sr, (double)tr / 1e6, i);
		if (opt.json) {
			struct vmm_json j;

			json_begin(&j, "cycle");
			json_u64(&j, "cycle", i + 1);
			json_u64(&j, "count", opt.count);
			json_u64(&j, "epoch", e);
			json_u64(&j, "ranks", ranks);
			json_ms(&j, "quiesce_ms", tq);
			json_ms(&j, "resume_ms", tr);
			json_end(&j);
		} else {
			printf("cycle %lu/%lu epoch %" PRIu32 ": ranks=%u quiesce_ms=%.3f resume_ms=%.3f\n",
			       i + 1, opt.count, e, ranks, (double)tq / 1e6,
			       (double)tr / 1e6);
			fflush(stdout);
		}
		if (opt.pause_ms && i + 1 < opt.count)
			pause_reading(opt.pause_ms);
		if (any_lost()) {
			fprintf(stderr, "ninja-ctl: cycle: connection lost\n");
			return VMM_EXIT_USAGE;
		}
	}
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "cycle-summary");
		json_u64(&j, "count", opt.count);
		json_str(&j, "result", "ok");
		json_double(&j, "quiesce_ms_min", sq.min);
		json_double(&j, "quiesce_ms_avg", sq.sum / (double)opt.count);
		json_double(&j, "quiesce_ms_max", sq.max);
		json_double(&j, "resume_ms_min", sr.min);
		json_double(&j, "resume_ms_avg", sr.sum / (double)opt.count);
		json_double(&j, "resume_ms_max", sr.max);
		json_end(&j);
	} else {
		printf("ninja-ctl: %lu cycle(s) ok: quiesce_ms min/avg/max %.3f/%.3f/%.3f, resume_ms min/avg/max %.3f/%.3f/%.3f\n",
		       opt.count, sq.min, sq.sum / (double)opt.count, sq.max,
		       sr.min, sr.sum / (double)opt.count, sr.max);
	}
	return VMM_EXIT_OK;
}

static uint64_t num_arg(const char *name, const char *s, uint64_t max)
{
	uint64_t v;

	if (ninja_parse_u64(s, strlen(s), &v) || v > max)
		die_usage("%s: '%s' is not a number in 0..%" PRIu64, name, s,
			  max);
	return v;
}

int main(int argc, char **argv)
{
	enum {
		OPT_EPOCH = 256, OPT_DEADLINE, OPT_RAILS, OPT_JSON, OPT_COUNT,
		OPT_PAUSE, OPT_EXPECT,
	};
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "epoch", required_argument, NULL, OPT_EPOCH },
		{ "deadline", required_argument, NULL, OPT_DEADLINE },
		{ "rails", required_argument, NULL, OPT_RAILS },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "verbose", no_argument, NULL, 'v' },
		{ "count", required_argument, NULL, OPT_COUNT },
		{ "pause-ms", required_argument, NULL, OPT_PAUSE },
		{ "expect", required_argument, NULL, OPT_EXPECT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd;
	enum vmm_op op = VMM_OP_STATUS;
	bool cycle = false;
	int64_t took;
	uint32_t e;
	int o, i, r;
	char *end;

	vmm_set_progname(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	/* GNU getopt permutes: options may also follow the command. */
	while ((o = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			/* argc bounds the count: no fixed limit. */
			if (!opt.control)
				opt.control = calloc((size_t)argc,
						     sizeof(*opt.control));
			if (!opt.control)
				die_usage("out of memory");
			opt.control[opt.ncontrol++] = optarg;
			break;
		case OPT_EPOCH:
			opt.epoch = num_arg("--epoch", optarg, UINT32_MAX);
			if (!opt.epoch)
				die_usage("--epoch: epochs start at 1");
			break;
		case OPT_DEADLINE:
			errno = 0;
			opt.deadline_s = strtod(optarg, &end);
			if (errno || end == optarg || *end ||
			    !(opt.deadline_s > 0) || opt.deadline_s > 1e6)
				die_usage("--deadline: '%s' is not a positive number of seconds",
					  optarg);
			break;
		case OPT_RAILS:
			if (!optarg[0])
				die_usage("--rails: empty list");
			for (i = 0; optarg[i]; i++)
				if (optarg[i] <= ' ' || optarg[i] > '~')
					die_usage("--rails: '%s' must be one token (e.g. verbs,tcp)",
						  optarg);
			opt.rails = optarg;
			break;
		case OPT_JSON:
			opt.json = true;
			break;
		case 'v':
			opt.verbose = true;
			break;
		case OPT_COUNT:
			opt.count = (unsigned long)num_arg("--count", optarg,
							   1000000);
			if (!opt.count)
				die_usage("--count: at least 1");
			break;
		case OPT_PAUSE:
			opt.pause_ms = (unsigned long)num_arg("--pause-ms",
							      optarg, 3600000);
			break;
		case OPT_EXPECT:
			opt.expect = (unsigned long)num_arg("--expect", optarg,
							    1000000);
			break;
		case 'h':
			usage(stdout);
			return VMM_EXIT_OK;
		case 'V':
			printf("ninja-ctl (Ninja) %s\n", PACKAGE_VERSION);
			return VMM_EXIT_OK;
		default:
			usage(stderr);
			return VMM_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		die_usage("no command given (quiesce, resume, cancel, status, cycle, event)");
	cmd = argv[optind++];
	if (!strcmp(cmd, "quiesce"))
		op = VMM_OP_QUIESCE;
	else if (!strcmp(cmd, "resume"))
		op = VMM_OP_RESUME;
	else if (!strcmp(cmd, "cancel"))
		op = VMM_OP_CANCEL;
	else if (!strcmp(cmd, "status"))
		op = VMM_OP_STATUS;
	else if (!strcmp(cmd, "cycle"))
		op = VMM_OP_QUIESCE, cycle = true;
	else if (!strcmp(cmd, "event"))
		op = VMM_OP_EVENT;
	else
		die_usage("unknown command '%s'", cmd);
	if (op != VMM_OP_EVENT && optind < argc)
		die_usage("%s: unexpected argument '%s'", cmd, argv[optind]);
	if (!opt.ncontrol)
		die_usage("at least one --control unix:PATH is required");

	/* Connect (a node that is just starting gets a second) and greet. */
	nodes = calloc((size_t)opt.ncontrol, sizeof(*nodes));
	all = calloc((size_t)opt.ncontrol, sizeof(*all));
	inv = calloc((size_t)opt.ncontrol, sizeof(*inv));
	if (!nodes || !all || !inv) {
		fprintf(stderr, "ninja-ctl: out of memory\n");
		return VMM_EXIT_USAGE;
	}
	nnodes = opt.ncontrol;
	for (i = 0; i < nnodes; i++) {
		struct vmm_guest *n = &nodes[i];

		vmm_guest_init(n, opt.control[i], opt.verbose);
		snprintf(n->endpoint, sizeof(n->endpoint), "%s",
			 opt.control[i]);
		n->peer = "node";
		n->connect_window_ns = 1000000000LL;
		n->on_report = print_report;
		if (opt.rails)
			snprintf(n->rails, sizeof(n->rails), "%s", opt.rails);
		all[i] = n;
	}
	r = vmm_guests_open(all, nnodes, vmm_now_ns() + deadline_ns());
	if (r) {
		for (i = 0; i < nnodes; i++)
			if (nodes[i].failed)
				fprintf(stderr, "ninja-ctl: %s\n",
					nodes[i].errmsg);
		return r == -2 ? VMM_EXIT_DRAIN : VMM_EXIT_USAGE;
	}
	for (i = 0; i < nnodes && opt.verbose; i++)
		vmm_log("%s: %s", nodes[i].vm, nodes[i].ch.hello);

	switch (op) {
	case VMM_OP_QUIESCE:
		e = opt.epoch ? (uint32_t)opt.epoch :
		    ninja_epoch_next(vmm_guests_max_epoch(all, nnodes));
		if (cycle)
			return cmd_cycle(e);
		return do_quiesce(e, &took, false);
	case VMM_OP_RESUME:
	case VMM_OP_CANCEL:
		e = opt.epoch ? (uint32_t)opt.epoch :
		    vmm_guests_max_epoch(all, nnodes);
		if (e == 0) {
			fprintf(stderr, "ninja-ctl: %s: no node has an epoch yet (never quiesced); nothing to do\n",
				cmd);
			return VMM_EXIT_USAGE;
		}
		for (i = 0; i < nnodes && !opt.epoch; i++) {
			if (nodes[i].ch.node_epoch != e &&
			    strcmp(nodes[i].phase, "running")) {
				fprintf(stderr, "ninja-ctl: %s: nodes disagree on the epoch (%s is in epoch %u, phase %s; another is at %u); use --epoch\n",
					cmd, nodes[i].vm, nodes[i].ch.node_epoch,
					nodes[i].phase, e);
				return VMM_EXIT_USAGE;
			}
		}
		return do_resume(op, e, &took, false);
	case VMM_OP_STATUS:
		return cmd_status();
	case VMM_OP_EVENT:
		return cmd_event(argc - optind, argv + optind);
	}
	return VMM_EXIT_USAGE;
}
