// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fuzz_agg.c - libFuzzer harness of the node aggregator
 * (common/ninja_agg.c): the input is a sequence of lines as a node
 * receives them, each prefixed by who sends it:
 *
 *   H<line>     from the host              o        a rank connects
 *   0..7<line>  from the rank in slot N    cN       slot N disconnects
 *   eN          slot N hit a read error    E        the host hit one
 *
 * Anything else is a host line as is.  Every line the aggregator emits
 * must end in '\n', fit in NINJA_LINE_MAX and parse (ninja_parse_line);
 * the counts it keeps must add up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ninja_agg.h"

#define SLOTS 8

static void check_line(const char *line, size_t len)
{
	struct ninja_msg m;

	if (len < 2 || len > NINJA_LINE_MAX || line[len - 1] != '\n')
		abort();
	if (ninja_parse_line(line, len - 1, &m) != 0)
		abort();
}

/* The slot table (the agent grows its own; a fixed one here). */
#define FUZZ_AGG_SLOTS	256

static void to_rank(void *ctx, int slot, const char *line, size_t len)
{
	(void)ctx;
	if (slot != NINJA_AGG_ALL && (slot < 0 || slot >= FUZZ_AGG_SLOTS))
		abort();
	check_line(line, len);
}

static void to_host(void *ctx, const char *line, size_t len)
{
	(void)ctx;
	check_line(line, len);
}

static const struct ninja_agg_ops ops = { to_rank, to_host };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ninja_agg a;
	static struct ninja_agg_rank slots[FUZZ_AGG_SLOTS];
	const char *p = (const char *)data, *end = p + size;
	bool open[SLOTS] = { false };
	char status[1024];
	unsigned int i, total;

	ninja_agg_init(&a, &ops, NULL);
	ninja_agg_set_slots(&a, slots, FUZZ_AGG_SLOTS);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		int slot;

		if (len >= 1 && p[0] >= '0' && p[0] < '0' + SLOTS) {
			slot = p[0] - '0';
			if (open[slot])
				ninja_agg_rank_line(&a, slot, p + 1, len - 1);
		} else if (len >= 1 && p[0] == 'H') {
			ninja_agg_host_line(&a, p + 1, len - 1);
		} else if (len == 1 && p[0] == 'o') {
			slot = ninja_agg_open(&a);
			if (slot >= SLOTS)
				ninja_agg_close(&a, slot);
			else if (slot >= 0)
				open[slot] = true;
		} else if (len == 2 && p[0] == 'c' && p[1] >= '0' &&
			   p[1] < '0' + SLOTS) {
			ninja_agg_close(&a, p[1] - '0');
			open[p[1] - '0'] = false;
		} else if (len == 2 && p[0] == 'e' && p[1] >= '0' &&
			   p[1] < '0' + SLOTS) {
			if (open[p[1] - '0'])
				ninja_agg_rank_error(&a, p[1] - '0',
						     NINJA_ETOOLONG);
		} else if (len == 1 && p[0] == 'E') {
			ninja_agg_host_error(&a, NINJA_ETOOLONG);
		} else {
			ninja_agg_host_line(&a, p, len);
		}
		if (a.phase >= NINJA_PH_COUNT)
			abort();
		total = 0;
		for (i = NINJA_RS_UNREG; i < NINJA_RS_COUNT; i++)
			total += ninja_agg_count(&a, (enum ninja_rank_state)i);
		for (i = 0, slot = 0; i < SLOTS; i++)
			slot += open[i];
		if (total != (unsigned int)slot)
			abort();
		if (ninja_agg_status(&a, status, sizeof(status)) < 0)
			abort();
		p += len + (nl ? 1 : 0);
	}
	(void)ninja_agg_errors(&a);
	return 0;
}
