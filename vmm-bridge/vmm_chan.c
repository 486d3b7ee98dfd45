// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_chan.c - host-side client of a Ninja control line channel (see
 * vmm_chan.h): non-blocking unix socket, ninja_lineq framing, deadlines.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm_chan.h"

static const char *progname = "vmm";

void vmm_set_progname(const char *name)
{
	const char *slash = strrchr(name, '/');

	progname = slash ? slash + 1 : name;
}

int64_t vmm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t vmm_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void vmm_log(const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char buf[1024];
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03ld %s: ", tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, progname);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	/* One write per message keeps concurrent logs from interleaving. */
	n = (int)strlen(buf);
	if (n < (int)sizeof(buf) - 1)
		buf[n++] = '\n';
	else
		buf[sizeof(buf) - 1] = '\n', n = sizeof(buf);
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}

int vmm_parse_endpoint(const char *spec, char *path, size_t pathlen,
		       char *err, size_t errlen)
{
	const char *p = spec;
	size_t n;

	if (strncmp(spec, "unix:", 5) == 0)
		p = spec + 5;
	else if (spec[0] != '/') {
		snprintf(err, errlen,
			 "endpoint '%s': expected unix:PATH (or an absolute path)",
			 spec);
		return -1;
	}
	n = strlen(p);
	if (n == 0) {
		snprintf(err, errlen, "endpoint '%s': empty path", spec);
		return -1;
	}
	if (n >= pathlen) {
		snprintf(err, errlen,
			 "endpoint '%s': path longer than %zu bytes (unix socket limit)",
			 spec, pathlen - 1);
		return -1;
	}
	memcpy(path, p, n + 1);
	return 0;
}

void vmm_chan_init(struct vmm_chan *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	ninja_lineq_init(&c->q);
}

int vmm_chan_open(struct vmm_chan *c, const char *spec, int64_t deadline)
{
	struct sockaddr_un sa;

	vmm_chan_init(c);
	snprintf(c->name, sizeof(c->name), "%s", spec);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (vmm_parse_endpoint(spec, sa.sun_path, sizeof(sa.sun_path),
			       c->errmsg, sizeof(c->errmsg)))
		return -1;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
				SOCK_CLOEXEC, 0);
		int e;

		if (fd < 0) {
			snprintf(c->errmsg, sizeof(c->errmsg), "%s: socket: %s",
				 spec, strerror(errno));
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			c->fd = fd;
			if (c->verbose)
				vmm_log("%s: connected", c->name);
			return 0;
		}
		e = errno;
		close(fd);
		/* Not there yet, or its backlog is full: retry a little. */
		if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN) {
			snprintf(c->errmsg, sizeof(c->errmsg),
				 "cannot connect to %s: %s", spec, strerror(e));
			return -1;
		}
		if (vmm_now_ns() + 50000000 > deadline) {
			snprintf(c->errmsg, sizeof(c->errmsg),
				 "cannot connect to %s: %s%s", spec,
				 strerror(e),
				 e == ENOENT || e == ECONNREFUSED ?
				 " (is ninja-agent running there?)" : "");
			return -2;
		}
		poll(NULL, 0, 50);
	}
}

void vmm_chan_close(struct vmm_chan *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->eof = true;
	free(c->lines);
	c->lines = NULL;
	c->head = c->count = c->cap = 0;
}

int vmm_remaining_ms(int64_t deadline)
{
	int64_t left = deadline - vmm_now_ns();

	if (left <= 0)
		return 0;
	/* Round up so we never spin on a sub-millisecond remainder. */
	left = (left + 999999) / 1000000;
	return left > 1000000 ? 1000000 : (int)left;
}

int vmm_write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
	const char *p = buf;
	size_t off = 0;

	while (off < len) {
		ssize_t w = send(fd, p + off, len - off, MSG_NOSIGNAL);

		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, p + off, len - off);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };
			int ms = vmm_remaining_ms(deadline);

			if (ms == 0)
				return -2;
			poll(&pf, 1, ms);
			continue;
		}
		if (w == 0)
			errno = EPIPE;
		return -1;
	}
	return 0;
}

int vmm_chan_sendv(struct vmm_chan *c, int64_t deadline, const char *fmt,
		   va_list ap)
{
	char buf[NINJA_LINE_MAX + 1];
	size_t len;
	int n, r;

	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0 || n > NINJA_LINE_MAX - 1) {
		snprintf(c->errmsg, sizeof(c->errmsg),
			 "%s: line too long to send (%d bytes, limit %d)",
			 c->name, n, NINJA_LINE_MAX - 1);
		return -1;
	}
	if (c->fd < 0) {
		snprintf(c->errmsg, sizeof(c->errmsg), "%s: not connected",
			 c->name);
		return -1;
	}
	if (c->verbose)
		vmm_log("%s > %s", c->name, buf);
	buf[n] = '\n';
	len = (size_t)n + 1;
	r = vmm_write_all(c->fd, buf, len, deadline);
	if (r == -2) {
		snprintf(c->errmsg, sizeof(c->errmsg),
			 "%s: peer is not reading (send timed out)", c->name);
		return -2;
	}
	if (r < 0) {
		snprintf(c->errmsg, sizeof(c->errmsg), "%s: send: %s", c->name,
			 errno == EPIPE ? "closed" : strerror(errno));
		c->eof = true;
		return -1;
	}
	c->n_out++;
	return 0;
}

int vmm_chan_send(struct vmm_chan *c, int64_t deadline, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vmm_chan_sendv(c, deadline, fmt, ap);
	va_end(ap);
	return r;
}

/* ninja_lineq callback: queue a received line. */
static void chan_line(void *ctx, const char *line, size_t len, int err)
{
	struct vmm_chan *c = ctx;
	struct vmm_line *l;

	c->n_in++;
	if (err == NINJA_OK && len > 0 && line[len - 1] == '\r') {
		/* Console echo of what we sent before the guest went raw. */
		c->n_crlf++;
		if (c->verbose)
			vmm_log("%s < %.*s\\r (echo, ignored)", c->name,
				(int)len - 1, line);
		return;
	}
	if (err != NINJA_OK)
		c->n_toolong++;
	if (c->verbose)
		vmm_log("%s < %.*s%s", c->name, (int)len, line,
			err ? " (too long, cut)" : "");
	if (c->count == c->cap) {
		unsigned int ncap = c->cap ? c->cap * 2 : 16;
		struct vmm_line *nl;
		unsigned int i;

		if (c->cap >= VMM_CHAN_MAXQ) {
			c->n_dropped++;
			return;
		}
		nl = malloc(sizeof(*nl) * ncap);
		if (!nl) {
			c->n_dropped++;
			return;
		}
		for (i = 0; i < c->count; i++)
			nl[i] = c->lines[(c->head + i) % c->cap];
		free(c->lines);
		c->lines = nl;
		c->head = 0;
		c->cap = ncap;
	}
	l = &c->lines[(c->head + c->count) % c->cap];
	c->count++;
	l->err = err;
	l->len = len;
	memcpy(l->s, line, len);
	l->s[len] = '\0';
}

/* Read what is available on c (non-blocking). */
static void chan_read(struct vmm_chan *c)
{
	char buf[4096];

	for (;;) {
		ssize_t r = read(c->fd, buf, sizeof(buf));

		if (r > 0) {
			ninja_lineq_push(&c->q, buf, (size_t)r, chan_line, c);
			if ((size_t)r < sizeof(buf))
				return;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		snprintf(c->errmsg, sizeof(c->errmsg), "%s: %s", c->name,
			 r == 0 ? "connection closed by peer" : strerror(errno));
		if (c->verbose)
			vmm_log("%s", c->errmsg);
		c->eof = true;
		return;
	}
}

/*
 * Wait for input on any of cs[0..n).  Returns 0 as soon as a channel has
 * a line queued (or, with only_new, has received a new one) or hit EOF.
 */
static int chan_wait(struct vmm_chan **cs, int n, int64_t deadline,
		     bool only_new)
{
	struct pollfd pfd[n > 0 ? n : 1];
	int i, np, r;

	for (;;) {
		np = 0;
		for (i = 0; i < n; i++) {
			if (!only_new && cs[i] && vmm_chan_pending(cs[i]))
				return 0;
		}
		for (i = 0; i < n; i++) {
			pfd[i].fd = -1;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
			if (cs[i] && !cs[i]->eof && cs[i]->fd >= 0) {
				pfd[i].fd = cs[i]->fd;
				np++;
			}
		}
		if (np == 0)
			return 0;	/* everyone is at EOF: let the caller see */
		r = poll(pfd, (nfds_t)n, vmm_remaining_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			if (vmm_now_ns() >= deadline)
				return -2;
			continue;
		}
		r = 0;
		for (i = 0; i < n; i++) {
			unsigned long before;

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			before = cs[i]->n_in;
			chan_read(cs[i]);
			if (cs[i]->eof || (only_new ? cs[i]->n_in != before :
					   vmm_chan_pending(cs[i])))
				r = 1;
		}
		if (r)
			return 0;
	}
}

int vmm_chan_wait(struct vmm_chan **cs, int n, int64_t deadline)
{
	return chan_wait(cs, n, deadline, false);
}

const struct vmm_line *vmm_chan_take(struct vmm_chan *c)
{
	const struct vmm_line *l;

	if (!c->count)
		return NULL;
	l = &c->lines[c->head];
	c->head = (c->head + 1) % c->cap;
	c->count--;
	return l;
}

/* Record the node's HELLO answer; false if the line is not one. */
static bool take_hello(struct vmm_chan *c, const struct vmm_line *l)
{
	struct ninja_msg m;
	uint64_t v;
	size_t plen;
	const char *p;

	if (l->err || ninja_parse_line(l->s, l->len, &m) ||
	    m.verb != NINJA_V_HELLO || m.tok[2].len != 4 ||
	    memcmp(m.tok[2].p, "node", 4) != 0)
		return false;
	c->hello_ok = true;
	memcpy(c->hello, l->s, l->len + 1);
	if (!ninja_msg_get_u64(&m, "epoch", &v) && v <= UINT32_MAX)
		c->node_epoch = (uint32_t)v;
	if (!ninja_msg_get_u64(&m, "ranks", &v) && v <= UINT32_MAX)
		c->node_ranks = (unsigned int)v;
	p = ninja_msg_get(&m, "phase", &plen);
	if (p && plen < sizeof(c->node_phase)) {
		memcpy(c->node_phase, p, plen);
		c->node_phase[plen] = '\0';
	}
	return true;
}

int vmm_chan_hello(struct vmm_chan **cs, int n, const char *role,
		   int64_t deadline)
{
	unsigned int scanned[n > 0 ? n : 1];
	int64_t next_send = 0;
	int i, r, left;

	memset(scanned, 0, sizeof(scanned));
	for (;;) {
		int64_t now = vmm_now_ns();

		/* Look for the answer among the lines queued so far (peek). */
		left = 0;
		for (i = 0; i < n; i++) {
			struct vmm_chan *c = cs[i];

			if (!c || c->hello_ok)
				continue;
			for (; scanned[i] < c->count && !c->hello_ok;
			     scanned[i]++) {
				const struct vmm_line *l =
					&c->lines[(c->head + scanned[i]) % c->cap];

				if (take_hello(c, l))
					break;
				if (strncmp(l->s, "ERR bad-version", 15) == 0) {
					snprintf(c->errmsg, sizeof(c->errmsg),
						 "%s does not speak protocol version %d: %s",
						 c->name, NINJA_PROTO_VERSION,
						 l->s);
					return -1;
				}
			}
			if (c->hello_ok)
				continue;
			if (c->eof)
				return -1;
			left++;
			if (now >= next_send &&
			    vmm_chan_send(c, deadline, "HELLO %d %s",
					  NINJA_PROTO_VERSION, role) < 0)
				return -1;
		}
		if (!left)
			return 0;
		if (now >= deadline)
			return -2;
		if (now >= next_send)
			next_send = now + 1000000000;
		r = chan_wait(cs, n, deadline < next_send ? deadline :
			      next_send, true);
		if (r == -1)
			return -1;
	}
}
