/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_compat.h - everything that differs between the two Open MPI
 * series btl/ninja builds against, behind a few named helpers, so that no
 * other file tests a version:
 *
 *   Open MPI 4.1: MCA 2.1, BTL API 3.1 (Debian 12, Ubuntu 24.04, RHEL 9)
 *   Open MPI 5.0: MCA 2.1, BTL API 3.3 (Debian 13)
 *
 * configure refuses any other series.  What 5.0 changed that the component
 * uses (docs/design.md, "Open MPI 5.0"):
 *   - NINJA_BTL_BASE_VERSION: the BTL framework version the component
 *     declares (3.1.0 / 3.3.0); Open MPI loads only a matching one.
 *   - NINJA_DECLSPEC: OPAL_MODULE_DECLSPEC is gone in 5.0 (OPAL_DECLSPEC).
 *   - ninja_compat_upcall(): the receive callback's signature.  4.1 passes
 *     (btl, tag, mca_btl_base_descriptor_t *, cbdata); 5.0 passes (btl,
 *     const mca_btl_base_receive_descriptor_t *) carrying the endpoint,
 *     segments, tag and cbdata.
 * Everything else the component calls compiled unchanged against 5.0.7:
 * btl_register_error, the put/get/register_mem signatures, the module
 * flags, the descriptor flags it sets, PMIx (the client API, not opal_pmix).
 */
#ifndef NINJA_BTL_NINJA_COMPAT_H
#define NINJA_BTL_NINJA_COMPAT_H

#include "opal_config.h"

#include <stddef.h>
#include <string.h>

#include "opal/mca/btl/btl.h"

#if OPAL_MAJOR_VERSION == 4 && OPAL_MINOR_VERSION == 1
#define NINJA_OMPI_SERIES		41
#elif OPAL_MAJOR_VERSION == 5 && OPAL_MINOR_VERSION == 0
#define NINJA_OMPI_SERIES		50
#else
#error "btl/ninja supports Open MPI 4.1 and 5.0 only (configure checks this)"
#endif

#if NINJA_OMPI_SERIES == 41
#define NINJA_BTL_BASE_VERSION		MCA_BTL_BASE_VERSION_3_1_0
#define NINJA_DECLSPEC			OPAL_MODULE_DECLSPEC
#else
#define NINJA_BTL_BASE_VERSION		MCA_BTL_BASE_VERSION_3_3_0
#define NINJA_DECLSPEC			OPAL_DECLSPEC
#endif

/*
 * Deliver one received frame (len bytes at data, for tag) to the callback
 * the upper layer (ob1) registered for the tag, the way this Open MPI
 * calls it.  The descriptor lives on the stack: both series say it is
 * valid only during the callback, which copies what it keeps.
 */
static inline void
ninja_compat_upcall(const mca_btl_active_message_callback_t *reg,
		    struct mca_btl_base_module_t *btl,
		    struct mca_btl_base_endpoint_t *ep, uint8_t tag,
		    void *data, size_t len)
{
	mca_btl_base_segment_t seg;

	if (!reg->cbfunc)
		return;
	seg.seg_addr.pval = data;
	seg.seg_len = len;
#if NINJA_OMPI_SERIES == 41
	{
		mca_btl_base_descriptor_t des;

		(void)ep;
		memset(&des, 0, sizeof(des));
		des.des_segments = &seg;
		des.des_segment_count = 1;
		reg->cbfunc(btl, tag, &des, reg->cbdata);
	}
#else
	{
		const mca_btl_base_receive_descriptor_t des = {
			.endpoint = ep,
			.des_segments = &seg,
			.des_segment_count = 1,
			.tag = tag,
			.cbdata = reg->cbdata,
		};

		reg->cbfunc(btl, &des);
	}
#endif
}

#endif /* NINJA_BTL_NINJA_COMPAT_H */
