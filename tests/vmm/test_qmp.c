// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * test_qmp.c - unit tests of the QMP client (vmm-bridge/qmp_client.c)
 * against a scripted fake QEMU (fake-qmp.c's engine in a thread, on a
 * socketpair): greeting, capabilities, ids, events between replies, error
 * classes, stale and id-less replies, malformed JSON, truncated replies,
 * a peer that closes or stays silent, event queue overflow, arguments
 * with '"' and '\\' built by json-c, a deadline that holds while the
 * monitor streams events.  No VM.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/ninja_test.h"
#include "qmp_client.h"
#include "vmm_chan.h"

#define FAKE_QMP_NO_MAIN
#include "fake-qmp.c"


#define GREETING "> {\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}"
#define CAPS "< qmp_capabilities ninja-1", "= {\"return\": {}}"

struct peer {
	pthread_t th;
	int fd;
	const char *const *steps;
	int n;
	int rc;
	struct fq f;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	p->rc = fq_run(&p->f, p->fd, p->steps, p->n, 0, 10000);
	if (p->rc)
		printf("  fake peer: %s\n", p->f.err);
	json_object_put(p->f.last_args);
	/* Keep the socket open briefly so the client reads everything. */
	poll(NULL, 0, 50);
	close(p->fd);
	return NULL;
}

static struct peer *peer_start(const char *const *steps, int n, int *cfd)
{
	struct peer *p = calloc(1, sizeof(*p));
	int sv[2];

	if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		perror("socketpair");
		exit(2);
	}
	p->fd = sv[1];
	p->steps = steps;
	p->n = n;
	*cfd = sv[0];
	/* The client socket is non-blocking, as qmp_open makes it. */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	pthread_create(&p->th, NULL, peer_main, p);
	return p;
}

static int peer_join(struct peer *p)
{
	int rc;

	pthread_join(p->th, NULL);
	rc = p->rc;
	free(p);
	return rc;
}

static int64_t in_ms(int ms)
{
	return vmm_now_ns() + (int64_t)ms * 1000000;
}

#define RUN(q, steps) \
	struct qmp q; int q##_fd; \
	struct peer *q##_peer = peer_start(steps, (int)(sizeof(steps) / sizeof(steps[0])), &q##_fd); \
	qmp_init(&q, "fake")

static int n_handled;
static void on_event(struct qmp *q, const char *ev, json_object *data,
		     void *opaque)
{
	(void)q; (void)data;
	if (strcmp(ev, "DEVICE_DELETED") == 0)
		(*(int *)opaque)++;
	n_handled++;
}

static const struct qmp_event_handler handlers[] = {
	{ "DEVICE_DELETED", on_event },
	{ "STOP", on_event },
	{ NULL, NULL },
};

static void t_greeting(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< query-status ninja-2",
		"= {\"return\": {\"status\": \"running\", \"running\": true}}",
		"< query-version ninja-3",
		"= {\"return\": {}}",
	};
	json_object *ret = NULL;

	nt_group("qmp: greeting, capabilities, ids ninja-N, return value");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(q.ver_major == 7 && q.ver_minor == 2 && q.ver_micro == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, &ret, in_ms(3000)) == 0);
		CHECK(ret && strcmp(qmp_get_str(ret, "status", ""), "running") == 0);
		json_object_put(ret);
		CHECK(qmp_cmd(&q, "query-version", NULL, NULL, in_ms(3000)) == 0);
		CHECK(q.err == QMP_OK);
		qmp_close(&q);
		CHECK(peer_join(q_peer) == 0);
	}
}

static void t_events(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< device_del ninja-2",
		"> {\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}",
		"> {\"event\": \"DEVICE_DELETED\", \"data\": {\"path\": \"/machine/peripheral/hca0/virtio-backend\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}",
		"= {\"return\": {}}",
		"> {\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"hca0\", \"path\": \"/machine/peripheral/hca0\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 4}}",
		"sleep 100",
		"> {\"event\": \"FUTURE_EVENT\", \"data\": {\"x-new\": 1}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 5}}",
		"< query-status",
		"= {\"return\": {\"status\": \"running\", \"unknown-key\": [1, 2]}}",
	};
	json_object *data = NULL;
	int64_t t = 0;
	int deleted = 0;

	nt_group("qmp: events between replies, handler table, queue, match");
	{
		RUN(q, s);
		qmp_set_handlers(&q, handlers, &deleted);
		n_handled = 0;
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "device_del",
			      qmp_args("id", json_object_new_string("hca0"), NULL),
			      NULL, in_ms(3000)) == 0);
		CHECK(n_handled == 2 && deleted == 1);
		CHECK(q.evcount == 2);
		/* The queued STOP is found without reading. */
		CHECK(qmp_wait_event(&q, "STOP", NULL, NULL, NULL, &t, in_ms(100)) == 0);
		CHECK(t > 0);
		/* The DEVICE_DELETED without "device" does not match hca0. */
		CHECK(qmp_wait_event(&q, "DEVICE_DELETED", qmp_match_device, "hca0",
				     &data, NULL, in_ms(3000)) == 0);
		CHECK(data && strcmp(qmp_get_str(data, "device", ""), "hca0") == 0);
		json_object_put(data);
		CHECK(deleted == 2);
		CHECK(q.evcount == 1);	/* the path-only one stays queued */
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(3000)) == 0);
		CHECK(q.n_events == 4);
		CHECK(qmp_wait_event(&q, "FUTURE_EVENT", NULL, NULL, NULL, NULL, in_ms(100)) == 0);
		qmp_flush_events(&q);
		CHECK(q.evcount == 0);
		qmp_close(&q);
		CHECK(peer_join(q_peer) == 0);
	}
}

static void t_errors(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< device_del",
		"= {\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'hca0' not found\"}}",
		"< frobnicate",
		"= {\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command frobnicate has not been found\"}}",
		"< blockdev-mirror",
		"= {\"error\": {\"desc\": \"no class member\"}}",
		"< query-status",
		"= {\"return\": {}}",
	};

	nt_group("qmp: error replies by class; connection stays usable");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "device_del",
			      qmp_args("id", json_object_new_string("hca0"), NULL),
			      NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_CMD);
		CHECK(strcmp(q.errclass, "DeviceNotFound") == 0);
		CHECK(strstr(q.errmsg, "device_del") != NULL);
		CHECK(qmp_cmd(&q, "frobnicate", NULL, NULL, in_ms(3000)) == -1);
		CHECK(strcmp(q.errclass, "CommandNotFound") == 0);
		CHECK(qmp_cmd(&q, "blockdev-mirror", NULL, NULL, in_ms(3000)) == -1);
		CHECK(strcmp(q.errclass, "unknown") == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(3000)) == 0);
		CHECK(q.errclass[0] == '\0' && q.err == QMP_OK);
		qmp_close(&q);
		CHECK(peer_join(q_peer) == 0);
	}
}

static void t_ids(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< query-status ninja-2",
		"=id ninja-1 {\"return\": {\"status\": \"stale\"}}",
		"=id 17 {\"return\": {\"status\": \"not ours\"}}",
		"= {\"return\": {\"status\": \"running\"}}",
		"< cont ninja-3",
		"=noid {\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}",
	};
	json_object *ret = NULL;

	nt_group("qmp: replies with unknown ids dropped, id-less reply answers");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, &ret, in_ms(3000)) == 0);
		CHECK(ret && strcmp(qmp_get_str(ret, "status", ""), "running") == 0);
		json_object_put(ret);
		CHECK(q.n_stray_replies == 2);
		CHECK(qmp_cmd(&q, "cont", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_CMD && strcmp(q.errclass, "GenericError") == 0);
		qmp_close(&q);
		CHECK(peer_join(q_peer) == 0);
	}
}

static void t_malformed(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< query-status",
		"> {\"return\": {\"status\": \"running\", ",
		"sleep 200",
	};
	static const char *const s2[] = { GREETING, CAPS,
		"< query-status",
		"> [1, 2, 3]",
		"sleep 200",
	};
	static const char *const s3[] = { GREETING, CAPS,
		"< query-status",
		"> {\"return\": {}} trailing-garbage",
		"sleep 200",
	};

	nt_group("qmp: malformed JSON, non-object, trailing bytes -> protocol error, sticky");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_PROTO);
		CHECK(strstr(q.errmsg, "malformed") != NULL);
		CHECK(strstr(q.errmsg, "query-status") != NULL);
		/* Sticky: the next command is refused at once. */
		CHECK(qmp_cmd(&q, "cont", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_IO);
		qmp_close(&q);
		peer_join(q_peer);
	}
	{
		RUN(q, s2);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_PROTO);
		CHECK(strstr(q.errmsg, "not a JSON object") != NULL);
		qmp_close(&q);
		peer_join(q_peer);
	}
	{
		RUN(q, s3);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_PROTO);
		qmp_close(&q);
		peer_join(q_peer);
	}
}

static void t_truncated(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< query-migrate",
		">> {\"return\": {\"status\": \"act",
		"close",
	};
	static const char *const s2[] = { GREETING, CAPS,
		"< quit",
		"close",
	};

	nt_group("qmp: truncated reply then close, peer closes -> I/O error");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "query-migrate", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_IO);
		CHECK(strstr(q.errmsg, "middle of a message") != NULL);
		CHECK(q.eof);
		qmp_close(&q);
		peer_join(q_peer);
	}
	{
		RUN(q, s2);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "quit", NULL, NULL, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_IO);
		CHECK(strstr(q.errmsg, "closed by QEMU") != NULL);
		CHECK(qmp_wait_event(&q, "SHUTDOWN", NULL, NULL, NULL, NULL, in_ms(100)) == -1);
		qmp_close(&q);
		peer_join(q_peer);
	}
}

static void t_timeout(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< query-status",
		"sleep 600",
	};
	static const char *const s2[] = {
		"sleep 600",
	};
	int64_t t0;

	nt_group("qmp: deadlines (silent peer, no greeting, no event)");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		t0 = vmm_now_ns();
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(200)) == -2);
		CHECK(q.err == QMP_ERR_TIMEOUT);
		CHECK(vmm_now_ns() - t0 >= 190000000 && vmm_now_ns() - t0 < 550000000);
		t0 = vmm_now_ns();
		CHECK(qmp_wait_event(&q, "RESUME", NULL, NULL, NULL, NULL, in_ms(100)) == -2);
		CHECK(vmm_now_ns() - t0 < 450000000);
		qmp_close(&q);
		peer_join(q_peer);
	}
	{
		RUN(q, s2);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(150)) == -2);
		CHECK(strstr(q.errmsg, "greeting") != NULL);
		qmp_close(&q);
		peer_join(q_peer);
	}
}

static void t_bad_greeting(void)
{
	static const char *const s[] = {
		"> {\"return\": {}}",
		"sleep 100",
	};
	static const char *const s2[] = {
		"> this is not QMP at all",
		"sleep 100",
	};
	static const char *const s3[] = { GREETING,
		"< qmp_capabilities",
		"= {\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"x\"}}",
	};

	nt_group("qmp: bad greeting, garbage instead of QMP, capabilities refused");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_PROTO);
		CHECK(strstr(q.errmsg, "greeting") != NULL);
		qmp_close(&q);
		peer_join(q_peer);
	}
	{
		RUN(q, s2);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_PROTO);
		qmp_close(&q);
		peer_join(q_peer);
	}
	{
		RUN(q, s3);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == -1);
		CHECK(q.err == QMP_ERR_CMD);
		qmp_close(&q);
		peer_join(q_peer);
	}
}

static void t_overflow(void)
{
	static const char *steps[400];
	static char big[300000];
	int n = 0, i, deleted = 0;
	json_object *ret = NULL;

	steps[n++] = GREETING;
	steps[n++] = "< qmp_capabilities";
	steps[n++] = "= {\"return\": {}}";
	steps[n++] = "< query-status";
	for (i = 0; i < 300; i++)
		steps[n++] = "> {\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"x\"}}";
	/* A 300 kB reply (query-* answers can be big). */
	memcpy(big, "= {\"return\": {\"blob\": \"", 23);
	memset(big + 23, 'a', sizeof(big) - 23 - 6);
	strcpy(big + sizeof(big) - 6, "\"}}");
	steps[n++] = big;
	nt_group("qmp: 300 events queue (oldest dropped), a 300 kB reply");
	{
		struct qmp q;
		int fd;
		struct peer *p = peer_start(steps, n, &fd);

		qmp_init(&q, "fake");
		qmp_set_handlers(&q, handlers, &deleted);
		CHECK(qmp_open_fd(&q, fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "query-status", NULL, &ret, in_ms(5000)) == 0);
		CHECK(ret && strlen(qmp_get_str(ret, "blob", "")) > 290000);
		json_object_put(ret);
		CHECK(deleted == 300);
		CHECK(q.evcount == QMP_EVENTQ_MAX);
		CHECK(q.n_events_dropped == 300 - QMP_EVENTQ_MAX);
		qmp_close(&q);
		CHECK(peer_join(p) == 0);
	}
}

/*
 * A device id with '"' and '\\' (and a ",," comma) reaches the monitor
 * intact: the fake parses every command as strict JSON and compares the
 * arguments member by member.
 */
static void t_escaping(void)
{
	static const char *const s[] = { GREETING, CAPS,
		"< device_del ninja-2",
		"args {\"id\": \"h\\\"ca\\\\0\"}",
		"= {\"return\": {}}",
		"> {\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"h\\\"ca\\\\0\"}}",
		"< device_add ninja-3",
		"args {\"driver\": \"e1000\", \"id\": \"h\\\"ca\\\\0\", \"bus\": \"rp,1\", \"x\": \"\"}",
		"= {\"return\": {}}",
		"< blockdev-add ninja-4",
		"args {\"node-name\": \"a\\\\b\\\"c/d\", \"n\": 9223372036854775807, \"on\": true, \"l\": [{\"k\": \"\\u0001\\n\"}]}",
		"= {\"return\": {}}",
	};
	static const char id[] = "h\"ca\\0";
	json_object *data = NULL, *l;

	nt_group("qmp: a device id with '\"' and '\\' round-trips (json-c arguments)");
	{
		RUN(q, s);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		CHECK(qmp_cmd(&q, "device_del",
			      qmp_args("id", json_object_new_string(id), NULL),
			      NULL, in_ms(3000)) == 0);
		CHECK(qmp_wait_event(&q, "DEVICE_DELETED", qmp_match_device,
				     (void *)id, &data, NULL, in_ms(3000)) == 0);
		CHECK(data && strcmp(qmp_get_str(data, "device", ""), id) == 0);
		json_object_put(data);
		CHECK(qmp_cmd(&q, "device_add",
			      qmp_device_args("e1000,id=h\"ca\\0,bus=rp,,1,x=,noeq"),
			      NULL, in_ms(3000)) == 0);
		l = json_object_new_array();
		json_object_array_add(l, qmp_args("k", json_object_new_string("\001\n"),
						  NULL));
		CHECK(qmp_cmd(&q, "blockdev-add",
			      qmp_args("node-name", json_object_new_string("a\\b\"c/d"),
				       "skipped", NULL,
				       "n", json_object_new_int64(INT64_MAX),
				       "on", json_object_new_boolean(1),
				       "l", l, NULL),
			      NULL, in_ms(3000)) == 0);
		qmp_close(&q);
		CHECK(peer_join(q_peer) == 0);
	}
}

/*
 * A monitor that sends an event every few ms: a command (and a wait for
 * an event that never comes) still ends at its deadline.  The deadline
 * used to be checked only when the socket was empty.
 */
static void slow_handler(struct qmp *q, const char *ev, json_object *data,
			 void *opaque)
{
	(void)q; (void)ev; (void)data; (void)opaque;
	poll(NULL, 0, 1);
}

static void t_stream(void)
{
	static const char *steps[2 * 1000 + 8];
	int n = 0, i;
	int64_t t0, took;

	steps[n++] = GREETING;
	steps[n++] = "< qmp_capabilities";
	steps[n++] = "= {\"return\": {}}";
	steps[n++] = "< query-status";
	/* About 5 s of events, one every 2 ms, then silence. */
	for (i = 0; i < 1000; i++) {
		steps[n++] = "> {\"event\": \"MIGRATION_PASS\", \"data\": {\"pass\": 1}}";
		steps[n++] = "sleep 2";
	}
	steps[n++] = "close";
	nt_group("qmp: the deadline holds while the monitor streams events");
	{
		struct qmp q;
		int fd;
		struct peer *p = peer_start(steps, n, &fd);

		qmp_init(&q, "fake");
		CHECK(qmp_open_fd(&q, fd, in_ms(3000)) == 0);
		t0 = vmm_now_ns();
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(200)) == -2);
		took = vmm_now_ns() - t0;
		CHECK(q.err == QMP_ERR_TIMEOUT);
		CHECK(strstr(q.errmsg, "query-status") != NULL);
		/* Returned at its deadline, long before the stream ends. */
		CHECK(took >= 190000000 && took < 2000000000);
		if (took >= 2000000000)
			printf("  qmp_cmd took %.3f s (deadline 0.2 s)\n", took / 1e9);
		CHECK(q.n_events > 5);
		t0 = vmm_now_ns();
		CHECK(qmp_wait_event(&q, "RESUME", NULL, NULL, NULL, NULL,
				     in_ms(200)) == -2);
		took = vmm_now_ns() - t0;
		CHECK(took >= 190000000 && took < 2000000000);
		/* qmp_poll returns while the stream goes on. */
		CHECK(qmp_poll(&q) == 0);
		qmp_close(&q);
		/* The peer fails to send once the client is gone: expected. */
		peer_join(p);
	}
	{
		/* Events come faster than the client handles them (1 ms
		 * each): the socket is never empty. */
		static const char *const s[] = { GREETING, CAPS,
			"< query-status",
			"flood 5000 {\"event\": \"MIGRATION_PASS\", \"data\": {\"pass\": 1}}",
		};
		static const struct qmp_event_handler slow[] = {
			{ "MIGRATION_PASS", slow_handler },
			{ NULL, NULL },
		};
		RUN(q, s);
		qmp_set_handlers(&q, slow, NULL);
		CHECK(qmp_open_fd(&q, q_fd, in_ms(3000)) == 0);
		t0 = vmm_now_ns();
		CHECK(qmp_cmd(&q, "query-status", NULL, NULL, in_ms(200)) == -2);
		took = vmm_now_ns() - t0;
		CHECK(took >= 190000000 && took < 2000000000);
		CHECK(qmp_wait_event(&q, "RESUME", NULL, NULL, NULL, NULL,
				     in_ms(200)) == -2);
		CHECK(qmp_poll(&q) == 0);
		CHECK(q.n_events > 100);
		qmp_close(&q);
		CHECK(peer_join(q_peer) == 0);
	}
}

static void t_connect(void)
{
	struct qmp q;
	int64_t t0 = vmm_now_ns();

	nt_group("qmp: connect to a missing socket -> connect error at the deadline");
	qmp_init(&q, "nowhere");
	CHECK(qmp_open(&q, "unix:/nonexistent/ninja-test.qmp", in_ms(200)) == -2);
	CHECK(q.err == QMP_ERR_CONNECT);
	CHECK(strstr(q.errmsg, "/nonexistent/ninja-test.qmp") != NULL);
	CHECK(vmm_now_ns() - t0 < 1000000000);
	qmp_close(&q);
	qmp_init(&q, "bad");
	CHECK(qmp_open(&q, "tcp:localhost:4444", in_ms(200)) == -1);
	qmp_close(&q);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	t_greeting();
	t_events();
	t_errors();
	t_ids();
	t_malformed();
	t_truncated();
	t_timeout();
	t_bad_greeting();
	t_overflow();
	t_escaping();
	t_stream();
	t_connect();
	return nt_done();
}
