// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fuzz_cluster.c - libFuzzer harness of the ninja-migrate cluster file
 * parser (vmm-bridge/vmm_cluster.c): the input is a cluster file.  A
 * file that parses must give bounded, NUL-terminated strings, positive
 * deadlines and device ids that the QMP arguments carry intact; a file
 * that does not must say why, naming the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qmp_client.h"
#include "vmm_cluster.h"

#define BOUNDED(s) (strnlen((s), sizeof(s)) < sizeof(s))

static void check_vm(const struct vmm_vm_conf *v)
{
	const char *devs[2] = { v->source_device, v->dest_device };
	char id[VMM_ID_MAX];
	int i;

	if (!BOUNDED(v->name) || !BOUNDED(v->source_qmp) ||
	    !BOUNDED(v->dest_command) || !BOUNDED(v->migrate_uri) ||
	    !BOUNDED(v->nbd_uri) || !BOUNDED(v->source_device) ||
	    !BOUNDED(v->dest_device) || !v->name[0])
		abort();
	for (i = 0; i < 2; i++) {
		json_object *o;
		const char *got;

		if (!devs[i][0])
			continue;
		if (vmm_device_id(devs[i], id, sizeof(id)))
			abort();	/* the parser checked it has one */
		o = qmp_device_args(devs[i]);
		got = qmp_get_str(o, "id", NULL);
		/* device_del removes what device_add added. */
		if (!got || strcmp(got, id))
			abort();
		json_object_put(o);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmm_cluster c;
	char err[1024];
	char *text;
	int i, r;

	if (size > (1 << 20))
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	err[0] = '\0';
	r = vmm_cluster_parse(&c, text, "fuzz.conf", err, sizeof(err));
	free(text);
	if (r != 0 && r != -1)
		abort();
	if (r) {
		if (strncmp(err, "fuzz.conf", 9) != 0)
			abort();
		return 0;
	}
	if (c.nvms < 1 || c.nvms > VMM_MAX_VMS || c.nsites > VMM_MAX_SITES)
		abort();
	if (c.quiesce_ms <= 0 || c.unplug_ms <= 0 || c.start_ms <= 0 ||
	    c.storage_ms <= 0 || c.ram_ms <= 0 || c.switch_ms <= 0 ||
	    c.plug_ms <= 0 || c.link_ms <= 0 || c.resume_ms <= 0 ||
	    c.tune.max_bandwidth > (uint64_t)INT64_MAX)
		abort();
	for (i = 0; i < c.nvms; i++)
		check_vm(&c.vms[i]);
	vmm_cluster_free(&c);
	return 0;
}
