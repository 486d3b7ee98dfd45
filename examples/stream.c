// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * stream.c - one-way streaming bandwidth from rank 0 to rank 1, plain MPI
 * (builds with mpicc; nothing in here knows about Ninja).
 *
 *   stream [-sizes LIST] [-window W] [-window-bytes B] [-time MS]
 *
 * The method of OSU's osu_bw: per iteration rank 0 posts a window of w
 * MPI_Isend and rank 1 a window of w MPI_Irecv (each message its own
 * buffer), then rank 1 answers with a 4-byte ack once all w arrived.  So
 * many messages are in flight at once, like a raw verbs stream (perftest's
 * ib_write_bw / ib_send_bw), not one as in a ping-pong.
 *
 *   LIST  sizes, comma separated, k/K/m/M suffixes (binary); default
 *         1,4K,64K,1M,4M
 *   w     min(W, max(2, B / size)): W default 64, B default 16M (bounds the
 *         memory of a window at large sizes: 4 x 4 MiB)
 *   MS    time per size (default 200): a warm-up window, batches of 1, 2,
 *         4, ... windows until one takes MS / 10 (the calibration), then
 *         as many timed iterations (at least 2) as take about MS
 *
 * One line per size: bytes, window, iterations, MB/s (10^6 bytes/s over the
 * timed iterations, acks included), usec per window.
 *
 * Payloads: every message carries the pattern of examples/pattern.h for
 * (size, slot) and, in its first (up to) 8 bytes, a word of (size, slot,
 * iteration).  Rank 1 checks every message's length and that word on
 * arrival (so a message that did not arrive, or arrived twice, counts), and
 * every byte of every message of the last window of each size (after the
 * timing).  The run ends with
 *   "stream: bad_payloads=N result=PASS|FAIL"
 * and exits non-zero if any payload was wrong.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mpi.h>

#include "pattern.h"

#define TAG_CTRL	1
#define TAG_DATA	2
#define TAG_ACK		3

#define MAX_SIZES	32
#define MAX_ITERS	1000000L

/* Rank 0 -> rank 1 before each phase of a size; size < 0 ends the run. */
struct ctrl {
	int64_t size;
	int64_t window;
	int64_t iters;
	int64_t first;		/* iteration number of the phase's first window */
};

static struct {
	long sizes[MAX_SIZES];
	int nsizes;
	long window, window_bytes, time_ms;
} o = { .window = 64, .window_bytes = 16L << 20, .time_ms = 200 };

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-sizes LIST (default 1,4K,64K,1M,4M)] [-window W (64)]\n"
		"          [-window-bytes B (16M)] [-time MS (200)]\n"
		"sizes accept k, K, m, M (binary) suffixes.\n", prog);
}

static int parse_size(const char *s, char **endp, long *out)
{
	long v;

	errno = 0;
	v = strtol(s, endp, 10);
	if (errno || *endp == s || v < 0)
		return -1;
	if (**endp == 'k' || **endp == 'K') {
		v <<= 10;
		(*endp)++;
	} else if (**endp == 'm' || **endp == 'M') {
		v <<= 20;
		(*endp)++;
	}
	if (v > INT_MAX)
		return -1;
	*out = v;
	return 0;
}

static int parse_one(const char *s, long *out)
{
	char *end;

	return parse_size(s, &end, out) || *end ? -1 : 0;
}

static int parse_list(const char *s)
{
	char *end;

	o.nsizes = 0;
	for (;;) {
		if (o.nsizes == MAX_SIZES ||
		    parse_size(s, &end, &o.sizes[o.nsizes]))
			return -1;
		o.nsizes++;
		if (!*end)
			return 0;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}

static int parse_args(int argc, char **argv)
{
	int i, rc;

	if (parse_list("1,4K,64K,1M,4M"))
		return -1;
	for (i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];

		if (!strcmp(a, "-sizes"))
			rc = parse_list(v);
		else if (!strcmp(a, "-window"))
			rc = parse_one(v, &o.window);
		else if (!strcmp(a, "-window-bytes"))
			rc = parse_one(v, &o.window_bytes);
		else if (!strcmp(a, "-time"))
			rc = parse_one(v, &o.time_ms);
		else
			rc = -1;
		if (rc)
			return -1;
	}
	if (i != argc || o.window < 1 || o.window > 4096 || o.time_ms < 1)
		return -1;
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long window_of(long size)
{
	long w = size > 0 ? o.window_bytes / size : o.window;

	if (w < 2)
		w = 2;
	return w < o.window ? w : o.window;
}

static uint64_t slot_seed(int64_t size, int64_t slot)
{
	return mix64(mix64((uint64_t)size + 1) ^ (uint64_t)slot * PAT_MUL);
}

static uint64_t head_word(int64_t size, int64_t slot, int64_t iter)
{
	return mix64(slot_seed(size, slot) ^ mix64((uint64_t)iter + 7));
}

/* The message of (size, slot, iter): the pattern, then the head word. */
static void fill_body(char *buf, int64_t size, int64_t slot)
{
	pat_fill(buf, (size_t)size, slot_seed(size, slot));
}

static void set_head(char *buf, int64_t size, int64_t slot, int64_t iter)
{
	uint64_t h = head_word(size, slot, iter);

	memcpy(buf, &h, size < 8 ? (size_t)size : 8);
}

static int head_ok(const char *buf, int64_t size, int64_t slot, int64_t iter)
{
	uint64_t h = head_word(size, slot, iter), got = 0;

	memcpy(&got, buf, size < 8 ? (size_t)size : 8);
	if (size < 8)
		h &= (UINT64_C(1) << (8 * size)) - 1;
	return got == h;
}

/* Every byte: the head word, then the rest of the slot's pattern. */
static int body_ok(const char *buf, int64_t size, int64_t slot, int64_t iter)
{
	if (!head_ok(buf, size, slot, iter))
		return 0;
	if (size <= 8)
		return 1;
	return pat_ok(buf + 8, (size_t)size - 8, slot_seed(size, slot) + PAT_MUL,
		      NULL);
}

/* Rank 0: one phase of ITERS windows from iteration FIRST; seconds. */
static double send_phase(char **bufs, MPI_Request *req, int64_t size,
			 long w, long iters, long first)
{
	struct ctrl c = { size, w, iters, first };
	double t0;
	int ack;
	long it, k;

	MPI_Send(&c, sizeof(c), MPI_BYTE, 1, TAG_CTRL, MPI_COMM_WORLD);
	t0 = now();
	for (it = first; it < first + iters; it++) {
		for (k = 0; k < w; k++) {
			set_head(bufs[k], size, k, it);
			MPI_Isend(bufs[k], (int)size, MPI_BYTE, 1, TAG_DATA,
				  MPI_COMM_WORLD, &req[k]);
		}
		MPI_Waitall((int)w, req, MPI_STATUSES_IGNORE);
		MPI_Recv(&ack, 1, MPI_INT, 1, TAG_ACK, MPI_COMM_WORLD,
			 MPI_STATUS_IGNORE);
	}
	return now() - t0;
}

/* Both ranks parse the same options: rank 1's buffers fit what is listed. */
static int size_listed(int64_t size)
{
	int s;

	for (s = 0; s < o.nsizes; s++)
		if (o.sizes[s] == size)
			return 1;
	return 0;
}

/* Rank 1: receive phases until size < 0; returns the bad payloads seen. */
static int64_t recv_loop(char **bufs, MPI_Request *req, MPI_Status *st)
{
	int64_t bad = 0;
	struct ctrl c;
	int ack = 0, count;
	long it, k;

	for (;;) {
		MPI_Recv(&c, sizeof(c), MPI_BYTE, 0, TAG_CTRL, MPI_COMM_WORLD,
			 MPI_STATUS_IGNORE);
		if (c.size < 0)
			return bad;
		if (!size_listed(c.size) || c.window != window_of(c.size) ||
		    c.iters < 1 || c.iters > MAX_ITERS || c.first < 0) {
			fprintf(stderr, "stream: bad control message\n");
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
		for (it = c.first; it < c.first + c.iters; it++) {
			for (k = 0; k < c.window; k++)
				MPI_Irecv(bufs[k], (int)c.size, MPI_BYTE, 0,
					  TAG_DATA, MPI_COMM_WORLD, &req[k]);
			MPI_Waitall((int)c.window, req, st);
			for (k = 0; k < c.window; k++) {
				MPI_Get_count(&st[k], MPI_BYTE, &count);
				if (count != c.size ||
				    !head_ok(bufs[k], c.size, k, it))
					bad++;
				else if (it == c.first + c.iters - 1 &&
					 !body_ok(bufs[k], c.size, k, it))
					bad++;
			}
			MPI_Send(&ack, 1, MPI_INT, 0, TAG_ACK, MPI_COMM_WORLD);
		}
	}
}

static void sweep(char **bufs, MPI_Request *req)
{
	long s, w, k, iters, it = 0;
	double t;

	printf("# stream: bytes window iterations MB/s usec/window\n");
	for (s = 0; s < o.nsizes; s++) {
		int64_t size = o.sizes[s];

		w = window_of(size);
		for (k = 0; k < w; k++)
			fill_body(bufs[k], size, k);
		/* warm-up (connections, registrations), then batches doubling
		 * until one takes a tenth of the time: the window's time */
		send_phase(bufs, req, size, w, 1, it++);
		for (iters = 1;; iters *= 2) {
			t = send_phase(bufs, req, size, w, iters, it);
			it += iters;
			if (t >= o.time_ms * 1e-4 || iters >= MAX_ITERS / 2)
				break;
		}
		t /= iters;
		iters = t > 0 ? (long)(o.time_ms * 1e-3 / t) : MAX_ITERS;
		if (iters < 2)
			iters = 2;
		if (iters > MAX_ITERS)
			iters = MAX_ITERS;
		t = send_phase(bufs, req, size, w, iters, it);
		it += iters;
		printf("%10" PRId64 " %6ld %8ld %14.6f %14.1f\n", size, w, iters,
		       t > 0 ? (double)size * w * iters / t / 1e6 : 0.0,
		       t / iters * 1e6);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	struct ctrl stop = { -1, 0, 0, 0 };
	long maxsize = 0, maxw = 0, k, s;
	int64_t bad = 0, bad_all = 0;
	int rank, nranks;
	MPI_Request *req;
	MPI_Status *st;
	char **bufs;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (parse_args(argc, argv) || nranks < 2) {
		if (rank == 0) {
			usage(argv[0]);
			if (nranks < 2)
				fprintf(stderr, "stream: needs 2 ranks\n");
		}
		MPI_Finalize();
		return 2;
	}
	/* The largest window's memory: each buffer as large as the largest size. */
	for (s = 0; s < o.nsizes; s++) {
		if (o.sizes[s] > maxsize)
			maxsize = o.sizes[s];
		if (window_of(o.sizes[s]) > maxw)
			maxw = window_of(o.sizes[s]);
	}
	bufs = calloc((size_t)maxw, sizeof(*bufs));
	req = calloc((size_t)maxw, sizeof(*req));
	st = calloc((size_t)maxw, sizeof(*st));
	if (!bufs || !req || !st) {
		fprintf(stderr, "stream: out of memory\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	for (k = 0; k < maxw; k++) {
		/* per slot: the largest size whose window reaches this slot */
		long need = 8;

		for (s = 0; s < o.nsizes; s++)
			if (window_of(o.sizes[s]) > k && o.sizes[s] > need)
				need = o.sizes[s];
		if (posix_memalign((void **)&bufs[k], 64, (size_t)need)) {
			fprintf(stderr, "stream: out of memory\n");
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
		memset(bufs[k], 0, (size_t)need);
	}
	if (rank == 0) {
		sweep(bufs, req);
		MPI_Send(&stop, sizeof(stop), MPI_BYTE, 1, TAG_CTRL,
			 MPI_COMM_WORLD);
	} else if (rank == 1) {
		bad = recv_loop(bufs, req, st);
	}
	MPI_Reduce(&bad, &bad_all, 1, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
	if (rank == 0)
		printf("stream: bad_payloads=%" PRId64 " result=%s\n", bad_all,
		       bad_all ? "FAIL" : "PASS");
	for (k = 0; k < maxw; k++)
		free(bufs[k]);
	free(bufs);
	free(req);
	free(st);
	MPI_Finalize();
	return bad_all ? 1 : 0;
}
