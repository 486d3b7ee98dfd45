/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_remote.h - destinations on other hosts for the QEMU backend
 * (docs/vmm-bridge.md, "Remote destinations (QEMU backend)").
 *
 * A destination host is reached with the cluster file's ssh command
 * template ("ssh -i KEY -o BatchMode=yes root@{host}"): its words become
 * an argv (no shell on this machine ever sees a cluster-file string),
 * {host} replaced by a checked host name.  What runs on the host is one
 * command line built here, every cluster-file value in it single-quoted
 * for the host's shell (dest-command itself is a shell command line by
 * definition and runs there as written).
 *
 * The QMP socket and guest channel of a QEMU on another host (a
 * destination, or a source) are reached through ssh unix-socket
 * forwarders (ssh -N -L LOCAL:REMOTE) that this process starts and
 * supervises: each runs under a small watchdog process that
 * stops it when ninja-migrate goes away, even killed.
 */
#ifndef NINJA_VMM_REMOTE_H
#define NINJA_VMM_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VMM_HOST_MAX	254	/* a DNS name (253) or an address */
#define VMM_SSH_WORDS	32	/* words of an ssh template, at most */

/* A host name or address: letters, digits, '.', '-', ':' and '_', not
 * starting with '-', 1..253 bytes.  0, or -1 with why in err. */
int vmm_remote_check_host(const char *host, char *err, size_t errlen);
/* An ssh template: 1..VMM_SSH_WORDS words separated by blanks, one word
 * holding {host} (the last one), no other placeholder, no option that
 * makes ssh run a command on this machine (ProxyCommand, LocalCommand,
 * KnownHostsCommand, PermitLocalCommand, RemoteCommand; -F).  0, or -1
 * with why in err. */
int vmm_remote_check_ssh(const char *tmpl, char *err, size_t errlen);
/* s single-quoted for a POSIX shell into out; -1 if it does not fit. */
int vmm_remote_quote(const char *s, char *out, size_t size);

struct vmm_remote {
	char host[VMM_HOST_MAX];
	const char *tmpl;	/* the ssh template (cluster file) */
	const char *log;	/* ssh's own stderr goes here (appended) */
	const char *role;	/* "source" in messages; NULL "destination" */
};

/*
 * Run cmd on the host (ssh TEMPLATE CMD), stdout into out (at most
 * size - 1 bytes, "" if NULL), within deadline.  Returns the remote
 * exit status (0..254), 255 when ssh itself failed (then out holds its
 * last stderr line), -1 fork failure, -2 deadline (ssh killed).
 */
int vmm_remote_run(const struct vmm_remote *r, const char *cmd, char *out,
		   size_t size, int64_t deadline);
/*
 * Start cmd on the host and leave the session open: *pid the local ssh
 * process (its own session; waitpid() it: it ends with cmd's status, 255
 * for a lost connection), *outfd a pipe of the remote stdout.
 */
int vmm_remote_spawn(const struct vmm_remote *r, const char *cmd,
		     pid_t *pid, int *outfd);

/* An ssh forwarder of up to two unix sockets. */
struct vmm_fwd {
	pid_t pid;		/* the watchdog (0 none) */
	int keep_fd;		/* write end: its EOF stops the forwarder */
	bool reaped;
	int status;
	int n;
	char local[2][256];
	char host[VMM_HOST_MAX];
	const char *log;
};

/*
 * ssh -N -o ExitOnForwardFailure=yes -o StreamLocalBindUnlink=yes
 *     -L local[i]:remote[i] ... TEMPLATE, until every local socket
 * exists.  0, or -1 with a line naming the host in err (the forwarder
 * stopped again).
 */
int vmm_fwd_start(struct vmm_fwd *f, const struct vmm_remote *r,
		  const char *const local[], const char *const remote[],
		  int n, int64_t deadline, char *err, size_t errlen);
/* Is it still running?  If not, why (naming the host) in why. */
bool vmm_fwd_alive(struct vmm_fwd *f, char *why, size_t whylen);
/* Stop it (SIGTERM, then SIGKILL), reap it, remove its local sockets. */
void vmm_fwd_stop(struct vmm_fwd *f);

/* The last non-empty line of a file (ssh's or QEMU's log) into out. */
void vmm_remote_log_tail(const char *path, char *out, size_t size);

#endif /* NINJA_VMM_REMOTE_H */
