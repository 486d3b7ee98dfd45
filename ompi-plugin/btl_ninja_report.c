/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_report.c - what a migration cycle reports: a JSON line
 * in btl_ninja_report (if set), a line at verbose level 1, and the
 * RESUMED line to the node agent with the same timings.
 */
#include "opal_config.h"

#include <stdio.h>

#include "btl_ninja_thread.h"

/* Append one JSON line to btl_ninja_report (if set). */
void mca_btl_ninja_report_json(const char *json)
{
	const char *path = mca_btl_ninja_component.report;
	FILE *f;

	if (!path || !path[0])
		return;
	f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s\n", json);
		fclose(f);
	}
}

/* Control thread: the cycle is over (reconnected or timed out). */
void mca_btl_ninja_report_cycle(uint64_t link_wait_us)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_cycle_t *y = &c->cycle;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	double drain, teardown, wait, rediscover, reconnect;
	char json[768];

	if (!y->t_reconnected)
		y->t_reconnected = mca_btl_ninja_now_ns();
	drain = mca_btl_ninja_us(y->t_start, y->t_drained);
	teardown = mca_btl_ninja_us(y->t_drained, y->t_closed);
	wait = mca_btl_ninja_us(y->t_closed, y->t_resume);
	rediscover = mca_btl_ninja_us(y->t_resume, y->t_published);
	reconnect = mca_btl_ninja_us(y->t_published, y->t_reconnected);
	snprintf(json, sizeof(json),
		 "{\"ninja\":\"cycle\",\"jobid\":%u,\"rank\":%u,\"epoch\":%u,"
		 "\"rail\":\"%s\",\"cancelled\":%d,\"timed_out\":%d,"
		 "\"drain_us\":%.0f,\"teardown_us\":%.0f,\"wait_us\":%.0f,"
		 "\"rediscover_us\":%.0f,\"reconnect_us\":%.0f,\"total_us\":%.0f,"
		 "\"frames_deferred\":%llu,\"frags_held\":%llu}",
		 me.jobid, me.vpid, y->epoch, y->rail, y->cancelled,
		 y->timed_out, drain, teardown, wait, rediscover, reconnect,
		 mca_btl_ninja_us(y->t_start, y->t_reconnected),
		 (unsigned long long)y->frames_deferred,
		 (unsigned long long)y->frags_held);
	NINJA_VERBOSE(1,
		      "btl:ninja: rank %u epoch %u %s on %s: drain %.0f us, teardown %.0f us, "
		      "wait %.0f us, rediscover %.0f us, reconnect %.0f us "
		      "(%llu frames deferred, %llu frags held)",
		      me.vpid, y->epoch, y->cancelled ? "cancelled, resumed" : "resumed",
		      y->rail, drain, teardown, wait, rediscover, reconnect,
		      (unsigned long long)y->frames_deferred,
		      (unsigned long long)y->frags_held);
	NINJA_VERBOSE(1, "%s", json);
	mca_btl_ninja_report_json(json);
	mca_btl_ninja_ctl_send("RESUMED %u rail=%s cancelled=%d%s drain_us=%.0f teardown_us=%.0f "
			       "wait_us=%.0f rediscover_us=%.0f reconnect_us=%.0f deferred=%llu held=%llu "
			       "upgrade=%s link_wait_us=%llu",
			       y->epoch, y->rail, y->cancelled,
			       y->timed_out ? " reason=timeout" : "",
			       drain, teardown, wait, rediscover, reconnect,
			       (unsigned long long)y->frames_deferred,
			       (unsigned long long)y->frags_held,
			       mca_btl_ninja_upgrade_live() ? "live" : "wait",
			       (unsigned long long)link_wait_us);
	c->n_cycles++;
}
