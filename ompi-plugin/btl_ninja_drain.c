/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_drain.c - the control thread: the control channel to the node
 * agent (common/ninja_proto.h), connection set-up (connect, accept,
 * handshake), and the migration cycle
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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "opal/util/show_help.h"

#include "btl_ninja.h"
#include "ninja_proto.h"

/* Accepted, not authenticated yet (NINJA_MAX_PENDING, NINJA_PENDING_NS). */
typedef struct pending_accept {
	int fd;
	size_t len;		/* bytes of hs.rx read */
	uint64_t t;
	ninja_hs_state_t hs;
} pending_accept_t;

/* Control-thread-only state (never touched by the application thread). */
static struct {
	int ctl_fd;
	bool ctl_registered;
	uint64_t ctl_retry_at;
	struct ninja_lineq ctl_q;
	char ctl_path[256];
	bool ctl_unix;
	bool have_control;
	uint32_t quiesce_epoch;		/* last QUIESCE from the agent */
	bool safe_sent;
	bool resume_pending;
	bool report_pending;		/* RESUMED owed after reconnect */
	bool publish_pending;		/* this epoch's address not out yet */
	bool drain_warned;
	uint64_t reconnect_deadline;
	uint64_t resume_at;		/* RESUME arrived (wait mode) */
	uint64_t link_wait_us;		/* wait mode: RESUME held for the port */
	char rails_hint[64];
	pending_accept_t pending[NINJA_MAX_PENDING];
	int npending;
	uint64_t n_rejected;		/* connections that failed to prove
					 * they belong to the job */
} T = { .ctl_fd = -1 };

static void verbs_fail(const char *why);

/* ---------------------------------------------------------------------
 * Control channel
 */

static void ctl_close(void)
{
	if (T.ctl_fd >= 0)
		close(T.ctl_fd);
	T.ctl_fd = -1;
	T.ctl_registered = false;
	T.ctl_retry_at = mca_btl_ninja_now_ns() + 1000000000ull;
}

static void ctl_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ctl_send(const char *fmt, ...)
{
	char line[NINJA_LINE_MAX];
	va_list ap;
	size_t len, off = 0;
	int n, tries = 0;

	if (T.ctl_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	len = (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
	line[len++] = '\n';
	NINJA_VERBOSE(20, "btl:ninja: control <- %.*s", (int)len - 1, line);
	while (off < len) {
		ssize_t w = write(T.ctl_fd, line + off, len - off);

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EINTR) &&
		    tries++ < 1000) {
			struct pollfd p = { .fd = T.ctl_fd, .events = POLLOUT };

			(void)poll(&p, 1, 10);
			continue;
		}
		NINJA_ERROR("btl:ninja: control channel %s: write failed: %s",
			    T.ctl_path, w < 0 ? strerror(errno) : "closed");
		ctl_close();
		return;
	}
}

static bool ctl_open(void)
{
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	int fd;

	if (T.ctl_unix) {
		struct sockaddr_un sun;

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto fail;
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%.*s", (int)sizeof(sun.sun_path) - 1, T.ctl_path);
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			close(fd);
			goto fail;
		}
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	} else {
		fd = open(T.ctl_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			goto fail;
	}
	T.ctl_fd = fd;
	ninja_lineq_init(&T.ctl_q);
	ctl_send("REGISTER %u %u pid=%d rail=%s", me.jobid, me.vpid,
		 (int)getpid(), mca_btl_ninja_component.my_addr.rail);
	NINJA_VERBOSE(10, "btl:ninja: control channel %s open", T.ctl_path);
	return true;
fail:
	NINJA_VERBOSE(10, "btl:ninja: control channel %s: %s (retrying)",
		      T.ctl_path, strerror(errno));
	T.ctl_retry_at = mca_btl_ninja_now_ns() + 1000000000ull;
	return false;
}

/*
 * The node's answer to our REGISTER, read a byte at a time so that what
 * follows it (a QUIESCE for a late rank) stays for the control thread.
 */
static int ctl_first_line(char *line, size_t size, int timeout_ms)
{
	uint64_t end = mca_btl_ninja_now_ns() + timeout_ms * 1000000ull;
	size_t n = 0;

	while (n + 1 < size) {
		uint64_t now = mca_btl_ninja_now_ns();
		struct pollfd p = { .fd = T.ctl_fd, .events = POLLIN };
		ssize_t r;

		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((end - now) / 1000000) + 1) < 0 &&
		    errno != EINTR)
			return -errno;
		r = read(T.ctl_fd, line + n, 1);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (r == 1 && line[n++] == '\n') {
			line[n - 1] = '\0';
			return 0;
		}
	}
	return -EMSGSIZE;
}

/* Open and register now; see mca_btl_ninja_ctl_setup(). */
static int ctl_register(char *why, size_t whylen)
{
	char line[NINJA_LINE_MAX + 1];
	int r;

	if (!ctl_open()) {
		snprintf(why, whylen, "cannot %s %s: %s",
			 T.ctl_unix ? "connect to" : "open", T.ctl_path,
			 strerror(errno));
		return -1;
	}
	r = ctl_first_line(line, sizeof(line), 10000);
	if (r == 0 && !strncmp(line, "OK REGISTER", 11)) {
		T.ctl_registered = true;
		return 0;
	}
	if (r == 0)
		snprintf(why, whylen, "%s refused the registration: %.200s",
			 T.ctl_path, line);
	else
		snprintf(why, whylen, "%s: no answer to REGISTER (%s)",
			 T.ctl_path, r == -ETIMEDOUT ? "10 s" : strerror(-r));
	ctl_close();
	return -1;
}

int mca_btl_ninja_ctl_setup(char *why, size_t whylen)
{
	const char *p = mca_btl_ninja_component.control;

	T.have_control = false;
	if (!p || !p[0]) {
		/* Implicit: the guest module's device, if there is one. */
		if (access("/dev/ninja", F_OK) != 0)
			return 1;
		p = "/dev/ninja";
	}
	if (!strcmp(p, "none") || !strcmp(p, "off"))
		return 1;
	T.have_control = true;
	if (!strncmp(p, "unix:", 5)) {
		T.ctl_unix = true;
		p += 5;
	}
	snprintf(T.ctl_path, sizeof(T.ctl_path), "%s", p);
	return ctl_register(why, whylen);
}

void mca_btl_ninja_ctl_send(const char *fmt, ...)
{
	char line[NINJA_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	ctl_send("%s", line);
}

/* ---------------------------------------------------------------------
 * Reporting
 */

/* Append one JSON line to btl_ninja_report (if set). */
void mca_btl_ninja_report_json(const char *json)
{
	const char *path = mca_btl_ninja_component.report;
	FILE *f;

	if (!path || !path[0])
		return;
	f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s\n", json);
		fclose(f);
	}
}

static double us(uint64_t a, uint64_t b)
{
	return b > a ? (double)(b - a) / 1000.0 : 0.0;
}

static void report_cycle(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_cycle_t *y = &c->cycle;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	char json[768];

	if (!y->t_reconnected)
		y->t_reconnected = mca_btl_ninja_now_ns();
	snprintf(json, sizeof(json),
		 "{\"ninja\":\"cycle\",\"jobid\":%u,\"rank\":%u,\"epoch\":%u,"
		 "\"rail\":\"%s\",\"cancelled\":%d,\"timed_out\":%d,"
		 "\"drain_us\":%.0f,\"teardown_us\":%.0f,\"wait_us\":%.0f,"
		 "\"rediscover_us\":%.0f,\"reconnect_us\":%.0f,\"total_us\":%.0f,"
		 "\"frames_deferred\":%llu,\"frags_held\":%llu}",
		 me.jobid, me.vpid, y->epoch, y->rail, y->cancelled,
		 y->timed_out, us(y->t_start, y->t_drained),
		 us(y->t_drained, y->t_closed), us(y->t_closed, y->t_resume),
		 us(y->t_resume, y->t_published),
		 us(y->t_published, y->t_reconnected),
		 us(y->t_start, y->t_reconnected),
		 (unsigned long long)y->frames_deferred,
		 (unsigned long long)y->frags_held);
	NINJA_VERBOSE(1,
		      "btl:ninja: rank %u epoch %u %s on %s: drain %.0f us, teardown %.0f us, "
		      "wait %.0f us, rediscover %.0f us, reconnect %.0f us "
		      "(%llu frames deferred, %llu frags held)",
		      me.vpid, y->epoch, y->cancelled ? "cancelled, resumed" : "resumed",
		      y->rail, us(y->t_start, y->t_drained),
		      us(y->t_drained, y->t_closed), us(y->t_closed, y->t_resume),
		      us(y->t_resume, y->t_published),
		      us(y->t_published, y->t_reconnected),
		      (unsigned long long)y->frames_deferred,
		      (unsigned long long)y->frags_held);
	NINJA_VERBOSE(1, "%s", json);
	mca_btl_ninja_report_json(json);
	ctl_send("RESUMED %u rail=%s cancelled=%d%s drain_us=%.0f teardown_us=%.0f "
		 "wait_us=%.0f rediscover_us=%.0f reconnect_us=%.0f deferred=%llu held=%llu "
		 "upgrade=%s link_wait_us=%llu",
		 y->epoch, y->rail, y->cancelled,
		 y->timed_out ? " reason=timeout" : "",
		 us(y->t_start, y->t_drained), us(y->t_drained, y->t_closed),
		 us(y->t_closed, y->t_resume), us(y->t_resume, y->t_published),
		 us(y->t_published, y->t_reconnected),
		 (unsigned long long)y->frames_deferred,
		 (unsigned long long)y->frags_held,
		 mca_btl_ninja_upgrade_live() ? "live" : "wait",
		 (unsigned long long)T.link_wait_us);
	T.link_wait_us = 0;
	c->n_cycles++;
}

/* ---------------------------------------------------------------------
 * Drain
 */

/* Lock held: this connection takes part in the drain of epoch. */
static void marker_arm(mca_btl_ninja_endpoint_t *ep, uint32_t epoch)
{
	ep->endpoint_was_connected = true;
	ep->endpoint_marker_sent = false;
	ep->endpoint_marker_off = 0;
	memset(&ep->endpoint_marker, 0, sizeof(ep->endpoint_marker));
	ep->endpoint_marker.type = NINJA_FRAME_MARKER;
	ep->endpoint_marker.epoch = epoch;
}

/* Lock held. */
static void drain_start(uint32_t epoch, const char *why)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

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

/* Lock held.  Move drain bytes; returns true when every marker passed. */
static bool drain_step(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool done = true;
	int i;

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
		if (ep->endpoint_rail == NINJA_RAIL_VERBS) {
			if (!ep->endpoint_verbs_ready) {
				/* READY still on its way on the TCP socket. */
				(void)mca_btl_ninja_endpoint_recv(ep, false);
				if (ep->endpoint_rail == NINJA_RAIL_VERBS &&
				    !ep->endpoint_verbs_ready) {
					done = false;
					continue;
				}
			}
		}
		if (ep->endpoint_rail == NINJA_RAIL_VERBS) {
			(void)mca_btl_ninja_verbs_progress(false);
			if (mca_btl_ninja_endpoint_flush(ep, false, true) < 0) {
				ep->endpoint_marker_sent = true;
				ep->endpoint_marker_rcvd = c->epoch;
			}
			(void)mca_btl_ninja_verbs_progress(false);
			if (!ep->endpoint_marker_sent ||
			    !mca_btl_ninja_verbs_ep_quiet(ep) ||
			    ep->endpoint_marker_rcvd < c->epoch)
				done = false;
			continue;
		}
		if (!ep->endpoint_marker_sent &&
		    mca_btl_ninja_endpoint_flush(ep, false, true) < 0) {
			/*
			 * The connection died: nothing more can arrive on it.
			 * It counts as drained; what the peer did not
			 * acknowledge is replayed after the resume.
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
		if (ep->endpoint_marker_rcvd < c->epoch &&
		    mca_btl_ninja_endpoint_recv(ep, false) < 0 &&
		    ep->endpoint_marker_rcvd < c->epoch) {
			NINJA_ERROR("btl:ninja: peer %u.%u closed its connection "
				    "without a drain marker (epoch %u)",
				    ep->endpoint_name.jobid,
				    ep->endpoint_name.vpid, c->epoch);
			ep->endpoint_marker_rcvd = c->epoch;
		}
		if (!ep->endpoint_marker_sent ||
		    ep->endpoint_marker_rcvd < c->epoch)
			done = false;
	}
	return done;
}

/* Lock held: close everything, the drain is complete. */
static void teardown(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	c->cycle.t_drained = mca_btl_ninja_now_ns();
	for (i = 0; i < c->neps; i++)
		if (c->eps[i]->endpoint_state != NINJA_EP_CLOSED)
			mca_btl_ninja_endpoint_close(c->eps[i]);
	if (c->verbs_on) {
		/* Every QP is gone: release the HCA so it can be unplugged. */
		mca_btl_ninja_verbs_close();
		c->verbs_on = false;
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

	if (c->state == NINJA_DRAINED && !T.safe_sent &&
	    T.quiesce_epoch == c->epoch && T.ctl_fd >= 0) {
		c->cycle.t_safe = mca_btl_ninja_now_ns();
		ctl_send("SAFE %u", c->epoch);
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
		NINJA_ERROR("btl:ninja: rank %u: no usable interface after the "
			    "migration (%s); keeping the old addresses", me.vpid,
			    desc);
	}
	NINJA_VERBOSE(10, "btl:ninja: epoch %u: tcp rail on %s", c->epoch, desc);
	t1 = mca_btl_ninja_now_ns();
	mca_btl_ninja_lock();
	mca_btl_ninja_rails_select(T.rails_hint);
	snprintf(c->cycle.rail, sizeof(c->cycle.rail), "%.7s", c->my_addr.rail);
	mca_btl_ninja_unlock();
	t2 = mca_btl_ninja_now_ns();
	NINJA_VERBOSE(10, "btl:ninja: rank %u epoch %u rediscovery: interfaces "
		      "%.0f us, rails %.0f us", me.vpid, c->epoch, us(t0, t1),
		      us(t1, t2));
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
			ep->endpoint_retry_at = now + 50000000ull;
	}
	if (c->dq_head || c->cq_head)
		c->app_work = 1;
	mca_btl_ninja_unlock();
	T.report_pending = true;
	T.reconnect_deadline = now + (uint64_t)c->connect_timeout * 1000000ull;
	T.safe_sent = false;
}

/* Control thread, no lock: this epoch's address out to PMIx. */
static void publish_later(void)
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
		      us(t, mca_btl_ninja_now_ns()));
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
	report_cycle();
}

/* ---------------------------------------------------------------------
 * Control lines from the agent
 */

static void ctl_line(void *ctx, const char *line, size_t len, int err)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct ninja_msg m;
	const char *v;
	size_t vlen;
	int rc;

	if (err) {
		NINJA_ERROR("btl:ninja: control channel: %s", ninja_strerror(err));
		return;
	}
	rc = ninja_parse_line(line, len, &m);
	if (rc == -NINJA_EEMPTY)
		return;
	if (rc) {
		NINJA_ERROR("btl:ninja: control channel: %s in \"%.*s\"",
			    ninja_strerror(rc), (int)len, line);
		ctl_send("ERR %s from-rank", ninja_err_name(rc));
		return;
	}
	NINJA_VERBOSE(20, "btl:ninja: control -> %.*s", (int)len, line);
	switch (m.verb) {
	case NINJA_V_OK:
		T.ctl_registered = true;
		break;
	case NINJA_V_QUIESCE:
		T.quiesce_epoch = m.epoch;
		mca_btl_ninja_lock();
		if (c->state == NINJA_RUNNING && m.epoch > c->epoch)
			drain_start(m.epoch, "agent");
		else if (c->state == NINJA_RUNNING)
			/* We already went through this epoch. */
			ctl_send("RESUMED %u rail=%s stale=1", m.epoch,
				 c->my_addr.rail);
		maybe_send_safe();
		mca_btl_ninja_unlock();
		break;
	case NINJA_V_RESUME:
	case NINJA_V_CANCEL:
		v = ninja_msg_get(&m, "rails", &vlen);
		snprintf(T.rails_hint, sizeof(T.rails_hint), "%.*s",
			 v ? (int)vlen : 0, v ? v : "");
		if (m.epoch != c->epoch) {
			NINJA_ERROR("btl:ninja: %s %u but our epoch is %u",
				    ninja_verb_name(m.verb), m.epoch, c->epoch);
			ctl_send("RESUMED %u rail=%s stale=1", m.epoch,
				 c->my_addr.rail);
			break;
		}
		if (!T.resume_pending)
			T.resume_at = mca_btl_ninja_now_ns();
		if (c->state == NINJA_DRAINING) {
			mca_btl_ninja_lock();
			drain_abandon(ninja_verb_name(m.verb));
			mca_btl_ninja_unlock();
		}
		if (c->state == NINJA_DRAINED && (m.verb == NINJA_V_CANCEL ||
		    !mca_btl_ninja_upgrade_hold_resume(T.rails_hint, T.resume_at))) {
			do_resume(m.verb == NINJA_V_CANCEL, false);
		} else if (c->state == NINJA_DRAINED) {
			/* btl_ninja_upgrade=wait: the loop resumes once the
			 * site's RDMA port is ACTIVE (or the wait ends). */
			T.resume_pending = true;
			NINJA_VERBOSE(10, "btl:ninja: RESUME %u: waiting for an ACTIVE RDMA port "
				      "(btl_ninja_upgrade=wait)", m.epoch);
		} else if (c->state == NINJA_RUNNING && !T.report_pending) {
			ctl_send("RESUMED %u rail=%s stale=1", m.epoch,
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
		v = ninja_msg_get(&m, "dev", &vlen);
		if (m.npos >= 3 && v &&
		    ((m.tok[2].len == 6 && !memcmp(m.tok[2].p, "ib-del", 6)) ||
		     (m.tok[2].len == 9 && !memcmp(m.tok[2].p, "port-down", 9)))) {
			char why[96];

			mca_btl_ninja_lock();
			if (c->verbs_on && mca_btl_ninja_verbs_is_device(v, vlen)) {
				snprintf(why, sizeof(why), "control channel: %.*s %.*s",
					 (int)m.tok[2].len, m.tok[2].p, (int)vlen, v);
				verbs_fail(why);
			}
			mca_btl_ninja_unlock();
		}
		snprintf(kind, sizeof(kind), "%.*s", (int)m.tok[2].len, m.tok[2].p);
		mca_btl_ninja_upgrade_event(kind, m.num);
		break;
	}
	case NINJA_V_ERR:
		NINJA_ERROR("btl:ninja: control channel says: %.*s", (int)len,
			    line);
		break;
	default:
		break;
	}
}

static void ctl_read(void)
{
	char buf[4096];
	ssize_t n;

	for (;;) {
		n = read(T.ctl_fd, buf, sizeof(buf));
		if (n > 0) {
			ninja_lineq_push(&T.ctl_q, buf, (size_t)n, ctl_line, NULL);
			if (T.ctl_fd < 0)
				return;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		NINJA_ERROR("btl:ninja: control channel %s closed (%s); "
			    "retrying every second", T.ctl_path,
			    n < 0 ? strerror(errno) : "EOF");
		ctl_close();
		return;
	}
}

/* ---------------------------------------------------------------------
 * Connections
 */

/* Our AUTH/ACK/NACK to peer (its MAC comes last). */
static void hs_fill(ninja_hs_auth_t *m, int type, uint32_t reason,
		    opal_process_name_t peer)
{
	mca_btl_ninja_auth_fill(m, type, reason, peer.jobid, peer.vpid);
}

/* Known addresses failing this long: ask PMIx for the peer's new one. */
#define NINJA_ASK_AFTER_NS 100000000ull

/* One connection attempt (connect + handshake) gets this long. */
#define NINJA_ATTEMPT_NS 2000000000ull

static uint64_t backoff_ns(mca_btl_ninja_endpoint_t *ep, uint64_t now)
{
	uint64_t waited = now - ep->endpoint_conn_start;

	if (waited < 20000000ull)
		return 1000000ull;	/* 1 ms for the first 20 ms */
	if (waited < 1000000000ull)
		return 10000000ull;
	return 100000000ull;
}

/* Start (or retry) a connection to ep.  Called without the lock. */
static void connect_start(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct sockaddr_in sin;
	uint64_t now = mca_btl_ninja_now_ns();
	bool ask;
	int fd, rc;

	if (!ep->endpoint_conn_start)
		ep->endpoint_conn_start = now;
	if (now - ep->endpoint_conn_start >
	    (uint64_t)c->connect_timeout * 1000000ull) {
		NINJA_ERROR("btl:ninja: cannot connect to %u.%u within %d ms "
			    "(address epoch %u, ours %u)", ep->endpoint_name.jobid,
			    ep->endpoint_name.vpid, c->connect_timeout,
			    ep->endpoint_addr.epoch, c->epoch);
		mca_btl_ninja_lock();
		ep->endpoint_conn_start = now;	/* keep trying, but say so */
		mca_btl_ninja_unlock();
	}
	/*
	 * The peer's address for our epoch comes from PMIx in the background
	 * (the peer publishes it when it resumes; the get waits for that).
	 * Meanwhile the addresses we knew are tried at once: the listening
	 * port never changes and a migration usually keeps the IPs, and the
	 * handshake checks who answers and whether it has resumed.  The
	 * control thread never blocks on PMIx here (it was 0.2-0.6 s of
	 * every reconnection in the TCG guests).
	 */
	mca_btl_ninja_lock();
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
	       now - ep->endpoint_lookup_at > 1000000000ull);
	if (ask) {
		ep->endpoint_lookup_busy = true;
		ep->endpoint_lookup_epoch = c->epoch;
		ep->endpoint_lookup_at = now;
	}
	mca_btl_ninja_unlock();
	if (ask && mca_btl_ninja_lookup_addr_nb(ep->endpoint_name, c->epoch,
						10) != OPAL_SUCCESS) {
		mca_btl_ninja_lock();
		ep->endpoint_lookup_busy = false;
		mca_btl_ninja_unlock();
	}
	if (!ep->endpoint_addr_valid) {
		/* None known yet: the one published at MPI_Init. */
		(void)mca_btl_ninja_lookup_addr(ep, 0, 0);
		ep->endpoint_addr_try = 0;
	}
	if (!mca_btl_ninja_auth_have_key(ep->endpoint_name.vpid)) {
		/* Its secret (published at MPI_Init with the address) is what
		 * our AUTH proves itself with: not there yet, later. */
		ep->endpoint_retry_at = now + backoff_ns(ep, now);
		return;
	}
	if (!ep->endpoint_addr_valid ||
	    ep->endpoint_addr_try >= ep->endpoint_addr.naddr) {
		/* None, or every address tried: again after a pause, or at
		 * once when the lookup brings a new one (lookup_cb). */
		ep->endpoint_addr_try = 0;
		ep->endpoint_retry_at = now + backoff_ns(ep, now);
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ep->endpoint_retry_at = now + 100000000ull;
		return;
	}
	mca_btl_ninja_tcp_tune(fd);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = ep->endpoint_addr.port;
	sin.sin_addr.s_addr = ep->endpoint_addr.ip[ep->endpoint_addr_try++];
	rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	if (rc != 0 && errno != EINPROGRESS) {
		close(fd);
		ep->endpoint_retry_at = now + backoff_ns(ep, now);
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

	NINJA_ERROR("btl:ninja: rank %u: peer %u.%u unreachable for %d ms after "
		    "its connection failed (%zu frames unacknowledged, %zu queued)",
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

	NINJA_VERBOSE(10, "btl:ninja: connection to %u.%u not made: %s",
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid, why);

	mca_btl_ninja_endpoint_close(ep);
	ep->endpoint_want_connect = retry;
	ep->endpoint_retry_at = now + backoff_ns(ep, now);
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

	hs_fill(&s->auth, NINJA_HS_AUTH, 0, ep->endpoint_name);
	s->auth.ack = mca_btl_ninja_endpoint_hs_ack(ep);
	if (c->verbs_on)
		(void)mca_btl_ninja_verbs_ep_create(ep, &s->auth.verbs);
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
	bool verbs = false;

	if (r->verbs.valid) {
		/* The acceptor made a QP for us and waits for READY. */
		verbs = ep->endpoint_verbs &&
			mca_btl_ninja_verbs_ep_connect(ep, &r->verbs) ==
			OPAL_SUCCESS;
		if (send_ready(ep->endpoint_fd, verbs) != 0) {
			connect_failed(ep, true, "READY not sent");
			return;
		}
	}
	if (!verbs)
		mca_btl_ninja_verbs_ep_destroy(ep);
	mca_btl_ninja_endpoint_attach(ep, ep->endpoint_fd);
	ep->endpoint_rx_max = r->max_frame;
	ep->endpoint_verbs_ready = verbs;
	mca_btl_ninja_endpoint_replay(ep, r->ack);
	NINJA_VERBOSE(10, "btl:ninja: rank %u connected to %u.%u on %s",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid, verbs ? "verbs" : "tcp");
	NINJA_VERBOSE(10, "btl:ninja: rank %u: handshake with %u.%u took "
		      "%.0f us to connect, %.0f us to answer",
		      OPAL_PROC_MY_NAME.vpid, ep->endpoint_name.jobid,
		      ep->endpoint_name.vpid,
		      us(ep->endpoint_attempt_at, ep->endpoint_hello_at),
		      us(ep->endpoint_hello_at, mca_btl_ninja_now_ns()));
}

/*
 * Lock held: a connecting socket became writable or readable.  HELLO out,
 * CHALLENGE in, AUTH out, ACK/NACK in (docs/protocol.md "Handshake").
 */
static void connect_event(mca_btl_ninja_endpoint_t *ep, short revents)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	ninja_hs_state_t *s = &ep->endpoint_hs;
	const ninja_hs_auth_t *r = &s->rx.msg;
	int rc;

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
			ep->endpoint_retry_at += 50000000ull;
			break;
		}
		connect_failed(ep, true, r->reason == NINJA_NACK_DRAINING ?
			       "peer is draining" : "peer does not know us");
		if (r->reason == NINJA_NACK_DRAINING && r->epoch > c->epoch &&
		    c->state == NINJA_RUNNING)
			drain_start(r->epoch, "handshake");
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
static void accept_new(void)
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

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			  errno != EINTR);
}

/*
 * Lock held.  The connector of pending[i] proved it is peer (a process of
 * this job): decide on its AUTH, see docs/design.md, "Handshake".
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
		if (a->verbs.valid && c->verbs_on &&
		    mca_btl_ninja_verbs_ep_create(ep, &reply.verbs) ==
		    OPAL_SUCCESS &&
		    mca_btl_ninja_verbs_ep_connect(ep, &a->verbs) !=
		    OPAL_SUCCESS) {
			mca_btl_ninja_verbs_ep_destroy(ep);
			memset(&reply.verbs, 0, sizeof(reply.verbs));
		}
		if (mca_btl_ninja_auth_reply_mac(&p->hs, &reply) != 0 ||
		    send(fd, &reply, sizeof(reply), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(reply)) {
			mca_btl_ninja_verbs_ep_destroy(ep);
			pending_drop(i, true);
			return;
		}
		mca_btl_ninja_endpoint_attach(ep, fd);
		ep->endpoint_rx_max = a->max_frame;
		/* Frames go on the QP once the connector says READY. */
		ep->endpoint_verbs_ready = false;
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
		NINJA_ERROR("btl:ninja: rank %u: closed a connection from %s:%u "
			    "that did not prove it belongs to this job (%s); "
			    "later ones are counted at verbose level 10",
			    OPAL_PROC_MY_NAME.vpid, ip, ntohs(sin.sin_port), why);
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
		NINJA_ERROR("btl:ninja: rank %u: no connection secret of %u.%u",
			    OPAL_PROC_MY_NAME.vpid, p->hs.auth.jobid,
			    p->hs.auth.vpid);
		pending_drop(i, true);
		return;
	}
	mca_btl_ninja_lock();
	accept_hello(i);
	mca_btl_ninja_unlock();
}

/* ---------------------------------------------------------------------
 * The thread
 */

/*
 * Lock held: the verbs device said its port or itself failed (surprise
 * removal: no drain came first).  Every connection on it fails over: it
 * is closed, reconnected on TCP (the device is out of this epoch's rails)
 * and replayed from the peer's ack; then the device is closed, which lets
 * the kernel finish removing it.  The next resume looks for a device
 * again.
 */
static void verbs_fail(const char *why)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	NINJA_ERROR("btl:ninja: rank %u: verbs rail failed (%s) without a "
		    "drain: reconnecting on tcp and replaying",
		    OPAL_PROC_MY_NAME.vpid, why);
	c->verbs_on = false;
	snprintf(c->my_addr.rail, sizeof(c->my_addr.rail), "tcp");
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (ep->endpoint_verbs) {
			if (c->state == NINJA_RUNNING &&
			    ep->endpoint_state == NINJA_EP_CONNECTED)
				mca_btl_ninja_endpoint_failed(ep, -ENODEV,
							      "lost its verbs device");
			else
				mca_btl_ninja_verbs_ep_destroy(ep);
		}
	}
	mca_btl_ninja_verbs_close();
}

/* Lock held: the device's async event fd is readable. */
static void verbs_event(void)
{
	char desc[128] = "", why[160];

	if (!mca_btl_ninja_verbs_async_fatal(desc, sizeof(desc))) {
		NINJA_VERBOSE(10, "btl:ninja: verbs event: %s", desc);
		return;
	}
	snprintf(why, sizeof(why), "%s: %s, port not active",
		 mca_btl_ninja_component.verbs_desc, desc);
	verbs_fail(why);
}

#define MAXFDS (4 + NINJA_MAX_PENDING + 1024)

static void *ninja_thread(void *arg)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct pollfd fds[MAXFDS];
	mca_btl_ninja_endpoint_t *fdep[MAXFDS];
	int kind[MAXFDS];
	enum { K_WAKE, K_LISTEN, K_CTL, K_PENDING, K_CONNECT, K_DRAIN,
	       K_VERBS, K_BOOT };

	while (!c->thread_stop) {
		uint64_t now = mca_btl_ninja_now_ns(), next = now + 1000000000ull;
		int nfds = 0, i, timeout, pi;

		if (T.have_control && T.ctl_fd < 0 && now >= T.ctl_retry_at)
			ctl_open();
		mca_btl_ninja_lookup_collect();	/* PMIx's answers */

		/*
		 * Connection requests (want_connect) in RUNNING.  Endpoints
		 * are never freed before finalize, so the pointers collected
		 * under the lock stay valid; connect_start() may block in
		 * PMIx and runs unlocked.
		 */
		if (c->state == NINJA_RUNNING) {
			int nwant = 0;

			mca_btl_ninja_lock();
			for (i = 0; i < c->neps && nwant < MAXFDS; i++) {
				mca_btl_ninja_endpoint_t *ep = c->eps[i];

				if (ep->endpoint_want_connect &&
				    ep->endpoint_state == NINJA_EP_CLOSED &&
				    ep->endpoint_failed_at && c->replay_timeout > 0 &&
				    now > ep->endpoint_failed_at &&
				    now - ep->endpoint_failed_at >
				    (uint64_t)c->replay_timeout * 1000000ull)
					peer_lost(ep);
				if (ep->endpoint_want_connect &&
				    ep->endpoint_state == NINJA_EP_CLOSED)
					fdep[nwant++] = ep;
			}
			mca_btl_ninja_unlock();
			for (i = 0; i < nwant; i++) {
				mca_btl_ninja_endpoint_t *ep = fdep[i];

				if (now >= ep->endpoint_retry_at)
					connect_start(ep);
				if (ep->endpoint_state == NINJA_EP_CLOSED &&
				    ep->endpoint_retry_at < next)
					next = ep->endpoint_retry_at;
			}
		}
		publish_later();

		fds[nfds].fd = c->wake_fd;
		fds[nfds].events = POLLIN;
		kind[nfds++] = K_WAKE;
		fds[nfds].fd = c->listen_fd;
		fds[nfds].events = POLLIN;
		kind[nfds++] = K_LISTEN;
		if (T.ctl_fd >= 0) {
			fds[nfds].fd = T.ctl_fd;
			fds[nfds].events = POLLIN;
			kind[nfds++] = K_CTL;
		}
		mca_btl_ninja_lock();
		if (c->verbs_on && mca_btl_ninja_verbs_async_fd() >= 0) {
			fds[nfds].fd = mca_btl_ninja_verbs_async_fd();
			fds[nfds].events = POLLIN;
			kind[nfds++] = K_VERBS;
		}
		mca_btl_ninja_unlock();
		pi = nfds;
		for (i = 0; i < T.npending; i++) {
			fds[nfds].fd = T.pending[i].fd;
			fds[nfds].events = POLLIN;
			kind[nfds++] = K_PENDING;
		}
		mca_btl_ninja_lock();
		for (i = 0; i < c->neps && nfds < MAXFDS; i++) {
			mca_btl_ninja_endpoint_t *ep = c->eps[i];

			if (ep->endpoint_state == NINJA_EP_CONNECTING ||
			    ep->endpoint_state == NINJA_EP_HELLO) {
				if (now > ep->endpoint_attempt_at + NINJA_ATTEMPT_NS) {
					/* A SYN or HELLO into the void (an old
					 * address that went away): next one. */
					connect_failed(ep, true, "no answer within 2 s");
					continue;
				}
				fds[nfds].fd = ep->endpoint_fd;
				fds[nfds].events =
					ep->endpoint_state == NINJA_EP_CONNECTING ?
					POLLOUT : POLLIN;
				fdep[nfds] = ep;
				kind[nfds++] = K_CONNECT;
			} else if (c->state == NINJA_DRAINING &&
				   ep->endpoint_state == NINJA_EP_CONNECTED) {
				fds[nfds].fd = ep->endpoint_fd;
				fds[nfds].events = POLLIN |
					(ep->endpoint_marker_sent ? 0 : POLLOUT);
				fdep[nfds] = ep;
				kind[nfds++] = K_DRAIN;
			} else if (c->state == NINJA_RUNNING &&
				   ep->endpoint_state == NINJA_EP_CONNECTED &&
				   ep->endpoint_rail == NINJA_RAIL_VERBS &&
				   ep->endpoint_verbs_ready) {
				/*
				 * A verbs connection's TCP socket is idle and the
				 * application never reads it: watch it here, so a
				 * peer that dropped the connection (its QP gone,
				 * our frames unacknowledged) is noticed and the
				 * frames replayed.
				 */
				fds[nfds].fd = ep->endpoint_fd;
				fds[nfds].events = POLLIN;
				fdep[nfds] = ep;
				kind[nfds++] = K_BOOT;
			}
		}
		mca_btl_ninja_unlock();

		if (T.report_pending && next > now + 1000000ull)
			next = now + 1000000ull;
		i = mca_btl_ninja_upgrade_timeout();
		if (i < 0 && c->state == NINJA_DRAINED && T.resume_pending)
			i = 100;	/* wait mode: try the port again */
		if (i >= 0 && next > now + (uint64_t)i * 1000000ull)
			next = now + (uint64_t)i * 1000000ull;
		timeout = next > now ? (int)((next - now + 999999) / 1000000) : 0;
		if (c->state == NINJA_DRAINING)
			timeout = timeout > 100 ? 100 : timeout;
		if (c->state == NINJA_DRAINING && c->verbs_on)
			timeout = timeout > 1 ? 1 : timeout;	/* poll the CQ */
		if (poll(fds, nfds, timeout) < 0 && errno != EINTR)
			break;
		if (c->thread_stop)
			break;

		for (i = 0; i < nfds; i++) {
			if (!fds[i].revents)
				continue;
			switch (kind[i]) {
			case K_WAKE: {
				uint64_t v;

				if (read(c->wake_fd, &v, sizeof(v)) < 0) {
					/* spurious: nothing to do */
				}
				break;
			}
			case K_LISTEN:
				accept_new();
				break;
			case K_CTL:
				ctl_read();
				break;
			case K_VERBS:
				mca_btl_ninja_lock();
				if (c->verbs_on &&
				    fds[i].fd == mca_btl_ninja_verbs_async_fd())
					verbs_event();
				mca_btl_ninja_unlock();
				break;
			case K_BOOT:
				mca_btl_ninja_lock();
				if (c->state == NINJA_RUNNING &&
				    fdep[i]->endpoint_fd == fds[i].fd &&
				    fdep[i]->endpoint_state == NINJA_EP_CONNECTED &&
				    fdep[i]->endpoint_rail == NINJA_RAIL_VERBS &&
				    boot_dead(fdep[i]))
					mca_btl_ninja_endpoint_failed(fdep[i], 0,
						"verbs connection closed by the peer");
				mca_btl_ninja_unlock();
				break;
			case K_CONNECT:
				mca_btl_ninja_lock();
				if (fdep[i]->endpoint_fd == fds[i].fd &&
				    (fdep[i]->endpoint_state == NINJA_EP_CONNECTING ||
				     fdep[i]->endpoint_state == NINJA_EP_HELLO))
					connect_event(fdep[i], fds[i].revents);
				mca_btl_ninja_unlock();
				break;
			default:
				break;
			}
		}
		/* Pending accepts, newest index first (drops reorder). */
		for (i = nfds - 1; i >= pi; i--)
			if (kind[i] == K_PENDING && fds[i].revents &&
			    i - pi < T.npending &&
			    T.pending[i - pi].fd == fds[i].fd)
				pending_event(i - pi);
		/* Drop accepted sockets that did not prove themselves. */
		now = mca_btl_ninja_now_ns();
		for (i = T.npending - 1; i >= 0; i--)
			if (now > T.pending[i].t + NINJA_PENDING_NS)
				pending_drop(i, true);

		/* A peer's marker seen by the application thread. */
		mca_btl_ninja_lock();
		if (c->state == NINJA_RUNNING && c->drain_request > c->epoch)
			drain_start(c->drain_request, "peer marker");
		if (c->state == NINJA_DRAINING && drain_step()) {
			teardown();
			maybe_send_safe();
		}
		if (c->state == NINJA_DRAINING && !T.drain_warned &&
		    mca_btl_ninja_now_ns() - c->cycle.t_start >
		    (uint64_t)c->drain_timeout * 1000000000ull) {
			NINJA_ERROR("btl:ninja: drain of epoch %u has waited %d s "
				    "for peer markers", c->epoch, c->drain_timeout);
			T.drain_warned = true;
		}
		mca_btl_ninja_unlock();

		if (c->state == NINJA_DRAINED) {
			if (!T.have_control) {
				/* Nobody to ask: resume right away. */
				do_resume(true, false);
			} else if (T.resume_pending) {
				if (!T.resume_at)
					T.resume_at = mca_btl_ninja_now_ns();
				if (!mca_btl_ninja_upgrade_hold_resume(T.rails_hint,
								       T.resume_at)) {
					T.link_wait_us = (mca_btl_ninja_now_ns() -
							  T.resume_at) / 1000;
					do_resume(false, false);
				}
			} else if (mca_btl_ninja_now_ns() - c->cycle.t_closed >
				   (uint64_t)c->resume_timeout * 1000000000ull) {
				NINJA_ERROR("btl:ninja: no RESUME for epoch %u within "
					    "%d s: resuming on the old rails",
					    c->epoch, c->resume_timeout);
				c->n_timeouts++;
				do_resume(true, true);
			}
		}
		check_reconnected();
		mca_btl_ninja_upgrade_step();
	}
	ctl_close();
	mca_btl_ninja_lookup_collect();	/* frees the answers that came */
	for (int i = 0; i < T.npending; i++)
		close(T.pending[i].fd);
	T.npending = 0;
	return NULL;
}

int mca_btl_ninja_thread_start(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	c->thread_stop = false;
	if (pthread_create(&c->thread, NULL, ninja_thread, NULL) != 0)
		return OPAL_ERROR;
	c->thread_started = true;
	return OPAL_SUCCESS;
}

void mca_btl_ninja_thread_stop(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (!c->thread_started)
		return;
	c->thread_stop = true;
	mca_btl_ninja_wake();
	pthread_join(c->thread, NULL);
	c->thread_started = false;
}
