/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_migrate.h - orchestration of a virtual-cluster migration (the core
 * of ninja-migrate): drain every guest, unplug the passthrough devices,
 * move every VM in parallel through a backend (vmm_backend.h) up to a
 * cluster-wide commit point, then switch over, plug the destination's
 * devices and resume every guest; or roll everything back.  Phase
 * timings per VM and for the cluster, a printed table and a JSON report.
 */
#ifndef NINJA_VMM_MIGRATE_H
#define NINJA_VMM_MIGRATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm_backend.h"
#include "vmm_cluster.h"
#include "vmm_exit.h"
#include "vmm_guest.h"
#include "vmm_progress.h"

enum vmm_phase {
	VMM_PH_DRAIN,		/* QUIESCE sent -> SAFE */
	VMM_PH_UNPLUG,		/* device_del -> DEVICE_DELETED */
	VMM_PH_START,		/* destination QEMU started, monitor up */
	VMM_PH_STORAGE,		/* overlay mirrored until in sync */
	VMM_PH_RAM,		/* RAM + device state up to the commit point */
	VMM_PH_SWITCH,		/* commit: destination runs, source retired */
	VMM_PH_PLUG,		/* device_add at the destination */
	VMM_PH_LINK,		/* device_add -> guest EVENT link-up/port-active */
	VMM_PH_RECONNECT,	/* RESUME sent -> RESUMED */
	VMM_PH_TOTAL,
	VMM_PH_COUNT
};

enum vmm_vm_state {
	VMM_VM_IDLE,
	VMM_VM_RUNNING,		/* worker busy before the commit point */
	VMM_VM_READY,		/* at the commit point, waiting */
	VMM_VM_FAILED,		/* failed before the commit point */
	VMM_VM_DONE,		/* worker finished (see err for trouble) */
};

struct vmm_run;

struct vmm_vm {
	struct vmm_run *run;
	const struct vmm_cluster *cl;
	const struct vmm_vm_conf *conf;
	const struct vmm_backend *be;
	void *priv;			/* backend state */
	bool verbose;
	struct vmm_guest src, dst;	/* guest channel at each end */
	int64_t t0[VMM_PH_COUNT], t1[VMM_PH_COUNT];	/* vmm_now_ns() */
	/* Set by the worker when the RAM phase begins, read by the main
	 * thread (t0[] is the worker's alone while it runs). */
	atomic_bool ram_begun;
	/* Filled by the backend. */
	char accel[16];			/* "tcg", "kvm" */
	char mode_used[16];		/* "live", "stopped" */
	int64_t downtime_ms;		/* query-migrate, -1 unknown */
	int64_t paused_ns;		/* host-measured: source paused -> dest runs */
	uint64_t ram_bytes, storage_bytes, storage_len;
	int64_t overlay_bytes, base_bytes;	/* file sizes, -1 unknown */
	long dest_pid;
	bool at_dest;			/* switched over: runs at destination */
	bool unplugged, plugged;
	/* From the ranks' REPORT lines, ms (-1 unknown): the application's
	 * stall in the drain/reconnect, and in the live upgrade. */
	double app_stall_ms, upgrade_stall_ms;
	/* Outcome. */
	enum vmm_vm_state state;
	char err[1024];
	char failed_phase[16];
	char warn[512];
	bool rolled_back;
	char rollback_err[1024];
	pthread_t thread;
	bool thread_started;
	struct vmm_live live;		/* progress (vmm_progress.h) */
};

struct vmm_opts {
	bool dry_run;
	bool switch_only;
	bool verbose;
	const char *report;		/* JSON report file or NULL */
	const char *upgrade;		/* "live"/"wait": overrides the file */
	bool force;			/* unplug even with fewer ranks SAFE
					 * than the cluster file's ranks = */
	bool quiet;			/* no progress nor step lines */
	const char *events;		/* --events FILE, "-" or NULL */
	int events_fd;			/* >= 0: --events - (saved stdout) */
};

/* Run the whole operation; returns an enum vmm_exit. */
int vmm_migrate_run(const struct vmm_cluster *cl, const struct vmm_opts *o);

/*
 * Async-signal-safe: ask the running operation to stop.  Before the
 * commit point it rolls everything back (CANCEL, exit 3); after it, the
 * switch-over is finished first.
 */
void vmm_migrate_interrupt(int signo);

/* For backends: true once the run is being aborted (stop waiting). */
bool vmm_vm_aborting(const struct vmm_vm *vm);
/*
 * For backends' test-only fault injection: true once every other VM of the
 * run waits at the commit point (VMM_VM_READY); false when one failed, the
 * run is aborted or deadline (vmm_now_ns) passed.
 */
bool vmm_vm_others_ready(const struct vmm_vm *vm, int64_t deadline);
/* For backends: a progress line "[  1.2s] vm0: ..." on stdout. */
void vmm_progress(const struct vmm_vm *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* For backends: set vm->err (first error wins). */
void vmm_vm_fail(struct vmm_vm *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

const char *vmm_phase_name(enum vmm_phase p);

/*
 * For the other verbs of ninja-migrate (vmm_checkpoint.c): a run context
 * with one struct vmm_vm per VM of cl, set up as for a move (backend,
 * guest channels, rails); vmm_run_free detaches and closes everything.
 * vmm_run_abort makes vmm_vm_aborting() true; vmm_interrupted says a
 * signal came (vmm_migrate_interrupt).  vmm_lock_cluster takes the
 * cluster's lock file (fd to close at the end; -2 held by another run,
 * -1 error; msg says which).
 */
struct vmm_run *vmm_run_new(const struct vmm_cluster *cl,
			    const struct vmm_opts *o, struct vmm_vm **vms);
void vmm_run_free(struct vmm_run *run);
void vmm_run_abort(struct vmm_run *run, const char *reason);
bool vmm_interrupted(void);
int vmm_lock_cluster(const struct vmm_cluster *cl, char *msg, size_t size);

#endif /* NINJA_VMM_MIGRATE_H */
