// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_events.c - the --events stream: JSON lines built with json-c (see
 * vmm_events.h).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm_events.h"

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *ev_fp;
static int ev_failed;

int vmm_events_open(const char *path, int fd, char *err, size_t errlen)
{
	FILE *f = fd >= 0 ? fdopen(fd, "w") : fopen(path, "w");

	if (!f) {
		snprintf(err, errlen, "--events %s: %s", path ? path : "-",
			 strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&ev_lock);
	ev_fp = f;
	ev_failed = 0;
	pthread_mutex_unlock(&ev_lock);
	return 0;
}

json_object *vmm_json_num(double v, int decimals)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.*f", decimals, v);
	/* The value, and the text it is written as: no 0.30000000000000004. */
	return json_object_new_double_s(strtod(buf, NULL), buf);
}

json_object *vmm_event_new(const char *name, double t_ms)
{
	json_object *o = json_object_new_object();
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_object_add(o, "event", json_object_new_string(name));
	json_object_object_add(o, "t_ms", vmm_json_num(t_ms, 1));
	json_object_object_add(o, "time", vmm_json_num(
		ts.tv_sec + ts.tv_nsec / 1e9, 3));
	return o;
}

void vmm_events_emit(json_object *o)
{
	pthread_mutex_lock(&ev_lock);
	if (ev_fp && !ev_failed) {
		const char *s = json_object_to_json_string_ext(
			o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

		if (fprintf(ev_fp, "%s\n", s) < 0 || fflush(ev_fp)) {
			/* A reader that went away must not stop the move. */
			ev_failed = 1;
			fprintf(stderr, "ninja-migrate: warning: event stream: %s (no more events)\n",
				strerror(errno));
		}
	}
	pthread_mutex_unlock(&ev_lock);
	json_object_put(o);
}

void vmm_events_close(void)
{
	pthread_mutex_lock(&ev_lock);
	if (ev_fp)
		fclose(ev_fp);
	ev_fp = NULL;
	pthread_mutex_unlock(&ev_lock);
}
