// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * test_agg.c - unit tests of the node aggregation state machine
 * (ninja_agg.c): every emitted line is captured and compared exactly.
 */
#include <stdlib.h>
#include "ninja_agg.h"
#include "ninja_test.h"

#define CAP_MAX		1024

/* One captured line: to the host (slot -2), a slot, or NINJA_AGG_ALL. */
struct cap_line {
	int to;
	char s[NINJA_LINE_MAX + 1];
};

struct cap {
	int n, rd_host, rd_rank;
	unsigned int bad;	/* emitted lines that are not valid protocol */
	struct cap_line l[CAP_MAX];
};

#define TO_HOST (-2)

static struct cap cap;
static struct ninja_agg agg;
/* The slot array of most tests (the agent grows its own: test_grow). */
#define TEST_SLOTS	256
static struct ninja_agg_rank slots[TEST_SLOTS];

static void cap_add(int to, const char *line, size_t len)
{
	struct ninja_msg m;

	/* Every emitted line: '\n'-terminated, not too long, parseable. */
	if (len == 0 || len > NINJA_LINE_MAX || line[len - 1] != '\n' ||
	    memchr(line, '\n', len - 1) ||
	    ninja_parse_line(line, len - 1, &m) != 0) {
		cap.bad++;
		printf("  invalid emitted line to %d: \"%.*s\"\n", to,
		       (int)len, line);
	}
	if (cap.n == CAP_MAX)
		return;
	cap.l[cap.n].to = to;
	memcpy(cap.l[cap.n].s, line, len - (len > 0));
	cap.l[cap.n].s[len - (len > 0)] = '\0';
	cap.n++;
}

static void cb_rank(void *ctx, int slot, const char *line, size_t len)
{
	CHECK(ctx == &cap);
	CHECK(slot == NINJA_AGG_ALL ||
	      (slot >= 0 && (unsigned int)slot < agg.nslots));
	cap_add(slot, line, len);
}

static void cb_host(void *ctx, const char *line, size_t len)
{
	CHECK(ctx == &cap);
	cap_add(TO_HOST, line, len);
}

static const struct ninja_agg_ops ops = {
	.to_rank = cb_rank,
	.to_host = cb_host,
};

static void reset(void)
{
	memset(&cap, 0, sizeof(cap));
	ninja_agg_init(&agg, &ops, &cap);
	CHECK_INT(ninja_agg_set_slots(&agg, slots, TEST_SLOTS), 0);
}

/* Next unread line for the host, or NULL. */
static const char *host_next(void)
{
	while (cap.rd_host < cap.n) {
		const struct cap_line *l = &cap.l[cap.rd_host++];

		if (l->to == TO_HOST)
			return l->s;
	}
	return NULL;
}

/* Next unread line for a rank slot (or ALL); *to gets the slot. */
static const char *rank_next(int *to)
{
	while (cap.rd_rank < cap.n) {
		const struct cap_line *l = &cap.l[cap.rd_rank++];

		if (l->to != TO_HOST) {
			*to = l->to;
			return l->s;
		}
	}
	return NULL;
}

#define HOST(want) CHECK_STR(host_next(), want)
#define NO_HOST() CHECK_STR(host_next() ? "(a line)" : "(none)", "(none)")
#define RANK(slot, want)						\
	do {								\
		int to_ = -99;						\
		const char *s_ = rank_next(&to_);			\
		CHECK_INT(to_, slot);					\
		CHECK_STR(s_, want);					\
	} while (0)
#define NO_RANK()							\
	do {								\
		int to_;						\
		CHECK_STR(rank_next(&to_) ? "(a line)" : "(none)", "(none)"); \
	} while (0)
/* The next host line starts with a prefix (ERR lines carry prose). */
#define HOST_PREFIX(want)						\
	do {								\
		const char *s_ = host_next();				\
		if (!CHECK(s_ && strncmp(s_, want, strlen(want)) == 0))	\
			printf("    got \"%s\", want \"%s...\"\n",	\
			       s_ ? s_ : "(null)", want);		\
	} while (0)
#define RANK_PREFIX(slot, want)						\
	do {								\
		int to_ = -99;						\
		const char *s_ = rank_next(&to_);			\
		CHECK_INT(to_, slot);					\
		if (!CHECK(s_ && strncmp(s_, want, strlen(want)) == 0))	\
			printf("    got \"%s\", want \"%s...\"\n",	\
			       s_ ? s_ : "(null)", want);		\
	} while (0)

static int hl(const char *s)
{
	return ninja_agg_host_line(&agg, s, strlen(s));
}

static int rl(int slot, const char *s)
{
	return ninja_agg_rank_line(&agg, slot, s, strlen(s));
}

/* Open a slot and register "job" rank r; consume the OK line. */
static int reg(const char *job, unsigned int r)
{
	char buf[64];
	int slot = ninja_agg_open(&agg);

	snprintf(buf, sizeof(buf), "REGISTER %s %u pid=%u", job, r, 1000 + r);
	CHECK_INT(rl(slot, buf), 0);
	RANK_PREFIX(slot, "OK REGISTER slot=");
	return slot;
}

static const char *status(void)
{
	static char buf[NINJA_LINE_MAX];
	int n = ninja_agg_status(&agg, buf, sizeof(buf));

	CHECK(n > 0 && buf[n - 1] == '\n');
	buf[n - 1] = '\0';
	return buf;
}

static void test_register(void)
{
	int s0, s1;

	nt_group("register");
	reset();
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), 0);
	s0 = ninja_agg_open(&agg);
	CHECK_INT(s0, 0);
	CHECK_INT(agg.ranks[0].state, NINJA_RS_UNREG);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), 0);
	CHECK_INT(rl(s0, "REGISTER 4711 3 pid=1234"), 0);
	RANK(0, "OK REGISTER slot=0 epoch=0 phase=running version=1");
	NO_HOST();
	CHECK_INT(agg.ranks[0].state, NINJA_RS_RUNNING);
	CHECK_INT(agg.ranks[0].rank, 3);
	CHECK_INT(agg.ranks[0].pid, 1234);
	CHECK_INT(agg.ranks[0].joblen, 4);
	CHECK(memcmp(agg.ranks[0].job, "4711", 4) == 0);
	CHECK_INT(agg.n_register, 1);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), 1);
	/* Registering twice on one connection is an error. */
	CHECK_INT(rl(s0, "REGISTER 4711 4"), -NINJA_EDUP);
	RANK_PREFIX(0, "ERR duplicate ");
	CHECK_INT(agg.ranks[0].rank, 3);
	CHECK_INT(agg.n_err[NINJA_EDUP], 1);
	/* Anything but REGISTER (and ERR) before REGISTER is refused. */
	s1 = ninja_agg_open(&agg);
	CHECK_INT(s1, 1);
	CHECK_INT(rl(s1, "SAFE 1"), -NINJA_EUNREG);
	RANK_PREFIX(1, "ERR not-registered ");
	CHECK_INT(rl(s1, "RESUMED 1 rail=tcp"), -NINJA_EUNREG);
	RANK_PREFIX(1, "ERR not-registered ");
	CHECK_INT(rl(s1, ""), 0);		/* blank lines are ignored */
	CHECK_INT(rl(s1, "ERR bad-args from a rank"), 0);
	CHECK_INT(agg.n_rank_err, 1);
	NO_RANK();
	/* Lines for a slot that is not open are dropped silently. */
	CHECK_INT(rl(7, "REGISTER j 1"), -NINJA_EUNREG);
	CHECK_INT(rl(-1, "REGISTER j 1"), -NINJA_EUNREG);
	CHECK_INT(rl(TEST_SLOTS, "REGISTER j 1"), -NINJA_EUNREG);
	NO_RANK();
	/* pid is optional, a bad one is ignored. */
	CHECK_INT(rl(s1, "REGISTER 4711 5 pid=x"), 0);
	RANK(1, "OK REGISTER slot=1 epoch=0 phase=running version=1");
	CHECK_INT(agg.ranks[1].pid, 0);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), 2);
	ninja_agg_close(&agg, s0);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), 1);
	CHECK_INT(agg.n_gone, 1);
	NO_HOST();			/* nobody cares while running */
	/* A freed slot is reused. */
	CHECK_INT(ninja_agg_open(&agg), 0);
	CHECK(cap.bad == 0);
}

static void test_quiesce_safe(void)
{
	int s[3], i;

	nt_group("QUIESCE -> SAFE only after the last rank");
	reset();
	for (i = 0; i < 3; i++)
		s[i] = reg("77", i);
	CHECK_INT(hl("QUIESCE 1"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	NO_RANK();
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(agg.epoch, 1);
	CHECK_INT(agg.n_quiesce, 1);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_DRAINING), 3);
	CHECK_STR(status(), "STATUS epoch=1 phase=quiescing ranks=3 draining=3 safe=0 resuming=0 cancelled=0 errors=0");
	CHECK_INT(rl(s[2], "SAFE 1"), 0);
	NO_HOST();
	CHECK_INT(rl(s[0], "SAFE 1 drain_us=5"), 0);
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_SAFE), 2);
	CHECK_INT(rl(s[1], "SAFE 1"), 0);
	HOST("SAFE 1 ranks=3");
	NO_HOST();
	NO_RANK();
	CHECK_INT(agg.phase, NINJA_PH_SAFE);
	CHECK_STR(status(), "STATUS epoch=1 phase=safe ranks=3 draining=0 safe=3 resuming=0 cancelled=0 errors=0");

	nt_group("RESUME -> RESUMED with a REPORT per rank");
	CHECK_INT(hl("RESUME 1 rails=tcp"), 0);
	RANK(NINJA_AGG_ALL, "RESUME 1 rails=tcp");
	CHECK_INT(agg.phase, NINJA_PH_RESUMING);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_RESUMING), 3);
	CHECK_INT(agg.n_resume, 1);
	CHECK_INT(rl(s[0], "RESUMED 1 rail=tcp drain_us=10 teardown_us=2 wait_us=300 rediscover_us=4 reconnect_us=50"), 0);
	HOST("REPORT 1 job=77 rank=0 rail=tcp drain_us=10 teardown_us=2 wait_us=300 rediscover_us=4 reconnect_us=50");
	NO_HOST();
	CHECK_INT(rl(s[1], "RESUMED 1"), 0);
	HOST("REPORT 1 job=77 rank=1");
	CHECK_INT(rl(s[2], "RESUMED 1 rail=verbs"), 0);
	HOST("REPORT 1 job=77 rank=2 rail=verbs");
	HOST("RESUMED 1 ranks=3 cancelled=0");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_RUNNING), 3);
	/* A second RESUMED from a rank is a duplicate. */
	CHECK_INT(rl(s[2], "RESUMED 1 rail=verbs"), -NINJA_EDUP);
	RANK_PREFIX(s[2], "ERR duplicate ");
	NO_HOST();

	nt_group("UPGRADED -> REPORT event=upgraded, no state change");
	CHECK_INT(rl(s[0], "UPGRADED 1 rail=verbs from=tcp conns=2 verbs=2 stall_us=640"), 0);
	HOST("REPORT 1 job=77 rank=0 event=upgraded rail=verbs from=tcp conns=2 verbs=2 stall_us=640");
	NO_RANK();
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_RUNNING), 3);
	/* Epoch 0 (the rank never drained): the node's epoch. */
	CHECK_INT(rl(s[1], "UPGRADED 0 rail=verbs"), 0);
	HOST("REPORT 1 job=77 rank=1 event=upgraded rail=verbs");
	/* Repeats are fine (more connections upgraded later). */
	CHECK_INT(rl(s[1], "UPGRADED 1 rail=verbs verbs=3"), 0);
	HOST("REPORT 1 job=77 rank=1 event=upgraded rail=verbs verbs=3");
	NO_HOST();
	CHECK(cap.bad == 0);
}

static void test_upgraded_edges(void)
{
	int s0, s1;

	nt_group("UPGRADED: before the first epoch, unregistered, from the host");
	reset();
	s0 = ninja_agg_open(&agg);
	s1 = ninja_agg_open(&agg);
	CHECK_INT(rl(s0, "REGISTER j 0"), 0);
	RANK_PREFIX(s0, "OK REGISTER ");
	/* No epoch yet: nobody to report to, silently dropped. */
	CHECK_INT(rl(s0, "UPGRADED 0 rail=verbs"), 0);
	NO_HOST();
	NO_RANK();
	CHECK_INT(rl(s1, "UPGRADED 1 rail=verbs"), -NINJA_EUNREG);
	RANK_PREFIX(s1, "ERR not-registered ");
	NO_HOST();
	CHECK(hl("UPGRADED 1 rail=verbs") < 0);
	HOST_PREFIX("ERR not-allowed ");
	/* During a drain: forwarded, the drain goes on. */
	CHECK_INT(hl("QUIESCE 4"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 4");
	CHECK_INT(rl(s0, "UPGRADED 3 rail=verbs"), 0);
	HOST("REPORT 3 job=j rank=0 event=upgraded rail=verbs");
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(rl(s0, "SAFE 4"), 0);
	HOST("SAFE 4 ranks=1");
}

static void test_dup_stale(void)
{
	int s[2];
	uint64_t errs;

	nt_group("duplicate SAFE");
	reset();
	s[0] = reg("j", 0);
	s[1] = reg("j", 1);
	hl("QUIESCE 3");
	RANK(NINJA_AGG_ALL, "QUIESCE 3");
	CHECK_INT(rl(s[0], "SAFE 3"), 0);
	errs = ninja_agg_errors(&agg);
	CHECK_INT(rl(s[0], "SAFE 3"), -NINJA_EDUP);
	RANK(s[0], "ERR duplicate duplicate answer for this epoch: SAFE (epoch 3, phase quiescing)");
	CHECK_INT(agg.n_err[NINJA_EDUP], 1);
	CHECK_INT(ninja_agg_errors(&agg), errs + 1);
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(agg.ranks[s[0]].state, NINJA_RS_SAFE);
	CHECK_INT(agg.ranks[s[1]].state, NINJA_RS_DRAINING);
	NO_HOST();
	CHECK_INT(rl(s[1], "SAFE 3"), 0);
	HOST("SAFE 3 ranks=2");
	/* Duplicate after the node is SAFE: still only an error. */
	CHECK_INT(rl(s[1], "SAFE 3"), -NINJA_EDUP);
	RANK_PREFIX(s[1], "ERR duplicate ");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_SAFE);
	CHECK_INT(agg.n_err[NINJA_EDUP], 2);

	nt_group("stale-epoch SAFE");
	CHECK_INT(rl(s[0], "SAFE 2"), -NINJA_ESTALE);
	RANK(s[0], "ERR stale-epoch epoch is not the current one: SAFE (epoch 3, phase safe)");
	CHECK_INT(rl(s[0], "SAFE 4"), -NINJA_ESTALE);
	RANK_PREFIX(s[0], "ERR stale-epoch ");
	CHECK_INT(rl(s[0], "SAFE 0"), -NINJA_ENUM);
	RANK_PREFIX(s[0], "ERR bad-number ");
	CHECK_INT(agg.n_err[NINJA_ESTALE], 2);
	CHECK_INT(agg.n_err[NINJA_ENUM], 1);
	CHECK_INT(agg.phase, NINJA_PH_SAFE);
	NO_HOST();
	/* SAFE while running (no drain requested) is a state error. */
	hl("RESUME 3");
	RANK(NINJA_AGG_ALL, "RESUME 3");
	rl(s[0], "RESUMED 3");
	rl(s[1], "RESUMED 3");
	HOST("REPORT 3 job=j rank=0");
	HOST("REPORT 3 job=j rank=1");
	HOST("RESUMED 3 ranks=2 cancelled=0");
	CHECK_INT(rl(s[0], "SAFE 3"), -NINJA_ESTATE);
	RANK_PREFIX(s[0], "ERR bad-state ");
	CHECK_INT(rl(s[0], "RESUMED 2"), -NINJA_ESTALE);
	RANK_PREFIX(s[0], "ERR stale-epoch ");
	CHECK_STR(status(), "STATUS epoch=3 phase=running ranks=2 draining=0 safe=0 resuming=0 cancelled=0 errors=7");

	nt_group("out-of-order epochs from the host");
	CHECK_INT(hl("QUIESCE 2"), -NINJA_ESTALE);	/* older than current */
	HOST("ERR stale-epoch epoch is not the current one: QUIESCE needs a newer epoch (epoch 3, phase running)");
	CHECK_INT(hl("QUIESCE 3"), -NINJA_ESTALE);	/* finished epoch */
	HOST_PREFIX("ERR stale-epoch ");
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);
	NO_RANK();
	CHECK_INT(hl("QUIESCE 10"), 0);			/* epochs may jump */
	RANK(NINJA_AGG_ALL, "QUIESCE 10");
	CHECK_INT(agg.epoch, 10);
	CHECK_INT(hl("QUIESCE 9"), -NINJA_ESTATE);	/* while quiescing */
	HOST_PREFIX("ERR bad-state ");
	CHECK_INT(hl("QUIESCE 11"), -NINJA_ESTATE);
	HOST_PREFIX("ERR bad-state request not valid in the current phase: another epoch is in progress");
	CHECK_INT(hl("RESUME 9"), -NINJA_ESTALE);
	HOST_PREFIX("ERR stale-epoch ");
	CHECK_INT(hl("CANCEL 11"), -NINJA_ESTALE);
	HOST_PREFIX("ERR stale-epoch ");
	CHECK_INT(agg.epoch, 10);
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	NO_RANK();
	NO_HOST();
	CHECK(cap.bad == 0);
}

static void test_resume_cancel(void)
{
	int s[3], i;

	nt_group("RESUME before every rank is SAFE");
	reset();
	for (i = 0; i < 3; i++)
		s[i] = reg("j", i);
	hl("QUIESCE 1");
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	rl(s[0], "SAFE 1");
	CHECK_INT(hl("RESUME 1"), -NINJA_ESTATE);
	HOST("ERR bad-state request not valid in the current phase: RESUME before every rank is SAFE (use CANCEL) (epoch 1, phase quiescing)");
	NO_RANK();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(agg.n_resume, 0);
	CHECK_INT(agg.ranks[s[0]].state, NINJA_RS_SAFE);

	nt_group("CANCEL while quiescing");
	CHECK_INT(hl("CANCEL 1 reason=deadline"), 0);
	RANK(NINJA_AGG_ALL, "CANCEL 1 reason=deadline");
	CHECK_INT(agg.phase, NINJA_PH_RESUMING);
	CHECK_INT(agg.cancelled, 1);
	CHECK_INT(agg.n_cancel, 1);
	/* SAFE and draining ranks alike are told to resume. */
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_RESUMING), 3);
	/* A SAFE that crosses the CANCEL is ignored, no state change. */
	CHECK_INT(rl(s[1], "SAFE 1"), 0);
	NO_RANK();
	CHECK_INT(agg.ranks[s[1]].state, NINJA_RS_RESUMING);
	CHECK_STR(status(), "STATUS epoch=1 phase=resuming ranks=3 draining=0 safe=0 resuming=3 cancelled=1 errors=1");
	for (i = 0; i < 3; i++)
		CHECK_INT(rl(s[i], "RESUMED 1 rail=tcp"), 0);
	HOST("REPORT 1 job=j rank=0 rail=tcp");
	HOST("REPORT 1 job=j rank=1 rail=tcp");
	HOST("REPORT 1 job=j rank=2 rail=tcp");
	HOST("RESUMED 1 ranks=3 cancelled=1");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);

	nt_group("CANCEL after SAFE, next epoch clears cancelled");
	hl("QUIESCE 2");
	RANK(NINJA_AGG_ALL, "QUIESCE 2");
	CHECK_INT(agg.cancelled, 0);
	for (i = 0; i < 3; i++)
		rl(s[i], "SAFE 2");
	HOST("SAFE 2 ranks=3");
	CHECK_INT(hl("CANCEL 2"), 0);
	RANK(NINJA_AGG_ALL, "CANCEL 2");
	for (i = 0; i < 3; i++)
		rl(s[i], "RESUMED 2");
	HOST("REPORT 2 job=j rank=0");
	HOST("REPORT 2 job=j rank=1");
	HOST("REPORT 2 job=j rank=2");
	HOST("RESUMED 2 ranks=3 cancelled=1");
	NO_HOST();
	CHECK(cap.bad == 0);
}

static void test_dead_ranks(void)
{
	int s[3], i;

	nt_group("rank closed mid-drain -> SAFE");
	reset();
	for (i = 0; i < 3; i++)
		s[i] = reg("j", i);
	hl("QUIESCE 1");
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	rl(s[0], "SAFE 1");
	rl(s[2], "SAFE 1");
	NO_HOST();
	ninja_agg_close(&agg, s[1]);
	HOST("REPORT 1 job=j rank=1 state=gone was=draining");
	HOST("SAFE 1 ranks=2");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_SAFE);
	CHECK_INT(agg.n_gone, 1);

	nt_group("rank closed while SAFE and while resuming");
	ninja_agg_close(&agg, s[2]);
	HOST("REPORT 1 job=j rank=2 state=gone was=safe");
	NO_HOST();			/* still SAFE, not said again */
	CHECK_INT(agg.phase, NINJA_PH_SAFE);
	s[1] = reg("j", 5);		/* (late register: see its own test) */
	HOST("UNSAFE 1 job=j rank=5");
	RANK(s[1], "QUIESCE 1");
	rl(s[1], "SAFE 1");
	HOST("SAFE 1 ranks=2");
	hl("RESUME 1");
	RANK(NINJA_AGG_ALL, "RESUME 1");
	rl(s[0], "RESUMED 1");
	HOST("REPORT 1 job=j rank=0");
	NO_HOST();
	/* The last pending rank dies: the node is resumed. */
	ninja_agg_close(&agg, s[1]);
	HOST("REPORT 1 job=j rank=5 state=gone was=resuming");
	HOST("RESUMED 1 ranks=1 cancelled=0");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);
	/* Closing an unregistered or unknown slot says nothing. */
	i = ninja_agg_open(&agg);
	ninja_agg_close(&agg, i);
	ninja_agg_close(&agg, i);
	ninja_agg_close(&agg, -1);
	ninja_agg_close(&agg, TEST_SLOTS);
	NO_HOST();
	CHECK_INT(agg.n_gone, 3);

	nt_group("every rank dies mid-drain -> SAFE ranks=0");
	reset();
	s[0] = reg("j", 0);
	hl("QUIESCE 4");
	RANK(NINJA_AGG_ALL, "QUIESCE 4");
	ninja_agg_close(&agg, s[0]);
	HOST("REPORT 4 job=j rank=0 state=gone was=draining");
	HOST("SAFE 4 ranks=0");
	CHECK(cap.bad == 0);
}

static void test_unsafe(void)
{
	int s[3], i;

	nt_group("rank resumes on its own after node SAFE -> UNSAFE");
	reset();
	for (i = 0; i < 2; i++)
		s[i] = reg("j", i);
	hl("QUIESCE 1");
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	rl(s[0], "SAFE 1");
	rl(s[1], "SAFE 1");
	HOST("SAFE 1 ranks=2");
	CHECK_INT(rl(s[1], "RESUMED 1 rail=tcp reason=timeout"), 0);
	HOST("REPORT 1 job=j rank=1 rail=tcp reason=timeout");
	HOST("UNSAFE 1 job=j rank=1");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(agg.ranks[s[1]].state, NINJA_RS_RUNNING);
	/* The node never claims SAFE again for this epoch on its own. */
	ninja_agg_close(&agg, s[0]);
	HOST("REPORT 1 job=j rank=0 state=gone was=safe");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_INT(hl("QUIESCE 1"), 0);		/* repeat: no change */
	NO_HOST();
	/*
	 * The host was told SAFE: its RESUME (which may have crossed the
	 * UNSAFE) is honoured; the running rank is not waited for.
	 */
	CHECK_INT(hl("RESUME 1"), 0);
	RANK(NINJA_AGG_ALL, "RESUME 1");
	HOST("RESUMED 1 ranks=1 cancelled=0");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);

	nt_group("rank resumes on its own before node SAFE -> never SAFE");
	reset();
	for (i = 0; i < 3; i++)
		s[i] = reg("j", i);
	hl("QUIESCE 2");
	RANK(NINJA_AGG_ALL, "QUIESCE 2");
	rl(s[0], "SAFE 2");
	CHECK_INT(rl(s[0], "RESUMED 2 reason=timeout"), 0);
	HOST("REPORT 2 job=j rank=0 reason=timeout");
	HOST("UNSAFE 2 job=j rank=0");
	rl(s[1], "SAFE 2");
	/* Ranks 1 and 2 SAFE, rank 0 running: the node is NOT safe. */
	CHECK_INT(rl(s[2], "SAFE 2"), 0);
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	CHECK_STR(status(), "STATUS epoch=2 phase=quiescing ranks=3 draining=0 safe=2 resuming=0 cancelled=0 errors=0");
	/* Never told SAFE: a RESUME is refused (CANCEL is the way out). */
	CHECK_INT(hl("RESUME 2"), -NINJA_ESTATE);
	HOST_PREFIX("ERR bad-state ");
	/* Nor after an unrelated rank goes away. */
	ninja_agg_close(&agg, s[2]);
	HOST("REPORT 2 job=j rank=2 state=gone was=safe");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	hl("CANCEL 2");
	RANK(NINJA_AGG_ALL, "CANCEL 2");
	rl(s[1], "RESUMED 2");
	HOST("REPORT 2 job=j rank=1");
	HOST("RESUMED 2 ranks=2 cancelled=1");
	NO_HOST();
	CHECK(cap.bad == 0);
}

static void test_late_register(void)
{
	int s[3];

	nt_group("late REGISTER while quiescing");
	reset();
	s[0] = reg("j", 0);
	hl("QUIESCE 5");
	RANK(NINJA_AGG_ALL, "QUIESCE 5");
	s[1] = ninja_agg_open(&agg);
	CHECK_INT(rl(s[1], "REGISTER j 1"), 0);
	RANK(s[1], "OK REGISTER slot=1 epoch=5 phase=quiescing version=1");
	RANK(s[1], "QUIESCE 5");
	NO_HOST();
	CHECK_INT(agg.ranks[s[1]].state, NINJA_RS_DRAINING);
	rl(s[0], "SAFE 5");
	NO_HOST();			/* the late rank is waited for */
	rl(s[1], "SAFE 5");
	HOST("SAFE 5 ranks=2");

	nt_group("late REGISTER while SAFE -> UNSAFE, then SAFE again");
	s[2] = ninja_agg_open(&agg);
	CHECK_INT(rl(s[2], "REGISTER j 2"), 0);
	RANK(s[2], "OK REGISTER slot=2 epoch=5 phase=safe version=1");
	RANK(s[2], "QUIESCE 5");
	HOST("UNSAFE 5 job=j rank=2");
	NO_HOST();
	CHECK_INT(agg.phase, NINJA_PH_QUIESCING);
	rl(s[2], "SAFE 5");
	HOST("SAFE 5 ranks=3");
	CHECK_INT(agg.phase, NINJA_PH_SAFE);

	nt_group("late REGISTER while resuming: runs at once");
	hl("RESUME 5");
	RANK(NINJA_AGG_ALL, "RESUME 5");
	s[0] = ninja_agg_open(&agg);	/* slot 3 */
	CHECK_INT(rl(s[0], "REGISTER j 3"), 0);
	RANK(s[0], "OK REGISTER slot=3 epoch=5 phase=resuming version=1");
	NO_RANK();
	CHECK_INT(agg.ranks[s[0]].state, NINJA_RS_RUNNING);
	rl(0, "RESUMED 5");
	rl(1, "RESUMED 5");
	rl(2, "RESUMED 5");
	HOST("REPORT 5 job=j rank=0");
	HOST("REPORT 5 job=j rank=1");
	HOST("REPORT 5 job=j rank=2");
	HOST("RESUMED 5 ranks=4 cancelled=0");
	NO_HOST();
	CHECK(cap.bad == 0);
}

static void test_idempotent(void)
{
	int s0;

	nt_group("repeated QUIESCE/RESUME/CANCEL after host reconnect");
	reset();
	s0 = reg("j", 0);
	hl("QUIESCE 1");
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	CHECK_INT(hl("QUIESCE 1"), 0);	/* still quiescing: nothing */
	NO_HOST();
	NO_RANK();
	CHECK_INT(agg.n_quiesce, 1);
	rl(s0, "SAFE 1");
	HOST("SAFE 1 ranks=1");
	CHECK_INT(hl("QUIESCE 1"), 0);	/* safe: said again */
	HOST("SAFE 1 ranks=1");
	NO_RANK();
	CHECK_INT(hl("HELLO 1 host"), 0);
	HOST("HELLO 1 node epoch=1 phase=safe ranks=1");
	CHECK_INT(hl("RESUME 1"), 0);
	RANK(NINJA_AGG_ALL, "RESUME 1");
	CHECK_INT(hl("RESUME 1"), 0);	/* resuming: nothing */
	CHECK_INT(hl("CANCEL 1"), 0);
	NO_RANK();
	NO_HOST();
	CHECK_INT(agg.n_resume, 1);
	CHECK_INT(agg.n_cancel, 0);
	rl(s0, "RESUMED 1 rail=tcp");
	HOST("REPORT 1 job=j rank=0 rail=tcp");
	HOST("RESUMED 1 ranks=1 cancelled=0");
	CHECK_INT(hl("RESUME 1"), 0);	/* done: result said again */
	HOST("RESUMED 1 ranks=1 cancelled=0");
	CHECK_INT(hl("CANCEL 1"), 0);	/* too late to cancel: same */
	HOST("RESUMED 1 ranks=1 cancelled=0");
	NO_RANK();
	CHECK_INT(agg.n_resume, 1);
	CHECK_INT(agg.n_cancel, 0);
	CHECK_INT(hl("QUIESCE 1"), -NINJA_ESTALE);
	HOST_PREFIX("ERR stale-epoch ");
	NO_RANK();
	CHECK(cap.bad == 0);
}

static void test_zero_full(void)
{
	int i, s;

	nt_group("0 ranks: immediate SAFE and RESUMED");
	reset();
	CHECK_INT(hl("QUIESCE 1"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	HOST("SAFE 1 ranks=0");
	CHECK_INT(agg.phase, NINJA_PH_SAFE);
	CHECK_INT(hl("RESUME 1"), 0);
	RANK(NINJA_AGG_ALL, "RESUME 1");
	HOST("RESUMED 1 ranks=0 cancelled=0");
	CHECK_INT(agg.phase, NINJA_PH_RUNNING);
	/* Unregistered connections do not count. */
	ninja_agg_open(&agg);
	CHECK_INT(hl("QUIESCE 2"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 2");
	HOST("SAFE 2 ranks=0");
	CHECK_INT(hl("CANCEL 2"), 0);
	RANK(NINJA_AGG_ALL, "CANCEL 2");
	HOST("RESUMED 2 ranks=0 cancelled=1");
	NO_HOST();

	nt_group("slot table full");
	reset();
	for (i = 0; i < TEST_SLOTS; i++) {
		s = ninja_agg_open(&agg);
		if (s != i)
			break;
	}
	CHECK_INT(i, TEST_SLOTS);
	CHECK_INT(ninja_agg_open(&agg), -NINJA_EFULL);
	CHECK_INT(agg.n_err[NINJA_EFULL], 1);
	CHECK_INT(ninja_agg_errors(&agg), 1);
	for (i = 0; i < TEST_SLOTS; i++) {
		char buf[48];

		snprintf(buf, sizeof(buf), "REGISTER big %d", i);
		if (rl(i, buf))
			break;
	}
	CHECK_INT(i, TEST_SLOTS);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), TEST_SLOTS);
	cap.rd_rank = cap.n;		/* skip the 256 OK lines */
	hl("QUIESCE 1");
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	for (i = 0; i < TEST_SLOTS; i++)
		rl(i, "SAFE 1");
	HOST("SAFE 1 ranks=256");
	NO_HOST();
	ninja_agg_close(&agg, 100);
	HOST("REPORT 1 job=big rank=100 state=gone was=safe");
	CHECK_INT(ninja_agg_open(&agg), 100);
	CHECK_INT(ninja_agg_open(&agg), -NINJA_EFULL);
	CHECK_INT(agg.n_err[NINJA_EFULL], 2);
	CHECK(cap.bad == 0);
}

/*
 * No fixed ceiling: the caller grows the slot array as ranks connect (as
 * ninja-agent does), far past the 256 slots of the old fixed table; the
 * ranks already there keep their state across every move.
 */
static void test_grow(void)
{
	enum { N = 1000 };
	struct ninja_agg_rank *big = NULL, *nb;
	unsigned int cap_slots = 0, grown = 0;
	char buf[64];
	int i, s;

	nt_group("slot table grows past the old 256");
	memset(&cap, 0, sizeof(cap));
	ninja_agg_init(&agg, &ops, &cap);
	CHECK_INT(ninja_agg_open(&agg), -NINJA_EFULL);	/* no slots yet */
	for (i = 0; i < N; i++) {
		s = ninja_agg_open(&agg);
		if (s == -NINJA_EFULL) {
			cap_slots = cap_slots ? 2 * cap_slots : 16;
			nb = realloc(big, cap_slots * sizeof(*big));
			if (!nb)
				break;
			big = nb;
			CHECK_INT(ninja_agg_set_slots(&agg, big, cap_slots), 0);
			grown++;
			s = ninja_agg_open(&agg);
		}
		if (s != i)
			break;
		snprintf(buf, sizeof(buf), "REGISTER big %d pid=%d", i, 1000 + i);
		if (rl(i, buf))
			break;
		cap.n = 0;		/* the OK lines are not the point */
	}
	CHECK_INT(i, N);
	CHECK_INT(grown, 7);		/* 16, 32, ..., 1024 */
	CHECK_INT(agg.nslots, 1024);
	/* Shrinking is refused; the table stays as it was. */
	CHECK_INT(ninja_agg_set_slots(&agg, big, 10), -NINJA_EARGS);
	CHECK_INT(agg.nslots, 1024);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_COUNT), N);
	CHECK_INT(agg.ranks[5].rank, 5);
	CHECK_INT(agg.ranks[5].pid, 1005);
	CHECK_INT(agg.ranks[999].rank, 999);
	memset(&cap, 0, sizeof(cap));
	hl("QUIESCE 1");
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	for (i = 0; i < N; i++)
		rl(i, "SAFE 1");
	HOST("SAFE 1 ranks=1000");
	NO_HOST();
	ninja_agg_close(&agg, 777);
	HOST("REPORT 1 job=big rank=777 state=gone was=safe");
	CHECK_INT(ninja_agg_open(&agg), 777);
	CHECK_INT(ninja_agg_open(&agg), N);
	CHECK(cap.bad == 0);
	free(big);
	/* Back to the fixed table for the tests that follow. */
	reset();
}

static void test_misc(void)
{
	char line[NINJA_LINE_MAX + 1];
	int s0, n;

	nt_group("HELLO and STATUS");
	reset();
	CHECK_INT(hl("HELLO 1 host"), 0);
	HOST("HELLO 1 node epoch=0 phase=running ranks=0");
	CHECK_INT(hl("HELLO 1 host\r"), 0);	/* CRLF from the host is fine */
	HOST("HELLO 1 node epoch=0 phase=running ranks=0");
	CHECK_INT(hl("HELLO 2 host"), -NINJA_EVERSION);
	HOST("ERR bad-version unsupported protocol version (epoch 0, phase running)");
	CHECK_INT(hl("STATUS"), 0);
	HOST("STATUS epoch=0 phase=running ranks=0 draining=0 safe=0 resuming=0 cancelled=0 errors=1");
	NO_RANK();

	nt_group("host errors");
	CHECK_INT(hl(""), 0);
	CHECK_INT(hl("   "), 0);
	NO_HOST();
	CHECK_INT(hl("FOO 1"), -NINJA_EVERB);
	HOST("ERR unknown-verb unknown verb (epoch 0, phase running)");
	CHECK_INT(hl("QUIESCE"), -NINJA_EARGS);
	HOST_PREFIX("ERR bad-args ");
	CHECK_INT(hl("QUIESCE 0"), -NINJA_ENUM);
	HOST_PREFIX("ERR bad-number ");
	CHECK_INT(hl("QUIESCE\t1"), -NINJA_ECHAR);
	HOST_PREFIX("ERR bad-char ");
	CHECK_INT(hl("SAFE 1"), -NINJA_EROLE);
	HOST("ERR not-allowed verb not allowed from this sender: SAFE (epoch 0, phase running)");
	CHECK_INT(hl("REGISTER j 1"), -NINJA_EROLE);
	HOST_PREFIX("ERR not-allowed ");
	CHECK_INT(hl("ERR x y"), -NINJA_EROLE);
	HOST_PREFIX("ERR not-allowed ");
	ninja_agg_host_error(&agg, NINJA_ETOOLONG);
	HOST_PREFIX("ERR too-long ");
	ninja_agg_host_error(&agg, -NINJA_ETOOLONG);
	HOST_PREFIX("ERR too-long ");
	ninja_agg_host_error(&agg, 999);	/* clamped to bad-args */
	HOST_PREFIX("ERR bad-args ");
	NO_HOST();
	NO_RANK();
	CHECK_INT(agg.n_err[NINJA_ETOOLONG], 2);

	nt_group("rank errors");
	s0 = reg("j", 0);
	CHECK_INT(rl(s0, "QUIESCE 1"), -NINJA_EROLE);
	RANK(s0, "ERR not-allowed verb not allowed from this sender: QUIESCE (epoch 0, phase running)");
	CHECK_INT(rl(s0, "HELLO 1 rank"), -NINJA_EROLE);
	RANK_PREFIX(s0, "ERR not-allowed ");
	CHECK_INT(rl(s0, "STATUS"), -NINJA_EROLE);
	RANK_PREFIX(s0, "ERR not-allowed ");
	CHECK_INT(rl(s0, "garbage"), -NINJA_EVERB);
	RANK_PREFIX(s0, "ERR unknown-verb ");
	CHECK_INT(rl(s0, "SAFE 1 x"), -NINJA_EARGS);
	RANK_PREFIX(s0, "ERR bad-args ");
	ninja_agg_rank_error(&agg, s0, NINJA_ETOOLONG);
	RANK_PREFIX(s0, "ERR too-long ");
	NO_HOST();
	NO_RANK();
	CHECK_INT(agg.ranks[s0].state, NINJA_RS_RUNNING);

	nt_group("EVENT and normalized forwarding");
	CHECK_INT(hl("EVENT 123 link-down dev=eth0"), 0);
	RANK(NINJA_AGG_ALL, "EVENT 123 link-down dev=eth0");
	CHECK_INT(hl("  QUIESCE   7   deadline_ms=5000  x=y "), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 7 deadline_ms=5000 x=y");
	CHECK_INT(rl(s0, "SAFE 7\r"), 0);	/* CRLF from a rank is fine */
	HOST("SAFE 7 ranks=1");
	NO_HOST();
	/* A maximal RESUME line is forwarded whole. */
	n = snprintf(line, sizeof(line), "RESUME 7 rails=");
	memset(line + n, 'r', NINJA_LINE_MAX - 1 - n);
	line[NINJA_LINE_MAX - 1] = '\0';
	CHECK_INT(hl(line), 0);
	RANK(NINJA_AGG_ALL, line);
	/* A maximal RESUMED cannot fit in its REPORT: k=v dropped, valid. */
	n = snprintf(line, sizeof(line), "RESUMED 7 rail=tcp pad=");
	memset(line + n, 'p', NINJA_LINE_MAX - 1 - n);
	line[NINJA_LINE_MAX - 1] = '\0';
	CHECK_INT(rl(s0, line), 0);
	HOST("REPORT 7 job=j rank=0 rail=tcp");
	HOST("RESUMED 7 ranks=1 cancelled=0");
	CHECK(cap.bad == 0);
}

/*
 * Issue 24: a rank still in MPI_Init registers while the node is SAFE; the
 * host's RESUME crosses the UNSAFE.  It is honoured: the SAFE rank and
 * the late, still draining one resume; the late rank's SAFE that crosses
 * the RESUME is no error; the next epoch works.
 */
static void test_resume_crosses_unsafe(void)
{
	int s[2];

	nt_group("RESUME crossing a late rank's UNSAFE is honoured");
	reset();
	s[0] = reg("j", 0);
	hl("QUIESCE 3");
	RANK(NINJA_AGG_ALL, "QUIESCE 3");
	rl(s[0], "SAFE 3");
	HOST("SAFE 3 ranks=1");
	s[1] = ninja_agg_open(&agg);
	CHECK_INT(rl(s[1], "REGISTER j 1"), 0);
	RANK(s[1], "OK REGISTER slot=1 epoch=3 phase=safe version=1");
	RANK(s[1], "QUIESCE 3");
	HOST("UNSAFE 3 job=j rank=1");
	CHECK_INT(hl("RESUME 3"), 0);
	RANK(NINJA_AGG_ALL, "RESUME 3");
	CHECK_INT(agg.phase, NINJA_PH_RESUMING);
	CHECK_INT(ninja_agg_count(&agg, NINJA_RS_RESUMING), 2);
	CHECK_INT(rl(s[1], "SAFE 3"), 0);	/* crossed the RESUME */
	NO_RANK();
	CHECK_INT(rl(s[0], "RESUMED 3"), 0);
	HOST("REPORT 3 job=j rank=0");
	NO_HOST();
	CHECK_INT(rl(s[1], "RESUMED 3"), 0);
	HOST("REPORT 3 job=j rank=1");
	HOST("RESUMED 3 ranks=2 cancelled=0");
	CHECK_STR(status(), "STATUS epoch=3 phase=running ranks=2 draining=0 safe=0 resuming=0 cancelled=0 errors=0");
	/* The next epoch: SAFE is required again before a RESUME. */
	hl("QUIESCE 4");
	RANK(NINJA_AGG_ALL, "QUIESCE 4");
	rl(s[0], "SAFE 4");
	CHECK_INT(hl("RESUME 4"), -NINJA_ESTATE);
	HOST_PREFIX("ERR bad-state ");
	rl(s[1], "SAFE 4");
	HOST("SAFE 4 ranks=2");
	CHECK(cap.bad == 0);
}

static void test_epoch_wrap(void)
{
	int s;

	nt_group("epoch sequence comparison");
	CHECK(ninja_epoch_after(2, 1));
	CHECK(!ninja_epoch_after(1, 2));
	CHECK(!ninja_epoch_after(5, 5));
	CHECK(ninja_epoch_after(1, 0));
	CHECK(!ninja_epoch_after(0, 1));
	CHECK(ninja_epoch_after(1, 0xffffffffu));
	CHECK(ninja_epoch_after(0x7ffffffeu, 0xffffffffu));
	CHECK(!ninja_epoch_after(0x7fffffffu, 0xffffffffu));
	CHECK(!ninja_epoch_after(0xffffffffu, 1));
	CHECK(ninja_epoch_after(0x80000000u, 1));
	CHECK(!ninja_epoch_after(0x80000001u, 1));
	CHECK_INT(ninja_epoch_next(0), 1);
	CHECK_INT(ninja_epoch_next(7), 8);
	CHECK_INT(ninja_epoch_next(0xffffffffu), 1);

	nt_group("epoch 4294967295, then 1: no exhausted epoch space");
	reset();
	s = reg("j", 0);
	CHECK_INT(hl("QUIESCE 4294967295"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 4294967295");
	CHECK_INT(rl(s, "SAFE 4294967295"), 0);
	HOST("SAFE 4294967295 ranks=1");
	CHECK_INT(hl("RESUME 4294967295"), 0);
	RANK(NINJA_AGG_ALL, "RESUME 4294967295");
	CHECK_INT(rl(s, "RESUMED 4294967295"), 0);
	HOST("REPORT 4294967295 job=j rank=0");
	HOST("RESUMED 4294967295 ranks=1 cancelled=0");
	CHECK_INT(hl("QUIESCE 4294967295"), -NINJA_ESTALE);
	HOST_PREFIX("ERR stale-epoch ");
	CHECK_INT(hl("QUIESCE 2147483647"), -NINJA_ESTALE);	/* half behind */
	HOST_PREFIX("ERR stale-epoch ");
	CHECK_INT(hl("QUIESCE 1"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 1");
	CHECK_INT(agg.epoch, 1);
	CHECK_INT(rl(s, "SAFE 1"), 0);
	HOST("SAFE 1 ranks=1");
	CHECK_INT(hl("CANCEL 1"), 0);
	RANK(NINJA_AGG_ALL, "CANCEL 1");
	CHECK_INT(rl(s, "RESUMED 1"), 0);
	HOST("REPORT 1 job=j rank=0");
	HOST("RESUMED 1 ranks=1 cancelled=1");
	CHECK_INT(hl("QUIESCE 2"), 0);
	RANK(NINJA_AGG_ALL, "QUIESCE 2");
	CHECK(cap.bad == 0);

	nt_group("per-user slot limit");
	reset();
	CHECK_INT(ninja_agg_open_uid(&agg, 1000, 2), 0);
	CHECK_INT(ninja_agg_open_uid(&agg, 1000, 2), 1);
	CHECK_INT(ninja_agg_open_uid(&agg, 1000, 2), -NINJA_EFULL);
	CHECK_INT(ninja_agg_open_uid(&agg, 1001, 2), 2);
	CHECK_INT(ninja_agg_open_uid(&agg, 0, 0), 3);
	ninja_agg_close(&agg, 0);
	CHECK_INT(ninja_agg_open_uid(&agg, 1000, 2), 0);
	CHECK_INT(agg.n_err[NINJA_EFULL], 1);
}

int main(void)
{
	test_epoch_wrap();
	test_register();
	test_quiesce_safe();
	test_dup_stale();
	test_resume_cancel();
	test_dead_ranks();
	test_unsafe();
	test_late_register();
	test_resume_crosses_unsafe();
	test_idempotent();
	test_zero_full();
	test_grow();
	test_misc();
	test_upgraded_edges();
	return nt_done();
}
