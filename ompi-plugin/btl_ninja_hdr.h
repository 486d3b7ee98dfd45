/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_hdr.h - rank-to-rank wire format of btl/ninja (data frames,
 * drain markers, connection handshake).  Documented in docs/protocol.md,
 * section "Rank-to-rank data frames".  Both ends run the same build of the
 * same Open MPI on the same architecture (the component is only loadable
 * into the exact release it was built for), so fields are host order.
 */
#ifndef NINJA_BTL_NINJA_HDR_H
#define NINJA_BTL_NINJA_HDR_H

#include <stdint.h>

#define NINJA_WIRE_MAGIC	0x4e4a4131u	/* "NJA1" */
#define NINJA_WIRE_VERSION	6	/* 3: per-peer seq/ack, replay;
					 * 4: get emulation, 16-byte put header;
					 * 5: authenticated handshake, frame
					 *    length limit, put and get name a
					 *    registration key (docs/protocol.md
					 *    section 10);
					 * 6: rail-tagged, length-prefixed
					 *    address block (ninja_rail_addr_t)
					 *    in AUTH/ACK and UPGRADE* */

/* Frame types. */
enum {
	NINJA_FRAME_DATA = 1,	/* a BTL fragment for tag hdr.tag */
	NINJA_FRAME_MARKER = 2,	/* drain marker: nothing follows in this epoch */
	/* 3: CREDIT, verbs rail only (btl_ninja_rail_verbs.c) */
	NINJA_FRAME_READY = 4,	/* TCP: connector's QP is ready (flags 1) or
				 * failed (flags 0: stay on TCP); also ends a
				 * live upgrade (initiator -> answerer) */
	NINJA_FRAME_ACK = 5,	/* standalone cumulative acknowledgement */
	/* 6, 7: reserved for surprise removal */
	/* Live upgrade of a TCP connection to verbs (btl_ninja_upgrade.c),
	 * on the TCP stream only; DATA frames never use these numbers. */
	NINJA_FRAME_UPGRADE = 8,	/* initiator's ninja_rail_addr_t; it
					 * sends nothing more on TCP but READY */
	NINJA_FRAME_UPGRADE_ACK = 9,	/* answerer's ninja_rail_addr_t (rail
					 * 0: not now); else its QP is at RTS,
					 * it sends nothing more on TCP */
	NINJA_FRAME_UPGRADE_REQ = 10,	/* "my fast rail is up" (and its
					 * ninja_rail_addr_t): the lower-named
					 * peer should start one */
};

/*
 * Put emulation (btl_put): a DATA frame with this tag carries a
 * ninja_put_hdr_t (the destination: the receiver's virtual address ob1
 * sent in its PUT request, and the key of the receiver's registration
 * that covers it, ob1's remote handle) and then the data, which the
 * receiver writes there directly - only if [addr, addr + data length)
 * lies inside that registration (docs/protocol.md section 10).  The tags
 * are in the BTL-private range (MCA_BTL_TAG_BTL .. +31), which no ob1
 * callback uses.
 */
#define NINJA_TAG_PUT		0x3f

/*
 * Get emulation (btl_get, ob1's RGET protocol): the reader sends a DATA
 * frame NINJA_TAG_GET with a ninja_get_req_t naming the answerer's
 * registration (key) and a range inside it; the owner of the memory
 * answers with a DATA frame NINJA_TAG_GETRESP laid out like a put (a
 * ninja_put_hdr_t with the reader's address and the request's id, then
 * the data), which the reader writes in place - only if it matches a get
 * it asked and has not been answered - and then completes the get.
 */
#define NINJA_TAG_GET		0x3e
#define NINJA_TAG_GETRESP	0x3d

typedef struct ninja_put_hdr {
	uint64_t addr;		/* destination, receiver's address space */
	union {
		uint64_t key;	/* PUT: the receiver's registration */
		uint64_t id;	/* GETRESP: the request's id */
	};
} ninja_put_hdr_t;
_Static_assert(sizeof(ninja_put_hdr_t) == 16, "ninja_put_hdr_t: 16 bytes");

typedef struct ninja_get_req {
	uint64_t key;		/* the answerer's registration */
	uint64_t src;		/* data, in the answerer's address space */
	uint64_t dst;		/* where it goes, in the reader's */
	uint64_t len;		/* bytes, at most NINJA_PUT_MAX */
	uint64_t id;		/* the reader's, echoed in the response */
} ninja_get_req_t;
_Static_assert(sizeof(ninja_get_req_t) == 40, "ninja_get_req_t: 40 bytes");

/* Tags whose DATA frame the TCP rail reads straight into place. */
static inline int ninja_tag_in_place(uint8_t tag)
{
	return tag == NINJA_TAG_PUT || tag == NINJA_TAG_GETRESP;
}

/*
 * DATA flag: the sender holds this frame's completion (ob1's callback)
 * until it is acknowledged - answer with an ACK soon if nothing else goes
 * back.  Bit 15, so the verbs rail keeps bit 0 and the credits below it.
 */
#define NINJA_FLAG_ACK_REQ	0x8000

/* Sequence numbers wrap: a precedes b. */
static inline int ninja_seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/*
 * A rail's address, carried in the handshake (AUTH, ACK) and in the
 * UPGRADE* frames: a rail tag, a length, and that many bytes the rail
 * alone encodes and decodes (docs/protocol.md "Rail address block").
 * rail 0 (NINJA_RAIL_ID_NONE): no address, the connection stays on TCP.
 * A receiver ignores a block whose rail it has not open this epoch and
 * refuses one whose len exceeds NINJA_RAIL_ADDR_MAX or is not exactly
 * what that rail encodes.
 */
#define NINJA_RAIL_ADDR_MAX	60

/*
 * The wire ids, one line per rail: X(NAME, id, bytes of its address).  A
 * new rail adds its line here with an id never used before (duplicates do
 * not compile, nor an address over NINJA_RAIL_ADDR_MAX or an id over 255),
 * then its ops (btl_ninja_rail.h).  Ids are never reused: an old peer
 * reads an unknown id as rail 0.
 */
#define NINJA_RAIL_WIRE_IDS(X)						\
	X(NONE, 0, 0)		/* no address: stay on TCP */		\
	X(TCP, 1, 0)		/* reserved: TCP is the bootstrap */	\
	X(VERBS, 2, sizeof(ninja_verbs_info_t))

#define NINJA_RAIL_ID_ENUM_(name, id, size)	NINJA_RAIL_ID_##name = (id),
enum { NINJA_RAIL_WIRE_IDS(NINJA_RAIL_ID_ENUM_) };
#undef NINJA_RAIL_ID_ENUM_

typedef struct ninja_rail_addr {
	uint8_t rail;		/* NINJA_RAIL_ID_* */
	uint8_t reserved;	/* 0 */
	uint16_t len;		/* bytes of addr[] used */
	uint8_t addr[NINJA_RAIL_ADDR_MAX];
} ninja_rail_addr_t;

/* The verbs rail's address (the bytes of its ninja_rail_addr_t). */
typedef struct ninja_verbs_info {
	uint8_t valid;
	uint8_t port;
	uint16_t lid;
	uint32_t qpn;
	uint32_t psn;
	uint32_t mtu;		/* enum ibv_mtu */
	uint32_t slots;		/* receive slots posted (initial credits) */
	uint32_t slot_size;
	uint8_t gid[16];
} ninja_verbs_info_t;

/* Every frame starts with this 16-byte header; len bytes follow. */
typedef struct ninja_frame_hdr {
	uint8_t type;
	uint8_t tag;		/* MCA BTL tag (DATA) */
	uint16_t flags;
	uint32_t len;		/* payload bytes after the header */
	union {
		uint32_t epoch;	/* MARKER, READY: the drain epoch */
		uint32_t ack;	/* DATA, ACK, CREDIT: cumulative ack, the
				 * next DATA seq the sender expects from us */
	};
	uint32_t seq;		/* DATA: per-peer sequence number (survives
				 * reconnections; replay and duplicates) */
} ninja_frame_hdr_t;

/*
 * Connection handshake (wire version 6, docs/protocol.md "Handshake"):
 *
 *   connector -> acceptor   HELLO      ninja_hs_hello_t: nonce_c, no identity
 *   acceptor  -> connector  CHALLENGE  ninja_hs_hello_t: nonce_a, no identity
 *   connector -> acceptor   AUTH       ninja_hs_auth_t, mac keyed by the
 *                                      acceptor's secret
 *   acceptor  -> connector  ACK/NACK   ninja_hs_auth_t, mac keyed by the
 *                                      connector's secret
 *
 * The acceptor reads nothing else and says nothing about itself before
 * the AUTH's MAC is verified; a connection that fails any check is closed
 * without an answer.  Frames follow the ACK on the same stream.
 */
enum {
	NINJA_HS_HELLO = 1,
	NINJA_HS_ACK = 2,
	NINJA_HS_NACK = 3,
	NINJA_HS_CHALLENGE = 4,
	NINJA_HS_AUTH = 5,
};

/* NACK reasons. */
enum {
	NINJA_NACK_DRAINING = 1,	/* acceptor is draining epoch hs.epoch */
	NINJA_NACK_RACE = 2,		/* simultaneous connect: the other one wins */
	NINJA_NACK_UNKNOWN = 3,		/* acceptor gave up on the connector */
};

#define NINJA_HS_NONCE	32	/* bytes of each side's nonce */
#define NINJA_HS_MAC	32	/* HMAC-SHA256 */
#define NINJA_HS_KEY	32	/* each rank's secret */

/* HELLO and CHALLENGE. */
typedef struct ninja_hs_hello {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint8_t nonce[NINJA_HS_NONCE];
} ninja_hs_hello_t;

/* AUTH, ACK and NACK: everything before mac is covered by it. */
typedef struct ninja_hs_auth {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t jobid;		/* sender's process name */
	uint32_t vpid;
	uint32_t peer_jobid;	/* whom the sender believes it talks to */
	uint32_t peer_vpid;
	uint32_t epoch;		/* sender's current epoch */
	uint32_t reason;	/* NACK reason */
	uint32_t ack;		/* AUTH, ACK: next DATA seq the sender
				 * expects from the receiver (replay point) */
	uint32_t max_frame;	/* largest len the sender puts in a frame
				 * read into a buffer (all but in-place) */
	ninja_rail_addr_t rail;		/* rail 0: TCP only */
	uint8_t mac[NINJA_HS_MAC];
} ninja_hs_auth_t;

_Static_assert(sizeof(ninja_verbs_info_t) == 40, "verbs info is 40 bytes");
_Static_assert(sizeof(ninja_hs_hello_t) == 40, "HELLO is 40 bytes");
_Static_assert(sizeof(ninja_rail_addr_t) == 64, "rail address block is 64 bytes");
/* Every rail's address fits a block, its id the 1-byte tag; no id twice
 * (a duplicate case does not compile). */
#define NINJA_RAIL_ID_CHECK_(name, id, size)				\
	_Static_assert((size) <= NINJA_RAIL_ADDR_MAX && (id) <= 255,	\
		       "rail " #name ": address fits a rail block, id a byte");
NINJA_RAIL_WIRE_IDS(NINJA_RAIL_ID_CHECK_)
#undef NINJA_RAIL_ID_CHECK_
#define NINJA_RAIL_ID_CASE_(name, id, size)	case (id):
static inline int ninja_rail_id_known(unsigned int id)
{
	switch (id) {
	NINJA_RAIL_WIRE_IDS(NINJA_RAIL_ID_CASE_)
		return 1;
	default:
		return 0;
	}
}
#undef NINJA_RAIL_ID_CASE_
_Static_assert(sizeof(ninja_hs_auth_t) == 136, "AUTH/ACK is 136 bytes");
_Static_assert(sizeof(ninja_frame_hdr_t) == 16, "frame header is 16 bytes");

#endif /* NINJA_BTL_NINJA_HDR_H */
