/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_cluster.h - the cluster description file of ninja-migrate: which VMs
 * form the virtual cluster, where their QEMU monitors and guest channels
 * are, how a destination QEMU is started, which passthrough device each
 * site offers and how storage is laid out.  Format: docs/vmm-bridge.md.
 *
 *   [cluster]  name, source-site, dest-site, mode, run-dir, timeouts, ...
 *   [site S]   device, rails, qemu, host, ssh (libvirt: uri, device-xml,
 *              chan-root)
 *   [defaults] any vm key, used by every [vm] that does not set it
 *   [vm NAME]  source-qmp, source-chan, dest-qmp, dest-chan, dest-command,
 *              disk-node, base, source-overlay, dest-overlay, dest-host, ...
 *
 * Values may use {name} (the VM), {run} (run-dir), {site} (dest-site) and
 * {source-site}; dest-command may also use {dest-qmp}, {dest-chan},
 * {dest-qmp-path}, {dest-chan-path} (without "unix:"), {dest-overlay},
 * {source-overlay}, {base}, {disk-node}, {pidfile} and {qemu} (the
 * destination site's qemu key, default qemu-system-x86_64).
 */
#ifndef NINJA_VMM_CLUSTER_H
#define NINJA_VMM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* VMs in one cluster file: the table grows as [vm] sections come; more
 * than this is an error (a file this size is a mistake). */
#define VMM_MAX_VMS		4096
#define VMM_MAX_SITES		16
#define VMM_ID_MAX		64
#define VMM_PATH_MAX		256
#define VMM_SPEC_MAX		512
#define VMM_CMD_MAX		8192
#define VMM_URI_MAX		512
#define VMM_HOST_LEN		256

/*
 * auto: live under KVM, stopped under TCG (live pre-copy under TCG was seen
 * to corrupt guests on this kind of machine: docs/vmm-bridge.md).
 */
enum vmm_mode { VMM_MODE_AUTO, VMM_MODE_LIVE, VMM_MODE_STOPPED };

/*
 * Migration settings (docs/vmm-bridge.md, "Migration settings"), from the
 * [cluster] section and the command line.  Every backend applies each of
 * them or refuses the run before anything changes: a setting that cannot
 * be honoured is an error, never a silent fallback.
 */
struct vmm_tuning {
	uint64_t max_bandwidth;		/* bytes/s, 0 = QEMU's default */
	int64_t max_downtime_ms;	/* 0 = QEMU's default (300 ms) */
	bool auto_converge;		/* throttle vCPUs that dirty too fast */
	int multifd_channels;		/* 0 = one stream (multifd off) */
	bool compress_zstd;		/* multifd-compression zstd */
	bool postcopy;			/* switch to post-copy ... */
	int postcopy_after;		/* ... after this many pre-copy passes */
	/* TLS on the RAM and NBD streams: a directory in QEMU's
	 * tls-creds-x509 layout ("" = off), the name the destination's
	 * certificate must carry ("" = the host of a tcp: migrate-uri). */
	char tls_dir[VMM_PATH_MAX];
	char tls_hostname[VMM_ID_MAX * 4];
};

struct vmm_site {
	char name[VMM_ID_MAX];
	char device[VMM_SPEC_MAX];	/* "" = none (cloud site) */
	char rails[128];		/* RESUME rails= hint at this site */
	bool rails_set;
	char qemu[VMM_SPEC_MAX];	/* {qemu} of dest-command at this site */
	/* backend = libvirt: the site's (default) host, the device as a
	 * libvirt device XML ({name} expanded per VM), and where that
	 * host's guest channel sockets are seen from here ("" = the same
	 * filesystem: ninja-migrate runs on that host). */
	char uri[VMM_URI_MAX];
	char device_xml[VMM_SPEC_MAX];
	bool device_set;		/* "device" given (qemu syntax) */
	char chan_root[VMM_PATH_MAX];
	/* backend = qemu, remote destinations (docs/vmm-bridge.md "Remote
	 * destinations"): the site's host and the ssh command template
	 * that reaches it ("" = destinations on this machine). */
	char host[VMM_HOST_LEN];
	char ssh[VMM_SPEC_MAX];
};

struct vmm_vm_conf {
	char name[VMM_ID_MAX];
	int line;			/* where its section starts */
	char source_qmp[VMM_PATH_MAX];
	char source_chan[VMM_PATH_MAX];
	char dest_qmp[VMM_PATH_MAX];
	char dest_chan[VMM_PATH_MAX];
	char dest_command[VMM_CMD_MAX];	/* expanded */
	char dest_log[VMM_PATH_MAX];
	char pidfile[VMM_PATH_MAX];
	char source_device[VMM_SPEC_MAX];	/* "" = none */
	char dest_device[VMM_SPEC_MAX];		/* "" = none */
	char source_rails[128];
	char dest_rails[128];
	/* Storage: disk_node "" = no storage to move (shared storage). */
	char disk_node[VMM_ID_MAX];
	char base[VMM_PATH_MAX];
	char source_overlay[VMM_PATH_MAX];
	char dest_overlay[VMM_PATH_MAX];
	char migrate_uri[VMM_PATH_MAX];	/* unix:PATH or tcp:HOST:PORT */
	char nbd_uri[VMM_PATH_MAX];	/* unix:PATH or tcp:HOST:PORT */
	/* ranks = N: MPI ranks the guest must report SAFE (-1: not set). */
	int expect_ranks;
	/* backend = libvirt (source_device/dest_device then hold device
	 * XML; disk_node is the disk target to copy, e.g. "vda"): */
	char domain[VMM_ID_MAX * 2];	/* domain name, default the VM's */
	char source_uri[VMM_URI_MAX], dest_uri[VMM_URI_MAX];
	char source_chan_root[VMM_PATH_MAX], dest_chan_root[VMM_PATH_MAX];
	/* backend = qemu with a destination host (dest-host, or the
	 * destination site's host; "" = this machine): dest-qmp and
	 * dest-chan then name local ssh forwards ({run}/{name}.{site}.qmp.fwd,
	 * .chan.fwd) of the paths on the host (remote_qmp, remote_chan:
	 * what dest-command's placeholders got); dest-log, pidfile,
	 * base and dest-overlay are paths on the host. */
	char dest_host[VMM_HOST_LEN];
	char dest_ssh[VMM_SPEC_MAX];
	char remote_qmp[VMM_PATH_MAX], remote_chan[VMM_PATH_MAX];
	/* The same for the source (source-host, else the source site's
	 * host): source-qmp and source-chan then name local forwards
	 * ({run}/{name}.{source-site}.src-qmp.fwd, .src-chan.fwd) of the
	 * paths on that host (remote_src_qmp, remote_src_chan). */
	char source_host[VMM_HOST_LEN];
	char source_ssh[VMM_SPEC_MAX];
	char remote_src_qmp[VMM_PATH_MAX], remote_src_chan[VMM_PATH_MAX];
};

struct vmm_cluster {
	char file[VMM_PATH_MAX];
	char name[VMM_ID_MAX];
	char source_site[VMM_ID_MAX];
	char dest_site[VMM_ID_MAX];
	enum vmm_mode mode;
	char backend[16];		/* "qemu" (embedded) or "libvirt" */
	char run_dir[VMM_PATH_MAX];
	char lock[VMM_PATH_MAX];
	/* Deadlines, milliseconds. */
	int64_t quiesce_ms, unplug_ms, start_ms, storage_ms, ram_ms,
		switch_ms, plug_ms, link_ms, resume_ms;
	struct vmm_tuning tune;
	bool quit_source;		/* quit the source QEMU after success */
	bool link_wait;			/* upgrade = wait: port-active before RESUME */
	struct vmm_site sites[VMM_MAX_SITES];
	int nsites;
	struct vmm_vm_conf *vms;	/* nvms, allocated: vmm_cluster_free() */
	int nvms;
	/* backend = libvirt: keep the domain defined at the destination /
	 * undefine it at the source (VIR_MIGRATE_PERSIST_DEST /
	 * VIR_MIGRATE_UNDEFINE_SOURCE). */
	bool persist_dest, undefine_source;
};

/*
 * Parse a cluster file.  0 on success; -1 with a message naming the file
 * and line (or the VM and key) in err.  Unknown sections and keys, a
 * missing required key, duplicate VMs and malformed values are errors.
 */
int vmm_cluster_load(struct vmm_cluster *c, const char *path, char *err,
		     size_t errlen);
/* The same with dest-site replaced by dest_site (NULL/"": the file's):
 * ninja-migrate restore --site. */
int vmm_cluster_load_at(struct vmm_cluster *c, const char *path,
			const char *dest_site, char *err, size_t errlen);
/* The same from a string (tests); fname only names it in messages. */
int vmm_cluster_parse(struct vmm_cluster *c, const char *text,
		      const char *fname, char *err, size_t errlen);
/* Free what a successful load/parse allocated (c->vms). */
void vmm_cluster_free(struct vmm_cluster *c);

/*
 * One migration setting by its cluster-file key (max-bandwidth,
 * max-downtime, auto-converge, multifd-channels, compress, postcopy,
 * postcopy-after, tls-creds, tls-hostname), from the file or the
 * command line.  0 set; 1 not a
 * setting's key; -1 bad value, why in err ("KEY: expected ..., got ...").
 */
int vmm_tuning_set(struct vmm_tuning *t, const char *key, const char *val,
		   char *err, size_t errlen);
/* The settings together make sense (compress needs multifd, ...).  0, or
 * -1 with the reason in err. */
int vmm_tuning_check(const struct vmm_tuning *t, char *err, size_t errlen);

const struct vmm_site *vmm_cluster_site(const struct vmm_cluster *c,
					const char *name);
const char *vmm_mode_name(enum vmm_mode m);

/*
 * A device spec in -device syntax ("e1000,id=hca0,bus=rp1,netdev=n1",
 * "vfio-pci,host=0000:81:00.0,id=hca0"): its id= into id (size idlen),
 * read as device_add gets it (qmp_device_args: ",," is a comma, the last
 * id= counts).  -1 if it has none, an empty one or one that does not fit
 * (device_del needs it).
 */
int vmm_device_id(const char *spec, char *id, size_t idlen);

#endif /* NINJA_VMM_CLUSTER_H */
