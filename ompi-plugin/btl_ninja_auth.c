/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_auth.c - who may talk to a rank: the authenticated handshake.
 *
 * Every rank draws a 32-byte secret at init (OpenSSL RAND_bytes) and
 * publishes it through PMIx with its address, so only processes of the job
 * (clients of the job's PMIx servers) can read it.  A connection proves
 * itself with a challenge-response (btl_ninja_hdr.h):
 *
 *   HELLO(nonce_c) -> CHALLENGE(nonce_a) -> AUTH(ids, fields, MAC_a) ->
 *   ACK/NACK(ids, fields, MAC_c)
 *
 *   MAC_a = HMAC-SHA256(secret of the acceptor,
 *                       "ninja-v6-auth" | nonce_c | nonce_a | AUTH body)
 *   MAC_c = HMAC-SHA256(secret of the connector,
 *                       "ninja-v6-reply" | nonce_c | nonce_a | AUTH body |
 *                       ACK body)
 *
 * (a body is the message up to its mac field: magic, version, type, both
 * identities, epoch, reason, ack, max_frame, verbs address).  The acceptor
 * knows the AUTH came from a process that read its secret, i.e. from the
 * job, and answered this connection's nonce (no replay); the connector
 * knows the same of the ACK, which also covers what it sent.  MACs are
 * compared with CRYPTO_memcmp.  See docs/design.md "Threat model".
 */
#include "opal_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "btl_ninja.h"

/* Handshake steps (ninja_hs_state_t.step). */
enum {
	HS_START = 0,
	HS_CHALLENGED,		/* acceptor: CHALLENGE sent */
	HS_AUTHED,		/* connector: AUTH sent; acceptor: AUTH checked */
};

static const char label_auth[16] = "ninja-v6-auth";
static const char label_reply[16] = "ninja-v6-reply";

static uint8_t my_key[NINJA_HS_KEY];
static bool my_key_ok;

/* Peers' secrets by vpid (control thread only). */
typedef struct {
	bool have;
	uint8_t key[NINJA_HS_KEY];
} peer_key_t;
static peer_key_t *peer_keys;
static uint32_t job_size;

int mca_btl_ninja_auth_init(void)
{
	if (RAND_bytes(my_key, sizeof(my_key)) != 1) {
		NINJA_ERROR("btl:ninja: no random bytes for the connection secret");
		return OPAL_ERROR;
	}
	job_size = mca_btl_ninja_job_size();
	if (job_size == 0) {
		NINJA_ERROR("btl:ninja: the job's size is unknown (PMIx)");
		return OPAL_ERROR;
	}
	peer_keys = calloc(job_size, sizeof(*peer_keys));
	if (!peer_keys)
		return OPAL_ERR_OUT_OF_RESOURCE;
	if (mca_btl_ninja_publish_key(my_key, sizeof(my_key)) != OPAL_SUCCESS) {
		mca_btl_ninja_auth_fini();
		return OPAL_ERROR;
	}
	my_key_ok = true;
	return OPAL_SUCCESS;
}

void mca_btl_ninja_auth_fini(void)
{
	OPENSSL_cleanse(my_key, sizeof(my_key));
	my_key_ok = false;
	if (peer_keys) {
		OPENSSL_cleanse(peer_keys, job_size * sizeof(*peer_keys));
		free(peer_keys);
	}
	peer_keys = NULL;
	job_size = 0;
}

bool mca_btl_ninja_auth_have_key(uint32_t vpid)
{
	peer_key_t *k;

	if (!peer_keys || vpid >= job_size)
		return false;
	k = &peer_keys[vpid];
	if (!k->have &&
	    mca_btl_ninja_lookup_key(vpid, k->key, sizeof(k->key)) == OPAL_SUCCESS)
		k->have = true;
	return k->have;
}

/* The largest frame we send whose payload the peer reads into a buffer. */
static uint32_t max_frame(void)
{
	const mca_btl_base_module_t *m = &mca_btl_ninja_module.super;
	size_t n = m->btl_max_send_size;

	if (mca_btl_ninja_component.fault_max_frame > 0)
		return (uint32_t)mca_btl_ninja_component.fault_max_frame;

	if (m->btl_eager_limit > n)
		n = m->btl_eager_limit;
	if (m->btl_rndv_eager_limit > n)
		n = m->btl_rndv_eager_limit;
	n += 4096;	/* get requests, upgrade frames, headers */
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

void mca_btl_ninja_auth_fill(ninja_hs_auth_t *m, int type, uint32_t reason,
			     uint32_t peer_jobid, uint32_t peer_vpid)
{
	opal_process_name_t me = OPAL_PROC_MY_NAME;

	memset(m, 0, sizeof(*m));
	m->magic = NINJA_WIRE_MAGIC;
	m->version = NINJA_WIRE_VERSION;
	m->type = (uint16_t)type;
	m->jobid = me.jobid;
	m->vpid = me.vpid;
	m->peer_jobid = peer_jobid;
	m->peer_vpid = peer_vpid;
	m->epoch = mca_btl_ninja_component.epoch;
	m->reason = reason;
	m->max_frame = max_frame();
}

/* HMAC-SHA256 over label | nonce_c | nonce_a | auth body [| reply body]. */
static int transcript_mac(const uint8_t *key, const char *label,
			  const ninja_hs_state_t *s, const ninja_hs_auth_t *reply,
			  uint8_t out[NINJA_HS_MAC])
{
	const size_t body = offsetof(ninja_hs_auth_t, mac);
	unsigned char buf[16 + 2 * NINJA_HS_NONCE + 2 * sizeof(ninja_hs_auth_t)];
	unsigned int outlen = 0;
	size_t len = 0;

	memcpy(buf + len, label, 16);
	len += 16;
	memcpy(buf + len, s->nonce_c, NINJA_HS_NONCE);
	len += NINJA_HS_NONCE;
	memcpy(buf + len, s->nonce_a, NINJA_HS_NONCE);
	len += NINJA_HS_NONCE;
	memcpy(buf + len, &s->auth, body);
	len += body;
	if (reply) {
		memcpy(buf + len, reply, body);
		len += body;
	}
	if (!HMAC(EVP_sha256(), key, NINJA_HS_KEY, buf, len, out, &outlen) ||
	    outlen != NINJA_HS_MAC)
		return -1;
	return 0;
}

static bool hdr_ok(uint32_t magic, uint16_t version, uint16_t type,
		   uint16_t want)
{
	return magic == NINJA_WIRE_MAGIC && version == NINJA_WIRE_VERSION &&
	       type == want;
}

void mca_btl_ninja_auth_hello(ninja_hs_state_t *s, ninja_hs_hello_t *out)
{
	memset(s, 0, sizeof(*s));
	(void)RAND_bytes(s->nonce_c, sizeof(s->nonce_c));
	memset(out, 0, sizeof(*out));
	out->magic = NINJA_WIRE_MAGIC;
	out->version = NINJA_WIRE_VERSION;
	out->type = NINJA_HS_HELLO;
	memcpy(out->nonce, s->nonce_c, sizeof(out->nonce));
}

int mca_btl_ninja_auth_challenge(ninja_hs_state_t *s, uint32_t peer_jobid,
				 uint32_t peer_vpid)
{
	const ninja_hs_hello_t *h = &s->rx.hello;

	if (!hdr_ok(h->magic, h->version, h->type, NINJA_HS_CHALLENGE) ||
	    peer_vpid >= job_size || !peer_keys[peer_vpid].have)
		return -1;
	memcpy(s->nonce_a, h->nonce, sizeof(s->nonce_a));
	s->auth.type = NINJA_HS_AUTH;
	s->auth.peer_jobid = peer_jobid;
	s->auth.peer_vpid = peer_vpid;
	if (transcript_mac(peer_keys[peer_vpid].key, label_auth, s, NULL,
			   s->auth.mac) != 0)
		return -1;
	s->step = HS_AUTHED;
	return 0;
}

int mca_btl_ninja_auth_verify_reply(ninja_hs_state_t *s, uint32_t peer_jobid,
				    uint32_t peer_vpid)
{
	const ninja_hs_auth_t *r = &s->rx.msg;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	uint8_t mac[NINJA_HS_MAC];
	int ok;

	if (s->step != HS_AUTHED || !my_key_ok ||
	    !(hdr_ok(r->magic, r->version, r->type, NINJA_HS_ACK) ||
	      hdr_ok(r->magic, r->version, r->type, NINJA_HS_NACK)) ||
	    r->jobid != peer_jobid || r->vpid != peer_vpid ||
	    r->peer_jobid != me.jobid || r->peer_vpid != me.vpid)
		return -1;
	if (transcript_mac(my_key, label_reply, s, r, mac) != 0)
		return -1;
	ok = CRYPTO_memcmp(mac, r->mac, sizeof(mac)) == 0;
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok ? 0 : -1;
}

int mca_btl_ninja_auth_answer_hello(ninja_hs_state_t *s,
				    ninja_hs_hello_t *out)
{
	const ninja_hs_hello_t *h = &s->rx.hello;

	if (s->step != HS_START ||
	    !hdr_ok(h->magic, h->version, h->type, NINJA_HS_HELLO))
		return -1;
	memcpy(s->nonce_c, h->nonce, sizeof(s->nonce_c));
	if (RAND_bytes(s->nonce_a, sizeof(s->nonce_a)) != 1)
		return -1;
	memset(out, 0, sizeof(*out));
	out->magic = NINJA_WIRE_MAGIC;
	out->version = NINJA_WIRE_VERSION;
	out->type = NINJA_HS_CHALLENGE;
	memcpy(out->nonce, s->nonce_a, sizeof(out->nonce));
	s->step = HS_CHALLENGED;
	return 0;
}

int mca_btl_ninja_auth_verify_auth(ninja_hs_state_t *s)
{
	const ninja_hs_auth_t *a = &s->rx.msg;
	opal_process_name_t me = OPAL_PROC_MY_NAME;
	uint8_t mac[NINJA_HS_MAC];
	int ok;

	/* Claims first (cheap), then the proof; the caller says nothing
	 * either way but closes. */
	if (s->step != HS_CHALLENGED || !my_key_ok ||
	    !hdr_ok(a->magic, a->version, a->type, NINJA_HS_AUTH) ||
	    a->jobid != me.jobid || a->vpid >= job_size || a->vpid == me.vpid ||
	    a->peer_jobid != me.jobid || a->peer_vpid != me.vpid)
		return -1;
	s->auth = *a;
	if (transcript_mac(my_key, label_auth, s, NULL, mac) != 0)
		return -1;
	ok = CRYPTO_memcmp(mac, a->mac, sizeof(mac)) == 0;
	OPENSSL_cleanse(mac, sizeof(mac));
	if (!ok)
		return -1;
	s->step = HS_AUTHED;
	return 0;
}

int mca_btl_ninja_auth_reply_mac(ninja_hs_state_t *s, ninja_hs_auth_t *r)
{
	uint32_t vpid = s->auth.vpid;

	if (s->step != HS_AUTHED || vpid >= job_size || !peer_keys[vpid].have)
		return -1;
	return transcript_mac(peer_keys[vpid].key, label_reply, s, r, r->mac);
}

/*
 * Read the rest of the message the handshake expects next into s->rx
 * (*len bytes of it are there).  1: whole (*len reset), 0: not yet,
 * -1: EOF or error.
 */
int mca_btl_ninja_auth_read(int fd, ninja_hs_state_t *s, size_t *len)
{
	size_t want = s->step == HS_START ? sizeof(ninja_hs_hello_t) :
					    sizeof(ninja_hs_auth_t);
	ssize_t n;

	if (*len >= want)
		return -1;
	n = recv(fd, (char *)&s->rx + *len, want - *len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	*len += (size_t)n;
	if (*len < want)
		return 0;
	*len = 0;
	return 1;
}

/* Has the connector sent its HELLO and nothing else yet (acceptor)? */
bool mca_btl_ninja_auth_at_hello(const ninja_hs_state_t *s)
{
	return s->step == HS_START;
}
