// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja_agg.c - per-node aggregation of the drain protocol (see ninja_agg.h
 * and docs/protocol.md, "Node aggregation").  Freestanding.
 *
 * Counts are always derived by scanning the slot table (256 entries) instead
 * of being kept incrementally: a rank that dies at any moment can then never
 * leave a counter out of step with the slots.
 */
#include "ninja_agg.h"

static const char *const phase_names[NINJA_PH_COUNT] = {
	[NINJA_PH_RUNNING]   = "running",
	[NINJA_PH_QUIESCING] = "quiescing",
	[NINJA_PH_SAFE]      = "safe",
	[NINJA_PH_RESUMING]  = "resuming",
};

static const char *const rs_names[NINJA_RS_COUNT] = {
	[NINJA_RS_FREE]     = "free",
	[NINJA_RS_UNREG]    = "unregistered",
	[NINJA_RS_RUNNING]  = "running",
	[NINJA_RS_DRAINING] = "draining",
	[NINJA_RS_SAFE]     = "safe",
	[NINJA_RS_RESUMING] = "resuming",
};

const char *ninja_phase_name(unsigned int phase)
{
	return phase < NINJA_PH_COUNT ? phase_names[phase] : "?";
}

const char *ninja_rank_state_name(unsigned int st)
{
	return st < NINJA_RS_COUNT ? rs_names[st] : "?";
}

void ninja_agg_init(struct ninja_agg *a, const struct ninja_agg_ops *ops,
		    void *ctx)
{
	memset(a, 0, sizeof(*a));
	a->ops = ops;
	a->ctx = ctx;
}

int ninja_agg_set_slots(struct ninja_agg *a, struct ninja_agg_rank *ranks,
			unsigned int n)
{
	if (n < a->nslots || (n && !ranks))
		return -NINJA_EARGS;
	if (n > a->nslots)
		memset(&ranks[a->nslots], 0,
		       (n - a->nslots) * sizeof(*ranks));
	a->ranks = ranks;
	a->nslots = n;
	return 0;
}

static bool registered(const struct ninja_agg_rank *r)
{
	return r->state >= NINJA_RS_RUNNING;
}

unsigned int ninja_agg_count(const struct ninja_agg *a,
			     enum ninja_rank_state st)
{
	unsigned int i, n = 0;

	for (i = 0; i < a->nslots; i++) {
		const struct ninja_agg_rank *r = &a->ranks[i];

		if (st == NINJA_RS_COUNT ? registered(r) : r->state == st)
			n++;
	}
	return n;
}

uint64_t ninja_agg_errors(const struct ninja_agg *a)
{
	uint64_t n = 0;
	int i;

	for (i = NINJA_EVERB; i < NINJA_EERRCOUNT; i++)
		n += a->n_err[i];
	return n;
}

/* Append " tok" for the k=v tokens of m, as long as they fit. */
static int append_kv(char *buf, int off, int size, const struct ninja_msg *m)
{
	int k;

	for (k = m->npos; k < m->ntok; k++) {
		int n = m->tok[k].len;

		/* Leave room for the '\n' emit() appends (buf[size - 1]). */
		if (off + 1 + n > size - 1)
			break;
		buf[off++] = ' ';
		memcpy(buf + off, m->tok[k].p, n);
		off += n;
	}
	return off;
}

static void emit(struct ninja_agg *a, int slot, char *buf, int n)
{
	if (n < 0)
		return;
	if (n > NINJA_LINE_MAX - 1)
		n = NINJA_LINE_MAX - 1;
	buf[n++] = '\n';
	if (slot == -2)
		a->ops->to_host(a->ctx, buf, n);
	else
		a->ops->to_rank(a->ctx, slot, buf, n);
}

#define TO_HOST		(-2)

/* Answer an error to the sender (a slot, or TO_HOST) and count it. */
static int reply_err(struct ninja_agg *a, int to, int err, const char *what)
{
	char buf[NINJA_LINE_MAX];
	int n;

	if (err < 0)
		err = -err;
	if (err >= NINJA_EERRCOUNT)
		err = NINJA_EARGS;
	a->n_err[err]++;
	n = snprintf(buf, sizeof(buf) - 1, "ERR %s %s%s%s (epoch %u, phase %s)",
		     ninja_err_name(err), ninja_strerror(err),
		     what ? ": " : "", what ? what : "", a->epoch,
		     ninja_phase_name(a->phase));
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	emit(a, to, buf, n);
	return -err;
}

static int rank_prefix(char *buf, size_t size, const char *verb,
		       uint32_t epoch, const struct ninja_agg_rank *r)
{
	return snprintf(buf, size, "%s %u job=%.*s rank=%u", verb, epoch,
			r->joblen, r->job, r->rank);
}

static void check_all_safe(struct ninja_agg *a)
{
	char buf[NINJA_LINE_MAX];
	int n;

	/*
	 * Every registered rank must be SAFE: no DRAINING one, and no rank
	 * that left the drain on its own (RUNNING again, see UNSAFE).
	 */
	if (a->phase != NINJA_PH_QUIESCING ||
	    ninja_agg_count(a, NINJA_RS_SAFE) !=
	    ninja_agg_count(a, NINJA_RS_COUNT))
		return;
	a->phase = NINJA_PH_SAFE;
	a->told_safe = 1;
	n = snprintf(buf, sizeof(buf) - 1, "SAFE %u ranks=%u", a->epoch,
		     ninja_agg_count(a, NINJA_RS_SAFE));
	emit(a, TO_HOST, buf, n);
}

static void check_all_resumed(struct ninja_agg *a)
{
	char buf[NINJA_LINE_MAX];
	int n;

	if (a->phase != NINJA_PH_RESUMING ||
	    ninja_agg_count(a, NINJA_RS_RESUMING) != 0)
		return;
	a->phase = NINJA_PH_RUNNING;
	n = snprintf(buf, sizeof(buf) - 1, "RESUMED %u ranks=%u cancelled=%u",
		     a->epoch, ninja_agg_count(a, NINJA_RS_COUNT),
		     a->cancelled);
	emit(a, TO_HOST, buf, n);
}

int ninja_agg_open_uid(struct ninja_agg *a, uint32_t uid, unsigned int limit)
{
	unsigned int mine = 0;
	int i, slot = -1;

	for (i = 0; i < (int)a->nslots; i++) {
		if (a->ranks[i].state == NINJA_RS_FREE) {
			if (slot < 0)
				slot = i;
		} else if (a->ranks[i].uid == uid) {
			mine++;
		}
	}
	if (slot < 0 || (limit && mine >= limit)) {
		a->n_err[NINJA_EFULL]++;
		return -NINJA_EFULL;
	}
	memset(&a->ranks[slot], 0, sizeof(a->ranks[slot]));
	a->ranks[slot].state = NINJA_RS_UNREG;
	a->ranks[slot].uid = uid;
	return slot;
}

int ninja_agg_open(struct ninja_agg *a)
{
	return ninja_agg_open_uid(a, 0, 0);
}

void ninja_agg_close(struct ninja_agg *a, int slot)
{
	struct ninja_agg_rank *r;
	char buf[NINJA_LINE_MAX];
	int n;

	if (slot < 0 || (unsigned int)slot >= a->nslots)
		return;
	r = &a->ranks[slot];
	if (registered(r)) {
		a->n_gone++;
		if (a->phase != NINJA_PH_RUNNING) {
			n = rank_prefix(buf, sizeof(buf) - 1, "REPORT",
					a->epoch, r);
			n += snprintf(buf + n, sizeof(buf) - 1 - n,
				      " state=gone was=%s",
				      ninja_rank_state_name(r->state));
			emit(a, TO_HOST, buf, n);
		}
	}
	r->state = NINJA_RS_FREE;
	check_all_safe(a);
	check_all_resumed(a);
}

static int do_register(struct ninja_agg *a, int slot,
		       const struct ninja_msg *m)
{
	struct ninja_agg_rank *r = &a->ranks[slot];
	char buf[NINJA_LINE_MAX];
	int n;

	if (registered(r))
		return reply_err(a, slot, NINJA_EDUP, "already registered");
	r->joblen = (uint8_t)m->tok[1].len;
	memcpy(r->job, m->tok[1].p, r->joblen);
	r->rank = (uint32_t)m->num;
	{
		uint64_t pid = 0;

		if (!ninja_msg_get_u64(m, "pid", &pid) && pid <= UINT32_MAX)
			r->pid = (uint32_t)pid;
	}
	r->state = NINJA_RS_RUNNING;
	a->n_register++;
	n = snprintf(buf, sizeof(buf) - 1,
		     "OK REGISTER slot=%d epoch=%u phase=%s version=%d", slot,
		     a->epoch, ninja_phase_name(a->phase),
		     NINJA_PROTO_VERSION);
	emit(a, slot, buf, n);
	if (a->phase == NINJA_PH_QUIESCING || a->phase == NINJA_PH_SAFE) {
		/* A late rank must hold off too: it drains (trivially). */
		bool was_safe = a->phase == NINJA_PH_SAFE;

		r->state = NINJA_RS_DRAINING;
		a->phase = NINJA_PH_QUIESCING;
		n = snprintf(buf, sizeof(buf) - 1, "QUIESCE %u", a->epoch);
		emit(a, slot, buf, n);
		if (was_safe) {
			/* The host was told SAFE: revoke it until this one is. */
			n = rank_prefix(buf, sizeof(buf) - 1, "UNSAFE",
					a->epoch, r);
			emit(a, TO_HOST, buf, n);
		}
	}
	return 0;
}

int ninja_agg_rank_line(struct ninja_agg *a, int slot, const char *line,
			size_t len)
{
	struct ninja_msg m;
	struct ninja_agg_rank *r;
	char buf[NINJA_LINE_MAX];
	int err, n;

	if (slot < 0 || (unsigned int)slot >= a->nslots ||
	    a->ranks[slot].state == NINJA_RS_FREE)
		return -NINJA_EUNREG;
	r = &a->ranks[slot];
	err = ninja_parse_line(line, len, &m);
	if (err == -NINJA_EEMPTY)
		return 0;
	if (err)
		return reply_err(a, slot, err, NULL);
	if (m.verb == NINJA_V_REGISTER)
		return do_register(a, slot, &m);
	if (m.verb == NINJA_V_ERR) {
		a->n_rank_err++;
		return 0;
	}
	if (!registered(r))
		return reply_err(a, slot, NINJA_EUNREG, ninja_verb_name(m.verb));

	switch (m.verb) {
	case NINJA_V_SAFE:
		if (m.epoch != a->epoch)
			return reply_err(a, slot, NINJA_ESTALE, "SAFE");
		if (r->state == NINJA_RS_SAFE)
			return reply_err(a, slot, NINJA_EDUP, "SAFE");
		if (r->state == NINJA_RS_RESUMING)
			/* Crossed the RESUME a late rank got (host_resume). */
			return 0;
		if (r->state != NINJA_RS_DRAINING)
			return reply_err(a, slot, NINJA_ESTATE, "SAFE");
		r->state = NINJA_RS_SAFE;
		check_all_safe(a);
		return 0;
	case NINJA_V_RESUMED:
		if (m.epoch != a->epoch)
			return reply_err(a, slot, NINJA_ESTALE, "RESUMED");
		if (r->state == NINJA_RS_RUNNING)
			return reply_err(a, slot, NINJA_EDUP, "RESUMED");
		n = rank_prefix(buf, sizeof(buf), "REPORT", m.epoch, r);
		n = append_kv(buf, n, sizeof(buf), &m);
		emit(a, TO_HOST, buf, n);
		if (r->state != NINJA_RS_RESUMING) {
			/*
			 * Resumed on its own (its deadline ran out) while the
			 * node is QUIESCING or SAFE: the node cannot be SAFE
			 * for this epoch any more (check_all_safe() sees a
			 * RUNNING rank); tell the host, which must CANCEL.
			 */
			r->state = NINJA_RS_RUNNING;
			a->phase = NINJA_PH_QUIESCING;
			n = rank_prefix(buf, sizeof(buf) - 1, "UNSAFE",
					m.epoch, r);
			emit(a, TO_HOST, buf, n);
			return 0;
		}
		r->state = NINJA_RS_RUNNING;
		check_all_resumed(a);
		return 0;
	case NINJA_V_UPGRADED:
		/*
		 * A rank moved its connections to a better rail by itself
		 * (btl/ninja's live upgrade, after a port became ACTIVE): no
		 * state changes, the host gets it as a REPORT of the rank's
		 * epoch (the node's if the rank says 0; none before the first
		 * epoch: no host can be waiting for it then).
		 */
		if (!m.epoch && !a->epoch)
			return 0;
		n = rank_prefix(buf, sizeof(buf), "REPORT",
				m.epoch ? m.epoch : a->epoch, r);
		n += snprintf(buf + n, sizeof(buf) - n, " event=upgraded");
		n = append_kv(buf, n, sizeof(buf), &m);
		emit(a, TO_HOST, buf, n);
		return 0;
	default:
		return reply_err(a, slot, NINJA_EROLE, ninja_verb_name(m.verb));
	}
}

static void set_all(struct ninja_agg *a, enum ninja_rank_state from1,
		    enum ninja_rank_state from2, enum ninja_rank_state to)
{
	int i;

	for (i = 0; i < (int)a->nslots; i++)
		if (a->ranks[i].state == from1 || a->ranks[i].state == from2)
			a->ranks[i].state = to;
}

/* Forward the host's line to every rank, verbatim but normalized. */
static void broadcast(struct ninja_agg *a, const struct ninja_msg *m)
{
	char buf[NINJA_LINE_MAX];
	int n, k;

	n = 0;
	for (k = 0; k < m->npos; k++) {
		if (k)
			buf[n++] = ' ';
		memcpy(buf + n, m->tok[k].p, m->tok[k].len);
		n += m->tok[k].len;
	}
	n = append_kv(buf, n, sizeof(buf), m);
	emit(a, NINJA_AGG_ALL, buf, n);
}

static int host_quiesce(struct ninja_agg *a, const struct ninja_msg *m)
{
	char buf[NINJA_LINE_MAX];
	int n;

	if (a->phase == NINJA_PH_RUNNING) {
		if (!ninja_epoch_after(m->epoch, a->epoch))
			return reply_err(a, TO_HOST, NINJA_ESTALE,
					 "QUIESCE needs a newer epoch");
		a->epoch = m->epoch;
		a->cancelled = 0;
		a->told_safe = 0;
		a->phase = NINJA_PH_QUIESCING;
		a->n_quiesce++;
		set_all(a, NINJA_RS_RUNNING, NINJA_RS_RUNNING,
			NINJA_RS_DRAINING);
		broadcast(a, m);
		check_all_safe(a);
		return 0;
	}
	if (m->epoch != a->epoch)
		return reply_err(a, TO_HOST, NINJA_ESTATE,
				 "another epoch is in progress");
	if (a->phase == NINJA_PH_SAFE) {
		/* Repeated request (host reconnected): say SAFE again. */
		n = snprintf(buf, sizeof(buf) - 1, "SAFE %u ranks=%u",
			     a->epoch, ninja_agg_count(a, NINJA_RS_SAFE));
		emit(a, TO_HOST, buf, n);
		return 0;
	}
	if (a->phase == NINJA_PH_QUIESCING)
		return 0;
	return reply_err(a, TO_HOST, NINJA_ESTATE, "QUIESCE while resuming");
}

static int host_resume(struct ninja_agg *a, const struct ninja_msg *m)
{
	bool cancel = m->verb == NINJA_V_CANCEL;
	char buf[NINJA_LINE_MAX];
	int n;

	if (m->epoch != a->epoch)
		return reply_err(a, TO_HOST, NINJA_ESTALE,
				 ninja_verb_name(m->verb));
	switch (a->phase) {
	case NINJA_PH_RUNNING:
		/* Already done (host reconnected): repeat the result. */
		n = snprintf(buf, sizeof(buf) - 1,
			     "RESUMED %u ranks=%u cancelled=%u", a->epoch,
			     ninja_agg_count(a, NINJA_RS_COUNT), a->cancelled);
		emit(a, TO_HOST, buf, n);
		return 0;
	case NINJA_PH_RESUMING:
		return 0;
	case NINJA_PH_QUIESCING:
		/*
		 * A RESUME after the host was told SAFE is honoured even if a
		 * rank revoked it since (UNSAFE: it registered late or resumed
		 * on its own): the host sent it for the SAFE it saw, maybe
		 * before the UNSAFE reached it.  Refusing it left every SAFE
		 * rank waiting for a RESUME that never came.  A rank still
		 * draining gets it too and resumes as after a CANCEL.
		 */
		if (!cancel && !a->told_safe)
			return reply_err(a, TO_HOST, NINJA_ESTATE,
					 "RESUME before every rank is SAFE (use CANCEL)");
		break;
	default:
		break;
	}
	if (cancel) {
		a->cancelled = 1;
		a->n_cancel++;
	} else {
		a->n_resume++;
	}
	a->phase = NINJA_PH_RESUMING;
	set_all(a, NINJA_RS_DRAINING, NINJA_RS_SAFE, NINJA_RS_RESUMING);
	broadcast(a, m);
	check_all_resumed(a);
	return 0;
}

int ninja_agg_host_line(struct ninja_agg *a, const char *line, size_t len)
{
	struct ninja_msg m;
	char buf[NINJA_LINE_MAX];
	int err, n;

	err = ninja_parse_line(line, len, &m);
	if (err == -NINJA_EEMPTY)
		return 0;
	if (err)
		return reply_err(a, TO_HOST, err, NULL);
	switch (m.verb) {
	case NINJA_V_HELLO:
		n = snprintf(buf, sizeof(buf) - 1,
			     "HELLO %d node epoch=%u phase=%s ranks=%u",
			     NINJA_PROTO_VERSION, a->epoch,
			     ninja_phase_name(a->phase),
			     ninja_agg_count(a, NINJA_RS_COUNT));
		emit(a, TO_HOST, buf, n);
		return 0;
	case NINJA_V_STATUS:
		n = ninja_agg_status(a, buf, sizeof(buf));
		a->ops->to_host(a->ctx, buf, n);
		return 0;
	case NINJA_V_QUIESCE:
		return host_quiesce(a, &m);
	case NINJA_V_RESUME:
	case NINJA_V_CANCEL:
		return host_resume(a, &m);
	case NINJA_V_EVENT:
		broadcast(a, &m);
		return 0;
	default:
		return reply_err(a, TO_HOST, NINJA_EROLE,
				 ninja_verb_name(m.verb));
	}
}

void ninja_agg_rank_error(struct ninja_agg *a, int slot, int err)
{
	reply_err(a, slot, err, NULL);
}

void ninja_agg_host_error(struct ninja_agg *a, int err)
{
	reply_err(a, TO_HOST, err, NULL);
}

int ninja_agg_status(const struct ninja_agg *a, char *buf, size_t len)
{
	int n;

	n = snprintf(buf, len - 1,
		     "STATUS epoch=%u phase=%s ranks=%u draining=%u safe=%u resuming=%u cancelled=%u errors=%llu",
		     a->epoch, ninja_phase_name(a->phase),
		     ninja_agg_count(a, NINJA_RS_COUNT),
		     ninja_agg_count(a, NINJA_RS_DRAINING),
		     ninja_agg_count(a, NINJA_RS_SAFE),
		     ninja_agg_count(a, NINJA_RS_RESUMING), a->cancelled,
		     (unsigned long long)ninja_agg_errors(a));
	if (n < 0)
		n = 0;
	if (n > (int)len - 2)
		n = (int)len - 2;
	buf[n++] = '\n';
	return n;
}
