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

#include "vmm_cluster.h"
#include "vmm_migrate.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: ninja-migrate [options] CLUSTER-FILE\n"
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
"  --help\n"
"\n"
"Exit status: 0 done; 1 usage, bad file or unreachable (nothing changed);\n"
"2 drain failed or fewer ranks than expected (cancelled, job continues); 3 failed before the\n"
"switch-over, rolled back; 4 moved but a later step failed; 5 rollback\n"
"failed (operator needed); 6 another ninja-migrate is running.\n");
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
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm_opts o = { 0 };
	struct vmm_cluster *cl;
	char err[1024];
	int c, r;

	vmm_set_progname(argv[0]);
	while ((c = getopt_long(argc, argv, "nsr:u:vfh", lopts, NULL)) != -1) {
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
	r = vmm_migrate_run(cl, &o);
	free(cl);
	return r;
}
