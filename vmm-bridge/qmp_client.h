/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * qmp_client.h - a small QMP (QEMU Machine Protocol) client on json-c.
 *
 * Follows QEMU's docs/interop/qmp-spec.rst and libvirt's monitor code:
 *
 *   - connect to the monitor's unix socket, read the greeting, negotiate
 *     with "qmp_capabilities" (nothing else runs before it);
 *   - one command outstanding at a time, id "ninja-N"; a reply with an
 *     unknown id is dropped (logged), a reply without id answers the
 *     outstanding command (QEMU's answer to a command it could not parse);
 *   - events arriving between replies are dispatched at once from a
 *     name -> handler table (qmp_set_handlers) and queued for
 *     qmp_wait_event();
 *   - every wait has an absolute deadline on the vmm_now_ns() clock,
 *     which holds while a monitor streams events (nothing more is read
 *     once it has passed);
 *   - errors are classified (enum qmp_err) and QEMU's error *class* is
 *     kept (errclass) for callers to branch on; the desc is only ever
 *     shown to people.
 *
 * Return convention (host code): 0 success, -1 error, -2 deadline passed.
 * After -1/-2 the reason is in q->err (kind), q->errclass and q->errmsg.
 * Transport and protocol errors (peer closed, malformed JSON, a line over
 * QMP_LINE_MAX) are sticky: the connection is unusable afterwards.
 *
 * A struct qmp is used by one thread at a time.
 */
#ifndef NINJA_QMP_CLIENT_H
#define NINJA_QMP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

/* Longest QMP message accepted (query-* replies can be large). */
#define QMP_LINE_MAX		(4 << 20)
/* Events kept for qmp_wait_event(); older ones are dropped (counted). */
#define QMP_EVENTQ_MAX		256

enum qmp_err {
	QMP_OK = 0,
	QMP_ERR_CONNECT,	/* cannot connect to the socket */
	QMP_ERR_IO,		/* peer closed, read/write error */
	QMP_ERR_PROTO,		/* malformed JSON, bad greeting, odd message */
	QMP_ERR_TIMEOUT,	/* deadline passed */
	QMP_ERR_CMD,		/* QEMU answered with an error: see errclass */
};

struct qmp;

/* An event handler: called for every event as it arrives (the event is
 * queued as well).  data may be NULL (no "data" member). */
typedef void (*qmp_event_fn)(struct qmp *q, const char *event,
			     json_object *data, void *opaque);

struct qmp_event_handler {
	const char *event;	/* exact name, or NULL: end of table */
	qmp_event_fn fn;
};

struct qmp_event {
	char name[64];
	json_object *data;	/* owned by the queue; may be NULL */
	int64_t t_ns;		/* vmm_now_ns() when received */
};

struct qmp {
	char name[128];		/* label for messages: "vm0 source" */
	char path[108];
	int fd;
	bool verbose;		/* log every message in and out */
	bool eof;		/* sticky: connection unusable */
	enum qmp_err err;
	char errclass[64];	/* QEMU's error class for QMP_ERR_CMD */
	char errmsg[1024];	/* human text (never parsed) */
	unsigned long next_id;
	json_object *greeting;	/* the "QMP" member of the greeting */
	int ver_major, ver_minor, ver_micro;
	/* Input buffer. */
	char *buf;
	size_t len, cap;
	/* Event queue (oldest first). */
	struct qmp_event evq[QMP_EVENTQ_MAX];
	unsigned int evhead, evcount;
	unsigned long n_events, n_events_dropped, n_stray_replies;
	const struct qmp_event_handler *handlers;
	void *opaque;
};

void qmp_init(struct qmp *q, const char *name);
/*
 * Connect to "unix:PATH" or "/PATH" (retrying every 50 ms while the socket
 * is missing or refusing, until the deadline), read the greeting and
 * negotiate capabilities.  0 / -1 / -2.
 */
int qmp_open(struct qmp *q, const char *spec, int64_t deadline);
/* The same on an already connected fd (tests: a socketpair); q owns fd. */
int qmp_open_fd(struct qmp *q, int fd, int64_t deadline);
void qmp_close(struct qmp *q);
void qmp_set_handlers(struct qmp *q, const struct qmp_event_handler *h,
		      void *opaque);

/*
 * Execute cmd with args (consumed; may be NULL).  On success *ret (if not
 * NULL) gets the "return" value (caller puts it).  Events received
 * meanwhile are dispatched and queued.  0 / -1 / -2.
 */
int qmp_cmd(struct qmp *q, const char *cmd, json_object *args,
	    json_object **ret, int64_t deadline);
/*
 * Command arguments are built with json-c, never by string formatting
 * (a device id or a path may hold '"' or '\\'):
 *   qmp_args("id", json_object_new_string(id), NULL)
 * An object from (key, value) pairs up to a NULL key; the values are
 * consumed (NULL values are skipped).
 */
json_object *qmp_args(const char *key, ...);
/*
 * device_add arguments from a -device spec: "e1000,id=x,bus=rp1" ->
 * {"driver":"e1000","id":"x","bus":"rp1"} (",," is a literal comma, as
 * on QEMU's command line).
 */
json_object *qmp_device_args(const char *spec);

/*
 * Wait for the event named name whose data satisfies match (NULL: any),
 * looking at the queue first, then reading.  The event is removed from
 * the queue; *data (if not NULL) gets its data (caller puts it), *t_ns its
 * arrival time.  0 / -1 / -2.
 */
typedef bool (*qmp_match_fn)(json_object *data, void *arg);
int qmp_wait_event(struct qmp *q, const char *name, qmp_match_fn match,
		   void *arg, json_object **data, int64_t *t_ns,
		   int64_t deadline);
/* Match helper: data member key (string) equals (const char *)arg. */
bool qmp_match_device(json_object *data, void *arg);
bool qmp_match_job(json_object *data, void *arg);
/* Read what is available without waiting (dispatches events), at most
 * QMP_EVENTQ_MAX messages per call (a monitor that never stops talking
 * cannot keep the caller here).  0/-1. */
int qmp_poll(struct qmp *q);
/* Drop every queued event. */
void qmp_flush_events(struct qmp *q);

/* json-c helpers: member as string / int64 (default when absent). */
const char *qmp_get_str(json_object *o, const char *key, const char *def);
int64_t qmp_get_int(json_object *o, const char *key, int64_t def);

const char *qmp_strerr(enum qmp_err e);

#endif /* NINJA_QMP_CLIENT_H */
