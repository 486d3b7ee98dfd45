/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_status.h - the state file of a running ninja-migrate (LOCK.state,
 * next to its lock file) and "ninja-migrate status", which reads it from
 * another shell.  Format: docs/vmm-bridge.md, "Status".
 */
#ifndef NINJA_VMM_STATUS_H
#define NINJA_VMM_STATUS_H

#include <stddef.h>
#include <json-c/json.h>

/* Exit status of "ninja-migrate status". */
enum vmm_status_exit {
	VMM_STATUS_RUNNING = 0,		/* a migration runs: state shown */
	VMM_STATUS_ERROR = 1,		/* usage, unreadable cluster file */
	VMM_STATUS_NONE = 2,		/* no migration running */
};

/* The state file of lock path lock into out. */
void vmm_state_path(const char *lock, char *out, size_t size);
/* Write state atomically (a temporary file renamed over path). */
int vmm_state_write(const char *path, json_object *state);
/* "ninja-migrate status [--json] [CLUSTER-FILE]": argv after "status". */
int vmm_status_main(int argc, char **argv);

#endif /* NINJA_VMM_STATUS_H */
