// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fuzz_proto.c - libFuzzer harness of the line protocol parser
 * (common/ninja_proto.c): the input is a byte stream as a node, a rank or
 * a host reads it.  It goes through ninja_parse() line by line, through
 * ninja_lineq_push() in uneven pieces, and every line that parses is
 * queried like the programs do (ninja_msg_get, ninja_msg_get_u64).
 * Invariants checked: consumption is bounded and progresses, tokens
 * point inside the line, a parsed message has sane fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ninja_proto.h"

static const char *const keys[] = {
	"epoch", "ranks", "phase", "pid", "rail", "rails", "job", "rank",
	"slot", "version", "cancelled", "",
};

static void query(const char *line, size_t len, const struct ninja_msg *m)
{
	size_t i, vlen;
	uint64_t v;
	int k;

	if (m->ntok < 1 || m->ntok > NINJA_MAX_TOKS || m->npos > m->ntok + 1 ||
	    m->verb <= NINJA_V_NONE || m->verb >= NINJA_V_COUNT)
		abort();
	for (k = 0; k < m->ntok; k++)
		if (m->tok[k].p < line || m->tok[k].len == 0 ||
		    m->tok[k].p + m->tok[k].len > line + len)
			abort();
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *p = ninja_msg_get(m, keys[i], &vlen);

		if (p && (p < line || p + vlen > line + len))
			abort();
		ninja_msg_get_u64(m, keys[i], &v);
	}
	(void)ninja_verb_name(m->verb);
}

static void on_line(void *ctx, const char *line, size_t len, int err)
{
	struct ninja_msg m;
	int r;

	(*(size_t *)ctx)++;
	if (len >= NINJA_LINE_MAX)
		abort();
	if (err != NINJA_OK && err != NINJA_ETOOLONG)
		abort();
	r = ninja_parse_line(line, len, &m);
	if (r == 0)
		query(line, len, &m);
	(void)ninja_err_name(-r);
	(void)ninja_strerror(-r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	static struct ninja_lineq q;
	struct ninja_msg m;
	size_t off = 0, lines = 0, i, step;
	uint64_t v;

	/* The stream parser: every call consumes a line or waits. */
	while (off < size) {
		int err = -1;
		size_t used = ninja_parse(buf + off, size - off, &m, &err);

		if (used > NINJA_LINE_MAX || used > size - off)
			abort();
		if (used == 0) {
			if (size - off >= NINJA_LINE_MAX || err != NINJA_OK)
				abort();
			break;
		}
		if (err == NINJA_OK && buf[off + used - 1] == '\n')
			query(buf + off, used, &m);
		off += used;
	}
	/* The line assembler, fed in pieces of a size taken from the data. */
	ninja_lineq_init(&q);
	step = size ? (size_t)data[0] % 7 + 1 : 1;
	for (i = 0; i < size; i += step)
		ninja_lineq_push(&q, buf + i, size - i < step ? size - i : step,
				 on_line, &lines);
	/* Decimal slices of every length at every offset up to 24 bytes. */
	for (i = 0; i < size && i < 24; i++)
		ninja_parse_u64(buf + i, size - i < 24 ? size - i : 24, &v);
	return 0;
}
