/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_reg.c - the registration table (btl_ninja_reg.h): a hash by
 * key with a bounded number of entries.  Keys come from the kernel's
 * random generator (getrandom), never from the address: a peer cannot
 * guess one, and a key is never reused while its region is registered.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "btl_ninja_reg.h"

int ninja_reg_init(ninja_reg_table_t *t, size_t max)
{
	size_t n = 64;

	memset(t, 0, sizeof(*t));
	if (max < 1)
		max = 1;
	while (n < max / 4 && n < ((size_t)1 << 20))
		n <<= 1;
	t->bucket = calloc(n, sizeof(*t->bucket));
	if (!t->bucket)
		return -1;
	t->mask = n - 1;
	t->max = max;
	t->rnd_off = sizeof(t->rnd);
	return 0;
}

void ninja_reg_fini(ninja_reg_table_t *t)
{
	size_t i;
	ninja_reg_t *r;

	for (i = 0; t->bucket && i <= t->mask; i++) {
		while ((r = t->bucket[i])) {
			t->bucket[i] = r->next;
			free(r);
		}
	}
	while ((r = t->free)) {
		t->free = r->next;
		free(r);
	}
	free(t->bucket);
	memset(t, 0, sizeof(*t));
}

/* 64 random bits (false: no randomness to be had). */
static bool random_key(ninja_reg_table_t *t, uint64_t *key)
{
	if (t->rnd_off + sizeof(*key) > sizeof(t->rnd)) {
		size_t got = 0;

		while (got < sizeof(t->rnd)) {
			ssize_t n = getrandom(t->rnd + got,
					      sizeof(t->rnd) - got, 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return false;
			got += (size_t)n;
		}
		t->rnd_off = 0;
	}
	memcpy(key, t->rnd + t->rnd_off, sizeof(*key));
	/* Used bytes are not left behind for anyone to read. */
	memset(t->rnd + t->rnd_off, 0, sizeof(*key));
	t->rnd_off += sizeof(*key);
	return true;
}

ninja_reg_t *ninja_reg_find(const ninja_reg_table_t *t, uint64_t key)
{
	ninja_reg_t *r;

	if (!t->bucket || !key)
		return NULL;
	for (r = t->bucket[key & t->mask]; r; r = r->next)
		if (r->key == key)
			return r;
	return NULL;
}

ninja_reg_t *ninja_reg_add(ninja_reg_table_t *t, uint64_t base, uint64_t len,
			   uint32_t access, const void *owner)
{
	ninja_reg_t *r;
	uint64_t key;

	if (!t->bucket || t->count >= t->max) {
		t->n_full++;
		return NULL;
	}
	do {
		if (!random_key(t, &key))
			return NULL;
	} while (!key || ninja_reg_find(t, key));
	r = t->free;
	if (r)
		t->free = r->next;
	else if (!(r = malloc(sizeof(*r))))
		return NULL;
	r->key = key;
	r->base = base;
	r->len = len;
	r->access = access;
	r->owner = owner;
	r->busy = NULL;
	r->next = t->bucket[key & t->mask];
	t->bucket[key & t->mask] = r;
	t->count++;
	t->n_added++;
	return r;
}

void ninja_reg_remove(ninja_reg_table_t *t, ninja_reg_t *r)
{
	ninja_reg_t **pp = &t->bucket[r->key & t->mask];

	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (!*pp)
		return;		/* not ours (or removed already) */
	*pp = r->next;
	r->key = 0;
	r->busy = NULL;
	r->next = t->free;
	t->free = r;
	t->count--;
	t->n_removed++;
}

ninja_reg_t *ninja_reg_check(const ninja_reg_table_t *t, uint64_t key,
			     uint64_t addr, uint64_t len, uint32_t access,
			     const void *peer)
{
	ninja_reg_t *r = ninja_reg_find(t, key);

	if (!r || (r->access & access) != access ||
	    (r->owner && r->owner != peer))
		return NULL;
	/* addr >= base and addr + len <= base + reg len, without overflow. */
	if (addr < r->base || len > r->len || addr - r->base > r->len - len)
		return NULL;
	return r;
}
