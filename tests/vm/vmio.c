// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmio.c - host-side test driver for a guest booted by tests/vm/boot-guest.
 *
 * One run connects to up to three unix sockets of the guest and executes
 * steps in order, each with a deadline:
 *
 *   --port SOCK   the Ninja control port (virtconsole org.ninja.0)
 *   --qmp SOCK    QEMU's QMP monitor
 *   --shell SOCK  the guest shell port (virtserialport org.ninja.shell)
 *
 * Steps (one argument each):
 *   send LINE            port: write LINE and '\n'
 *   sendraw TEXT         port: write TEXT with \n \r \t \\ \xHH escapes
 *   sendlong N           port: write N bytes 'A' and '\n'
 *   sendrep N LINE       port: write N lines "LINE n=<i>", i = 0..N-1
 *   expect REGEX [S]     port: wait for a line matching REGEX (ERE); the
 *                        search starts after the last line expect matched
 *   none REGEX S         port: no line matching REGEX arrives within S s
 *   seen REGEX           port: a line received in this run matches (now)
 *   wait REGEX [S]       port: wait until a line received in this run
 *                        matches, in any order (the cursor does not move)
 *   qmp JSON             QMP: execute, fail on an error reply
 *   qmp-fail JSON        QMP: execute, fail unless the reply is an error
 *   qmp-event NAME [S]   QMP: wait for event NAME, then collect what the
 *                        port has already sent (for "seen" ordering checks)
 *   sh CMD               guest: run CMD with sh -c, fail on non-zero status
 *   sh-fail CMD          guest: run CMD, fail on zero status
 *   out REGEX            a line of the last sh output matches REGEX
 *   sleep S              keep reading for S seconds
 *   print TEXT           print TEXT on stdout
 * S defaults to --timeout (30 s).  Port lines ending in '\r' are tty
 * echo (see docs/testbed.md) and are logged but never matched.
 *
 * Every line in and out is logged with a host timestamp to --log FILE.
 * Exit status: 0 all steps passed, 1 a step failed (the reason and the
 * last lines go to stderr), 2 usage or connection error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { CH_PORT, CH_QMP, CH_SHELL, CH_COUNT };
static const char *const ch_names[CH_COUNT] = { "port", "qmp", "sh" };

struct chan {
	int fd;
	char buf[1 << 17];
	size_t len;
	char **lines;		/* every complete line received */
	size_t n, cap;
};

static struct chan ch[CH_COUNT];
static FILE *logfp;
static double timeout_s = 30;
static uint64_t t0;
static size_t port_cursor;	/* next port line "expect" looks at */
static size_t qmp_cursor;	/* next QMP line a reply/event search sees */
static char *last_out;		/* output of the last "sh" step */
static const char *step_now;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void logline(int c, char dir, const char *s, size_t len)
{
	if (!logfp)
		return;
	fprintf(logfp, "%.6f %s %c %.*s\n", (now_ns() - t0) / 1e9, ch_names[c],
		dir, (int)len, s);
	fflush(logfp);
}

static void dump_tail(int c, size_t k)
{
	size_t i = ch[c].n > k ? ch[c].n - k : 0;

	if (ch[c].fd < 0)
		return;
	fprintf(stderr, "  last %s lines:\n", ch_names[c]);
	for (; i < ch[c].n; i++)
		fprintf(stderr, "    %s\n", ch[c].lines[i]);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmio: step '%s' failed: ", step_now ? step_now : "-");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	dump_tail(CH_PORT, 15);
	dump_tail(CH_QMP, 4);
	if (last_out)
		fprintf(stderr, "  last sh output:\n%s\n", last_out);
	if (logfp) {
		fprintf(logfp, "FAILED: step '%s'\n", step_now ? step_now : "-");
		fclose(logfp);
	}
	exit(1);
}

static void add_line(int c, char *s, size_t len)
{
	struct chan *h = &ch[c];

	logline(c, '<', s, len);
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 256;
		h->lines = realloc(h->lines, h->cap * sizeof(*h->lines));
		if (!h->lines)
			fail("out of memory");
	}
	h->lines[h->n] = strndup(s, len);
	if (!h->lines[h->n])
		fail("out of memory");
	h->n++;
}

/* Read what is available on a channel; split it into lines. */
static void chan_read(int c)
{
	struct chan *h = &ch[c];
	ssize_t r;
	size_t i, start = 0;

	r = read(h->fd, h->buf + h->len, sizeof(h->buf) - h->len);
	if (r == 0)
		fail("%s: connection closed by QEMU", ch_names[c]);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail("%s: read: %s", ch_names[c], strerror(errno));
	}
	h->len += (size_t)r;
	for (i = 0; i < h->len; i++) {
		if (h->buf[i] != '\n')
			continue;
		add_line(c, h->buf + start, i - start);
		start = i + 1;
	}
	memmove(h->buf, h->buf + start, h->len - start);
	h->len -= start;
	if (h->len == sizeof(h->buf)) {	/* a monster line: take it */
		add_line(c, h->buf, h->len);
		h->len = 0;
	}
}

/* Read from every channel for up to ms milliseconds (0: what is there). */
static void pump(int ms)
{
	struct pollfd p[CH_COUNT];
	int c, n = 0, idx[CH_COUNT];

	for (c = 0; c < CH_COUNT; c++) {
		if (ch[c].fd < 0)
			continue;
		p[n].fd = ch[c].fd;
		p[n].events = POLLIN;
		idx[n++] = c;
	}
	if (poll(p, (nfds_t)n, ms) < 0) {
		if (errno == EINTR)
			return;
		fail("poll: %s", strerror(errno));
	}
	for (c = 0; c < n; c++)
		if (p[c].revents & (POLLIN | POLLHUP | POLLERR))
			chan_read(idx[c]);
}

/* Read until nothing more is waiting on any channel. */
static void drain(void)
{
	size_t before;
	int c;

	do {
		before = 0;
		for (c = 0; c < CH_COUNT; c++)
			before += ch[c].n;
		pump(0);
		for (c = 0; c < CH_COUNT; c++)
			before -= ch[c].n;
	} while (before);
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = now_ns();

	if (now >= deadline)
		return 0;
	return (int)((deadline - now) / 1000000) + 1;
}

static void xwrite(int c, const char *s, size_t len)
{
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
	size_t off = 0;

	if (ch[c].fd < 0)
		fail("%s: not connected (give --%s)", ch_names[c],
		     c == CH_SHELL ? "shell" : ch_names[c]);
	while (off < len) {
		ssize_t w = write(ch[c].fd, s + off, len - off);

		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (!remaining_ms(deadline))
				fail("%s: the guest does not read", ch_names[c]);
			pump(10);
			continue;
		}
		if (w < 0)
			fail("%s: write: %s", ch_names[c], strerror(errno));
		off += (size_t)w;
	}
}

static void send_logged(int c, const char *s, size_t len)
{
	size_t shown = len && s[len - 1] == '\n' ? len - 1 : len;

	logline(c, '>', s, shown > 300 ? 300 : shown);
	xwrite(c, s, len);
}

static regex_t *compile(const char *re)
{
	static regex_t r;
	static bool have;

	if (have)
		regfree(&r);
	if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB))
		fail("bad regular expression '%s'", re);
	have = true;
	return &r;
}

static bool is_echo(const char *s)
{
	size_t n = strlen(s);

	return n && s[n - 1] == '\r';
}

/* First port line at or after from matching r, or -1. */
static long port_find(regex_t *r, size_t from)
{
	size_t i;

	for (i = from; i < ch[CH_PORT].n; i++)
		if (!is_echo(ch[CH_PORT].lines[i]) &&
		    !regexec(r, ch[CH_PORT].lines[i], 0, NULL, 0))
			return (long)i;
	return -1;
}

static double secs_arg(const char *s, double dflt)
{
	char *end;
	double v;

	if (!s || !*s)
		return dflt;
	v = strtod(s, &end);
	if (end == s || *end || v < 0)
		fail("bad number of seconds '%s'", s);
	return v;
}

/* Split "REGEX [S]": the last word is S when it is a number. */
static double split_secs(char *arg, double dflt)
{
	char *sp = strrchr(arg, ' '), *end;
	double v;

	if (!sp)
		return dflt;
	v = strtod(sp + 1, &end);
	if (end == sp + 1 || *end)
		return dflt;
	*sp = '\0';
	return v;
}

static void step_expect(char *arg)
{
	double s = split_secs(arg, timeout_s);
	uint64_t deadline = now_ns() + (uint64_t)(s * 1e9);
	regex_t *r = compile(arg);
	long i;

	for (;;) {
		i = port_find(r, port_cursor);
		if (i >= 0) {
			port_cursor = (size_t)i + 1;
			return;
		}
		if (!remaining_ms(deadline))
			fail("no port line matching '%s' within %.1f s", arg, s);
		pump(remaining_ms(deadline));
	}
}

static void step_none(char *arg)
{
	double s = split_secs(arg, -1);
	uint64_t deadline;
	regex_t *r;
	long i;

	if (s < 0)
		fail("usage: none REGEX SECONDS");
	deadline = now_ns() + (uint64_t)(s * 1e9);
	r = compile(arg);
	for (;;) {
		i = port_find(r, port_cursor);
		if (i >= 0)
			fail("unexpected port line '%s'", ch[CH_PORT].lines[i]);
		if (!remaining_ms(deadline))
			return;
		pump(remaining_ms(deadline));
	}
}

static void step_wait(char *arg)
{
	double s = split_secs(arg, timeout_s);
	uint64_t deadline = now_ns() + (uint64_t)(s * 1e9);
	regex_t *r = compile(arg);

	while (port_find(r, 0) < 0) {
		if (!remaining_ms(deadline))
			fail("no port line matching '%s' within %.1f s", arg, s);
		pump(remaining_ms(deadline));
	}
}

static void step_seen(const char *arg)
{
	drain();
	if (port_find(compile(arg), 0) < 0)
		fail("no port line matching '%s' has arrived", arg);
}

static void step_sendraw(const char *arg)
{
	char *out = malloc(strlen(arg) + 1);
	size_t n = 0;
	const char *p;

	if (!out)
		fail("out of memory");
	for (p = arg; *p; p++) {
		if (*p != '\\' || !p[1]) {
			out[n++] = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'x': {
			char hex[3] = { p[1], p[1] ? p[2] : 0, 0 };

			out[n++] = (char)strtol(hex, NULL, 16);
			p += 2;
			break;
		}
		default: out[n++] = *p; break;
		}
	}
	send_logged(CH_PORT, out, n);
	free(out);
}

static bool qmp_is_event(const char *s)
{
	return strstr(s, "\"event\"") && !strncmp(s, "{\"timestamp\"", 12);
}

static bool qmp_is_reply(const char *s)
{
	return !strncmp(s, "{\"return\"", 9) || !strncmp(s, "{\"error\"", 8);
}

/* Execute a QMP command; returns its reply line. */
static const char *qmp_exec(const char *json)
{
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
	size_t i;

	send_logged(CH_QMP, json, strlen(json));
	xwrite(CH_QMP, "\n", 1);
	for (;;) {
		for (i = qmp_cursor; i < ch[CH_QMP].n; i++) {
			if (qmp_is_reply(ch[CH_QMP].lines[i])) {
				/* Replies are consumed; events stay visible. */
				ch[CH_QMP].lines[i][1] = '-';
				return ch[CH_QMP].lines[i];
			}
		}
		if (!remaining_ms(deadline))
			fail("no QMP reply to %s", json);
		pump(remaining_ms(deadline));
	}
}

static void step_qmp(const char *json, bool want_err)
{
	const char *r = qmp_exec(json);
	bool err = !strncmp(r + 2, "error\"", 6);

	if (err != want_err)
		fail("QMP %s: %s", want_err ? "expected an error" : "error", r);
}

static void step_qmp_event(char *arg)
{
	double s = split_secs(arg, timeout_s);
	uint64_t deadline = now_ns() + (uint64_t)(s * 1e9);
	char pat[200];
	size_t i;

	snprintf(pat, sizeof(pat), "\"event\": \"%s\"", arg);
	for (;;) {
		for (i = qmp_cursor; i < ch[CH_QMP].n; i++) {
			if (qmp_is_event(ch[CH_QMP].lines[i]) &&
			    strstr(ch[CH_QMP].lines[i], pat)) {
				qmp_cursor = i + 1;
				/* What QEMU wrote to the port before it is here. */
				drain();
				return;
			}
		}
		if (!remaining_ms(deadline))
			fail("no QMP event %s within %.1f s", arg, s);
		pump(remaining_ms(deadline));
	}
}

static void step_sh(const char *cmd, bool want_fail)
{
	static unsigned int seq;
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
	char tok[64], *line, *end;
	size_t from = ch[CH_SHELL].n, i, k, outlen = 0;
	int rc = -1;

	if (strchr(cmd, '\n'))
		fail("a guest command must be one line");
	snprintf(tok, sizeof(tok), "__end v%d_%u ", (int)getpid(), ++seq);
	line = malloc(strlen(cmd) + 64);
	if (!line)
		fail("out of memory");
	sprintf(line, "v%d_%u %s\n", (int)getpid(), seq, cmd);
	send_logged(CH_SHELL, line, strlen(line));
	free(line);
	free(last_out);
	last_out = NULL;
	for (;;) {
		for (i = from; i < ch[CH_SHELL].n; i++) {
			end = strstr(ch[CH_SHELL].lines[i], tok);
			if (end) {
				rc = atoi(end + strlen(tok));
				*end = '\0';	/* keep output before the marker */
				break;
			}
		}
		if (rc >= 0)
			break;
		if (!remaining_ms(deadline))
			fail("guest command did not finish within %.1f s: %s",
			     timeout_s, cmd);
		pump(remaining_ms(deadline));
	}
	/* The output: lines from the command's start to the marker. */
	for (k = from; k <= i; k++)
		outlen += strlen(ch[CH_SHELL].lines[k]) + 1;
	last_out = calloc(1, outlen + 1);
	if (!last_out)
		fail("out of memory");
	for (k = from; k <= i; k++) {
		strcat(last_out, ch[CH_SHELL].lines[k]);
		strcat(last_out, "\n");
	}
	if (want_fail ? rc == 0 : rc != 0)
		fail("guest command exited %d: %s", rc, cmd);
}

static void step_out(const char *re)
{
	regex_t *r = compile(re);
	char *s, *save = NULL, *tok;

	if (!last_out)
		fail("no guest output yet");
	s = strdup(last_out);
	if (!s)
		fail("out of memory");
	for (tok = strtok_r(s, "\n", &save); tok;
	     tok = strtok_r(NULL, "\n", &save)) {
		if (!regexec(r, tok, 0, NULL, 0)) {
			free(s);
			return;
		}
	}
	free(s);
	fail("no line of the guest output matches '%s'", re);
}

static int connect_unix(const char *path, const char *what)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t deadline = now_ns() + 10ull * 1000000000ull;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmio: %s socket path too long\n", what);
		exit(2);
	}
	strcpy(sa.sun_path, path);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			break;
		if (fd >= 0)
			close(fd);
		if (now_ns() > deadline) {
			fprintf(stderr, "vmio: cannot connect to %s %s: %s\n",
				what, path, strerror(errno));
			exit(2);
		}
		usleep(100000);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void qmp_start(void)
{
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);

	step_now = "QMP greeting";
	while (!ch[CH_QMP].n) {
		if (!remaining_ms(deadline))
			fail("no QMP greeting");
		pump(remaining_ms(deadline));
	}
	qmp_cursor = 1;
	step_now = "qmp_capabilities";
	step_qmp("{\"execute\":\"qmp_capabilities\"}", false);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: vmio [--port SOCK] [--qmp SOCK] [--shell SOCK] [--log FILE]\n"
		"            [--timeout S] STEP...   (see the top of vmio.c)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *sock[CH_COUNT] = { NULL, NULL, NULL };
	int i, c;

	signal(SIGPIPE, SIG_IGN);
	t0 = now_ns();
	for (c = 0; c < CH_COUNT; c++)
		ch[c].fd = -1;
	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--port"))
			sock[CH_PORT] = argv[++i];
		else if (!strcmp(argv[i], "--qmp"))
			sock[CH_QMP] = argv[++i];
		else if (!strcmp(argv[i], "--shell"))
			sock[CH_SHELL] = argv[++i];
		else if (!strcmp(argv[i], "--log"))
			logfp = fopen(argv[++i], "a");
		else if (!strcmp(argv[i], "--timeout"))
			timeout_s = secs_arg(argv[++i], 30);
		else
			usage();
	}
	for (c = 0; c < CH_COUNT; c++)
		if (sock[c])
			ch[c].fd = connect_unix(sock[c], ch_names[c]);
	if (ch[CH_QMP].fd >= 0)
		qmp_start();

	for (; i < argc; i++) {
		char *arg = strdup(argv[i]), *rest;

		if (!arg)
			fail("out of memory");
		step_now = argv[i];
		if (logfp)
			fprintf(logfp, "%.6f step %s\n", (now_ns() - t0) / 1e9,
				argv[i]);
		rest = strchr(arg, ' ');
		if (rest)
			*rest++ = '\0';
		else
			rest = arg + strlen(arg);

		if (!strcmp(arg, "send")) {
			char *l = malloc(strlen(rest) + 2);

			if (!l)
				fail("out of memory");
			sprintf(l, "%s\n", rest);
			send_logged(CH_PORT, l, strlen(l));
			free(l);
		} else if (!strcmp(arg, "sendraw")) {
			step_sendraw(rest);
		} else if (!strcmp(arg, "sendlong")) {
			long n = strtol(rest, NULL, 10);
			char *l;

			if (n <= 0)
				fail("usage: sendlong N");
			l = malloc((size_t)n + 1);
			if (!l)
				fail("out of memory");
			memset(l, 'A', (size_t)n);
			l[n] = '\n';
			send_logged(CH_PORT, l, (size_t)n + 1);
			free(l);
		} else if (!strcmp(arg, "sendrep")) {
			char *line = strchr(rest, ' ');
			long n = strtol(rest, NULL, 10), k;
			char buf[600];
			int len;

			if (n <= 0 || !line)
				fail("usage: sendrep N LINE");
			for (k = 0; k < n; k++) {
				len = snprintf(buf, sizeof(buf), "%s n=%ld\n",
					       line + 1, k);
				if (len >= (int)sizeof(buf))
					fail("line too long");
				send_logged(CH_PORT, buf, (size_t)len);
				pump(0);
			}
		} else if (!strcmp(arg, "expect")) {
			step_expect(rest);
		} else if (!strcmp(arg, "none")) {
			step_none(rest);
		} else if (!strcmp(arg, "wait")) {
			step_wait(rest);
		} else if (!strcmp(arg, "seen")) {
			step_seen(rest);
		} else if (!strcmp(arg, "qmp")) {
			step_qmp(rest, false);
		} else if (!strcmp(arg, "qmp-fail")) {
			step_qmp(rest, true);
		} else if (!strcmp(arg, "qmp-event")) {
			step_qmp_event(rest);
		} else if (!strcmp(arg, "sh")) {
			step_sh(rest, false);
		} else if (!strcmp(arg, "sh-fail")) {
			step_sh(rest, true);
		} else if (!strcmp(arg, "out")) {
			step_out(rest);
		} else if (!strcmp(arg, "sleep")) {
			uint64_t d = now_ns() + (uint64_t)(secs_arg(rest, 0) * 1e9);

			while (remaining_ms(d))
				pump(remaining_ms(d));
		} else if (!strcmp(arg, "print")) {
			printf("%s\n", rest);
			fflush(stdout);
		} else {
			fail("unknown step '%s'", arg);
		}
		free(arg);
	}
	drain();
	if (logfp)
		fclose(logfp);
	return 0;
}
