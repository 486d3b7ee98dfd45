/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_frag.c - send fragments: two free lists (eager-sized and
 * max-send-sized), grown on demand, guarded by the component lock.
 */
#include "opal_config.h"

#include <stdlib.h>
#include <string.h>

#include "btl_ninja.h"

static size_t pool_cap(int pool)
{
	mca_btl_base_module_t *m = &mca_btl_ninja_module.super;

	return pool == 0 ? m->btl_eager_limit : m->btl_max_send_size;
}

/* Caller holds the component lock. */
mca_btl_ninja_frag_t *mca_btl_ninja_frag_alloc(size_t payload)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_frag_t *f;
	int pool;
	size_t cap;

	NINJA_ASSERT_LOCKED();
	if (payload <= pool_cap(0))
		pool = 0;
	else if (payload <= pool_cap(1))
		pool = 1;
	else
		return NULL;
	f = c->pool_free[pool];
	if (f) {
		c->pool_free[pool] = f->next;
	} else {
		cap = pool_cap(pool);
		if (posix_memalign((void **)&f, 64, sizeof(*f) + cap))
			return NULL;
		memset(f, 0, sizeof(*f));
		OBJ_CONSTRUCT(&f->base, mca_btl_base_descriptor_t);
		f->pool = (uint8_t)pool;
		f->cap = cap;
		f->data = (unsigned char *)(f + 1);
		c->pool_allocated++;
	}
	f->next = NULL;
	f->endpoint = NULL;
	f->queued = false;
	f->cb_done = false;
	f->in_cq = false;
	f->cq_release = false;
	f->absorbed = false;
	f->fault_at = NULL;
	f->cq_next = NULL;
	f->sent = 0;
	f->base.des_cbfunc = NULL;
	f->base.des_cbdata = NULL;
	f->base.des_context = NULL;
	f->base.des_flags = 0;
	return f;
}

/* Caller holds the component lock. */
void mca_btl_ninja_frag_return(mca_btl_ninja_frag_t *f)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	NINJA_ASSERT_LOCKED();
	f->next = c->pool_free[f->pool];
	c->pool_free[f->pool] = f;
}

void mca_btl_ninja_frag_pools_fini(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int pool;

	for (pool = 0; pool < 2; pool++) {
		while (c->pool_free[pool]) {
			mca_btl_ninja_frag_t *f = c->pool_free[pool];

			c->pool_free[pool] = f->next;
			OBJ_DESTRUCT(&f->base);
			free(f);
		}
	}
}

/*
 * A fragment owning a copy of header + payload, framed for tag (lock
 * held).  payload NULL: the caller fills data + header_size itself.
 */
mca_btl_ninja_frag_t *mca_btl_ninja_frag_copy(const void *header,
					      size_t header_size,
					      const void *payload,
					      size_t payload_size, uint8_t tag)
{
	size_t len = header_size + payload_size;
	mca_btl_ninja_frag_t *f = mca_btl_ninja_frag_alloc(len);

	if (!f)
		return NULL;
	memcpy(f->data, header, header_size);
	if (payload && payload_size)
		memcpy(f->data + header_size, payload, payload_size);
	f->segments[0].seg_addr.pval = f->data;
	f->segments[0].seg_len = len;
	f->base.des_segments = f->segments;
	f->base.des_segment_count = 1;
	f->base.des_flags = MCA_BTL_DES_FLAGS_BTL_OWNERSHIP;
	f->iov[0].iov_base = &f->hdr;
	f->iov[0].iov_len = sizeof(f->hdr);
	f->iov[1].iov_base = f->data;
	f->iov[1].iov_len = len;
	f->iov_cnt = 2;
	f->hdr.type = NINJA_FRAME_DATA;
	f->hdr.tag = tag;
	f->hdr.flags = 0;
	f->hdr.len = (uint32_t)len;
	f->size = sizeof(f->hdr) + len;
	return f;
}
