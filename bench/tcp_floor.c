// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * tcp_floor.c - the floor for any TCP transport on this machine: a raw
 * ping-pong over loopback between two processes, busy-polled.
 *
 *   tcp_floor [-s BYTES]... [-iters N] [-time MS] [-cpu A,B | -cpu none]
 *
 * The parent listens on 127.0.0.1 (ephemeral port) and forks the echo side.
 * Both sockets are non-blocking with TCP_NODELAY; every send and recv is a
 * spin on MSG_DONTWAIT (no poll/epoll, no sleeping), which is what a
 * progress loop that polls its sockets could at best achieve.  Socket buffer
 * sizes are the kernel's autotuned defaults.  By default the two processes
 * are pinned to CPUs 0 and 1 (like mpirun --bind-to core with 2 ranks).
 *
 * Sizes default to 1 B and 4 MiB.  Per size: a warm-up/calibration of
 * doubling batches until one takes 20 ms, then N round trips (N so the size
 * takes -time ms, default 250, unless -iters).  Output is the pingpong/IMB
 * table: bytes, repetitions, t[usec] (half round trip), Mbytes/sec (10^6).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES	32
#define WARMUP_S	0.020
#define MAX_ITERS	1000000L

/* Parent -> child before every batch; size 0 with n 0 ends the child. */
struct batch {
	int64_t size;
	int64_t n;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "tcp_floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			die("send");
		}
	}
}

static void recv_all(int fd, char *buf, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n == 0) {
			fprintf(stderr, "tcp_floor: peer closed\n");
			exit(1);
		} else if (errno != EAGAIN && errno != EINTR) {
			die("recv");
		}
	}
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		fprintf(stderr, "tcp_floor: cannot pin to cpu %d: %s\n", cpu,
			strerror(errno));
}

static void tune(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		die("TCP_NODELAY");
}

static void echo_side(int fd, char *buf)
{
	struct batch b;
	int64_t i;

	for (;;) {
		recv_all(fd, (char *)&b, sizeof(b));
		if (b.n == 0)
			return;
		for (i = 0; i < b.n; i++) {
			recv_all(fd, buf, (size_t)b.size);
			send_all(fd, buf, (size_t)b.size);
		}
	}
}

static double batch(int fd, char *sbuf, char *rbuf, int64_t size, long n)
{
	struct batch b = { .size = size, .n = n };
	double t0;
	long i;

	send_all(fd, (const char *)&b, sizeof(b));
	t0 = now_s();
	for (i = 0; i < n; i++) {
		send_all(fd, sbuf, (size_t)size);
		recv_all(fd, rbuf, (size_t)size);
	}
	return now_s() - t0;
}

static long parse_size(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end == 'k' || *end == 'K')
		v <<= 10;
	else if (*end == 'm' || *end == 'M')
		v <<= 20;
	else if (*end)
		return -1;
	return v;
}

int main(int argc, char **argv)
{
	long sizes[MAX_SIZES], iters = 0, time_ms = 250, maxsize = 0;
	int nsizes = 0, cpu[2] = { 0, 1 }, lfd, fd, i;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	char *sbuf, *rbuf;
	pid_t child;

	for (i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			goto usage;
		if (!strcmp(argv[i], "-s") && nsizes < MAX_SIZES) {
			sizes[nsizes] = parse_size(argv[++i]);
			if (sizes[nsizes++] < 0)
				goto usage;
		} else if (!strcmp(argv[i], "-iters")) {
			iters = atol(argv[++i]);
		} else if (!strcmp(argv[i], "-time")) {
			time_ms = atol(argv[++i]);
		} else if (!strcmp(argv[i], "-cpu")) {
			i++;
			if (!strcmp(argv[i], "none"))
				cpu[0] = cpu[1] = -1;
			else if (sscanf(argv[i], "%d,%d", &cpu[0], &cpu[1]) != 2)
				goto usage;
		} else {
			goto usage;
		}
	}
	if (!nsizes) {
		sizes[nsizes++] = 1;
		sizes[nsizes++] = 4L << 20;
	}
	for (i = 0; i < nsizes; i++)
		if (sizes[i] > maxsize)
			maxsize = sizes[i];
	sbuf = calloc(1, (size_t)maxsize + 1);
	rbuf = calloc(1, (size_t)maxsize + 1);
	if (!sbuf || !rbuf)
		die("calloc");
	memset(sbuf, 0x5a, (size_t)maxsize);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen))
		die("listen on 127.0.0.1");
	fflush(stdout);
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(lfd);
		pin(cpu[1]);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			die("connect");
		tune(fd);
		echo_side(fd, rbuf);
		_exit(0);
	}
	pin(cpu[0]);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		die("accept");
	close(lfd);
	tune(fd);

	printf("# tcp_floor: raw TCP over 127.0.0.1, TCP_NODELAY, busy-polled "
	       "non-blocking send/recv, t[usec] = half round trip\n");
	printf("%13s %12s %12s %12s\n", "#bytes", "#repetitions", "t[usec]",
	       "Mbytes/sec");
	for (i = 0; i < nsizes; i++) {
		long n = iters, w;
		double el;

		batch(fd, sbuf, rbuf, sizes[i], 2);
		for (w = 1;; w *= 2) {
			el = batch(fd, sbuf, rbuf, sizes[i], w);
			if (el >= WARMUP_S || w >= MAX_ITERS)
				break;
		}
		if (n <= 0) {
			n = (long)(time_ms * 1e-3 / (el / (double)w));
			n = n < 2 ? 2 : n > MAX_ITERS ? MAX_ITERS : n;
		}
		el = batch(fd, sbuf, rbuf, sizes[i], n);
		el = el / (2.0 * (double)n) * 1e6;
		printf("%13ld %12ld %12.2f %12.2f\n", sizes[i], n, el,
		       (double)sizes[i] / el);
		fflush(stdout);
	}
	{
		struct batch end = { 0, 0 };

		send_all(fd, (const char *)&end, sizeof(end));
	}
	close(fd);
	waitpid(child, NULL, 0);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-s BYTES]... [-iters N] [-time MS] "
		"[-cpu A,B|none]\n", argv[0]);
	return 2;
}
