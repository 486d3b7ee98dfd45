// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_backend_qemu.c - the embedded backend: QMP to the source QEMU, and
 * destination QEMU processes started on this machine from the cluster
 * file's dest-command (with "-S -incoming defer" appended), or on another
 * host over ssh with the monitor and guest channel forwarded
 * (vmm_remote_dest.h: dest-host / a site's host).
 *
 * Storage (QEMU 7.2; the recipe libvirt uses for --copy-storage-inc):
 *   dest   nbd-server-start + block-export-add (writable) of disk-node,
 *          on a fresh overlay created on the pre-staged base image
 *   source blockdev-add nbd "ninja-tgt" + blockdev-mirror sync=top
 *          (only what the overlay holds moves) -> BLOCK_JOB_READY
 * RAM: source capability pause-before-switchover; migrate-incoming on the
 * destination, migrate on the source, query-migrate polled until
 * "pre-switchover": the source is paused, so the READY mirror is
 * completed there (block-job-cancel -> BLOCK_JOB_COMPLETED, a consistent
 * copy) and its target removed; migrate-continue, poll until "completed".
 * That is the commit point: the destination holds everything, paused (-S);
 * the source is paused with its images intact (cont revives it).
 * Commit: block-export-del, nbd-server-stop, cont at the destination, wait
 * for its RESUME event, quit the source.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qmp_client.h"
#include "vmm_migrate.h"
#include "vmm_remote_dest.h"

#define JOB_ID		"ninja-mirror"
#define TGT_NODE	"ninja-tgt"
#define TLS_ID		"ninja-tls0"
#define POLL_NS		50000000LL

struct qemu_priv {
	struct qmp src, dst;
	bool src_up, dst_up;
	pid_t dest_pid;
	bool dest_reaped;
	int dest_status;	/* waitpid status once reaped */
	bool overlay_created;
	bool nbd_started, export_added, tgt_added, mirror_started,
	     mirror_done, migrate_started, stopped_by_us, completed;
	int64_t t_paused;
	char export_id[VMM_ID_MAX + 16];
	/* Migration capabilities each end knows (check_settings). */
	bool src_has[4], dst_has[4], caps_checked;
	bool postcopy_started;	/* migrate-start-postcopy sent */
	bool postcopy_switched;	/* migrate-continue after it: no way back */
	bool src_tls_stale;	/* the source's tls-creds was set before us */
	bool tls_src_added, tls_dst_added;	/* object-add done */
	int64_t next_mirror_sample;
	/* The destination on another host (NULL: on this machine). */
	struct vmm_rdest *rd;
	/* The source on another host: its monitor and channel forwarded. */
	struct vmm_fwd sfwd;
	char sfwd_log[300];
};

/* The capabilities ninja-migrate manages (index into *_has). */
enum { CAP_PBS, CAP_AUTOCONV, CAP_MULTIFD, CAP_POSTCOPY, CAP_N };
static const char *const cap_names[CAP_N] = {
	"pause-before-switchover", "auto-converge", "multifd", "postcopy-ram",
};

static struct qemu_priv *P(struct vmm_vm *vm)
{
	return vm->priv;
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/*
 * mode = auto: live under KVM.  Under TCG live only when both ends run
 * QEMU 10.0 or later (the destination's version is the source's until its
 * monitor is open): Debian 12's QEMU 7.2 lost guest memory writes and
 * panicked TCG guests with 2 vCPUs in live pre-copy, QEMU 10.0 kept them
 * intact (docs/vmm-bridge.md "TCG").  Else stopped.
 */
static enum vmm_mode auto_mode(const struct vmm_vm *vm)
{
	const struct qemu_priv *p = vm->priv;
	int dst_major = p->dst_up ? p->dst.ver_major : p->src.ver_major;

	if (strcmp(vm->accel, "kvm") == 0)
		return VMM_MODE_LIVE;
	return p->src.ver_major >= 10 && dst_major >= 10 ? VMM_MODE_LIVE :
	       VMM_MODE_STOPPED;
}

static void sleep_ns(int64_t ns)
{
	poll(NULL, 0, (int)(ns / 1000000));
}

/* The QMP connection to where the VM runs now. */
static struct qmp *cur(struct vmm_vm *vm)
{
	return vm->at_dest ? &P(vm)->dst : &P(vm)->src;
}

static int qfail(struct vmm_vm *vm, struct qmp *q, int r)
{
	vmm_vm_fail(vm, "%s", q->errmsg);
	return r ? r : -1;
}

/* Is the destination QEMU still alive?  Reaps it if not. */
static bool dest_alive(struct vmm_vm *vm, char *why, size_t whylen)
{
	struct qemu_priv *p = P(vm);
	int st;
	pid_t r;

	if (p->rd)
		return vmm_rdest_alive(p->rd, why, whylen);
	if (p->dest_pid <= 0)
		return false;
	if (!p->dest_reaped) {
		r = waitpid(p->dest_pid, &st, WNOHANG);
		if (r == 0)
			return true;
		p->dest_reaped = true;
		p->dest_status = r > 0 ? st : -1;
	}
	st = p->dest_status;
	r = st == -1 ? -1 : p->dest_pid;
	if (why) {
		if (r > 0 && WIFEXITED(st))
			snprintf(why, whylen, "exited with status %d",
				 WEXITSTATUS(st));
		else if (r > 0 && WIFSIGNALED(st))
			snprintf(why, whylen, "was killed by signal %d",
				 WTERMSIG(st));
		else
			snprintf(why, whylen, "is gone");
	}
	return false;
}

static int dest_died(struct vmm_vm *vm, const char *during)
{
	char why[400] = "is gone", tail[256] = "";
	struct qemu_priv *p = P(vm);

	dest_alive(vm, why, sizeof(why));
	/* A QEMU that exited on its own usually said why; a killed one's
	 * last line is noise. */
	if (p->rd) {
		if (p->rd->reaped && p->rd->status < 128)
			vmm_rdest_log_tail(p->rd, vm->conf, tail, sizeof(tail));
	} else if (p->dest_status != -1 && WIFEXITED(p->dest_status)) {
		vmm_remote_log_tail(vm->conf->dest_log, tail, sizeof(tail));
	}
	vmm_vm_fail(vm, "destination QEMU (pid %ld) %s during %s%s%s",
		    (long)p->dest_pid, why, during,
		    tail[0] ? "; its log says: " : "", tail);
	return -1;
}

static int64_t file_size(const char *path)
{
	struct stat st;

	if (!path[0] || stat(path, &st))
		return -1;
	return (int64_t)st.st_blocks * 512;
}

/* ---- attach ---- */

/* The backend's state of a VM, made once (no forwarder yet). */
static int ensure_priv(struct vmm_vm *vm)
{
	struct qemu_priv *p;

	if (vm->priv)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p) {
		vmm_vm_fail(vm, "out of memory");
		return -1;
	}
	p->sfwd.keep_fd = -1;
	vm->priv = p;
	return 0;
}

/*
 * A source on another host: ssh forwards of its monitor and channel to
 * the local paths source_qmp and source_chan hold, up until detach.
 */
static int source_forward(struct vmm_vm *vm, struct qemu_priv *p,
			  int64_t deadline)
{
	const struct vmm_vm_conf *c = vm->conf;
	const char *loc[2] = { c->source_qmp + 5, c->source_chan + 5 };
	const char *rem[2] = { c->remote_src_qmp, c->remote_src_chan };
	struct vmm_remote r = { .tmpl = c->source_ssh, .log = p->sfwd_log,
				.role = "source" };
	char err[sizeof(vm->err)];

	if (p->sfwd.pid > 0 && vmm_fwd_alive(&p->sfwd, NULL, 0))
		return 0;
	vmm_fwd_stop(&p->sfwd);
	snprintf(r.host, sizeof(r.host), "%s", c->source_host);
	snprintf(p->sfwd_log, sizeof(p->sfwd_log), "%s/%s.%s.ssh.log",
		 vm->cl->run_dir, c->name, vm->cl->source_site);
	if (vmm_fwd_start(&p->sfwd, &r, loc, rem, 2, deadline, err,
			  sizeof(err))) {
		vmm_vm_fail(vm, "%s", err);
		return -1;
	}
	return 0;
}

static int qemu_attach(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p;
	json_object *ret = NULL, *nodes = NULL;
	char name[160];
	const char *st;
	int r;

	if (ensure_priv(vm))
		return -1;
	p = P(vm);
	if (vm->conf->source_host[0] && source_forward(vm, p, deadline))
		return -1;
	snprintf(name, sizeof(name), "%s source", vm->conf->name);
	qmp_init(&p->src, name);
	p->src.verbose = vm->verbose;
	r = qmp_open(&p->src, vm->conf->source_qmp, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	p->src_up = true;
	r = qmp_cmd(&p->src, "query-status", NULL, &ret, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	st = qmp_get_str(ret, "status", "?");
	if (strcmp(st, "running") != 0) {
		vmm_vm_fail(vm, "source VM is not running (status '%s')", st);
		json_object_put(ret);
		return -1;
	}
	json_object_put(ret);
	snprintf(vm->accel, sizeof(vm->accel), "tcg");
	if (!qmp_cmd(&p->src, "query-kvm", NULL, &ret, deadline)) {
		json_object *en;

		if (json_object_object_get_ex(ret, "enabled", &en) &&
		    json_object_get_boolean(en))
			snprintf(vm->accel, sizeof(vm->accel), "kvm");
		json_object_put(ret);
	}
	if (vm->conf->disk_node[0]) {
		size_t i;
		bool found = false;

		r = qmp_cmd(&p->src, "query-named-block-nodes", NULL, &nodes,
			    deadline);
		if (r)
			return qfail(vm, &p->src, r);
		for (i = 0; json_object_is_type(nodes, json_type_array) &&
		     i < json_object_array_length(nodes); i++) {
			const char *nn = qmp_get_str(
				json_object_array_get_idx(nodes, i),
				"node-name", "");

			if (strcmp(nn, vm->conf->disk_node) == 0)
				found = true;
		}
		json_object_put(nodes);
		if (!found) {
			vmm_vm_fail(vm,
				    "source QEMU has no block node named '%s' (disk-node; give the overlay -blockdev node-name=%s)",
				    vm->conf->disk_node, vm->conf->disk_node);
			return -1;
		}
	}
	/* A path on another host says nothing here. */
	vm->overlay_bytes = vm->conf->source_host[0] ? -1 :
			    file_size(vm->conf->source_overlay);
	vm->base_bytes = file_size(vm->conf->base);
	return 0;
}

/* Is something answering on a unix socket path? */
static bool socket_alive(const char *spec)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[128];
	int fd, r;

	if (vmm_parse_endpoint(spec, sa.sun_path, sizeof(sa.sun_path), err,
			       sizeof(err)))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return r == 0;
}

static const char *sock_path(const char *spec)
{
	return strncmp(spec, "unix:", 5) == 0 ? spec + 5 : spec;
}

/* First word of the command, looked up in PATH. */
static bool command_exists(const char *cmd, char *word, size_t size)
{
	const char *s = cmd, *path;
	size_t n = 0;
	char buf[1024];

	while (*s == ' ' || *s == '\t')
		s++;
	while (s[n] && s[n] != ' ' && s[n] != '\t')
		n++;
	snprintf(word, size, "%.*s", (int)n, s);
	if (strchr(word, '/'))
		return access(word, X_OK) == 0;
	path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		const char *c = strchr(path, ':');
		size_t l = c ? (size_t)(c - path) : strlen(path);

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)l, path, word);
		if (access(buf, X_OK) == 0)
			return true;
		if (!c)
			break;
		path = c + 1;
	}
	return false;
}

/* The destination host of a VM (NULL: this machine), set up once. */
static struct vmm_rdest *rdest(struct vmm_vm *vm)
{
	struct qemu_priv *p = P(vm);

	if (!vm->conf->dest_host[0] || !p)
		return NULL;
	if (!p->rd) {
		p->rd = malloc(sizeof(*p->rd));
		if (p->rd)
			vmm_rdest_init(p->rd, vm->conf, vm->cl->run_dir,
				       vm->cl->dest_site);
	}
	return p->rd;
}

static int remote_check(struct vmm_vm *vm, int64_t deadline)
{
	char err[1024];
	struct stat st;
	struct vmm_rdest tmp, *d;

	/* The local ends of the forwards and ssh's log go there. */
	if (stat(vm->cl->run_dir, &st) || !S_ISDIR(st.st_mode) ||
	    access(vm->cl->run_dir, W_OK)) {
		vmm_vm_fail(vm, "run-dir %s is not a writable directory here (the ssh forwards' sockets go there)",
			    vm->cl->run_dir);
		return -1;
	}
	d = rdest(vm);
	if (!d) {
		/* Not attached (a dry run whose source did not answer). */
		vmm_rdest_init(&tmp, vm->conf, vm->cl->run_dir,
			       vm->cl->dest_site);
		d = &tmp;
	}
	if (vmm_rdest_check(d, vm->conf, deadline, err, sizeof(err))) {
		vmm_vm_fail(vm, "%s", err);
		return -1;
	}
	return 0;
}

/* check_reach: only destinations on other hosts need it. */
static int qemu_check_reach(struct vmm_vm *vm, int64_t deadline)
{
	return vm->conf->dest_host[0] ? remote_check(vm, deadline) : 0;
}

static int qemu_check_dest(struct vmm_vm *vm)
{
	const struct vmm_vm_conf *c = vm->conf;
	char word[256];
	struct stat st;

	if (c->dest_host[0])
		return remote_check(vm, vmm_now_ns() + 15000000000LL);

	if (!command_exists(c->dest_command, word, sizeof(word))) {
		vmm_vm_fail(vm, "dest-command: '%s' not found or not executable",
			    word);
		return -1;
	}
	if (stat(vm->cl->run_dir, &st) || !S_ISDIR(st.st_mode) ||
	    access(vm->cl->run_dir, W_OK)) {
		vmm_vm_fail(vm, "run-dir %s is not a writable directory",
			    vm->cl->run_dir);
		return -1;
	}
	if (socket_alive(c->dest_qmp)) {
		vmm_vm_fail(vm, "something already answers on dest-qmp %s (a destination QEMU already running?)",
			    c->dest_qmp);
		return -1;
	}
	if (c->disk_node[0]) {
		if (access(c->base, R_OK)) {
			vmm_vm_fail(vm, "base image %s is not readable here: %s",
				    c->base, strerror(errno));
			return -1;
		}
		if (access(c->dest_overlay, F_OK) == 0) {
			vmm_vm_fail(vm, "dest-overlay %s already exists (it must be created fresh on the base; remove it)",
				    c->dest_overlay);
			return -1;
		}
	}
	return 0;
}

/* ---- migration settings ---- */

/* query-migrate-capabilities and -parameters of q: which of ours it
 * knows into has[], the parameters object into *params.  0/-1/-2. */
static int query_settings(struct qmp *q, bool has[CAP_N],
			  json_object **params, int64_t deadline)
{
	json_object *caps = NULL;
	size_t i;
	int k, r;

	r = qmp_cmd(q, "query-migrate-capabilities", NULL, &caps, deadline);
	if (r)
		return r;
	for (k = 0; k < CAP_N; k++)
		has[k] = false;
	for (i = 0; json_object_is_type(caps, json_type_array) &&
	     i < json_object_array_length(caps); i++) {
		const char *n = qmp_get_str(json_object_array_get_idx(caps, i),
					    "capability", "");

		for (k = 0; k < CAP_N; k++)
			if (strcmp(n, cap_names[k]) == 0)
				has[k] = true;
	}
	json_object_put(caps);
	return qmp_cmd(q, "query-migrate-parameters", NULL, params, deadline);
}

/* Can a QEMU with these capabilities/parameters honour the settings? */
static int settings_ok(struct vmm_vm *vm, const char *who, const bool has[CAP_N],
		       json_object *params)
{
	const struct vmm_tuning *t = &vm->cl->tune;
	static const struct {
		int cap;
		const char *param, *key;
	} need[] = {
		{ CAP_PBS, NULL, "(needed by every move)" },
		{ CAP_AUTOCONV, NULL, "auto-converge" },
		{ CAP_MULTIFD, "multifd-channels", "multifd-channels" },
		{ CAP_POSTCOPY, NULL, "postcopy" },
		{ -1, "downtime-limit", "max-downtime" },
		{ -1, "multifd-compression", "compress" },
		{ -1, "max-bandwidth", "max-bandwidth" },
		{ -1, "tls-creds", "tls-creds" },
	};
	bool want[] = { true, t->auto_converge, t->multifd_channels > 0,
			t->postcopy, t->max_downtime_ms > 0, t->compress_zstd,
			vm->cl->tune.max_bandwidth > 0, t->tls_dir[0] != 0 };
	size_t i;

	for (i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (!want[i])
			continue;
		if (need[i].cap >= 0 && !has[need[i].cap]) {
			vmm_vm_fail(vm, "%s has no migration capability '%s' (setting %s): drop the setting or use a QEMU that has it",
				    who, cap_names[need[i].cap], need[i].key);
			return -1;
		}
		if (need[i].param && !json_object_object_get_ex(params, need[i].param, NULL)) {
			vmm_vm_fail(vm, "%s has no migration parameter '%s' (setting %s): drop the setting or use a QEMU that has it",
				    who, need[i].param, need[i].key);
			return -1;
		}
	}
	return 0;
}

/* The QEMU binary of dest-command, if it names one ("" otherwise). */
static void dest_binary(const struct vmm_vm *vm, char *out, size_t size)
{
	const char *s = vm->conf->dest_command, *base;
	size_t n = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	while (s[n] && s[n] != ' ' && s[n] != '\t')
		n++;
	snprintf(out, size, "%.*s", (int)n, s);
	base = strrchr(out, '/');
	base = base ? base + 1 : out;
	if (strncmp(base, "qemu-system-", 12) != 0)
		out[0] = '\0';
}

/*
 * Start dest-command's QEMU binary with no machine (-machine none -S),
 * ask it what it supports, quit it: the destination's side of the check,
 * before anything changes.  0, 1 (dest-command names no QEMU binary:
 * checked when the destination starts), -1 with vm->err.
 */
static int probe_dest(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	char bin[256], sock[VMM_PATH_MAX + 32], spec[VMM_PATH_MAX + 64];
	char who[300];
	json_object *params = NULL;
	struct qmp q;
	pid_t pid;
	int r, st;

	dest_binary(vm, bin, sizeof(bin));
	/* On another host: checked when the destination starts. */
	if (!bin[0] || vm->conf->dest_host[0])
		return 1;
	snprintf(sock, sizeof(sock), "%s/%s.probe.qmp", vm->cl->run_dir,
		 vm->conf->name);
	snprintf(spec, sizeof(spec), "unix:%s,server=on,wait=off", sock);
	unlink(sock);
	pid = fork();
	if (pid < 0) {
		vmm_vm_fail(vm, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		setsid();
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		execlp(bin, bin, "-machine", "none", "-nodefaults", "-display",
		       "none", "-S", "-qmp", spec, (char *)NULL);
		_exit(127);
	}
	qmp_init(&q, "destination probe");
	q.verbose = vm->verbose;
	r = qmp_open(&q, sock, deadline);
	if (!r)
		r = query_settings(&q, p->dst_has, &params, deadline);
	if (r)
		vmm_vm_fail(vm, "cannot ask the destination's QEMU (%s -machine none) what it supports: %s",
			    bin, q.errmsg);
	else {
		snprintf(who, sizeof(who), "the destination's QEMU (%s %d.%d.%d)",
			 bin, q.ver_major, q.ver_minor, q.ver_micro);
		r = settings_ok(vm, who, p->dst_has, params);
	}
	json_object_put(params);
	qmp_cmd(&q, "quit", NULL, NULL, vmm_now_ns() + 2000000000LL);
	qmp_close(&q);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	unlink(sock);
	return r ? -1 : 0;
}

/* The name the destination's certificate must carry: tls-hostname, or
 * the host of a tcp: migrate-uri ("" if neither). */
static void tls_host(const struct vmm_vm *vm, char *out, size_t size)
{
	const char *u = vm->conf->migrate_uri, *colon;

	out[0] = '\0';
	if (vm->cl->tune.tls_hostname[0])
		snprintf(out, size, "%s", vm->cl->tune.tls_hostname);
	else if (strncmp(u, "tcp:", 4) == 0 && (colon = strrchr(u + 4, ':')))
		snprintf(out, size, "%.*s", (int)(colon - u - 4), u + 4);
}

/* The credentials directory is complete and readable here. */
static int tls_check(struct vmm_vm *vm)
{
	static const char *const files[] = {
		"ca-cert.pem", "server-cert.pem", "server-key.pem",
		"client-cert.pem", "client-key.pem",
	};
	char path[VMM_PATH_MAX + 32], host[256];
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", vm->cl->tune.tls_dir,
			 files[i]);
		if (access(path, R_OK)) {
			vmm_vm_fail(vm, "tls-creds: %s: %s (the directory needs ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem)",
				    path, strerror(errno));
			return -1;
		}
	}
	tls_host(vm, host, sizeof(host));
	if (!host[0]) {
		vmm_vm_fail(vm, "tls-creds with migrate-uri %s needs tls-hostname (the name in the destination's certificate)",
			    vm->conf->migrate_uri);
		return -1;
	}
	return 0;
}

/* The tls-creds-x509 object at one end (source: client, destination:
 * server), once; both ends verify their peer. */
static int tls_object(struct vmm_vm *vm, bool src, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	bool *added = src ? &p->tls_src_added : &p->tls_dst_added;
	struct qmp *q = src ? &p->src : &p->dst;
	int r;

	if (!vm->cl->tune.tls_dir[0] || *added)
		return 0;
	r = qmp_cmd(q, "object-add",
		    qmp_args("qom-type", json_object_new_string("tls-creds-x509"),
			     "id", json_object_new_string(TLS_ID),
			     "dir", json_object_new_string(vm->cl->tune.tls_dir),
			     "endpoint", json_object_new_string(src ? "client" : "server"),
			     "verify-peer", json_object_new_boolean(1), NULL),
		    NULL, deadline);
	if (r)
		return qfail(vm, q, r);
	*added = true;
	return 0;
}

static int qemu_check_settings(struct vmm_vm *vm, bool probe, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_tuning *t = &vm->cl->tune;
	json_object *params = NULL;
	char who[160];
	int r;

	r = query_settings(&p->src, p->src_has, &params, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	snprintf(who, sizeof(who), "the source QEMU (%d.%d.%d)",
		 p->src.ver_major, p->src.ver_minor, p->src.ver_micro);
	r = settings_ok(vm, who, p->src_has, params);
	p->src_tls_stale = qmp_get_str(params, "tls-creds", "")[0] != '\0';
	json_object_put(params);
	if (r)
		return -1;
	if (t->tls_dir[0] && tls_check(vm))
		return -1;
	if (t->postcopy) {
		enum vmm_mode m = vm->cl->mode;

		if (m == VMM_MODE_AUTO)
			m = auto_mode(vm);
		if (m != VMM_MODE_LIVE) {
			vmm_vm_fail(vm, "postcopy needs a live migration, but mode %s is %s here (%s): set mode = live or drop postcopy",
				    vmm_mode_name(vm->cl->mode), vmm_mode_name(m),
				    vm->accel);
			return -1;
		}
	}
	p->caps_checked = true;
	if (probe && probe_dest(vm, deadline) < 0)
		return -1;
	return 0;
}

/* Apply the settings: capabilities and parameters at one end. */
static int apply_settings(struct vmm_vm *vm, struct qmp *q, bool src,
			  int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_tuning *t = &vm->cl->tune;
	const bool *has = src ? p->src_has : p->dst_has;
	bool want[CAP_N] = { src, t->auto_converge, t->multifd_channels > 0,
			     t->postcopy };
	json_object *caps, *params;
	char host[256];
	int k, r;

	r = tls_object(vm, src, deadline);
	if (r)
		return r;
	caps = json_object_new_array();

	/* Every managed capability the QEMU knows gets an explicit state
	 * (an earlier run may have left one on); the destination only
	 * needs those both ends must agree on. */
	for (k = 0; k < CAP_N; k++) {
		if (!src && !(k == CAP_MULTIFD || k == CAP_POSTCOPY))
			continue;
		if (!src && !want[k])
			continue;
		if (src && k != CAP_PBS && p->caps_checked && !has[k])
			continue;
		json_object_array_add(caps, qmp_args(
			"capability", json_object_new_string(cap_names[k]),
			"state", json_object_new_boolean(want[k]), NULL));
	}
	if (json_object_array_length(caps)) {
		r = qmp_cmd(q, "migrate-set-capabilities",
			    qmp_args("capabilities", caps, NULL), NULL,
			    deadline);
		if (r)
			return qfail(vm, q, r);
	} else {
		json_object_put(caps);
	}
	params = json_object_new_object();
	if (src && t->max_bandwidth)	/* at most INT64_MAX (vmm_cluster.c) */
		json_object_object_add(params, "max-bandwidth",
				       json_object_new_int64((int64_t)t->max_bandwidth));
	if (src && t->max_downtime_ms)
		json_object_object_add(params, "downtime-limit",
				       json_object_new_int64(t->max_downtime_ms));
	if (t->tls_dir[0]) {
		json_object_object_add(params, "tls-creds",
				       json_object_new_string(TLS_ID));
		tls_host(vm, host, sizeof(host));
		if (src)
			json_object_object_add(params, "tls-hostname",
					       json_object_new_string(host));
	} else if (src && p->src_tls_stale) {
		/* An earlier run's credentials: this run is without TLS. */
		json_object_object_add(params, "tls-creds",
				       json_object_new_string(""));
	}
	if (t->multifd_channels) {
		json_object_object_add(params, "multifd-channels",
				       json_object_new_int(t->multifd_channels));
		json_object_object_add(params, "multifd-compression",
				       json_object_new_string(t->compress_zstd ?
							      "zstd" : "none"));
	}
	if (json_object_object_length(params) == 0) {
		json_object_put(params);
		return 0;
	}
	r = qmp_cmd(q, "migrate-set-parameters", params, NULL, deadline);
	if (r)
		return qfail(vm, q, r);
	return 0;
}

/* ---- devices ---- */

static int qemu_unplug(struct vmm_vm *vm, const char *spec, int64_t deadline)
{
	struct qmp *q = cur(vm);
	char id[VMM_ID_MAX];
	int r;

	if (vmm_device_id(spec, id, sizeof(id))) {
		vmm_vm_fail(vm, "device '%s' has no id=", spec);
		return -1;
	}
	r = qmp_cmd(q, "device_del", qmp_args("id", json_object_new_string(id),
					       NULL), NULL, deadline);
	if (r && q->err == QMP_ERR_CMD &&
	    strcmp(q->errclass, "DeviceNotFound") == 0) {
		vmm_progress(vm, "unplug: no device %s here, nothing to remove",
			     id);
		snprintf(vm->warn, sizeof(vm->warn),
			 "device %s was not present at the source", id);
		return 1;	/* nothing unplugged */
	}
	if (r)
		return qfail(vm, q, r);
	r = qmp_wait_event(q, "DEVICE_DELETED", qmp_match_device, id, NULL,
			   NULL, deadline);
	if (r == -2) {
		vmm_vm_fail(vm, "device %s: no DEVICE_DELETED event in time (does the guest's PCIe hotplug driver cooperate?)",
			    id);
		return -2;
	}
	if (r)
		return qfail(vm, q, r);
	return 0;
}

static int qemu_plug(struct vmm_vm *vm, const char *spec, int64_t deadline)
{
	struct qmp *q = cur(vm);
	int r;

	r = qmp_cmd(q, "device_add", qmp_device_args(spec), NULL, deadline);
	if (r)
		return qfail(vm, q, r);
	return 0;
}

/* ---- destination ---- */

/* Run argv with a deadline; 0 when it exits 0. */
static int run_tool(struct vmm_vm *vm, char *const argv[], int64_t deadline)
{
	pid_t pid = fork();
	int st;

	if (pid < 0) {
		vmm_vm_fail(vm, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(vm->conf->dest_log,
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (vmm_now_ns() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			vmm_vm_fail(vm, "%s did not finish in time", argv[0]);
			return -2;
		}
		sleep_ns(10000000);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		char tail[256];

		vmm_remote_log_tail(vm->conf->dest_log, tail, sizeof(tail));
		vmm_vm_fail(vm, "%s failed: %s", argv[0], tail);
		return -1;
	}
	return 0;
}

static int open_dest(struct vmm_vm *vm, int64_t deadline);
static int start_remote(struct vmm_vm *vm, const char *backing,
			int64_t deadline);

/* The destination, paused, its fresh overlay on `backing`. */
static int start_on(struct vmm_vm *vm, const char *backing, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_vm_conf *c = vm->conf;
	char *cmd;
	size_t n;
	pid_t pid;
	int r;

	if (c->dest_host[0])
		return start_remote(vm, backing, deadline);
	if (qemu_check_dest(vm))
		return -1;
	/* Stale sockets of an earlier run (nothing answers there). */
	unlink(sock_path(c->dest_qmp));
	unlink(sock_path(c->dest_chan));
	if (strncmp(c->migrate_uri, "unix:", 5) == 0)
		unlink(c->migrate_uri + 5);
	if (strncmp(c->nbd_uri, "unix:", 5) == 0)
		unlink(c->nbd_uri + 5);
	if (c->disk_node[0]) {
		char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2",
				 "-F", "qcow2", "-b", (char *)backing,
				 (char *)c->dest_overlay, NULL };

		r = run_tool(vm, argv, deadline);
		if (r)
			return r;
		p->overlay_created = true;
	}
	n = strlen(c->dest_command) + 64;
	cmd = malloc(n);
	if (!cmd) {
		vmm_vm_fail(vm, "out of memory");
		return -1;
	}
	snprintf(cmd, n, "exec %s -S -incoming defer", c->dest_command);
	if (vm->verbose)
		vmm_log("%s: starting destination: %s", c->name, cmd + 5);
	pid = fork();
	if (pid < 0) {
		free(cmd);
		vmm_vm_fail(vm, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(c->dest_log, O_WRONLY | O_CREAT | O_APPEND |
			      O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY);

		/* Its own session: the VM outlives ninja-migrate and is not
		 * hit by a ^C meant for the tool. */
		setsid();
		if (nul >= 0)
			dup2(nul, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	free(cmd);
	p->dest_pid = pid;
	vm->dest_pid = pid;
	{
		FILE *f = fopen(c->pidfile, "w");

		if (f) {
			fprintf(f, "%ld\n", (long)pid);
			fclose(f);
		}
	}
	return open_dest(vm, deadline);
}

/* The destination's monitor, once it answers; inmigrate. */
static int open_dest(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_vm_conf *c = vm->conf;
	json_object *ret = NULL;
	char name[160];
	int r;

	snprintf(name, sizeof(name), "%s dest", c->name);
	/* Wait for its monitor socket to answer (the process may die). */
	for (;;) {
		if (!dest_alive(vm, NULL, 0))
			return dest_died(vm, "start-up");
		if (vmm_vm_aborting(vm)) {
			vmm_vm_fail(vm, "aborted");
			return -1;
		}
		if (p->rd) {
			/* The forward accepts at once; the QEMU behind it
			 * answers once it listens. */
			qmp_init(&p->dst, name);
			p->dst.verbose = vm->verbose;
			if (qmp_open(&p->dst, c->dest_qmp,
				     min64(vmm_now_ns() + 2000000000LL,
					   deadline)) == 0)
				goto opened;
			qmp_close(&p->dst);
		} else if (socket_alive(c->dest_qmp)) {
			break;
		}
		if (vmm_now_ns() >= deadline) {
			vmm_vm_fail(vm, "destination monitor %s did not appear within %.0f s (start-timeout; see %s)",
				    c->dest_qmp, vm->cl->start_ms / 1000.0,
				    c->dest_log);
			return -2;
		}
		sleep_ns(POLL_NS);
	}
	qmp_init(&p->dst, name);
	p->dst.verbose = vm->verbose;
	r = qmp_open(&p->dst, c->dest_qmp, deadline);
	if (r) {
		if (!dest_alive(vm, NULL, 0))
			return dest_died(vm, "start-up");
		return qfail(vm, &p->dst, r);
	}
opened:
	p->dst_up = true;
	r = qmp_cmd(&p->dst, "query-status", NULL, &ret, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	if (strcmp(qmp_get_str(ret, "status", "?"), "inmigrate") != 0) {
		vmm_vm_fail(vm, "destination QEMU is in state '%s', not 'inmigrate' (did dest-command add -incoming itself?)",
			    qmp_get_str(ret, "status", "?"));
		json_object_put(ret);
		return -1;
	}
	json_object_put(ret);
	return 0;
}

/* start_on for a destination on another host (vmm_remote_dest.h). */
static int start_remote(struct vmm_vm *vm, const char *backing,
			int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	char err[1024];
	int r;

	if (remote_check(vm, deadline))
		return -1;
	if (vm->verbose)
		vmm_log("%s: starting destination on host %s: %s -S -incoming defer",
			vm->conf->name, vm->conf->dest_host, vm->conf->dest_command);
	r = vmm_rdest_start(p->rd, vm->conf, backing, deadline, err,
			    sizeof(err));
	p->overlay_created = p->rd->overlay_created;
	if (p->rd->rpid > 0) {
		p->dest_pid = (pid_t)p->rd->rpid;
		vm->dest_pid = p->rd->rpid;
	}
	if (r) {
		vmm_vm_fail(vm, "%s", err);
		return r;
	}
	return open_dest(vm, deadline);
}

static int qemu_start_dest(struct vmm_vm *vm, int64_t deadline)
{
	return start_on(vm, vm->conf->base, deadline);
}

/* ---- storage ---- */

static void sample_mirror(struct vmm_vm *vm, int64_t deadline);

/*
 * {"type":"unix","path":P} / {"type":"inet","host":H,"port":"N"}; legacy
 * (nbd-server-start's SocketAddressLegacy) wraps the address in "data".
 */
static json_object *nbd_addr(const char *uri, bool legacy)
{
	bool unix_sock = strncmp(uri, "unix:", 5) == 0;
	json_object *o = qmp_args("type", json_object_new_string(
					  unix_sock ? "unix" : "inet"), NULL);
	json_object *a = legacy ? json_object_new_object() : o;

	if (unix_sock) {
		json_object_object_add(a, "path",
				       json_object_new_string(uri + 5));
	} else {
		/* tcp:HOST:PORT (vmm_cluster.c checked the colon). */
		const char *hp = uri + 4, *colon = strrchr(hp, ':');

		json_object_object_add(a, "host", json_object_new_string_len(
					       hp, (int)(colon - hp)));
		json_object_object_add(a, "port",
				       json_object_new_string(colon + 1));
	}
	if (legacy)
		json_object_object_add(o, "data", a);
	return o;
}

static bool match_job_error(json_object *data, void *arg)
{
	return qmp_match_job(data, arg) &&
	       qmp_get_str(data, "error", NULL) != NULL;
}

static int qemu_storage(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_vm_conf *c = vm->conf;
	bool tls = vm->cl->tune.tls_dir[0] != '\0';
	json_object *data = NULL;
	char host[256];
	int r;

	if (!c->disk_node[0])
		return 0;
	snprintf(p->export_id, sizeof(p->export_id), "ninja-%s", c->disk_node);
	r = tls_object(vm, false, deadline);
	if (!r)
		r = tls_object(vm, true, deadline);
	if (r)
		return r;
	tls_host(vm, host, sizeof(host));
	r = qmp_cmd(&p->dst, "nbd-server-start",
		    qmp_args("addr", nbd_addr(c->nbd_uri, true),
			     "tls-creds", tls ? json_object_new_string(TLS_ID) : NULL,
			     NULL), NULL, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	p->nbd_started = true;
	r = qmp_cmd(&p->dst, "block-export-add",
		    qmp_args("type", json_object_new_string("nbd"),
			     "id", json_object_new_string(p->export_id),
			     "node-name", json_object_new_string(c->disk_node),
			     "writable", json_object_new_boolean(1),
			     "name", json_object_new_string(c->disk_node), NULL),
		    NULL, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	p->export_added = true;
	r = qmp_cmd(&p->src, "blockdev-add",
		    qmp_args("driver", json_object_new_string("nbd"),
			     "node-name", json_object_new_string(TGT_NODE),
			     "server", nbd_addr(c->nbd_uri, false),
			     "export", json_object_new_string(c->disk_node),
			     "tls-creds", tls ? json_object_new_string(TLS_ID) : NULL,
			     "tls-hostname", tls ? json_object_new_string(host) : NULL,
			     NULL), NULL, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	p->tgt_added = true;
	r = qmp_cmd(&p->src, "blockdev-mirror",
		    qmp_args("job-id", json_object_new_string(JOB_ID),
			     "device", json_object_new_string(c->disk_node),
			     "target", json_object_new_string(TGT_NODE),
			     "sync", json_object_new_string("top"), NULL),
		    NULL, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	p->mirror_started = true;
	for (;;) {
		int64_t now = vmm_now_ns();

		r = qmp_wait_event(&p->src, "BLOCK_JOB_READY", qmp_match_job,
				   JOB_ID, &data, NULL,
				   min64(now + 200000000LL, deadline));
		if (r == 0)
			break;
		if (r == -1)
			return qfail(vm, &p->src, r);
		/* A job that ended (error, or the target went away). */
		if (qmp_wait_event(&p->src, "BLOCK_JOB_COMPLETED",
				   match_job_error, JOB_ID, &data, NULL,
				   vmm_now_ns()) == 0) {
			vmm_vm_fail(vm, "storage mirror failed: %s",
				    qmp_get_str(data, "error", "?"));
			json_object_put(data);
			p->mirror_done = true;
			return -1;
		}
		sample_mirror(vm, deadline);
		if (!dest_alive(vm, NULL, 0))
			return dest_died(vm, "the storage copy");
		if (vmm_vm_aborting(vm)) {
			vmm_vm_fail(vm, "aborted");
			return -1;
		}
		if (vmm_now_ns() >= deadline) {
			vmm_vm_fail(vm, "storage mirror not in sync after %.0f s (storage-timeout)",
				    vm->cl->storage_ms / 1000.0);
			return -2;
		}
	}
	vm->storage_len = (uint64_t)qmp_get_int(data, "len", 0);
	vm->storage_bytes = (uint64_t)qmp_get_int(data, "offset", 0);
	vmm_live_storage(vm, vm->storage_bytes, vm->storage_len);
	json_object_put(data);
	return 0;
}

/* ---- RAM ---- */

/* query-migrate: status into st (size stsz); *ret the whole answer. */
static int query_migrate(struct vmm_vm *vm, char *st, size_t stsz,
			 json_object **ret, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int r = qmp_cmd(&p->src, "query-migrate", NULL, ret, deadline);

	if (r)
		return qfail(vm, &p->src, r);
	snprintf(st, stsz, "%s", qmp_get_str(*ret, "status", "none"));
	return 0;
}

static void ram_stats(struct vmm_vm *vm, json_object *ret, const char *st)
{
	json_object *ram;

	if (json_object_object_get_ex(ret, "ram", &ram)) {
		/* QEMU's mbps is Mbit/s; the dirty rate is in pages/s. */
		double mbps = 0;
		json_object *v;

		vm->ram_bytes = (uint64_t)qmp_get_int(ram, "transferred", 0);
		if (json_object_object_get_ex(ram, "mbps", &v))
			mbps = json_object_get_double(v);
		vmm_live_ram(vm, st, (uint64_t)qmp_get_int(ram, "total", 0),
			     vm->ram_bytes,
			     (uint64_t)qmp_get_int(ram, "remaining", 0),
			     mbps > 0 && mbps < 1e9 ? mbps * 1e6 / 8 : 0,
			     (uint64_t)qmp_get_int(ram, "dirty-pages-rate", 0) *
			     (uint64_t)qmp_get_int(ram, "page-size", 4096),
			     qmp_get_int(ram, "dirty-sync-count", 0));
	}
	if (json_object_object_get_ex(ret, "downtime", NULL))
		vm->downtime_ms = qmp_get_int(ret, "downtime", -1);
}

/* The storage mirror's progress (query-block-jobs), at most every 0.5 s. */
static void sample_mirror(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	json_object *jobs = NULL;
	size_t i;

	if (!p->mirror_started || p->mirror_done ||
	    vmm_now_ns() < p->next_mirror_sample)
		return;
	p->next_mirror_sample = vmm_now_ns() + 500000000LL;
	if (qmp_cmd(&p->src, "query-block-jobs", NULL, &jobs,
		    min64(vmm_now_ns() + 2000000000LL, deadline)))
		return;		/* only progress: the waits see failures */
	for (i = 0; json_object_is_type(jobs, json_type_array) &&
	     i < json_object_array_length(jobs); i++) {
		json_object *j = json_object_array_get_idx(jobs, i);

		if (strcmp(qmp_get_str(j, "device", ""), JOB_ID) == 0)
			vmm_live_storage(vm, (uint64_t)qmp_get_int(j, "offset", 0),
					 (uint64_t)qmp_get_int(j, "len", 0));
	}
	json_object_put(jobs);
}

/*
 * postcopy: after tune.postcopy_after pre-copy passes, ask for the switch
 * (migrate-start-postcopy).  QEMU pauses at pre-switchover before it sends
 * the device state; from migrate-continue on there is no way back.
 */
static int maybe_postcopy(struct vmm_vm *vm, const char *st, json_object *ret,
			  int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int after = vm->cl->tune.postcopy_after ? vm->cl->tune.postcopy_after : 1;
	json_object *ram;
	int r;

	if (!vm->cl->tune.postcopy || p->postcopy_started ||
	    strcmp(st, "active") != 0 ||
	    !json_object_object_get_ex(ret, "ram", &ram) ||
	    qmp_get_int(ram, "dirty-sync-count", 0) < after)
		return 0;
	vmm_progress(vm, "ram: %d pre-copy pass(es) done: switching to post-copy (the VM cannot go back to the source once the switch-over begins)",
		     after);
	r = qmp_cmd(&p->src, "migrate-start-postcopy", NULL, NULL, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	p->postcopy_started = true;
	return 0;
}

/* Poll query-migrate until status `want`; failed/cancelled is an error. */
static int wait_migrate(struct vmm_vm *vm, const char *want,
			int64_t deadline, bool postcopy)
{
	struct qemu_priv *p = P(vm);
	char st[32];

	for (;;) {
		json_object *ret = NULL;
		int r = query_migrate(vm, st, sizeof(st), &ret, deadline);

		if (r)
			return r;
		ram_stats(vm, ret, st);
		sample_mirror(vm, deadline);
		if (strcmp(st, want) == 0) {
			json_object_put(ret);
			return 0;
		}
		if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
			const char *d = qmp_get_str(ret, "error-desc", NULL);

			if (!dest_alive(vm, NULL, 0) && !p->completed) {
				json_object_put(ret);
				return dest_died(vm, "the RAM migration");
			}
			vmm_vm_fail(vm, "migration %s%s%s", st,
				    d ? ": " : "", d ? d : "");
			json_object_put(ret);
			return -1;
		}
		if (postcopy && maybe_postcopy(vm, st, ret, deadline)) {
			json_object_put(ret);
			return -1;
		}
		json_object_put(ret);
		if (vmm_vm_aborting(vm)) {
			vmm_vm_fail(vm, "aborted");
			return -1;
		}
		/* On another host, the session or a forwarder may go while
		 * the host-to-host stream still runs. */
		if (p->rd && !dest_alive(vm, NULL, 0))
			return dest_died(vm, "the RAM migration");
		if (vmm_now_ns() >= deadline) {
			vmm_vm_fail(vm, "migration still '%s' at the deadline", st);
			return -2;
		}
		sleep_ns(POLL_NS);
	}
}

static bool match_job_end(json_object *data, void *arg)
{
	return qmp_match_job(data, arg);
}

static int qemu_transfer(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_vm_conf *c = vm->conf;
	json_object *data = NULL;
	enum vmm_mode mode = vm->cl->mode;
	int r;

	if (mode == VMM_MODE_AUTO)
		mode = auto_mode(vm);
	snprintf(vm->mode_used, sizeof(vm->mode_used), "%s",
		 vmm_mode_name(mode));
	r = apply_settings(vm, &p->src, true, deadline);
	if (r)
		return r;
	r = apply_settings(vm, &p->dst, false, deadline);
	if (r)
		return r;
	if (mode == VMM_MODE_STOPPED) {
		r = qmp_cmd(&p->src, "stop", NULL, NULL, deadline);
		if (r)
			return qfail(vm, &p->src, r);
		p->stopped_by_us = true;
		p->t_paused = vmm_now_ns();
	}
	r = qmp_cmd(&p->dst, "migrate-incoming",
		    qmp_args("uri", json_object_new_string(c->migrate_uri),
			     NULL), NULL, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	r = qmp_cmd(&p->src, "migrate",
		    qmp_args("uri", json_object_new_string(c->migrate_uri),
			     NULL), NULL, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	p->migrate_started = true;
	r = wait_migrate(vm, "pre-switchover", deadline, true);
	if (r)
		return r;
	if (!p->t_paused)
		p->t_paused = vmm_now_ns();
	/* The source is paused: finish the storage copy here. */
	if (p->mirror_started && !p->mirror_done) {
		r = qmp_cmd(&p->src, "block-job-cancel",
			    qmp_args("device", json_object_new_string(JOB_ID),
				     NULL), NULL, deadline);
		if (r)
			return qfail(vm, &p->src, r);
		for (;;) {
			r = qmp_wait_event(&p->src, "BLOCK_JOB_COMPLETED",
					   match_job_end, JOB_ID, &data, NULL,
					   min64(vmm_now_ns() + 200000000LL,
						 deadline));
			if (r == 0)
				break;
			if (qmp_wait_event(&p->src, "BLOCK_JOB_CANCELLED",
					   match_job_end, JOB_ID, &data, NULL,
					   vmm_now_ns()) == 0) {
				p->mirror_done = true;
				json_object_put(data);
				vmm_vm_fail(vm, "storage mirror was cancelled instead of completing: the destination disk is not in sync");
				return -1;
			}
			if (r == -1)
				return qfail(vm, &p->src, r);
			if (vmm_now_ns() >= deadline) {
				vmm_vm_fail(vm, "storage mirror did not complete in time");
				return -2;
			}
		}
		p->mirror_done = true;
		if (qmp_get_str(data, "error", NULL)) {
			vmm_vm_fail(vm, "storage mirror failed while completing: %s",
				    qmp_get_str(data, "error", "?"));
			json_object_put(data);
			return -1;
		}
		vm->storage_len = (uint64_t)qmp_get_int(data, "len", 0);
		vm->storage_bytes = (uint64_t)qmp_get_int(data, "offset", 0);
		json_object_put(data);
		r = qmp_cmd(&p->src, "blockdev-del",
			    qmp_args("node-name", json_object_new_string(TGT_NODE), NULL),
			    NULL, deadline);
		if (r)
			return qfail(vm, &p->src, r);
		p->tgt_added = false;
	}
	r = qmp_cmd(&p->src, "migrate-continue",
		    qmp_args("state", json_object_new_string("pre-switchover"),
			     NULL), NULL, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	if (p->postcopy_started) {
		p->postcopy_switched = true;
		vmm_progress(vm, "ram: post-copy: the destination holds the device state, RAM follows; no rollback from here");
	}
	r = wait_migrate(vm, "completed", deadline, false);
	if (r)
		return r;
	p->completed = true;
	if (!dest_alive(vm, NULL, 0))
		return dest_died(vm, "the end of the migration");
	return 0;
}

/* ---- commit ---- */

static int qemu_commit(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int r;

	if (p->export_added) {
		r = qmp_cmd(&p->dst, "block-export-del",
			    qmp_args("id", json_object_new_string(p->export_id),
				     NULL), NULL, deadline);
		if (r)
			return qfail(vm, &p->dst, r);
		p->export_added = false;
		/* The export goes away asynchronously; not fatal if late. */
		if (qmp_wait_event(&p->dst, "BLOCK_EXPORT_DELETED", NULL, NULL,
				   NULL, NULL, min64(vmm_now_ns() + 5000000000LL,
						     deadline)) == -1)
			return qfail(vm, &p->dst, -1);
	}
	if (p->nbd_started) {
		r = qmp_cmd(&p->dst, "nbd-server-stop", NULL, NULL, deadline);
		if (r)
			return qfail(vm, &p->dst, r);
		p->nbd_started = false;
	}
	r = qmp_cmd(&p->dst, "cont", NULL, NULL, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	vm->at_dest = true;
	r = qmp_wait_event(&p->dst, "RESUME", NULL, NULL, NULL, NULL, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	vm->paused_ns = vmm_now_ns() - p->t_paused;
	if (vm->cl->quit_source && p->src_up) {
		/* The answer may race with the close: either is fine. */
		qmp_cmd(&p->src, "quit", NULL, NULL,
			min64(vmm_now_ns() + 3000000000LL, deadline));
		qmp_close(&p->src);
		p->src_up = false;
	}
	return 0;
}

/* ---- abort ---- */

static void kill_dest(struct vmm_vm *vm)
{
	struct qemu_priv *p = P(vm);
	int64_t end;

	if (p->dst_up) {
		qmp_cmd(&p->dst, "quit", NULL, NULL,
			vmm_now_ns() + 2000000000LL);
		qmp_close(&p->dst);
		p->dst_up = false;
	}
	if (p->rd) {
		vmm_rdest_kill(p->rd, vm->conf);
		p->overlay_created = p->rd->overlay_created;
		return;
	}
	if (p->dest_pid <= 0 || p->dest_reaped)
		goto files;
	end = vmm_now_ns() + 3000000000LL;
	while (dest_alive(vm, NULL, 0) && vmm_now_ns() < end)
		sleep_ns(20000000);
	if (dest_alive(vm, NULL, 0)) {
		kill(p->dest_pid, SIGTERM);
		end = vmm_now_ns() + 3000000000LL;
		while (dest_alive(vm, NULL, 0) && vmm_now_ns() < end)
			sleep_ns(20000000);
	}
	if (dest_alive(vm, NULL, 0)) {
		kill(p->dest_pid, SIGKILL);
		waitpid(p->dest_pid, &p->dest_status, 0);
		p->dest_reaped = true;
	}
files:
	if (p->dest_pid > 0)
		unlink(vm->conf->pidfile);
	if (p->overlay_created) {
		unlink(vm->conf->dest_overlay);
		p->overlay_created = false;
	}
}

static int qemu_abort(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	const struct vmm_vm_conf *c = vm->conf;
	char st[32];
	int r, i;

	if (!p)
		return 0;
	if (p->postcopy_switched) {
		/* The destination got the device state and part of the RAM:
		 * neither side alone is the VM any more. */
		snprintf(vm->rollback_err, sizeof(vm->rollback_err),
			 "post-copy had begun: no rollback; the destination QEMU (pid %ld) is kept (QMP %s) for recovery",
			 (long)p->dest_pid, c->dest_qmp);
		return -1;
	}
	/* The source monitor may be what failed: reconnect once. */
	if (!p->src_up || p->src.eof) {
		char name[160];

		qmp_close(&p->src);
		snprintf(name, sizeof(name), "%s source", c->name);
		qmp_init(&p->src, name);
		p->src.verbose = vm->verbose;
		r = qmp_open(&p->src, c->source_qmp,
			     min64(vmm_now_ns() + 5000000000LL, deadline));
		if (r) {
			kill_dest(vm);
			snprintf(vm->rollback_err, sizeof(vm->rollback_err),
				 "cannot reach the source monitor to roll back: %s",
				 p->src.errmsg);
			return -1;
		}
		p->src_up = true;
	}
	if (p->migrate_started) {
		json_object *ret = NULL;

		if (!query_migrate(vm, st, sizeof(st), &ret, deadline) &&
		    strcmp(st, "completed") && strcmp(st, "failed") &&
		    strcmp(st, "cancelled") && strcmp(st, "none"))
			qmp_cmd(&p->src, "migrate_cancel", NULL, NULL, deadline);
		json_object_put(ret);
		for (i = 0; i < 100; i++) {
			ret = NULL;
			if (query_migrate(vm, st, sizeof(st), &ret, deadline))
				break;
			json_object_put(ret);
			if (!strcmp(st, "completed") || !strcmp(st, "failed") ||
			    !strcmp(st, "cancelled") || !strcmp(st, "none"))
				break;
			sleep_ns(POLL_NS);
		}
	}
	if (p->mirror_started && !p->mirror_done) {
		if (!qmp_cmd(&p->src, "block-job-cancel",
			     qmp_args("device", json_object_new_string(JOB_ID),
				      "force", json_object_new_boolean(1), NULL),
			     NULL, deadline)) {
			json_object *d = NULL;

			if (qmp_wait_event(&p->src, "BLOCK_JOB_CANCELLED",
					   match_job_end, JOB_ID, &d, NULL,
					   min64(vmm_now_ns() + 3000000000LL,
						 deadline)) &&
			    qmp_wait_event(&p->src, "BLOCK_JOB_COMPLETED",
					   match_job_end, JOB_ID, &d, NULL,
					   vmm_now_ns()))
				vmm_progress(vm, "rollback: mirror job did not report its end (continuing)");
			json_object_put(d);
		}
		p->mirror_done = true;
	}
	if (p->tgt_added) {
		qmp_cmd(&p->src, "blockdev-del",
			qmp_args("node-name", json_object_new_string(TGT_NODE), NULL),
			NULL, deadline);
		p->tgt_added = false;
	}
	if (p->tls_src_added) {
		/* The next run starts clean: no credentials left behind. */
		qmp_cmd(&p->src, "migrate-set-parameters",
			qmp_args("tls-creds", json_object_new_string(""), NULL),
			NULL, deadline);
		qmp_cmd(&p->src, "object-del",
			qmp_args("id", json_object_new_string(TLS_ID), NULL),
			NULL, deadline);
		p->tls_src_added = false;
	}
	kill_dest(vm);
	/* The source runs again (a cancelled live migration restarts it). */
	for (i = 0; i < 100; i++) {
		json_object *ret = NULL;
		const char *s;

		r = qmp_cmd(&p->src, "query-status", NULL, &ret, deadline);
		if (r) {
			snprintf(vm->rollback_err, sizeof(vm->rollback_err),
				 "%s", p->src.errmsg);
			return -1;
		}
		s = qmp_get_str(ret, "status", "?");
		if (strcmp(s, "running") == 0) {
			json_object_put(ret);
			return 0;
		}
		if (strcmp(s, "finish-migrate") && i >= 4) {
			json_object_put(ret);
			if (qmp_cmd(&p->src, "cont", NULL, NULL, deadline)) {
				snprintf(vm->rollback_err,
					 sizeof(vm->rollback_err),
					 "cont on the source: %s", p->src.errmsg);
				return -1;
			}
			continue;
		}
		json_object_put(ret);
		sleep_ns(POLL_NS);
	}
	snprintf(vm->rollback_err, sizeof(vm->rollback_err),
		 "the source VM does not run again");
	return -1;
}

static void qemu_detach(struct vmm_vm *vm)
{
	struct qemu_priv *p = P(vm);

	if (!p)
		return;
	qmp_close(&p->src);
	qmp_close(&p->dst);
	p->src_up = p->dst_up = false;
	vmm_fwd_stop(&p->sfwd);
	if (p->rd) {
		/* The forwarders end with the run; the QEMU runs on. */
		vmm_rdest_release(p->rd);
		free(p->rd);
	}
	free(p);
	vm->priv = NULL;
}

/* ---- checkpoint and restore ---- */

static int qemu_pause(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int r = qmp_cmd(&p->src, "stop", NULL, NULL, deadline);

	if (r)
		return qfail(vm, &p->src, r);
	p->stopped_by_us = true;
	p->t_paused = vmm_now_ns();
	return 0;
}

/* The disk node's file and its backing file, from QEMU itself. */
static int qemu_disk_files(struct vmm_vm *vm, char *file, size_t fsize,
			   char *backing, size_t bsize, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	json_object *nodes = NULL, *img;
	size_t i;
	int r;

	file[0] = backing[0] = '\0';
	r = qmp_cmd(&p->src, "query-named-block-nodes", NULL, &nodes, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	for (i = 0; json_object_is_type(nodes, json_type_array) &&
	     i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);

		if (strcmp(qmp_get_str(n, "node-name", ""), vm->conf->disk_node))
			continue;
		snprintf(file, fsize, "%s", qmp_get_str(n, "file", ""));
		if (json_object_object_get_ex(n, "image", &img))
			snprintf(backing, bsize, "%s",
				 qmp_get_str(img, "full-backing-filename", ""));
	}
	json_object_put(nodes);
	if (!file[0]) {
		vmm_vm_fail(vm, "source QEMU has no block node named '%s' (disk-node)",
			    vm->conf->disk_node);
		return -1;
	}
	return 0;
}

/* Every migration capability we manage off: a plain stream to a file. */
static int caps_off(struct vmm_vm *vm, struct qmp *q, int64_t deadline)
{
	json_object *caps = NULL, *set;
	size_t i;
	int k, r;

	r = qmp_cmd(q, "query-migrate-capabilities", NULL, &caps, deadline);
	if (r)
		return qfail(vm, q, r);
	set = json_object_new_array();
	for (i = 0; json_object_is_type(caps, json_type_array) &&
	     i < json_object_array_length(caps); i++) {
		const char *n = qmp_get_str(json_object_array_get_idx(caps, i),
					    "capability", "");

		for (k = 0; k < CAP_N; k++)
			if (strcmp(n, cap_names[k]) == 0)
				json_object_array_add(set, qmp_args(
					"capability", json_object_new_string(n),
					"state", json_object_new_boolean(0), NULL));
	}
	json_object_put(caps);
	if (!json_object_array_length(set)) {
		json_object_put(set);
		return 0;
	}
	r = qmp_cmd(q, "migrate-set-capabilities",
		    qmp_args("capabilities", set, NULL), NULL, deadline);
	return r ? qfail(vm, q, r) : 0;
}

/*
 * The state file travels as an fd: QEMU 7.2 has no file: migration URI
 * (8.2 has), and exec: is unsafe for a file: QEMU closes the pipe at the
 * end and SIGTERMs the child at once (qio_channel_command_close), so a
 * "cat > FILE" still flushing its last buffer can be killed with nothing
 * failing anywhere.  With fd: on a regular file, QEMU's own writes fail
 * (ENOSPC: the migration fails) and the caller fsyncs before it counts.
 * The fd goes over the monitor socket (SCM_RIGHTS, with one blank byte
 * the JSON parser skips), named by getfd; migrate/migrate-incoming
 * "fd:NAME" take it out of the monitor's table.
 */
#define STATE_FD	"ninja-state"

static int send_fd(struct vmm_vm *vm, struct qmp *q, int fd, int64_t deadline)
{
	char blank = ' ';
	struct iovec iov = { .iov_base = &blank, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;
	ssize_t r;

	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do
		r = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r != 1) {
		vmm_vm_fail(vm, "passing the state file to QEMU: %s",
			    r < 0 ? strerror(errno) : "short send");
		return -1;
	}
	r = qmp_cmd(q, "getfd", qmp_args("fdname",
					 json_object_new_string(STATE_FD), NULL),
		    NULL, deadline);
	return r ? qfail(vm, q, (int)r) : 0;
}

/* Poll q's query-migrate until completed (0) or failed (-1). */
static int wait_stream(struct vmm_vm *vm, struct qmp *q, bool outgoing,
		       int64_t deadline)
{
	for (;;) {
		json_object *ret = NULL;
		char st[32];
		int r = qmp_cmd(q, "query-migrate", NULL, &ret, deadline);

		if (r) {
			int64_t end = vmm_now_ns() + 2000000000LL;

			/* A QEMU that cannot load exits: say why (its log). */
			while (!outgoing && dest_alive(vm, NULL, 0) &&
			       vmm_now_ns() < end)
				sleep_ns(20000000);
			if (!outgoing && !dest_alive(vm, NULL, 0))
				return dest_died(vm, "loading the saved state");
			return qfail(vm, q, r);
		}
		snprintf(st, sizeof(st), "%s", qmp_get_str(ret, "status", "none"));
		if (outgoing)
			ram_stats(vm, ret, st);
		if (strcmp(st, "completed") == 0) {
			json_object_put(ret);
			return 0;
		}
		if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
			const char *d = qmp_get_str(ret, "error-desc", NULL);

			vmm_vm_fail(vm, "%s %s%s%s", outgoing ?
				    "saving the state" : "loading the state",
				    st, d ? ": " : "", d ? d : "");
			json_object_put(ret);
			return -1;
		}
		json_object_put(ret);
		if (!outgoing && !dest_alive(vm, NULL, 0))
			return dest_died(vm, "loading the saved state");
		/* A loaded -S destination leaves inmigrate for paused (a
		 * failed load makes QEMU exit: dest_alive above). */
		if (!outgoing && strcmp(st, "setup") && strcmp(st, "active")) {
			r = qmp_cmd(q, "query-status", NULL, &ret, deadline);
			if (r)
				return qfail(vm, q, r);
			snprintf(st, sizeof(st), "%s", qmp_get_str(ret, "status", "?"));
			json_object_put(ret);
			if (strcmp(st, "inmigrate") != 0) {
				if (strcmp(st, "paused") == 0 ||
				    strcmp(st, "prelaunch") == 0)
					return 0;
				vmm_vm_fail(vm, "after loading the state the VM is '%s', not paused",
					    st);
				return -1;
			}
		}
		if (vmm_now_ns() >= deadline) {
			vmm_vm_fail(vm, "%s still '%s' at the deadline",
				    outgoing ? "saving the state" :
				    "loading the state", st);
			if (outgoing)
				qmp_cmd(q, "migrate_cancel", NULL, NULL,
					vmm_now_ns() + 2000000000LL);
			return -2;
		}
		sleep_ns(POLL_NS);
	}
}

static int qemu_save_state(struct vmm_vm *vm, const char *path,
			   int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int fd, r;

	r = caps_off(vm, &p->src, deadline);
	if (r)
		return r;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		vmm_vm_fail(vm, "%s: %s", path, strerror(errno));
		return -1;
	}
	r = send_fd(vm, &p->src, fd, deadline);
	if (!r) {
		r = qmp_cmd(&p->src, "migrate",
			    qmp_args("uri", json_object_new_string("fd:" STATE_FD),
				     NULL), NULL, deadline);
		if (r)
			r = qfail(vm, &p->src, r);
	}
	if (!r)
		r = wait_stream(vm, &p->src, true, deadline);
	if (!r && fsync(fd)) {
		vmm_vm_fail(vm, "writing %s: %s", path, strerror(errno));
		r = -1;
	}
	if (close(fd) && !r) {
		vmm_vm_fail(vm, "writing %s: %s", path, strerror(errno));
		r = -1;
	}
	return r;
}

/* Run again (from paused or from postmigrate: cont re-activates the
 * disks a completed save handed over). */
static int qemu_unpause(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int i;

	for (i = 0; i < 100; i++) {
		json_object *ret = NULL;
		const char *s;
		int r = qmp_cmd(&p->src, "query-status", NULL, &ret, deadline);

		if (r)
			return qfail(vm, &p->src, r);
		s = qmp_get_str(ret, "status", "?");
		if (strcmp(s, "running") == 0) {
			json_object_put(ret);
			p->stopped_by_us = false;
			return 0;
		}
		json_object_put(ret);
		if (qmp_cmd(&p->src, "cont", NULL, NULL, deadline))
			return qfail(vm, &p->src, -1);
		sleep_ns(POLL_NS);
	}
	vmm_vm_fail(vm, "the VM does not run again after cont");
	return -1;
}

static int qemu_quit(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);

	/* The answer may race with the close: either is fine. */
	qmp_cmd(&p->src, "quit", NULL, NULL, deadline);
	qmp_close(&p->src);
	p->src_up = false;
	return 0;
}

static int qemu_start_restore(struct vmm_vm *vm, const char *backing,
			      int64_t deadline)
{
	if (ensure_priv(vm))
		return -1;
	if (vm->conf->dest_host[0]) {
		vmm_vm_fail(vm, "restore onto another host (dest-host %s) is not supported: run the restore on that host",
			    vm->conf->dest_host);
		return -1;
	}
	return start_on(vm, backing, deadline);
}

static int qemu_load_state(struct vmm_vm *vm, const char *path,
			   int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0) {
		vmm_vm_fail(vm, "%s: %s", path, strerror(errno));
		return -1;
	}
	r = send_fd(vm, &p->dst, fd, deadline);
	close(fd);
	if (r)
		return r;
	r = qmp_cmd(&p->dst, "migrate-incoming",
		    qmp_args("uri", json_object_new_string("fd:" STATE_FD), NULL),
		    NULL, deadline);
	if (r)
		return qfail(vm, &p->dst, r);
	return wait_stream(vm, &p->dst, false, deadline);
}

static void qemu_discard(struct vmm_vm *vm)
{
	if (vm->priv)
		kill_dest(vm);
}

static bool qemu_running(struct vmm_vm *vm, char *where, size_t size)
{
	const struct vmm_vm_conf *c = vm->conf;

	if (socket_alive(c->source_qmp)) {
		snprintf(where, size, "%s", c->source_qmp);
		return true;
	}
	if (socket_alive(c->dest_qmp)) {
		snprintf(where, size, "%s", c->dest_qmp);
		return true;
	}
	return false;
}

static void qemu_version(struct vmm_vm *vm, char *out, size_t size)
{
	struct qemu_priv *p = P(vm);
	struct qmp *q = p && p->dst_up ? &p->dst : p ? &p->src : NULL;

	if (!q || !q->ver_major)
		snprintf(out, size, "qemu unknown");
	else
		snprintf(out, size, "qemu %d.%d.%d", q->ver_major,
			 q->ver_minor, q->ver_micro);
}

/* ---- incremental overlays: dirty bitmaps ---- */

#define BITMAP_PREFIX	"ninja-ckpt:"
#define BK_NODE		"ninja-bk"
#define BK_JOB		"ninja-backup"

/* The dirty bitmaps of the disk node (a new array, or NULL). */
static json_object *node_bitmaps(struct vmm_vm *vm, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	json_object *nodes = NULL, *bm, *out = NULL;
	size_t i;

	if (qmp_cmd(&p->src, "query-named-block-nodes", NULL, &nodes, deadline))
		return NULL;
	for (i = 0; json_object_is_type(nodes, json_type_array) &&
	     i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);

		if (strcmp(qmp_get_str(n, "node-name", ""), vm->conf->disk_node) == 0 &&
		    json_object_object_get_ex(n, "dirty-bitmaps", &bm) &&
		    json_object_is_type(bm, json_type_array))
			out = json_object_get(bm);
	}
	json_object_put(nodes);
	return out;
}

static int qemu_disk_bitmap(struct vmm_vm *vm, char *name, size_t size,
			    int64_t deadline)
{
	json_object *bm = node_bitmaps(vm, deadline);
	size_t i;

	name[0] = '\0';
	for (i = 0; bm && i < json_object_array_length(bm); i++) {
		const char *n = qmp_get_str(json_object_array_get_idx(bm, i),
					    "name", "");

		if (strncmp(n, BITMAP_PREFIX, strlen(BITMAP_PREFIX)) == 0)
			snprintf(name, size, "%s", n);
	}
	json_object_put(bm);
	return 0;
}

static int qemu_disk_mark(struct vmm_vm *vm, const char *name, int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	json_object *bm = node_bitmaps(vm, deadline);
	size_t i;
	int r;

	for (i = 0; bm && i < json_object_array_length(bm); i++) {
		const char *n = qmp_get_str(json_object_array_get_idx(bm, i),
					    "name", "");

		if (strncmp(n, BITMAP_PREFIX, strlen(BITMAP_PREFIX)))
			continue;
		r = qmp_cmd(&p->src, "block-dirty-bitmap-remove",
			    qmp_args("node", json_object_new_string(vm->conf->disk_node),
				     "name", json_object_new_string(n), NULL),
			    NULL, deadline);
		if (r) {
			json_object_put(bm);
			return qfail(vm, &p->src, r);
		}
	}
	json_object_put(bm);
	r = qmp_cmd(&p->src, "block-dirty-bitmap-add",
		    qmp_args("node", json_object_new_string(vm->conf->disk_node),
			     "name", json_object_new_string(name), NULL),
		    NULL, deadline);
	return r ? qfail(vm, &p->src, r) : 0;
}

static int qemu_disk_backup(struct vmm_vm *vm, const char *bitmap,
			    const char *target, const char *parent,
			    int64_t deadline)
{
	struct qemu_priv *p = P(vm);
	char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
			 "-b", (char *)parent, (char *)target, NULL };
	json_object *data = NULL;
	int r;

	r = run_tool(vm, argv, deadline);
	if (r)
		return r;
	r = qmp_cmd(&p->src, "blockdev-add",
		    qmp_args("driver", json_object_new_string("qcow2"),
			     "node-name", json_object_new_string(BK_NODE),
			     "file", qmp_args("driver", json_object_new_string("file"),
					      "filename", json_object_new_string(target),
					      NULL), NULL), NULL, deadline);
	if (r)
		return qfail(vm, &p->src, r);
	r = qmp_cmd(&p->src, "blockdev-backup",
		    qmp_args("job-id", json_object_new_string(BK_JOB),
			     "device", json_object_new_string(vm->conf->disk_node),
			     "target", json_object_new_string(BK_NODE),
			     "sync", json_object_new_string("incremental"),
			     "bitmap", json_object_new_string(bitmap), NULL),
		    NULL, deadline);
	if (r) {
		r = qfail(vm, &p->src, r);
	} else {
		r = qmp_wait_event(&p->src, "BLOCK_JOB_COMPLETED", match_job_end,
				   BK_JOB, &data, NULL, deadline);
		if (r)
			r = qfail(vm, &p->src, r);
		else if (qmp_get_str(data, "error", NULL)) {
			vmm_vm_fail(vm, "incremental backup of %s failed: %s",
				    vm->conf->disk_node, qmp_get_str(data, "error", "?"));
			r = -1;
		} else {
			vm->storage_bytes = (uint64_t)qmp_get_int(data, "offset", 0);
		}
		json_object_put(data);
	}
	if (qmp_cmd(&p->src, "blockdev-del",
		    qmp_args("node-name", json_object_new_string(BK_NODE), NULL),
		    NULL, deadline) && !r)
		r = qfail(vm, &p->src, -1);
	return r;
}

const struct vmm_backend vmm_backend_qemu = {
	.name = "qemu",
	.attach = qemu_attach,
	.check_settings = qemu_check_settings,
	.check_dest = qemu_check_dest,
	.check_reach = qemu_check_reach,
	.unplug = qemu_unplug,
	.plug = qemu_plug,
	.start_dest = qemu_start_dest,
	.storage = qemu_storage,
	.transfer = qemu_transfer,
	.commit = qemu_commit,
	.abort = qemu_abort,
	.detach = qemu_detach,
	.pause = qemu_pause,
	.disk_files = qemu_disk_files,
	.save_state = qemu_save_state,
	.unpause = qemu_unpause,
	.quit = qemu_quit,
	.start_restore = qemu_start_restore,
	.load_state = qemu_load_state,
	.discard = qemu_discard,
	.running = qemu_running,
	.version = qemu_version,
	.disk_mark = qemu_disk_mark,
	.disk_bitmap = qemu_disk_bitmap,
	.disk_backup = qemu_disk_backup,
};
