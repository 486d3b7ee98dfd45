#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
# Guest init hook of the tests/vmm testbed (added to the initrd by
# tests/vmm/run-tests, which also adds virtio_blk): a tiny
# stand-in for udev/NetworkManager: every hot-plugged NIC ethN is brought
# up and gets a soft-RoCE device rxeN, so ninja.ko reports link-up and
# port-active EVENTs as a passthrough HCA would.
(
	while :; do
		for d in /sys/class/net/eth*; do
			[ -e "$d" ] || continue
			n=${d##*/}
			i=${n#eth}
			ip link set "$n" up 2>/dev/null
			[ -e "/sys/class/infiniband/rxe$i" ] ||
				rdma link add "rxe$i" type rxe netdev "$n" 2>/dev/null
		done
		sleep 0.3
	done
) </dev/null >/dev/null 2>&1 &
