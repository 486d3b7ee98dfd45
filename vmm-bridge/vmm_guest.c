// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_guest.c - group QUIESCE / RESUME / CANCEL over guest channels (see
 * vmm_guest.h and docs/protocol.md sections 3, 6 and 9).
 */
#include "config.h"

#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm_guest.h"

#define STATUS_EVERY_NS	1000000000LL

enum req { REQ_NONE, REQ_QUIESCE, REQ_RESUME, REQ_CANCEL, REQ_STATUS };

void vmm_guest_init(struct vmm_guest *g, const char *vm, bool verbose)
{
	memset(g, 0, sizeof(*g));
	snprintf(g->vm, sizeof(g->vm), "%s", vm);
	g->verbose = verbose;
	g->peer = "guest";
	g->app_stall_us = g->upgrade_stall_us = -1;
	vmm_chan_init(&g->ch);
}

void vmm_guest_clear_reports(struct vmm_guest *g)
{
	int i;

	for (i = 0; i < g->nreports; i++)
		free(g->reports[i]);
	free(g->reports);
	g->reports = NULL;
	g->nreports = 0;
	g->n_reports_dropped = 0;
}

void vmm_guest_close(struct vmm_guest *g)
{
	if (g->open)
		vmm_chan_close(&g->ch);
	g->open = false;
}

/* A failure of g's current request; the first reason is kept. */
static void guest_fail(struct vmm_guest *g, bool lost, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void guest_fail(struct vmm_guest *g, bool lost, const char *fmt, ...)
{
	va_list ap;

	if (!g->failed) {
		va_start(ap, fmt);
		vsnprintf(g->errmsg, sizeof(g->errmsg), fmt, ap);
		va_end(ap);
	}
	g->failed = true;
	if (lost)
		g->lost = true;
	else
		g->rejected = true;
}

int vmm_guest_send(struct vmm_guest *g, int64_t deadline, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (g->lost)
		return -1;
	va_start(ap, fmt);
	r = vmm_chan_sendv(&g->ch, deadline, fmt, ap);
	va_end(ap);
	if (r)
		guest_fail(g, true, "%s: %s", g->vm, g->ch.errmsg);
	return r;
}

static void tokcpy(char *dst, size_t size, const char *p, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

static bool tok_is(const struct ninja_tok *t, const char *s)
{
	return t->len == strlen(s) && memcmp(t->p, s, t->len) == 0;
}

static double kv_us(const struct ninja_msg *m, const char *key)
{
	uint64_t v;

	return ninja_msg_get_u64(m, key, &v) ? 0 : (double)v;
}

/*
 * What the application saw, from a rank's REPORT: a RESUMED one stalled
 * it for drain + teardown + rediscover + reconnect (+ the wait for the
 * port with btl_ninja_upgrade=wait), not for wait_us (the VM's move,
 * during which the whole guest is stopped or idle); an event=upgraded
 * one for its stall_us.
 */
static void report_stats(struct vmm_guest *g, const struct ninja_msg *m)
{
	size_t el = 0, rl = 0;
	const char *ev = ninja_msg_get(m, "event", &el);
	const char *rail = ninja_msg_get(m, "rail", &rl);
	double s;

	if (ev && el == 8 && !memcmp(ev, "upgraded", 8)) {
		if (!rail || rl != 5 || memcmp(rail, "verbs", 5))
			return;
		g->n_upgraded++;
		g->t_upgraded = vmm_now_ns();
		s = kv_us(m, "stall_us");
		if (s > g->upgrade_stall_us)
			g->upgrade_stall_us = s;
		return;
	}
	if (ev || !ninja_msg_get(m, "drain_us", &el))
		return;
	if (rail && rl == 3 && !memcmp(rail, "tcp", 3))
		g->n_resumed_tcp++;
	s = kv_us(m, "drain_us") + kv_us(m, "teardown_us") +
	    kv_us(m, "rediscover_us") + kv_us(m, "reconnect_us") +
	    kv_us(m, "link_wait_us");
	if (s > g->app_stall_us)
		g->app_stall_us = s;
}

/* Our quiesce lost its epoch to another controller's RESUME/CANCEL. */
static void taken_over(struct vmm_guest *g)
{
	if (g->failed)
		return;
	guest_fail(g, false, "%s: epoch %" PRIu32 " was resumed or cancelled by another controller",
		   g->vm, g->epoch);
}

static unsigned int kv_uint(const struct ninja_msg *m, const char *key)
{
	uint64_t v = 0;

	if (ninja_msg_get_u64(m, key, &v) || v > UINT32_MAX)
		return 0;
	return (unsigned int)v;
}

/*
 * A STATUS answer: the node's state, and what it says of the request in
 * progress (the link is lossy: SAFE or RESUMED may have been lost, or the
 * request itself).
 */
static void guest_status(struct vmm_guest *g, const struct ninja_msg *m,
			 const struct vmm_line *l, enum req req)
{
	size_t pl = 0;
	const char *ph = ninja_msg_get(m, "phase", &pl);
	uint64_t e = 0, v;

	snprintf(g->status, sizeof(g->status), "%s", l->s);
	g->have_status = true;
	g->status_seq++;
	if (req == REQ_STATUS)
		g->done = true;
	if (ph)
		tokcpy(g->phase, sizeof(g->phase), ph, pl);
	g->safe = kv_uint(m, "safe");
	g->draining = kv_uint(m, "draining");
	g->resuming = kv_uint(m, "resuming");
	if (ninja_msg_get_u64(m, "epoch", &e) || !ph || e > UINT32_MAX)
		return;
	if (ninja_epoch_after((uint32_t)e, g->ch.node_epoch))
		g->ch.node_epoch = (uint32_t)e;
	if (!ninja_msg_get_u64(m, "ranks", &v))
		g->ranks = (unsigned int)v;
	if (req == REQ_QUIESCE && e != g->epoch && !g->failed &&
	    ninja_epoch_after(g->epoch, (uint32_t)e) &&
	    !strcmp(g->phase, "running")) {
		/* Our QUIESCE did not arrive (lost): ask again. */
		vmm_guest_send(g, vmm_now_ns() + 5000000000LL, "QUIESCE %" PRIu32,
			       g->epoch);
		return;
	}
	if (e != g->epoch || g->done)
		return;
	if (req == REQ_QUIESCE && !strcmp(g->phase, "safe")) {
		g->done = true;
		g->t_done = vmm_now_ns();
		g->done_ranks = g->safe;
	} else if (req == REQ_QUIESCE && (!strcmp(g->phase, "running") ||
					  !strcmp(g->phase, "resuming"))) {
		taken_over(g);
	} else if ((req == REQ_RESUME || req == REQ_CANCEL) &&
		   !strcmp(g->phase, "running")) {
		/* The RESUMED line was lost; REPORTs may be too. */
		g->done = true;
		g->t_done = vmm_now_ns();
		g->done_ranks = g->ranks;
		if (!ninja_msg_get_u64(m, "cancelled", &v))
			g->cancelled = v != 0;
	}
}

/* Handle one received line for request req. */
static void guest_line(struct vmm_guest *g, const struct vmm_line *l,
		       enum req req)
{
	struct ninja_msg m;
	uint64_t v;
	int err;

	if (l->err) {
		g->n_bad++;
		snprintf(g->last_bad, sizeof(g->last_bad), "%.60s... (too long)",
			 l->s);
		vmm_log("%s: warning: ignoring a line from the %s longer than %d bytes",
			g->vm, g->peer, NINJA_LINE_MAX - 1);
		return;
	}
	err = ninja_parse_line(l->s, l->len, &m);
	if (err == NINJA_EEMPTY)
		return;
	if (err) {
		g->n_bad++;
		snprintf(g->last_bad, sizeof(g->last_bad), "%.120s", l->s);
		vmm_log("%s: warning: ignoring malformed line from the %s (%s): '%.120s'",
			g->vm, g->peer, ninja_err_name(err), l->s);
		return;
	}
	switch (m.verb) {
	case NINJA_V_HELLO:
		/* Repeated HELLO answers: keep what they say. */
		if (!ninja_msg_get_u64(&m, "epoch", &v) && v <= UINT32_MAX)
			g->ch.node_epoch = (uint32_t)v;
		break;
	case NINJA_V_SAFE:
		if (m.epoch != g->epoch)
			break;
		snprintf(g->phase, sizeof(g->phase), "safe");
		if (req == REQ_QUIESCE && !g->failed) {
			g->done = true;
			g->unsafe = false;
			g->t_done = vmm_now_ns();
			if (!ninja_msg_get_u64(&m, "ranks", &v))
				g->ranks = g->done_ranks = (unsigned int)v;
		}
		break;
	case NINJA_V_UNSAFE:
		if (m.epoch == g->epoch) {
			size_t jl = 0, rl = 0;
			const char *j = ninja_msg_get(&m, "job", &jl);
			const char *r = ninja_msg_get(&m, "rank", &rl);

			g->unsafe = true;
			snprintf(g->phase, sizeof(g->phase), "quiescing");
			if (req == REQ_QUIESCE)
				g->done = false;
			vmm_log("%s: %s is no longer SAFE for epoch %u (job %.*s rank %.*s: a rank left the drain or joined late)",
				g->vm, g->peer, g->epoch, (int)jl, j ? j : "?",
				(int)rl, r ? r : "?");
		}
		break;
	case NINJA_V_RESUMED:
		if (m.epoch != g->epoch)
			break;
		snprintf(g->phase, sizeof(g->phase), "running");
		if (req == REQ_QUIESCE) {
			taken_over(g);
		} else if (req == REQ_RESUME || req == REQ_CANCEL) {
			g->done = true;
			g->t_done = vmm_now_ns();
			if (!ninja_msg_get_u64(&m, "ranks", &v))
				g->ranks = g->done_ranks = (unsigned int)v;
			if (!ninja_msg_get_u64(&m, "cancelled", &v))
				g->cancelled = v != 0;
		}
		break;
	case NINJA_V_REPORT:
		if (m.epoch == g->epoch)
			report_stats(g, &m);
		if (m.epoch == g->epoch && g->on_report)
			g->on_report(g, &m, g->report_arg);
		else if (m.epoch == g->epoch &&
			 g->nreports >= VMM_GUEST_MAX_REPORTS) {
			if (!g->n_reports_dropped++)
				vmm_log("%s: warning: more than %d REPORTs in epoch %u: the rest are not kept",
					g->vm, VMM_GUEST_MAX_REPORTS, g->epoch);
		} else if (m.epoch == g->epoch) {
			char **nr = realloc(g->reports, sizeof(char *) *
					    (g->nreports + 1));

			if (nr) {
				g->reports = nr;
				g->reports[g->nreports] = strdup(l->s);
				if (g->reports[g->nreports])
					g->nreports++;
			}
		}
		break;
	case NINJA_V_STATUS:
		guest_status(g, &m, l, req);
		break;
	case NINJA_V_EVENT:
		g->n_events++;
		/*
		 * The device is usable when its link is up - or, when this
		 * site offers the verbs rail, when its RDMA port is ACTIVE:
		 * the RDMA device can come after the NIC's link-up, and a
		 * RESUME sent in between finds no verbs rail.
		 */
		if (m.ntok >= 3 && !g->t_link && g->t_link_mark &&
		    (tok_is(&m.tok[2], "port-active") ||
		     (!strstr(g->rails, "verbs") &&
		      tok_is(&m.tok[2], "link-up")))) {
			g->t_link = vmm_now_ns();
			tokcpy(g->link_event, sizeof(g->link_event),
			       m.tok[2].p, m.tok[2].len);
			if (m.ntok >= 4) {
				size_t n = strlen(g->link_event);

				snprintf(g->link_event + n,
					 sizeof(g->link_event) - n, " %.*s",
					 (int)m.tok[3].len, m.tok[3].p);
			}
		}
		break;
	case NINJA_V_ERR:
		if (m.ntok >= 2 && tok_is(&m.tok[1], "duplicate"))
			break;
		if (req != REQ_NONE && req != REQ_STATUS && !g->done) {
			guest_fail(g, false, "%s: the %s refused the request: %s",
				   g->vm, g->peer, l->s);
		} else {
			vmm_log("%s: %s says: %s", g->vm, g->peer, l->s);
		}
		break;
	default:
		if (g->verbose)
			vmm_log("%s: line ignored: %s", g->vm, l->s);
		break;
	}
}

static void take_all(struct vmm_guest *g, enum req req)
{
	const struct vmm_line *l;

	while ((l = vmm_chan_take(&g->ch)))
		guest_line(g, l, req);
	if (g->ch.eof && !g->lost)
		guest_fail(g, true, "%s: %s channel %s closed: %s", g->vm,
			   g->peer, g->endpoint,
			   g->ch.errmsg[0] ? g->ch.errmsg : "connection closed");
}

int vmm_guests_open(struct vmm_guest **gs, int n, int64_t deadline)
{
	struct vmm_chan *cs[n > 0 ? n : 1];
	int i, r, m = 0;
	double secs;

	for (i = 0; i < n; i++) {
		struct vmm_guest *g = gs[i];

		int64_t cdl = deadline;

		if (!g || g->open)
			continue;
		g->failed = g->lost = g->rejected = false;
		g->errmsg[0] = '\0';
		if (g->connect_window_ns &&
		    vmm_now_ns() + g->connect_window_ns < deadline)
			cdl = vmm_now_ns() + g->connect_window_ns;
		g->ch.verbose = g->verbose;
		r = vmm_chan_open(&g->ch, g->endpoint, cdl);
		g->ch.verbose = g->verbose;
		if (r) {
			guest_fail(g, true, "%s: %s channel: %s", g->vm, g->peer,
				   g->ch.errmsg);
			return -1;	/* -2 is for a missing HELLO answer */
		}
		/* Log and error lines name the VM; the endpoint is known. */
		if (strcmp(g->vm, g->endpoint))
			snprintf(g->ch.name, sizeof(g->ch.name), "%s %s", g->vm,
				 g->peer);
		g->open = true;
		cs[m++] = &g->ch;
	}
	if (!m)
		return 0;
	secs = (double)(deadline - vmm_now_ns()) / 1e9;
	r = vmm_chan_hello(cs, m, "host", deadline);
	if (r) {
		for (i = 0; i < n; i++) {
			struct vmm_guest *g = gs[i];

			if (!g || g->ch.hello_ok)
				continue;
			if (g->open) {
				vmm_chan_close(&g->ch);
				g->open = false;
			}
			if (r != -2)
				guest_fail(g, true, "%s: %s channel %s: %s",
					   g->vm, g->peer, g->endpoint,
					   g->ch.errmsg);
			else if (!strcmp(g->peer, "guest"))
				guest_fail(g, true, "%s: no HELLO answer from ninja.ko on %s (module not loaded, or the port is not org.ninja.0?)",
					   g->vm, g->endpoint);
			else
				guest_fail(g, true, "%s %s did not answer HELLO within %.1f s",
					   g->peer, g->vm, secs);
		}
		return r;
	}
	/* The HELLO answers stay queued: digest them (request NONE). */
	for (i = 0; i < n; i++) {
		if (!gs[i])
			continue;
		snprintf(gs[i]->phase, sizeof(gs[i]->phase), "%s",
			 gs[i]->ch.node_phase);
		gs[i]->ranks = gs[i]->ch.node_ranks;
		take_all(gs[i], REQ_NONE);
	}
	return 0;
}

uint32_t vmm_guests_max_epoch(struct vmm_guest **gs, int n)
{
	uint32_t e = 0;
	int i;

	for (i = 0; i < n; i++)
		if (gs[i] && ninja_epoch_after(gs[i]->ch.node_epoch, e))
			e = gs[i]->ch.node_epoch;
	return e;
}

/* Send the request to every guest and wait until all are done. */
static int group_request(struct vmm_guest **gs, int n, uint32_t epoch,
			 enum req req, int64_t deadline)
{
	struct vmm_chan *cs[n > 0 ? n : 1];
	int64_t next_status;
	int i;

	for (i = 0; i < n; i++) {
		struct vmm_guest *g = gs[i];
		int r;

		cs[i] = g && !g->lost ? &g->ch : NULL;
		if (!g)
			continue;
		g->done = false;
		if (g->lost)
			continue;
		if (req != REQ_STATUS) {
			g->epoch = epoch;
			g->unsafe = g->cancelled = false;
			g->failed = g->rejected = false;
			g->errmsg[0] = '\0';
			g->t_done = 0;
			g->done_ranks = 0;
		}
		if (req == REQ_RESUME || req == REQ_CANCEL) {
			/* Keep the quiesce's REPORTs? No: a new epoch phase. */
			vmm_guest_clear_reports(g);
			g->n_resumed_tcp = g->n_upgraded = 0;
			g->app_stall_us = g->upgrade_stall_us = -1;
			g->t_upgraded = 0;
		}
		g->t_sent = vmm_now_ns();
		if (req == REQ_QUIESCE)
			r = vmm_guest_send(g, deadline, "QUIESCE %u", epoch);
		else if (req == REQ_CANCEL)
			r = vmm_guest_send(g, deadline, "CANCEL %u", epoch);
		else if (req == REQ_STATUS)
			r = vmm_guest_send(g, deadline, "STATUS");
		else if (g->rails[0])
			r = vmm_guest_send(g, deadline, "RESUME %u rails=%s",
					   epoch, g->rails);
		else
			r = vmm_guest_send(g, deadline, "RESUME %u", epoch);
		if (r)
			cs[i] = NULL;
	}
	next_status = vmm_now_ns() + STATUS_EVERY_NS;
	for (;;) {
		bool all = true, any_failed = false;
		int64_t now, until;
		int r;

		for (i = 0; i < n; i++) {
			if (!gs[i])
				continue;
			if (cs[i])
				take_all(gs[i], req);
			if (gs[i]->lost)
				cs[i] = NULL;	/* do not poll a dead socket */
			/* A refused request does not stop a STATUS. */
			if (req == REQ_STATUS ? gs[i]->lost : gs[i]->failed)
				any_failed = true;
			else if (!gs[i]->done)
				all = false;
		}
		/* A failed guest does not stop the others: a RESUME or a
		 * CANCEL must reach every guest that can still take it.  A
		 * drain is hopeless at once, though. */
		if (any_failed && (all || req == REQ_QUIESCE ||
				   req == REQ_STATUS))
			return -1;
		if (all)
			return 0;
		now = vmm_now_ns();
		if (now >= deadline)
			return -2;
		if (now >= next_status && req != REQ_STATUS) {
			for (i = 0; i < n; i++)
				if (gs[i] && !gs[i]->done && !gs[i]->failed)
					vmm_guest_send(gs[i], deadline, "STATUS");
			next_status = now + STATUS_EVERY_NS;
		}
		until = deadline < next_status ? deadline : next_status;
		r = vmm_chan_wait(cs, n, until);
		if (r == -1) {
			for (i = 0; i < n; i++)
				if (gs[i] && !gs[i]->done)
					guest_fail(gs[i], true, "%s: poll error",
						   gs[i]->vm);
			return -1;
		}
	}
}

int vmm_guests_quiesce(struct vmm_guest **gs, int n, uint32_t epoch,
		       int64_t deadline)
{
	return group_request(gs, n, epoch, REQ_QUIESCE, deadline);
}

int vmm_guests_finish(struct vmm_guest **gs, int n, uint32_t epoch,
		      bool cancel, int64_t deadline)
{
	return group_request(gs, n, epoch, cancel ? REQ_CANCEL : REQ_RESUME,
			     deadline);
}

int vmm_guests_status(struct vmm_guest **gs, int n, int64_t deadline)
{
	/* Each guest keeps its request's epoch (not sent with STATUS). */
	return group_request(gs, n, 0, REQ_STATUS, deadline);
}

int vmm_guests_pump(struct vmm_guest **gs, int n, int64_t until)
{
	struct vmm_chan *cs[n > 0 ? n : 1];
	int i, r = 0;

	for (i = 0; i < n; i++)
		cs[i] = gs[i] && gs[i]->open && !gs[i]->ch.eof ? &gs[i]->ch : NULL;
	for (;;) {
		int w;

		for (i = 0; i < n; i++) {
			if (!cs[i])
				continue;
			take_all(gs[i], REQ_NONE);
			if (gs[i]->failed) {
				r = -1;
				cs[i] = NULL;
			}
		}
		if (vmm_now_ns() >= until)
			return r;
		w = vmm_chan_wait(cs, n, until);
		if (w == -2)
			continue;
		if (w == -1)
			return -1;
		/* Every channel at EOF or none left: do not spin. */
		for (i = 0; i < n && !cs[i]; i++)
			;
		if (i == n) {
			int64_t left = until - vmm_now_ns();

			if (left > 0)
				poll(NULL, 0, (int)(left / 1000000) + 1);
			return r;
		}
	}
}

int vmm_guest_wait_link(struct vmm_guest *g, int64_t deadline)
{
	struct vmm_guest *gs[1] = { g };

	while (!g->t_link) {
		int64_t until = vmm_now_ns() + 100000000;

		if (vmm_now_ns() >= deadline)
			return -2;
		if (vmm_guests_pump(gs, 1, until < deadline ? until : deadline))
			return -1;
	}
	return 0;
}
