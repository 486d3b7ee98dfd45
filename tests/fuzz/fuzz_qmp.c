// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fuzz_qmp.c - libFuzzer harness of the QMP client's reply and event
 * handling (vmm-bridge/qmp_client.c): the input is what a QEMU monitor
 * sends, written into a socketpair whose other end the client reads.  The
 * client reads the greeting and negotiates (qmp_open_fd), runs two
 * commands, waits for an event with a matcher and polls, with handlers
 * that look at every event's data.  The peer then closes, so every call
 * must end (error or success) long before its deadline.
 *
 * A first input line starting with "#spec " is also turned into
 * device_add arguments (qmp_device_args), which must serialize.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp_client.h"
#include "vmm_chan.h"

static unsigned long n_handled;

static void on_event(struct qmp *q, const char *ev, json_object *data,
		     void *opaque)
{
	(void)q; (void)opaque;
	if (!ev)
		abort();
	n_handled++;
	(void)qmp_get_str(data, "device", NULL);
	(void)qmp_get_int(data, "offset", 0);
	(void)json_object_to_json_string(data);
}

static const struct qmp_event_handler handlers[] = {
	{ "DEVICE_DELETED", on_event },
	{ "BLOCK_JOB_READY", on_event },
	{ "", on_event },
	{ NULL, NULL },
};

static void spec(const char *p, size_t n)
{
	char s[1024];
	json_object *o;

	if (n >= sizeof(s))
		n = sizeof(s) - 1;
	memcpy(s, p, n);
	s[n] = '\0';
	o = qmp_device_args(s);
	if (!o || !json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN))
		abort();
	json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct qmp q;
	json_object *ret = NULL, *ev = NULL;
	int64_t deadline, t = 0;
	int sv[2];

	if (size > 65536)
		return 0;
	if (size > 6 && memcmp(data, "#spec ", 6) == 0) {
		const char *nl = memchr(data, '\n', size);
		size_t n = nl ? (size_t)(nl - (const char *)data) : size;

		spec((const char *)data + 6, n - 6);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	if (size && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	qmp_init(&q, "fuzz");
	qmp_set_handlers(&q, handlers, NULL);
	deadline = vmm_now_ns() + 5000000000LL;
	if (qmp_open_fd(&q, sv[0], deadline) == 0) {
		if (qmp_cmd(&q, "query-status", NULL, &ret, deadline) == 0) {
			(void)qmp_get_str(ret, "status", "");
			json_object_put(ret);
			ret = NULL;
		}
		if (q.err == QMP_ERR_TIMEOUT)
			abort();
		qmp_cmd(&q, "device_del",
			qmp_args("id", json_object_new_string("hca0"), NULL),
			&ret, deadline);
		json_object_put(ret);
		if (qmp_wait_event(&q, "DEVICE_DELETED", qmp_match_device,
				   "hca0", &ev, &t, deadline) == 0)
			json_object_put(ev);
		qmp_wait_event(&q, "BLOCK_JOB_COMPLETED", qmp_match_job,
			       "ninja-mirror", NULL, NULL, deadline);
		qmp_poll(&q);
	}
	/* The peer closed: nothing may have waited for the deadline. */
	if (q.err == QMP_ERR_TIMEOUT || vmm_now_ns() >= deadline)
		abort();
	if (strlen(q.errmsg) >= sizeof(q.errmsg) ||
	    strlen(q.errclass) >= sizeof(q.errclass) ||
	    q.evcount > QMP_EVENTQ_MAX)
		abort();
	qmp_close(&q);
	close(sv[1]);
	return 0;
}
