/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_upgrade.c - live upgrade of TCP connections to the fast rail
 * (btl_ninja_rail.h; today verbs) when an RDMA port becomes ACTIVE after
 * the resume (btl_ninja_upgrade =
 * live), with no drain and no VMM round trip; and the old behaviour
 * (btl_ninja_upgrade = wait: a RESUME whose rails= lists verbs waits for
 * the port).  docs/design.md "Live upgrade" gives the argument; the frames
 * are in btl_ninja_hdr.h and docs/protocol.md section 10.4.
 *
 * Per connection, the lower-named rank (I) initiates, the other (A)
 * answers:
 *
 *   I: QP created (INIT, receives posted); UPGRADE(info I) queued behind
 *      whatever I had queued.  Once it is written, I holds: new frames
 *      for A queue (rail verbs, not ready), nothing else goes on the TCP
 *      stream.
 *   A: reads UPGRADE after every earlier frame of I; QP to RTS against
 *      info I; ACK(info A) queued.  Once written, A holds the same way.
 *   I: reads ACK after every earlier frame of A; QP to RTS; READY(1) on
 *      TCP; from now on I's frames go on the QP.
 *   A: reads READY; from now on A's frames go on the QP.
 *
 * Each direction's TCP stream ends (UPGRADE, ACK) before its first frame
 * on the QP, and that frame can only be sent once the receiver's QP is
 * at RTR, so order is kept exactly and nothing is written twice.  The
 * frames queued during the hold leave in their order on the QP.  ACK with
 * an empty address block ("not now": no verbs here yet) ends I's hold on TCP; A
 * then sends UPGRADE_REQ when its own port comes up, and I starts again.
 *
 * Drains: an exchange whose frame is not on the wire yet is dropped (its
 * queued frame is recognised as stale by its epoch later); one whose
 * frame is partly or wholly written is finished inside the drain (the
 * drain waits for READY as for a new connection), or abandoned by I when
 * A's drain marker arrives instead of the ACK (A answers nothing once it
 * drains).  Both ends then drain the connection on the same rail.
 */
#include "opal_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "btl_ninja.h"

/* rxe: the port-active EVENT and ibv_query_port race by a few ms: the
 * device is tried again for this long after the event ... */
#define NINJA_PORT_RACE_NS	(2 * NINJA_SEC_NS)
/* ... every this often. */
#define NINJA_OPEN_RETRY_NS	(100 * NINJA_MS_NS)
/* Wait mode: how often the port is looked at while RESUME is held. */
#define NINJA_WAIT_POLL_NS	(500 * NINJA_MS_NS)

enum {
	UPG_NONE = 0,
	UPG_WANT,	/* I: start when the control thread runs */
	UPG_ASKED,	/* I: UPGRADE queued, not completely written */
	UPG_HOLD_ACK,	/* I: UPGRADE written, holding, waiting for ACK */
	UPG_GOT_ACK,	/* I: ACK read (endpoint_upg_peer), to connect */
	UPG_ANSWER,	/* A: UPGRADE read (endpoint_upg_peer), to answer */
	UPG_ANSWERED,	/* A: ACK queued, not completely written */
	UPG_HOLD_READY,	/* A: ACK written, holding, waiting for READY */
};

/* Control-thread state, plus counters written under the lock. */
static struct {
	bool event;		/* port-active seen, not acted upon yet */
	uint64_t event_t_ns;	/* its t_ns (guest CLOCK_MONOTONIC) */
	uint64_t event_at;	/* ns: when we read it */
	uint64_t retry_until;	/* ns: keep trying to open until then */
	uint64_t next_try;
	uint32_t gen;		/* device generation: one try per connection */
	uint64_t open_us;
	char hint[64];		/* rails= of the last RESUME */
	/* The round being reported (under the lock). */
	bool dirty;
	unsigned int upgraded, refused, failed;
	uint64_t stall_max_ns, stall_sum_ns, last_done;
	uint64_t wait_next;	/* wait mode: next open attempt */
	uint32_t warmed_gen;	/* warm_peers() done for this generation */
} U;

bool mca_btl_ninja_upgrade_live(void)
{
	const char *m = mca_btl_ninja_component.upgrade;

	return !m || strcmp(m, "wait") != 0;
}

void mca_btl_ninja_upgrade_event(const char *kind, uint64_t t_ns)
{
	if (strcmp(kind, "port-active") != 0)
		return;
	if (mca_btl_ninja_component.rail && U.event_at)
		return;		/* a repeat (rxe sends two), already acted upon */
	U.event = true;
	U.event_t_ns = t_ns;
	U.event_at = mca_btl_ninja_now_ns();
	/* rxe: the EVENT and ibv_query_port can race by a few ms. */
	U.retry_until = U.event_at + NINJA_PORT_RACE_NS;
	U.next_try = 0;
	U.wait_next = 0;
}

/* Queue a control frame for ep on its TCP stream (FIFO with the data). */
static int queue_ctl(mca_btl_ninja_endpoint_t *ep, uint8_t type,
		     const ninja_rail_addr_t *info)
{
	mca_btl_ninja_frag_t *f;
	ninja_rail_addr_t none;

	if (!info) {
		memset(&none, 0, sizeof(none));
		info = &none;
	}
	f = mca_btl_ninja_frag_copy(info, sizeof(*info), NULL, 0, 0);
	if (!f)
		return OPAL_ERR_OUT_OF_RESOURCE;
	f->hdr.type = type;
	/* endpoint_send stamps the frame with our epoch; when the frame is
	 * written at once, upgrade_sent() runs inside it. */
	ep->endpoint_upg_epoch = mca_btl_ninja_component.epoch;
	(void)mca_btl_ninja_endpoint_send(ep, f, false);
	return OPAL_SUCCESS;
}

static void done(mca_btl_ninja_endpoint_t *ep, bool verbs, const char *why)
{
	uint64_t now = mca_btl_ninja_now_ns();
	uint64_t stall = ep->endpoint_upg_t_hold ? now - ep->endpoint_upg_t_hold : 0;

	if (verbs) {
		U.upgraded++;
	} else if (!strcmp(why, "not now")) {
		U.refused++;
	} else {
		U.failed++;
	}
	if (stall > U.stall_max_ns)
		U.stall_max_ns = stall;
	U.stall_sum_ns += stall;
	U.last_done = now;
	U.dirty = true;
	ep->endpoint_upg = UPG_NONE;
	ep->endpoint_upg_t_hold = 0;
	NINJA_VERBOSE(10, "btl:ninja: rank %u: connection to %u.%u %s (%s, held %.0f us)",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid,
		      verbs ? "upgraded to verbs" : "stays on tcp", why,
		      stall / (double)NINJA_US_NS);
	if (!verbs && ep->endpoint_state == NINJA_EP_CONNECTED) {
		/* Back to TCP: whatever queued meanwhile leaves now. */
		mca_btl_ninja_rail_ep_close(ep);
		mca_btl_ninja_endpoint_update_out(ep);
	}
	mca_btl_ninja_wake();
}

/* Stop sending on TCP to ep: frames queue until its QP is usable. */
static void hold(mca_btl_ninja_endpoint_t *ep, int state)
{
	if (mca_btl_ninja_component.rail)
		ep->endpoint_rail = mca_btl_ninja_component.rail;
	ep->endpoint_rail_ready = false;
	ep->endpoint_upg = state;
	ep->endpoint_upg_t_hold = mca_btl_ninja_now_ns();
}

void mca_btl_ninja_upgrade_sent(mca_btl_ninja_frag_t *f)
{
	mca_btl_ninja_endpoint_t *ep = f->endpoint;

	if (!ep || f->hdr.epoch != ep->endpoint_upg_epoch)
		return;		/* a stale frame from before a drain */
	if (f->hdr.type == NINJA_FRAME_UPGRADE && ep->endpoint_upg == UPG_ASKED)
		hold(ep, UPG_HOLD_ACK);
	else if (f->hdr.type == NINJA_FRAME_UPGRADE_ACK &&
		 ep->endpoint_upg == UPG_ANSWERED)
		hold(ep, UPG_HOLD_READY);
}

void mca_btl_ninja_upgrade_frame(mca_btl_ninja_endpoint_t *ep,
				 const ninja_frame_hdr_t *hdr,
				 const void *payload, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	ninja_rail_addr_t info;

	/* Exactly one address block, its length bounded; else none. */
	memset(&info, 0, sizeof(info));
	if (hdr->len == sizeof(info))
		memcpy(&info, payload, sizeof(info));
	if (info.len > NINJA_RAIL_ADDR_MAX)
		memset(&info, 0, sizeof(info));
	NINJA_VERBOSE(20, "btl:ninja: upgrade frame %u (epoch %u, rail %u) from %u.%u",
		      hdr->type, hdr->epoch, info.rail, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid);
	switch (hdr->type) {
	case NINJA_FRAME_UPGRADE:
		/* Only in the epoch it was sent in, and never once we drain
		 * (the initiator then sees our marker and gives up). */
		if (hdr->epoch != c->epoch || c->state != NINJA_RUNNING ||
		    ep->endpoint_marker_rcvd > c->epoch)
			return;
		ep->endpoint_upg_peer = info;
		ep->endpoint_upg_epoch = hdr->epoch;
		ep->endpoint_upg_conn = ep->endpoint_connects;
		ep->endpoint_upg = UPG_ANSWER;
		mca_btl_ninja_wake();
		break;
	case NINJA_FRAME_UPGRADE_ACK:
		if (ep->endpoint_upg != UPG_HOLD_ACK ||
		    hdr->epoch != ep->endpoint_upg_epoch)
			return;
		if (info.rail == NINJA_RAIL_ID_NONE) {
			done(ep, false, "not now");
			return;
		}
		ep->endpoint_upg_peer = info;
		ep->endpoint_upg = UPG_GOT_ACK;
		mca_btl_ninja_wake();
		break;
	case NINJA_FRAME_UPGRADE_REQ:
		if (hdr->epoch != c->epoch || c->state != NINJA_RUNNING)
			return;
		/* Its address, for warm() if our device is not open yet. */
		if (info.rail != NINJA_RAIL_ID_NONE && ep->endpoint_upg == UPG_NONE)
			ep->endpoint_upg_peer = info;
		/* Try again with this peer at the next step. */
		ep->endpoint_upg_gen = U.gen - 1;
		mca_btl_ninja_wake();
		break;
	default:
		mca_btl_ninja_endpoint_bad_frame(ep, hdr->type);
		break;
	}
	(void)app;
}

void mca_btl_ninja_upgrade_ready(mca_btl_ninja_endpoint_t *ep)
{
	if (ep->endpoint_upg != UPG_HOLD_READY)
		return;		/* a new connection's READY */
	done(ep, !NINJA_EP_ON_TCP(ep) && ep->endpoint_rail_ready,
	     !NINJA_EP_ON_TCP(ep) ? "READY" : "peer's QP failed");
}

/* READY on the TCP stream; nothing else is written to it in a hold. */
static int send_ready(mca_btl_ninja_endpoint_t *ep, bool ok)
{
	ninja_frame_hdr_t h;
	ssize_t n;

	memset(&h, 0, sizeof(h));
	h.type = NINJA_FRAME_READY;
	h.flags = ok ? 1 : 0;
	h.epoch = ep->endpoint_upg_epoch;
	n = send(ep->endpoint_fd, &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof(h))
		return 0;
	/* The stream is empty in a hold (the peer has read up to our
	 * UPGRADE): a short write means the connection is broken. */
	return -1;
}

/* ep onto this epoch's fast rail against the peer's block. */
static bool rail_connect(mca_btl_ninja_endpoint_t *ep,
			 const ninja_rail_addr_t *peer)
{
	const ninja_rail_ops_t *r = mca_btl_ninja_component.rail;

	return r && ep->endpoint_rail_state &&
	       mca_btl_ninja_rail_addr_usable(peer) &&
	       r->connect(ep, peer) == OPAL_SUCCESS;
}

/* I, ACK read: QP to RTS, READY, frames go on the QP. */
static void finish_ack(mca_btl_ninja_endpoint_t *ep)
{
	uint64_t t0 = mca_btl_ninja_now_ns();
	bool ok = rail_connect(ep, &ep->endpoint_upg_peer);

	NINJA_VERBOSE(10, "btl:ninja: rank %u: ACK from %u.%u after %.1f ms of hold, QP %s in %.1f ms",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid,
		      (t0 - ep->endpoint_upg_t_hold) / (double)NINJA_MS_NS,
		      ok ? "at RTS" : "FAILED", (mca_btl_ninja_now_ns() - t0) / (double)NINJA_MS_NS);

	if (send_ready(ep, ok) != 0) {
		done(ep, false, "READY not sent");
		return;
	}
	if (!ok) {
		done(ep, false, "QP not connected");
		return;
	}
	ep->endpoint_rail = mca_btl_ninja_component.rail;
	ep->endpoint_rail_ready = true;
	done(ep, true, "ACK");
	/* What queued during the hold leaves now (not in a drain: there
	 * it waits for the resume like every queued frame). */
	if (mca_btl_ninja_component.state == NINJA_RUNNING)
		(void)mca_btl_ninja_endpoint_flush(ep, false, false);
}

/* A, UPGRADE read: QP to RTS against the initiator's, ACK. */
static void answer(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t t0 = mca_btl_ninja_now_ns();
	ninja_rail_addr_t mine;

	memset(&mine, 0, sizeof(mine));
	/* The QP made when our device opened (UPGRADE_REQ), else a new
	 * one; frames queued before the ACK still go on TCP, the hold
	 * starts once the ACK is written. */
	if (c->rail && NINJA_EP_ON_TCP(ep) &&
	    c->rail->addr_encode(ep, &mine, true) == OPAL_SUCCESS &&
	    !rail_connect(ep, &ep->endpoint_upg_peer))
		memset(&mine, 0, sizeof(mine));
	ep->endpoint_upg = mine.rail ? UPG_ANSWERED : UPG_NONE;
	if (!mine.rail)
		mca_btl_ninja_rail_ep_close(ep);
	if (queue_ctl(ep, NINJA_FRAME_UPGRADE_ACK, &mine) != OPAL_SUCCESS) {
		ep->endpoint_upg = UPG_NONE;
		mca_btl_ninja_rail_ep_close(ep);
	}
	NINJA_VERBOSE(10, "btl:ninja: rank %u: upgrade asked by %u.%u: %s (%.1f ms)",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid,
		      mine.rail ? "answered with our queue pair" :
		      "not now (no verbs rail here yet)",
		      (mca_btl_ninja_now_ns() - t0) / (double)NINJA_MS_NS);
}

/* I: QP, UPGRADE. */
static void initiate(mca_btl_ninja_endpoint_t *ep)
{
	ninja_rail_addr_t mine;

	if (mca_btl_ninja_component.rail->addr_encode(ep, &mine, false) !=
	    OPAL_SUCCESS) {
		ep->endpoint_upg = UPG_NONE;
		return;
	}
	ep->endpoint_upg = UPG_ASKED;
	ep->endpoint_upg_conn = ep->endpoint_connects;
	if (queue_ctl(ep, NINJA_FRAME_UPGRADE, &mine) != OPAL_SUCCESS) {
		ep->endpoint_upg = UPG_NONE;
		mca_btl_ninja_rail_ep_close(ep);
	}
	NINJA_VERBOSE(10, "btl:ninja: rank %u: upgrading the connection to %u.%u",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid);
}

/* Open the device after a port-active EVENT (unlocked: may take a while). */
static void try_open(const ninja_rail_ops_t *r)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t t0 = mca_btl_ninja_now_ns();
	char desc[128];

	if (r->open(desc, sizeof(desc)) != OPAL_SUCCESS) {
		if (t0 >= U.retry_until) {
			U.event = false;
			NINJA_VERBOSE(10, "btl:ninja: port-active, but no %s rail: %s",
				      r->name, desc);
		}
		U.next_try = t0 + NINJA_OPEN_RETRY_NS;
		return;
	}
	U.event = false;
	mca_btl_ninja_lock();
	c->rail = r;
	snprintf(c->my_addr.rail, sizeof(c->my_addr.rail), "%s", r->name);
	snprintf(c->rail_desc, sizeof(c->rail_desc), "%s", desc);
	U.gen++;
	U.open_us = (mca_btl_ninja_now_ns() - t0) / NINJA_US_NS;
	mca_btl_ninja_unlock();
	NINJA_VERBOSE(1, "btl:ninja: rank %u: %s rail on %s (live, %.0f ms after "
		      "port-active): upgrading tcp connections",
		      OPAL_PROC_MY_NAME.vpid, r->name, desc,
		      (mca_btl_ninja_now_ns() - U.event_at) / (double)NINJA_MS_NS);
}

static void report(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	unsigned int conns = 0, verbs = 0;
	char json[640], dev[32];
	double since;
	int i;

	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_state != NINJA_EP_CONNECTED)
			continue;
		conns++;
		if (!NINJA_EP_ON_TCP(ep) && ep->endpoint_rail_ready)
			verbs++;
	}
	snprintf(dev, sizeof(dev), "%.*s", (int)strcspn(c->rail_desc, " "), c->rail_desc);
	since = U.event_at && U.last_done > U.event_at ?
		(U.last_done - U.event_at) / (double)NINJA_US_NS : 0;
	snprintf(json, sizeof(json),
		 "{\"ninja\":\"upgrade\",\"jobid\":%u,\"rank\":%u,\"epoch\":%u,"
		 "\"rail\":\"%s\",\"dev\":\"%s\",\"conns\":%u,\"verbs\":%u,"
		 "\"upgraded\":%u,\"refused\":%u,\"failed\":%u,"
		 "\"stall_us\":%.0f,\"stall_sum_us\":%.0f,\"open_us\":%llu,"
		 "\"since_event_us\":%.0f,\"event_t_ns\":%llu}",
		 me.jobid, me.vpid, c->epoch, verbs ? "verbs" : "tcp", dev,
		 conns, verbs, U.upgraded, U.refused, U.failed,
		 U.stall_max_ns / (double)NINJA_US_NS, U.stall_sum_ns / (double)NINJA_US_NS,
		 (unsigned long long)U.open_us, since,
		 (unsigned long long)U.event_t_ns);
	NINJA_VERBOSE(1, "btl:ninja: rank %u epoch %u upgraded %u connection(s) to verbs "
		      "on %s (%u not now, %u failed; %u of %u on verbs): stall max %.0f us, "
		      "%.0f us after port-active",
		      me.vpid, c->epoch, U.upgraded, dev, U.refused, U.failed,
		      verbs, conns, U.stall_max_ns / (double)NINJA_US_NS, since);
	NINJA_VERBOSE(1, "%s", json);
	mca_btl_ninja_report_json(json);
	mca_btl_ninja_ctl_send("UPGRADED %u rail=%s from=tcp dev=%s conns=%u verbs=%u "
			       "upgraded=%u refused=%u failed=%u stall_us=%.0f "
			       "stall_sum_us=%.0f open_us=%llu since_event_us=%.0f "
			       "event_t_ns=%llu",
			       c->epoch, verbs ? "verbs" : "tcp", dev[0] ? dev : "-",
			       conns, verbs, U.upgraded, U.refused, U.failed,
			       U.stall_max_ns / (double)NINJA_US_NS, U.stall_sum_ns / (double)NINJA_US_NS,
			       (unsigned long long)U.open_us, since,
			       (unsigned long long)U.event_t_ns);
	U.dirty = false;
	U.upgraded = U.refused = U.failed = 0;
	U.stall_max_ns = U.stall_sum_ns = 0;
}

/*
 * Just opened: for each tcp peer whose address we already know (it told
 * us in an UPGRADE we had to refuse, or in an UPGRADE_REQ), resolve it
 * now, unlocked, so that neither side's QP transition inside the hold
 * waits for neighbour resolution (seen: ~250 ms under TCG).
 */
static void warm_peers(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *r;
	ninja_rail_addr_t *peers;
	int i, n = 0;

	U.warmed_gen = U.gen;
	mca_btl_ninja_lock();
	r = c->rail;
	peers = r && r->warm ? calloc((size_t)c->neps + 1, sizeof(*peers)) :
		NULL;
	for (i = 0; peers && i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_state == NINJA_EP_CONNECTED &&
		    NINJA_EP_ON_TCP(ep) && ep->endpoint_upg == UPG_NONE &&
		    mca_btl_ninja_rail_addr_usable(&ep->endpoint_upg_peer))
			peers[n++] = ep->endpoint_upg_peer;
	}
	mca_btl_ninja_unlock();
	for (i = 0; i < n; i++) {
		double ms = r->warm(&peers[i]);

		NINJA_VERBOSE(10, "btl:ninja: rank %u: peer address %s in %.1f ms",
			      OPAL_PROC_MY_NAME.vpid,
			      ms < 0 ? "not resolved ahead" : "resolved ahead", ms);
	}
	free(peers);
}

void mca_btl_ninja_upgrade_step(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	bool busy = false;
	int i;

	if (c->state != NINJA_RUNNING)
		return;
	if (U.event && (c->rail || !mca_btl_ninja_upgrade_live() ||
			!mca_btl_ninja_rail_first(U.hint)))
		U.event = false;	/* nothing to do with it */
	if (U.event && mca_btl_ninja_now_ns() >= U.next_try)
		try_open(mca_btl_ninja_rail_first(U.hint));
	if (U.warmed_gen != U.gen && c->rail)
		warm_peers();
	mca_btl_ninja_lock();
	if (c->state != NINJA_RUNNING) {
		mca_btl_ninja_unlock();
		return;
	}
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_upg != UPG_NONE &&
		    (ep->endpoint_state != NINJA_EP_CONNECTED ||
		     ep->endpoint_upg_conn != ep->endpoint_connects)) {
			/* The connection broke meanwhile (closed, reconnected
			 * on TCP): that exchange is over. */
			ep->endpoint_upg = UPG_NONE;
			ep->endpoint_upg_t_hold = 0;
		}
		if (ep->endpoint_state != NINJA_EP_CONNECTED)
			continue;
		switch (ep->endpoint_upg) {
		case UPG_NONE:
			if (!c->rail || !NINJA_EP_ON_TCP(ep) ||
			    ep->endpoint_upg_gen == U.gen)
				break;
			ep->endpoint_upg_gen = U.gen;
			ep->endpoint_upg_conn = ep->endpoint_connects;
			if (mca_btl_ninja_name_cmp(me, ep->endpoint_name) < 0) {
				initiate(ep);
			} else {
				/*
				 * Make the QP now (registration is the slow
				 * part): the initiator's hold then only covers
				 * the QP transitions.
				 */
				ninja_rail_addr_t mine;

				(void)c->rail->addr_encode(ep, &mine, true);
				(void)queue_ctl(ep, NINJA_FRAME_UPGRADE_REQ, &mine);
			}
			break;
		case UPG_GOT_ACK:
			finish_ack(ep);
			break;
		case UPG_ANSWER:
			answer(ep);
			break;
		default:
			break;
		}
		if (ep->endpoint_upg != UPG_NONE)
			busy = true;
	}
	if (!busy && U.dirty)
		report();
	mca_btl_ninja_unlock();
}

int mca_btl_ninja_upgrade_timeout(void)
{
	if (U.event)
		return 20;
	return U.dirty ? 5 : -1;
}

void mca_btl_ninja_upgrade_drain_start(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];
		mca_btl_ninja_frag_t *f;

		switch (ep->endpoint_upg) {
		case UPG_ASKED:
		case UPG_ANSWERED:
			/* Partly written: the drain finishes the frame, then
			 * the exchange; not on the wire: forget it. */
			for (f = ep->endpoint_sq_head; f; f = f->next)
				if (f->hdr.type != NINJA_FRAME_DATA)
					break;
			if (f && f == ep->endpoint_sq_head && f->sent > 0)
				break;
			ep->endpoint_upg = UPG_NONE;
			break;
		case UPG_WANT:
		case UPG_ANSWER:
			ep->endpoint_upg = UPG_NONE;
			break;
		default:
			break;
		}
	}
}

void mca_btl_ninja_upgrade_drain(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	switch (ep->endpoint_upg) {
	case UPG_GOT_ACK:
		/* The answerer waits for READY before its marker. */
		finish_ack(ep);
		break;
	case UPG_HOLD_ACK:
		/* The answerer drained instead of answering. */
		if (ep->endpoint_marker_rcvd >= c->epoch)
			done(ep, false, "peer draining");
		break;
	default:
		break;
	}
}

void mca_btl_ninja_upgrade_reset(const char *hint)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	mca_btl_ninja_lock();
	/* Only a device opened live (try_open: a new generation) starts
	 * upgrades; a connection the resume made on tcp with verbs open
	 * here has a peer without verbs (it sends UPGRADE_REQ when it gets
	 * them). */
	for (i = 0; i < c->neps; i++) {
		c->eps[i]->endpoint_upg = UPG_NONE;
		c->eps[i]->endpoint_upg_t_hold = 0;
		c->eps[i]->endpoint_upg_gen = U.gen;
		memset(&c->eps[i]->endpoint_upg_peer, 0,
		       sizeof(c->eps[i]->endpoint_upg_peer));
	}
	U.warmed_gen = U.gen;
	snprintf(U.hint, sizeof(U.hint), "%s", hint ? hint : "");
	U.dirty = false;
	U.upgraded = U.refused = U.failed = 0;
	U.stall_max_ns = U.stall_sum_ns = 0;
	mca_btl_ninja_unlock();
}

bool mca_btl_ninja_upgrade_hold_resume(const char *hint, uint64_t since)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t now = mca_btl_ninja_now_ns();
	const ninja_rail_ops_t *r;
	char desc[128];

	/* Only when the host says this site has our fast rail. */
	if (mca_btl_ninja_upgrade_live() || !hint || !hint[0] ||
	    !(r = mca_btl_ninja_rail_first(hint)))
		return false;
	if (now - since > (uint64_t)c->upgrade_wait * NINJA_SEC_NS) {
		mca_btl_ninja_help("upgrade-wait-expired",
				   opal_process_info.nodename,
				   OPAL_PROC_MY_NAME.vpid, r->name,
				   c->upgrade_wait);
		NINJA_VERBOSE(1, "btl:ninja: no ACTIVE RDMA port within %d s of RESUME "
			      "(btl_ninja_upgrade=wait): resuming on tcp", c->upgrade_wait);
		return false;
	}
	if (!U.event && now < U.wait_next)
		return true;
	U.event = false;
	U.wait_next = now + NINJA_WAIT_POLL_NS;
	if (r->open(desc, sizeof(desc)) == OPAL_SUCCESS) {
		/* Stays open: the resume's rail choice takes it. */
		NINJA_VERBOSE(10, "btl:ninja: waited %.0f ms for %s (btl_ninja_upgrade=wait)",
			      (now - since) / (double)NINJA_MS_NS, desc);
		return false;
	}
	return true;
}
