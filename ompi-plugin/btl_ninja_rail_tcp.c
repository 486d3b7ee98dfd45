/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_rail_tcp.c - the TCP rail's discovery and addressing: which
 * interfaces to use (re-evaluated at every resume, since a migrated VM may
 * find different ones), the listening socket, and the run-time publication
 * and lookup of addresses through PMIx.
 *
 * Addresses are republished after every drain epoch with the epoch inside
 * the value.  A connecting rank re-reads a peer's value with the PMIx
 * "refresh" flag until the value's epoch has caught up with its own: no
 * global fence is needed, so a slow rank only delays the ranks that talk
 * to it (see docs/design.md).
 */
#include "opal_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "opal/mca/pmix/pmix.h"

#include "btl_ninja.h"

#define NINJA_ADDR_KEY "btl.ninja.addr"

/*
 * One key per epoch ("btl.ninja.addr" at MPI_Init, "btl.ninja.addr.<e>"
 * after the drain of epoch e).  A key that was never read cannot be stale
 * in any PMIx server's cache: across two daemons, re-reading one key with
 * the refresh flag returned the value cached at the first read (seen with
 * Open MPI 4.1.4 / PMIx 4), a fresh key is fetched from the owner's server.
 */
static void addr_key(char *key, size_t len, uint32_t epoch)
{
	if (epoch == 0)
		snprintf(key, len, "%s", NINJA_ADDR_KEY);
	else
		snprintf(key, len, "%s.%u", NINJA_ADDR_KEY, epoch);
}

/* Does ifname/ip match one comma-separated item of list? */
static bool list_match(const char *list, const char *ifname, uint32_t ip)
{
	char buf[256], *save = NULL, *tok;

	if (!list || !list[0])
		return false;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *slash = strchr(tok, '/');

		while (*tok == ' ')
			tok++;
		if (slash) {
			struct in_addr net;
			int bits = atoi(slash + 1);
			uint32_t mask;

			*slash = '\0';
			if (inet_pton(AF_INET, tok, &net) != 1 || bits < 0 ||
			    bits > 32)
				continue;
			mask = bits ? htonl(~0u << (32 - bits)) : 0;
			if ((ip & mask) == (net.s_addr & mask))
				return true;
		} else if (strcmp(tok, ifname) == 0) {
			return true;
		}
	}
	return false;
}

int mca_btl_ninja_tcp_discover(mca_btl_ninja_addr_t *addr, char *desc,
			       size_t desclen)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct ifaddrs *ifs, *i;
	size_t off = 0;

	addr->naddr = 0;
	snprintf(addr->rail, sizeof(addr->rail), "tcp");
	desc[0] = '\0';
	if (getifaddrs(&ifs) != 0)
		return OPAL_ERROR;
	for (i = ifs; i; i = i->ifa_next) {
		uint32_t ip;
		char ipstr[INET_ADDRSTRLEN];

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		if (!(i->ifa_flags & IFF_UP))
			continue;
		ip = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
		if (c->if_include[0]) {
			if (!list_match(c->if_include, i->ifa_name, ip))
				continue;
		} else if (list_match(c->if_exclude, i->ifa_name, ip)) {
			continue;
		}
		if (addr->naddr == NINJA_MAX_ADDRS)
			break;
		addr->ip[addr->naddr++] = ip;
		inet_ntop(AF_INET, &ip, ipstr, sizeof(ipstr));
		if (off < desclen)
			off += (size_t)snprintf(desc + off, desclen - off,
						"%s%s=%s", off ? "," : "",
						i->ifa_name, ipstr);
	}
	freeifaddrs(ifs);
	if (!addr->naddr)
		snprintf(desc, desclen, "none matched include '%s' exclude '%s'",
			 c->if_include, c->if_exclude);
	return OPAL_SUCCESS;
}

void mca_btl_ninja_tcp_tune(int fd)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->sndbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &c->sndbuf,
				 sizeof(c->sndbuf));
	if (c->rcvbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf,
				 sizeof(c->rcvbuf));
}

/*
 * One listening socket on the wildcard address for the life of the job:
 * it survives interfaces coming and going, and the port it got stays
 * valid, so only the IP list changes from one epoch to the next.
 */
int mca_btl_ninja_tcp_listen(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1, port;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return OPAL_ERROR;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	for (port = c->port_min; ; port++) {
		sin.sin_port = htons((uint16_t)port);
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			break;
		if (port == 0 || port >= c->port_min + 1000 || port >= 65535) {
			close(fd);
			return OPAL_ERROR;
		}
	}
	if (listen(fd, 128) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
		close(fd);
		return OPAL_ERROR;
	}
	c->listen_fd = fd;
	c->my_addr.port = sin.sin_port;
	return OPAL_SUCCESS;
}

int mca_btl_ninja_publish(uint32_t epoch, bool runtime)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	opal_byte_object_t bo;
	opal_value_t kv;
	char key[64];
	int rc;

	c->my_addr.epoch = epoch;
	bo.bytes = (uint8_t *)&c->my_addr;
	bo.size = sizeof(c->my_addr);
	addr_key(key, sizeof(key), epoch);
	OBJ_CONSTRUCT(&kv, opal_value_t);
	kv.key = key;
	rc = opal_value_load(&kv, &bo, OPAL_BYTE_OBJECT);
	if (rc == OPAL_SUCCESS)
		rc = opal_pmix.put(OPAL_PMIX_GLOBAL, &kv);
	kv.key = NULL;
	OBJ_DESTRUCT(&kv);
	if (rc == OPAL_SUCCESS && runtime)
		rc = opal_pmix.commit();
	if (rc != OPAL_SUCCESS)
		opal_output(0, "btl:ninja: publishing the address for epoch %u failed (%d)",
			    epoch, rc);
	return rc;
}

/*
 * Read a peer's address published for epoch (0: at MPI_Init).  At run time
 * the read waits at most wait_s seconds for the peer to publish it.
 */
int mca_btl_ninja_lookup_addr(mca_btl_ninja_endpoint_t *ep, uint32_t epoch,
			      int wait_s)
{
	opal_value_t *val = NULL, *info;
	opal_list_t ilist;
	char key[64];
	int rc;

	addr_key(key, sizeof(key), epoch);
	OBJ_CONSTRUCT(&ilist, opal_list_t);
	if (epoch > 0) {
		info = OBJ_NEW(opal_value_t);
		info->key = strdup(OPAL_PMIX_TIMEOUT);
		info->type = OPAL_INT;
		info->data.integer = wait_s;
		opal_list_append(&ilist, &info->super);
	}
	rc = opal_pmix.get(&ep->endpoint_name, key,
			   epoch > 0 ? &ilist : NULL, &val);
	OPAL_LIST_DESTRUCT(&ilist);
	if (rc != OPAL_SUCCESS || !val)
		return rc != OPAL_SUCCESS ? rc : OPAL_ERR_NOT_FOUND;
	if (val->type != OPAL_BYTE_OBJECT ||
	    val->data.bo.size != sizeof(mca_btl_ninja_addr_t)) {
		OBJ_RELEASE(val);
		return OPAL_ERR_BAD_PARAM;
	}
	memcpy(&ep->endpoint_addr, val->data.bo.bytes,
	       sizeof(mca_btl_ninja_addr_t));
	ep->endpoint_addr_valid = true;
	OBJ_RELEASE(val);
	return OPAL_SUCCESS;
}
