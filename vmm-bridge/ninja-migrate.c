// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja-migrate - move a whole MPI virtual cluster to another site, with
 * its ranks drained first and the passthrough interconnect swapped: the
 * command-line front end of vmm_migrate.c.  See docs/vmm-bridge.md.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm_checkpoint.h"
#include "vmm_cluster.h"
#include "vmm_migrate.h"
#include "vmm_status.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: ninja-migrate [options] CLUSTER-FILE\n"
"       ninja-migrate status [--json] [CLUSTER-FILE]\n"
"       ninja-migrate checkpoint --to DIR [--leave-running|--stop] [--force]\n"
"                     [--report FILE] CLUSTER-FILE\n"
"       ninja-migrate restore --from DIR [--site NAME] [--force]\n"
"                     [--report FILE] CLUSTER-FILE\n"
"\n"
"Migrate every VM of the virtual cluster described in CLUSTER-FILE from\n"
"its source site to its destination site: drain the MPI ranks (QUIESCE),\n"
"unplug the passthrough devices, move storage (overlay only) and RAM,\n"
"plug the destination's devices, resume the ranks (RESUME rails=...).\n"
"A failure before the switch-over rolls everything back.\n"
"\n"
"  --dry-run        validate the file, reach every monitor and guest\n"
"                   channel, check the destination prerequisites; change\n"
"                   nothing\n"
"  --switch-only    detach and re-attach each VM's device at the source\n"
"                   (fabric maintenance), ranks drained around it\n"
"  --report FILE    write the result and phase timings as JSON\n"
"  --upgrade live|wait  live (default; cluster key 'upgrade'): RESUME as soon\n"
"                   as the device is plugged, the ranks move to verbs by\n"
"                   themselves at port-active; wait: RESUME after port-active\n"
"  --force          migrate even when a guest reports fewer SAFE ranks than\n"
"                   its cluster-file 'ranks' (those ranks lose the device)\n"
"  --verbose        log every QMP message and guest line with timestamps\n"
"                   (stderr)\n"
"  --quiet          no progress nor step lines (errors on stderr and the\n"
"                   phase table stay)\n"
"  --events FILE|-  one JSON object per line per phase start/end and\n"
"                   progress sample, as it happens ('-': stdout, the\n"
"                   human output then goes to stderr)\n"
"\n"
"Migration settings (override the cluster file's keys of the same name;\n"
"checked against both ends' QEMU before anything changes):\n"
"  --max-bandwidth SIZE   bytes/s (100M, 1G)\n"
"  --max-downtime TIME    longest pause at the switch-over (300ms, 1s)\n"
"  --auto-converge        throttle vCPUs that dirty memory too fast\n"
"  --multifd N            N parallel RAM streams (0: one)\n"
"  --compress zstd|none   compress the multifd streams\n"
"  --postcopy[=N]         switch to post-copy after N pre-copy passes\n"
"                         (default 1); needs --allow-postcopy\n"
"  --allow-postcopy       accept post-copy: once it switched over, the VM\n"
"                         cannot go back to the source (no rollback)\n"
"  --tls-creds DIR        TLS on the RAM and storage streams (x509: DIR has\n"
"                         ca-cert.pem, server-*.pem, client-*.pem)\n"
"  --tls-hostname NAME    the name in the destination's certificate\n"
"                         (default: the host of a tcp: migrate-uri)\n"
"  --help\n"
"\n"
"Exit status: 0 done; 1 usage, bad file or unreachable (nothing changed);\n"
"2 drain failed or fewer ranks than expected (cancelled, job continues); 3 failed before the\n"
"switch-over, rolled back; 4 moved but a later step failed; 5 rollback\n"
"failed (operator needed); 6 another ninja-migrate is running.\n"
"status: 0 a migration runs; 1 usage; 2 no migration running.\n"
"checkpoint/restore: see docs/checkpoint.md (0 done; 1 refused, nothing\n"
"changed/started; 2 drain failed; 3 failed, cluster runs on / restored VMs\n"
"stopped; 4 done but a later step failed; 5 cluster did not resume).\n");
}

/* ninja-migrate checkpoint|restore ... (vmm_checkpoint.c). */
static int ckpt_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "from", required_argument, NULL, 'F' },
		{ "site", required_argument, NULL, 'S' },
		{ "leave-running", no_argument, NULL, 'l' },
		{ "stop", no_argument, NULL, 'x' },
		{ "force", no_argument, NULL, 'f' },
		{ "report", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool restore = strcmp(argv[0], "restore") == 0;
	struct vmm_ckpt_opts o = { 0 };
	const char *site = NULL;
	struct vmm_cluster *cl;
	char err[1024];
	int c, r;

	while ((c = getopt_long(argc, argv, "r:vqfh", lopts, NULL)) != -1) {
		switch (c) {
		case 't': case 'F':
			if ((c == 't') == restore) {
				fprintf(stderr, "ninja-migrate %s: --%s belongs to %s\n",
					argv[0], c == 't' ? "to" : "from",
					c == 't' ? "checkpoint" : "restore");
				return VMM_EXIT_USAGE;
			}
			o.dir = optarg;
			break;
		case 'S': site = optarg; break;
		case 'l': o.stop = false; break;
		case 'x': o.stop = true; break;
		case 'f': o.force = true; break;
		case 'r': o.report = optarg; break;
		case 'v': o.verbose = true; break;
		case 'q': o.quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return VMM_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !o.dir || (site && !restore) ||
	    (restore && o.stop)) {
		fprintf(stderr, "usage: ninja-migrate checkpoint --to DIR [--leave-running|--stop] [--force] CLUSTER-FILE\n"
			"       ninja-migrate restore --from DIR [--site NAME] [--force] CLUSTER-FILE\n");
		return VMM_EXIT_USAGE;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		fprintf(stderr, "ninja-migrate: out of memory\n");
		return VMM_EXIT_USAGE;
	}
	if (vmm_cluster_load_at(cl, argv[optind], site, err, sizeof(err))) {
		fprintf(stderr, "ninja-migrate: %s\n", err);
		free(cl);
		return VMM_EXIT_USAGE;
	}
	r = restore ? vmm_restore_run(cl, &o) : vmm_checkpoint_run(cl, &o);
	vmm_cluster_free(cl);
	free(cl);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "switch-only", no_argument, NULL, 's' },
		{ "report", required_argument, NULL, 'r' },
		{ "upgrade", required_argument, NULL, 'u' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "force", no_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "events", required_argument, NULL, 'e' },
		{ "max-bandwidth", required_argument, NULL, 1000 },
		{ "max-downtime", required_argument, NULL, 1001 },
		{ "auto-converge", no_argument, NULL, 1002 },
		{ "multifd", required_argument, NULL, 1003 },
		{ "multifd-channels", required_argument, NULL, 1003 },
		{ "compress", required_argument, NULL, 1004 },
		{ "postcopy", optional_argument, NULL, 1005 },
		{ "allow-postcopy", no_argument, NULL, 1006 },
		{ "tls-creds", required_argument, NULL, 1007 },
		{ "tls-hostname", required_argument, NULL, 1008 },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const tkeys[] = {
		"max-bandwidth", "max-downtime", "auto-converge",
		"multifd-channels", "compress", "postcopy", "tls-creds",
		"tls-hostname",
	};
	struct vmm_opts o = { .events_fd = -1 };
	struct vmm_cluster *cl;
	/* Settings from the command line, applied over the file's. */
	const char *tval[8] = { NULL };
	const char *postcopy_after = NULL;
	bool allow_postcopy = false;
	char err[1024];
	int c, r;
	size_t k;

	vmm_set_progname(argv[0]);
	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return vmm_status_main(argc - 1, argv + 1);
	if (argc > 1 && (strcmp(argv[1], "checkpoint") == 0 ||
			 strcmp(argv[1], "restore") == 0)) {
		struct sigaction sa;

		signal(SIGPIPE, SIG_IGN);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = vmm_migrate_interrupt;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		return ckpt_main(argc - 1, argv + 1);
	}
	while ((c = getopt_long(argc, argv, "nsr:u:vfhqe:", lopts, NULL)) != -1) {
		switch (c) {
		case 'u':
			if (strcmp(optarg, "live") && strcmp(optarg, "wait")) {
				fprintf(stderr, "ninja-migrate: --upgrade: expected live or wait\n");
				return VMM_EXIT_USAGE;
			}
			o.upgrade = optarg;
			break;
		case 'n': o.dry_run = true; break;
		case 's': o.switch_only = true; break;
		case 'r': o.report = optarg; break;
		case 'v': o.verbose = true; break;
		case 'f': o.force = true; break;
		case 'q': o.quiet = true; break;
		case 'e': o.events = optarg; break;
		case 1002: tval[c - 1000] = "yes"; break;
		case 1005:
			tval[5] = "yes";
			postcopy_after = optarg;
			break;
		case 1000: case 1001: case 1003: case 1004:
			tval[c - 1000] = optarg;
			break;
		case 1006: allow_postcopy = true; break;
		case 1007: tval[6] = optarg; break;
		case 1008: tval[7] = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("ninja-migrate (Ninja) %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return VMM_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return VMM_EXIT_USAGE;
	}
	/* A dying peer must give EPIPE, not kill us mid-rollback. */
	signal(SIGPIPE, SIG_IGN);
	/* ^C or a kill: roll back cleanly before the commit point; finish
	 * the switch-over after it.  A second one is not special: the
	 * operation already winds down, bounded by its deadlines. */
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = vmm_migrate_interrupt;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		fprintf(stderr, "ninja-migrate: out of memory\n");
		return VMM_EXIT_USAGE;
	}
	if (vmm_cluster_load(cl, argv[optind], err, sizeof(err))) {
		fprintf(stderr, "ninja-migrate: %s\n", err);
		free(cl);
		return VMM_EXIT_USAGE;
	}
	if (o.upgrade)
		cl->link_wait = !strcmp(o.upgrade, "wait");
	for (k = 0; k < sizeof(tkeys) / sizeof(tkeys[0]); k++) {
		if (!tval[k])
			continue;
		if (vmm_tuning_set(&cl->tune, tkeys[k], tval[k], err,
				   sizeof(err)) ||
		    (k == 5 && postcopy_after &&
		     vmm_tuning_set(&cl->tune, "postcopy-after", postcopy_after,
				    err, sizeof(err)))) {
			fprintf(stderr, "ninja-migrate: --%s\n", err);
			free(cl);
			return VMM_EXIT_USAGE;
		}
	}
	if (vmm_tuning_check(&cl->tune, err, sizeof(err))) {
		fprintf(stderr, "ninja-migrate: %s\n", err);
		free(cl);
		return VMM_EXIT_USAGE;
	}
	if (cl->tune.postcopy && !allow_postcopy) {
		fprintf(stderr, "ninja-migrate: postcopy refused without --allow-postcopy: once the VMs switch to post-copy they run at the destination with RAM still at the source, and a failure after that cannot be rolled back (the VM is lost); pass --allow-postcopy to accept, or drop postcopy\n");
		free(cl);
		return VMM_EXIT_USAGE;
	}
	if (o.events && strcmp(o.events, "-") == 0) {
		/* The events own stdout; everything for people goes to
		 * stderr. */
		fflush(stdout);
		o.events_fd = dup(1);
		if (o.events_fd < 0 || dup2(2, 1) < 0) {
			fprintf(stderr, "ninja-migrate: --events -: cannot set up stdout\n");
			free(cl);
			return VMM_EXIT_USAGE;
		}
	}
	r = vmm_migrate_run(cl, &o);
	free(cl);
	return r;
}
