/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_chan.h - host-side client of a Ninja control line channel: a node
 * agent's unix socket (ninja-agent) or a VM's virtio-serial chardev socket
 * (kmod/ninja.ko behind a console port).  Connect, HELLO handshake, send a
 * line, wait for lines with a deadline.  Used by ninja-ctl and ninja-migrate.
 *
 * Return convention (host code): 0 success, -1 error (message in
 * chan->errmsg), -2 deadline passed.  Every wait takes an absolute deadline
 * on the vmm_now_ns() clock.
 *
 * Received lines ending in "\r" are dropped (counted in n_crlf): over a
 * console port they are the guest tty echoing host input before the module
 * set raw mode (docs/protocol.md, "Transports").
 */
#ifndef NINJA_VMM_CHAN_H
#define NINJA_VMM_CHAN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include "ninja_proto.h"

#define VMM_NAME_MAX		256
/* Received lines kept for the caller before new ones are dropped. */
#define VMM_CHAN_MAXQ		4096

struct vmm_line {
	int err;		/* NINJA_OK or NINJA_ETOOLONG (then s is cut) */
	size_t len;
	char s[NINJA_LINE_MAX + 1];	/* NUL-terminated, without '\n' */
};

struct vmm_chan {
	char name[VMM_NAME_MAX];	/* as given: "unix:/path" */
	int fd;
	bool eof;		/* peer closed or read error: no more lines */
	bool verbose;		/* log every line in/out to stderr */
	char errmsg[1024];
	struct ninja_lineq q;
	/* Received lines not yet taken (ring). */
	struct vmm_line *lines;
	unsigned int head, count, cap;
	/* Counters. */
	unsigned long n_in, n_out, n_crlf, n_toolong, n_dropped;
	/* Filled in by vmm_chan_hello(): the node's answer. */
	bool hello_ok;
	char hello[NINJA_LINE_MAX + 1];
	uint32_t node_epoch;
	unsigned int node_ranks;
	char node_phase[16];
};

/* CLOCK_MONOTONIC in nanoseconds (deadlines) / CLOCK_REALTIME (EVENT). */
int64_t vmm_now_ns(void);
int64_t vmm_wall_ns(void);
/* Milliseconds left until deadline for poll(): 0 when past, rounded up. */
int vmm_remaining_ms(int64_t deadline);
/*
 * Write all of buf to fd (socket, or any fd), waiting for room until the
 * deadline.  0 done, -1 error (errno set; EPIPE when the peer closed), -2
 * deadline.
 */
int vmm_write_all(int fd, const void *buf, size_t len, int64_t deadline);
/* "HH:MM:SS.mmm prog: message\n" to stderr (debug log). */
void vmm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmm_set_progname(const char *name);

/*
 * Parse "unix:PATH" (or a bare absolute path) into *path; -1 with a
 * message in err (size errlen) if the spec is malformed or too long.
 */
int vmm_parse_endpoint(const char *spec, char *path, size_t pathlen,
		       char *err, size_t errlen);

void vmm_chan_init(struct vmm_chan *c);
/*
 * Connect to spec; a missing or refusing socket is retried every 50 ms
 * until the deadline (a peer that is still starting).  0 / -1 / -2.
 */
int vmm_chan_open(struct vmm_chan *c, const char *spec, int64_t deadline);
void vmm_chan_close(struct vmm_chan *c);

/* Send one line (printf format, '\n' appended). 0 / -1 / -2. */
int vmm_chan_send(struct vmm_chan *c, int64_t deadline, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vmm_chan_sendv(struct vmm_chan *c, int64_t deadline, const char *fmt,
		   va_list ap);

/*
 * Wait until one of cs[0..n) has a received line or reaches EOF, reading
 * whatever is available.  Returns 0 when some channel has something to
 * take (vmm_chan_take() or ->eof), -2 at the deadline, -1 on a poll error.
 * NULL entries and channels already at EOF are skipped.
 */
int vmm_chan_wait(struct vmm_chan **cs, int n, int64_t deadline);
/* Take the next received line; NULL when none.  Valid until next take. */
const struct vmm_line *vmm_chan_take(struct vmm_chan *c);
/* Whether a line is waiting. */
static inline bool vmm_chan_pending(const struct vmm_chan *c)
{
	return c->count > 0;
}

/*
 * HELLO handshake with every channel in parallel: send
 * "HELLO <version> <role>" and wait for "HELLO <version> node ...",
 * repeating the HELLO every second (the node may not be listening yet,
 * or an earlier host line may have been lost).  Every line received
 * meanwhile stays queued, the HELLO answers included (a caller ignores
 * HELLO lines: repeated HELLOs get repeated answers).  Returns 0 when all
 * answered, -2 at the deadline (those that did not have hello_ok false),
 * -1 if a channel failed or answered "ERR bad-version".
 */
int vmm_chan_hello(struct vmm_chan **cs, int n, const char *role,
		   int64_t deadline);

#endif /* NINJA_VMM_CHAN_H */
