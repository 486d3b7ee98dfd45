// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * pingpong.c - PingPong between ranks 0 and 1, plain MPI (builds with mpicc).
 *
 * An unmodified MPI program: nothing in here knows about Ninja.  Ranks other
 * than 0 and 1 only wait in the final barrier, sleeping between polls so
 * that on an oversubscribed machine they leave the cores to ranks 0 and 1.
 *
 *   sweep (default)   pingpong [-min BYTES] [-max BYTES] [-iters N] [-time MS]
 *                              [-json FILE] [-no-check]
 *       Sizes 0, 1, 2, 4, ... up to -max (default 16 MiB).  Per size: a
 *       calibration warm-up (doubling batches until one takes >= 20 ms), then
 *       N timed round trips, N chosen so the size takes about -time ms
 *       (default 250) unless -iters is given.  Table columns as IMB-MPI1's:
 *       bytes, repetitions, t[usec] (half round trip), Mbytes/sec (10^6 bytes),
 *       then check[usec]: the per-message time spent filling/verifying the
 *       payload, which is measured around those loops and NOT included in
 *       t[usec] (so numbers compare with IMB, which never touches its data).
 *
 *   timeline          pingpong -t SECONDS [-s SIZE] [-interval MS] [-csv FILE]
 *       Back-to-back round trips of SIZE bytes (default 1 MiB) for a wall
 *       time; one line per interval (default 100 ms): elapsed s, messages
 *       completed (2 per round trip), MB/s (size * messages / interval),
 *       and the longest gap between two
 *       consecutive round-trip completions (a round trip still outstanding
 *       at the end of the interval counts with its stall so far).  Rank 0
 *       polls (MPI_Test) so lines keep coming while traffic is stalled, e.g.
 *       during a migration.  The CSV has a fifth column, real_s: the
 *       interval's end in CLOCK_REALTIME seconds (to line up with outside
 *       events).  Here the payload fill/verify time is part of the
 *       measured time (-no-check for raw numbers).
 *
 * Every payload carries a pattern derived from (iteration, size); the
 * receiver verifies every byte.  The run ends with
 *   "pingpong: bad_payloads=N result=PASS|FAIL"
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

#define TAG_DATA	1
#define TAG_CTRL	2

#define DEF_MAX		(16u << 20)
#define DEF_TIME_MS	250
#define WARMUP_MS	20
#define MAX_ITERS	1000000L

enum ctrl_cmd { CMD_STOP, CMD_SET, CMD_REPORT };

/* Rank 0 -> rank 1 control message (TAG_CTRL); rank 1 answers REPORT. */
struct ctrl {
	int64_t cmd;
	int64_t size;		/* payload size of the DATA messages that follow */
	int64_t iter;		/* iteration number of the next DATA message */
};

struct report {
	double check_s;		/* rank 1: time in verify since the last SET */
	int64_t bad;		/* rank 1: bad payloads since the last SET */
};

struct opts {
	long min, max, iters, time_ms;
	double tl_seconds;
	long tl_size, interval_ms;
	const char *json, *csv;
	int check;
};

static struct opts o = {
	.min = 0, .max = DEF_MAX, .iters = 0, .time_ms = DEF_TIME_MS,
	.tl_seconds = 0, .tl_size = 1L << 20, .interval_ms = 100, .check = 1,
};

static int64_t bad_local;	/* bad payloads seen by this rank */

static uint64_t pat_seed(int64_t iter, int64_t size)
{
	return mix64((uint64_t)iter * PAT_MUL ^ mix64((uint64_t)size + 1));
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-min BYTES] [-max BYTES] [-iters N] [-time MS] [-json FILE] [-no-check]\n"
		"       %s -t SECONDS [-s SIZE (default 1M)] [-interval MS] [-csv FILE] [-no-check]\n"
		"BYTES/SIZE accept k, K, m, M (binary) suffixes.\n",
		prog, prog);
}

static int parse_size(const char *s, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || v < 0)
		return -1;
	if (*end == 'k' || *end == 'K') {
		v <<= 10;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		v <<= 20;
		end++;
	}
	if (*end || v > INT_MAX)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = 0;

		if (!strcmp(a, "-no-check")) {
			o.check = 0;
			continue;
		}
		if (!v)
			return -1;
		if (!strcmp(a, "-min"))
			rc = parse_size(v, &o.min);
		else if (!strcmp(a, "-max"))
			rc = parse_size(v, &o.max);
		else if (!strcmp(a, "-s"))
			rc = parse_size(v, &o.tl_size);
		else if (!strcmp(a, "-iters"))
			rc = parse_size(v, &o.iters);
		else if (!strcmp(a, "-time"))
			rc = parse_size(v, &o.time_ms);
		else if (!strcmp(a, "-interval"))
			rc = parse_size(v, &o.interval_ms);
		else if (!strcmp(a, "-t"))
			rc = (o.tl_seconds = atof(v)) > 0 ? 0 : -1;
		else if (!strcmp(a, "-json"))
			o.json = v;
		else if (!strcmp(a, "-csv"))
			o.csv = v;
		else
			return -1;
		if (rc)
			return -1;
		i++;
	}
	if (o.min > o.max || o.interval_ms < 1 || o.time_ms < 1)
		return -1;
	return 0;
}

static void send_ctrl(int64_t cmd, int64_t size, int64_t iter)
{
	struct ctrl c = { .cmd = cmd, .size = size, .iter = iter };

	MPI_Send(&c, sizeof(c), MPI_BYTE, 1, TAG_CTRL, MPI_COMM_WORLD);
}

/*
 * Rank 1: echo DATA messages back, verifying each; obey CTRL messages.
 * Both arrive on the one (source 0, any tag) stream, so their order is MPI's
 * non-overtaking order.  A bad payload is re-filled before the echo so
 * rank 0 counts only damage done on the way back.
 */
static void echo_loop(char *buf, size_t bufsize)
{
	struct report rep = { 0, 0 };
	int64_t size = 0, iter = 0;
	MPI_Status st;
	int count;

	for (;;) {
		MPI_Recv(buf, (int)bufsize, MPI_BYTE, 0, MPI_ANY_TAG,
			 MPI_COMM_WORLD, &st);
		if (st.MPI_TAG == TAG_CTRL) {
			struct ctrl c;

			memcpy(&c, buf, sizeof(c));
			if (c.cmd == CMD_STOP)
				return;
			if (c.cmd == CMD_SET) {
				size = c.size;
				iter = c.iter;
				rep.check_s = 0;
				rep.bad = 0;
			} else if (c.cmd == CMD_REPORT) {
				MPI_Send(&rep, sizeof(rep), MPI_BYTE, 0,
					 TAG_CTRL, MPI_COMM_WORLD);
			}
			continue;
		}
		MPI_Get_count(&st, MPI_BYTE, &count);
		if (o.check) {
			double t0 = MPI_Wtime();
			uint64_t seed = pat_seed(iter, size);

			if (count != size || !pat_ok(buf, (size_t)size, seed, NULL)) {
				rep.bad++;
				bad_local++;
				pat_fill(buf, (size_t)size, seed);
			}
			rep.check_s += MPI_Wtime() - t0;
		}
		MPI_Send(buf, (int)size, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD);
		iter++;
	}
}

/* Rank 0: n round trips of size bytes; returns the time spent checking. */
static double run_batch(char *sbuf, char *rbuf, int64_t size, long n,
			int64_t *iter)
{
	double check = 0;
	long i;

	send_ctrl(CMD_SET, size, *iter);
	for (i = 0; i < n; i++, (*iter)++) {
		uint64_t seed = pat_seed(*iter, size);
		double t0;

		if (o.check) {
			t0 = MPI_Wtime();
			pat_fill(sbuf, (size_t)size, seed);
			check += MPI_Wtime() - t0;
		}
		MPI_Send(sbuf, (int)size, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD);
		MPI_Recv(rbuf, (int)size, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD,
			 MPI_STATUS_IGNORE);
		if (o.check) {
			t0 = MPI_Wtime();
			if (!pat_ok(rbuf, (size_t)size, seed, NULL))
				bad_local++;
			check += MPI_Wtime() - t0;
		}
	}
	return check;
}

struct result {
	int64_t bytes;
	long iters;
	double t_usec, mbps, check_usec;
};

static long next_size(long s)
{
	return s == 0 ? 1 : s * 2;
}

static int sweep(char *sbuf, char *rbuf)
{
	struct result *res;
	int nres = 0, cap = 64, i;
	int64_t iter = 0;
	long s;
	FILE *js;

	res = calloc((size_t)cap, sizeof(*res));
	if (!res)
		return -1;
	printf("# pingpong sweep: ranks 0<->1, t[usec] = half round trip, "
	       "MB = 10^6 bytes, check %s\n", o.check ? "on" : "off");
	printf("%13s %12s %12s %12s %12s\n", "#bytes", "#repetitions",
	       "t[usec]", "Mbytes/sec", "check[usec]");
	fflush(stdout);
	for (s = 0; s <= o.max && nres < cap; s = next_size(s)) {
		struct report rep;
		double t0, el, chk;
		long n = o.iters, w;

		if (s < o.min)
			continue;
		/*
		 * Warm up (first touch, connection set-up, rendezvous), then
		 * calibrate: doubling batches until one takes WARMUP_MS.
		 */
		run_batch(sbuf, rbuf, s, 2, &iter);
		for (w = 1;; w *= 2) {
			t0 = MPI_Wtime();
			run_batch(sbuf, rbuf, s, w, &iter);
			el = MPI_Wtime() - t0;
			if (el * 1e3 >= WARMUP_MS || w >= MAX_ITERS)
				break;
		}
		if (n <= 0) {
			double per = el / (double)w;

			n = (long)(o.time_ms * 1e-3 / (per > 0 ? per : 1e-9));
			if (n < 2)
				n = 2;
			if (n > MAX_ITERS)
				n = MAX_ITERS;
		}
		t0 = MPI_Wtime();
		chk = run_batch(sbuf, rbuf, s, n, &iter);
		el = MPI_Wtime() - t0;
		send_ctrl(CMD_REPORT, 0, 0);
		MPI_Recv(&rep, sizeof(rep), MPI_BYTE, 1, TAG_CTRL,
			 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		chk += rep.check_s;
		res[nres].bytes = s;
		res[nres].iters = n;
		res[nres].t_usec = (el - chk) / (2.0 * (double)n) * 1e6;
		res[nres].check_usec = chk / (2.0 * (double)n) * 1e6;
		res[nres].mbps = res[nres].t_usec > 0 ?
				 (double)s / res[nres].t_usec : 0;
		printf("%13" PRId64 " %12ld %12.2f %12.2f %12.2f\n",
		       res[nres].bytes, n, res[nres].t_usec, res[nres].mbps,
		       res[nres].check_usec);
		fflush(stdout);
		nres++;
	}
	send_ctrl(CMD_STOP, 0, 0);
	if (o.json) {
		js = fopen(o.json, "w");
		if (!js) {
			fprintf(stderr, "pingpong: %s: %s\n", o.json,
				strerror(errno));
			free(res);
			return -1;
		}
		fprintf(js, "{\"benchmark\":\"pingpong\",\"mode\":\"sweep\","
			"\"check\":%s,\"t_unit\":\"usec half round trip\","
			"\"mb\":1000000,\"results\":[", o.check ? "true" : "false");
		for (i = 0; i < nres; i++)
			fprintf(js, "%s{\"bytes\":%" PRId64 ",\"iters\":%ld,"
				"\"t_usec\":%.3f,\"mbps\":%.3f,"
				"\"check_usec\":%.3f}", i ? "," : "",
				res[i].bytes, res[i].iters, res[i].t_usec,
				res[i].mbps, res[i].check_usec);
		fprintf(js, "]}\n");
		fclose(js);
	}
	free(res);
	return 0;
}

struct tl_state {
	double start, next_tick, last_done, gap_max, all_gap_max, all_gap_at;
	double real0;		/* CLOCK_REALTIME at start, seconds */
	long msgs, all_msgs;
	FILE *csv;
};

static void tl_emit(struct tl_state *t, double tick_end, double dt,
		    double gap)
{
	double mbps = (double)t->msgs * (double)o.tl_size / dt / 1e6;

	printf("%9.3f %10ld %12.2f %12.3f\n", tick_end - t->start, t->msgs,
	       mbps, gap * 1e3);
	if (t->csv)
		fprintf(t->csv, "%.3f,%ld,%.3f,%.3f,%.3f\n",
			tick_end - t->start, t->msgs, mbps, gap * 1e3,
			t->real0 + (tick_end - t->start));
	fflush(stdout);
	t->msgs = 0;
	t->gap_max = 0;
}

/* Emit every interval that has ended by now. */
static void tl_ticks(struct tl_state *t, double now)
{
	double dt = o.interval_ms * 1e-3;

	while (now >= t->next_tick) {
		double gap = t->gap_max;

		/* A round trip still outstanding at the tick: its stall so far. */
		if (t->next_tick - t->last_done > gap)
			gap = t->next_tick - t->last_done;
		tl_emit(t, t->next_tick, dt, gap);
		t->next_tick += dt;
	}
}

static int timeline(char *sbuf, char *rbuf)
{
	struct tl_state t = { 0 };
	int64_t iter = 0, size = o.tl_size;
	double end;

	if (o.csv) {
		t.csv = fopen(o.csv, "w");
		if (!t.csv) {
			fprintf(stderr, "pingpong: %s: %s\n", o.csv,
				strerror(errno));
			return -1;
		}
		fprintf(t.csv, "t_s,msgs,mbps,max_gap_ms,real_s\n");
	}
	printf("# pingpong timeline: %ld bytes, %.1f s, interval %ld ms, "
	       "msgs = messages completed (2 per round trip)\n",
	       o.tl_size, o.tl_seconds, o.interval_ms);
	printf("%9s %10s %12s %12s\n", "#t_s", "msgs", "MB/s", "max_gap_ms");
	fflush(stdout);
	send_ctrl(CMD_SET, size, 0);
	t.start = MPI_Wtime();
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		t.real0 = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
	}
	t.next_tick = t.start + o.interval_ms * 1e-3;
	t.last_done = t.start;
	end = t.start + o.tl_seconds;
	for (;;) {
		MPI_Request rq[2];
		uint64_t seed = pat_seed(iter, size);
		double now = 0, gap;
		int done = 0;

		if (o.check)
			pat_fill(sbuf, (size_t)size, seed);
		MPI_Irecv(rbuf, (int)size, MPI_BYTE, 1, TAG_DATA,
			  MPI_COMM_WORLD, &rq[0]);
		MPI_Isend(sbuf, (int)size, MPI_BYTE, 1, TAG_DATA,
			  MPI_COMM_WORLD, &rq[1]);
		while (!done) {
			MPI_Testall(2, rq, &done, MPI_STATUSES_IGNORE);
			now = MPI_Wtime();
			if (!done && now >= t.next_tick)
				tl_ticks(&t, now);
		}
		if (o.check && !pat_ok(rbuf, (size_t)size, seed, NULL))
			bad_local++;
		iter++;
		gap = now - t.last_done;
		t.last_done = now;
		if (gap > t.gap_max)
			t.gap_max = gap;
		if (gap > t.all_gap_max) {
			t.all_gap_max = gap;
			t.all_gap_at = now - t.start;
		}
		tl_ticks(&t, now);
		t.msgs += 2;
		t.all_msgs += 2;
		if (now >= end)
			break;
	}
	send_ctrl(CMD_STOP, 0, 0);
	if (t.msgs)		/* the partial last interval */
		tl_emit(&t, t.last_done,
			t.last_done - (t.next_tick - o.interval_ms * 1e-3),
			t.gap_max);
	printf("# total: %ld messages in %.3f s, %.2f MB/s, "
	       "max gap %.3f ms at t=%.3f s\n", t.all_msgs,
	       t.last_done - t.start,
	       (double)t.all_msgs * (double)size / (t.last_done - t.start) / 1e6,
	       t.all_gap_max * 1e3, t.all_gap_at);
	if (t.csv)
		fclose(t.csv);
	return 0;
}

/* A barrier that polls every millisecond instead of spinning. */
static void idle_barrier(void)
{
	struct timespec ms = { 0, 1000000 };
	MPI_Request rq;
	int done = 0;

	MPI_Ibarrier(MPI_COMM_WORLD, &rq);
	for (;;) {
		MPI_Test(&rq, &done, MPI_STATUS_IGNORE);
		if (done)
			break;
		nanosleep(&ms, NULL);
	}
}

int main(int argc, char **argv)
{
	int rank, nprocs, rc = 0;
	long long bad_all = 0, bad = 0;
	size_t bufsize;
	char *sbuf = NULL, *rbuf = NULL;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
	if (parse_args(argc, argv)) {
		if (rank == 0)
			usage(argv[0]);
		MPI_Finalize();
		return 2;
	}
	if (nprocs < 2) {
		if (rank == 0)
			fprintf(stderr, "pingpong: needs at least 2 ranks\n");
		MPI_Finalize();
		return 2;
	}
	bufsize = (size_t)(o.tl_seconds > 0 ? o.tl_size : o.max);
	if (bufsize < sizeof(struct ctrl) + sizeof(struct report))
		bufsize = sizeof(struct ctrl) + sizeof(struct report);
	if (rank <= 1) {
		sbuf = aligned_alloc(64, (bufsize + 63) & ~(size_t)63);
		rbuf = aligned_alloc(64, (bufsize + 63) & ~(size_t)63);
		if (!sbuf || !rbuf) {
			fprintf(stderr, "pingpong: out of memory\n");
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
		/* Touch the pages now, not inside the first timed batch. */
		memset(sbuf, 0, bufsize);
		memset(rbuf, 0, bufsize);
	}
	if (rank == 0) {
		if (o.tl_seconds > 0)
			rc = timeline(sbuf, rbuf);
		else
			rc = sweep(sbuf, rbuf);
		if (rc)
			MPI_Abort(MPI_COMM_WORLD, 2);
	} else if (rank == 1) {
		echo_loop(rbuf, bufsize);
	}
	idle_barrier();
	bad = bad_local;
	MPI_Allreduce(&bad, &bad_all, 1, MPI_LONG_LONG, MPI_SUM,
		      MPI_COMM_WORLD);
	if (rank == 0) {
		printf("pingpong: bad_payloads=%lld result=%s\n", bad_all,
		       bad_all ? "FAIL" : "PASS");
		fflush(stdout);
	}
	free(sbuf);
	free(rbuf);
	MPI_Finalize();
	return bad_all ? 1 : 0;
}
