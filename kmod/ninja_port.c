// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * The host link of ninja.ko.
 *
 * The host gives the guest a virtio-serial *console* port (QEMU
 * `-device virtconsole,name=org.ninja.0`, libvirt <console type='unix'>
 * with target type virtio): a plain virtserialport cannot be read or
 * written from kernel code, an hvc tty can.  The Nth virtconsole device
 * is /dev/hvc(N-1); the tty has no sysfs link to its port, so the device
 * is a module parameter (hvc=, default /dev/hvc0) and we only check that
 * it is an hvc tty and that a port named port_name exists.
 *
 * A kthread opens the tty (retrying while it is absent), switches it to
 * raw mode, drops whatever was typed before (that was echoed in cooked
 * mode), says HELLO, then reads host bytes and feeds complete lines to
 * the aggregation state machine.  Lines for the host are queued (txq)
 * and written by ninja_tx_work, never under agg_lock.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/slab.h>
#include <linux/kthread.h>
#include <linux/delay.h>
#include <linux/tty.h>
#include <linux/sched/task.h>

#include "ninja_kmod.h"

/* drivers/tty/hvc/hvc_console.c: HVC_MAJOR, not in a public header. */
#define NINJA_HVC_MAJOR		229
#define NINJA_VPORTS_DIR	"/sys/class/virtio-ports"
#define NINJA_VPORTS_MAX	64
/* A host that does not read: retry writing after this long. */
#define NINJA_TX_RETRY_MS	20

struct ninja_vports {
	struct dir_context ctx;
	int n;
	char names[NINJA_VPORTS_MAX][16];
};

static bool ninja_vports_actor(struct dir_context *ctx, const char *name,
			       int len, loff_t off, u64 ino, unsigned int type)
{
	struct ninja_vports *v = container_of(ctx, struct ninja_vports, ctx);

	if (len < 5 || len >= (int)sizeof(v->names[0]) ||
	    strncmp(name, "vport", 5))
		return true;
	if (v->n < NINJA_VPORTS_MAX) {
		memcpy(v->names[v->n], name, len);
		v->names[v->n][len] = '\0';
		v->n++;
	}
	return true;
}

/* Is there a virtio-serial port named @want?  Reads sysfs. */
static bool ninja_port_name_present(const char *want)
{
	struct ninja_vports *v;
	struct file *dir, *f;
	char path[80], name[64];
	bool found = false;
	loff_t pos;
	ssize_t n;
	int i;

	v = kzalloc(sizeof(*v), GFP_KERNEL);
	if (!v)
		return false;
	dir = filp_open(NINJA_VPORTS_DIR, O_RDONLY | O_DIRECTORY, 0);
	if (IS_ERR(dir))
		goto out_free;
	v->ctx.actor = ninja_vports_actor;
	iterate_dir(dir, &v->ctx);
	filp_close(dir, NULL);

	for (i = 0; i < v->n && !found; i++) {
		snprintf(path, sizeof(path), NINJA_VPORTS_DIR "/%s/name",
			 v->names[i]);
		f = filp_open(path, O_RDONLY, 0);
		if (IS_ERR(f))
			continue;
		pos = 0;
		n = kernel_read(f, name, sizeof(name) - 1, &pos);
		filp_close(f, NULL);
		if (n <= 0)
			continue;
		name[n] = '\0';
		if (name[n - 1] == '\n')
			name[n - 1] = '\0';
		found = !strcmp(name, want);
	}
out_free:
	kfree(v);
	return found;
}

/* Raw mode: no echo, no line editing, no CR/NL mapping, no signals. */
static int ninja_tty_raw(struct tty_struct *tty)
{
	struct ktermios t;

	down_read(&tty->termios_rwsem);
	t = tty->termios;
	up_read(&tty->termios_rwsem);

	t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR |
		       ICRNL | IXON | IXOFF | IXANY | IMAXBEL | IUCLC);
	t.c_oflag &= ~OPOST;
	t.c_lflag &= ~(ECHO | ECHONL | ECHOE | ECHOK | ECHOCTL | ECHOKE |
		       ECHOPRT | ICANON | ISIG | IEXTEN);
	t.c_cflag &= ~(CSIZE | PARENB);
	t.c_cflag |= CS8 | CREAD | CLOCAL;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	tty_set_termios(tty, &t);
	/* Bytes that arrived while cooked were echoed to the host: drop. */
	return tty_perform_flush(tty, TCIFLUSH);
}

static void ninja_set_state(struct ninja_dev *nd, int err, const char *why)
{
	mutex_lock(&nd->port_lock);
	nd->port_err = err;
	if (!err)
		snprintf(nd->port_state, sizeof(nd->port_state),
			 "connected %s port=%s", ninja_hvc, ninja_port_name);
	else
		snprintf(nd->port_state, sizeof(nd->port_state),
			 "absent %s port=%s err=%d %s", ninja_hvc,
			 ninja_port_name, err, why);
	mutex_unlock(&nd->port_lock);
}

/* Open and set up the host tty; 0 or -errno (with a reason). */
static int ninja_port_open(struct ninja_dev *nd, const char **why)
{
	struct tty_file_private *priv;
	struct file *f, *wf;
	int ret;

	if (ninja_port_name[0] && !ninja_port_name_present(ninja_port_name)) {
		*why = "(no virtio-serial port of that name)";
		return -ENOENT;
	}
	f = filp_open(ninja_hvc, O_RDWR | O_NOCTTY, 0);
	if (IS_ERR(f)) {
		*why = "(cannot open the tty)";
		return PTR_ERR(f);
	}
	if (!S_ISCHR(file_inode(f)->i_mode) ||
	    imajor(file_inode(f)) != NINJA_HVC_MAJOR || !f->private_data) {
		*why = "(not an hvc tty)";
		ret = -ENOTTY;
		goto err_close;
	}
	priv = f->private_data;
	ret = ninja_tty_raw(priv->tty);
	if (ret) {
		*why = "(cannot set raw mode)";
		goto err_close;
	}
	/* The tx work writes through a non-blocking file of its own. */
	wf = filp_open(ninja_hvc, O_WRONLY | O_NOCTTY | O_NONBLOCK, 0);
	if (IS_ERR(wf)) {
		*why = "(cannot open the tty for writing)";
		ret = PTR_ERR(wf);
		goto err_close;
	}
	mutex_lock(&nd->port_lock);
	nd->port_filp = f;
	nd->port_wfilp = wf;
	nd->tx_reset = true;
	nd->n_port_opens++;
	mutex_unlock(&nd->port_lock);
	return 0;

err_close:
	filp_close(f, NULL);
	return ret;
}

static void ninja_port_close(struct ninja_dev *nd)
{
	struct file *f, *wf;

	mutex_lock(&nd->port_lock);
	f = nd->port_filp;
	wf = nd->port_wfilp;
	nd->port_filp = NULL;
	nd->port_wfilp = NULL;
	nd->tx_reset = true;
	mutex_unlock(&nd->port_lock);
	if (wf)
		filp_close(wf, NULL);
	if (f)
		filp_close(f, NULL);
}

/* Line assembler callback for host bytes; agg_lock held. */
static void ninja_host_line_cb(void *ctx, const char *line, size_t len,
			       int err)
{
	struct ninja_dev *nd = ctx;

	nd->n_rx_lines++;
	if (err) {
		ninja_agg_host_error(nd->agg, err);
		return;
	}
	/*
	 * A "\r\n" line end is valid (docs/protocol.md 2.2); only the host
	 * has to ignore "\r" lines, which are tty echo of its own bytes.
	 */
	if (len && line[len - 1] == '\r')
		nd->n_rx_crlf++;
	ninja_agg_host_line(nd->agg, line, len);
}

static void ninja_port_hello(struct ninja_dev *nd)
{
	static const char hello[] = "HELLO 1 host";

	/* The agg answers a host HELLO with "HELLO 1 node epoch=.. ...". */
	mutex_lock(&nd->agg_lock);
	ninja_lineq_init(&nd->host_lq);
	ninja_agg_host_line(nd->agg, hello, sizeof(hello) - 1);
	mutex_unlock(&nd->agg_lock);
}

static int ninja_port_thread(void *arg)
{
	struct ninja_dev *nd = arg;
	const char *why = "";
	int last_err = 1;	/* nothing reported yet */
	char *buf;
	ssize_t n;
	loff_t pos = 0;
	int ret;

	buf = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	while (!kthread_should_stop()) {
		if (!nd->port_filp) {
			ret = ninja_port_open(nd, &why);
			if (ret) {
				if (ret != last_err)
					pr_info("ninja: host port absent: %s %s: %d %s; retrying every %u ms\n",
						ninja_port_name, ninja_hvc,
						ret, why, ninja_retry_ms);
				ninja_set_state(nd, ret, why);
				last_err = ret;
				msleep_interruptible(max(ninja_retry_ms, 10U));
				continue;
			}
			pr_info("ninja: host port %s connected on %s\n",
				ninja_port_name, ninja_hvc);
			ninja_set_state(nd, 0, "");
			last_err = 0;
			ninja_port_hello(nd);
		}
		n = kernel_read(nd->port_filp, buf, PAGE_SIZE, &pos);
		if (n > 0) {
			mutex_lock(&nd->agg_lock);
			ninja_lineq_push(&nd->host_lq, buf, n,
					 ninja_host_line_cb, nd);
			mutex_unlock(&nd->agg_lock);
			continue;
		}
		if (kthread_should_stop())
			break;
		if (n == -ERESTARTSYS || n == -EINTR || n == -EAGAIN)
			continue;
		/* EOF (hangup) or an error: the port went away. */
		pr_info("ninja: host port %s read returned %zd, reopening\n",
			ninja_hvc, n);
		ninja_port_close(nd);
		ninja_set_state(nd, n ? (int)n : -EPIPE, "(read failed)");
		last_err = n ? (int)n : -EPIPE;
		msleep_interruptible(max(ninja_retry_ms, 10U));
	}
	ninja_port_close(nd);
	kfree(buf);
	return 0;
}

/* Count the lines of tx_buf[tx_off..tx_len) as lost and forget them. */
static void ninja_tx_drop(struct ninja_dev *nd)
{
	unsigned long flags;
	unsigned int lost = 0;

	for (; nd->tx_off < nd->tx_len; nd->tx_off++)
		lost += nd->tx_buf[nd->tx_off] == '\n';
	spin_lock_irqsave(&nd->txq_lock, flags);
	nd->n_tx_dropped += lost;
	spin_unlock_irqrestore(&nd->txq_lock, flags);
}

/*
 * Write what the port takes now; 1 when the host is not reading (try
 * again later), 0 when tx_buf is done (written, or dropped: no port).
 */
static int ninja_tx_write(struct ninja_dev *nd)
{
	ssize_t w = 0;
	loff_t pos;

	mutex_lock(&nd->port_lock);
	if (nd->tx_reset) {
		/* Not the rest of a line begun on another connection. */
		nd->tx_reset = false;
		if (nd->tx_off && nd->tx_buf[nd->tx_off - 1] != '\n')
			while (nd->tx_off < nd->tx_len &&
			       nd->tx_buf[nd->tx_off++] != '\n')
				;
	}
	while (nd->port_wfilp && nd->tx_off < nd->tx_len) {
		pos = 0;
		w = kernel_write(nd->port_wfilp, nd->tx_buf + nd->tx_off,
				 nd->tx_len - nd->tx_off, &pos);
		if (w <= 0)
			break;
		nd->tx_off += w;
	}
	mutex_unlock(&nd->port_lock);
	if (nd->tx_off == nd->tx_len)
		return 0;
	if (w == -EAGAIN || w == 0)
		return 1;
	ninja_tx_drop(nd);	/* no port, or it failed */
	return 0;
}

/* Write queued host lines to the port (or drop them: nobody to tell). */
void ninja_tx_work(struct work_struct *work)
{
	struct ninja_dev *nd = container_of(to_delayed_work(work),
					    struct ninja_dev, tx_work);
	unsigned long flags;

	for (;;) {
		if (nd->tx_off == nd->tx_len) {
			spin_lock_irqsave(&nd->txq_lock, flags);
			nd->tx_len = kfifo_out(&nd->txq, nd->tx_buf,
					       sizeof(nd->tx_buf));
			spin_unlock_irqrestore(&nd->txq_lock, flags);
			nd->tx_off = 0;
			if (!nd->tx_len)
				return;
		}
		if (ninja_tx_write(nd)) {
			queue_delayed_work(nd->wq, &nd->tx_work,
					   msecs_to_jiffies(NINJA_TX_RETRY_MS));
			return;
		}
	}
}

int ninja_port_start(struct ninja_dev *nd)
{
	struct task_struct *t;

	t = kthread_create(ninja_port_thread, nd, "ninja-port");
	if (IS_ERR(t))
		return PTR_ERR(t);
	/* Keep the task for kthread_stop() even if the thread ends early. */
	get_task_struct(t);
	nd->port_task = t;
	wake_up_process(t);
	return 0;
}

void ninja_port_stop(struct ninja_dev *nd)
{
	if (!nd->port_task)
		return;
	/*
	 * kthread_stop() flags the thread TIF_NOTIFY_SIGNAL: a blocked tty
	 * read returns -ERESTARTSYS and an msleep_interruptible() ends.
	 */
	kthread_stop(nd->port_task);
	put_task_struct(nd->port_task);
	nd->port_task = NULL;
}
