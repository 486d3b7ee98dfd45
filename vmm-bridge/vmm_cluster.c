// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_cluster.c - parser of the ninja-migrate cluster file (INI style; see
 * vmm_cluster.h and docs/vmm-bridge.md).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "vmm_cluster.h"
#include "vmm_remote.h"

#define MAX_KEYS	32
/* The longest unix socket path (sun_path less its terminating NUL). */
#define SUN_PATH_MAX	(sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* A VM's raw key=value pairs before defaults and placeholders. */
struct raw_kv {
	char key[32];
	char *val;
	int line;
};

struct raw_vm {
	char name[VMM_ID_MAX];
	int line;
	struct raw_kv kv[MAX_KEYS];
	int n;
};

struct parser {
	struct vmm_cluster *c;
	const char *fname;
	char *err;
	size_t errlen;
	struct raw_vm defaults;
	struct raw_vm *vms;
	int nvms, cap_vms;
};

static int perr(struct parser *p, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int perr(struct parser *p, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (line > 0)
		n = snprintf(p->err, p->errlen, "%s:%d: ", p->fname, line);
	else
		n = snprintf(p->err, p->errlen, "%s: ", p->fname);
	if (n < 0 || (size_t)n >= p->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

const char *vmm_mode_name(enum vmm_mode m)
{
	return m == VMM_MODE_STOPPED ? "stopped" :
	       m == VMM_MODE_LIVE ? "live" : "auto";
}

/* Keys a [vm] (or [defaults]) section may have. */
static const char *const vm_keys[] = {
	"source-qmp", "source-chan", "dest-qmp", "dest-chan", "dest-command",
	"dest-log", "pidfile", "source-device", "dest-device", "disk-node",
	"base", "source-overlay", "dest-overlay", "migrate-uri", "nbd-uri",
	"ranks",
	/* backend = libvirt */
	"domain", "source-uri", "dest-uri", "source-device-xml",
	"dest-device-xml",
	/* backend = qemu, VMs on other hosts */
	"dest-host", "source-host", NULL
};

/* Keys of one backend only: given with the other, they are errors. */
static const char *const qemu_only_keys[] = {
	"source-qmp", "source-chan", "dest-qmp", "dest-chan", "dest-command",
	"dest-log", "pidfile", "source-device", "dest-device", "base",
	"source-overlay", "dest-overlay", "dest-host", "source-host", NULL
};
static const char *const libvirt_only_keys[] = {
	"domain", "source-uri", "dest-uri", "source-device-xml",
	"dest-device-xml", NULL
};

static bool in_list(const char *const *l, const char *k)
{
	for (; *l; l++)
		if (strcmp(*l, k) == 0)
			return true;
	return false;
}

static bool is_vm_key(const char *k)
{
	int i;

	for (i = 0; vm_keys[i]; i++)
		if (strcmp(vm_keys[i], k) == 0)
			return true;
	return false;
}

static char *trim(char *s)
{
	char *e;

	while (*s && isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int set_str(struct parser *p, int line, const char *key, char *dst,
		   size_t size, const char *val)
{
	if (strlen(val) >= size)
		return perr(p, line, "%s: value longer than %zu bytes", key,
			    size - 1);
	memcpy(dst, val, strlen(val) + 1);
	return 0;
}

/* The longest duration and the largest size a cluster file may give. */
#define DURATION_MAX_MS	(7LL * 86400 * 1000)
#define SIZE_MAX_BYTES	((uint64_t)INT64_MAX)

/*
 * "30", "30s", "500ms", "2m", "1.5s" -> milliseconds.  Only plain decimal
 * digits with at most one '.' are taken: strtod alone would also take
 * "nan", "inf", "-3", "0x10" and "1e9" (and a NaN converted to an integer
 * is undefined behaviour).  NULL on success, else why not.
 */
static const char *parse_duration(const char *v, int64_t *ms)
{
	const char *unit = v + strspn(v, "0123456789."), *q;
	unsigned int dots = 0;
	double d, mult;

	for (q = v; q < unit; q++)
		dots += *q == '.';
	if (*v == '-')
		return "negative";
	if (strncasecmp(v, "nan", 3) == 0 || strncasecmp(v, "inf", 3) == 0)
		return "not a finite number";
	if (unit == v || dots > 1 || (size_t)(unit - v) == dots)
		return "not a decimal number";
	if (*unit == '\0' || strcmp(unit, "s") == 0)
		mult = 1000;
	else if (strcmp(unit, "ms") == 0)
		mult = 1;
	else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
		mult = 60000;
	else
		return "unknown unit (s, ms or m)";
	/* Digits only: strtod cannot fail, but may give HUGE_VAL. */
	d = strtod(v, NULL) * mult;
	if (!(d <= (double)DURATION_MAX_MS))
		return "longer than 7 days";
	*ms = (int64_t)d;
	return *ms > 0 ? NULL : "zero";
}

/*
 * "100M", "1G", "500k", "12345" (bytes/s; k/M/G are powers of 1024) up to
 * INT64_MAX (QMP sizes are JSON integers).  NULL on success, else why not.
 */
static const char *parse_size(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n;
	unsigned int shift = 0;

	if (*v == '-')
		return "negative";
	if (!isdigit((unsigned char)v[0]))
		return "not a number";
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno == ERANGE)
		return "too large";
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return "unknown unit (k, M or G)";
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return "unknown unit (k, M or G)";
	if (n > SIZE_MAX_BYTES >> shift)
		return "too large";
	*out = (uint64_t)n << shift;
	return NULL;
}

/* "yes"/"no" (also on/off, true/false). */
static const char *parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "true"))
		*out = true;
	else if (!strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "false"))
		*out = false;
	else
		return "expected yes or no";
	return NULL;
}

/* A plain decimal integer in [lo, hi]. */
static const char *parse_int(const char *v, int lo, int hi, int *out)
{
	char *end;
	long n;

	if (!isdigit((unsigned char)v[0]))
		return "not a number";
	errno = 0;
	n = strtol(v, &end, 10);
	if (*end || errno)
		return "not a number";
	if (n < lo || n > hi)
		return "out of range";
	*out = (int)n;
	return NULL;
}

int vmm_tuning_set(struct vmm_tuning *t, const char *k, const char *v,
		   char *err, size_t errlen)
{
	const char *why = NULL, *want = NULL;

	if (strcmp(k, "max-bandwidth") == 0) {
		why = parse_size(v, &t->max_bandwidth);
		want = "bytes/s like 100M";
	} else if (strcmp(k, "max-downtime") == 0) {
		/* QEMU's downtime-limit: at most 2000 s. */
		why = parse_duration(v, &t->max_downtime_ms);
		if (!why && t->max_downtime_ms > 2000000)
			why = "longer than 2000 s";
		want = "a duration like 300ms or 1s";
	} else if (strcmp(k, "auto-converge") == 0) {
		why = parse_bool(v, &t->auto_converge);
		want = "yes or no";
	} else if (strcmp(k, "multifd-channels") == 0) {
		/* 0: off; QEMU takes 1..255. */
		why = parse_int(v, 0, 255, &t->multifd_channels);
		want = "0 (off) to 255 parallel streams";
	} else if (strcmp(k, "compress") == 0) {
		if (strcmp(v, "zstd") == 0)
			t->compress_zstd = true;
		else if (strcmp(v, "none") == 0)
			t->compress_zstd = false;
		else
			why = "not supported (zstd with multifd, or none)";
		want = "zstd or none";
	} else if (strcmp(k, "postcopy") == 0) {
		why = parse_bool(v, &t->postcopy);
		want = "yes or no";
	} else if (strcmp(k, "tls-creds") == 0 || strcmp(k, "tls-hostname") == 0) {
		bool dir = k[4] == 'c';
		char *dst = dir ? t->tls_dir : t->tls_hostname;
		size_t size = dir ? sizeof(t->tls_dir) : sizeof(t->tls_hostname);
		const char *q;

		want = dir ? "a directory with ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem" :
		       "a host name";
		if (!v[0] || strlen(v) >= size)
			why = "empty or too long";
		else if (dir && v[0] != '/')
			why = "not an absolute path";
		for (q = v; !why && *q; q++)
			if (!dir && !isalnum((unsigned char)*q) && !strchr(".-_", *q))
				why = "not a host name";
		if (!why)
			snprintf(dst, size, "%s", v);
	} else if (strcmp(k, "postcopy-after") == 0) {
		why = parse_int(v, 1, 1000, &t->postcopy_after);
		want = "a number of pre-copy passes, 1 to 1000";
	} else {
		return 1;
	}
	if (why) {
		snprintf(err, errlen, "%s: expected %s, got '%s' (%s)", k, want,
			 v, why);
		return -1;
	}
	return 0;
}

int vmm_tuning_check(const struct vmm_tuning *t, char *err, size_t errlen)
{
	if (t->compress_zstd && !t->multifd_channels) {
		snprintf(err, errlen, "compress = zstd needs multifd-channels >= 1 (QEMU compresses multifd streams only)");
		return -1;
	}
	if (t->postcopy && t->multifd_channels) {
		snprintf(err, errlen, "postcopy and multifd-channels cannot be combined (QEMU does not support post-copy over multifd); drop one");
		return -1;
	}
	if (t->tls_hostname[0] && !t->tls_dir[0]) {
		snprintf(err, errlen, "tls-hostname is set but tls-creds is not (give the credentials directory)");
		return -1;
	}
	if (t->postcopy_after && !t->postcopy) {
		snprintf(err, errlen, "postcopy-after is set but postcopy is off (set postcopy = yes, or --postcopy)");
		return -1;
	}
	return 0;
}

static int cluster_key(struct parser *p, int line, const char *k,
		       const char *v)
{
	struct vmm_cluster *c = p->c;
	static const struct {
		const char *key;
		size_t off;
	} durs[] = {
		{ "quiesce-timeout", offsetof(struct vmm_cluster, quiesce_ms) },
		{ "unplug-timeout", offsetof(struct vmm_cluster, unplug_ms) },
		{ "start-timeout", offsetof(struct vmm_cluster, start_ms) },
		{ "storage-timeout", offsetof(struct vmm_cluster, storage_ms) },
		{ "ram-timeout", offsetof(struct vmm_cluster, ram_ms) },
		{ "switch-timeout", offsetof(struct vmm_cluster, switch_ms) },
		{ "plug-timeout", offsetof(struct vmm_cluster, plug_ms) },
		{ "link-timeout", offsetof(struct vmm_cluster, link_ms) },
		{ "resume-timeout", offsetof(struct vmm_cluster, resume_ms) },
	};
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		if (strcmp(k, durs[i].key) == 0) {
			why = parse_duration(v, (int64_t *)((char *)c + durs[i].off));
			if (why)
				return perr(p, line,
					    "%s: expected a duration like 30, 30s, 500ms or 2m, got '%s' (%s)",
					    k, v, why);
			return 0;
		}
	}
	if (strcmp(k, "name") == 0)
		return set_str(p, line, k, c->name, sizeof(c->name), v);
	if (strcmp(k, "source-site") == 0)
		return set_str(p, line, k, c->source_site,
			       sizeof(c->source_site), v);
	if (strcmp(k, "dest-site") == 0)
		return set_str(p, line, k, c->dest_site, sizeof(c->dest_site),
			       v);
	if (strcmp(k, "run-dir") == 0)
		return set_str(p, line, k, c->run_dir, sizeof(c->run_dir), v);
	if (strcmp(k, "lock") == 0)
		return set_str(p, line, k, c->lock, sizeof(c->lock), v);
	if (strcmp(k, "backend") == 0) {
		if (strcmp(v, "libvirt") == 0) {
#ifndef HAVE_LIBVIRT
			return perr(p, line,
				    "backend = libvirt: this ninja-migrate was built without the libvirt backend (configure found no libvirt-dev; install it and rebuild, or configure --with-libvirt)");
#endif
		} else if (strcmp(v, "qemu") != 0) {
			return perr(p, line,
				    "backend: expected 'qemu' (the embedded QEMU backend) or 'libvirt', got '%s'",
				    v);
		}
		return set_str(p, line, k, c->backend, sizeof(c->backend), v);
	}
	if (strcmp(k, "persist-dest") == 0 || strcmp(k, "undefine-source") == 0) {
		const char *bwhy = parse_bool(v, k[0] == 'p' ? &c->persist_dest :
					      &c->undefine_source);

		if (bwhy)
			return perr(p, line, "%s: %s, got '%s'", k, bwhy, v);
		return 0;
	}
	if (strcmp(k, "mode") == 0) {
		if (strcmp(v, "auto") == 0)
			c->mode = VMM_MODE_AUTO;
		else if (strcmp(v, "live") == 0)
			c->mode = VMM_MODE_LIVE;
		else if (strcmp(v, "stopped") == 0)
			c->mode = VMM_MODE_STOPPED;
		else
			return perr(p, line,
				    "mode: expected 'auto', 'live' or 'stopped', got '%s'",
				    v);
		return 0;
	}
	{
		char why2[256];
		int r = vmm_tuning_set(&c->tune, k, v, why2, sizeof(why2));

		if (r < 0)
			return perr(p, line, "%s", why2);
		if (r == 0)
			return 0;
	}
	if (strcmp(k, "upgrade") == 0) {
		if (strcmp(v, "live") == 0)
			c->link_wait = false;
		else if (strcmp(v, "wait") == 0)
			c->link_wait = true;
		else
			return perr(p, line, "upgrade: expected live or wait, got '%s'", v);
		return 0;
	}
	if (strcmp(k, "quit-source") == 0) {
		if (strcmp(v, "yes") == 0)
			c->quit_source = true;
		else if (strcmp(v, "no") == 0)
			c->quit_source = false;
		else
			return perr(p, line, "quit-source: expected yes or no");
		return 0;
	}
	return perr(p, line, "unknown key '%s' in [cluster]", k);
}

static int site_key(struct parser *p, int line, struct vmm_site *s,
		    const char *k, const char *v)
{
	if (strcmp(k, "device") == 0) {
		s->device_set = true;
		if (strcmp(v, "none") == 0)
			v = "";
		return set_str(p, line, k, s->device, sizeof(s->device), v);
	}
	if (strcmp(k, "device-xml") == 0) {
		if (strcmp(v, "none") == 0)
			v = "";
		if (v[0] && v[0] != '<')
			return perr(p, line, "device-xml: expected a libvirt device XML ('<hostdev ...>...</hostdev>', '<interface ...>') or none, got '%.40s'",
				    v);
		return set_str(p, line, k, s->device_xml, sizeof(s->device_xml), v);
	}
	if (strcmp(k, "uri") == 0)
		return set_str(p, line, k, s->uri, sizeof(s->uri), v);
	if (strcmp(k, "chan-root") == 0) {
		if (v[0] && v[0] != '/')
			return perr(p, line, "chan-root: expected an absolute directory, got '%s'", v);
		return set_str(p, line, k, s->chan_root, sizeof(s->chan_root), v);
	}
	if (strcmp(k, "rails") == 0) {
		s->rails_set = true;
		return set_str(p, line, k, s->rails, sizeof(s->rails), v);
	}
	if (strcmp(k, "host") == 0 || strcmp(k, "ssh") == 0) {
		char why[300];
		bool host = k[0] == 'h';

		if (host ? vmm_remote_check_host(v, why, sizeof(why)) :
			   vmm_remote_check_ssh(v, why, sizeof(why)))
			return perr(p, line, "%s: %s", k, why);
		return set_str(p, line, k, host ? s->host : s->ssh,
			       host ? sizeof(s->host) : sizeof(s->ssh), v);
	}
	if (strcmp(k, "qemu") == 0) {
		if (!v[0])
			return perr(p, line, "qemu: expected the QEMU command of site %s, got nothing",
				    s->name);
		return set_str(p, line, k, s->qemu, sizeof(s->qemu), v);
	}
	return perr(p, line, "unknown key '%s' in [site %s]", k, s->name);
}

static int raw_add(struct parser *p, struct raw_vm *r, int line,
		   const char *k, const char *v)
{
	int i;

	if (!is_vm_key(k))
		return perr(p, line, "unknown key '%s' in [%s%s]", k,
			    r == &p->defaults ? "defaults" : "vm ",
			    r == &p->defaults ? "" : r->name);
	for (i = 0; i < r->n; i++)
		if (strcmp(r->kv[i].key, k) == 0)
			return perr(p, line, "'%s' given twice (first on line %d)",
				    k, r->kv[i].line);
	if (r->n == MAX_KEYS)
		return perr(p, line, "too many keys");
	snprintf(r->kv[r->n].key, sizeof(r->kv[r->n].key), "%s", k);
	r->kv[r->n].val = strdup(v);
	r->kv[r->n].line = line;
	if (!r->kv[r->n].val)
		return perr(p, line, "out of memory");
	r->n++;
	return 0;
}

static const struct raw_kv *raw_get(const struct raw_vm *r, const char *k)
{
	int i;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->kv[i].key, k) == 0)
			return &r->kv[i];
	return NULL;
}

struct subst {
	const char *name;
	const char *val;
};

/* Expand {placeholders} of in into out; -1 (message) if unknown/too long. */
static int expand(struct parser *p, int line, const char *key,
		  const char *in, const struct subst *subs, char *out,
		  size_t size)
{
	size_t o = 0;

	while (*in) {
		if (*in == '{') {
			const char *close = strchr(in, '}');
			const struct subst *s;
			size_t n;

			if (!close)
				return perr(p, line, "%s: unclosed '{'", key);
			n = (size_t)(close - in - 1);
			for (s = subs; s->name; s++)
				if (strlen(s->name) == n &&
				    strncmp(s->name, in + 1, n) == 0)
					break;
			if (!s->name)
				return perr(p, line,
					    "%s: unknown placeholder {%.*s}",
					    key, (int)n, in + 1);
			if (!s->val || !s->val[0])
				return perr(p, line,
					    "%s: placeholder {%.*s} has no value here",
					    key, (int)n, in + 1);
			if (o + strlen(s->val) >= size)
				return perr(p, line, "%s: too long once expanded",
					    key);
			memcpy(out + o, s->val, strlen(s->val));
			o += strlen(s->val);
			in = close + 1;
			continue;
		}
		if (o + 1 >= size)
			return perr(p, line, "%s: too long once expanded", key);
		out[o++] = *in++;
	}
	out[o] = '\0';
	return 0;
}

/* Value of a VM key (own, then [defaults]), expanded; "" if absent. */
static int vm_val(struct parser *p, const struct raw_vm *r, const char *k,
		  const struct subst *subs, char *out, size_t size,
		  bool required)
{
	const struct raw_kv *kv = raw_get(r, k);

	if (!kv)
		kv = raw_get(&p->defaults, k);
	if (!kv) {
		out[0] = '\0';
		if (required)
			return perr(p, r->line, "[vm %s]: missing '%s'",
				    r->name, k);
		return 0;
	}
	return expand(p, kv->line, k, kv->val, subs, out, size);
}

static bool valid_uri(const char *u)
{
	if (strncmp(u, "unix:", 5) == 0)
		return u[5] == '/';
	if (strncmp(u, "tcp:", 4) == 0)
		return strchr(u + 4, ':') != NULL;
	return false;
}

/* "unix:/x" -> "/x" (for QEMU options that want a path). */
static const char *bare(const char *spec)
{
	return strncmp(spec, "unix:", 5) == 0 ? spec + 5 : spec;
}

/* ranks = N (0..256, the most a node serves): SAFE must count N. */
static int vm_expect_ranks(struct parser *p, const struct raw_vm *r,
			   const struct subst *subs, struct vmm_vm_conf *vm)
{
	char v[32], *end;
	unsigned long n;

	vm->expect_ranks = -1;
	if (vm_val(p, r, "ranks", subs, v, sizeof(v), false))
		return -1;
	if (!v[0])
		return 0;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || !isdigit((unsigned char)v[0]) ||
	    n > 256)
		return perr(p, r->line,
			    "[vm %s]: ranks: expected the number of MPI ranks in the VM (0..256), got '%s'",
			    r->name, v);
	vm->expect_ranks = (int)n;
	return 0;
}

/* A key of the other backend in [vm] or [defaults]: an error. */
static int wrong_backend_key(struct parser *p, const struct raw_vm *r,
			     const char *const *keys, const char *other)
{
	const struct raw_vm *rs[2] = { r, &p->defaults };
	int i, k;

	for (k = 0; k < 2; k++)
		for (i = 0; i < rs[k]->n; i++)
			if (in_list(keys, rs[k]->kv[i].key))
				return perr(p, rs[k]->kv[i].line,
					    "'%s' is a key of backend = %s (this cluster file uses backend = %s)",
					    rs[k]->kv[i].key, other, p->c->backend);
	return 0;
}

/* uri of a VM at a site: its own key, else the site's; "" is an error. */
static int vm_uri(struct parser *p, const struct raw_vm *r, const char *key,
		  const struct vmm_site *s, const struct subst *subs,
		  char *out, size_t size)
{
	if (vm_val(p, r, key, subs, out, size, false))
		return -1;
	if (!out[0])
		snprintf(out, size, "%s", s->uri);
	if (!out[0])
		return perr(p, r->line,
			    "[vm %s]: no libvirt URI for site %s (give 'uri' in [site %s] or '%s')",
			    r->name, s->name, s->name, key);
	return 0;
}

/* The VM's device XML at a site: its own key, else the site's. */
static int vm_device_xml(struct parser *p, const struct raw_vm *r,
			 const char *key, const struct vmm_site *s,
			 const struct subst *subs, char *out, size_t size)
{
	const struct raw_kv *kv = raw_get(r, key);

	if (!kv)
		kv = raw_get(&p->defaults, key);
	if (kv) {
		if (expand(p, kv->line, key, kv->val, subs, out, size))
			return -1;
	} else if (expand(p, r->line, "device-xml", s->device_xml, subs, out,
			  size)) {
		return -1;
	}
	if (strcmp(out, "none") == 0)
		out[0] = '\0';
	if (out[0] && out[0] != '<')
		return perr(p, kv ? kv->line : r->line,
			    "[vm %s]: %s: expected a libvirt device XML or none",
			    r->name, key);
	return 0;
}

/* The RESUME rails= hint at each end: the site's `rails`, else verbs,tcp
 * where the VM has a device there and tcp where it has none. */
static void set_rails(struct vmm_vm_conf *vm, const struct vmm_site *src,
		      const struct vmm_site *dst)
{
	snprintf(vm->source_rails, sizeof(vm->source_rails), "%s",
		 src->rails_set ? src->rails :
		 vm->source_device[0] ? "verbs,tcp" : "tcp");
	snprintf(vm->dest_rails, sizeof(vm->dest_rails), "%s",
		 dst->rails_set ? dst->rails :
		 vm->dest_device[0] ? "verbs,tcp" : "tcp");
}

/* backend = libvirt: domain, URIs, device XML, disk target, URIs of the
 * RAM and disk streams. */
static int finish_vm_libvirt(struct parser *p, struct raw_vm *r,
			     struct vmm_vm_conf *vm, const struct subst *subs)
{
	struct vmm_cluster *c = p->c;
	const struct vmm_site *src = vmm_cluster_site(c, c->source_site);
	const struct vmm_site *dst = vmm_cluster_site(c, c->dest_site);

	if (wrong_backend_key(p, r, qemu_only_keys, "qemu"))
		return -1;
	if (src->device_set || dst->device_set)
		return perr(p, 0, "[site %s]: 'device' is QEMU -device syntax; with backend = libvirt give 'device-xml'",
			    src->device_set ? src->name : dst->name);
	if (vm_val(p, r, "domain", subs, vm->domain, sizeof(vm->domain), false) ||
	    vm_uri(p, r, "source-uri", src, subs, vm->source_uri,
		   sizeof(vm->source_uri)) ||
	    vm_uri(p, r, "dest-uri", dst, subs, vm->dest_uri,
		   sizeof(vm->dest_uri)) ||
	    vm_device_xml(p, r, "source-device-xml", src, subs,
			  vm->source_device, sizeof(vm->source_device)) ||
	    vm_device_xml(p, r, "dest-device-xml", dst, subs,
			  vm->dest_device, sizeof(vm->dest_device)) ||
	    vm_val(p, r, "disk-node", subs, vm->disk_node,
		   sizeof(vm->disk_node), false) ||
	    vm_expect_ranks(p, r, subs, vm))
		return -1;
	if (!vm->domain[0])
		snprintf(vm->domain, sizeof(vm->domain), "%s", vm->name);
	if (strcmp(vm->disk_node, "none") == 0)
		vm->disk_node[0] = '\0';
	if (strcmp(vm->source_uri, vm->dest_uri) == 0)
		return perr(p, r->line,
			    "[vm %s]: source and destination are the same libvirt host (%s)",
			    vm->name, vm->source_uri);
	snprintf(vm->source_chan_root, sizeof(vm->source_chan_root), "%s",
		 src->chan_root);
	snprintf(vm->dest_chan_root, sizeof(vm->dest_chan_root), "%s",
		 dst->chan_root);
	/* What the orchestrator shows as the VM's monitors. */
	snprintf(vm->source_qmp, sizeof(vm->source_qmp), "%s", vm->source_uri);
	snprintf(vm->dest_qmp, sizeof(vm->dest_qmp), "%s", vm->dest_uri);
	if (vm_val(p, r, "migrate-uri", subs, vm->migrate_uri,
		   sizeof(vm->migrate_uri), false) ||
	    vm_val(p, r, "nbd-uri", subs, vm->nbd_uri, sizeof(vm->nbd_uri),
		   false))
		return -1;
	if ((vm->migrate_uri[0] && !valid_uri(vm->migrate_uri)) ||
	    (vm->nbd_uri[0] && !valid_uri(vm->nbd_uri)))
		return perr(p, r->line,
			    "[vm %s]: migrate-uri/nbd-uri must be unix:/PATH or tcp:HOST:PORT",
			    vm->name);
	set_rails(vm, src, dst);
	return 0;
}

/*
 * The host of one end of a VM (key dest-host or source-host, else the
 * site's host; "" = this machine) and its ssh template.
 */
static int vm_host(struct parser *p, const struct raw_vm *r, const char *key,
		   const struct vmm_site *site, const struct subst *subs,
		   char *host, size_t hsize, char *ssh, size_t ssize)
{
	const struct raw_kv *kv = raw_get(r, key);
	char why[300];

	if (!kv)
		kv = raw_get(&p->defaults, key);
	if (vm_val(p, r, key, subs, host, hsize, false))
		return -1;
	if (kv && vmm_remote_check_host(host, why, sizeof(why)))
		return perr(p, kv->line, "%s: %s", key, why);
	if (!kv)
		snprintf(host, hsize, "%s", site->host);
	if (host[0])
		snprintf(ssh, ssize, "%s",
			 site->ssh[0] ? site->ssh : "ssh -o BatchMode=yes root@{host}");
	return 0;
}

/*
 * A monitor or channel socket on another host: *spec (unix:/PATH there)
 * moves to remote and becomes the local end of its ssh forward,
 * unix:{run}/{name}.{site}.{what}.fwd.
 */
static int forwarded(struct parser *p, const struct raw_vm *r,
		     const struct vmm_vm_conf *vm, const char *site,
		     const char *what, char *spec, char *remote)
{
	const struct vmm_cluster *c = p->c;

	snprintf(remote, VMM_PATH_MAX, "%s", spec + 5);
	if (snprintf(spec, VMM_PATH_MAX, "unix:%s/%s.%s.%s.fwd", c->run_dir,
		     vm->name, site, what) > 5 + (int)SUN_PATH_MAX)
		return perr(p, r->line,
			    "[vm %s]: run-dir is too long for the forwarded sockets (a unix socket path has at most %zu bytes)",
			    vm->name, (size_t)SUN_PATH_MAX);
	return 0;
}

/*
 * A destination on another host: the streams host to host, dest-qmp/
 * dest-chan forwarded.
 */
static int remote_dest(struct parser *p, const struct raw_vm *r,
		       struct vmm_vm_conf *vm, const struct vmm_site *dst,
		       const struct subst *subs)
{
	const char *site = p->c->dest_site;

	if (vm_host(p, r, "dest-host", dst, subs, vm->dest_host,
		    sizeof(vm->dest_host), vm->dest_ssh, sizeof(vm->dest_ssh)))
		return -1;
	if (!vm->dest_host[0])
		return 0;
	if (strncmp(vm->migrate_uri, "tcp:", 4) ||
	    (vm->disk_node[0] && strncmp(vm->nbd_uri, "tcp:", 4)))
		return perr(p, r->line,
			    "[vm %s]: its destination is on host %s: migrate-uri%s must be tcp:HOST:PORT with that host's address (RAM and storage go host to host, not through ssh)",
			    vm->name, vm->dest_host,
			    vm->disk_node[0] ? " and nbd-uri" : "");
	if (strncmp(vm->dest_qmp, "unix:/", 6) ||
	    strncmp(vm->dest_chan, "unix:/", 6))
		return perr(p, r->line,
			    "[vm %s]: its destination is on host %s: dest-qmp and dest-chan must be unix:/PATH on that host (reached through ssh forwards)",
			    vm->name, vm->dest_host);
	if (forwarded(p, r, vm, site, "qmp", vm->dest_qmp, vm->remote_qmp) ||
	    forwarded(p, r, vm, site, "chan", vm->dest_chan, vm->remote_chan))
		return -1;
	return 0;
}

/* A source on another host: source-qmp/source-chan forwarded. */
static int remote_source(struct parser *p, const struct raw_vm *r,
			 struct vmm_vm_conf *vm, const struct vmm_site *src,
			 const struct subst *subs)
{
	const char *site = p->c->source_site;

	if (vm_host(p, r, "source-host", src, subs, vm->source_host,
		    sizeof(vm->source_host), vm->source_ssh,
		    sizeof(vm->source_ssh)))
		return -1;
	if (!vm->source_host[0])
		return 0;
	if (strncmp(vm->source_qmp, "unix:/", 6) ||
	    strncmp(vm->source_chan, "unix:/", 6))
		return perr(p, r->line,
			    "[vm %s]: it runs on host %s: source-qmp and source-chan must be unix:/PATH on that host (reached through ssh forwards)",
			    vm->name, vm->source_host);
	if (forwarded(p, r, vm, site, "src-qmp", vm->source_qmp,
		      vm->remote_src_qmp) ||
	    forwarded(p, r, vm, site, "src-chan", vm->source_chan,
		      vm->remote_src_chan))
		return -1;
	return 0;
}

static int finish_vm(struct parser *p, struct raw_vm *r,
		     struct vmm_vm_conf *vm)
{
	struct vmm_cluster *c = p->c;
	const struct vmm_site *src = vmm_cluster_site(c, c->source_site);
	const struct vmm_site *dst = vmm_cluster_site(c, c->dest_site);
	char dev_src[VMM_SPEC_MAX], dev_dst[VMM_SPEC_MAX];
	struct subst subs[20];
	int n = 0;

	memset(vm, 0, sizeof(*vm));
	snprintf(vm->name, sizeof(vm->name), "%s", r->name);
	vm->line = r->line;
	subs[n++] = (struct subst){ "name", vm->name };
	subs[n++] = (struct subst){ "run", c->run_dir };
	subs[n++] = (struct subst){ "site", c->dest_site };
	subs[n++] = (struct subst){ "source-site", c->source_site };
	subs[n] = (struct subst){ NULL, NULL };
	if (strcmp(c->backend, "libvirt") == 0) {
		if (src->host[0] || dst->host[0] || src->ssh[0] || dst->ssh[0])
			return perr(p, 0, "[site %s]: host and ssh are keys of backend = qemu (with libvirt, give the host in the site's uri)",
				    src->host[0] || src->ssh[0] ? src->name :
				    dst->name);
		return finish_vm_libvirt(p, r, vm, subs);
	}
	if (wrong_backend_key(p, r, libvirt_only_keys, "libvirt"))
		return -1;
	if (src->device_xml[0] || dst->device_xml[0] || src->uri[0] ||
	    dst->uri[0] || src->chan_root[0] || dst->chan_root[0])
		return perr(p, 0, "[site %s]: uri, device-xml and chan-root are keys of backend = libvirt (this cluster file uses backend = qemu)",
			    src->device_xml[0] || src->uri[0] || src->chan_root[0] ?
			    src->name : dst->name);

	if (vm_val(p, r, "source-qmp", subs, vm->source_qmp,
		   sizeof(vm->source_qmp), true) ||
	    vm_val(p, r, "source-chan", subs, vm->source_chan,
		   sizeof(vm->source_chan), true) ||
	    vm_val(p, r, "dest-qmp", subs, vm->dest_qmp,
		   sizeof(vm->dest_qmp), true) ||
	    vm_val(p, r, "dest-chan", subs, vm->dest_chan,
		   sizeof(vm->dest_chan), true) ||
	    vm_val(p, r, "disk-node", subs, vm->disk_node,
		   sizeof(vm->disk_node), false) ||
	    vm_val(p, r, "base", subs, vm->base, sizeof(vm->base), false) ||
	    vm_val(p, r, "source-overlay", subs, vm->source_overlay,
		   sizeof(vm->source_overlay), false) ||
	    vm_val(p, r, "dest-overlay", subs, vm->dest_overlay,
		   sizeof(vm->dest_overlay), false) ||
	    vm_val(p, r, "source-device", subs, dev_src, sizeof(dev_src),
		   false) ||
	    vm_val(p, r, "dest-device", subs, dev_dst, sizeof(dev_dst),
		   false))
		return -1;
	if (strcmp(vm->disk_node, "none") == 0)
		vm->disk_node[0] = '\0';
	if (vm_expect_ranks(p, r, subs, vm))
		return -1;
	if (vm->disk_node[0] && (!vm->base[0] || !vm->dest_overlay[0]))
		return perr(p, r->line,
			    "[vm %s]: disk-node %s needs 'base' (the image already at the destination) and 'dest-overlay'",
			    vm->name, vm->disk_node);
	/* Defaults that depend on run-dir. */
	if (!raw_get(r, "migrate-uri") && !raw_get(&p->defaults, "migrate-uri"))
		snprintf(vm->migrate_uri, sizeof(vm->migrate_uri),
			 "unix:%s/%s.migrate.sock", c->run_dir, vm->name);
	else if (vm_val(p, r, "migrate-uri", subs, vm->migrate_uri,
			sizeof(vm->migrate_uri), true))
		return -1;
	if (!raw_get(r, "nbd-uri") && !raw_get(&p->defaults, "nbd-uri"))
		snprintf(vm->nbd_uri, sizeof(vm->nbd_uri),
			 "unix:%s/%s.nbd.sock", c->run_dir, vm->name);
	else if (vm_val(p, r, "nbd-uri", subs, vm->nbd_uri,
			sizeof(vm->nbd_uri), true))
		return -1;
	if (!valid_uri(vm->migrate_uri) || !valid_uri(vm->nbd_uri))
		return perr(p, r->line,
			    "[vm %s]: migrate-uri/nbd-uri must be unix:/PATH or tcp:HOST:PORT",
			    vm->name);
	if (!raw_get(r, "dest-log") && !raw_get(&p->defaults, "dest-log"))
		snprintf(vm->dest_log, sizeof(vm->dest_log), "%s/%s.%s.log",
			 c->run_dir, vm->name, c->dest_site);
	else if (vm_val(p, r, "dest-log", subs, vm->dest_log,
			sizeof(vm->dest_log), true))
		return -1;
	if (!raw_get(r, "pidfile") && !raw_get(&p->defaults, "pidfile"))
		snprintf(vm->pidfile, sizeof(vm->pidfile), "%s/%s.%s.pid",
			 c->run_dir, vm->name, c->dest_site);
	else if (vm_val(p, r, "pidfile", subs, vm->pidfile,
			sizeof(vm->pidfile), true))
		return -1;

	/* Devices: the VM's own setting wins over its site's. */
	if (raw_get(r, "source-device") || raw_get(&p->defaults, "source-device"))
		snprintf(vm->source_device, sizeof(vm->source_device), "%s",
			 strcmp(dev_src, "none") ? dev_src : "");
	else
		snprintf(vm->source_device, sizeof(vm->source_device), "%s",
			 src->device);
	if (raw_get(r, "dest-device") || raw_get(&p->defaults, "dest-device"))
		snprintf(vm->dest_device, sizeof(vm->dest_device), "%s",
			 strcmp(dev_dst, "none") ? dev_dst : "");
	else
		snprintf(vm->dest_device, sizeof(vm->dest_device), "%s",
			 dst->device);
	/* An id that does not fit VMM_ID_MAX would fail at unplug time. */
	if (vm->source_device[0] &&
	    vmm_device_id(vm->source_device, dev_src, VMM_ID_MAX))
		return perr(p, r->line,
			    "[vm %s]: source device '%s' has no id= (device_del needs it) or one longer than %d bytes",
			    vm->name, vm->source_device, VMM_ID_MAX - 1);
	if (vm->dest_device[0] &&
	    vmm_device_id(vm->dest_device, dev_dst, VMM_ID_MAX))
		return perr(p, r->line,
			    "[vm %s]: destination device '%s' has no id= or one longer than %d bytes",
			    vm->name, vm->dest_device, VMM_ID_MAX - 1);
	set_rails(vm, src, dst);

	/* The destination command, with everything known now. */
	subs[n++] = (struct subst){ "dest-qmp", vm->dest_qmp };
	subs[n++] = (struct subst){ "dest-chan", vm->dest_chan };
	subs[n++] = (struct subst){ "dest-qmp-path", bare(vm->dest_qmp) };
	subs[n++] = (struct subst){ "dest-chan-path", bare(vm->dest_chan) };
	subs[n++] = (struct subst){ "dest-overlay", vm->dest_overlay };
	subs[n++] = (struct subst){ "source-overlay", vm->source_overlay };
	subs[n++] = (struct subst){ "base", vm->base };
	subs[n++] = (struct subst){ "disk-node", vm->disk_node };
	subs[n++] = (struct subst){ "pidfile", vm->pidfile };
	subs[n++] = (struct subst){ "qemu", dst->qemu[0] ? dst->qemu :
				    "qemu-system-x86_64" };
	subs[n] = (struct subst){ NULL, NULL };
	if (vm_val(p, r, "dest-command", subs, vm->dest_command,
		   sizeof(vm->dest_command), true))
		return -1;
	if (remote_dest(p, r, vm, dst, subs))
		return -1;
	return remote_source(p, r, vm, src, subs);
}

const struct vmm_site *vmm_cluster_site(const struct vmm_cluster *c,
					const char *name)
{
	int i;

	for (i = 0; i < c->nsites; i++)
		if (strcmp(c->sites[i].name, name) == 0)
			return &c->sites[i];
	return NULL;
}

int vmm_device_id(const char *spec, char *id, size_t idlen)
{
	const char *p = spec;
	bool found = false;

	/* As qmp_device_args() reads it for device_add: ",," is a comma,
	 * and of several id= the last one counts. */
	while (*p) {
		bool is_id = strncmp(p, "id=", 3) == 0;
		size_t n = 0;

		if (is_id)
			p += 3;
		while (*p && !(p[0] == ',' && p[1] != ',')) {
			if (is_id && n + 1 >= idlen)
				return -1;
			if (is_id)
				id[n++] = *p;
			p += p[0] == ',' ? 2 : 1;
		}
		if (*p)
			p++;
		if (is_id) {
			id[n] = '\0';
			found = n > 0;
		}
	}
	return found ? 0 : -1;
}

static bool valid_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' &&
		    *s != '.')
			return false;
	return true;
}

static void free_raw(struct raw_vm *r)
{
	int i;

	for (i = 0; i < r->n; i++)
		free(r->kv[i].val);
	r->n = 0;
}

/*
 * Join continuation lines: a line that starts with a space or a tab and
 * follows a "key = value" line (or another continuation) is appended to
 * that value with one space; it is replaced by an empty line so line
 * numbers stay right.  Indented comments stay comments.
 */
static char *join_continuations(const char *text)
{
	size_t n = strlen(text);
	char *out = malloc(n + 1), *o = out, *val_end = NULL;
	const char *p = text;
	bool in_kv = false;

	if (!out)
		return NULL;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		const char *q = p;
		bool indented = *p == ' ' || *p == '\t';

		while (q < p + len && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		if (q == p + len || *q == '#' || *q == ';') {
			/* Blank or comment: copied, a value may go on after. */
			memcpy(o, p, len);
			o += len;
		} else if (indented && in_kv && val_end) {
			/* Move what follows the value to make room. */
			size_t add = (size_t)(p + len - q);
			size_t tail = (size_t)(o - val_end);

			while (add && (q[add - 1] == ' ' || q[add - 1] == '\t' ||
				       q[add - 1] == '\r'))
				add--;
			memmove(val_end + 1 + add, val_end, tail);
			val_end[0] = ' ';
			memcpy(val_end + 1, q, add);
			val_end += 1 + add;
			o += 1 + add;
		} else {
			const char *r = p + len;

			memcpy(o, p, len);
			in_kv = *q != '[' && memchr(q, '=', (size_t)(p + len - q));
			/* The value ends before trailing blanks. */
			while (r > q && (r[-1] == ' ' || r[-1] == '\t' ||
					 r[-1] == '\r'))
				r--;
			val_end = o + (r - p);
			o += len;
		}
		if (!e)
			break;
		*o++ = '\n';
		p = e + 1;
	}
	*o = '\0';
	return out;
}

/* Room for one more [vm] section (the raw table doubles). */
static int grow_vms(struct parser *p)
{
	struct raw_vm *v;
	int n;

	if (p->nvms < p->cap_vms)
		return 0;
	n = p->cap_vms ? 2 * p->cap_vms : 8;
	v = realloc(p->vms, (size_t)n * sizeof(*v));
	if (!v)
		return -1;
	memset(v + p->cap_vms, 0, (size_t)(n - p->cap_vms) * sizeof(*v));
	p->vms = v;
	p->cap_vms = n;
	return 0;
}

static int parse_at(struct vmm_cluster *c, const char *text,
		    const char *fname, const char *dest_site, char *err,
		    size_t errlen)
{
	struct parser p = { .c = c, .fname = fname, .err = err,
			    .errlen = errlen };
	enum { S_NONE, S_CLUSTER, S_SITE, S_DEFAULTS, S_VM } sec = S_NONE;
	struct vmm_site *site = NULL;
	struct raw_vm *rvm = NULL;
	char *copy, *line, *save = NULL;
	int lineno = 0, rc = -1, i;
	bool seen_cluster = false;

	memset(c, 0, sizeof(*c));
	snprintf(c->file, sizeof(c->file), "%s", fname);
	snprintf(c->backend, sizeof(c->backend), "qemu");
	snprintf(c->lock, sizeof(c->lock), "/run/ninja-migrate.lock");
	c->mode = VMM_MODE_AUTO;
	c->quit_source = true;
	c->quiesce_ms = 30000;
	c->unplug_ms = 10000;
	c->start_ms = 30000;
	c->storage_ms = 300000;
	c->ram_ms = 600000;
	c->switch_ms = 30000;
	c->plug_ms = 10000;
	c->link_ms = 10000;
	c->resume_ms = 30000;
	copy = join_continuations(text);
	if (!copy) {
		perr(&p, 0, "out of memory");
		goto out;
	}
	/* strtok_r would skip empty lines and lose the numbering. */
	for (line = copy; line; line = save) {
		char *s, *eq, *k, *v;

		save = strchr(line, '\n');
		if (save)
			*save++ = '\0';
		lineno++;
		s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']'), *name;

			if (!close || trim(close + 1)[0]) {
				perr(&p, lineno, "malformed section header '%s'", s);
				goto out;
			}
			*close = '\0';
			s = trim(s + 1);
			name = strchr(s, ' ');
			if (name) {
				*name++ = '\0';
				name = trim(name);
			}
			if (strcmp(s, "cluster") == 0 && !name) {
				if (seen_cluster) {
					perr(&p, lineno, "[cluster] given twice");
					goto out;
				}
				seen_cluster = true;
				sec = S_CLUSTER;
			} else if (strcmp(s, "defaults") == 0 && !name) {
				sec = S_DEFAULTS;
			} else if (strcmp(s, "site") == 0 && name) {
				if (!valid_name(name) || strlen(name) >= VMM_ID_MAX) {
					perr(&p, lineno, "bad site name '%s'", name);
					goto out;
				}
				if (vmm_cluster_site(c, name)) {
					perr(&p, lineno, "site %s given twice", name);
					goto out;
				}
				if (c->nsites == VMM_MAX_SITES) {
					perr(&p, lineno, "more than %d sites", VMM_MAX_SITES);
					goto out;
				}
				site = &c->sites[c->nsites++];
				snprintf(site->name, sizeof(site->name), "%s", name);
				sec = S_SITE;
			} else if (strcmp(s, "vm") == 0 && name) {
				if (!valid_name(name) || strlen(name) >= VMM_ID_MAX) {
					perr(&p, lineno, "bad VM name '%s' (letters, digits, - _ .)", name);
					goto out;
				}
				for (i = 0; i < p.nvms; i++)
					if (strcmp(p.vms[i].name, name) == 0) {
						perr(&p, lineno, "vm %s given twice (first on line %d)",
						     name, p.vms[i].line);
						goto out;
					}
				if (p.nvms == VMM_MAX_VMS) {
					perr(&p, lineno, "more than %d VMs", VMM_MAX_VMS);
					goto out;
				}
				if (grow_vms(&p)) {
					perr(&p, lineno, "out of memory");
					goto out;
				}
				rvm = &p.vms[p.nvms++];
				snprintf(rvm->name, sizeof(rvm->name), "%s", name);
				rvm->line = lineno;
				sec = S_VM;
			} else {
				perr(&p, lineno,
				     "unknown section [%s%s%s] (expected [cluster], [defaults], [site NAME] or [vm NAME])",
				     s, name ? " " : "", name ? name : "");
				goto out;
			}
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			perr(&p, lineno, "expected 'key = value', got '%s'", s);
			goto out;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		switch (sec) {
		case S_NONE:
			perr(&p, lineno, "'%s' outside of any section", k);
			goto out;
		case S_CLUSTER:
			if (cluster_key(&p, lineno, k, v))
				goto out;
			break;
		case S_SITE:
			if (site_key(&p, lineno, site, k, v))
				goto out;
			break;
		case S_DEFAULTS:
			if (raw_add(&p, &p.defaults, lineno, k, v))
				goto out;
			break;
		case S_VM:
			if (raw_add(&p, rvm, lineno, k, v))
				goto out;
			break;
		}
	}
	if (!seen_cluster) {
		perr(&p, 0, "no [cluster] section");
		goto out;
	}
	if (!c->name[0])
		snprintf(c->name, sizeof(c->name), "cluster");
	if (!c->source_site[0] || !c->dest_site[0]) {
		perr(&p, 0, "[cluster] needs source-site and dest-site");
		goto out;
	}
	if (dest_site && dest_site[0])
		snprintf(c->dest_site, sizeof(c->dest_site), "%s", dest_site);
	if (!vmm_cluster_site(c, c->source_site)) {
		perr(&p, 0, "source-site %s has no [site %s] section",
		     c->source_site, c->source_site);
		goto out;
	}
	if (!vmm_cluster_site(c, c->dest_site)) {
		perr(&p, 0, "dest-site %s has no [site %s] section",
		     c->dest_site, c->dest_site);
		goto out;
	}
	if (!c->run_dir[0]) {
		perr(&p, 0, "[cluster] needs run-dir (sockets and logs of destination QEMUs)");
		goto out;
	}
	{
		char why[256];

		if (vmm_tuning_check(&c->tune, why, sizeof(why))) {
			perr(&p, 0, "%s", why);
			goto out;
		}
	}
	if (p.nvms == 0) {
		perr(&p, 0, "no [vm NAME] section");
		goto out;
	}
	c->vms = calloc((size_t)p.nvms, sizeof(*c->vms));
	if (!c->vms) {
		perr(&p, 0, "out of memory");
		goto out;
	}
	for (i = 0; i < p.nvms; i++)
		if (finish_vm(&p, &p.vms[i], &c->vms[i]))
			goto out;
	c->nvms = p.nvms;
	rc = 0;
out:
	free_raw(&p.defaults);
	if (p.vms)
		for (i = 0; i < p.nvms; i++)
			free_raw(&p.vms[i]);
	free(p.vms);
	free(copy);
	if (rc)
		vmm_cluster_free(c);
	return rc;
}

int vmm_cluster_parse(struct vmm_cluster *c, const char *text,
		      const char *fname, char *err, size_t errlen)
{
	return parse_at(c, text, fname, NULL, err, errlen);
}

void vmm_cluster_free(struct vmm_cluster *c)
{
	free(c->vms);
	c->vms = NULL;
	c->nvms = 0;
}

int vmm_cluster_load(struct vmm_cluster *c, const char *path, char *err,
		     size_t errlen)
{
	return vmm_cluster_load_at(c, path, NULL, err, errlen);
}

int vmm_cluster_load_at(struct vmm_cluster *c, const char *path,
			const char *dest_site, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text;
	long n;
	int rc;

	if (!f) {
		snprintf(err, errlen, "cannot open cluster file %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (1 << 20) ||
	    fseek(f, 0, SEEK_SET)) {
		snprintf(err, errlen, "%s: unreadable or larger than 1 MiB",
			 path);
		fclose(f);
		return -1;
	}
	text = malloc((size_t)n + 1);
	if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
		snprintf(err, errlen, "%s: read error", path);
		free(text);
		fclose(f);
		return -1;
	}
	text[n] = '\0';
	fclose(f);
	rc = parse_at(c, text, path, dest_site, err, errlen);
	free(text);
	return rc;
}
