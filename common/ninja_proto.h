/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * ninja_proto.h - the Ninja control protocol, defined once.
 *
 * One line-oriented ASCII protocol ties the three parts of Ninja together:
 *
 *   host (vmm-bridge, ninja-ctl)  <->  node (kmod/ninja.ko, ninja-agent)  <->  rank (btl/ninja)
 *
 * A line is at most NINJA_LINE_MAX bytes including its terminating '\n'.
 * Tokens are separated by one or more spaces and consist of printable
 * ASCII (0x21..0x7e).  The first token is the verb, most verbs carry an
 * epoch as their first argument, everything after the positional arguments
 * is "key=value" tokens that a receiver ignores when it does not know them.
 * docs/protocol.md is the normative description; this header is its code.
 *
 * This file and ninja_proto.c / ninja_agg.c are freestanding: they use only
 * what both the Linux kernel and a hosted C library provide (memcpy, memset,
 * memcmp, snprintf), allocate nothing and never block, so the kernel module,
 * the user-space agent, the host tools and the unit tests share one copy.
 */
#ifndef NINJA_PROTO_H
#define NINJA_PROTO_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/string.h>
#include <linux/kernel.h>
#include <linux/limits.h>
/* The kernel spells them U64_MAX / U32_MAX. */
#ifndef UINT64_MAX
#define UINT64_MAX	U64_MAX
#endif
#ifndef UINT32_MAX
#define UINT32_MAX	U32_MAX
#endif
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version spoken in HELLO.  Bump on any incompatible change. */
#define NINJA_PROTO_VERSION	1
/* Longest line, '\n' included. */
#define NINJA_LINE_MAX		512
/* Most tokens in one line, the verb included. */
#define NINJA_MAX_TOKS		24
/* Longest job id accepted in REGISTER (e.g. an Open MPI jobid "1234567"). */
#define NINJA_JOB_MAX		32

/* Verbs.  Direction: H = host, N = node (kmod or agent), R = rank. */
enum ninja_verb {
	NINJA_V_NONE = 0,
	NINJA_V_HELLO,		/* H<->N  HELLO <version> <role> [k=v]...          */
	NINJA_V_REGISTER,	/* R->N   REGISTER <jobid> <rank> [pid=N] [k=v]... */
	NINJA_V_OK,		/* N->R,H OK <verb> [k=v]...                       */
	NINJA_V_QUIESCE,	/* H->N->R QUIESCE <epoch> [k=v]...                */
	NINJA_V_SAFE,		/* R->N->H SAFE <epoch> [k=v]...                   */
	NINJA_V_UNSAFE,		/* N->H   UNSAFE <epoch> [k=v]...  (safety revoked) */
	NINJA_V_RESUME,		/* H->N->R RESUME <epoch> [rails=a,b] [k=v]...     */
	NINJA_V_CANCEL,		/* H->N->R CANCEL <epoch> [k=v]...                 */
	NINJA_V_RESUMED,	/* R->N->H RESUMED <epoch> [rail=R] [k=v]...       */
	NINJA_V_REPORT,		/* N->H   REPORT <epoch> job=J rank=N <k=v>...     */
	NINJA_V_STATUS,		/* H->N   STATUS ; N->H STATUS k=v...              */
	NINJA_V_EVENT,		/* N->H,R EVENT <t_ns> <kind> [k=v]...             */
	NINJA_V_ERR,		/* any    ERR <code> [free text]                   */
	NINJA_V_UPGRADED,	/* R->N   UPGRADED <epoch|0> [rail=R] [k=v]...     */
	NINJA_V_COUNT
};

/* Error codes.  0 is success; protocol functions return -NINJA_E*. */
enum ninja_err {
	NINJA_OK = 0,
	NINJA_EEMPTY,		/* blank line (not an error on the wire: ignored) */
	NINJA_EVERB,		/* unknown verb */
	NINJA_EARGS,		/* wrong number or shape of arguments */
	NINJA_ENUM,		/* a number did not parse or is out of range */
	NINJA_ETOOLONG,		/* line longer than NINJA_LINE_MAX */
	NINJA_ECHAR,		/* a byte outside printable ASCII and space */
	NINJA_EVERSION,		/* HELLO with an unsupported version */
	NINJA_ESTALE,		/* epoch is not the current one */
	NINJA_EDUP,		/* duplicate answer */
	NINJA_ESTATE,		/* verb not valid in the current phase */
	NINJA_EFULL,		/* too many ranks on this node */
	NINJA_EUNREG,		/* the sender has not registered */
	NINJA_EROLE,		/* verb not allowed from this sender */
	NINJA_EERRCOUNT
};

/* A token: a slice of the caller's buffer (not NUL-terminated). */
struct ninja_tok {
	const char *p;
	uint16_t len;
};

/* A parsed line.  Points into the caller's buffer; valid while it is. */
struct ninja_msg {
	enum ninja_verb verb;
	uint32_t epoch;		/* verbs with an <epoch> argument */
	uint64_t num;		/* REGISTER: rank; EVENT: t_ns; UPGRADED: epoch */
	bool crlf;		/* line ended in "\r\n" (tty echo, see docs) */
	int ntok;		/* tokens, the verb included */
	struct ninja_tok tok[NINJA_MAX_TOKS];
	int npos;		/* positional tokens (verb included) before k=v */
};

/*
 * Parse one line at the start of buf[0..len).
 *
 * Returns the number of bytes consumed (the line and its '\n'), and
 * sets *err to NINJA_OK with *m filled in, or to a NINJA_E* code when the
 * line is malformed: the line is consumed either way, so a caller just
 * reports the error and carries on with the next line.
 * Returns 0 when buf holds no complete line yet and len < NINJA_LINE_MAX.
 * When NINJA_LINE_MAX bytes hold no '\n' it consumes them all with
 * *err = NINJA_ETOOLONG; the caller must then drop input up to the next
 * '\n' (struct ninja_lineq below does all of this).
 */
size_t ninja_parse(const char *buf, size_t len, struct ninja_msg *m, int *err);

/* Validate a single line (without its '\n') already split by the caller. */
int ninja_parse_line(const char *line, size_t len, struct ninja_msg *m);

/* Find "key=" among the k=v tokens; returns the value slice or NULL. */
const char *ninja_msg_get(const struct ninja_msg *m, const char *key,
			  size_t *vlen);
/* Same, parsed as an unsigned decimal; returns 0 or -NINJA_ENUM/-NINJA_EARGS. */
int ninja_msg_get_u64(const struct ninja_msg *m, const char *key,
		      uint64_t *val);
/* Parse an unsigned decimal slice (no sign, no spaces, fits in 64 bits). */
int ninja_parse_u64(const char *p, size_t len, uint64_t *val);

/*
 * Epochs are 1 .. 2^32-1 and wrap: the one after 0xffffffff is 1 (0 means
 * "none yet").  They are compared as sequence numbers (RFC 1982 style): a
 * is after b when it is less than 2^31 steps ahead of b.  Epoch 0 is before
 * every other epoch.
 */
static inline bool ninja_epoch_after(uint32_t a, uint32_t b)
{
	if (!a)
		return false;
	if (!b)
		return true;
	return (uint32_t)(a - b) - 1 < 0x7fffffffu;
}

static inline uint32_t ninja_epoch_next(uint32_t e)
{
	return e == UINT32_MAX ? 1 : e + 1;
}

const char *ninja_verb_name(enum ninja_verb v);
/* Short wire name of an error ("stale-epoch"), used in ERR lines. */
const char *ninja_err_name(int err);
/* Human sentence for an error. */
const char *ninja_strerror(int err);

/*
 * Line assembler for byte streams (sockets, ttys, char devices): feeds
 * bytes, calls cb once per complete line (without '\n'), or with
 * err = NINJA_ETOOLONG once per oversized line, whose bytes are dropped
 * up to and including the next '\n'.
 */
struct ninja_lineq {
	uint16_t len;
	bool discard;
	char buf[NINJA_LINE_MAX];
};

typedef void (*ninja_line_cb)(void *ctx, const char *line, size_t len,
			      int err);

void ninja_lineq_init(struct ninja_lineq *q);
void ninja_lineq_push(struct ninja_lineq *q, const char *data, size_t n,
		      ninja_line_cb cb, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* NINJA_PROTO_H */
