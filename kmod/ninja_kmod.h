/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * Internal interface of the Ninja guest module (ninja.ko)
 * and the one function it exports to its IB companion (ninja_ib.ko).
 *
 * Parts, by file:
 *   ninja_main.c   /dev/ninja (one open file = one rank), the aggregation
 *                  state machine from common/, sysfs, init/exit
 *   ninja_port.c   the host link: a virtconsole port used as an hvc tty
 *                  by a kthread (reader) and a work item (writer)
 *   ninja_notify.c device events: PCI bus and netdev notifiers, the event
 *                  queue that forwards them to the host and to the ranks
 *   ninja_ib.c     ninja_ib.ko: IB device add/remove and port events
 */
#ifndef NINJA_KMOD_H
#define NINJA_KMOD_H

#include <linux/types.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/kfifo.h>
#include <linux/miscdevice.h>
#include <linux/workqueue.h>
#include <linux/notifier.h>
#include <linux/wait.h>
#include <linux/list.h>

#include "ninja_proto.h"
#include "ninja_agg.h"

#define NINJA_KMOD_VERSION	"0.1.0"
/*
 * Rank slots per guest: the module keeps a fixed table (one allocation at
 * load); ninja-agent on a bare machine grows its own (--max-ranks).
 */
#define NINJA_KMOD_MAX_RANKS	256

/* Device event kinds; names are the wire names of the EVENT lines. */
enum ninja_ev_kind {
	NINJA_EV_PCI_ADD = 0,
	NINJA_EV_PCI_DEL,
	NINJA_EV_NETDEV_REG,
	NINJA_EV_NETDEV_UNREG,
	NINJA_EV_LINK_UP,
	NINJA_EV_LINK_DOWN,
	NINJA_EV_IB_ADD,
	NINJA_EV_IB_DEL,
	NINJA_EV_PORT_ACTIVE,
	NINJA_EV_PORT_DOWN,
	NINJA_EV_MODULE_UNLOAD,
	NINJA_EV_COUNT
};

/* Longest "k=v k=v" part of an event line. */
#define NINJA_EV_KV_MAX		200
/* Most events waiting for the event work; more are dropped and counted. */
#define NINJA_EV_PENDING_MAX	1024

struct ninja_ev {
	struct list_head node;
	enum ninja_ev_kind kind;
	u64 t_ns;		/* ktime_get_ns() when it happened */
	u64 real_ns;		/* ktime_get_real_ns() at the same moment */
	char kv[NINJA_EV_KV_MAX];
};

/* One open /dev/ninja file: one rank connection, one aggregation slot. */
struct ninja_file {
	struct ninja_dev *nd;
	int slot;			/* ninja_agg slot, fixed while open */
	struct ninja_lineq lq;		/* bytes written by the rank; agg_lock */
	/*
	 * rq_lock protects rq (lines queued for the rank to read) and
	 * n_dropped.  A mutex, not a spinlock: read() copies to user space
	 * while holding it.  Order: agg_lock, then rq_lock.
	 */
	struct mutex rq_lock;
	struct kfifo rq;
	u64 n_dropped;			/* lines dropped on queue overflow */
	kuid_t uid;			/* opener's effective uid */
	bool root;			/* opened by root: no REGISTER check */
	wait_queue_head_t wq;		/* readers and pollers wait here */
};

struct ninja_dev {
	struct miscdevice misc;

	/*
	 * agg_lock serializes the aggregation state machine (agg), the slot
	 * table and the per-file line assemblers.  A mutex: it is taken
	 * from process context only (file ops, the port kthread, the event
	 * work), and it is held while lines are queued to rank files,
	 * which takes each file's rq_lock (a mutex).  The agg callbacks
	 * only queue lines; nothing under agg_lock writes to the host.
	 */
	struct mutex agg_lock;
	struct ninja_agg *agg;
	struct ninja_file *slots[NINJA_KMOD_MAX_RANKS];
	unsigned int nfiles;		/* open files, registered or not */
	u64 n_rank_dropped;		/* lines dropped from rank queues */
	u64 n_open_full;		/* opens refused: no free slot */
	u64 n_open_denied;		/* opens refused: not root nor group */

	/*
	 * txq_lock protects txq, the bytes waiting for the host, and the
	 * counters next to it.  A spinlock: it is taken under agg_lock and
	 * from the event work, and is held only to copy bytes.
	 */
	spinlock_t txq_lock;
	struct kfifo txq;
	u64 n_tx_lines;			/* lines handed to the host port */
	u64 n_tx_dropped;		/* lines dropped: port absent / full */
	/*
	 * The tx work writes txq to the port without ever blocking: a host
	 * that stops reading leaves bytes in tx_buf[tx_off..tx_len), and
	 * the work retries later (delayed) instead of sleeping in the tty.
	 * tx_buf, tx_off and tx_len are used only by the work.
	 */
	struct delayed_work tx_work;
	char tx_buf[2048];
	unsigned int tx_off, tx_len;

	/*
	 * port_lock protects port_filp and port_wfilp (the hvc tty, opened
	 * twice: a blocking file the kthread reads and a non-blocking one
	 * the tx work writes) and tx_reset; it is taken by the tx work and
	 * by the kthread when it opens or closes the port, and is never
	 * held across a wait: hot-unplug and rmmod never wait on a host
	 * that stopped reading.  The kthread reads the port without it (a
	 * read blocks for ever); only the kthread ever closes the files,
	 * after clearing the pointers.
	 */
	struct mutex port_lock;
	struct file *port_filp;
	struct file *port_wfilp;
	bool tx_reset;			/* port reopened: drop tx_buf's rest */
	struct task_struct *port_task;
	struct ninja_lineq host_lq;	/* only the kthread touches it */
	char port_state[96];		/* for sysfs; under port_lock */
	int port_err;			/* last open error, 0 when open */
	u64 n_port_opens;
	u64 n_rx_lines;			/* lines received from the host */
	u64 n_rx_crlf;			/* host lines ending in \r\n */

	/*
	 * ev_lock protects the pending event list, the per-kind counters
	 * and timestamps, and the link state table.  A spinlock: events
	 * are posted from notifiers, some of which run in atomic context.
	 */
	spinlock_t ev_lock;
	struct list_head ev_pending;
	unsigned int ev_npending;
	u64 ev_count[NINJA_EV_COUNT];
	u64 ev_last_ns[NINJA_EV_COUNT];
	u64 ev_last_real_ns[NINJA_EV_COUNT];
	u64 n_ev_dropped;
	struct work_struct ev_work;
	bool netdev_replay;		/* registering: don't post replays */

	struct workqueue_struct *wq;	/* ordered: event work, tx work */
	struct notifier_block pci_nb;
	struct notifier_block netdev_nb;
	struct kobject *kobj;		/* /sys/kernel/ninja */
};

extern struct ninja_dev *ninja_dev;

/* Module parameters (ninja_main.c). */
extern char *ninja_port_name;
extern char *ninja_hvc;
extern unsigned int ninja_retry_ms;

/* ninja_main.c */
void ninja_to_rank(void *ctx, int slot, const char *line, size_t len);
void ninja_to_host(void *ctx, const char *line, size_t len);

/* ninja_port.c */
int ninja_port_start(struct ninja_dev *nd);
void ninja_port_stop(struct ninja_dev *nd);
void ninja_tx_work(struct work_struct *work);

/* ninja_notify.c */
const char *ninja_ev_name(enum ninja_ev_kind kind);
int ninja_notify_start(struct ninja_dev *nd);
void ninja_notify_stop(struct ninja_dev *nd);
void ninja_ev_work(struct work_struct *work);
/* Send every queued event and host line now (process context). */
void ninja_event_flush(void);

/* Exported for ninja_ib.ko: queue an event with the current timestamps. */
__printf(2, 3)
void ninja_event_post(enum ninja_ev_kind kind, const char *fmt, ...);

#endif /* NINJA_KMOD_H */
