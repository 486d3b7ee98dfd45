/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_pollset.c - the control thread's growing poll set.
 */
#include <limits.h>
#include <stdlib.h>

#include "btl_ninja_pollset.h"

void ninja_pollset_reset(ninja_pollset_t *ps)
{
	ps->n = 0;
}

static int pollset_grow(ninja_pollset_t *ps)
{
	int cap;
	struct pollfd *fds;
	int *kind;
	void **owner;

	if (ps->cap > INT_MAX / 2)
		return -1;
	cap = ps->cap ? 2 * ps->cap : 64;
	fds = realloc(ps->fds, (size_t)cap * sizeof(*fds));
	if (!fds)
		return -1;
	ps->fds = fds;
	kind = realloc(ps->kind, (size_t)cap * sizeof(*kind));
	if (!kind)
		return -1;
	ps->kind = kind;
	owner = realloc(ps->owner, (size_t)cap * sizeof(*owner));
	if (!owner)
		return -1;
	ps->owner = owner;
	ps->cap = cap;
	return 0;
}

int ninja_pollset_add(ninja_pollset_t *ps, int fd, short events, int kind,
		      void *owner)
{
	if (ps->n == ps->cap && pollset_grow(ps) != 0)
		return -1;
	ps->fds[ps->n].fd = fd;
	ps->fds[ps->n].events = events;
	ps->fds[ps->n].revents = 0;
	ps->kind[ps->n] = kind;
	ps->owner[ps->n] = owner;
	ps->n++;
	return 0;
}

void ninja_pollset_fini(ninja_pollset_t *ps)
{
	free(ps->fds);
	free(ps->kind);
	free(ps->owner);
	ps->fds = NULL;
	ps->kind = NULL;
	ps->owner = NULL;
	ps->n = ps->cap = 0;
}
