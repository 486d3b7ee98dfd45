/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * ninja_agg.h - per-node aggregation state machine: "every registered local
 * rank is SAFE".  Shared by kmod/ninja.ko and the user-space ninja-agent.
 *
 * The caller owns the transport and the locking: it feeds complete lines
 * from the host and from each rank connection (a "slot"), and the machine
 * answers through the two callbacks in struct ninja_agg_ops.  Callbacks are
 * invoked synchronously from inside ninja_agg_* calls, with the caller's
 * lock held, so they must only queue the line (never call back in).
 */
#ifndef NINJA_AGG_H
#define NINJA_AGG_H

#include "ninja_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* to_rank() slot meaning "every registered rank". */
#define NINJA_AGG_ALL		(-1)

enum ninja_phase {
	NINJA_PH_RUNNING = 0,	/* no migration in progress */
	NINJA_PH_QUIESCING,	/* QUIESCE sent, waiting for SAFE from all */
	NINJA_PH_SAFE,		/* every registered rank SAFE, host told */
	NINJA_PH_RESUMING,	/* RESUME/CANCEL sent, waiting for RESUMED */
	NINJA_PH_COUNT
};

enum ninja_rank_state {
	NINJA_RS_FREE = 0,	/* slot unused */
	NINJA_RS_UNREG,		/* connection open, no REGISTER yet */
	NINJA_RS_RUNNING,	/* registered, normal operation */
	NINJA_RS_DRAINING,	/* QUIESCE delivered, SAFE pending */
	NINJA_RS_SAFE,		/* answered SAFE for the current epoch */
	NINJA_RS_RESUMING,	/* RESUME/CANCEL delivered, RESUMED pending */
	NINJA_RS_COUNT
};

struct ninja_agg_rank {
	uint8_t state;		/* enum ninja_rank_state */
	uint8_t joblen;
	char job[NINJA_JOB_MAX];
	uint32_t rank;
	uint32_t pid;
	uint32_t uid;		/* owner of the connection (per-user limit) */
};

struct ninja_agg_ops {
	/* A line ('\n'-terminated) for one slot, or NINJA_AGG_ALL. */
	void (*to_rank)(void *ctx, int slot, const char *line, size_t len);
	/* A line ('\n'-terminated) for the host. */
	void (*to_host)(void *ctx, const char *line, size_t len);
};

struct ninja_agg {
	const struct ninja_agg_ops *ops;
	void *ctx;
	uint32_t epoch;		/* current (or last) epoch, 0 = none yet */
	uint8_t phase;		/* enum ninja_phase */
	uint8_t cancelled;	/* the current epoch was cancelled */
	uint8_t told_safe;	/* the host was told SAFE for this epoch */
	/* Counters (monotonic). */
	uint64_t n_err[NINJA_EERRCOUNT];	/* errors answered, by code */
	uint64_t n_quiesce, n_resume, n_cancel, n_register, n_gone;
	uint64_t n_rank_err;	/* ERR lines received from ranks */
	/*
	 * The rank slots: an array owned by the caller (ninja_agg_set_slots),
	 * no size fixed here: ninja-agent grows it as ranks connect, the
	 * kernel module gives a fixed one.
	 */
	struct ninja_agg_rank *ranks;
	unsigned int nslots;
};

void ninja_agg_init(struct ninja_agg *a, const struct ninja_agg_ops *ops,
		    void *ctx);
/*
 * Give the machine n slots: ranks holds the nslots slots in use so far
 * (the caller copied them, e.g. with realloc) and room for n >= nslots;
 * the new ones are cleared.  Returns 0, or -NINJA_EARGS if n < nslots.
 */
int ninja_agg_set_slots(struct ninja_agg *a, struct ninja_agg_rank *ranks,
			unsigned int n);
/*
 * A new rank connection; returns its slot or -NINJA_EFULL (every slot in
 * use: the caller may give more with ninja_agg_set_slots and retry).
 */
int ninja_agg_open(struct ninja_agg *a);
/*
 * The same for a connection of user uid, which may hold at most limit
 * slots (0: no per-user limit): one user cannot take every slot.
 */
int ninja_agg_open_uid(struct ninja_agg *a, uint32_t uid, unsigned int limit);
/* The connection of a slot is gone (a rank that died counts no more). */
void ninja_agg_close(struct ninja_agg *a, int slot);
/* One line (without '\n') from a rank slot / from the host. */
int ninja_agg_rank_line(struct ninja_agg *a, int slot, const char *line,
			size_t len);
int ninja_agg_host_line(struct ninja_agg *a, const char *line, size_t len);
/* Report a malformed line (e.g. NINJA_ETOOLONG from the line assembler). */
void ninja_agg_rank_error(struct ninja_agg *a, int slot, int err);
void ninja_agg_host_error(struct ninja_agg *a, int err);

/* Count registered ranks in a given state (NINJA_RS_COUNT: all registered). */
unsigned int ninja_agg_count(const struct ninja_agg *a,
			     enum ninja_rank_state st);
uint64_t ninja_agg_errors(const struct ninja_agg *a);
const char *ninja_phase_name(unsigned int phase);
const char *ninja_rank_state_name(unsigned int st);
/* "STATUS epoch=.. phase=.. ..." with '\n'; returns its length. */
int ninja_agg_status(const struct ninja_agg *a, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* NINJA_AGG_H */
