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
 * Exit status: 0 ok, 1 usage or connection error, 2 deadline passed,
 * 3 protocol error (an ERR answer, other than a harmless duplicate).
 * See docs/protocol.md for the protocol and usage() for the commands.
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

#define VMM_CTL_MAX_NODES	64

enum vmm_exit {
	VMM_EXIT_OK = 0,
	VMM_EXIT_USAGE = 1,	/* also: connection failed or lost */
	VMM_EXIT_DEADLINE = 2,
	VMM_EXIT_PROTO = 3,
	VMM_EXIT_RANKS = 4,	/* fewer ranks SAFE than --expect */
};

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

/* What the controller knows about one node. */
struct vmm_node {
	struct vmm_chan ch;
	bool involved;		/* takes part in the current operation */
	bool done;		/* answered SAFE / RESUMED / STATUS for it */
	bool cancel_done;	/* RESUMED after our CANCEL (quiesce failure) */
	bool lost;		/* connection gone */
	bool rejected;		/* answered ERR to the current request */
	/* Last STATUS (or HELLO) seen. */
	bool have_status;
	unsigned long status_seq;	/* STATUS lines taken */
	uint32_t epoch;
	char phase[16];
	unsigned int ranks, safe, draining, resuming;
	unsigned int done_ranks;	/* ranks= of SAFE/RESUMED */
	unsigned int reports;
};

static struct {
	const char *control[VMM_CTL_MAX_NODES];
	int ncontrol;
	uint64_t epoch;		/* 0: derive from the nodes */
	double deadline_s;
	const char *rails;
	bool json, verbose;
	unsigned long count, pause_ms;
	unsigned long expect;	/* ranks a quiesce must find (0: any) */
} opt = { .deadline_s = 30.0, .count = 1 };

static struct vmm_node nodes[VMM_CTL_MAX_NODES];
static struct vmm_chan *chans[VMM_CTL_MAX_NODES];
static int nnodes;

/* State of the operation in progress, fed by handle_line(). */
static struct {
	enum vmm_op op;
	uint32_t epoch;
	bool cancelling;	/* quiesce failed, CANCEL sent */
	int proto_err;		/* ERR answers that count as failure */
	int lost;		/* connections lost */
	unsigned int reports;
	char err[NINJA_LINE_MAX + VMM_NAME_MAX + 8];	/* first ERR */
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
		"                       fewer SAFE ranks: CANCEL, exit 4 (default: any)\n"
		"  --deadline SEC       give up after SEC seconds per phase (default 30)\n"
		"  --rails LIST         rail hint for RESUME (rails=LIST, e.g. verbs,tcp)\n"
		"  --count N            cycle: number of cycles (default 1)\n"
		"  --pause-ms M         cycle: pause between cycles (default 0)\n"
		"  --json               print one JSON object per line on stdout\n"
		"  --verbose, -v        log every protocol line to stderr\n"
		"\n"
		"Exit status: 0 ok, 1 usage or connection error, 2 deadline, 3 protocol error,\n"
		"4 fewer ranks than --expect.\n");
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

static void copy_tok(char *dst, size_t size, const char *p, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

static unsigned int kv_uint(const struct ninja_msg *m, const char *key)
{
	uint64_t v = 0;

	if (ninja_msg_get_u64(m, key, &v) || v > UINT32_MAX)
		return 0;
	return (unsigned int)v;
}

/* Send a line to one node; a failure marks the node lost. */
static void node_send(struct vmm_node *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void node_send(struct vmm_node *n, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (n->lost)
		return;
	va_start(ap, fmt);
	/* A node that does not take one short line in 5 s is stuck. */
	r = vmm_chan_sendv(&n->ch, vmm_now_ns() + 5000000000LL, fmt, ap);
	va_end(ap);
	if (r) {
		fprintf(stderr, "ninja-ctl: %s\n", n->ch.errmsg);
		n->lost = true;
		cur.lost++;
	}
}

/* Text form of a REPORT: "unix:/x: job=J rank=R k=v..." */
static void print_report(struct vmm_node *n, const struct ninja_msg *m)
{
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "report");
		json_str(&j, "cmd", op_names[cur.op]);
		json_str(&j, "node", n->ch.name);
		json_u64(&j, "epoch", m->epoch);
		json_kv(&j, m);
		json_end(&j);
		return;
	}
	/* Everything after "REPORT <epoch>" as the rank sent it. */
	printf("%s: %s\n", n->ch.name, m->npos < m->ntok ?
	       m->tok[m->npos].p : "(empty report)");
	fflush(stdout);
}

static void take_status(struct vmm_node *n, const struct ninja_msg *m)
{
	const char *p;
	size_t pl;
	uint64_t v;

	n->have_status = true;
	n->status_seq++;
	if (!ninja_msg_get_u64(m, "epoch", &v) && v <= UINT32_MAX)
		n->epoch = (uint32_t)v;
	p = ninja_msg_get(m, "phase", &pl);
	if (p)
		copy_tok(n->phase, sizeof(n->phase), p, pl);
	n->ranks = kv_uint(m, "ranks");
	n->safe = kv_uint(m, "safe");
	n->draining = kv_uint(m, "draining");
	n->resuming = kv_uint(m, "resuming");
}

/* Our quiesce lost its epoch to someone else's RESUME/CANCEL. */
static void taken_over(struct vmm_node *n)
{
	if (cur.op != VMM_OP_QUIESCE || cur.cancelling || n->rejected)
		return;
	if (!cur.proto_err)
		snprintf(cur.err, sizeof(cur.err),
			 "%s: epoch %" PRIu32 " was resumed or cancelled by another controller",
			 n->ch.name, cur.epoch);
	cur.proto_err++;
	n->rejected = true;
}

/* One line from a node, whatever the operation. */
static void handle_line(struct vmm_node *n, const struct vmm_line *l)
{
	struct ninja_msg m;
	int err;

	if (l->err) {
		fprintf(stderr, "ninja-ctl: %s: line too long, ignored\n",
			n->ch.name);
		return;
	}
	err = ninja_parse_line(l->s, l->len, &m);
	if (err == -NINJA_EEMPTY)
		return;
	if (err) {
		fprintf(stderr, "ninja-ctl: %s: malformed line ignored (%s): %s\n",
			n->ch.name, ninja_strerror(err), l->s);
		return;
	}
	switch (m.verb) {
	case NINJA_V_ERR:
		fprintf(stderr, "ninja-ctl: %s: %s\n", n->ch.name, l->s);
		if (m.tok[1].len == 9 && !memcmp(m.tok[1].p, "duplicate", 9))
			return;		/* harmless */
		if (cur.op != VMM_OP_STATUS && cur.op != VMM_OP_EVENT &&
		    n->involved && !cur.cancelling) {
			if (!cur.proto_err)
				snprintf(cur.err, sizeof(cur.err), "%s: %s",
					 n->ch.name, l->s);
			cur.proto_err++;
			n->rejected = true;
		}
		return;
	case NINJA_V_SAFE:
		if (m.epoch != cur.epoch)
			return;
		n->epoch = m.epoch;
		snprintf(n->phase, sizeof(n->phase), "safe");
		if (cur.op == VMM_OP_QUIESCE && !cur.cancelling) {
			n->done = true;
			n->done_ranks = kv_uint(&m, "ranks");
		}
		return;
	case NINJA_V_UNSAFE:
		if (m.epoch != cur.epoch)
			return;
		snprintf(n->phase, sizeof(n->phase), "quiescing");
		if (cur.op == VMM_OP_QUIESCE && !cur.cancelling)
			n->done = false;
		fprintf(stderr, "ninja-ctl: %s: %s (a rank left the drain or joined late)\n",
			n->ch.name, l->s);
		return;
	case NINJA_V_REPORT:
		if (m.epoch != cur.epoch)
			return;
		n->reports++;
		cur.reports++;
		print_report(n, &m);
		return;
	case NINJA_V_RESUMED:
		if (m.epoch != cur.epoch)
			return;
		n->epoch = m.epoch;
		snprintf(n->phase, sizeof(n->phase), "running");
		if (cur.cancelling)
			n->cancel_done = true;
		else if (cur.op == VMM_OP_QUIESCE)
			taken_over(n);
		else if (cur.op == VMM_OP_RESUME || cur.op == VMM_OP_CANCEL) {
			n->done = true;
			n->done_ranks = kv_uint(&m, "ranks");
		}
		return;
	case NINJA_V_STATUS:
		take_status(n, &m);
		if (cur.op == VMM_OP_STATUS) {
			if (!n->done) {
				if (opt.json) {
					struct vmm_json j;

					json_begin(&j, "status");
					json_str(&j, "node", n->ch.name);
					json_kv(&j, &m);
					json_end(&j);
				} else {
					printf("%s: %s\n", n->ch.name, l->s);
					fflush(stdout);
				}
			}
			n->done = true;
			return;
		}
		if (cur.op == VMM_OP_EVENT) {
			n->done = true;
			return;
		}
		if (n->epoch != cur.epoch) {
			/* Our request did not arrive (lost): ask again. */
			if (cur.op == VMM_OP_QUIESCE && !cur.cancelling &&
			    ninja_epoch_after(cur.epoch, n->epoch) &&
			    !strcmp(n->phase, "running"))
				node_send(n, "QUIESCE %" PRIu32, cur.epoch);
			return;
		}
		if (cur.cancelling) {
			if (!strcmp(n->phase, "running"))
				n->cancel_done = true;
		} else if (cur.op == VMM_OP_QUIESCE) {
			if (!strcmp(n->phase, "safe")) {
				n->done = true;
				n->done_ranks = n->safe;
			} else if (!strcmp(n->phase, "running") ||
				   !strcmp(n->phase, "resuming")) {
				taken_over(n);
			}
		} else if (cur.op == VMM_OP_RESUME ||
			   cur.op == VMM_OP_CANCEL) {
			if (!strcmp(n->phase, "running")) {
				n->done = true;
				n->done_ranks = n->ranks;
			}
		}
		return;
	default:
		/* HELLO (answers to repeated HELLOs), EVENT, OK: nothing. */
		return;
	}
}

/* Read and handle lines until the deadline or the next tick. */
static void pump(int64_t until)
{
	int i, live = 0;

	for (i = 0; i < nnodes; i++)
		live += chans[i] != NULL;
	if (!live) {
		/* Every connection is gone: nothing to wait for but time. */
		int64_t left = until - vmm_now_ns();

		if (left > 0)
			poll(NULL, 0, (int)((left + 999999) / 1000000));
		return;
	}
	if (vmm_chan_wait(chans, nnodes, until) == -1)
		return;
	for (i = 0; i < nnodes; i++) {
		struct vmm_node *n = &nodes[i];
		const struct vmm_line *l;

		while ((l = vmm_chan_take(&n->ch)))
			handle_line(n, l);
		if (n->ch.eof && !n->lost) {
			n->lost = true;
			cur.lost++;
			fprintf(stderr, "ninja-ctl: lost the connection to node %s (%s)\n",
				n->ch.name, n->ch.errmsg[0] ? n->ch.errmsg :
				"closed");
			/* Do not poll a dead socket again. */
			chans[i] = NULL;
		}
	}
}

/* Whether every involved node is done (with field sel). */
static bool all_done(bool cancel_field)
{
	int i;

	for (i = 0; i < nnodes; i++) {
		const struct vmm_node *n = &nodes[i];

		if (!n->involved || n->lost || (cancel_field && n->rejected))
			continue;
		if (cancel_field ? !n->cancel_done : !n->done)
			return false;
	}
	return true;
}

/* Poll STATUS from unfinished nodes every second until done/deadline. */
static int wait_done(int64_t deadline, bool cancel_field)
{
	int64_t tick = vmm_now_ns() + 1000000000LL;
	int i;

	for (;;) {
		int64_t now = vmm_now_ns();

		if (cur.lost || cur.proto_err)
			return -1;
		if (all_done(cancel_field))
			return 0;
		if (now >= deadline)
			return -2;
		if (now >= tick) {
			for (i = 0; i < nnodes; i++) {
				struct vmm_node *n = &nodes[i];

				if (n->involved && !n->lost &&
				    !(cancel_field ? n->cancel_done || n->rejected :
				      n->done))
					node_send(n, "STATUS");
			}
			tick = now + 1000000000LL;
		}
		pump(deadline < tick ? deadline : tick);
	}
}

static void reset_nodes(bool involve_all)
{
	int i;

	for (i = 0; i < nnodes; i++) {
		nodes[i].involved = involve_all && !nodes[i].lost;
		nodes[i].done = false;
		nodes[i].cancel_done = false;
		nodes[i].rejected = false;
		nodes[i].done_ranks = 0;
		nodes[i].reports = 0;
	}
	cur.cancelling = false;
	cur.proto_err = 0;
	cur.reports = 0;
	cur.lost = 0;
	cur.err[0] = '\0';
}

static uint32_t max_node_epoch(void)
{
	uint32_t e = 0;
	int i;

	for (i = 0; i < nnodes; i++)
		if (ninja_epoch_after(nodes[i].epoch, e))
			e = nodes[i].epoch;
	return e;
}

static unsigned int sum_done_ranks(void)
{
	unsigned int r = 0;
	int i;

	for (i = 0; i < nnodes; i++)
		if (nodes[i].involved)
			r += nodes[i].done_ranks;
	return r;
}

static int involved_count(void)
{
	int i, k = 0;

	for (i = 0; i < nnodes; i++)
		k += nodes[i].involved;
	return k;
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
		const struct vmm_node *n = &nodes[i];
		int w;

		if (!n->involved || n->done)
			continue;
		if (n->lost)
			w = snprintf(buf + off, size - off, "%s%s (connection lost)",
				     *count ? ", " : "", n->ch.name);
		else if (!n->have_status)
			w = snprintf(buf + off, size - off, "%s%s (no status)",
				     *count ? ", " : "", n->ch.name);
		else if (quiesce)
			w = snprintf(buf + off, size - off,
				     "%s%s (%u of %u ranks safe)",
				     *count ? ", " : "", n->ch.name, n->safe,
				     n->ranks);
		else
			w = snprintf(buf + off, size - off,
				     "%s%s (%u of %u ranks resumed)",
				     *count ? ", " : "", n->ch.name,
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
	unsigned long seq[VMM_CTL_MAX_NODES];
	int64_t dl = vmm_now_ns() + 500000000LL;
	int i;
	bool all;

	for (i = 0; i < nnodes; i++) {
		seq[i] = nodes[i].status_seq;
		if (nodes[i].involved && !nodes[i].done && !nodes[i].lost)
			node_send(&nodes[i], "STATUS");
	}
	do {
		pump(dl);
		all = true;
		for (i = 0; i < nnodes; i++)
			if (nodes[i].involved && !nodes[i].done &&
			    !nodes[i].lost && nodes[i].status_seq == seq[i])
				all = false;
	} while (!all && vmm_now_ns() < dl);
}

/* After a failed quiesce: CANCEL everywhere, wait briefly for RESUMED. */
static bool cancel_everywhere(uint32_t e)
{
	int64_t dl = vmm_now_ns() + 5000000000LL;
	int i;

	int saved_err = cur.proto_err, saved_lost = cur.lost;
	bool ok;

	/* Nodes that refused the QUIESCE (ERR) are not in this epoch. */
	cur.cancelling = true;
	cur.proto_err = 0;
	cur.lost = 0;
	for (i = 0; i < nnodes; i++)
		if (nodes[i].involved && !nodes[i].rejected)
			node_send(&nodes[i], "CANCEL %" PRIu32, e);
	ok = wait_done(dl, true) == 0 && !cur.lost;
	cur.proto_err = saved_err;
	cur.lost += saved_lost;
	return ok;
}

/*
 * Every node is SAFE, but for fewer ranks than --expect: ranks that never
 * registered are not drained, so this is no SAFE.  CANCEL, one line.
 */
static int too_few_ranks(uint32_t e, int64_t took)
{
	char per[512];
	size_t off = 0;
	bool cancelled;
	int i;

	per[0] = '\0';
	for (i = 0; i < nnodes && off < sizeof(per); i++)
		if (nodes[i].involved)
			off += (size_t)snprintf(per + off, sizeof(per) - off,
						"%s%s %u", off ? ", " : "",
						nodes[i].ch.name,
						nodes[i].done_ranks);
	cancelled = cancel_everywhere(e);
	fprintf(stderr, "ninja-ctl: quiesce epoch %" PRIu32 ": only %u of %lu expected rank(s) registered (%s); %s\n",
		e, sum_done_ranks(), opt.expect, per,
		cancelled ? "cancelled, job continues" :
		"CANCEL sent but not every node confirmed it");
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, "quiesce");
		json_u64(&j, "epoch", e);
		json_str(&j, "result", "too few ranks");
		json_u64(&j, "ranks", sum_done_ranks());
		json_u64(&j, "expected", opt.expect);
		json_flag(&j, "cancelled", cancelled);
		json_ms(&j, "quiesce_ms", took);
		json_end(&j);
	}
	return VMM_EXIT_RANKS;
}

/* QUIESCE epoch e on every node.  Returns an exit status; *ms = time. */
static int do_quiesce(uint32_t e, int64_t *took, bool cycle)
{
	int64_t t0 = vmm_now_ns(), t1;
	char pend[1024];
	int i, r, npend;
	bool cancelled;
	const char *why;

	reset_nodes(true);
	cur.op = VMM_OP_QUIESCE;
	cur.epoch = e;
	if (opt.verbose)
		vmm_log("quiesce epoch %" PRIu32 " on %d node(s)", e, nnodes);
	for (i = 0; i < nnodes; i++)
		node_send(&nodes[i], "QUIESCE %" PRIu32, e);
	r = wait_done(t0 + deadline_ns(), false);
	t1 = vmm_now_ns();
	*took = t1 - t0;
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
	if (r == -2)
		final_status();
	describe_pending(pend, sizeof(pend), true, &npend, (double)*took / 1e9);
	why = r == -2 ? "deadline" : cur.lost ? "connection lost" :
	      "protocol error";
	cancelled = cancel_everywhere(e);
	if (r == -2)
		fprintf(stderr, "ninja-ctl: quiesce epoch %" PRIu32 ": %s %s; %s\n",
			e, npend == 1 ? "node" : "nodes", pend,
			cancelled ? "cancelled, job continues" :
			"CANCEL sent but not every node confirmed it");
	else
		fprintf(stderr, "ninja-ctl: quiesce epoch %" PRIu32 ": failed (%s%s%s) after %.1f s; %s\n",
			e, why, cur.err[0] ? ": " : "", cur.err,
			(double)*took / 1e9,
			cancelled ? "cancelled, job continues" :
			"CANCEL sent but not every node confirmed it");
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
	if (r == -2)
		return VMM_EXIT_DEADLINE;
	return cur.proto_err ? VMM_EXIT_PROTO : VMM_EXIT_USAGE;
}

/* RESUME (or CANCEL) epoch e.  Returns an exit status. */
static int do_resume(enum vmm_op op, uint32_t e, int64_t *took, bool cycle)
{
	const char *verb = op == VMM_OP_CANCEL ? "CANCEL" : "RESUME";
	int64_t t0 = vmm_now_ns();
	char pend[1024];
	int i, r, npend;

	reset_nodes(false);
	cur.op = op;
	cur.epoch = e;
	for (i = 0; i < nnodes; i++) {
		struct vmm_node *n = &nodes[i];

		if (n->lost)
			continue;
		/* A node running another epoch has nothing to resume. */
		if (!cycle && !opt.epoch && n->epoch != e &&
		    !strcmp(n->phase, "running")) {
			if (opt.verbose)
				vmm_log("%s: running epoch %" PRIu32 ", not involved",
					n->ch.name, n->epoch);
			continue;
		}
		n->involved = true;
		if (op == VMM_OP_RESUME && opt.rails)
			node_send(n, "RESUME %" PRIu32 " rails=%s", e,
				  opt.rails);
		else
			node_send(n, "%s %" PRIu32, verb, e);
	}
	r = wait_done(t0 + deadline_ns(), false);
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
	describe_pending(pend, sizeof(pend), false, &npend, (double)*took / 1e9);
	if (r == -2)
		fprintf(stderr, "ninja-ctl: %s epoch %" PRIu32 ": %s %s\n",
			op_names[op], e, npend == 1 ? "node" : "nodes", pend);
	else
		fprintf(stderr, "ninja-ctl: %s epoch %" PRIu32 ": failed (%s%s%s) after %.1f s\n",
			op_names[op], e,
			cur.lost ? "connection lost" : "protocol error",
			cur.err[0] ? ": " : "", cur.err, (double)*took / 1e9);
	if (opt.json) {
		struct vmm_json j;

		json_begin(&j, op_names[op]);
		json_u64(&j, "epoch", e);
		json_str(&j, "result", r == -2 ? "deadline" : cur.lost ?
			 "connection lost" : "protocol error");
		json_str(&j, "not_resumed", pend);
		json_ms(&j, "resume_ms", *took);
		json_end(&j);
	}
	if (r == -2)
		return VMM_EXIT_DEADLINE;
	return cur.proto_err ? VMM_EXIT_PROTO : VMM_EXIT_USAGE;
}

static int cmd_status(void)
{
	int i, r;

	reset_nodes(true);
	cur.op = VMM_OP_STATUS;
	for (i = 0; i < nnodes; i++)
		node_send(&nodes[i], "STATUS");
	r = wait_done(vmm_now_ns() + deadline_ns(), false);
	if (r == -2) {
		fprintf(stderr, "ninja-ctl: status: no answer within %.1f s\n",
			opt.deadline_s);
		return VMM_EXIT_DEADLINE;
	}
	return r ? VMM_EXIT_USAGE : VMM_EXIT_OK;
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
	reset_nodes(true);
	cur.op = VMM_OP_EVENT;
	/* STATUS behind the EVENT confirms the node has taken it. */
	for (i = 0; i < nnodes; i++) {
		node_send(&nodes[i], "%s", line);
		node_send(&nodes[i], "STATUS");
	}
	r = wait_done(vmm_now_ns() + deadline_ns(), false);
	if (r == -2) {
		fprintf(stderr, "ninja-ctl: event: no confirmation within %.1f s\n",
			opt.deadline_s);
		return VMM_EXIT_DEADLINE;
	}
	if (r)
		return VMM_EXIT_USAGE;
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

/* Wait pause_ms while still reading (and ignoring) what nodes send. */
static void pause_reading(unsigned long ms)
{
	int64_t until = vmm_now_ns() + (int64_t)ms * 1000000;

	cur.op = VMM_OP_STATUS;
	cur.epoch = 0;
	reset_nodes(false);
	while (vmm_now_ns() < until && !cur.lost)
		pump(until);
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
		if (cur.lost) {
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
	int64_t dl, took;
	uint32_t e;
	int o, i, r;
	char *end;

	vmm_set_progname(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	/* GNU getopt permutes: options may also follow the command. */
	while ((o = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			if (opt.ncontrol == VMM_CTL_MAX_NODES)
				die_usage("at most %d --control endpoints",
					  VMM_CTL_MAX_NODES);
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
	dl = vmm_now_ns() + (deadline_ns() < 1000000000LL ? deadline_ns() :
			     1000000000LL);
	for (i = 0; i < opt.ncontrol; i++) {
		struct vmm_node *n = &nodes[i];

		vmm_chan_init(&n->ch);
		n->ch.verbose = opt.verbose;
		if (vmm_chan_open(&n->ch, opt.control[i], dl)) {
			fprintf(stderr, "ninja-ctl: %s\n", n->ch.errmsg);
			return VMM_EXIT_USAGE;
		}
		n->ch.verbose = opt.verbose;
		chans[i] = &n->ch;
		nnodes++;
	}
	r = vmm_chan_hello(chans, nnodes, "host", vmm_now_ns() + deadline_ns());
	if (r) {
		for (i = 0; i < nnodes; i++) {
			if (nodes[i].ch.hello_ok)
				continue;
			if (nodes[i].ch.errmsg[0])
				fprintf(stderr, "ninja-ctl: %s\n",
					nodes[i].ch.errmsg);
			else
				fprintf(stderr, "ninja-ctl: node %s did not answer HELLO within %.1f s\n",
					nodes[i].ch.name, opt.deadline_s);
		}
		return r == -2 ? VMM_EXIT_DEADLINE : VMM_EXIT_USAGE;
	}
	for (i = 0; i < nnodes; i++) {
		struct vmm_node *n = &nodes[i];

		n->epoch = n->ch.node_epoch;
		n->ranks = n->ch.node_ranks;
		snprintf(n->phase, sizeof(n->phase), "%s", n->ch.node_phase);
		if (opt.verbose)
			vmm_log("%s: %s", n->ch.name, n->ch.hello);
	}

	switch (op) {
	case VMM_OP_QUIESCE:
		e = opt.epoch ? (uint32_t)opt.epoch :
		    ninja_epoch_next(max_node_epoch());
		if (cycle)
			return cmd_cycle(e);
		return do_quiesce(e, &took, false);
	case VMM_OP_RESUME:
	case VMM_OP_CANCEL:
		e = opt.epoch ? (uint32_t)opt.epoch : max_node_epoch();
		if (e == 0) {
			fprintf(stderr, "ninja-ctl: %s: no node has an epoch yet (never quiesced); nothing to do\n",
				cmd);
			return VMM_EXIT_PROTO;
		}
		for (i = 0; i < nnodes && !opt.epoch; i++) {
			if (nodes[i].epoch != e &&
			    strcmp(nodes[i].phase, "running")) {
				fprintf(stderr, "ninja-ctl: %s: nodes disagree on the epoch (%s is in epoch %u, phase %s; another is at %u); use --epoch\n",
					cmd, nodes[i].ch.name, nodes[i].epoch,
					nodes[i].phase, e);
				return VMM_EXIT_PROTO;
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
