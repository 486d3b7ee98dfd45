// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_guest.c - group QUIESCE / RESUME / CANCEL over guest channels (see
 * vmm_guest.h and docs/protocol.md sections 3, 6 and 9).
 */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm_guest.h"

#define STATUS_EVERY_NS	1000000000LL

enum req { REQ_NONE, REQ_QUIESCE, REQ_RESUME, REQ_CANCEL };

void vmm_guest_init(struct vmm_guest *g, const char *vm, bool verbose)
{
	memset(g, 0, sizeof(*g));
	snprintf(g->vm, sizeof(g->vm), "%s", vm);
	g->verbose = verbose;
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
}

void vmm_guest_close(struct vmm_guest *g)
{
	if (g->open)
		vmm_chan_close(&g->ch);
	g->open = false;
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
		vmm_log("%s: warning: ignoring a line from the guest longer than %d bytes",
			g->vm, NINJA_LINE_MAX - 1);
		return;
	}
	err = ninja_parse_line(l->s, l->len, &m);
	if (err == NINJA_EEMPTY)
		return;
	if (err) {
		g->n_bad++;
		snprintf(g->last_bad, sizeof(g->last_bad), "%.120s", l->s);
		vmm_log("%s: warning: ignoring malformed line from the guest (%s): '%.120s'",
			g->vm, ninja_err_name(err), l->s);
		return;
	}
	switch (m.verb) {
	case NINJA_V_HELLO:
		/* Repeated HELLO answers: keep what they say. */
		if (!ninja_msg_get_u64(&m, "epoch", &v) && v <= UINT32_MAX)
			g->ch.node_epoch = (uint32_t)v;
		break;
	case NINJA_V_SAFE:
		if (req == REQ_QUIESCE && m.epoch == g->epoch) {
			g->done = true;
			g->unsafe = false;
			g->t_done = vmm_now_ns();
			if (!ninja_msg_get_u64(&m, "ranks", &v))
				g->ranks = (unsigned int)v;
		}
		break;
	case NINJA_V_UNSAFE:
		if (m.epoch == g->epoch) {
			size_t jl = 0, rl = 0;
			const char *j = ninja_msg_get(&m, "job", &jl);
			const char *r = ninja_msg_get(&m, "rank", &rl);

			g->unsafe = true;
			if (req == REQ_QUIESCE)
				g->done = false;
			vmm_log("%s: guest is no longer SAFE for epoch %u (job %.*s rank %.*s)",
				g->vm, g->epoch, (int)jl, j ? j : "?", (int)rl,
				r ? r : "?");
		}
		break;
	case NINJA_V_RESUMED:
		if ((req == REQ_RESUME || req == REQ_CANCEL) &&
		    m.epoch == g->epoch) {
			g->done = true;
			g->t_done = vmm_now_ns();
			if (!ninja_msg_get_u64(&m, "ranks", &v))
				g->ranks = (unsigned int)v;
			if (!ninja_msg_get_u64(&m, "cancelled", &v))
				g->cancelled = v != 0;
		}
		break;
	case NINJA_V_REPORT:
		if (m.epoch == g->epoch)
			report_stats(g, &m);
		if (m.epoch == g->epoch &&
		    g->nreports < VMM_GUEST_MAX_REPORTS) {
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
	case NINJA_V_STATUS: {
		size_t pl = 0;
		const char *ph = ninja_msg_get(&m, "phase", &pl);
		uint64_t e = 0;

		snprintf(g->status, sizeof(g->status), "%s", l->s);
		if (ninja_msg_get_u64(&m, "epoch", &e) || !ph)
			break;
		if (e <= UINT32_MAX &&
		    ninja_epoch_after((uint32_t)e, g->ch.node_epoch))
			g->ch.node_epoch = (uint32_t)e;
		if (!ninja_msg_get_u64(&m, "ranks", &v))
			g->ranks = (unsigned int)v;
		if (e != g->epoch || g->done)
			break;
		if (req == REQ_QUIESCE && pl == 4 && !memcmp(ph, "safe", 4)) {
			g->done = true;
			g->t_done = vmm_now_ns();
		} else if ((req == REQ_RESUME || req == REQ_CANCEL) &&
			   pl == 7 && !memcmp(ph, "running", 7)) {
			/* The RESUMED line was lost; REPORTs may be too. */
			g->done = true;
			g->t_done = vmm_now_ns();
			if (!ninja_msg_get_u64(&m, "cancelled", &v))
				g->cancelled = v != 0;
		}
		break;
	}
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
		if (req != REQ_NONE && !g->done) {
			g->failed = true;
			snprintf(g->errmsg, sizeof(g->errmsg),
				 "%s: the guest refused the request: %s",
				 g->vm, l->s);
		} else {
			vmm_log("%s: guest says: %s", g->vm, l->s);
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
	if (g->ch.eof && !g->failed) {
		g->failed = true;
		snprintf(g->errmsg, sizeof(g->errmsg),
			 "%s: guest channel %s closed: %s", g->vm, g->endpoint,
			 g->ch.errmsg[0] ? g->ch.errmsg : "connection closed");
	}
}

int vmm_guests_open(struct vmm_guest **gs, int n, int64_t deadline)
{
	struct vmm_chan *cs[n > 0 ? n : 1];
	int i, r, m = 0;

	for (i = 0; i < n; i++) {
		struct vmm_guest *g = gs[i];

		if (!g || g->open)
			continue;
		g->failed = false;
		g->errmsg[0] = '\0';
		r = vmm_chan_open(&g->ch, g->endpoint, deadline);
		g->ch.verbose = g->verbose;
		if (r) {
			g->failed = true;
			snprintf(g->errmsg, sizeof(g->errmsg),
				 "%s: guest channel: %s", g->vm, g->ch.errmsg);
			return r;
		}
		g->ch.verbose = g->verbose;
		/* Log and error lines name the VM; the endpoint is known. */
		snprintf(g->ch.name, sizeof(g->ch.name), "%s guest", g->vm);
		g->open = true;
		cs[m++] = &g->ch;
	}
	if (!m)
		return 0;
	r = vmm_chan_hello(cs, m, "host", deadline);
	if (r) {
		for (i = 0; i < n; i++) {
			struct vmm_guest *g = gs[i];

			if (!g || g->ch.hello_ok)
				continue;
			g->failed = true;
			if (g->open) {
				vmm_chan_close(&g->ch);
				g->open = false;
			}
			snprintf(g->errmsg, sizeof(g->errmsg),
				 r == -2 ? "%s: no HELLO answer from ninja.ko on %s (module not loaded, or the port is not org.ninja.0?)" :
				 "%s: guest channel %s: %s", g->vm, g->endpoint,
				 g->ch.errmsg);
		}
		return r;
	}
	/* The HELLO answers stay queued: digest them (request NONE). */
	for (i = 0; i < n; i++)
		if (gs[i])
			take_all(gs[i], REQ_NONE);
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

		cs[i] = g ? &g->ch : NULL;
		if (!g)
			continue;
		g->epoch = epoch;
		g->done = g->failed = g->unsafe = g->cancelled = false;
		g->errmsg[0] = '\0';
		g->t_done = 0;
		if (req != REQ_QUIESCE) {
			/* Keep the quiesce's REPORTs? No: a new epoch phase. */
			vmm_guest_clear_reports(g);
			g->n_resumed_tcp = g->n_upgraded = 0;
			g->app_stall_us = g->upgrade_stall_us = -1;
			g->t_upgraded = 0;
		}
		g->t_sent = vmm_now_ns();
		if (req == REQ_QUIESCE)
			r = vmm_chan_send(&g->ch, deadline, "QUIESCE %u", epoch);
		else if (req == REQ_CANCEL)
			r = vmm_chan_send(&g->ch, deadline, "CANCEL %u", epoch);
		else if (g->rails[0])
			r = vmm_chan_send(&g->ch, deadline, "RESUME %u rails=%s",
					  epoch, g->rails);
		else
			r = vmm_chan_send(&g->ch, deadline, "RESUME %u", epoch);
		if (r) {
			g->failed = true;
			snprintf(g->errmsg, sizeof(g->errmsg), "%s: %s", g->vm,
				 g->ch.errmsg);
		}
	}
	next_status = vmm_now_ns() + STATUS_EVERY_NS;
	for (;;) {
		bool all = true, any_failed = false;
		int64_t now, until;
		int r;

		for (i = 0; i < n; i++) {
			if (!gs[i])
				continue;
			take_all(gs[i], req);
			if (gs[i]->failed)
				any_failed = true;
			else if (!gs[i]->done)
				all = false;
		}
		/* A failed guest does not stop the others: a RESUME or a
		 * CANCEL must reach every guest that can still take it.  A
		 * drain is hopeless at once, though. */
		if (any_failed && (all || req == REQ_QUIESCE))
			return -1;
		if (all)
			return 0;
		now = vmm_now_ns();
		if (now >= deadline)
			return -2;
		if (now >= next_status) {
			for (i = 0; i < n; i++)
				if (gs[i] && !gs[i]->done &&
				    vmm_chan_send(&gs[i]->ch, deadline, "STATUS")) {
					gs[i]->failed = true;
					snprintf(gs[i]->errmsg,
						 sizeof(gs[i]->errmsg), "%s: %s",
						 gs[i]->vm, gs[i]->ch.errmsg);
				}
			next_status = now + STATUS_EVERY_NS;
		}
		until = deadline < next_status ? deadline : next_status;
		r = vmm_chan_wait(cs, n, until);
		if (r == -1) {
			for (i = 0; i < n; i++)
				if (gs[i] && !gs[i]->done) {
					gs[i]->failed = true;
					snprintf(gs[i]->errmsg,
						 sizeof(gs[i]->errmsg),
						 "%s: poll error", gs[i]->vm);
				}
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
