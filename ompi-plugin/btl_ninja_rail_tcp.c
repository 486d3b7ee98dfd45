/*
 * Copyright (c) 2026 The Ninja authors.  BSD-3-Clause.
 *
 * btl_ninja_rail_tcp.c - the TCP rail: its discovery and addressing
 * (which interfaces to use, re-evaluated at every resume, since a migrated
 * VM may find different ones), the listening sockets (one per selected
 * address), the run-time publication and lookup of addresses - and, once,
 * of the connection secret - through PMIx; and its frame operations: the
 * stream writer, the sendi fast path, and the stream reader that parses a
 * connection's bytes into frames for the endpoint's one dispatch.
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
#include <time.h>
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

/*
 * Finalize: wait for the address lookups still in flight (at most
 * NINJA_FINI_READ_WAIT_S).  A PMIx_Get_nb of a peer on another node is a
 * direct-modex request of our PMIx server (the orted) to the peer's; a
 * rank that exits before its answer came leaves the request to the orted,
 * which then stores the late answer into the job's shared-memory store
 * (gds ds21) after it removed the job at the rank's end ("PMIX ERROR ...
 * dstore_base.c line 1952 / pmix_server_get.c line 1104") and never ends:
 * mpirun waits for it for good.  Seen after a live migration (the control
 * thread reconnecting while the ranks finalize): tests/libvirt mpi_job.
 */
#define NINJA_FINI_READ_WAIT_S	15

static void reads_drain(void)
{
	struct timespec until;
	size_t n, left;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += NINJA_FINI_READ_WAIT_S;
	pthread_mutex_lock(&reading_lock);
	n = nreading;
	while (nreading > 0 &&
	       pthread_cond_timedwait(&reading_cond, &reading_lock, &until) == 0)
		;
	left = nreading;
	pthread_mutex_unlock(&reading_lock);
	if (n > 0)
		NINJA_VERBOSE(1, "btl:ninja: finalize: %zu address lookup(s) in flight, "
			      "%zu left after waiting", n, left);
}

void mca_btl_ninja_pmix_fini(void)
{
	if (pmix_up) {
		reads_drain();
		(void)PMIx_Finalize(NULL, 0);
	}
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
	uint64_t asked_at;		/* mca_btl_ninja_now_ns() */
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
	NINJA_VERBOSE(1, "btl:ninja: rank %u: address of %u.%u for epoch %u: %s after %llu ms",
		      OPAL_PROC_MY_NAME.vpid, r->name.jobid, r->name.vpid,
		      r->epoch, r->ok ? "found" : PMIx_Error_string(st),
		      (unsigned long long)((mca_btl_ninja_now_ns() - r->asked_at) /
					   NINJA_MS_NS));
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
	r->asked_at = mca_btl_ninja_now_ns();
	/* Rare (only after the known addresses failed for a while): said. */
	NINJA_VERBOSE(1, "btl:ninja: rank %u: asking PMIx for the address of %u.%u for epoch %u",
		      OPAL_PROC_MY_NAME.vpid, name.jobid, name.vpid, epoch);
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
 * The stream rail's frame operations (btl_ninja_rail.h): the writer, the
 * sendi fast path and the stream reader of a connection's socket.
 */

/*
 * Write what is left of a frame, up to byte limit of it (the whole frame
 * but for fault injection).  1: complete, 0: would block, <0: error.
 */
static int tcp_write(int fd, mca_btl_ninja_frag_t *f, size_t limit)
{
	struct iovec v[3];
	struct msghdr msg;
	size_t skip = f->sent, room = limit > f->sent ? limit - f->sent : 0;
	int i, n = 0;
	ssize_t r;

	for (i = 0; i < f->iov_cnt && room; i++) {
		size_t l = f->iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > room)
			l = room;
		v[n].iov_base = (char *)f->iov[i].iov_base + skip;
		v[n].iov_len = l;
		room -= l;
		skip = 0;
		n++;
	}
	if (!n)
		return f->sent == f->size;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = v;
	msg.msg_iovlen = n;
	r = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return -errno;
	}
	f->sent += (size_t)r;
	/* btl_ninja_fault_rdma: the spoiled header is out, a rewrite after
	 * the peer refused it sends the true one. */
	if (OPAL_UNLIKELY(f->fault_at) &&
	    f->sent >= f->iov[0].iov_len + f->iov[1].iov_len)
		mca_btl_ninja_rdma_fault_sent(f);
	return f->sent == f->size;
}

/*
 * sendi fast path (ops.sendi; the endpoint checked that nothing stands in
 * its way): one sendmsg of our header, ob1's header and the payload in
 * place; then a copy of the frame is retained for replay (ob1 treats the
 * send as done and may reuse its buffer).  What the socket did not take
 * is queued in that copy (already partly written).  Returns OPAL_SUCCESS
 * when the frame is on the wire or queued, OPAL_ERR_RESOURCE_BUSY when
 * the socket failed with nothing written (the caller then copies as
 * usual).
 */
static int tcp_sendi(mca_btl_ninja_endpoint_t *ep, const void *header,
		     size_t header_size, const void *payload,
		     size_t payload_size, uint8_t tag)
{
	ninja_frame_hdr_t hdr;
	struct iovec iov[3];
	struct msghdr msg;
	mca_btl_ninja_frag_t *f;
	size_t total = sizeof(hdr) + header_size + payload_size;
	ssize_t r;

	hdr.type = NINJA_FRAME_DATA;
	hdr.tag = tag;
	hdr.flags = 0;
	hdr.len = (uint32_t)(header_size + payload_size);
	hdr.ack = ep->endpoint_rx_seq;
	hdr.seq = ep->endpoint_tx_seq;
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)header;
	iov[1].iov_len = header_size;
	iov[2].iov_base = (void *)payload;
	iov[2].iov_len = payload_size;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = payload_size ? 3 : 2;
	r = sendmsg(ep->endpoint_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return OPAL_ERR_RESOURCE_BUSY;	/* nothing written: slow path */
	ep->endpoint_tx_seq++;
	ep->endpoint_ack_sent = hdr.ack;
	ep->endpoint_ack_owed = 0;
	ep->endpoint_ack_req = false;
	/* The copy that a replay (or the rest of this write) needs. */
	f = mca_btl_ninja_frag_copy(header, header_size, payload, payload_size,
				    tag);
	if (!f) {
		NINJA_ERROR("btl:ninja: out of fragments with a frame written");
		return OPAL_ERR_OUT_OF_RESOURCE;
	}
	f->endpoint = ep;
	f->hdr = hdr;
	f->cb_done = true;
	if (r == (ssize_t)total) {
		f->sent = total;
		mca_btl_ninja_endpoint_sent(ep, f, true);
		return OPAL_SUCCESS;
	}
	/* Partly written (or not at all): keep the rest, in order. */
	mca_btl_ninja_endpoint_sq_append(ep, f);
	f->sent = r > 0 ? (size_t)r : 0;
	mca_btl_ninja_endpoint_update_out(ep);
	return OPAL_SUCCESS;
}

/*
 * A put or a get's response is whole and in place: in sequence now; a
 * get completes (ob1 sends its FIN, on this thread or later).
 */
static void rx_put_whole(mca_btl_ninja_endpoint_t *ep, bool app)
{
	mca_btl_ninja_get_t *g = ep->endpoint_rx_get;

	ep->endpoint_rx_put_reg = NULL;
	mca_btl_ninja_endpoint_rx_commit(ep, &ep->endpoint_rx_put_hdr);
	if (g) {
		ep->endpoint_rx_get = NULL;
		mca_btl_ninja_get_complete(ep, g, app);
	}
}

/*
 * A put frame's (or get response's) header and destination are in the
 * buffer at p: copy the part of its data that came with them, read the
 * rest in place later (endpoint_rx_put).  Whichever thread reads it
 * writes the destination: ob1 does not look at it before the FIN (put),
 * or the get's completion, which follow.  Returns -1 for a put outside
 * our registrations or a response to no get we asked (refused, nothing
 * written, not accepted: the caller closes the connection), else 0.  A
 * duplicate (skip) is not checked: its data is dropped unread.
 */
static int rx_put_start(mca_btl_ninja_endpoint_t *ep,
			const ninja_frame_hdr_t *hdr, unsigned char *p,
			size_t avail, bool skip, bool app)
{
	size_t dlen = hdr->len - sizeof(ninja_put_hdr_t);
	size_t have = avail - sizeof(*hdr) - sizeof(ninja_put_hdr_t);
	ninja_put_hdr_t ph;

	memcpy(&ph, p + sizeof(*hdr), sizeof(ph));
	ep->endpoint_rx_get = NULL;
	ep->endpoint_rx_put_reg = NULL;
	if (!skip && !mca_btl_ninja_rdma_admit(ep, hdr, p + sizeof(*hdr),
					       sizeof(ph), app))
		return -1;	/* refused, reported */
	if (hdr->tag == NINJA_TAG_GETRESP && !skip &&
	    !(ep->endpoint_rx_get = mca_btl_ninja_get_find(ep, &ph, dlen)))
		return -1;	/* admitted above: not reached */
	if (hdr->tag == NINJA_TAG_PUT && !skip && have < dlen) {
		/* Streams in: a deregistration meanwhile drops the rest. */
		ep->endpoint_rx_put_reg = ninja_reg_find(
			&mca_btl_ninja_component.reg, ph.key);
		ep->endpoint_rx_put_reg->busy = ep;
	}
	if (have > dlen)
		have = dlen;
	if (!skip)
		memcpy((void *)(uintptr_t)ph.addr,
		       p + sizeof(*hdr) + sizeof(ph), have);
	ep->endpoint_rx_off += sizeof(*hdr) + sizeof(ph) + have;
	ep->endpoint_rx_frags++;
	ep->endpoint_rx_bytes += sizeof(*hdr) + hdr->len;
	ep->endpoint_rx_put = (unsigned char *)(uintptr_t)ph.addr + have;
	ep->endpoint_rx_put_left = dlen - have;
	ep->endpoint_rx_put_skip = skip;
	ep->endpoint_rx_put_hdr = *hdr;
	/* In sequence only once whole: a put cut by a failure is replayed. */
	if (!ep->endpoint_rx_put_left && !skip)
		rx_put_whole(ep, app);
	return 0;
}

/* The start of a put (or get response) at p, avail bytes buffered. */
static int rx_inplace(mca_btl_ninja_endpoint_t *ep,
		      const ninja_frame_hdr_t *hdr, unsigned char *p,
		      size_t avail, bool app, const char **why)
{
	int ok;

	mca_btl_ninja_endpoint_acked(ep, hdr->ack, app);
	if (ep->endpoint_fd < 0)
		return NINJA_RX_OUT;	/* closed from a callback */
	ok = mca_btl_ninja_endpoint_rx_check(ep, hdr);
	if (ok < 0) {
		*why = "out of sequence";
		return NINJA_RX_FAIL;
	}
	if (rx_put_start(ep, hdr, p, avail, ok == 0, app) < 0) {
		*why = "refused an RDMA frame";
		return NINJA_RX_FAIL;
	}
	return ep->endpoint_fd < 0 ? NINJA_RX_OUT : NINJA_RX_NEXT;
}

/* Dispatch every complete frame in the receive buffer. */
static int rx_dispatch(mca_btl_ninja_endpoint_t *ep, bool app, int *count,
		       const char **why)
{
	size_t avail = ep->endpoint_rx_len - ep->endpoint_rx_off;
	ninja_frame_hdr_t hdr;
	int rc;

	while (avail >= sizeof(hdr)) {
		unsigned char *p = ep->endpoint_rx_buf + ep->endpoint_rx_off;
		size_t need;

		memcpy(&hdr, p, sizeof(hdr));
		need = sizeof(hdr) + hdr.len;
		if (OPAL_UNLIKELY(hdr.len > ep->endpoint_rx_max) &&
		    !(NINJA_FRAME_DATA == hdr.type && ninja_tag_in_place(hdr.tag))) {
			/* Longer than the peer said it would send: never
			 * buffered (docs/protocol.md, limits). */
			mca_btl_ninja_endpoint_protocol_error(ep,
				"btl/ninja: protocol error (frame longer "
				"than the peer's announced maximum)");
			*why = "frame too long";
			return NINJA_RX_FAIL;
		}
		if (NINJA_FRAME_DATA == hdr.type && ninja_tag_in_place(hdr.tag) &&
		    hdr.len >= sizeof(ninja_put_hdr_t) &&
		    avail >= sizeof(hdr) + sizeof(ninja_put_hdr_t)) {
			rc = rx_inplace(ep, &hdr, p, avail, app, why);
			if (rc != NINJA_RX_NEXT)
				return rc;
			avail = ep->endpoint_rx_len - ep->endpoint_rx_off;
			(*count)++;
			continue;
		}
		if (avail < need)
			break;
		ep->endpoint_rx_off += need;
		avail -= need;
		rc = mca_btl_ninja_endpoint_frame(ep, &hdr, p + sizeof(hdr), app,
						  count, why);
		if (rc != NINJA_RX_NEXT)
			return rc;
	}
	return NINJA_RX_NEXT;
}

/*
 * After a dispatch: room in the buffer for the partial frame at rx_off
 * (all of it; of a put, the part before its data).  0, or
 * OPAL_ERR_OUT_OF_RESOURCE.
 */
static int rx_room(mca_btl_ninja_endpoint_t *ep)
{
	size_t avail = ep->endpoint_rx_len - ep->endpoint_rx_off;
	ninja_frame_hdr_t hdr;
	size_t need;

	if (ep->endpoint_rx_off == ep->endpoint_rx_len) {
		ep->endpoint_rx_off = ep->endpoint_rx_len = 0;
		return 0;
	}
	if (avail < sizeof(hdr)) {
		if (ep->endpoint_rx_off > 0 &&
		    ep->endpoint_rx_cap - ep->endpoint_rx_off < 4096) {
			memmove(ep->endpoint_rx_buf,
				ep->endpoint_rx_buf + ep->endpoint_rx_off, avail);
			ep->endpoint_rx_off = 0;
			ep->endpoint_rx_len = avail;
		}
		return 0;
	}
	memcpy(&hdr, ep->endpoint_rx_buf + ep->endpoint_rx_off, sizeof(hdr));
	need = sizeof(hdr) + hdr.len;
	if (NINJA_FRAME_DATA == hdr.type && ninja_tag_in_place(hdr.tag))
		need = sizeof(hdr) + sizeof(ninja_put_hdr_t);
	if (ep->endpoint_rx_off + need > ep->endpoint_rx_cap) {
		memmove(ep->endpoint_rx_buf,
			ep->endpoint_rx_buf + ep->endpoint_rx_off, avail);
		ep->endpoint_rx_off = 0;
		ep->endpoint_rx_len = avail;
	}
	if (need > ep->endpoint_rx_cap) {
		unsigned char *nb = realloc(ep->endpoint_rx_buf, need);

		if (!nb)
			return OPAL_ERR_OUT_OF_RESOURCE;
		ep->endpoint_rx_buf = nb;
		ep->endpoint_rx_cap = need;
	}
	return 0;
}

/* One recv(): into the buffer, or the rest of a put straight into its
 * destination (a duplicate's: into the empty buffer, dropped). */
static ssize_t rx_read(mca_btl_ninja_endpoint_t *ep, bool *emptied)
{
	ssize_t n;

	if (ep->endpoint_rx_put_left) {
		bool skip = ep->endpoint_rx_put_skip;
		size_t want = ep->endpoint_rx_put_left;

		if (skip && want > ep->endpoint_rx_cap - ep->endpoint_rx_len)
			want = ep->endpoint_rx_cap - ep->endpoint_rx_len;
		return recv(ep->endpoint_fd, skip ? ep->endpoint_rx_buf +
			    ep->endpoint_rx_len : ep->endpoint_rx_put,
			    want, MSG_DONTWAIT);
	} else {
		size_t room = ep->endpoint_rx_cap - ep->endpoint_rx_len;

		n = recv(ep->endpoint_fd,
			 ep->endpoint_rx_buf + ep->endpoint_rx_len,
			 room, MSG_DONTWAIT);
		*emptied = n > 0 && (size_t)n < room;
		return n;
	}
}

/* n more bytes of a put in place: false if the connection closed. */
static bool rx_put_more(mca_btl_ninja_endpoint_t *ep, size_t n, bool app)
{
	if (!ep->endpoint_rx_put_skip)
		ep->endpoint_rx_put += n;
	ep->endpoint_rx_put_left -= n;
	if (!ep->endpoint_rx_put_left && !ep->endpoint_rx_put_skip) {
		rx_put_whole(ep, app);
		if (ep->endpoint_fd < 0)
			return false;	/* closed from a callback */
	}
	return true;
}

/*
 * Read and dispatch frames.  app: upcall into ob1 (application thread,
 * RUNNING); otherwise defer (control thread, drain).  Returns the number
 * of frames handled, or <0 if the connection is gone.
 */
static int tcp_recv(mca_btl_ninja_endpoint_t *ep, bool app)
{
	mca_btl_ninja_component_t *c = &mca_btl_ninja_component;
	int count = 0, loops = 0, rc;
	bool emptied = false;	/* a read returned less than it asked */
	const char *why = NULL;
	ssize_t n;

	NINJA_ASSERT_LOCKED();
	if (ep->endpoint_rx_busy || !ep->endpoint_rx_buf)
		return 0;
	ep->endpoint_rx_busy = true;
	for (;;) {
		rc = rx_dispatch(ep, app, &count, &why);
		if (rc == NINJA_RX_FAIL) {
			ep->endpoint_rx_busy = false;
			if (app)
				mca_btl_ninja_endpoint_failed(ep, -EPROTO, why);
			return -1;
		}
		if (rc == NINJA_RX_OUT)
			goto out;
		if (rx_room(ep) != 0) {
			count = OPAL_ERR_OUT_OF_RESOURCE;
			goto out;
		}
		if (loops++ >= 8)
			break;
		/*
		 * The socket had less than we asked for: it was empty then,
		 * and another recv() now would almost always say EAGAIN - a
		 * system call between the message and the application's
		 * answer to it (the next poll comes at once when it spins).
		 * Not while a put streams in: there the sender is writing.
		 */
		if (emptied && app && !ep->endpoint_rx_put_left)
			break;
		n = rx_read(ep, &emptied);
		if (n > 0) {
			if (OPAL_UNLIKELY(c->fault_inject) &&
			    mca_btl_ninja_fault_due(app)) {
				/* Bytes read, maybe half a frame: reset. */
				mca_btl_ninja_fault_reset(ep, "receive");
				ep->endpoint_rx_busy = false;
				mca_btl_ninja_endpoint_failed(ep, -ECONNRESET, "fault injected");
				return -1;
			}
			if (!ep->endpoint_rx_put_left)
				ep->endpoint_rx_len += (size_t)n;
			else if (!rx_put_more(ep, (size_t)n, app))
				goto out;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
			      errno == EINTR))
			break;
		/* EOF or error. */
		if (app) {
			ep->endpoint_rx_busy = false;
			mca_btl_ninja_endpoint_failed(ep, n < 0 ? -errno : 0, "lost");
			return -1;
		}
		count = -1;
		break;
	}
out:
	ep->endpoint_rx_busy = false;
	if (ep->endpoint_fd >= 0 && ep->endpoint_ack_sent != ep->endpoint_rx_seq)
		mca_btl_ninja_endpoint_ack_maybe(ep, app);
	return count;
}

/* Write a frame, maybe with an injected fault: half of it, then a reset. */
static int tcp_post(mca_btl_ninja_endpoint_t *ep, mca_btl_ninja_frag_t *f,
		    bool app)
{
	if (f->sent == 0 && (f->hdr.type == NINJA_FRAME_DATA ||
			     f->hdr.type == NINJA_FRAME_ACK)) {
		/* Its ack (stamped by the endpoint) goes out with it. */
		ep->endpoint_ack_sent = f->hdr.ack;
		ep->endpoint_ack_owed = 0;
		ep->endpoint_ack_req = false;
	}
	if (OPAL_UNLIKELY(mca_btl_ninja_component.fault_inject) &&
	    mca_btl_ninja_fault_due(app)) {
		(void)tcp_write(ep->endpoint_fd, f, f->size / 2);
		mca_btl_ninja_fault_reset(ep, "send");
		return -ECONNRESET;
	}
	return tcp_write(ep->endpoint_fd, f, f->size);
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
 * above, run by the component and the drain); its frames are read per
 * connection by tcp_recv (no progress of its own), its ACKs queue with
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
	.recv = tcp_recv,
	.tx_wait = mca_btl_ninja_endpoint_update_out,
	.sendi = tcp_sendi,
};
