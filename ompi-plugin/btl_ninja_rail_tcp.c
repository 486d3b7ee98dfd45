/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_rail_tcp.c - the TCP rail's discovery and addressing: which
 * interfaces to use (re-evaluated at every resume, since a migrated VM may
 * find different ones), the listening sockets (one per selected address),
 * and the run-time publication and lookup of addresses - and, once, of the
 * connection secret - through PMIx.
 *
 * Addresses are republished after every drain epoch with the epoch inside
 * the value.  The PMIx client API is called directly, not through
 * opal_pmix: the control thread uses it while the application's thread may
 * be inside Open MPI, and opal_pmix's locks are no-ops in a
 * MPI_THREAD_SINGLE process (two threads in it hang), whereas the PMIx
 * client library is thread safe by design.  A connecting rank re-reads a peer's value with the PMIx
 * "refresh" flag until the value's epoch has caught up with its own: no
 * global fence is needed, so a slow rank only delays the ranks that talk
 * to it (see docs/design.md).
 */
#include "opal_config.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pmix.h>

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
	/*
	 * A path that goes silent (no reset: a dead link, a black hole)
	 * would otherwise wait for the kernel's retransmissions to give up,
	 * about 15 minutes; this fails the connection once sent data stays
	 * unacknowledged this long, and the replay takes over (reconnect,
	 * or report the peer gone after btl_ninja_replay_timeout).
	 */
	if (c->tcp_user_timeout > 0) {
		unsigned int ms = (unsigned int)c->tcp_user_timeout;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms,
				 sizeof(ms));
	}
	if (c->sndbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &c->sndbuf,
				 sizeof(c->sndbuf));
	if (c->rcvbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf,
				 sizeof(c->rcvbuf));
}

/*
 * Listening sockets: one per address the rail selected (btl_ninja_if_include
 * / if_exclude), all on the same port, so nothing listens on an interface
 * the user excluded.  c->listen_fd is an epoll set of them, which the
 * control thread polls as one descriptor.  The port stays the same for the
 * life of the job; the set follows the addresses at every publication
 * (mca_btl_ninja_publish, after a resume's rediscovery).
 */
static struct {
	int fd[NINJA_MAX_ADDRS];
	uint32_t ip[NINJA_MAX_ADDRS];
	int n;
	uint16_t port;		/* network order, 0 before the first bind */
	int next;		/* round robin of accept */
} L;

/* A listening socket on ip:port (network order; port 0: any), or -1. */
static int listen_on(uint32_t ip, uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = ip;
	sin.sin_port = port;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(fd, 128) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
		close(fd);
		return -1;
	}
	if (bound)
		*bound = sin.sin_port;
	return fd;
}

static int listen_add(uint32_t ip, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };

	ev.data.fd = fd;
	if (epoll_ctl(mca_btl_ninja_component.listen_fd, EPOLL_CTL_ADD, fd,
		      &ev) != 0) {
		close(fd);
		return -1;
	}
	L.fd[L.n] = fd;
	L.ip[L.n++] = ip;
	return 0;
}

static void listen_drop(int i)
{
	(void)epoll_ctl(mca_btl_ninja_component.listen_fd, EPOLL_CTL_DEL,
			L.fd[i], NULL);
	close(L.fd[i]);
	L.n--;
	L.fd[i] = L.fd[L.n];
	L.ip[i] = L.ip[L.n];
}

void mca_btl_ninja_tcp_listen_close(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;

	while (L.n > 0)
		listen_drop(L.n - 1);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	c->listen_fd = -1;
}

/* Every address of my_addr on one port: the first that all of them take. */
int mca_btl_ninja_tcp_listen(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_addr_t *a = &c->my_addr;
	int tries, k;

	c->listen_fd = epoll_create1(EPOLL_CLOEXEC);
	if (c->listen_fd < 0)
		return OPAL_ERROR;
	for (tries = 0; tries <= 1000; tries++) {
		uint16_t port = 0;
		int port_h = c->port_min > 0 ? c->port_min + tries : 0;

		if (port_h > 65535)
			break;
		for (k = 0; k < a->naddr; k++) {
			int fd = listen_on(a->ip[k], k ? port : htons((uint16_t)port_h),
					   k ? NULL : &port);

			if (fd < 0 || listen_add(a->ip[k], fd) != 0)
				break;
		}
		if (k == a->naddr && a->naddr > 0) {
			L.port = port;
			a->port = port;
			return OPAL_SUCCESS;
		}
		while (L.n > 0)
			listen_drop(L.n - 1);
	}
	mca_btl_ninja_tcp_listen_close();
	return OPAL_ERROR;
}

/*
 * Control thread: the listening set follows my_addr (rediscovered at a
 * resume): sockets of addresses gone are closed, new addresses get one
 * on our port; an address that cannot have it is not published.
 */
static void listen_sync(void)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	mca_btl_ninja_addr_t *a = &c->my_addr;
	int i, k, n;

	if (c->listen_fd < 0)
		return;
	for (i = L.n - 1; i >= 0; i--) {
		for (k = 0; k < a->naddr && a->ip[k] != L.ip[i]; k++)
			;
		if (k == a->naddr)
			listen_drop(i);
	}
	for (k = 0, n = 0; k < a->naddr; k++) {
		int fd;

		for (i = 0; i < L.n && L.ip[i] != a->ip[k]; i++)
			;
		if (i == L.n && ((fd = listen_on(a->ip[k], L.port, NULL)) < 0 ||
				 listen_add(a->ip[k], fd) != 0)) {
			char ipstr[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &a->ip[k], ipstr, sizeof(ipstr));
			NINJA_ERROR("btl:ninja: cannot listen on %s port %u (%s): "
				    "address not used", ipstr, ntohs(L.port),
				    strerror(errno));
			continue;
		}
		a->ip[n++] = a->ip[k];
	}
	a->naddr = (uint16_t)n;
}

/* Control thread: one connection from any listening socket, or -1. */
int mca_btl_ninja_tcp_accept(void)
{
	int i;

	for (i = 0; i < L.n; i++) {
		int k = (L.next + i) % L.n;
		int fd = accept4(L.fd[k], NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			L.next = (k + 1) % L.n;
			return fd;
		}
	}
	return -1;
}

static pmix_proc_t my_pmix;
static bool pmix_up;
/* Peers with a PMIx read in flight (read_begin, below). */
static pthread_mutex_t reading_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reading_cond = PTHREAD_COND_INITIALIZER;
static uint32_t *reading;		/* vpids with a read in flight */
static size_t nreading, reading_cap;

/*
 * A PMIx_Get_nb may still be waiting (for a peer that never publishes:
 * it finalized) when the job ends; its callback then runs on PMIx's thread
 * after Open MPI has closed this component and unloaded the library.  So
 * the library is made undeletable (RTLD_NODELETE: dlclose leaves it
 * mapped) once a background lookup can exist, and the callback does
 * nothing after finalize (mca_btl_ninja_component.finalized).
 */
static void pin_library(void)
{
	static bool pinned;
	Dl_info info;

	if (pinned)
		return;
	pinned = true;
	if (dladdr((void *)&mca_btl_ninja_component, &info) && info.dli_fname &&
	    !dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE))
		NINJA_ERROR("btl:ninja: cannot pin %s: %s", info.dli_fname,
			    dlerror());
}

int mca_btl_ninja_pmix_init(void)
{
	/* Open MPI initialized PMIx already: this only takes a reference
	 * and tells us our namespace. */
	if (!pmix_up && PMIx_Init(&my_pmix, NULL, 0) == PMIX_SUCCESS)
		pmix_up = true;
	if (pmix_up)
		pin_library();
	return pmix_up ? OPAL_SUCCESS : OPAL_ERR_NOT_AVAILABLE;
}

void mca_btl_ninja_pmix_fini(void)
{
	if (pmix_up)
		(void)PMIx_Finalize(NULL, 0);
	pmix_up = false;
	pthread_mutex_lock(&reading_lock);
	free(reading);
	reading = NULL;
	nreading = reading_cap = 0;
	pthread_mutex_unlock(&reading_lock);
}

int mca_btl_ninja_publish(uint32_t epoch, bool runtime)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	pmix_value_t val;
	char key[64];
	pmix_status_t rc;

	if (!pmix_up)
		return OPAL_ERR_NOT_AVAILABLE;
	listen_sync();
	c->my_addr.epoch = epoch;
	addr_key(key, sizeof(key), epoch);
	memset(&val, 0, sizeof(val));
	val.type = PMIX_BYTE_OBJECT;
	val.data.bo.bytes = (char *)&c->my_addr;
	val.data.bo.size = sizeof(c->my_addr);
	rc = PMIx_Put(PMIX_GLOBAL, key, &val);
	if (rc == PMIX_SUCCESS && runtime)
		rc = PMIx_Commit();
	if (rc != PMIX_SUCCESS) {
		NINJA_ERROR("btl:ninja: publishing the address for epoch %u failed: %s",
			    epoch, PMIx_Error_string(rc));
		return OPAL_ERROR;
	}
	return OPAL_SUCCESS;
}

/*
 * The connection secret (btl_ninja_auth.c): published once, at init, for
 * the modex; only processes of the job can read it back.
 */
#define NINJA_KEY_KEY "btl.ninja.key"

int mca_btl_ninja_publish_key(const void *key, size_t len)
{
	pmix_value_t val;
	pmix_status_t rc;

	if (!pmix_up)
		return OPAL_ERR_NOT_AVAILABLE;
	memset(&val, 0, sizeof(val));
	val.type = PMIX_BYTE_OBJECT;
	val.data.bo.bytes = (char *)key;
	val.data.bo.size = len;
	rc = PMIx_Put(PMIX_GLOBAL, NINJA_KEY_KEY, &val);
	if (rc != PMIX_SUCCESS) {
		NINJA_ERROR("btl:ninja: publishing the connection secret failed: %s",
			    PMIx_Error_string(rc));
		return OPAL_ERROR;
	}
	return OPAL_SUCCESS;
}

/* Number of processes in our job (PMIX_JOB_SIZE), 0 if unknown. */
uint32_t mca_btl_ninja_job_size(void)
{
	pmix_value_t *val = NULL;
	pmix_proc_t job;
	uint32_t n = 0;

	if (!pmix_up)
		return 0;
	memset(&job, 0, sizeof(job));
	memcpy(job.nspace, my_pmix.nspace, sizeof(job.nspace));
	job.rank = PMIX_RANK_WILDCARD;
	if (PMIx_Get(&job, PMIX_JOB_SIZE, NULL, 0, &val) != PMIX_SUCCESS || !val)
		return 0;
	if (val->type == PMIX_UINT32)
		n = val->data.uint32;
	PMIX_VALUE_RELEASE(val);
	return n;
}

/* Peers are ranks of our own job: same namespace, rank = vpid. */
static void peer_proc(pmix_proc_t *peer, uint32_t vpid)
{
	memset(peer, 0, sizeof(*peer));
	memcpy(peer->nspace, my_pmix.nspace, sizeof(peer->nspace));
	peer->rank = vpid;
}

/*
 * At most one PMIx read of a peer's data in flight in this process.  The
 * PMIx client (4.2 with Open MPI 4.1, 5.0 with Open MPI 5.0) sends one
 * request per peer and hangs every further read of that peer onto it,
 * whatever its key (the answer is expected to carry all the peer's data):
 * a read of the secret then waits for an address lookup that itself waits
 * in the servers (PMIX_TIMEOUT) for an epoch the peer has not published
 * yet, and fails when that one fails.  PMIx 5.0's client also reads the
 * first request's state after it completed (and freed) a non-blocking
 * one, so a read merged into a PMIx_Get_nb could be lost: its caller (the
 * control thread, reading a secret) blocked for good in PMIx_Get and the
 * peers could not connect to its rank (tests/mpi nodes8-* on 8 fake nodes
 * with Open MPI 5.0).  So a read of a peer with one in flight waits for it
 * on the application's thread; the control thread never waits: its read
 * is put off (not found now), and its callers try again later.  (The
 * slots: reading_lock and what follows it, above.)
 */
static bool reading_find(uint32_t vpid, size_t *at)
{
	size_t i;

	for (i = 0; i < nreading; i++) {
		if (reading[i] == vpid) {
			if (at)
				*at = i;
			return true;
		}
	}
	return false;
}

/* Take vpid's read slot; false: not now (control thread, or no memory). */
static bool read_begin(uint32_t vpid)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	bool ctl = c->thread_started && pthread_equal(c->thread, pthread_self());
	bool ok = false;

	pthread_mutex_lock(&reading_lock);
	while (reading_find(vpid, NULL) && !ctl)
		pthread_cond_wait(&reading_cond, &reading_lock);
	if (!reading_find(vpid, NULL)) {
		if (nreading == reading_cap) {
			size_t cap = reading_cap ? 2 * reading_cap : 16;
			uint32_t *r = realloc(reading, cap * sizeof(*r));

			if (r) {
				reading = r;
				reading_cap = cap;
			}
		}
		if (nreading < reading_cap) {
			reading[nreading++] = vpid;
			ok = true;
		}
	}
	pthread_mutex_unlock(&reading_lock);
	return ok;
}

/* Give vpid's read slot back (any thread, PMIx's too). */
static void read_end(uint32_t vpid)
{
	size_t i;

	pthread_mutex_lock(&reading_lock);
	if (reading_find(vpid, &i))
		reading[i] = reading[--nreading];
	pthread_cond_broadcast(&reading_cond);
	pthread_mutex_unlock(&reading_lock);
}

/* A peer's connection secret (blocking read; control thread). */
int mca_btl_ninja_lookup_key(uint32_t vpid, void *key, size_t len)
{
	pmix_value_t *val = NULL;
	pmix_status_t st;
	pmix_proc_t peer;
	int rc = OPAL_SUCCESS;

	if (!pmix_up)
		return OPAL_ERR_NOT_AVAILABLE;
	if (!read_begin(vpid))
		return OPAL_ERR_NOT_FOUND;	/* a read in flight: later */
	peer_proc(&peer, vpid);
	st = PMIx_Get(&peer, NINJA_KEY_KEY, NULL, 0, &val);
	read_end(vpid);
	if (st != PMIX_SUCCESS || !val)
		return OPAL_ERR_NOT_FOUND;
	if (val->type != PMIX_BYTE_OBJECT || val->data.bo.size != len)
		rc = OPAL_ERR_BAD_PARAM;
	else
		memcpy(key, val->data.bo.bytes, len);
	PMIX_VALUE_RELEASE(val);
	return rc;
}

/* A background read of a peer's address (mca_btl_ninja_lookup_addr_nb). */
typedef struct lookup_req {
	struct lookup_req *next;
	opal_process_name_t name;
	uint32_t epoch;
	pmix_info_t info[1];
	int wait_s;
	bool ok;
	mca_btl_ninja_addr_t addr;
} lookup_req_t;

/*
 * Answers waiting for the control thread.  PMIx's thread only takes this
 * lock, held for a pointer swap, never the component lock: the
 * application's thread holds that one while ob1 runs in a receive
 * callback, and ob1 may call PMIx_Get from there (ompi_proc_for_name for
 * a peer it has not met yet), which waits for PMIx's thread.  Taking the
 * component lock here hung ranks after a few dozen drain cycles.
 */
static pthread_mutex_t lookup_lock = PTHREAD_MUTEX_INITIALIZER;
static lookup_req_t *lookup_answers;

static void lookup_free(lookup_req_t *r)
{
	PMIX_INFO_DESTRUCT(&r->info[0]);
	free(r);
}

/* PMIx's progress thread: the answer, queued for the control thread. */
static void lookup_cb(pmix_status_t st, pmix_value_t *kv, void *cbdata)
{
	lookup_req_t *r = cbdata;

	read_end(r->name.vpid);
	if (mca_btl_ninja_component.finalized) {
		/* The job is over (Open MPI may be gone too): just free. */
		lookup_free(r);
		return;
	}
	r->ok = st == PMIX_SUCCESS && kv && kv->type == PMIX_BYTE_OBJECT &&
		kv->data.bo.size == sizeof(mca_btl_ninja_addr_t);
	if (r->ok)
		memcpy(&r->addr, kv->data.bo.bytes, sizeof(r->addr));
	NINJA_VERBOSE(20, "btl:ninja: address of %u.%u for epoch %u: %s",
		      r->name.jobid, r->name.vpid, r->epoch,
		      r->ok ? "found" : PMIx_Error_string(st));
	pthread_mutex_lock(&lookup_lock);
	r->next = lookup_answers;
	lookup_answers = r;
	pthread_mutex_unlock(&lookup_lock);
	mca_btl_ninja_wake();
}

/*
 * Control thread, without the lock: hand the answers to their endpoints
 * (found again by name); the next connection attempt adopts the address,
 * at once if the endpoint is idle.
 */
void mca_btl_ninja_lookup_collect(void)
{
	lookup_req_t *r, *next;

	pthread_mutex_lock(&lookup_lock);
	r = lookup_answers;
	lookup_answers = NULL;
	pthread_mutex_unlock(&lookup_lock);
	if (!r)
		return;
	mca_btl_ninja_lock();
	for (; r; r = next) {
		mca_btl_ninja_endpoint_t *ep = mca_btl_ninja_endpoint_lookup(r->name);

		next = r->next;
		if (ep && ep->endpoint_lookup_busy &&
		    ep->endpoint_lookup_epoch == r->epoch) {
			ep->endpoint_lookup_busy = false;
			if (r->ok) {
				ep->endpoint_lookup_addr = r->addr;
				ep->endpoint_lookup_done = true;
				if (ep->endpoint_state == NINJA_EP_CLOSED)
					ep->endpoint_retry_at = 0;	/* use it now */
			}
		}
		lookup_free(r);
	}
	mca_btl_ninja_unlock();
}

/*
 * Ask PMIx for a peer's address of epoch without waiting (at most wait_s
 * seconds for the peer to publish it): the control thread keeps accepting
 * and connecting meanwhile.  Not under the component lock (the callback
 * takes it).  OPAL_SUCCESS: the callback will come.
 */
int mca_btl_ninja_lookup_addr_nb(opal_process_name_t name, uint32_t epoch,
				 int wait_s)
{
	lookup_req_t *r;
	pmix_proc_t peer;
	char key[64];
	pmix_status_t rc;

	if (!pmix_up)
		return OPAL_ERR_NOT_AVAILABLE;
	/* The secret first: a read of it must not meet this lookup. */
	if (!mca_btl_ninja_auth_have_key(name.vpid) || !read_begin(name.vpid))
		return OPAL_ERR_NOT_AVAILABLE;
	r = calloc(1, sizeof(*r));
	if (!r) {
		read_end(name.vpid);
		return OPAL_ERR_OUT_OF_RESOURCE;
	}
	r->name = name;
	r->epoch = epoch;
	r->wait_s = wait_s;
	PMIX_INFO_LOAD(&r->info[0], PMIX_TIMEOUT, &r->wait_s, PMIX_INT);
	addr_key(key, sizeof(key), epoch);
	peer_proc(&peer, name.vpid);
	rc = PMIx_Get_nb(&peer, key, r->info, 1, lookup_cb, r);
	if (rc != PMIX_SUCCESS) {
		lookup_free(r);
		read_end(name.vpid);
		return OPAL_ERROR;
	}
	return OPAL_SUCCESS;
}

/*
 * Read a peer's address published for epoch (0: at MPI_Init).  At run time
 * the read waits at most wait_s seconds for the peer to publish it.
 */
int mca_btl_ninja_lookup_addr(mca_btl_ninja_endpoint_t *ep, uint32_t epoch,
			      int wait_s)
{
	pmix_value_t *val = NULL;
	pmix_info_t info[1];
	pmix_proc_t peer;
	char key[64];
	size_t ninfo = 0;
	pmix_status_t rc;

	if (!pmix_up)
		return OPAL_ERR_NOT_AVAILABLE;
	if (!read_begin(ep->endpoint_name.vpid))
		return OPAL_ERR_NOT_FOUND;	/* a read in flight: later */
	addr_key(key, sizeof(key), epoch);
	peer_proc(&peer, ep->endpoint_name.vpid);
	if (epoch > 0) {
		PMIX_INFO_LOAD(&info[0], PMIX_TIMEOUT, &wait_s, PMIX_INT);
		ninfo = 1;
	}
	rc = PMIx_Get(&peer, key, ninfo ? info : NULL, ninfo, &val);
	read_end(ep->endpoint_name.vpid);
	if (ninfo)
		PMIX_INFO_DESTRUCT(&info[0]);
	if (rc != PMIX_SUCCESS || !val)
		return OPAL_ERR_NOT_FOUND;
	if (val->type != PMIX_BYTE_OBJECT ||
	    val->data.bo.size != sizeof(mca_btl_ninja_addr_t)) {
		PMIX_VALUE_RELEASE(val);
		return OPAL_ERR_BAD_PARAM;
	}
	memcpy(&ep->endpoint_addr, val->data.bo.bytes,
	       sizeof(mca_btl_ninja_addr_t));
	ep->endpoint_addr_valid = true;
	PMIX_VALUE_RELEASE(val);
	return OPAL_SUCCESS;
}

/* ---------------------------------------------------------------------
 * The stream rail's frame operations (btl_ninja_rail.h)
 */

/* Write a frame, maybe with an injected fault: half of it, then a reset. */
static int tcp_post(mca_btl_ninja_endpoint_t *ep, mca_btl_ninja_frag_t *f,
		    bool app)
{
	if (OPAL_UNLIKELY(mca_btl_ninja_component.fault_inject) &&
	    mca_btl_ninja_fault_due(app)) {
		(void)mca_btl_ninja_frag_write(ep->endpoint_fd, f, f->size / 2);
		mca_btl_ninja_fault_reset(ep, "send");
		return -ECONNRESET;
	}
	return mca_btl_ninja_frag_write(ep->endpoint_fd, f, f->size);
}

/* The drain marker, after the last whole frame (maybe in several writes). */
static int tcp_post_marker(mca_btl_ninja_endpoint_t *ep)
{
	const char *p = (const char *)&ep->endpoint_marker;
	ssize_t n;

	n = send(ep->endpoint_fd, p + ep->endpoint_marker_off,
		 sizeof(ep->endpoint_marker) - ep->endpoint_marker_off,
		 MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return -errno;
	if (n > 0)
		ep->endpoint_marker_off += (size_t)n;
	if (ep->endpoint_marker_off == sizeof(ep->endpoint_marker))
		ep->endpoint_marker_sent = true;
	return 0;
}

/*
 * TCP: the stream every connection starts on.  Its device is the set of
 * interfaces chosen at init and at every resume (mca_btl_ninja_tcp_*
 * above, run by the component and the drain); its frames are read by the
 * endpoint's stream parser (no progress of its own), its ACKs queue with
 * the data, and it has no address block (the published address is its
 * address).
 */
const ninja_rail_ops_t mca_btl_ninja_rail_tcp = {
	.name = "tcp",
	.wire_id = NINJA_RAIL_ID_TCP,
	.stream = true,
	.post_failed = "write failed",
	.post = tcp_post,
	.post_marker = tcp_post_marker,
};
