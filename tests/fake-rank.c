// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fake-rank.c - a scripted stand-in for an MPI rank on the Ninja control
 * protocol, for tests of the guest module (/dev/ninja) and of the
 * user-space agent (unix socket): both speak the same byte stream.
 *
 *   fake-rank --control unix:PATH|/dev/ninja --job J --rank R
 *             [--safe-delay-ms N] [--safe-file PATH] [--never-safe]
 *             [--exit-on-quiesce] [--cycles N] [--timeout-s S]
 *             [--allow-err NAME|any]...
 *
 * It registers ("REGISTER J R pid=P"), prints every line it receives as
 * "<monotonic s.ns> < LINE" and every line it sends as "<s.ns> > LINE" on
 * stdout, answers QUIESCE e with "SAFE e" after --safe-delay-ms (and once
 * --safe-file exists, if given; never with --never-safe), and answers
 * RESUME e / CANCEL e with "RESUMED e rail=fake".
 *
 * Exit status: 0 after --cycles RESUMED sent or at a QUIESCE with
 * --exit-on-quiesce; 1 on an ERR line not allowed by --allow-err, a
 * usage or I/O error; 2 on --timeout-s; 3 when the peer closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ninja_proto.h"

#define MAX_ALLOW	16

static struct {
	const char *control, *job, *safe_file;
	unsigned long rank, safe_delay_ms, cycles, timeout_s;
	int never_safe, exit_on_quiesce;
	const char *allow[MAX_ALLOW];
	int nallow;
} opt = { .job = "fake" };

static int fd = -1;
static uint32_t pending_safe;	/* epoch waiting for its SAFE, 0: none */
static uint64_t safe_due_ns;
static unsigned long resumed;
static int exit_code = -1;	/* set: leave the main loop */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void show(char dir, const char *line, size_t len)
{
	uint64_t t = now_ns();

	printf("%" PRIu64 ".%09" PRIu64 " %c %.*s\n", t / UINT64_C(1000000000),
	       t % UINT64_C(1000000000), dir, (int)len, line);
	fflush(stdout);
}

static void die(int code, const char *what)
{
	fprintf(stderr, "fake-rank %s/%lu: %s\n", opt.job, opt.rank, what);
	exit(code);
}

static void send_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void send_line(const char *fmt, ...)
{
	char buf[NINJA_LINE_MAX + 1];
	va_list ap;
	size_t off = 0;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(buf) - 1)
		die(1, "line too long");
	show('>', buf, (size_t)n);
	buf[n++] = '\n';
	while (off < (size_t)n) {
		ssize_t w = write(fd, buf + off, (size_t)n - off);

		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			poll(&p, 1, 1000);
			continue;
		}
		if (w <= 0)
			die(1, strerror(errno));
		off += (size_t)w;
	}
}

static int err_allowed(const struct ninja_msg *m)
{
	int i;

	for (i = 0; i < opt.nallow; i++) {
		if (!strcmp(opt.allow[i], "any"))
			return 1;
		if (m->ntok > 1 && strlen(opt.allow[i]) == m->tok[1].len &&
		    !memcmp(opt.allow[i], m->tok[1].p, m->tok[1].len))
			return 1;
	}
	return 0;
}

static void on_line(void *ctx, const char *line, size_t len, int err)
{
	struct ninja_msg m;

	(void)ctx;
	if (err) {
		show('<', line, len);
		die(1, "oversized line received");
	}
	show('<', line, len);
	if (ninja_parse_line(line, len, &m))
		return;		/* not ours to judge: printed, ignored */
	switch (m.verb) {
	case NINJA_V_QUIESCE:
		if (opt.exit_on_quiesce) {
			exit_code = 0;
			return;
		}
		if (opt.never_safe)
			return;
		pending_safe = m.epoch;
		safe_due_ns = now_ns() + opt.safe_delay_ms * 1000000ull;
		return;
	case NINJA_V_RESUME:
	case NINJA_V_CANCEL:
		pending_safe = 0;
		send_line("RESUMED %" PRIu32 " rail=fake", m.epoch);
		if (opt.cycles && ++resumed >= opt.cycles)
			exit_code = 0;
		return;
	case NINJA_V_ERR:
		if (!err_allowed(&m))
			die(1, "unexpected ERR");
		return;
	default:
		return;
	}
}

static void open_control(void)
{
	if (!strncmp(opt.control, "unix:", 5)) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(opt.control + 5) >= sizeof(sa.sun_path))
			die(1, "socket path too long");
		strcpy(sa.sun_path, opt.control + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			die(1, strerror(errno));
		return;
	}
	fd = open(opt.control, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		die(1, strerror(errno));
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fake-rank --control unix:PATH|DEVICE --job J --rank R\n"
		"       [--safe-delay-ms N] [--safe-file PATH] [--never-safe]\n"
		"       [--exit-on-quiesce] [--cycles N] [--timeout-s S]\n"
		"       [--allow-err NAME|any]...\n");
	exit(1);
}

static unsigned long num_arg(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "job", required_argument, NULL, 'j' },
		{ "rank", required_argument, NULL, 'r' },
		{ "safe-delay-ms", required_argument, NULL, 'd' },
		{ "safe-file", required_argument, NULL, 'f' },
		{ "never-safe", no_argument, NULL, 'n' },
		{ "exit-on-quiesce", no_argument, NULL, 'x' },
		{ "cycles", required_argument, NULL, 'y' },
		{ "timeout-s", required_argument, NULL, 't' },
		{ "allow-err", required_argument, NULL, 'e' },
		{ NULL, 0, NULL, 0 }
	};
	struct ninja_lineq lq;
	uint64_t deadline = 0;
	char buf[4096];
	int c;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'c': opt.control = optarg; break;
		case 'j': opt.job = optarg; break;
		case 'r': opt.rank = num_arg(optarg); break;
		case 'd': opt.safe_delay_ms = num_arg(optarg); break;
		case 'f': opt.safe_file = optarg; break;
		case 'n': opt.never_safe = 1; break;
		case 'x': opt.exit_on_quiesce = 1; break;
		case 'y': opt.cycles = num_arg(optarg); break;
		case 't': opt.timeout_s = num_arg(optarg); break;
		case 'e':
			if (opt.nallow == MAX_ALLOW)
				usage();
			opt.allow[opt.nallow++] = optarg;
			break;
		default: usage();
		}
	}
	if (!opt.control || optind != argc)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (opt.timeout_s)
		deadline = now_ns() + opt.timeout_s * 1000000000ull;
	open_control();
	ninja_lineq_init(&lq);
	send_line("REGISTER %s %lu pid=%ld", opt.job, opt.rank, (long)getpid());

	while (exit_code < 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ns();
		int64_t wait_ms = 1000;
		ssize_t n;

		if (pending_safe && now >= safe_due_ns) {
			struct stat st;

			if (!opt.safe_file || !stat(opt.safe_file, &st)) {
				send_line("SAFE %" PRIu32, pending_safe);
				pending_safe = 0;
				continue;
			}
			wait_ms = 10;	/* poll for the file */
		} else if (pending_safe) {
			wait_ms = (int64_t)((safe_due_ns - now) / 1000000) + 1;
		}
		if (deadline) {
			if (now >= deadline)
				die(2, "timeout");
			if ((int64_t)((deadline - now) / 1000000) + 1 < wait_ms)
				wait_ms = (int64_t)((deadline - now) / 1000000) + 1;
		}
		if (poll(&p, 1, (int)wait_ms) < 0 && errno != EINTR)
			die(1, strerror(errno));
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			die(1, strerror(errno));
		if (n == 0)
			die(3, "peer closed the connection");
		ninja_lineq_push(&lq, buf, (size_t)n, on_line, NULL);
	}
	return exit_code;
}
