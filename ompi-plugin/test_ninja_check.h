/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * test_ninja_check.h - the CHECK of btl/ninja's unit tests: a failed
 * condition is printed with its line and counted in failures.
 */
#ifndef NINJA_TEST_NINJA_CHECK_H
#define NINJA_TEST_NINJA_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__,	\
				__LINE__, #cond);			\
			failures++;					\
		}							\
	} while (0)

#endif /* NINJA_TEST_NINJA_CHECK_H */
