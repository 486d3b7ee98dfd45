/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_thread.c - the control thread's loop: one poll over the wake
 * eventfd, the listener, the control channel, and what the connections
 * (btl_ninja_conn.c) and the cycle (btl_ninja_drain.c) need watched; then
 * each role's work for that round.
 */
#include "opal_config.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "btl_ninja_thread.h"

/* The poll set (control thread only; grows with the endpoints). */
static ninja_pollset_t P;

/* The poll's timeout, ms, for a deadline of next. */
static int loop_timeout(uint64_t now, uint64_t next)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int timeout;

	next = mca_btl_ninja_cycle_next(now, next);
	timeout = next > now ? (int)((next - now + NINJA_MS_NS - 1) / NINJA_MS_NS) : 0;
	if (c->state == NINJA_DRAINING)
		timeout = timeout > 100 ? 100 : timeout;
	if (c->state == NINJA_DRAINING && c->rail && c->rail->progress)
		timeout = timeout > 1 ? 1 : timeout;	/* poll the rail */
	return timeout;
}

static void loop_build(uint64_t now)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	ninja_pollset_reset(&P);
	(void)ninja_pollset_add(&P, c->wake_fd, POLLIN, NINJA_PK_WAKE, NULL);
	(void)ninja_pollset_add(&P, c->listen_fd, POLLIN, NINJA_PK_LISTEN, NULL);
	if (mca_btl_ninja_ctl_fd() >= 0)
		(void)ninja_pollset_add(&P, mca_btl_ninja_ctl_fd(), POLLIN,
					NINJA_PK_CTL, NULL);
	mca_btl_ninja_conn_poll(&P, now);
}

static void loop_dispatch(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	for (i = 0; i < P.n; i++) {
		if (!P.fds[i].revents)
			continue;
		switch (P.kind[i]) {
		case NINJA_PK_WAKE: {
			uint64_t v;

			if (read(c->wake_fd, &v, sizeof(v)) < 0) {
				/* spurious: nothing to do */
			}
			break;
		}
		case NINJA_PK_LISTEN:
			mca_btl_ninja_conn_accept();
			break;
		case NINJA_PK_CTL:
			mca_btl_ninja_ctl_read();
			break;
		case NINJA_PK_RAIL:
		case NINJA_PK_BOOT:
		case NINJA_PK_CONNECT:
			mca_btl_ninja_conn_event(&P, i);
			break;
		default:
			break;
		}
	}
	mca_btl_ninja_conn_pending(&P);
}

static void *ninja_thread(void *arg)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	while (!c->thread_stop) {
		uint64_t now = mca_btl_ninja_now_ns(), next = now + NINJA_SEC_NS;

		mca_btl_ninja_ctl_retry(now);
		mca_btl_ninja_lookup_collect();	/* PMIx's answers */
		if (c->state == NINJA_RUNNING)
			mca_btl_ninja_conn_requests(now, &next);
		mca_btl_ninja_publish_later();
		loop_build(now);
		if (poll(P.fds, P.n, loop_timeout(now, next)) < 0 &&
		    errno != EINTR)
			break;
		if (c->thread_stop)
			break;
		loop_dispatch();
		mca_btl_ninja_drain_progress();
		mca_btl_ninja_resume_progress();
		mca_btl_ninja_upgrade_step();
	}
	mca_btl_ninja_ctl_close();
	mca_btl_ninja_lookup_collect();	/* frees the answers that came */
	mca_btl_ninja_conn_fini();
	ninja_pollset_fini(&P);
	return NULL;
}

int mca_btl_ninja_thread_start(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	c->thread_stop = false;
	if (pthread_create(&c->thread, NULL, ninja_thread, NULL) != 0)
		return OPAL_ERROR;
	c->thread_started = true;
	return OPAL_SUCCESS;
}

void mca_btl_ninja_thread_stop(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (!c->thread_started)
		return;
	c->thread_stop = true;
	mca_btl_ninja_wake();
	pthread_join(c->thread, NULL);
	c->thread_started = false;
}
