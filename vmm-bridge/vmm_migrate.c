// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_migrate.c - orchestration of a virtual-cluster migration (see
 * vmm_migrate.h and docs/vmm-bridge.md):
 *
 *   main thread                          one worker thread per VM
 *   -----------                          ------------------------
 *   lock, attach (QMP), HELLO guests
 *   QUIESCE e -> SAFE from all
 *   (deadline: CANCEL e everywhere, exit 2)
 *   start workers  -------------------->  unplug, start_dest, storage,
 *   pump source channels (UNSAFE,         transfer -> READY (commit point)
 *   closed channel: abort)                or FAILED: roll back at once
 *   all READY: COMMIT, else ABORT ----->  COMMIT: commit, HELLO at the
 *                                         destination, plug, link-up
 *                                         ABORT: abort, plug back
 *   join
 *   COMMIT: RESUME e rails=... at the destinations -> RESUMED + REPORTs
 *   ABORT:  CANCEL e at the sources -> RESUMED
 *   phase table, JSON report, unlock
 *
 * The commit point is the same for every VM: each destination holds the
 * VM's whole state, paused, and each source is paused with its disk
 * intact.  Until every VM got there, any failure rolls the whole cluster
 * back; after it, nothing is rolled back and failures are reported.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm_migrate.h"
#include "vmm_status.h"

enum decision { DEC_NONE, DEC_COMMIT, DEC_ABORT };

struct vmm_run {
	const struct vmm_cluster *cl;
	const struct vmm_opts *o;
	struct vmm_vm *vms;
	int n;
	/* Protects vm->state, decision (workers <-> main). */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum decision decision;
	int aborting;		/* atomic: stop waiting, roll back */
	char abort_reason[1024];
	uint32_t epoch;
	int64_t t_start, t_end;
	const char *result;
	int exit_code;
	char error[1024];
};

/* Set from a signal handler (SIGINT, SIGTERM, SIGHUP). */
static volatile sig_atomic_t g_signal;

void vmm_migrate_interrupt(int signo)
{
	g_signal = signo;
}

static const char *const phase_names[VMM_PH_COUNT] = {
	"drain", "unplug", "start", "storage", "ram", "switch", "plug",
	"link-up", "reconnect", "total",
};

const char *vmm_phase_name(enum vmm_phase p)
{
	return p < VMM_PH_COUNT ? phase_names[p] : "?";
}

static void vprogress(const char *who, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void vprogress(const char *who, const char *fmt, va_list ap)
{
	vmm_obs_vlog(who, fmt, ap);
}

void vmm_progress(const struct vmm_vm *vm, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprogress(vm ? vm->conf->name : NULL, fmt, ap);
	va_end(ap);
}

static void cprogress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cprogress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprogress("cluster", fmt, ap);
	va_end(ap);
}

void vmm_vm_fail(struct vmm_vm *vm, const char *fmt, ...)
{
	va_list ap;

	if (vm->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(vm->err, sizeof(vm->err), fmt, ap);
	va_end(ap);
}

bool vmm_vm_aborting(const struct vmm_vm *vm)
{
	return __atomic_load_n(&vm->run->aborting, __ATOMIC_ACQUIRE) != 0;
}

bool vmm_vm_others_ready(const struct vmm_vm *vm, int64_t deadline)
{
	struct vmm_run *run = vm->run;
	bool out;
	int i, ready;

	while (!vmm_vm_aborting(vm) && vmm_now_ns() < deadline) {
		ready = 0;
		out = false;
		pthread_mutex_lock(&run->lock);
		for (i = 0; i < run->n; i++) {
			enum vmm_vm_state st = run->vms[i].state;

			if (&run->vms[i] == vm)
				continue;
			ready += st == VMM_VM_READY;
			out |= st == VMM_VM_FAILED || st == VMM_VM_DONE;
		}
		pthread_mutex_unlock(&run->lock);
		if (out)
			return false;
		if (ready == run->n - 1)
			return true;
		usleep(100000);
	}
	return false;
}

static void set_aborting(struct vmm_run *run, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_aborting(struct vmm_run *run, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&run->lock);
	if (!run->abort_reason[0]) {
		va_start(ap, fmt);
		vsnprintf(run->abort_reason, sizeof(run->abort_reason), fmt, ap);
		va_end(ap);
	}
	__atomic_store_n(&run->aborting, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
}

static void set_state(struct vmm_vm *vm, enum vmm_vm_state s)
{
	pthread_mutex_lock(&vm->run->lock);
	vm->state = s;
	pthread_cond_broadcast(&vm->run->cond);
	pthread_mutex_unlock(&vm->run->lock);
}

static void ph_begin(struct vmm_vm *vm, enum vmm_phase p)
{
	vm->t0[p] = vmm_now_ns();
	vm->t1[p] = 0;
	if (p == VMM_PH_RAM)
		atomic_store(&vm->ram_begun, true);
	vmm_obs_phase(vm, p, true);
}

static void ph_end(struct vmm_vm *vm, enum vmm_phase p)
{
	vm->t1[p] = vmm_now_ns();
	vmm_obs_phase(vm, p, false);
}

/* A phase timed elsewhere (guest replies): its times, and its events
 * (the start only if ph_begin did not send it). */
static void ph_set(struct vmm_vm *vm, enum vmm_phase p, int64_t t0,
		   int64_t t1, bool started)
{
	vm->t0[p] = t0;
	vm->t1[p] = t1;
	if (!started)
		vmm_obs_phase(vm, p, true);
	vmm_obs_phase(vm, p, false);
}

static double ph_ms(const struct vmm_vm *vm, enum vmm_phase p)
{
	if (!vm->t0[p] || !vm->t1[p])
		return -1;
	return (vm->t1[p] - vm->t0[p]) / 1e6;
}

static int64_t dl(int64_t ms)
{
	return vmm_now_ns() + ms * 1000000;
}

static const char *human_bytes(uint64_t b, char *buf, size_t size)
{
	if (b >= 1 << 30)
		snprintf(buf, size, "%.1f GiB", b / 1073741824.0);
	else if (b >= 1 << 20)
		snprintf(buf, size, "%.1f MiB", b / 1048576.0);
	else if (b >= 1 << 10)
		snprintf(buf, size, "%.1f KiB", b / 1024.0);
	else
		snprintf(buf, size, "%" PRIu64 " B", b);
	return buf;
}

/* Any migration setting beyond QEMU's defaults? */
static bool tuning_set(const struct vmm_tuning *t)
{
	return t->max_bandwidth || t->max_downtime_ms || t->auto_converge ||
	       t->multifd_channels || t->compress_zstd || t->postcopy ||
	       t->tls_dir[0];
}

/* The settings in words, for the dry run. */
static const char *tuning_text(const struct vmm_tuning *t, char *buf,
			       size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
#define ADD(...) do { if (n < size) n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__); } while (0)
	if (t->max_bandwidth)
		ADD("%smax-bandwidth %" PRIu64 " B/s", n ? ", " : "", t->max_bandwidth);
	if (t->max_downtime_ms)
		ADD("%smax-downtime %" PRId64 " ms", n ? ", " : "", t->max_downtime_ms);
	if (t->auto_converge)
		ADD("%sauto-converge", n ? ", " : "");
	if (t->multifd_channels)
		ADD("%smultifd %d channels%s", n ? ", " : "", t->multifd_channels,
		    t->compress_zstd ? " zstd" : "");
	if (t->postcopy)
		ADD("%spostcopy after %d pass(es)", n ? ", " : "",
		    t->postcopy_after ? t->postcopy_after : 1);
	if (t->tls_dir[0])
		ADD("%sTLS from %s", n ? ", " : "", t->tls_dir);
#undef ADD
	if (!n)
		snprintf(buf, size, "QEMU's defaults");
	return buf;
}

/* ---- workers ---- */

static void rollback_vm(struct vmm_vm *vm)
{
	int r;

	vmm_progress(vm, "rolling back");
	vm->at_dest = false;
	r = vm->be->abort(vm, dl(vm->cl->switch_ms));
	if (r) {
		if (!vm->rollback_err[0])
			snprintf(vm->rollback_err, sizeof(vm->rollback_err),
				 "rollback failed");
		vmm_progress(vm, "ROLLBACK FAILED: %s", vm->rollback_err);
		return;
	}
	if (vm->unplugged && !vm->plugged) {
		char saved[sizeof(vm->err)];

		/* plug reports through vm->err: keep the original error. */
		memcpy(saved, vm->err, sizeof(saved));
		vm->err[0] = '\0';
		r = vm->be->plug(vm, vm->conf->source_device,
				 dl(vm->cl->plug_ms));
		if (r) {
			snprintf(vm->rollback_err, sizeof(vm->rollback_err),
				 "device back at the source: %s", vm->err);
			memcpy(vm->err, saved, sizeof(saved));
			vmm_progress(vm, "ROLLBACK FAILED: %s", vm->rollback_err);
			return;
		}
		memcpy(vm->err, saved, sizeof(saved));
		vm->plugged = true;
		vmm_progress(vm, "rollback: device plugged back at the source");
	}
	vm->rolled_back = true;
	vmm_progress(vm, "rolled back: runs at the source");
}

/* A step before the commit point failed. */
static void worker_failed(struct vmm_vm *vm, enum vmm_phase p)
{
	snprintf(vm->failed_phase, sizeof(vm->failed_phase), "%s",
		 vmm_phase_name(p));
	if (!vm->err[0])
		snprintf(vm->err, sizeof(vm->err), "failed");
	if (strcmp(vm->err, "aborted") == 0) {
		/* Stopped because of something else: say what. */
		pthread_mutex_lock(&vm->run->lock);
		if (vm->run->abort_reason[0])
			snprintf(vm->err, sizeof(vm->err), "aborted (%s)",
				 vm->run->abort_reason);
		pthread_mutex_unlock(&vm->run->lock);
		vmm_progress(vm, "stopping in %s: %s", vmm_phase_name(p),
			     vm->err);
	} else {
		vmm_progress(vm, "FAILED in %s: %s", vmm_phase_name(p),
			     vm->err);
	}
	set_state(vm, VMM_VM_FAILED);
	set_aborting(vm->run, "%s: %s failed: %s", vm->conf->name,
		     vmm_phase_name(p), vm->err);
	rollback_vm(vm);
	set_state(vm, VMM_VM_DONE);
}

/* Plug the site's device where the VM now runs and wait for link-up. */
/*
 * The plugged device's link-up, as the guest reported it (up) or not within
 * link-timeout: phase time, progress line, or the warning (then the phase
 * has no time).  Returns up.
 */
static bool link_record(struct vmm_vm *vm, struct vmm_guest *g, bool up,
			const char *consequence)
{
	if (up) {
		ph_set(vm, VMM_PH_LINK, vm->t0[VMM_PH_LINK], g->t_link, false);
		vmm_progress(vm, "link-up: guest EVENT %s (%.0f ms after device_add)",
			     g->link_event, ph_ms(vm, VMM_PH_LINK));
		return true;
	}
	vm->t0[VMM_PH_LINK] = 0;
	snprintf(vm->warn, sizeof(vm->warn),
		 "no link-up/port-active EVENT from the guest within %.0f s of device_add%s",
		 vm->cl->link_ms / 1000.0, consequence);
	vmm_progress(vm, "warning: %s", vm->warn);
	return false;
}

static void plug_and_link(struct vmm_vm *vm, const char *spec,
			  struct vmm_guest *g)
{
	int r;

	g->t_link_mark = vmm_now_ns();
	g->t_link = 0;
	ph_begin(vm, VMM_PH_PLUG);
	r = vm->be->plug(vm, spec, dl(vm->cl->plug_ms));
	ph_end(vm, VMM_PH_PLUG);
	if (r) {
		snprintf(vm->failed_phase, sizeof(vm->failed_phase), "plug");
		vmm_progress(vm, "FAILED to plug %s: %s", spec, vm->err);
		return;
	}
	vm->plugged = true;
	vmm_progress(vm, "plug: %s added (%.0f ms)", spec,
		     ph_ms(vm, VMM_PH_PLUG));
	vm->t0[VMM_PH_LINK] = vm->t0[VMM_PH_PLUG];
	if (!g->open)
		return;
	if (!vm->cl->link_wait) {
		/* upgrade = live: RESUME now, on whatever rail is up; the
		 * ranks move to verbs by themselves at port-active, and the
		 * link-up is timed after the RESUME (await_upgrades). */
		return;
	}
	r = vmm_guest_wait_link(g, dl(vm->cl->link_ms));
	link_record(vm, g, r == 0, "");
}

static void *worker_move(void *arg)
{
	struct vmm_vm *vm = arg;
	struct vmm_run *run = vm->run;
	const struct vmm_cluster *cl = vm->cl;
	const struct vmm_vm_conf *c = vm->conf;
	char b1[32], b2[32];
	enum decision d;
	int r;

	set_state(vm, VMM_VM_RUNNING);
	if (c->source_device[0]) {
		ph_begin(vm, VMM_PH_UNPLUG);
		r = vm->be->unplug(vm, c->source_device, dl(cl->unplug_ms));
		ph_end(vm, VMM_PH_UNPLUG);
		if (r < 0)
			return worker_failed(vm, VMM_PH_UNPLUG), NULL;
		vm->unplugged = r == 0;
		if (r == 0)
			vmm_progress(vm, "unplug: %s removed (%.0f ms)",
				     c->source_device, ph_ms(vm, VMM_PH_UNPLUG));
	}
	if (vmm_vm_aborting(vm)) {
		vmm_vm_fail(vm, "aborted");
		return worker_failed(vm, VMM_PH_UNPLUG), NULL;
	}
	ph_begin(vm, VMM_PH_START);
	r = vm->be->start_dest(vm, dl(cl->start_ms));
	ph_end(vm, VMM_PH_START);
	if (r)
		return worker_failed(vm, VMM_PH_START), NULL;
	vmm_progress(vm, "start: destination QEMU pid %ld up (%.0f ms)",
		     vm->dest_pid, ph_ms(vm, VMM_PH_START));
	if (c->disk_node[0]) {
		vmm_progress(vm, "storage: mirroring overlay of %s", c->disk_node);
		ph_begin(vm, VMM_PH_STORAGE);
		r = vm->be->storage(vm, dl(cl->storage_ms));
		ph_end(vm, VMM_PH_STORAGE);
		if (r)
			return worker_failed(vm, VMM_PH_STORAGE), NULL;
		vmm_progress(vm, "storage: in sync, %s of %s copied (%.0f ms)",
			     human_bytes(vm->storage_bytes, b1, sizeof(b1)),
			     human_bytes(vm->storage_len, b2, sizeof(b2)),
			     ph_ms(vm, VMM_PH_STORAGE));
	}
	vmm_progress(vm, "ram: migrating (mode %s, %s)", vmm_mode_name(cl->mode),
		     vm->accel);
	ph_begin(vm, VMM_PH_RAM);
	r = vm->be->transfer(vm, dl(cl->ram_ms));
	ph_end(vm, VMM_PH_RAM);
	if (r)
		return worker_failed(vm, VMM_PH_RAM), NULL;
	vmm_progress(vm, "ram: done (%s), %s sent (%.0f ms); at the commit point",
		     vm->mode_used, human_bytes(vm->ram_bytes, b1, sizeof(b1)),
		     ph_ms(vm, VMM_PH_RAM));

	/* The commit point: wait for the cluster's decision. */
	pthread_mutex_lock(&run->lock);
	vm->state = VMM_VM_READY;
	pthread_cond_broadcast(&run->cond);
	while (run->decision == DEC_NONE)
		pthread_cond_wait(&run->cond, &run->lock);
	d = run->decision;
	pthread_mutex_unlock(&run->lock);
	if (d == DEC_ABORT) {
		rollback_vm(vm);
		set_state(vm, VMM_VM_DONE);
		return NULL;
	}

	ph_begin(vm, VMM_PH_SWITCH);
	r = vm->be->commit(vm, dl(cl->switch_ms));
	if (r) {
		snprintf(vm->failed_phase, sizeof(vm->failed_phase), "switch");
		vmm_progress(vm, "FAILED in switch-over: %s", vm->err);
		if (!vm->at_dest)
			rollback_vm(vm);
		ph_end(vm, VMM_PH_SWITCH);
		set_state(vm, VMM_VM_DONE);
		return NULL;
	}
	/* The guest channel is a new socket at the destination (without
	 * dest-chan, the backend's commit found it: libvirt). */
	if (c->dest_chan[0])
		snprintf(vm->dst.endpoint, sizeof(vm->dst.endpoint), "%s",
			 c->dest_chan);
	{
		struct vmm_guest *gs[1] = { &vm->dst };

		r = vmm_guests_open(gs, 1, dl(cl->switch_ms));
	}
	ph_end(vm, VMM_PH_SWITCH);
	if (r) {
		snprintf(vm->failed_phase, sizeof(vm->failed_phase), "switch");
		vmm_vm_fail(vm, "%s", vm->dst.errmsg);
		vmm_progress(vm, "FAILED to reach the guest at the destination: %s",
			     vm->dst.errmsg);
	} else {
		vmm_progress(vm, "switch: runs at the destination, guest channel up (%.0f ms; downtime %" PRId64 " ms)",
			     ph_ms(vm, VMM_PH_SWITCH), vm->downtime_ms);
	}
	if (c->dest_device[0])
		plug_and_link(vm, c->dest_device, &vm->dst);
	set_state(vm, VMM_VM_DONE);
	return NULL;
}

/* --switch-only: detach and re-attach the device, the VM stays. */
static void *worker_switch(void *arg)
{
	struct vmm_vm *vm = arg;
	const struct vmm_vm_conf *c = vm->conf;
	int r;

	set_state(vm, VMM_VM_RUNNING);
	if (c->source_device[0]) {
		ph_begin(vm, VMM_PH_UNPLUG);
		r = vm->be->unplug(vm, c->source_device, dl(vm->cl->unplug_ms));
		ph_end(vm, VMM_PH_UNPLUG);
		if (r < 0) {
			snprintf(vm->failed_phase, sizeof(vm->failed_phase),
				 "unplug");
			vmm_progress(vm, "FAILED in unplug: %s", vm->err);
			set_state(vm, VMM_VM_FAILED);
			return NULL;
		}
		vm->unplugged = r == 0;
		vmm_progress(vm, "unplug: %s removed (%.0f ms)",
			     c->source_device, ph_ms(vm, VMM_PH_UNPLUG));
		plug_and_link(vm, c->source_device, &vm->src);
		if (!vm->plugged) {
			set_state(vm, VMM_VM_FAILED);
			return NULL;
		}
	}
	set_state(vm, VMM_VM_DONE);
	return NULL;
}

/*
 * upgrade = live, after RESUMED: wait (bounded by link-timeout from the
 * plug, plus 10 s for the ranks) for each plugged device's link-up EVENT
 * and, at a site with verbs, for an event=upgraded REPORT from every rank
 * that resumed on tcp, so that the phase table has the link-up time and
 * the upgrade's stall.  A miss is a warning: the job runs on tcp.
 */
static void await_upgrades(struct vmm_run *run, struct vmm_guest **gs)
{
	const struct vmm_cluster *cl = run->cl;
	int64_t deadline = 0;
	int i;

	if (cl->link_wait)
		return;
	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];
		int64_t d = vm->t0[VMM_PH_LINK] + cl->link_ms * 1000000LL +
			    10000000000LL;

		if (gs[i] && vm->plugged && vm->t0[VMM_PH_LINK] && d > deadline)
			deadline = d;
	}
	if (!deadline)
		return;
	cprogress("upgrade live: waiting for link-up and the ranks' upgrade reports");
	for (;;) {
		bool all = true;

		for (i = 0; i < run->n; i++) {
			struct vmm_vm *vm = &run->vms[i];
			struct vmm_guest *g = gs[i];

			if (!g || !vm->plugged || !vm->t0[VMM_PH_LINK] || g->failed)
				continue;
			if (!g->t_link || (strstr(g->rails, "verbs") &&
					   g->n_upgraded < g->n_resumed_tcp))
				all = false;
		}
		if (all || vmm_now_ns() >= deadline || g_signal)
			break;
		vmm_guests_pump(gs, run->n, vmm_now_ns() + 100000000LL);
	}
	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];
		struct vmm_guest *g = gs[i];

		if (!g || !vm->plugged || !vm->t0[VMM_PH_LINK])
			continue;
		if (!link_record(vm, g, g->t_link != 0, ": the ranks stay on tcp"))
			continue;
		if (g->n_resumed_tcp)
			vmm_progress(vm, "upgrade: %u of %u rank(s) that resumed on tcp moved to verbs in place (stall %.1f ms max)",
				     g->n_upgraded, g->n_resumed_tcp,
				     g->upgrade_stall_us < 0 ? 0 : g->upgrade_stall_us / 1000);
	}
}

/* Per VM: the ranks' own account of the application's stall. */
static void take_stalls(struct vmm_run *run, struct vmm_guest **gs)
{
	int i;

	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];

		vm->app_stall_ms = gs[i] && gs[i]->app_stall_us >= 0 ?
				   gs[i]->app_stall_us / 1000 : -1;
		vm->upgrade_stall_ms = gs[i] && gs[i]->upgrade_stall_us >= 0 ?
				       gs[i]->upgrade_stall_us / 1000 : -1;
	}
}

/* ---- lock ---- */

static int take_lock(const struct vmm_cluster *cl, bool probe_only,
		     char *msg, size_t size)
{
	int fd = open(cl->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	char buf[512], tbuf[64];
	time_t now = time(NULL);
	struct tm tm;
	ssize_t n;

	if (fd < 0) {
		snprintf(msg, size, "cannot open lock file %s: %s", cl->lock,
			 strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		if (n > 0 && buf[n - 1] == '\n')
			buf[n - 1] = '\0';
		snprintf(msg, size,
			 "another ninja-migrate is running (%s; lock %s): refusing to start a second migration",
			 buf[0] ? buf : "holder unknown", cl->lock);
		close(fd);
		return -2;
	}
	if (probe_only) {
		close(fd);
		return 0;
	}
	localtime_r(&now, &tm);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(buf, sizeof(buf), "pid %ld, cluster %s, file %s, since %s\n",
		     (long)getpid(), cl->name, cl->file, tbuf);
	if (ftruncate(fd, 0) || pwrite(fd, buf, (size_t)n, 0) < 0)
		fprintf(stderr, "ninja-migrate: warning: cannot write lock file %s: %s\n",
			cl->lock, strerror(errno));
	return fd;
}

/* ---- report ---- */

static json_object *report_kv(const char *line)
{
	struct ninja_msg m;
	json_object *o = json_object_new_object();
	int i;

	if (ninja_parse_line(line, strlen(line), &m)) {
		json_object_object_add(o, "line", json_object_new_string(line));
		return o;
	}
	for (i = m.npos; i < m.ntok; i++) {
		const char *t = m.tok[i].p, *eq = memchr(t, '=', m.tok[i].len);
		char key[64], val[NINJA_LINE_MAX];
		uint64_t v;

		if (!eq)
			continue;
		snprintf(key, sizeof(key), "%.*s", (int)(eq - t), t);
		snprintf(val, sizeof(val), "%.*s",
			 (int)(m.tok[i].len - (eq - t) - 1), eq + 1);
		if (strcmp(key, "job") && !ninja_parse_u64(val, strlen(val), &v))
			json_object_object_add(o, key, json_object_new_int64((int64_t)v));
		else
			json_object_object_add(o, key, json_object_new_string(val));
	}
	return o;
}

static void add_ms(json_object *o, const char *k, double ms)
{
	if (ms < 0)
		json_object_object_add(o, k, NULL);
	else
		json_object_object_add(o, k, json_object_new_double(
			(double)(int64_t)(ms * 10 + 0.5) / 10));
}

/* Cluster span of a phase: first start to last end over the VMs. */
static double cluster_ms(const struct vmm_run *run, enum vmm_phase p)
{
	int64_t a = 0, b = 0;
	int i;

	for (i = 0; i < run->n; i++) {
		const struct vmm_vm *vm = &run->vms[i];

		if (!vm->t0[p] || !vm->t1[p])
			continue;
		if (!a || vm->t0[p] < a)
			a = vm->t0[p];
		if (vm->t1[p] > b)
			b = vm->t1[p];
	}
	return a ? (b - a) / 1e6 : -1;
}

static const char *vm_result(const struct vmm_vm *vm, const struct vmm_run *run)
{
	if (vm->rollback_err[0])
		return "rollback-failed";
	if (vm->rolled_back)
		return "rolled-back";
	if (run->o->switch_only)
		return vm->state == VMM_VM_DONE ? "switched" : "failed";
	if (vm->at_dest)
		return vm->err[0] ? "moved-with-errors" : "moved";
	return vm->err[0] ? "failed" : "not-moved";
}

/* Columns that are not host-timed phases. */
#define COL_DOWNTIME	(VMM_PH_COUNT)
#define COL_APP_STALL	(VMM_PH_COUNT + 1)
#define COL_UPG_STALL	(VMM_PH_COUNT + 2)

static double vm_col(const struct vmm_vm *vm, int col)
{
	switch (col) {
	case COL_DOWNTIME:
		return vm->at_dest && vm->downtime_ms >= 0 ?
		       (double)vm->downtime_ms : -1;
	case COL_APP_STALL:
		return vm->app_stall_ms;
	case COL_UPG_STALL:
		return vm->upgrade_stall_ms;
	default:
		return col >= 0 && col < VMM_PH_COUNT ?
		       ph_ms(vm, (enum vmm_phase)col) : -1;
	}
}

/* Cluster row of a column that is not a span: the largest. */
static double max_col(const struct vmm_run *run, int col)
{
	double m = -1;
	int i;

	for (i = 0; i < run->n; i++) {
		double v = vm_col(&run->vms[i], col);

		if (v > m)
			m = v;
	}
	return m;
}

static json_object *build_report(const struct vmm_run *run)
{
	const struct vmm_cluster *cl = run->cl;
	json_object *top = json_object_new_object();
	json_object *vms = json_object_new_array();
	json_object *ph = json_object_new_object();
	double down = -1;
	int i, p;

	json_object_object_add(top, "cluster", json_object_new_string(cl->name));
	json_object_object_add(top, "file", json_object_new_string(cl->file));
	json_object_object_add(top, "operation", json_object_new_string(
		run->o->switch_only ? "switch-only" : "migrate"));
	json_object_object_add(top, "source_site", json_object_new_string(cl->source_site));
	json_object_object_add(top, "dest_site", json_object_new_string(
		run->o->switch_only ? cl->source_site : cl->dest_site));
	json_object_object_add(top, "mode", json_object_new_string(vmm_mode_name(cl->mode)));
	json_object_object_add(top, "order", json_object_new_string("drain-then-migrate"));
	json_object_object_add(top, "accel", json_object_new_string(
		run->n && run->vms[0].accel[0] ? run->vms[0].accel : "unknown"));
	json_object_object_add(top, "epoch", json_object_new_int64(run->epoch));
	json_object_object_add(top, "result", json_object_new_string(run->result));
	json_object_object_add(top, "exit_code", json_object_new_int(run->exit_code));
	json_object_object_add(top, "error", run->error[0] ?
			       json_object_new_string(run->error) : NULL);
	for (i = 0; i < run->n; i++) {
		const struct vmm_vm *vm = &run->vms[i];
		json_object *v = json_object_new_object();
		json_object *vp = json_object_new_object();
		json_object *reps = json_object_new_array();
		const struct vmm_guest *g = vm->at_dest ? &vm->dst : &vm->src;
		int k;

		json_object_object_add(v, "name", json_object_new_string(vm->conf->name));
		json_object_object_add(v, "result", json_object_new_string(vm_result(vm, run)));
		json_object_object_add(v, "error", vm->err[0] ? json_object_new_string(vm->err) : NULL);
		json_object_object_add(v, "failed_phase", vm->failed_phase[0] ?
				       json_object_new_string(vm->failed_phase) : NULL);
		json_object_object_add(v, "rollback_error", vm->rollback_err[0] ?
				       json_object_new_string(vm->rollback_err) : NULL);
		json_object_object_add(v, "warning", vm->warn[0] ?
				       json_object_new_string(vm->warn) : NULL);
		for (p = 0; p < VMM_PH_COUNT; p++)
			add_ms(vp, phase_names[p], ph_ms(vm, p));
		add_ms(vp, "downtime", vm->downtime_ms >= 0 && vm->at_dest ?
		       (double)vm->downtime_ms : -1);
		add_ms(vp, "app_stall", vm->app_stall_ms);
		add_ms(vp, "upgrade_stall", vm->upgrade_stall_ms);
		json_object_object_add(v, "phases_ms", vp);
		json_object_object_add(v, "ranks_upgraded",
				       json_object_new_int((int)g->n_upgraded));
		json_object_object_add(v, "ranks_resumed_tcp",
				       json_object_new_int((int)g->n_resumed_tcp));
		add_ms(v, "paused_ms", vm->paused_ns > 0 ? vm->paused_ns / 1e6 : -1);
		json_object_object_add(v, "mode_used", json_object_new_string(
			vm->mode_used[0] ? vm->mode_used : "none"));
		json_object_object_add(v, "accel", json_object_new_string(vm->accel));
		json_object_object_add(v, "ram_bytes", json_object_new_int64((int64_t)vm->ram_bytes));
		json_object_object_add(v, "storage_bytes", json_object_new_int64((int64_t)vm->storage_bytes));
		json_object_object_add(v, "storage_len", json_object_new_int64((int64_t)vm->storage_len));
		json_object_object_add(v, "overlay_file_bytes", json_object_new_int64(vm->overlay_bytes));
		json_object_object_add(v, "base_file_bytes", json_object_new_int64(vm->base_bytes));
		json_object_object_add(v, "source_device", vm->conf->source_device[0] ?
				       json_object_new_string(vm->conf->source_device) : NULL);
		json_object_object_add(v, "dest_device", vm->conf->dest_device[0] ?
				       json_object_new_string(vm->conf->dest_device) : NULL);
		json_object_object_add(v, "unplugged", json_object_new_boolean(vm->unplugged));
		json_object_object_add(v, "plugged", json_object_new_boolean(vm->plugged));
		json_object_object_add(v, "rails", json_object_new_string(g->rails));
		json_object_object_add(v, "link_event", g->link_event[0] && vm->t1[VMM_PH_LINK] ?
				       json_object_new_string(g->link_event) : NULL);
		json_object_object_add(v, "dest_pid", vm->dest_pid ?
				       json_object_new_int64(vm->dest_pid) : NULL);
		json_object_object_add(v, "ranks", json_object_new_int((int)g->ranks));
		json_object_object_add(v, "cancelled", json_object_new_boolean(g->cancelled));
		json_object_object_add(v, "guest_bad_lines", json_object_new_int64((int64_t)(vm->src.n_bad + vm->dst.n_bad)));
		for (k = 0; k < g->nreports; k++)
			json_object_array_add(reps, report_kv(g->reports[k]));
		json_object_object_add(v, "reports", reps);
		json_object_array_add(vms, v);
		if (vm->at_dest && vm->downtime_ms > down)
			down = (double)vm->downtime_ms;
	}
	for (p = 0; p < VMM_PH_COUNT; p++)
		add_ms(ph, phase_names[p], p == VMM_PH_TOTAL ?
		       (run->t_end - run->t_start) / 1e6 : cluster_ms(run, p));
	add_ms(ph, "downtime", down);
	add_ms(ph, "app_stall", max_col(run, COL_APP_STALL));
	add_ms(ph, "upgrade_stall", max_col(run, COL_UPG_STALL));
	json_object_object_add(top, "upgrade", json_object_new_string(
		cl->link_wait ? "wait" : "live"));
	json_object_object_add(top, "phases_ms", ph);
	json_object_object_add(top, "vms", vms);
	return top;
}

static void cell(char *buf, size_t size, double ms)
{
	if (ms < 0)
		snprintf(buf, size, "-");
	else if (ms < 10)
		snprintf(buf, size, "%.1f", ms);
	else
		snprintf(buf, size, "%.0f", ms);
}

static void print_table(const struct vmm_run *run)
{
	static const int cols[] = {
		VMM_PH_DRAIN, VMM_PH_UNPLUG, VMM_PH_START, VMM_PH_STORAGE,
		VMM_PH_RAM, COL_DOWNTIME, VMM_PH_SWITCH,
		VMM_PH_PLUG, VMM_PH_LINK, VMM_PH_RECONNECT, COL_APP_STALL,
		COL_UPG_STALL, VMM_PH_TOTAL,
	};
	const int nc = (int)(sizeof(cols) / sizeof(cols[0]));
	char c[32];
	int i, k;

	printf("\nphase times (ms)  ");
	for (k = 0; k < nc; k++)
		printf("%10s", cols[k] == COL_DOWNTIME ? "downtime" :
		       cols[k] == COL_APP_STALL ? "app-stall" :
		       cols[k] == COL_UPG_STALL ? "upg-stall" :
		       phase_names[cols[k]]);
	printf("\n");
	for (i = 0; i < run->n; i++) {
		const struct vmm_vm *vm = &run->vms[i];

		printf("%-18.18s", vm->conf->name);
		for (k = 0; k < nc; k++) {
			cell(c, sizeof(c), vm_col(vm, cols[k]));
			printf("%10s", c);
		}
		printf("\n");
	}
	printf("%-18s", "cluster");
	for (k = 0; k < nc; k++) {
		double ms = cols[k] >= VMM_PH_COUNT ? max_col(run, cols[k]) :
			    cols[k] == VMM_PH_TOTAL ?
			    (run->t_end - run->t_start) / 1e6 :
			    cluster_ms(run, cols[k]);

		cell(c, sizeof(c), ms);
		printf("%10s", c);
	}
	printf("\n(app-stall: the ranks' drain+teardown+rediscover+reconnect(+link wait), "
	       "not the VM's move; upg-stall: their live upgrade to verbs; link-up: "
	       "device_add to port-active; upgrade %s)\n\n",
	       run->cl->link_wait ? "wait" : "live");
	for (i = 0; i < run->n; i++) {
		const struct vmm_vm *vm = &run->vms[i];
		const struct vmm_guest *g = vm->at_dest ? &vm->dst : &vm->src;
		char b1[32], b2[32], b3[32];
		int k2;

		printf("%s: %s", vm->conf->name, vm_result(vm, run));
		if (vm->mode_used[0])
			printf(", mode %s (%s, drain-then-migrate)",
			       vm->mode_used, vm->accel);
		if (vm->conf->disk_node[0] && vm->t1[VMM_PH_STORAGE])
			printf(", storage %s mirrored (overlay file %s, base %s not moved)",
			       human_bytes(vm->storage_bytes, b1, sizeof(b1)),
			       vm->overlay_bytes >= 0 ?
			       human_bytes((uint64_t)vm->overlay_bytes, b2, sizeof(b2)) : "?",
			       vm->base_bytes >= 0 ?
			       human_bytes((uint64_t)vm->base_bytes, b3, sizeof(b3)) : "?");
		if (vm->ram_bytes)
			printf(", RAM %s sent",
			       human_bytes(vm->ram_bytes, b1, sizeof(b1)));
		if (vm->at_dest && vm->paused_ns > 0)
			printf(", paused %.0f ms (host)", vm->paused_ns / 1e6);
		printf("\n");
		if (vm->err[0])
			printf("    error: %s\n", vm->err);
		if (vm->rollback_err[0])
			printf("    rollback error: %s\n", vm->rollback_err);
		if (vm->warn[0])
			printf("    warning: %s\n", vm->warn);
		for (k2 = 0; k2 < g->nreports; k2++)
			printf("    %s\n", g->reports[k2]);
	}
	fflush(stdout);
}

/* ---- the run ---- */

const struct vmm_backend *vmm_backend_find(const char *name)
{
	if (strcmp(name, "qemu") == 0)
		return &vmm_backend_qemu;
#ifdef HAVE_LIBVIRT
	if (strcmp(name, "libvirt") == 0)
		return &vmm_backend_libvirt;
#endif
	return NULL;
}

static void vm_setup(struct vmm_run *run, struct vmm_vm *vm, int i)
{
	const struct vmm_vm_conf *c = &run->cl->vms[i];

	memset(vm, 0, sizeof(*vm));
	vm->run = run;
	vm->cl = run->cl;
	vm->conf = c;
	vm->be = vmm_backend_find(run->cl->backend);
	vm->verbose = run->o->verbose;
	vm->downtime_ms = -1;
	vm->app_stall_ms = vm->upgrade_stall_ms = -1;
	vm->overlay_bytes = vm->base_bytes = -1;
	vmm_guest_init(&vm->src, c->name, run->o->verbose);
	vmm_guest_init(&vm->dst, c->name, run->o->verbose);
	snprintf(vm->src.endpoint, sizeof(vm->src.endpoint), "%s",
		 c->source_chan);
	snprintf(vm->src.rails, sizeof(vm->src.rails), "%s", c->source_rails);
	snprintf(vm->dst.rails, sizeof(vm->dst.rails), "%s", c->dest_rails);
}

/* A run of `cl` with every VM set up, nothing started; -1 out of memory. */
static int run_init(struct vmm_run *run, const struct vmm_cluster *cl,
		    const struct vmm_opts *o)
{
	int i;

	memset(run, 0, sizeof(*run));
	run->cl = cl;
	run->o = o;
	run->n = cl->nvms;
	run->result = "failed";
	run->exit_code = VMM_EXIT_USAGE;
	pthread_mutex_init(&run->lock, NULL);
	pthread_cond_init(&run->cond, NULL);
	run->t_start = vmm_now_ns();
	run->vms = calloc((size_t)run->n, sizeof(*run->vms));
	if (!run->vms)
		return -1;
	for (i = 0; i < run->n; i++)
		vm_setup(run, &run->vms[i], i);
	return 0;
}

/* Detaches every VM's monitor, closes its guest channels, frees the VMs. */
static void run_release(struct vmm_run *run)
{
	int i;

	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];

		vm->be->detach(vm);
		vmm_guest_close(&vm->src);
		vmm_guest_close(&vm->dst);
		vmm_guest_clear_reports(&vm->src);
		vmm_guest_clear_reports(&vm->dst);
	}
	free(run->vms);
	run->vms = NULL;
}

static int dry_run(struct vmm_run *run)
{
	int i, bad = 0;
	char msg[1024];
	int r;

	r = take_lock(run->cl, true, msg, sizeof(msg));
	if (r < 0) {
		printf("lock: %s\n", msg);
		bad++;
	}
	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];
		struct vmm_guest *gs[1] = { &vm->src };
		const struct vmm_vm_conf *c = vm->conf;

		if (c->source_host[0])
			printf("%s: source monitor %s on host %s: ", c->name,
			       c->remote_src_qmp, c->source_host);
		else
			printf("%s: source monitor %s: ", c->name,
			       c->source_qmp);
		/* A source on another host: its forwarder's ssh first. */
		if (vm->be->attach(vm, dl(c->source_host[0] ? 15000 : 2000))) {
			printf("FAIL: %s\n", vm->err);
			bad++;
		} else {
			printf("ok (running, %s%s%s)\n", vm->accel,
			       c->disk_node[0] ? ", block node " : "",
			       c->disk_node);
			printf("%s: migration settings: ", c->name);
			if (vm->be->check_settings(vm, true, dl(15000))) {
				printf("FAIL: %s\n", vm->err);
				bad++;
			} else {
				printf("ok (%s)\n",
				       tuning_text(&run->cl->tune, msg,
						   sizeof(msg)));
			}
		}
		vm->err[0] = '\0';
		/* Without source-chan, attach found it (libvirt). */
		printf("%s: guest channel %s: ", c->name, vm->src.endpoint);
		if (!vm->src.endpoint[0]) {
			printf("FAIL: unknown (the domain was not reached)\n");
			bad++;
		} else if (vmm_guests_open(gs, 1, dl(3000))) {
			printf("FAIL: %s\n", vm->src.errmsg);
			bad++;
		} else {
			printf("ok (%s)\n", vm->src.ch.hello);
		}
		vmm_guest_close(&vm->src);
		if (!run->o->switch_only) {
			printf("%s: destination: ", c->name);
			if (vm->be->check_dest(vm)) {
				printf("FAIL: %s\n", vm->err);
				bad++;
			} else {
				printf("ok (%s device %s -> %s, rails %s)\n",
				       c->disk_node[0] ? "overlay moves;" : "no storage to move;",
				       c->source_device[0] ? c->source_device : "none",
				       c->dest_device[0] ? c->dest_device : "none",
				       c->dest_rails);
			}
		}
		vm->be->detach(vm);
	}
	printf("dry run: %d VM(s), %s\n", run->n,
	       bad ? "problems found" : "everything reachable");
	return bad ? VMM_EXIT_USAGE : VMM_EXIT_OK;
}

/* Write the report file (if asked) and print the table. */
static void finish(struct vmm_run *run)
{
	run->t_end = vmm_now_ns();
	vmm_obs_close(run->result, run->exit_code,
		      (run->t_end - run->t_start) / 1e6);
	print_table(run);
	if (run->o->report) {
		json_object *rep = build_report(run);

		if (json_object_to_file_ext(run->o->report, rep,
					    JSON_C_TO_STRING_PRETTY |
					    JSON_C_TO_STRING_NOSLASHESCAPE))
			fprintf(stderr, "ninja-migrate: cannot write report %s: %s\n",
				run->o->report, json_util_get_last_err());
		json_object_put(rep);
	}
}

/*
 * A guest SAFE for fewer ranks than its cluster file's "ranks = N" has
 * ranks that never registered: they were not drained and would lose the
 * device under them.  Refuse (the caller cancels), unless --force.
 * Returns true to refuse; run->error names the VMs.
 */
static bool too_few_ranks(struct vmm_run *run, struct vmm_guest **gs)
{
	char msg[1024] = "";
	bool refuse = false;
	int i;

	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];
		int want = vm->conf->expect_ranks;
		size_t l = strlen(msg);

		if (want < 0) {
			if (!gs[i]->ranks)
				vmm_progress(vm, "warning: SAFE with 0 ranks (no MPI rank registered; set 'ranks = N' in the cluster file to require them)");
			continue;
		}
		if (gs[i]->ranks >= (unsigned int)want)
			continue;
		vmm_progress(vm, "%s: %u of %d expected rank(s) SAFE",
			     run->o->force ? "warning (--force)" : "REFUSED",
			     gs[i]->ranks, want);
		if (run->o->force)
			continue;
		snprintf(vm->failed_phase, sizeof(vm->failed_phase), "drain");
		snprintf(vm->err, sizeof(vm->err),
			 "only %u of %d expected rank(s) SAFE", gs[i]->ranks,
			 want);
		snprintf(msg + l, sizeof(msg) - l, "%s%s: %s", l ? "; " : "",
			 vm->conf->name, vm->err);
		refuse = true;
	}
	if (refuse)
		snprintf(run->error, sizeof(run->error),
			 "drain epoch %u: %s (cluster file 'ranks'); not unplugging a device under ranks that were not drained: cancelled, the job continues, no VM was touched (--force to migrate anyway)",
			 run->epoch, msg);
	return refuse;
}

/* The source guest channel closed because the VM arrived at the
 * destination (backends whose source ends there; transfer reports a
 * copy that failed). */
static bool gone_at_arrival(const struct vmm_vm *vm, const struct vmm_guest *g)
{
	return vm->be->source_ends_at_arrival && g->lost &&
	       atomic_load(&vm->ram_begun);
}

static void cancel_all(struct vmm_run *run, struct vmm_guest **gs, int n)
{
	int r, i;

	cprogress("CANCEL %u to every guest", run->epoch);
	r = vmm_guests_finish(gs, n, run->epoch, true,
			      dl(run->cl->resume_ms < 10000 ?
				 run->cl->resume_ms : 10000));
	for (i = 0; i < n; i++) {
		if (!gs[i])
			continue;
		if (gs[i]->done)
			vmm_progress(&run->vms[i], "RESUMED %u on the old rails (ranks=%u cancelled=%d)",
				     run->epoch, gs[i]->ranks, gs[i]->cancelled);
		else
			vmm_progress(&run->vms[i], "no RESUMED after CANCEL: %s",
				     gs[i]->errmsg[0] ? gs[i]->errmsg :
				     "deadline");
	}
	(void)r;
}

int vmm_migrate_run(const struct vmm_cluster *cl, const struct vmm_opts *o)
{
	struct vmm_run run_, *run = &run_;
	struct vmm_guest *gs[VMM_MAX_VMS];
	char msg[1024], state_path[VMM_PATH_MAX + 16];
	int lockfd = -1, i, r, failed;

	if (run_init(run, cl, o)) {
		fprintf(stderr, "ninja-migrate: out of memory\n");
		return VMM_EXIT_USAGE;
	}
	for (i = 0; i < run->n; i++)
		gs[i] = &run->vms[i].src;
	{
		struct vmm_obs_conf oc = {
			.quiet = o->quiet, .events_fd = -1, .t_start = run->t_start,
			.cluster = cl->name, .file = cl->file,
			.operation = o->switch_only ? "switch-only" : "migrate",
		};

		if (o->dry_run) {
			vmm_obs_open(&oc, run->vms, run->n, msg, sizeof(msg));
			r = dry_run(run);
			vmm_obs_close("dry-run", r, -1);
			free(run->vms);
			return r;
		}
		lockfd = take_lock(cl, false, msg, sizeof(msg));
		if (lockfd < 0) {
			fprintf(stderr, "ninja-migrate: %s\n", msg);
			free(run->vms);
			return lockfd == -2 ? VMM_EXIT_BUSY : VMM_EXIT_USAGE;
		}
		vmm_state_path(cl->lock, state_path, sizeof(state_path));
		oc.state_path = state_path;
		oc.events = o->events;
		oc.events_fd = o->events_fd;
		if (vmm_obs_open(&oc, run->vms, run->n, msg, sizeof(msg))) {
			fprintf(stderr, "ninja-migrate: %s; nothing was changed\n",
				msg);
			close(lockfd);
			free(run->vms);
			return VMM_EXIT_USAGE;
		}
		vmm_obs_start();
	}
	cprogress("%s of %d VM(s), %s -> %s, mode %s",
		  o->switch_only ? "device switch" : "migration", run->n,
		  cl->source_site, o->switch_only ? cl->source_site : cl->dest_site,
		  vmm_mode_name(cl->mode));

	/* Reach every VM: monitor, then guest channel. */
	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];

		if (vm->be->attach(vm, dl(10000))) {
			snprintf(run->error, sizeof(run->error),
				 "%s: source monitor: %s", vm->conf->name,
				 vm->err);
			fprintf(stderr, "ninja-migrate: %s; nothing was changed\n",
				run->error);
			goto out;
		}
		vm->err[0] = '\0';
		if (vm->be->check_settings(vm, tuning_set(&cl->tune),
					   dl(15000))) {
			snprintf(run->error, sizeof(run->error),
				 "%s: migration settings: %s", vm->conf->name,
				 vm->err);
			fprintf(stderr, "ninja-migrate: %s; nothing was changed\n",
				run->error);
			goto out;
		}
		if (!o->switch_only && vm->be->check_reach &&
		    vm->be->check_reach(vm, dl(15000))) {
			snprintf(run->error, sizeof(run->error),
				 "%s: destination: %s", vm->conf->name, vm->err);
			fprintf(stderr, "ninja-migrate: %s; nothing was changed\n",
				run->error);
			goto out;
		}
	}
	if (vmm_guests_open(gs, run->n, dl(10000))) {
		for (i = 0; i < run->n; i++)
			if (gs[i]->failed) {
				snprintf(run->error, sizeof(run->error), "%s",
					 gs[i]->errmsg);
				break;
			}
		fprintf(stderr, "ninja-migrate: %s; nothing was changed\n",
			run->error);
		goto out;
	}
	for (i = 0; i < run->n; i++) {
		if (strcmp(gs[i]->ch.node_phase, "running") != 0) {
			snprintf(run->error, sizeof(run->error),
				 "%s: guest is in phase '%s' (epoch %u): another migration is in progress or was interrupted (ninja-ctl --control unix:%s cancel); nothing was changed",
				 gs[i]->vm, gs[i]->ch.node_phase,
				 gs[i]->ch.node_epoch,
				 strncmp(gs[i]->endpoint, "unix:", 5) ?
				 gs[i]->endpoint : gs[i]->endpoint + 5);
			fprintf(stderr, "ninja-migrate: %s\n", run->error);
			goto out;
		}
	}
	run->epoch = ninja_epoch_next(vmm_guests_max_epoch(gs, run->n));
	vmm_obs_epoch(run->epoch);

	/* 1. Drain. */
	cprogress("drain: QUIESCE %u to %d guest(s)", run->epoch, run->n);
	for (i = 0; i < run->n; i++)
		ph_begin(&run->vms[i], VMM_PH_DRAIN);
	r = vmm_guests_quiesce(gs, run->n, run->epoch, dl(cl->quiesce_ms));
	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];

		if (gs[i]->done) {
			ph_set(vm, VMM_PH_DRAIN, gs[i]->t_sent, gs[i]->t_done,
			       true);
			vmm_progress(vm, "drain: SAFE %u, %u rank(s) (%.0f ms)",
				     run->epoch, gs[i]->ranks,
				     ph_ms(vm, VMM_PH_DRAIN));
		}
	}
	if (r) {
		int64_t at = vmm_now_ns();

		msg[0] = '\0';
		for (i = 0; i < run->n; i++) {
			struct vmm_vm *vm = &run->vms[i];
			size_t l = strlen(msg);

			if (gs[i]->done)
				continue;
			snprintf(vm->failed_phase, sizeof(vm->failed_phase), "drain");
			if (gs[i]->failed)
				snprintf(vm->err, sizeof(vm->err), "%s", gs[i]->errmsg);
			else
				snprintf(vm->err, sizeof(vm->err),
					 "not SAFE after %.1f s (%s)",
					 (at - gs[i]->t_sent) / 1e9,
					 gs[i]->status[0] ? gs[i]->status :
					 "no STATUS answer");
			snprintf(msg + l, sizeof(msg) - l, "%s%s: %s",
				 l ? "; " : "", vm->conf->name, vm->err);
			vmm_progress(vm, "drain FAILED: %s", vm->err);
			vmm_obs_phase(vm, VMM_PH_DRAIN, false);
		}
		snprintf(run->error, sizeof(run->error),
			 "drain epoch %u failed: %s; cancelled, the job continues, no VM was touched",
			 run->epoch, msg);
		cancel_all(run, gs, run->n);
		run->result = "cancelled";
		run->exit_code = VMM_EXIT_DRAIN;
		fprintf(stderr, "ninja-migrate: %s\n", run->error);
		goto report;
	}
	cprogress("drain: every guest SAFE for epoch %u (%.0f ms)", run->epoch,
		  cluster_ms(run, VMM_PH_DRAIN));
	if (too_few_ranks(run, gs)) {
		cancel_all(run, gs, run->n);
		run->result = "cancelled";
		run->exit_code = VMM_EXIT_DRAIN;
		fprintf(stderr, "ninja-migrate: %s\n", run->error);
		goto report;
	}
	if (g_signal) {
		snprintf(run->error, sizeof(run->error),
			 "interrupted by signal %d before anything moved; cancelled, the job continues",
			 (int)g_signal);
		cancel_all(run, gs, run->n);
		run->result = "cancelled";
		run->exit_code = VMM_EXIT_ROLLBACK;
		fprintf(stderr, "ninja-migrate: %s\n", run->error);
		goto report;
	}

	/* 2. Workers.  A link-up EVENT during a move can only come from a
	 * device plugged back by a rollback: watch for it from now on. */
	for (i = 0; i < run->n; i++) {
		gs[i]->t_link_mark = vmm_now_ns();
		gs[i]->t_link = 0;
	}
	for (i = 0; i < run->n; i++) {
		struct vmm_vm *vm = &run->vms[i];

		if (pthread_create(&vm->thread, NULL,
				   o->switch_only ? worker_switch : worker_move,
				   vm)) {
			set_aborting(run, "cannot start a thread");
			vm->state = VMM_VM_FAILED;
			continue;
		}
		vm->thread_started = true;
	}
	/* Until every VM is at the commit point (or failed): watch the
	 * guests at the source; an UNSAFE or a vanished guest aborts. */
	for (;;) {
		bool waiting = false;

		pthread_mutex_lock(&run->lock);
		for (i = 0; i < run->n; i++)
			if (run->vms[i].state == VMM_VM_IDLE ||
			    run->vms[i].state == VMM_VM_RUNNING)
				waiting = true;
		pthread_mutex_unlock(&run->lock);
		if (!waiting || o->switch_only)
			break;
		if (g_signal && !vmm_vm_aborting(&run->vms[0]))
			set_aborting(run, "interrupted by signal %d", (int)g_signal);
		vmm_guests_pump(gs, run->n, vmm_now_ns() + 100000000LL);
		for (i = 0; i < run->n; i++) {
			if (gs[i]->unsafe && !vmm_vm_aborting(&run->vms[i]))
				set_aborting(run, "%s: a rank revoked SAFE (UNSAFE %u) during the move",
					     gs[i]->vm, run->epoch);
			if (gs[i]->failed && !vmm_vm_aborting(&run->vms[i]) &&
			    !gone_at_arrival(&run->vms[i], gs[i]))
				set_aborting(run, "%s", gs[i]->errmsg);
		}
	}
	pthread_mutex_lock(&run->lock);
	run->decision = run->aborting ? DEC_ABORT : DEC_COMMIT;
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	if (!o->switch_only)
		cprogress(run->decision == DEC_COMMIT ?
			  "every VM at the commit point: switching over" :
			  "aborting: %s", run->abort_reason);
	for (i = 0; i < run->n; i++)
		if (run->vms[i].thread_started)
			pthread_join(run->vms[i].thread, NULL);

	/* 3. Resume or cancel. */
	if (o->switch_only) {
		struct vmm_guest *ok[VMM_MAX_VMS], *bad[VMM_MAX_VMS];
		int nok = 0, nbad = 0;

		for (i = 0; i < run->n; i++) {
			ok[i] = bad[i] = NULL;
			if (run->vms[i].state == VMM_VM_DONE)
				ok[i] = gs[i], nok++;
			else
				bad[i] = gs[i], nbad++;
		}
		if (nok) {
			for (i = 0; i < run->n; i++)
				ph_begin(&run->vms[i], VMM_PH_RECONNECT);
			cprogress("RESUME %u", run->epoch);
			vmm_guests_finish(ok, run->n, run->epoch, false,
					  dl(cl->resume_ms));
		}
		if (nbad)
			cancel_all(run, bad, run->n);
		failed = nbad;
		for (i = 0; i < run->n; i++) {
			struct vmm_vm *vm = &run->vms[i];

			if (gs[i]->done) {
				ph_set(vm, VMM_PH_RECONNECT, gs[i]->t_sent,
				       gs[i]->t_done, nok > 0);
			} else {
				vm->t0[VMM_PH_RECONNECT] = 0;
				failed++;
				vmm_vm_fail(vm, "no RESUMED: %s", gs[i]->errmsg[0] ?
					    gs[i]->errmsg : "deadline");
				if (nok)
					vmm_obs_phase(vm, VMM_PH_RECONNECT, false);
			}
		}
		await_upgrades(run, ok);
		take_stalls(run, gs);
		run->result = failed ? "failed" : "switched";
		run->exit_code = failed ? VMM_EXIT_ROLLBACK : VMM_EXIT_OK;
		if (failed)
			snprintf(run->error, sizeof(run->error),
				 "device switch failed on %d VM(s)", nbad);
		goto report;
	}
	if (run->decision == DEC_ABORT) {
		bool broken = false;

		for (i = 0; i < run->n; i++)
			if (run->vms[i].rollback_err[0])
				broken = true;
		/* A VM migrated back runs in a new source QEMU: its guest
		 * channel is a new socket at the same path. */
		for (i = 0; i < run->n; i++) {
			if (!run->vms[i].rolled_back || !gs[i]->lost ||
			    !run->vms[i].be->source_ends_at_arrival)
				continue;
			vmm_guest_close(gs[i]);
			if (vmm_guests_open(&gs[i], 1, dl(10000)))
				vmm_progress(&run->vms[i], "guest channel at the source not reached again: %s",
					     gs[i]->errmsg);
		}
		/* Ranks resume on their old rails: let the plugged-back
		 * device come up in the guest first (bounded). */
		for (i = 0; i < run->n; i++) {
			struct vmm_vm *vm = &run->vms[i];

			if (!vm->rolled_back || !vm->unplugged || !vm->plugged ||
			    gs[i]->failed)
				continue;
			if (vmm_guest_wait_link(gs[i], dl(cl->link_ms)) == 0) {
				vmm_progress(vm, "rollback: device up again in the guest (EVENT %s)",
					     gs[i]->link_event);
			} else {
				snprintf(vm->warn, sizeof(vm->warn),
					 "no link-up/port-active EVENT within %.0f s of plugging the device back",
					 cl->link_ms / 1000.0);
				vmm_progress(vm, "warning: %s", vm->warn);
			}
		}
		cancel_all(run, gs, run->n);
		snprintf(run->error, sizeof(run->error), "%s; %s", run->abort_reason,
			 broken ? "ROLLBACK FAILED on some VM: see below" :
			 "rolled back: every VM runs at the source, ranks resumed on the old rails");
		run->result = broken ? "rollback-failed" : "rolled-back";
		run->exit_code = broken ? VMM_EXIT_BROKEN : VMM_EXIT_ROLLBACK;
		fprintf(stderr, "ninja-migrate: %s\n", run->error);
		goto report;
	}
	{
		struct vmm_guest *rg[VMM_MAX_VMS];

		for (i = 0; i < run->n; i++) {
			struct vmm_vm *vm = &run->vms[i];

			if (vm->at_dest) {
				vmm_guest_close(&vm->src);
				if (!vm->plugged && vm->conf->dest_device[0])
					snprintf(vm->dst.rails, sizeof(vm->dst.rails),
						 "tcp");
				rg[i] = vm->dst.open ? &vm->dst : NULL;
			} else {
				rg[i] = &vm->src;
			}
		}
		cprogress("reconnect: RESUME %u to every guest", run->epoch);
		vmm_guests_finish(rg, run->n, run->epoch, false,
				  dl(cl->resume_ms));
		failed = 0;
		for (i = 0; i < run->n; i++) {
			struct vmm_vm *vm = &run->vms[i];

			if (rg[i] && rg[i]->done) {
				ph_set(vm, VMM_PH_RECONNECT, rg[i]->t_sent,
				       rg[i]->t_done, false);
				ph_set(vm, VMM_PH_TOTAL, vm->t0[VMM_PH_DRAIN],
				       rg[i]->t_done, false);
				vmm_progress(vm, "reconnect: RESUMED %u, %u rank(s), rails %s (%.0f ms)",
					     run->epoch, rg[i]->ranks, rg[i]->rails,
					     ph_ms(vm, VMM_PH_RECONNECT));
			} else {
				vmm_vm_fail(vm, "no RESUMED after RESUME %u: %s",
					    run->epoch, rg[i] && rg[i]->errmsg[0] ?
					    rg[i]->errmsg : "deadline");
			}
			if (!vm->at_dest || vm->err[0])
				failed++;
		}
		await_upgrades(run, rg);
		take_stalls(run, rg);
		if (failed) {
			snprintf(run->error, sizeof(run->error),
				 "%d VM(s) had trouble after the switch-over (see below)",
				 failed);
			run->result = "moved-with-errors";
			run->exit_code = VMM_EXIT_PARTIAL;
			fprintf(stderr, "ninja-migrate: %s\n", run->error);
		} else {
			run->result = "moved";
			run->exit_code = VMM_EXIT_OK;
		}
	}
report:
	finish(run);
	cprogress("done: %s (exit %d)", run->result, run->exit_code);
out:
	vmm_obs_close(run->result, run->exit_code,
		      (vmm_now_ns() - run->t_start) / 1e6);
	if (lockfd >= 0)
		close(lockfd);
	r = run->exit_code;
	run_release(run);
	return r;
}

/* ---- for the other verbs (vmm_checkpoint.c) ---- */

struct vmm_run *vmm_run_new(const struct vmm_cluster *cl,
			    const struct vmm_opts *o, struct vmm_vm **vms)
{
	struct vmm_run *run = malloc(sizeof(*run));

	if (!run)
		return NULL;
	if (run_init(run, cl, o)) {
		free(run);
		return NULL;
	}
	*vms = run->vms;
	return run;
}

void vmm_run_free(struct vmm_run *run)
{
	if (!run)
		return;
	run_release(run);
	free(run);
}

void vmm_run_abort(struct vmm_run *run, const char *reason)
{
	set_aborting(run, "%s", reason);
}

bool vmm_interrupted(void)
{
	return g_signal != 0;
}

int vmm_lock_cluster(const struct vmm_cluster *cl, char *msg, size_t size)
{
	return take_lock(cl, false, msg, size);
}
