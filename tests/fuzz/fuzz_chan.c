// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * fuzz_chan.c - libFuzzer harness of the host side of a control line
 * channel (vmm-bridge/vmm_chan.c): the input is what a node agent or a
 * guest's console port sends, written into a socketpair whose other end
 * the channel reads.  The HELLO handshake scans it (vmm_chan_hello), then
 * every queued line is taken (vmm_chan_wait, vmm_chan_take) and parsed
 * as ninja-ctl does.  Invariants: lines are NUL-terminated, within
 * NINJA_LINE_MAX, without '\n'; the node fields are bounded.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm_chan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmm_chan c;
	struct vmm_chan *cs[1] = { &c };
	const struct vmm_line *l;
	struct ninja_msg m;
	int sv[2], r;

	/* What fits in a socketpair's buffer without a reader. */
	if (size > 65536)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	vmm_chan_init(&c);
	snprintf(c.name, sizeof(c.name), "unix:/fuzz");
	c.fd = sv[0];
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	if (size && write(sv[1], data, size) != (ssize_t)size)
		abort();
	/* The peer stops sending but still takes our HELLO. */
	shutdown(sv[1], SHUT_WR);
	r = vmm_chan_hello(cs, 1, "host", vmm_now_ns() + 2000000000LL);
	if (r == 0 && !c.hello_ok)
		abort();
	if (strlen(c.node_phase) >= sizeof(c.node_phase) ||
	    strlen(c.hello) > NINJA_LINE_MAX)
		abort();
	for (;;) {
		while ((l = vmm_chan_take(&c)) != NULL) {
			if (l->len > NINJA_LINE_MAX || l->s[l->len] != '\0' ||
			    memchr(l->s, '\n', l->len))
				abort();
			if (!l->err && !ninja_parse_line(l->s, l->len, &m))
				(void)ninja_msg_get(&m, "epoch", NULL);
		}
		if (c.eof)
			break;
		if (vmm_chan_wait(cs, 1, vmm_now_ns() + 2000000000LL))
			abort();	/* EOF must come, not the deadline */
	}
	vmm_chan_close(&c);
	close(sv[1]);
	return 0;
}
