// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * test_cluster.c - unit tests of the ninja-migrate cluster file parser
 * (vmm-bridge/vmm_cluster.c): a full valid file with defaults and
 * placeholders, site devices and per-VM overrides, and every kind of error
 * (missing keys, unknown keys and sections, bad values), each reported
 * with its file and line.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tests/ninja_test.h"
#include "vmm_cluster.h"


static const char good[] =
	"# a test cluster\n"
	"[cluster]\n"
	"name = demo\n"
	"source-site = ib\n"
	"dest-site = cloud\n"
	"mode = stopped\n"
	"run-dir = /run/ninja\n"
	"quiesce-timeout = 5s\n"
	"link-timeout = 1500ms\n"
	"ram-timeout = 2m\n"
	"max-bandwidth = 100M\n"
	"upgrade = wait\n"
	"lock = /tmp/x.lock\n"
	"\n"
	"[site ib]\n"
	"device = vfio-pci,host=0000:81:00.0,id=hca0,bus=rp1\n"
	"\n"
	"[site cloud]\n"
	"device = none\n"
	"qemu = /opt/qemu10/bin/qemu-system-x86_64\n"
	"[defaults]\n"
	"source-qmp = unix:{run}/{name}.qmp\n"
	"source-chan = unix:{run}/{name}.ninja.sock\n"
	"dest-qmp = unix:{run}/{name}.{site}.qmp\n"
	"dest-chan = unix:{run}/{name}.{site}.ninja.sock\n"
	"disk-node = disk0\n"
	"base = /images/base.qcow2\n"
	"dest-overlay = /images/{name}.{site}.qcow2\n"
	"dest-command = {qemu} -name {name} -qmp {dest-qmp},server=on,wait=off "
		"-blockdev driver=qcow2,node-name={disk-node},file.driver=file,file.filename={dest-overlay}\n"
	"\n"
	"[vm vm0]\n"
	"source-overlay = /images/vm0.qcow2\n"
	"\n"
	"[vm vm1]\n"
	"   ; comment\n"
	"source-device = vfio-pci,host=0000:82:00.0,id=hca0,bus=rp1\n"
	"dest-device = e1000,id=nic0,bus=rp1,netdev=n1\n"
	"disk-node = none\n"
	"dest-command = qemu-system-x86_64 -name {name}\n"
	"migrate-uri = tcp:10.0.0.2:4444\n";

static void t_good(void)
{
	static struct vmm_cluster c;
	char err[512] = "";
	const struct vmm_vm_conf *v0, *v1;

	nt_group("cluster: a valid file, defaults, placeholders, overrides");
	if (!CHECK(vmm_cluster_parse(&c, good, "good.conf", err, sizeof(err)) == 0)) {
		printf("  %s\n", err);
		return;
	}
	/* c.vms is allocated by the parse. */
	v0 = &c.vms[0];
	v1 = &c.vms[1];
	CHECK(strcmp(c.name, "demo") == 0);
	CHECK(c.mode == VMM_MODE_STOPPED);
	CHECK(c.quiesce_ms == 5000 && c.link_ms == 1500 && c.ram_ms == 120000);
	CHECK(c.resume_ms == 30000);
	CHECK(c.tune.max_bandwidth == 100ull << 20);
	CHECK(c.link_wait);
	CHECK(strcmp(c.lock, "/tmp/x.lock") == 0);
	CHECK(c.nsites == 2 && c.nvms == 2);
	CHECK(strcmp(v0->name, "vm0") == 0 && strcmp(v1->name, "vm1") == 0);
	CHECK(strcmp(v0->source_qmp, "unix:/run/ninja/vm0.qmp") == 0);
	CHECK(strcmp(v0->dest_chan, "unix:/run/ninja/vm0.cloud.ninja.sock") == 0);
	CHECK(strcmp(v0->dest_overlay, "/images/vm0.cloud.qcow2") == 0);
	CHECK(strcmp(v0->source_device, "vfio-pci,host=0000:81:00.0,id=hca0,bus=rp1") == 0);
	CHECK(v0->dest_device[0] == '\0');
	CHECK(strcmp(v0->source_rails, "verbs,tcp") == 0);
	CHECK(strcmp(v0->dest_rails, "tcp") == 0);
	CHECK(strcmp(v0->migrate_uri, "unix:/run/ninja/vm0.migrate.sock") == 0);
	CHECK(strcmp(v0->nbd_uri, "unix:/run/ninja/vm0.nbd.sock") == 0);
	CHECK(strcmp(v0->dest_log, "/run/ninja/vm0.cloud.log") == 0);
	CHECK(strcmp(v0->pidfile, "/run/ninja/vm0.cloud.pid") == 0);
	CHECK(strstr(v0->dest_command, "-name vm0 -qmp unix:/run/ninja/vm0.cloud.qmp,server=on") != NULL);
	/* {qemu}: the destination site's qemu key. */
	CHECK(strncmp(v0->dest_command, "/opt/qemu10/bin/qemu-system-x86_64 -name vm0 ", 45) == 0);
	CHECK(strstr(v0->dest_command, "node-name=disk0,") != NULL);
	CHECK(strstr(v0->dest_command, "file.filename=/images/vm0.cloud.qcow2") != NULL);
	CHECK(strcmp(v1->source_device, "vfio-pci,host=0000:82:00.0,id=hca0,bus=rp1") == 0);
	CHECK(strcmp(v1->dest_device, "e1000,id=nic0,bus=rp1,netdev=n1") == 0);
	CHECK(strcmp(v1->dest_rails, "verbs,tcp") == 0);
	CHECK(v1->disk_node[0] == '\0');
	CHECK(strcmp(v1->migrate_uri, "tcp:10.0.0.2:4444") == 0);
	CHECK(strcmp(v1->dest_command, "qemu-system-x86_64 -name vm1") == 0);
}

/* Parse good with `from` replaced by `to`; expect failure mentioning want. */
static void bad(const char *from, const char *to, const char *want)
{
	static struct vmm_cluster c;
	char text[sizeof(good) + 512], err[512] = "";
	const char *p = strstr(good, from);
	int r;

	if (!p) {
		printf("  test bug: '%s' not in the sample\n", from);
		CHECK(0);
		return;
	}
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - good), good, to,
		 p + strlen(from));
	r = vmm_cluster_parse(&c, text, "t.conf", err, sizeof(err));
	if (!CHECK(r == -1) || !CHECK(strstr(err, want) != NULL))
		printf("  replacing '%s': got r=%d err='%s', wanted '%s'\n",
		       from, r, err, want);
}

static void t_errors(void)
{
	nt_group("cluster: missing fields, unknown keys/sections, bad values");
	/* Missing required keys. */
	bad("source-qmp = unix:{run}/{name}.qmp\n", "", "[vm vm0]: missing 'source-qmp'");
	bad("dest-command = ", "x-dest-command = ", "t.conf:29: unknown key 'x-dest-command' in [defaults]");
	bad("dest-site = cloud\n", "", "needs source-site and dest-site");
	bad("run-dir = /run/ninja\n", "", "needs run-dir");
	bad("[site cloud]", "[site cloud2]", "dest-site cloud has no [site cloud] section");
	bad("[cluster]\n", "", "outside of any section");
	bad("[vm vm0]", "[vm vm1]", "vm vm1 given twice");
	/* Unknown keys and sections, with line numbers. */
	bad("name = demo\n", "name = demo\nfrob = 1\n", "t.conf:4: unknown key 'frob' in [cluster]");
	bad("source-overlay = /images/vm0.qcow2\n", "source-overlay = x\nsource_qmp = y\n",
	    "t.conf:33: unknown key 'source_qmp' in [vm vm0]");
	bad("[site ib]\n", "[site ib]\nspeed = 100G\n", "unknown key 'speed' in [site ib]");
	bad("qemu = /opt/qemu10/bin/qemu-system-x86_64\n", "qemu =\n",
	    "t.conf:20: qemu: expected the QEMU command of site cloud, got nothing");
	bad("[defaults]", "[default]", "unknown section [default]");
	bad("[vm vm0]", "[vm vm/0]", "bad VM name 'vm/0'");
	bad("[vm vm0]", "[vm vm0", "malformed section header");
	bad("name = demo\n", "name demo\n", "expected 'key = value'");
	bad("disk-node = none\n", "disk-node = none\ndisk-node = x\n", "'disk-node' given twice");
	/* Bad values. */
	bad("mode = stopped", "mode = fast", "mode: expected 'auto', 'live' or 'stopped'");
	bad("quiesce-timeout = 5s", "quiesce-timeout = soon", "quiesce-timeout: expected a duration");
	bad("quiesce-timeout = 5s", "quiesce-timeout = -3", "quiesce-timeout: expected a duration");
	bad("max-bandwidth = 100M", "max-bandwidth = lots", "max-bandwidth");
	bad("upgrade = wait", "upgrade = soon", "upgrade: expected live or wait, got 'soon'");
	bad("{run}/{name}.qmp", "{run}/{nme}.qmp", "unknown placeholder {nme}");
	bad("{run}/{name}.qmp", "{run}/{name.qmp", "unclosed '{'");
	bad("device = vfio-pci,host=0000:81:00.0,id=hca0,bus=rp1",
	    "device = vfio-pci,host=0000:81:00.0,bus=rp1", "has no id=");
	bad("base = /images/base.qcow2\n", "", "needs 'base'");
	bad("id=hca0,bus=rp1\n\n[site cloud]",
	    "id=h0123456789012345678901234567890123456789012345678901234567890123,bus=rp1\n\n[site cloud]",
	    "or one longer than 63 bytes");
	bad("dest-command = qemu-system-x86_64 -name {name}\n", "",
	    "t.conf:29: dest-command: placeholder {disk-node} has no value here");
	bad("migrate-uri = tcp:10.0.0.2:4444", "migrate-uri = exec:cat", "migrate-uri/nbd-uri must be");
	bad("[vm vm0]\n", "[vm vm0]\ndomain = x\n", "'domain' is a key of backend = libvirt");
	bad("[site cloud]\n", "[site cloud]\nuri = qemu:///system\n",
	    "uri, device-xml and chan-root are keys of backend = libvirt");
}

/*
 * Numbers a hostile or careless file may hold: not finite, negative,
 * beyond the type (a NaN cast to an integer is undefined behaviour; an
 * overflowing size used to wrap silently).  Each is refused with its key
 * and line.
 */
static void t_numbers(void)
{
	static const char *const durs[] = {
		"nan", "NaN", "-nan", "inf", "-inf", "infinity", "-3", "-0",
		"0", "0.0001", "1e9", "0x10", "1..5s", ".", "8d", "10h",
		"99999999999999999999999999999999999999", "604801s", "10081m",
		"1e400", "",
	};
	static const char *const sizes[] = {
		"-1", "-1M", "nan", "inf", "18446744073709551616",
		"99999999999999999999", "8589934592G", "17179869184G",
		"9223372036854775808", "9007199254740992M", "0x10", "1T", "",
	};
	static struct vmm_cluster c;
	char from[64], to[128], want[160];
	size_t i;

	nt_group("cluster: nan/inf/negative/overflowing numbers are refused with key and line");
	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		snprintf(to, sizeof(to), "ram-timeout = %s", durs[i]);
		snprintf(want, sizeof(want),
			 "t.conf:10: ram-timeout: expected a duration like 30, 30s, 500ms or 2m, got '%s' (",
			 durs[i]);
		bad("ram-timeout = 2m", to, want);
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(to, sizeof(to), "max-bandwidth = %s", sizes[i]);
		snprintf(want, sizeof(want),
			 "t.conf:11: max-bandwidth: expected bytes/s like 100M, got '%s' (",
			 sizes[i]);
		bad("max-bandwidth = 100M", to, want);
	}
	bad("ram-timeout = 2m", "ram-timeout = nan", "(not a finite number)");
	bad("ram-timeout = 2m", "ram-timeout = -1", "(negative)");
	bad("ram-timeout = 2m", "ram-timeout = 604801", "(longer than 7 days)");
	bad("max-bandwidth = 100M", "max-bandwidth = 8589934592G", "(too large)");
	bad("max-bandwidth = 100M", "max-bandwidth = 18446744073709551616", "(too large)");
	/* The limits themselves, fractions and every unit still work. */
	for (i = 0; i < 6; i++) {
		static const char *const ok[] = {
			"604800", "10080m", "604800000ms", "1.5s", "0.5", "1ms",
		};
		static const int64_t ms[] = {
			604800000, 604800000, 604800000, 1500, 500, 1,
		};
		char text[sizeof(good) + 64];

		snprintf(from, sizeof(from), "ram-timeout = %s", ok[i]);
		snprintf(text, sizeof(text), "%.*s%s%s",
			 (int)(strstr(good, "ram-timeout = 2m") - good), good, from,
			 strstr(good, "ram-timeout = 2m") + 16);
		if (!CHECK(vmm_cluster_parse(&c, text, "t.conf", want, sizeof(want)) == 0 &&
			   c.ram_ms == ms[i]))
			printf("  %s: %s (%lld)\n", from, want, (long long)c.ram_ms);
	}
	{
		char text[sizeof(good) + 64];

		snprintf(text, sizeof(text), "%.*s%s%s",
			 (int)(strstr(good, "max-bandwidth = 100M") - good), good,
			 "max-bandwidth = 8589934591G",
			 strstr(good, "max-bandwidth = 100M") + 20);
		CHECK(vmm_cluster_parse(&c, text, "t.conf", want, sizeof(want)) == 0 &&
		      c.tune.max_bandwidth == 8589934591ull << 30);
	}
}

static void t_device_id(void)
{
	char id[64];

	nt_group("cluster: device id from a -device spec");
	CHECK(vmm_device_id("e1000,id=hca0,bus=rp1", id, sizeof(id)) == 0 &&
	      strcmp(id, "hca0") == 0);
	CHECK(vmm_device_id("vfio-pci,host=0000:81:00.0,id=ib0", id, sizeof(id)) == 0 &&
	      strcmp(id, "ib0") == 0);
	CHECK(vmm_device_id("e1000,bus=rp1", id, sizeof(id)) == -1);
	CHECK(vmm_device_id("e1000,xid=a", id, sizeof(id)) == -1);
	CHECK(vmm_device_id("", id, sizeof(id)) == -1);
	/* As device_add reads the spec: ",," is a comma, the last id= wins. */
	CHECK(vmm_device_id("e1000,id=a,,b,bus=rp1", id, sizeof(id)) == 0 &&
	      strcmp(id, "a,b") == 0);
	CHECK(vmm_device_id("e1000,id=a,id=b", id, sizeof(id)) == 0 &&
	      strcmp(id, "b") == 0);
	CHECK(vmm_device_id("e1000,id=a,id=", id, sizeof(id)) == -1);
	CHECK(vmm_device_id("id=x", id, sizeof(id)) == 0 && strcmp(id, "x") == 0);
	CHECK(vmm_device_id("e1000,id=0123456789", id, 10) == -1);
	CHECK(vmm_device_id("e1000,id=012345678", id, 10) == 0);
}

static void t_load(void)
{
	static struct vmm_cluster c;
	char err[512] = "";

	nt_group("cluster: load from a file; a missing file");
	CHECK(vmm_cluster_load(&c, "/nonexistent/c.conf", err, sizeof(err)) == -1);
	CHECK(strstr(err, "cannot open cluster file /nonexistent/c.conf") != NULL);
	CHECK(vmm_cluster_parse(&c, "", "empty.conf", err, sizeof(err)) == -1);
	CHECK(strstr(err, "no [cluster] section") != NULL);
	CHECK(vmm_cluster_parse(&c, "[cluster]\nsource-site=a\ndest-site=a\nrun-dir=/tmp\n[site a]\n",
				"novm.conf", err, sizeof(err)) == -1);
	CHECK(strstr(err, "no [vm NAME] section") != NULL);
}

static void t_continuation(void)
{
	static struct vmm_cluster c;
	static const char text[] =
		"[cluster]\n"
		"source-site = a\n"
		"dest-site = b\n"
		"run-dir = /r\n"
		"[site a]\n"
		"[site b]\n"
		"[vm v]\n"
		"source-qmp = /q\n"
		"source-chan = /c\n"
		"dest-qmp = /dq\n"
		"dest-chan = /dc\n"
		"dest-command = qemu -name {name}   \n"
		"\t-m 1G\n"
		"    # an indented comment\n"
		"\n"
		"  -qmp {dest-qmp-path}  \n"
		"frob = 1\n";
	char err[512] = "";

	nt_group("cluster: continuation lines; line numbers after them");
	CHECK(vmm_cluster_parse(&c, text, "cont.conf", err, sizeof(err)) == -1);
	CHECK(strstr(err, "cont.conf:17: unknown key 'frob'") != NULL);
	if (!strstr(err, "cont.conf:17"))
		printf("  %s\n", err);
	{
		char t2[sizeof(text)];

		memcpy(t2, text, sizeof(text));
		*strstr(t2, "frob") = '\0';
		CHECK(vmm_cluster_parse(&c, t2, "cont.conf", err, sizeof(err)) == 0);
		CHECK(strcmp(c.vms[0].dest_command, "qemu -name v -m 1G -qmp /dq") == 0);
		if (strcmp(c.vms[0].dest_command, "qemu -name v -m 1G -qmp /dq"))
			printf("  got '%s'\n", c.vms[0].dest_command);
		CHECK(strcmp(c.vms[0].dest_rails, "tcp") == 0);
	}
}

/* The example shipped in examples/ parses. */
static void t_example(void)
{
	static struct vmm_cluster c;
	char path[1024], err[512] = "";

	/* The source tree's examples/, wherever the test runs from. */
	snprintf(path, sizeof(path), "%s/examples/cluster-ib-to-cloud.conf",
		 NINJA_TOP_SRCDIR);
	nt_group("cluster: examples/cluster-ib-to-cloud.conf");
	CHECK(vmm_cluster_load(&c, path, err, sizeof(err)) == 0);
	if (err[0])
		printf("  %s\n", err);
	CHECK(c.nvms == 4);
	CHECK(strcmp(c.vms[0].source_device, "vfio-pci,host=0000:81:00.1,id=hca0,bus=rp1") == 0);
	CHECK(strcmp(c.vms[2].source_device, "vfio-pci,host=0000:81:00.3,id=hca0,bus=rp1") == 0);
	CHECK(c.vms[3].dest_device[0] == '\0');
	CHECK(strstr(c.vms[1].dest_command, "-smp 8 -nodefaults") != NULL);
	CHECK(strstr(c.vms[1].dest_command, "path=/run/ninja/climate-run-42/node1.ninja.sock,") != NULL);
	CHECK(c.tune.max_bandwidth == 2ull << 30);
}

/* Sample's [cluster]..[defaults] then n [vm vmK] sections; parse it. */
static int parse_n(struct vmm_cluster *c, int n, char *err, size_t errlen)
{
	size_t head = (size_t)(strstr(good, "[vm vm0]") - good);
	size_t cap = head + (size_t)n * 64 + 1, off;
	char *text = malloc(cap);
	int i, r;

	if (!text)
		return -2;
	memcpy(text, good, head);
	off = head;
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(text + off, cap - off,
					"[vm vm%d]\nsource-overlay = /images/vm%d.qcow2\n",
					i, i);
	r = vmm_cluster_parse(c, text, "many.conf", err, errlen);
	free(text);
	return r;
}

/* No fixed ceiling of 64 VMs: the table grows; past VMM_MAX_VMS: error. */
static void t_many(void)
{
	static struct vmm_cluster c;
	char err[512] = "";

	nt_group("cluster: 300 VMs (past the old 64); more than VMM_MAX_VMS is an error");
	if (!CHECK(parse_n(&c, 300, err, sizeof(err)) == 0))
		printf("  %s\n", err);
	CHECK(c.nvms == 300);
	CHECK(c.nvms == 300 && strcmp(c.vms[299].name, "vm299") == 0);
	CHECK(c.nvms == 300 && strcmp(c.vms[64].source_qmp, "unix:/run/ninja/vm64.qmp") == 0);
	vmm_cluster_free(&c);
	CHECK(c.vms == NULL && c.nvms == 0);
	CHECK(parse_n(&c, VMM_MAX_VMS + 1, err, sizeof(err)) == -1);
	CHECK(strstr(err, "more than 4096 VMs") != NULL);
	CHECK(c.vms == NULL && c.nvms == 0);
}

/* backend = libvirt: site uri and device XML, per-VM placement, keys of
 * the other backend refused. */
static const char lv_good[] =
	"[cluster]\n"
	"backend = libvirt\n"
	"source-site = ib\n"
	"dest-site = cloud\n"
	"run-dir = /run/ninja\n"
	"persist-dest = yes\n"
	"[site ib]\n"
	"uri = qemu+ssh://root@ib1/system\n"
	"device-xml = <hostdev mode='subsystem' type='pci' managed='yes'>\n"
	"  <source><address bus='0x81' slot='0' function='1'/></source></hostdev>\n"
	"chan-root = /mnt/ib1\n"
	"[site cloud]\n"
	"uri = qemu+tls://c7/system\n"
	"[defaults]\n"
	"disk-node = vda\n"
	"migrate-uri = unix:{run}/{name}.{site}.mig\n"
	"[vm vm0]\n"
	"[vm vm1]\n"
	"domain = job42-{name}\n"
	"dest-uri = qemu+tls://c8/system\n"
	"dest-device-xml = <interface type='network'><source network='{name}'/></interface>\n";

static void lv_bad(const char *from, const char *to, const char *want)
{
	static struct vmm_cluster c;
	char text[sizeof(lv_good) + 512], err[512] = "";
	const char *p = strstr(lv_good, from);
	int r;

	if (!p) {
		printf("  test bug: '%s' not in the sample\n", from);
		CHECK(0);
		return;
	}
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - lv_good), lv_good,
		 to, p + strlen(from));
	r = vmm_cluster_parse(&c, text, "lv.conf", err, sizeof(err));
	if (!CHECK(r == -1) || !CHECK(strstr(err, want) != NULL))
		printf("  replacing '%s': got r=%d err='%s', wanted '%s'\n",
		       from, r, err, want);
}

static void t_libvirt(void)
{
	static struct vmm_cluster c;
	const struct vmm_vm_conf *v0, *v1;
	char err[512];

	nt_group("cluster: backend = libvirt");
#ifndef HAVE_LIBVIRT
	CHECK(vmm_cluster_parse(&c, lv_good, "lv.conf", err, sizeof(err)) == -1 &&
	      strstr(err, "built without the libvirt backend") != NULL);
	return;
#endif
	if (!CHECK(vmm_cluster_parse(&c, lv_good, "lv.conf", err, sizeof(err)) == 0)) {
		printf("  %s\n", err);
		return;
	}
	v0 = &c.vms[0];
	v1 = &c.vms[1];
	CHECK(strcmp(c.backend, "libvirt") == 0 && c.persist_dest && !c.undefine_source);
	CHECK(strcmp(v0->domain, "vm0") == 0 && strcmp(v1->domain, "job42-vm1") == 0);
	CHECK(strcmp(v0->source_uri, "qemu+ssh://root@ib1/system") == 0);
	CHECK(strcmp(v0->dest_uri, "qemu+tls://c7/system") == 0);
	CHECK(strcmp(v1->dest_uri, "qemu+tls://c8/system") == 0);
	CHECK(strncmp(v0->source_device, "<hostdev mode='subsystem'", 25) == 0 &&
	      strstr(v0->source_device, "</hostdev>") != NULL);
	CHECK(v0->dest_device[0] == '\0');
	CHECK(strcmp(v1->dest_device, "<interface type='network'><source network='vm1'/></interface>") == 0);
	CHECK(strcmp(v0->source_rails, "verbs,tcp") == 0 && strcmp(v0->dest_rails, "tcp") == 0);
	CHECK(strcmp(v1->dest_rails, "verbs,tcp") == 0);
	CHECK(strcmp(v0->disk_node, "vda") == 0);
	CHECK(strcmp(v0->migrate_uri, "unix:/run/ninja/vm0.cloud.mig") == 0);
	CHECK(v0->nbd_uri[0] == '\0');
	CHECK(strcmp(v0->source_chan_root, "/mnt/ib1") == 0 && v0->dest_chan_root[0] == '\0');
	CHECK(v0->source_chan[0] == '\0' && v0->dest_command[0] == '\0');
	vmm_cluster_free(&c);
	lv_bad("[vm vm0]\n", "[vm vm0]\nsource-qmp = unix:/x\n",
	       "'source-qmp' is a key of backend = qemu (this cluster file uses backend = libvirt)");
	lv_bad("[site cloud]\n", "[site cloud]\ndevice = e1000,id=x\n",
	       "'device' is QEMU -device syntax; with backend = libvirt give 'device-xml'");
	lv_bad("uri = qemu+tls://c7/system\n", "", "[vm vm0]: no libvirt URI for site cloud");
	lv_bad("dest-uri = qemu+tls://c8/system", "dest-uri = qemu+ssh://root@ib1/system",
	       "source and destination are the same libvirt host");
	lv_bad("device-xml = <hostdev", "device-xml = hostdev", "device-xml: expected a libvirt device XML");
	lv_bad("backend = libvirt", "backend = xen", "backend: expected 'qemu'");
	lv_bad("persist-dest = yes", "persist-dest = maybe", "persist-dest: expected yes or no");
	lv_bad("chan-root = /mnt/ib1", "chan-root = mnt", "chan-root: expected an absolute directory");
}

/*
 * VMs on other hosts (backend = qemu): the site's host is every VM's
 * unless the VM names its own (dest-host, source-host); monitor and
 * channel sockets on a host become local forwards in run-dir, and what
 * the forwards cannot carry is refused.
 */
static void t_remote(void)
{
	static struct vmm_cluster c;
	char text[sizeof(good) + 512], err[512] = "";
	const char *site = strstr(good, "[site ib]\n") + 10;
	const struct vmm_vm_conf *v0, *v1;

	nt_group("cluster: sources and destinations on other hosts");
	/* The ib site on host ib-node1; vm1 (last in the file) on ib-node2. */
	snprintf(text, sizeof(text),
		 "%.*shost = ib-node1\nssh = ssh -i /k root@{host}\n%ssource-host = ib-node2\n",
		 (int)(site - good), good, site);
	if (!CHECK(vmm_cluster_parse(&c, text, "r.conf", err, sizeof(err)) == 0)) {
		printf("  %s\n", err);
		return;
	}
	v0 = &c.vms[0];
	v1 = &c.vms[1];
	CHECK(strcmp(v0->source_host, "ib-node1") == 0);
	CHECK(strcmp(v1->source_host, "ib-node2") == 0);
	CHECK(strcmp(v0->source_ssh, "ssh -i /k root@{host}") == 0);
	CHECK(strcmp(v0->remote_src_qmp, "/run/ninja/vm0.qmp") == 0);
	CHECK(strcmp(v0->remote_src_chan, "/run/ninja/vm0.ninja.sock") == 0);
	CHECK(strcmp(v0->source_qmp, "unix:/run/ninja/vm0.ib.src-qmp.fwd") == 0);
	CHECK(strcmp(v1->source_chan, "unix:/run/ninja/vm1.ib.src-chan.fwd") == 0);
	/* The destination stays on this machine. */
	CHECK(v0->dest_host[0] == '\0');
	CHECK(strcmp(v0->dest_qmp, "unix:/run/ninja/vm0.cloud.qmp") == 0);
	/* Refused: a hostile host, a source monitor a forward cannot carry. */
	bad("[vm vm0]\n", "[vm vm0]\nsource-host = -oProxyCommand=x\n",
	    "source-host: a host may not start with '-'");
	bad("[vm vm0]\n", "[vm vm0]\nsource-host = h1\nsource-qmp = tcp:10.0.0.1:4000\n",
	    "[vm vm0]: it runs on host h1: source-qmp and source-chan must be unix:/PATH on that host");
	bad("[vm vm0]\n", "[vm vm0]\ndest-host = h2\n",
	    "[vm vm0]: its destination is on host h2: migrate-uri and nbd-uri must be tcp:HOST:PORT");
}

int main(void)
{
	t_good();
	t_errors();
	t_numbers();
	t_device_id();
	t_load();
	t_continuation();
	t_example();
	t_many();
	t_libvirt();
	t_remote();
	return nt_done();
}
