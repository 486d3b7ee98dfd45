/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_backend.h - the layer that drives the hypervisor, behind a table of
 * function pointers so the orchestration (vmm_migrate.c) never talks to
 * QEMU itself.  Built in: "qemu" (vmm_backend_qemu.c), which speaks QMP to
 * the source QEMU and starts destination QEMU processes on this machine
 * from the cluster file's command template.  A libvirt backend would
 * implement the same table with virDomainDetachDeviceFlags /
 * virDomainAttachDeviceFlags and virDomainMigrate3 (see
 * docs/vmm-bridge.md, "Backends").
 *
 * Every operation works on one VM, may block until its absolute deadline
 * (vmm_now_ns() clock), returns 0 / -1 / -2 (deadline) and on failure
 * leaves a one-line reason in vm->err.  Operations of different VMs run
 * in parallel threads; one VM's operations are never called concurrently.
 *
 * Order for a move: attach, unplug (if the source offers a device),
 * start_dest, storage, transfer (the commit point follows: the
 * destination holds the whole state, paused, the source is paused and
 * intact), then either commit (+ plug at the destination) or abort
 * (+ plug back at the source), then detach.
 */
#ifndef NINJA_VMM_BACKEND_H
#define NINJA_VMM_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

struct vmm_vm;

struct vmm_backend {
	const char *name;
	/* Connect to the source VM; check that it runs.  Fills vm->accel. */
	int (*attach)(struct vmm_vm *vm, int64_t deadline);
	/* Before anything changes (after attach): can both ends honour
	 * every migration setting of vm->cl->tune (struct vmm_tuning) and
	 * max-bandwidth?  The source is asked over its monitor; with probe,
	 * the destination's hypervisor too (it may start a throwaway
	 * process).  0, or -1 with one actionable line in vm->err.  A
	 * backend applies every setting in transfer (both ends) or refuses
	 * here: never a silent fallback. */
	int (*check_settings)(struct vmm_vm *vm, bool probe, int64_t deadline);
	/* --dry-run: check what a move needs at the destination (nothing
	 * started, nothing written).  0 ok, -1 with vm->err. */
	int (*check_dest)(struct vmm_vm *vm);
	/* Remove / add the device in -device syntax, where the VM runs now
	 * (source before the switch-over, destination after it). */
	int (*unplug)(struct vmm_vm *vm, const char *spec, int64_t deadline);
	int (*plug)(struct vmm_vm *vm, const char *spec, int64_t deadline);
	/* Start the destination, paused, waiting for the incoming state. */
	int (*start_dest)(struct vmm_vm *vm, int64_t deadline);
	/* Copy the per-VM overlay until source and destination are in sync
	 * (a no-op without storage to move).  Fills vm->storage_*. */
	int (*storage)(struct vmm_vm *vm, int64_t deadline);
	/* Move the RAM and device state and finish the storage copy, up to
	 * the commit point, with the settings of vm->cl->tune applied at
	 * both ends (postcopy: the switch after tune.postcopy_after passes;
	 * from there the source cannot take the VM back).  Fills
	 * vm->ram_bytes, vm->mode_used; feeds vmm_live_ram/_storage
	 * (vmm_progress.h) as it polls. */
	int (*transfer)(struct vmm_vm *vm, int64_t deadline);
	/* After the commit point: run at the destination, retire the
	 * source.  Fills vm->downtime_ms. */
	int (*commit)(struct vmm_vm *vm, int64_t deadline);
	/* Undo start_dest/storage/transfer: the source runs again as
	 * before, the destination is gone.  Safe to call at any stage. */
	int (*abort)(struct vmm_vm *vm, int64_t deadline);
	/* Close connections (VMs keep running). */
	void (*detach)(struct vmm_vm *vm);

	/*
	 * Checkpoint and restore (vmm_checkpoint.c, docs/checkpoint.md).
	 * Checkpoint, on the attached source VM: pause (stop; its disks are
	 * flushed), disk_files (the active overlay's file and its backing
	 * file, "" for none), save_state (device state + RAM into the file
	 * `path`, the VM paused; fills vm->ram_bytes; a failure leaves the
	 * VM paused and intact), then unpause (run again) or quit.
	 * Restore: start_restore (the VM started paused, waiting for its
	 * state, on a fresh overlay whose backing file is `backing`),
	 * load_state (the state from `path`), commit (runs), or discard
	 * (the restored VM and its fresh overlay are gone).  running: does
	 * anything answer at the VM's source or destination monitor (a
	 * copy of the VM still runs)?  version: the hypervisor's, for the
	 * manifest.
	 */
	int (*pause)(struct vmm_vm *vm, int64_t deadline);
	int (*disk_files)(struct vmm_vm *vm, char *file, size_t fsize,
			  char *backing, size_t bsize, int64_t deadline);
	int (*save_state)(struct vmm_vm *vm, const char *path,
			  int64_t deadline);
	int (*unpause)(struct vmm_vm *vm, int64_t deadline);
	int (*quit)(struct vmm_vm *vm, int64_t deadline);
	int (*start_restore)(struct vmm_vm *vm, const char *backing,
			     int64_t deadline);
	int (*load_state)(struct vmm_vm *vm, const char *path,
			  int64_t deadline);
	void (*discard)(struct vmm_vm *vm);
	bool (*running)(struct vmm_vm *vm, char *where, size_t size);
	void (*version)(struct vmm_vm *vm, char *out, size_t size);
	/*
	 * Incremental overlays of a VM that keeps running between
	 * checkpoints (paused VM, disks active): disk_mark drops every
	 * dirty bitmap of ours on the disk node and starts one named
	 * `name` (what is written from now on); disk_bitmap gives the name
	 * of ours there ("" none); disk_backup writes what that bitmap
	 * recorded into a new image `target` whose backing file is
	 * `parent`.  Fills vm->storage_bytes with what the job copied.
	 */
	int (*disk_mark)(struct vmm_vm *vm, const char *name, int64_t deadline);
	int (*disk_bitmap)(struct vmm_vm *vm, char *name, size_t size,
			   int64_t deadline);
	int (*disk_backup)(struct vmm_vm *vm, const char *bitmap,
			   const char *target, const char *parent,
			   int64_t deadline);
	/* Before the drain of a real run (NULL: nothing to check): can
	 * the destination be reached at all (a remote host's sshd)?  0, or
	 * -1 with one actionable line in vm->err. */
	int (*check_reach)(struct vmm_vm *vm, int64_t deadline);
	/* The source VM, and its guest channel, end when the VM arrives at
	 * the destination (libvirt): a closed source channel from the RAM
	 * phase on is not a failure by itself (transfer reports a failed
	 * copy), and after a rollback the channel is opened again. */
	bool source_ends_at_arrival;
};

extern const struct vmm_backend vmm_backend_qemu;
#ifdef HAVE_LIBVIRT
/* vmm_backend_libvirt.c: domains of libvirtd hosts (docs/vmm-bridge.md). */
extern const struct vmm_backend vmm_backend_libvirt;
#endif
/* The backend of a cluster file's "backend" key (NULL: not built in). */
const struct vmm_backend *vmm_backend_find(const char *name);

#endif /* NINJA_VMM_BACKEND_H */
