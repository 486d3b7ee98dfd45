// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_progress.c - live progress lines, progress samples for the event
 * stream and the state file of a running ninja-migrate (see
 * vmm_progress.h).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm_events.h"
#include "vmm_migrate.h"
#include "vmm_progress.h"
#include "vmm_status.h"

#define TICK_MS		250	/* redraw on a terminal, state file */
#define SAMPLE_NS	1000000000LL	/* progress events */
#define PLAIN_NS	2000000000LL	/* plain progress lines */

static struct {
	pthread_mutex_t lock;	/* live states, output, the fields below */
	bool open, running, stop, tty, quiet;
	pthread_t thread;
	pthread_cond_t cond;
	struct vmm_obs_conf c;
	struct vmm_vm *vms;
	int n;
	uint32_t epoch;
	int drawn;		/* live lines on the screen below the cursor */
	int64_t next_sample, next_plain;
	char started[32];
} O = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static double rel_ms(int64_t t)
{
	return (t - O.c.t_start) / 1e6;
}

/* ---- samples (backends) ---- */

void vmm_live_ram(struct vmm_vm *vm, const char *status, uint64_t total,
		  uint64_t sent, uint64_t remaining, double rate,
		  uint64_t dirty_rate, int64_t passes)
{
	struct vmm_live *l = &vm->live;

	pthread_mutex_lock(&O.lock);
	snprintf(l->state, sizeof(l->state), "%s", status);
	l->ram_total = total;
	l->ram_sent = sent;
	l->ram_remaining = remaining;
	if (rate > 0)
		l->ram_rate = rate;
	l->dirty_rate = dirty_rate;
	l->passes = passes;
	l->have_ram = true;
	pthread_mutex_unlock(&O.lock);
}

void vmm_live_storage(struct vmm_vm *vm, uint64_t done, uint64_t total)
{
	struct vmm_live *l = &vm->live;
	int64_t now = vmm_now_ns();

	pthread_mutex_lock(&O.lock);
	if (l->have_storage && now > l->t_storage && done >= l->storage_done) {
		double r = (done - l->storage_done) * 1e9 / (now - l->t_storage);

		/* Smoothed: samples come every 0.2-0.5 s. */
		l->storage_rate = l->storage_rate > 0 ?
				  0.7 * l->storage_rate + 0.3 * r : r;
	}
	l->storage_done = done;
	l->storage_total = total;
	l->t_storage = now;
	l->have_storage = true;
	pthread_mutex_unlock(&O.lock);
}

/* ---- formatting ---- */

double vmm_live_ram_pct(const struct vmm_live *l)
{
	if (!l->have_ram || !l->ram_total)
		return -1;
	if (!strcmp(l->state, "completed") || !strcmp(l->state, "pre-switchover"))
		return 100;
	if (l->ram_remaining >= l->ram_total)
		return 0;
	return 100.0 * (double)(l->ram_total - l->ram_remaining) /
	       (double)l->ram_total;
}

double vmm_live_storage_pct(const struct vmm_live *l)
{
	if (!l->have_storage || !l->storage_total)
		return -1;
	if (l->storage_done >= l->storage_total)
		return 100;
	return 100.0 * (double)l->storage_done / (double)l->storage_total;
}

double vmm_live_eta_s(const struct vmm_live *l)
{
	if (l->phase == VMM_PH_STORAGE && l->have_storage &&
	    l->storage_rate > 0)
		return (double)(l->storage_total > l->storage_done ?
				l->storage_total - l->storage_done : 0) /
		       l->storage_rate;
	if (l->phase == VMM_PH_RAM && l->have_ram && l->ram_rate > 0)
		return (double)l->ram_remaining / l->ram_rate;
	return -1;
}

const char *vmm_live_phase(const struct vmm_live *l, char *buf, size_t size)
{
	if (l->phase >= 0)
		snprintf(buf, size, "%s", vmm_phase_name(l->phase));
	else if (l->last >= 0)
		snprintf(buf, size, "%s done", vmm_phase_name(l->last));
	else
		snprintf(buf, size, "waiting");
	return buf;
}

static bool moving_phase(int p)
{
	return p == VMM_PH_STORAGE || p == VMM_PH_RAM;
}

static void mib(char *buf, size_t size, uint64_t b)
{
	snprintf(buf, size, "%.1f", b / 1048576.0);
}

void vmm_live_format(char *buf, size_t size, const char *name,
		     const char *phase, const struct vmm_live *l)
{
	char a[32], b[32];
	double pct, eta, rate;
	size_t n = 0;

#define ADD(...) do { if (n < size) n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__); } while (0)
	buf[0] = '\0';
	if (name)
		ADD("%-12.12s %-14.14s ", name, phase);
	pct = vmm_live_ram_pct(l);
	if (pct >= 0) {
		mib(a, sizeof(a), l->ram_total - (l->ram_remaining < l->ram_total ?
						  l->ram_remaining : l->ram_total));
		mib(b, sizeof(b), l->ram_total);
		ADD("RAM %3.0f%% (%s/%s MiB)", pct, a, b);
	} else {
		ADD("RAM -");
	}
	pct = vmm_live_storage_pct(l);
	if (pct >= 0)
		ADD(", disk %3.0f%%", pct);
	else
		ADD(", disk -");
	rate = l->phase == VMM_PH_STORAGE ? l->storage_rate : l->ram_rate;
	if (rate > 0 && moving_phase(l->phase))
		ADD(", %.1f MB/s", rate / 1e6);
	if (l->phase == VMM_PH_RAM && l->have_ram) {
		mib(a, sizeof(a), l->ram_remaining);
		ADD(", rem %s MiB, dirty %.1f MB/s, pass %lld", a,
		    l->dirty_rate / 1e6, (long long)l->passes);
	}
	eta = vmm_live_eta_s(l);
	if (eta >= 0)
		ADD(", ETA %.0f s", eta);
#undef ADD
}

/* ---- output ---- */

/* Under O.lock: redraw the live lines below the cursor, cursor back. */
static void draw_live(void)
{
	char line[320], ph[32];
	int i;

	for (i = 0; i < O.n; i++) {
		struct vmm_live *l = &O.vms[i].live;

		vmm_live_format(line, sizeof(line), O.vms[i].conf->name,
				vmm_live_phase(l, ph, sizeof(ph)), l);
		printf("\r\033[K  %s\n", line);
	}
	if (O.n)
		printf("\033[%dA", O.n);
	O.drawn = O.n;
	fflush(stdout);
}

static void clear_live(void)
{
	if (O.drawn) {
		printf("\r\033[J");
		O.drawn = 0;
	}
}

static void log_locked(const char *who, const char *msg)
{
	double t = (vmm_now_ns() - O.c.t_start) / 1e9;

	if (O.quiet)
		return;
	clear_live();
	printf("[%6.2fs] %s%s%s\n", t, who ? who : "", who ? ": " : "", msg);
	if (O.tty && O.running)
		draw_live();
	fflush(stdout);
}

void vmm_obs_vlog(const char *who, const char *fmt, va_list ap)
{
	char buf[1200];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	pthread_mutex_lock(&O.lock);
	log_locked(who, buf);
	pthread_mutex_unlock(&O.lock);
}

/* ---- events ---- */

static void add_num(json_object *o, const char *k, double v)
{
	/* Rounded as the report rounds (vmm_migrate.c add_ms). */
	json_object_object_add(o, k, v < 0 ? NULL :
			       vmm_json_num((double)(int64_t)(v * 10 + 0.5) / 10, 1));
}

/* The live numbers of a VM into o (events and state file). */
static void live_json(json_object *o, const struct vmm_live *l)
{
	char ph[32];

	json_object_object_add(o, "phase", json_object_new_string(
		vmm_live_phase(l, ph, sizeof(ph))));
	json_object_object_add(o, "migration_status", l->state[0] ?
			       json_object_new_string(l->state) : NULL);
	json_object_object_add(o, "ram_total", json_object_new_int64((int64_t)l->ram_total));
	json_object_object_add(o, "ram_transferred", json_object_new_int64((int64_t)l->ram_sent));
	json_object_object_add(o, "ram_remaining", json_object_new_int64((int64_t)l->ram_remaining));
	add_num(o, "ram_pct", vmm_live_ram_pct(l));
	json_object_object_add(o, "storage_total", json_object_new_int64((int64_t)l->storage_total));
	json_object_object_add(o, "storage_done", json_object_new_int64((int64_t)l->storage_done));
	add_num(o, "storage_pct", vmm_live_storage_pct(l));
	add_num(o, "mb_per_s", (l->phase == VMM_PH_STORAGE ? l->storage_rate :
				l->ram_rate) / 1e6);
	add_num(o, "dirty_mb_per_s", l->dirty_rate / 1e6);
	json_object_object_add(o, "passes", json_object_new_int64(l->passes));
	add_num(o, "eta_s", vmm_live_eta_s(l));
}

void vmm_obs_phase(struct vmm_vm *vm, int p, bool start)
{
	json_object *e;
	double ms;

	pthread_mutex_lock(&O.lock);
	if (p != VMM_PH_TOTAL) {
		if (start) {
			vm->live.phase = p;
		} else {
			if (vm->live.phase == p)
				vm->live.phase = -1;
			vm->live.last = p;
		}
	}
	pthread_mutex_unlock(&O.lock);
	if (!O.open)
		return;
	e = vmm_event_new(start ? "phase-start" : "phase-end",
			  rel_ms((start ? vm->t0[p] : vm->t1[p]) ?:
				 vmm_now_ns()));
	json_object_object_add(e, "vm", json_object_new_string(vm->conf->name));
	json_object_object_add(e, "phase", json_object_new_string(vmm_phase_name(p)));
	json_object_object_add(e, "epoch", json_object_new_int64(O.epoch));
	if (!start) {
		ms = vm->t0[p] && vm->t1[p] ? (vm->t1[p] - vm->t0[p]) / 1e6 : -1;
		add_num(e, "ms", ms);
		json_object_object_add(e, "error", vm->err[0] ?
				       json_object_new_string(vm->err) : NULL);
	}
	vmm_events_emit(e);
}

void vmm_obs_epoch(uint32_t epoch)
{
	pthread_mutex_lock(&O.lock);
	O.epoch = epoch;
	pthread_mutex_unlock(&O.lock);
}

/* ---- the thread ---- */

static bool moving(const struct vmm_live *l)
{
	return l->phase == VMM_PH_STORAGE || l->phase == VMM_PH_RAM;
}

/* Under O.lock: the state file. */
static void write_state(void)
{
	json_object *s, *vms;
	int i;

	if (!O.c.state_path)
		return;
	s = json_object_new_object();
	vms = json_object_new_array();
	json_object_object_add(s, "pid", json_object_new_int64((int64_t)getpid()));
	json_object_object_add(s, "cluster", json_object_new_string(O.c.cluster));
	json_object_object_add(s, "file", json_object_new_string(O.c.file));
	json_object_object_add(s, "operation", json_object_new_string(O.c.operation));
	json_object_object_add(s, "started", json_object_new_string(O.started));
	add_num(s, "elapsed_ms", rel_ms(vmm_now_ns()));
	json_object_object_add(s, "epoch", O.epoch ?
			       json_object_new_int64(O.epoch) : NULL);
	for (i = 0; i < O.n; i++) {
		json_object *v = json_object_new_object();

		json_object_object_add(v, "name", json_object_new_string(O.vms[i].conf->name));
		live_json(v, &O.vms[i].live);
		json_object_array_add(vms, v);
	}
	json_object_object_add(s, "vms", vms);
	if (vmm_state_write(O.c.state_path, s))
		O.c.state_path = NULL;	/* warned once */
	json_object_put(s);
}

/* Under O.lock: progress events and plain lines, when due. */
static void sample(int64_t now)
{
	char line[320], ph[32];
	bool ev = now >= O.next_sample, plain = now >= O.next_plain;
	int i;

	if (ev)
		O.next_sample = now + SAMPLE_NS;
	if (plain)
		O.next_plain = now + PLAIN_NS;
	for (i = 0; i < O.n; i++) {
		struct vmm_live *l = &O.vms[i].live;

		if (!moving(l) || (!l->have_ram && !l->have_storage))
			continue;
		if (ev && O.c.events) {
			json_object *e = vmm_event_new("progress", rel_ms(now));

			json_object_object_add(e, "vm", json_object_new_string(O.vms[i].conf->name));
			live_json(e, l);
			vmm_events_emit(e);
		}
		if (plain && !O.tty) {
			size_t k = (size_t)snprintf(line, sizeof(line), "%s: ",
					vmm_live_phase(l, ph, sizeof(ph)));

			vmm_live_format(line + k, sizeof(line) - k, NULL, NULL, l);
			log_locked(O.vms[i].conf->name, line);
		}
	}
}

static void *obs_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&O.lock);
	while (!O.stop) {
		struct timespec ts;
		int64_t now = vmm_now_ns();

		write_state();
		sample(now);
		if (O.tty && !O.quiet)
			draw_live();
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&O.cond, &O.lock, &ts);
	}
	pthread_mutex_unlock(&O.lock);
	return NULL;
}

int vmm_obs_open(const struct vmm_obs_conf *c, struct vmm_vm *vms, int n,
		 char *err, size_t errlen)
{
	time_t now = time(NULL);
	struct tm tm;
	int i;

	O.c = *c;
	O.vms = vms;
	O.n = n;
	O.quiet = c->quiet;
	O.tty = isatty(1) && !c->quiet;
	for (i = 0; i < n; i++)
		vms[i].live.phase = vms[i].live.last = -1;
	gmtime_r(&now, &tm);
	strftime(O.started, sizeof(O.started), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (c->events && vmm_events_open(c->events, c->events_fd, err, errlen))
		return -1;
	O.open = true;
	if (c->events) {
		json_object *e = vmm_event_new("start", 0), *names;

		names = json_object_new_array();
		for (i = 0; i < n; i++)
			json_object_array_add(names, json_object_new_string(vms[i].conf->name));
		json_object_object_add(e, "cluster", json_object_new_string(c->cluster));
		json_object_object_add(e, "file", json_object_new_string(c->file));
		json_object_object_add(e, "operation", json_object_new_string(c->operation));
		json_object_object_add(e, "pid", json_object_new_int64((int64_t)getpid()));
		json_object_object_add(e, "vms", names);
		vmm_events_emit(e);
	}
	return 0;
}

void vmm_obs_start(void)
{
	pthread_mutex_lock(&O.lock);
	if (!O.open || O.running) {
		pthread_mutex_unlock(&O.lock);
		return;
	}
	O.stop = false;
	O.next_sample = O.next_plain = vmm_now_ns() + SAMPLE_NS;
	O.running = pthread_create(&O.thread, NULL, obs_thread, NULL) == 0;
	pthread_mutex_unlock(&O.lock);
}

void vmm_obs_close(const char *result, int exit_code, double total_ms)
{
	bool joined;

	pthread_mutex_lock(&O.lock);
	O.stop = true;
	pthread_cond_broadcast(&O.cond);
	joined = O.running;
	pthread_mutex_unlock(&O.lock);
	if (joined)
		pthread_join(O.thread, NULL);
	pthread_mutex_lock(&O.lock);
	O.running = false;
	clear_live();
	fflush(stdout);
	if (O.c.state_path)
		unlink(O.c.state_path);
	O.c.state_path = NULL;
	pthread_mutex_unlock(&O.lock);
	if (O.open && O.c.events) {
		json_object *e = vmm_event_new("end", total_ms);

		json_object_object_add(e, "result", json_object_new_string(result));
		json_object_object_add(e, "exit_code", json_object_new_int(exit_code));
		json_object_object_add(e, "epoch", json_object_new_int64(O.epoch));
		add_num(e, "total_ms", total_ms);
		vmm_events_emit(e);
		vmm_events_close();
	}
	O.open = false;
}
