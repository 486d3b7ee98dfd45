/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_component.c - btl/ninja component: MCA parameters, open/close,
 * init (listener, first address publication, control thread) and the
 * progress function the application's thread calls.
 */
#include "opal_config.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "opal/mca/base/mca_base_var.h"
#include "opal/util/proc.h"
#include "opal/util/show_help.h"

#include "btl_ninja.h"

/*
 * The verbs slot: a whole eager frame (btl_eager_limit 64 KiB + 64, the
 * 16-byte frame header) fits one, and a 512 KiB get response (+ 16) fits
 * eight: no piece of a few bytes, no extra round of credits.
 */
#define NINJA_VERBS_SLOT_DEFAULT	(64 * 1024 + 256)

static int ninja_register(void);
static int ninja_open(void);
static int ninja_close(void);
static mca_btl_base_module_t **ninja_init(int *num_btls,
					  bool enable_progress_threads,
					  bool enable_mpi_threads);
static int ninja_progress(void);

mca_btl_ninja_component_t mca_btl_ninja_component = {
	.super = {
		.btl_version = {
			/* MCA_BTL_DEFAULT_VERSION, but with Ninja's own version
			 * (ompi_info shows it) instead of Open MPI's. */
			NINJA_BTL_BASE_VERSION,
			.mca_component_name = "ninja",
			MCA_BASE_MAKE_VERSION(component, NINJA_VERSION_MAJOR,
					      NINJA_VERSION_MINOR,
					      NINJA_VERSION_RELEASE),
			.mca_open_component = ninja_open,
			.mca_close_component = ninja_close,
			.mca_register_component_params = ninja_register,
		},
		.btl_data = {
			.param_field = MCA_BASE_METADATA_PARAM_NONE,
		},
		.btl_init = ninja_init,
		.btl_progress = ninja_progress,
	},
};

pthread_mutex_t mca_btl_ninja_log_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t mca_btl_ninja_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NINJA_SEC_NS + (uint64_t)ts.tv_nsec;
}

#ifdef NINJA_DEBUG
void mca_btl_ninja_lock_violation(const char *func, const char *file, int line)
{
	NINJA_ERROR("btl:ninja: %s (%s:%d) needs the component lock and this "
		    "thread does not hold it", func, file, line);
	abort();
}
#endif

void mca_btl_ninja_wake(void)
{
	uint64_t one = 1;

	if (mca_btl_ninja_component.wake_fd >= 0 &&
	    write(mca_btl_ninja_component.wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd full means a wake-up is already pending. */
	}
}

/*
 * String parameters are copied out of the MCA variable system: Open MPI
 * deregisters a framework's variables - freeing their strings and
 * setting the storage to NULL - before it finalizes the framework's
 * modules, and the control thread (a RESUME during MPI_Finalize) still
 * reads them until mca_btl_ninja_finalize has joined it.  The copies
 * live until the component closes.
 */
#define NINJA_MAX_STR_PARAMS 8
static char *mca_str[NINJA_MAX_STR_PARAMS];	/* owned by the MCA base */
static char **own_str[NINJA_MAX_STR_PARAMS];	/* our copies */
static int n_str;

static void reg_string(const char *name, const char *desc, const char *def,
		       int level, char **store)
{
	char **slot;

	if (n_str == NINJA_MAX_STR_PARAMS)
		abort();	/* a new parameter without a slot: a bug */
	slot = &mca_str[n_str];
	*slot = (char *)def;
	(void)mca_base_component_var_register(
		&mca_btl_ninja_component.super.btl_version, name, desc,
		MCA_BASE_VAR_TYPE_STRING, NULL, 0, 0, level,
		MCA_BASE_VAR_SCOPE_READONLY, slot);
	*store = strdup(*slot ? *slot : "");
	if (!*store)
		abort();
	own_str[n_str++] = store;
}

static void free_strings(void)
{
	while (n_str > 0) {
		n_str--;
		free(*own_str[n_str]);
		*own_str[n_str] = NULL;
	}
}

static void reg_int(const char *name, const char *desc, int def, int level,
		    int *store)
{
	*store = def;
	(void)mca_base_component_var_register(
		&mca_btl_ninja_component.super.btl_version, name, desc,
		MCA_BASE_VAR_TYPE_INT, NULL, 0, 0, level,
		MCA_BASE_VAR_SCOPE_READONLY, store);
}

static int ninja_register(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_base_module_t *m = &mca_btl_ninja_module.super;

	reg_string("if_include",
		   "Comma-separated interface names or CIDR subnets to use for the TCP rail "
		   "(re-evaluated at every resume; mutually exclusive with btl_ninja_if_exclude)",
		   "", OPAL_INFO_LVL_1, &c->if_include);
	reg_string("if_exclude",
		   "Comma-separated interface names or CIDR subnets NOT to use for the TCP rail",
		   "127.0.0.1/8", OPAL_INFO_LVL_1, &c->if_exclude);
	reg_string("rails",
		   "Rail preference order, comma-separated (verbs,tcp); the first available "
		   "one is used, re-evaluated after every migration",
		   "verbs,tcp", OPAL_INFO_LVL_2, &c->rails);
	reg_string("control",
		   "Control channel to the node agent: a device path (the guest kernel "
		   "module, /dev/ninja), unix:PATH (ninja-agent), or none. Empty: "
		   "/dev/ninja if it exists, else none",
		   "", OPAL_INFO_LVL_2, &c->control);
	reg_int("control_required",
		"A control channel that cannot be opened (or refuses the "
		"registration) at init stops the job instead of letting it run "
		"undrainable: 1 yes, 0 warn and keep retrying, -1 (default) yes "
		"when btl_ninja_control is set explicitly",
		-1, OPAL_INFO_LVL_2, &c->control_required);
	reg_string("report",
		   "File to append one JSON line per drain/reconnect cycle to (empty: none)",
		   "", OPAL_INFO_LVL_4, &c->report);
	reg_int("verbose",
		"Verbosity of btl/ninja (0 quiet, 1 one line per migration cycle with "
		"phase times and a JSON line, 10 connections, 20 drain details, 30 frames)",
		0, OPAL_INFO_LVL_4, &c->verbose);
	reg_int("drain_timeout",
		"Seconds a rank waits for its peers' drain markers before warning that "
		"the drain is stuck (the host's deadline then cancels)",
		60, OPAL_INFO_LVL_4, &c->drain_timeout);
	reg_int("resume_timeout",
		"Seconds a drained rank waits for RESUME or CANCEL before resuming on its "
		"old rails on its own",
		600, OPAL_INFO_LVL_4, &c->resume_timeout);
	reg_int("connect_timeout",
		"Milliseconds to keep trying to (re)connect to a peer before failing",
		30000, OPAL_INFO_LVL_4, &c->connect_timeout);
	reg_int("sndbuf", "TCP send buffer size (0: kernel autotuning)", 0,
		OPAL_INFO_LVL_4, &c->sndbuf);
	reg_int("rcvbuf", "TCP receive buffer size (0: kernel autotuning)", 0,
		OPAL_INFO_LVL_4, &c->rcvbuf);
	reg_int("tcp_user_timeout",
		"ms sent data may stay unacknowledged before the connection is "
		"failed and replayed (TCP_USER_TIMEOUT: a path that went silent "
		"is noticed; 0: the kernel's retransmission limit, ~15 min)",
		10000, OPAL_INFO_LVL_4, &c->tcp_user_timeout);
	reg_int("poll_direct",
		"Up to this many connected peers, progress reads each socket directly "
		"instead of calling epoll_wait (saves a system call per poll)",
		4, OPAL_INFO_LVL_5, &c->poll_direct);
	reg_int("replay_window",
		"Bytes of sent frames kept per peer until it acknowledges them, to "
		"replay after a connection or device fails without a drain; a "
		"sender with this much unacknowledged queues instead (>= "
		"btl_ninja_max_send_size + 16)",
		8 * 1024 * 1024, OPAL_INFO_LVL_5, &c->replay_window);
	reg_int("retain_copy",
		"A message sent in place from the user's buffer with at most this "
		"many payload bytes is copied into the fragment once written, so "
		"the send completes at once; a larger one completes when the peer "
		"acknowledges it (a replay would read the user's buffer again)",
		65536, OPAL_INFO_LVL_5, &c->retain_copy);
	reg_int("replay_timeout",
		"Milliseconds to get a connection that failed without a drain back "
		"(and replay) before the peer is reported gone (a fatal error); 0: "
		"retry forever",
		60000, OPAL_INFO_LVL_4, &c->replay_timeout);
	reg_int("fault_inject",
		"Test knob: about one in N frames written (and reads that returned "
		"data) resets the connection, as a surprise failure would; 0: off",
		0, OPAL_INFO_LVL_9, &c->fault_inject);
	reg_int("fault_gap",
		"Test knob: the Nth DATA frame this process sends takes a "
		"sequence number that is never sent or retained (a sender bug): "
		"its peer must stop with a protocol error; 0: off",
		0, OPAL_INFO_LVL_9, &c->fault_gap);
	reg_int("fault_get",
		"Test knob: the Nth get this process answers carries a wrong id "
		"(a sender bug): its peer must refuse it (close, replay) and, "
		"after btl_ninja_rdma_strikes refusals, stop with a protocol "
		"error; 0: off",
		0, OPAL_INFO_LVL_9, &c->fault_get);
	reg_int("fault_rdma",
		"Test knob: the Nth put and the Nth get this process asks for "
		"leave once with their destination (source) outside the peer's "
		"registration: the peer must refuse them and close the "
		"connection, the replay sends the true frames; 0: off",
		0, OPAL_INFO_LVL_9, &c->fault_rdma);
	reg_int("reg_max",
		"Memory registrations (regions a peer may put into or get "
		"from) alive at once; beyond it ob1 uses its send protocol "
		"(0: no RDMA at all)",
		65536, OPAL_INFO_LVL_5, &c->reg_max);
	reg_int("rdma_strikes",
		"Puts or gets outside this rank's registrations a peer may "
		"send (each refused, its connection closed and replayed) "
		"before it is reported unreachable, which ends the job; 0: "
		"never",
		3, OPAL_INFO_LVL_5, &c->rdma_strikes);
	reg_string("verbs_devices",
		   "Comma-separated RDMA devices the verbs rail may use (empty: any with an ACTIVE port)",
		   "", OPAL_INFO_LVL_2, &c->verbs_devices);
	reg_int("verbs_gid_index",
		"GID index for the verbs rail (RoCE needs one; -1: the first IPv4-mapped GID)",
		-1, OPAL_INFO_LVL_2, &c->verbs_gid_index);
	reg_int("verbs_port", "Port of the RDMA device to use (0: the first ACTIVE one)",
		0, OPAL_INFO_LVL_2, &c->verbs_port);
	reg_int("verbs_slots",
		"Pre-posted receive (and send) slots per peer on the verbs rail = initial credits",
		16, OPAL_INFO_LVL_5, &c->verbs_slots);
	reg_int("verbs_slot_size",
		"Bytes per verbs slot (frames larger than a slot are sent in pieces)",
		NINJA_VERBS_SLOT_DEFAULT, OPAL_INFO_LVL_5, &c->verbs_slot_size);
	reg_string("upgrade",
		   "When an RDMA port becomes ACTIVE after a resume: live = resume on tcp at "
		   "once and move each connection to verbs in place when the port is ACTIVE "
		   "(no drain, no VMM round trip); wait = a RESUME whose rails= lists verbs "
		   "waits for the ACTIVE port (at most btl_ninja_upgrade_wait s), as before",
		   "live", OPAL_INFO_LVL_4, &c->upgrade);
	reg_int("upgrade_wait",
		"Seconds a RESUME waits for an ACTIVE RDMA port with btl_ninja_upgrade=wait "
		"before resuming on tcp",
		60, OPAL_INFO_LVL_4, &c->upgrade_wait);
	reg_int("port_min",
		"Lowest TCP port to listen on (0: any ephemeral port)", 0,
		OPAL_INFO_LVL_2, &c->port_min);
	reg_int("fault_max_frame",
		"Test knob: announce this as the longest buffered frame in "
		"handshakes (a sender bug when smaller than what it sends): its "
		"peers must stop with a protocol error; 0: the real maximum",
		0, OPAL_INFO_LVL_9, &c->fault_max_frame);

	/* Module defaults, registered as btl_ninja_<name> by the base. */
	m->btl_exclusivity = MCA_BTL_EXCLUSIVITY_DEFAULT;
	/*
	 * A 64 KiB message and ob1's header (at most 64 bytes) go eager, in
	 * one frame and (verbs) one slot: in the TCG guests the rendezvous'
	 * three extra messages cost more than the copy (bench/README.md,
	 * 2026-12-07, issue #25).
	 */
	m->btl_eager_limit = 64 * 1024 + 64;
	m->btl_rndv_eager_limit = 64 * 1024;
	m->btl_max_send_size = 1024 * 1024;
	m->btl_rdma_pipeline_send_length = 1024 * 1024;
	m->btl_rdma_pipeline_frag_size = 1024 * 1024;
	/*
	 * With btl_register_mem, ob1 (without leave_pinned) takes the RDMA
	 * protocols (RGET, the receiver's put pipeline) only for messages up
	 * to this size: every size, as before registration existed.
	 */
	m->btl_min_rdma_pipeline_size = SIZE_MAX;
	m->btl_flags = MCA_BTL_FLAGS_SEND | MCA_BTL_FLAGS_SEND_INPLACE |
		       MCA_BTL_FLAGS_PUT | MCA_BTL_FLAGS_GET;
	/* A registration's key (btl_ninja.c, ninja_register_mem). */
	m->btl_registration_handle_size =
		sizeof(struct mca_btl_base_registration_handle_t);
	m->btl_put_limit = NINJA_PUT_MAX;
	m->btl_get_limit = 512 * 1024;	/* measured: bench/README.md, 2026-11-29 */
	m->btl_latency = 10;
	m->btl_bandwidth = 10000;
	return mca_btl_base_param_register(
		&mca_btl_ninja_component.super.btl_version, m);
}

static int ninja_open(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	pthread_mutexattr_t attr;

	/* Our help file: installed beside Open MPI's own, or (build tree)
	 * still in the sources. */
	(void)opal_show_help_add_dir(
		access(NINJA_HELPDIR "/help-mpi-btl-ninja.txt", R_OK) == 0 ?
		NINJA_HELPDIR : NINJA_SRC_HELPDIR);
	c->output = opal_output_open(NULL);
	opal_output_set_verbosity(c->output, c->verbose);
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&c->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	c->epfd = -1;
	c->wake_fd = -1;
	c->listen_fd = -1;
	c->state = NINJA_RUNNING;
	c->epoch = 0;
	return OPAL_SUCCESS;
}

static int ninja_close(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (c->output >= 0) {
		opal_output_close(c->output);
		c->output = -1;
	}
	pthread_mutex_destroy(&c->lock);
	mca_btl_ninja_auth_fini();
	free_strings();
	return OPAL_SUCCESS;
}

/*
 * Render a topic of help-mpi-btl-ninja.txt here and write it to stderr.
 * mpirun 4.1.4 relays opal_show_help text through PMIx_Log, and that
 * relay was seen to drop or garble messages (ORTE_ERROR_LOG ...
 * show_help.c) - even a single one, and when the job ends right after;
 * stderr goes through the I/O forwarding, which does not lose it.
 */
static void vhelp(const char *topic, va_list ap)
{
	char *text;

	/* Both threads show topics; the help file's parser is not
	 * re-entrant: one at a time (with our log lines). */
	pthread_mutex_lock(&mca_btl_ninja_log_lock);
	text = opal_show_help_vstring("help-mpi-btl-ninja.txt", topic, true,
				      ap);
	if (text) {
		fputs(text, stderr);
		fflush(stderr);
		free(text);
	}
	pthread_mutex_unlock(&mca_btl_ninja_log_lock);
}

void mca_btl_ninja_help(const char *topic, ...)
{
	va_list ap;

	va_start(ap, topic);
	vhelp(topic, ap);
	va_end(ap);
}

/*
 * Show a topic once per node, for a condition every rank of the node
 * meets alike (its devices, its MCA parameters): the node's first rank
 * (local rank 0, from PMIx) says it; the others only at verbose level 1.
 */
void mca_btl_ninja_help_node(const char *topic, ...)
{
	va_list ap;

	if (opal_process_info.my_local_rank != 0) {
		NINJA_VERBOSE(1, "btl:ninja: rank %u: %s (said by the node's "
			      "first rank)", OPAL_PROC_MY_NAME.vpid, topic);
		return;
	}
	va_start(ap, topic);
	vhelp(topic, ap);
	va_end(ap);
}

/*
 * Show a topic once per node (the node's first rank).  A rank that is
 * not the node's first shows it only when it fatal() is still alive 3 s
 * later (the failure was its own, not the node's).
 */
static void show_once(bool fatal, const char *topic, ...)
{
	va_list ap;

	if (opal_process_info.my_local_rank != 0) {
		if (!fatal)
			return;
		sleep(3);
	}
	va_start(ap, topic);
	vhelp(topic, ap);
	va_end(ap);
}

/*
 * A setting or a channel btl/ninja cannot honour: the help text is out,
 * stop the job - not just this BTL, another one would carry the job on
 * without what was asked for.  mpirun ends the job when a process exits
 * non-zero (PMIx_Abort from several ranks at once was seen to crash
 * mpirun 4.1.4 in its own finalize).
 */
static void __attribute__((noreturn)) init_fatal(const char *what)
{
	NINJA_VERBOSE(1, "btl:ninja: %s: exiting", what);
	_exit(1);
}

static int bad_value(const char *name, const char *value, const char *want)
{
	show_once(true, "bad-value", name, value, want);
	init_fatal("invalid MCA parameter");
}

static bool control_valid(const char *s)
{
	if (!s[0] || !strcmp(s, "none") || !strcmp(s, "off"))
		return true;
	if (!strncmp(s, "unix:", 5))
		s += 5;
	/* sun_path holds 107 bytes and a NUL. */
	return s[0] == '/' && strlen(s) < 108;
}

static int int_in(const char *name, int v, int lo, int hi)
{
	char val[16], want[48];

	if (v >= lo && v <= hi)
		return OPAL_SUCCESS;
	snprintf(val, sizeof(val), "%d", v);
	snprintf(want, sizeof(want), "an integer from %d to %d", lo, hi);
	return bad_value(name, val, want);
}

/* Every value checked before anything is set up: no silent fallback. */
static int check_params(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (!mca_btl_ninja_rails_known(c->rails))
		return bad_value("rails", c->rails,
				 "a comma-separated list of verbs and tcp");
	if (strcmp(c->upgrade, "live") && strcmp(c->upgrade, "wait"))
		return bad_value("upgrade", c->upgrade, "live or wait");
	if (!control_valid(c->control))
		return bad_value("control", c->control,
				 "an absolute device path, unix:/PATH (at most 107 bytes) or none");
	if (int_in("control_required", c->control_required, -1, 1) ||
	    int_in("verbs_gid_index", c->verbs_gid_index, -1, 255) ||
	    int_in("verbs_port", c->verbs_port, 0, 255) ||
	    int_in("verbs_slots", c->verbs_slots, 4, 65536) ||
	    int_in("verbs_slot_size", c->verbs_slot_size, 4096, 1 << 30) ||
	    int_in("connect_timeout", c->connect_timeout, 1, INT32_MAX) ||
	    int_in("drain_timeout", c->drain_timeout, 1, INT32_MAX) ||
	    int_in("resume_timeout", c->resume_timeout, 1, INT32_MAX) ||
	    int_in("replay_timeout", c->replay_timeout, 0, INT32_MAX) ||
	    int_in("tcp_user_timeout", c->tcp_user_timeout, 0, INT32_MAX) ||
	    int_in("upgrade_wait", c->upgrade_wait, 0, INT32_MAX) ||
	    int_in("port_min", c->port_min, 0, 65535) ||
	    int_in("sndbuf", c->sndbuf, 0, INT32_MAX) ||
	    int_in("rcvbuf", c->rcvbuf, 0, INT32_MAX))
		return OPAL_ERR_BAD_PARAM;
	return OPAL_SUCCESS;
}

/*
 * The control channel, opened and registered before the job starts: a
 * rank that cannot be drained says so, and stops the job when the channel
 * is required (btl_ninja_control_required, by default when
 * btl_ninja_control names one).
 */
static int control_init(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool required = c->control_required == 1 ||
			(c->control_required == -1 && c->control[0]);
	char why[384] = "";
	int rc = mca_btl_ninja_ctl_setup(why, sizeof(why));

	/* Asked for (=1) but none named and no /dev/ninja: no channel. */
	if (rc == 1 && c->control_required == 1 && !c->control[0])
		snprintf(why, sizeof(why), "btl_ninja_control is empty and there is no /dev/ninja");
	else if (rc >= 0)
		return OPAL_SUCCESS;
	/* The channel is the node's: one message per node. */
	NINJA_VERBOSE(1, "btl:ninja: control channel: %s", why);
	show_once(required, required ? "control-unreachable" :
		  "control-unreachable-continue", opal_process_info.nodename,
		  c->control[0] ? c->control : "/dev/ninja (default)", why);
	if (required)
		init_fatal("control channel unreachable");
	return OPAL_SUCCESS;
}

static mca_btl_base_module_t **ninja_init(int *num_btls,
					  bool enable_progress_threads,
					  bool enable_mpi_threads)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_base_module_t **btls;
	char desc[256];
	int rc;

	*num_btls = 0;
	if (mca_btl_base_param_verify(&mca_btl_ninja_module.super) !=
	    OPAL_SUCCESS || check_params() != OPAL_SUCCESS)
		return NULL;
	if ((size_t)c->replay_window <
	    mca_btl_ninja_module.super.btl_max_send_size + sizeof(ninja_frame_hdr_t)) {
		NINJA_ERROR("btl:ninja: btl_ninja_replay_window (%d) must hold a "
			    "max-size fragment (btl_ninja_max_send_size %zu + 16)",
			    c->replay_window,
			    mca_btl_ninja_module.super.btl_max_send_size);
		return NULL;
	}
	/* ob1 asks for puts of rdma_pipeline_frag_size (0: the whole
	 * message) and never looks at put_limit: one frame's len is 32 bits. */
	if (mca_btl_ninja_module.super.btl_put_limit > NINJA_PUT_MAX)
		mca_btl_ninja_module.super.btl_put_limit = NINJA_PUT_MAX;
	/* ob1's RGET reads in pieces of get_limit (0 would never end). */
	if (mca_btl_ninja_module.super.btl_get_limit == 0 ||
	    mca_btl_ninja_module.super.btl_get_limit > NINJA_PUT_MAX)
		mca_btl_ninja_module.super.btl_get_limit = NINJA_PUT_MAX;
	if (mca_btl_ninja_module.super.btl_rdma_pipeline_frag_size == 0 ||
	    mca_btl_ninja_module.super.btl_rdma_pipeline_frag_size >
	    mca_btl_ninja_module.super.btl_put_limit)
		mca_btl_ninja_module.super.btl_rdma_pipeline_frag_size =
			mca_btl_ninja_module.super.btl_put_limit;
	if (c->if_include[0] && strcmp(c->if_exclude, "127.0.0.1/8") &&
	    c->if_exclude[0]) {
		opal_show_help("help-mpi-btl-ninja.txt", "include-exclude", true,
			       c->if_include, c->if_exclude);
		return NULL;
	}
	rc = mca_btl_ninja_tcp_discover(&c->my_addr, desc, sizeof(desc));
	if (rc != OPAL_SUCCESS || c->my_addr.naddr == 0) {
		NINJA_VERBOSE(10, "btl:ninja: no usable interface (%s); disabled",
			      desc);
		return NULL;
	}
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->epfd < 0 || c->wake_fd < 0)
		goto err;
	if (mca_btl_ninja_pmix_init() != OPAL_SUCCESS)
		goto err;
	/* The connection secret goes out with the first address. */
	if (mca_btl_ninja_auth_init() != OPAL_SUCCESS)
		goto err;
	if (mca_btl_ninja_tcp_listen() != OPAL_SUCCESS) {
		NINJA_ERROR("btl:ninja: cannot listen on the selected addresses (%s)",
			    desc);
		goto err;
	}
	if (mca_btl_ninja_publish(0, false) != OPAL_SUCCESS)
		goto err;
	NINJA_VERBOSE(10, "btl:ninja: tcp rail on %s", desc);
	mca_btl_ninja_lock();	/* no other thread yet: for the rule */
	if (!mca_btl_ninja_rails_select("")) {
		/*
		 * Shown (once per node): a rail demanded (no tcp in the list)
		 * is not there.  Every rank fails alike, after 2 s: mpirun
		 * ends the job at the first exit, and another node's first
		 * rank is to say it too.
		 */
		mca_btl_ninja_unlock();
		sleep(2);
		init_fatal("rail unavailable");
	}
	mca_btl_ninja_unlock();
	if (control_init() != OPAL_SUCCESS)
		goto err;

	btls = malloc(sizeof(*btls));
	if (!btls)
		goto err;
	c->module = &mca_btl_ninja_module;
	btls[0] = &mca_btl_ninja_module.super;
	*num_btls = 1;
	if (mca_btl_ninja_thread_start() != OPAL_SUCCESS) {
		free(btls);
		*num_btls = 0;
		goto err;
	}
	return btls;
err:
	mca_btl_ninja_tcp_listen_close();
	mca_btl_ninja_auth_fini();
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	c->listen_fd = c->epfd = c->wake_fd = -1;
	return NULL;
}

/*
 * Called by opal_progress on the application's thread.  Cheap when idle:
 * no lock, no system call unless a peer is connected or work is queued.
 */
static int ninja_progress(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int count = 0;

	if (!c->nactive && !c->app_work) {
		/*
		 * Mid-migration with every connection closed: the control
		 * thread has the work (drain, rediscovery, reconnection).  On
		 * an oversubscribed guest a spinning application thread
		 * delays each of its wake-ups; give the CPU away instead.
		 * Never outside a cycle (vader's latency is untouched).
		 */
		if (OPAL_UNLIKELY(c->in_cycle))
			sched_yield();
		return 0;
	}
	if (mca_btl_ninja_trylock())
		return 0;
	if (c->app_work)
		count += mca_btl_ninja_deliver_deferred();
	if (OPAL_UNLIKELY(c->peer_lost))
		mca_btl_ninja_report_lost();
	if (c->state == NINJA_RUNNING)
		count += mca_btl_ninja_progress_io();
	mca_btl_ninja_unlock();
	return count;
}
