// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * qmp_client.c - QMP client (see qmp_client.h): transport (non-blocking
 * unix socket, CRLF-framed messages, deadlines) and protocol (greeting,
 * capabilities, ids, replies, events, error classes).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp_client.h"
#include "vmm_chan.h"

const char *qmp_strerr(enum qmp_err e)
{
	switch (e) {
	case QMP_OK: return "ok";
	case QMP_ERR_CONNECT: return "cannot connect";
	case QMP_ERR_IO: return "connection lost";
	case QMP_ERR_PROTO: return "protocol error";
	case QMP_ERR_TIMEOUT: return "timeout";
	case QMP_ERR_CMD: return "command failed";
	}
	return "?";
}

static void qmp_fail(struct qmp *q, enum qmp_err e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void qmp_fail(struct qmp *q, enum qmp_err e, const char *fmt, ...)
{
	va_list ap;
	int n;

	q->err = e;
	if (e != QMP_ERR_CMD)
		q->errclass[0] = '\0';
	n = snprintf(q->errmsg, sizeof(q->errmsg), "%s: ", q->name);
	va_start(ap, fmt);
	vsnprintf(q->errmsg + n, sizeof(q->errmsg) - n, fmt, ap);
	va_end(ap);
	/* Transport and protocol errors leave the stream in an unknown
	 * state: the connection is not used again. */
	if (e == QMP_ERR_IO || e == QMP_ERR_PROTO || e == QMP_ERR_CONNECT)
		q->eof = true;
	if (q->verbose)
		vmm_log("%s", q->errmsg);
}

void qmp_init(struct qmp *q, const char *name)
{
	memset(q, 0, sizeof(*q));
	q->fd = -1;
	snprintf(q->name, sizeof(q->name), "%s", name);
}

void qmp_set_handlers(struct qmp *q, const struct qmp_event_handler *h,
		      void *opaque)
{
	q->handlers = h;
	q->opaque = opaque;
}

void qmp_flush_events(struct qmp *q)
{
	while (q->evcount) {
		json_object_put(q->evq[q->evhead].data);
		q->evq[q->evhead].data = NULL;
		q->evhead = (q->evhead + 1) % QMP_EVENTQ_MAX;
		q->evcount--;
	}
}

void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->eof = true;
	qmp_flush_events(q);
	json_object_put(q->greeting);
	q->greeting = NULL;
	free(q->buf);
	q->buf = NULL;
	q->len = q->cap = 0;
}

/* Write a whole message (with CRLF). 0 / -1 / -2. */
static int qmp_write(struct qmp *q, const char *s, size_t n, int64_t deadline)
{
	int r = vmm_write_all(q->fd, s, n, deadline);

	if (r == -2)
		qmp_fail(q, QMP_ERR_TIMEOUT,
			 "QEMU is not reading its monitor (send timed out)");
	else if (r < 0)
		qmp_fail(q, QMP_ERR_IO, "send: %s",
			 errno == EPIPE ? "connection closed" : strerror(errno));
	return r;
}

/*
 * Read more bytes into the buffer, waiting until the deadline.  Returns
 * 1 when bytes arrived, -1 on EOF/error (sticky), -2 at the deadline.
 */
static int qmp_fill(struct qmp *q, int64_t deadline, bool wait)
{
	for (;;) {
		ssize_t r;

		/* Checked before every read, not only when the socket is
		 * empty: a monitor that sends an event every few ms must not
		 * keep a command waiting past its deadline. */
		if (wait && vmm_now_ns() >= deadline) {
			qmp_fail(q, QMP_ERR_TIMEOUT, "no answer in time");
			return -2;
		}

		if (q->cap - q->len < 4096) {
			size_t ncap = q->cap ? q->cap * 2 : 16384;
			char *nb;

			if (ncap > QMP_LINE_MAX + 8192)
				ncap = QMP_LINE_MAX + 8192;
			if (ncap <= q->len) {
				qmp_fail(q, QMP_ERR_PROTO,
					 "message longer than %d bytes",
					 QMP_LINE_MAX);
				return -1;
			}
			nb = realloc(q->buf, ncap);
			if (!nb) {
				qmp_fail(q, QMP_ERR_IO, "out of memory");
				return -1;
			}
			q->buf = nb;
			q->cap = ncap;
		}
		r = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (r > 0) {
			q->len += (size_t)r;
			return 1;
		}
		if (r == 0) {
			if (q->len)
				qmp_fail(q, QMP_ERR_IO,
					 "connection closed by QEMU in the middle of a message (%zu bytes: %.*s)",
					 q->len, q->len > 60 ? 60 : (int)q->len,
					 q->buf);
			else
				qmp_fail(q, QMP_ERR_IO,
					 "connection closed by QEMU (did it exit?)");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd p = { .fd = q->fd, .events = POLLIN };
			int ms = wait ? vmm_remaining_ms(deadline) : 0;
			int pr;

			if (ms == 0) {
				if (!wait)
					return -2;
				qmp_fail(q, QMP_ERR_TIMEOUT, "no answer in time");
				return -2;
			}
			pr = poll(&p, 1, ms);
			if (pr < 0 && errno != EINTR) {
				qmp_fail(q, QMP_ERR_IO, "poll: %s",
					 strerror(errno));
				return -1;
			}
			continue;
		}
		qmp_fail(q, QMP_ERR_IO, "read: %s", strerror(errno));
		return -1;
	}
}

/*
 * The next complete message from the buffer, parsed.  Returns 1 with
 * *msg, 0 when no complete line is buffered, -1 on a malformed message
 * (sticky protocol error).
 */
static int qmp_take_msg(struct qmp *q, json_object **msg)
{
	char *nl;
	size_t n, used;
	json_tokener *tok;
	json_object *o;
	enum json_tokener_error jerr;

	for (;;) {
		nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (!nl) {
			if (q->len > QMP_LINE_MAX) {
				qmp_fail(q, QMP_ERR_PROTO,
					 "message longer than %d bytes",
					 QMP_LINE_MAX);
				return -1;
			}
			return 0;
		}
		n = (size_t)(nl - q->buf);
		used = n + 1;
		if (n && q->buf[n - 1] == '\r')
			n--;
		/* Skip blank lines. */
		{
			size_t i = 0;

			while (i < n && (q->buf[i] == ' ' || q->buf[i] == '\t'))
				i++;
			if (i == n) {
				memmove(q->buf, q->buf + used, q->len - used);
				q->len -= used;
				continue;
			}
		}
		break;
	}
	if (q->verbose)
		vmm_log("%s < %.*s", q->name, n > 900 ? 900 : (int)n, q->buf);
	tok = json_tokener_new();
	if (!tok) {
		qmp_fail(q, QMP_ERR_IO, "out of memory");
		return -1;
	}
	o = json_tokener_parse_ex(tok, q->buf, (int)n);
	jerr = json_tokener_get_error(tok);
	if (o && jerr == json_tokener_success &&
	    (size_t)json_tokener_get_parse_end(tok) < n) {
		/* Trailing bytes after the object on the same line. */
		size_t i = json_tokener_get_parse_end(tok);

		while (i < n && (q->buf[i] == ' ' || q->buf[i] == '\t'))
			i++;
		if (i < n)
			jerr = json_tokener_error_parse_unexpected;
	}
	if (!o || jerr != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		qmp_fail(q, QMP_ERR_PROTO,
			 "malformed message from QEMU (%s): %.*s",
			 !o || jerr != json_tokener_success ?
			 (jerr == json_tokener_continue ? "incomplete JSON" :
			  json_tokener_error_desc(jerr)) :
			 "not a JSON object", n > 80 ? 80 : (int)n, q->buf);
		json_object_put(o);
		json_tokener_free(tok);
		return -1;
	}
	json_tokener_free(tok);
	memmove(q->buf, q->buf + used, q->len - used);
	q->len -= used;
	*msg = o;
	return 1;
}

/* Next message, reading as needed. 0 / -1 / -2 (wait=false: -2 = none). */
static int qmp_next(struct qmp *q, int64_t deadline, bool wait,
		    json_object **msg)
{
	int r;

	if (q->eof || q->fd < 0) {
		if (q->err == QMP_OK || q->err == QMP_ERR_CMD ||
		    q->err == QMP_ERR_TIMEOUT)
			qmp_fail(q, QMP_ERR_IO, "not connected");
		return -1;
	}
	for (;;) {
		r = qmp_take_msg(q, msg);
		if (r)
			return r > 0 ? 0 : r;
		r = qmp_fill(q, deadline, wait);
		if (r < 0)
			return r;
	}
}

/* An event arrived: dispatch and queue it. */
static void qmp_event_in(struct qmp *q, json_object *msg)
{
	const char *name = qmp_get_str(msg, "event", "");
	json_object *data = NULL;
	struct qmp_event *e;
	const struct qmp_event_handler *h;

	json_object_object_get_ex(msg, "data", &data);
	q->n_events++;
	for (h = q->handlers; h && h->event; h++)
		if (strcmp(h->event, name) == 0)
			h->fn(q, name, data, q->opaque);
	if (q->evcount == QMP_EVENTQ_MAX) {
		json_object_put(q->evq[q->evhead].data);
		q->evq[q->evhead].data = NULL;
		q->evhead = (q->evhead + 1) % QMP_EVENTQ_MAX;
		q->evcount--;
		q->n_events_dropped++;
	}
	e = &q->evq[(q->evhead + q->evcount) % QMP_EVENTQ_MAX];
	q->evcount++;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->data = data ? json_object_get(data) : NULL;
	e->t_ns = vmm_now_ns();
}

enum msg_kind { MSG_OTHER, MSG_GREETING, MSG_EVENT, MSG_REPLY };

static enum msg_kind classify(json_object *msg)
{
	if (json_object_object_get_ex(msg, "return", NULL) ||
	    json_object_object_get_ex(msg, "error", NULL))
		return MSG_REPLY;
	if (json_object_object_get_ex(msg, "event", NULL))
		return MSG_EVENT;
	if (json_object_object_get_ex(msg, "QMP", NULL))
		return MSG_GREETING;
	return MSG_OTHER;
}

int qmp_poll(struct qmp *q)
{
	json_object *msg;
	int r, n;

	for (n = 0; n < QMP_EVENTQ_MAX; n++) {
		r = qmp_next(q, 0, false, &msg);
		if (r == -2)
			return 0;
		if (r < 0)
			return -1;
		switch (classify(msg)) {
		case MSG_EVENT:
			qmp_event_in(q, msg);
			break;
		case MSG_REPLY:
			q->n_stray_replies++;
			break;
		default:
			break;
		}
		json_object_put(msg);
	}
	return 0;
}

int qmp_cmd(struct qmp *q, const char *cmd, json_object *args,
	    json_object **ret, int64_t deadline)
{
	json_object *req = json_object_new_object();
	char id[32];
	const char *s;
	char *line;
	size_t n;
	int r;

	if (ret)
		*ret = NULL;
	q->err = QMP_OK;
	q->errclass[0] = '\0';
	q->errmsg[0] = '\0';
	snprintf(id, sizeof(id), "ninja-%lu", ++q->next_id);
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_string(id));
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (q->verbose)
		vmm_log("%s > %s", q->name, s);
	n = strlen(s);
	line = malloc(n + 3);
	if (!line) {
		json_object_put(req);
		qmp_fail(q, QMP_ERR_IO, "out of memory");
		return -1;
	}
	memcpy(line, s, n);
	memcpy(line + n, "\r\n", 3);
	json_object_put(req);
	if (q->eof || q->fd < 0) {
		free(line);
		qmp_fail(q, QMP_ERR_IO, "not connected (%s not sent)", cmd);
		return -1;
	}
	r = qmp_write(q, line, n + 2, deadline);
	free(line);
	if (r)
		return r;
	for (;;) {
		json_object *msg, *rid = NULL, *err;
		enum msg_kind k;

		r = qmp_next(q, deadline, true, &msg);
		if (r) {
			/* Say which command was waiting. */
			size_t l = strlen(q->errmsg);

			snprintf(q->errmsg + l, sizeof(q->errmsg) - l,
				 " (waiting for the reply to %s)", cmd);
			return r;
		}
		k = classify(msg);
		if (k == MSG_EVENT) {
			qmp_event_in(q, msg);
			json_object_put(msg);
			continue;
		}
		if (k != MSG_REPLY) {
			if (q->verbose)
				vmm_log("%s: unexpected message ignored", q->name);
			json_object_put(msg);
			continue;
		}
		json_object_object_get_ex(msg, "id", &rid);
		if (rid && (!json_object_is_type(rid, json_type_string) ||
			    strcmp(json_object_get_string(rid), id) != 0)) {
			/* A stale reply (an earlier command's): drop it. */
			q->n_stray_replies++;
			if (q->verbose)
				vmm_log("%s: reply with unknown id %s dropped",
					q->name, json_object_to_json_string(rid));
			json_object_put(msg);
			continue;
		}
		if (json_object_object_get_ex(msg, "error", &err)) {
			const char *cls = qmp_get_str(err, "class", "");
			const char *desc = qmp_get_str(err, "desc", "");

			snprintf(q->errclass, sizeof(q->errclass), "%s",
				 cls[0] ? cls : "unknown");
			qmp_fail(q, QMP_ERR_CMD, "%s failed: %s (%s)", cmd,
				 desc, q->errclass);
			json_object_put(msg);
			return -1;
		}
		if (ret) {
			json_object *rv = NULL;

			json_object_object_get_ex(msg, "return", &rv);
			*ret = json_object_get(rv);
		}
		json_object_put(msg);
		return 0;
	}
}

json_object *qmp_args(const char *key, ...)
{
	json_object *o = json_object_new_object();
	va_list ap;

	va_start(ap, key);
	for (; key; key = va_arg(ap, const char *)) {
		json_object *v = va_arg(ap, json_object *);

		if (v)
			json_object_object_add(o, key, v);
	}
	va_end(ap);
	return o;
}

json_object *qmp_device_args(const char *spec)
{
	json_object *o = json_object_new_object();
	size_t len = strlen(spec);
	char *tok = malloc(len + 1);
	const char *s = spec;
	bool first = true;

	if (!tok)
		return o;
	while (*s) {
		size_t n = 0;
		char *eq;

		while (*s) {
			if (s[0] == ',' && s[1] == ',') {
				tok[n++] = ',';
				s += 2;
				continue;
			}
			if (*s == ',')
				break;
			tok[n++] = *s++;
		}
		tok[n] = '\0';
		if (*s == ',')
			s++;
		eq = strchr(tok, '=');
		if (!eq && first)
			json_object_object_add(o, "driver",
					       json_object_new_string(tok));
		else if (eq) {
			*eq = '\0';
			json_object_object_add(o, tok,
					       json_object_new_string(eq + 1));
		}
		first = false;
	}
	free(tok);
	return o;
}

int qmp_open_fd(struct qmp *q, int fd, int64_t deadline)
{
	json_object *msg, *g, *v = NULL;
	int r, fl;

	q->fd = fd;
	q->eof = false;
	q->err = QMP_OK;
	/* Deadlines need a non-blocking socket (a caller's fd may not be). */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		qmp_fail(q, QMP_ERR_IO, "fcntl: %s", strerror(errno));
		return -1;
	}
	for (;;) {
		r = qmp_next(q, deadline, true, &msg);
		if (r) {
			size_t l = strlen(q->errmsg);

			snprintf(q->errmsg + l, sizeof(q->errmsg) - l,
				 " (waiting for the QMP greeting)");
			return r;
		}
		if (classify(msg) == MSG_EVENT) {
			/* Not allowed before capabilities; be lenient. */
			qmp_event_in(q, msg);
			json_object_put(msg);
			continue;
		}
		break;
	}
	if (!json_object_object_get_ex(msg, "QMP", &g) ||
	    !json_object_is_type(g, json_type_object)) {
		qmp_fail(q, QMP_ERR_PROTO,
			 "expected the QMP greeting, got: %.80s",
			 json_object_to_json_string(msg));
		json_object_put(msg);
		return -1;
	}
	q->greeting = json_object_get(g);
	json_object_put(msg);
	if (json_object_object_get_ex(q->greeting, "version", &v) &&
	    json_object_object_get_ex(v, "qemu", &v)) {
		q->ver_major = (int)qmp_get_int(v, "major", 0);
		q->ver_minor = (int)qmp_get_int(v, "minor", 0);
		q->ver_micro = (int)qmp_get_int(v, "micro", 0);
	}
	r = qmp_cmd(q, "qmp_capabilities", NULL, NULL, deadline);
	return r;
}

int qmp_open(struct qmp *q, const char *spec, int64_t deadline)
{
	struct sockaddr_un sa;
	char err[256];

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (vmm_parse_endpoint(spec, sa.sun_path, sizeof(sa.sun_path), err,
			       sizeof(err))) {
		qmp_fail(q, QMP_ERR_CONNECT, "%s", err);
		return -1;
	}
	snprintf(q->path, sizeof(q->path), "%s", sa.sun_path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
				SOCK_CLOEXEC, 0);
		int e;

		if (fd < 0) {
			qmp_fail(q, QMP_ERR_CONNECT, "socket: %s",
				 strerror(errno));
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			if (q->verbose)
				vmm_log("%s: connected to %s", q->name, q->path);
			return qmp_open_fd(q, fd, deadline);
		}
		e = errno;
		close(fd);
		if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN) {
			qmp_fail(q, QMP_ERR_CONNECT, "cannot connect to %s: %s",
				 q->path, strerror(e));
			return -1;
		}
		if (vmm_now_ns() + 50000000 > deadline) {
			qmp_fail(q, QMP_ERR_CONNECT,
				 "cannot connect to %s: %s (is QEMU running with -qmp unix:%s,server=on,wait=off?)",
				 q->path, strerror(e), q->path);
			q->err = QMP_ERR_CONNECT;
			return -2;
		}
		poll(NULL, 0, 50);
	}
}

int qmp_wait_event(struct qmp *q, const char *name, qmp_match_fn match,
		   void *arg, json_object **data, int64_t *t_ns,
		   int64_t deadline)
{
	unsigned int scanned = 0;

	if (data)
		*data = NULL;
	for (;;) {
		json_object *msg;
		int r;

		for (; scanned < q->evcount; scanned++) {
			unsigned int i = (q->evhead + scanned) % QMP_EVENTQ_MAX;
			struct qmp_event *e = &q->evq[i];
			unsigned int j;

			if (strcmp(e->name, name) != 0 ||
			    (match && !match(e->data, arg)))
				continue;
			if (data)
				*data = e->data;
			else
				json_object_put(e->data);
			if (t_ns)
				*t_ns = e->t_ns;
			/* Remove entry i, keeping order. */
			for (j = scanned; j > 0; j--) {
				unsigned int to = (q->evhead + j) % QMP_EVENTQ_MAX;
				unsigned int from = (q->evhead + j - 1) % QMP_EVENTQ_MAX;

				q->evq[to] = q->evq[from];
			}
			q->evq[q->evhead].data = NULL;
			q->evhead = (q->evhead + 1) % QMP_EVENTQ_MAX;
			q->evcount--;
			return 0;
		}
		r = qmp_next(q, deadline, true, &msg);
		if (r) {
			size_t l = strlen(q->errmsg);

			snprintf(q->errmsg + l, sizeof(q->errmsg) - l,
				 " (waiting for event %s)", name);
			return r;
		}
		switch (classify(msg)) {
		case MSG_EVENT:
			qmp_event_in(q, msg);
			/* If the queue was full, the oldest went away. */
			if (scanned >= q->evcount)
				scanned = q->evcount - 1;
			break;
		case MSG_REPLY:
			q->n_stray_replies++;
			break;
		default:
			break;
		}
		json_object_put(msg);
	}
}

static bool match_key(json_object *data, const char *key, const char *want)
{
	const char *v = qmp_get_str(data, key, NULL);

	return v && strcmp(v, want) == 0;
}

bool qmp_match_device(json_object *data, void *arg)
{
	return match_key(data, "device", arg);
}

bool qmp_match_job(json_object *data, void *arg)
{
	return match_key(data, "device", arg) || match_key(data, "id", arg);
}

const char *qmp_get_str(json_object *o, const char *key, const char *def)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return def;
	return json_object_get_string(v);
}

int64_t qmp_get_int(json_object *o, const char *key, int64_t def)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) ||
	    !(json_object_is_type(v, json_type_int) ||
	      json_object_is_type(v, json_type_double)))
		return def;
	return json_object_get_int64(v);
}
