// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * test_proto.c - unit tests of the control protocol parser (ninja_proto.c):
 * every verb, malformed lines, CRLF, limits, ninja_parse and ninja_lineq.
 */
#include <stdlib.h>
#include "ninja_proto.h"
#include "ninja_test.h"

/* Parse a C string as one line (without '\n'); returns 0 or -NINJA_E*. */
static int pl(const char *s, struct ninja_msg *m)
{
	return ninja_parse_line(s, strlen(s), m);
}

/* Parse and return the positive error code (0 = ok). */
static int perr(const char *s)
{
	struct ninja_msg m;

	return -pl(s, &m);
}

/* Same for a slice that may hold NUL bytes. */
static int perr_n(const char *s, size_t n)
{
	struct ninja_msg m;

	return -ninja_parse_line(s, n, &m);
}

static void test_valid(void)
{
	struct ninja_msg m;
	uint64_t v;
	size_t vl;
	const char *p;

	nt_group("valid: HELLO");
	CHECK_INT(pl("HELLO 1 host", &m), 0);
	CHECK_INT(m.verb, NINJA_V_HELLO);
	CHECK_INT(m.num, 1);
	CHECK_INT(m.ntok, 3);
	CHECK_INT(m.npos, 3);
	CHECK_MEM(m.tok[2].p, m.tok[2].len, "host");
	CHECK(!m.crlf);
	CHECK_INT(pl("HELLO 1 node", &m), 0);
	CHECK_INT(pl("HELLO 1 rank", &m), 0);
	CHECK_INT(pl("HELLO 1 node epoch=3 phase=running ranks=2", &m), 0);
	CHECK_INT(m.ntok, 6);
	CHECK_INT(ninja_msg_get_u64(&m, "epoch", &v), 0);
	CHECK_INT(v, 3);
	CHECK_MEM(ninja_msg_get(&m, "phase", &vl), vl, "running");
	CHECK_INT(pl("HELLO 01 host", &m), 0);	/* leading zero is a number */

	nt_group("valid: REGISTER");
	CHECK_INT(pl("REGISTER 1234567 7 pid=99", &m), 0);
	CHECK_INT(m.verb, NINJA_V_REGISTER);
	CHECK_MEM(m.tok[1].p, m.tok[1].len, "1234567");
	CHECK_INT(m.num, 7);
	CHECK_INT(ninja_msg_get_u64(&m, "pid", &v), 0);
	CHECK_INT(v, 99);
	CHECK_INT(pl("REGISTER job-A.b_c 0", &m), 0);
	CHECK_INT(m.num, 0);
	CHECK_INT(pl("REGISTER j 4294967295", &m), 0);
	CHECK_INT(m.num, 4294967295u);
	/* NINJA_JOB_MAX characters is the longest job id. */
	CHECK_INT(perr("REGISTER 01234567890123456789012345678901 1"), 0);
	CHECK_INT(perr("REGISTER 012345678901234567890123456789012 1"),
		  NINJA_EARGS);

	nt_group("valid: OK");
	CHECK_INT(pl("OK REGISTER slot=0 epoch=0 phase=running version=1", &m),
		  0);
	CHECK_INT(m.verb, NINJA_V_OK);
	CHECK_MEM(m.tok[1].p, m.tok[1].len, "REGISTER");
	CHECK_INT(ninja_msg_get_u64(&m, "slot", &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(perr("OK QUIESCE"), 0);

	nt_group("valid: epoch verbs");
	CHECK_INT(pl("QUIESCE 1", &m), 0);
	CHECK_INT(m.verb, NINJA_V_QUIESCE);
	CHECK_INT(m.epoch, 1);
	CHECK_INT(m.ntok, 2);
	CHECK_INT(pl("QUIESCE 4294967295 deadline_ms=30000", &m), 0);
	CHECK_INT(m.epoch, 4294967295u);
	CHECK_INT(pl("SAFE 5 ranks=3", &m), 0);
	CHECK_INT(m.verb, NINJA_V_SAFE);
	CHECK_INT(m.epoch, 5);
	CHECK_INT(pl("UNSAFE 5 job=j rank=1", &m), 0);
	CHECK_INT(m.verb, NINJA_V_UNSAFE);
	CHECK_INT(pl("RESUME 6 rails=verbs,tcp", &m), 0);
	CHECK_INT(m.verb, NINJA_V_RESUME);
	CHECK_INT(m.epoch, 6);
	CHECK_MEM(ninja_msg_get(&m, "rails", &vl), vl, "verbs,tcp");
	CHECK_INT(pl("CANCEL 7", &m), 0);
	CHECK_INT(m.verb, NINJA_V_CANCEL);
	CHECK_INT(m.epoch, 7);
	CHECK_INT(pl("RESUMED 8 rail=tcp drain_us=12 teardown_us=3", &m), 0);
	CHECK_INT(m.verb, NINJA_V_RESUMED);
	CHECK_MEM(ninja_msg_get(&m, "rail", &vl), vl, "tcp");
	CHECK_INT(ninja_msg_get_u64(&m, "teardown_us", &v), 0);
	CHECK_INT(v, 3);
	CHECK_INT(pl("REPORT 8 job=j rank=2 rail=tcp", &m), 0);
	CHECK_INT(m.verb, NINJA_V_REPORT);
	CHECK_INT(m.epoch, 8);

	nt_group("valid: UPGRADED (epoch 0 allowed)");
	CHECK_INT(pl("UPGRADED 9 rail=verbs from=tcp conns=1 verbs=1 stall_us=812", &m), 0);
	CHECK_INT(m.verb, NINJA_V_UPGRADED);
	CHECK_INT(m.epoch, 9);
	CHECK_MEM(ninja_msg_get(&m, "rail", &vl), vl, "verbs");
	CHECK_INT(ninja_msg_get_u64(&m, "stall_us", &v), 0);
	CHECK_INT(v, 812);
	CHECK_INT(pl("UPGRADED 0 rail=verbs", &m), 0);
	CHECK_INT(m.epoch, 0);
	CHECK_INT(pl("UPGRADED", &m), -NINJA_EARGS);
	CHECK_INT(pl("UPGRADED x rail=verbs", &m), -NINJA_ENUM);
	CHECK_INT(pl("UPGRADED 4294967296", &m), -NINJA_ENUM);
	CHECK_INT(pl("UPGRADED 3 verbs", &m), -NINJA_EARGS);

	nt_group("valid: STATUS, EVENT, ERR");
	CHECK_INT(pl("STATUS", &m), 0);
	CHECK_INT(m.verb, NINJA_V_STATUS);
	CHECK_INT(m.ntok, 1);
	CHECK_INT(pl("STATUS epoch=1 phase=safe ranks=4", &m), 0);
	CHECK_MEM(ninja_msg_get(&m, "phase", &vl), vl, "safe");
	CHECK_INT(pl("EVENT 1700000000123456789 link-down dev=eth0", &m), 0);
	CHECK_INT(m.verb, NINJA_V_EVENT);
	CHECK_INT(m.num, 1700000000123456789ull);
	CHECK_MEM(m.tok[2].p, m.tok[2].len, "link-down");
	CHECK_INT(perr("EVENT 18446744073709551615 x"), 0);
	CHECK_INT(pl("ERR bad-state RESUME before SAFE (epoch 3, phase x=y)", &m),
		  0);
	CHECK_INT(m.verb, NINJA_V_ERR);
	CHECK_MEM(m.tok[1].p, m.tok[1].len, "bad-state");
	CHECK_INT(perr("ERR duplicate"), 0);

	nt_group("valid: spacing and k=v");
	CHECK_INT(pl("  QUIESCE   9    a=1  b=   ", &m), 0);
	CHECK_INT(m.epoch, 9);
	CHECK_INT(m.ntok, 4);
	CHECK_INT(m.npos, 2);
	p = ninja_msg_get(&m, "b", &vl);
	CHECK(p != NULL);
	CHECK_INT(vl, 0);		/* empty value is allowed */
	CHECK(ninja_msg_get(&m, "c", NULL) == NULL);
	CHECK_INT(ninja_msg_get_u64(&m, "b", &v), -NINJA_ENUM);
	CHECK_INT(ninja_msg_get_u64(&m, "c", &v), -NINJA_EARGS);
	CHECK_INT(pl("RESUME 3 rails=x rail=y", &m), 0);
	CHECK_MEM(ninja_msg_get(&m, "rail", &vl), vl, "y");	/* not "rails" */
	CHECK_MEM(ninja_msg_get(&m, "rails", &vl), vl, "x");
	CHECK_INT(pl("SAFE 3 k=a=b", &m), 0);	/* '=' in a value is fine */
	CHECK_MEM(ninja_msg_get(&m, "k", &vl), vl, "a=b");
	CHECK_INT(pl("RESUME 3 x=1 x=2", &m), 0);	/* first one wins */
	CHECK_INT(ninja_msg_get_u64(&m, "x", &v), 0);
	CHECK_INT(v, 1);
	/* The verb is not a key: positional tokens are never looked up. */
	CHECK(ninja_msg_get(&m, "RESUME", NULL) == NULL);
}

static void test_malformed(void)
{
	char big[64];
	char line[NINJA_LINE_MAX + 8];
	int i, n;

	nt_group("malformed: missing arguments");
	CHECK_INT(perr("HELLO"), NINJA_EARGS);
	CHECK_INT(perr("HELLO 1"), NINJA_EARGS);
	CHECK_INT(perr("REGISTER"), NINJA_EARGS);
	CHECK_INT(perr("REGISTER job"), NINJA_EARGS);
	CHECK_INT(perr("OK"), NINJA_EARGS);
	CHECK_INT(perr("QUIESCE"), NINJA_EARGS);
	CHECK_INT(perr("SAFE"), NINJA_EARGS);
	CHECK_INT(perr("UNSAFE"), NINJA_EARGS);
	CHECK_INT(perr("RESUME"), NINJA_EARGS);
	CHECK_INT(perr("CANCEL"), NINJA_EARGS);
	CHECK_INT(perr("RESUMED"), NINJA_EARGS);
	CHECK_INT(perr("REPORT"), NINJA_EARGS);
	CHECK_INT(perr("EVENT"), NINJA_EARGS);
	CHECK_INT(perr("EVENT 1"), NINJA_EARGS);
	CHECK_INT(perr("ERR"), NINJA_EARGS);
	/* A k=v token cannot stand in for a positional one. */
	CHECK_INT(perr("QUIESCE deadline_ms=5"), NINJA_EARGS);
	CHECK_INT(perr("REGISTER job pid=5"), NINJA_EARGS);

	nt_group("malformed: bad numbers");
	CHECK_INT(perr("QUIESCE x"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE -1"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE +1"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE 1a"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE 0x10"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE 1.5"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE 0"), NINJA_ENUM);		/* epoch 0 */
	CHECK_INT(perr("SAFE 000"), NINJA_ENUM);
	CHECK_INT(perr("QUIESCE 4294967296"), NINJA_ENUM);	/* 2^32 */
	CHECK_INT(perr("RESUME 18446744073709551615"), NINJA_ENUM);
	/* 20 digits, above 2^64-1; 21 digits */
	CHECK_INT(perr("EVENT 18446744073709551616 x"), NINJA_ENUM);
	CHECK_INT(perr("EVENT 99999999999999999999 x"), NINJA_ENUM);
	CHECK_INT(perr("EVENT 100000000000000000000 x"), NINJA_ENUM);
	CHECK_INT(perr("EVENT 000000000000000000001 x"), NINJA_ENUM);
	CHECK_INT(perr("CANCEL 000000000000000000001"), NINJA_ENUM);
	CHECK_INT(perr("CANCEL 00000000000000000001"), 0);	/* 20 digits */
	CHECK_INT(perr("REGISTER j 4294967296"), NINJA_ENUM);
	CHECK_INT(perr("REGISTER j x"), NINJA_ENUM);
	CHECK_INT(perr("REGISTER j -1"), NINJA_ENUM);
	CHECK_INT(perr("HELLO x host"), NINJA_ENUM);
	CHECK_INT(perr("HELLO 100000000000000000000 host"), NINJA_ENUM);
	CHECK_INT(perr("EVENT now x"), NINJA_ENUM);

	nt_group("malformed: '=' in positional arguments, empty key");
	CHECK_INT(perr("QUIESCE e=1"), NINJA_EARGS);
	CHECK_INT(perr("QUIESCE =1"), NINJA_EARGS);
	CHECK_INT(perr("REGISTER j=1 2"), NINJA_EARGS);
	CHECK_INT(perr("REGISTER j 2=3"), NINJA_EARGS);
	CHECK_INT(perr("HELLO 1 role=host"), NINJA_EARGS);
	CHECK_INT(perr("EVENT 1 k=v"), NINJA_EARGS);
	CHECK_INT(perr("OK v=REGISTER"), NINJA_EARGS);
	CHECK_INT(perr("ERR code=x text"), NINJA_EARGS);
	CHECK_INT(perr("QUIESCE 1 =v"), NINJA_EARGS);
	CHECK_INT(perr("QUIESCE 1 ="), NINJA_EARGS);
	CHECK_INT(perr("SAFE 1 a=1 =2"), NINJA_EARGS);
	CHECK_INT(perr("STATUS =x"), NINJA_EARGS);
	/* Trailing tokens must be k=v (except ERR's free text). */
	CHECK_INT(perr("QUIESCE 1 junk"), NINJA_EARGS);
	CHECK_INT(perr("STATUS now"), NINJA_EARGS);
	CHECK_INT(perr("HELLO 1 host extra"), NINJA_EARGS);
	CHECK_INT(perr("HELLO 1 guest"), NINJA_EARGS);
	CHECK_INT(perr("HELLO 1 HOST"), NINJA_EARGS);

	nt_group("malformed: non-printable bytes, tabs, NUL, CR inside");
	CHECK_INT(perr("QUIESCE\t1"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1\t"), NINJA_ECHAR);
	CHECK_INT(perr("\tQUIESCE 1"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1 a=\x01"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1 a=\x7f"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1 a=\x80"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1 a=\xff"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1 a=\xc3\xa9"), NINJA_ECHAR);	/* UTF-8 */
	CHECK_INT(perr("ERR x caf\xc3\xa9"), NINJA_ECHAR);
	CHECK_INT(perr_n("QUIESCE 1\0", 10), NINJA_ECHAR);
	CHECK_INT(perr_n("QUIE\0SCE 1", 10), NINJA_ECHAR);
	CHECK_INT(perr_n("\0", 1), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE\r1"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1\r\r"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1\v"), NINJA_ECHAR);
	CHECK_INT(perr("QUIESCE 1\n"), NINJA_ECHAR);	/* '\n' is not content */

	nt_group("malformed: too many tokens");
	/* NINJA_MAX_TOKS tokens (the verb included) fit, one more does not. */
	n = snprintf(line, sizeof(line), "QUIESCE 1");
	for (i = 2; i < NINJA_MAX_TOKS; i++)
		n += snprintf(line + n, sizeof(line) - n, " k%d=%d", i, i);
	CHECK_INT(perr(line), 0);
	snprintf(line + n, sizeof(line) - n, " last=1");
	CHECK_INT(perr(line), NINJA_EARGS);
	/* ERR free text is tokenized too, so the same limit holds. */
	n = snprintf(line, sizeof(line), "ERR x");
	for (i = 2; i <= NINJA_MAX_TOKS; i++)
		n += snprintf(line + n, sizeof(line) - n, " w");
	CHECK_INT(perr(line), NINJA_EARGS);

	nt_group("unknown verbs and empty lines");
	CHECK_INT(perr("FOO 1"), NINJA_EVERB);
	CHECK_INT(perr("quiesce 1"), NINJA_EVERB);
	CHECK_INT(perr("Quiesce 1"), NINJA_EVERB);
	CHECK_INT(perr("QUIESC 1"), NINJA_EVERB);
	CHECK_INT(perr("QUIESCEX 1"), NINJA_EVERB);
	CHECK_INT(perr("QUIESCE1"), NINJA_EVERB);
	CHECK_INT(perr("NONE"), NINJA_EVERB);
	CHECK_INT(perr("x=1"), NINJA_EVERB);
	CHECK_INT(perr("="), NINJA_EVERB);
	CHECK_INT(perr(""), NINJA_EEMPTY);
	CHECK_INT(perr("    "), NINJA_EEMPTY);
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT(perr(big), NINJA_EVERB);
	/* A malformed line leaves no stale verb behind. */
	{
		struct ninja_msg m;

		pl("QUIESCE 1", &m);
		CHECK_INT(pl("FOO", &m), -NINJA_EVERB);
		CHECK_INT(m.verb, NINJA_V_NONE);
	}
}

static void test_crlf_version(void)
{
	struct ninja_msg m;

	nt_group("CRLF detection");
	CHECK_INT(pl("QUIESCE 3\r", &m), 0);
	CHECK(m.crlf);
	CHECK_INT(m.epoch, 3);
	CHECK_INT(m.tok[1].len, 1);	/* the '\r' is not part of a token */
	CHECK_INT(pl("QUIESCE 3", &m), 0);
	CHECK(!m.crlf);
	CHECK_INT(pl("HELLO 1 host\r", &m), 0);
	CHECK(m.crlf);
	CHECK_INT(pl("SAFE 3 ranks=2\r", &m), 0);
	CHECK(m.crlf);
	CHECK_INT(ninja_msg_get_u64(&m, "ranks", &(uint64_t){0}), 0);
	CHECK_INT(pl("\r", &m), -NINJA_EEMPTY);
	CHECK_INT(pl("QUIESCE 3 \r", &m), 0);
	CHECK(m.crlf);
	CHECK_INT(ninja_parse_line("QUIESCE 3\r", 9, &m), 0);
	CHECK(!m.crlf);

	nt_group("HELLO version");
	CHECK_INT(perr("HELLO 1 host"), 0);
	CHECK_INT(perr("HELLO 2 host"), NINJA_EVERSION);
	CHECK_INT(perr("HELLO 0 host"), NINJA_EVERSION);
	CHECK_INT(perr("HELLO 18446744073709551615 node"), NINJA_EVERSION);
	/* Version is checked before the role, both are reported. */
	CHECK_INT(perr("HELLO 2 guest"), NINJA_EVERSION);
	CHECK_INT(perr("HELLO 1 guest"), NINJA_EARGS);
}

static void test_parse_stream(void)
{
	char buf[4 * NINJA_LINE_MAX];
	struct ninja_msg m;
	size_t n, off;
	int err;

	nt_group("ninja_parse: several lines in one buffer");
	strcpy(buf, "HELLO 1 host\nQUIESCE 4\n\nFOO\nSAFE");
	off = 0;
	n = ninja_parse(buf + off, strlen(buf) - off, &m, &err);
	CHECK_INT(n, 13);
	CHECK_INT(err, NINJA_OK);
	CHECK_INT(m.verb, NINJA_V_HELLO);
	off += n;
	n = ninja_parse(buf + off, strlen(buf) - off, &m, &err);
	CHECK_INT(n, 10);
	CHECK_INT(err, NINJA_OK);
	CHECK_INT(m.epoch, 4);
	off += n;
	n = ninja_parse(buf + off, strlen(buf) - off, &m, &err);
	CHECK_INT(n, 1);
	CHECK_INT(err, NINJA_EEMPTY);
	off += n;
	n = ninja_parse(buf + off, strlen(buf) - off, &m, &err);
	CHECK_INT(n, 4);
	CHECK_INT(err, NINJA_EVERB);
	off += n;
	/* "SAFE" without its '\n': incomplete, nothing consumed. */
	n = ninja_parse(buf + off, strlen(buf) - off, &m, &err);
	CHECK_INT(n, 0);
	CHECK_INT(err, NINJA_OK);
	n = ninja_parse(buf, 0, &m, &err);
	CHECK_INT(n, 0);
	/* CRLF through ninja_parse */
	n = ninja_parse("CANCEL 2\r\nX", 11, &m, &err);
	CHECK_INT(n, 10);
	CHECK_INT(err, NINJA_OK);
	CHECK(m.crlf);
	CHECK_INT(m.verb, NINJA_V_CANCEL);

	nt_group("ninja_parse: line length limits");
	/* Longest legal line: NINJA_LINE_MAX bytes with the '\n'. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "ERR x ", 6);
	buf[NINJA_LINE_MAX - 1] = '\n';
	n = ninja_parse(buf, sizeof(buf), &m, &err);
	CHECK_INT(n, NINJA_LINE_MAX);
	CHECK_INT(err, NINJA_OK);
	CHECK_INT(m.verb, NINJA_V_ERR);
	CHECK_INT(ninja_parse_line(buf, NINJA_LINE_MAX - 1, &m), 0);
	CHECK_INT(ninja_parse_line(buf, NINJA_LINE_MAX, &m), -NINJA_ETOOLONG);
	/* One byte more: too long, NINJA_LINE_MAX bytes consumed. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "ERR x ", 6);
	buf[NINJA_LINE_MAX] = '\n';
	n = ninja_parse(buf, sizeof(buf), &m, &err);
	CHECK_INT(n, NINJA_LINE_MAX);
	CHECK_INT(err, NINJA_ETOOLONG);
	CHECK_INT(m.verb, NINJA_V_NONE);
	/* No '\n' at all, buffer larger than a line. */
	memset(buf, 'b', sizeof(buf));
	n = ninja_parse(buf, sizeof(buf), &m, &err);
	CHECK_INT(n, NINJA_LINE_MAX);
	CHECK_INT(err, NINJA_ETOOLONG);
	/* Exactly NINJA_LINE_MAX bytes without '\n': too long already. */
	n = ninja_parse(buf, NINJA_LINE_MAX, &m, &err);
	CHECK_INT(n, NINJA_LINE_MAX);
	CHECK_INT(err, NINJA_ETOOLONG);
	/* One byte less may still become a legal line: wait. */
	n = ninja_parse(buf, NINJA_LINE_MAX - 1, &m, &err);
	CHECK_INT(n, 0);
	CHECK_INT(err, NINJA_OK);
}

/* Capture of ninja_lineq callbacks. */
struct lq_cap {
	int n;
	char line[16][NINJA_LINE_MAX + 1];
	size_t len[16];
	int err[16];
};

static void lq_cb(void *ctx, const char *line, size_t len, int err)
{
	struct lq_cap *c = ctx;

	if (c->n < 16) {
		memcpy(c->line[c->n], line, len);
		c->line[c->n][len] = '\0';
		c->len[c->n] = len;
		c->err[c->n] = err;
	}
	c->n++;
}

static void push_str(struct ninja_lineq *q, struct lq_cap *c, const char *s)
{
	ninja_lineq_push(q, s, strlen(s), lq_cb, c);
}

static void test_lineq(void)
{
	static struct lq_cap c;
	struct ninja_lineq q;
	char big[3 * NINJA_LINE_MAX];
	size_t i;

	nt_group("ninja_lineq: several lines in one push");
	memset(&c, 0, sizeof(c));
	ninja_lineq_init(&q);
	push_str(&q, &c, "HELLO 1 host\nQUIESCE 1\n\nSAFE 1\r\nSTA");
	CHECK_INT(c.n, 4);
	CHECK_STR(c.line[0], "HELLO 1 host");
	CHECK_STR(c.line[1], "QUIESCE 1");
	CHECK_INT(c.len[2], 0);		/* empty lines are delivered */
	CHECK_STR(c.line[3], "SAFE 1\r");	/* '\r' kept for the parser */
	CHECK_INT(c.err[0] | c.err[1] | c.err[2] | c.err[3], NINJA_OK);
	push_str(&q, &c, "TUS\n");
	CHECK_INT(c.n, 5);
	CHECK_STR(c.line[4], "STATUS");
	CHECK_INT(q.len, 0);

	nt_group("ninja_lineq: split across pushes");
	memset(&c, 0, sizeof(c));
	ninja_lineq_init(&q);
	{
		const char *s = "RESUME 12 rails=tcp\nCANCEL 12\n";

		for (i = 0; i < strlen(s); i++)
			ninja_lineq_push(&q, s + i, 1, lq_cb, &c);
	}
	CHECK_INT(c.n, 2);
	CHECK_STR(c.line[0], "RESUME 12 rails=tcp");
	CHECK_STR(c.line[1], "CANCEL 12");
	ninja_lineq_push(&q, "", 0, lq_cb, &c);
	CHECK_INT(c.n, 2);
	/* NUL bytes are content: the parser rejects them, not the queue. */
	ninja_lineq_push(&q, "A\0B\n", 4, lq_cb, &c);
	CHECK_INT(c.n, 3);
	CHECK_INT(c.len[2], 3);

	nt_group("ninja_lineq: longest legal line");
	memset(&c, 0, sizeof(c));
	ninja_lineq_init(&q);
	memset(big, 'x', sizeof(big));
	big[NINJA_LINE_MAX - 1] = '\n';
	ninja_lineq_push(&q, big, NINJA_LINE_MAX, lq_cb, &c);
	CHECK_INT(c.n, 1);
	CHECK_INT(c.len[0], NINJA_LINE_MAX - 1);
	CHECK_INT(c.err[0], NINJA_OK);

	nt_group("ninja_lineq: oversized line discarded until newline");
	memset(&c, 0, sizeof(c));
	ninja_lineq_init(&q);
	memset(big, 'x', sizeof(big));
	big[NINJA_LINE_MAX] = '\n';	/* one byte too many */
	ninja_lineq_push(&q, big, NINJA_LINE_MAX + 1, lq_cb, &c);
	CHECK_INT(c.n, 1);
	CHECK_INT(c.err[0], NINJA_ETOOLONG);
	CHECK(!q.discard);		/* the '\n' ended the discard */
	push_str(&q, &c, "SAFE 2\n");
	CHECK_INT(c.n, 2);
	CHECK_STR(c.line[1], "SAFE 2");
	CHECK_INT(c.err[1], NINJA_OK);
	/* Much longer, across several pushes, then good lines in the tail. */
	memset(&c, 0, sizeof(c));
	ninja_lineq_init(&q);
	memset(big, 'y', sizeof(big));
	for (i = 0; i < 5; i++)
		ninja_lineq_push(&q, big, sizeof(big), lq_cb, &c);
	CHECK_INT(c.n, 1);		/* reported once per line */
	CHECK_INT(c.err[0], NINJA_ETOOLONG);
	CHECK(q.discard);
	push_str(&q, &c, "yyyy SAFE 1 still discarded");
	CHECK_INT(c.n, 1);
	push_str(&q, &c, "yy\nSAFE 3\nQUIESCE");
	CHECK_INT(c.n, 2);
	CHECK_STR(c.line[1], "SAFE 3");
	push_str(&q, &c, " 4\n");
	CHECK_INT(c.n, 3);
	CHECK_STR(c.line[2], "QUIESCE 4");
	/* Two oversized lines in a row: two reports. */
	memset(&c, 0, sizeof(c));
	ninja_lineq_init(&q);
	memset(big, 'z', sizeof(big));
	big[NINJA_LINE_MAX + 10] = '\n';
	big[2 * NINJA_LINE_MAX + 20] = '\n';
	ninja_lineq_push(&q, big, sizeof(big), lq_cb, &c);
	CHECK_INT(c.n, 2);
	CHECK_INT(c.err[0], NINJA_ETOOLONG);
	CHECK_INT(c.err[1], NINJA_ETOOLONG);
	/* ...and the remainder after the second '\n' is a partial line. */
	CHECK_INT(q.len, sizeof(big) - (2 * NINJA_LINE_MAX + 21));
}

static void test_names(void)
{
	int i, j;

	nt_group("verb and error names");
	CHECK_STR(ninja_verb_name(NINJA_V_QUIESCE), "QUIESCE");
	CHECK_STR(ninja_verb_name(NINJA_V_RESUMED), "RESUMED");
	CHECK_STR(ninja_verb_name(NINJA_V_UPGRADED), "UPGRADED");
	CHECK_STR(ninja_verb_name(NINJA_V_COUNT), "?");
	CHECK_STR(ninja_verb_name((enum ninja_verb)-1), "?");
	for (i = NINJA_V_NONE + 1; i < NINJA_V_COUNT; i++) {
		CHECK(ninja_verb_name(i)[0] != '\0');
		for (j = i + 1; j < NINJA_V_COUNT; j++)
			CHECK(strcmp(ninja_verb_name(i), ninja_verb_name(j)));
	}
	CHECK_STR(ninja_err_name(NINJA_ESTALE), "stale-epoch");
	CHECK_STR(ninja_err_name(-NINJA_ESTALE), "stale-epoch");
	CHECK_STR(ninja_err_name(NINJA_EERRCOUNT), "unknown-error");
	CHECK_STR(ninja_strerror(NINJA_EERRCOUNT + 5), "unknown error");
	for (i = 0; i < NINJA_EERRCOUNT; i++) {
		const char *s = ninja_err_name(i);
		size_t k;
		int ok = s && *s;

		/* Error names are single tokens: usable as the ERR code. */
		for (k = 0; ok && s[k]; k++)
			ok = s[k] > 0x20 && s[k] < 0x7f && s[k] != '=';
		CHECK(ok);
		CHECK(ninja_strerror(i) && *ninja_strerror(i));
		for (j = i + 1; j < NINJA_EERRCOUNT; j++)
			CHECK(strcmp(ninja_err_name(i), ninja_err_name(j)));
	}
}

int main(void)
{
	test_valid();
	test_malformed();
	test_crlf_version();
	test_parse_stream();
	test_lineq();
	test_names();
	return nt_done();
}
