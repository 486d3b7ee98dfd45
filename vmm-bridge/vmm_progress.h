/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_progress.h - what a running ninja-migrate shows of itself:
 *
 *   - live progress: one line per VM (phase, % of RAM and storage done,
 *     MB/s, remaining, dirty rate, ETA), redrawn in place on a terminal,
 *     printed as plain lines every few seconds otherwise, nothing with
 *     --quiet; the step lines of vmm_progress() go through here too;
 *   - the event stream (--events, vmm_events.c): phase start/end and
 *     progress samples as JSON lines;
 *   - the state file next to the lock (vmm_status.c), rewritten
 *     atomically twice a second, read by "ninja-migrate status".
 *
 * Backends feed the per-VM samples from their own polling
 * (vmm_live_ram, vmm_live_storage); the orchestration reports phase
 * boundaries (vmm_obs_phase).  A thread renders, samples and writes.
 */
#ifndef NINJA_VMM_PROGRESS_H
#define NINJA_VMM_PROGRESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmm_vm;

/* One VM's live state (guarded by the observer's lock). */
struct vmm_live {
	int phase;			/* enum vmm_phase running, -1 none */
	int last;			/* last phase that ended, -1 none */
	char state[24];			/* QEMU's migration status */
	uint64_t ram_total, ram_sent, ram_remaining;
	double ram_rate;		/* bytes/s */
	uint64_t dirty_rate;		/* bytes/s */
	int64_t passes;			/* pre-copy passes (dirty syncs) */
	uint64_t storage_total, storage_done;
	double storage_rate;		/* bytes/s */
	int64_t t_storage;		/* vmm_now_ns() of the last sample */
	bool have_ram, have_storage;
};

/* For backends: a query-migrate sample (rate in bytes/s, 0 unknown). */
void vmm_live_ram(struct vmm_vm *vm, const char *status, uint64_t total,
		  uint64_t sent, uint64_t remaining, double rate,
		  uint64_t dirty_rate, int64_t passes);
/* For backends: a storage copy sample (bytes done of total). */
void vmm_live_storage(struct vmm_vm *vm, uint64_t done, uint64_t total);

/* "RAM 45% (120.0/256.0 MiB) ..." of a VM's live state into buf. */
void vmm_live_format(char *buf, size_t size, const char *name,
		     const char *phase, const struct vmm_live *l);
/* Phase label of a live state: "ram", "ram done", "waiting". */
const char *vmm_live_phase(const struct vmm_live *l, char *buf, size_t size);
/* Percentages (-1 unknown) and the ETA in seconds (-1 unknown). */
double vmm_live_ram_pct(const struct vmm_live *l);
double vmm_live_storage_pct(const struct vmm_live *l);
double vmm_live_eta_s(const struct vmm_live *l);

struct vmm_obs_conf {
	bool quiet;			/* no progress nor step lines */
	const char *events;		/* --events path, "-" or NULL */
	int events_fd;			/* >= 0: write the events there */
	const char *state_path;		/* state file, NULL: none */
	const char *cluster, *file, *operation;
	int64_t t_start;		/* vmm_now_ns() at the start */
};

/* Before anything changes: open the events file.  -1 with err. */
int vmm_obs_open(const struct vmm_obs_conf *c, struct vmm_vm *vms, int n,
		 char *err, size_t errlen);
/* Start the thread (state file, progress lines, samples). */
void vmm_obs_start(void);
void vmm_obs_epoch(uint32_t epoch);
/* A phase of vm began (vm->t0[p] set) or ended (vm->t1[p] set). */
void vmm_obs_phase(struct vmm_vm *vm, int phase, bool start);
/* A step line "[  1.23s] WHO: ...", serialized with the live lines. */
void vmm_obs_vlog(const char *who, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Stop the thread, clear the live lines, write the last event, remove
 * the state file.  Safe without vmm_obs_open. */
void vmm_obs_close(const char *result, int exit_code, double total_ms);

#endif /* NINJA_VMM_PROGRESS_H */
