/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_verbs.h - the verbs rail (libibverbs RC) of btl/ninja.
 *
 * A connection always starts as TCP: the handshake carries each side's
 * verbs address (GID, LID, QPN, PSN, MTU) when it has an active port, and
 * when both do, frames then travel on an RC queue pair while the TCP
 * socket stays open, idle, as the connection's bootstrap and liveness
 * channel.  Everything verbs (QPs, CQ, MRs, PD, the device) is destroyed at
 * every drain, so the HCA can be hot-unplugged, and rebuilt from scratch at
 * the resume, on whatever device is there then (see docs/design.md).
 */
#ifndef NINJA_BTL_NINJA_VERBS_H
#define NINJA_BTL_NINJA_VERBS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "btl_ninja_hdr.h"

struct mca_btl_base_endpoint_t;
struct mca_btl_ninja_frag;

#ifdef NINJA_HAVE_VERBS
/* Open the best device with an ACTIVE port; desc names it. */
int mca_btl_ninja_verbs_open(char *desc, size_t desclen);
/* Destroy everything (every endpoint's QP must be gone). */
void mca_btl_ninja_verbs_close(void);
bool mca_btl_ninja_verbs_available(void);
/* Per-endpoint QP + buffers; fills our half of the handshake. */
int mca_btl_ninja_verbs_ep_create(struct mca_btl_base_endpoint_t *ep,
				  ninja_verbs_info_t *mine);
/* Bring the QP to RTS against the peer's half. */
int mca_btl_ninja_verbs_ep_connect(struct mca_btl_base_endpoint_t *ep,
				   const ninja_verbs_info_t *peer);
void mca_btl_ninja_verbs_ep_destroy(struct mca_btl_base_endpoint_t *ep);
/* Resolve a peer's address ahead of an upgrade (ms spent, -1: not done). */
double mca_btl_ninja_verbs_warm(const ninja_verbs_info_t *peer);
/* Our half of the handshake for ep's existing QP (still in INIT). */
int mca_btl_ninja_verbs_ep_info(struct mca_btl_base_endpoint_t *ep,
				ninja_verbs_info_t *mine);
/* Post as much of the head frame as credits allow: 1 done, 0 later, <0 error. */
int mca_btl_ninja_verbs_send(struct mca_btl_base_endpoint_t *ep,
			     struct mca_btl_ninja_frag *frag);
int mca_btl_ninja_verbs_send_marker(struct mca_btl_base_endpoint_t *ep);
/* A standalone ACK frame: 1 posted, 0 no credit now, <0 error. */
int mca_btl_ninja_verbs_send_ack(struct mca_btl_base_endpoint_t *ep,
				 uint16_t flags);
/* Poll the CQ: upcalls (app) or deferral (drain).  Returns frames handled. */
int mca_btl_ninja_verbs_progress(bool app);
/* Drain state of one endpoint: marker out and acknowledged, sends done. */
bool mca_btl_ninja_verbs_ep_quiet(struct mca_btl_base_endpoint_t *ep);
/* The open device's async event fd (non-blocking), -1 when none. */
int mca_btl_ninja_verbs_async_fd(void);
/* Read async events: true when the device or our port failed. */
bool mca_btl_ninja_verbs_async_fatal(char *desc, size_t desclen);
/* Is the open device called name (len bytes)? */
bool mca_btl_ninja_verbs_is_device(const char *name, size_t len);
#else
static inline bool mca_btl_ninja_verbs_is_device(const char *name, size_t len)
{
	return false;
}
static inline int mca_btl_ninja_verbs_async_fd(void) { return -1; }
static inline bool mca_btl_ninja_verbs_async_fatal(char *desc, size_t desclen)
{
	return false;
}
static inline bool mca_btl_ninja_verbs_available(void) { return false; }
static inline int mca_btl_ninja_verbs_open(char *desc, size_t desclen)
{
	snprintf(desc, desclen, "built without libibverbs");
	return -1;
}
static inline void mca_btl_ninja_verbs_close(void) { }
static inline int mca_btl_ninja_verbs_ep_create(struct mca_btl_base_endpoint_t *ep,
						ninja_verbs_info_t *mine)
{
	memset(mine, 0, sizeof(*mine));
	return -1;
}
static inline int mca_btl_ninja_verbs_ep_connect(struct mca_btl_base_endpoint_t *ep,
						 const ninja_verbs_info_t *peer)
{
	return -1;
}
static inline void mca_btl_ninja_verbs_ep_destroy(struct mca_btl_base_endpoint_t *ep) { }
static inline double mca_btl_ninja_verbs_warm(const ninja_verbs_info_t *peer)
{
	return -1;
}
static inline int mca_btl_ninja_verbs_ep_info(struct mca_btl_base_endpoint_t *ep,
					      ninja_verbs_info_t *mine)
{
	return -1;
}
static inline int mca_btl_ninja_verbs_send(struct mca_btl_base_endpoint_t *ep,
					   struct mca_btl_ninja_frag *frag)
{
	return -1;
}
static inline int mca_btl_ninja_verbs_send_marker(struct mca_btl_base_endpoint_t *ep)
{
	return -1;
}
static inline int mca_btl_ninja_verbs_send_ack(struct mca_btl_base_endpoint_t *ep,
					       uint16_t flags)
{
	return -1;
}
static inline int mca_btl_ninja_verbs_progress(bool app) { return 0; }
static inline bool mca_btl_ninja_verbs_ep_quiet(struct mca_btl_base_endpoint_t *ep)
{
	return true;
}
#endif

#endif /* NINJA_BTL_NINJA_VERBS_H */
