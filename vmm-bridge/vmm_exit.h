/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_exit.h - the exit statuses of the host tools (ninja-migrate,
 * ninja-ctl): one list, one meaning per value (docs/vmm-bridge.md,
 * docs/protocol.md section 9).  ninja-agent exits 0 or 1.
 */
#ifndef NINJA_VMM_EXIT_H
#define NINJA_VMM_EXIT_H

enum vmm_exit {
	VMM_EXIT_OK = 0,
	/* Usage, bad cluster file, a node or guest unreachable or its
	 * connection lost: nothing done. */
	VMM_EXIT_USAGE = 1,
	/* A step of the protocol did not complete: its deadline passed, or
	 * not every guest became SAFE.  A drain that did not complete was
	 * CANCELled: the job runs on. */
	VMM_EXIT_DRAIN = 2,
	/* ninja-migrate: failed before the switch-over, rolled back. */
	VMM_EXIT_ROLLBACK = 3,
	/* ninja-migrate: moved, but a step after the switch-over failed. */
	VMM_EXIT_PARTIAL = 4,
	/* ninja-migrate: the rollback itself failed: operator needed. */
	VMM_EXIT_BROKEN = 5,
	/* ninja-migrate: another ninja-migrate holds the lock. */
	VMM_EXIT_BUSY = 6,
	/* ninja-ctl: a node refused the request (an ERR answer other than
	 * duplicate), or another controller resumed or cancelled the epoch. */
	VMM_EXIT_REFUSED = 7,
	/* ninja-ctl --expect: fewer ranks SAFE than expected; cancelled. */
	VMM_EXIT_RANKS = 8,
};

#endif /* NINJA_VMM_EXIT_H */
