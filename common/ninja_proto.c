// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja_proto.c - parser for the Ninja control protocol (see ninja_proto.h
 * and docs/protocol.md).  Freestanding: shared by the kernel module, the
 * user-space agent, the host tools and the unit tests.
 */
#include "ninja_proto.h"

struct ninja_verb_desc {
	const char *name;
	uint8_t npos;		/* positional tokens, verb included */
	uint8_t has_epoch;	/* token 1 is an epoch (>= 1) */
	uint8_t free_text;	/* tokens after npos are free text */
};

static const struct ninja_verb_desc verbs[NINJA_V_COUNT] = {
	[NINJA_V_NONE]     = { "",         0, 0, 0 },
	[NINJA_V_HELLO]    = { "HELLO",    3, 0, 0 },
	[NINJA_V_REGISTER] = { "REGISTER", 3, 0, 0 },
	[NINJA_V_OK]       = { "OK",       2, 0, 0 },
	[NINJA_V_QUIESCE]  = { "QUIESCE",  2, 1, 0 },
	[NINJA_V_SAFE]     = { "SAFE",     2, 1, 0 },
	[NINJA_V_UNSAFE]   = { "UNSAFE",   2, 1, 0 },
	[NINJA_V_RESUME]   = { "RESUME",   2, 1, 0 },
	[NINJA_V_CANCEL]   = { "CANCEL",   2, 1, 0 },
	[NINJA_V_RESUMED]  = { "RESUMED",  2, 1, 0 },
	[NINJA_V_REPORT]   = { "REPORT",   2, 1, 0 },
	[NINJA_V_STATUS]   = { "STATUS",   1, 0, 0 },
	[NINJA_V_EVENT]    = { "EVENT",    3, 0, 0 },
	[NINJA_V_ERR]      = { "ERR",      2, 0, 1 },
	[NINJA_V_UPGRADED] = { "UPGRADED", 2, 0, 0 },
};

static const char *const err_names[NINJA_EERRCOUNT] = {
	[NINJA_OK]       = "ok",
	[NINJA_EEMPTY]   = "empty",
	[NINJA_EVERB]    = "unknown-verb",
	[NINJA_EARGS]    = "bad-args",
	[NINJA_ENUM]     = "bad-number",
	[NINJA_ETOOLONG] = "too-long",
	[NINJA_ECHAR]    = "bad-char",
	[NINJA_EVERSION] = "bad-version",
	[NINJA_ESTALE]   = "stale-epoch",
	[NINJA_EDUP]     = "duplicate",
	[NINJA_ESTATE]   = "bad-state",
	[NINJA_EFULL]    = "full",
	[NINJA_EUNREG]   = "not-registered",
	[NINJA_EROLE]    = "not-allowed",
};

static const char *const err_text[NINJA_EERRCOUNT] = {
	[NINJA_OK]       = "success",
	[NINJA_EEMPTY]   = "empty line",
	[NINJA_EVERB]    = "unknown verb",
	[NINJA_EARGS]    = "wrong number or form of arguments",
	[NINJA_ENUM]     = "number missing, malformed or out of range",
	[NINJA_ETOOLONG] = "line longer than the protocol maximum",
	[NINJA_ECHAR]    = "non-printable byte in line",
	[NINJA_EVERSION] = "unsupported protocol version",
	[NINJA_ESTALE]   = "epoch is not the current one",
	[NINJA_EDUP]     = "duplicate answer for this epoch",
	[NINJA_ESTATE]   = "request not valid in the current phase",
	[NINJA_EFULL]    = "too many ranks registered on this node",
	[NINJA_EUNREG]   = "sender has not registered",
	[NINJA_EROLE]    = "verb not allowed from this sender",
};

const char *ninja_verb_name(enum ninja_verb v)
{
	if ((unsigned int)v >= NINJA_V_COUNT)
		return "?";
	return verbs[v].name;
}

const char *ninja_err_name(int err)
{
	if (err < 0)
		err = -err;
	if (err >= NINJA_EERRCOUNT)
		return "unknown-error";
	return err_names[err];
}

const char *ninja_strerror(int err)
{
	if (err < 0)
		err = -err;
	if (err >= NINJA_EERRCOUNT)
		return "unknown error";
	return err_text[err];
}

int ninja_parse_u64(const char *p, size_t len, uint64_t *val)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -NINJA_ENUM;
	for (i = 0; i < len; i++) {
		unsigned int d;

		if (p[i] < '0' || p[i] > '9')
			return -NINJA_ENUM;
		d = (unsigned int)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -NINJA_ENUM;
		v = v * 10 + d;
	}
	*val = v;
	return 0;
}

static bool tok_eq(const struct ninja_tok *t, const char *s)
{
	size_t n = strlen(s);

	return t->len == n && memcmp(t->p, s, n) == 0;
}

static const char *tok_eqpos(const struct ninja_tok *t)
{
	uint16_t i;

	for (i = 0; i < t->len; i++)
		if (t->p[i] == '=')
			return t->p + i;
	return NULL;
}

int ninja_parse_line(const char *line, size_t len, struct ninja_msg *m)
{
	const struct ninja_verb_desc *d;
	size_t i = 0;
	int v, k;
	uint64_t num;

	memset(m, 0, sizeof(*m));
	if (len >= NINJA_LINE_MAX)
		return -NINJA_ETOOLONG;
	if (len > 0 && line[len - 1] == '\r') {
		m->crlf = true;
		len--;
	}
	/* Tokenize, rejecting anything but printable ASCII and spaces. */
	while (i < len) {
		size_t start;

		if (line[i] == ' ') {
			i++;
			continue;
		}
		start = i;
		while (i < len && line[i] != ' ') {
			unsigned char c = (unsigned char)line[i];

			if (c < 0x21 || c > 0x7e)
				return -NINJA_ECHAR;
			i++;
		}
		if (m->ntok == NINJA_MAX_TOKS)
			return -NINJA_EARGS;
		m->tok[m->ntok].p = line + start;
		m->tok[m->ntok].len = (uint16_t)(i - start);
		m->ntok++;
	}
	if (m->ntok == 0)
		return -NINJA_EEMPTY;

	for (v = NINJA_V_NONE + 1; v < NINJA_V_COUNT; v++)
		if (tok_eq(&m->tok[0], verbs[v].name))
			break;
	if (v == NINJA_V_COUNT)
		return -NINJA_EVERB;
	d = &verbs[v];
	m->verb = (enum ninja_verb)v;
	m->npos = d->npos;

	if (m->ntok < d->npos)
		return -NINJA_EARGS;
	for (k = 1; k < d->npos; k++)
		if (tok_eqpos(&m->tok[k]))
			return -NINJA_EARGS;
	if (!d->free_text) {
		for (k = d->npos; k < m->ntok; k++) {
			const char *eq = tok_eqpos(&m->tok[k]);

			if (!eq || eq == m->tok[k].p)
				return -NINJA_EARGS;
		}
	}

	if (d->has_epoch) {
		if (ninja_parse_u64(m->tok[1].p, m->tok[1].len, &num) ||
		    num == 0 || num > UINT32_MAX)
			return -NINJA_ENUM;
		m->epoch = (uint32_t)num;
	}
	switch (m->verb) {
	case NINJA_V_HELLO:
		if (ninja_parse_u64(m->tok[1].p, m->tok[1].len, &num))
			return -NINJA_ENUM;
		if (num != NINJA_PROTO_VERSION)
			return -NINJA_EVERSION;
		m->num = num;
		if (!tok_eq(&m->tok[2], "host") && !tok_eq(&m->tok[2], "node") &&
		    !tok_eq(&m->tok[2], "rank"))
			return -NINJA_EARGS;
		break;
	case NINJA_V_REGISTER:
		if (m->tok[1].len > NINJA_JOB_MAX)
			return -NINJA_EARGS;
		if (ninja_parse_u64(m->tok[2].p, m->tok[2].len, &num) ||
		    num > UINT32_MAX)
			return -NINJA_ENUM;
		m->num = num;
		break;
	case NINJA_V_EVENT:
		if (ninja_parse_u64(m->tok[1].p, m->tok[1].len, &num))
			return -NINJA_ENUM;
		m->num = num;
		break;
	case NINJA_V_UPGRADED:
		/* The rank's epoch: 0 for a job that never drained. */
		if (ninja_parse_u64(m->tok[1].p, m->tok[1].len, &num) ||
		    num > UINT32_MAX)
			return -NINJA_ENUM;
		m->num = num;
		m->epoch = (uint32_t)num;
		break;
	default:
		break;
	}
	return 0;
}

size_t ninja_parse(const char *buf, size_t len, struct ninja_msg *m, int *err)
{
	size_t i;

	for (i = 0; i < len && i < NINJA_LINE_MAX; i++) {
		if (buf[i] == '\n') {
			int r = ninja_parse_line(buf, i, m);

			*err = r < 0 ? -r : NINJA_OK;
			return i + 1;
		}
	}
	if (i >= NINJA_LINE_MAX) {
		memset(m, 0, sizeof(*m));
		*err = NINJA_ETOOLONG;
		return i;
	}
	*err = NINJA_OK;
	return 0;
}

const char *ninja_msg_get(const struct ninja_msg *m, const char *key,
			  size_t *vlen)
{
	size_t klen = strlen(key);
	int k;

	for (k = m->npos; k < m->ntok; k++) {
		const struct ninja_tok *t = &m->tok[k];

		if (t->len > klen && t->p[klen] == '=' &&
		    memcmp(t->p, key, klen) == 0) {
			if (vlen)
				*vlen = t->len - klen - 1;
			return t->p + klen + 1;
		}
	}
	return NULL;
}

int ninja_msg_get_u64(const struct ninja_msg *m, const char *key,
		      uint64_t *val)
{
	size_t vlen;
	const char *v = ninja_msg_get(m, key, &vlen);

	if (!v)
		return -NINJA_EARGS;
	return ninja_parse_u64(v, vlen, val);
}

void ninja_lineq_init(struct ninja_lineq *q)
{
	q->len = 0;
	q->discard = false;
}

void ninja_lineq_push(struct ninja_lineq *q, const char *data, size_t n,
		      ninja_line_cb cb, void *ctx)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = data[i];

		if (q->discard) {
			if (c == '\n')
				q->discard = false;
			continue;
		}
		if (c == '\n') {
			cb(ctx, q->buf, q->len, NINJA_OK);
			q->len = 0;
			continue;
		}
		if (q->len >= NINJA_LINE_MAX - 1) {
			/* No room for this byte and the '\n': oversized. */
			cb(ctx, q->buf, q->len, NINJA_ETOOLONG);
			q->len = 0;
			q->discard = true;
			continue;
		}
		q->buf[q->len++] = c;
	}
}
