// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * Device events of ninja.ko, with ktime timestamps.
 *
 * PCI add/remove (bus notifier on pci_bus_type) and netdev
 * register/unregister and carrier up/down (netdev notifier) become
 *
 *	EVENT <t_ns> <kind> k=v... real_ns=<ns>\n
 *
 * lines, where t_ns is ktime_get_ns() (CLOCK_MONOTONIC) taken inside the
 * notifier and real_ns is ktime_get_real_ns() at the same moment.  The
 * notifiers only record the event (ninja_event_post); an ordered work
 * item formats it and queues it to the host and to every registered rank.
 * A PCI removal is the exception that waits: its line is written to the
 * host port before the notifier returns, so the host sees "pci-del"
 * before QEMU reports the device deleted.
 *
 * ninja_ib.ko posts the IB events through the exported ninja_event_post.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/pci.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/timekeeping.h>

#include "ninja_kmod.h"

static const char *const ninja_ev_names[NINJA_EV_COUNT] = {
	[NINJA_EV_PCI_ADD]	= "pci-add",
	[NINJA_EV_PCI_DEL]	= "pci-del",
	[NINJA_EV_NETDEV_REG]	= "netdev-reg",
	[NINJA_EV_NETDEV_UNREG]	= "netdev-unreg",
	[NINJA_EV_LINK_UP]	= "link-up",
	[NINJA_EV_LINK_DOWN]	= "link-down",
	[NINJA_EV_IB_ADD]	= "ib-add",
	[NINJA_EV_IB_DEL]	= "ib-del",
	[NINJA_EV_PORT_ACTIVE]	= "port-active",
	[NINJA_EV_PORT_DOWN]	= "port-down",
	[NINJA_EV_MODULE_UNLOAD] = "module-unload",
};

const char *ninja_ev_name(enum ninja_ev_kind kind)
{
	if ((unsigned int)kind >= NINJA_EV_COUNT)
		return "unknown";
	return ninja_ev_names[kind];
}

/* Keep event lines parseable: one token per k=v, printable ASCII only. */
static void ninja_ev_sanitize(char *s)
{
	for (; *s; s++)
		if (*s != ' ' && (*s < 0x21 || *s > 0x7e))
			*s = '?';
}

void ninja_event_post(enum ninja_ev_kind kind, const char *fmt, ...)
{
	struct ninja_dev *nd = ninja_dev;
	u64 t_ns = ktime_get_ns();
	u64 real_ns = ktime_get_real_ns();
	struct ninja_ev *ev;
	unsigned long flags;
	va_list args;

	if (!nd || (unsigned int)kind >= NINJA_EV_COUNT)
		return;
	/* Notifiers may run in atomic context (IB event handlers do). */
	ev = kmalloc(sizeof(*ev), GFP_ATOMIC);
	if (ev) {
		ev->kind = kind;
		ev->t_ns = t_ns;
		ev->real_ns = real_ns;
		va_start(args, fmt);
		vsnprintf(ev->kv, sizeof(ev->kv), fmt, args);
		va_end(args);
		ninja_ev_sanitize(ev->kv);
	}
	spin_lock_irqsave(&nd->ev_lock, flags);
	nd->ev_count[kind]++;
	nd->ev_last_ns[kind] = t_ns;
	nd->ev_last_real_ns[kind] = real_ns;
	if (ev && nd->ev_npending < NINJA_EV_PENDING_MAX) {
		list_add_tail(&ev->node, &nd->ev_pending);
		nd->ev_npending++;
		ev = NULL;
	} else {
		nd->n_ev_dropped++;
	}
	spin_unlock_irqrestore(&nd->ev_lock, flags);
	kfree(ev);
	queue_work(nd->wq, &nd->ev_work);
}
EXPORT_SYMBOL_GPL(ninja_event_post);

/* Format pending events; queue them to the host and to every rank. */
void ninja_ev_work(struct work_struct *work)
{
	struct ninja_dev *nd = container_of(work, struct ninja_dev, ev_work);
	struct ninja_ev *ev, *tmp;
	char line[NINJA_LINE_MAX];
	unsigned long flags;
	LIST_HEAD(list);
	int n;

	spin_lock_irqsave(&nd->ev_lock, flags);
	list_splice_init(&nd->ev_pending, &list);
	nd->ev_npending = 0;
	spin_unlock_irqrestore(&nd->ev_lock, flags);

	list_for_each_entry_safe(ev, tmp, &list, node) {
		n = scnprintf(line, sizeof(line) - 1,
			      "EVENT %llu %s%s%s real_ns=%llu", ev->t_ns,
			      ninja_ev_name(ev->kind), ev->kv[0] ? " " : "",
			      ev->kv, ev->real_ns);
		line[n++] = '\n';
		ninja_to_host(nd, line, n);
		mutex_lock(&nd->agg_lock);
		ninja_to_rank(nd, NINJA_AGG_ALL, line, n);
		mutex_unlock(&nd->agg_lock);
		list_del(&ev->node);
		kfree(ev);
	}
}

void ninja_event_flush(void)
{
	struct ninja_dev *nd = ninja_dev;

	if (!nd)
		return;
	flush_work(&nd->ev_work);	/* queues tx_work */
	flush_delayed_work(&nd->tx_work);
}

/* ---- PCI ---- */

static int ninja_pci_notify(struct notifier_block *nb, unsigned long action,
			    void *data)
{
	struct pci_dev *pdev = to_pci_dev((struct device *)data);

	switch (action) {
	case BUS_NOTIFY_ADD_DEVICE:
		ninja_event_post(NINJA_EV_PCI_ADD,
				 "bdf=%s vendor=0x%04x device=0x%04x class=0x%06x",
				 pci_name(pdev), pdev->vendor, pdev->device,
				 pdev->class);
		break;
	case BUS_NOTIFY_DEL_DEVICE:
		ninja_event_post(NINJA_EV_PCI_DEL,
				 "bdf=%s vendor=0x%04x device=0x%04x",
				 pci_name(pdev), pdev->vendor, pdev->device);
		/* Tell the host before the device (and its slot) is gone. */
		ninja_event_flush();
		break;
	}
	return NOTIFY_DONE;
}

/* ---- netdev ---- */

#define NINJA_LINKS_MAX	64

/*
 * Last reported link state per interface, to report changes only.
 * Protected by RTNL: netdev notifiers always run under rtnl_lock().
 */
static struct {
	int ifindex;		/* 0: free */
	bool up;
} ninja_links[NINJA_LINKS_MAX];

static int ninja_link_slot(int ifindex, bool create)
{
	int i, free = -1;

	ASSERT_RTNL();
	for (i = 0; i < NINJA_LINKS_MAX; i++) {
		if (ninja_links[i].ifindex == ifindex)
			return i;
		if (!ninja_links[i].ifindex && free < 0)
			free = i;
	}
	if (create && free >= 0) {
		ninja_links[free].ifindex = ifindex;
		ninja_links[free].up = false;
	}
	return create ? free : -1;
}

static const char *ninja_netdev_bdf(struct net_device *dev)
{
	struct device *parent = dev->dev.parent;

	return parent && dev_is_pci(parent) ? pci_name(to_pci_dev(parent)) :
		"none";
}

static void ninja_link_check(struct ninja_dev *nd, struct net_device *dev)
{
	bool up = netif_running(dev) && netif_carrier_ok(dev);
	int i = ninja_link_slot(dev->ifindex, true);

	if (i >= 0) {
		if (ninja_links[i].up == up)
			return;
		ninja_links[i].up = up;
	}
	if (nd->netdev_replay)
		return;
	ninja_event_post(up ? NINJA_EV_LINK_UP : NINJA_EV_LINK_DOWN,
			 "dev=%s ifindex=%d bdf=%s", dev->name, dev->ifindex,
			 ninja_netdev_bdf(dev));
}

static int ninja_netdev_notify(struct notifier_block *nb,
			       unsigned long event, void *ptr)
{
	struct ninja_dev *nd = container_of(nb, struct ninja_dev, netdev_nb);
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);
	int i;

	if ((dev->flags & IFF_LOOPBACK) || !net_eq(dev_net(dev), &init_net))
		return NOTIFY_DONE;

	switch (event) {
	case NETDEV_REGISTER:
		ninja_link_slot(dev->ifindex, true);
		if (!nd->netdev_replay)
			ninja_event_post(NINJA_EV_NETDEV_REG,
					 "dev=%s ifindex=%d bdf=%s mac=%pM",
					 dev->name, dev->ifindex,
					 ninja_netdev_bdf(dev), dev->dev_addr);
		break;
	case NETDEV_UNREGISTER:
		i = ninja_link_slot(dev->ifindex, false);
		if (i >= 0)
			ninja_links[i].ifindex = 0;
		if (!nd->netdev_replay)
			ninja_event_post(NINJA_EV_NETDEV_UNREG,
					 "dev=%s ifindex=%d bdf=%s", dev->name,
					 dev->ifindex, ninja_netdev_bdf(dev));
		break;
	case NETDEV_UP:
	case NETDEV_DOWN:
	case NETDEV_CHANGE:
		ninja_link_check(nd, dev);
		break;
	}
	return NOTIFY_DONE;
}

int ninja_notify_start(struct ninja_dev *nd)
{
	int ret;

	nd->pci_nb.notifier_call = ninja_pci_notify;
	ret = bus_register_notifier(&pci_bus_type, &nd->pci_nb);
	if (ret)
		return ret;

	nd->netdev_nb.notifier_call = ninja_netdev_notify;
	/*
	 * Registration replays REGISTER/UP for every existing device (under
	 * RTNL, which register_netdevice_notifier takes itself): those only
	 * seed the link table.  The flag is read under RTNL.
	 */
	nd->netdev_replay = true;
	ret = register_netdevice_notifier(&nd->netdev_nb);
	rtnl_lock();
	nd->netdev_replay = false;
	rtnl_unlock();
	if (ret)
		goto err_pci;
	return 0;

err_pci:
	bus_unregister_notifier(&pci_bus_type, &nd->pci_nb);
	return ret;
}

void ninja_notify_stop(struct ninja_dev *nd)
{
	/* Unregistration replays DOWN/UNREGISTER: not real events either. */
	rtnl_lock();
	nd->netdev_replay = true;
	rtnl_unlock();
	unregister_netdevice_notifier(&nd->netdev_nb);
	bus_unregister_notifier(&pci_bus_type, &nd->pci_nb);
	flush_work(&nd->ev_work);
}
