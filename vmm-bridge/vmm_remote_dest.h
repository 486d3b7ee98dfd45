/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_remote_dest.h - a VM's destination QEMU on another host
 * (docs/vmm-bridge.md, "Remote destinations (QEMU backend)"), on top of
 * the ssh helpers of vmm_remote.h.
 */
#ifndef NINJA_VMM_REMOTE_DEST_H
#define NINJA_VMM_REMOTE_DEST_H

#include "vmm_remote.h"

/*
 * A VM's destination QEMU on a host (vmm_backend_qemu.c): what runs
 * there, all through the template of the VM's dest_ssh:
 *   check  command -v QEMU; test -r BASE; test ! -e OVERLAY; no live
 *          pid in PIDFILE (nothing is changed)
 *   start  qemu-img create -f qcow2 -F qcow2 -b BACKING OVERLAY; then
 *          mkdir -p the log's and pidfile's directories, rm -f the
 *          remote QMP and channel sockets, "(exec DEST-COMMAND -S
 *          -incoming defer) </dev/null >>LOG 2>&1 &", its pid into
 *          PIDFILE and to us, "wait" for it: the ssh session lives as
 *          long as that QEMU and ends with its status
 *   kill   kill -TERM, then -KILL, the pid; rm -f PIDFILE (OVERLAY if
 *          we created it)
 *   log    tail -n 1 LOG
 * and the forwarder: -L dest-qmp-local:REMOTE-QMP -L dest-chan-local:
 * REMOTE-CHAN.
 */
struct vmm_vm_conf;

struct vmm_rdest {
	struct vmm_remote r;
	char sshlog[300];
	pid_t session;		/* local ssh holding the QEMU's session */
	long rpid;		/* the QEMU's pid on the host */
	bool reaped;
	int status;		/* the session's exit status once reaped */
	bool overlay_created;
	struct vmm_fwd fwd;
};

void vmm_rdest_init(struct vmm_rdest *d, const struct vmm_vm_conf *c,
		    const char *run_dir, const char *site);
/* 0, or -1 with one line naming the host in err. */
int vmm_rdest_check(struct vmm_rdest *d, const struct vmm_vm_conf *c,
		    int64_t deadline, char *err, size_t errlen);
int vmm_rdest_start(struct vmm_rdest *d, const struct vmm_vm_conf *c,
		    const char *backing, int64_t deadline, char *err,
		    size_t errlen);
/* Session and forwarder still up?  If not, why (with the host). */
bool vmm_rdest_alive(struct vmm_rdest *d, char *why, size_t whylen);
void vmm_rdest_log_tail(struct vmm_rdest *d, const struct vmm_vm_conf *c,
			char *out, size_t size);
/* The QEMU gone (TERM, KILL), its pidfile and our overlay removed, the
 * forwarder stopped. */
void vmm_rdest_kill(struct vmm_rdest *d, const struct vmm_vm_conf *c);
/* The forwarder stopped; the QEMU and its session stay. */
void vmm_rdest_release(struct vmm_rdest *d);


#endif /* NINJA_VMM_REMOTE_DEST_H */
