// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja_ib.ko: InfiniBand/RDMA device events for ninja.ko.
 *
 * A separate module so that ninja.ko does not depend on ib_core: load it
 * after ib_core (modprobe does that) when the guest has RDMA devices.  It
 * registers an IB client; for each device it posts
 *
 *	ib-add dev=<name> ports=<n> node_guid=<hex> [existing=1]
 *	port-active / port-down dev=<name> port=<n> [initial=1]
 *	ib-del dev=<name>
 *
 * through ninja_event_post().  existing=1 marks devices that were there
 * when this module was loaded; initial=1 a port found ACTIVE by
 * ib_query_port() right after the device was added (soft-RoCE reports
 * its port state from the netdev and may be active at once).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <rdma/ib_verbs.h>

#include "ninja_kmod.h"

struct ninja_ibdev {
	struct ib_device *ibdev;
	struct ib_event_handler eh;
};

/* True only inside ib_register_client(): add() sees existing devices. */
static bool ninja_ib_registering;

static struct ib_client ninja_ib_client;

static void ninja_ib_event(struct ib_event_handler *eh, struct ib_event *e)
{
	switch (e->event) {
	case IB_EVENT_PORT_ACTIVE:
		ninja_event_post(NINJA_EV_PORT_ACTIVE, "dev=%s port=%u",
				 dev_name(&e->device->dev), e->element.port_num);
		break;
	case IB_EVENT_PORT_ERR:
		ninja_event_post(NINJA_EV_PORT_DOWN, "dev=%s port=%u",
				 dev_name(&e->device->dev), e->element.port_num);
		break;
	default:
		break;
	}
}

static int ninja_ib_add(struct ib_device *ibdev)
{
	struct ninja_ibdev *d;
	struct ib_port_attr attr;
	u32 port;

	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	d->ibdev = ibdev;
	INIT_IB_EVENT_HANDLER(&d->eh, ibdev, ninja_ib_event);
	ib_register_event_handler(&d->eh);
	ib_set_client_data(ibdev, &ninja_ib_client, d);

	ninja_event_post(NINJA_EV_IB_ADD, "dev=%s ports=%u node_guid=%016llx%s",
			 dev_name(&ibdev->dev), rdma_end_port(ibdev),
			 (unsigned long long)be64_to_cpu(ibdev->node_guid),
			 READ_ONCE(ninja_ib_registering) ? " existing=1" : "");
	/* A port that is active already sends no PORT_ACTIVE event. */
	rdma_for_each_port(ibdev, port) {
		if (ib_query_port(ibdev, port, &attr))
			continue;
		if (attr.state == IB_PORT_ACTIVE)
			ninja_event_post(NINJA_EV_PORT_ACTIVE,
					 "dev=%s port=%u initial=1",
					 dev_name(&ibdev->dev), port);
	}
	return 0;
}

static void ninja_ib_remove(struct ib_device *ibdev, void *client_data)
{
	struct ninja_ibdev *d = client_data;

	ib_unregister_event_handler(&d->eh);
	ninja_event_post(NINJA_EV_IB_DEL, "dev=%s", dev_name(&ibdev->dev));
	kfree(d);
}

static struct ib_client ninja_ib_client = {
	.name = "ninja",
	.add = ninja_ib_add,
	.remove = ninja_ib_remove,
};

static int __init ninja_ib_init(void)
{
	int ret;

	WRITE_ONCE(ninja_ib_registering, true);
	ret = ib_register_client(&ninja_ib_client);
	WRITE_ONCE(ninja_ib_registering, false);
	if (!ret)
		pr_info("ninja_ib: watching RDMA devices\n");
	return ret;
}

static void __exit ninja_ib_exit(void)
{
	ib_unregister_client(&ninja_ib_client);
}

module_init(ninja_ib_init);
module_exit(ninja_ib_exit);

MODULE_DESCRIPTION("Ninja: RDMA device and port events for ninja.ko");
MODULE_AUTHOR("The Ninja project");
MODULE_LICENSE("Dual BSD/GPL");
MODULE_VERSION(NINJA_KMOD_VERSION);
