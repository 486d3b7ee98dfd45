/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_auth.h - the authenticated connection handshake of btl/ninja
 * (btl_ninja_auth.c): every rank's secret, the nonces, and the HMAC-SHA256
 * proofs of the four handshake messages (btl_ninja_hdr.h, docs/protocol.md
 * "Handshake").  Every function runs on the control thread only (the key
 * cache has no lock of its own).
 */
#ifndef NINJA_BTL_NINJA_AUTH_H
#define NINJA_BTL_NINJA_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "btl_ninja_hdr.h"

/* Unauthenticated accepted connections: at most this many at once (the
 * oldest goes when a new one comes), each for at most this long. */
#define NINJA_MAX_PENDING	32
#define NINJA_PENDING_NS	2000000000ull

/* Handshake state of one connection, either side. */
typedef struct ninja_hs_state {
	uint8_t step;			/* enum in btl_ninja_auth.c */
	uint8_t nonce_c[NINJA_HS_NONCE];	/* connector's */
	uint8_t nonce_a[NINJA_HS_NONCE];	/* acceptor's */
	ninja_hs_auth_t auth;		/* the connector's AUTH */
	union {				/* the message being read */
		ninja_hs_hello_t hello;
		ninja_hs_auth_t msg;
	} rx;
} ninja_hs_state_t;

/* Init: make this rank's secret and publish it (before the modex). */
int mca_btl_ninja_auth_init(void);
void mca_btl_ninja_auth_fini(void);

/* This rank's secret of a peer of the job, cached; false: not available. */
bool mca_btl_ninja_auth_have_key(uint32_t vpid);

/*
 * Connector.  hello: a fresh HELLO into out.  challenge: the acceptor's
 * CHALLENGE is in s->rx.hello; fill s->auth (caller's fields already set:
 * epoch, ack, verbs) and its MAC for peer.  verify_reply: s->rx.msg is the
 * acceptor's ACK/NACK: is it from peer, for us, and genuine?
 */
void mca_btl_ninja_auth_hello(ninja_hs_state_t *s, ninja_hs_hello_t *out);
int mca_btl_ninja_auth_challenge(ninja_hs_state_t *s, uint32_t peer_jobid,
				 uint32_t peer_vpid);
int mca_btl_ninja_auth_verify_reply(ninja_hs_state_t *s, uint32_t peer_jobid,
				    uint32_t peer_vpid);

/*
 * Acceptor.  answer_hello: s->rx.hello is the connector's HELLO; fill out
 * with our CHALLENGE.  verify_auth: s->rx.msg is its AUTH: a process of
 * this job, addressed to us, with a MAC made with our secret (constant-
 * time compare); on success s->auth holds it.  reply_mac: the MAC of our
 * ACK/NACK r (other fields filled) with the connector's secret.
 */
int mca_btl_ninja_auth_answer_hello(ninja_hs_state_t *s,
				    ninja_hs_hello_t *out);
int mca_btl_ninja_auth_verify_auth(ninja_hs_state_t *s);
int mca_btl_ninja_auth_reply_mac(ninja_hs_state_t *s, ninja_hs_auth_t *r);

/* Read the next handshake message into s->rx: 1 whole, 0 not yet, -1 EOF. */
int mca_btl_ninja_auth_read(int fd, ninja_hs_state_t *s, size_t *len);
/* Acceptor: is s->rx the HELLO (else the AUTH)? Connector: the CHALLENGE? */
bool mca_btl_ninja_auth_at_hello(const ninja_hs_state_t *s);

/* The fields every AUTH/ACK/NACK of ours carries (no MAC). */
void mca_btl_ninja_auth_fill(ninja_hs_auth_t *m, int type, uint32_t reason,
			     uint32_t peer_jobid, uint32_t peer_vpid);

#endif /* NINJA_BTL_NINJA_AUTH_H */
