/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * test_ninja_reg.c - the registration table of btl/ninja's RDMA emulation
 * (btl_ninja_reg.c): ranges, access, owner, deregistration, bound, keys.
 */
#include <stdio.h>
#include <stdlib.h>

#include "btl_ninja_reg.h"
#include "test_ninja_check.h"

int main(void)
{
	ninja_reg_table_t t;
	ninja_reg_t *a, *b, *r[3];
	uint64_t old, key;
	int peer1, peer2, i;

	CHECK(ninja_reg_init(&t, 4) == 0);
	a = ninja_reg_add(&t, 0x10000, 4096, NINJA_REG_WRITE, &peer1);
	b = ninja_reg_add(&t, 0x20000, 100, NINJA_REG_READ, NULL);
	CHECK(a && b);
	if (!a || !b)
		return 1;
	/* Keys: random, nonzero, not the address, distinct. */
	CHECK(a->key && b->key && a->key != b->key);
	CHECK(a->key != 0x10000 && b->key != 0x20000);
	/* Inside, at both ends. */
	CHECK(ninja_reg_check(&t, a->key, 0x10000, 4096, NINJA_REG_WRITE, &peer1) == a);
	CHECK(ninja_reg_check(&t, a->key, 0x10fff, 1, NINJA_REG_WRITE, &peer1) == a);
	CHECK(ninja_reg_check(&t, a->key, 0x10800, 0, NINJA_REG_WRITE, &peer1) == a);
	/* Outside: before, after, straddling, wrapping, 0x10. */
	CHECK(!ninja_reg_check(&t, a->key, 0xffff, 2, NINJA_REG_WRITE, &peer1));
	CHECK(!ninja_reg_check(&t, a->key, 0x10000, 4097, NINJA_REG_WRITE, &peer1));
	CHECK(!ninja_reg_check(&t, a->key, 0x11000, 1, NINJA_REG_WRITE, &peer1));
	CHECK(!ninja_reg_check(&t, a->key, 0x10001, UINT64_MAX, NINJA_REG_WRITE, &peer1));
	CHECK(!ninja_reg_check(&t, a->key, UINT64_MAX, 2, NINJA_REG_WRITE, &peer1));
	CHECK(!ninja_reg_check(&t, a->key, 0x10, 16, NINJA_REG_WRITE, &peer1));
	/* Wrong access, wrong peer; an unbound region serves any peer. */
	CHECK(!ninja_reg_check(&t, a->key, 0x10000, 8, NINJA_REG_READ, &peer1));
	CHECK(!ninja_reg_check(&t, a->key, 0x10000, 8, NINJA_REG_WRITE, &peer2));
	CHECK(ninja_reg_check(&t, b->key, 0x20000, 100, NINJA_REG_READ, &peer2) == b);
	CHECK(!ninja_reg_check(&t, b->key, 0x20000, 100, NINJA_REG_WRITE, &peer2));
	/* Unknown keys: 0, the address, a neighbour of a real key. */
	CHECK(!ninja_reg_check(&t, 0, 0x20000, 1, NINJA_REG_READ, NULL));
	CHECK(!ninja_reg_check(&t, 0x20000, 0x20000, 1, NINJA_REG_READ, NULL));
	CHECK(!ninja_reg_find(&t, b->key + 1) || b->key + 1 == a->key);
	/* Deregistration invalidates the key: a late put is refused. */
	old = a->key;
	ninja_reg_remove(&t, a);
	CHECK(!ninja_reg_find(&t, old));
	CHECK(!ninja_reg_check(&t, old, 0x10000, 8, NINJA_REG_WRITE, &peer1));
	/* The entry comes back with another key. */
	a = ninja_reg_add(&t, 0x10000, 4096, NINJA_REG_WRITE, &peer1);
	CHECK(a && a->key != old);
	CHECK(!ninja_reg_check(&t, old, 0x10000, 8, NINJA_REG_WRITE, &peer1));
	/* Bounded: 4 at once, the fifth is refused, one freed makes room. */
	r[0] = ninja_reg_add(&t, 0x30000, 8, NINJA_REG_READ, NULL);
	r[1] = ninja_reg_add(&t, 0x40000, 8, NINJA_REG_READ, NULL);
	r[2] = ninja_reg_add(&t, 0x50000, 8, NINJA_REG_READ, NULL);
	CHECK(r[0] && r[1] && r[2] == NULL && t.count == 4 && t.n_full == 1);
	ninja_reg_remove(&t, b);
	CHECK(t.count == 3);
	r[2] = ninja_reg_add(&t, 0x50000, 8, NINJA_REG_READ, NULL);
	CHECK(r[2] != NULL && t.count == 4);
	ninja_reg_fini(&t);
	/* Many keys, all found, all distinct, across several refills. */
	CHECK(ninja_reg_init(&t, 1000) == 0);
	for (i = 0; i < 1000; i++) {
		ninja_reg_t *x = ninja_reg_add(&t, (uint64_t)i << 12, 4096,
					       NINJA_REG_READ, NULL);

		CHECK(x != NULL);
		if (!x)
			break;
		key = x->key;
		CHECK(ninja_reg_find(&t, key) == x);
	}
	CHECK(t.count == 1000);
	ninja_reg_fini(&t);
	if (failures)
		fprintf(stderr, "test_ninja_reg: %d failure(s)\n", failures);
	else
		printf("test_ninja_reg: all passed\n");
	return failures ? 1 : 0;
}
