// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fake-qmp.c - a scripted QMP peer, as libvirt's qemumonitortestutils
 * replays a monitor: it plays QEMU's side of a conversation from a script
 * of expected commands and canned replies and events.
 *
 *   fake-qmp --listen PATH [--timeout-ms N] SCRIPT-FILE
 *
 * Script steps, one per line ('#' comments, blank lines ignored):
 *   > TEXT          send TEXT and "\r\n" (a greeting, an event, garbage)
 *   >> TEXT         send TEXT without a line end (a truncated message)
 *   < CMD [ID]      read the next command (it must be one valid JSON
 *                   object); its "execute" must be CMD ("*": any), its id
 *                   ID when given; remembers the id and the arguments
 *   args JSON       the last command's "arguments" must equal JSON (null:
 *                   none), member by member (json-c's json_object_equal)
 *   = JSON          send the JSON object as the reply, with the last id
 *   =noid JSON      send it without an id
 *   =id ID JSON     send it with id ID (a stale reply)
 *   sleep MS        pause
 *   flood MS TEXT   send TEXT and "\r\n" back to back for MS ms, as fast
 *                   as the client reads (a monitor that never pauses); a
 *                   client that closes meanwhile ends the script, no error
 *   close           close the connection (the script ends)
 *   accept          close the connection, take the next one, go on
 *                   (a client that reconnects; standalone mode only)
 * The default greeting is not implicit: scripts start with "> {"QMP":...}".
 * After the script, later connections get a greeting and an error reply
 * to every command (class GenericError), until --timeout-ms (default
 * 60000) passes.  Exit 0 when the script ran to its end, 1 when a step
 * did not match (the reason on stderr), 2 at the timeout.
 *
 * Built with FAKE_QMP_NO_MAIN, this file is the engine of test_qmp.c,
 * which runs scripts in a thread on a socketpair.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

struct fq {
	int fd;
	char buf[1 << 16];
	size_t len;
	char id[128];		/* last command's id, as JSON text */
	char last_cmd[64];
	json_object *last_args;	/* last command's "arguments" (or NULL) */
	long long end_ms;
	char err[512];
	unsigned long ncmds;
};

static long long fq_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fq_write(struct fq *f, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(f->fd, s, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one line (without CRLF) into line; 1 ok, 0 timeout, -1 closed. */
static int fq_read_line(struct fq *f, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(f->buf, '\n', f->len);
		struct pollfd p = { .fd = f->fd, .events = POLLIN };
		long long left;
		ssize_t r;

		if (nl) {
			size_t n = (size_t)(nl - f->buf), used = n + 1;

			if (n && f->buf[n - 1] == '\r')
				n--;
			if (n >= size)
				n = size - 1;
			memcpy(line, f->buf, n);
			line[n] = '\0';
			memmove(f->buf, f->buf + used, f->len - used);
			f->len -= used;
			return 1;
		}
		left = f->end_ms - fq_now_ms();
		if (left <= 0)
			return 0;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		r = read(f->fd, f->buf + f->len, sizeof(f->buf) - f->len);
		if (r <= 0)
			return -1;
		f->len += (size_t)r;
	}
}

/*
 * Parse a command line from the client: exactly one JSON object (json-c,
 * strict: a client that sends anything else fails the script).  Its
 * "execute" into cmd, its "id" as JSON text into id ("" if none), its
 * "arguments" into *args (a new reference, or NULL).  -1 if malformed.
 */
static int fq_parse_cmd(const char *line, char *cmd, size_t cmdsize,
			char *id, size_t idsize, json_object **args)
{
	json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
	json_object *o, *v;
	size_t n = strlen(line);
	int rc = -1;

	if (!tok)
		return -1;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, line, (int)n);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    (size_t)json_tokener_get_parse_end(tok) != n ||
	    !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "execute", &v) ||
	    !json_object_is_type(v, json_type_string))
		goto out;
	snprintf(cmd, cmdsize, "%s", json_object_get_string(v));
	id[0] = '\0';
	if (json_object_object_get_ex(o, "id", &v))
		snprintf(id, idsize, "%s", json_object_to_json_string_ext(
				 v, JSON_C_TO_STRING_PLAIN));
	*args = NULL;
	if (json_object_object_get_ex(o, "arguments", &v))
		*args = json_object_get(v);
	rc = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

/* An id given in a script as a JSON string text. */
static void fq_id_text(const char *id, char *out, size_t size)
{
	json_object *s = json_object_new_string(id);

	snprintf(out, size, "%s", json_object_to_json_string_ext(
			 s, JSON_C_TO_STRING_PLAIN));
	json_object_put(s);
}

/* Send obj (a JSON object text, from the script: it may be malformed on
 * purpose) with ,"id":ID (ID: JSON text) inserted before its end. */
static int fq_reply(struct fq *f, const char *obj, const char *id)
{
	const char *close = strrchr(obj, '}');
	char tail[200];
	int n;

	if (!close) {
		snprintf(f->err, sizeof(f->err), "reply is not an object: %.100s",
			 obj);
		return -1;
	}
	if (id && id[0])
		n = snprintf(tail, sizeof(tail), ", \"id\": %s}\r\n", id);
	else
		n = snprintf(tail, sizeof(tail), "}\r\n");
	if (fq_write(f, obj, (size_t)(close - obj)) ||
	    fq_write(f, tail, (size_t)n) ||
	    fq_write(f, close + 1, strlen(close + 1))) {
		snprintf(f->err, sizeof(f->err), "peer gone while replying");
		return -1;
	}
	return 0;
}

/* Run one step; 0 ok, 1 script over (close), -1 failure (f->err). */
static int fq_step(struct fq *f, const char *s)
{
	char line[1 << 16];
	int r;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s || *s == '#')
		return 0;
	if (strncmp(s, ">> ", 3) == 0)
		return fq_write(f, s + 3, strlen(s + 3)) ? -1 : 0;
	if (strncmp(s, "> ", 2) == 0) {
		if (fq_write(f, s + 2, strlen(s + 2)) || fq_write(f, "\r\n", 2)) {
			snprintf(f->err, sizeof(f->err), "peer gone while sending");
			return -1;
		}
		return 0;
	}
	if (strncmp(s, "< ", 2) == 0) {
		char want[64] = "", wid[128] = "", cmd[64] = "", wtext[160];

		sscanf(s + 2, "%63s %127s", want, wid);
		r = fq_read_line(f, line, sizeof(line));
		if (r <= 0) {
			snprintf(f->err, sizeof(f->err), "expected command %s: %s",
				 want, r ? "peer closed" : "timeout");
			return -1;
		}
		f->ncmds++;
		json_object_put(f->last_args);
		f->last_args = NULL;
		if (fq_parse_cmd(line, cmd, sizeof(cmd), f->id, sizeof(f->id),
				 &f->last_args)) {
			snprintf(f->err, sizeof(f->err),
				 "expected command %s, got invalid JSON: %.300s",
				 want, line);
			return -1;
		}
		if (strcmp(want, "*") && strcmp(want, cmd)) {
			snprintf(f->err, sizeof(f->err),
				 "expected command %s, got: %.300s", want, line);
			return -1;
		}
		snprintf(f->last_cmd, sizeof(f->last_cmd), "%s", cmd);
		fq_id_text(wid, wtext, sizeof(wtext));
		if (wid[0] && strcmp(wtext, f->id)) {
			snprintf(f->err, sizeof(f->err),
				 "command %s: expected id %s, got '%s'", cmd, wid,
				 f->id);
			return -1;
		}
		return 0;
	}
	if (strncmp(s, "args ", 5) == 0) {
		json_object *want = json_tokener_parse(s + 5);
		bool same = json_object_equal(want, f->last_args);

		if (!same)
			snprintf(f->err, sizeof(f->err),
				 "command %s: arguments %.200s, expected %.200s",
				 f->last_cmd, f->last_args ?
				 json_object_to_json_string_ext(f->last_args,
					JSON_C_TO_STRING_PLAIN) : "(none)",
				 s + 5);
		json_object_put(want);
		return same ? 0 : -1;
	}
	if (strncmp(s, "=noid ", 6) == 0)
		return fq_reply(f, s + 6, NULL) ? -1 : 0;
	if (strncmp(s, "=id ", 4) == 0) {
		char id[128], idtext[160];
		const char *p = s + 4;
		int n = 0;

		if (sscanf(p, "%127s%n", id, &n) != 1)
			return -1;
		fq_id_text(id, idtext, sizeof(idtext));
		return fq_reply(f, p + n, idtext) ? -1 : 0;
	}
	if (strncmp(s, "= ", 2) == 0)
		return fq_reply(f, s + 2, f->id) ? -1 : 0;
	if (strncmp(s, "flood ", 6) == 0) {
		static char burst[1 << 16];
		long long end;
		size_t n = 0, len;
		int ms = 0, off = 0;

		if (sscanf(s + 6, "%d %n", &ms, &off) != 1 || !off)
			return -1;
		len = strlen(s + 6 + off);
		while (n + len + 2 <= sizeof(burst)) {
			memcpy(burst + n, s + 6 + off, len);
			memcpy(burst + n + len, "\r\n", 2);
			n += len + 2;
		}
		for (end = fq_now_ms() + ms; fq_now_ms() < end;)
			if (fq_write(f, burst, n))
				return 1;
		return 0;
	}
	if (strncmp(s, "sleep ", 6) == 0) {
		poll(NULL, 0, atoi(s + 6));
		return 0;
	}
	if (strcmp(s, "close") == 0)
		return 1;
	if (strcmp(s, "accept") == 0)
		return 2;
	snprintf(f->err, sizeof(f->err), "bad script step: %s", s);
	return -1;
}

/*
 * Run steps[from..n) on fd (not closed here).  0 when done, -1 on a
 * failure (f->err), or the index after an "accept" step (> 0).
 */
static int fq_run(struct fq *f, int fd, const char *const *steps, int n,
		  int from, long long timeout_ms)
{
	int i, r;

	f->fd = fd;
	f->len = 0;
	f->id[0] = '\0';
	f->err[0] = '\0';
	f->end_ms = fq_now_ms() + timeout_ms;
	for (i = from; i < n; i++) {
		r = fq_step(f, steps[i]);
		if (r == 1)
			return 0;
		if (r == 2)
			return i + 1;
		if (r < 0) {
			if (!f->err[0])
				snprintf(f->err, sizeof(f->err), "step failed: %s",
					 steps[i]);
			return -1;
		}
	}
	return 0;
}

#ifndef FAKE_QMP_NO_MAIN
static const char greeting[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"fake-qmp\"}, \"capabilities\": [\"oob\"]}}";

int main(int argc, char **argv)
{
	const char *path = NULL, *script = NULL;
	long long timeout_ms = 60000, end;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static struct fq f;
	char *steps[4096];
	int nsteps = 0, lfd, i, rc = 0, next = 0;
	bool done = false;
	FILE *sf;
	char line[1 << 16];

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = atoll(argv[++i]);
		else
			script = argv[i];
	}
	if (!path || !script) {
		fprintf(stderr, "usage: fake-qmp --listen PATH [--timeout-ms N] SCRIPT\n");
		return 1;
	}
	sf = fopen(script, "r");
	if (!sf) {
		perror(script);
		return 1;
	}
	while (nsteps < 4096 && fgets(line, sizeof(line), sf)) {
		line[strcspn(line, "\r\n")] = '\0';
		steps[nsteps++] = strdup(line);
	}
	fclose(sf);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(lfd, 4)) {
		perror(path);
		return 1;
	}
	end = fq_now_ms() + timeout_ms;
	while (fq_now_ms() < end) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, (int)(end - fq_now_ms())) <= 0)
			continue;
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (!done) {
			int r = fq_run(&f, fd, (const char *const *)steps,
				       nsteps, next, end - fq_now_ms());

			if (r < 0) {
				fprintf(stderr, "fake-qmp: %s\n", f.err);
				rc = 1;
			}
			if (r > 0)
				next = r;
			else
				done = true;
			close(fd);
			continue;
		}
		/* After the script: greeting, then refuse every command. */
		f.fd = fd;
		f.len = 0;
		f.end_ms = end;
		fq_write(&f, greeting, strlen(greeting));
		fq_write(&f, "\r\n", 2);
		while (fq_read_line(&f, line, sizeof(line)) > 0) {
			char id[128] = "", cmd[64] = "";
			json_object *args = NULL;

			if (fq_parse_cmd(line, cmd, sizeof(cmd), id, sizeof(id),
					 &args)) {
				fprintf(stderr, "fake-qmp: invalid JSON from the client: %.300s\n",
					line);
				rc = 1;
				break;
			}
			json_object_put(args);
			if (strcmp(cmd, "qmp_capabilities") == 0)
				fq_reply(&f, "{\"return\": {}}", id);
			else
				fq_reply(&f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake-qmp: script finished\"}}", id);
		}
		close(fd);
	}
	close(lfd);
	unlink(path);
	if (!done)
		return 2;
	return rc;
}
#endif
