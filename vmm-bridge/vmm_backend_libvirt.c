// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * vmm_backend_libvirt.c - the backend for libvirt domains, on libvirt's C
 * API (docs/vmm-bridge.md, "libvirt"): libvirtd owns every QEMU, so
 * ninja-migrate never opens a monitor itself.
 *
 *   attach      virConnectOpen(source uri), the domain by name, running;
 *               its org.ninja.0 channel socket from the live domain XML
 *   unplug/plug virDomainDetachDeviceFlags / virDomainAttachDeviceFlags
 *               (AFFECT_LIVE) with the site's device XML; unplug waits for
 *               the DEVICE_REMOVED event
 *   start_dest  virConnectOpen(destination uri); no domain of that name
 *               may run there
 *   storage     virDomainMigrateToURI3 starts (in a thread) with
 *               PEER2PEER | PAUSED (| LIVE | NON_SHARED_INC ...); the
 *               source's job statistics are polled until the disk copy is
 *               in sync
 *   transfer    ... until the migration finished: the domain has arrived
 *               at the destination, PAUSED; the source QEMU is gone (its
 *               overlay is intact).  That is this backend's commit point.
 *   commit      virDomainResume at the destination
 *   abort       before arrival: virDomainAbortJob, the source resumes
 *               (libvirt resumes it when a migration fails), a leftover
 *               destination domain is destroyed; after arrival: the domain
 *               is migrated back the same way (PAUSED) and resumed at the
 *               source
 *
 * Job statistics (downtime, RAM and disk bytes) come from
 * virDomainGetJobStats: live at the source, completed at the destination.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "vmm_migrate.h"

#define POLL_NS		100000000LL	/* job statistics every 100 ms */
#define CHAN_NAME	"org.ninja.0"

struct lv_priv {
	virConnectPtr src, dst;
	virDomainPtr sdom, ddom;
	int src_cb[2], dst_cb[2];	/* event callback ids, -1 none */
	/* Device events of the domain (guarded by mu). */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned int removed, removal_failed;	/* counters */
	char removed_alias[128];
	/* The migration thread (mig_* guarded by mu once started). */
	pthread_t mig;
	bool mig_started, mig_joined, mig_done;
	int mig_rc;
	char mig_err[512];
	virConnectPtr mig_from;		/* where the migrating domain is */
	virDomainPtr mig_dom;
	char mig_to[VMM_URI_MAX];
	unsigned long mig_flags;
	virTypedParameterPtr params;
	int nparams, maxparams;
	bool arrived;			/* at the destination, paused */
	int64_t t_pause, t_done;
};

static struct lv_priv *P(struct vmm_vm *vm)
{
	return vm->priv;
}

/* ---- libvirt's event loop and errors (once per process) ---- */

static pthread_once_t lv_once = PTHREAD_ONCE_INIT;
static int lv_init_rc;

static void lv_quiet(void *opaque, virErrorPtr e)
{
	/* Errors are read with virGetLastErrorMessage() and reported in
	 * ninja-migrate's own words, not printed by libvirt. */
	(void)opaque;
	(void)e;
}

static void *lv_event_loop(void *arg)
{
	(void)arg;
	for (;;)
		if (virEventRunDefaultImpl() < 0)
			break;
	return NULL;
}

static void lv_init(void)
{
	pthread_t t;

	virSetErrorFunc(NULL, lv_quiet);
	if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0 ||
	    pthread_create(&t, NULL, lv_event_loop, NULL)) {
		lv_init_rc = -1;
		return;
	}
	pthread_detach(t);
}

static const char *lv_err(void)
{
	const char *m = virGetLastErrorMessage();

	return m && m[0] ? m : "unknown libvirt error";
}

static int lv_fail(struct vmm_vm *vm, const char *what)
{
	vmm_vm_fail(vm, "%s: %s", what, lv_err());
	return -1;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };

	nanosleep(&ts, NULL);
}

/* ---- domain XML ---- */

/* One string of the domain XML by XPath ("" if absent); -1 if the XML
 * does not parse. */
static int xml_get(const char *xml, const char *xpath, char *out,
		   size_t size)
{
	xmlDocPtr doc;
	xmlXPathContextPtr ctx;
	xmlXPathObjectPtr obj;
	int rc = 0;

	out[0] = '\0';
	doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
			    XML_PARSE_NOWARNING);
	if (!doc)
		return -1;
	ctx = xmlXPathNewContext(doc);
	obj = ctx ? xmlXPathEvalExpression(BAD_CAST xpath, ctx) : NULL;
	if (!obj)
		rc = -1;
	else if (obj->type == XPATH_STRING && obj->stringval &&
		 strlen((const char *)obj->stringval) < size)
		snprintf(out, size, "%s", (const char *)obj->stringval);
	xmlXPathFreeObject(obj);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return rc;
}

/*
 * The guest channel of a domain: the first <console type='unix'> with a
 * virtio target (a virtconsole, what ninja.ko reads), else a unix
 * <channel> whose target is named org.ninja.0; bound by QEMU (mode
 * bind).  Seen from here under chan_root.
 */
static int find_channel(struct vmm_vm *vm, virDomainPtr dom,
			const char *root, char *ep, size_t size)
{
	char path[VMM_PATH_MAX], *xml = virDomainGetXMLDesc(dom, 0);

	if (!xml)
		return lv_fail(vm, "domain XML");
	if (xml_get(xml, "string(/domain/devices/console[@type='unix'][target/@type='virtio'][source/@mode='bind'][1]/source/@path)",
		    path, sizeof(path)) ||
	    (!path[0] &&
	     xml_get(xml, "string(/domain/devices/channel[@type='unix'][target/@name='" CHAN_NAME "'][source/@mode='bind'][1]/source/@path)",
		     path, sizeof(path)))) {
		free(xml);
		vmm_vm_fail(vm, "domain XML of %s does not parse",
			    vm->conf->domain);
		return -1;
	}
	free(xml);
	if (path[0] != '/') {
		vmm_vm_fail(vm, "domain %s has no guest channel: give it <console type='unix'><source mode='bind' path='...'/><target type='virtio'/></console> (the first virtio console) or a unix <channel> with <target type='virtio' name='" CHAN_NAME "'/>",
			    vm->conf->domain);
		return -1;
	}
	if ((size_t)snprintf(ep, size, "unix:%s%s", root, path) >= size) {
		vmm_vm_fail(vm, "guest channel path %s%s too long", root, path);
		return -1;
	}
	return 0;
}

/* ---- device events ---- */

static struct vmm_vm *ev_vm(virDomainPtr dom, void *opaque)
{
	struct vmm_vm *vm = opaque;
	const char *n = virDomainGetName(dom);

	return n && strcmp(n, vm->conf->domain) == 0 ? vm : NULL;
}

/* A device-removed or removal-failed event: count it, keep its alias and
 * wake whoever waits for it. */
static void ev_device(virDomainPtr dom, void *opaque, const char *alias,
		      bool failed)
{
	struct vmm_vm *vm = ev_vm(dom, opaque);
	struct lv_priv *p;

	if (!vm)
		return;
	p = P(vm);
	pthread_mutex_lock(&p->mu);
	if (failed)
		p->removal_failed++;
	else
		p->removed++;
	snprintf(p->removed_alias, sizeof(p->removed_alias), "%s",
		 alias ? alias : "?");
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static void ev_removed(virConnectPtr c, virDomainPtr dom, const char *alias,
		       void *opaque)
{
	(void)c;
	ev_device(dom, opaque, alias, false);
}

static void ev_removal_failed(virConnectPtr c, virDomainPtr dom,
			      const char *alias, void *opaque)
{
	(void)c;
	ev_device(dom, opaque, alias, true);
}

static void ev_register(struct vmm_vm *vm, virConnectPtr c, int ids[2])
{
	ids[0] = virConnectDomainEventRegisterAny(c, NULL,
		VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
		VIR_DOMAIN_EVENT_CALLBACK(ev_removed), vm, NULL);
	ids[1] = virConnectDomainEventRegisterAny(c, NULL,
		VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
		VIR_DOMAIN_EVENT_CALLBACK(ev_removal_failed), vm, NULL);
}

static void ev_deregister(virConnectPtr c, int ids[2])
{
	int i;

	for (i = 0; i < 2; i++)
		if (c && ids[i] >= 0)
			virConnectDomainEventDeregisterAny(c, ids[i]);
	ids[0] = ids[1] = -1;
}

/* ---- connections ---- */

static virConnectPtr lv_open(struct vmm_vm *vm, const char *uri,
			     const char *who)
{
	virConnectPtr c = virConnectOpen(uri);

	if (!c) {
		vmm_vm_fail(vm, "cannot connect to the %s libvirt at %s: %s",
			    who, uri, lv_err());
		return NULL;
	}
	/* A dead daemon is noticed within ~15 s, not never. */
	virConnectSetKeepAlive(c, 5, 3);
	return c;
}

static int lv_priv_new(struct vmm_vm *vm)
{
	struct lv_priv *p;

	if (vm->priv)
		return 0;
	if (pthread_once(&lv_once, lv_init) || lv_init_rc) {
		vmm_vm_fail(vm, "cannot start libvirt's event loop");
		return -1;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		vmm_vm_fail(vm, "out of memory");
		return -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->src_cb[0] = p->src_cb[1] = p->dst_cb[0] = p->dst_cb[1] = -1;
	vm->priv = p;
	return 0;
}

static const char *state_name(int st)
{
	switch (st) {
	case VIR_DOMAIN_RUNNING: return "running";
	case VIR_DOMAIN_BLOCKED: return "blocked";
	case VIR_DOMAIN_PAUSED: return "paused";
	case VIR_DOMAIN_SHUTDOWN: return "shutting down";
	case VIR_DOMAIN_SHUTOFF: return "shut off";
	case VIR_DOMAIN_CRASHED: return "crashed";
	case VIR_DOMAIN_PMSUSPENDED: return "suspended by the guest";
	default: return "unknown";
	}
}

static int dom_state(virDomainPtr d)
{
	int st, reason;

	if (!d || virDomainGetState(d, &st, &reason, 0) < 0)
		return -1;
	return st;
}

static int64_t file_size(const char *path)
{
	struct stat st;

	return path[0] && stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/*
 * An x86 domain without <acpi/> runs with -no-acpi: on q35 the guest then
 * uses the firmware's fallback ACPI tables (written for i440fx), and QEMU's
 * hot-unplug request makes it eject the whole multifunction slot of the
 * root ports (every device behind them: disk, channels) instead of the
 * device; no DEVICE_REMOVED ever comes (docs/vmm-bridge.md, libvirt).
 */
static bool no_acpi(const char *xml)
{
	char arch[32], acpi[16];

	if (xml_get(xml, "string(/domain/os/type/@arch)", arch, sizeof(arch)) ||
	    xml_get(xml, "name(/domain/features/acpi)", acpi, sizeof(acpi)))
		return false;
	return (strcmp(arch, "x86_64") == 0 || strcmp(arch, "i686") == 0) &&
	       !acpi[0];
}

static int lv_attach(struct vmm_vm *vm, int64_t deadline)
{
	const struct vmm_vm_conf *c = vm->conf;
	struct lv_priv *p;
	char type[16], path[VMM_PATH_MAX], xp[256], *xml;
	int st;

	(void)deadline;
	if (lv_priv_new(vm))
		return -1;
	p = P(vm);
	if (!p->src && !(p->src = lv_open(vm, c->source_uri, "source")))
		return -1;
	if (!p->sdom) {
		p->sdom = virDomainLookupByName(p->src, c->domain);
		if (!p->sdom) {
			vmm_vm_fail(vm, "no domain '%s' at %s (virsh -c '%s' list --all)",
				    c->domain, c->source_uri, c->source_uri);
			return -1;
		}
	}
	st = dom_state(p->sdom);
	if (st != VIR_DOMAIN_RUNNING) {
		vmm_vm_fail(vm, "domain %s at %s is not running (state %s)",
			    c->domain, c->source_uri,
			    st < 0 ? lv_err() : state_name(st));
		return -1;
	}
	xml = virDomainGetXMLDesc(p->sdom, 0);
	if (!xml)
		return lv_fail(vm, "domain XML");
	if (xml_get(xml, "string(/domain/@type)", type, sizeof(type))) {
		free(xml);
		vmm_vm_fail(vm, "domain XML of %s does not parse", c->domain);
		return -1;
	}
	snprintf(vm->accel, sizeof(vm->accel), "%s",
		 strcmp(type, "kvm") == 0 ? "kvm" : "tcg");
	if ((c->source_device[0] || c->dest_device[0]) && no_acpi(xml)) {
		free(xml);
		vmm_vm_fail(vm, "domain %s has no <features><acpi/></features>: libvirt starts it without ACPI and the guest cannot hot-unplug the device (it removes the wrong PCI slot); add <acpi/> to the domain's <features> and restart it",
			    c->domain);
		return -1;
	}
	if (c->disk_node[0]) {
		snprintf(xp, sizeof(xp),
			 "string(/domain/devices/disk[target/@dev='%s'][1]/source/@file)",
			 c->disk_node);
		if (strchr(c->disk_node, '\'') ||
		    xml_get(xml, xp, path, sizeof(path)) || !path[0]) {
			free(xml);
			vmm_vm_fail(vm, "domain %s has no file disk with target dev='%s' (disk-node: the disk to copy, e.g. vda)",
				    c->domain, c->disk_node);
			return -1;
		}
		/* Sizes only where the image is on this filesystem. */
		if (!c->source_chan_root[0])
			vm->overlay_bytes = file_size(path);
	}
	free(xml);
	if (find_channel(vm, p->sdom, c->source_chan_root, vm->src.endpoint,
			 sizeof(vm->src.endpoint)))
		return -1;
	if (p->src_cb[0] < 0)
		ev_register(vm, p->src, p->src_cb);
	return 0;
}

/* ---- settings ---- */

static int lv_check_settings(struct vmm_vm *vm, bool probe, int64_t deadline)
{
	const struct vmm_tuning *t = &vm->cl->tune;

	(void)probe;
	(void)deadline;
	if (t->postcopy) {
		vmm_vm_fail(vm, "postcopy: not with backend = libvirt (the domains arrive paused at the commit point; post-copy would run them at the destination before every VM arrived); drop postcopy");
		return -1;
	}
	if (t->compress_zstd) {
		vmm_vm_fail(vm, "compress = zstd: libvirt 9.0 cannot compress multifd streams; drop compress");
		return -1;
	}
	if (t->tls_dir[0]) {
		vmm_vm_fail(vm, "tls-creds: libvirt takes migration TLS credentials from each host's qemu.conf (migrate_tls_x509_cert_dir), not from the cluster file; drop tls-creds (docs/vmm-bridge.md, libvirt)");
		return -1;
	}
	if (t->max_bandwidth % (1 << 20)) {
		vmm_vm_fail(vm, "max-bandwidth: libvirt takes whole MiB/s; give a multiple of 1M");
		return -1;
	}
	return 0;
}

/* ---- destination checks (--dry-run) ---- */

/* <hostdev type='pci'>: the node device name of its PCI address. */
static int hostdev_name(const char *xml, char *out, size_t size)
{
	char d[16], b[16], s[16], f[16];
	unsigned long v[4];
	char *e;
	int i;
	const char *parts[4] = { d, b, s, f };

	if (xml_get(xml, "string(/hostdev[@type='pci']/source/address/@domain)", d, sizeof(d)) ||
	    xml_get(xml, "string(/hostdev[@type='pci']/source/address/@bus)", b, sizeof(b)) ||
	    xml_get(xml, "string(/hostdev[@type='pci']/source/address/@slot)", s, sizeof(s)) ||
	    xml_get(xml, "string(/hostdev[@type='pci']/source/address/@function)", f, sizeof(f)))
		return -1;
	if (!b[0])
		return 1;	/* not a PCI hostdev */
	for (i = 0; i < 4; i++) {
		if (!parts[i][0]) {
			v[i] = 0;
			continue;
		}
		errno = 0;
		v[i] = strtoul(parts[i], &e, 0);
		if (errno || *e)
			return -1;
	}
	snprintf(out, size, "pci_%04lx_%02lx_%02lx_%lx", v[0], v[1], v[2], v[3]);
	return 0;
}

static int check_device_xml(struct vmm_vm *vm, const char *xml,
			    virConnectPtr host, const char *uri)
{
	char root[32], nd[64];
	virNodeDevicePtr dev;
	int r;

	if (xml_get(xml, "name(/*)", root, sizeof(root)) || !root[0]) {
		vmm_vm_fail(vm, "device XML does not parse: %.60s", xml);
		return -1;
	}
	r = hostdev_name(xml, nd, sizeof(nd));
	if (r < 0) {
		vmm_vm_fail(vm, "<hostdev> PCI address does not parse");
		return -1;
	}
	if (r == 0) {
		dev = virNodeDeviceLookupByName(host, nd);
		if (!dev) {
			vmm_vm_fail(vm, "host %s has no PCI device %s (the <hostdev> of the device XML)",
				    uri, nd);
			return -1;
		}
		virNodeDeviceFree(dev);
	}
	return 0;
}

static int lv_check_dest(struct vmm_vm *vm)
{
	const struct vmm_vm_conf *c = vm->conf;
	struct lv_priv *p;
	virDomainPtr d;
	int st;

	if (lv_priv_new(vm))
		return -1;
	p = P(vm);
	if (!p->dst && !(p->dst = lv_open(vm, c->dest_uri, "destination")))
		return -1;
	d = virDomainLookupByName(p->dst, c->domain);
	st = dom_state(d);
	if (d)
		virDomainFree(d);
	if (st >= 0 && st != VIR_DOMAIN_SHUTOFF) {
		vmm_vm_fail(vm, "a domain %s already exists at %s (state %s)",
			    c->domain, c->dest_uri, state_name(st));
		return -1;
	}
	if (c->dest_device[0] &&
	    check_device_xml(vm, c->dest_device, p->dst, c->dest_uri))
		return -1;
	if (c->source_device[0] && p->src &&
	    check_device_xml(vm, c->source_device, p->src, c->source_uri))
		return -1;
	if (c->dest_chan_root[0] && file_size(c->dest_chan_root) < 0) {
		vmm_vm_fail(vm, "chan-root %s of the destination site is not reachable",
			    c->dest_chan_root);
		return -1;
	}
	return 0;
}

/* ---- devices ---- */

static virDomainPtr cur(struct vmm_vm *vm)
{
	return vm->at_dest ? P(vm)->ddom : P(vm)->sdom;
}

static const char *cur_uri(struct vmm_vm *vm)
{
	return vm->at_dest ? vm->conf->dest_uri : vm->conf->source_uri;
}

static bool device_missing(void)
{
	virErrorPtr e = virGetLastError();

	return e && (e->code == VIR_ERR_DEVICE_MISSING ||
		     (e->code == VIR_ERR_OPERATION_FAILED && e->message &&
		      strstr(e->message, "not found")));
}

static int lv_unplug(struct vmm_vm *vm, const char *xml, int64_t deadline)
{
	struct lv_priv *p = P(vm);
	virDomainPtr d = cur(vm);
	unsigned int removed, failed;
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	removed = p->removed;
	failed = p->removal_failed;
	pthread_mutex_unlock(&p->mu);
	if (virDomainDetachDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
		if (device_missing()) {
			vmm_progress(vm, "unplug: the device is not in %s, nothing to remove",
				     vm->conf->domain);
			snprintf(vm->warn, sizeof(vm->warn),
				 "the device was not present at %s", cur_uri(vm));
			return 1;
		}
		vmm_vm_fail(vm, "device XML did not detach from %s at %s: %s",
			    vm->conf->domain, cur_uri(vm), lv_err());
		return -1;
	}
	/* libvirt returns once QEMU was asked (or after its own short
	 * wait): the device is gone at the DEVICE_REMOVED event. */
	pthread_mutex_lock(&p->mu);
	while (p->removed == removed && p->removal_failed == failed) {
		int64_t now = vmm_now_ns();
		struct timespec ts;

		if (now >= deadline || vmm_vm_aborting(vm)) {
			rc = now >= deadline ? -2 : -1;
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	if (!rc && p->removal_failed != failed)
		rc = -3;
	pthread_mutex_unlock(&p->mu);
	if (rc == -2)
		vmm_vm_fail(vm, "no device-removed event from libvirt in time (does the guest's PCIe hotplug driver cooperate?)");
	else if (rc == -1)
		vmm_vm_fail(vm, "aborted");
	else if (rc == -3)
		vmm_vm_fail(vm, "libvirt reports that the guest refused to release the device (%s)",
			    p->removed_alias);
	return rc == -3 ? -1 : rc;
}

static int lv_plug(struct vmm_vm *vm, const char *xml, int64_t deadline)
{
	(void)deadline;
	if (virDomainAttachDeviceFlags(cur(vm), xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
		vmm_vm_fail(vm, "device XML did not attach to %s at %s: %s",
			    vm->conf->domain, cur_uri(vm), lv_err());
		return -1;
	}
	return 0;
}

/* ---- destination, migration ---- */

static int lv_start_dest(struct vmm_vm *vm, int64_t deadline)
{
	struct lv_priv *p = P(vm);

	(void)deadline;
	vm->err[0] = '\0';
	if (!p->dst && !(p->dst = lv_open(vm, vm->conf->dest_uri,
					  "destination")))
		return -1;
	if (lv_check_dest(vm))
		return -1;
	vm->dest_pid = 0;
	return 0;
}

/* "unix:/p" -> "unix:///p", "tcp:h:p" -> "tcp://h:p" (libvirt's form). */
static void lv_stream_uri(const char *in, char *out, size_t size)
{
	if (strncmp(in, "unix:", 5) == 0)
		snprintf(out, size, "unix://%s", in + 5);
	else
		snprintf(out, size, "tcp://%s", in + 4);
}

static bool use_live(const struct vmm_vm *vm)
{
	return vm->cl->mode == VMM_MODE_LIVE ||
	       (vm->cl->mode == VMM_MODE_AUTO && strcmp(vm->accel, "kvm") == 0);
}

/* The parameters and flags of a migration of the domain to "to". */
static int mig_params(struct vmm_vm *vm, bool back)
{
	const struct vmm_vm_conf *c = vm->conf;
	const struct vmm_tuning *t = &vm->cl->tune;
	struct lv_priv *p = P(vm);
	char u[VMM_PATH_MAX + 16];
	int r = 0;

	virTypedParamsFree(p->params, p->nparams);
	p->params = NULL;
	p->nparams = p->maxparams = 0;
	p->mig_flags = VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PAUSED;
	if (use_live(vm))
		p->mig_flags |= VIR_MIGRATE_LIVE;
	if (c->disk_node[0]) {
		p->mig_flags |= VIR_MIGRATE_NON_SHARED_INC;
		r |= virTypedParamsAddString(&p->params, &p->nparams,
					     &p->maxparams,
					     VIR_MIGRATE_PARAM_MIGRATE_DISKS,
					     c->disk_node);
		if (c->nbd_uri[0]) {
			lv_stream_uri(c->nbd_uri, u, sizeof(u));
			if (back)
				strncat(u, "-back", sizeof(u) - strlen(u) - 1);
			r |= virTypedParamsAddString(&p->params, &p->nparams,
						     &p->maxparams,
						     VIR_MIGRATE_PARAM_DISKS_URI, u);
		}
	}
	if (c->migrate_uri[0]) {
		lv_stream_uri(c->migrate_uri, u, sizeof(u));
		if (back && u[0] == 'u')
			strncat(u, "-back", sizeof(u) - strlen(u) - 1);
		r |= virTypedParamsAddString(&p->params, &p->nparams,
					     &p->maxparams,
					     VIR_MIGRATE_PARAM_URI, u);
	}
	if (t->max_bandwidth)
		r |= virTypedParamsAddULLong(&p->params, &p->nparams,
					     &p->maxparams,
					     VIR_MIGRATE_PARAM_BANDWIDTH,
					     t->max_bandwidth >> 20);
	if (t->auto_converge)
		p->mig_flags |= VIR_MIGRATE_AUTO_CONVERGE;
	if (t->multifd_channels) {
		p->mig_flags |= VIR_MIGRATE_PARALLEL;
		r |= virTypedParamsAddInt(&p->params, &p->nparams,
					  &p->maxparams,
					  VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS,
					  t->multifd_channels);
	}
	/* Back to the source: restore what the way out changed. */
	if (back ? vm->cl->undefine_source : vm->cl->persist_dest)
		p->mig_flags |= VIR_MIGRATE_PERSIST_DEST;
	if (back ? vm->cl->persist_dest : vm->cl->undefine_source)
		p->mig_flags |= VIR_MIGRATE_UNDEFINE_SOURCE;
	if (r)
		return lv_fail(vm, "migration parameters");
	return 0;
}

static void *mig_thread(void *arg)
{
	struct vmm_vm *vm = arg;
	struct lv_priv *p = P(vm);
	int r;

	r = virDomainMigrateToURI3(p->mig_dom, p->mig_to, p->params,
				   (unsigned int)p->nparams, p->mig_flags);
	pthread_mutex_lock(&p->mu);
	p->mig_rc = r;
	if (r < 0)
		snprintf(p->mig_err, sizeof(p->mig_err), "%s", lv_err());
	p->mig_done = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int mig_start(struct vmm_vm *vm, virDomainPtr dom, const char *to,
		     bool back)
{
	struct lv_priv *p = P(vm);

	if (mig_params(vm, back))
		return -1;
	if (vm->cl->tune.max_downtime_ms &&
	    virDomainMigrateSetMaxDowntime(dom,
			(unsigned long long)vm->cl->tune.max_downtime_ms, 0) < 0)
		return lv_fail(vm, "max-downtime");
	p->mig_dom = dom;
	snprintf(p->mig_to, sizeof(p->mig_to), "%s", to);
	p->mig_done = false;
	p->mig_joined = false;
	p->mig_rc = 0;
	p->mig_err[0] = '\0';
	if (pthread_create(&p->mig, NULL, mig_thread, vm)) {
		vmm_vm_fail(vm, "cannot start a thread");
		return -1;
	}
	p->mig_started = true;
	return 0;
}

static bool mig_finished(struct lv_priv *p)
{
	bool d;

	pthread_mutex_lock(&p->mu);
	d = p->mig_done;
	pthread_mutex_unlock(&p->mu);
	return d;
}

static void mig_join(struct lv_priv *p)
{
	if (p->mig_started && !p->mig_joined) {
		pthread_join(p->mig, NULL);
		p->mig_joined = true;
	}
}

/* One sample of the source's job statistics. */
struct jstats {
	int type;
	unsigned long long mem_total, mem_done, mem_left, mem_bps,
		disk_total, disk_done, disk_left, dirty, iters;
	unsigned long long downtime;
	bool have_downtime;
};

static int job_stats(virDomainPtr d, unsigned int flags, struct jstats *s)
{
	virTypedParameterPtr par = NULL;
	int n = 0;

	memset(s, 0, sizeof(*s));
	if (virDomainGetJobStats(d, &s->type, &par, &n, flags) < 0)
		return -1;
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_MEMORY_TOTAL, &s->mem_total);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_MEMORY_PROCESSED, &s->mem_done);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_MEMORY_REMAINING, &s->mem_left);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_MEMORY_BPS, &s->mem_bps);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, &s->dirty);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_MEMORY_ITERATION, &s->iters);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_DISK_TOTAL, &s->disk_total);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_DISK_PROCESSED, &s->disk_done);
	virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_DISK_REMAINING, &s->disk_left);
	s->have_downtime = virTypedParamsGetULLong(par, n, VIR_DOMAIN_JOB_DOWNTIME,
						   &s->downtime) == 1;
	virTypedParamsFree(par, n);
	return 0;
}

static void feed(struct vmm_vm *vm, const struct jstats *s)
{
	if (s->disk_total) {
		vm->storage_bytes = s->disk_done;
		vm->storage_len = s->disk_total;
		vmm_live_storage(vm, s->disk_done, s->disk_total);
	}
	if (s->mem_total) {
		vm->ram_bytes = s->mem_done;
		vmm_live_ram(vm, "active", s->mem_total, s->mem_done,
			     s->mem_left, (double)s->mem_bps, s->dirty,
			     (int64_t)s->iters);
	}
}

/* Stop a running migration and wait for its call to return. */
static void mig_cancel(struct vmm_vm *vm)
{
	struct lv_priv *p = P(vm);

	if (!p->mig_started || p->mig_joined)
		return;
	if (!mig_finished(p))
		virDomainAbortJob(p->mig_dom);
	mig_join(p);
}

/*
 * Poll the migration until pred holds or it ends: 0 (pred or ended),
 * -1 aborted, -2 deadline (the job is cancelled in both cases).  The way
 * back of a rollback is not abortable: it runs because the move was
 * aborted (vmm_vm_aborting() is true all along).
 */
static int mig_poll(struct vmm_vm *vm, int64_t deadline,
		    bool (*pred)(const struct jstats *), bool abortable)
{
	struct lv_priv *p = P(vm);
	struct jstats s;

	for (;;) {
		if (mig_finished(p))
			return 0;
		if (!job_stats(p->mig_dom, 0, &s)) {
			feed(vm, &s);
			if (!p->t_pause && !use_live(vm) && s.mem_done)
				p->t_pause = vmm_now_ns();
			if (pred && pred(&s))
				return 0;
		}
		if (abortable && vmm_vm_aborting(vm)) {
			vmm_vm_fail(vm, "aborted");
			mig_cancel(vm);
			return -1;
		}
		if (vmm_now_ns() >= deadline) {
			vmm_vm_fail(vm, "libvirt migration job not finished in time; cancelled");
			mig_cancel(vm);
			return -2;
		}
		sleep_ns(POLL_NS);
	}
}

/* The disk copy is in sync once RAM moves (libvirt starts the RAM
 * migration when every mirror is ready). */
static bool disk_in_sync(const struct jstats *s)
{
	return s->mem_done > 0 || (s->disk_total && !s->disk_left);
}

static int lv_storage(struct vmm_vm *vm, int64_t deadline)
{
	struct lv_priv *p = P(vm);

	int r;

	if (mig_start(vm, p->sdom, vm->conf->dest_uri, false))
		return -1;
	r = mig_poll(vm, deadline, disk_in_sync, true);
	if (r == 0 && mig_finished(p) && p->mig_rc < 0) {
		vmm_vm_fail(vm, "libvirt migration to %s failed: %s",
			    vm->conf->dest_uri, p->mig_err);
		return -1;
	}
	return r;
}

/*
 * Test only (docs/vmm-bridge.md "libvirt", tests/libvirt): with
 * NINJA_MIGRATE_FAULT_ARRIVED=<VM name> in the environment, that VM fails
 * after it arrived paused, once every other VM arrived too, so the
 * rollback migrates arrived domains back (the path a destination failure
 * after arrival takes).
 */
static int fault_arrived(struct vmm_vm *vm, int64_t deadline)
{
	const char *f = getenv("NINJA_MIGRATE_FAULT_ARRIVED");
	bool all;

	if (!f || strcmp(f, vm->conf->name) != 0)
		return 0;
	all = vmm_vm_others_ready(vm, deadline);
	vmm_vm_fail(vm, "fault injected (NINJA_MIGRATE_FAULT_ARRIVED) after %s arrived paused at %s%s",
		    vm->conf->domain, vm->conf->dest_uri,
		    all ? ", every other VM arrived too" : "");
	return -1;
}

static int lv_transfer(struct vmm_vm *vm, int64_t deadline)
{
	const struct vmm_vm_conf *c = vm->conf;
	struct lv_priv *p = P(vm);
	struct jstats s;
	int r, st;

	if (!p->mig_started && mig_start(vm, p->sdom, c->dest_uri, false))
		return -1;
	r = mig_poll(vm, deadline, NULL, true);
	if (r)
		return r;
	mig_join(p);
	if (p->mig_rc < 0) {
		vmm_vm_fail(vm, "libvirt migration to %s failed: %s", c->dest_uri,
			    p->mig_err);
		return -1;
	}
	p->t_done = vmm_now_ns();
	snprintf(vm->mode_used, sizeof(vm->mode_used), "%s",
		 use_live(vm) ? "live" : "stopped");
	p->ddom = virDomainLookupByName(p->dst, c->domain);
	if (!p->ddom)
		return lv_fail(vm, "the migrated domain is not at the destination");
	p->arrived = true;
	if (p->dst_cb[0] < 0)
		ev_register(vm, p->dst, p->dst_cb);
	st = dom_state(p->ddom);
	if (st != VIR_DOMAIN_PAUSED) {
		vmm_vm_fail(vm, "domain %s arrived at %s %s, not paused",
			    c->domain, c->dest_uri, state_name(st));
		return -1;
	}
	/* The completed job's statistics travel with the domain. */
	if (!job_stats(p->ddom, VIR_DOMAIN_JOB_STATS_COMPLETED, &s)) {
		feed(vm, &s);
		if (s.have_downtime)
			vm->downtime_ms = (int64_t)s.downtime;
	}
	return fault_arrived(vm, deadline);
}

static int lv_commit(struct vmm_vm *vm, int64_t deadline)
{
	struct lv_priv *p = P(vm);
	const struct vmm_vm_conf *c = vm->conf;
	int64_t now;

	(void)deadline;
	if (virDomainResume(p->ddom) < 0) {
		vmm_vm_fail(vm, "cannot resume %s at %s: %s", c->domain,
			    c->dest_uri, lv_err());
		return -1;
	}
	vm->at_dest = true;
	now = vmm_now_ns();
	/* Host-measured: stopped mode pauses at the RAM copy's start; live
	 * mode at the end of the copy (libvirt's downtime). */
	if (p->t_pause)
		vm->paused_ns = now - p->t_pause;
	else if (vm->downtime_ms >= 0)
		vm->paused_ns = now - p->t_done + vm->downtime_ms * 1000000;
	if (find_channel(vm, p->ddom, c->dest_chan_root, vm->dst.endpoint,
			 sizeof(vm->dst.endpoint)))
		return -1;
	return 0;
}

/* After arrival: migrate the domain back, paused, and resume it there. */
static int migrate_back(struct vmm_vm *vm, int64_t deadline)
{
	const struct vmm_vm_conf *c = vm->conf;
	struct lv_priv *p = P(vm);
	int r;

	vmm_progress(vm, "rollback: migrating %s back to %s", c->domain,
		     c->source_uri);
	if (mig_start(vm, p->ddom, c->source_uri, true))
		return -1;
	r = mig_poll(vm, deadline, NULL, false);
	mig_join(p);
	if (r || p->mig_rc < 0) {
		snprintf(vm->rollback_err, sizeof(vm->rollback_err),
			 "migrating %s back failed (%s): it is PAUSED at %s with the whole state; resume it there (virsh -c '%s' resume %s) or migrate it back by hand",
			 c->domain, r ? "deadline" : p->mig_err, c->dest_uri,
			 c->dest_uri, c->domain);
		return -1;
	}
	p->arrived = false;
	if (p->sdom)
		virDomainFree(p->sdom);
	p->sdom = virDomainLookupByName(p->src, c->domain);
	if (!p->sdom || virDomainResume(p->sdom) < 0) {
		snprintf(vm->rollback_err, sizeof(vm->rollback_err),
			 "%s is back at %s but does not resume: %s (virsh -c '%s' resume %s)",
			 c->domain, c->source_uri, lv_err(), c->source_uri,
			 c->domain);
		return -1;
	}
	return 0;
}

static int lv_abort(struct vmm_vm *vm, int64_t deadline)
{
	const struct vmm_vm_conf *c = vm->conf;
	struct lv_priv *p = P(vm);
	virDomainPtr d;
	int st;

	if (!p)
		return 0;
	mig_cancel(vm);
	/* The way out finished while the abort was decided (the call
	 * returned before transfer saw it): the domain is at the
	 * destination, paused, the source QEMU is gone. */
	if (!p->arrived && p->mig_started && p->mig_joined && p->mig_rc >= 0 &&
	    p->mig_dom == p->sdom && p->dst) {
		if (p->ddom)
			virDomainFree(p->ddom);
		p->ddom = virDomainLookupByName(p->dst, c->domain);
		p->arrived = p->ddom != NULL;
	}
	if (p->arrived)
		return migrate_back(vm, deadline);
	/* Not arrived: libvirt resumes the source when a migration fails. */
	st = dom_state(p->sdom);
	if (st == VIR_DOMAIN_PAUSED && virDomainResume(p->sdom) < 0)
		st = -2;
	if (st != VIR_DOMAIN_RUNNING && st != VIR_DOMAIN_PAUSED) {
		snprintf(vm->rollback_err, sizeof(vm->rollback_err),
			 "%s does not run at %s after the failed migration (state %s): %s",
			 c->domain, c->source_uri,
			 st == -2 ? "paused" : state_name(st), lv_err());
		return -1;
	}
	/* A leftover incoming domain at the destination. */
	if (p->dst && virConnectIsAlive(p->dst) == 1) {
		d = virDomainLookupByName(p->dst, c->domain);
		if (d) {
			if (virDomainIsActive(d) == 1)
				virDomainDestroy(d);
			virDomainFree(d);
		}
	} else if (p->mig_started) {
		snprintf(vm->warn, sizeof(vm->warn),
			 "the destination libvirt at %s is unreachable: a stopped incoming QEMU of %s may be left there (libvirtd removes it when it starts again)",
			 c->dest_uri, c->domain);
	}
	return 0;
}

static void lv_detach(struct vmm_vm *vm)
{
	struct lv_priv *p = P(vm);

	if (!p)
		return;
	mig_cancel(vm);
	ev_deregister(p->src, p->src_cb);
	ev_deregister(p->dst, p->dst_cb);
	if (p->sdom)
		virDomainFree(p->sdom);
	if (p->ddom)
		virDomainFree(p->ddom);
	if (p->src)
		virConnectClose(p->src);
	if (p->dst)
		virConnectClose(p->dst);
	virTypedParamsFree(p->params, p->nparams);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
	vm->priv = NULL;
}

const struct vmm_backend vmm_backend_libvirt = {
	.name = "libvirt",
	.attach = lv_attach,
	.check_settings = lv_check_settings,
	.check_dest = lv_check_dest,
	.unplug = lv_unplug,
	.plug = lv_plug,
	.start_dest = lv_start_dest,
	.storage = lv_storage,
	.transfer = lv_transfer,
	.commit = lv_commit,
	.abort = lv_abort,
	.detach = lv_detach,
	.source_ends_at_arrival = true,
};
