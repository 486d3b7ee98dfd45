// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_checkpoint.c - checkpoint and restore of a whole virtual cluster
 * (see vmm_checkpoint.h and docs/checkpoint.md).  The steps a move also
 * has (guest drain and resume, unplug and plug, starting a paused VM)
 * are the move's own: vmm_guest.c and the backend (vmm_backend.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "vmm_checkpoint.h"
#include "vmm_migrate.h"

#define MANIFEST	"manifest.json"
#define FORMAT		"ninja-checkpoint/1"
#define MANIFEST_MAX	(1 << 20)
#define SHA_HEX		65
#define BUF_SIZE	(1 << 20)

/* Phases: one table per verb, columns in this order. */
enum { P_DRAIN, P_UNPLUG, P_RAM, P_DISK, P_PLUG, P_RESUME, P_TOTAL, P_N };
enum { R_VERIFY, R_START, R_LOAD, R_CONT, R_PLUG, R_RESUME, R_TOTAL };
static const char *const ck_names[P_N] = {
	"drain", "unplug", "save-ram", "save-disk", "plug", "resume", "total",
};
static const char *const rs_names[P_N] = {
	"verify", "start", "load", "cont", "plug", "resume", "total",
};

struct ck_vm {
	struct vmm_vm *vm;
	struct ck *ck;
	int64_t t0[P_N], t1[P_N];
	/* Files in DIR (names only) and what went into them. */
	char ram_name[VMM_ID_MAX + 16], disk_name[VMM_ID_MAX + 16];
	uint64_t ram_bytes, disk_written, disk_len;
	char ram_sha[SHA_HEX], disk_sha[SHA_HEX];
	bool ram_made, disk_made;
	/* The overlay QEMU writes and its backing file; with a parent
	 * (an earlier checkpoint's copy), only the overlay is stored. */
	char overlay[VMM_PATH_MAX], backing[VMM_PATH_MAX];
	char parent[VMM_PATH_MAX], parent_sha[SHA_HEX];
	bool via_bitmap;		/* incremental by dirty bitmap */
	bool paused, failed, started;
	pthread_t th;
	bool th_started;
};

struct ck {
	const struct vmm_cluster *cl;
	const struct vmm_ckpt_opts *o;
	struct vmm_opts mo;
	struct vmm_run *run;
	struct vmm_vm *vms;
	struct ck_vm *v;
	int n;
	bool restore;
	char dir[PATH_MAX];
	uint32_t epoch;
	char site[VMM_ID_MAX];
	char qemu[64];
	const char *result;
	int exit_code;
	char error[1536];
	int64_t t_start, t_end;
};

static int64_t dl(int64_t ms)
{
	return vmm_now_ns() + ms * 1000000;
}

static void cprogress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cprogress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmm_obs_vlog("cluster", fmt, ap);
	va_end(ap);
}

static void pb(struct ck_vm *v, int p)
{
	v->t0[p] = vmm_now_ns();
	v->t1[p] = 0;
}

static void pe(struct ck_vm *v, int p)
{
	v->t1[p] = vmm_now_ns();
}

static double pms(const struct ck_vm *v, int p)
{
	if (!v->t0[p] || !v->t1[p])
		return -1;
	return (v->t1[p] - v->t0[p]) / 1e6;
}

static double span_ms(const struct ck *ck, int p)
{
	int64_t a = 0, b = 0;
	int i;

	for (i = 0; i < ck->n; i++) {
		const struct ck_vm *v = &ck->v[i];

		if (!v->t0[p] || !v->t1[p])
			continue;
		if (!a || v->t0[p] < a)
			a = v->t0[p];
		if (v->t1[p] > b)
			b = v->t1[p];
	}
	return a ? (b - a) / 1e6 : -1;
}

/* ---- files ---- */

/* Characters of the file names a manifest may give. */
static bool safe_path(const char *s)
{
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+,=@/-", *s))
			return false;
	return true;
}

static void hex(const unsigned char *md, unsigned int n, char out[SHA_HEX])
{
	unsigned int i;

	for (i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* sha256 and size of a whole file.  0, or -1 with err. */
static int hash_file(const char *path, char sha[SHA_HEX], uint64_t *size,
		     char *err, size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdn = 0;
	char *buf;
	EVP_MD_CTX *ctx;
	uint64_t tot = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(BUF_SIZE);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		snprintf(err, errlen, "sha256: out of memory or OpenSSL failed");
		EVP_MD_CTX_free(ctx);
		free(buf);
		close(fd);
		return -1;
	}
	while ((r = read(fd, buf, BUF_SIZE)) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)r);
		tot += (uint64_t)r;
	}
	if (r < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	else
		EVP_DigestFinal_ex(ctx, md, &mdn);
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	if (r < 0)
		return -1;
	hex(md, mdn, sha);
	*size = tot;
	return 0;
}

static bool all_zero(const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/*
 * Copy src to a new file dst, sparse (all-zero 64 KiB blocks become
 * holes), fsync'ed; sha256 of the content, bytes actually written, size.
 */
static int copy_file(const char *src, const char *dst, char sha[SHA_HEX],
		     uint64_t *written, uint64_t *len, char *err,
		     size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdn = 0;
	EVP_MD_CTX *ctx;
	uint64_t tot = 0, wr = 0;
	char *buf = NULL;
	int in, out, rc = -1;
	ssize_t r;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "%s: %s", src, strerror(errno));
		return -1;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		snprintf(err, errlen, "%s: %s", dst, strerror(errno));
		close(in);
		return -1;
	}
	buf = malloc(BUF_SIZE);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		snprintf(err, errlen, "sha256: out of memory or OpenSSL failed");
		goto out;
	}
	while ((r = read(in, buf, BUF_SIZE)) > 0) {
		size_t off = 0;

		EVP_DigestUpdate(ctx, buf, (size_t)r);
		while (off < (size_t)r) {
			size_t k = (size_t)r - off > 65536 ? 65536 : (size_t)r - off;

			if (all_zero(buf + off, k)) {
				if (lseek(out, (off_t)k, SEEK_CUR) < 0)
					goto werr;
			} else {
				size_t done = 0;

				while (done < k) {
					ssize_t w = write(out, buf + off + done, k - done);

					if (w < 0 && errno == EINTR)
						continue;
					if (w <= 0)
						goto werr;
					done += (size_t)w;
				}
				wr += k;
			}
			off += k;
		}
		tot += (uint64_t)r;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", src, strerror(errno));
		goto out;
	}
	if (ftruncate(out, (off_t)tot) || fsync(out))
		goto werr;
	EVP_DigestFinal_ex(ctx, md, &mdn);
	hex(md, mdn, sha);
	*written = wr;
	*len = tot;
	rc = 0;
	goto out;
werr:
	snprintf(err, errlen, "writing %s: %s", dst, strerror(errno));
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(in);
	if (close(out) && !rc) {
		snprintf(err, errlen, "writing %s: %s", dst, strerror(errno));
		rc = -1;
	}
	return rc;
}

static void path_in(const struct ck *ck, const char *name, char *out,
		    size_t size)
{
	snprintf(out, size, "%s/%s", ck->dir, name);
}

/* The files this checkpoint made, gone (a checkpoint that did not
 * reach its commit point is no checkpoint). */
static void delete_partial(struct ck *ck)
{
	char p[PATH_MAX + 128];
	int i;

	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		path_in(ck, v->ram_name, p, sizeof(p));
		if (v->ram_name[0])
			unlink(p);
		path_in(ck, v->disk_name, p, sizeof(p));
		if (v->disk_name[0])
			unlink(p);
		v->ram_made = v->disk_made = false;
	}
	path_in(ck, MANIFEST ".tmp", p, sizeof(p));
	unlink(p);
}

/*
 * DIR for a checkpoint: created if missing; an existing one must be
 * empty unless --force (then its manifest goes first, so that what is
 * left is never mistaken for a checkpoint).  Nothing else is changed.
 */
static int prepare_dir(struct ck *ck, bool remove_old)
{
	const char *d = ck->o->dir;
	struct dirent *e;
	char first[256] = "";
	int count = 0;
	DIR *dp;

	if (mkdir(d, 0755) && errno != EEXIST) {
		snprintf(ck->error, sizeof(ck->error), "cannot create %s: %s", d,
			 strerror(errno));
		return -1;
	}
	if (!realpath(d, ck->dir)) {
		snprintf(ck->error, sizeof(ck->error), "%s: %s", d, strerror(errno));
		return -1;
	}
	dp = opendir(ck->dir);
	if (!dp) {
		snprintf(ck->error, sizeof(ck->error), "%s: %s", ck->dir,
			 strerror(errno));
		return -1;
	}
	while ((e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!count++)
			snprintf(first, sizeof(first), "%s", e->d_name);
	}
	closedir(dp);
	if (count && !ck->o->force) {
		snprintf(ck->error, sizeof(ck->error),
			 "checkpoint directory %s is not empty (%d entr%s, e.g. %s): refusing to mix checkpoints; use an empty directory or --force to replace its checkpoint",
			 ck->dir, count, count == 1 ? "y" : "ies", first);
		return -1;
	}
	if (count && remove_old) {
		char p[PATH_MAX + 32];

		path_in(ck, MANIFEST, p, sizeof(p));
		if (unlink(p) && errno != ENOENT) {
			snprintf(ck->error, sizeof(ck->error), "--force: cannot remove %s: %s",
				 p, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* ---- manifest ---- */

static json_object *read_json(const char *path, char *err, size_t errlen)
{
	struct stat st;
	json_object *j;

	if (stat(path, &st)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MANIFEST_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most 1 MiB", path);
		return NULL;
	}
	j = json_object_from_file(path);
	if (!j || !json_object_is_type(j, json_type_object)) {
		snprintf(err, errlen, "%s: not a JSON object (%s)", path,
			 json_util_get_last_err() ? json_util_get_last_err() : "?");
		json_object_put(j);
		return NULL;
	}
	return j;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_int))
		return -1;
	return json_object_get_int64(v);
}

/* A file name of ours inside DIR: no directory part, no dot file. */
static bool plain_name(const char *s)
{
	return s && s[0] && s[0] != '.' && !strchr(s, '/') &&
	       strlen(s) < VMM_ID_MAX + 16 && safe_path(s);
}

/*
 * Is `path` the overlay copy of VM `name` in an earlier checkpoint (its
 * directory's manifest lists it)?  1 with its sha256 and its own parent
 * ("" none), 0 no.
 */
static int lookup_copy(const char *path, const char *name, char sha[SHA_HEX],
		       char *parent, size_t psize, char *psha)
{
	char d[VMM_PATH_MAX], mp[VMM_PATH_MAX + 32], err[256];
	const char *slash = strrchr(path, '/');
	json_object *m, *vms, *par;
	size_t i;

	if (!slash || slash == path)
		return 0;
	snprintf(d, sizeof(d), "%.*s", (int)(slash - path), path);
	snprintf(mp, sizeof(mp), "%s/" MANIFEST, d);
	m = read_json(mp, err, sizeof(err));
	if (!m)
		return 0;
	if (!json_object_object_get_ex(m, "vms", &vms) ||
	    !json_object_is_type(vms, json_type_array)) {
		json_object_put(m);
		return 0;
	}
	for (i = 0; i < json_object_array_length(vms); i++) {
		json_object *e = json_object_array_get_idx(vms, i);
		const char *df = jstr(e, "disk_file"), *ds = jstr(e, "disk_sha256");

		if (!df || !ds || strlen(ds) != SHA_HEX - 1 || strcmp(df, slash + 1) ||
		    strcmp(jstr(e, "name") ? jstr(e, "name") : "", name))
			continue;
		snprintf(sha, SHA_HEX, "%s", ds);
		parent[0] = psha[0] = '\0';
		if (json_object_object_get_ex(e, "parent", &par) &&
		    jstr(par, "file") && jstr(par, "sha256")) {
			snprintf(parent, psize, "%s", jstr(par, "file"));
			snprintf(psha, SHA_HEX, "%s", jstr(par, "sha256"));
		}
		json_object_put(m);
		return 1;
	}
	json_object_put(m);
	return 0;
}

/* A file inside DIR (what --force replaces)? */
static bool in_dir(const struct ck *ck, const char *path)
{
	char d[VMM_PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!slash)
		return false;
	snprintf(d, sizeof(d), "%.*s", (int)(slash - path), path);
	return realpath(d, real) && strcmp(real, ck->dir) == 0;
}

/*
 * The overlay's backing file is an earlier checkpoint's copy of this VM's
 * overlay (a restored VM): then only the overlay is stored now, with that
 * copy as its parent.  Returns 1 (v->parent/parent_sha set), 0 (none),
 * -1 (the parent is in DIR itself).
 */
static int find_parent(struct ck *ck, struct ck_vm *v)
{
	char gp[VMM_PATH_MAX], gsha[SHA_HEX];

	if (!v->backing[0] ||
	    !lookup_copy(v->backing, v->vm->conf->name, v->parent_sha, gp,
			 sizeof(gp), gsha))
		return 0;
	snprintf(v->parent, sizeof(v->parent), "%s", v->backing);
	return in_dir(ck, v->backing) ? -1 : 1;
}

static int write_manifest(struct ck *ck)
{
	json_object *m = json_object_new_object(), *vms = json_object_new_array();
	char tmp[PATH_MAX + 32], fin[PATH_MAX + 32], tb[64];
	time_t now = time(NULL);
	struct tm tm;
	int i, fd, rc = 0;

	gmtime_r(&now, &tm);
	strftime(tb, sizeof(tb), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_object_add(m, "format", json_object_new_string(FORMAT));
	json_object_object_add(m, "cluster", json_object_new_string(ck->cl->name));
	json_object_object_add(m, "cluster_file", json_object_new_string(ck->cl->file));
	json_object_object_add(m, "epoch", json_object_new_int64(ck->epoch));
	json_object_object_add(m, "source_site", json_object_new_string(ck->cl->source_site));
	json_object_object_add(m, "time", json_object_new_string(tb));
	json_object_object_add(m, "hypervisor", json_object_new_string(ck->qemu));
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];
		const struct vmm_vm_conf *c = v->vm->conf;
		json_object *e = json_object_new_object();

		json_object_object_add(e, "name", json_object_new_string(c->name));
		json_object_object_add(e, "ranks", json_object_new_int((int)v->vm->src.ranks));
		json_object_object_add(e, "source_rails", json_object_new_string(c->source_rails));
		json_object_object_add(e, "ram_file", json_object_new_string(v->ram_name));
		json_object_object_add(e, "ram_bytes", json_object_new_int64((int64_t)v->ram_bytes));
		json_object_object_add(e, "ram_sha256", json_object_new_string(v->ram_sha));
		if (v->disk_made) {
			json_object_object_add(e, "disk_node", json_object_new_string(c->disk_node));
			json_object_object_add(e, "disk_file", json_object_new_string(v->disk_name));
			json_object_object_add(e, "disk_bytes", json_object_new_int64((int64_t)v->disk_len));
			json_object_object_add(e, "disk_sha256", json_object_new_string(v->disk_sha));
			json_object_object_add(e, "disk_written", json_object_new_int64((int64_t)v->disk_written));
			json_object_object_add(e, "disk_backing", json_object_new_string(v->backing));
			if (v->parent[0]) {
				json_object *p = json_object_new_object();

				json_object_object_add(p, "file", json_object_new_string(v->parent));
				json_object_object_add(p, "sha256", json_object_new_string(v->parent_sha));
				json_object_object_add(e, "parent", p);
			}
		}
		json_object_array_add(vms, e);
	}
	json_object_object_add(m, "vms", vms);
	path_in(ck, MANIFEST ".tmp", tmp, sizeof(tmp));
	path_in(ck, MANIFEST, fin, sizeof(fin));
	if (json_object_to_file_ext(tmp, m, JSON_C_TO_STRING_PRETTY |
				    JSON_C_TO_STRING_NOSLASHESCAPE)) {
		snprintf(ck->error, sizeof(ck->error), "writing %s: %s", tmp,
			 json_util_get_last_err());
		rc = -1;
	}
	json_object_put(m);
	if (rc)
		return -1;
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) || rename(tmp, fin)) {
		snprintf(ck->error, sizeof(ck->error), "committing %s: %s", fin,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	fd = open(ck->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* ---- report and table ---- */

static void add_ms(json_object *o, const char *k, double ms)
{
	json_object_object_add(o, k, ms < 0 ? NULL : json_object_new_double(
		(double)(int64_t)(ms * 10 + 0.5) / 10));
}

static void report(struct ck *ck)
{
	const char *const *names = ck->restore ? rs_names : ck_names;
	json_object *top, *vms, *ph;
	int i, p;

	if (!ck->o->report)
		return;
	top = json_object_new_object();
	vms = json_object_new_array();
	ph = json_object_new_object();
	json_object_object_add(top, "cluster", json_object_new_string(ck->cl->name));
	json_object_object_add(top, "file", json_object_new_string(ck->cl->file));
	json_object_object_add(top, "operation", json_object_new_string(
		ck->restore ? "restore" : "checkpoint"));
	json_object_object_add(top, "dir", json_object_new_string(ck->dir[0] ? ck->dir : ck->o->dir));
	json_object_object_add(top, ck->restore ? "site" : "source_site",
			       json_object_new_string(ck->restore ? ck->site : ck->cl->source_site));
	if (!ck->restore)
		json_object_object_add(top, "after", json_object_new_string(
			ck->o->stop ? "stop" : "leave-running"));
	json_object_object_add(top, "epoch", json_object_new_int64(ck->epoch));
	json_object_object_add(top, "result", json_object_new_string(ck->result));
	json_object_object_add(top, "exit_code", json_object_new_int(ck->exit_code));
	json_object_object_add(top, "error", ck->error[0] ?
			       json_object_new_string(ck->error) : NULL);
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];
		json_object *e = json_object_new_object(), *vp = json_object_new_object();
		const struct vmm_guest *g = ck->restore ? &v->vm->dst : &v->vm->src;

		json_object_object_add(e, "name", json_object_new_string(v->vm->conf->name));
		json_object_object_add(e, "error", v->vm->err[0] ?
				       json_object_new_string(v->vm->err) : NULL);
		for (p = 0; p < P_N; p++)
			add_ms(vp, names[p], pms(v, p));
		json_object_object_add(e, "phases_ms", vp);
		json_object_object_add(e, "ram_bytes", json_object_new_int64((int64_t)v->ram_bytes));
		json_object_object_add(e, "disk_bytes", json_object_new_int64((int64_t)v->disk_len));
		json_object_object_add(e, "incremental", json_object_new_boolean(v->parent[0] != 0));
		json_object_object_add(e, "parent", v->parent[0] ?
				       json_object_new_string(v->parent) : NULL);
		if (!ck->restore) {
			json_object_object_add(e, "disk_written", json_object_new_int64((int64_t)v->disk_written));
			json_object_object_add(e, "bytes_written", json_object_new_int64(
				(int64_t)(v->ram_bytes + v->disk_written)));
		}
		json_object_object_add(e, "ranks", json_object_new_int((int)g->ranks));
		json_object_object_add(e, "rails", json_object_new_string(g->rails));
		json_object_object_add(e, "plugged", json_object_new_boolean(v->vm->plugged));
		json_object_array_add(vms, e);
	}
	for (p = 0; p < P_N; p++)
		add_ms(ph, names[p], p == P_TOTAL ? (ck->t_end - ck->t_start) / 1e6 :
		       span_ms(ck, p));
	json_object_object_add(top, "phases_ms", ph);
	json_object_object_add(top, "vms", vms);
	if (json_object_to_file_ext(ck->o->report, top, JSON_C_TO_STRING_PRETTY |
				    JSON_C_TO_STRING_NOSLASHESCAPE))
		fprintf(stderr, "ninja-migrate: cannot write report %s: %s\n",
			ck->o->report, json_util_get_last_err());
	json_object_put(top);
}

static void cell(char *b, size_t n, double ms)
{
	if (ms < 0)
		snprintf(b, n, "-");
	else
		snprintf(b, n, ms < 10 ? "%.1f" : "%.0f", ms);
}

static void table(struct ck *ck)
{
	const char *const *names = ck->restore ? rs_names : ck_names;
	char c[32];
	int i, p;

	printf("\nphase times (ms)  ");
	for (p = 0; p < P_N; p++)
		printf("%10s", names[p]);
	printf("%14s\n", ck->restore ? "" : "bytes-written");
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		printf("%-18.18s", v->vm->conf->name);
		for (p = 0; p < P_N; p++) {
			cell(c, sizeof(c), pms(v, p));
			printf("%10s", c);
		}
		if (!ck->restore)
			printf("%14" PRIu64, v->ram_bytes + v->disk_written);
		printf("\n");
	}
	printf("%-18s", "cluster");
	for (p = 0; p < P_N; p++) {
		cell(c, sizeof(c), p == P_TOTAL ? (ck->t_end - ck->t_start) / 1e6 :
		     span_ms(ck, p));
		printf("%10s", c);
	}
	printf("\n\n");
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		printf("%s: state %" PRIu64 " B", v->vm->conf->name, v->ram_bytes);
		if (v->disk_len)
			printf(", overlay %" PRIu64 " B (%" PRIu64 " B written%s%s)",
			       v->disk_len, v->disk_written,
			       v->parent[0] ? ", incremental over " : ", full copy; base not copied",
			       v->parent);
		printf("\n");
		if (v->vm->err[0])
			printf("    error: %s\n", v->vm->err);
		if (v->vm->warn[0])
			printf("    warning: %s\n", v->vm->warn);
	}
	fflush(stdout);
}

static int finish(struct ck *ck)
{
	ck->t_end = vmm_now_ns();
	vmm_obs_close(ck->result, ck->exit_code, (ck->t_end - ck->t_start) / 1e6);
	table(ck);
	report(ck);
	if (ck->error[0])
		fprintf(stderr, "ninja-migrate: %s\n", ck->error);
	cprogress("done: %s (exit %d)", ck->result, ck->exit_code);
	return ck->exit_code;
}

/* ---- common steps ---- */

static struct ck *ck_new(const struct vmm_cluster *cl,
			 const struct vmm_ckpt_opts *o, bool restore)
{
	struct ck *ck = calloc(1, sizeof(*ck));
	int i;

	if (!ck)
		return NULL;
	ck->cl = cl;
	ck->o = o;
	ck->restore = restore;
	ck->mo.verbose = o->verbose;
	ck->mo.quiet = o->quiet;
	ck->mo.report = o->report;
	ck->mo.events_fd = -1;
	ck->n = cl->nvms;
	ck->result = "failed";
	ck->exit_code = VMM_EXIT_USAGE;
	ck->t_start = vmm_now_ns();
	ck->run = vmm_run_new(cl, &ck->mo, &ck->vms);
	ck->v = calloc((size_t)ck->n, sizeof(*ck->v));
	if (!ck->run || !ck->v) {
		vmm_run_free(ck->run);
		free(ck->v);
		free(ck);
		return NULL;
	}
	for (i = 0; i < ck->n; i++) {
		ck->v[i].vm = &ck->vms[i];
		ck->v[i].ck = ck;
	}
	return ck;
}

static void ck_free(struct ck *ck)
{
	vmm_run_free(ck->run);
	free(ck->v);
	free(ck);
}

static int obs_open(struct ck *ck)
{
	struct vmm_obs_conf oc = {
		.quiet = ck->o->quiet, .events_fd = -1, .t_start = ck->t_start,
		.cluster = ck->cl->name, .file = ck->cl->file,
		.operation = ck->restore ? "restore" : "checkpoint",
	};
	char msg[512];

	if (vmm_obs_open(&oc, ck->vms, ck->n, msg, sizeof(msg))) {
		snprintf(ck->error, sizeof(ck->error), "%s", msg);
		return -1;
	}
	return 0;
}

/*
 * Take the cluster lock and open the observers (progress, events, status).
 * Returns 0 with *lockfd set, or the exit status; on a lock failure ck is
 * freed (nothing else to undo), on an observer failure the caller still
 * owns ck and the lock and goes to its common exit.
 */
static int ck_begin(struct ck *ck, int *lockfd, const char *nothing)
{
	char msg[1024];
	int r;

	*lockfd = vmm_lock_cluster(ck->cl, msg, sizeof(msg));
	if (*lockfd < 0) {
		r = *lockfd == -2 ? VMM_EXIT_BUSY : VMM_EXIT_USAGE;
		fprintf(stderr, "ninja-migrate: %s\n", msg);
		ck_free(ck);
		return r;
	}
	if (obs_open(ck)) {
		fprintf(stderr, "ninja-migrate: %s; nothing was %s\n", ck->error,
			nothing);
		return -1;
	}
	vmm_obs_start();
	return 0;
}

/* Put back what unplug removed (where the VM runs now). */
static void plug_back(struct ck *ck, bool at_dest, bool wait)
{
	int i;

	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];
		struct vmm_vm *vm = v->vm;
		const char *spec = at_dest ? vm->conf->dest_device :
				   vm->conf->source_device;
		struct vmm_guest *g = at_dest ? &vm->dst : &vm->src;

		if (!spec[0] || (!at_dest && !vm->unplugged) || v->failed)
			continue;
		g->t_link_mark = vmm_now_ns();
		g->t_link = 0;
		pb(v, P_PLUG);
		vm->err[0] = '\0';
		if (vm->be->plug(vm, spec, dl(ck->cl->plug_ms))) {
			pe(v, P_PLUG);
			snprintf(vm->warn, sizeof(vm->warn), "plug %s: %s", spec, vm->err);
			vmm_progress(vm, "FAILED to plug %s: %s", spec, vm->err);
			snprintf(g->rails, sizeof(g->rails), "tcp");
			continue;
		}
		vm->plugged = true;
		if ((ck->cl->link_wait || wait) && g->open &&
		    vmm_guest_wait_link(g, dl(ck->cl->link_ms)))
			snprintf(vm->warn, sizeof(vm->warn),
				 "no link-up/port-active EVENT within %.0f s of device_add",
				 ck->cl->link_ms / 1000.0);
		pe(v, P_PLUG);
		vmm_progress(vm, "plug: %s added (%.0f ms)", spec, pms(v, P_PLUG));
	}
}

/* RESUME (or CANCEL) the epoch at every open guest of the group. */
static int resume_all(struct ck *ck, bool at_dest, bool cancel)
{
	struct vmm_guest *gs[VMM_MAX_VMS];
	int i, bad = 0;

	for (i = 0; i < ck->n; i++) {
		struct vmm_guest *g = at_dest ? &ck->vms[i].dst : &ck->vms[i].src;

		gs[i] = g->open ? g : NULL;
		pb(&ck->v[i], P_RESUME);
	}
	cprogress("%s %u to every guest", cancel ? "CANCEL" : "RESUME", ck->epoch);
	vmm_guests_finish(gs, ck->n, ck->epoch, cancel, dl(ck->cl->resume_ms));
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		if (gs[i] && gs[i]->done) {
			v->t0[P_RESUME] = gs[i]->t_sent;
			v->t1[P_RESUME] = gs[i]->t_done;
			vmm_progress(v->vm, "RESUMED %u, %u rank(s), rails %s (%.0f ms)",
				     ck->epoch, gs[i]->ranks, gs[i]->rails,
				     pms(v, P_RESUME));
		} else {
			v->t0[P_RESUME] = 0;
			bad++;
			vmm_vm_fail(v->vm, "no RESUMED after %s %u: %s",
				    cancel ? "CANCEL" : "RESUME", ck->epoch,
				    gs[i] && gs[i]->errmsg[0] ? gs[i]->errmsg :
				    "deadline");
		}
	}
	return bad;
}

/* ---- checkpoint ---- */

/*
 * The overlay, the VM paused (disks flushed, still active): what the
 * dirty bitmap of the previous checkpoint recorded (a VM that ran on
 * since), or the overlay file itself (over an earlier checkpoint's copy
 * after a restore, or over the base); then a new bitmap for the next one.
 */
static int save_disk(struct ck *ck, struct ck_vm *v, const char *target)
{
	struct vmm_vm *vm = v->vm;
	char bm[VMM_PATH_MAX + 32], gp[VMM_PATH_MAX], gsha[SHA_HEX], err[512];
	const char *prev;
	struct stat st;
	int r;

	if (vm->be->disk_bitmap(vm, bm, sizeof(bm), dl(10000)))
		return -1;
	prev = bm[0] ? bm + strlen("ninja-ckpt:") : NULL;
	if (prev && !v->parent[0] && !in_dir(ck, prev) && access(prev, R_OK) == 0 &&
	    lookup_copy(prev, vm->conf->name, v->parent_sha, gp, sizeof(gp), gsha)) {
		snprintf(v->parent, sizeof(v->parent), "%s", prev);
		v->via_bitmap = true;
		r = vm->be->disk_backup(vm, bm, target, prev, dl(ck->cl->storage_ms));
		if (!r && hash_file(target, v->disk_sha, &v->disk_len, err, sizeof(err))) {
			vmm_vm_fail(vm, "%s", err);
			r = -1;
		}
		if (r)
			return -1;
		v->disk_written = stat(target, &st) ? v->disk_len :
				  (uint64_t)st.st_blocks * 512;
	} else if (copy_file(v->overlay, target, v->disk_sha, &v->disk_written,
			     &v->disk_len, err, sizeof(err))) {
		vmm_vm_fail(vm, "copying the overlay: %s", err);
		return -1;
	}
	snprintf(bm, sizeof(bm), "ninja-ckpt:%s", target);
	return vm->be->disk_mark(vm, bm, dl(10000));
}

/* Runs `worker` for every VM at once (one thread each; in this thread if
 * one cannot be made) and returns how many failed. */
static int each_vm(struct ck *ck, void *(*worker)(void *))
{
	int i, nfail = 0;

	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		v->th_started = pthread_create(&v->th, NULL, worker, v) == 0;
		if (!v->th_started)
			worker(v);
	}
	for (i = 0; i < ck->n; i++)
		if (ck->v[i].th_started)
			pthread_join(ck->v[i].th, NULL);
	for (i = 0; i < ck->n; i++)
		if (ck->v[i].failed)
			nfail++;
	return nfail;
}

static void *save_worker(void *arg)
{
	struct ck_vm *v = arg;
	struct ck *ck = v->ck;
	struct vmm_vm *vm = v->vm;
	char p[PATH_MAX + 128], err[512];

	if (vm->conf->disk_node[0]) {
		path_in(ck, v->disk_name, p, sizeof(p));
		pb(v, P_DISK);
		v->disk_made = true;	/* a file to delete on failure */
		if (save_disk(ck, v, p)) {
			pe(v, P_DISK);
			v->failed = true;
			vmm_progress(vm, "FAILED to save the overlay: %s", vm->err);
			return NULL;
		}
		pe(v, P_DISK);
		vmm_progress(vm, "save-disk: overlay %s, %" PRIu64 " B written (%s) (%.0f ms)",
			     v->overlay, v->disk_written,
			     v->via_bitmap ? "incremental: the dirty bitmap since the last checkpoint" :
			     v->parent[0] ? "incremental: the overlay over the restored checkpoint" :
			     "full overlay, base not copied", pms(v, P_DISK));
	}
	path_in(ck, v->ram_name, p, sizeof(p));
	pb(v, P_RAM);
	v->ram_made = true;
	if (vm->be->save_state(vm, p, dl(ck->cl->ram_ms)) ||
	    hash_file(p, v->ram_sha, &v->ram_bytes, err, sizeof(err))) {
		pe(v, P_RAM);
		if (!vm->err[0])
			vmm_vm_fail(vm, "%s", err);
		v->failed = true;
		vmm_progress(vm, "FAILED to save the state: %s", vm->err);
		return NULL;
	}
	pe(v, P_RAM);
	vmm_progress(vm, "save-ram: %" PRIu64 " B of device state + RAM (%.0f ms)",
		     v->ram_bytes, pms(v, P_RAM));
	return NULL;
}

/* Drain every guest; 0, or the exit code (cancelled) with ck->error. */
static int drain(struct ck *ck)
{
	struct vmm_guest *gs[VMM_MAX_VMS];
	int i, r;

	for (i = 0; i < ck->n; i++)
		gs[i] = &ck->vms[i].src;
	if (vmm_guests_open(gs, ck->n, dl(10000))) {
		for (i = 0; i < ck->n; i++)
			if (gs[i]->failed)
				snprintf(ck->error, sizeof(ck->error), "%s; nothing was changed",
					 gs[i]->errmsg);
		return VMM_EXIT_USAGE;
	}
	for (i = 0; i < ck->n; i++)
		if (strcmp(gs[i]->ch.node_phase, "running") != 0) {
			snprintf(ck->error, sizeof(ck->error),
				 "%s: guest is in phase '%s' (epoch %u): a migration or checkpoint is in progress or was interrupted; nothing was changed",
				 gs[i]->vm, gs[i]->ch.node_phase, gs[i]->ch.node_epoch);
			return VMM_EXIT_USAGE;
		}
	ck->epoch = ninja_epoch_next(vmm_guests_max_epoch(gs, ck->n));
	vmm_obs_epoch(ck->epoch);
	cprogress("drain: QUIESCE %u to %d guest(s)", ck->epoch, ck->n);
	r = vmm_guests_quiesce(gs, ck->n, ck->epoch, dl(ck->cl->quiesce_ms));
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		if (gs[i]->done) {
			v->t0[P_DRAIN] = gs[i]->t_sent;
			v->t1[P_DRAIN] = gs[i]->t_done;
			vmm_progress(v->vm, "drain: SAFE %u, %u rank(s) (%.0f ms)",
				     ck->epoch, gs[i]->ranks, pms(v, P_DRAIN));
		}
		if (!r && ck->vms[i].conf->expect_ranks >= 0 &&
		    gs[i]->ranks < (unsigned int)ck->vms[i].conf->expect_ranks) {
			snprintf(ck->error, sizeof(ck->error),
				 "%s: only %u of %d expected rank(s) SAFE (cluster file 'ranks'): cancelled, the job continues, no checkpoint",
				 gs[i]->vm, gs[i]->ranks, ck->vms[i].conf->expect_ranks);
			r = -3;
		}
	}
	if (r) {
		if (r != -3) {
			for (i = 0; i < ck->n; i++)
				if (!gs[i]->done) {
					snprintf(ck->error, sizeof(ck->error),
						 "drain epoch %u failed: %s: %s; cancelled, the job continues, no checkpoint",
						 ck->epoch, gs[i]->vm,
						 gs[i]->errmsg[0] ? gs[i]->errmsg : "not SAFE in time");
					break;
				}
		}
		resume_all(ck, false, true);
		ck->result = "cancelled";
		return VMM_EXIT_DRAIN;
	}
	cprogress("drain: every guest SAFE for epoch %u", ck->epoch);
	return 0;
}

/* After a checkpoint (or its failure) with --leave-running, or after a
 * failure with --stop: the cluster runs on where it was. */
static int revive(struct ck *ck, bool cancel)
{
	int i, bad = 0;

	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];

		if (!v->paused)
			continue;
		v->vm->err[0] = '\0';
		if (v->vm->be->unpause(v->vm, dl(ck->cl->switch_ms))) {
			vmm_progress(v->vm, "FAILED to run again: %s", v->vm->err);
			v->failed = true;
			bad++;
			continue;
		}
		v->paused = false;
	}
	/* Every device goes back, also to a VM whose save failed. */
	for (i = 0; i < ck->n; i++)
		ck->v[i].failed = false;
	/* A CANCEL resumes the ranks on their old rails: the device
	 * up first (as a move's rollback does). */
	plug_back(ck, false, cancel);
	return bad + resume_all(ck, false, cancel);
}

/* The run of one verb, or NULL after saying why: a backend without the
 * checkpoint operations (libvirt today) is refused before anything is
 * touched. */
static struct ck *ck_open(const struct vmm_cluster *cl,
			  const struct vmm_ckpt_opts *o, bool restore)
{
	const struct vmm_backend *be = vmm_backend_find(cl->backend);
	struct ck *ck;
	int i;

	if (!be || !be->save_state || !be->load_state || !be->pause ||
	    !be->start_restore) {
		fprintf(stderr, "ninja-migrate: %s: backend = %s has no checkpoint support (use backend = qemu); nothing was changed\n",
			restore ? "restore" : "checkpoint", cl->backend);
		return NULL;
	}
	/* The state files pass over the monitor socket (SCM_RIGHTS), and
	 * "no copy of the cluster still runs" is asked of each monitor:
	 * neither crosses an ssh forward. */
	for (i = 0; i < cl->nvms; i++)
		if (cl->vms[i].source_host[0]) {
			fprintf(stderr, "ninja-migrate: %s: %s runs on host %s (source-host or its site's host): %s needs the cluster's QEMUs on this machine; run ninja-migrate there; nothing was changed\n",
				restore ? "restore" : "checkpoint", cl->vms[i].name,
				cl->vms[i].source_host,
				restore ? "restore" : "checkpoint");
			return NULL;
		}
	ck = ck_new(cl, o, restore);
	if (!ck)
		fprintf(stderr, "ninja-migrate: out of memory\n");
	return ck;
}

int vmm_checkpoint_run(const struct vmm_cluster *cl,
		       const struct vmm_ckpt_opts *o)
{
	struct ck *ck;
	char msg[1024];
	int lockfd = -1, i, r = VMM_EXIT_USAGE, nfail = 0;

	ck = ck_open(cl, o, false);
	if (!ck)
		return VMM_EXIT_USAGE;
	if (prepare_dir(ck, false)) {
		fprintf(stderr, "ninja-migrate: %s; nothing was changed\n", ck->error);
		ck_free(ck);
		return VMM_EXIT_USAGE;
	}
	r = ck_begin(ck, &lockfd, "changed");
	if (r > 0)
		return r;
	if (r < 0) {
		r = VMM_EXIT_USAGE;
		goto out;
	}
	cprogress("checkpoint of %d VM(s) at site %s to %s, then %s", ck->n,
		  cl->source_site, ck->dir, o->stop ? "stop" : "resume");
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];
		struct vmm_vm *vm = v->vm;

		snprintf(v->ram_name, sizeof(v->ram_name), "%s.state", vm->conf->name);
		if (vm->be->attach(vm, dl(10000))) {
			snprintf(ck->error, sizeof(ck->error), "%s: monitor: %s; nothing was changed",
				 vm->conf->name, vm->err);
			goto report;
		}
		if (!vm->conf->disk_node[0])
			continue;
		snprintf(v->disk_name, sizeof(v->disk_name), "%s.qcow2", vm->conf->name);
		if (vm->be->disk_files(vm, v->overlay, sizeof(v->overlay), v->backing,
				       sizeof(v->backing), dl(10000))) {
			snprintf(ck->error, sizeof(ck->error), "%s: %s; nothing was changed",
				 vm->conf->name, vm->err);
			goto report;
		}
		if (find_parent(ck, v) < 0) {
			snprintf(ck->error, sizeof(ck->error),
				 "%s: its overlay's backing file %s is a checkpoint in %s itself: replacing it would destroy the VM's disk; use another directory",
				 vm->conf->name, v->backing, ck->dir);
			goto report;
		}
	}
	ck->vms[0].be->version(&ck->vms[0], ck->qemu, sizeof(ck->qemu));
	r = drain(ck);
	if (r) {
		ck->exit_code = r;
		goto report;
	}
	/* From here on DIR changes: --force drops the old manifest first. */
	if (prepare_dir(ck, true)) {
		resume_all(ck, false, true);
		ck->result = "cancelled";
		goto report;
	}
	for (i = 0; i < ck->n; i++) {
		char p[PATH_MAX + 128];

		path_in(ck, ck->v[i].ram_name, p, sizeof(p));
		unlink(p);
		path_in(ck, ck->v[i].disk_name, p, sizeof(p));
		if (ck->v[i].disk_name[0])
			unlink(p);
	}
	/* Unplug, pause. */
	for (i = 0; i < ck->n && !nfail; i++) {
		struct ck_vm *v = &ck->v[i];
		struct vmm_vm *vm = v->vm;

		if (vm->conf->source_device[0]) {
			pb(v, P_UNPLUG);
			r = vm->be->unplug(vm, vm->conf->source_device, dl(cl->unplug_ms));
			pe(v, P_UNPLUG);
			if (r < 0) {
				nfail++;
				v->failed = true;
				break;
			}
			vm->unplugged = r == 0;
			vmm_progress(vm, "unplug: %s removed (%.0f ms)",
				     vm->conf->source_device, pms(v, P_UNPLUG));
		}
	}
	for (i = 0; i < ck->n && !nfail; i++) {
		struct ck_vm *v = &ck->v[i];

		if (v->vm->be->pause(v->vm, dl(10000))) {
			nfail++;
			v->failed = true;
			break;
		}
		v->paused = true;
	}
	if (!nfail) {
		cprogress("every VM paused: saving state and overlays");
		nfail = each_vm(ck, save_worker);
	}
	if (!nfail && vmm_interrupted()) {
		nfail++;
		snprintf(ck->vms[0].err, sizeof(ck->vms[0].err), "interrupted by a signal");
	}
	/* The commit point: every VM's files are there, or none is kept. */
	if (!nfail && write_manifest(ck) == 0) {
		cprogress("commit: %s/" MANIFEST " written: the checkpoint of epoch %u is complete",
			  ck->dir, ck->epoch);
		if (o->stop) {
			for (i = 0; i < ck->n; i++) {
				ck->vms[i].be->quit(&ck->vms[i], dl(5000));
				vmm_guest_close(&ck->vms[i].src);
				ck->v[i].paused = false;
			}
			ck->result = "checkpointed-stopped";
			ck->exit_code = VMM_EXIT_OK;
			cprogress("every VM stopped (restore with: ninja-migrate restore --from %s)",
				  ck->dir);
			goto report;
		}
		if (revive(ck, false)) {
			ck->result = "checkpointed-with-errors";
			ck->exit_code = VMM_EXIT_PARTIAL;
			snprintf(ck->error, sizeof(ck->error),
				 "the checkpoint in %s is complete, but the cluster did not resume cleanly (see below)",
				 ck->dir);
		} else {
			ck->result = "checkpointed";
			ck->exit_code = VMM_EXIT_OK;
		}
		goto report;
	}
	/* No checkpoint: delete what was written, the cluster runs on. */
	msg[0] = '\0';
	for (i = 0; i < ck->n; i++)
		if (ck->vms[i].err[0]) {
			snprintf(msg, sizeof(msg), "%s: %s", ck->vms[i].conf->name,
				 ck->vms[i].err);
			break;
		}
	if (!msg[0])
		snprintf(msg, sizeof(msg), "%s", ck->error);
	delete_partial(ck);
	r = revive(ck, true);
	snprintf(ck->error, sizeof(ck->error),
		 "no checkpoint: %s; the partial files in %s were deleted; %s",
		 msg, ck->dir, r ? "the cluster did NOT resume cleanly (see below)" :
		 "the cluster runs on (ranks resumed on their rails)");
	ck->result = r ? "failed-not-resumed" : "failed-resumed";
	ck->exit_code = r ? VMM_EXIT_BROKEN : VMM_EXIT_ROLLBACK;
report:
	r = finish(ck);
out:
	if (lockfd >= 0)
		close(lockfd);
	ck_free(ck);
	return r;
}

/* ---- restore ---- */

/* The parent's own parents, up the chain (each listed in its
 * checkpoint's manifest, each file's sha256 recomputed). */
static int verify_ancestors(struct ck *ck, const char *name, const char *pf)
{
	char cur[VMM_PATH_MAX], rec[SHA_HEX], gp[VMM_PATH_MAX], gsha[SHA_HEX];
	char sha[SHA_HEX], err[512];
	uint64_t sz;
	int depth;

	snprintf(cur, sizeof(cur), "%s", pf);
	for (depth = 0; depth < 64; depth++) {
		if (!lookup_copy(cur, name, rec, gp, sizeof(gp), gsha) || !gp[0])
			return 0;
		err[0] = '\0';
		if (hash_file(gp, sha, &sz, err, sizeof(err)) || strcmp(sha, gsha)) {
			snprintf(ck->error, sizeof(ck->error),
				 "VM %s: %s, an older checkpoint this one builds on, is %s",
				 name, gp, err[0] ? "missing" : "changed");
			return -1;
		}
		snprintf(cur, sizeof(cur), "%s", gp);
	}
	snprintf(ck->error, sizeof(ck->error), "VM %s: checkpoint chain longer than 64", name);
	return -1;
}

/* Verify the manifest against DIR and the cluster file; fill ck->v.
 * 0, or -1 with ck->error. */
/* DIR's file NAME exists, has `want_bytes` bytes and sha256 `want_sha`
 * (the manifest's); its size in *bytes.  Else ck->error says which. */
static int verify_file(struct ck *ck, const char *vm, const char *what,
		       const char *name, const char *want_sha,
		       int64_t want_bytes, uint64_t *bytes)
{
	char p[PATH_MAX + 128], sha[SHA_HEX], err[512];

	path_in(ck, name, p, sizeof(p));
	if (hash_file(p, sha, bytes, err, sizeof(err))) {
		snprintf(ck->error, sizeof(ck->error), "VM %s: %s missing or unreadable: %s",
			 vm, what, err);
		return -1;
	}
	if (strcmp(sha, want_sha) || (int64_t)*bytes != want_bytes) {
		snprintf(ck->error, sizeof(ck->error),
			 "VM %s: %s changed since the checkpoint (sha256 %.12s..., manifest %.12s...; %" PRIu64 " B)",
			 vm, p, sha, want_sha, *bytes);
		return -1;
	}
	return 0;
}

static int verify(struct ck *ck, json_object **out)
{
	char p[PATH_MAX + 128], err[512], sha[SHA_HEX];
	json_object *m, *vms;
	const char *s;
	uint64_t sz;
	int i;
	size_t k;

	if (!realpath(ck->o->dir, ck->dir)) {
		snprintf(ck->error, sizeof(ck->error), "%s: %s", ck->o->dir, strerror(errno));
		return -1;
	}
	path_in(ck, MANIFEST, p, sizeof(p));
	m = read_json(p, err, sizeof(err));
	if (!m) {
		snprintf(ck->error, sizeof(ck->error), "no checkpoint in %s: %s", ck->dir, err);
		return -1;
	}
	*out = m;
	s = jstr(m, "format");
	if (!s || strcmp(s, FORMAT)) {
		snprintf(ck->error, sizeof(ck->error), "%s: format '%s', expected " FORMAT,
			 p, s ? s : "none");
		return -1;
	}
	s = jstr(m, "cluster");
	if (!s || strcmp(s, ck->cl->name)) {
		snprintf(ck->error, sizeof(ck->error),
			 "the checkpoint is of cluster '%s', the cluster file %s describes '%s'",
			 s ? s : "?", ck->cl->file, ck->cl->name);
		return -1;
	}
	if (jint(m, "epoch") <= 0 || jint(m, "epoch") > UINT32_MAX) {
		snprintf(ck->error, sizeof(ck->error), "%s: no valid epoch", p);
		return -1;
	}
	ck->epoch = (uint32_t)jint(m, "epoch");
	if (!json_object_object_get_ex(m, "vms", &vms) ||
	    !json_object_is_type(vms, json_type_array) ||
	    json_object_array_length(vms) != (size_t)ck->n) {
		snprintf(ck->error, sizeof(ck->error),
			 "the checkpoint holds %d VM(s), the cluster file %s has %d",
			 json_object_is_type(vms, json_type_array) ?
			 (int)json_object_array_length(vms) : 0, ck->cl->file, ck->n);
		return -1;
	}
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];
		const struct vmm_vm_conf *c = v->vm->conf;
		json_object *e = NULL, *par;
		const char *rf, *rs, *df, *ds;

		for (k = 0; k < json_object_array_length(vms); k++) {
			json_object *x = json_object_array_get_idx(vms, k);

			if (jstr(x, "name") && !strcmp(jstr(x, "name"), c->name))
				e = x;
		}
		if (!e) {
			snprintf(ck->error, sizeof(ck->error),
				 "VM %s of the cluster file is not in the checkpoint", c->name);
			return -1;
		}
		rf = jstr(e, "ram_file");
		rs = jstr(e, "ram_sha256");
		df = jstr(e, "disk_file");
		ds = jstr(e, "disk_sha256");
		if (!plain_name(rf) || !rs || (df && (!plain_name(df) || !ds))) {
			snprintf(ck->error, sizeof(ck->error), "%s: VM %s: bad file entries", p, c->name);
			return -1;
		}
		if (!!df != !!c->disk_node[0]) {
			snprintf(ck->error, sizeof(ck->error),
				 "VM %s: the checkpoint %s an overlay, the cluster file %s disk-node",
				 c->name, df ? "has" : "has no", c->disk_node[0] ? "sets" : "sets no");
			return -1;
		}
		snprintf(v->ram_name, sizeof(v->ram_name), "%s", rf);
		if (verify_file(ck, c->name, "state file", rf, rs,
				jint(e, "ram_bytes"), &sz))
			return -1;
		v->ram_bytes = sz;
		if (!df)
			continue;
		snprintf(v->disk_name, sizeof(v->disk_name), "%s", df);
		if (verify_file(ck, c->name, "overlay copy", df, ds,
				jint(e, "disk_bytes"), &sz))
			return -1;
		v->disk_len = sz;
		if (json_object_object_get_ex(e, "parent", &par)) {
			const char *pf = jstr(par, "file"), *ps = jstr(par, "sha256");

			if (!pf || pf[0] != '/' || !ps) {
				snprintf(ck->error, sizeof(ck->error), "VM %s: bad parent entry", c->name);
				return -1;
			}
			err[0] = '\0';
			if (hash_file(pf, sha, &sz, err, sizeof(err)) || strcmp(sha, ps)) {
				snprintf(ck->error, sizeof(ck->error),
					 "VM %s: the parent checkpoint's overlay %s is %s (this checkpoint is incremental over it)",
					 c->name, pf, err[0] ? "missing" : "changed");
				return -1;
			}
			snprintf(v->parent, sizeof(v->parent), "%s", pf);
			if (verify_ancestors(ck, c->name, pf))
				return -1;
		}
	}
	return 0;
}

static void *restore_worker(void *arg)
{
	struct ck_vm *v = arg;
	struct ck *ck = v->ck;
	struct vmm_vm *vm = v->vm;
	char disk[PATH_MAX + 128], st[PATH_MAX + 128];

	path_in(ck, v->disk_name, disk, sizeof(disk));
	path_in(ck, v->ram_name, st, sizeof(st));
	pb(v, R_START);
	v->started = true;
	if (vm->be->start_restore(vm, v->disk_name[0] ? disk : vm->conf->base,
				  dl(ck->cl->start_ms))) {
		pe(v, R_START);
		v->failed = true;
		vmm_progress(vm, "FAILED to start: %s", vm->err);
		return NULL;
	}
	pe(v, R_START);
	vmm_progress(vm, "start: QEMU pid %ld up, paused, overlay %s over %s (%.0f ms)",
		     vm->dest_pid, vm->conf->dest_overlay,
		     v->disk_name[0] ? disk : vm->conf->base, pms(v, R_START));
	pb(v, R_LOAD);
	if (vm->be->load_state(vm, st, dl(ck->cl->ram_ms))) {
		pe(v, R_LOAD);
		v->failed = true;
		vmm_progress(vm, "FAILED to load %s: %s", st, vm->err);
		return NULL;
	}
	pe(v, R_LOAD);
	vmm_progress(vm, "load: %" PRIu64 " B of state loaded (%.0f ms)", v->ram_bytes,
		     pms(v, R_LOAD));
	return NULL;
}

int vmm_restore_run(const struct vmm_cluster *cl,
		    const struct vmm_ckpt_opts *o)
{
	struct ck *ck;
	struct vmm_guest *gs[VMM_MAX_VMS];
	json_object *m = NULL;
	char msg[1024];
	int lockfd = -1, i, r = VMM_EXIT_USAGE, nfail = 0;

	ck = ck_open(cl, o, true);
	if (!ck)
		return VMM_EXIT_USAGE;
	snprintf(ck->site, sizeof(ck->site), "%s", cl->dest_site);
	r = ck_begin(ck, &lockfd, "started");
	if (r > 0)
		return r;
	if (r < 0) {
		r = VMM_EXIT_USAGE;
		goto out;
	}
	for (i = 0; i < ck->n; i++)
		pb(&ck->v[i], R_VERIFY);
	r = verify(ck, &m);
	for (i = 0; i < ck->n; i++)
		pe(&ck->v[i], R_VERIFY);
	if (r) {
		size_t l = strlen(ck->error);

		snprintf(ck->error + l, sizeof(ck->error) - l,
			 ": refusing to restore; nothing was started");
		ck->result = "refused";
		goto report;
	}
	cprogress("verify: manifest of epoch %u from site %s (%s, %s): every file's sha256 matches",
		  ck->epoch, jstr(m, "source_site") ? jstr(m, "source_site") : "?",
		  jstr(m, "time") ? jstr(m, "time") : "?",
		  jstr(m, "hypervisor") ? jstr(m, "hypervisor") : "?");
	/* Two copies of one job must never run. */
	for (i = 0; i < ck->n; i++) {
		struct vmm_vm *vm = &ck->vms[i];
		char where[VMM_PATH_MAX];

		if (vm->be->running(vm, where, sizeof(where))) {
			snprintf(ck->error, sizeof(ck->error),
				 "%s still runs (its monitor %s answers): two copies of one job must never run; stop the cluster first; refusing to restore, nothing was started",
				 vm->conf->name, where);
			ck->result = "refused";
			goto report;
		}
		if (vm->conf->disk_node[0] && access(vm->conf->dest_overlay, F_OK) == 0) {
			if (!o->force) {
				snprintf(ck->error, sizeof(ck->error),
					 "%s: dest-overlay %s exists (an earlier restore's disk?): refusing to replace it without --force; nothing was started",
					 vm->conf->name, vm->conf->dest_overlay);
				ck->result = "refused";
				goto report;
			}
			unlink(vm->conf->dest_overlay);
		}
	}
	cprogress("restore of %d VM(s) at site %s from %s", ck->n, ck->site, ck->dir);
	nfail = each_vm(ck, restore_worker);
	if (nfail || vmm_interrupted()) {
		msg[0] = '\0';
		for (i = 0; i < ck->n; i++)
			if (ck->v[i].failed) {
				snprintf(msg, sizeof(msg), "%s: %s", ck->vms[i].conf->name,
					 ck->vms[i].err);
				break;
			}
		for (i = 0; i < ck->n; i++)
			if (ck->v[i].started)
				ck->vms[i].be->discard(&ck->vms[i]);
		snprintf(ck->error, sizeof(ck->error),
			 "restore failed: %s; every restored VM was stopped, %s is untouched",
			 msg[0] ? msg : "interrupted by a signal", ck->dir);
		ck->result = "failed";
		ck->exit_code = VMM_EXIT_ROLLBACK;
		goto report;
	}
	/* Every VM loaded and paused: run them all, together. */
	cprogress("every VM loaded: cont");
	for (i = 0; i < ck->n; i++) {
		struct ck_vm *v = &ck->v[i];
		struct vmm_vm *vm = v->vm;

		pb(v, R_CONT);
		if (vm->be->commit(vm, dl(cl->switch_ms))) {
			vmm_progress(vm, "FAILED to run: %s", vm->err);
			nfail++;
		}
		pe(v, R_CONT);
		snprintf(vm->dst.endpoint, sizeof(vm->dst.endpoint), "%s",
			 vm->conf->dest_chan);
		gs[i] = &vm->dst;
	}
	if (vmm_guests_open(gs, ck->n, dl(cl->switch_ms)))
		nfail++;
	for (i = 0; i < ck->n; i++) {
		struct vmm_guest *g = gs[i];

		if (g->open && (strcmp(g->ch.node_phase, "safe") ||
				g->ch.node_epoch != ck->epoch)) {
			vmm_vm_fail(&ck->vms[i], "guest says phase '%s' epoch %u, the checkpoint was taken SAFE at epoch %u",
				    g->ch.node_phase, g->ch.node_epoch, ck->epoch);
			nfail++;
		} else if (!g->open) {
			vmm_vm_fail(&ck->vms[i], "guest channel %s: %s", g->endpoint,
				    g->errmsg);
		}
	}
	plug_back(ck, true, false);
	nfail += resume_all(ck, true, false);
	if (nfail) {
		ck->result = "restored-with-errors";
		ck->exit_code = VMM_EXIT_PARTIAL;
		snprintf(ck->error, sizeof(ck->error),
			 "the cluster runs at site %s, but %d step(s) failed (see below)",
			 ck->site, nfail);
	} else {
		ck->result = "restored";
		ck->exit_code = VMM_EXIT_OK;
	}
report:
	r = finish(ck);
out:
	json_object_put(m);
	if (lockfd >= 0)
		close(lockfd);
	ck_free(ck);
	return r;
}
