/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_rail.h - the rail interface of btl/ninja: what carries an
 * endpoint's frames.  One instance per rail (btl_ninja_rail_tcp.c,
 * btl_ninja_rail_verbs.c), listed once in mca_btl_ninja_rail_table
 * (btl_ninja_rail.c); nothing outside a rail's file knows its device,
 * its per-endpoint state (ep->endpoint_rail_state, owned by the rail) or
 * its address encoding.  The endpoint code keeps the one rail-neutral
 * frame dispatch (mca_btl_ninja_endpoint_frame): a rail delivers every
 * whole frame there and only handles its own transport framing (the
 * verbs rail's credits and pieces).
 *
 * TCP is the stream rail: every connection starts on it (handshake, the
 * address blocks of the other rails, READY and the UPGRADE* frames) and
 * it stays open, idle, under a connection that moved to another rail.  The
 * other rails are "fast" rails: at most one is open per epoch
 * (component.rail), chosen from btl_ninja_rails in preference order.
 *
 * Adding a rail: a new btl_ninja_rail_<name>.c defining a
 * ninja_rail_ops_t, a line in NINJA_RAIL_WIRE_IDS (btl_ninja_hdr.h), and
 * one line in the table.  Every operation runs with the component lock
 * held unless noted.
 */
#ifndef NINJA_BTL_NINJA_RAIL_H
#define NINJA_BTL_NINJA_RAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "btl_ninja_hdr.h"

struct mca_btl_base_endpoint_t;
struct mca_btl_ninja_frag;

typedef struct ninja_rail_ops {
	const char *name;	/* in btl_ninja_rails, RESUME rails=, reports */
	uint8_t wire_id;	/* NINJA_RAIL_ID_*: tag of its address block */
	/* The stream rail: frames written on the connection's socket (its
	 * readiness is the socket's; ACKs queue with the data).  A property
	 * for the rails themselves: the rail-neutral code asks the ops
	 * (recv, tx_wait, sendi, post_ack) or NINJA_EP_ON_TCP instead. */
	bool stream;
	const char *post_failed;	/* what a failed post is called */

	/* Device.  open: the best one (desc names it, or says why not);
	 * may block a while (control thread, unlocked at a live upgrade). */
	int (*open)(char *desc, size_t desclen);
	void (*close)(void);	/* every endpoint's state must be gone */
	int (*event_fd)(void);	/* async events to watch, -1 none */
	/* Read its events: true when the device (or our port) failed. */
	bool (*event_fatal)(char *desc, size_t desclen);
	bool (*is_device)(const char *name, size_t len);

	/* Connect/accept.  addr_encode: our address for ep (reuse: the
	 * endpoint state the rail has for ep, else new state); connect: ep
	 * onto this rail against the peer's block (0, or an error: the
	 * caller then calls ep_close and stays on TCP). */
	int (*addr_encode)(struct mca_btl_base_endpoint_t *ep,
			   ninja_rail_addr_t *mine, bool reuse);
	int (*connect)(struct mca_btl_base_endpoint_t *ep,
		       const ninja_rail_addr_t *peer);
	void (*ep_close)(struct mca_btl_base_endpoint_t *ep);

	/* Frames.  post: as much of the head frame as the rail takes now: 1
	 * done, 0 later, <0 error (the connection goes).  post_ack: a
	 * standalone ACK out of band of the send queue (1 out, 0 later, <0
	 * error); NULL: ACK frames queue with the data.  post_marker: the drain
	 * marker after the last frame (0, or <0: the connection is gone).
	 * quiet: everything posted has left (drain). */
	int (*post)(struct mca_btl_base_endpoint_t *ep,
		    struct mca_btl_ninja_frag *frag, bool app);
	int (*post_ack)(struct mca_btl_base_endpoint_t *ep, uint16_t flags,
			bool app);
	int (*post_marker)(struct mca_btl_base_endpoint_t *ep);
	bool (*quiet)(struct mca_btl_base_endpoint_t *ep);
	/* Completions: frames go to mca_btl_ninja_endpoint_frame (upcalls
	 * when app, else deferred).  NULL: the rail reads per endpoint. */
	int (*progress)(bool app);
	/* The stream rail's reader: read and dispatch what ep's connection
	 * socket holds (frames to mca_btl_ninja_endpoint_frame, puts in
	 * place); the number of frames, <0 the connection is gone.  NULL:
	 * the rail's frames come through progress. */
	int (*recv)(struct mca_btl_base_endpoint_t *ep, bool app);
	/* The send queue changed (frames wait for room, or it emptied):
	 * arrange for a flush when the rail can take more (the stream rail:
	 * EPOLLOUT on the socket).  NULL: the rail's completions do. */
	void (*tx_wait)(struct mca_btl_base_endpoint_t *ep);
	/* sendi fast path (application thread, RUNNING, connected, nothing
	 * queued, room in the window): one frame of ob1's header and payload
	 * written from the caller's buffers, a copy retained for replay.
	 * OPAL_SUCCESS (on the wire or queued), OPAL_ERR_RESOURCE_BUSY (not
	 * taken: the caller copies), or an error.  NULL: never. */
	int (*sendi)(struct mca_btl_base_endpoint_t *ep, const void *header,
		     size_t header_size, const void *payload,
		     size_t payload_size, uint8_t tag);

	/* Live upgrade: resolve a peer's address ahead (ms, -1: not done). */
	double (*warm)(const ninja_rail_addr_t *peer);
} ninja_rail_ops_t;

/* The rails (a build without libibverbs has a verbs rail whose open
 * says so: the name stays valid in btl_ninja_rails). */
extern const ninja_rail_ops_t mca_btl_ninja_rail_tcp;
extern const ninja_rail_ops_t mca_btl_ninja_rail_verbs;

/* btl_ninja_rail.c - the table, selection, address blocks. */
/* A rail by name (len bytes), NULL if unknown. */
const ninja_rail_ops_t *mca_btl_ninja_rail_find(const char *name, size_t len);
/* Is every name of a comma list a rail this build knows (at least one)? */
bool mca_btl_ninja_rails_known(const char *list);
/* The first fast rail allowed by btl_ninja_rails and hint, in order. */
const ninja_rail_ops_t *mca_btl_ninja_rail_first(const char *hint);
/* May the peer's block be used with this epoch's fast rail? */
bool mca_btl_ninja_rail_addr_usable(const ninja_rail_addr_t *a);

/* Is ep's connection on the stream rail (TCP)? */
#define NINJA_EP_ON_TCP(ep)	((ep)->endpoint_rail == &mca_btl_ninja_rail_tcp)

#endif /* NINJA_BTL_NINJA_RAIL_H */
