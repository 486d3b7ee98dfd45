// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_remote_dest.c - a VM's destination QEMU on another host, for the
 * QEMU backend: the checks, the start in a held ssh session, the
 * forwarders, the kill (see vmm_remote_dest.h).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm_chan.h"
#include "vmm_cluster.h"
#include "vmm_remote_dest.h"

void vmm_rdest_init(struct vmm_rdest *d, const struct vmm_vm_conf *c,
		    const char *run_dir, const char *site)
{
	memset(d, 0, sizeof(*d));
	d->fwd.keep_fd = -1;
	snprintf(d->r.host, sizeof(d->r.host), "%s", c->dest_host);
	d->r.tmpl = c->dest_ssh;
	snprintf(d->sshlog, sizeof(d->sshlog), "%s/%s.%s.ssh.log", run_dir,
		 c->name, site);
	d->r.log = d->sshlog;
}

/* Append fmt to buf (size), each %s argument quoted: -1 if it overflows. */
static int addq(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int addq(char *buf, size_t size, const char *fmt, ...)
{
	size_t l = strlen(buf);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf + l, size - l, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size - l ? -1 : 0;
}

static const char *q(const char *s, char *out, size_t size)
{
	if (vmm_remote_quote(s, out, size))
		snprintf(out, size, "''");
	return out;
}

static void dir_of(const char *path, char *out, size_t size)
{
	const char *sl = strrchr(path, '/');

	if (!sl || sl == path)
		snprintf(out, size, "/");
	else
		snprintf(out, size, "%.*s", (int)(sl - path), path);
}

/* Say why a remote command failed, naming the host. */
static void rfail(struct vmm_rdest *d, int st, const char *out,
		  const char *what, char *err, size_t errlen)
{
	if (st == 255)
		snprintf(err, errlen, "destination host %s is not reachable over ssh (%s): %s; check that its sshd runs and accepts the key of the ssh template",
			 d->r.host, d->r.tmpl, out[0] ? out : "ssh failed");
	else if (st == -2)
		snprintf(err, errlen, "destination host %s: no answer over ssh within the deadline (%s)",
			 d->r.host, what);
	else if (st < 0)
		snprintf(err, errlen, "cannot run ssh: %s", strerror(errno));
	else
		snprintf(err, errlen, "on destination host %s: %s%s%s", d->r.host,
			 what, out[0] ? ": " : "", out);
}

static void strip_nl(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

int vmm_rdest_check(struct vmm_rdest *d, const struct vmm_vm_conf *c,
		    int64_t deadline, char *err, size_t errlen)
{
	char cmd[4096] = "", a[600], b[600], bin[256], out[512];
	const char *s = c->dest_command;
	size_t n = 0;
	int st, bad = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (strncmp(s, "exec ", 5) == 0)
		s += 5;
	while (s[n] && s[n] != ' ' && s[n] != '\t')
		n++;
	snprintf(bin, sizeof(bin), "%.*s", (int)n, s);
	bad |= addq(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1 || { echo \"dest-command: %s not found\"; exit 3; }\n",
		    q(bin, a, sizeof(a)), q(bin, b, sizeof(b)));
	if (c->disk_node[0]) {
		bad |= addq(cmd, sizeof(cmd), "test -r %s || { echo \"base image %s is not readable\"; exit 3; }\n",
			    q(c->base, a, sizeof(a)), q(c->base, b, sizeof(b)));
		bad |= addq(cmd, sizeof(cmd), "test ! -e %s || { echo \"dest-overlay %s already exists (it must be created fresh on the base; remove it)\"; exit 3; }\n",
			    q(c->dest_overlay, a, sizeof(a)),
			    q(c->dest_overlay, b, sizeof(b)));
	}
	bad |= addq(cmd, sizeof(cmd), "f=%s; if test -f \"$f\" && kill -0 \"$(cat \"$f\")\" 2>/dev/null; then echo \"a destination QEMU already runs (pid $(cat \"$f\") in $f)\"; exit 3; fi\necho ok\n",
		    q(c->pidfile, a, sizeof(a)));
	if (bad) {
		snprintf(err, errlen, "paths too long for the check on host %s",
			 d->r.host);
		return -1;
	}
	st = vmm_remote_run(&d->r, cmd, out, sizeof(out), deadline);
	strip_nl(out);
	if (st == 0 && strcmp(out, "ok") == 0)
		return 0;
	rfail(d, st, out, "check", err, errlen);
	return -1;
}

int vmm_rdest_start(struct vmm_rdest *d, const struct vmm_vm_conf *c,
		    const char *backing, int64_t deadline, char *err,
		    size_t errlen)
{
	char *cmd, a[600], b[600], e[600], f[600], out[512], line[64];
	size_t size = strlen(c->dest_command) + 4096, ln = 0;
	const char *loc[2] = { c->dest_qmp + 5, c->dest_chan + 5 };
	const char *rem[2] = { c->remote_qmp, c->remote_chan };
	int st, fd, bad = 0;

	if (c->disk_node[0]) {
		char oc[2048] = "";

		if (addq(oc, sizeof(oc), "qemu-img create -q -f qcow2 -F qcow2 -b %s %s 2>&1",
			 q(backing, a, sizeof(a)), q(c->dest_overlay, b, sizeof(b)))) {
			snprintf(err, errlen, "paths too long");
			return -1;
		}
		st = vmm_remote_run(&d->r, oc, out, sizeof(out), deadline);
		strip_nl(out);
		if (st) {
			rfail(d, st, out, "qemu-img create failed", err, errlen);
			return -1;
		}
		d->overlay_created = true;
	}
	cmd = calloc(1, size);
	if (!cmd) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	dir_of(c->dest_log, e, sizeof(e));
	dir_of(c->pidfile, f, sizeof(f));
	bad |= addq(cmd, size, "mkdir -p -- %s", q(e, a, sizeof(a)));
	bad |= addq(cmd, size, " %s || exit 3\n", q(f, a, sizeof(a)));
	bad |= addq(cmd, size, "rm -f -- %s", q(c->remote_qmp, a, sizeof(a)));
	bad |= addq(cmd, size, " %s\n", q(c->remote_chan, a, sizeof(a)));
	bad |= addq(cmd, size, "(exec %s -S -incoming defer) </dev/null >>%s 2>&1 &\n",
		    c->dest_command, q(c->dest_log, a, sizeof(a)));
	bad |= addq(cmd, size, "p=$!\necho $p >%s\necho ninja-pid=$p\nwait $p\n",
		    q(c->pidfile, a, sizeof(a)));
	if (bad || vmm_remote_spawn(&d->r, cmd, &d->session, &fd)) {
		free(cmd);
		snprintf(err, errlen, "cannot start ssh to %s", d->r.host);
		return -1;
	}
	free(cmd);
	/* Its pid, as the first line. */
	line[0] = '\0';
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int64_t left = (deadline - vmm_now_ns()) / 1000000;
		ssize_t k;

		if (left <= 0) {
			close(fd);
			snprintf(err, errlen, "destination host %s: the QEMU did not start within the deadline (see %s)",
				 d->r.host, d->sshlog);
			return -2;
		}
		if (poll(&pf, 1, (int)(left > 200 ? 200 : left)) <= 0)
			continue;
		k = read(fd, line + ln, 1);
		if (k <= 0 || line[ln] == '\n' || ln + 2 >= sizeof(line))
			break;
		ln++;
	}
	line[ln] = '\0';
	close(fd);
	if (sscanf(line, "ninja-pid=%ld", &d->rpid) != 1 || d->rpid <= 0) {
		char why[300];

		vmm_rdest_alive(d, why, sizeof(why));
		snprintf(err, errlen, "the destination QEMU did not start on host %s: %s",
			 d->r.host, why);
		return -1;
	}
	if (vmm_fwd_start(&d->fwd, &d->r, loc, rem, 2, deadline, err, errlen))
		return -1;
	return 0;
}

bool vmm_rdest_alive(struct vmm_rdest *d, char *why, size_t whylen)
{
	int st;

	if (d->session <= 0) {
		if (why)
			snprintf(why, whylen, "was not started on host %s",
				 d->r.host);
		return false;
	}
	if (!d->reaped) {
		pid_t w = waitpid(d->session, &st, WNOHANG);

		if (w == 0) {
			if (d->fwd.pid > 0 && !vmm_fwd_alive(&d->fwd, why,
							     whylen))
				return false;
			return true;
		}
		d->reaped = true;
		d->status = w > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 255;
	}
	if (why) {
		char tail[200] = "";

		st = d->status;
		if (st == 255) {
			vmm_remote_log_tail(d->sshlog, tail, sizeof(tail));
			snprintf(why, whylen, "is out of reach: the ssh session to host %s ended%s%s",
				 d->r.host, tail[0] ? ": " : "", tail);
		} else if (st > 128) {
			snprintf(why, whylen, "was killed by signal %d on host %s",
				 st - 128, d->r.host);
		} else {
			snprintf(why, whylen, "exited with status %d on host %s",
				 st, d->r.host);
		}
	}
	return false;
}

void vmm_rdest_log_tail(struct vmm_rdest *d, const struct vmm_vm_conf *c,
			char *out, size_t size)
{
	char cmd[700], a[600];

	snprintf(cmd, sizeof(cmd), "tail -n 1 -- %s", q(c->dest_log, a, sizeof(a)));
	if (vmm_remote_run(&d->r, cmd, out, size, vmm_now_ns() + 5000000000LL))
		out[0] = '\0';
	strip_nl(out);
}

void vmm_rdest_kill(struct vmm_rdest *d, const struct vmm_vm_conf *c)
{
	char cmd[2048] = "", a[600], out[128];
	int64_t end = vmm_now_ns() + 3000000000LL;

	vmm_fwd_stop(&d->fwd);
	/* A QEMU asked to quit ends its session by itself. */
	while (d->session > 0 && vmm_rdest_alive(d, NULL, 0) &&
	       vmm_now_ns() < end)
		poll(NULL, 0, 20);
	if (d->rpid > 0 && vmm_rdest_alive(d, NULL, 0))
		addq(cmd, sizeof(cmd), "kill -TERM %ld 2>/dev/null; i=0; while kill -0 %ld 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL %ld 2>/dev/null\n",
		     d->rpid, d->rpid, d->rpid);
	if (d->rpid > 0)
		addq(cmd, sizeof(cmd), "rm -f -- %s\n", q(c->pidfile, a, sizeof(a)));
	if (d->overlay_created)
		addq(cmd, sizeof(cmd), "rm -f -- %s\n",
		     q(c->dest_overlay, a, sizeof(a)));
	if (cmd[0] && vmm_remote_run(&d->r, cmd, out, sizeof(out),
				     vmm_now_ns() + 10000000000LL) == 0)
		d->overlay_created = false;
	if (d->session > 0 && !d->reaped) {
		end = vmm_now_ns() + 3000000000LL;
		while (vmm_rdest_alive(d, NULL, 0) && vmm_now_ns() < end)
			poll(NULL, 0, 20);
		if (!d->reaped) {
			int st;

			kill(d->session, SIGKILL);
			waitpid(d->session, &st, 0);
			d->reaped = true;
			d->status = 255;
		}
	}
}

void vmm_rdest_release(struct vmm_rdest *d)
{
	vmm_fwd_stop(&d->fwd);
}
