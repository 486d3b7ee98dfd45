/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * pattern.h - the verified payload pattern shared by the example programs
 * (pingpong.c, mpi_check.c).  Header-only so each program still builds with
 * plain `mpicc -I examples prog.c`.
 *
 * Word i of a buffer is seed + i * PAT_MUL: every word changes when the
 * seed does, and the loops vectorise.  A tail of len % 8 bytes holds the
 * low bytes of the next word (little endian, as the machine).
 */
#ifndef NINJA_EXAMPLES_PATTERN_H
#define NINJA_EXAMPLES_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PAT_MUL		UINT64_C(0x9e3779b97f4a7c15)

/* splitmix64's finaliser: a cheap bijective mixer for seeds. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

static inline void pat_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	size_t n = len / 8, i;

	for (i = 0; i < n; i++)
		w[i] = seed + i * PAT_MUL;
	if (len % 8) {
		uint64_t last = seed + n * PAT_MUL;

		memcpy((char *)buf + n * 8, &last, len % 8);
	}
}

/*
 * 1 if buf holds the pattern of seed.  With sum != NULL, *sum gets the sum
 * of the words actually held (the tail as a zero-extended word).
 */
static inline int pat_ok(const void *buf, size_t len, uint64_t seed,
			 uint64_t *sum)
{
	const uint64_t *w = buf;
	size_t n = len / 8, i;
	uint64_t diff = 0, s = 0;

	for (i = 0; i < n; i++) {
		diff |= w[i] ^ (seed + i * PAT_MUL);
		s += w[i];
	}
	if (len % 8) {
		uint64_t last = seed + n * PAT_MUL, got = 0, want = 0;

		memcpy(&got, (const char *)buf + n * 8, len % 8);
		memcpy(&want, &last, len % 8);
		diff |= got ^ want;
		s += got;
	}
	if (sum)
		*sum = s;
	return diff == 0;
}

#endif /* NINJA_EXAMPLES_PATTERN_H */
