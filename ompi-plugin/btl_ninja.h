/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja.h - btl/ninja: a migratable Open MPI 4.1 / 5.0 BTL.  Structures shared
 * by the component, module, endpoint, frag, rail and drain files.
 *
 * Threads.  The application's thread owns the data path while the component
 * is RUNNING: btl_send/sendi write to sockets, the progress function reads
 * them and makes the upcalls into ob1.  One component-owned thread (the
 * "control thread", btl_ninja_thread.c and the files btl_ninja_thread.h
 * lists) owns everything else: the control
 * channel to the node agent, the listener, connection set-up, and - while a
 * migration is in progress - all socket I/O of the drain.  It never calls
 * into ob1: frames it receives during a drain and sends it completes are
 * queued for the application's thread, which delivers them at its next
 * progress call, before anything newer from the same peer.
 *
 * One recursive mutex (mca_btl_ninja_component.lock) guards endpoints,
 * queues, frag pools and the component state.  It is recursive because ob1
 * calls btl_send from inside receive upcalls.  The application's progress
 * only try-locks it, so a rank never blocks in opal_progress on the control
 * thread; the control thread holds it only for short non-blocking bursts.
 *
 * Who owns each field of the component and endpoint structures is marked
 * on it:
 *   [L]  the component lock: read and written only with it held.
 *   [A]  a C11 atomic: written with the lock held (or by its one writer,
 *        named), read anywhere without it as a hint; what the reader then
 *        does with the protected state it does under the lock.
 *   [C]  the control thread only (at init, before the thread starts, and at
 *        finalize, after it stops, the application's thread may use it).
 *   [P]  set at init (MCA parameters, init-time results), read-only after.
 *   [F]  fixed when the endpoint is created (under the lock), constant.
 * A function that needs the lock says so and, in a NINJA_DEBUG build
 * (configure CPPFLAGS=-DNINJA_DEBUG), checks it: NINJA_ASSERT_LOCKED().
 */
#ifndef NINJA_BTL_NINJA_H
#define NINJA_BTL_NINJA_H

#include "opal_config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "opal/class/opal_bitmap.h"
#include "opal/class/opal_hash_table.h"
#include "opal/mca/btl/btl.h"
#include "opal/mca/btl/base/base.h"
#include "opal/util/output.h"
#include "opal/util/proc.h"

#include "btl_ninja_auth.h"
#include "btl_ninja_compat.h"
#include "btl_ninja_hdr.h"
#include "btl_ninja_reg.h"
#include "btl_ninja_rail.h"

BEGIN_C_DECLS

#define NINJA_MAX_ADDRS		8	/* IPv4 addresses published per rank */

/* Time: mca_btl_ninja_now_ns() counts nanoseconds. */
#define NINJA_US_NS		1000ull
#define NINJA_MS_NS		1000000ull
#define NINJA_SEC_NS		1000000000ull
#define NINJA_RX_INIT		(64 * 1024)
/* Largest put: a frame's len (32 bits) holds the destination and the data. */
#define NINJA_PUT_MAX		((size_t)UINT32_MAX - sizeof(ninja_put_hdr_t))

/* Component (migration) state. */
enum mca_btl_ninja_state {
	NINJA_RUNNING = 0,	/* data path owned by the application thread */
	NINJA_DRAINING,		/* markers being exchanged (control thread) */
	NINJA_DRAINED,		/* all connections closed; SAFE once asked */
	NINJA_RESUMING,		/* rediscover, publish, reconnect */
};

/* Endpoint connection state. */
enum mca_btl_ninja_ep_state {
	NINJA_EP_CLOSED = 0,
	NINJA_EP_CONNECTING,	/* non-blocking connect() in progress */
	NINJA_EP_HELLO,		/* HELLO sent, waiting for ACK/NACK */
	NINJA_EP_CONNECTED,
};

/* What a rank publishes (PMIx key "btl.ninja.addr"). */
typedef struct mca_btl_ninja_addr {
	uint32_t epoch;		/* epoch at which this was published */
	uint16_t port;		/* network order */
	uint16_t naddr;
	uint32_t ip[NINJA_MAX_ADDRS];	/* IPv4, network order, preferred first */
	char rail[8];		/* "tcp", or this epoch's fast rail */
} mca_btl_ninja_addr_t;
/* Read by every peer (a PMIx byte object of exactly this size). */
_Static_assert(sizeof(mca_btl_ninja_addr_t) == 48, "published address: 48 bytes");

struct mca_btl_ninja_frag;

/*
 * What ob1 gets from btl_register_mem and sends to the peer (8 bytes,
 * btl_registration_handle_size): the key of the registration, never its
 * address.  It is the first member of the table's entry (ninja_reg_t).
 */
struct mca_btl_base_registration_handle_t {
	uint64_t key;
};

/* A get this rank asked for (btl_get), until its response is whole. */
typedef struct mca_btl_ninja_get {
	struct mca_btl_ninja_get *next;
	uint64_t id;
	void *local;
	size_t len;
	bool done;		/* response whole; completion deferred */
	struct mca_btl_base_registration_handle_t *local_handle;
	mca_btl_base_rdma_completion_fn_t cbfunc;
	void *cbcontext, *cbdata;
} mca_btl_ninja_get_t;

/* A frame received by the control thread, delivered later by the app. */
typedef struct mca_btl_ninja_rxframe {
	struct mca_btl_ninja_rxframe *next;
	struct mca_btl_base_endpoint_t *endpoint;
	uint8_t tag;
	size_t len;
	unsigned char data[];
} mca_btl_ninja_rxframe_t;

struct mca_btl_base_endpoint_t {
	/* Every field is [L] unless marked otherwise. */
	opal_proc_t *endpoint_proc;
	opal_process_name_t endpoint_name;	/* [F] */
	int endpoint_index;		/* [F] */
	int endpoint_state;		/* enum mca_btl_ninja_ep_state */
	int endpoint_fd;
	bool endpoint_in_conn;		/* listed in component.conn[] */
	bool endpoint_epollout;		/* EPOLLOUT interest is set */
	/* Address of the peer and the epoch it must be at least. */
	mca_btl_ninja_addr_t endpoint_addr;
	bool endpoint_addr_valid;
	int endpoint_addr_try;		/* [C] index of the next ip to try */
	uint64_t endpoint_retry_at;	/* [C] ns: next connect attempt */
	uint64_t endpoint_attempt_at;	/* [C] ns: this attempt's connect() */
	uint64_t endpoint_hello_at;	/* [C] ns: ... and its HELLO */
	/* This epoch's address, read from PMIx in the background. */
	bool endpoint_lookup_busy;	/* a PMIx_Get_nb is outstanding */
	bool endpoint_lookup_done;	/* ... answered: lookup_addr is new */
	uint32_t endpoint_lookup_epoch;	/* epoch last asked for */
	uint64_t endpoint_lookup_at;	/* ns: when it was asked */
	mca_btl_ninja_addr_t endpoint_lookup_addr;
	uint64_t endpoint_conn_start;	/* ns: first attempt of this round */
	bool endpoint_want_connect;	/* app asked for a connection */
	bool endpoint_was_connected;	/* connected before the last drain */
	/* Handshake (connector side): state, bytes of hs.rx read. */
	ninja_hs_state_t endpoint_hs;
	size_t endpoint_hs_len;
	/* Send queue, FIFO; the head may be partially written. */
	struct mca_btl_ninja_frag *endpoint_sq_head, *endpoint_sq_tail;
	size_t endpoint_sq_len;
	uint32_t endpoint_tx_seq;
	/* Receive buffer: valid bytes in [rx_off, rx_len). */
	unsigned char *endpoint_rx_buf;
	size_t endpoint_rx_cap, endpoint_rx_off, endpoint_rx_len;
	bool endpoint_rx_busy;		/* an upcall from this buffer is running */
	uint32_t endpoint_rx_max;	/* longest buffered frame len the peer
					 * announced (handshake max_frame) */
	uint32_t endpoint_rx_seq;
	/* Put frame being read straight into its destination (TCP). */
	unsigned char *endpoint_rx_put;	/* next byte to fill */
	size_t endpoint_rx_put_left;	/* bytes of its data still to read */
	bool endpoint_rx_put_skip;	/* a duplicate (replay): drop its data */
	ninja_reg_t *endpoint_rx_put_reg;	/* ... a put's registration */
	ninja_frame_hdr_t endpoint_rx_put_hdr;	/* in sequence once whole */
	mca_btl_ninja_get_t *endpoint_rx_get;	/* ... a get's response */
	/* Gets asked of this peer, not answered yet (btl_ninja.c). */
	mca_btl_ninja_get_t *endpoint_gets;
	uint64_t endpoint_rdma_violations;	/* its puts/gets we refused */
	/* Drain. */
	uint32_t endpoint_marker_rcvd;	/* epoch of the last marker received */
	bool endpoint_marker_sent;
	size_t endpoint_marker_off;	/* bytes of the marker frame written */
	ninja_frame_hdr_t endpoint_marker;
	/* Rail (btl_ninja_rail.h): which one carries the frames; the
	 * state of component.rail for this peer, owned by that rail. */
	const ninja_rail_ops_t *endpoint_rail;	/* tcp, or component.rail */
	void *endpoint_rail_state;
	bool endpoint_rail_ready;	/* a fast rail: frames may be posted
					 * (acceptor: the connector said READY) */
	/* Live upgrade to verbs (btl_ninja_upgrade.c). */
	int endpoint_upg;		/* enum in btl_ninja_upgrade.c */
	uint32_t endpoint_upg_epoch;	/* epoch of the exchange in progress */
	uint32_t endpoint_upg_gen;	/* device generation last tried */
	uint64_t endpoint_upg_conn;	/* endpoint_connects it belongs to */
	uint64_t endpoint_upg_t_hold;	/* ns: new frames queued since */
	ninja_rail_addr_t endpoint_upg_peer;
	/*
	 * Replay (surprise removal): per peer, not per connection, so it
	 * survives reconnections.  Every DATA frame gets the next tx_seq; a
	 * fully written DATA frame moves to the retained list (rt) until the
	 * peer's cumulative ack covers it; the receiver delivers only
	 * seq == rx_next and drops older seqs (duplicates of a replay).
	 * endpoint_tx_seq and endpoint_rx_seq above are these counters.
	 */
	uint32_t endpoint_tx_acked;	/* the peer has every seq before this */
	struct mca_btl_ninja_frag *endpoint_rt_head, *endpoint_rt_tail;
	size_t endpoint_rt_bytes;	/* retained, <= btl_ninja_replay_window */
	size_t endpoint_rt_len;
	uint32_t endpoint_ack_sent;	/* last ack value we put on the wire */
	size_t endpoint_ack_owed;	/* bytes received since */
	bool endpoint_ack_req;		/* a frame asked for an ACK */
	bool endpoint_ack_asking;	/* we asked for one (window full) ... */
	uint32_t endpoint_ack_asked;	/* ... when tx_acked was this */
	bool endpoint_lost;		/* peer declared gone (replay timeout) */
	const char *endpoint_lost_why;	/* ... why (reported to ob1) */
	uint32_t endpoint_gap_seq;	/* rx_seq at the last sequence gap */
	bool endpoint_gap_seen;		/* one gap there already: replayed */
	uint64_t endpoint_failed_at;	/* ns: lost outside a drain, not back */
	uint64_t endpoint_failures, endpoint_replayed, endpoint_dups;
	/* Counters. */
	uint64_t endpoint_tx_frags, endpoint_rx_frags;
	uint64_t endpoint_tx_bytes, endpoint_rx_bytes;
	uint64_t endpoint_connects;
};
typedef struct mca_btl_base_endpoint_t mca_btl_ninja_endpoint_t;

/* Send fragment: descriptor first so ob1's pointer is ours. */
typedef struct mca_btl_ninja_frag {
	mca_btl_base_descriptor_t base;
	mca_btl_base_segment_t segments[2];
	struct mca_btl_ninja_frag *next;
	struct mca_btl_base_endpoint_t *endpoint;
	ninja_frame_hdr_t hdr;
	struct iovec iov[3];
	int iov_cnt;
	int iov_idx;
	size_t sent;		/* bytes of this frame already written */
	size_t size;		/* header + payload */
	uint8_t pool;		/* which free list */
	bool queued;		/* returned 0 to ob1: callback owed */
	bool cb_done;		/* ob1's callback made (or none owed) */
	bool in_cq;		/* on the component's completion queue */
	bool cq_release;	/* ... and back to the pool after it */
	bool absorbed;		/* in-place payload copied into data[] */
	struct mca_btl_ninja_frag *cq_next;
	size_t cap;		/* bytes available at data[] */
	unsigned char *data;
	/* btl_put: destination (sent after hdr) and ob1's completion. */
	ninja_put_hdr_t put;
	void *put_local;
	mca_btl_base_rdma_completion_fn_t put_cbfunc;
	void *put_cbcontext, *put_cbdata;
	/* btl_ninja_fault_rdma: a wire field spoiled for the first write
	 * only (*fault_at restored to fault_val once the frame is out). */
	uint64_t *fault_at;
	uint64_t fault_val;
} mca_btl_ninja_frag_t;

typedef struct mca_btl_ninja_module {
	mca_btl_base_module_t super;
} mca_btl_ninja_module_t;

/* Timings of one drain/reconnect cycle, microseconds. */
typedef struct mca_btl_ninja_cycle {
	uint32_t epoch;
	uint64_t t_start, t_drained, t_closed, t_safe, t_resume, t_published,
		t_running, t_reconnected;
	uint64_t frames_deferred, frags_held;
	bool cancelled, timed_out;
	char rail[16];
} mca_btl_ninja_cycle_t;

typedef struct mca_btl_ninja_component {
	mca_btl_base_component_3_0_0_t super;

	/* MCA parameters [P]. */
	char *if_include, *if_exclude;
	char *rails;
	char *control;
	int control_required;		/* -1: when control is set explicitly */
	char *report;
	int verbose;
	int drain_timeout;		/* s: warn when markers are this late */
	int resume_timeout;		/* s: resume on old rails without RESUME */
	int connect_timeout;		/* ms */
	int sndbuf, rcvbuf;
	int tcp_user_timeout;		/* ms, TCP_USER_TIMEOUT (0: off) */
	int poll_direct;
	int port_min;
	int fault_max_frame;		/* test knob: max_frame announced */
	char *verbs_devices;
	int verbs_gid_index;
	int verbs_port;
	int verbs_slots;
	int verbs_slot_size;
	char *upgrade;			/* live | wait */
	int upgrade_wait;		/* s: wait mode's bound at RESUME */
	int replay_window;		/* bytes retained per peer */
	int retain_copy;		/* in-place payloads up to this are copied */
	int replay_timeout;		/* ms to get a lost connection back */
	int fault_inject;		/* test knob: 1/N frames or reads fail */
	int fault_gap;			/* test knob: skip the Nth DATA seq */
	int fault_gap_count;
	int fault_get;			/* test knob: corrupt the Nth get answer */
	int fault_get_count;
	int fault_rdma;			/* test knob: Nth put/get out of bounds */
	int fault_rdma_puts, fault_rdma_gets;
	int reg_max;			/* registrations alive at once */
	int rdma_strikes;		/* refused RDMA frames before fatal */
	const ninja_rail_ops_t *rail;	/* [L] this epoch's fast rail, NULL:
					 * tcp only (btl_ninja_rail.c) */
	char rail_desc[128];		/* [L] its device */

	int output;			/* [P] opal_output stream */
	mca_btl_ninja_module_t *module;	/* [P] */
	pthread_mutex_t lock;		/* see file comment */
#ifdef NINJA_DEBUG
	pthread_t lock_owner;		/* [L] NINJA_ASSERT_LOCKED's */
	int lock_depth;			/* [L] */
#endif

	/* Endpoints (index = endpoint_index) [L]. */
	mca_btl_ninja_endpoint_t **eps;
	int neps, eps_cap;
	opal_hash_table_t eps_by_name;	/* process name -> endpoint */
	bool eps_by_name_ready;
	/* Connected endpoints, for the application's progress. */
	mca_btl_ninja_endpoint_t **conn;
	int nconn;
	int epfd;			/* epoll set of connected sockets */

	/* Migration state [A]: written under the lock, read as hints. */
	_Atomic int state;		/* enum mca_btl_ninja_state */
	_Atomic uint32_t epoch;
	_Atomic uint32_t drain_request;	/* app saw a newer epoch */
	_Atomic int app_work;		/* deferred items for the app */
	_Atomic int nactive;		/* conn + queued sends, progress hint */

	/* Work for the application's thread [L]. */
	mca_btl_ninja_rxframe_t *dq_head, *dq_tail;	/* deferred frames */
	mca_btl_ninja_frag_t *cq_head, *cq_tail;	/* deferred completions */

	/* Frag pools [L]. */
	mca_btl_ninja_frag_t *pool_free[2];
	size_t pool_cap[2];
	uint64_t pool_allocated;

	/* Control thread. */
	pthread_t thread;		/* [P] */
	bool thread_started;		/* [P] */
	_Atomic bool thread_stop;	/* [A] written by the app thread */
	int wake_fd;			/* [P] eventfd: app -> control thread */
	int listen_fd;			/* [C] */
	mca_btl_ninja_addr_t my_addr;	/* [C] (rails_select: with the lock) */

	/* Peer declared gone: the app thread tells ob1 (error callback). */
	mca_btl_base_module_error_cb_fn_t error_cb;	/* [L] */
	_Atomic int peer_lost;		/* [A] */
	_Atomic int in_cycle;		/* [A] written by the control thread:
					 * drain started, not reconnected yet */
	_Atomic int finalized;		/* [A] written by the app thread at
					 * finalize: late callbacks ignore */
	uint64_t fault_rng;		/* [L] */
	uint64_t get_id;		/* [L] last btl_get id */
	uint64_t n_puts, n_gets, n_gets_served;	/* [L] */
	/* RDMA emulation bounds (btl_ninja.c, btl_ninja_reg.c) [L]. */
	ninja_reg_table_t reg;
	bool reg_ready;
	uint64_t n_rdma_violations, n_rdma_faults;
	bool rdma_warned;		/* show_help said it (once) */
	unsigned int badframe_told;	/* bad-frame-type shown (once) */
	char rdma_first[160];		/* the first refusal, for that text */

	/* Statistics. */
	uint64_t n_cycles, n_cancelled, n_timeouts;	/* [C] */
	uint64_t n_faults;		/* [L] injected (btl_ninja_fault_inject) */
	mca_btl_ninja_cycle_t cycle;	/* [C]; frags_held, frames_deferred:
					 * [C] with the lock held */
} mca_btl_ninja_component_t;

NINJA_DECLSPEC extern mca_btl_ninja_component_t mca_btl_ninja_component;
extern mca_btl_ninja_module_t mca_btl_ninja_module;

/*
 * Output.  Both of our threads log; opal_output's own lock is a no-op in a
 * MPI_THREAD_SINGLE process, so ours serializes them.  NINJA_VERBOSE
 * evaluates nothing below the verbosity level.
 */
extern pthread_mutex_t mca_btl_ninja_log_lock;

#define NINJA_VERBOSE(level, ...)						\
	do {									\
		if (mca_btl_ninja_component.verbose >= (level)) {		\
			pthread_mutex_lock(&mca_btl_ninja_log_lock);		\
			opal_output_verbose((level),				\
					    mca_btl_ninja_component.output,	\
					    __VA_ARGS__);			\
			pthread_mutex_unlock(&mca_btl_ninja_log_lock);		\
		}								\
	} while (0)

#define NINJA_ERROR(...)							\
	do {									\
		pthread_mutex_lock(&mca_btl_ninja_log_lock);			\
		opal_output(0, __VA_ARGS__);					\
		pthread_mutex_unlock(&mca_btl_ninja_log_lock);			\
	} while (0)

/*
 * The component lock.  NINJA_DEBUG builds record its owner so that a
 * function that needs it can say so: NINJA_ASSERT_LOCKED() (abort if this
 * thread does not hold it).
 */
#ifdef NINJA_DEBUG
void mca_btl_ninja_lock_violation(const char *func, const char *file,
				   int line) __attribute__((noreturn));

static inline void ninja_lock_taken(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	c->lock_owner = pthread_self();
	c->lock_depth++;
}

static inline void ninja_lock_released(void)
{
	mca_btl_ninja_component.lock_depth--;
}

static inline bool mca_btl_ninja_lock_held(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	return c->lock_depth > 0 && pthread_equal(c->lock_owner, pthread_self());
}

#define NINJA_ASSERT_LOCKED()							\
	do {									\
		if (!mca_btl_ninja_lock_held())					\
			mca_btl_ninja_lock_violation(__func__, __FILE__,	\
						     __LINE__);			\
	} while (0)
#else
static inline void ninja_lock_taken(void)
{
}

static inline void ninja_lock_released(void)
{
}

#define NINJA_ASSERT_LOCKED() do { } while (0)
#endif

static inline void mca_btl_ninja_lock(void)
{
	pthread_mutex_lock(&mca_btl_ninja_component.lock);
	ninja_lock_taken();
}

/* 0: taken; else it is busy (the application's progress only tries). */
static inline int mca_btl_ninja_trylock(void)
{
	int rc = pthread_mutex_trylock(&mca_btl_ninja_component.lock);

	if (rc == 0)
		ninja_lock_taken();
	return rc;
}

static inline void mca_btl_ninja_unlock(void)
{
	ninja_lock_released();
	pthread_mutex_unlock(&mca_btl_ninja_component.lock);
}

uint64_t mca_btl_ninja_now_ns(void);
/* A help topic rendered here and written to stderr (not relayed). */
void mca_btl_ninja_help(const char *topic, ...);
/* The same, once per node (its first rank): a condition all its ranks
 * meet alike. */
void mca_btl_ninja_help_node(const char *topic, ...);
void mca_btl_ninja_wake(void);

/* btl_ninja.c - module function table. */
int mca_btl_ninja_add_procs(struct mca_btl_base_module_t *btl, size_t nprocs,
			    struct opal_proc_t **procs,
			    struct mca_btl_base_endpoint_t **peers,
			    opal_bitmap_t *reachable);
int mca_btl_ninja_del_procs(struct mca_btl_base_module_t *btl, size_t nprocs,
			    struct opal_proc_t **procs,
			    struct mca_btl_base_endpoint_t **peers);
int mca_btl_ninja_finalize(struct mca_btl_base_module_t *btl);

/* btl_ninja.c - get emulation. */
/* Internal tag, never on the wire: a get's response was read by the
 * control thread; its completion waits on the deferred queue. */
#define NINJA_TAG_GETDONE	0x3c
void mca_btl_ninja_get_serve(mca_btl_ninja_endpoint_t *ep, const void *data,
			     size_t len);
mca_btl_ninja_get_t *mca_btl_ninja_get_find(mca_btl_ninja_endpoint_t *ep,
					    const ninja_put_hdr_t *ph,
					    size_t dlen);
void mca_btl_ninja_get_complete(mca_btl_ninja_endpoint_t *ep,
				mca_btl_ninja_get_t *g, bool app);
void mca_btl_ninja_get_done(mca_btl_ninja_endpoint_t *ep, const void *data,
			    size_t len);
void mca_btl_ninja_get_release_all(mca_btl_ninja_endpoint_t *ep);

/*
 * btl_ninja.c - the bounds of put and get (lock held).  A frame with one of
 * our RDMA tags, about to be accepted in sequence: true if it may be acted
 * on; false if it breaks the rule (counted, reported; the caller closes
 * the connection without accepting the frame, nothing of it is written or
 * read).  payload: the first have bytes of its hdr->len.
 */
bool mca_btl_ninja_rdma_admit(mca_btl_ninja_endpoint_t *ep,
			      const ninja_frame_hdr_t *hdr,
			      const void *payload, size_t have, bool app);
static inline bool ninja_tag_rdma(uint8_t tag)
{
	return tag >= NINJA_TAG_GETDONE && tag <= NINJA_TAG_PUT;
}
/* A frame spoiled by btl_ninja_fault_rdma is out: restore it (replay). */
void mca_btl_ninja_rdma_fault_sent(mca_btl_ninja_frag_t *f);
/* The component's table, deleted at finalize. */
void mca_btl_ninja_reg_fini(void);

/* btl_ninja_frag.c */
mca_btl_ninja_frag_t *mca_btl_ninja_frag_alloc(size_t payload);
void mca_btl_ninja_frag_return(mca_btl_ninja_frag_t *frag);
mca_btl_ninja_frag_t *mca_btl_ninja_frag_copy(const void *header,
					      size_t header_size,
					      const void *payload,
					      size_t payload_size, uint8_t tag);
void mca_btl_ninja_frag_pools_fini(void);

/* btl_ninja_endpoint.c - data path. */
int mca_btl_ninja_endpoint_send(mca_btl_ninja_endpoint_t *ep,
				mca_btl_ninja_frag_t *frag, bool app);
int mca_btl_ninja_endpoint_sendi(mca_btl_ninja_endpoint_t *ep,
				 const void *header, size_t header_size,
				 const void *payload, size_t payload_size,
				 uint8_t tag);
int mca_btl_ninja_endpoint_flush(mca_btl_ninja_endpoint_t *ep, bool app,
				 bool drain);
/* f is on the wire (whole): retain it for replay or recycle it. */
void mca_btl_ninja_endpoint_sent(mca_btl_ninja_endpoint_t *ep,
				 mca_btl_ninja_frag_t *f, bool app);
void mca_btl_ninja_endpoint_sq_append(mca_btl_ninja_endpoint_t *ep,
				      mca_btl_ninja_frag_t *f);
void mca_btl_ninja_endpoint_attach(mca_btl_ninja_endpoint_t *ep, int fd);
void mca_btl_ninja_endpoint_close(mca_btl_ninja_endpoint_t *ep);
void mca_btl_ninja_endpoint_update_out(mca_btl_ninja_endpoint_t *ep);
int mca_btl_ninja_deliver_deferred(void);
void mca_btl_ninja_endpoint_acked(mca_btl_ninja_endpoint_t *ep, uint32_t ack,
				  bool app);
int mca_btl_ninja_endpoint_rx_accept(mca_btl_ninja_endpoint_t *ep,
				     const ninja_frame_hdr_t *hdr);
/* rx_accept in two steps, for a frame read in place: check (1 next, 0
 * duplicate, -1 gap) when its header arrives, commit once it is whole. */
int mca_btl_ninja_endpoint_rx_check(mca_btl_ninja_endpoint_t *ep,
				    const ninja_frame_hdr_t *hdr);
void mca_btl_ninja_endpoint_rx_commit(mca_btl_ninja_endpoint_t *ep,
				      const ninja_frame_hdr_t *hdr);
void mca_btl_ninja_endpoint_replay(mca_btl_ninja_endpoint_t *ep,
				   uint32_t peer_ack);
uint32_t mca_btl_ninja_endpoint_hs_ack(mca_btl_ninja_endpoint_t *ep);
void mca_btl_ninja_endpoint_failed(mca_btl_ninja_endpoint_t *ep, int err,
				   const char *what);
void mca_btl_ninja_endpoint_ack_maybe(mca_btl_ninja_endpoint_t *ep, bool app);
void mca_btl_ninja_endpoint_release_all(mca_btl_ninja_endpoint_t *ep);
void mca_btl_ninja_endpoint_protocol_error(mca_btl_ninja_endpoint_t *ep,
					   const char *why);
/* A frame of a type nobody knows arrived (ignored): say so, once. */
void mca_btl_ninja_endpoint_bad_frame(mca_btl_ninja_endpoint_t *ep,
				      unsigned int type);
void mca_btl_ninja_report_lost(void);
void mca_btl_ninja_replay_stats(void);
void mca_btl_ninja_endpoint_upcall(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
				   void *data, size_t len);
int mca_btl_ninja_endpoint_defer(mca_btl_ninja_endpoint_t *ep, uint8_t tag,
				 const void *data, size_t len);
/* btl_ninja_rail.c (lock held). */
bool mca_btl_ninja_rail_wanted(const char *rail, const char *hint);
bool mca_btl_ninja_rails_select(const char *hint);
/* Drop ep's fast-rail state; its frames go on TCP again. */
void mca_btl_ninja_rail_ep_close(mca_btl_ninja_endpoint_t *ep);
/* May frames be posted on ep's rail now? */
static inline bool mca_btl_ninja_ep_ready(const mca_btl_ninja_endpoint_t *ep)
{
	return NINJA_EP_ON_TCP(ep) || ep->endpoint_rail_ready;
}
/* The rail that carries ep's frames now: its fast rail once ready, else
 * TCP (the connection's socket). */
static inline const ninja_rail_ops_t *
mca_btl_ninja_ep_carrier(const mca_btl_ninja_endpoint_t *ep)
{
	return ep->endpoint_rail_ready ? ep->endpoint_rail :
	       &mca_btl_ninja_rail_tcp;
}
/* The one rail-neutral dispatch of a whole frame (payload: hdr->len
 * bytes): ACK, MARKER, READY, DATA (ob1's, puts, gets), UPGRADE*.  A
 * NINJA_RX_* result; why says what a NINJA_RX_FAIL was. */
enum { NINJA_RX_NEXT, NINJA_RX_OUT, NINJA_RX_FAIL };
int mca_btl_ninja_endpoint_frame(mca_btl_ninja_endpoint_t *ep,
				 const ninja_frame_hdr_t *hdr, void *payload,
				 bool app, int *count, const char **why);
/* Fault injection (btl_ninja_fault_inject), for the rails' post. */
bool mca_btl_ninja_fault_due(bool app);
void mca_btl_ninja_fault_reset(mca_btl_ninja_endpoint_t *ep, const char *where);
int mca_btl_ninja_progress_io(void);
mca_btl_ninja_endpoint_t *mca_btl_ninja_endpoint_lookup(opal_process_name_t name);
mca_btl_ninja_endpoint_t *mca_btl_ninja_endpoint_create(opal_process_name_t name);
void mca_btl_ninja_endpoint_index_fini(void);

/* btl_ninja_rail_tcp.c - interfaces, listener, addresses, handshake;
 * the stream writer and reader (mca_btl_ninja_rail_tcp's ops). */
int mca_btl_ninja_tcp_discover(mca_btl_ninja_addr_t *addr, char *desc,
			       size_t desclen);
int mca_btl_ninja_tcp_listen(void);
int mca_btl_ninja_tcp_accept(void);
void mca_btl_ninja_tcp_listen_close(void);
int mca_btl_ninja_publish_key(const void *key, size_t len);
int mca_btl_ninja_lookup_key(uint32_t vpid, void *key, size_t len);
uint32_t mca_btl_ninja_job_size(void);
int mca_btl_ninja_publish(uint32_t epoch, bool runtime);
int mca_btl_ninja_pmix_init(void);
void mca_btl_ninja_pmix_fini(void);
void mca_btl_ninja_lookup_collect(void);
int mca_btl_ninja_lookup_addr_nb(opal_process_name_t name, uint32_t epoch,
				 int wait_s);
int mca_btl_ninja_lookup_addr(mca_btl_ninja_endpoint_t *ep, uint32_t epoch,
			      int wait_s);
void mca_btl_ninja_tcp_tune(int fd);

/* btl_ninja_ctl.c, btl_ninja_thread.c, btl_ninja_report.c - control thread. */
/* Open the control channel and register (at init, before the thread):
 * 0 open, 1 no channel configured, -1 failed (why says it). */
int mca_btl_ninja_ctl_setup(char *why, size_t whylen);
int mca_btl_ninja_thread_start(void);
void mca_btl_ninja_thread_stop(void);
void mca_btl_ninja_ctl_send(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void mca_btl_ninja_report_json(const char *json);

/*
 * Process name order (jobid, then vpid): the lower-named side of a pair
 * initiates its connection and its live upgrade.
 */
static inline int mca_btl_ninja_name_cmp(opal_process_name_t a,
					 opal_process_name_t b)
{
	if (a.jobid != b.jobid)
		return a.jobid < b.jobid ? -1 : 1;
	if (a.vpid != b.vpid)
		return a.vpid < b.vpid ? -1 : 1;
	return 0;
}

/*
 * btl_ninja_upgrade.c - live upgrade of TCP connections to verbs when a
 * port becomes ACTIVE after the resume (docs/design.md "Live upgrade").
 * Every function runs with the component lock held, except where noted.
 */
bool mca_btl_ninja_upgrade_live(void);
/* Control thread, unlocked: an EVENT line from the node. */
void mca_btl_ninja_upgrade_event(const char *kind, uint64_t t_ns);
/* Control thread, unlocked, RUNNING: open, start, answer, report. */
void mca_btl_ninja_upgrade_step(void);
/* Control thread: ms until upgrade_step wants to run again (-1: idle). */
int mca_btl_ninja_upgrade_timeout(void);
/* Any thread: an UPGRADE* frame read from ep's TCP stream. */
void mca_btl_ninja_upgrade_frame(mca_btl_ninja_endpoint_t *ep,
				 const ninja_frame_hdr_t *hdr,
				 const void *payload, bool app);
/* Any thread: a READY frame was handled for ep. */
void mca_btl_ninja_upgrade_ready(mca_btl_ninja_endpoint_t *ep);
/* Any thread: a control frame of ours is completely written. */
void mca_btl_ninja_upgrade_sent(mca_btl_ninja_frag_t *f);
/* Drain hooks (control thread). */
void mca_btl_ninja_upgrade_drain_start(void);
void mca_btl_ninja_upgrade_drain(mca_btl_ninja_endpoint_t *ep);
/* Resume (control thread, unlocked): forget every exchange; hint = RESUME rails=. */
void mca_btl_ninja_upgrade_reset(const char *hint);
/* Wait mode (control thread, unlocked): hold this RESUME for the port? */
bool mca_btl_ninja_upgrade_hold_resume(const char *hint, uint64_t since);

END_C_DECLS

#endif /* NINJA_BTL_NINJA_H */
