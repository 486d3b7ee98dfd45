// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * pp_min.c - PingPong that reports the fastest round trip of each size
 * instead of the average, for comparing transports on a machine that other
 * work keeps busy (bench/ab --prog min).
 *
 *   pp_min [-min BYTES] [-max BYTES] [-iters N] [-time MS]
 *
 * Sizes -min, 2*-min, ... up to -max (0 is measured as 0 then 1).  Per size:
 * 5 warm-up round trips, then round trips until -iters are done or -time ms
 * have passed (at least 10), each timed on its own.  When the two ranks
 * share their CPUs with other processes, an average mostly measures how
 * often a rank was preempted in the middle of a transfer; the fastest round
 * trip is one that ran undisturbed, i.e. what the transport itself costs.
 * Output, one line per size, as examples/pingpong's table (so bench/ab
 * parses both): bytes, round trips, t[usec] (half the fastest round trip),
 * MB/s (10^6 bytes/s at that time), t_median[usec].
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mpi.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long min = 0, max = 16L << 20, iters = 1000, time_ms = 200;
	int rank, i;
	char *buf;
	double *t;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	for (i = 1; i + 1 < argc; i += 2) {
		long v = strtol(argv[i + 1], NULL, 0);

		if (!strcmp(argv[i], "-min"))
			min = v;
		else if (!strcmp(argv[i], "-max"))
			max = v;
		else if (!strcmp(argv[i], "-iters"))
			iters = v;
		else if (!strcmp(argv[i], "-time"))
			time_ms = v;
	}
	buf = malloc(max > 0 ? (size_t)max : 1);
	t = malloc(sizeof(*t) * (size_t)iters);
	if (!buf || !t)
		MPI_Abort(MPI_COMM_WORLD, 1);
	memset(buf, 0x5a, max > 0 ? (size_t)max : 1);
	if (rank == 0)
		printf("# pp_min: t[usec] = half of the fastest round trip, MB = 10^6 bytes\n"
		       "%12s %12s %12s %12s %12s\n", "#bytes", "#repetitions",
		       "t[usec]", "Mbytes/sec", "t_median");
	for (long size = min;;) {
		int n = 0, stop = 0;
		double start;

		for (i = 0; i < 5; i++) {
			if (rank == 0) {
				MPI_Send(buf, (int)size, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
				MPI_Recv(buf, (int)size, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			} else if (rank == 1) {
				MPI_Recv(buf, (int)size, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
				MPI_Send(buf, (int)size, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
			}
		}
		start = MPI_Wtime();
		while (!stop) {
			double t0 = MPI_Wtime();

			if (rank == 0) {
				MPI_Send(buf, (int)size, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
				MPI_Recv(buf, (int)size, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
				t[n++] = MPI_Wtime() - t0;
				stop = n >= iters ||
				       (n >= 10 && (MPI_Wtime() - start) * 1e3 >= time_ms);
				MPI_Send(&stop, 1, MPI_INT, 1, 2, MPI_COMM_WORLD);
			} else if (rank == 1) {
				MPI_Recv(buf, (int)size, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
				MPI_Send(buf, (int)size, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
				MPI_Recv(&stop, 1, MPI_INT, 0, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			} else {
				stop = 1;
			}
		}
		if (rank == 0) {
			double best;

			qsort(t, (size_t)n, sizeof(*t), cmp_double);
			best = t[0] / 2;
			printf("%12ld %12d %12.2f %12.2f %12.2f\n", size, n, best * 1e6,
			       size / best / 1e6, t[n / 2] / 2 * 1e6);
			fflush(stdout);
		}
		if (size >= max)
			break;
		size = size ? size * 2 : 1;
		if (size > max)
			size = max;
	}
	free(t);
	free(buf);
	MPI_Finalize();
	return 0;
}
