// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja-raw.c - send raw lines to a Ninja control socket and print what
 * comes back: the tests' way to speak malformed protocol on purpose.
 *
 *   ninja-raw unix:PATH [--wait-ms N] [--lines N] [--no-newline] LINE...
 *
 * Each LINE is sent followed by '\n' (with --no-newline the last one is
 * not), after a short pause so the agent sees separate reads.  Received
 * lines are printed as they arrive.  Exits 0 once --lines lines arrived,
 * at --wait-ms (default 1000) or when the peer closes; 1 on errors.
 *
 *   ninja-raw --serve unix:PATH [--timeout-ms N] STEP...
 *
 * A scripted fake node (as libvirt's qemumonitortestutils replays a
 * monitor): listens on PATH, takes one connection and runs the steps in
 * order: "<PREFIX" waits for a received line starting with PREFIX (other
 * lines are printed and skipped), ">TEXT" sends TEXT and '\n' (TEXT may
 * end in '\r' to play the guest tty's echo), "=MS" sleeps.  Received
 * lines are printed as "< LINE".  Exits 0 when the script is done, 2 at
 * --timeout-ms (default 10000), 3 if the peer closes first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one line (without '\n') into line; 1 ok, 0 timeout, -1 closed. */
static int read_line(int fd, char *buf, size_t *have, size_t size,
		     char *line, size_t lsize, long long end)
{
	for (;;) {
		char *nl = memchr(buf, '\n', *have);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left;
		ssize_t r;

		if (nl) {
			size_t n = (size_t)(nl - buf);

			snprintf(line, lsize, "%.*s", (int)n, buf);
			memmove(buf, nl + 1, *have - n - 1);
			*have -= n + 1;
			return 1;
		}
		if (*have == size - 1)
			*have = 0;	/* overlong: drop */
		left = end - now_ms();
		if (left <= 0)
			return 0;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		r = read(fd, buf + *have, size - 1 - *have);
		if (r <= 0)
			return -1;
		*have += (size_t)r;
	}
}

static int serve(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[8192], line[8192];
	long timeout_ms = 10000;
	size_t have = 0;
	long long end;
	int i = 0, ls, fd;

	if (argc < 1 || strncmp(argv[0], "unix:", 5) ||
	    strlen(argv[0] + 5) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: ninja-raw --serve unix:PATH [--timeout-ms N] STEP...\n");
		return 1;
	}
	strcpy(sa.sun_path, argv[0] + 5);
	if (argc > 2 && !strcmp(argv[1], "--timeout-ms")) {
		timeout_ms = atol(argv[2]);
		i = 2;
	}
	unlink(sa.sun_path);
	ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(ls, 4)) {
		fprintf(stderr, "ninja-raw: %s: %s\n", argv[0], strerror(errno));
		return 1;
	}
	end = now_ms() + timeout_ms;
	{
		struct pollfd p = { .fd = ls, .events = POLLIN };

		if (poll(&p, 1, (int)timeout_ms) <= 0) {
			fprintf(stderr, "ninja-raw: nobody connected\n");
			return 2;
		}
	}
	fd = accept(ls, NULL, NULL);
	if (fd < 0) {
		fprintf(stderr, "ninja-raw: accept: %s\n", strerror(errno));
		return 1;
	}
	for (i++; i < argc; i++) {
		const char *st = argv[i];

		if (st[0] == '>') {
			if (write_all(fd, st + 1, strlen(st + 1)) ||
			    write_all(fd, "\n", 1)) {
				fprintf(stderr, "ninja-raw: send: %s\n", strerror(errno));
				return 3;
			}
		} else if (st[0] == '=') {
			poll(NULL, 0, atoi(st + 1));
		} else if (st[0] == '<') {
			for (;;) {
				int r = read_line(fd, buf, &have, sizeof(buf),
						  line, sizeof(line), end);

				if (r == 0) {
					fprintf(stderr, "ninja-raw: timeout waiting for \"%s\"\n",
						st + 1);
					return 2;
				}
				if (r < 0) {
					fprintf(stderr, "ninja-raw: peer closed before \"%s\"\n",
						st + 1);
					return 3;
				}
				printf("< %s\n", line);
				fflush(stdout);
				if (!strncmp(line, st + 1, strlen(st + 1)))
					break;
			}
		} else {
			fprintf(stderr, "ninja-raw: bad step \"%s\"\n", st);
			return 1;
		}
	}
	/* Let the peer read the last lines before we close. */
	poll(NULL, 0, 200);
	close(fd);
	unlink(sa.sun_path);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long wait_ms = 1000, want = -1, got = 0;
	int i, fd, nonl = 0;
	long long end;
	char buf[8192];
	size_t have = 0;

	if (argc > 1 && !strcmp(argv[1], "--serve"))
		return serve(argc - 2, argv + 2);
	if (argc < 2 || strncmp(argv[1], "unix:", 5) ||
	    strlen(argv[1] + 5) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: ninja-raw unix:PATH [--wait-ms N] [--lines N] [--no-newline] LINE...\n");
		return 1;
	}
	strcpy(sa.sun_path, argv[1] + 5);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "ninja-raw: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--wait-ms") && i + 1 < argc) {
			wait_ms = atol(argv[++i]);
			continue;
		}
		if (!strcmp(argv[i], "--lines") && i + 1 < argc) {
			want = atol(argv[++i]);
			continue;
		}
		if (!strcmp(argv[i], "--no-newline")) {
			nonl = 1;
			continue;
		}
		if (write_all(fd, argv[i], strlen(argv[i])) ||
		    ((!nonl || i + 1 < argc) && write_all(fd, "\n", 1))) {
			fprintf(stderr, "ninja-raw: send: %s\n", strerror(errno));
			return 1;
		}
		poll(NULL, 0, 20);
	}
	end = now_ms() + wait_ms;
	while (want < 0 || got < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = end - now_ms();
		ssize_t r;
		char *nl;

		if (left <= 0)
			break;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		while ((nl = memchr(buf, '\n', have))) {
			size_t n = (size_t)(nl - buf) + 1;

			printf("%.*s\n", (int)n - 1, buf);
			fflush(stdout);
			got++;
			memmove(buf, buf + n, have - n);
			have -= n;
		}
		if (have == sizeof(buf) - 1)
			have = 0;
	}
	close(fd);
	return 0;
}
