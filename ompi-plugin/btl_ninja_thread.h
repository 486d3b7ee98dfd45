/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_thread.h - private to the control thread's files:
 *
 *   btl_ninja_ctl.c     the control channel to the node agent (/dev/ninja
 *                       or a unix socket): open, register, read, send
 *   btl_ninja_conn.c    connections: connect, accept, the authenticated
 *                       handshake (btl_ninja_auth.c), failover
 *   btl_ninja_drain.c   the migration cycle: drain (markers), teardown,
 *                       SAFE, resume, reconnect; the agent's commands
 *   btl_ninja_report.c  the cycle's report (JSON line, RESUMED)
 *   btl_ninja_thread.c  the thread's loop: one poll over all of the above
 *
 * Unless a comment says otherwise, these functions run on the control
 * thread only, without the component lock.
 */
#ifndef NINJA_BTL_NINJA_THREAD_H
#define NINJA_BTL_NINJA_THREAD_H

#include "btl_ninja.h"
#include "btl_ninja_pollset.h"

struct ninja_msg;

/*
 * A pair's higher-named side waits this long for the lower-named side's
 * connection before it connects itself (two attempts at once cost a NACK
 * and a retry on a busy guest).
 */
#define NINJA_RACE_WAIT_NS	(50 * NINJA_MS_NS)

/* What a poll set entry is (ninja_pollset_t kind). */
enum ninja_poll_kind {
	NINJA_PK_WAKE,		/* the eventfd the application wakes us by */
	NINJA_PK_LISTEN,	/* the listening socket */
	NINJA_PK_CTL,		/* the control channel */
	NINJA_PK_PENDING,	/* an accepted socket, not authenticated */
	NINJA_PK_CONNECT,	/* a connect/handshake in progress */
	NINJA_PK_DRAIN,		/* a connection being drained */
	NINJA_PK_RAIL,		/* the fast rail device's async events */
	NINJA_PK_BOOT,		/* a fast-rail connection's idle TCP socket */
};

static inline double mca_btl_ninja_us(uint64_t a, uint64_t b)
{
	return b > a ? (double)(b - a) / (double)NINJA_US_NS : 0.0;
}

/* btl_ninja_ctl.c */
void mca_btl_ninja_ctl_retry(uint64_t now);	/* reopen when it is time */
void mca_btl_ninja_ctl_read(void);
void mca_btl_ninja_ctl_close(void);
int mca_btl_ninja_ctl_fd(void);			/* -1: not open */
bool mca_btl_ninja_ctl_present(void);		/* a channel is configured */

/* btl_ninja_conn.c */
void mca_btl_ninja_conn_requests(uint64_t now, uint64_t *next);
void mca_btl_ninja_conn_poll(ninja_pollset_t *ps, uint64_t now);
void mca_btl_ninja_conn_accept(void);
void mca_btl_ninja_conn_event(ninja_pollset_t *ps, int i);
void mca_btl_ninja_conn_pending(ninja_pollset_t *ps);
void mca_btl_ninja_conn_fini(void);
void mca_btl_ninja_rail_fail(const char *why);	/* lock held */

/* btl_ninja_drain.c */
void mca_btl_ninja_drain_start(uint32_t epoch, const char *why);	/* lock held */
void mca_btl_ninja_agent_msg(const struct ninja_msg *m, const char *line,
			     size_t len);
void mca_btl_ninja_publish_later(void);
uint64_t mca_btl_ninja_cycle_next(uint64_t now, uint64_t next);
void mca_btl_ninja_drain_progress(void);
void mca_btl_ninja_resume_progress(void);

/* btl_ninja_report.c */
void mca_btl_ninja_report_cycle(uint64_t link_wait_us);

#endif /* NINJA_BTL_NINJA_THREAD_H */
