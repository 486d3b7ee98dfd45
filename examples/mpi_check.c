// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * mpi_check.c - checksummed MPI traffic whose totals are exactly predictable:
 * the correctness workload for drain/reconnect and migration tests.
 *
 * An unmodified MPI program (plain MPI, builds with mpicc; nothing here knows
 * about Ninja).  Needs at least 2 ranks.  Each iteration k runs, in order:
 *
 *   p2p   every rank exchanges a burst of B messages (-burst, default 4) with
 *         each distinct neighbour (rank-1 and rank+1 mod N; one neighbour when
 *         N == 2), all in flight at once.  Per (src, dst) pair the messages
 *         carry sequence numbers 0, 1, 2, ...: in the tag (seq mod 32768) and,
 *         from 32 bytes up, in a header.  Message seq has size
 *         sizes[seq % nsizes], so a burst mixes eager and rendezvous sizes.
 *         The receiver checks the order (loss, duplication, reordering) and
 *         every payload byte.
 *   ring  a token of sizes[k % nsizes] bytes starts at rank k % N and goes
 *         once around the ring (rank r sends to r+1).  Its first min(size, 8)
 *         bytes hold a checksum that every hop verifies and then folds the
 *         body it received into; the body is a verified pattern.
 *   a2a   MPI_Alltoall with blocks of b = min(sizes[k % nsizes], -a2a-max)
 *         bytes, each block checksummed for its (src, dst, k).
 *   a2av  MPI_Alltoallv; block i->j has b >> ((i + 2j + k) % 4) bytes.
 *   then, on the compute rank(s), a pure compute loop of -compute-ms ms that
 *   makes no MPI call (a rank that stays out of MPI during a drain).
 *
 * sizes = 0, 1, 8, 1 KiB, 64 KiB, 1 MiB, 8 MiB, those <= -max (default 8 MiB).
 *
 * Counting (what the expected_* totals assume): a message is one p2p send,
 * one ring hop, or one alltoall(v) block to ANOTHER rank (the block a rank
 * sends itself is verified, not counted).  Per rank and iteration:
 *   msgs_sent = msgs_recv = nn*B [p2p] + 1 [ring] + (N-1) [a2a] + (N-1) [a2av]
 * with nn = 1 if N == 2 else 2.  All ranks' totals: N * iters * that.
 * Byte totals count payload bytes of the same messages; expected_bytes_* are
 * computed from the same formulas (see expect()).  In -seconds mode rank 0
 * decides when to stop (an extra MPI_Allreduce per iteration, not counted)
 * and the expected totals are those of the iteration count actually run.
 * -stop-file PATH does the same when PATH appears on rank 0's node (a test
 * harness ends a job of unknown length: -seconds is then the upper bound).
 *
 * Output (stdout, rank 0 prints every rank's line, in rank order):
 *   mpi_check: ranks=N ... expected_msgs=M        (parameters, first line)
 *   mpi_check progress ...                        (with -progress)
 *   mpi_check rank=R iters=I msgs_sent=S msgs_recv=S expected_msgs=E
 *     bytes_sent=B bytes_recv=B expected_bytes_sent=B expected_bytes_recv=B
 *     bad_checksum=0 bad_order=0 lost=0 dup=0 mpi_errors=0 result=PASS
 *   mpi_check: PASS (N ranks, M messages) expected_msgs=M iters=I ...
 * Details of the first errors go to stderr.  Exit 0 on PASS, 1 on FAIL,
 * 2 on bad usage, 3 when the -timeout watchdog fires (a stuck iteration).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <mpi.h>

#include "pattern.h"

#define HDR_MAGIC	0x4b434a4eu	/* "NJCK" */
#define TAG_MOD		32768		/* MPI guarantees MPI_TAG_UB >= 32767 */
#define MISS_MAX	1024		/* remembered gaps per neighbour */
#define ERR_PRINT_MAX	20		/* error details printed per rank */

enum phase { PH_P2P, PH_RING, PH_A2A, PH_A2AV, PH_COUNT };

static const char *const phase_name[PH_COUNT] = {
	[PH_P2P] = "p2p", [PH_RING] = "ring", [PH_A2A] = "a2a",
	[PH_A2AV] = "a2av",
};

/* Header of every payload of at least sizeof(struct hdr) bytes. */
struct hdr {
	uint32_t magic;
	uint32_t kind;		/* enum phase */
	uint32_t src, dst;
	uint64_t seq;		/* p2p: per-pair sequence; a2a(v): iteration */
	uint64_t size;		/* whole payload, header included */
};

#define HDR_LEN		((long)sizeof(struct hdr))

struct opts {
	long iters;
	double seconds;
	const char *stop_file;	/* rank 0 stops when it exists */
	long max, burst, a2a_max, compute_ms, progress, timeout;
	int compute_rank;	/* -1: every rank */
	unsigned phases;	/* bit per enum phase */
};

static struct opts o = {
	.iters = -1, .seconds = 0, .max = 8L << 20, .burst = 4,
	.a2a_max = 1L << 20, .compute_ms = 0, .progress = 0, .timeout = 120,
	.compute_rank = -1, .phases = (1u << PH_COUNT) - 1,
};

static const long size_cycle[] = {
	0, 1, 8, 1024, 64L << 10, 1L << 20, 8L << 20,
};
#define NCYCLE	((int)(sizeof(size_cycle) / sizeof(size_cycle[0])))

static long sizes[NCYCLE];
static int nsizes;

struct counters {
	int64_t iters;
	int64_t msgs_sent, msgs_recv, bytes_sent, bytes_recv;
	int64_t exp_msgs, exp_bytes_sent, exp_bytes_recv;
	int64_t bad_checksum, bad_order, lost, dup, mpi_errors;
};
#define NCOUNTERS	((int)(sizeof(struct counters) / sizeof(int64_t)))

static struct counters cnt;
static int rank, nprocs;
static MPI_Comm comm[PH_COUNT], comm_ctl;
static int nn;			/* distinct neighbours: 1 or 2 */
static int nbr[2];		/* left (rank-1), right (rank+1) */
static int errs_printed;

/* Receive-side order tracking of one (neighbour -> me) stream. */
struct order {
	uint64_t next;		/* next expected sequence number */
	uint64_t miss[MISS_MAX];	/* skipped numbers not seen yet */
	int nmiss;
};
static struct order ord[2];

/* For the watchdog (read in the SIGALRM handler). */
static volatile sig_atomic_t cur_phase = -1;
static volatile long cur_iter;

/* ---- patterns ---------------------------------------------------------- */

static uint64_t seed4(uint64_t kind, uint64_t a, uint64_t b, uint64_t c)
{
	return mix64(mix64(mix64(mix64(kind + 1) ^ a) ^ b) ^ c);
}

/* What pat_ok() reports as *sum for an intact buffer, in closed form. */
static uint64_t pat_sum(size_t len, uint64_t seed)
{
	uint64_t n = len / 8, s, tail = 0;

	/* sum of seed + i*M for i < n; n(n-1)/2 is exact for n < 2^32 */
	s = n * seed + PAT_MUL * (n * (n - (n > 0)) / 2);
	if (len % 8) {
		uint64_t last = seed + n * PAT_MUL;

		memcpy(&tail, &last, len % 8);
	}
	return s + tail;
}

/* Payload: a header (if it fits) and the pattern after it. */
static void payload_fill(char *buf, long size, enum phase kind, int src,
			 int dst, uint64_t seq, uint64_t seed)
{
	long off = 0;

	if (size >= HDR_LEN) {
		struct hdr h = {
			.magic = HDR_MAGIC, .kind = kind, .src = (uint32_t)src,
			.dst = (uint32_t)dst, .seq = seq, .size = (uint64_t)size,
		};

		memcpy(buf, &h, sizeof(h));
		off = HDR_LEN;
	}
	pat_fill(buf + off, (size_t)(size - off), seed);
}

/* 0: intact; 1: payload damaged; 2: intact but from another sequence. */
static int payload_check(const char *buf, long size, enum phase kind, int src,
			 int dst, uint64_t seq, uint64_t seed)
{
	long off = 0;

	if (size >= HDR_LEN) {
		struct hdr h;

		memcpy(&h, buf, sizeof(h));
		if (h.magic != HDR_MAGIC || h.kind != (uint32_t)kind ||
		    h.src != (uint32_t)src || h.dst != (uint32_t)dst ||
		    h.size != (uint64_t)size)
			return 1;
		if (h.seq != seq)
			return 2;
		off = HDR_LEN;
	}
	return pat_ok(buf + off, (size_t)(size - off), seed, NULL) ? 0 : 1;
}

/* ---- reporting ----------------------------------------------------------- */

static void err_detail(enum phase ph, long iter, int peer, const char *what,
		       long long want, long long got)
{
	if (errs_printed++ >= ERR_PRINT_MAX)
		return;
	if (want == got)	/* a damaged payload: just say which */
		fprintf(stderr, "mpi_check rank=%d ERROR phase=%s iter=%ld "
			"peer=%d %s %lld\n", rank, phase_name[ph], iter, peer,
			what, got);
	else
		fprintf(stderr, "mpi_check rank=%d ERROR phase=%s iter=%ld "
			"peer=%d %s expected=%lld got=%lld\n", rank,
			phase_name[ph], iter, peer, what, want, got);
}

static void mpi_err(enum phase ph, long iter, int peer, int code)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;

	cnt.mpi_errors++;
	MPI_Error_string(code, msg, &len);
	if (errs_printed++ < ERR_PRINT_MAX)
		fprintf(stderr, "mpi_check rank=%d ERROR phase=%s iter=%ld "
			"peer=%d mpi: %s\n", rank, phase_name[ph], iter, peer,
			msg);
}

static void timestamp(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03d", sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Async-signal-safe decimal formatting for the watchdog. */
static char *fmt_long(char *p, long v)
{
	char tmp[24];
	int n = 0;

	if (v < 0) {
		*p++ = '-';
		v = -v;
	}
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *fmt_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static void watchdog(int sig)
{
	char line[160], *p = line;
	ssize_t rc;

	(void)sig;
	p = fmt_str(p, "mpi_check rank=");
	p = fmt_long(p, rank);
	p = fmt_str(p, " TIMEOUT phase=");
	p = fmt_str(p, cur_phase >= 0 && cur_phase < PH_COUNT ?
		    phase_name[cur_phase] : "other");
	p = fmt_str(p, " iter=");
	p = fmt_long(p, cur_iter);
	p = fmt_str(p, " after ");
	p = fmt_long(p, o.timeout);
	p = fmt_str(p, " s without progress result=FAIL\n");
	rc = write(STDERR_FILENO, line, (size_t)(p - line));
	(void)rc;
	_exit(3);
}

/*
 * (Re)start the watchdog whenever an iteration begins.  Waiting for a peer
 * that computes is not being stuck, so its compute time is added; a rank's
 * own compute phase runs with the watchdog off.
 */
static void watchdog_arm(void)
{
	if (o.timeout > 0)
		alarm((unsigned)(o.timeout + (o.compute_ms + 999) / 1000));
}

/* ---- expected totals ----------------------------------------------------- */

static long seq_size(uint64_t seq)
{
	return sizes[seq % (uint64_t)nsizes];
}

static long a2a_block(long iter)
{
	long b = sizes[iter % nsizes];

	return b < o.a2a_max ? b : o.a2a_max;
}

static long a2av_block(long b, int src, int dst, long iter)
{
	return b >> ((src + 2 * dst + iter) % 4);
}

/* Totals for this rank after iters iterations, by the formulas above. */
static void expect(long iters, struct counters *e)
{
	long k, j;
	int p;

	e->exp_msgs = e->exp_bytes_sent = e->exp_bytes_recv = 0;
	for (k = 0; k < iters; k++) {
		if (o.phases & (1u << PH_P2P)) {
			e->exp_msgs += (int64_t)nn * o.burst;
			for (j = 0; j < o.burst; j++) {
				long s = seq_size((uint64_t)(k * o.burst + j));

				e->exp_bytes_sent += (int64_t)nn * s;
				e->exp_bytes_recv += (int64_t)nn * s;
			}
		}
		if (o.phases & (1u << PH_RING)) {
			e->exp_msgs += 1;
			e->exp_bytes_sent += sizes[k % nsizes];
			e->exp_bytes_recv += sizes[k % nsizes];
		}
		if (o.phases & (1u << PH_A2A)) {
			e->exp_msgs += nprocs - 1;
			e->exp_bytes_sent += (int64_t)(nprocs - 1) * a2a_block(k);
			e->exp_bytes_recv += (int64_t)(nprocs - 1) * a2a_block(k);
		}
		if (o.phases & (1u << PH_A2AV)) {
			e->exp_msgs += nprocs - 1;
			for (p = 0; p < nprocs; p++) {
				if (p == rank)
					continue;
				e->exp_bytes_sent +=
					a2av_block(a2a_block(k), rank, p, k);
				e->exp_bytes_recv +=
					a2av_block(a2a_block(k), p, rank, k);
			}
		}
	}
}

/* ---- p2p ------------------------------------------------------------------- */

static char *p2p_sbuf[2], *p2p_rbuf[2];
static long *slot_off;		/* byte offset of burst slot j */

static long round64(long v)
{
	return (v + 63) & ~63L;
}

/* Largest burst, in bytes with 64-byte aligned slots. */
static long burst_bytes(void)
{
	long k, j, best = 64;

	for (k = 0; k < nsizes; k++) {
		long sum = 0;

		for (j = 0; j < o.burst; j++)
			sum += round64(seq_size((uint64_t)(k * o.burst + j)));
		if (sum > best)
			best = sum;
	}
	return best;
}

/*
 * Account for message seq from neighbour i.  Returns 0 if it was the one
 * expected.  A gap counts as lost until the missing numbers turn up (then
 * they count as reordered); a number seen before is a duplicate.
 */
static int order_note(int i, uint64_t seq, long iter)
{
	struct order *od = &ord[i];
	int m;

	if (seq == od->next) {
		od->next++;
		return 0;
	}
	if (seq > od->next) {
		uint64_t s;

		err_detail(PH_P2P, iter, nbr[i], "seq gap", (long long)od->next,
			   (long long)seq);
		cnt.lost += (int64_t)(seq - od->next);
		for (s = od->next; s < seq && od->nmiss < MISS_MAX; s++)
			od->miss[od->nmiss++] = s;
		od->next = seq + 1;
		return 1;
	}
	for (m = 0; m < od->nmiss; m++) {
		if (od->miss[m] == seq) {
			od->miss[m] = od->miss[--od->nmiss];
			cnt.lost--;
			cnt.bad_order++;
			err_detail(PH_P2P, iter, nbr[i], "late seq",
				   (long long)od->next, (long long)seq);
			return 1;
		}
	}
	cnt.dup++;
	err_detail(PH_P2P, iter, nbr[i], "duplicate seq", (long long)od->next,
		   (long long)seq);
	return 1;
}

static MPI_Request *p2p_rq;
static MPI_Status *p2p_st;

static void phase_p2p(long k)
{
	int nreq = 2 * nn * (int)o.burst, i, r = 0, rc;
	MPI_Request *rq = p2p_rq;
	MPI_Status *st = p2p_st;
	long j;

	for (i = 0; i < nn; i++)
		for (j = 0; j < o.burst; j++) {
			uint64_t seq = (uint64_t)(k * o.burst + j);

			MPI_Irecv(p2p_rbuf[i] + slot_off[j], (int)seq_size(seq),
				  MPI_BYTE, nbr[i], MPI_ANY_TAG, comm[PH_P2P],
				  &rq[r++]);
		}
	for (i = 0; i < nn; i++)
		for (j = 0; j < o.burst; j++) {
			uint64_t seq = (uint64_t)(k * o.burst + j);
			long s = seq_size(seq);
			char *b = p2p_sbuf[i] + slot_off[j];

			payload_fill(b, s, PH_P2P, rank, nbr[i], seq,
				     seed4(PH_P2P, (uint64_t)rank,
					   (uint64_t)nbr[i], seq));
			MPI_Isend(b, (int)s, MPI_BYTE, nbr[i],
				  (int)(seq % TAG_MOD), comm[PH_P2P], &rq[r++]);
		}
	rc = MPI_Waitall(nreq, rq, st);
	r = 0;
	for (i = 0; i < nn; i++)
		for (j = 0; j < o.burst; j++, r++) {
			uint64_t want = (uint64_t)(k * o.burst + j), seq;
			long delta;
			int count = -1;

			if (rc == MPI_ERR_IN_STATUS &&
			    st[r].MPI_ERROR != MPI_SUCCESS) {
				mpi_err(PH_P2P, k, nbr[i], st[r].MPI_ERROR);
				continue;
			}
			cnt.msgs_recv++;
			MPI_Get_count(&st[r], MPI_BYTE, &count);
			cnt.bytes_recv += count;
			/* The tag holds seq mod TAG_MOD: recover it near want. */
			delta = ((long)st[r].MPI_TAG - (long)(want % TAG_MOD) +
				 TAG_MOD + TAG_MOD / 2) % TAG_MOD - TAG_MOD / 2;
			if (delta < 0 && (uint64_t)-delta > want)
				delta = 0;	/* not a sequence number at all */
			seq = want + (uint64_t)delta;
			order_note(i, seq, k);
			if (count != seq_size(seq)) {
				cnt.bad_checksum++;
				err_detail(PH_P2P, k, nbr[i], "size",
					   seq_size(seq), count);
			} else if (payload_check(p2p_rbuf[i] + slot_off[j],
						 count, PH_P2P, nbr[i], rank,
						 seq, seed4(PH_P2P,
							    (uint64_t)nbr[i],
							    (uint64_t)rank,
							    seq))) {
				cnt.bad_checksum++;
				err_detail(PH_P2P, k, nbr[i], "damaged payload, seq",
					   (long long)seq, (long long)seq);
			}
		}
	for (i = 0; i < nn; i++)
		for (j = 0; j < o.burst; j++) {
			uint64_t seq = (uint64_t)(k * o.burst + j);

			if (rc == MPI_ERR_IN_STATUS &&
			    st[(nn + i) * o.burst + j].MPI_ERROR != MPI_SUCCESS) {
				mpi_err(PH_P2P, k, nbr[i],
					st[(nn + i) * o.burst + j].MPI_ERROR);
				continue;
			}
			cnt.msgs_sent++;
			cnt.bytes_sent += seq_size(seq);
		}
	if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS)
		mpi_err(PH_P2P, k, -1, rc);
}

/* ---- ring ------------------------------------------------------------------ */

static char *ring_buf;

static uint64_t acc_mask(long size)
{
	return size >= 8 ? ~UINT64_C(0) :
	       (UINT64_C(1) << (8 * size)) - 1;
}

static uint64_t acc_fold(uint64_t acc, uint64_t body_sum, int who, long size)
{
	return mix64(acc + body_sum + (uint64_t)who * PAT_MUL) &
	       acc_mask(size);
}

/* The checksum a token of this iteration must hold after d hops. */
static uint64_t acc_expected(long k, int starter, long size, int d)
{
	long body = size > 8 ? size - 8 : 0;
	uint64_t sum = pat_sum((size_t)body,
			       seed4(PH_RING, (uint64_t)k, (uint64_t)starter, 0));
	uint64_t acc = seed4(PH_RING, (uint64_t)k, (uint64_t)starter, 1) &
		       acc_mask(size);
	int h;

	for (h = 0; h < d; h++)
		acc = acc_fold(acc, sum, (starter + h) % nprocs, size);
	return acc;
}

static void acc_put(char *buf, long size, uint64_t acc)
{
	memcpy(buf, &acc, (size_t)(size < 8 ? size : 8));
}

static uint64_t acc_get(const char *buf, long size)
{
	uint64_t acc = 0;

	memcpy(&acc, buf, (size_t)(size < 8 ? size : 8));
	return acc;
}

static void phase_ring(long k)
{
	long s = sizes[k % nsizes], body = s > 8 ? s - 8 : 0;
	int starter = (int)(k % nprocs);
	int d = (rank - starter + nprocs) % nprocs;
	int left = (rank - 1 + nprocs) % nprocs, right = (rank + 1) % nprocs;
	uint64_t bseed = seed4(PH_RING, (uint64_t)k, (uint64_t)starter, 0);
	uint64_t acc, sum = 0;
	MPI_Status st;
	int rc, count = -1;

	if (d == 0) {
		pat_fill(ring_buf + 8, (size_t)body, bseed);
		acc_put(ring_buf, s, acc_expected(k, starter, s, 1));
		rc = MPI_Send(ring_buf, (int)s, MPI_BYTE, right,
			      (int)(k % TAG_MOD), comm[PH_RING]);
		if (rc != MPI_SUCCESS) {
			mpi_err(PH_RING, k, right, rc);
			return;
		}
		cnt.msgs_sent++;
		cnt.bytes_sent += s;
	}
	rc = MPI_Recv(ring_buf, (int)s, MPI_BYTE, left, MPI_ANY_TAG,
		      comm[PH_RING], &st);
	if (rc != MPI_SUCCESS) {
		mpi_err(PH_RING, k, left, rc);
		return;
	}
	MPI_Get_count(&st, MPI_BYTE, &count);
	cnt.msgs_recv++;
	cnt.bytes_recv += count;
	if (st.MPI_TAG != (int)(k % TAG_MOD)) {
		cnt.bad_order++;
		err_detail(PH_RING, k, left, "token of iteration",
			   k % TAG_MOD, st.MPI_TAG);
	}
	if (count != s) {
		cnt.bad_checksum++;
		err_detail(PH_RING, k, left, "size", s, count);
	} else if (!pat_ok(ring_buf + 8, (size_t)body, bseed, &sum)) {
		cnt.bad_checksum++;
		err_detail(PH_RING, k, left, "damaged token body, hop",
			   d ? d : nprocs, d ? d : nprocs);
	}
	acc = acc_get(ring_buf, s);
	if (acc != acc_expected(k, starter, s, d ? d : nprocs)) {
		cnt.bad_checksum++;
		err_detail(PH_RING, k, left, "wrong token checksum, hop",
			   d ? d : nprocs, d ? d : nprocs);
	}
	if (d == 0)
		return;
	/* Fold in the body as received: damage upstream shows up downstream. */
	acc_put(ring_buf, s, acc_fold(acc, sum, rank, s));
	rc = MPI_Send(ring_buf, (int)s, MPI_BYTE, right, (int)(k % TAG_MOD),
		      comm[PH_RING]);
	if (rc != MPI_SUCCESS) {
		mpi_err(PH_RING, k, right, rc);
		return;
	}
	cnt.msgs_sent++;
	cnt.bytes_sent += s;
}

/* ---- alltoall(v) ----------------------------------------------------------- */

static char *a2a_sbuf, *a2a_rbuf;
static int *v_scount, *v_sdispl, *v_rcount, *v_rdispl;

static void a2a_verify(enum phase ph, long k, int src, const char *blk,
		       long size)
{
	int r = payload_check(blk, size, ph, src, rank, (uint64_t)k,
			      seed4(ph, (uint64_t)src, (uint64_t)rank,
				    (uint64_t)k));

	if (r == 2) {
		cnt.bad_order++;
		err_detail(ph, k, src, "block of iteration", k, -1);
	} else if (r) {
		cnt.bad_checksum++;
		err_detail(ph, k, src, "damaged block, bytes", size, size);
	}
}

static void phase_a2a(long k)
{
	long b = a2a_block(k);
	int p, rc;

	for (p = 0; p < nprocs; p++)
		payload_fill(a2a_sbuf + p * b, b, PH_A2A, rank, p, (uint64_t)k,
			     seed4(PH_A2A, (uint64_t)rank, (uint64_t)p,
				   (uint64_t)k));
	rc = MPI_Alltoall(a2a_sbuf, (int)b, MPI_BYTE, a2a_rbuf, (int)b,
			  MPI_BYTE, comm[PH_A2A]);
	if (rc != MPI_SUCCESS) {
		mpi_err(PH_A2A, k, -1, rc);
		return;
	}
	for (p = 0; p < nprocs; p++) {
		a2a_verify(PH_A2A, k, p, a2a_rbuf + p * b, b);
		if (p == rank)
			continue;
		cnt.msgs_sent++;
		cnt.msgs_recv++;
		cnt.bytes_sent += b;
		cnt.bytes_recv += b;
	}
}

static void phase_a2av(long k)
{
	long b = a2a_block(k), so = 0, ro = 0;
	int p, rc;

	for (p = 0; p < nprocs; p++) {
		v_scount[p] = (int)a2av_block(b, rank, p, k);
		v_rcount[p] = (int)a2av_block(b, p, rank, k);
		v_sdispl[p] = (int)so;
		v_rdispl[p] = (int)ro;
		so += v_scount[p];
		ro += v_rcount[p];
		payload_fill(a2a_sbuf + v_sdispl[p], v_scount[p], PH_A2AV,
			     rank, p, (uint64_t)k,
			     seed4(PH_A2AV, (uint64_t)rank, (uint64_t)p,
				   (uint64_t)k));
	}
	rc = MPI_Alltoallv(a2a_sbuf, v_scount, v_sdispl, MPI_BYTE, a2a_rbuf,
			   v_rcount, v_rdispl, MPI_BYTE, comm[PH_A2AV]);
	if (rc != MPI_SUCCESS) {
		mpi_err(PH_A2AV, k, -1, rc);
		return;
	}
	for (p = 0; p < nprocs; p++) {
		a2a_verify(PH_A2AV, k, p, a2a_rbuf + v_rdispl[p], v_rcount[p]);
		if (p == rank)
			continue;
		cnt.msgs_sent++;
		cnt.msgs_recv++;
		cnt.bytes_sent += v_scount[p];
		cnt.bytes_recv += v_rcount[p];
	}
}

/* ---- compute ----------------------------------------------------------------- */

static volatile double compute_sink;

/* Busy arithmetic for ms milliseconds: no MPI call, no system call. */
static void compute(long ms)
{
	struct timespec t0, t;
	double x = 1.0;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (i = 0; i < 20000; i++)
			x = x * 1.0000001 + 1e-9;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000L +
		    (t.tv_nsec - t0.tv_nsec) / 1000000L >= ms)
			break;
	}
	compute_sink = x;
}

/* ---- options ------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: mpi_check [-iters N | -seconds S] [-max BYTES] [-burst B]\n"
		"                 [-a2a-max BYTES] [-phases p2p,ring,a2a,a2av]\n"
		"                 [-compute-ms M [-compute-rank R]] [-progress [K]]\n"
		"                 [-timeout S] [-stop-file PATH]\n"
		"  -iters N        iterations (default 50; with -seconds: at most N)\n"
		"  -seconds S      run for S seconds (rank 0's clock decides)\n"
		"  -max BYTES      largest message, sizes cycle over 0,1,8,1K,64K,1M,8M (default 8M)\n"
		"  -burst B        p2p messages in flight per neighbour (default 4)\n"
		"  -a2a-max BYTES  largest alltoall block (default 1M)\n"
		"  -compute-ms M   pure compute for M ms after each iteration, no MPI calls\n"
		"  -compute-rank R only rank R computes (default: every rank)\n"
		"  -progress [K]   rank 0 prints a timestamped line every K iterations (default 10)\n"
		"  -timeout S      a rank stuck S seconds in one iteration exits 3\n"
		"                  (plus -compute-ms; default 120, 0 off)\n"
		"  -stop-file PATH stop after the iteration during which PATH appeared on\n"
		"                  rank 0's node (as -seconds; both may be given)\n"
		"BYTES accept k/K and m/M (binary) suffixes.\n");
}

static int parse_num(const char *s, long *out)
{
	char *end;
	long v;

	if (!s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s)
		return -1;
	if (*end == 'k' || *end == 'K') {
		v <<= 10;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		v <<= 20;
		end++;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_phases(const char *s)
{
	char buf[128], *tok, *save = NULL;
	int p;

	if (!s || strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	o.phases = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (p = 0; p < PH_COUNT; p++)
			if (!strcmp(tok, phase_name[p]))
				break;
		if (p == PH_COUNT)
			return -1;
		o.phases |= 1u << p;
	}
	return o.phases ? 0 : -1;
}

static int parse_args(int argc, char **argv)
{
	int i;
	long v;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-progress")) {
			o.progress = 10;
			if (n && !parse_num(n, &v) && v > 0) {
				o.progress = v;
				i++;
			}
			continue;
		}
		if (!strcmp(a, "-seconds")) {
			if (!n || (o.seconds = atof(n)) <= 0)
				return -1;
			i++;
			continue;
		}
		if (!strcmp(a, "-stop-file")) {
			if (!n || !*n)
				return -1;
			o.stop_file = n;
			i++;
			continue;
		}
		if (!strcmp(a, "-phases")) {
			if (parse_phases(n))
				return -1;
			i++;
			continue;
		}
		if (parse_num(n, &v))
			return -1;
		if (!strcmp(a, "-iters") && v > 0)
			o.iters = v;
		else if (!strcmp(a, "-max") && v >= 0 && v <= INT_MAX)
			o.max = v;
		else if (!strcmp(a, "-burst") && v > 0 && v <= 64)
			o.burst = v;
		else if (!strcmp(a, "-a2a-max") && v >= 0 && v <= INT_MAX)
			o.a2a_max = v;
		else if (!strcmp(a, "-compute-ms") && v >= 0)
			o.compute_ms = v;
		else if (!strcmp(a, "-compute-rank") && v >= -1 && v < INT_MAX)
			o.compute_rank = (int)v;
		else if (!strcmp(a, "-timeout") && v >= 0)
			o.timeout = v;
		else
			return -1;
		i++;
	}
	if (o.iters < 0)
		o.iters = o.seconds > 0 || o.stop_file ? LONG_MAX : 50;
	return 0;
}

/* ---- main ---------------------------------------------------------------------- */

static void *xalloc(size_t len)
{
	void *p = aligned_alloc(64, (len + 63) & ~(size_t)63);

	if (!p) {
		fprintf(stderr, "mpi_check rank=%d: out of memory (%zu bytes)\n",
			rank, len);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	memset(p, 0, len);
	return p;
}

static void setup(void)
{
	long bb, a2a_bytes = 64;
	int i, p;

	for (i = 0; i < NCYCLE; i++)
		if (size_cycle[i] <= o.max)
			sizes[nsizes++] = size_cycle[i];
	nbr[0] = (rank - 1 + nprocs) % nprocs;
	nbr[1] = (rank + 1) % nprocs;
	nn = nprocs == 2 ? 1 : 2;
	for (p = 0; p < PH_COUNT; p++) {
		MPI_Comm_dup(MPI_COMM_WORLD, &comm[p]);
		MPI_Comm_set_errhandler(comm[p], MPI_ERRORS_RETURN);
	}
	MPI_Comm_dup(MPI_COMM_WORLD, &comm_ctl);

	slot_off = calloc((size_t)o.burst, sizeof(*slot_off));
	p2p_rq = calloc((size_t)(2 * nn * o.burst), sizeof(*p2p_rq));
	p2p_st = calloc((size_t)(2 * nn * o.burst), sizeof(*p2p_st));
	if (!slot_off || !p2p_rq || !p2p_st)
		MPI_Abort(MPI_COMM_WORLD, 2);
	bb = burst_bytes();
	for (i = 0; i < nn; i++) {
		p2p_sbuf[i] = xalloc((size_t)bb);
		p2p_rbuf[i] = xalloc((size_t)bb);
	}
	ring_buf = xalloc((size_t)sizes[nsizes - 1] + 8);
	for (i = 0; i < nsizes; i++)
		if (a2a_block(i) * nprocs > a2a_bytes)
			a2a_bytes = a2a_block(i) * nprocs;
	a2a_sbuf = xalloc((size_t)a2a_bytes);
	a2a_rbuf = xalloc((size_t)a2a_bytes);
	v_scount = calloc((size_t)nprocs, sizeof(int));
	v_sdispl = calloc((size_t)nprocs, sizeof(int));
	v_rcount = calloc((size_t)nprocs, sizeof(int));
	v_rdispl = calloc((size_t)nprocs, sizeof(int));
	if (!v_scount || !v_sdispl || !v_rcount || !v_rdispl)
		MPI_Abort(MPI_COMM_WORLD, 2);
}

/* Slot offsets of the burst of iteration k (sizes differ per iteration). */
static void set_slots(long k)
{
	long j, off = 0;

	for (j = 0; j < o.burst; j++) {
		slot_off[j] = off;
		off += round64(seq_size((uint64_t)(k * o.burst + j)));
	}
}

static void print_params(void)
{
	struct counters one = { 0 };
	int i;

	expect(1, &one);
	printf("mpi_check: ranks=%d mode=%s", nprocs,
	       o.seconds > 0 ? "seconds" : o.stop_file ? "stop-file" : "iters");
	if (o.seconds > 0)
		printf(" seconds=%g", o.seconds);
	if (o.stop_file)
		printf(" stop_file=%s", o.stop_file);
	if (o.iters != LONG_MAX)
		printf(" iters=%ld", o.iters);
	printf(" phases=");
	for (i = 0; i < PH_COUNT; i++)
		if (o.phases & (1u << i))
			printf("%s%s", phase_name[i],
			       (o.phases >> (i + 1)) ? "," : "");
	printf(" sizes=");
	for (i = 0; i < nsizes; i++)
		printf("%s%ld", i ? "," : "", sizes[i]);
	printf(" burst=%ld a2a_max=%ld compute_ms=%ld compute_rank=", o.burst,
	       o.a2a_max, o.compute_ms);
	if (o.compute_rank < 0)
		printf("all");
	else
		printf("%d", o.compute_rank);
	printf(" msgs_per_rank_per_iter=%" PRId64, one.exp_msgs);
	if (o.seconds <= 0 && !o.stop_file) {
		struct counters e = { 0 };

		expect(o.iters, &e);
		printf(" expected_msgs=%" PRId64, e.exp_msgs * nprocs);
	}
	printf("\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct counters *all = NULL;
	double t_start, t_end;
	int64_t tot_msgs = 0, tot_exp = 0, tot_bytes = 0;
	int fail = 0, fail_all = 0, i;
	long k;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
	if (parse_args(argc, argv) || nprocs < 2 || o.compute_rank >= nprocs) {
		if (rank == 0) {
			if (nprocs < 2)
				fprintf(stderr, "mpi_check: needs at least 2 ranks\n");
			if (o.compute_rank >= nprocs)
				fprintf(stderr, "mpi_check: -compute-rank %d but only %d ranks\n",
					o.compute_rank, nprocs);
			usage();
		}
		MPI_Finalize();
		return 2;
	}
	setup();
	if (rank == 0)
		print_params();
	signal(SIGALRM, watchdog);
	MPI_Barrier(comm_ctl);
	t_start = MPI_Wtime();
	for (k = 0; k < o.iters; k++) {
		cur_iter = k;
		watchdog_arm();
		if (o.phases & (1u << PH_P2P)) {
			cur_phase = PH_P2P;
			set_slots(k);
			phase_p2p(k);
		}
		if (o.phases & (1u << PH_RING)) {
			cur_phase = PH_RING;
			phase_ring(k);
		}
		if (o.phases & (1u << PH_A2A)) {
			cur_phase = PH_A2A;
			phase_a2a(k);
		}
		if (o.phases & (1u << PH_A2AV)) {
			cur_phase = PH_A2AV;
			phase_a2av(k);
		}
		cur_phase = -1;
		cnt.iters = k + 1;
		if (o.compute_ms > 0 &&
		    (o.compute_rank < 0 || o.compute_rank == rank)) {
			alarm(0);
			compute(o.compute_ms);
			watchdog_arm();
		}
		if (o.progress && rank == 0 && (k + 1) % o.progress == 0) {
			char ts[48];

			timestamp(ts, sizeof(ts));
			printf("mpi_check progress time=%s elapsed=%.3f iter=%ld "
			       "rank0_msgs_sent=%" PRId64 " rank0_errors=%" PRId64
			       "\n", ts, MPI_Wtime() - t_start, k + 1,
			       cnt.msgs_sent, cnt.bad_checksum + cnt.bad_order +
			       cnt.lost + cnt.dup + cnt.mpi_errors);
			fflush(stdout);
		}
		if (o.seconds > 0 || o.stop_file) {
			int stop = rank == 0 &&
				   ((o.seconds > 0 &&
				     MPI_Wtime() - t_start >= o.seconds) ||
				    (o.stop_file && !access(o.stop_file, F_OK))),
			    any = 0;

			MPI_Allreduce(&stop, &any, 1, MPI_INT, MPI_MAX,
				      comm_ctl);
			if (any)
				break;
		}
	}
	t_end = MPI_Wtime();
	watchdog_arm();

	expect(cnt.iters, &cnt);
	fail = cnt.msgs_sent != cnt.exp_msgs || cnt.msgs_recv != cnt.exp_msgs ||
	       cnt.bytes_sent != cnt.exp_bytes_sent ||
	       cnt.bytes_recv != cnt.exp_bytes_recv || cnt.bad_checksum ||
	       cnt.bad_order || cnt.lost || cnt.dup || cnt.mpi_errors;
	if (rank == 0) {
		all = calloc((size_t)nprocs, sizeof(*all));
		if (!all)
			MPI_Abort(MPI_COMM_WORLD, 2);
	}
	MPI_Gather(&cnt, NCOUNTERS, MPI_INT64_T, all, NCOUNTERS, MPI_INT64_T,
		   0, comm_ctl);
	MPI_Allreduce(&fail, &fail_all, 1, MPI_INT, MPI_MAX, comm_ctl);
	if (rank == 0) {
		for (i = 0; i < nprocs; i++) {
			const struct counters *c = &all[i];
			int bad = c->msgs_sent != c->exp_msgs ||
				  c->msgs_recv != c->exp_msgs ||
				  c->bytes_sent != c->exp_bytes_sent ||
				  c->bytes_recv != c->exp_bytes_recv ||
				  c->bad_checksum || c->bad_order || c->lost ||
				  c->dup || c->mpi_errors;

			printf("mpi_check rank=%d iters=%" PRId64
			       " msgs_sent=%" PRId64 " msgs_recv=%" PRId64
			       " expected_msgs=%" PRId64 " bytes_sent=%" PRId64
			       " bytes_recv=%" PRId64
			       " expected_bytes_sent=%" PRId64
			       " expected_bytes_recv=%" PRId64
			       " bad_checksum=%" PRId64 " bad_order=%" PRId64
			       " lost=%" PRId64 " dup=%" PRId64
			       " mpi_errors=%" PRId64 " result=%s\n", i,
			       c->iters, c->msgs_sent, c->msgs_recv,
			       c->exp_msgs, c->bytes_sent, c->bytes_recv,
			       c->exp_bytes_sent, c->exp_bytes_recv,
			       c->bad_checksum, c->bad_order, c->lost, c->dup,
			       c->mpi_errors, bad ? "FAIL" : "PASS");
			tot_msgs += c->msgs_sent;
			tot_exp += c->exp_msgs;
			tot_bytes += c->bytes_sent;
		}
		printf("mpi_check: %s (%d ranks, %" PRId64 " messages) "
		       "expected_msgs=%" PRId64 " iters=%" PRId64
		       " bytes=%" PRId64 " elapsed=%.3f\n",
		       fail_all ? "FAIL" : "PASS", nprocs, tot_msgs, tot_exp,
		       all[0].iters, tot_bytes, t_end - t_start);
		fflush(stdout);
		free(all);
	}
	for (i = 0; i < PH_COUNT; i++)
		MPI_Comm_free(&comm[i]);
	MPI_Comm_free(&comm_ctl);
	MPI_Finalize();
	alarm(0);
	return fail_all ? 1 : 0;
}
