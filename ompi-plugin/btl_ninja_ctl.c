/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_ctl.c - the control channel to the node agent
 * (common/ninja_proto.h): the guest module's /dev/ninja or the agent's
 * unix socket.  Opened and registered at init (mca_btl_ninja_ctl_setup),
 * then read by the control thread; lines are parsed here and their
 * meaning is the cycle's (mca_btl_ninja_agent_msg, btl_ninja_drain.c).
 */
#include "opal_config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "btl_ninja_thread.h"
#include "ninja_proto.h"

/* A lost control channel is reopened this often. */
#define NINJA_CTL_RETRY_NS	NINJA_SEC_NS
/* The agent answers REGISTER within this long, or the channel is unusable. */
#define NINJA_REGISTER_WAIT_MS	10000

/* Control-thread-only state (also written at init, before the thread). */
static struct {
	int ctl_fd;
	bool ctl_registered;
	uint64_t ctl_retry_at;
	struct ninja_lineq ctl_q;
	char ctl_path[256];
	bool ctl_unix;
	bool have_control;
	unsigned int lost_told;		/* control-lost shown (once) */
	unsigned int bad_line_told;	/* control-bad-line shown (once) */
	unsigned int refused_told;	/* control-refused shown (once) */
} T = { .ctl_fd = -1 };

void mca_btl_ninja_ctl_close(void)
{
	if (T.ctl_fd >= 0)
		close(T.ctl_fd);
	T.ctl_fd = -1;
	T.ctl_registered = false;
	T.ctl_retry_at = mca_btl_ninja_now_ns() + NINJA_CTL_RETRY_NS;
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
		mca_btl_ninja_ctl_close();
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
	T.ctl_retry_at = mca_btl_ninja_now_ns() + NINJA_CTL_RETRY_NS;
	return false;
}

/*
 * The node's answer to our REGISTER, read a byte at a time so that what
 * follows it (a QUIESCE for a late rank) stays for the control thread.
 */
static int ctl_first_line(char *line, size_t size, int timeout_ms)
{
	uint64_t end = mca_btl_ninja_now_ns() + timeout_ms * NINJA_MS_NS;
	size_t n = 0;

	while (n + 1 < size) {
		uint64_t now = mca_btl_ninja_now_ns();
		struct pollfd p = { .fd = T.ctl_fd, .events = POLLIN };
		ssize_t r;

		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((end - now) / NINJA_MS_NS) + 1) < 0 &&
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
	r = ctl_first_line(line, sizeof(line), NINJA_REGISTER_WAIT_MS);
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
	mca_btl_ninja_ctl_close();
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

int mca_btl_ninja_ctl_fd(void)
{
	return T.ctl_fd;
}

bool mca_btl_ninja_ctl_present(void)
{
	return T.have_control;
}

void mca_btl_ninja_ctl_retry(uint64_t now)
{
	if (T.have_control && T.ctl_fd < 0 && now >= T.ctl_retry_at)
		(void)ctl_open();
}

/* A line from the channel, printable (at most 80 bytes) for a message. */
static void printable(char *out, size_t cap, const char *line, size_t len)
{
	size_t i;

	if (len > cap - 1)
		len = cap - 1;
	for (i = 0; i < len; i++)
		out[i] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
	out[len] = '\0';
}

/* A line we cannot use: help topic control-bad-line once, then verbose. */
static void bad_line(const char *why, const char *line, size_t len)
{
	char text[81];

	printable(text, sizeof(text), line, len);
	if (!T.bad_line_told++)
		mca_btl_ninja_help("control-bad-line", opal_process_info.nodename,
				   OPAL_PROC_MY_NAME.vpid, T.ctl_path, why,
				   text);
	else
		NINJA_VERBOSE(1, "btl:ninja: control channel: %s in \"%s\"",
			      why, text);
}

/* One line from the agent: parsed here, acted on by the cycle. */
static void ctl_line(void *ctx, const char *line, size_t len, int err)
{
	struct ninja_msg m;
	char text[81];
	int rc;

	if (err) {
		bad_line(ninja_strerror(err), "", 0);
		return;
	}
	rc = ninja_parse_line(line, len, &m);
	if (rc == -NINJA_EEMPTY)
		return;
	if (rc) {
		bad_line(ninja_strerror(rc), line, len);
		ctl_send("ERR %s from-rank", ninja_err_name(rc));
		return;
	}
	NINJA_VERBOSE(20, "btl:ninja: control -> %.*s", (int)len, line);
	switch (m.verb) {
	case NINJA_V_OK:
		T.ctl_registered = true;
		break;
	case NINJA_V_ERR:
		printable(text, sizeof(text), line, len);
		if (!T.refused_told++)
			mca_btl_ninja_help("control-refused",
					   opal_process_info.nodename,
					   OPAL_PROC_MY_NAME.vpid, T.ctl_path,
					   text);
		else
			NINJA_VERBOSE(1, "btl:ninja: control channel says: %s",
				      text);
		break;
	default:
		mca_btl_ninja_agent_msg(&m, line, len);
		break;
	}
}

void mca_btl_ninja_ctl_read(void)
{
	char buf[4096];
	const char *why;
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
		why = n < 0 ? strerror(errno) : "EOF";
		if (!T.lost_told++)
			mca_btl_ninja_help("control-lost",
					   opal_process_info.nodename,
					   OPAL_PROC_MY_NAME.vpid, T.ctl_path, why);
		NINJA_VERBOSE(1, "btl:ninja: control channel %s closed (%s); "
			      "retrying every second", T.ctl_path, why);
		mca_btl_ninja_ctl_close();
		return;
	}
}
