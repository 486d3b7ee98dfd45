/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_reg.h - the registration table of btl/ninja's RDMA emulation
 * (docs/design.md "Get emulation"): the regions ob1 registered for a put
 * into or a get from this process, found by an unguessable 64-bit key.
 * Plain C, no Open MPI types (tests/unit: test_ninja_reg); the caller
 * serializes every call (btl/ninja: the component lock).
 */
#ifndef NINJA_BTL_NINJA_REG_H
#define NINJA_BTL_NINJA_REG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a peer may do with a region. */
#define NINJA_REG_READ		1u	/* a get may read it */
#define NINJA_REG_WRITE		2u	/* a put may write it */

typedef struct ninja_reg {
	uint64_t key;		/* first: ob1's handle is this key (8 bytes) */
	struct ninja_reg *next;	/* hash chain, or the free list */
	uint64_t base, len;
	uint32_t access;	/* NINJA_REG_* */
	const void *owner;	/* the only peer that may use it (NULL: any) */
	void *busy;		/* the peer writing a put into it right now */
} ninja_reg_t;

typedef struct ninja_reg_table {
	ninja_reg_t **bucket;
	size_t mask;		/* buckets - 1 (a power of two) */
	size_t count, max;
	ninja_reg_t *free;	/* removed entries, reused */
	unsigned char rnd[256];	/* kernel randomness, handed out 8 bytes */
	size_t rnd_off;		/* at a time (sizeof(rnd): used up) */
	uint64_t n_added, n_removed, n_full;
} ninja_reg_table_t;

/* max: registrations alive at once (at least 1).  0 or -1 (ENOMEM). */
int ninja_reg_init(ninja_reg_table_t *t, size_t max);
void ninja_reg_fini(ninja_reg_table_t *t);
/* A new registration with a fresh random key; NULL: table full, no
 * memory or no randomness. */
ninja_reg_t *ninja_reg_add(ninja_reg_table_t *t, uint64_t base, uint64_t len,
			   uint32_t access, const void *owner);
/* Forget r: its key is unknown from now on. */
void ninja_reg_remove(ninja_reg_table_t *t, ninja_reg_t *r);
ninja_reg_t *ninja_reg_find(const ninja_reg_table_t *t, uint64_t key);
/* The registration of key if it grants peer the access to all of
 * [addr, addr + len); else NULL. */
ninja_reg_t *ninja_reg_check(const ninja_reg_table_t *t, uint64_t key,
			     uint64_t addr, uint64_t len, uint32_t access,
			     const void *peer);

#endif /* NINJA_BTL_NINJA_REG_H */
