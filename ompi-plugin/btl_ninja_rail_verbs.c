/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_rail_verbs.c - the verbs rail: one RC queue pair per peer,
 * pre-registered send and receive slots, credit-based flow control (a
 * receiver is never overrun: a sender posts only into slots the peer has
 * posted, credits come back piggybacked on frames or in CREDIT frames),
 * fragments larger than a slot split into pieces and reassembled, drain
 * markers sent on the QP itself (RC is ordered), and complete teardown of
 * QPs, CQ, MRs, PD and device at every drain.  All calls run with the
 * component lock held.  Reached only through mca_btl_ninja_rail_verbs
 * (btl_ninja_rail.h); see docs/design.md.
 *
 * A connection always starts as TCP: the handshake carries each side's
 * verbs address (GID, LID, QPN, PSN, MTU: a ninja_verbs_info_t in a rail
 * address block) when it has an active port, and when both do, frames
 * then travel on the RC queue pair while the TCP socket stays open, idle,
 * as the connection's bootstrap and liveness channel.  Everything verbs is
 * destroyed at every drain, so the HCA can be hot-unplugged, and rebuilt
 * from scratch at the resume, on whatever device is there then.
 */
#include "opal_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include "btl_ninja.h"

#define NINJA_FRAME_CREDIT	3
#define FLAG_MORE		0x1	/* more pieces of this frame follow */
#define CREDIT_SHIFT		1	/* credits returned, in flags bits 1-14 */
#define CREDIT_MAX		0x3fff	/* bit 15: NINJA_FLAG_ACK_REQ */
#define CREDITS(flags)		(((flags) & 0x7fff) >> CREDIT_SHIFT)

/* A QP's move to RTR may fail while the peer's is not there yet: retried
 * this long. */
#define NINJA_QP_RETRY_NS	(2 * NINJA_SEC_NS)
/* The stuck-state dump, at most this often. */
#define NINJA_DUMP_EVERY_NS	(2 * NINJA_SEC_NS)

typedef struct ninja_vep {
	struct ibv_qp *qp;
	struct ibv_mr *rx_mr, *tx_mr;
	unsigned char *rx_buf, *tx_buf;
	uint32_t nslots, slot_size;
	uint32_t peer_slot_size;	/* the peer's receive slots */
	uint32_t gen;
	int credits;		/* peer receive slots we may fill */
	int credits_owed;	/* slots we reposted and have not announced */
	int *tx_free;		/* stack of free send slots */
	int ntx_free;
	int marker_slot;	/* send slot of our marker, -1 none */
	bool marker_posted, marker_done;
	bool broken;
	unsigned char *reasm;	/* reassembly of a multi-piece frame */
	size_t reasm_len, reasm_cap;
	uint8_t reasm_tag;
	uint32_t psn;		/* our first send PSN */
} ninja_vep_t;

/* The rail's state of an endpoint (btl_ninja_rail.h: owned here). */
#define VEP(ep)	((ninja_vep_t *)(ep)->endpoint_rail_state)

static struct {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	uint8_t port;
	int gid_index;
	union ibv_gid gid;
	uint16_t lid;
	enum ibv_mtu mtu;
	bool roce;
	int nqp;
	uint32_t gen;
	char name[IBV_SYSFS_NAME_MAX];
} V;

static bool dev_allowed(const char *name)
{
	const char *list = mca_btl_ninja_component.verbs_devices;
	char buf[256], *save = NULL, *tok;

	if (!list || !list[0])
		return true;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		if (!strcmp(tok, name))
			return true;
	return false;
}

/*
 * GID to use: the parameter, else by preference an IPv4-mapped RoCE v2
 * GID, any RoCE v2 GID, an IPv4-mapped GID, the first non-zero one.  A
 * ConnectX lists a RoCE v1 and a RoCE v2 entry for every address (rxe only
 * v2): both ends must pick the same type, and v2 is the routable one.
 */
static int gid_rank(const uint8_t *raw, bool v2)
{
	static const uint8_t v4[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t zero[16];

	if (!memcmp(raw, zero, 16))
		return 0;
	return 1 + (v2 ? 2 : 0) + (!memcmp(raw, v4, 12) ? 1 : 0);
}

static int pick_gid(struct ibv_context *ctx, uint8_t port, int tbl_len)
{
	struct ibv_gid_entry *e;
	int i, n, best = -1, best_rank = 0;

	if (mca_btl_ninja_component.verbs_gid_index >= 0)
		return mca_btl_ninja_component.verbs_gid_index;
	/* One call for the whole table (every port of the device). */
	e = calloc(256, sizeof(*e));
	n = e ? (int)ibv_query_gid_table(ctx, e, 256, 0) : -1;
	for (i = 0; i < n; i++) {
		int r;

		if (e[i].port_num != port)
			continue;
		r = gid_rank(e[i].gid.raw, e[i].gid_type == IBV_GID_TYPE_ROCE_V2);
		if (r > best_rank) {
			best = (int)e[i].gid_index;
			best_rank = r;
		}
	}
	free(e);
	if (n < 0) {
		/* Older kernel: the plain query, no GID types. */
		for (i = 0; i < tbl_len && i < 256; i++) {
			union ibv_gid gid;
			int r;

			if (ibv_query_gid(ctx, port, i, &gid))
				continue;
			r = gid_rank(gid.raw, false);
			if (r > best_rank) {
				best = i;
				best_rank = r;
			}
		}
	}
	return best < 0 ? 0 : best;
}

static void verbs_close(void);

static int verbs_open(char *desc, size_t desclen)
{
	struct ibv_device **list;
	int n, i;

	if (V.ctx) {
		snprintf(desc, desclen, "%s port %u (already open)", V.name, V.port);
		return OPAL_SUCCESS;
	}
	snprintf(desc, desclen, "no RDMA device with an active port");
	list = ibv_get_device_list(&n);
	if (!list)
		return OPAL_ERR_NOT_AVAILABLE;
	for (i = 0; i < n && !V.ctx; i++) {
		const char *name = ibv_get_device_name(list[i]);
		struct ibv_context *ctx;
		struct ibv_device_attr da;
		uint8_t p;

		if (!dev_allowed(name))
			continue;
		ctx = ibv_open_device(list[i]);
		if (!ctx)
			continue;
		if (ibv_query_device(ctx, &da)) {
			ibv_close_device(ctx);
			continue;
		}
		for (p = 1; p <= da.phys_port_cnt; p++) {
			struct ibv_port_attr pa;

			if (mca_btl_ninja_component.verbs_port > 0 &&
			    p != mca_btl_ninja_component.verbs_port)
				continue;
			if (ibv_query_port(ctx, p, &pa) ||
			    pa.state != IBV_PORT_ACTIVE)
				continue;
			V.ctx = ctx;
			V.port = p;
			V.lid = pa.lid;
			V.mtu = pa.active_mtu;
			V.roce = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
			V.gid_index = pick_gid(ctx, p, pa.gid_tbl_len);
			if (ibv_query_gid(ctx, p, V.gid_index, &V.gid))
				memset(&V.gid, 0, sizeof(V.gid));
			snprintf(V.name, sizeof(V.name), "%s", name);
			break;
		}
		if (!V.ctx)
			ibv_close_device(ctx);
	}
	ibv_free_device_list(list);
	if (!V.ctx)
		return OPAL_ERR_NOT_AVAILABLE;
	V.pd = ibv_alloc_pd(V.ctx);
	V.cq = V.pd ? ibv_create_cq(V.ctx, 4096, NULL, NULL, 0) : NULL;
	if (!V.cq) {
		snprintf(desc, desclen, "%s: cannot allocate PD/CQ", V.name);
		verbs_close();
		return OPAL_ERR_NOT_AVAILABLE;
	}
	/* The control thread watches it: a port or device that fails. */
	(void)fcntl(V.ctx->async_fd, F_SETFL,
		    fcntl(V.ctx->async_fd, F_GETFL) | O_NONBLOCK);
	snprintf(desc, desclen, "%s port %u (%s, gid index %d, mtu %d)",
		 V.name, V.port, V.roce ? "RoCE" : "InfiniBand", V.gid_index,
		 128 << V.mtu);
	return OPAL_SUCCESS;
}

static void verbs_close(void)
{
	if (V.cq)
		ibv_destroy_cq(V.cq);
	if (V.pd)
		ibv_dealloc_pd(V.pd);
	if (V.ctx)
		ibv_close_device(V.ctx);
	V.cq = NULL;
	V.pd = NULL;
	V.ctx = NULL;
	V.nqp = 0;
}

static int verbs_event_fd(void)
{
	return V.ctx ? V.ctx->async_fd : -1;
}

/*
 * Lock held.  Surprise removal shows here first: rxe reports PORT_ERR
 * when its netdev goes down (the NIC is unplugged), a real HCA
 * DEVICE_FATAL; then the kernel waits for us to close the device.  A QP
 * that failed (QP_FATAL ...) is also seen by its completions.
 */
static bool verbs_event_fatal(char *desc, size_t desclen)
{
	struct ibv_async_event ev;
	struct ibv_port_attr pa;
	union ibv_gid gid;
	bool fatal = false;
	int n = 0;

	NINJA_ASSERT_LOCKED();
	while (V.ctx && ibv_get_async_event(V.ctx, &ev) == 0) {
		switch (ev.event_type) {
		case IBV_EVENT_DEVICE_FATAL:
			fatal = true;
			break;
		case IBV_EVENT_PORT_ERR:
			if (ev.element.port_num == V.port)
				fatal = true;
			break;
		default:
			break;
		}
		n += snprintf(desc + n, desclen > (size_t)n ? desclen - n : 0,
			      "%s%s", n ? ", " : "",
			      ibv_event_type_str(ev.event_type));
		ibv_ack_async_event(&ev);
		if (fatal || (size_t)n >= desclen)
			break;
	}
	/*
	 * Whatever the event (rxe on 6.1 reports only "GID table change"
	 * when its NIC is unplugged): is our port still ACTIVE, with our GID?
	 */
	if (!fatal && V.ctx &&
	    (ibv_query_port(V.ctx, V.port, &pa) || pa.state != IBV_PORT_ACTIVE ||
	     ibv_query_gid(V.ctx, V.port, V.gid_index, &gid) ||
	     memcmp(&gid, &V.gid, sizeof(gid))))
		fatal = true;
	return fatal;
}

static bool verbs_is_device(const char *name, size_t len)
{
	return V.ctx && strlen(V.name) == len && !memcmp(V.name, name, len);
}

static uint64_t wr_id(mca_btl_ninja_endpoint_t *ep, bool recv, int slot)
{
	ninja_vep_t *v = VEP(ep);

	return ((uint64_t)(v->gen & 0xffff) << 48) |
	       ((uint64_t)ep->endpoint_index << 20) |
	       ((uint64_t)recv << 19) | (uint64_t)slot;
}

static int post_recv(mca_btl_ninja_endpoint_t *ep, int slot)
{
	ninja_vep_t *v = VEP(ep);
	struct ibv_sge sge = {
		.addr = (uintptr_t)(v->rx_buf + (size_t)slot * v->slot_size),
		.length = v->slot_size,
		.lkey = v->rx_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = wr_id(ep, true, slot),
				  .sg_list = &sge, .num_sge = 1 }, *bad;

	return ibv_post_recv(v->qp, &wr, &bad);
}

static void verbs_ep_close(mca_btl_ninja_endpoint_t *ep)
{
	ninja_vep_t *v = VEP(ep);

	if (!v)
		return;
	if (v->qp) {
		ibv_destroy_qp(v->qp);
		V.nqp--;
	}
	if (v->rx_mr)
		ibv_dereg_mr(v->rx_mr);
	if (v->tx_mr)
		ibv_dereg_mr(v->tx_mr);
	free(v->rx_buf);
	free(v->tx_buf);
	free(v->tx_free);
	free(v->reasm);
	free(v);
	ep->endpoint_rail_state = NULL;
}

static int ep_info(mca_btl_ninja_endpoint_t *ep, ninja_verbs_info_t *mine);

static int ep_create(mca_btl_ninja_endpoint_t *ep, ninja_verbs_info_t *mine)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct ibv_qp_init_attr qia;
	struct ibv_qp_attr qa;
	ninja_vep_t *v;
	uint32_t i;

	memset(mine, 0, sizeof(*mine));
	if (!V.ctx)
		return OPAL_ERR_NOT_AVAILABLE;
	verbs_ep_close(ep);
	v = calloc(1, sizeof(*v));
	if (!v)
		return OPAL_ERR_OUT_OF_RESOURCE;
	ep->endpoint_rail_state = v;
	v->nslots = (uint32_t)c->verbs_slots;
	v->slot_size = (uint32_t)c->verbs_slot_size;
	v->gen = ++V.gen;
	v->marker_slot = -1;
	v->rx_buf = calloc(v->nslots, v->slot_size);
	v->tx_buf = calloc(v->nslots, v->slot_size);
	v->tx_free = calloc(v->nslots, sizeof(int));
	if (!v->rx_buf || !v->tx_buf || !v->tx_free)
		goto fail;
	v->rx_mr = ibv_reg_mr(V.pd, v->rx_buf, (size_t)v->nslots * v->slot_size,
			      IBV_ACCESS_LOCAL_WRITE);
	v->tx_mr = ibv_reg_mr(V.pd, v->tx_buf, (size_t)v->nslots * v->slot_size,
			      IBV_ACCESS_LOCAL_WRITE);
	if (!v->rx_mr || !v->tx_mr)
		goto fail;
	for (i = 0; i < v->nslots; i++)
		v->tx_free[v->ntx_free++] = (int)i;
	memset(&qia, 0, sizeof(qia));
	qia.send_cq = V.cq;
	qia.recv_cq = V.cq;
	qia.qp_type = IBV_QPT_RC;
	qia.cap.max_send_wr = v->nslots;
	qia.cap.max_recv_wr = v->nslots;
	qia.cap.max_send_sge = 1;
	qia.cap.max_recv_sge = 1;
	v->qp = ibv_create_qp(V.pd, &qia);
	if (!v->qp)
		goto fail;
	V.nqp++;
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_INIT;
	qa.pkey_index = 0;
	qa.port_num = V.port;
	qa.qp_access_flags = 0;
	if (ibv_modify_qp(v->qp, &qa, IBV_QP_STATE | IBV_QP_PKEY_INDEX |
			  IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		goto fail;
	for (i = 0; i < v->nslots; i++)
		if (post_recv(ep, (int)i))
			goto fail;
	v->psn = (uint32_t)(random() & 0xffffff);
	return ep_info(ep, mine);
fail:
	NINJA_ERROR("btl:ninja: verbs: cannot set up a queue pair to %u.%u on %s: %s",
		    ep->endpoint_name.jobid, ep->endpoint_name.vpid, V.name,
		    strerror(errno));
	verbs_ep_close(ep);
	memset(mine, 0, sizeof(*mine));
	return OPAL_ERROR;
}

/*
 * Resolve the peer's address now, outside any hold: a scratch QP taken to
 * RTR towards its GID makes the kernel resolve the neighbour (RoCE), and
 * its ARP request teaches the peer's kernel ours, so both ends' later
 * transitions find the entry.  Best effort; returns ms spent, -1 if none.
 */
static double warm(const ninja_verbs_info_t *peer)
{
	struct ibv_qp_init_attr qia;
	struct ibv_qp_attr qa;
	struct ibv_qp *qp;
	uint64_t t0 = mca_btl_ninja_now_ns();
	int tries, r = -1;

	if (!V.ctx || !V.roce || !peer->valid)
		return -1;
	memset(&qia, 0, sizeof(qia));
	qia.send_cq = V.cq;
	qia.recv_cq = V.cq;
	qia.qp_type = IBV_QPT_RC;
	qia.cap.max_send_wr = 1;
	qia.cap.max_recv_wr = 1;
	qia.cap.max_send_sge = 1;
	qia.cap.max_recv_sge = 1;
	qp = ibv_create_qp(V.pd, &qia);
	if (!qp)
		return -1;
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_INIT;
	qa.port_num = V.port;
	if (ibv_modify_qp(qp, &qa, IBV_QP_STATE | IBV_QP_PKEY_INDEX |
			  IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		goto out;
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_RTR;
	qa.path_mtu = V.mtu;
	qa.dest_qp_num = peer->qpn;
	qa.max_dest_rd_atomic = 1;
	qa.min_rnr_timer = 12;
	qa.ah_attr.port_num = V.port;
	qa.ah_attr.is_global = 1;
	memcpy(qa.ah_attr.grh.dgid.raw, peer->gid, 16);
	qa.ah_attr.grh.sgid_index = (uint8_t)V.gid_index;
	qa.ah_attr.grh.hop_limit = 64;
	for (tries = 0; tries < 200; tries++) {
		r = ibv_modify_qp(qp, &qa, IBV_QP_STATE | IBV_QP_AV |
				  IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
				  IBV_QP_MIN_RNR_TIMER);
		if (r == 0 || (errno != ETIMEDOUT && errno != EHOSTUNREACH &&
			       errno != EAGAIN))
			break;
		usleep(10000);
	}
out:
	ibv_destroy_qp(qp);
	return r == 0 ? (mca_btl_ninja_now_ns() - t0) / (double)NINJA_MS_NS : -1;
}

static int ep_info(mca_btl_ninja_endpoint_t *ep, ninja_verbs_info_t *mine)
{
	ninja_vep_t *v = VEP(ep);

	memset(mine, 0, sizeof(*mine));
	if (!v || !v->qp || v->broken || !V.ctx)
		return OPAL_ERROR;
	mine->valid = 1;
	mine->port = V.port;
	mine->lid = V.lid;
	mine->qpn = v->qp->qp_num;
	mine->psn = v->psn;
	mine->mtu = V.mtu;
	mine->slots = v->nslots;
	mine->slot_size = v->slot_size;
	memcpy(mine->gid, V.gid.raw, 16);
	return OPAL_SUCCESS;
}

static int ep_connect(mca_btl_ninja_endpoint_t *ep,
		      const ninja_verbs_info_t *peer)
{
	ninja_vep_t *v = VEP(ep);
	struct ibv_qp_attr qa;
	uint64_t t0;
	int tries;

	/* Slot sizes may differ (another version's default): a piece fits
	 * the smaller of our send slot and the peer's receive slot. */
	if (!v || !peer->valid || peer->slots == 0 ||
	    peer->slot_size < 4096)
		return OPAL_ERROR;
	v->peer_slot_size = peer->slot_size;
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_RTR;
	qa.path_mtu = peer->mtu < (uint32_t)V.mtu ? (enum ibv_mtu)peer->mtu : V.mtu;
	qa.dest_qp_num = peer->qpn;
	qa.rq_psn = peer->psn;
	qa.max_dest_rd_atomic = 1;
	qa.min_rnr_timer = 12;
	qa.ah_attr.dlid = peer->lid;
	qa.ah_attr.sl = 0;
	qa.ah_attr.port_num = V.port;
	if (V.roce || mca_btl_ninja_component.verbs_gid_index >= 0) {
		qa.ah_attr.is_global = 1;
		memcpy(qa.ah_attr.grh.dgid.raw, peer->gid, 16);
		qa.ah_attr.grh.sgid_index = (uint8_t)V.gid_index;
		qa.ah_attr.grh.hop_limit = 64;
	}
	/*
	 * RoCE resolves the peer's MAC (neighbour lookup) here.  Right after
	 * a hot-plug the peer's interface may not answer yet (seen with rxe:
	 * ETIMEDOUT while its link came up): the QP stays in INIT after a
	 * failed transition, so retry for up to about 2 s, in short steps:
	 * a live upgrade holds the connection's frames meanwhile.
	 */
	t0 = mca_btl_ninja_now_ns();
	for (tries = 0;; tries++) {
		if (ibv_modify_qp(v->qp, &qa, IBV_QP_STATE | IBV_QP_AV |
				  IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
				  IBV_QP_MIN_RNR_TIMER) == 0)
			break;
		if ((errno != ETIMEDOUT && errno != EHOSTUNREACH &&
		     errno != EAGAIN) ||
		    mca_btl_ninja_now_ns() - t0 > NINJA_QP_RETRY_NS)
			goto fail;
		usleep(10000);
	}
	NINJA_VERBOSE(20, "btl:ninja: verbs: QP to %u.%u at RTR after %d retries, %.1f ms",
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid, tries,
		      (mca_btl_ninja_now_ns() - t0) / (double)NINJA_MS_NS);
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_RTS;
	/*
	 * Local ACK timeout 4.096 us * 2^18 = 1.07 s (Open MPI's openib used
	 * 2^20).  With 2^14 (67 ms) soft-RoCE under TCG retransmitted all
	 * the time (ACKs late, not lost), and 6.1's rxe then failed QPs with
	 * "local QP operation error" / "remote invalid request error" on
	 * multi-packet sends.  On a lossless fabric this only bounds the
	 * time to detect a dead peer (x retry_cnt 7).
	 */
	qa.timeout = 18;
	qa.retry_cnt = 7;
	qa.rnr_retry = 7;
	qa.sq_psn = v->psn;
	qa.max_rd_atomic = 1;
	if (ibv_modify_qp(v->qp, &qa, IBV_QP_STATE | IBV_QP_TIMEOUT |
			  IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
			  IBV_QP_MAX_QP_RD_ATOMIC))
		goto fail;
	v->credits = (int)peer->slots;
	return OPAL_SUCCESS;
fail:
	NINJA_ERROR("btl:ninja: verbs: cannot connect the queue pair to %u.%u: %s "
		    "(RoCE needs a GID: btl_ninja_verbs_gid_index)",
		    ep->endpoint_name.jobid, ep->endpoint_name.vpid,
		    strerror(errno));
	return OPAL_ERROR;
}

/* A peer's block: its ninja_verbs_info_t, exactly (false: not ours). */
static bool addr_decode(const ninja_rail_addr_t *a, ninja_verbs_info_t *info)
{
	if (a->rail != NINJA_RAIL_ID_VERBS || a->len != sizeof(*info))
		return false;
	memcpy(info, a->addr, sizeof(*info));
	return info->valid == 1;
}

/* Our address for ep in a block (rail 0 when there is none). */
static int verbs_addr_encode(mca_btl_ninja_endpoint_t *ep,
			     ninja_rail_addr_t *mine, bool reuse)
{
	ninja_verbs_info_t info;
	int rc;

	memset(mine, 0, sizeof(*mine));
	/* The QP made earlier (still in INIT), else a new one. */
	if (!reuse || !VEP(ep) || ep_info(ep, &info) != OPAL_SUCCESS)
		rc = ep_create(ep, &info);
	else
		rc = OPAL_SUCCESS;
	if (rc != OPAL_SUCCESS)
		return rc;
	mine->rail = NINJA_RAIL_ID_VERBS;
	mine->len = sizeof(info);
	memcpy(mine->addr, &info, sizeof(info));
	return OPAL_SUCCESS;
}

static int verbs_connect(mca_btl_ninja_endpoint_t *ep,
			 const ninja_rail_addr_t *peer)
{
	ninja_verbs_info_t info;

	if (!addr_decode(peer, &info))
		return OPAL_ERROR;
	return ep_connect(ep, &info);
}

static double verbs_warm(const ninja_rail_addr_t *peer)
{
	ninja_verbs_info_t info;

	return addr_decode(peer, &info) ? warm(&info) : -1;
}

/* Post one frame piece from a free send slot. */
static int post_piece(mca_btl_ninja_endpoint_t *ep, const ninja_frame_hdr_t *h,
		      const struct iovec *iov, int iovcnt, size_t off,
		      size_t len, int *slot_out)
{
	ninja_vep_t *v = VEP(ep);
	unsigned char *p;
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad;
	size_t done = 0;
	int slot, i;

	slot = v->tx_free[--v->ntx_free];
	p = v->tx_buf + (size_t)slot * v->slot_size;
	memcpy(p, h, sizeof(*h));
	/* Copy [off, off+len) of the payload iovecs. */
	for (i = 0; i < iovcnt && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len - done)
			l = len - done;
		memcpy(p + sizeof(*h) + done, (char *)iov[i].iov_base + off, l);
		done += l;
		off = 0;
	}
	sge.addr = (uintptr_t)p;
	sge.length = (uint32_t)(sizeof(*h) + len);
	sge.lkey = v->tx_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id(ep, false, slot);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = IBV_WR_SEND;
	wr.send_flags = IBV_SEND_SIGNALED;
	if (ibv_post_send(v->qp, &wr, &bad)) {
		v->tx_free[v->ntx_free++] = slot;
		return -errno;
	}
	v->credits--;
	if (slot_out)
		*slot_out = slot;
	return 0;
}

static uint16_t take_credits(ninja_vep_t *v)
{
	int n = v->credits_owed > CREDIT_MAX ? CREDIT_MAX : v->credits_owed;

	v->credits_owed -= n;
	return (uint16_t)(n << CREDIT_SHIFT);
}

static int verbs_send(mca_btl_ninja_endpoint_t *ep, mca_btl_ninja_frag_t *f)
{
	ninja_vep_t *v = VEP(ep);
	size_t total = f->hdr.len, room;

	if (!v || v->broken)
		return -EPIPE;
	room = (v->peer_slot_size < v->slot_size ? v->peer_slot_size :
		v->slot_size) - sizeof(ninja_frame_hdr_t);
	/* f->sent counts payload bytes posted (verbs). */
	do {
		ninja_frame_hdr_t h = f->hdr;
		size_t piece = total - f->sent;
		int r;

		h.ack = ep->endpoint_rx_seq;
		/* Keep one credit and one slot for markers and credits. */
		if (v->credits < 2 || v->ntx_free < 2)
			return 0;
		if (piece > room)
			piece = room;
		h.len = (uint32_t)piece;
		h.flags = (f->sent + piece < total ? FLAG_MORE : 0) |
			  (f->hdr.flags & NINJA_FLAG_ACK_REQ) | take_credits(v);
		r = post_piece(ep, &h, f->iov + 1, f->iov_cnt - 1, f->sent,
			       piece, NULL);
		if (r)
			return r;
		ep->endpoint_ack_sent = h.ack;	/* posted: the peer gets it */
		ep->endpoint_ack_owed = 0;
		ep->endpoint_ack_req = false;
		f->sent += piece;
	} while (f->sent < total);
	f->sent = 0;
	return 1;
}

static int send_ctl_flags(mca_btl_ninja_endpoint_t *ep, uint8_t type,
			  int *slot, uint16_t flags)
{
	ninja_vep_t *v = VEP(ep);
	ninja_frame_hdr_t h;
	int r;

	if (v->credits < 1 || v->ntx_free < 1)
		return 1;
	memset(&h, 0, sizeof(h));
	h.type = type;
	if (type == NINJA_FRAME_MARKER)
		h.epoch = mca_btl_ninja_component.epoch;
	else
		h.ack = ep->endpoint_rx_seq;
	h.flags = take_credits(v) | flags;
	r = post_piece(ep, &h, NULL, 0, 0, 0, slot);
	if (r) {
		v->credits_owed += CREDITS(h.flags);
	} else if (type != NINJA_FRAME_MARKER) {
		ep->endpoint_ack_sent = h.ack;
		ep->endpoint_ack_owed = 0;
		ep->endpoint_ack_req = false;
	}
	return r;
}

static int send_ctl(mca_btl_ninja_endpoint_t *ep, uint8_t type, int *slot)
{
	return send_ctl_flags(ep, type, slot, 0);
}

static int verbs_post_ack(mca_btl_ninja_endpoint_t *ep, uint16_t flags,
			  bool app)
{
	ninja_vep_t *v = VEP(ep);
	int r;

	if (!v || v->broken)
		return -EPIPE;
	/* Like DATA, leave the last credit and slot to markers and credits. */
	if (v->credits < 2 || v->ntx_free < 2)
		return 0;
	r = send_ctl_flags(ep, NINJA_FRAME_ACK, NULL, flags);
	(void)app;
	return r < 0 ? r : !r;
}

/* Post a frame, maybe failing it (fault injection). */
static int verbs_post(mca_btl_ninja_endpoint_t *ep, mca_btl_ninja_frag_t *f,
		      bool app)
{
	if (OPAL_UNLIKELY(mca_btl_ninja_component.fault_inject) &&
	    f->sent == 0 && mca_btl_ninja_fault_due(app)) {
		/* As a queue pair in error would: the connection goes. */
		mca_btl_ninja_fault_reset(ep, "verbs send");
		return -EIO;
	}
	return verbs_send(ep, f);
}

static int verbs_post_marker(mca_btl_ninja_endpoint_t *ep)
{
	ninja_vep_t *v = VEP(ep);
	int r;

	if (!v || v->broken) {
		ep->endpoint_marker_sent = true;
		if (v)
			v->marker_done = true;
		return -EPIPE;
	}
	if (v->marker_posted)
		return 0;
	r = send_ctl(ep, NINJA_FRAME_MARKER, &v->marker_slot);
	if (r == 0) {
		v->marker_posted = true;
		ep->endpoint_marker_sent = true;
	}
	return r < 0 ? r : 0;
}

static bool verbs_quiet(mca_btl_ninja_endpoint_t *ep)
{
	ninja_vep_t *v = VEP(ep);

	/*
	 * The marker's completion means the peer acknowledged everything
	 * posted before it (RC completes a send queue in order).  A CREDIT
	 * posted after it need not complete: the peer may already have
	 * destroyed its QP, and destroying ours cancels it.
	 */
	return !v || v->broken || v->marker_done;
}

/* A whole frame: the endpoint's one dispatch; a refusal breaks the QP
 * (reconnect, replay). */
static void deliver(mca_btl_ninja_endpoint_t *ep, const ninja_frame_hdr_t *h,
		    void *data, bool app)
{
	const char *why = NULL;
	int count = 0;

	if (mca_btl_ninja_endpoint_frame(ep, h, data, app, &count, &why) ==
	    NINJA_RX_FAIL && VEP(ep))
		VEP(ep)->broken = true;
}

/* A DATA piece: whole, or collected until its last piece. */
static void rx_piece(mca_btl_ninja_endpoint_t *ep, const ninja_frame_hdr_t *h,
		     unsigned char *payload, bool app)
{
	ninja_vep_t *v = VEP(ep);
	ninja_frame_hdr_t whole;

	if (!(h->flags & FLAG_MORE) && !v->reasm_len) {
		deliver(ep, h, payload, app);
		return;
	}
	if (v->reasm_len + h->len > v->reasm_cap) {
		size_t cap = v->reasm_len + h->len + v->slot_size;
		unsigned char *n = realloc(v->reasm, cap);

		if (!n) {
			NINJA_ERROR("btl:ninja: verbs: out of memory");
			return;
		}
		v->reasm = n;
		v->reasm_cap = cap;
	}
	memcpy(v->reasm + v->reasm_len, payload, h->len);
	v->reasm_len += h->len;
	v->reasm_tag = h->tag;
	if (h->flags & FLAG_MORE) {
		/* Every piece carries an ack. */
		mca_btl_ninja_endpoint_acked(ep, h->ack, app);
		return;
	}
	/* The last piece's header, for the whole frame. */
	whole = *h;
	whole.tag = v->reasm_tag;
	whole.len = (uint32_t)v->reasm_len;
	whole.flags &= (uint16_t)~FLAG_MORE;
	v->reasm_len = 0;
	deliver(ep, &whole, v->reasm, app);
}

static void handle_recv(mca_btl_ninja_endpoint_t *ep, int slot,
			uint32_t byte_len, bool app)
{
	ninja_vep_t *v = VEP(ep);
	unsigned char *p = v->rx_buf + (size_t)slot * v->slot_size;
	ninja_frame_hdr_t h;

	if ((uint32_t)slot >= v->nslots || byte_len < sizeof(h)) {
		NINJA_ERROR("btl:ninja: verbs: bad receive completion from %u.%u",
			    ep->endpoint_name.jobid, ep->endpoint_name.vpid);
		v->broken = true;
		return;
	}
	memcpy(&h, p, sizeof(h));
	if (sizeof(h) + (size_t)h.len > byte_len) {
		NINJA_ERROR("btl:ninja: verbs: truncated frame from %u.%u (%u of %u bytes)",
			    ep->endpoint_name.jobid, ep->endpoint_name.vpid,
			    byte_len, (unsigned int)(sizeof(h) + h.len));
		v->broken = true;
		return;
	}
	/* This rail's own framing: credits in every frame, CREDIT frames,
	 * pieces; the rest is the endpoint's dispatch. */
	v->credits += CREDITS(h.flags);
	switch (h.type) {
	case NINJA_FRAME_CREDIT:
		mca_btl_ninja_endpoint_acked(ep, h.ack, app);
		break;
	case NINJA_FRAME_DATA:
		rx_piece(ep, &h, p + sizeof(h), app);
		break;
	case NINJA_FRAME_ACK:
	case NINJA_FRAME_MARKER:
		deliver(ep, &h, p + sizeof(h), app);
		break;
	default:
		break;		/* nothing else travels on a QP */
	}
	/* The upcall may have closed the endpoint. */
	if (VEP(ep) != v)
		return;
	if (post_recv(ep, slot) == 0)
		v->credits_owed++;
	if (v->credits_owed >= (int)v->nslots / 2)
		(void)send_ctl(ep, NINJA_FRAME_CREDIT, NULL);
}

/* Debug (btl_ninja_verbose >= 30): every endpoint's verbs state, at most every 2 s. */
static void dump_state(bool app)
{
	static uint64_t last;
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t now = mca_btl_ninja_now_ns();
	int i;

	if (now - last < NINJA_DUMP_EVERY_NS)
		return;
	last = now;
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];
		ninja_vep_t *v = VEP(ep);

		if (!v)
			continue;
		NINJA_VERBOSE(30, "btl:ninja: verbs %s state=%d epoch=%u to %u.%u: credits=%d owed=%d "
			      "tx_free=%d marker posted=%d done=%d rcvd=%u sent=%d ready=%d "
			      "sq=%zu head_sent=%zu reasm=%zu broken=%d tx_seq=%u acked=%u "
			      "rt=%zu (head seq %d) rx_seq=%u ack_sent=%u ack_req=%d cq=%d",
			      app ? "app" : "drain", (int)c->state, c->epoch,
			      ep->endpoint_name.jobid, ep->endpoint_name.vpid,
			      v->credits, v->credits_owed, v->ntx_free,
			      v->marker_posted, v->marker_done, ep->endpoint_marker_rcvd,
			      ep->endpoint_marker_sent, ep->endpoint_rail_ready,
			      ep->endpoint_sq_len,
			      ep->endpoint_sq_head ? ep->endpoint_sq_head->sent : 0,
			      v->reasm_len, v->broken, ep->endpoint_tx_seq,
			      ep->endpoint_tx_acked, ep->endpoint_rt_len,
			      ep->endpoint_rt_head ? (int)ep->endpoint_rt_head->hdr.seq : -1,
			      ep->endpoint_rx_seq, ep->endpoint_ack_sent,
			      ep->endpoint_ack_req, c->cq_head != NULL);
	}
}

static int verbs_progress(bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	static bool polling;
	struct ibv_wc wc[16];
	int n, i, count = 0;

	/*
	 * Not re-entrant: an upcall made from a receive slot or from the
	 * reassembly buffer must not see that buffer reposted or reallocated
	 * by a nested poll.
	 */
	if (!V.cq || !V.nqp || polling)
		return 0;
	polling = true;
	if (mca_btl_ninja_component.verbose >= 30)
		dump_state(app);
	while ((n = ibv_poll_cq(V.cq, 16, wc)) > 0) {
		for (i = 0; i < n; i++) {
			int idx = (int)((wc[i].wr_id >> 20) & 0x7fffffff) & 0xfffffff;
			int slot = (int)(wc[i].wr_id & 0x7ffff);
			bool recv = (wc[i].wr_id >> 19) & 1;
			mca_btl_ninja_endpoint_t *ep;
			ninja_vep_t *v;

			if (idx >= c->neps)
				continue;
			ep = c->eps[idx];
			v = VEP(ep);
			if (!v || (wc[i].wr_id >> 48) != (v->gen & 0xffff))
				continue;	/* a destroyed QP's leftovers */
			if (wc[i].status != IBV_WC_SUCCESS) {
				if (!recv)
					v->tx_free[v->ntx_free++] = slot;
				if (v->marker_done && !recv) {
					/* A CREDIT after our marker to a peer that
					 * has finished its drain: expected. */
					NINJA_VERBOSE(20, "btl:ninja: verbs: late send to %u.%u: %s",
						      ep->endpoint_name.jobid,
						      ep->endpoint_name.vpid,
						      ibv_wc_status_str(wc[i].status));
					continue;
				}
				if (!v->broken)
					NINJA_ERROR("btl:ninja: verbs: %s to %u.%u failed: %s",
						    recv ? "receive" : "send",
						    ep->endpoint_name.jobid,
						    ep->endpoint_name.vpid,
						    ibv_wc_status_str(wc[i].status));
				v->broken = true;
				continue;
			}
			if (recv) {
				handle_recv(ep, slot, wc[i].byte_len, app);
				count++;
			} else {
				v->tx_free[v->ntx_free++] = slot;
				if (slot == v->marker_slot)
					v->marker_done = true;
			}
		}
		if (n < 16)
			break;
	}
	/*
	 * Owed credits whose CREDIT frame could not be posted in handle_recv
	 * (no free send slot or credit at that moment): retry now that
	 * completions may have freed some, else a peer that waits for them
	 * and sends nothing more would wait forever.
	 */
	for (i = 0; i < c->nconn; i++) {
		mca_btl_ninja_endpoint_t *ep = c->conn[i];
		ninja_vep_t *v = VEP(ep);

		if (v && !v->broken && !ep->endpoint_rail->stream &&
		    v->credits_owed >= (int)v->nslots / 2)
			(void)send_ctl(ep, NINJA_FRAME_CREDIT, NULL);
	}
	/*
	 * Credits or slots came back: move queued frames.  A queue pair that
	 * failed (completion error, device fatal) outside a drain: close the
	 * connection, reconnect on the best rail left and replay.
	 */
	if (app && c->state == NINJA_RUNNING) {
		for (i = c->nconn - 1; i >= 0; i--) {
			mca_btl_ninja_endpoint_t *ep;
			ninja_vep_t *v;

			if (i >= c->nconn)
				continue;
			ep = c->conn[i];
			v = VEP(ep);
			if (ep->endpoint_rail->stream || !v)
				continue;
			if (v->broken) {
				mca_btl_ninja_endpoint_failed(ep, -EIO,
							      "verbs queue pair failed");
				continue;
			}
			if (!ep->endpoint_rail_ready)
				continue;
			if (ep->endpoint_sq_head &&
			    mca_btl_ninja_endpoint_flush(ep, true, false) < 0)
				continue;
			mca_btl_ninja_endpoint_ack_maybe(ep, true);
		}
	}
	polling = false;
	return count;
}

const ninja_rail_ops_t mca_btl_ninja_rail_verbs = {
	.name = "verbs",
	.wire_id = NINJA_RAIL_ID_VERBS,
	.post_failed = "verbs send failed",
	.open = verbs_open,
	.close = verbs_close,
	.event_fd = verbs_event_fd,
	.event_fatal = verbs_event_fatal,
	.is_device = verbs_is_device,
	.addr_encode = verbs_addr_encode,
	.connect = verbs_connect,
	.ep_close = verbs_ep_close,
	.post = verbs_post,
	.post_ack = verbs_post_ack,
	.post_marker = verbs_post_marker,
	.quiet = verbs_quiet,
	.progress = verbs_progress,
	.warm = verbs_warm,
};
