/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_pollset.h - the control thread's poll set: one pollfd per
 * descriptor it watches, with what the descriptor is (kind) and whose it is
 * (owner).  It grows with the number of descriptors: no endpoint is ever
 * left out of a poll.  Plain C (no Open MPI), so it is unit-tested alone
 * (test_ninja_pollset.c).  Control thread only.
 */
#ifndef NINJA_BTL_NINJA_POLLSET_H
#define NINJA_BTL_NINJA_POLLSET_H

#include <poll.h>

typedef struct ninja_pollset {
	struct pollfd *fds;
	int *kind;		/* the caller's tag for each entry */
	void **owner;		/* ... and its object (an endpoint), or NULL */
	int n, cap;
} ninja_pollset_t;

/* Empty the set (keeps its memory for the next round). */
void ninja_pollset_reset(ninja_pollset_t *ps);
/* Add one descriptor: 0, or -1 if no memory (the set is unchanged). */
int ninja_pollset_add(ninja_pollset_t *ps, int fd, short events, int kind,
		      void *owner);
/* Free the set's memory. */
void ninja_pollset_fini(ninja_pollset_t *ps);

#endif /* NINJA_BTL_NINJA_POLLSET_H */
