/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_checkpoint.h - checkpoint and restore of a whole virtual cluster
 * (ninja-migrate checkpoint / restore; docs/checkpoint.md).
 *
 * checkpoint: drain every guest (QUIESCE -> SAFE), unplug the passthrough
 * devices, pause every VM, save each VM's device state + RAM to
 * DIR/NAME.state and a copy of its overlay to DIR/NAME.qcow2 (only the
 * overlay; when the overlay sits on an earlier checkpoint's copy, only
 * what changed since), then one commit point for the cluster: the
 * manifest DIR/manifest.json (sizes and sha256 of every file).  A VM that
 * fails leaves no checkpoint: the partial files are deleted and the
 * cluster resumes.  Then the cluster resumes (re-plug, RESUME) or stops.
 *
 * restore: verify the manifest against DIR and the cluster file, refuse
 * if a copy of the cluster still runs, start every VM paused on a fresh
 * overlay over DIR's copy, load its state, cont all together, plug the
 * site's devices, RESUME with the site's rails.  DIR is never written.
 */
#ifndef NINJA_VMM_CHECKPOINT_H
#define NINJA_VMM_CHECKPOINT_H

#include <stdbool.h>

#include "vmm_cluster.h"

struct vmm_ckpt_opts {
	const char *dir;	/* --to / --from */
	bool stop;		/* checkpoint --stop: quit the VMs after it */
	bool force;		/* checkpoint: DIR not empty is fine;
				 * restore: replace a stale dest-overlay */
	const char *report;	/* --report FILE or NULL */
	bool verbose, quiet;
};

/* Both return an enum vmm_exit (docs/checkpoint.md, "Exit status"). */
int vmm_checkpoint_run(const struct vmm_cluster *cl,
		       const struct vmm_ckpt_opts *o);
int vmm_restore_run(const struct vmm_cluster *cl,
		    const struct vmm_ckpt_opts *o);

#endif /* NINJA_VMM_CHECKPOINT_H */
