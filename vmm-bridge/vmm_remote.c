// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_remote.c - ssh to destination hosts for the QEMU backend: the
 * template turned into an argv, commands run on a host, unix-socket
 * forwarders under a watchdog.  See vmm_remote.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm_chan.h"
#include "vmm_cluster.h"
#include "vmm_remote.h"

#define HOST_PH		"{host}"

int vmm_remote_check_host(const char *host, char *err, size_t errlen)
{
	size_t n = strlen(host), i;

	if (n == 0 || n >= VMM_HOST_MAX - 1) {
		snprintf(err, errlen, "expected a host name or address of 1 to %d bytes, got %zu bytes",
			 VMM_HOST_MAX - 2, n);
		return -1;
	}
	if (host[0] == '-') {
		snprintf(err, errlen, "a host may not start with '-' (ssh would read an option), got '%.40s'",
			 host);
		return -1;
	}
	for (i = 0; i < n; i++) {
		char ch = host[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
		    ch == ':' || ch == '_')
			continue;
		snprintf(err, errlen, "a host is letters, digits, '.', '-', ':' and '_', got byte 0x%02x in '%.40s'",
			 (unsigned char)ch, host);
		return -1;
	}
	return 0;
}

/* Split into words at blanks; -1 when there are too many. */
static int split(const char *s, char words[][512], int max)
{
	int n = 0;

	while (*s) {
		size_t l = 0;

		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		while (s[l] && s[l] != ' ' && s[l] != '\t')
			l++;
		if (n == max || l >= 512)
			return -1;
		memcpy(words[n], s, l);
		words[n][l] = '\0';
		n++;
		s += l;
	}
	return n;
}

/* ssh options that run a command on this machine. */
static const char *const local_cmd_opts[] = {
	"proxycommand", "localcommand", "permitlocalcommand",
	"knownhostscommand", "remotecommand", NULL
};

int vmm_remote_check_ssh(const char *tmpl, char *err, size_t errlen)
{
	char w[VMM_SSH_WORDS][512];
	int n = split(tmpl, w, VMM_SSH_WORDS), i, j;

	if (n < 0) {
		snprintf(err, errlen, "expected at most %d words of at most 511 bytes",
			 VMM_SSH_WORDS);
		return -1;
	}
	if (n < 2) {
		snprintf(err, errlen, "expected an ssh command with the destination, e.g. 'ssh -i /root/.ssh/ninja -o BatchMode=yes root@{host}', got '%.80s'",
			 tmpl);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *ph = strstr(w[i], HOST_PH);
		const char *brace = strchr(w[i], '{');

		if ((ph != NULL) != (i == n - 1) ||
		    (ph && strstr(ph + 1, HOST_PH))) {
			snprintf(err, errlen, "{host} must appear once, in the last word (the destination, e.g. root@{host}), got '%.80s'",
				 tmpl);
			return -1;
		}
		if (brace && brace != ph) {
			snprintf(err, errlen, "unknown placeholder in '%.80s' (only {host})",
				 w[i]);
			return -1;
		}
		for (j = 0; w[i][j]; j++)
			if ((unsigned char)w[i][j] < 0x20 ||
			    w[i][j] == 0x7f) {
				snprintf(err, errlen, "control byte 0x%02x in '%.80s'",
					 (unsigned char)w[i][j], w[i]);
				return -1;
			}
		if (i > 0 && strcmp(w[i], "-F") == 0) {
			snprintf(err, errlen, "-F (another ssh configuration file) is refused: give the options in the template");
			return -1;
		}
		for (j = 0; local_cmd_opts[j]; j++)
			if (strcasestr(w[i], local_cmd_opts[j])) {
				snprintf(err, errlen, "'%.80s': ssh options that run commands (ProxyCommand, LocalCommand, KnownHostsCommand, RemoteCommand) are refused; use ProxyJump (-J) for a jump host",
					 w[i]);
				return -1;
			}
	}
	if (w[n - 1][0] == '-') {
		snprintf(err, errlen, "the last word must be the destination (e.g. root@{host}), got '%.80s'",
			 w[n - 1]);
		return -1;
	}
	return 0;
}

int vmm_remote_quote(const char *s, char *out, size_t size)
{
	size_t o = 0;

	if (size < 3)
		return -1;
	out[o++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			if (o + 4 >= size)
				return -1;
			memcpy(out + o, "'\\''", 4);
			o += 4;
			continue;
		}
		if (o + 1 >= size)
			return -1;
		out[o++] = *s;
	}
	if (o + 2 > size)
		return -1;
	out[o++] = '\'';
	out[o] = '\0';
	return 0;
}

/*
 * argv: the template's first word, opts, the remaining words ({host}
 * replaced), then cmd (one word: ssh hands it to the host's shell).
 * Freed with free_argv.
 */
static char **build_argv(const struct vmm_remote *r, const char *const *opts,
			 const char *cmd)
{
	char (*w)[512] = malloc(VMM_SSH_WORDS * sizeof(*w));
	char **argv = NULL;
	int n, nopt = 0, i, k = 0;

	while (opts && opts[nopt])
		nopt++;
	n = w ? split(r->tmpl, w, VMM_SSH_WORDS) : -1;
	if (n >= 2)
		argv = calloc((size_t)(n + nopt + 2), sizeof(*argv));
	if (!argv) {
		free(w);
		return NULL;
	}
	argv[k++] = strdup(w[0]);
	for (i = 0; i < nopt; i++)
		argv[k++] = strdup(opts[i]);
	for (i = 1; i < n; i++) {
		char *ph = strstr(w[i], HOST_PH), buf[1024];

		if (ph)
			snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(ph - w[i]),
				 w[i], r->host, ph + strlen(HOST_PH));
		else
			snprintf(buf, sizeof(buf), "%s", w[i]);
		argv[k++] = strdup(buf);
	}
	free(w);
	if (cmd)
		argv[k++] = strdup(cmd);
	for (i = 0; i < k; i++)
		if (!argv[i]) {
			for (i = 0; i < k; i++)
				free(argv[i]);
			free(argv);
			return NULL;
		}
	return argv;
}

static void free_argv(char **argv)
{
	int i;

	if (!argv)
		return;
	for (i = 0; argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/*
 * A host that goes silent (gone from the network, no FIN) ends the
 * session or forwarder after 3 unanswered keepalives 5 s apart instead of never: the
 * QEMU's session would otherwise outlive its host, and a forwarder hang.
 */
#define SSH_ALIVE	"ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"

static const char *const cmd_opts[] = {
	"-T", "-o", "BatchMode=yes", "-o", SSH_ALIVE, NULL
};

/* In the child: fds 0..2 as given, everything else closed. */
static void child_fds(int in, int out, int err)
{
	int fd;

	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	for (fd = 3; fd < 1024; fd++)
		close(fd);
}

static int open_log(const struct vmm_remote *r)
{
	int fd = -1;

	if (r->log && r->log[0])
		fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			  0644);
	if (fd < 0)
		fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	return fd;
}

static void last_line(const char *buf, char *out, size_t size)
{
	const char *e = buf + strlen(buf), *s;

	while (e > buf && (e[-1] == '\n' || e[-1] == '\r'))
		e--;
	for (s = e; s > buf && s[-1] != '\n'; s--)
		;
	snprintf(out, size, "%.*s", (int)(e - s), s);
}

int vmm_remote_run(const struct vmm_remote *r, const char *cmd, char *out,
		   size_t size, int64_t deadline)
{
	char **argv = build_argv(r, cmd_opts, cmd);
	char obuf[4096], ebuf[4096];
	size_t on = 0, en = 0;
	int po[2], pe[2], nul, logfd, st = 0;
	pid_t pid;
	bool open_o = true, open_e = true, timed_out = false;

	if (out && size)
		out[0] = '\0';
	if (!argv)
		return -1;
	if (pipe2(po, O_CLOEXEC)) {
		free_argv(argv);
		return -1;
	}
	if (pipe2(pe, O_CLOEXEC)) {
		close(po[0]);
		close(po[1]);
		free_argv(argv);
		return -1;
	}
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid = fork();
	if (pid == 0) {
		setsid();
		child_fds(nul, po[1], pe[1]);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(255);
	}
	free_argv(argv);
	close(po[1]);
	close(pe[1]);
	if (nul >= 0)
		close(nul);
	if (pid < 0) {
		close(po[0]);
		close(pe[0]);
		return -1;
	}
	while (open_o || open_e) {
		struct pollfd pf[2] = {
			{ .fd = open_o ? po[0] : -1, .events = POLLIN },
			{ .fd = open_e ? pe[0] : -1, .events = POLLIN },
		};
		int64_t left = (deadline - vmm_now_ns()) / 1000000;
		ssize_t k;

		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(pf, 2, (int)(left > 200 ? 200 : left)) < 0 &&
		    errno != EINTR)
			break;
		if (pf[0].revents) {
			char junk[512];
			char *dst = on < sizeof(obuf) - 1 ? obuf + on : junk;
			size_t room = on < sizeof(obuf) - 1 ?
				      sizeof(obuf) - 1 - on : sizeof(junk);

			k = read(po[0], dst, room);
			if (k <= 0)
				open_o = false;
			else if (dst != junk)
				on += (size_t)k;
		}
		if (pf[1].revents) {
			char tmp[512];

			k = read(pe[0], tmp, sizeof(tmp));
			if (k <= 0) {
				open_e = false;
			} else {
				/* Keep the end: the last line says why. */
				if (en + (size_t)k >= sizeof(ebuf))
					en = 0;
				memcpy(ebuf + en, tmp, (size_t)k);
				en += (size_t)k;
			}
		}
	}
	close(po[0]);
	close(pe[0]);
	obuf[on] = '\0';
	ebuf[en] = '\0';
	logfd = open_log(r);
	if (logfd >= 0) {
		/* A log we cannot write: no matter. */
		ssize_t wr = en ? write(logfd, ebuf, en) : 0;

		(void)wr;
		close(logfd);
	}
	if (timed_out) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (out && size)
			snprintf(out, size, "no answer from %s within the deadline",
				 r->host);
		return -2;
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	st = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
	if (out && size) {
		if (st == 255)
			last_line(ebuf, out, size);
		else
			snprintf(out, size, "%s", obuf);
	}
	return st;
}

int vmm_remote_spawn(const struct vmm_remote *r, const char *cmd,
		     pid_t *pid, int *outfd)
{
	char **argv = build_argv(r, cmd_opts, cmd);
	int po[2], nul, logfd;
	pid_t p;

	if (!argv)
		return -1;
	if (pipe2(po, O_CLOEXEC)) {
		free_argv(argv);
		return -1;
	}
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	logfd = open_log(r);
	p = fork();
	if (p == 0) {
		/* Its own session: a ^C meant for ninja-migrate does not
		 * end the session that holds the destination QEMU. */
		setsid();
		child_fds(nul, po[1], logfd);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(255);
	}
	free_argv(argv);
	close(po[1]);
	if (nul >= 0)
		close(nul);
	if (logfd >= 0)
		close(logfd);
	if (p < 0) {
		close(po[0]);
		return -1;
	}
	*pid = p;
	*outfd = po[0];
	return 0;
}

/*
 * The watchdog: runs ssh as its child and waits for either to end: ssh
 * exiting (the watchdog exits with its status) or the pipe from
 * ninja-migrate closing (ninja-migrate stopped it or is gone: ssh is
 * stopped).
 */
static void watchdog(char **argv, int keep, int logfd, const struct vmm_fwd *f)
{
	int nul = open("/dev/null", O_RDONLY), st, i;
	pid_t ssh;

	setsid();
	signal(SIGTERM, SIG_DFL);
	ssh = fork();
	if (ssh == 0) {
		child_fds(nul, logfd, logfd);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(255);
	}
	if (ssh < 0)
		_exit(255);
	for (;;) {
		struct pollfd pf = { .fd = keep, .events = POLLIN };
		pid_t w = waitpid(ssh, &st, WNOHANG);

		if (w == ssh)
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 254);
		if (poll(&pf, 1, 200) > 0) {
			kill(ssh, SIGTERM);
			for (i = 0; i < 50 && waitpid(ssh, &st, WNOHANG) == 0;
			     i++)
				poll(NULL, 0, 20);
			if (i == 50) {
				kill(ssh, SIGKILL);
				waitpid(ssh, &st, 0);
			}
			/* ssh leaves its listening sockets behind. */
			for (i = 0; i < f->n; i++)
				unlink(f->local[i]);
			_exit(0);
		}
	}
}

int vmm_fwd_start(struct vmm_fwd *f, const struct vmm_remote *r,
		  const char *const local[], const char *const remote[],
		  int n, int64_t deadline, char *err, size_t errlen)
{
	const char *opts[16];
	char spec[2][600], why[300];
	char **argv;
	int k = 0, i, pk[2], logfd;

	memset(f, 0, sizeof(*f));
	f->keep_fd = -1;
	f->n = n > 2 ? 2 : n;
	f->log = r->log;
	snprintf(f->host, sizeof(f->host), "%s", r->host);
	opts[k++] = "-N";
	opts[k++] = "-o";
	opts[k++] = "ExitOnForwardFailure=yes";
	opts[k++] = "-o";
	opts[k++] = "StreamLocalBindUnlink=yes";
	opts[k++] = "-o";
	opts[k++] = "BatchMode=yes";
	opts[k++] = "-o";
	opts[k++] = "ServerAliveInterval=5";
	opts[k++] = "-o";
	opts[k++] = "ServerAliveCountMax=3";
	for (i = 0; i < f->n; i++) {
		snprintf(f->local[i], sizeof(f->local[i]), "%s", local[i]);
		snprintf(spec[i], sizeof(spec[i]), "%s:%s", local[i], remote[i]);
		unlink(local[i]);
		opts[k++] = "-L";
		opts[k++] = spec[i];
	}
	opts[k] = NULL;
	argv = build_argv(r, opts, NULL);
	if (!argv || pipe2(pk, O_CLOEXEC)) {
		free_argv(argv);
		snprintf(err, errlen, "cannot start the ssh forwarder to %s: out of resources",
			 r->host);
		return -1;
	}
	logfd = open_log(r);
	f->pid = fork();
	if (f->pid == 0) {
		int fd;

		/* Only the read end of our pipe and the log stay open:
		 * a copy of another forwarder's write end would keep that
		 * one alive after ninja-migrate is gone. */
		for (fd = 3; fd < 1024; fd++)
			if (fd != pk[0] && fd != logfd)
				close(fd);
		watchdog(argv, pk[0], logfd, f);
	}
	free_argv(argv);
	close(pk[0]);
	if (logfd >= 0)
		close(logfd);
	if (f->pid < 0) {
		f->pid = 0;
		close(pk[1]);
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	f->keep_fd = pk[1];
	for (;;) {
		struct stat st;
		int up = 0;

		for (i = 0; i < f->n; i++)
			if (stat(f->local[i], &st) == 0 && S_ISSOCK(st.st_mode))
				up++;
		if (up == f->n)
			return 0;
		if (!vmm_fwd_alive(f, why, sizeof(why))) {
			snprintf(err, errlen, "%s %s",
				 r->role ? r->role : "destination", why);
			vmm_fwd_stop(f);
			return -1;
		}
		if (vmm_now_ns() >= deadline) {
			snprintf(err, errlen, "the ssh forwarder to %s did not set up %s within the deadline",
				 f->host, f->local[0]);
			vmm_fwd_stop(f);
			return -1;
		}
		poll(NULL, 0, 20);
	}
}

bool vmm_fwd_alive(struct vmm_fwd *f, char *why, size_t whylen)
{
	char tail[200] = "";

	if (f->pid <= 0) {
		if (why)
			snprintf(why, whylen, "no ssh forwarder to %s", f->host);
		return false;
	}
	if (!f->reaped) {
		pid_t w = waitpid(f->pid, &f->status, WNOHANG);

		if (w == 0)
			return true;
		f->reaped = true;
		if (w < 0)
			f->status = -1;
	}
	if (why) {
		if (f->log)
			vmm_remote_log_tail(f->log, tail, sizeof(tail));
		snprintf(why, whylen, "is out of reach: the ssh forwarder to host %s (pid %ld) exited%s%s",
			 f->host, (long)f->pid, tail[0] ? ": " : "", tail);
	}
	return false;
}

void vmm_fwd_stop(struct vmm_fwd *f)
{
	int i, st;

	if (f->pid > 0 && !f->reaped) {
		int64_t end = vmm_now_ns() + 3000000000LL;

		/* EOF on its pipe: the watchdog stops ssh and exits. */
		if (f->keep_fd >= 0)
			close(f->keep_fd);
		f->keep_fd = -1;
		while (waitpid(f->pid, &st, WNOHANG) == 0) {
			if (vmm_now_ns() >= end) {
				/* The watchdog leads its own process group,
				 * ssh is in it: both go. */
				kill(-f->pid, SIGKILL);
				waitpid(f->pid, &st, 0);
				break;
			}
			poll(NULL, 0, 20);
		}
		f->reaped = true;
	}
	if (f->keep_fd >= 0)
		close(f->keep_fd);
	f->keep_fd = -1;
	for (i = 0; i < f->n; i++)
		if (f->local[i][0])
			unlink(f->local[i]);
	f->n = 0;
	f->pid = 0;
}

void vmm_remote_log_tail(const char *path, char *out, size_t size)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	out[0] = '\0';
	if (!f)
		return;
	if (fseek(f, -(long)sizeof(buf) + 1, SEEK_END))
		fseek(f, 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	last_line(buf, out, size);
}
