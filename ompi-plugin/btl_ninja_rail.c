/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_rail.c - the table of rails, the choice of this epoch's fast
 * rail from btl_ninja_rails (and the host's RESUME rails= hint), and the
 * checks on a peer's rail address block (btl_ninja_rail.h).
 */
#include "opal_config.h"

#include <stdio.h>
#include <string.h>

#include "btl_ninja.h"

/* Every rail, one line each; btl_ninja_rails orders them. */
static const ninja_rail_ops_t *const rail_table[] = {
	&mca_btl_ninja_rail_verbs,
	&mca_btl_ninja_rail_tcp,
};
#define NRAILS	(sizeof(rail_table) / sizeof(rail_table[0]))

#ifndef NINJA_HAVE_VERBS
static int verbs_unbuilt(char *desc, size_t desclen)
{
	snprintf(desc, desclen, "built without libibverbs");
	return OPAL_ERR_NOT_AVAILABLE;
}

const ninja_rail_ops_t mca_btl_ninja_rail_verbs = {
	.name = "verbs",
	.wire_id = NINJA_RAIL_ID_VERBS,
	.open = verbs_unbuilt,
};
#endif

const ninja_rail_ops_t *mca_btl_ninja_rail_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NRAILS; i++)
		if (strlen(rail_table[i]->name) == len &&
		    !memcmp(rail_table[i]->name, name, len))
			return rail_table[i];
	return NULL;
}

bool mca_btl_ninja_rails_known(const char *list)
{
	const char *p = list;

	if (!p || !*p)
		return false;
	for (;;) {
		size_t n = strcspn(p, ",");

		if (!n || !mca_btl_ninja_rail_find(p, n))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* Is name in the comma list? */
static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	while (p && *p) {
		if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return false;
}

bool mca_btl_ninja_rail_wanted(const char *rail, const char *hint)
{
	return list_has(mca_btl_ninja_component.rails, rail) &&
	       (!hint || !hint[0] || list_has(hint, rail));
}

const ninja_rail_ops_t *mca_btl_ninja_rail_first(const char *hint)
{
	const char *p = mca_btl_ninja_component.rails;

	while (p && *p) {
		size_t n = strcspn(p, ",");
		const ninja_rail_ops_t *r = mca_btl_ninja_rail_find(p, n);

		if (r && r != &mca_btl_ninja_rail_tcp &&
		    mca_btl_ninja_rail_wanted(r->name, hint))
			return r;
		if (r == &mca_btl_ninja_rail_tcp)
			return NULL;	/* tcp preferred to what follows */
		p += n;
		if (*p)
			p++;
	}
	return NULL;
}

/*
 * Choose the rails of this epoch (lock held; at init and at every
 * resume): the first fast rail of btl_ninja_rails that the host's hint
 * allows and whose device opens, TCP always (the bootstrap of every
 * connection).  A list without tcp is a demand: when its rail cannot be
 * had it is an error (help topic rail-unavailable), the rank stays on tcp
 * only because nothing else can carry its frames.  Returns false then.
 */
bool mca_btl_ninja_rails_select(const char *hint)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	const ninja_rail_ops_t *r;
	char desc[128];

	NINJA_ASSERT_LOCKED();
	c->rail = NULL;
	snprintf(c->my_addr.rail, sizeof(c->my_addr.rail), "tcp");
	r = mca_btl_ninja_rail_first(hint);
	if (!r) {
		size_t i;

		for (i = 0; i < NRAILS; i++)
			if (rail_table[i] != &mca_btl_ninja_rail_tcp)
				NINJA_VERBOSE(10, "btl:ninja: %s rail not wanted "
					      "(rails=%s hint=%s)",
					      rail_table[i]->name, c->rails,
					      hint && hint[0] ? hint : "-");
		return true;
	}
	if (r->open(desc, sizeof(desc)) == OPAL_SUCCESS) {
		c->rail = r;
		snprintf(c->my_addr.rail, sizeof(c->my_addr.rail), "%s", r->name);
		snprintf(c->rail_desc, sizeof(c->rail_desc), "%s", desc);
		NINJA_VERBOSE(10, "btl:ninja: %s rail on %s", r->name, desc);
		return true;
	}
	if (!list_has(c->rails, "tcp")) {
		mca_btl_ninja_help_node("rail-unavailable", c->rails, r->name,
					desc);
		return false;
	}
	NINJA_VERBOSE(10, "btl:ninja: %s rail not available: %s", r->name, desc);
	return true;
}

bool mca_btl_ninja_rail_addr_usable(const ninja_rail_addr_t *a)
{
	const ninja_rail_ops_t *r = mca_btl_ninja_component.rail;

	return r && a->rail != NINJA_RAIL_ID_NONE && a->rail == r->wire_id &&
	       a->len <= NINJA_RAIL_ADDR_MAX;
}

void mca_btl_ninja_rail_ep_close(mca_btl_ninja_endpoint_t *ep)
{
	const ninja_rail_ops_t *r = mca_btl_ninja_component.rail;

	/* Its state belongs to this epoch's fast rail (closed after every
	 * endpoint's state is gone: teardown, rail failure). */
	if (ep->endpoint_rail_state && r && r->ep_close)
		r->ep_close(ep);
	ep->endpoint_rail_state = NULL;
	ep->endpoint_rail = &mca_btl_ninja_rail_tcp;
	ep->endpoint_rail_ready = false;
}
