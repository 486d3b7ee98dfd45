/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * attacker - a hostile peer of btl/ninja's listener, for tests/hostile.
 * Every mode talks to 127.0.0.1:PORT (a rank's listening port), does one
 * thing a process without the job's secrets could do, and checks how the
 * rank reacts: the right reaction to anything unauthenticated is to close
 * the connection without a byte of answer (except the CHALLENGE to a
 * well-formed HELLO, which names nobody).  Prints one line, exit 0 when
 * the rank reacted as it must, 1 when not, 2 on bad usage.
 *
 *   attacker random PORT              64 KiB of random bytes
 *   attacker truncated PORT           half a HELLO, then silence
 *   attacker auth PORT MODE [JOB VPID PJOB PVPID]
 *                                     HELLO, CHALLENGE, then a forged AUTH:
 *                                     MODE wrongjob | wrongrank | nosecret
 *                                     (ids of a real AUTH, e.g. from sniff)
 *   attacker replay PORT HEX          HELLO, CHALLENGE, then a real AUTH
 *                                     captured earlier (224 hex digits)
 *   attacker frames PORT [JOB VPID PJOB PVPID]
 *                                     a put to 0x10 and a get of 0x400000
 *                                     after a failed handshake (an AUTH
 *                                     with these ids, without the secret),
 *                                     and as the first bytes of a connection
 *   attacker marker PORT              a drain marker for epoch 2^32-1, first
 *                                     and after a HELLO
 *   attacker bigframe PORT            a frame header of length 0xfffffff0,
 *                                     first and after a HELLO, then data
 *   attacker idle N SECONDS PORT...   N idle connections to each port, held
 *                                     SECONDS; prints how many the ranks
 *                                     closed (they must close them all)
 *   attacker sniff SECONDS            AUTH messages seen on lo (AF_PACKET,
 *                                     root): "PORT HEX" per line
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "btl_ninja_hdr.h"

static const char *mode_name = "?";

static void rnd(void *p, size_t n)
{
	if (getrandom(p, n, 0) != (ssize_t)n)
		memset(p, 0x5a, n);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int verdict(bool ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int verdict(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s %s: ", ok ? "ok" : "FAIL", mode_name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return ok ? 0 : 1;
}

static int dial(int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Send what fits; a rank that closed first makes this fail: fine. */
static void put(int fd, const void *p, size_t n)
{
	(void)send(fd, p, n, MSG_NOSIGNAL);
}

/* Read exactly n bytes within secs; returns bytes read. */
static size_t get(int fd, void *p, size_t n, double secs)
{
	double end = now_s() + secs;
	size_t got = 0;

	while (got < n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		double left = end - now_s();
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			break;
		r = recv(fd, (char *)p + got, n - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/*
 * The rank must close within secs without sending anything.  Returns
 * 0 closed silently, 1 answered (*answered bytes), 2 still open.
 */
static int expect_close(int fd, double secs, size_t *answered)
{
	double end = now_s() + secs;
	char buf[4096];

	*answered = 0;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		double left = end - now_s();
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			return 2;
		r = recv(fd, buf, sizeof(buf), 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return *answered ? 1 : 0;
		if (r < 0)
			return 2;
		*answered += (size_t)r;
	}
}

static int closed_verdict(int fd, double secs, const char *what)
{
	size_t ans;
	double t0 = now_s();
	int rc = expect_close(fd, secs, &ans);

	close(fd);
	if (rc == 0)
		return verdict(true, "%s: closed after %.2f s, nothing answered",
			       what, now_s() - t0);
	if (rc == 1)
		return verdict(false, "%s: the rank answered %zu bytes", what, ans);
	return verdict(false, "%s: still open after %.1f s", what, secs);
}

static void hello(ninja_hs_hello_t *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = NINJA_WIRE_MAGIC;
	h->version = NINJA_WIRE_VERSION;
	h->type = NINJA_HS_HELLO;
	rnd(h->nonce, sizeof(h->nonce));
}

/*
 * Connect, HELLO, and read the CHALLENGE: it must be exactly that (magic,
 * version, type, a nonce) and say nothing about who answers.  -1: failed
 * (verdict printed).
 */
static int challenged(int port, ninja_hs_hello_t *ch)
{
	ninja_hs_hello_t h;
	int fd = dial(port);

	if (fd < 0) {
		verdict(false, "cannot connect to port %d: %s", port, strerror(errno));
		return -1;
	}
	hello(&h);
	put(fd, &h, sizeof(h));
	if (get(fd, ch, sizeof(*ch), 3.0) != sizeof(*ch) ||
	    ch->magic != NINJA_WIRE_MAGIC || ch->version != NINJA_WIRE_VERSION ||
	    ch->type != NINJA_HS_CHALLENGE) {
		verdict(false, "no CHALLENGE to a well-formed HELLO");
		close(fd);
		return -1;
	}
	return fd;
}

static int mode_random(int port)
{
	static unsigned char junk[65536];
	int fd = dial(port);

	if (fd < 0)
		return verdict(false, "cannot connect: %s", strerror(errno));
	rnd(junk, sizeof(junk));
	put(fd, junk, sizeof(junk));
	return closed_verdict(fd, 5.0, "64 KiB of random bytes");
}

static int mode_truncated(int port)
{
	ninja_hs_hello_t h;
	int fd = dial(port);

	if (fd < 0)
		return verdict(false, "cannot connect: %s", strerror(errno));
	hello(&h);
	put(fd, &h, sizeof(h) / 2);
	/* The unauthenticated deadline is 2 s (+ up to 1 s of polling). */
	return closed_verdict(fd, 6.0, "half a HELLO");
}

static int mode_auth(int port, const char *how, char **ids)
{
	ninja_hs_hello_t ch;
	ninja_hs_auth_t a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.magic = NINJA_WIRE_MAGIC;
	a.version = NINJA_WIRE_VERSION;
	a.type = NINJA_HS_AUTH;
	rnd(&a.jobid, 8);
	if (ids) {
		a.jobid = (uint32_t)strtoul(ids[0], NULL, 0);
		a.vpid = (uint32_t)strtoul(ids[1], NULL, 0);
		a.peer_jobid = (uint32_t)strtoul(ids[2], NULL, 0);
		a.peer_vpid = (uint32_t)strtoul(ids[3], NULL, 0);
	}
	if (!strcmp(how, "wrongjob")) {
		a.jobid ^= 0x5a5a0000;
	} else if (!strcmp(how, "wrongrank")) {
		a.vpid = 1000000;
	} else if (strcmp(how, "nosecret")) {
		fprintf(stderr, "attacker: unknown auth mode %s\n", how);
		return 2;
	}
	a.max_frame = 0xfffffff0u;
	rnd(a.mac, sizeof(a.mac));
	fd = challenged(port, &ch);
	if (fd < 0)
		return 1;
	put(fd, &a, sizeof(a));
	return closed_verdict(fd, 5.0, "forged AUTH");
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
	size_t i;

	if (strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return 0;
}

static int mode_replay(int port, const char *hex)
{
	ninja_hs_hello_t ch;
	ninja_hs_auth_t a;
	int fd;

	if (unhex(hex, (unsigned char *)&a, sizeof(a)) != 0 ||
	    a.type != NINJA_HS_AUTH) {
		fprintf(stderr, "attacker: not a captured AUTH\n");
		return 2;
	}
	fd = challenged(port, &ch);
	if (fd < 0)
		return 1;
	put(fd, &a, sizeof(a));
	return closed_verdict(fd, 5.0, "a real AUTH replayed against a new nonce");
}

/* DATA frames: a put to 0x10 and a get of 1 MiB at 0x400000. */
static size_t rdma_frames(unsigned char *buf)
{
	ninja_frame_hdr_t h;
	ninja_put_hdr_t ph = { .addr = 0x10, .id = 0 };
	ninja_get_req_t g = { .src = 0x400000, .dst = 0x10, .len = 1 << 20,
			      .id = 1 };
	uint64_t data = 0x4141414141414141ull;
	size_t off = 0;

	memset(&h, 0, sizeof(h));
	h.type = NINJA_FRAME_DATA;
	h.tag = NINJA_TAG_PUT;
	h.len = sizeof(ph) + sizeof(data);
	memcpy(buf + off, &h, sizeof(h)); off += sizeof(h);
	memcpy(buf + off, &ph, sizeof(ph)); off += sizeof(ph);
	memcpy(buf + off, &data, sizeof(data)); off += sizeof(data);
	h.tag = NINJA_TAG_GET;
	h.len = sizeof(g);
	h.seq = 1;
	memcpy(buf + off, &h, sizeof(h)); off += sizeof(h);
	memcpy(buf + off, &g, sizeof(g)); off += sizeof(g);
	return off;
}

static int mode_frames(int port, char **ids)
{
	unsigned char buf[256];
	size_t n = rdma_frames(buf);
	ninja_hs_hello_t ch;
	ninja_hs_auth_t a;
	int fd, bad = 0;

	/* After a failed AUTH: the frames go out right behind it. */
	fd = challenged(port, &ch);
	if (fd < 0)
		return 1;
	memset(&a, 0, sizeof(a));
	a.magic = NINJA_WIRE_MAGIC;
	a.version = NINJA_WIRE_VERSION;
	a.type = NINJA_HS_AUTH;
	if (ids) {
		a.jobid = (uint32_t)strtoul(ids[0], NULL, 0);
		a.vpid = (uint32_t)strtoul(ids[1], NULL, 0);
		a.peer_jobid = (uint32_t)strtoul(ids[2], NULL, 0);
		a.peer_vpid = (uint32_t)strtoul(ids[3], NULL, 0);
	}
	rnd(a.mac, sizeof(a.mac));
	put(fd, &a, sizeof(a));
	put(fd, buf, n);
	bad |= closed_verdict(fd, 5.0, "put and get after a failed AUTH");
	/* As the very first bytes. */
	fd = dial(port);
	if (fd < 0)
		return verdict(false, "cannot connect: %s", strerror(errno));
	put(fd, buf, n);
	bad |= closed_verdict(fd, 5.0, "put and get without a handshake");
	return bad;
}

static void frame(ninja_frame_hdr_t *h, int type, uint32_t len,
		  uint32_t epoch)
{
	memset(h, 0, sizeof(*h));
	h->type = (uint8_t)type;
	h->len = len;
	h->epoch = epoch;
}

static int mode_marker(int port)
{
	ninja_frame_hdr_t m;
	ninja_hs_hello_t ch;
	int fd, bad = 0;

	frame(&m, NINJA_FRAME_MARKER, 0, 0xffffffffu);
	fd = dial(port);
	if (fd < 0)
		return verdict(false, "cannot connect: %s", strerror(errno));
	/* A marker is 16 bytes; a HELLO is 40: pad with more markers. */
	for (int i = 0; i < 4; i++)
		put(fd, &m, sizeof(m));
	bad |= closed_verdict(fd, 5.0, "drain marker as the first bytes");
	fd = challenged(port, &ch);
	if (fd < 0)
		return 1;
	for (int i = 0; i < 8; i++)
		put(fd, &m, sizeof(m));
	bad |= closed_verdict(fd, 5.0, "drain marker after a HELLO");
	return bad;
}

static int mode_bigframe(int port)
{
	static unsigned char zeros[1 << 20];
	ninja_frame_hdr_t h;
	ninja_hs_hello_t ch;
	int fd, bad = 0;

	frame(&h, NINJA_FRAME_DATA, 0xfffffff0u, 0);
	h.tag = 65;
	fd = dial(port);
	if (fd < 0)
		return verdict(false, "cannot connect: %s", strerror(errno));
	put(fd, &h, sizeof(h));
	put(fd, zeros, sizeof(zeros));
	bad |= closed_verdict(fd, 5.0, "4 GiB frame as the first bytes");
	fd = challenged(port, &ch);
	if (fd < 0)
		return 1;
	put(fd, &h, sizeof(h));
	put(fd, zeros, sizeof(zeros));
	bad |= closed_verdict(fd, 5.0, "4 GiB frame after a HELLO");
	return bad;
}

static int mode_idle(int n, double secs, int nports, char **ports)
{
	int total = n * nports, *fds = calloc((size_t)total, sizeof(int));
	int opened = 0, closed = 0, i;
	struct rlimit rl;
	double end;

	if (!fds)
		return 2;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)total + 64) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (i = 0; i < total; i++) {
		fds[i] = dial(atoi(ports[i % nports]));
		if (fds[i] >= 0)
			opened++;
	}
	end = now_s() + secs;
	while (now_s() < end)
		usleep(100000);
	for (i = 0; i < total; i++) {
		char b;

		if (fds[i] < 0)
			continue;
		if (recv(fds[i], &b, 1, MSG_DONTWAIT) == 0 ||
		    errno == ECONNRESET)
			closed++;
		close(fds[i]);
	}
	free(fds);
	return verdict(opened == total && closed == opened,
		       "%d idle connections opened, %d closed by the ranks within %.0f s",
		       opened, closed, secs);
}

/*
 * Watch lo for AUTH messages (payload of exactly one ninja_hs_auth_t) for
 * secs seconds; print "DPORT HEX" for each.  Root only (AF_PACKET).
 */
static int mode_sniff(double secs)
{
	int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP)), found = 0;
	struct sockaddr_ll sll;
	double end = now_s() + secs;

	if (fd < 0)
		return verdict(false, "AF_PACKET: %s", strerror(errno));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_IP);
	sll.sll_ifindex = (int)if_nametoindex("lo");
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) != 0)
		return verdict(false, "bind lo: %s", strerror(errno));
	while (now_s() < end) {
		unsigned char pkt[65536];
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		const struct iphdr *ip;
		const struct tcphdr *tcp;
		ninja_hs_auth_t a;
		size_t ihl, off;
		ssize_t r;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		r = recvfrom(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&from, &fl);
		if (r < (ssize_t)sizeof(*ip) || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		ip = (const struct iphdr *)pkt;
		ihl = ip->ihl * 4u;
		if (ip->protocol != IPPROTO_TCP || (size_t)r < ihl + sizeof(*tcp))
			continue;
		tcp = (const struct tcphdr *)(pkt + ihl);
		off = ihl + tcp->doff * 4u;
		if ((size_t)r != off + sizeof(a) || ntohs(ip->tot_len) != r)
			continue;
		memcpy(&a, pkt + off, sizeof(a));
		if (a.magic != NINJA_WIRE_MAGIC || a.type != NINJA_HS_AUTH)
			continue;
		printf("%u ", ntohs(tcp->dest));
		for (size_t i = 0; i < sizeof(a); i++)
			printf("%02x", ((unsigned char *)&a)[i]);
		printf(" %u %u %u %u\n", a.jobid, a.vpid, a.peer_jobid, a.peer_vpid);
		fflush(stdout);
		found++;
	}
	close(fd);
	return found ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		goto usage;
	mode_name = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "random"))
		return mode_random(atoi(argv[2]));
	if (!strcmp(argv[1], "truncated"))
		return mode_truncated(atoi(argv[2]));
	if (!strcmp(argv[1], "auth") && (argc == 4 || argc == 8))
		return mode_auth(atoi(argv[2]), argv[3], argc == 8 ? argv + 4 : NULL);
	if (!strcmp(argv[1], "replay") && argc == 4)
		return mode_replay(atoi(argv[2]), argv[3]);
	if (!strcmp(argv[1], "frames") && (argc == 3 || argc == 7))
		return mode_frames(atoi(argv[2]), argc == 7 ? argv + 3 : NULL);
	if (!strcmp(argv[1], "marker"))
		return mode_marker(atoi(argv[2]));
	if (!strcmp(argv[1], "bigframe"))
		return mode_bigframe(atoi(argv[2]));
	if (!strcmp(argv[1], "idle") && argc >= 5)
		return mode_idle(atoi(argv[2]), atof(argv[3]), argc - 4, argv + 4);
	if (!strcmp(argv[1], "sniff"))
		return mode_sniff(atof(argv[2]));
usage:
	fprintf(stderr, "usage: attacker MODE ARGS... (see the source's header)\n");
	return 2;
}
