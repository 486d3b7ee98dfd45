// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_status.c - the state file of a running ninja-migrate and the
 * "status" sub-command (see vmm_status.h).
 *
 * Who runs: the holder of the flock on the lock file, read from
 * /proc/locks without taking the lock (a status query in a loop must never
 * make a starting migration find the lock busy).  What it does: the state
 * file LOCK.state, which the holder rewrites atomically (rename) twice a
 * second and removes at its end.  The file is read as hostile input:
 * bounded size, json-c, every member type-checked.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/file.h>
#include <unistd.h>

#include "vmm_cluster.h"
#include "vmm_migrate.h"
#include "vmm_progress.h"
#include "vmm_status.h"

#define STATE_MAX	(1 << 20)
#define DEFAULT_LOCK	"/run/ninja-migrate.lock"

void vmm_state_path(const char *lock, char *out, size_t size)
{
	snprintf(out, size, "%s.state", lock);
}

int vmm_state_write(const char *path, json_object *state)
{
	char tmp[VMM_PATH_MAX + 32];
	const char *s = json_object_to_json_string_ext(
		state, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t n = strlen(s);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, s, n) != (ssize_t)n || write(fd, "\n", 1) != 1 ||
	    close(fd) || rename(tmp, path)) {
		fprintf(stderr, "ninja-migrate: warning: cannot write the state file %s: %s (status will not see this run)\n",
			path, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		return -1;
	}
	return 0;
}

/* The pid holding a flock on path (0: none, -1: cannot tell). */
static long lock_holder(const char *path)
{
	struct stat st;
	char line[256];
	FILE *f;
	long pid = 0;

	if (stat(path, &st))
		return 0;	/* no lock file: nobody ever ran here */
	f = fopen("/proc/locks", "r");
	if (!f) {
		/* No /proc: probe (a shared lock, released at once). */
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return -1;
		pid = flock(fd, LOCK_SH | LOCK_NB) ? -1 : 0;
		close(fd);
		return pid;
	}
	while (fgets(line, sizeof(line), f)) {
		char kind[16], rw[16];
		unsigned int maj, mnr;
		unsigned long ino;
		long p;

		if (strstr(line, "->"))
			continue;	/* a waiter, not a holder */
		if (sscanf(line, "%*d: %15s %*s %15s %ld %x:%x:%lu", kind, rw,
			   &p, &maj, &mnr, &ino) != 6)
			continue;
		if (strcmp(kind, "FLOCK") || ino != (unsigned long)st.st_ino ||
		    maj != major(st.st_dev) || mnr != minor(st.st_dev))
			continue;
		pid = p;
		break;
	}
	fclose(f);
	return pid;
}

static json_object *read_state(const char *path)
{
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	json_object *o = NULL;
	json_tokener *tok;

	if (fd < 0)
		return NULL;
	buf = malloc(STATE_MAX + 1);
	n = buf ? read(fd, buf, STATE_MAX + 1) : -1;
	close(fd);
	if (n <= 0 || n > STATE_MAX) {
		free(buf);
		return NULL;
	}
	tok = json_tokener_new_ex(16);
	if (tok) {
		o = json_tokener_parse_ex(tok, buf, (int)n);
		if (json_tokener_get_error(tok) != json_tokener_success ||
		    !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = NULL;
		}
		json_tokener_free(tok);
	}
	free(buf);
	return o;
}

static double get_num(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !(json_object_is_type(v, json_type_int) ||
	      json_object_is_type(v, json_type_double)))
		return -1;
	return json_object_get_double(v);
}

static const char *get_str(json_object *o, const char *k, const char *def)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_string))
		return def;
	return json_object_get_string(v);
}

static uint64_t get_u64(json_object *o, const char *k)
{
	double d = get_num(o, k);

	return d > 0 && d < 9.2e18 ? (uint64_t)d : 0;
}

/* A VM's state-file entry back into a line. */
static void print_vm(json_object *v)
{
	struct vmm_live l;
	char line[320], name[VMM_ID_MAX], phase[32];
	double pct;

	memset(&l, 0, sizeof(l));
	snprintf(name, sizeof(name), "%s", get_str(v, "name", "?"));
	snprintf(phase, sizeof(phase), "%s", get_str(v, "phase", "?"));
	snprintf(l.state, sizeof(l.state), "%s", get_str(v, "migration_status", ""));
	l.phase = l.last = -1;
	if (!strcmp(phase, "storage"))
		l.phase = VMM_PH_STORAGE;
	else if (!strcmp(phase, "ram"))
		l.phase = VMM_PH_RAM;
	l.ram_total = get_u64(v, "ram_total");
	l.ram_sent = get_u64(v, "ram_transferred");
	l.ram_remaining = get_u64(v, "ram_remaining");
	l.have_ram = get_num(v, "ram_pct") >= 0;
	l.storage_total = get_u64(v, "storage_total");
	l.storage_done = get_u64(v, "storage_done");
	l.have_storage = get_num(v, "storage_pct") >= 0;
	pct = get_num(v, "mb_per_s");
	if (l.phase == VMM_PH_STORAGE)
		l.storage_rate = pct > 0 ? pct * 1e6 : 0;
	else
		l.ram_rate = pct > 0 ? pct * 1e6 : 0;
	l.dirty_rate = get_u64(v, "dirty_mb_per_s") * 1000000ull;
	l.passes = (int64_t)get_num(v, "passes");
	vmm_live_format(line, sizeof(line), name, phase, &l);
	printf("  %s\n", line);
}

static void status_usage(FILE *f)
{
	fprintf(f,
"usage: ninja-migrate status [--json] [CLUSTER-FILE]\n"
"\n"
"Show the migration that runs now under the lock of CLUSTER-FILE (its\n"
"'lock' key; default " DEFAULT_LOCK "): phase of every VM, bytes, rates,\n"
"elapsed time, epoch, the pid holding the lock.\n"
"  --json   the state as one JSON object (with \"lock_holder\")\n"
"Exit status: 0 a migration runs; 1 usage or unreadable file; 2 no\n"
"migration running.\n");
}

int vmm_status_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char lock[VMM_PATH_MAX] = DEFAULT_LOCK, spath[VMM_PATH_MAX + 16];
	char err[1024];
	bool json = false;
	json_object *st, *vms;
	long holder;
	int c;
	size_t i;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", lopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': status_usage(stdout); return VMM_STATUS_RUNNING;
		default: status_usage(stderr); return VMM_STATUS_ERROR;
		}
	}
	if (optind < argc - 1) {
		status_usage(stderr);
		return VMM_STATUS_ERROR;
	}
	if (optind == argc - 1) {
		struct vmm_cluster *cl = calloc(1, sizeof(*cl));

		if (!cl || vmm_cluster_load(cl, argv[optind], err, sizeof(err))) {
			fprintf(stderr, "ninja-migrate status: %s\n",
				cl ? err : "out of memory");
			free(cl);
			return VMM_STATUS_ERROR;
		}
		snprintf(lock, sizeof(lock), "%s", cl->lock);
		free(cl);
	}
	vmm_state_path(lock, spath, sizeof(spath));
	holder = lock_holder(lock);
	if (holder == 0) {
		if (json) {
			st = json_object_new_object();
			json_object_object_add(st, "running", json_object_new_boolean(0));
			json_object_object_add(st, "lock", json_object_new_string(lock));
			printf("%s\n", json_object_to_json_string_ext(
				       st, JSON_C_TO_STRING_PLAIN |
				       JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(st);
		} else {
			printf("no migration running (lock %s is free)\n", lock);
		}
		return VMM_STATUS_NONE;
	}
	st = read_state(spath);
	if (!st || (holder > 0 && (long)get_num(st, "pid") != holder)) {
		/* Starting, or a run without a state file. */
		json_object_put(st);
		st = json_object_new_object();
		json_object_object_add(st, "pid", holder > 0 ?
				       json_object_new_int64(holder) : NULL);
		json_object_object_add(st, "note", json_object_new_string(
			"no state yet (starting up)"));
	}
	json_object_object_add(st, "running", json_object_new_boolean(1));
	json_object_object_add(st, "lock", json_object_new_string(lock));
	json_object_object_add(st, "lock_holder", holder > 0 ?
			       json_object_new_int64(holder) : NULL);
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(
			       st, JSON_C_TO_STRING_PLAIN |
			       JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(st);
		return VMM_STATUS_RUNNING;
	}
	printf("migration running: %s of cluster %s (%s), pid %ld holds %s",
	       get_str(st, "operation", "?"), get_str(st, "cluster", "?"),
	       get_str(st, "file", "?"), holder, lock);
	if (get_num(st, "epoch") >= 0)
		printf(", epoch %.0f", get_num(st, "epoch"));
	if (get_num(st, "elapsed_ms") >= 0)
		printf(", elapsed %.1f s (since %s)",
		       get_num(st, "elapsed_ms") / 1000,
		       get_str(st, "started", "?"));
	if (get_str(st, "note", NULL))
		printf(": %s", get_str(st, "note", ""));
	printf("\n");
	if (json_object_object_get_ex(st, "vms", &vms) &&
	    json_object_is_type(vms, json_type_array))
		for (i = 0; i < json_object_array_length(vms) && i < VMM_MAX_VMS; i++) {
			json_object *v = json_object_array_get_idx(vms, i);

			if (json_object_is_type(v, json_type_object))
				print_vm(v);
		}
	json_object_put(st);
	return VMM_STATUS_RUNNING;
}
