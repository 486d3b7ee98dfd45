// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * ninja-agent.c - user-space node agent: plays the part of kmod/ninja.ko on
 * a bare machine (no VM).  Ranks (btl/ninja, tests/fake-rank) and host
 * controllers (ninja-ctl) connect to one unix socket; the node aggregation
 * state machine from common/ninja_agg.c does the protocol work.
 *
 *   ninja-agent --listen unix:PATH [--socket-mode M] [--socket-group G]
 *               [--operator-group G] [--max-ranks N]
 *               [--max-ranks-per-user N] [--verbose] [--foreground]
 *               [--pidfile F]
 *
 * A connection whose first line is "HELLO <v> host" is a host connection;
 * any other is a rank slot.  Single-threaded poll() loop, non-blocking
 * sockets, a line assembler and a bounded output queue per connection.
 * The rank slots and the connection table grow as ranks come, up to
 * --max-ranks (a rank past it is refused with ERR full, and logged).
 *
 * Who may do what (docs/protocol.md, "Who may send what"): the socket is
 * created with --socket-mode/--socket-group (0660, the agent's group), and
 * every connection's credentials (SO_PEERCRED) are taken at accept: a rank
 * registers only a pid that is the connecting process or one of its uid's
 * processes; a non-root user holds at most --max-ranks-per-user slots; the
 * host verbs that change state for others (QUIESCE, RESUME, CANCEL, EVENT)
 * are accepted from root and members of --operator-group only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ninja_agg.h"
#include "vmm_chan.h"

/* Rank slots by default (--max-ranks) and at most. */
#define VMM_AGENT_MAX_RANKS	4096
#define VMM_AGENT_MAX_RANKS_LIMIT	(1U << 20)
/* Connections beyond the rank slots (hosts, not yet classified). */
#define VMM_AGENT_EXTRA_CONNS	256
/* First size of the slot and connection tables (they double). */
#define VMM_AGENT_FIRST_SLOTS	16
/*
 * Bytes queued for one connection before it is dropped as not reading.
 * A protocol exchange is a few lines per epoch; 64 KiB is >100 full lines.
 */
#define VMM_AGENT_OUTQ_MAX	(64 * 1024)
/* Slots a non-root user may hold by default (--max-ranks-per-user). */
#define VMM_AGENT_USER_RANKS	64
/* Connections a non-root user may hold beyond its rank slots. */
#define VMM_AGENT_USER_EXTRA	8
/* accept() out of descriptors or memory: stop accepting this long. */
#define VMM_AGENT_ACCEPT_PAUSE_MS	100

enum vmm_conn_kind {
	VMM_CONN_NEW = 0,	/* no line yet: role unknown */
	VMM_CONN_HOST,		/* controller (ninja-ctl, ninja-migrate) */
	VMM_CONN_RANK,		/* a rank; owns an aggregation slot */
};

static const char *const kind_names[] = { "new", "host", "rank" };

struct vmm_conn {
	int fd;
	unsigned int id;	/* for logs: #id */
	enum vmm_conn_kind kind;
	int slot;		/* VMM_CONN_RANK: ninja_agg slot */
	bool dead;		/* close at the end of this loop turn */
	bool close_after_flush;
	bool oper;		/* root or --operator-group: may QUIESCE */
	uid_t uid;		/* SO_PEERCRED at accept */
	gid_t gid;
	pid_t pid;
	struct ninja_lineq q;
	char *out;		/* pending output out[out_off..out_len) */
	size_t out_off, out_len;
};

struct vmm_agent {
	struct ninja_agg agg;
	struct vmm_conn **conns;	/* conns_cap entries, nconns used */
	int nconns, conns_cap;
	struct vmm_conn **by_slot;	/* agg.nslots entries */
	unsigned int max_ranks;		/* --max-ranks */
	/* Host whose line is being handled: its replies go to it alone. */
	struct vmm_conn *cur_host;
	int listen_fd;
	int sig_fd;
	bool verbose;
	unsigned int next_id;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ino_t path_ino;
	const char *pidfile;
	mode_t sock_mode;
	gid_t sock_gid;
	gid_t oper_gid;		/* (gid_t)-1: root only */
	unsigned int user_ranks;	/* per non-root uid, 0: no limit */
	int64_t accept_paused_until;	/* vmm_now_ns(); 0: accepting */
	uint64_t n_overflow, n_refused, n_denied, n_accept_pause;
};

static struct vmm_agent agent;

/*
 * Every slot in use: double the slot table (ninja_agg's and by_slot), up
 * to --max-ranks.  Out of memory: the table stays, the rank is refused.
 */
static void grow_slots(void)
{
	unsigned int n = agent.agg.nslots;
	struct ninja_agg_rank *r;
	struct vmm_conn **bs;

	if (n >= agent.max_ranks || ninja_agg_count(&agent.agg, NINJA_RS_FREE))
		return;
	n = n ? 2 * n : VMM_AGENT_FIRST_SLOTS;
	if (n > agent.max_ranks)
		n = agent.max_ranks;
	bs = realloc(agent.by_slot, n * sizeof(*bs));
	if (!bs)
		return;
	memset(bs + agent.agg.nslots, 0,
	       (n - agent.agg.nslots) * sizeof(*bs));
	agent.by_slot = bs;
	r = realloc(agent.agg.ranks, n * sizeof(*r));
	if (!r)
		return;
	ninja_agg_set_slots(&agent.agg, r, n);
	if (agent.verbose)
		vmm_log("rank slots: %u", n);
}

/* Room for one more connection (up to max_ranks + the extra). */
static bool grow_conns(void)
{
	int max = (int)(agent.max_ranks + VMM_AGENT_EXTRA_CONNS), n;
	struct vmm_conn **cs;

	if (agent.nconns < agent.conns_cap)
		return true;
	if (agent.conns_cap >= max)
		return false;
	n = agent.conns_cap ? 2 * agent.conns_cap : VMM_AGENT_FIRST_SLOTS;
	if (n > max)
		n = max;
	cs = realloc(agent.conns, (size_t)n * sizeof(*cs));
	if (!cs)
		return false;
	agent.conns = cs;
	agent.conns_cap = n;
	return true;
}

static const char *conn_desc(const struct vmm_conn *c, char *buf, size_t n)
{
	if (c->kind == VMM_CONN_RANK && c->slot >= 0)
		snprintf(buf, n, "#%u rank slot %d", c->id, c->slot);
	else
		snprintf(buf, n, "#%u %s", c->id, kind_names[c->kind]);
	return buf;
}

/* Log a line in or out, bytes outside printable ASCII as \xNN. */
static void log_line(const struct vmm_conn *c, const char *dir,
		     const char *line, size_t len, const char *note)
{
	static const char hex[] = "0123456789abcdef";
	char esc[4 * NINJA_LINE_MAX + 1];
	char d[48];
	size_t i, o = 0;

	for (i = 0; i < len && o + 4 < sizeof(esc); i++) {
		unsigned char ch = (unsigned char)line[i];

		if (ch >= 0x20 && ch < 0x7f) {
			esc[o++] = (char)ch;
		} else {
			esc[o++] = '\\';
			esc[o++] = 'x';
			esc[o++] = hex[ch >> 4];
			esc[o++] = hex[ch & 15];
		}
	}
	esc[o] = '\0';
	vmm_log("%s %s %s%s", conn_desc(c, d, sizeof(d)), dir, esc, note);
}

/* Queue a '\n'-terminated line for c; drop c when it is not reading. */
static void conn_queue(struct vmm_conn *c, const char *line, size_t len)
{
	char d[48];

	if (c->dead)
		return;
	if (agent.verbose)
		log_line(c, ">", line,
			 len && line[len - 1] == '\n' ? len - 1 : len, "");
	if (c->out_len - c->out_off + len > VMM_AGENT_OUTQ_MAX) {
		agent.n_overflow++;
		vmm_log("%s: output queue full (%zu bytes unread), dropping the connection",
			conn_desc(c, d, sizeof(d)), c->out_len - c->out_off);
		c->dead = true;
		return;
	}
	if (c->out_off && c->out_len + len > VMM_AGENT_OUTQ_MAX) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
}

/* Write what the socket takes now. */
static void conn_flush(struct vmm_conn *c)
{
	char d[48];

	while (!c->dead && c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0) {
			c->out_off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (agent.verbose)
			vmm_log("%s: send: %s", conn_desc(c, d, sizeof(d)),
				w < 0 ? strerror(errno) : "closed");
		c->dead = true;
		return;
	}
	c->out_off = c->out_len = 0;
	if (c->close_after_flush)
		c->dead = true;
}

/* ninja_agg callbacks: queue only, never call back into the machine. */
static void agg_to_rank(void *ctx, int slot, const char *line, size_t len)
{
	int i;

	if (slot != NINJA_AGG_ALL) {
		if (slot >= 0 && (unsigned int)slot < agent.agg.nslots &&
		    agent.by_slot[slot])
			conn_queue(agent.by_slot[slot], line, len);
		return;
	}
	/* Broadcasts go to registered ranks only. */
	for (i = 0; i < (int)agent.agg.nslots; i++)
		if (agent.by_slot[i] &&
		    agent.agg.ranks[i].state >= NINJA_RS_RUNNING)
			conn_queue(agent.by_slot[i], line, len);
}

static bool starts_with(const char *line, size_t len, const char *p)
{
	size_t n = strlen(p);

	return len >= n && memcmp(line, p, n) == 0;
}

static void agg_to_host(void *ctx, const char *line, size_t len)
{
	int i;

	/*
	 * Answers to one host's request (ERR, HELLO, STATUS) go to that
	 * host alone, so a second controller is not confused by them; news
	 * about the node (SAFE, RESUMED, REPORT, UNSAFE) goes to every host.
	 */
	if (agent.cur_host && (starts_with(line, len, "ERR ") ||
			       starts_with(line, len, "HELLO ") ||
			       starts_with(line, len, "STATUS"))) {
		conn_queue(agent.cur_host, line, len);
		return;
	}
	for (i = 0; i < agent.nconns; i++)
		if (agent.conns[i]->kind == VMM_CONN_HOST)
			conn_queue(agent.conns[i], line, len);
}

static const struct ninja_agg_ops agg_ops = {
	.to_rank = agg_to_rank,
	.to_host = agg_to_host,
};

/* "HELLO <anything> host [...]": the controller's greeting. */
static bool is_host_hello(const char *line, size_t len)
{
	const char *tok[3];
	size_t tlen[3], i = 0;
	int nt = 0;

	while (i < len && nt < 3) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		tok[nt] = line + i;
		while (i < len && line[i] != ' ' && line[i] != '\r')
			i++;
		tlen[nt] = (size_t)(line + i - tok[nt]);
		nt++;
		if (i < len && line[i] == '\r')
			break;
	}
	return nt == 3 && tlen[0] == 5 && memcmp(tok[0], "HELLO", 5) == 0 &&
	       tlen[2] == 4 && memcmp(tok[2], "host", 4) == 0;
}

/* Blank? (spaces and a final '\r' only) */
static bool is_blank(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (line[i] != ' ' && !(line[i] == '\r' && i == len - 1))
			return false;
	return true;
}

/* Answer ERR not-allowed to c alone (never a state change). */
static void deny(struct vmm_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void deny(struct vmm_conn *c, const char *fmt, ...)
{
	char buf[NINJA_LINE_MAX], d[48];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf) - 1, "ERR %s %s: ",
		     ninja_err_name(NINJA_EROLE), ninja_strerror(NINJA_EROLE));
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - 1 - n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	agent.agg.n_err[NINJA_EROLE]++;
	agent.n_denied++;
	vmm_log("%s (uid %u pid %d): denied: %.*s", conn_desc(c, d, sizeof(d)),
		(unsigned int)c->uid, (int)c->pid, n, buf);
	buf[n++] = '\n';
	conn_queue(c, buf, (size_t)n);
}

/* Is pid a process of uid?  (/proc/<pid> belongs to its owner.) */
static bool pid_of_uid(uint64_t pid, uid_t uid)
{
	char path[32];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%llu", (unsigned long long)pid);
	return stat(path, &st) == 0 && st.st_uid == uid;
}

/*
 * May c send this line?  Host verbs that change what every rank does are
 * for operators only; a REGISTER must name one of the sender's processes.
 * Malformed lines pass: the state machine answers them.
 */
static bool allowed(struct vmm_conn *c, const char *line, size_t len)
{
	struct ninja_msg m;
	uint64_t pid;

	if (c->oper || ninja_parse_line(line, len, &m))
		return true;
	if (c->kind == VMM_CONN_HOST) {
		if (m.verb != NINJA_V_QUIESCE && m.verb != NINJA_V_RESUME &&
		    m.verb != NINJA_V_CANCEL && m.verb != NINJA_V_EVENT)
			return true;
		deny(c, "%s needs root or the operator group (uid %u)",
		     ninja_verb_name(m.verb), (unsigned int)c->uid);
		return false;
	}
	if (m.verb != NINJA_V_REGISTER)
		return true;
	if (ninja_msg_get_u64(&m, "pid", &pid)) {
		deny(c, "REGISTER needs pid=<the rank's pid>");
		return false;
	}
	if (pid == (uint64_t)c->pid || pid_of_uid(pid, c->uid))
		return true;
	deny(c, "REGISTER pid=%llu is not a process of uid %u",
	     (unsigned long long)pid, (unsigned int)c->uid);
	return false;
}

static void conn_line(void *ctx, const char *line, size_t len, int err)
{
	struct vmm_conn *c = ctx;
	char d[48];

	if (c->dead || c->close_after_flush)
		return;
	if (c->kind == VMM_CONN_NEW) {
		if (!err && is_blank(line, len))
			return;
		if (!err && is_host_hello(line, len)) {
			c->kind = VMM_CONN_HOST;
		} else {
			int slot;

			grow_slots();
			slot = ninja_agg_open_uid(&agent.agg, c->uid,
						  c->uid ? agent.user_ranks : 0);

			if (slot < 0) {
				char buf[128];
				int n = snprintf(buf, sizeof(buf),
						 "ERR %s %s (max %u, %u per user)\n",
						 ninja_err_name(slot),
						 ninja_strerror(slot),
						 agent.max_ranks,
						 agent.user_ranks);

				agent.n_refused++;
				vmm_log("%s: refused: %s",
					conn_desc(c, d, sizeof(d)),
					ninja_strerror(slot));
				conn_queue(c, buf, (size_t)n);
				c->close_after_flush = true;
				return;
			}
			c->kind = VMM_CONN_RANK;
			c->slot = slot;
			agent.by_slot[slot] = c;
		}
		if (agent.verbose)
			vmm_log("#%u is a %s connection", c->id,
				kind_names[c->kind]);
	}
	if (agent.verbose)
		log_line(c, "<", line, len, err ? " [too long, cut]" : "");
	if (!err && !allowed(c, line, len))
		return;
	if (c->kind == VMM_CONN_HOST) {
		agent.cur_host = c;
		if (err)
			ninja_agg_host_error(&agent.agg, err);
		else
			ninja_agg_host_line(&agent.agg, line, len);
		agent.cur_host = NULL;
	} else {
		if (err)
			ninja_agg_rank_error(&agent.agg, c->slot, err);
		else
			ninja_agg_rank_line(&agent.agg, c->slot, line, len);
	}
}

static void conn_read(struct vmm_conn *c)
{
	char buf[4096];
	char d[48];
	int turns;

	/* At most 64 KiB per loop turn: a chatty peer cannot starve others. */
	for (turns = 0; turns < 16; turns++) {
		ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r > 0) {
			ninja_lineq_push(&c->q, buf, (size_t)r, conn_line, c);
			if (c->dead)
				return;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (agent.verbose)
			vmm_log("%s: %s", conn_desc(c, d, sizeof(d)),
				r == 0 ? "closed by peer" : strerror(errno));
		c->dead = true;
		return;
	}
}

static void conn_free(int idx)
{
	struct vmm_conn *c = agent.conns[idx];

	if (c->kind == VMM_CONN_RANK && c->slot >= 0) {
		agent.by_slot[c->slot] = NULL;
		/* May queue REPORT/SAFE/RESUMED lines for the hosts. */
		ninja_agg_close(&agent.agg, c->slot);
	}
	close(c->fd);
	free(c->out);
	free(c);
	agent.conns[idx] = agent.conns[--agent.nconns];
}

/* Close dead connections; closing one may kill another (overflow). */
static void reap(void)
{
	bool again = true;
	int i;

	while (again) {
		again = false;
		for (i = 0; i < agent.nconns; i++) {
			if (agent.conns[i]->dead) {
				conn_free(i);
				again = true;
				break;
			}
		}
	}
}

/* Is the peer root or in the operator group (primary or supplementary)? */
static bool peer_is_operator(int fd, const struct ucred *cr)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);
	size_t i;

	if (cr->uid == 0)
		return true;
	if (agent.oper_gid == (gid_t)-1)
		return false;
	if (cr->gid == agent.oper_gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == agent.oper_gid)
			return true;
	return false;
}

static int user_conns(uid_t uid)
{
	int i, n = 0;

	for (i = 0; i < agent.nconns; i++)
		n += agent.conns[i]->uid == uid;
	return n;
}

/* Refuse a connection with one line (best effort) and close it. */
static void refuse(int fd, const char *msg)
{
	agent.n_refused++;
	if (send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* best effort */
	}
	close(fd);
}

/* Out of descriptors (or memory): accepting again at once would spin. */
static bool accept_should_pause(int err)
{
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return false;
	if (!agent.accept_paused_until || agent.verbose)
		vmm_log("accept: %s: not accepting for %d ms", strerror(err),
			VMM_AGENT_ACCEPT_PAUSE_MS);
	agent.n_accept_pause++;
	agent.accept_paused_until = vmm_now_ns() +
		VMM_AGENT_ACCEPT_PAUSE_MS * 1000000LL;
	return true;
}

static void do_accept(void)
{
	for (;;) {
		int fd = accept4(agent.listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		socklen_t crlen = sizeof(struct ucred);
		struct ucred cr;
		struct vmm_conn *c;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (accept_should_pause(errno))
				return;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				vmm_log("accept: %s", strerror(errno));
			return;
		}
		agent.accept_paused_until = 0;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0) {
			vmm_log("SO_PEERCRED: %s; refusing a connection",
				strerror(errno));
			refuse(fd, "ERR not-allowed no peer credentials\n");
			continue;
		}
		if (cr.uid && agent.user_ranks &&
		    user_conns(cr.uid) >= (int)(agent.user_ranks +
						VMM_AGENT_USER_EXTRA)) {
			vmm_log("refusing a connection of uid %u: %u already open",
				(unsigned int)cr.uid,
				agent.user_ranks + VMM_AGENT_USER_EXTRA);
			refuse(fd, "ERR full too many connections of this user\n");
			continue;
		}
		if (!grow_conns()) {
			static const char msg[] =
				"ERR full too many connections to this agent\n";

			agent.n_refused++;
			vmm_log("refusing a connection: %d already open",
				agent.nconns);
			if (send(fd, msg, sizeof(msg) - 1,
				 MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* best effort */
			}
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->out = malloc(VMM_AGENT_OUTQ_MAX);
		if (!c || !c->out) {
			vmm_log("out of memory, refusing a connection");
			if (c)
				free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->id = ++agent.next_id;
		c->slot = -1;
		c->uid = cr.uid;
		c->gid = cr.gid;
		c->pid = cr.pid;
		c->oper = peer_is_operator(fd, &cr);
		ninja_lineq_init(&c->q);
		agent.conns[agent.nconns++] = c;
		if (agent.verbose)
			vmm_log("#%u connected (uid %u gid %u pid %d%s)", c->id,
				(unsigned int)cr.uid, (unsigned int)cr.gid,
				(int)cr.pid, c->oper ? ", operator" : "");
	}
}

static int listen_on(const char *spec)
{
	struct sockaddr_un sa, tmp;
	struct stat st;
	mode_t old_mask;
	char err[512];
	int fd, r, n;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (vmm_parse_endpoint(spec, sa.sun_path, sizeof(sa.sun_path), err,
			       sizeof(err))) {
		vmm_log("--listen %s", err);
		return -1;
	}
	snprintf(agent.path, sizeof(agent.path), "%s", sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		vmm_log("socket: %s", strerror(errno));
		return -1;
	}
	if (lstat(sa.sun_path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			vmm_log("%s exists and is not a socket; not removing it",
				sa.sun_path);
			goto fail;
		}
		/* A live agent answers a connect: never steal its path. */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 &&
		    connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			vmm_log("%s: another process is listening there", spec);
			goto fail;
		}
		if (probe >= 0)
			close(probe);
		if (unlink(sa.sun_path) < 0 && errno != ENOENT) {
			vmm_log("cannot remove stale socket %s: %s",
				sa.sun_path, strerror(errno));
			goto fail;
		}
	}
	/*
	 * The socket appears at PATH only when it listens with its mode and
	 * group: made under a temporary name (umask 0177: nobody else can
	 * connect meanwhile), then renamed into place.
	 */
	tmp = sa;
	n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld",
		     sa.sun_path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp.sun_path))
		tmp = sa;	/* no room for a suffix: bind PATH itself */
	old_mask = umask(0177);
	r = bind(fd, (struct sockaddr *)&tmp, sizeof(tmp));
	umask(old_mask);
	if (r < 0) {
		vmm_log("cannot bind %s: %s", tmp.sun_path, strerror(errno));
		goto fail;
	}
	if (listen(fd, 128) < 0 ||
	    chown(tmp.sun_path, (uid_t)-1, agent.sock_gid) < 0 ||
	    chmod(tmp.sun_path, agent.sock_mode) < 0 ||
	    (strcmp(tmp.sun_path, sa.sun_path) &&
	     rename(tmp.sun_path, sa.sun_path) < 0)) {
		vmm_log("cannot set up %s (group %u, mode %04o): %s",
			sa.sun_path, (unsigned int)agent.sock_gid,
			(unsigned int)agent.sock_mode, strerror(errno));
		unlink(tmp.sun_path);
		goto fail;
	}
	if (stat(sa.sun_path, &st) == 0)
		agent.path_ino = st.st_ino;
	return fd;
fail:
	close(fd);
	return -1;
}

static void cleanup(void)
{
	struct stat st;

	while (agent.nconns) {
		struct vmm_conn *c = agent.conns[--agent.nconns];

		/* Best effort: hand out what is queued, then just close. */
		conn_flush(c);
		if (c->kind == VMM_CONN_RANK && c->slot >= 0)
			agent.by_slot[c->slot] = NULL;
		close(c->fd);
		free(c->out);
		free(c);
	}
	if (agent.listen_fd >= 0) {
		close(agent.listen_fd);
		/* Remove the path only if it is still our socket. */
		if (stat(agent.path, &st) == 0 && st.st_ino == agent.path_ino)
			unlink(agent.path);
	}
	if (agent.pidfile)
		unlink(agent.pidfile);
}

static int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		vmm_log("cannot write pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f)) {
		vmm_log("cannot write pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int setup_signals(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	agent.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return agent.sig_fd < 0 ? -1 : 0;
}

/* A group name or number; prints the error itself. */
static int parse_group(const char *s, gid_t *gid)
{
	struct group *gr;
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (s[0] && !*end && !errno && s[0] != '-' && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	gr = getgrnam(s);
	if (!gr) {
		fprintf(stderr, "ninja-agent: no group '%s'\n", s);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ninja-agent --listen unix:PATH [--socket-mode MODE] [--socket-group GROUP]\n"
		"                   [--operator-group GROUP] [--max-ranks N]\n"
		"                   [--max-ranks-per-user N]\n"
		"                   [--verbose] [--foreground] [--pidfile FILE]\n"
		"\n"
		"User-space Ninja node agent (the role kmod/ninja.ko plays in a VM).\n"
		"Ranks (btl_ninja_control=unix:PATH) and controllers (ninja-ctl) connect\n"
		"to PATH; a connection that starts with \"HELLO 1 host\" is a controller.\n"
		"\n"
		"  --listen unix:PATH  socket to create (a stale socket there is replaced)\n"
		"  --socket-mode MODE  octal mode of PATH (default 0660)\n"
		"  --socket-group GROUP  group of PATH, name or number (default: the\n"
		"                      agent's group); who may connect at all\n"
		"  --operator-group GROUP  members may QUIESCE, RESUME, CANCEL and send\n"
		"                      EVENT (default: root only)\n"
		"  --max-ranks N       rank slots on this node, 1..1048576 (default 4096;\n"
		"                      the table grows as ranks come; past N a rank is\n"
		"                      refused with ERR full)\n"
		"  --max-ranks-per-user N  rank slots one non-root user may hold\n"
		"                      (default 64, 0: no limit)\n"
		"  --verbose, -v       log connections and every line in/out to stderr\n"
		"  --foreground        stay in the foreground (the default; accepted for\n"
		"                      compatibility)\n"
		"  --pidfile FILE      write the process id to FILE, removed at exit\n"
		"\n"
		"SIGTERM/SIGINT/SIGHUP: close every connection, remove PATH, exit 0.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "socket-mode", required_argument, NULL, 'm' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "operator-group", required_argument, NULL, 'o' },
		{ "max-ranks-per-user", required_argument, NULL, 'u' },
		{ "max-ranks", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_spec = NULL;
	struct pollfd *pfd;
	int o, rc = 0, npfd = 2;

	vmm_set_progname(argv[0]);
	agent.listen_fd = agent.sig_fd = -1;
	agent.sock_mode = 0660;
	agent.sock_gid = getegid();
	agent.oper_gid = (gid_t)-1;
	agent.user_ranks = VMM_AGENT_USER_RANKS;
	agent.max_ranks = VMM_AGENT_MAX_RANKS;
	while ((o = getopt_long(argc, argv, "l:vfp:h", opts, NULL)) != -1) {
		unsigned long v;
		char *end;

		switch (o) {
		case 'm':
			errno = 0;
			v = strtoul(optarg, &end, 8);
			if (errno || end == optarg || *end || v > 0777) {
				fprintf(stderr, "ninja-agent: --socket-mode '%s' is not an octal mode (e.g. 0660)\n",
					optarg);
				return 1;
			}
			agent.sock_mode = (mode_t)v;
			break;
		case 'g':
		case 'o':
			if (parse_group(optarg, o == 'g' ? &agent.sock_gid :
					&agent.oper_gid))
				return 1;
			break;
		case 'u':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' ||
			    v > VMM_AGENT_MAX_RANKS_LIMIT) {
				fprintf(stderr, "ninja-agent: --max-ranks-per-user '%s' is not 0..%u\n",
					optarg, VMM_AGENT_MAX_RANKS_LIMIT);
				return 1;
			}
			agent.user_ranks = (unsigned int)v;
			break;
		case 'M':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' ||
			    v < 1 || v > VMM_AGENT_MAX_RANKS_LIMIT) {
				fprintf(stderr, "ninja-agent: --max-ranks '%s' is not 1..%u\n",
					optarg, VMM_AGENT_MAX_RANKS_LIMIT);
				return 1;
			}
			agent.max_ranks = (unsigned int)v;
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case 'v':
			agent.verbose = true;
			break;
		case 'f':
			break;
		case 'p':
			agent.pidfile = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ninja-agent (Ninja) %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ninja-agent: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return 1;
	}
	if (!listen_spec) {
		fprintf(stderr, "ninja-agent: --listen unix:PATH is required\n");
		usage(stderr);
		return 1;
	}
	ninja_agg_init(&agent.agg, &agg_ops, &agent);
	if (setup_signals() < 0) {
		vmm_log("signals: %s", strerror(errno));
		return 1;
	}
	agent.listen_fd = listen_on(listen_spec);
	if (agent.listen_fd < 0)
		return 1;
	if (agent.pidfile && write_pidfile(agent.pidfile) < 0) {
		agent.pidfile = NULL;
		cleanup();
		return 1;
	}
	pfd = calloc(npfd, sizeof(*pfd));
	if (!pfd) {
		vmm_log("out of memory");
		cleanup();
		return 1;
	}
	vmm_log("listening on unix:%s (protocol %d, max %u ranks, %u per user; mode %04o group %u; operators: root%s)",
		agent.path, NINJA_PROTO_VERSION, agent.max_ranks,
		agent.user_ranks, (unsigned int)agent.sock_mode,
		(unsigned int)agent.sock_gid,
		agent.oper_gid == (gid_t)-1 ? "" : " and the operator group");

	for (;;) {
		int i, n = 2, r;
		/* conns[] is stable between poll() and the dispatch below. */
		int nc = agent.nconns;

		if (nc + 2 > npfd) {
			struct pollfd *np = realloc(pfd, (size_t)(agent.conns_cap + 2) *
						    sizeof(*pfd));

			if (!np) {
				vmm_log("out of memory");
				rc = 1;
				break;
			}
			pfd = np;
			npfd = agent.conns_cap + 2;
		}

		int timeout = -1;

		pfd[0].fd = agent.listen_fd;
		pfd[0].events = POLLIN;
		if (agent.accept_paused_until) {
			int64_t left = agent.accept_paused_until - vmm_now_ns();

			if (left > 0) {
				/* poll() ignores a negative fd. */
				pfd[0].fd = -1;
				timeout = (int)(left / 1000000) + 1;
			}
		}
		pfd[1].fd = agent.sig_fd;
		pfd[1].events = POLLIN;
		for (i = 0; i < nc; i++, n++) {
			struct vmm_conn *c = agent.conns[i];

			pfd[n].fd = c->fd;
			pfd[n].events = POLLIN;
			if (c->out_off < c->out_len)
				pfd[n].events |= POLLOUT;
			pfd[n].revents = 0;
		}
		/* A server: the next event has no deadline (but a paused
		 * accept has). */
		r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			vmm_log("poll: %s", strerror(errno));
			rc = 1;
			break;
		}
		if (pfd[1].revents) {
			struct signalfd_siginfo si;

			if (read(agent.sig_fd, &si, sizeof(si)) == sizeof(si)) {
				vmm_log("signal %u: exiting", si.ssi_signo);
				break;
			}
		}
		for (i = 0; i < nc; i++) {
			struct vmm_conn *c = agent.conns[i];
			short rev = pfd[i + 2].revents;

			if (c->dead || !rev)
				continue;
			if (rev & (POLLIN | POLLHUP | POLLERR))
				conn_read(c);
			if (!c->dead && (rev & POLLOUT))
				conn_flush(c);
		}
		if (pfd[0].revents || (pfd[0].fd < 0 && timeout >= 0 &&
				       vmm_now_ns() >= agent.accept_paused_until))
			do_accept();
		/* Closing ranks may queue news for hosts: reap, then flush. */
		reap();
		for (i = 0; i < agent.nconns; i++)
			conn_flush(agent.conns[i]);
		reap();
	}
	free(pfd);
	cleanup();
	vmm_log("exit (%llu errors answered, %llu refused, %llu denied, %llu overflows, %llu accept pauses)",
		(unsigned long long)ninja_agg_errors(&agent.agg),
		(unsigned long long)agent.n_refused,
		(unsigned long long)agent.n_denied,
		(unsigned long long)agent.n_overflow,
		(unsigned long long)agent.n_accept_pause);
	return rc;
}
