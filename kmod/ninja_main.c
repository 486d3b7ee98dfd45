// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * Ninja guest module: /dev/ninja, aggregation, sysfs.
 *
 * Every local MPI rank opens /dev/ninja once; that open file is its
 * connection and one slot of the node's aggregation state machine
 * (common/ninja_agg.c).  The rank writes protocol lines (REGISTER, SAFE,
 * RESUMED, ...) and reads the lines meant for it (OK, QUIESCE, RESUME,
 * CANCEL, EVENT, ERR).  Both directions are plain byte streams: a read
 * may return several lines or part of one, exactly as on the user-space
 * agent's unix socket.  Closing the file (or dying) removes the rank, so
 * a dead rank never blocks a migration.
 *
 * The host side (ninja_port.c) feeds host lines into the same machine;
 * device events (ninja_notify.c) go to the host and to every rank.
 * State and counters are in /sys/kernel/ninja/.  See docs/kmod.md.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/poll.h>
#include <linux/uaccess.h>
#include <linux/sched/signal.h>
#include <linux/cred.h>
#include <linux/pid.h>
#include <linux/rcupdate.h>
#include <linux/kobject.h>
#include <linux/sysfs.h>

#include "ninja_kmod.h"

char *ninja_port_name = "org.ninja.0";
module_param_named(port_name, ninja_port_name, charp, 0444);
MODULE_PARM_DESC(port_name,
		 "virtio-serial port name of the host link; checked under /sys/class/virtio-ports before the tty is used, empty to skip the check (default org.ninja.0)");

char *ninja_hvc = "/dev/hvc0";
module_param_named(hvc, ninja_hvc, charp, 0444);
MODULE_PARM_DESC(hvc,
		 "hvc tty of the host link's virtconsole port: the Nth virtconsole device is /dev/hvc(N-1) (default /dev/hvc0)");

unsigned int ninja_retry_ms = 500;
module_param_named(retry_ms, ninja_retry_ms, uint, 0644);
MODULE_PARM_DESC(retry_ms,
		 "milliseconds between attempts to open an absent host port (default 500)");

static unsigned int ninja_queue_kib = 64;
module_param_named(queue_kib, ninja_queue_kib, uint, 0444);
MODULE_PARM_DESC(queue_kib,
		 "bytes queued per rank file for reading, in KiB; the oldest lines are dropped beyond it (default 64)");

static unsigned int ninja_gid;
module_param_named(group, ninja_gid, uint, 0444);
MODULE_PARM_DESC(group,
		 "gid whose members may open /dev/ninja besides root (the device is 0660; a udev rule gives its node this group, see docs/kmod.md) (default 0)");

static unsigned int ninja_user_ranks = 64;
module_param_named(max_ranks_per_user, ninja_user_ranks, uint, 0644);
MODULE_PARM_DESC(max_ranks_per_user,
		 "rank slots one non-root user may hold, 0 for no limit (default 64 of 256)");

struct ninja_dev *ninja_dev;

static const struct ninja_agg_ops ninja_agg_ops = {
	.to_rank = ninja_to_rank,
	.to_host = ninja_to_host,
};

/* Queue a line for one rank file.  Called with agg_lock held. */
static void ninja_file_queue(struct ninja_file *f, const char *line,
			     size_t len)
{
	struct ninja_dev *nd = f->nd;

	mutex_lock(&f->rq_lock);
	while (kfifo_avail(&f->rq) < len && !kfifo_is_empty(&f->rq)) {
		char c = 0;

		/* Drop the oldest line (the rest of it, if partly read). */
		while (kfifo_get(&f->rq, &c) && c != '\n')
			;
		f->n_dropped++;
		nd->n_rank_dropped++;
	}
	if (kfifo_avail(&f->rq) >= len)
		kfifo_in(&f->rq, line, len);
	mutex_unlock(&f->rq_lock);
	wake_up_interruptible_poll(&f->wq, EPOLLIN | EPOLLRDNORM);
}

/* ninja_agg callback (agg_lock held): a line for a slot or every rank. */
void ninja_to_rank(void *ctx, int slot, const char *line, size_t len)
{
	struct ninja_dev *nd = ctx;
	int i;

	lockdep_assert_held(&nd->agg_lock);
	if (slot != NINJA_AGG_ALL) {
		if (slot >= 0 && slot < NINJA_KMOD_MAX_RANKS && nd->slots[slot])
			ninja_file_queue(nd->slots[slot], line, len);
		return;
	}
	for (i = 0; i < NINJA_KMOD_MAX_RANKS; i++)
		if (nd->slots[i] &&
		    nd->agg->ranks[i].state >= NINJA_RS_RUNNING)
			ninja_file_queue(nd->slots[i], line, len);
}

/*
 * ninja_agg callback (agg_lock held) and event work: a line for the host.
 * Only queued here; ninja_tx_work writes it to the port.
 */
void ninja_to_host(void *ctx, const char *line, size_t len)
{
	struct ninja_dev *nd = ctx;
	unsigned long flags;

	spin_lock_irqsave(&nd->txq_lock, flags);
	if (kfifo_avail(&nd->txq) >= len) {
		kfifo_in(&nd->txq, line, len);
		nd->n_tx_lines++;
	} else {
		nd->n_tx_dropped++;
	}
	spin_unlock_irqrestore(&nd->txq_lock, flags);
	mod_delayed_work(nd->wq, &nd->tx_work, 0);
}

/*
 * A REGISTER from a file not opened by root must name a process of the
 * opener's uid (its own pid, normally): nobody registers for others.
 */
static bool ninja_register_ok(struct ninja_file *f, const char *line,
			      size_t len)
{
	struct ninja_msg m;
	struct task_struct *t;
	u64 pid;
	bool ok;

	if (f->root || ninja_parse_line(line, len, &m) ||
	    m.verb != NINJA_V_REGISTER)
		return true;
	if (ninja_msg_get_u64(&m, "pid", &pid) || !pid || pid > PID_MAX_LIMIT)
		return false;
	rcu_read_lock();
	t = pid_task(find_vpid((pid_t)pid), PIDTYPE_PID);
	ok = t && uid_eq(task_euid(t), f->uid);
	rcu_read_unlock();
	return ok;
}

/* Line assembler callback for a rank's bytes (agg_lock held). */
static void ninja_rank_line_cb(void *ctx, const char *line, size_t len,
			       int err)
{
	struct ninja_file *f = ctx;
	struct ninja_dev *nd = f->nd;

	if (err)
		ninja_agg_rank_error(nd->agg, f->slot, err);
	else if (!ninja_register_ok(f, line, len))
		ninja_agg_rank_error(nd->agg, f->slot, NINJA_EROLE);
	else
		ninja_agg_rank_line(nd->agg, f->slot, line, len);
}

/* Root, or a member of the group= module parameter. */
static bool ninja_may_open(void)
{
	return uid_eq(current_euid(), GLOBAL_ROOT_UID) ||
	       in_group_p(KGIDT_INIT(ninja_gid));
}

static int ninja_open(struct inode *inode, struct file *file)
{
	struct ninja_dev *nd = container_of(file->private_data,
					    struct ninja_dev, misc);
	struct ninja_file *f;
	int ret;

	/* Even if the node's mode was opened up: root and the group only. */
	if (!ninja_may_open()) {
		mutex_lock(&nd->agg_lock);
		nd->n_open_denied++;
		mutex_unlock(&nd->agg_lock);
		return -EACCES;
	}
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	f->nd = nd;
	f->uid = current_euid();
	f->root = uid_eq(f->uid, GLOBAL_ROOT_UID);
	mutex_init(&f->rq_lock);
	init_waitqueue_head(&f->wq);
	ninja_lineq_init(&f->lq);
	ret = kfifo_alloc(&f->rq, ninja_queue_kib * 1024, GFP_KERNEL);
	if (ret)
		goto err_free_file;

	mutex_lock(&nd->agg_lock);
	f->slot = ninja_agg_open_uid(nd->agg, from_kuid(&init_user_ns, f->uid),
				     f->root ? 0 : ninja_user_ranks);
	if (f->slot < 0) {
		nd->n_open_full++;
		mutex_unlock(&nd->agg_lock);
		pr_warn_ratelimited("ninja: no free rank slot for uid %u (%d slots, %u per user)\n",
				    from_kuid(&init_user_ns, f->uid),
				    NINJA_KMOD_MAX_RANKS, ninja_user_ranks);
		ret = -EBUSY;
		goto err_free_fifo;
	}
	nd->slots[f->slot] = f;
	nd->nfiles++;
	mutex_unlock(&nd->agg_lock);

	file->private_data = f;
	return stream_open(inode, file);

err_free_fifo:
	kfifo_free(&f->rq);
err_free_file:
	kfree(f);
	return ret;
}

static int ninja_release(struct inode *inode, struct file *file)
{
	struct ninja_file *f = file->private_data;
	struct ninja_dev *nd = f->nd;

	mutex_lock(&nd->agg_lock);
	nd->slots[f->slot] = NULL;
	nd->nfiles--;
	/* May complete a drain: the aggregate SAFE is queued to the host. */
	ninja_agg_close(nd->agg, f->slot);
	mutex_unlock(&nd->agg_lock);

	kfifo_free(&f->rq);
	kfree(f);
	return 0;
}

static ssize_t ninja_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	struct ninja_file *f = file->private_data;
	unsigned int copied = 0;
	int ret;

	if (!count)
		return 0;
	for (;;) {
		if (mutex_lock_interruptible(&f->rq_lock))
			return -ERESTARTSYS;
		if (!kfifo_is_empty(&f->rq))
			break;
		mutex_unlock(&f->rq_lock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		if (wait_event_interruptible(f->wq, !kfifo_is_empty(&f->rq)))
			return -ERESTARTSYS;
	}
	ret = kfifo_to_user(&f->rq, buf, min_t(size_t, count, INT_MAX),
			    &copied);
	mutex_unlock(&f->rq_lock);
	return ret ? ret : copied;
}

static ssize_t ninja_write(struct file *file, const char __user *buf,
			   size_t count, loff_t *ppos)
{
	struct ninja_file *f = file->private_data;
	struct ninja_dev *nd = f->nd;
	char chunk[256];
	size_t done = 0;

	/* A huge write is cut short by a signal, never made to finish. */
	while (done < count) {
		size_t n = min(count - done, sizeof(chunk));

		if (signal_pending(current))
			return done ? done : -ERESTARTSYS;
		if (copy_from_user(chunk, buf + done, n))
			return done ? done : -EFAULT;
		if (mutex_lock_interruptible(&nd->agg_lock))
			return done ? done : -ERESTARTSYS;
		ninja_lineq_push(&f->lq, chunk, n, ninja_rank_line_cb, f);
		mutex_unlock(&nd->agg_lock);
		done += n;
		cond_resched();
	}
	return done;
}

static __poll_t ninja_poll(struct file *file, poll_table *wait)
{
	struct ninja_file *f = file->private_data;
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	poll_wait(file, &f->wq, wait);
	if (!kfifo_is_empty(&f->rq))
		mask |= EPOLLIN | EPOLLRDNORM;
	return mask;
}

static const struct file_operations ninja_fops = {
	.owner = THIS_MODULE,	/* an open file pins the module */
	.open = ninja_open,
	.release = ninja_release,
	.read = ninja_read,
	.write = ninja_write,
	.poll = ninja_poll,
	.llseek = no_llseek,
};

/* ---- sysfs: /sys/kernel/ninja ---- */

/* Attributes showing one value computed by a switch on an index. */
struct ninja_attr {
	struct kobj_attribute ka;
	int idx;
};

#define to_ninja_attr(a) container_of(a, struct ninja_attr, ka)

enum {
	NA_VERSION, NA_EPOCH, NA_PHASE, NA_RANKS, NA_FILES, NA_HOST,
	NA_STATUS,
};

static ssize_t ninja_top_show(struct kobject *kobj,
			      struct kobj_attribute *attr, char *buf)
{
	struct ninja_dev *nd = ninja_dev;
	struct ninja_agg *a = nd->agg;
	char line[NINJA_LINE_MAX];
	ssize_t n = 0;

	switch (to_ninja_attr(attr)->idx) {
	case NA_VERSION:
		return sysfs_emit(buf, "%d %s\n", NINJA_PROTO_VERSION,
				  NINJA_KMOD_VERSION);
	case NA_HOST:
		mutex_lock(&nd->port_lock);
		n = sysfs_emit(buf, "%s\n", nd->port_state);
		mutex_unlock(&nd->port_lock);
		return n;
	}
	mutex_lock(&nd->agg_lock);
	switch (to_ninja_attr(attr)->idx) {
	case NA_EPOCH:
		n = sysfs_emit(buf, "%u\n", a->epoch);
		break;
	case NA_PHASE:
		n = sysfs_emit(buf, "%s\n", ninja_phase_name(a->phase));
		break;
	case NA_RANKS:
		n = sysfs_emit(buf, "%u\n", ninja_agg_count(a, NINJA_RS_COUNT));
		break;
	case NA_FILES:
		n = sysfs_emit(buf, "%u\n", nd->nfiles);
		break;
	case NA_STATUS:
		ninja_agg_status(a, line, sizeof(line));
		n = sysfs_emit(buf, "%s", line);
		break;
	}
	mutex_unlock(&nd->agg_lock);
	return n;
}

#define NINJA_ATTR(_name, _idx, _show) \
	static struct ninja_attr ninja_attr_##_name = { \
		.ka = __ATTR(_name, 0444, _show, NULL), .idx = _idx }

NINJA_ATTR(version, NA_VERSION, ninja_top_show);
NINJA_ATTR(epoch, NA_EPOCH, ninja_top_show);
NINJA_ATTR(phase, NA_PHASE, ninja_top_show);
NINJA_ATTR(ranks, NA_RANKS, ninja_top_show);
NINJA_ATTR(connections, NA_FILES, ninja_top_show);
NINJA_ATTR(host, NA_HOST, ninja_top_show);
NINJA_ATTR(status, NA_STATUS, ninja_top_show);

static struct attribute *ninja_top_attrs[] = {
	&ninja_attr_version.ka.attr,
	&ninja_attr_epoch.ka.attr,
	&ninja_attr_phase.ka.attr,
	&ninja_attr_ranks.ka.attr,
	&ninja_attr_connections.ka.attr,
	&ninja_attr_host.ka.attr,
	&ninja_attr_status.ka.attr,
	NULL
};

static const struct attribute_group ninja_top_group = {
	.attrs = ninja_top_attrs,
};

/* counters/: one number per file. */
enum {
	NC_QUIESCE, NC_RESUME, NC_CANCEL, NC_REGISTER, NC_GONE, NC_RANK_ERR,
	NC_ERRORS, NC_RANK_DROPPED, NC_OPEN_FULL, NC_OPEN_DENIED, NC_HOST_RX,
	NC_HOST_CRLF,
	NC_HOST_TX, NC_HOST_TX_DROPPED, NC_PORT_OPENS, NC_EVENTS,
	NC_EVENTS_DROPPED,
};

static ssize_t ninja_counter_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	struct ninja_dev *nd = ninja_dev;
	struct ninja_agg *a = nd->agg;
	unsigned long flags;
	u64 v = 0;
	int i;

	switch (to_ninja_attr(attr)->idx) {
	case NC_HOST_TX:
	case NC_HOST_TX_DROPPED:
		spin_lock_irqsave(&nd->txq_lock, flags);
		v = to_ninja_attr(attr)->idx == NC_HOST_TX ?
			nd->n_tx_lines : nd->n_tx_dropped;
		spin_unlock_irqrestore(&nd->txq_lock, flags);
		return sysfs_emit(buf, "%llu\n", v);
	case NC_EVENTS:
	case NC_EVENTS_DROPPED:
		spin_lock_irqsave(&nd->ev_lock, flags);
		if (to_ninja_attr(attr)->idx == NC_EVENTS_DROPPED)
			v = nd->n_ev_dropped;
		else
			for (i = 0; i < NINJA_EV_COUNT; i++)
				v += nd->ev_count[i];
		spin_unlock_irqrestore(&nd->ev_lock, flags);
		return sysfs_emit(buf, "%llu\n", v);
	case NC_PORT_OPENS:
		mutex_lock(&nd->port_lock);
		v = nd->n_port_opens;
		mutex_unlock(&nd->port_lock);
		return sysfs_emit(buf, "%llu\n", v);
	}
	mutex_lock(&nd->agg_lock);
	switch (to_ninja_attr(attr)->idx) {
	case NC_QUIESCE:
		v = a->n_quiesce;
		break;
	case NC_RESUME:
		v = a->n_resume;
		break;
	case NC_CANCEL:
		v = a->n_cancel;
		break;
	case NC_REGISTER:
		v = a->n_register;
		break;
	case NC_GONE:
		v = a->n_gone;
		break;
	case NC_RANK_ERR:
		v = a->n_rank_err;
		break;
	case NC_ERRORS:
		v = ninja_agg_errors(a);
		break;
	case NC_RANK_DROPPED:
		v = nd->n_rank_dropped;
		break;
	case NC_OPEN_FULL:
		v = nd->n_open_full;
		break;
	case NC_OPEN_DENIED:
		v = nd->n_open_denied;
		break;
	case NC_HOST_RX:
		v = nd->n_rx_lines;
		break;
	case NC_HOST_CRLF:
		v = nd->n_rx_crlf;
		break;
	}
	mutex_unlock(&nd->agg_lock);
	return sysfs_emit(buf, "%llu\n", v);
}

NINJA_ATTR(quiesce, NC_QUIESCE, ninja_counter_show);
NINJA_ATTR(resume, NC_RESUME, ninja_counter_show);
NINJA_ATTR(cancel, NC_CANCEL, ninja_counter_show);
NINJA_ATTR(register, NC_REGISTER, ninja_counter_show);
NINJA_ATTR(gone, NC_GONE, ninja_counter_show);
NINJA_ATTR(rank_err, NC_RANK_ERR, ninja_counter_show);
NINJA_ATTR(errors, NC_ERRORS, ninja_counter_show);
NINJA_ATTR(rank_dropped, NC_RANK_DROPPED, ninja_counter_show);
NINJA_ATTR(open_full, NC_OPEN_FULL, ninja_counter_show);
NINJA_ATTR(open_denied, NC_OPEN_DENIED, ninja_counter_show);
NINJA_ATTR(host_rx, NC_HOST_RX, ninja_counter_show);
NINJA_ATTR(host_crlf, NC_HOST_CRLF, ninja_counter_show);
NINJA_ATTR(host_tx, NC_HOST_TX, ninja_counter_show);
NINJA_ATTR(host_tx_dropped, NC_HOST_TX_DROPPED, ninja_counter_show);
NINJA_ATTR(port_opens, NC_PORT_OPENS, ninja_counter_show);
NINJA_ATTR(events, NC_EVENTS, ninja_counter_show);
NINJA_ATTR(events_dropped, NC_EVENTS_DROPPED, ninja_counter_show);

static struct attribute *ninja_counter_attrs[] = {
	&ninja_attr_quiesce.ka.attr,
	&ninja_attr_resume.ka.attr,
	&ninja_attr_cancel.ka.attr,
	&ninja_attr_register.ka.attr,
	&ninja_attr_gone.ka.attr,
	&ninja_attr_rank_err.ka.attr,
	&ninja_attr_errors.ka.attr,
	&ninja_attr_rank_dropped.ka.attr,
	&ninja_attr_open_full.ka.attr,
	&ninja_attr_open_denied.ka.attr,
	&ninja_attr_host_rx.ka.attr,
	&ninja_attr_host_crlf.ka.attr,
	&ninja_attr_host_tx.ka.attr,
	&ninja_attr_host_tx_dropped.ka.attr,
	&ninja_attr_port_opens.ka.attr,
	&ninja_attr_events.ka.attr,
	&ninja_attr_events_dropped.ka.attr,
	NULL
};

static const struct attribute_group ninja_counter_group = {
	.name = "counters",
	.attrs = ninja_counter_attrs,
};

/* errors/<wire name>: errors answered, by code (common/ counters). */
static ssize_t ninja_error_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	struct ninja_dev *nd = ninja_dev;
	u64 v;

	mutex_lock(&nd->agg_lock);
	v = nd->agg->n_err[to_ninja_attr(attr)->idx];
	mutex_unlock(&nd->agg_lock);
	return sysfs_emit(buf, "%llu\n", v);
}

/* events/<kind>: "count=N t_ns=T real_ns=R" of the last one. */
static ssize_t ninja_event_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	struct ninja_dev *nd = ninja_dev;
	int k = to_ninja_attr(attr)->idx;
	u64 c, t, r;
	unsigned long flags;

	spin_lock_irqsave(&nd->ev_lock, flags);
	c = nd->ev_count[k];
	t = nd->ev_last_ns[k];
	r = nd->ev_last_real_ns[k];
	spin_unlock_irqrestore(&nd->ev_lock, flags);
	return sysfs_emit(buf, "count=%llu t_ns=%llu real_ns=%llu\n", c, t, r);
}

#define NINJA_NERR	(NINJA_EERRCOUNT - NINJA_EVERB)

static struct ninja_attr ninja_err_attrs[NINJA_NERR];
static struct attribute *ninja_err_attr_ptrs[NINJA_NERR + 1];
static const struct attribute_group ninja_err_group = {
	.name = "errors",
	.attrs = ninja_err_attr_ptrs,
};

static struct ninja_attr ninja_ev_attrs[NINJA_EV_COUNT];
static struct attribute *ninja_ev_attr_ptrs[NINJA_EV_COUNT + 1];
static const struct attribute_group ninja_ev_group = {
	.name = "events",
	.attrs = ninja_ev_attr_ptrs,
};

static const struct attribute_group *ninja_groups[] = {
	&ninja_top_group,
	&ninja_counter_group,
	&ninja_err_group,
	&ninja_ev_group,
	NULL
};

static void ninja_sysfs_fill(void)
{
	struct ninja_attr *na;
	int i;

	for (i = 0; i < NINJA_NERR; i++) {
		na = &ninja_err_attrs[i];
		sysfs_attr_init(&na->ka.attr);
		na->ka.attr.name = ninja_err_name(NINJA_EVERB + i);
		na->ka.attr.mode = 0444;
		na->ka.show = ninja_error_show;
		na->idx = NINJA_EVERB + i;
		ninja_err_attr_ptrs[i] = &na->ka.attr;
	}
	for (i = 0; i < NINJA_EV_COUNT; i++) {
		na = &ninja_ev_attrs[i];
		sysfs_attr_init(&na->ka.attr);
		na->ka.attr.name = ninja_ev_name(i);
		na->ka.attr.mode = 0444;
		na->ka.show = ninja_event_show;
		na->idx = i;
		ninja_ev_attr_ptrs[i] = &na->ka.attr;
	}
}

/* ---- init / exit ---- */

static int __init ninja_init(void)
{
	struct ninja_dev *nd;
	int ret;

	if (!ninja_queue_kib || ninja_queue_kib > 4096)
		return -EINVAL;
	nd = kzalloc(sizeof(*nd), GFP_KERNEL);
	if (!nd)
		return -ENOMEM;
	mutex_init(&nd->agg_lock);
	mutex_init(&nd->port_lock);
	spin_lock_init(&nd->txq_lock);
	spin_lock_init(&nd->ev_lock);
	INIT_LIST_HEAD(&nd->ev_pending);
	INIT_DELAYED_WORK(&nd->tx_work, ninja_tx_work);
	INIT_WORK(&nd->ev_work, ninja_ev_work);
	snprintf(nd->port_state, sizeof(nd->port_state), "absent %s",
		 ninja_hvc);

	ret = -ENOMEM;
	/* The aggregation and its slot table, in one allocation. */
	nd->agg = vzalloc(sizeof(*nd->agg) +
			  NINJA_KMOD_MAX_RANKS * sizeof(struct ninja_agg_rank));
	if (!nd->agg)
		goto err_free_dev;
	ninja_agg_init(nd->agg, &ninja_agg_ops, nd);
	ninja_agg_set_slots(nd->agg, (struct ninja_agg_rank *)(nd->agg + 1),
			    NINJA_KMOD_MAX_RANKS);
	if (kfifo_alloc(&nd->txq, 64 * 1024, GFP_KERNEL))
		goto err_free_agg;
	nd->wq = alloc_ordered_workqueue("ninja", 0);
	if (!nd->wq)
		goto err_free_txq;
	ninja_dev = nd;

	ninja_sysfs_fill();
	nd->kobj = kobject_create_and_add("ninja", kernel_kobj);
	if (!nd->kobj)
		goto err_destroy_wq;
	ret = sysfs_create_groups(nd->kobj, ninja_groups);
	if (ret)
		goto err_put_kobj;

	nd->misc.minor = MISC_DYNAMIC_MINOR;
	nd->misc.name = "ninja";
	nd->misc.fops = &ninja_fops;
	nd->misc.mode = 0660;
	ret = misc_register(&nd->misc);
	if (ret)
		goto err_remove_groups;

	ret = ninja_notify_start(nd);
	if (ret)
		goto err_misc_deregister;
	ret = ninja_port_start(nd);
	if (ret)
		goto err_notify_stop;
	pr_info("ninja: loaded, version %s, protocol %d, host port %s on %s\n",
		NINJA_KMOD_VERSION, NINJA_PROTO_VERSION,
		ninja_port_name, ninja_hvc);
	return 0;

err_notify_stop:
	ninja_notify_stop(nd);
err_misc_deregister:
	misc_deregister(&nd->misc);
err_remove_groups:
	sysfs_remove_groups(nd->kobj, ninja_groups);
err_put_kobj:
	kobject_put(nd->kobj);
err_destroy_wq:
	ninja_dev = NULL;
	destroy_workqueue(nd->wq);
err_free_txq:
	kfifo_free(&nd->txq);
err_free_agg:
	vfree(nd->agg);
err_free_dev:
	kfree(nd);
	return ret;
}

static void __exit ninja_exit(void)
{
	struct ninja_dev *nd = ninja_dev;

	/* No file is open: each one holds a module reference. */
	misc_deregister(&nd->misc);
	ninja_notify_stop(nd);
	/* Goodbye while the port still is open (the kthread closes it). */
	ninja_event_post(NINJA_EV_MODULE_UNLOAD, "reason=rmmod");
	ninja_event_flush();
	ninja_port_stop(nd);
	/* A retry may be pending (a host that stopped reading). */
	cancel_delayed_work_sync(&nd->tx_work);
	sysfs_remove_groups(nd->kobj, ninja_groups);
	kobject_put(nd->kobj);
	destroy_workqueue(nd->wq);
	ninja_dev = NULL;
	kfifo_free(&nd->txq);
	vfree(nd->agg);
	kfree(nd);
	pr_info("ninja: unloaded\n");
}

module_init(ninja_init);
module_exit(ninja_exit);

MODULE_DESCRIPTION("Ninja: MPI rank drain/resume relay and device events over virtio-serial");
MODULE_AUTHOR("The Ninja project");
MODULE_LICENSE("Dual BSD/GPL");
MODULE_VERSION(NINJA_KMOD_VERSION);
