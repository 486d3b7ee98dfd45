/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_endpoint.c - per-peer data path: framed non-blocking writes
 * with a FIFO send queue, a growing receive buffer parsed in place, upcalls
 * into ob1 (application thread) or deferral of received frames (control
 * thread, during a drain).  Every function here runs with the component
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

mca_btl_ninja_endpoint_t *mca_btl_ninja_endpoint_lookup(opal_process_name_t name)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	for (i = 0; i < c->neps; i++)
		if (c->eps[i]->endpoint_name.jobid == name.jobid &&
		    c->eps[i]->endpoint_name.vpid == name.vpid)
			return c->eps[i];
	return NULL;
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
	ep->endpoint_name = name;
	ep->endpoint_fd = -1;
	ep->endpoint_state = NINJA_EP_CLOSED;
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

	if (ep->endpoint_fd >= 0) {
		if (ep->endpoint_state == NINJA_EP_CONNECTED)
			(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, ep->endpoint_fd,
					NULL);
		close(ep->endpoint_fd);
		ep->endpoint_fd = -1;
	}
	mca_btl_ninja_verbs_ep_destroy(ep);
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
}

/* Write what is left of a frame.  1: complete, 0: would block, <0: error. */
static int frag_write(int fd, mca_btl_ninja_frag_t *f)
{
	struct iovec v[3];
	struct msghdr msg;
	size_t skip = f->sent;
	int i, n = 0;
	ssize_t r;

	for (i = 0; i < f->iov_cnt; i++) {
		if (skip >= f->iov[i].iov_len) {
			skip -= f->iov[i].iov_len;
			continue;
		}
		v[n].iov_base = (char *)f->iov[i].iov_base + skip;
		v[n].iov_len = f->iov[i].iov_len - skip;
		skip = 0;
		n++;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = v;
	msg.msg_iovlen = n;
	r = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return -errno;
	}
	f->sent += (size_t)r;
	return f->sent == f->size;
}

/* A frame is on the wire: account, call back ob1 now or later, recycle. */
static void frag_complete(mca_btl_ninja_frag_t *f, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_endpoint_t *ep = f->endpoint;
	bool cb = f->base.des_cbfunc &&
		  (f->queued ||
		   (f->base.des_flags & MCA_BTL_DES_SEND_ALWAYS_CALLBACK));

	if (f->hdr.type != NINJA_FRAME_DATA)
		mca_btl_ninja_upgrade_sent(f);	/* may start a hold */
	ep->endpoint_tx_frags++;
	ep->endpoint_tx_bytes += f->size;
	if (cb && !app) {
		/* Upcalls only on the application's thread. */
		f->next = NULL;
		if (c->cq_tail)
			c->cq_tail->next = f;
		else
			c->cq_head = f;
		c->cq_tail = f;
		c->app_work = 1;
		return;
	}
	if (cb)
		f->base.des_cbfunc(&mca_btl_ninja_module.super, ep, &f->base,
				   OPAL_SUCCESS);
	if (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP)
		mca_btl_ninja_frag_return(f);
}

static void sq_append(mca_btl_ninja_endpoint_t *ep, mca_btl_ninja_frag_t *f)
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

/* The connection broke outside a drain: close it and reconnect lazily. */
static void ep_failed(mca_btl_ninja_endpoint_t *ep, int err, const char *what)
{
	NINJA_VERBOSE(10, "btl:ninja: connection to %u.%u %s (%s)%s",
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid, what,
		      err ? strerror(-err) : "closed by peer",
		      ep->endpoint_sq_head ? ", reconnecting" : "");
	mca_btl_ninja_endpoint_close(ep);
	if (ep->endpoint_sq_head) {
		ep->endpoint_want_connect = true;
		ep->endpoint_conn_start = 0;
		mca_btl_ninja_wake();
	}
}

/*
 * Queue or write one frame.  Returns 1 if it is on the wire already (ob1
 * then completes the request itself), 0 if queued (callback owed).
 */
int mca_btl_ninja_endpoint_send(mca_btl_ninja_endpoint_t *ep,
				mca_btl_ninja_frag_t *f, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool verbs;
	int r;

	f->endpoint = ep;
	f->sent = 0;
	f->hdr.epoch = c->epoch;
	f->hdr.seq = ep->endpoint_tx_seq++;
	verbs = ep->endpoint_rail == NINJA_RAIL_VERBS;
	if (c->state == NINJA_RUNNING &&
	    ep->endpoint_state == NINJA_EP_CONNECTED &&
	    !ep->endpoint_sq_head && (!verbs || ep->endpoint_verbs_ready)) {
		r = verbs ? mca_btl_ninja_verbs_send(ep, f) :
			    frag_write(ep->endpoint_fd, f);
		if (r == 1) {
			f->queued = false;
			frag_complete(f, app);
			return 1;
		}
		sq_append(ep, f);
		if (r < 0)
			ep_failed(ep, r, verbs ? "verbs send failed" : "write failed");
		else if (!verbs)
			mca_btl_ninja_endpoint_update_out(ep);
		return 0;
	}
	sq_append(ep, f);
	if (c->state == NINJA_RUNNING &&
	    ep->endpoint_state == NINJA_EP_CLOSED &&
	    !ep->endpoint_want_connect) {
		ep->endpoint_want_connect = true;
		ep->endpoint_conn_start = 0;
		mca_btl_ninja_wake();
	}
	return 0;
}

/*
 * sendi fast path (TCP, connected, nothing queued, RUNNING): one sendmsg
 * of our header, ob1's header and the payload in place, no fragment and no
 * copy.  Only what the socket did not take is copied into a fragment and
 * queued (already partly written).  Returns OPAL_SUCCESS when the frame is
 * on the wire or queued, OPAL_ERR_RESOURCE_BUSY when the fast path does not
 * apply (the caller then copies as usual).
 */
int mca_btl_ninja_endpoint_sendi(mca_btl_ninja_endpoint_t *ep,
				 const void *header, size_t header_size,
				 const void *payload, size_t payload_size,
				 uint8_t tag)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	ninja_frame_hdr_t hdr;
	struct iovec iov[3];
	struct msghdr msg;
	mca_btl_ninja_frag_t *f;
	size_t total = sizeof(hdr) + header_size + payload_size;
	ssize_t r;

	if (c->state != NINJA_RUNNING || ep->endpoint_rail != NINJA_RAIL_TCP ||
	    ep->endpoint_state != NINJA_EP_CONNECTED || ep->endpoint_sq_head)
		return OPAL_ERR_RESOURCE_BUSY;
	hdr.type = NINJA_FRAME_DATA;
	hdr.tag = tag;
	hdr.flags = 0;
	hdr.len = (uint32_t)(header_size + payload_size);
	hdr.epoch = c->epoch;
	hdr.seq = ep->endpoint_tx_seq++;
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)header;
	iov[1].iov_len = header_size;
	iov[2].iov_base = (void *)payload;
	iov[2].iov_len = payload_size;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = payload_size ? 3 : 2;
	r = sendmsg(ep->endpoint_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r == (ssize_t)total) {
		ep->endpoint_tx_frags++;
		ep->endpoint_tx_bytes += total;
		return OPAL_SUCCESS;
	}
	if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		ep->endpoint_tx_seq--;	/* nothing written: the slow path resends */
		return OPAL_ERR_RESOURCE_BUSY;
	}
	/* Partly written (or not at all): keep the rest, in order. */
	f = mca_btl_ninja_frag_copy(header, header_size, payload, payload_size,
				    tag);
	if (!f) {
		NINJA_ERROR("btl:ninja: out of fragments with a frame half-written");
		return OPAL_ERR_OUT_OF_RESOURCE;
	}
	f->endpoint = ep;
	f->hdr = hdr;
	sq_append(ep, f);
	f->sent = r > 0 ? (size_t)r : 0;
	mca_btl_ninja_endpoint_update_out(ep);
	return OPAL_SUCCESS;
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
	mca_btl_ninja_frag_t *f;
	int r;

	if (ep->endpoint_rail == NINJA_RAIL_VERBS) {
		if (!ep->endpoint_verbs_ready)
			return 0;
		while ((f = ep->endpoint_sq_head)) {
			if (drain && f->sent == 0)
				break;
			r = mca_btl_ninja_verbs_send(ep, f);
			if (r < 0 && !drain)
				ep_failed(ep, r, "verbs send failed");
			if (r <= 0)
				return r;
			sq_pop(ep);
			frag_complete(f, app);
		}
		if (drain && !ep->endpoint_marker_sent &&
		    (!ep->endpoint_sq_head || ep->endpoint_sq_head->sent == 0))
			return mca_btl_ninja_verbs_send_marker(ep);
		return 0;
	}
	while ((f = ep->endpoint_sq_head)) {
		if (drain && f->sent == 0)
			break;
		r = frag_write(ep->endpoint_fd, f);
		if (r < 0) {
			if (!drain)
				ep_failed(ep, r, "write failed");
			return r;
		}
		if (r == 0)
			break;
		sq_pop(ep);
		frag_complete(f, app);
		if (ep->endpoint_rail != NINJA_RAIL_TCP)
			return 0;	/* live upgrade: nothing more on TCP */
	}
	if (drain && !ep->endpoint_marker_sent &&
	    (!ep->endpoint_sq_head || ep->endpoint_sq_head->sent == 0)) {
		const char *p = (const char *)&ep->endpoint_marker;
		ssize_t n;

		n = send(ep->endpoint_fd, p + ep->endpoint_marker_off,
			 sizeof(ep->endpoint_marker) - ep->endpoint_marker_off,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)
			return -errno;
		if (n > 0)
			ep->endpoint_marker_off += (size_t)n;
		if (ep->endpoint_marker_off == sizeof(ep->endpoint_marker))
			ep->endpoint_marker_sent = true;
	}
	if (!drain)
		mca_btl_ninja_endpoint_update_out(ep);
	return 0;
}

void mca_btl_ninja_endpoint_upcall(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
				   void *data, size_t len)
{
	const mca_btl_active_message_callback_t *reg =
		mca_btl_base_active_message_trigger + tag;
	mca_btl_base_segment_t seg;
	mca_btl_base_descriptor_t des;

	if (NINJA_TAG_PUT == tag) {
		/* A put that came whole (verbs rail, deferred frame). */
		ninja_put_hdr_t ph;

		if (len < sizeof(ph))
			return;
		memcpy(&ph, data, sizeof(ph));
		memcpy((void *)(uintptr_t)ph.addr, (char *)data + sizeof(ph),
		       len - sizeof(ph));
		return;
	}
	seg.seg_addr.pval = data;
	seg.seg_len = len;
	memset(&des, 0, sizeof(des));
	des.des_segments = &seg;
	des.des_segment_count = 1;
	if (reg->cbfunc)
		reg->cbfunc(&mca_btl_ninja_module.super, tag, &des, reg->cbdata);
}

int mca_btl_ninja_endpoint_defer(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
				 const void *data, size_t len)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_rxframe_t *r = malloc(sizeof(*r) + len);

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

/*
 * A put frame's header and destination are in the buffer at p: copy the
 * part of its data that came with them, read the rest in place later
 * (endpoint_rx_put).  Whichever thread reads it writes the destination:
 * ob1 does not look at it before the FIN, which follows on this stream.
 */
static void rx_put_start(mca_btl_ninja_endpoint_t *ep,
			 const ninja_frame_hdr_t *hdr, unsigned char *p,
			 size_t avail)
{
	size_t dlen = hdr->len - sizeof(ninja_put_hdr_t);
	size_t have = avail - sizeof(*hdr) - sizeof(ninja_put_hdr_t);
	ninja_put_hdr_t ph;

	memcpy(&ph, p + sizeof(*hdr), sizeof(ph));
	if (have > dlen)
		have = dlen;
	memcpy((void *)(uintptr_t)ph.addr,
	       p + sizeof(*hdr) + sizeof(ph), have);
	ep->endpoint_rx_off += sizeof(*hdr) + sizeof(ph) + have;
	ep->endpoint_rx_seq++;
	ep->endpoint_rx_frags++;
	ep->endpoint_rx_bytes += sizeof(*hdr) + hdr->len;
	ep->endpoint_rx_put = (unsigned char *)(uintptr_t)ph.addr + have;
	ep->endpoint_rx_put_left = dlen - have;
}

/*
 * Read and dispatch frames.  app: upcall into ob1 (application thread,
 * RUNNING); otherwise defer (control thread, drain).  Returns the number
 * of frames handled, or <0 if the connection is gone.
 */
int mca_btl_ninja_endpoint_recv(mca_btl_ninja_endpoint_t *ep, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int count = 0, loops = 0;

	if (ep->endpoint_rx_busy || !ep->endpoint_rx_buf)
		return 0;
	ep->endpoint_rx_busy = true;
	for (;;) {
		size_t avail = ep->endpoint_rx_len - ep->endpoint_rx_off;
		ninja_frame_hdr_t hdr;
		ssize_t n;

		/* Dispatch every complete frame in the buffer. */
		while (avail >= sizeof(hdr)) {
			unsigned char *p = ep->endpoint_rx_buf +
					   ep->endpoint_rx_off;
			size_t need;

			memcpy(&hdr, p, sizeof(hdr));
			need = sizeof(hdr) + hdr.len;
			if (NINJA_FRAME_DATA == hdr.type &&
			    NINJA_TAG_PUT == hdr.tag &&
			    hdr.len >= sizeof(ninja_put_hdr_t) &&
			    avail >= sizeof(hdr) + sizeof(ninja_put_hdr_t)) {
				rx_put_start(ep, &hdr, p, avail);
				avail = ep->endpoint_rx_len - ep->endpoint_rx_off;
				count++;
				continue;
			}
			if (avail < need)
				break;
			ep->endpoint_rx_off += need;
			avail -= need;
			ep->endpoint_rx_seq++;
			if (hdr.type == NINJA_FRAME_MARKER) {
				ep->endpoint_marker_rcvd = hdr.epoch;
				NINJA_VERBOSE(20, "btl:ninja: marker %u from %u.%u",
					      hdr.epoch,
					      ep->endpoint_name.jobid,
					      ep->endpoint_name.vpid);
				if (app && hdr.epoch > c->epoch) {
					/* The peer drains before our agent
					 * told us: drain too, now. */
					if (hdr.epoch > c->drain_request)
						c->drain_request = hdr.epoch;
					mca_btl_ninja_wake();
				}
				/* Nothing follows a marker on this stream. */
				goto out;
			}
			if (hdr.type == NINJA_FRAME_READY) {
				/* The connector's QP is up (or not). */
				if (hdr.flags == 1 && ep->endpoint_verbs) {
					ep->endpoint_verbs_ready = true;
				} else {
					mca_btl_ninja_verbs_ep_destroy(ep);
					ep->endpoint_rail = NINJA_RAIL_TCP;
				}
				NINJA_VERBOSE(10, "btl:ninja: rank %u: connection to %u.%u on %s",
					      OPAL_PROC_MY_NAME.vpid,
					      ep->endpoint_name.jobid,
					      ep->endpoint_name.vpid,
					      ep->endpoint_rail == NINJA_RAIL_VERBS ?
					      "verbs" : "tcp");
				mca_btl_ninja_upgrade_ready(ep);
				continue;
			}
			if (hdr.type >= NINJA_FRAME_UPGRADE) {
				mca_btl_ninja_upgrade_frame(ep, &hdr,
							    p + sizeof(hdr), app);
				continue;
			}
			if (hdr.type != NINJA_FRAME_DATA) {
				NINJA_ERROR("btl:ninja: bad frame type %u from %u.%u",
					    hdr.type, ep->endpoint_name.jobid,
					    ep->endpoint_name.vpid);
				continue;
			}
			ep->endpoint_rx_frags++;
			ep->endpoint_rx_bytes += need;
			count++;
			if (app)
				mca_btl_ninja_endpoint_upcall(ep, hdr.tag,
							      p + sizeof(hdr),
							      hdr.len);
			else if (mca_btl_ninja_endpoint_defer(ep, hdr.tag, p + sizeof(hdr),
					     hdr.len) != OPAL_SUCCESS)
				NINJA_ERROR("btl:ninja: out of memory deferring a frame");
			if (ep->endpoint_fd < 0)
				goto out;	/* closed from the upcall */
		}
		if (ep->endpoint_rx_off == ep->endpoint_rx_len) {
			ep->endpoint_rx_off = ep->endpoint_rx_len = 0;
		} else if (avail >= sizeof(hdr)) {
			/* A partial frame: make room for all of it (of a put,
			 * for the part before its data). */
			size_t need = sizeof(hdr) + hdr.len;

			if (NINJA_FRAME_DATA == hdr.type &&
			    NINJA_TAG_PUT == hdr.tag)
				need = sizeof(hdr) + sizeof(ninja_put_hdr_t);

			if (ep->endpoint_rx_off + need > ep->endpoint_rx_cap) {
				memmove(ep->endpoint_rx_buf,
					ep->endpoint_rx_buf + ep->endpoint_rx_off,
					avail);
				ep->endpoint_rx_off = 0;
				ep->endpoint_rx_len = avail;
			}
			if (need > ep->endpoint_rx_cap) {
				unsigned char *nb = realloc(ep->endpoint_rx_buf,
							    need);

				if (!nb) {
					count = OPAL_ERR_OUT_OF_RESOURCE;
					goto out;
				}
				ep->endpoint_rx_buf = nb;
				ep->endpoint_rx_cap = need;
			}
		} else if (ep->endpoint_rx_off > 0 &&
			   ep->endpoint_rx_cap - ep->endpoint_rx_off < 4096) {
			memmove(ep->endpoint_rx_buf,
				ep->endpoint_rx_buf + ep->endpoint_rx_off,
				avail);
			ep->endpoint_rx_off = 0;
			ep->endpoint_rx_len = avail;
		}
		if (loops++ >= 8)
			break;
		if (ep->endpoint_rx_put_left) {
			/* The rest of a put: straight into its destination. */
			n = recv(ep->endpoint_fd, ep->endpoint_rx_put,
				 ep->endpoint_rx_put_left, MSG_DONTWAIT);
			if (n > 0) {
				ep->endpoint_rx_put += n;
				ep->endpoint_rx_put_left -= (size_t)n;
				continue;
			}
		} else {
			n = recv(ep->endpoint_fd,
				 ep->endpoint_rx_buf + ep->endpoint_rx_len,
				 ep->endpoint_rx_cap - ep->endpoint_rx_len,
				 MSG_DONTWAIT);
			if (n > 0) {
				ep->endpoint_rx_len += (size_t)n;
				continue;
			}
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
			      errno == EINTR))
			break;
		/* EOF or error. */
		if (app) {
			ep->endpoint_rx_busy = false;
			ep_failed(ep, n < 0 ? -errno : 0, "lost");
			return -1;
		}
		count = -1;
		break;
	}
out:
	ep->endpoint_rx_busy = false;
	return count;
}

/* Completions and frames the control thread left for us (app thread). */
int mca_btl_ninja_deliver_deferred(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	static bool delivering;
	int count = 0;

	if (delivering)
		return 0;
	delivering = true;
	while (c->cq_head) {
		mca_btl_ninja_frag_t *f = c->cq_head;

		c->cq_head = f->next;
		if (!c->cq_head)
			c->cq_tail = NULL;
		f->base.des_cbfunc(&mca_btl_ninja_module.super, f->endpoint,
				   &f->base, OPAL_SUCCESS);
		if (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP)
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
	struct epoll_event evs[32];
	int i, n, count = 0;

	if (c->dq_head || c->cq_head)
		return 0;	/* older frames first (re-entrant call) */
	if (c->verbs_on)
		count += mca_btl_ninja_verbs_progress(true);
	if (c->nconn <= c->poll_direct) {
		for (i = c->nconn - 1; i >= 0; i--) {
			mca_btl_ninja_endpoint_t *ep;

			if (i >= c->nconn)
				continue;
			ep = c->conn[i];
			if (ep->endpoint_sq_head &&
			    mca_btl_ninja_endpoint_flush(ep, true, false) < 0)
				continue;
			if (ep->endpoint_marker_rcvd > c->epoch ||
			    (ep->endpoint_rail == NINJA_RAIL_VERBS &&
			     ep->endpoint_verbs_ready))
				continue;	/* drain pending / frames on the QP */
			n = mca_btl_ninja_endpoint_recv(ep, true);
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
			r = mca_btl_ninja_endpoint_recv(ep, true);
			if (r > 0)
				count += r;
		}
	}
	return count;
}
