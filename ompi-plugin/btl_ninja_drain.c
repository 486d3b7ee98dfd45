/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_drain.c - the migration cycle, run by the control thread:
 *
 *   QUIESCE e -> drain (markers) -> teardown -> SAFE e -> wait
 *   RESUME e  -> rediscover -> republish -> reconnect -> RESUMED e
 *
 * The drain is a Chandy-Lamport marker exchange per connection: finish the
 * frame being written, send MARKER(e), read until the peer's MARKER(e).
 * Connections are FIFO, so once both markers have passed nothing of this
 * epoch is in flight on that connection, and closing it loses nothing.
 * A rank that sees a marker (or a NACK in a handshake) for an epoch newer
 * than its own enters the drain at once, before its agent says so.
 * See docs/design.md for the argument and the failure cases.
 */
#include "opal_config.h"

#include <stdio.h>
#include <string.h>

#include "btl_ninja_thread.h"
#include "ninja_proto.h"

/* The cycle's control-thread-only state. */
static struct {
	uint32_t quiesce_epoch;		/* last QUIESCE from the agent */
	bool safe_sent;
	bool resume_pending;
	bool report_pending;		/* RESUMED owed after reconnect */
	bool publish_pending;		/* this epoch's address not out yet */
	bool drain_warned;
	unsigned int nomarker_told;	/* no-drain-marker shown (once) */
	uint64_t reconnect_deadline;
	uint64_t resume_at;		/* RESUME arrived (wait mode) */
	uint64_t link_wait_us;		/* wait mode: RESUME held for the port */
	char rails_hint[64];
} T;

/* Lock held: this connection takes part in the drain of epoch. */
static void marker_arm(mca_btl_ninja_endpoint_t *ep, uint32_t epoch)
{
	NINJA_ASSERT_LOCKED();

	ep->endpoint_was_connected = true;
	ep->endpoint_marker_sent = false;
	ep->endpoint_marker_off = 0;
	memset(&ep->endpoint_marker, 0, sizeof(ep->endpoint_marker));
	ep->endpoint_marker.type = NINJA_FRAME_MARKER;
	ep->endpoint_marker.epoch = epoch;
}

/* Lock held. */
void mca_btl_ninja_drain_start(uint32_t epoch, const char *why)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	NINJA_ASSERT_LOCKED();
	if (c->state != NINJA_RUNNING || epoch <= c->epoch)
		return;
	memset(&c->cycle, 0, sizeof(c->cycle));
	c->cycle.epoch = epoch;
	c->cycle.t_start = mca_btl_ninja_now_ns();
	snprintf(c->cycle.rail, sizeof(c->cycle.rail), "%.7s", c->my_addr.rail);
	c->epoch = epoch;
	c->state = NINJA_DRAINING;
	c->in_cycle = 1;
	T.safe_sent = false;
	T.resume_pending = false;
	T.drain_warned = false;
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		ep->endpoint_was_connected = false;
		c->cycle.frags_held += ep->endpoint_sq_len;
		switch (ep->endpoint_state) {
		case NINJA_EP_CONNECTED:
			marker_arm(ep, epoch);
			break;
		case NINJA_EP_CONNECTING:
			/* No HELLO went out: nothing can be in flight. */
			mca_btl_ninja_endpoint_close(ep);
			break;
		default:
			/* HELLO: wait for the answer, then drain it. */
			break;
		}
	}
	mca_btl_ninja_upgrade_drain_start();
	NINJA_VERBOSE(20, "btl:ninja: drain epoch %u started (%s)", epoch, why);
}

/*
 * Lock held: one connection's drain: our marker out after the last frame
 * begun, the peer's in.  True when both passed (and the rail is quiet).
 */
static bool drain_rail(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *r = ep->endpoint_rail;

	if (r->progress)
		(void)r->progress(false);
	if (!ep->endpoint_marker_sent &&
	    mca_btl_ninja_endpoint_flush(ep, false, true) < 0) {
		/*
		 * The connection died: nothing more can arrive on it.  It
		 * counts as drained; what the peer did not acknowledge is
		 * replayed after the resume.
		 */
		NINJA_VERBOSE(10, "btl:ninja: rank %u: connection to %u.%u "
			      "failed in the drain of epoch %u (counted as "
			      "drained, unacknowledged frames replayed after "
			      "the resume)", OPAL_PROC_MY_NAME.vpid,
			      ep->endpoint_name.jobid,
			      ep->endpoint_name.vpid, c->epoch);
		ep->endpoint_marker_sent = true;
		ep->endpoint_marker_rcvd = c->epoch;
	}
	if (r->progress) {
		/* The rail reads its own completions (the peer's marker). */
		(void)r->progress(false);
	} else if (r->recv && ep->endpoint_marker_rcvd < c->epoch &&
		   r->recv(ep, false) < 0 &&
		   ep->endpoint_marker_rcvd < c->epoch) {
		if (!T.nomarker_told++)
			mca_btl_ninja_help("no-drain-marker",
					   opal_process_info.nodename,
					   OPAL_PROC_MY_NAME.vpid,
					   ep->endpoint_name.jobid,
					   ep->endpoint_name.vpid, c->epoch);
		else
			NINJA_VERBOSE(1, "btl:ninja: peer %u.%u closed its "
				      "connection without a drain marker "
				      "(epoch %u)", ep->endpoint_name.jobid,
				      ep->endpoint_name.vpid, c->epoch);
		ep->endpoint_marker_rcvd = c->epoch;
	}
	return ep->endpoint_marker_sent &&
	       (!r->quiet || r->quiet(ep)) &&
	       ep->endpoint_marker_rcvd >= c->epoch;
}

/* Lock held.  Move drain bytes; returns true when every marker passed. */
static bool drain_step(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool done = true;
	int i;

	NINJA_ASSERT_LOCKED();
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_state == NINJA_EP_HELLO) {
			done = false;
			continue;
		}
		if (ep->endpoint_state != NINJA_EP_CONNECTED)
			continue;
		if (!ep->endpoint_was_connected) {
			/* Connected during the drain (late ACK): drain it too. */
			marker_arm(ep, c->epoch);
		}
		/* A live upgrade half-way: finish it or give it up. */
		mca_btl_ninja_upgrade_drain(ep);
		if (!mca_btl_ninja_ep_ready(ep)) {
			/* READY still on its way on the TCP socket. */
			(void)mca_btl_ninja_rail_tcp.recv(ep, false);
			if (!mca_btl_ninja_ep_ready(ep)) {
				done = false;
				continue;
			}
		}
		if (!drain_rail(ep))
			done = false;
	}
	return done;
}

/* Lock held: close everything, the drain is complete. */
static void teardown(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	NINJA_ASSERT_LOCKED();
	c->cycle.t_drained = mca_btl_ninja_now_ns();
	for (i = 0; i < c->neps; i++)
		if (c->eps[i]->endpoint_state != NINJA_EP_CLOSED)
			mca_btl_ninja_endpoint_close(c->eps[i]);
	if (c->rail) {
		/* Every endpoint's state is gone: release the device (an HCA
		 * can then be unplugged). */
		c->rail->close();
		c->rail = NULL;
	}
	c->cycle.t_closed = mca_btl_ninja_now_ns();
	c->state = NINJA_DRAINED;
	NINJA_VERBOSE(20, "btl:ninja: epoch %u drained (%llu frames deferred)",
		      c->epoch, (unsigned long long)c->cycle.frames_deferred);
}

/*
 * Lock held: RESUME or CANCEL came while markers are still outstanding (a
 * peer that cannot answer: stopped, in a compute loop on a busy node, on
 * a node that never got the QUIESCE).  Waiting would hold this rank, and
 * through it the job, for as long as that peer is stuck.  Closing a
 * connection with data unread loses nothing: every DATA frame stays in
 * its sender's replay queue until acknowledged, is sent again on the next
 * connection and a duplicate is dropped by its sequence number (the same
 * path as a connection that dies in a drain).
 */
static void drain_abandon(const char *why)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i, waiting = 0;

	NINJA_ASSERT_LOCKED();
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_state == NINJA_EP_HELLO ||
		    (ep->endpoint_state == NINJA_EP_CONNECTED &&
		     (!ep->endpoint_marker_sent ||
		      ep->endpoint_marker_rcvd < c->epoch)))
			waiting++;
	}
	NINJA_VERBOSE(1, "btl:ninja: rank %u: %s of epoch %u during its drain: "
		      "%d connection(s) without both markers closed, "
		      "unacknowledged frames replayed after the resume",
		      OPAL_PROC_MY_NAME.vpid, why, c->epoch, waiting);
	teardown();
}

static void maybe_send_safe(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	if (c->state == NINJA_DRAINED && !T.safe_sent &&
	    T.quiesce_epoch == c->epoch && mca_btl_ninja_ctl_fd() >= 0) {
		c->cycle.t_safe = mca_btl_ninja_now_ns();
		mca_btl_ninja_ctl_send("SAFE %u", c->epoch);
		T.safe_sent = true;
	}
}

/*
 * Resume: rediscover the rails, republish, go back to RUNNING, and start
 * reconnecting the peers we had (the lower-named side initiates, so each
 * pair makes exactly one connection).  RESUMED is sent when those
 * connections are up (or the connect timeout passed).
 */
static void do_resume(bool cancelled, bool timed_out)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	mca_btl_ninja_addr_t addr;
	char desc[256];
	uint64_t now, t0, t1, t2;
	int i;

	mca_btl_ninja_upgrade_reset(T.rails_hint);
	mca_btl_ninja_lock();
	c->cycle.t_resume = mca_btl_ninja_now_ns();
	c->cycle.cancelled = cancelled;
	c->cycle.timed_out = timed_out;
	c->state = NINJA_RESUMING;
	mca_btl_ninja_unlock();

	t0 = mca_btl_ninja_now_ns();
	memset(&addr, 0, sizeof(addr));
	if (mca_btl_ninja_tcp_discover(&addr, desc, sizeof(desc)) ==
	    OPAL_SUCCESS && addr.naddr > 0) {
		memcpy(c->my_addr.ip, addr.ip, sizeof(addr.ip));
		c->my_addr.naddr = addr.naddr;
	} else {
		mca_btl_ninja_help("no-interface-after-resume",
				   opal_process_info.nodename, me.vpid, desc);
	}
	NINJA_VERBOSE(10, "btl:ninja: epoch %u: tcp rail on %s", c->epoch, desc);
	t1 = mca_btl_ninja_now_ns();
	mca_btl_ninja_lock();
	mca_btl_ninja_rails_select(T.rails_hint);
	snprintf(c->cycle.rail, sizeof(c->cycle.rail), "%.7s", c->my_addr.rail);
	mca_btl_ninja_unlock();
	t2 = mca_btl_ninja_now_ns();
	NINJA_VERBOSE(10, "btl:ninja: rank %u epoch %u rediscovery: interfaces "
		      "%.0f us, rails %.0f us", me.vpid, c->epoch, mca_btl_ninja_us(t0, t1),
		      mca_btl_ninja_us(t1, t2));
	/*
	 * The new address is published after the first connection attempts
	 * have gone out (publish_later): peers reach us at the addresses
	 * they knew, and only one whose old address fails needs it.
	 */
	T.publish_pending = true;

	mca_btl_ninja_lock();
	now = mca_btl_ninja_now_ns();
	c->cycle.t_published = now;
	c->state = NINJA_RUNNING;
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		ep->endpoint_addr_try = 0;
		ep->endpoint_retry_at = now;
		ep->endpoint_conn_start = 0;
		if (ep->endpoint_state != NINJA_EP_CLOSED)
			continue;
		if (ep->endpoint_failed_at)
			ep->endpoint_failed_at = now;	/* the drain does not count */
		if (ep->endpoint_sq_head || ep->endpoint_rt_head ||
		    (ep->endpoint_was_connected &&
		     mca_btl_ninja_name_cmp(me, ep->endpoint_name) < 0))
			ep->endpoint_want_connect = true;
		/*
		 * The higher-named side of a pair that was connected has
		 * frames to send: its peer reconnects to it anyway; connect
		 * only if that has not happened within 50 ms (two attempts at
		 * once cost a NACK and a retry on a busy guest).
		 */
		if (ep->endpoint_want_connect && ep->endpoint_was_connected &&
		    mca_btl_ninja_name_cmp(me, ep->endpoint_name) > 0)
			ep->endpoint_retry_at = now + NINJA_RACE_WAIT_NS;
	}
	if (c->dq_head || c->cq_head)
		c->app_work = 1;
	mca_btl_ninja_unlock();
	T.report_pending = true;
	T.reconnect_deadline = now + (uint64_t)c->connect_timeout * NINJA_MS_NS;
	T.safe_sent = false;
}

/* Control thread, no lock: this epoch's address out to PMIx. */
void mca_btl_ninja_publish_later(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t t;

	if (!T.publish_pending)
		return;
	T.publish_pending = false;
	t = mca_btl_ninja_now_ns();
	(void)mca_btl_ninja_publish(c->epoch, true);
	NINJA_VERBOSE(10, "btl:ninja: rank %u epoch %u published its address "
		      "(%.0f us)", OPAL_PROC_MY_NAME.vpid, c->epoch,
		      mca_btl_ninja_us(t, mca_btl_ninja_now_ns()));
}

static void check_reconnected(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	bool done = true;
	int i;

	if (!T.report_pending || c->state != NINJA_RUNNING)
		return;
	mca_btl_ninja_lock();
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_was_connected &&
		    mca_btl_ninja_name_cmp(me, ep->endpoint_name) < 0 &&
		    ep->endpoint_state != NINJA_EP_CONNECTED)
			done = false;
	}
	if (!done && mca_btl_ninja_now_ns() < T.reconnect_deadline) {
		mca_btl_ninja_unlock();
		return;
	}
	c->cycle.t_reconnected = mca_btl_ninja_now_ns();
	mca_btl_ninja_unlock();
	T.report_pending = false;
	c->in_cycle = 0;
	mca_btl_ninja_report_cycle(T.link_wait_us);
	T.link_wait_us = 0;
}

/* ---------------------------------------------------------------------
 * The agent's commands (parsed by btl_ninja_ctl.c)
 */

void mca_btl_ninja_agent_msg(const struct ninja_msg *m, const char *line,
			     size_t len)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const char *v;
	size_t vlen;

	switch (m->verb) {
	case NINJA_V_QUIESCE:
		T.quiesce_epoch = m->epoch;
		mca_btl_ninja_lock();
		if (c->state == NINJA_RUNNING && m->epoch > c->epoch)
			mca_btl_ninja_drain_start(m->epoch, "agent");
		else if (c->state == NINJA_RUNNING)
			/* We already went through this epoch. */
			mca_btl_ninja_ctl_send("RESUMED %u rail=%s stale=1", m->epoch,
				 c->my_addr.rail);
		maybe_send_safe();
		mca_btl_ninja_unlock();
		break;
	case NINJA_V_RESUME:
	case NINJA_V_CANCEL:
		v = ninja_msg_get(m, "rails", &vlen);
		snprintf(T.rails_hint, sizeof(T.rails_hint), "%.*s",
			 v ? (int)vlen : 0, v ? v : "");
		if (m->epoch != c->epoch) {
			NINJA_ERROR("btl:ninja: %s %u but our epoch is %u",
				    ninja_verb_name(m->verb), m->epoch, c->epoch);
			mca_btl_ninja_ctl_send("RESUMED %u rail=%s stale=1", m->epoch,
				 c->my_addr.rail);
			break;
		}
		if (!T.resume_pending)
			T.resume_at = mca_btl_ninja_now_ns();
		if (c->state == NINJA_DRAINING) {
			mca_btl_ninja_lock();
			drain_abandon(ninja_verb_name(m->verb));
			mca_btl_ninja_unlock();
		}
		if (c->state == NINJA_DRAINED && (m->verb == NINJA_V_CANCEL ||
		    !mca_btl_ninja_upgrade_hold_resume(T.rails_hint, T.resume_at))) {
			do_resume(m->verb == NINJA_V_CANCEL, false);
		} else if (c->state == NINJA_DRAINED) {
			/* btl_ninja_upgrade=wait: the loop resumes once the
			 * site's RDMA port is ACTIVE (or the wait ends). */
			T.resume_pending = true;
			NINJA_VERBOSE(10, "btl:ninja: RESUME %u: waiting for an ACTIVE RDMA port "
				      "(btl_ninja_upgrade=wait)", m->epoch);
		} else if (c->state == NINJA_RUNNING && !T.report_pending) {
			mca_btl_ninja_ctl_send("RESUMED %u rail=%s stale=1", m->epoch,
				 c->my_addr.rail);
		}
		break;
	case NINJA_V_EVENT: {
		char kind[32];

		NINJA_VERBOSE(10, "btl:ninja: device event: %.*s", (int)len, line);
		/*
		 * The guest module saw our RDMA device go (or its port): the
		 * device may say nothing itself (rxe), and the kernel waits
		 * for us to close it before the NIC can be removed.
		 */
		v = ninja_msg_get(m, "dev", &vlen);
		if (m->npos >= 3 && v &&
		    ((m->tok[2].len == 6 && !memcmp(m->tok[2].p, "ib-del", 6)) ||
		     (m->tok[2].len == 9 && !memcmp(m->tok[2].p, "port-down", 9)))) {
			char why[96];

			mca_btl_ninja_lock();
			if (c->rail && c->rail->is_device &&
			    c->rail->is_device(v, vlen)) {
				snprintf(why, sizeof(why), "control channel: %.*s %.*s",
					 (int)m->tok[2].len, m->tok[2].p, (int)vlen, v);
				mca_btl_ninja_rail_fail(why);
			}
			mca_btl_ninja_unlock();
		}
		snprintf(kind, sizeof(kind), "%.*s", (int)m->tok[2].len, m->tok[2].p);
		mca_btl_ninja_upgrade_event(kind, m->num);
		break;
	}
	default:
		break;
	}
}

/* ---------------------------------------------------------------------
 * The cycle's part of the control thread's loop
 */

/* When the loop must run again for the cycle (next: its own deadline). */
uint64_t mca_btl_ninja_cycle_next(uint64_t now, uint64_t next)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int ms;

	if (T.report_pending && next > now + NINJA_MS_NS)
		next = now + NINJA_MS_NS;
	ms = mca_btl_ninja_upgrade_timeout();
	if (ms < 0 && c->state == NINJA_DRAINED && T.resume_pending)
		ms = 100;	/* wait mode: try the port again */
	if (ms >= 0 && next > now + (uint64_t)ms * NINJA_MS_NS)
		next = now + (uint64_t)ms * NINJA_MS_NS;
	return next;
}

/* After the poll: start, advance or finish a drain. */
void mca_btl_ninja_drain_progress(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	/* A peer's marker seen by the application thread. */
	mca_btl_ninja_lock();
	if (c->state == NINJA_RUNNING && c->drain_request > c->epoch)
		mca_btl_ninja_drain_start(c->drain_request, "peer marker");
	if (c->state == NINJA_DRAINING && drain_step()) {
		teardown();
		maybe_send_safe();
	}
	if (c->state == NINJA_DRAINING && !T.drain_warned &&
	    mca_btl_ninja_now_ns() - c->cycle.t_start >
	    (uint64_t)c->drain_timeout * NINJA_SEC_NS) {
		mca_btl_ninja_help("drain-slow", opal_process_info.nodename,
				   OPAL_PROC_MY_NAME.vpid, c->epoch,
				   c->drain_timeout);
		T.drain_warned = true;
	}
	mca_btl_ninja_unlock();
}

/* After the poll: resume once drained (when told, or on our own). */
void mca_btl_ninja_resume_progress(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (c->state == NINJA_DRAINED) {
		if (!mca_btl_ninja_ctl_present()) {
			/* Nobody to ask: resume right away. */
			do_resume(true, false);
		} else if (T.resume_pending) {
			if (!T.resume_at)
				T.resume_at = mca_btl_ninja_now_ns();
			if (!mca_btl_ninja_upgrade_hold_resume(T.rails_hint,
							       T.resume_at)) {
				T.link_wait_us = (mca_btl_ninja_now_ns() -
						  T.resume_at) / NINJA_US_NS;
				do_resume(false, false);
			}
		} else if (mca_btl_ninja_now_ns() - c->cycle.t_closed >
			   (uint64_t)c->resume_timeout * NINJA_SEC_NS) {
			mca_btl_ninja_help("no-resume",
					   opal_process_info.nodename,
					   OPAL_PROC_MY_NAME.vpid, c->epoch,
					   c->resume_timeout);
			c->n_timeouts++;
			do_resume(true, true);
		}
	}
	check_reconnected();
}
