/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja.c - btl/ninja module: add/del procs, descriptor allocation,
 * send and sendi, put and get emulation, and the function table.
 */
#include "opal_config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "opal/datatype/opal_convertor.h"
#include "opal/util/show_help.h"

#include "btl_ninja.h"

static int ninja_register_cb(struct mca_btl_base_module_t *btl,
			     mca_btl_base_tag_t tag,
			     mca_btl_base_module_recv_cb_fn_t cbfunc,
			     void *cbdata)
{
	/* ob1 fills mca_btl_base_active_message_trigger[] itself. */
	return OPAL_SUCCESS;
}

static int ninja_register_error(struct mca_btl_base_module_t *btl,
				mca_btl_base_module_error_cb_fn_t cbfunc)
{
	mca_btl_ninja_component.error_cb = cbfunc;
	return OPAL_SUCCESS;
}

/*
 * The first refused RDMA frame, told once per process (application
 * thread: opal_show_help is not for the control thread, whose refusals
 * wait for the next one here, for the report of a peer given up on, or
 * for finalize).  Written to stderr (mca_btl_ninja_help): the job may end
 * right after (the strikes).
 */
static void rdma_warn(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (c->rdma_warned || !c->n_rdma_violations)
		return;
	c->rdma_warned = true;
	mca_btl_ninja_help("rdma-violation", opal_process_info.nodename,
			   OPAL_PROC_MY_NAME.vpid, c->rdma_first,
			   c->rdma_strikes);
}

/*
 * Application thread, lock held: peers the control thread gave up on
 * (btl_ninja_replay_timeout) are reported to ob1 as a fatal error.
 */
void mca_btl_ninja_report_lost(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	NINJA_ASSERT_LOCKED();
	c->peer_lost = 0;
	rdma_warn();	/* before a refusing peer's strikes end the job */
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		if (!ep->endpoint_lost)
			continue;
		if (c->error_cb)
			c->error_cb(&mca_btl_ninja_module.super,
				    MCA_BTL_ERROR_FLAGS_FATAL, ep->endpoint_proc,
				    ep->endpoint_lost_why ?
				    (char *)ep->endpoint_lost_why :	/* ob1 only prints it */
				    "btl/ninja: peer unreachable (replay timeout)");
	}
}

/* Replay statistics, at finalize (verbose 10, or with fault injection). */
void mca_btl_ninja_replay_stats(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint64_t fail = 0, rep = 0, dups = 0;
	int i;

	for (i = 0; i < c->neps; i++) {
		fail += c->eps[i]->endpoint_failures;
		rep += c->eps[i]->endpoint_replayed;
		dups += c->eps[i]->endpoint_dups;
	}
	if (c->fault_inject > 0 || c->verbose >= 10)
		NINJA_ERROR("btl:ninja: rank %u replay: faults_injected=%llu "
			    "connections_lost=%llu frames_replayed=%llu "
			    "duplicates_dropped=%llu", OPAL_PROC_MY_NAME.vpid,
			    (unsigned long long)c->n_faults,
			    (unsigned long long)fail, (unsigned long long)rep,
			    (unsigned long long)dups);
	if (c->fault_inject > 0 || c->fault_rdma > 0 || c->fault_get > 0 ||
	    c->n_rdma_violations || c->verbose >= 10)
		NINJA_ERROR("btl:ninja: rank %u rdma: puts=%llu gets=%llu "
			    "gets_served=%llu registrations=%llu "
			    "deregistrations=%llu refused=%llu violations=%llu "
			    "faults_injected=%llu", OPAL_PROC_MY_NAME.vpid,
			    (unsigned long long)c->n_puts,
			    (unsigned long long)c->n_gets,
			    (unsigned long long)c->n_gets_served,
			    (unsigned long long)c->reg.n_added,
			    (unsigned long long)c->reg.n_removed,
			    (unsigned long long)c->reg.n_full,
			    (unsigned long long)c->n_rdma_violations,
			    (unsigned long long)c->n_rdma_faults);
	rdma_warn();	/* a refusal the control thread saw */
}

int mca_btl_ninja_add_procs(struct mca_btl_base_module_t *btl, size_t nprocs,
			    struct opal_proc_t **procs,
			    struct mca_btl_base_endpoint_t **peers,
			    opal_bitmap_t *reachable)
{
	opal_proc_t *me = opal_proc_local_get();
	size_t i;
	int rc = OPAL_SUCCESS;

	for (i = 0; i < nprocs; i++) {
		mca_btl_ninja_endpoint_t *ep, probe;
		bool known;

		if (procs[i] == me)
			continue;
		mca_btl_ninja_lock();
		known = mca_btl_ninja_endpoint_lookup(procs[i]->proc_name) != NULL;
		mca_btl_ninja_unlock();
		/*
		 * A peer that published no address has no btl/ninja.  The PMIx
		 * get may wait on the peer's daemon: not under the component
		 * lock, which the control thread needs meanwhile.
		 */
		if (!known) {
			memset(&probe, 0, sizeof(probe));
			probe.endpoint_name = procs[i]->proc_name;
			if (mca_btl_ninja_lookup_addr(&probe, 0, 0) != OPAL_SUCCESS)
				continue;
		}
		mca_btl_ninja_lock();
		/* The control thread may have made it since (a peer's HELLO). */
		ep = mca_btl_ninja_endpoint_lookup(procs[i]->proc_name);
		if (!ep) {
			ep = mca_btl_ninja_endpoint_create(procs[i]->proc_name);
			if (!ep) {
				mca_btl_ninja_unlock();
				rc = OPAL_ERR_OUT_OF_RESOURCE;
				break;
			}
		}
		if (!known && !ep->endpoint_addr_valid) {
			ep->endpoint_addr = probe.endpoint_addr;
			ep->endpoint_addr_valid = true;
		}
		ep->endpoint_proc = procs[i];
		peers[i] = ep;
		if (reachable)
			opal_bitmap_set_bit(reachable, (int)i);
		mca_btl_ninja_unlock();
	}
	return rc;
}

int mca_btl_ninja_del_procs(struct mca_btl_base_module_t *btl, size_t nprocs,
			    struct opal_proc_t **procs,
			    struct mca_btl_base_endpoint_t **peers)
{
	/* Endpoints live until finalize (the control thread may hold them). */
	return OPAL_SUCCESS;
}

int mca_btl_ninja_finalize(struct mca_btl_base_module_t *btl)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int i;

	mca_btl_ninja_thread_stop();
	mca_btl_ninja_lock();
	c->finalized = 1;	/* a pending PMIx_Get_nb's callback ignores us */
	mca_btl_ninja_replay_stats();
	for (i = 0; i < c->neps; i++) {
		mca_btl_ninja_endpoint_t *ep = c->eps[i];

		mca_btl_ninja_endpoint_close(ep);
		mca_btl_ninja_endpoint_release_all(ep);
		mca_btl_ninja_get_release_all(ep);
		while (ep->endpoint_sq_head) {
			mca_btl_ninja_frag_t *f = ep->endpoint_sq_head;

			ep->endpoint_sq_head = f->next;
			if (f->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP)
				mca_btl_ninja_frag_return(f);
		}
		free(ep->endpoint_rx_buf);
		free(ep);
	}
	while (c->dq_head) {
		mca_btl_ninja_rxframe_t *r = c->dq_head;

		c->dq_head = r->next;
		free(r);
	}
	free(c->eps);
	free(c->conn);
	mca_btl_ninja_endpoint_index_fini();
	mca_btl_ninja_reg_fini();
	c->eps = NULL;
	c->conn = NULL;
	c->neps = c->eps_cap = c->nconn = 0;
	mca_btl_ninja_frag_pools_fini();
	mca_btl_ninja_pmix_fini();
	mca_btl_ninja_tcp_listen_close();
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	c->listen_fd = c->epfd = c->wake_fd = -1;
	mca_btl_ninja_unlock();
	return OPAL_SUCCESS;
}

static mca_btl_base_descriptor_t *ninja_alloc(struct mca_btl_base_module_t *btl,
					      struct mca_btl_base_endpoint_t *ep,
					      uint8_t order, size_t size,
					      uint32_t flags)
{
	mca_btl_ninja_frag_t *frag;

	if (size > btl->btl_max_send_size)
		return NULL;
	mca_btl_ninja_lock();
	frag = mca_btl_ninja_frag_alloc(size);
	mca_btl_ninja_unlock();
	if (!frag)
		return NULL;
	frag->segments[0].seg_addr.pval = frag->data;
	frag->segments[0].seg_len = size;
	frag->base.des_segments = frag->segments;
	frag->base.des_segment_count = 1;
	frag->base.des_flags = flags;
	frag->base.order = MCA_BTL_NO_ORDER;
	frag->endpoint = ep;
	return &frag->base;
}

static int ninja_free(struct mca_btl_base_module_t *btl,
		      mca_btl_base_descriptor_t *des)
{
	mca_btl_ninja_lock();
	mca_btl_ninja_frag_return((mca_btl_ninja_frag_t *)des);
	mca_btl_ninja_unlock();
	return OPAL_SUCCESS;
}

/*
 * Contiguous user data is sent in place (segment 1 points at the user's
 * buffer, written with one sendmsg together with the header); anything
 * else is packed after the reserved bytes.
 */
static mca_btl_base_descriptor_t *
ninja_prepare_src(struct mca_btl_base_module_t *btl,
		  struct mca_btl_base_endpoint_t *ep,
		  struct opal_convertor_t *convertor, uint8_t order,
		  size_t reserve, size_t *size, uint32_t flags)
{
	mca_btl_ninja_frag_t *frag;
	struct iovec iov;
	uint32_t iov_count = 1;
	size_t max_data = *size;
	bool inplace = !opal_convertor_need_buffers(convertor);

	if (max_data + reserve > btl->btl_max_send_size)
		max_data = btl->btl_max_send_size - reserve;
	mca_btl_ninja_lock();
	frag = mca_btl_ninja_frag_alloc(inplace ? reserve : reserve + max_data);
	mca_btl_ninja_unlock();
	if (!frag)
		return NULL;
	frag->segments[0].seg_addr.pval = frag->data;
	frag->segments[0].seg_len = reserve;
	frag->base.des_segments = frag->segments;
	frag->base.des_segment_count = 1;
	if (inplace) {
		iov.iov_len = max_data;
		iov.iov_base = NULL;
		if (opal_convertor_pack(convertor, &iov, &iov_count,
					&max_data) < 0)
			goto fail;
		frag->segments[1].seg_addr.pval = iov.iov_base;
		frag->segments[1].seg_len = max_data;
		frag->base.des_segment_count = 2;
	} else {
		iov.iov_len = max_data;
		iov.iov_base = (IOVBASE_TYPE *)(frag->data + reserve);
		if (opal_convertor_pack(convertor, &iov, &iov_count,
					&max_data) < 0)
			goto fail;
		frag->segments[0].seg_len = reserve + max_data;
	}
	*size = max_data;
	frag->base.des_flags = flags;
	frag->base.order = MCA_BTL_NO_ORDER;
	frag->endpoint = ep;
	return &frag->base;
fail:
	mca_btl_ninja_lock();
	mca_btl_ninja_frag_return(frag);
	mca_btl_ninja_unlock();
	return NULL;
}

static int ninja_send(struct mca_btl_base_module_t *btl,
		      struct mca_btl_base_endpoint_t *ep,
		      mca_btl_base_descriptor_t *des, mca_btl_base_tag_t tag)
{
	mca_btl_ninja_frag_t *frag = (mca_btl_ninja_frag_t *)des;
	size_t i, len = 0;
	int rc;

	frag->endpoint = ep;
	frag->iov_cnt = 1;
	frag->iov[0].iov_base = &frag->hdr;
	frag->iov[0].iov_len = sizeof(frag->hdr);
	for (i = 0; i < des->des_segment_count; i++) {
		frag->iov[i + 1].iov_base = des->des_segments[i].seg_addr.pval;
		frag->iov[i + 1].iov_len = des->des_segments[i].seg_len;
		len += des->des_segments[i].seg_len;
		frag->iov_cnt++;
	}
	frag->hdr.type = NINJA_FRAME_DATA;
	frag->hdr.tag = tag;
	frag->hdr.flags = 0;
	frag->hdr.len = (uint32_t)len;
	frag->size = sizeof(frag->hdr) + len;

	mca_btl_ninja_lock();
	rc = mca_btl_ninja_endpoint_send(ep, frag, true);
	mca_btl_ninja_unlock();
	return rc;
}

/*
 * Immediate send.  When the frame cannot go out at once (not connected,
 * queue not empty, socket full, migration in progress) the data is copied
 * into a fragment that we queue ourselves: from ob1's point of view the
 * send is done, and it never needs a descriptor back.
 */
static int ninja_sendi(struct mca_btl_base_module_t *btl,
		       struct mca_btl_base_endpoint_t *ep,
		       struct opal_convertor_t *convertor, void *header,
		       size_t header_size, size_t payload_size, uint8_t order,
		       uint32_t flags, mca_btl_base_tag_t tag,
		       mca_btl_base_descriptor_t **descriptor)
{
	mca_btl_ninja_frag_t *frag;
	size_t max_data = payload_size;
	uint32_t iov_count = 1;
	struct iovec iov;
	int rc;

	if (descriptor)
		*descriptor = NULL;
	if (header_size + payload_size > btl->btl_eager_limit)
		return OPAL_ERR_RESOURCE_BUSY;
	mca_btl_ninja_lock();
	if (!payload_size || !opal_convertor_need_buffers(convertor)) {
		/* Contiguous: write header and user data in place. */
		void *payload = NULL;

		if (payload_size) {
			iov.iov_base = NULL;
			iov.iov_len = payload_size;
			if (opal_convertor_pack(convertor, &iov, &iov_count,
						&max_data) < 0) {
				mca_btl_ninja_unlock();
				return OPAL_ERROR;
			}
			payload = iov.iov_base;
		}
		rc = mca_btl_ninja_endpoint_sendi(ep, header, header_size,
						  payload, max_data, tag);
		if (rc != OPAL_ERR_RESOURCE_BUSY) {
			mca_btl_ninja_unlock();
			return rc;
		}
		/* Not connected, busy or migrating: queue a copy. */
		frag = mca_btl_ninja_frag_copy(header, header_size, payload,
					       max_data, tag);
	} else {
		frag = mca_btl_ninja_frag_copy(header, header_size, NULL,
					       payload_size, tag);
		if (frag) {
			iov.iov_base = (IOVBASE_TYPE *)(frag->data + header_size);
			iov.iov_len = payload_size;
			if (opal_convertor_pack(convertor, &iov, &iov_count,
						&max_data) < 0 ||
			    max_data != payload_size) {
				mca_btl_ninja_frag_return(frag);
				mca_btl_ninja_unlock();
				return OPAL_ERROR;
			}
		}
	}
	if (!frag) {
		mca_btl_ninja_unlock();
		return OPAL_ERR_RESOURCE_BUSY;
	}
	frag->endpoint = ep;
	rc = mca_btl_ninja_endpoint_send(ep, frag, true);
	mca_btl_ninja_unlock();
	return rc < 0 ? rc : OPAL_SUCCESS;
}

/*
 * Memory registration (ob1 calls it for the regions a peer may put into
 * or get from: the receive buffer pieces of the put pipeline, the send
 * buffer of RGET, and the reader's own destination).  Nothing is pinned:
 * an entry in the component's table (btl_ninja_reg.c) with the range, the
 * access ob1 asked for and the peer it is for, found by a random key.
 * The handle ob1 sends to the peer is that key.  Cheap on purpose: ob1
 * registers and deregisters for every rendezvous message and every
 * pipeline fragment (no registration cache in front of us).
 */
/* Local use only (ob1's own source of a put): no peer may name it, no
 * entry; key 0 is never in the table. */
static struct mca_btl_base_registration_handle_t ninja_local_handle;

static struct mca_btl_base_registration_handle_t *
ninja_register_mem(struct mca_btl_base_module_t *btl,
		   struct mca_btl_base_endpoint_t *ep, void *base, size_t size,
		   uint32_t flags)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	uint32_t access = 0;
	ninja_reg_t *r;

	if (flags & MCA_BTL_REG_FLAG_REMOTE_READ)
		access |= NINJA_REG_READ;
	if (flags & (MCA_BTL_REG_FLAG_REMOTE_WRITE |
		     MCA_BTL_REG_FLAG_REMOTE_ATOMIC))
		access |= NINJA_REG_WRITE;
	if (!access)
		return mca_btl_ninja_component.reg_max > 0 ?
		       &ninja_local_handle : NULL;
	mca_btl_ninja_lock();
	if (!c->reg_ready && !c->finalized && c->reg_max > 0 &&
	    ninja_reg_init(&c->reg, (size_t)c->reg_max) == 0)
		c->reg_ready = true;
	r = c->reg_ready ? ninja_reg_add(&c->reg, (uint64_t)(uintptr_t)base,
					 size, access, ep) : NULL;
	mca_btl_ninja_unlock();
	/* NULL: ob1 uses another protocol for this message. */
	return (struct mca_btl_base_registration_handle_t *)r;
}

static int ninja_deregister_mem(struct mca_btl_base_module_t *btl,
				struct mca_btl_base_registration_handle_t *h)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	ninja_reg_t *r = (ninja_reg_t *)h;
	mca_btl_ninja_endpoint_t *ep;

	if (h == &ninja_local_handle)
		return OPAL_SUCCESS;
	mca_btl_ninja_lock();
	if (c->reg_ready && r) {
		/*
		 * Never while a put streams in (ob1 deregisters after the FIN
		 * that follows it on the same connection); should it be, the
		 * rest of that put is dropped, not written.
		 */
		ep = r->busy;
		if (ep && ep->endpoint_rx_put_reg == r && ep->endpoint_rx_put_left) {
			ep->endpoint_rx_put_skip = true;
			ep->endpoint_rx_put_reg = NULL;
		}
		ninja_reg_remove(&c->reg, r);
	}
	mca_btl_ninja_unlock();
	return OPAL_SUCCESS;
}

void mca_btl_ninja_reg_fini(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	if (c->reg_ready)
		ninja_reg_fini(&c->reg);
	c->reg_ready = false;
}

/*
 * btl_ninja_fault_rdma: the Nth put (and the Nth get) this process asks
 * for goes out once with its destination (source) outside the peer's
 * registration; the frame retained for the replay is the true one, so
 * the job goes on after the peer refuses it and closes the connection.
 */
static void rdma_fault(mca_btl_ninja_frag_t *f, uint64_t *field,
		       uint64_t bad, const char *what)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	c->n_rdma_faults++;
	NINJA_ERROR("btl:ninja: rank %u: fault injected: %s outside the "
		    "peer's registration (btl_ninja_fault_rdma)",
		    OPAL_PROC_MY_NAME.vpid, what);
	f->fault_at = field;
	f->fault_val = *field;
	*field = bad;
}

void mca_btl_ninja_rdma_fault_sent(mca_btl_ninja_frag_t *f)
{
	*f->fault_at = f->fault_val;
	f->fault_at = NULL;
}

/* A put frame is on the wire: that is its completion for ob1. */
static void ninja_put_complete(struct mca_btl_base_module_t *btl,
			       struct mca_btl_base_endpoint_t *ep,
			       struct mca_btl_base_descriptor_t *des,
			       int status)
{
	mca_btl_ninja_frag_t *frag = (mca_btl_ninja_frag_t *)des;

	frag->put_cbfunc(btl, ep, frag->put_local, NULL, frag->put_cbcontext,
			 frag->put_cbdata, status);
}

/*
 * Frame a put or a get's response (f->put already filled): our header,
 * the destination header, then len bytes at data, written in place.
 */
static void rdma_frame(mca_btl_ninja_frag_t *f, uint8_t tag, void *data,
		       size_t len)
{
	f->base.order = MCA_BTL_NO_ORDER;
	f->iov[0].iov_base = &f->hdr;
	f->iov[0].iov_len = sizeof(f->hdr);
	f->iov[1].iov_base = &f->put;
	f->iov[1].iov_len = sizeof(f->put);
	f->iov[2].iov_base = data;
	f->iov[2].iov_len = len;
	f->iov_cnt = 3;
	f->hdr.type = NINJA_FRAME_DATA;
	f->hdr.tag = tag;
	f->hdr.flags = 0;
	f->hdr.len = (uint32_t)(sizeof(f->put) + len);
	f->size = sizeof(f->hdr) + f->hdr.len;
}

/*
 * Put emulation: one frame of header, destination (address and the key
 * of the receiver's registration, ob1's remote handle) and the data,
 * written from the user's buffer in place; the receiver checks the range
 * against its registration and reads the data straight into the
 * destination (the TCP rail's stream reader).  ob1 then needs no receive
 * buffer and no copy for contiguous messages above the eager limit: it
 * asks for puts of btl_ninja_rdma_pipeline_frag_size bytes and sends FIN
 * after each completes.  Ordered with every other frame of the connection,
 * so the drain, deferral and the verbs rail handle it like any frame.
 */
static int ninja_put(struct mca_btl_base_module_t *btl,
		     struct mca_btl_base_endpoint_t *ep, void *local_address,
		     uint64_t remote_address,
		     struct mca_btl_base_registration_handle_t *local_handle,
		     struct mca_btl_base_registration_handle_t *remote_handle,
		     size_t size, int flags, int order,
		     mca_btl_base_rdma_completion_fn_t cbfunc, void *cbcontext,
		     void *cbdata)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_frag_t *frag;
	int rc;

	if (size > NINJA_PUT_MAX || !remote_handle)
		return OPAL_ERR_BAD_PARAM;
	mca_btl_ninja_lock();
	frag = mca_btl_ninja_frag_alloc(0);
	if (!frag) {
		mca_btl_ninja_unlock();
		return OPAL_ERR_OUT_OF_RESOURCE;
	}
	frag->put.addr = remote_address;
	frag->put.key = remote_handle->key;
	c->n_puts++;
	if (OPAL_UNLIKELY(c->fault_rdma) &&
	    ++c->fault_rdma_puts == c->fault_rdma)
		rdma_fault(frag, &frag->put.addr, 0x10, "put to address 0x10");
	frag->put_local = local_address;
	frag->put_cbfunc = cbfunc;
	frag->put_cbcontext = cbcontext;
	frag->put_cbdata = cbdata;
	frag->segments[0].seg_addr.pval = local_address;
	frag->segments[0].seg_len = size;
	frag->base.des_segments = frag->segments;
	frag->base.des_segment_count = 1;
	frag->base.des_flags = MCA_BTL_DES_FLAGS_BTL_OWNERSHIP |
			       MCA_BTL_DES_SEND_ALWAYS_CALLBACK;
	frag->base.des_cbfunc = ninja_put_complete;
	rdma_frame(frag, NINJA_TAG_PUT, local_address, size);
	rc = mca_btl_ninja_endpoint_send(ep, frag, true);
	mca_btl_ninja_unlock();
	return rc < 0 ? rc : OPAL_SUCCESS;
}

/*
 * Get emulation: ob1's RGET protocol, where the receiver reads the
 * sender's buffer.  A small request frame (NINJA_TAG_GET: the key of the
 * peer's registration, ob1's remote handle, and the range) asks the peer
 * to answer with a frame laid out like a put into local_address
 * (NINJA_TAG_GETRESP, written from its buffer in place); the get
 * completes when that response is whole here, and ob1 then sends its FIN.
 *
 * Why get and not only put: a put written from the user's buffer may
 * complete towards ob1 only once the peer acknowledges it (a replay after
 * a lost connection reads that buffer again), so every put's FIN waited
 * one more round trip, behind the next put's data (bench/README.md,
 * 2026-11-29 16:09).  A response needs no completion at its sender: the
 * buffer stays valid until ob1 there gets the FIN, and the FIN's
 * cumulative ack, read before it is delivered, releases the response.
 */
static int ninja_get(struct mca_btl_base_module_t *btl,
		     struct mca_btl_base_endpoint_t *ep, void *local_address,
		     uint64_t remote_address,
		     struct mca_btl_base_registration_handle_t *local_handle,
		     struct mca_btl_base_registration_handle_t *remote_handle,
		     size_t size, int flags, int order,
		     mca_btl_base_rdma_completion_fn_t cbfunc, void *cbcontext,
		     void *cbdata)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_frag_t *frag;
	mca_btl_ninja_get_t *g;
	ninja_get_req_t req;

	if (size > NINJA_PUT_MAX || !remote_handle)
		return OPAL_ERR_BAD_PARAM;
	g = malloc(sizeof(*g));
	if (!g)
		return OPAL_ERR_OUT_OF_RESOURCE;
	mca_btl_ninja_lock();
	req.key = remote_handle->key;
	req.src = remote_address;
	req.dst = (uint64_t)(uintptr_t)local_address;
	req.len = size;
	req.id = ++c->get_id;
	frag = mca_btl_ninja_frag_copy(&req, sizeof(req), NULL, 0,
				       NINJA_TAG_GET);
	if (!frag) {
		mca_btl_ninja_unlock();
		free(g);
		return OPAL_ERR_OUT_OF_RESOURCE;
	}
	if (OPAL_UNLIKELY(c->fault_rdma) &&
	    ++c->fault_rdma_gets == c->fault_rdma)
		rdma_fault(frag, (uint64_t *)(void *)(frag->data +
			   offsetof(ninja_get_req_t, src)), 0x400000,
			   "get from address 0x400000");
	c->n_gets++;
	g->id = req.id;
	g->local = local_address;
	g->len = size;
	g->done = false;
	g->local_handle = local_handle;
	g->cbfunc = cbfunc;
	g->cbcontext = cbcontext;
	g->cbdata = cbdata;
	g->next = ep->endpoint_gets;
	ep->endpoint_gets = g;
	(void)mca_btl_ninja_endpoint_send(ep, frag, true);
	mca_btl_ninja_unlock();
	return OPAL_SUCCESS;
}

/* The link to the pending get with this id (*link NULL: none). */
static mca_btl_ninja_get_t **get_link(mca_btl_ninja_endpoint_t *ep,
				      uint64_t id)
{
	mca_btl_ninja_get_t **pp = &ep->endpoint_gets;

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

/* The pending get a response is for: same id, same destination and
 * length, not completed yet; NULL: none. */
static mca_btl_ninja_get_t *get_match(mca_btl_ninja_endpoint_t *ep,
				      const ninja_put_hdr_t *ph, size_t dlen)
{
	mca_btl_ninja_get_t *g = *get_link(ep, ph->id);

	if (!g || g->done || (uint64_t)(uintptr_t)g->local != ph->addr ||
	    g->len != dlen)
		return NULL;
	return g;
}

/*
 * A peer's put or get broke the rule (lock held): count it, say so (once
 * per process through opal_show_help, each time at verbose 10).  The
 * caller closes the connection without accepting the frame; the replay
 * then sends it again.  A peer that keeps doing it (btl_ninja_rdma_strikes
 * times) is a job member breaking the protocol after it connected: it is
 * reported to ob1 as unreachable, which ends the job.
 */
static void rdma_violation(mca_btl_ninja_endpoint_t *ep, const char *what,
			   uint64_t key, uint64_t addr, uint64_t len, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	c->n_rdma_violations++;
	ep->endpoint_rdma_violations++;
	if (c->n_rdma_violations == 1)
		snprintf(c->rdma_first, sizeof(c->rdma_first),
			 "%s from %u.%u (address 0x%llx, %llu bytes)", what,
			 ep->endpoint_name.jobid, ep->endpoint_name.vpid,
			 (unsigned long long)addr, (unsigned long long)len);
	NINJA_VERBOSE(10, "btl:ninja: rank %u: refused %s from %u.%u (key "
		      "%016llx, address 0x%llx, %llu bytes): closing the "
		      "connection", OPAL_PROC_MY_NAME.vpid, what,
		      ep->endpoint_name.jobid, ep->endpoint_name.vpid,
		      (unsigned long long)key, (unsigned long long)addr,
		      (unsigned long long)len);
	if (app)
		rdma_warn();
	if (c->rdma_strikes > 0 &&
	    ep->endpoint_rdma_violations >= (uint64_t)c->rdma_strikes &&
	    !ep->endpoint_lost)
		mca_btl_ninja_endpoint_protocol_error(ep, "btl/ninja: protocol "
			"error (RDMA frames outside what this rank registered, "
			"btl_ninja_rdma_strikes times)");
}

bool mca_btl_ninja_rdma_admit(mca_btl_ninja_endpoint_t *ep,
			      const ninja_frame_hdr_t *hdr,
			      const void *payload, size_t have, bool app)
{
	ninja_reg_table_t *t = &mca_btl_ninja_component.reg;
	ninja_put_hdr_t ph;
	ninja_get_req_t req;
	size_t dlen;

	NINJA_ASSERT_LOCKED();
	switch (hdr->tag) {
	case NINJA_TAG_PUT:
	case NINJA_TAG_GETRESP:
		if (hdr->len < sizeof(ph) || have < sizeof(ph)) {
			rdma_violation(ep, "a short put", 0, 0, hdr->len, app);
			return false;
		}
		memcpy(&ph, payload, sizeof(ph));
		dlen = hdr->len - sizeof(ph);
		if (hdr->tag == NINJA_TAG_GETRESP) {
			if (get_match(ep, &ph, dlen))
				return true;
			rdma_violation(ep, "a response to no get asked", ph.id,
				       ph.addr, dlen, app);
			return false;
		}
		if (ninja_reg_check(t, ph.key, ph.addr, dlen, NINJA_REG_WRITE,
				    ep))
			return true;
		rdma_violation(ep, "a put outside this rank's registrations",
			       ph.key, ph.addr, dlen, app);
		return false;
	case NINJA_TAG_GET:
		if (hdr->len != sizeof(req) || have < sizeof(req)) {
			rdma_violation(ep, "a malformed get request", 0, 0,
				       hdr->len, app);
			return false;
		}
		memcpy(&req, payload, sizeof(req));
		if (req.id && req.len <= NINJA_PUT_MAX &&
		    ninja_reg_check(t, req.key, req.src, req.len,
				    NINJA_REG_READ, ep))
			return true;
		rdma_violation(ep, "a get outside this rank's registrations",
			       req.key, req.src, req.len, app);
		return false;
	case NINJA_TAG_GETDONE:		/* ours, never on the wire */
		rdma_violation(ep, "an internal tag", 0, 0, hdr->len, app);
		return false;
	default:
		return true;
	}
}

/*
 * The peer asks for our memory (application thread, lock held): answer
 * with a response frame written from it in place.  Retained until
 * acknowledged like any DATA frame, but nothing waits for that: the
 * peer's FIN carries the ack.  The request was admitted when it was read
 * (mca_btl_ninja_rdma_admit); checked again here, where the memory is
 * read: a request that no longer fits a registration is refused.
 */
void mca_btl_ninja_get_serve(mca_btl_ninja_endpoint_t *ep, const void *data,
			     size_t len)
{
	mca_btl_ninja_frag_t *f;
	ninja_frame_hdr_t hdr;
	ninja_get_req_t req;

	NINJA_ASSERT_LOCKED();
	hdr.tag = NINJA_TAG_GET;
	hdr.len = (uint32_t)len;
	if (!mca_btl_ninja_rdma_admit(ep, &hdr, data, len, true)) {
		mca_btl_ninja_endpoint_failed(ep, -EPROTO, "refused a get");
		return;
	}
	memcpy(&req, data, sizeof(req));
	f = mca_btl_ninja_frag_alloc(0);
	if (!f) {
		mca_btl_ninja_endpoint_protocol_error(ep, "btl/ninja: out of "
			"memory answering a get");
		return;
	}
	mca_btl_ninja_component.n_gets_served++;
	f->put.addr = req.dst;
	f->put.id = req.id;
	if (OPAL_UNLIKELY(mca_btl_ninja_component.fault_get) &&
	    ++mca_btl_ninja_component.fault_get_count ==
	    mca_btl_ninja_component.fault_get) {
		NINJA_ERROR("btl:ninja: rank %u: fault injected: get %llu of "
			    "%u.%u answered with a wrong id (btl_ninja_fault_get)",
			    OPAL_PROC_MY_NAME.vpid, (unsigned long long)req.id,
			    ep->endpoint_name.jobid, ep->endpoint_name.vpid);
		f->put.id = ~req.id;
	}
	f->base.des_segments = f->segments;
	f->base.des_segment_count = 0;	/* in place: not owned */
	f->base.des_flags = MCA_BTL_DES_FLAGS_BTL_OWNERSHIP;
	rdma_frame(f, NINJA_TAG_GETRESP, (void *)(uintptr_t)req.src,
		   (size_t)req.len);
	(void)mca_btl_ninja_endpoint_send(ep, f, true);
}

/* The pending get an admitted response is for (NULL: none, refused). */
mca_btl_ninja_get_t *mca_btl_ninja_get_find(mca_btl_ninja_endpoint_t *ep,
					    const ninja_put_hdr_t *ph,
					    size_t dlen)
{
	mca_btl_ninja_get_t *g = get_match(ep, ph, dlen);

	if (!g)
		rdma_violation(ep, "a response to no get asked", ph->id,
			       ph->addr, dlen, false);
	return g;
}

/*
 * A get's response is whole.  On the application's thread ob1 hears it
 * now (and sends its FIN); the control thread leaves a NINJA_TAG_GETDONE
 * record for it instead.
 */
void mca_btl_ninja_get_complete(mca_btl_ninja_endpoint_t *ep,
				mca_btl_ninja_get_t *g, bool app)
{
	if (!app) {
		g->done = true;
		if (mca_btl_ninja_endpoint_defer(ep, NINJA_TAG_GETDONE, &g->id,
						 sizeof(g->id)) != OPAL_SUCCESS)
			mca_btl_ninja_endpoint_protocol_error(ep, "btl/ninja: "
				"out of memory completing a get");
		return;
	}
	*get_link(ep, g->id) = g->next;
	g->cbfunc(&mca_btl_ninja_module.super, ep, g->local, g->local_handle,
		  g->cbcontext, g->cbdata, OPAL_SUCCESS);
	free(g);
}

/* A deferred completion (NINJA_TAG_GETDONE) on the application's thread. */
void mca_btl_ninja_get_done(mca_btl_ninja_endpoint_t *ep, const void *data,
			    size_t len)
{
	mca_btl_ninja_get_t *g;
	uint64_t id;

	if (len != sizeof(id))
		return;
	memcpy(&id, data, sizeof(id));
	g = *get_link(ep, id);
	if (g && g->done)
		mca_btl_ninja_get_complete(ep, g, true);
}

/* Gets never answered (finalize). */
void mca_btl_ninja_get_release_all(mca_btl_ninja_endpoint_t *ep)
{
	mca_btl_ninja_get_t *g;

	while ((g = ep->endpoint_gets)) {
		ep->endpoint_gets = g->next;
		free(g);
	}
	ep->endpoint_rx_get = NULL;
}

/* The module: every function it names is defined above (no forward
 * declarations); btl_ninja.h declares it for the rest of the component. */
mca_btl_ninja_module_t mca_btl_ninja_module = {
	.super = {
		.btl_component = &mca_btl_ninja_component.super,
		.btl_add_procs = mca_btl_ninja_add_procs,
		.btl_del_procs = mca_btl_ninja_del_procs,
		.btl_register = ninja_register_cb,
		.btl_register_error = ninja_register_error,
		.btl_finalize = mca_btl_ninja_finalize,
		.btl_alloc = ninja_alloc,
		.btl_free = ninja_free,
		.btl_prepare_src = ninja_prepare_src,
		.btl_send = ninja_send,
		.btl_sendi = ninja_sendi,
		.btl_put = ninja_put,
		.btl_get = ninja_get,
		.btl_register_mem = ninja_register_mem,
		.btl_deregister_mem = ninja_deregister_mem,
	},
};
