/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * test_ninja_pollset.c - the control thread's poll set (btl_ninja_pollset.c)
 * holds every descriptor it is given: far more than the fixed array of
 * 1,028 entries it replaced, each with its own kind and owner, and poll()
 * reports events on the last of them as on the first.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "btl_ninja_pollset.h"
#include "test_ninja_check.h"

#define OLD_MAX	(4 + 16 + 1024)	/* the fixed array's size */
#define N	(3 * OLD_MAX + 7)	/* "endpoints": three times that */

int main(void)
{
	ninja_pollset_t ps = { 0 };
	int quiet[2], ready[2], i, n, bad = 0, seen = 0;
	static int owners[N];

	/* Two connected pairs: one with a byte waiting, one without. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, quiet) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, ready) != 0 ||
	    write(ready[1], "x", 1) != 1) {
		perror("socketpair");
		return 1;
	}
	/* Two rounds: the second reuses the first's memory. */
	for (int round = 0; round < 2; round++) {
		ninja_pollset_reset(&ps);
		CHECK(ps.n == 0);
		for (i = 0; i < N; i++)
			CHECK(ninja_pollset_add(&ps, i % 3 ? quiet[0] : ready[0],
						POLLIN, i % 5, &owners[i]) == 0);
		CHECK(ps.n == N);
		CHECK(ps.cap >= N);
		n = poll(ps.fds, (nfds_t)ps.n, 1000);
		CHECK(n == (N + 2) / 3);
		bad = seen = 0;
		for (i = 0; i < ps.n; i++) {
			bool want = i % 3 == 0;

			if (ps.kind[i] != i % 5 || ps.owner[i] != &owners[i])
				bad++;
			if (!!(ps.fds[i].revents & POLLIN) != want)
				bad++;
			if (ps.fds[i].revents & POLLIN)
				seen++;
		}
		CHECK(bad == 0);
		CHECK(seen == (N + 2) / 3);
		/* The last entry, far past the old limit, was polled. */
		CHECK(ps.fds[N - 1 - (N - 1) % 3].revents & POLLIN);
	}
	ninja_pollset_fini(&ps);
	CHECK(ps.fds == NULL && ps.n == 0 && ps.cap == 0);
	close(quiet[0]);
	close(quiet[1]);
	close(ready[0]);
	close(ready[1]);
	if (failures) {
		fprintf(stderr, "test_ninja_pollset: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_ninja_pollset: %d descriptors polled, %d ready: ok\n",
	       N, seen);
	return 0;
}
