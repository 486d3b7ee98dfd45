/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * ninja_test.h - a tiny check/counter helper for the common/ unit tests.
 *
 * Checks are grouped: nt_group("name") opens a group, the next nt_group()
 * or nt_done() closes it and prints one line ("ok   name (N checks)" or
 * "FAIL name (M of N checks failed)").  Each failed check prints its file,
 * line and expression first.  nt_done() prints "N passed, M failed" (checks,
 * not groups) on its own line and returns the exit status.
 */
#ifndef NINJA_TEST_H
#define NINJA_TEST_H

#include <stdio.h>
#include <string.h>

static unsigned int nt_passed, nt_failed;
static unsigned int nt_gpassed, nt_gfailed;
static const char *nt_gname;

static void nt_group_end(void)
{
	if (!nt_gname)
		return;
	if (nt_gfailed)
		printf("FAIL %s (%u of %u checks failed)\n", nt_gname,
		       nt_gfailed, nt_gpassed + nt_gfailed);
	else
		printf("ok   %s (%u checks)\n", nt_gname, nt_gpassed);
	fflush(stdout);
	nt_gname = NULL;
}

static inline void nt_group(const char *name)
{
	nt_group_end();
	nt_gname = name;
	nt_gpassed = nt_gfailed = 0;
}

static inline int nt_check(int ok, const char *file, int line,
			   const char *expr)
{
	if (ok) {
		nt_passed++;
		nt_gpassed++;
	} else {
		nt_failed++;
		nt_gfailed++;
		printf("  check failed: %s:%d: %s\n", file, line, expr);
	}
	return ok;
}

static inline int nt_done(void)
{
	nt_group_end();
	printf("%u passed, %u failed\n", nt_passed, nt_failed);
	return nt_failed ? 1 : 0;
}

#define CHECK(cond) nt_check(!!(cond), __FILE__, __LINE__, #cond)

/* Integer equality, printing both values on failure. */
#define CHECK_INT(got, want)						\
	do {								\
		long long nt_g_ = (long long)(got);			\
		long long nt_w_ = (long long)(want);			\
		if (!nt_check(nt_g_ == nt_w_, __FILE__, __LINE__,	\
			      #got " == " #want))			\
			printf("    got %lld, want %lld\n", nt_g_, nt_w_); \
	} while (0)

/* String equality (got may be NULL), printing both on failure. */
#define CHECK_STR(got, want)						\
	do {								\
		const char *nt_g_ = (got);				\
		const char *nt_w_ = (want);				\
		if (!nt_check(nt_g_ && strcmp(nt_g_, nt_w_) == 0,	\
			      __FILE__, __LINE__, #got " == " #want))	\
			printf("    got \"%s\", want \"%s\"\n",		\
			       nt_g_ ? nt_g_ : "(null)", nt_w_);	\
	} while (0)

/* A slice (p, len) equals a C string. */
#define CHECK_MEM(p, len, want)						\
	do {								\
		const char *nt_p_ = (p);				\
		size_t nt_l_ = (len);					\
		const char *nt_w_ = (want);				\
		if (!nt_check(nt_p_ && nt_l_ == strlen(nt_w_) &&	\
			      memcmp(nt_p_, nt_w_, nt_l_) == 0,		\
			      __FILE__, __LINE__, #p " == " #want))	\
			printf("    got \"%.*s\", want \"%s\"\n",	\
			       nt_p_ ? (int)nt_l_ : 6,			\
			       nt_p_ ? nt_p_ : "(null)", nt_w_);	\
	} while (0)

#endif /* NINJA_TEST_H */
