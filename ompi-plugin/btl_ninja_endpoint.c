/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_endpoint.c - per-peer data path, rail-neutral: the FIFO send
 * queue and the replay window (sequence numbers, acknowledgements,
 * replay), the one dispatch of a whole frame (mca_btl_ninja_endpoint_frame)
 * with upcalls into ob1 (application thread) or deferral of received
 * frames (control thread, during a drain).  What carries the bytes is the
 * endpoint's rail (btl_ninja_rail.h): TCP's stream writer and reader are
 * in btl_ninja_rail_tcp.c.  Every function here runs with the component
 * lock held.
 */
#include "opal_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "btl_ninja.h"

static void frag_callback(mca_btl_ninja_frag_t *f, bool app, bool release);

/* The key of a process in component.eps_by_name. */
static uint64_t name_key(opal_process_name_t name)
{
	return (uint64_t)name.jobid << 32 | name.vpid;
}

/* Lock held: the endpoint of a peer, by a hash of its name (every HELLO). */
mca_btl_ninja_endpoint_t *mca_btl_ninja_endpoint_lookup(opal_process_name_t name)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	void *ep;

	NINJA_ASSERT_LOCKED();
	if (!c->eps_by_name_ready ||
	    opal_hash_table_get_value_uint64(&c->eps_by_name, name_key(name),
					     &ep) != OPAL_SUCCESS)
		return NULL;
	return ep;
}

/* Lock held, or finalize: forget the name index. */
void mca_btl_ninja_endpoint_index_fini(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (c->eps_by_name_ready)
		OBJ_DESTRUCT(&c->eps_by_name);
	c->eps_by_name_ready = false;
}

static bool index_ready(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (c->eps_by_name_ready)
		return true;
	OBJ_CONSTRUCT(&c->eps_by_name, opal_hash_table_t);
	if (opal_hash_table_init(&c->eps_by_name, 64) != OPAL_SUCCESS) {
		OBJ_DESTRUCT(&c->eps_by_name);
		return false;
	}
	c->eps_by_name_ready = true;
	return true;
}

/*
 * New endpoint for a peer (lock held).  Created by add_procs, or by the
 * control thread when a peer connects before ob1 has added it (Open MPI
 * adds procs lazily, on first use): ob1 finds the same endpoint later.
 */
mca_btl_ninja_endpoint_t *mca_btl_ninja_endpoint_create(opal_process_name_t name)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_endpoint_t *ep;

	NINJA_ASSERT_LOCKED();
	if (!index_ready())
		return NULL;
	if (c->neps == c->eps_cap) {
		int cap = c->eps_cap ? 2 * c->eps_cap : 16;
		void *n = realloc(c->eps, cap * sizeof(*c->eps));
		void *m;

		if (!n)
			return NULL;
		c->eps = n;
		m = realloc(c->conn, cap * sizeof(*c->conn));
		if (!m)
			return NULL;
		c->conn = m;
		c->eps_cap = cap;
	}
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	if (opal_hash_table_set_value_uint64(&c->eps_by_name, name_key(name),
					     ep) != OPAL_SUCCESS) {
		free(ep);
		return NULL;
	}
	ep->endpoint_name = name;
	ep->endpoint_fd = -1;
	ep->endpoint_state = NINJA_EP_CLOSED;
	ep->endpoint_rail = &mca_btl_ninja_rail_tcp;
	ep->endpoint_index = c->neps;
	c->eps[c->neps++] = ep;
	return ep;
}

void mca_btl_ninja_endpoint_update_out(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool want = ep->endpoint_sq_head != NULL;
	struct epoll_event ev;

	if (ep->endpoint_fd < 0 || want == ep->endpoint_epollout)
		return;
	ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
	ev.data.ptr = ep;
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, ep->endpoint_fd, &ev) == 0)
		ep->endpoint_epollout = want;
}

void mca_btl_ninja_endpoint_attach(mca_btl_ninja_endpoint_t *ep, int fd)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct epoll_event ev;

	NINJA_ASSERT_LOCKED();
	ep->endpoint_fd = fd;
	ep->endpoint_state = NINJA_EP_CONNECTED;
	ep->endpoint_want_connect = false;
	ep->endpoint_rx_off = ep->endpoint_rx_len = 0;
	ep->endpoint_rx_put_left = 0;
	ep->endpoint_marker_sent = false;
	ep->endpoint_marker_off = 0;
	ep->endpoint_connects++;
	if (!ep->endpoint_rx_buf) {
		ep->endpoint_rx_buf = malloc(NINJA_RX_INIT);
		ep->endpoint_rx_cap = ep->endpoint_rx_buf ? NINJA_RX_INIT : 0;
	}
	ev.events = EPOLLIN | (ep->endpoint_sq_head ? EPOLLOUT : 0);
	ev.data.ptr = ep;
	ep->endpoint_epollout = ep->endpoint_sq_head != NULL;
	(void)epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
	if (!ep->endpoint_in_conn) {
		c->conn[c->nconn++] = ep;
		ep->endpoint_in_conn = true;
	}
	c->nactive = c->nconn;
}

void mca_btl_ninja_endpoint_close(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	NINJA_ASSERT_LOCKED();
	if (ep->endpoint_fd >= 0) {
		if (ep->endpoint_state == NINJA_EP_CONNECTED)
			(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, ep->endpoint_fd,
					NULL);
		close(ep->endpoint_fd);
		ep->endpoint_fd = -1;
	}
	mca_btl_ninja_rail_ep_close(ep);
	ep->endpoint_state = NINJA_EP_CLOSED;
	ep->endpoint_epollout = false;
	ep->endpoint_hs_len = 0;
	if (ep->endpoint_in_conn) {
		for (i = 0; i < c->nconn; i++) {
			if (c->conn[i] == ep) {
				c->conn[i] = c->conn[--c->nconn];
				break;
			}
		}
		ep->endpoint_in_conn = false;
	}
	c->nactive = c->nconn;
	/* Whatever a frame was half-written: it restarts whole on the next
	 * connection (the peer discards a partial frame with the socket). */
	if (ep->endpoint_sq_head)
		ep->endpoint_sq_head->sent = 0;
	ep->endpoint_rx_off = ep->endpoint_rx_len = 0;
	ep->endpoint_rx_put_left = 0;
	ep->endpoint_rx_put_reg = NULL;
	ep->endpoint_rx_get = NULL;	/* its response comes again */
}

/*
 * Owned: every byte of the frame is in our fragment and ob1 handed the
 * descriptor over (BTL_OWNERSHIP).  Such a frame is retained as it is and
 * ob1 may complete at once; any other (payload in place in the user's
 * buffer, or a descriptor ob1 frees itself) completes only when the peer
 * has acknowledged it, since a replay would read that memory again.
 */
static inline bool frag_owned(const mca_btl_ninja_frag_t *f)
{
	return (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP) &&
	       ((f->base.des_segment_count == 1 &&
		 f->base.des_segments[0].seg_addr.pval == (void *)f->data) ||
		f->absorbed);
}

/*
 * A small frame sent in place (ob1's header in data[], the payload in the
 * user's buffer: ninja_prepare_src) is written straight from the user's
 * buffer and then copied behind the header (btl_ninja_retain_copy, up to the eager limit): it is
 * owned from then on, so ob1 completes the send at once instead of one
 * acknowledgement later (measured: 512 B-16 KiB ping-pong 1.3x slower
 * without).  ob1's segments are left as they are (its callbacks read
 * them); only our iovecs move to the copy.
 */
static inline bool frag_absorbable(const mca_btl_ninja_frag_t *f)
{
	return (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP) &&
	       f->base.des_segment_count == 2 && f->iov_cnt == 3 &&
	       f->iov[1].iov_base == (void *)f->data &&
	       f->iov[2].iov_len <=
	       (size_t)mca_btl_ninja_component.retain_copy &&
	       f->iov[1].iov_len + f->iov[2].iov_len <= f->cap;
}

static inline void frag_absorb(mca_btl_ninja_frag_t *f)
{
	if (f->absorbed || !frag_absorbable(f))
		return;
	memcpy(f->data + f->iov[1].iov_len, f->iov[2].iov_base,
	       f->iov[2].iov_len);
	f->iov[1].iov_len += f->iov[2].iov_len;
	f->iov_cnt = 2;
	f->absorbed = true;
}

/* A retained DATA frame may go out: the window has room (or is empty). */
static inline bool window_open(mca_btl_ninja_endpoint_t *ep,
			       mca_btl_ninja_frag_t *f)
{
	return !ep->endpoint_rt_head || f->hdr.type != NINJA_FRAME_DATA ||
	       ep->endpoint_rt_bytes + f->size <=
	       (size_t)mca_btl_ninja_component.replay_window;
}

/* The first byte of f goes on the wire: stamp the current ack. */
static inline void frame_start(mca_btl_ninja_endpoint_t *ep,
			       mca_btl_ninja_frag_t *f)
{
	if (f->hdr.type != NINJA_FRAME_DATA && f->hdr.type != NINJA_FRAME_ACK)
		return;		/* a control frame keeps its epoch */
	f->hdr.ack = ep->endpoint_rx_seq;	/* the rail's post notes it sent */
	if (f->hdr.type == NINJA_FRAME_DATA &&
	    ep->endpoint_rt_bytes + f->size >
	    (size_t)mca_btl_ninja_component.replay_window / 2)
		f->hdr.flags |= NINJA_FLAG_ACK_REQ;
}

/*
 * Fault injection (btl_ninja_fault_inject = N, a test knob): about one in
 * N frames written, or reads that returned data, on the application's
 * thread while RUNNING breaks the connection with a reset.
 */
bool mca_btl_ninja_fault_due(bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t x = c->fault_rng;

	if (!app || c->fault_inject <= 0 || c->state != NINJA_RUNNING)
		return false;
	if (!x)
		x = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + mca_btl_ninja_now_ns();
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	c->fault_rng = x;
	return x % (uint64_t)c->fault_inject == 0;
}

void mca_btl_ninja_fault_reset(mca_btl_ninja_endpoint_t *ep, const char *where)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	mca_btl_ninja_component.n_faults++;
	(void)setsockopt(ep->endpoint_fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	NINJA_VERBOSE(10, "btl:ninja: rank %u: fault injected (%s) on the "
		      "connection to %u.%u", OPAL_PROC_MY_NAME.vpid, where,
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid);
}

/*
 * A frame is on the wire.  DATA is retained until acknowledged (owned
 * frames complete towards ob1 now, others at the ack); our own ACK
 * frames go back to the pool.
 */
void mca_btl_ninja_endpoint_sent(mca_btl_ninja_endpoint_t *ep,
				 mca_btl_ninja_frag_t *f, bool app)
{
	ep->endpoint_tx_frags++;
	ep->endpoint_tx_bytes += f->size;
	if (OPAL_UNLIKELY(f->fault_at))
		mca_btl_ninja_rdma_fault_sent(f);	/* test knob */
	if (f->hdr.type != NINJA_FRAME_DATA) {
		mca_btl_ninja_upgrade_sent(f);	/* may start a hold */
		mca_btl_ninja_frag_return(f);
		return;
	}
	if (ninja_seq_before(f->hdr.seq, ep->endpoint_tx_acked)) {
		/*
		 * A replayed frame that the peer acknowledged while it was
		 * being written (it had it: the replay point was understated).
		 * acked() has moved past it, and no later ack releases a frame
		 * retained behind tx_acked: complete it now.
		 */
		frag_callback(f, app, true);
		return;
	}
	frag_absorb(f);
	f->next = NULL;
	if (ep->endpoint_rt_tail)
		ep->endpoint_rt_tail->next = f;
	else
		ep->endpoint_rt_head = f;
	ep->endpoint_rt_tail = f;
	ep->endpoint_rt_bytes += f->size;
	ep->endpoint_rt_len++;
	if (frag_owned(f))
		frag_callback(f, app, false);
}

/*
 * ob1's callback, if one is owed and not made yet: now (application
 * thread) or through the completion queue (control thread).  release:
 * the frame is acknowledged, recycle it after the callback.
 */
static void frag_callback(mca_btl_ninja_frag_t *f, bool app, bool release)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool cb = !f->cb_done && f->base.des_cbfunc &&
		  (f->queued ||
		   (f->base.des_flags & MCA_BTL_DES_SEND_ALWAYS_CALLBACK));

	f->cb_done = true;
	if (f->in_cq) {
		/* Its callback is still queued: recycle it after that. */
		f->cq_release = f->cq_release || release;
		return;
	}
	if (cb && !app) {
		/* Upcalls only on the application's thread. */
		f->in_cq = true;
		f->cq_release = release;
		f->cq_next = NULL;
		if (c->cq_tail)
			c->cq_tail->cq_next = f;
		else
			c->cq_head = f;
		c->cq_tail = f;
		c->app_work = 1;
		return;
	}
	if (cb)
		f->base.des_cbfunc(&mca_btl_ninja_module.super, f->endpoint,
				   &f->base, OPAL_SUCCESS);
	if (release && (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP))
		mca_btl_ninja_frag_return(f);
}

/*
 * The peer has every DATA frame before ack: release what it covers.
 * app: on the application's thread (callbacks now).  May call into ob1,
 * which may send and even close the endpoint.
 */
void mca_btl_ninja_endpoint_acked(mca_btl_ninja_endpoint_t *ep, uint32_t ack,
				  bool app)
{
	mca_btl_ninja_frag_t *f;

	if (!ninja_seq_before(ep->endpoint_tx_acked, ack))
		return;
	if (ninja_seq_before(ep->endpoint_tx_seq, ack)) {
		NINJA_ERROR("btl:ninja: %u.%u acknowledges seq %u, we sent up to %u",
			    ep->endpoint_name.jobid, ep->endpoint_name.vpid,
			    ack, ep->endpoint_tx_seq);
		return;
	}
	ep->endpoint_tx_acked = ack;
	while ((f = ep->endpoint_rt_head) &&
	       ninja_seq_before(f->hdr.seq, ack)) {
		ep->endpoint_rt_head = f->next;
		if (!ep->endpoint_rt_head)
			ep->endpoint_rt_tail = NULL;
		ep->endpoint_rt_bytes -= f->size;
		ep->endpoint_rt_len--;
		frag_callback(f, app, true);
	}
}

/*
 * A DATA frame arrived: 1 deliver it (the next in sequence), 0 drop it (a
 * duplicate from a replay), -1 a gap: frames lost, which a correct sender
 * on a reliable rail never causes.  The first gap at a point gets one
 * reconnection (the sender replays from our ack: a sender that still has
 * the frames heals); a second gap at the same point means the frames are
 * gone, and the peer is reported to ob1 as a fatal protocol error (the
 * caller closes the connection) instead of reconnecting forever.
 */
int mca_btl_ninja_endpoint_rx_check(mca_btl_ninja_endpoint_t *ep,
				    const ninja_frame_hdr_t *hdr)
{
	if (OPAL_LIKELY(hdr->seq == ep->endpoint_rx_seq))
		return 1;
	if (ninja_seq_before(hdr->seq, ep->endpoint_rx_seq)) {
		/* A replay of what we have: drop it, and tell the sender. */
		ep->endpoint_dups++;
		ep->endpoint_ack_req = true;
		return 0;
	}
	if (!ep->endpoint_gap_seen ||
	    ep->endpoint_gap_seq != ep->endpoint_rx_seq) {
		NINJA_ERROR("btl:ninja: rank %u: frame %u from %u.%u but %u "
			    "expected: frames lost, reconnecting to replay",
			    OPAL_PROC_MY_NAME.vpid, hdr->seq,
			    ep->endpoint_name.jobid, ep->endpoint_name.vpid,
			    ep->endpoint_rx_seq);
		ep->endpoint_gap_seen = true;
		ep->endpoint_gap_seq = ep->endpoint_rx_seq;
		return -1;
	}
	NINJA_ERROR("btl:ninja: rank %u: protocol error: frame %u from %u.%u "
		    "but %u expected, again after a replay: the frames in "
		    "between are lost", OPAL_PROC_MY_NAME.vpid, hdr->seq,
		    ep->endpoint_name.jobid, ep->endpoint_name.vpid,
		    ep->endpoint_rx_seq);
	mca_btl_ninja_endpoint_protocol_error(ep, "btl/ninja: protocol error "
		"(sequence gap after a replay: frames lost)");
	return -1;
}

/*
 * The peer broke the protocol (or we cannot keep to it): report it to
 * ob1 as unreachable, a fatal error with the reason, and never connect to
 * it again.  The caller closes the connection.
 */
void mca_btl_ninja_endpoint_protocol_error(mca_btl_ninja_endpoint_t *ep,
					   const char *why)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ERROR("btl:ninja: rank %u: %s; %u.%u reported unreachable",
		    OPAL_PROC_MY_NAME.vpid, why, ep->endpoint_name.jobid,
		    ep->endpoint_name.vpid);
	ep->endpoint_lost = true;
	ep->endpoint_lost_why = why;
	ep->endpoint_want_connect = false;
	c->peer_lost = 1;
	c->app_work = 1;
}

/* The frame rx_check accepted is whole: the next one is expected. */
void mca_btl_ninja_endpoint_rx_commit(mca_btl_ninja_endpoint_t *ep,
				      const ninja_frame_hdr_t *hdr)
{
	ep->endpoint_rx_seq++;
	ep->endpoint_ack_owed += sizeof(*hdr) + hdr->len;
	if (hdr->flags & NINJA_FLAG_ACK_REQ)
		ep->endpoint_ack_req = true;
}

int mca_btl_ninja_endpoint_rx_accept(mca_btl_ninja_endpoint_t *ep,
				     const ninja_frame_hdr_t *hdr)
{
	int ok = mca_btl_ninja_endpoint_rx_check(ep, hdr);

	if (OPAL_LIKELY(ok > 0))
		mca_btl_ninja_endpoint_rx_commit(ep, hdr);
	return ok;
}

/* Every retained frame back to ob1 and the pool (finalize). */
void mca_btl_ninja_endpoint_release_all(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_frag_t *f;

	while ((f = ep->endpoint_rt_head)) {
		ep->endpoint_rt_head = f->next;
		if (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP &&
		    !f->in_cq)
			mca_btl_ninja_frag_return(f);
	}
	ep->endpoint_rt_tail = NULL;
	ep->endpoint_rt_bytes = 0;
	ep->endpoint_rt_len = 0;
}

void mca_btl_ninja_endpoint_sq_append(mca_btl_ninja_endpoint_t *ep,
				      mca_btl_ninja_frag_t *f)
{
	f->next = NULL;
	f->queued = true;
	if (ep->endpoint_sq_tail)
		ep->endpoint_sq_tail->next = f;
	else
		ep->endpoint_sq_head = f;
	ep->endpoint_sq_tail = f;
	ep->endpoint_sq_len++;
}

static void sq_pop(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_frag_t *f = ep->endpoint_sq_head;

	ep->endpoint_sq_head = f->next;
	if (!ep->endpoint_sq_head)
		ep->endpoint_sq_tail = NULL;
	ep->endpoint_sq_len--;
}

/*
 * A new connection is up (control thread, lock held; peer_ack from its
 * handshake): release what the peer has, and queue every retained frame
 * it has not received in front of the send queue, in sequence order, to
 * be written again.
 */
void mca_btl_ninja_endpoint_replay(mca_btl_ninja_endpoint_t *ep,
				   uint32_t peer_ack)
{
	mca_btl_ninja_frag_t *f;
	uint64_t n = ep->endpoint_rt_len;

	NINJA_ASSERT_LOCKED();
	mca_btl_ninja_endpoint_acked(ep, peer_ack, false);
	n -= ep->endpoint_rt_len;
	/* Defensive: nothing queued can be older than the peer's ack. */
	while ((f = ep->endpoint_sq_head) && f->sent == 0 &&
	       f->hdr.type == NINJA_FRAME_DATA &&
	       ninja_seq_before(f->hdr.seq, peer_ack)) {
		sq_pop(ep);
		frag_callback(f, false, true);
	}
	if (ep->endpoint_sq_head)
		ep->endpoint_sq_head->sent = 0;
	if (ep->endpoint_rt_head) {
		NINJA_VERBOSE(10, "btl:ninja: rank %u: replaying %zu frames "
			      "(seq %u..) to %u.%u, %llu acknowledged at reconnect",
			      OPAL_PROC_MY_NAME.vpid, ep->endpoint_rt_len,
			      ep->endpoint_rt_head->hdr.seq,
			      ep->endpoint_name.jobid, ep->endpoint_name.vpid,
			      (unsigned long long)n);
		ep->endpoint_replayed += ep->endpoint_rt_len;
		ep->endpoint_rt_tail->next = ep->endpoint_sq_head;
		if (!ep->endpoint_sq_head)
			ep->endpoint_sq_tail = ep->endpoint_rt_tail;
		ep->endpoint_sq_head = ep->endpoint_rt_head;
		ep->endpoint_sq_len += ep->endpoint_rt_len;
		for (f = ep->endpoint_rt_head; f != ep->endpoint_rt_tail->next;
		     f = f->next)
			f->sent = 0;
		ep->endpoint_rt_head = ep->endpoint_rt_tail = NULL;
		ep->endpoint_rt_bytes = 0;
		ep->endpoint_rt_len = 0;
	}
	ep->endpoint_failed_at = 0;
	ep->endpoint_lost = false;
	/* An ACK request of the old connection may be lost with it. */
	ep->endpoint_ack_asking = false;
	ep->endpoint_ack_owed = 0;
	ep->endpoint_ack_req = ep->endpoint_ack_sent != ep->endpoint_rx_seq;
	mca_btl_ninja_endpoint_update_out(ep);
}

/*
 * The replay point for a handshake: the next seq we expect from the peer.
 * With fault injection on, half of the handshakes understate it (the last
 * ack that went on the wire, which the peer may or may not have seen), so
 * the peer replays frames we already have and the duplicate path is
 * exercised; that is always safe, the peer keeps everything above it.
 */
uint32_t mca_btl_ninja_endpoint_hs_ack(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (!OPAL_UNLIKELY(c->fault_inject) || c->state != NINJA_RUNNING ||
	    !(mca_btl_ninja_now_ns() & 1))
		ep->endpoint_ack_sent = ep->endpoint_rx_seq;
	return ep->endpoint_ack_sent;
}

/* The connection broke outside a drain: close it, reconnect and replay. */
void mca_btl_ninja_endpoint_failed(mca_btl_ninja_endpoint_t *ep, int err,
				   const char *what)
{
	bool owed = ep->endpoint_sq_head || ep->endpoint_rt_head;

	NINJA_ASSERT_LOCKED();
	NINJA_VERBOSE(10, "btl:ninja: rank %u: connection to %u.%u %s (%s)%s",
		      OPAL_PROC_MY_NAME.vpid,
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid, what,
		      err ? strerror(-err) : "closed by peer",
		      owed ? ", reconnecting" : "");
	mca_btl_ninja_endpoint_close(ep);
	ep->endpoint_failures++;
	if (owed && !ep->endpoint_lost) {
		if (!ep->endpoint_failed_at)
			ep->endpoint_failed_at = mca_btl_ninja_now_ns();
		ep->endpoint_want_connect = true;
		ep->endpoint_conn_start = 0;
		mca_btl_ninja_wake();
	}
}

#define ep_failed mca_btl_ninja_endpoint_failed

/*
 * Queue or write one frame.  Returns 1 if it is on the wire already and
 * ob1 may complete the request itself, 0 if ob1's callback is owed
 * (queued, or retained in place until acknowledged).
 */
int mca_btl_ninja_endpoint_send(mca_btl_ninja_endpoint_t *ep,
				mca_btl_ninja_frag_t *f, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *rail = ep->endpoint_rail;
	int r;

	NINJA_ASSERT_LOCKED();
	f->endpoint = ep;
	f->sent = 0;
	if (f->hdr.type == NINJA_FRAME_DATA) {
		if (OPAL_UNLIKELY(c->fault_gap) &&
		    ++c->fault_gap_count == c->fault_gap) {
			NINJA_ERROR("btl:ninja: rank %u: fault injected: seq %u "
				    "to %u.%u skipped (btl_ninja_fault_gap)",
				    OPAL_PROC_MY_NAME.vpid, ep->endpoint_tx_seq,
				    ep->endpoint_name.jobid,
				    ep->endpoint_name.vpid);
			ep->endpoint_tx_seq++;
		}
		f->hdr.seq = ep->endpoint_tx_seq++;
		/* A get's response completes nothing here (the reader's
		 * FIN carries its ack): it does not ask for one. */
		if (!frag_owned(f) && !frag_absorbable(f) &&
		    f->hdr.tag != NINJA_TAG_GETRESP)
			f->hdr.flags |= NINJA_FLAG_ACK_REQ;
	} else {
		/*
		 * A control frame of the live upgrade (UPGRADE*, READY): it
		 * carries our epoch, no sequence number and no ack (the
		 * receiver counts and acknowledges DATA frames only).
		 */
		f->hdr.epoch = c->epoch;
		f->hdr.seq = 0;
	}
	if (c->state == NINJA_RUNNING &&
	    ep->endpoint_state == NINJA_EP_CONNECTED &&
	    !ep->endpoint_sq_head && mca_btl_ninja_ep_ready(ep) &&
	    window_open(ep, f)) {
		frame_start(ep, f);
		r = rail->post(ep, f, app);
		if (r == 1) {
			bool owned;

			frag_absorb(f);
			owned = frag_owned(f);
			f->queued = !owned;
			mca_btl_ninja_endpoint_sent(ep, f, app);
			return owned ? 1 : 0;
		}
		mca_btl_ninja_endpoint_sq_append(ep, f);
		if (r < 0)
			ep_failed(ep, r, rail->post_failed);
		else if (rail->tx_wait)
			rail->tx_wait(ep);
		return 0;
	}
	mca_btl_ninja_endpoint_sq_append(ep, f);
	if (c->state == NINJA_RUNNING &&
	    ep->endpoint_state == NINJA_EP_CONNECTED &&
	    ep->endpoint_sq_head == f && mca_btl_ninja_ep_ready(ep)) {
		/* Only the window held it back: ask for acks. */
		(void)mca_btl_ninja_endpoint_flush(ep, app, false);
		return 0;
	}
	if (c->state == NINJA_RUNNING &&
	    ep->endpoint_state == NINJA_EP_CLOSED &&
	    !ep->endpoint_want_connect && !ep->endpoint_lost) {
		ep->endpoint_want_connect = true;
		ep->endpoint_conn_start = 0;
		mca_btl_ninja_wake();
	}
	return 0;
}

/*
 * sendi: the rail's fast path (ops.sendi) when nothing stands in its way
 * (RUNNING, connected, nothing queued, room in the replay window, no
 * fault injection); OPAL_ERR_RESOURCE_BUSY otherwise (the caller then
 * copies as usual).
 */
int mca_btl_ninja_endpoint_sendi(mca_btl_ninja_endpoint_t *ep,
				 const void *header, size_t header_size,
				 const void *payload, size_t payload_size,
				 uint8_t tag)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *rail = ep->endpoint_rail;
	size_t total = sizeof(ninja_frame_hdr_t) + header_size + payload_size;

	if (!rail->sendi || c->state != NINJA_RUNNING ||
	    ep->endpoint_state != NINJA_EP_CONNECTED || ep->endpoint_sq_head ||
	    (ep->endpoint_rt_head && ep->endpoint_rt_bytes + total >
	     (size_t)c->replay_window / 2) ||
	    OPAL_UNLIKELY(c->fault_inject | c->fault_gap))
		return OPAL_ERR_RESOURCE_BUSY;
	return rail->sendi(ep, header, header_size, payload, payload_size, tag);
}

/*
 * Queue an ACK frame (flags: NINJA_FLAG_ACK_REQ asks the peer for one
 * back) at the next frame boundary of a TCP connection, or write it now
 * when nothing is queued.  Returns true if it went in front of the head.
 */
static bool ack_queue(mca_btl_ninja_endpoint_t *ep, bool app, uint16_t flags)
{
	mca_btl_ninja_frag_t *f, *h = ep->endpoint_sq_head;
	int r;

	if (h && h->sent == 0 && h->hdr.type == NINJA_FRAME_ACK) {
		h->hdr.flags |= flags;	/* one is queued already */
		return false;
	}
	if (h && h->next && h->next->hdr.type == NINJA_FRAME_ACK) {
		h->next->hdr.flags |= flags;
		return false;
	}
	f = mca_btl_ninja_frag_alloc(0);
	if (!f)
		return false;
	memset(&f->hdr, 0, sizeof(f->hdr));
	f->hdr.type = NINJA_FRAME_ACK;
	f->hdr.flags = flags;
	f->iov[0].iov_base = &f->hdr;
	f->iov[0].iov_len = sizeof(f->hdr);
	f->iov_cnt = 1;
	f->size = sizeof(f->hdr);
	f->endpoint = ep;
	f->base.des_flags = MCA_BTL_DES_FLAGS_BTL_OWNERSHIP;
	f->base.des_segment_count = 0;
	f->cb_done = true;
	if (!h && !ep->endpoint_rail->post_ack) {
		/* Nothing queued on a rail that queues ACKs: out now. */
		frame_start(ep, f);
		r = ep->endpoint_rail->post(ep, f, false);
		if (r == 1) {
			mca_btl_ninja_endpoint_sent(ep, f, app);
			return false;
		}
		mca_btl_ninja_endpoint_sq_append(ep, f);
		if (r < 0 && app)
			ep_failed(ep, r, ep->endpoint_rail->post_failed);
		else
			mca_btl_ninja_endpoint_update_out(ep);
		return false;
	}
	/* At the next frame boundary: before the head or right after it. */
	f->queued = true;
	if (!h) {
		mca_btl_ninja_endpoint_sq_append(ep, f);
		return true;
	}
	if (h->sent == 0) {
		f->next = h;
		ep->endpoint_sq_head = f;
	} else {
		f->next = h->next;
		h->next = f;
		if (ep->endpoint_sq_tail == h)
			ep->endpoint_sq_tail = f;
	}
	ep->endpoint_sq_len++;
	mca_btl_ninja_endpoint_update_out(ep);
	return h->sent == 0;
}

/*
 * The head DATA frame does not fit the replay window: ask the peer, once
 * per ack value, to acknowledge what it has (frames that did not ask for
 * an ack would otherwise wait for the peer's own traffic).  True if an
 * ACK request went in front of the head.
 */
static bool window_blocked(mca_btl_ninja_endpoint_t *ep, bool app)
{
	if (ep->endpoint_ack_asking &&
	    ep->endpoint_ack_asked == ep->endpoint_tx_acked)
		return false;
	ep->endpoint_ack_asking = true;
	ep->endpoint_ack_asked = ep->endpoint_tx_acked;
	return ack_queue(ep, app, NINJA_FLAG_ACK_REQ);
}

/*
 * May f, the head of the send queue, go on the wire now?  1: yes (a frame
 * already started always may; a new one gets its ack stamped); 0: stop
 * here (a drain sends no new frame; back-pressure: the replay window is
 * full, wait for acks); -1: the head changed (an ACK request went in
 * front, or an acknowledged replay left): look again.
 */
static int frame_may_start(mca_btl_ninja_endpoint_t *ep,
			   mca_btl_ninja_frag_t *f, bool drain, bool app)
{
	if (f->sent)
		return 1;
	if (f->hdr.type == NINJA_FRAME_DATA &&
	    ninja_seq_before(f->hdr.seq, ep->endpoint_tx_acked)) {
		/*
		 * A replayed frame that the peer acknowledged while it waited
		 * here: the handshake understated the replay point and the
		 * peer's next ACK came first (a verbs acceptor reads it on the
		 * QP before the connector's READY lets it send).  Sending it
		 * would only make a duplicate that nothing acknowledges again
		 * (acked() has moved past it), and an in-place frame's
		 * completion would never reach ob1: drop it, complete it.
		 */
		sq_pop(ep);
		frag_callback(f, app, true);
		return -1;
	}
	if (drain)
		return 0;
	if (!window_open(ep, f))
		return window_blocked(ep, app) ? -1 : 0;
	frame_start(ep, f);
	return 1;
}

/*
 * An acknowledgement is owed (a frame asked for one, or a quarter of the
 * window arrived without one going back): send a standalone ACK frame at
 * the next frame boundary.  Lock held.
 */
void mca_btl_ninja_endpoint_ack_maybe(mca_btl_ninja_endpoint_t *ep, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	if (ep->endpoint_ack_sent == ep->endpoint_rx_seq ||
	    (!ep->endpoint_ack_req &&
	     ep->endpoint_ack_owed < (size_t)c->replay_window / 4) ||
	    c->state != NINJA_RUNNING ||
	    ep->endpoint_state != NINJA_EP_CONNECTED)
		return;
	if (ep->endpoint_rail->post_ack) {
		if (mca_btl_ninja_ep_ready(ep))
			(void)ep->endpoint_rail->post_ack(ep, 0, app);
		return;
	}
	(void)ack_queue(ep, app, 0);
}

/*
 * Write queued frames.  In a drain only the frame already started is
 * finished (the byte stream must end on a frame boundary) and then the
 * marker goes out; everything else stays queued for after the resume.
 * Returns 0, or <0 when the connection failed.
 */
int mca_btl_ninja_endpoint_flush(mca_btl_ninja_endpoint_t *ep, bool app,
				 bool drain)
{
	const ninja_rail_ops_t *rail = ep->endpoint_rail;
	mca_btl_ninja_frag_t *f;
	int r;

	NINJA_ASSERT_LOCKED();
	if (!mca_btl_ninja_ep_ready(ep))
		return 0;
	while ((f = ep->endpoint_sq_head)) {
		r = frame_may_start(ep, f, drain, app);
		if (r < 0)
			continue;
		if (r == 0)
			break;
		r = f->hdr.type == NINJA_FRAME_ACK && rail->post_ack ?
		    rail->post_ack(ep, f->hdr.flags, app && !drain) :
		    rail->post(ep, f, app && !drain);
		if (r < 0) {
			if (!drain)
				ep_failed(ep, r, rail->post_failed);
			return r;
		}
		if (r == 0)
			break;
		sq_pop(ep);
		mca_btl_ninja_endpoint_sent(ep, f, app);
		if (ep->endpoint_rail != rail)
			return 0;	/* live upgrade: nothing more on TCP */
	}
	if (drain && !ep->endpoint_marker_sent &&
	    (!ep->endpoint_sq_head || ep->endpoint_sq_head->sent == 0))
		return rail->post_marker(ep);
	if (!drain && rail->tx_wait)
		rail->tx_wait(ep);
	return 0;
}

/*
 * Our own tags, delivered whole (the verbs rail, a deferred frame, a
 * request): a put or a get's response is copied to its destination, a
 * get request answered, a deferred get completion made.  Each was
 * admitted (mca_btl_ninja_rdma_admit) before it was accepted in sequence;
 * checked again here, where memory is touched (a deferred frame waited).
 */
static void rdma_upcall(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
			void *data, size_t len)
{
	mca_btl_ninja_get_t *g = NULL;
	ninja_frame_hdr_t hdr;
	ninja_put_hdr_t ph;

	switch (tag) {
	case NINJA_TAG_GET:
		mca_btl_ninja_get_serve(ep, data, len);
		return;
	case NINJA_TAG_GETDONE:
		mca_btl_ninja_get_done(ep, data, len);
		return;
	case NINJA_TAG_PUT:
	case NINJA_TAG_GETRESP:
		break;
	default:
		return;
	}
	hdr.tag = tag;
	hdr.len = (uint32_t)len;
	if (!mca_btl_ninja_rdma_admit(ep, &hdr, data, len, true)) {
		ep_failed(ep, -EPROTO, "refused a put");
		return;
	}
	memcpy(&ph, data, sizeof(ph));
	if (tag == NINJA_TAG_GETRESP &&
	    !(g = mca_btl_ninja_get_find(ep, &ph, len - sizeof(ph))))
		return;		/* admitted above: not reached */
	memcpy((void *)(uintptr_t)ph.addr, (char *)data + sizeof(ph),
	       len - sizeof(ph));
	if (g)
		mca_btl_ninja_get_complete(ep, g, true);
}

void mca_btl_ninja_endpoint_upcall(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
				   void *data, size_t len)
{
	if (OPAL_UNLIKELY(tag >= NINJA_TAG_GETDONE && tag <= NINJA_TAG_PUT)) {
		/* Put, get: ours, not ob1's (tags 0x3c-0x3f). */
		rdma_upcall(ep, tag, data, len);
		return;
	}
	ninja_compat_upcall(mca_btl_base_active_message_trigger + tag,
			    &mca_btl_ninja_module.super, ep, tag, data, len);
}

int mca_btl_ninja_endpoint_defer(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
				 const void *data, size_t len)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_rxframe_t *r = malloc(sizeof(*r) + len);

	NINJA_ASSERT_LOCKED();
	if (!r)
		return OPAL_ERR_OUT_OF_RESOURCE;
	r->next = NULL;
	r->endpoint = ep;
	r->tag = tag;
	r->len = len;
	memcpy(r->data, data, len);
	if (c->dq_tail)
		c->dq_tail->next = r;
	else
		c->dq_head = r;
	c->dq_tail = r;
	c->app_work = 1;
	c->cycle.frames_deferred++;
	return OPAL_SUCCESS;
}

/* What a step of the receive path says: go on, stop reading (the
 * connection closed from a callback, or a marker ended the stream), or
 * refuse the connection (a protocol error). */
#define RX_NEXT	NINJA_RX_NEXT
#define RX_OUT	NINJA_RX_OUT
#define RX_FAIL	NINJA_RX_FAIL

/* A peer's drain marker. */
static void rx_marker(mca_btl_ninja_endpoint_t *ep,
		      const ninja_frame_hdr_t *hdr, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	ep->endpoint_marker_rcvd = hdr->epoch;
	NINJA_VERBOSE(20, "btl:ninja: marker %u from %u.%u", hdr->epoch,
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid);
	/* Only the next epoch starts a drain early (a later one waits for
	 * our agent's QUIESCE). */
	if (app && hdr->epoch > c->epoch && hdr->epoch - c->epoch == 1) {
		/* The peer drains before our agent told us: drain too, now. */
		if (hdr->epoch > c->drain_request)
			c->drain_request = hdr->epoch;
		mca_btl_ninja_wake();
	}
}

/* The connector's fast-rail endpoint is up (or not): frame READY. */
static void rx_ready(mca_btl_ninja_endpoint_t *ep, const ninja_frame_hdr_t *hdr)
{
	if (hdr->flags == 1 && ep->endpoint_rail_state &&
	    !NINJA_EP_ON_TCP(ep))
		ep->endpoint_rail_ready = true;
	else
		mca_btl_ninja_rail_ep_close(ep);
	NINJA_VERBOSE(10, "btl:ninja: rank %u: connection to %u.%u on %s",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid, ep->endpoint_rail->name);
	mca_btl_ninja_upgrade_ready(ep);
}

/* A whole DATA frame (payload: its hdr->len bytes): accept, deliver. */
static int rx_data(mca_btl_ninja_endpoint_t *ep, const ninja_frame_hdr_t *hdr,
		   void *payload, bool app, int *count, const char **why)
{
	mca_btl_ninja_endpoint_acked(ep, hdr->ack, app);
	if (ep->endpoint_fd < 0)
		return RX_OUT;	/* closed from a callback */
	if (OPAL_UNLIKELY(ninja_tag_rdma(hdr->tag)) &&
	    hdr->seq == ep->endpoint_rx_seq &&
	    !mca_btl_ninja_rdma_admit(ep, hdr, payload, hdr->len, app)) {
		/* A get outside our registrations: refused, not accepted
		 * (its replay comes again). */
		*why = "refused an RDMA frame";
		return RX_FAIL;
	}
	switch (mca_btl_ninja_endpoint_rx_accept(ep, hdr)) {
	case 1:
		break;
	case 0:
		return RX_NEXT;	/* duplicate of a replay */
	default:
		*why = "out of sequence";
		return RX_FAIL;
	}
	ep->endpoint_rx_frags++;
	ep->endpoint_rx_bytes += sizeof(*hdr) + hdr->len;
	(*count)++;
	if (app)
		mca_btl_ninja_endpoint_upcall(ep, hdr->tag, payload, hdr->len);
	else if (mca_btl_ninja_endpoint_defer(ep, hdr->tag, payload,
					      hdr->len) != OPAL_SUCCESS)
		NINJA_ERROR("btl:ninja: out of memory deferring a frame");
	if (ep->endpoint_fd < 0)
		return RX_OUT;	/* closed from the upcall */
	return RX_NEXT;
}

/*
 * The one dispatch of a whole frame, whatever rail it came on (the TCP
 * rail's stream reader, a fast rail's completions), other than a put read
 * in place from the stream.
 */
int mca_btl_ninja_endpoint_frame(mca_btl_ninja_endpoint_t *ep,
				 const ninja_frame_hdr_t *hdr, void *payload,
				 bool app, int *count, const char **why)
{
	switch (hdr->type) {
	case NINJA_FRAME_ACK:
		if (hdr->flags & NINJA_FLAG_ACK_REQ)
			ep->endpoint_ack_req = true;
		mca_btl_ninja_endpoint_acked(ep, hdr->ack, app);
		return ep->endpoint_fd < 0 ? RX_OUT : RX_NEXT;
	case NINJA_FRAME_MARKER:
		rx_marker(ep, hdr, app);
		return RX_OUT;	/* nothing follows a marker on this stream */
	case NINJA_FRAME_READY:
		rx_ready(ep, hdr);
		return RX_NEXT;
	case NINJA_FRAME_DATA:
		return rx_data(ep, hdr, payload, app, count, why);
	default:
		break;
	}
	if (hdr->type >= NINJA_FRAME_UPGRADE) {
		mca_btl_ninja_upgrade_frame(ep, hdr, payload, app);
		return RX_NEXT;
	}
	mca_btl_ninja_endpoint_bad_frame(ep, hdr->type);
	return RX_NEXT;
}

void mca_btl_ninja_endpoint_bad_frame(mca_btl_ninja_endpoint_t *ep,
				      unsigned int type)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	if (!c->badframe_told++)
		mca_btl_ninja_help("bad-frame-type", opal_process_info.nodename,
				   OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
				   ep->endpoint_name.vpid, type);
	else
		NINJA_VERBOSE(1, "btl:ninja: bad frame type %u from %u.%u",
			      type, ep->endpoint_name.jobid,
			      ep->endpoint_name.vpid);
}

/* Completions and frames the control thread left for us (app thread). */
int mca_btl_ninja_deliver_deferred(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	static bool delivering;
	int count = 0;

	NINJA_ASSERT_LOCKED();
	if (delivering)
		return 0;
	delivering = true;
	while (c->cq_head) {
		mca_btl_ninja_frag_t *f = c->cq_head;

		c->cq_head = f->cq_next;
		if (!c->cq_head)
			c->cq_tail = NULL;
		f->in_cq = false;
		f->base.des_cbfunc(&mca_btl_ninja_module.super, f->endpoint,
				   &f->base, OPAL_SUCCESS);
		if (f->cq_release &&
		    (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP))
			mca_btl_ninja_frag_return(f);
		count++;
	}
	while (c->dq_head) {
		mca_btl_ninja_rxframe_t *r = c->dq_head;

		c->dq_head = r->next;
		if (!c->dq_head)
			c->dq_tail = NULL;
		mca_btl_ninja_endpoint_upcall(r->endpoint, r->tag, r->data,
					      r->len);
		free(r);
		count++;
	}
	c->app_work = 0;
	delivering = false;
	return count;
}

/* Application thread, RUNNING: move bytes on connected sockets. */
int mca_btl_ninja_progress_io(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *rail;
	struct epoll_event evs[32];
	int i, n, count = 0;

	NINJA_ASSERT_LOCKED();
	if (c->dq_head || c->cq_head)
		return 0;	/* older frames first (re-entrant call) */
	if (c->rail && c->rail->progress)
		count += c->rail->progress(true);
	if (c->nconn <= c->poll_direct) {
		for (i = c->nconn - 1; i >= 0; i--) {
			mca_btl_ninja_endpoint_t *ep;

			if (i >= c->nconn)
				continue;
			ep = c->conn[i];
			if (ep->endpoint_sq_head &&
			    mca_btl_ninja_endpoint_flush(ep, true, false) < 0)
				continue;
			rail = mca_btl_ninja_ep_carrier(ep);
			if (ep->endpoint_marker_rcvd > c->epoch || !rail->recv)
				continue;	/* drain pending / frames on a fast rail */
			n = rail->recv(ep, true);
			if (n > 0)
				count += n;
		}
		return count;
	}
	n = epoll_wait(c->epfd, evs, 32, 0);
	for (i = 0; i < n; i++) {
		mca_btl_ninja_endpoint_t *ep = evs[i].data.ptr;
		int r;

		if (ep->endpoint_state != NINJA_EP_CONNECTED)
			continue;
		if (evs[i].events & EPOLLOUT &&
		    mca_btl_ninja_endpoint_flush(ep, true, false) < 0)
			continue;
		if (ep->endpoint_marker_rcvd > c->epoch)
			continue;
		if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
			/* The connection's socket: TCP's stream. */
			r = mca_btl_ninja_rail_tcp.recv(ep, true);
			if (r > 0)
				count += r;
		}
	}
	return count;
}
