/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_conn.c - connections, made by the control thread: connect
 * (with back-off and the background address lookup), accept, the
 * authenticated handshake (HELLO, CHALLENGE, AUTH, ACK/NACK; the
 * cryptography is btl_ninja_auth.c's), a peer given up on, and the
 * failover of every connection when the verbs device goes.
 * docs/protocol.md §10.1, docs/design.md "Connections" and "Threat model".
 */
#include "opal_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "btl_ninja_thread.h"

/* Accepted, not authenticated yet (NINJA_MAX_PENDING, NINJA_PENDING_NS). */
typedef struct pending_accept {
	int fd;
	size_t len;		/* bytes of hs.rx read */
	uint64_t t;
	ninja_hs_state_t hs;
} pending_accept_t;

/* Control-thread-only state. */
static struct {
	pending_accept_t pending[NINJA_MAX_PENDING];
	int npending;
	uint64_t n_rejected;		/* connections that failed to prove
					 * they belong to the job */
	int pending_base;		/* poll set index of pending[0] */
	mca_btl_ninja_endpoint_t **want;	/* conn_requests' scratch list */
	int want_cap;
	unsigned int failover_told;	/* rail-failover shown (once) */
	unsigned int timeout_told;	/* connect-timeout shown (once) */
	unsigned int secret_told;	/* no-secret shown (once) */
} T;

/* Our AUTH/ACK/NACK to peer (its MAC comes last). */
static void hs_fill(ninja_hs_auth_t *m, int type, uint32_t reason,
		    opal_process_name_t peer)
{
	mca_btl_ninja_auth_fill(m, type, reason, peer.jobid, peer.vpid);
}

/* Known addresses failing this long: ask PMIx for the peer's new one. */
#define NINJA_ASK_AFTER_NS	(100 * NINJA_MS_NS)
/* ... and again no sooner than this after the last lookup. */
#define NINJA_LOOKUP_AGAIN_NS	NINJA_SEC_NS
/* One connection attempt (connect + handshake) gets this long. */
#define NINJA_ATTEMPT_NS	(2 * NINJA_SEC_NS)
/* No socket to be had (EMFILE...): try again after this. */
#define NINJA_SOCKET_RETRY_NS	(100 * NINJA_MS_NS)

/* The pause before the next attempt of a round that began at start. */
static uint64_t backoff_ns(uint64_t start, uint64_t now)
{
	uint64_t waited = now - start;

	if (waited < 20 * NINJA_MS_NS)
		return NINJA_MS_NS;	/* 1 ms for the first 20 ms */
	if (waited < NINJA_SEC_NS)
		return 10 * NINJA_MS_NS;
	return 100 * NINJA_MS_NS;
}

/*
 * Lock held: take in the address the background lookup brought, and say
 * whether to ask PMIx for this epoch's.  The peer's address for our epoch
 * comes from PMIx in the background (the peer publishes it when it
 * resumes; the get waits for that).  Meanwhile the addresses we knew are
 * tried at once: the listening port never changes and a migration usually
 * keeps the IPs, and the handshake checks who answers and whether it has
 * resumed.  The control thread never blocks on PMIx here (it was 0.2-0.6 s
 * of every reconnection in the TCG guests).
 */
static bool addr_refresh(mca_btl_ninja_endpoint_t *ep, uint64_t now)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool ask;

	NINJA_ASSERT_LOCKED();
	if (ep->endpoint_lookup_done) {
		mca_btl_ninja_addr_t *n = &ep->endpoint_lookup_addr;

		ep->endpoint_lookup_done = false;
		if (!ep->endpoint_addr_valid ||
		    n->epoch >= ep->endpoint_addr.epoch) {
			if (!ep->endpoint_addr_valid ||
			    n->port != ep->endpoint_addr.port ||
			    n->naddr != ep->endpoint_addr.naddr ||
			    memcmp(n->ip, ep->endpoint_addr.ip,
				   n->naddr * sizeof(n->ip[0])))
				ep->endpoint_addr_try = 0;	/* moved */
			ep->endpoint_addr = *n;
			ep->endpoint_addr_valid = true;
		}
	}
	/*
	 * Only once the known addresses have failed for a while: usually the
	 * first attempt works and no lookup is ever made.  A lookup waits in
	 * the PMIx servers for a key its peer may never publish (a peer that
	 * finalized, or joined after that epoch); one still waiting when the
	 * job ended hung an orted in PMIx_server_finalize (tests/mpi
	 * nodes8-initfini).
	 */
	ask = !(ep->endpoint_addr_valid && ep->endpoint_addr.epoch >= c->epoch) &&
	      (!ep->endpoint_addr_valid ||
	       now - ep->endpoint_conn_start >= NINJA_ASK_AFTER_NS) &&
	      !ep->endpoint_lookup_busy &&
	      (ep->endpoint_lookup_epoch != c->epoch ||
	       now - ep->endpoint_lookup_at > NINJA_LOOKUP_AGAIN_NS);
	if (ask) {
		ep->endpoint_lookup_busy = true;
		ep->endpoint_lookup_epoch = c->epoch;
		ep->endpoint_lookup_at = now;
	}
	return ask;
}

/*
 * Without the lock: no address known yet, read the one published at
 * MPI_Init (the PMIx get is made unlocked, as add_procs does; the result
 * is stored under the lock, unless add_procs stored one meanwhile).
 */
static void addr_initial(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_endpoint_t probe;

	memset(&probe, 0, sizeof(probe));
	probe.endpoint_name = ep->endpoint_name;
	if (mca_btl_ninja_lookup_addr(&probe, 0, 0) != OPAL_SUCCESS)
		return;
	mca_btl_ninja_lock();
	if (!ep->endpoint_addr_valid) {
		ep->endpoint_addr = probe.endpoint_addr;
		ep->endpoint_addr_valid = true;
	}
	mca_btl_ninja_unlock();
}

/* Start (or retry) a connection to ep.  Called without the lock. */
static void connect_start(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct sockaddr_in sin;
	uint64_t now = mca_btl_ninja_now_ns(), start;
	bool ask, valid;
	int fd, rc;

	mca_btl_ninja_lock();
	if (!ep->endpoint_conn_start)
		ep->endpoint_conn_start = now;
	if (now - ep->endpoint_conn_start >
	    (uint64_t)c->connect_timeout * NINJA_MS_NS) {
		if (!T.timeout_told++)
			mca_btl_ninja_help("connect-timeout",
					   opal_process_info.nodename,
					   OPAL_PROC_MY_NAME.vpid,
					   ep->endpoint_name.jobid,
					   ep->endpoint_name.vpid,
					   c->connect_timeout,
					   ep->endpoint_addr.epoch, c->epoch);
		NINJA_VERBOSE(1, "btl:ninja: cannot connect to %u.%u within %d ms "
			      "(address epoch %u, ours %u)", ep->endpoint_name.jobid,
			      ep->endpoint_name.vpid, c->connect_timeout,
			      ep->endpoint_addr.epoch, c->epoch);
		ep->endpoint_conn_start = now;	/* keep trying, but say so */
	}
	start = ep->endpoint_conn_start;
	valid = ep->endpoint_addr_valid;
	mca_btl_ninja_unlock();
	if (!valid) {
		/* None known yet: the one published at MPI_Init, read before
		 * a lookup of this peer is in flight (PMIx reads one peer at a
		 * time: btl_ninja_rail_tcp.c). */
		addr_initial(ep);
		ep->endpoint_addr_try = 0;
	}
	mca_btl_ninja_lock();
	ask = addr_refresh(ep, now);
	mca_btl_ninja_unlock();
	if (ask && mca_btl_ninja_lookup_addr_nb(ep->endpoint_name, c->epoch,
						10) != OPAL_SUCCESS) {
		mca_btl_ninja_lock();
		ep->endpoint_lookup_busy = false;
		mca_btl_ninja_unlock();
	}
	if (!mca_btl_ninja_auth_have_key(ep->endpoint_name.vpid)) {
		/* Its secret (published at MPI_Init with the address) is what
		 * our AUTH proves itself with: not there yet, later. */
		ep->endpoint_retry_at = now + backoff_ns(start, now);
		return;
	}
	mca_btl_ninja_lock();
	valid = ep->endpoint_addr_valid &&
		ep->endpoint_addr_try < ep->endpoint_addr.naddr;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (valid) {
		sin.sin_port = ep->endpoint_addr.port;
		sin.sin_addr.s_addr = ep->endpoint_addr.ip[ep->endpoint_addr_try++];
	}
	mca_btl_ninja_unlock();
	if (!valid) {
		/* None, or every address tried: again after a pause, or at
		 * once when the lookup brings a new one (lookup_cb). */
		ep->endpoint_addr_try = 0;
		ep->endpoint_retry_at = now + backoff_ns(start, now);
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ep->endpoint_addr_try--;	/* that address again */
		ep->endpoint_retry_at = now + NINJA_SOCKET_RETRY_NS;
		return;
	}
	mca_btl_ninja_tcp_tune(fd);
	rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	if (rc != 0 && errno != EINPROGRESS) {
		close(fd);
		ep->endpoint_retry_at = now + backoff_ns(start, now);
		return;
	}
	mca_btl_ninja_lock();
	ep->endpoint_fd = fd;
	ep->endpoint_state = NINJA_EP_CONNECTING;
	ep->endpoint_hs_len = 0;
	ep->endpoint_attempt_at = now;
	mca_btl_ninja_unlock();
	NINJA_VERBOSE(10, "btl:ninja: rank %u connecting to %u.%u at %s:%u (epoch %u)",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid,
		      inet_ntoa(sin.sin_addr), ntohs(sin.sin_port), c->epoch);
}

/*
 * Lock held: a connection lost outside a drain did not come back within
 * btl_ninja_replay_timeout: the peer is taken as gone.  Stop retrying;
 * the application's thread tells ob1 (a fatal BTL error, as a dead peer
 * has always been).
 */
static void peer_lost(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	mca_btl_ninja_help("peer-lost", opal_process_info.nodename,
			   OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
			   ep->endpoint_name.vpid, c->replay_timeout,
			   ep->endpoint_rt_len, ep->endpoint_sq_len);
	ep->endpoint_lost = true;
	ep->endpoint_want_connect = false;
	ep->endpoint_failed_at = 0;
	c->peer_lost = 1;
	c->app_work = 1;
}

/* Lock held: the connection attempt failed; retry later. */
static void connect_failed(mca_btl_ninja_endpoint_t *ep, bool retry,
			   const char *why)
{
	uint64_t now = mca_btl_ninja_now_ns();

	NINJA_ASSERT_LOCKED();
	NINJA_VERBOSE(10, "btl:ninja: connection to %u.%u not made: %s",
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid, why);

	mca_btl_ninja_endpoint_close(ep);
	ep->endpoint_want_connect = retry;
	ep->endpoint_retry_at = now + backoff_ns(ep->endpoint_conn_start, now);
}

/* Tell the acceptor whether our QP reached RTS (TCP frame READY). */
static int send_ready(int fd, bool ok)
{
	ninja_frame_hdr_t h;

	memset(&h, 0, sizeof(h));
	h.type = NINJA_FRAME_READY;
	h.flags = ok ? 1 : 0;
	h.epoch = mca_btl_ninja_component.epoch;
	return send(fd, &h, sizeof(h), MSG_NOSIGNAL) == (ssize_t)sizeof(h) ?
	       0 : -1;
}

/* Lock held: our AUTH, once the acceptor's CHALLENGE is in. */
static int send_auth(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	ninja_hs_state_t *s = &ep->endpoint_hs;

	NINJA_ASSERT_LOCKED();
	hs_fill(&s->auth, NINJA_HS_AUTH, 0, ep->endpoint_name);
	s->auth.ack = mca_btl_ninja_endpoint_hs_ack(ep);
	if (c->rail)
		(void)c->rail->addr_encode(ep, &s->auth.rail, false);
	if (mca_btl_ninja_auth_challenge(s, ep->endpoint_name.jobid,
					 ep->endpoint_name.vpid) != 0)
		return -1;
	return send(ep->endpoint_fd, &s->auth, sizeof(s->auth), MSG_NOSIGNAL) ==
	       (ssize_t)sizeof(s->auth) ? 0 : -1;
}

/* Lock held: the acceptor's ACK (authenticated): the connection is up. */
static void connect_acked(mca_btl_ninja_endpoint_t *ep,
			  const ninja_hs_auth_t *r)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool fast = false;

	NINJA_ASSERT_LOCKED();
	if (r->rail.rail != NINJA_RAIL_ID_NONE) {
		/* The acceptor made its end for us and waits for READY. */
		fast = ep->endpoint_rail_state &&
		       mca_btl_ninja_rail_addr_usable(&r->rail) &&
		       c->rail->connect(ep, &r->rail) == OPAL_SUCCESS;
		if (send_ready(ep->endpoint_fd, fast) != 0) {
			connect_failed(ep, true, "READY not sent");
			return;
		}
	}
	if (!fast)
		mca_btl_ninja_rail_ep_close(ep);
	mca_btl_ninja_endpoint_attach(ep, ep->endpoint_fd);
	ep->endpoint_rx_max = r->max_frame;
	if (fast)
		ep->endpoint_rail = c->rail;
	ep->endpoint_rail_ready = fast;
	mca_btl_ninja_endpoint_replay(ep, r->ack);
	NINJA_VERBOSE(10, "btl:ninja: rank %u connected to %u.%u on %s",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid, ep->endpoint_rail->name);
	NINJA_VERBOSE(10, "btl:ninja: rank %u: handshake with %u.%u took "
		      "%.0f us to connect, %.0f us to answer",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid,
		      mca_btl_ninja_us(ep->endpoint_attempt_at, ep->endpoint_hello_at),
		      mca_btl_ninja_us(ep->endpoint_hello_at, mca_btl_ninja_now_ns()));
}

/*
 * Lock held: a connecting socket became writable or readable.  HELLO out,
 * CHALLENGE in, AUTH out, ACK/NACK in (docs/protocol.md §10.1).
 */
static void connect_event(mca_btl_ninja_endpoint_t *ep, short revents)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	ninja_hs_state_t *s = &ep->endpoint_hs;
	const ninja_hs_auth_t *r = &s->rx.msg;
	int rc;

	NINJA_ASSERT_LOCKED();
	if (ep->endpoint_state == NINJA_EP_CONNECTING) {
		ninja_hs_hello_t hello;
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(ep->endpoint_fd, SOL_SOCKET, SO_ERROR, &err,
			       &len) != 0 || err) {
			connect_failed(ep, true, strerror(err ? err : errno));
			return;
		}
		mca_btl_ninja_auth_hello(s, &hello);
		if (send(ep->endpoint_fd, &hello, sizeof(hello), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(hello)) {
			connect_failed(ep, true, "HELLO not sent");
			return;
		}
		ep->endpoint_state = NINJA_EP_HELLO;
		ep->endpoint_hs_len = 0;
		ep->endpoint_hello_at = mca_btl_ninja_now_ns();
		return;
	}
	/* NINJA_EP_HELLO: the CHALLENGE, then the answer. */
	rc = mca_btl_ninja_auth_read(ep->endpoint_fd, s, &ep->endpoint_hs_len);
	if (rc == 0)
		return;
	if (rc < 0) {
		/* Also what a process that is not the one we want says (an
		 * address from an earlier epoch now belongs to another). */
		connect_failed(ep, true, "closed during handshake");
		return;
	}
	if (mca_btl_ninja_auth_at_hello(s)) {
		if (send_auth(ep) != 0)
			connect_failed(ep, true, "bad CHALLENGE or AUTH not sent");
		return;
	}
	if (mca_btl_ninja_auth_verify_reply(s, ep->endpoint_name.jobid,
					    ep->endpoint_name.vpid) != 0) {
		NINJA_ERROR("btl:ninja: rank %u: the answer of %u.%u to our "
			    "handshake is not authentic", OPAL_PROC_MY_NAME.vpid,
			    ep->endpoint_name.jobid, ep->endpoint_name.vpid);
		connect_failed(ep, true, "answer not authentic");
		return;
	}
	switch (r->type) {
	case NINJA_HS_ACK:
		connect_acked(ep, r);
		break;
	case NINJA_HS_NACK:
		if (r->reason == NINJA_NACK_RACE) {
			/* The peer's own connection to us wins; it will
			 * attach and clear want_connect.  Retry only in case
			 * it does not (see accept_hello). */
			connect_failed(ep, true, "simultaneous connect, the peer's wins");
			ep->endpoint_retry_at += NINJA_RACE_WAIT_NS;
			break;
		}
		connect_failed(ep, true, r->reason == NINJA_NACK_DRAINING ?
			       "peer is draining" : "peer does not know us");
		if (r->reason == NINJA_NACK_DRAINING && r->epoch > c->epoch &&
		    c->state == NINJA_RUNNING)
			mca_btl_ninja_drain_start(r->epoch, "handshake");
		break;
	default:
		connect_failed(ep, true, "bad handshake type");
		break;
	}
}

static void pending_drop(int i, bool close_fd)
{
	if (close_fd)
		close(T.pending[i].fd);
	T.pending[i] = T.pending[--T.npending];
}

/*
 * New connections.  Unauthenticated ones are bounded: when every slot is
 * taken the oldest goes (a real peer proves itself within a round trip,
 * an idle one holds a slot at most NINJA_PENDING_NS).
 */
void mca_btl_ninja_conn_accept(void)
{
	int fd;

	while ((fd = mca_btl_ninja_tcp_accept()) >= 0) {
		pending_accept_t *p;

		if (T.npending == NINJA_MAX_PENDING) {
			int i, old = 0;

			for (i = 1; i < T.npending; i++)
				if (T.pending[i].t < T.pending[old].t)
					old = i;
			pending_drop(old, true);
		}
		mca_btl_ninja_tcp_tune(fd);
		p = &T.pending[T.npending++];
		memset(p, 0, sizeof(*p));
		p->fd = fd;
		p->t = mca_btl_ninja_now_ns();
	}
}

/* Lock held: the connected socket says EOF or an error (nothing unread). */
static bool conn_dead(mca_btl_ninja_endpoint_t *ep)
{
	char b;
	ssize_t n = recv(ep->endpoint_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	NINJA_ASSERT_LOCKED();
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			  errno != EINTR);
}

/*
 * Lock held: the idle TCP socket of a verbs connection is readable: EOF or
 * an error means the peer dropped the connection.  Nothing is sent on it
 * once the QP is up; anything that is is read and dropped (no spinning).
 */
static bool boot_dead(mca_btl_ninja_endpoint_t *ep)
{
	char b[64];
	ssize_t n = recv(ep->endpoint_fd, b, sizeof(b), MSG_DONTWAIT);

	NINJA_ASSERT_LOCKED();
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			  errno != EINTR);
}

/*
 * Lock held.  The connector of pending[i] proved it is peer (a process of
 * this job): decide on its AUTH (docs/protocol.md §10.1).
 */
static void accept_hello(int i)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	pending_accept_t *p = &T.pending[i];
	const ninja_hs_auth_t *a = &p->hs.auth;
	opal_process_name_t me = OPAL_PROC_MY_NAME, peer;
	mca_btl_ninja_endpoint_t *ep;
	ninja_hs_auth_t reply;
	int fd = p->fd;

	NINJA_ASSERT_LOCKED();
	peer.jobid = a->jobid;
	peer.vpid = a->vpid;
	ep = mca_btl_ninja_endpoint_lookup(peer);
	if (ep && ep->endpoint_state == NINJA_EP_CONNECTED &&
	    c->state == NINJA_RUNNING && conn_dead(ep)) {
		/* The peer saw our connection die first (and the socket of a
		 * verbs connection is never read): replace it now. */
		mca_btl_ninja_endpoint_failed(ep, 0, "replaced by the peer");
	}
	if (!ep && c->state == NINJA_RUNNING)
		ep = mca_btl_ninja_endpoint_create(peer);
	if ((!ep && c->state == NINJA_RUNNING) ||
	    (ep && ep->endpoint_lost_why)) {
		/* Unknown, or given up on for a protocol error. */
		hs_fill(&reply, NINJA_HS_NACK, NINJA_NACK_UNKNOWN, peer);
	} else if (c->state != NINJA_RUNNING) {
		hs_fill(&reply, NINJA_HS_NACK, NINJA_NACK_DRAINING, peer);
	} else if (ep->endpoint_state == NINJA_EP_CONNECTED ||
		   ((ep->endpoint_state == NINJA_EP_CONNECTING ||
		     ep->endpoint_state == NINJA_EP_HELLO) &&
		    mca_btl_ninja_name_cmp(me, peer) < 0)) {
		/*
		 * Simultaneous connect: the lower-named side's connection
		 * wins.  Already connected: this is the loser's HELLO that
		 * was on its way, or the peer lost a connection we have not
		 * seen die yet; either way keep ours (data may be in it) -
		 * the peer retries and gets in once we see the old one go.
		 */
		hs_fill(&reply, NINJA_HS_NACK, NINJA_NACK_RACE, peer);
	} else {
		if (ep->endpoint_state != NINJA_EP_CLOSED)
			mca_btl_ninja_endpoint_close(ep);
		hs_fill(&reply, NINJA_HS_ACK, 0, peer);
		reply.ack = mca_btl_ninja_endpoint_hs_ack(ep);
		if (mca_btl_ninja_rail_addr_usable(&a->rail) &&
		    c->rail->addr_encode(ep, &reply.rail, false) ==
		    OPAL_SUCCESS &&
		    c->rail->connect(ep, &a->rail) != OPAL_SUCCESS) {
			mca_btl_ninja_rail_ep_close(ep);
			memset(&reply.rail, 0, sizeof(reply.rail));
		}
		if (mca_btl_ninja_auth_reply_mac(&p->hs, &reply) != 0 ||
		    send(fd, &reply, sizeof(reply), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(reply)) {
			mca_btl_ninja_rail_ep_close(ep);
			pending_drop(i, true);
			return;
		}
		mca_btl_ninja_endpoint_attach(ep, fd);
		ep->endpoint_rx_max = a->max_frame;
		/* Frames go on the fast rail once the connector says READY. */
		if (reply.rail.rail != NINJA_RAIL_ID_NONE)
			ep->endpoint_rail = c->rail;
		ep->endpoint_rail_ready = false;
		mca_btl_ninja_endpoint_replay(ep, a->ack);
		pending_drop(i, false);
		NINJA_VERBOSE(10, "btl:ninja: rank %u accepted %u.%u",
			      me.vpid, peer.jobid, peer.vpid);
		return;
	}
	if (mca_btl_ninja_auth_reply_mac(&p->hs, &reply) == 0)
		(void)send(fd, &reply, sizeof(reply), MSG_NOSIGNAL);
	pending_drop(i, true);
}

/* A connection that failed to prove it belongs to the job: closed. */
static void pending_reject(int i, const char *why)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char ip[INET_ADDRSTRLEN] = "?";

	if (getpeername(T.pending[i].fd, (struct sockaddr *)&sin, &len) == 0)
		inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
	if (T.n_rejected++ == 0)
		mca_btl_ninja_help("connection-rejected",
				   opal_process_info.nodename,
				   OPAL_PROC_MY_NAME.vpid, ip,
				   (unsigned int)ntohs(sin.sin_port), why);
	else
		NINJA_VERBOSE(10, "btl:ninja: rank %u: connection from %s:%u "
			      "rejected (%s), %llu so far", OPAL_PROC_MY_NAME.vpid,
			      ip, ntohs(sin.sin_port), why,
			      (unsigned long long)T.n_rejected);
	pending_drop(i, true);
}

/* Unlocked: pending[i] is readable: its HELLO, then its AUTH. */
static void pending_event(int i)
{
	pending_accept_t *p = &T.pending[i];
	ninja_hs_hello_t challenge;
	int rc = mca_btl_ninja_auth_read(p->fd, &p->hs, &p->len);

	if (rc == 0)
		return;
	if (rc < 0) {
		pending_drop(i, true);
		return;
	}
	if (mca_btl_ninja_auth_at_hello(&p->hs)) {
		if (mca_btl_ninja_auth_answer_hello(&p->hs, &challenge) != 0) {
			pending_reject(i, "no HELLO");
			return;
		}
		if (send(p->fd, &challenge, sizeof(challenge), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(challenge))
			pending_drop(i, true);
		return;
	}
	if (mca_btl_ninja_auth_verify_auth(&p->hs) != 0) {
		pending_reject(i, "bad AUTH");
		return;
	}
	/* A process of the job: its secret signs our answer. */
	if (!mca_btl_ninja_auth_have_key(p->hs.auth.vpid)) {
		if (!T.secret_told++)
			mca_btl_ninja_help("no-secret",
					   opal_process_info.nodename,
					   OPAL_PROC_MY_NAME.vpid,
					   p->hs.auth.jobid, p->hs.auth.vpid);
		else
			NINJA_VERBOSE(1, "btl:ninja: rank %u: no connection "
				      "secret of %u.%u", OPAL_PROC_MY_NAME.vpid,
				      p->hs.auth.jobid, p->hs.auth.vpid);
		pending_drop(i, true);
		return;
	}
	mca_btl_ninja_lock();
	accept_hello(i);
	mca_btl_ninja_unlock();
}

/*
 * Lock held: the verbs device said its port or itself failed (surprise
 * removal: no drain came first).  Every connection on it fails over: it
 * is closed, reconnected on TCP (the device is out of this epoch's rails)
 * and replayed from the peer's ack; then the device is closed, which lets
 * the kernel finish removing it.  The next resume looks for a device
 * again.
 */
void mca_btl_ninja_rail_fail(const char *why)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *r = c->rail;
	int i;

	NINJA_ASSERT_LOCKED();
	if (!r)
		return;
	if (!T.failover_told++)
		mca_btl_ninja_help("rail-failover", opal_process_info.nodename,
				   OPAL_PROC_MY_NAME.vpid, r->name, why);
	NINJA_VERBOSE(1, "btl:ninja: rank %u: %s rail failed (%s) without a "
		      "drain: reconnecting on tcp and replaying",
		      OPAL_PROC_MY_NAME.vpid, r->name, why);
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_rail_state) {
			if (c->state == NINJA_RUNNING &&
			    ep->endpoint_state == NINJA_EP_CONNECTED)
				mca_btl_ninja_endpoint_failed(ep, -ENODEV,
							      "lost its rail's device");
			else
				mca_btl_ninja_rail_ep_close(ep);
		}
	}
	/* Every endpoint's state is gone: the device goes, out of this
	 * epoch's rails (reconnections are on tcp). */
	r->close();
	c->rail = NULL;
	snprintf(c->my_addr.rail, sizeof(c->my_addr.rail), "tcp");
}

/* Lock held: the device's async event fd is readable. */
static void rail_event(void)
{
	const ninja_rail_ops_t *r = mca_btl_ninja_component.rail;
	char desc[128] = "", why[160];

	NINJA_ASSERT_LOCKED();
	if (!r->event_fatal(desc, sizeof(desc))) {
		NINJA_VERBOSE(10, "btl:ninja: %s event: %s", r->name, desc);
		return;
	}
	snprintf(why, sizeof(why), "%s: %s, port not active",
		 mca_btl_ninja_component.rail_desc, desc);
	mca_btl_ninja_rail_fail(why);
}

/* This epoch's fast rail's event fd, -1 when none. */
static int rail_event_fd(void)
{
	const ninja_rail_ops_t *r = mca_btl_ninja_component.rail;

	return r && r->event_fd ? r->event_fd() : -1;
}

/* ---------------------------------------------------------------------
 * The connections' part of the control thread's loop
 */

/* Lock held: room in T.want for every endpoint; false if no memory. */
static bool want_reserve(int n)
{
	mca_btl_ninja_endpoint_t **w;

	NINJA_ASSERT_LOCKED();
	if (n <= T.want_cap)
		return true;
	w = realloc(T.want, (size_t)n * sizeof(*w));
	if (!w)
		return false;
	T.want = w;
	T.want_cap = n;
	return true;
}

/*
 * RUNNING: give up on peers lost too long, and start the connections asked
 * for (want_connect) whose retry time has come.  Endpoints are never freed
 * before finalize, so the pointers collected under the lock stay valid;
 * connect_start() runs unlocked.  next: when to come back for a retry.
 */
void mca_btl_ninja_conn_requests(uint64_t now, uint64_t *next)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int nwant = 0, i;

	mca_btl_ninja_lock();
	(void)want_reserve(c->neps);
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_want_connect &&
		    ep->endpoint_state == NINJA_EP_CLOSED &&
		    ep->endpoint_failed_at && c->replay_timeout > 0 &&
		    now > ep->endpoint_failed_at &&
		    now - ep->endpoint_failed_at >
		    (uint64_t)c->replay_timeout * NINJA_MS_NS)
			peer_lost(ep);
		if (ep->endpoint_want_connect &&
		    ep->endpoint_state == NINJA_EP_CLOSED && nwant < T.want_cap)
			T.want[nwant++] = ep;
	}
	mca_btl_ninja_unlock();
	for (i = 0; i < nwant; i++) {
		mca_btl_ninja_endpoint_t *ep = T.want[i];
		bool closed;

		if (now >= ep->endpoint_retry_at)
			connect_start(ep);
		mca_btl_ninja_lock();
		closed = ep->endpoint_state == NINJA_EP_CLOSED;
		mca_btl_ninja_unlock();
		if (closed && ep->endpoint_retry_at < *next)
			*next = ep->endpoint_retry_at;
	}
}

/* Lock held: ep's socket in the poll set, if the control thread owns it. */
static void poll_endpoint(ninja_pollset_t *ps, mca_btl_ninja_endpoint_t *ep,
			  uint64_t now)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	if (ep->endpoint_state == NINJA_EP_CONNECTING ||
	    ep->endpoint_state == NINJA_EP_HELLO) {
		if (now > ep->endpoint_attempt_at + NINJA_ATTEMPT_NS) {
			/* A SYN or HELLO into the void (an old address that
			 * went away): next one. */
			connect_failed(ep, true, "no answer within 2 s");
			return;
		}
		(void)ninja_pollset_add(ps, ep->endpoint_fd,
					ep->endpoint_state == NINJA_EP_CONNECTING ?
					POLLOUT : POLLIN, NINJA_PK_CONNECT, ep);
	} else if (c->state == NINJA_DRAINING &&
		   ep->endpoint_state == NINJA_EP_CONNECTED) {
		(void)ninja_pollset_add(ps, ep->endpoint_fd, POLLIN |
					(ep->endpoint_marker_sent ? 0 : POLLOUT),
					NINJA_PK_DRAIN, ep);
	} else if (c->state == NINJA_RUNNING &&
		   ep->endpoint_state == NINJA_EP_CONNECTED &&
		   !NINJA_EP_ON_TCP(ep) && ep->endpoint_rail_ready) {
		/*
		 * A verbs connection's TCP socket is idle and the application
		 * never reads it: watch it here, so a peer that dropped the
		 * connection (its QP gone, our frames unacknowledged) is
		 * noticed and the frames replayed.
		 */
		(void)ninja_pollset_add(ps, ep->endpoint_fd, POLLIN,
					NINJA_PK_BOOT, ep);
	}
}

/* The descriptors of the verbs device, the pending accepts and every
 * endpoint the control thread owns now. */
void mca_btl_ninja_conn_poll(ninja_pollset_t *ps, uint64_t now)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	mca_btl_ninja_lock();
	if (rail_event_fd() >= 0)
		(void)ninja_pollset_add(ps, rail_event_fd(),
					POLLIN, NINJA_PK_RAIL, NULL);
	mca_btl_ninja_unlock();
	T.pending_base = ps->n;
	for (i = 0; i < T.npending; i++)
		(void)ninja_pollset_add(ps, T.pending[i].fd, POLLIN,
					NINJA_PK_PENDING, NULL);
	mca_btl_ninja_lock();
	for (i = 0; i < c->neps; i++)
		poll_endpoint(ps, c->eps[i], now);
	mca_btl_ninja_unlock();
}

/* Entry i of the poll set (verbs, boot or connect) has events. */
void mca_btl_ninja_conn_event(ninja_pollset_t *ps, int i)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_endpoint_t *ep = ps->owner[i];
	struct pollfd *p = &ps->fds[i];

	mca_btl_ninja_lock();
	switch (ps->kind[i]) {
	case NINJA_PK_RAIL:
		if (rail_event_fd() >= 0 && p->fd == rail_event_fd())
			rail_event();
		break;
	case NINJA_PK_BOOT:
		if (c->state == NINJA_RUNNING && ep->endpoint_fd == p->fd &&
		    ep->endpoint_state == NINJA_EP_CONNECTED &&
		    !NINJA_EP_ON_TCP(ep) && boot_dead(ep))
			mca_btl_ninja_endpoint_failed(ep, 0,
				"verbs connection closed by the peer");
		break;
	case NINJA_PK_CONNECT:
		if (ep->endpoint_fd == p->fd &&
		    (ep->endpoint_state == NINJA_EP_CONNECTING ||
		     ep->endpoint_state == NINJA_EP_HELLO))
			connect_event(ep, p->revents);
		break;
	default:
		break;
	}
	mca_btl_ninja_unlock();
}

/* After the poll: the pending accepts that spoke, then the idle ones go. */
void mca_btl_ninja_conn_pending(ninja_pollset_t *ps)
{
	int base = T.pending_base, i;
	uint64_t now;

	/* Newest index first (drops reorder). */
	for (i = ps->n - 1; i >= base; i--)
		if (ps->kind[i] == NINJA_PK_PENDING && ps->fds[i].revents &&
		    i - base < T.npending &&
		    T.pending[i - base].fd == ps->fds[i].fd)
			pending_event(i - base);
	/* Drop accepted sockets that did not prove themselves. */
	now = mca_btl_ninja_now_ns();
	for (i = T.npending - 1; i >= 0; i--)
		if (now > T.pending[i].t + NINJA_PENDING_NS)
			pending_drop(i, true);
}

/* The thread ends: close what was never authenticated. */
void mca_btl_ninja_conn_fini(void)
{
	for (int i = 0; i < T.npending; i++)
		close(T.pending[i].fd);
	T.npending = 0;
	free(T.want);
	T.want = NULL;
	T.want_cap = 0;
}
