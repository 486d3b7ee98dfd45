/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_guest.h - the host side of the Ninja control protocol for a group of
 * VMs (docs/protocol.md), on top of vmm_chan: connect + HELLO to every
 * guest channel in parallel, QUIESCE and wait for SAFE from all, RESUME or
 * CANCEL and wait for RESUMED, collect REPORT lines and device EVENTs.
 *
 * The host link is lossy (section 6): waits poll STATUS every second and
 * take "phase=safe epoch=e" as SAFE and "phase=running epoch=e" as
 * RESUMED.  A line that does not parse is logged, counted and ignored; an
 * ERR answer (other than duplicate) fails that guest's request.
 *
 * Return convention: 0 / -1 (some guest failed: see its errmsg; lost or
 * rejected says why) / -2 (deadline; guests not done have done == false).
 *
 * This is the one host-side driver of the protocol: ninja-migrate drives
 * its guests with it, ninja-ctl its node agents and guest channels.  A
 * NULL entry in a group is skipped (not involved in the request).
 */
#ifndef NINJA_VMM_GUEST_H
#define NINJA_VMM_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include "vmm_chan.h"

/* REPORT lines kept per guest and epoch (one per rank): the list grows;
 * past this bound the rest are counted and logged, not kept. */
#define VMM_GUEST_MAX_REPORTS	65536

struct vmm_guest;

/* Called for every REPORT of the current epoch, as it arrives. */
typedef void (*vmm_guest_report_fn)(struct vmm_guest *g,
				    const struct ninja_msg *m, void *arg);

struct vmm_guest {
	char vm[VMM_NAME_MAX];		/* name for messages (VM or endpoint) */
	char endpoint[VMM_NAME_MAX];	/* channel socket in use */
	struct vmm_chan ch;
	bool open;
	bool verbose;
	/* Set by the caller after vmm_guest_init(): */
	const char *peer;		/* "guest" (default) or "node" */
	int64_t connect_window_ns;	/* retry connecting this long (0: to the deadline) */
	vmm_guest_report_fn on_report;	/* NULL: REPORT lines are stored */
	void *report_arg;
	/* The current request. */
	uint32_t epoch;
	char rails[128];		/* RESUME rails= for this guest */
	bool done;			/* SAFE (quiesce) / RESUMED (resume) */
	bool failed;			/* rejected or lost */
	bool rejected;			/* ERR answer, or the epoch was taken over */
	bool lost;			/* channel closed or not writable */
	bool unsafe;			/* UNSAFE seen for epoch */
	unsigned int ranks;		/* from SAFE/RESUMED/STATUS */
	unsigned int done_ranks;	/* ranks SAFE (quiesce) / RESUMED */
	bool cancelled;			/* RESUMED ... cancelled=1 */
	int64_t t_sent, t_done;		/* vmm_now_ns() */
	/* The node's state, from HELLO, STATUS and the answers. */
	char phase[16];
	unsigned int safe, draining, resuming;	/* from STATUS */
	bool have_status;
	unsigned long status_seq;	/* STATUS answers taken */
	char status[NINJA_LINE_MAX + 1];	/* last STATUS answer */
	/* Device events: first link-up/port-active after t_link_mark. */
	int64_t t_link_mark, t_link;
	char link_event[128];
	unsigned long n_events;
	/* From this epoch's REPORTs: ranks that resumed on tcp, ranks that
	 * then upgraded in place (event=upgraded rail=verbs), the largest
	 * application stall each says (us; -1 none) and the host time of
	 * the last upgrade REPORT. */
	unsigned int n_resumed_tcp, n_upgraded;
	double app_stall_us, upgrade_stall_us;
	int64_t t_upgraded;
	/* REPORT lines of the current epoch (allocated). */
	char **reports;
	int nreports;
	unsigned long n_reports_dropped;	/* past VMM_GUEST_MAX_REPORTS */
	/* Lines that did not parse. */
	unsigned long n_bad;
	char last_bad[160];
	char errmsg[1024];
};

void vmm_guest_init(struct vmm_guest *g, const char *vm, bool verbose);
void vmm_guest_close(struct vmm_guest *g);
void vmm_guest_clear_reports(struct vmm_guest *g);

/*
 * Connect every guest to its endpoint (g->endpoint) and HELLO, in
 * parallel, until the deadline.  Guests already open are skipped.
 * -1: a channel could not be opened (or HELLO was refused), -2: a guest
 * did not answer HELLO by the deadline.
 */
int vmm_guests_open(struct vmm_guest **gs, int n, int64_t deadline);

/*
 * Latest node epoch learnt from HELLO/STATUS answers (in sequence order:
 * epochs wrap, ninja_epoch_after()); the next one is ninja_epoch_next().
 */
uint32_t vmm_guests_max_epoch(struct vmm_guest **gs, int n);

/* QUIESCE epoch to every guest; wait until all are SAFE. */
int vmm_guests_quiesce(struct vmm_guest **gs, int n, uint32_t epoch,
		       int64_t deadline);
/* RESUME (with each guest's rails) or CANCEL; wait for RESUMED. */
int vmm_guests_finish(struct vmm_guest **gs, int n, uint32_t epoch,
		      bool cancel, int64_t deadline);

/*
 * STATUS to every guest; wait until each has answered one (status and
 * the fields it sets are fresh).
 */
int vmm_guests_status(struct vmm_guest **gs, int n, int64_t deadline);

/* Send one line to a guest; a failure marks it lost (errmsg). */
int vmm_guest_send(struct vmm_guest *g, int64_t deadline, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Read and handle whatever the guests send until `until` (EVENTs, UNSAFE,
 * late lines).  Returns -1 if a channel closed (see failed), else 0.
 */
int vmm_guests_pump(struct vmm_guest **gs, int n, int64_t until);

/* Wait until g has seen a link-up EVENT, or port-active when its rails
 * include verbs (t_link set). */
int vmm_guest_wait_link(struct vmm_guest *g, int64_t deadline);

#endif /* NINJA_VMM_GUEST_H */
