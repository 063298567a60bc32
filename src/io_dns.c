/*-------------------------------------------------------------------------
 *
 * io_dns.c
 *	  Host name resolution with a deadline, for libpq connections (see
 *	  io_dns.h).
 *
 * libpq (PostgreSQL 15) resolves host names with a plain getaddrinfo()
 * inside PQconnectStart/PQconnectPoll: the call blocks for as long as the
 * resolver (or an NSS module) takes, and no latch, signal or deadline can
 * end it.  So the names of a conninfo are resolved here first, with glibc's
 * getaddrinfo_a(), and libpq receives numeric addresses in hostaddr with the
 * names kept in host (libpq still uses host for the password file, TLS
 * host name checks and messages).  Each name that resolves to several
 * addresses becomes several host entries, so libpq still tries them in
 * order as it would have; a name that does not resolve is left out while
 * another entry remains.
 *
 * The wait polls the lookups at 1 to 20 ms intervals on the process latch,
 * so interrupts are served and the deadline holds.  A lookup still running
 * at the deadline (or at an interrupt) is cancelled; if glibc cannot cancel
 * it (its helper thread is inside the resolver), its request block is
 * parked and freed by a later call once glibc is done with it.  At most
 * DM_DNS_MAX_PARKED may be parked: past that, new lookups are refused
 * rather than piling up threads behind a dead resolver.
 *
 * glibc's helper threads block every signal and touch no PostgreSQL state;
 * request blocks live in malloc'd memory for that reason (a memory context
 * could be reset while a thread still writes into it).
 *
 * Without getaddrinfo_a (a C library other than glibc) nothing is resolved
 * here and libpq resolves as usual: docs/operations.md says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "io_dns.h"

#ifdef EAI_INPROGRESS			/* glibc with getaddrinfo_a */

#define DM_DNS_MAX_PARKED 64

/* one lookup; malloc'd, because glibc's thread writes into it */
typedef struct Lookup
{
	struct gaicb cb;			/* must stay valid until glibc is done */
	struct addrinfo hints;
	struct Lookup *next;		/* in Parked */
	char		name[FLEXIBLE_ARRAY_MEMBER];
} Lookup;

static Lookup *Parked = NULL;
static int	NParked = 0;

/* FreeLookup: release a lookup glibc no longer uses */
static void
FreeLookup(Lookup *l)
{
	if (l->cb.ar_result != NULL)
		freeaddrinfo(l->cb.ar_result);
	free(l);
}

/* ReapParked: free the parked lookups glibc has finished */
static void
ReapParked(void)
{
	Lookup	  **prev = &Parked;

	while (*prev != NULL)
	{
		Lookup	   *l = *prev;

		if (gai_error(&l->cb) == EAI_INPROGRESS)
		{
			prev = &l->next;
			continue;
		}
		*prev = l->next;
		FreeLookup(l);
		NParked--;
	}
}

/*
 * ReleaseLookups
 *		Free lookups that are done, cancel the others and park those glibc
 *		still holds.  Never raises.
 */
static void
ReleaseLookups(Lookup **lk, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		if (lk[i] == NULL)
			continue;
		if (gai_error(&lk[i]->cb) == EAI_INPROGRESS &&
			gai_cancel(&lk[i]->cb) == EAI_NOTCANCELED)
		{
			lk[i]->next = Parked;
			Parked = lk[i];
			NParked++;
		}
		else
			FreeLookup(lk[i]);
		lk[i] = NULL;
	}
}

/* IsNumericHost: an IPv4 or IPv6 address literal */
static bool
IsNumericHost(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* SplitList: the items of a libpq comma-separated list, palloc'd */
static List *
SplitList(const char *s)
{
	List	   *items = NIL;
	const char *p = s;

	for (;;)
	{
		const char *comma = strchr(p, ',');

		if (comma == NULL)
		{
			items = lappend(items, pstrdup(p));
			break;
		}
		items = lappend(items, pnstrdup(p, comma - p));
		p = comma + 1;
	}
	return items;
}

/* ListAppend: add item number n (from 0) to a comma-separated list */
static void
ListAppend(StringInfo buf, int n, const char *item)
{
	if (n > 0)
		appendStringInfoChar(buf, ',');
	appendStringInfoString(buf, item);
}

/*
 * WaitForLookups
 *		Wait until every lookup is done, the deadline passes (returns false)
 *		or an interrupt raises.
 */
static bool
WaitForLookups(Lookup **lk, int n, TimestampTz deadline)
{
	long		nap = 1;

	for (;;)
	{
		bool		busy = false;
		long		left;
		int			i;
		int			rc;

		for (i = 0; i < n; i++)
			if (lk[i] != NULL && gai_error(&lk[i]->cb) == EAI_INPROGRESS)
				busy = true;
		if (!busy)
			return true;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			return false;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(nap, left), PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		nap = Min(nap * 2, 20);
	}
}

/*
 * WaitOrRelease
 *		WaitForLookups; an interrupt releases the lookups before it raises.
 */
static bool
WaitOrRelease(Lookup **lk, int n, TimestampTz deadline)
{
	bool		done = false;

	PG_TRY();
	{
		done = WaitForLookups(lk, n, deadline);
	}
	PG_CATCH();
	{
		ReleaseLookups(lk, n);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return done;
}

/* lookups of a conninfo's host names under way (DmResolveStart) */
struct DmDnsLookups
{
	List	   *hosts;			/* the host list, one item per entry */
	List	   *ports;			/* the port list (0, 1 or one per host) */
	Lookup	  **lk;				/* per host: its lookup, NULL for none */
	int			nhosts;
};

/*
 * DmResolveStart
 *		See io_dns.h.
 */
DmDnsLookups *
DmResolveStart(const char *conninfo, const char *label)
{
	PQconninfoOption *opts;
	PQconninfoOption *o;
	char	   *err = NULL;
	const char *host = NULL;
	const char *hostaddr = NULL;
	const char *port = NULL;
	List	   *hosts;
	List	   *ports = NIL;
	Lookup	  **lk;
	int			nhosts;
	int			nnames = 0;
	int			i;
	ListCell   *lc;
	struct gaicb **batch;
	struct sigevent sev;
	DmDnsLookups *d;

	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL)
	{
		if (err)
			PQfreemem(err);
		return NULL;
	}
	for (o = opts; o->keyword != NULL; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = pstrdup(o->val);
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = pstrdup(o->val);
		else if (strcmp(o->keyword, "port") == 0)
			port = pstrdup(o->val);
	}
	PQconninfoFree(opts);
	if (host == NULL || hostaddr != NULL)
		return NULL;

	hosts = SplitList(host);
	nhosts = list_length(hosts);
	if (port != NULL)
		ports = SplitList(port);
	if (list_length(ports) > 1 && list_length(ports) != nhosts)
		return NULL;			/* libpq reports the mismatch */

	lk = palloc0(sizeof(Lookup *) * nhosts);
	foreach(lc, hosts)
	{
		const char *h = lfirst(lc);

		if (h[0] == '\0' || h[0] == '/' || h[0] == '@' || IsNumericHost(h))
			continue;
		nnames++;
	}
	if (nnames == 0)
		return NULL;

	ReapParked();
	if (NParked + nnames > DM_DNS_MAX_PARKED)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not resolve the host name of node \"%s\": too many host name lookups are still pending",
						label),
				 errhint("The name resolver of this server does not answer.")));

	/* start every lookup at once */
	batch = palloc(sizeof(struct gaicb *) * nnames);
	nnames = 0;
	for (i = 0; i < nhosts; i++)
	{
		const char *h = list_nth(hosts, i);
		Lookup	   *l;

		if (h[0] == '\0' || h[0] == '/' || h[0] == '@' || IsNumericHost(h))
			continue;
		l = malloc(offsetof(Lookup, name) + strlen(h) + 1);
		if (l == NULL)
		{
			ReleaseLookups(lk, nhosts);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		memset(l, 0, offsetof(Lookup, name));
		strcpy(l->name, h);
		l->hints.ai_family = AF_UNSPEC;
		l->hints.ai_socktype = SOCK_STREAM;
		l->hints.ai_flags = AI_ADDRCONFIG;
		l->cb.ar_name = l->name;
		l->cb.ar_request = &l->hints;
		lk[i] = l;
		batch[nnames++] = &l->cb;
	}
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_NONE;
	if (getaddrinfo_a(GAI_NOWAIT, batch, nnames, &sev) != 0)
	{
		/* some may have been queued: treat them as running */
		ReleaseLookups(lk, nhosts);
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not resolve the host name of node \"%s\"", label),
				 errdetail_internal("could not start the lookups")));
	}

	d = palloc(sizeof(DmDnsLookups));
	d->hosts = hosts;
	d->ports = ports;
	d->lk = lk;
	d->nhosts = nhosts;
	return d;
}

/*
 * DmResolvePending
 *		See io_dns.h.
 */
bool
DmResolvePending(DmDnsLookups *d)
{
	int			i;

	for (i = 0; i < d->nhosts; i++)
		if (d->lk[i] != NULL && gai_error(&d->lk[i]->cb) == EAI_INPROGRESS)
			return true;
	return false;
}

/*
 * DmResolveRelease
 *		See io_dns.h.
 */
void
DmResolveRelease(DmDnsLookups *d)
{
	ReleaseLookups(d->lk, d->nhosts);
}

/*
 * DmResolveFinish
 *		See io_dns.h.
 */
void
DmResolveFinish(DmDnsLookups *d, const char *label, char **hosts_out,
				char **hostaddrs_out, char **ports_out)
{
	List	   *hosts = d->hosts;
	List	   *ports = d->ports;
	Lookup	  **lk = d->lk;
	int			nhosts = d->nhosts;
	StringInfoData out_hosts;
	StringInfoData out_addrs;
	StringInfoData out_ports;
	int			nout = 0;
	const char *failed_name = NULL;
	int			failed_rc = 0;
	int			i;

	/* one entry per address, in libpq's order */
	initStringInfo(&out_hosts);
	initStringInfo(&out_addrs);
	initStringInfo(&out_ports);
	for (i = 0; i < nhosts; i++)
	{
		const char *h = list_nth(hosts, i);
		const char *p = list_length(ports) > 1 ? list_nth(ports, i) : NULL;

		if (lk[i] == NULL)
		{
			ListAppend(&out_hosts, nout, h);
			ListAppend(&out_addrs, nout, IsNumericHost(h) ? h : "");
			if (p)
				ListAppend(&out_ports, nout, p);
			nout++;
			continue;
		}
		if (gai_error(&lk[i]->cb) != 0)
		{
			failed_name = h;
			failed_rc = gai_error(&lk[i]->cb);
			continue;
		}
		{
			struct addrinfo *ai;
			List	   *seen = NIL;

			for (ai = lk[i]->cb.ar_result; ai != NULL; ai = ai->ai_next)
			{
				char		addr[NI_MAXHOST];
				ListCell   *s;
				bool		dup = false;

				if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
					getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr),
								NULL, 0, NI_NUMERICHOST) != 0)
					continue;
				foreach(s, seen)
					if (strcmp(lfirst(s), addr) == 0)
						dup = true;
				if (dup)
					continue;
				seen = lappend(seen, pstrdup(addr));
				ListAppend(&out_hosts, nout, h);
				ListAppend(&out_addrs, nout, addr);
				if (p)
					ListAppend(&out_ports, nout, p);
				nout++;
			}
		}
	}
	ReleaseLookups(lk, nhosts);

	if (nout == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not resolve the host name of node \"%s\"", label),
				 failed_name ? errdetail_internal("host \"%s\": %s", failed_name,
												  gai_strerror(failed_rc)) : 0));

	*hosts_out = out_hosts.data;
	*hostaddrs_out = out_addrs.data;
	*ports_out = list_length(ports) > 1 ? out_ports.data : NULL;
}

/*
 * DmResolveConninfo
 *		See io_dns.h.
 */
bool
DmResolveConninfo(const char *conninfo, const char *label,
				  TimestampTz deadline, char **hosts_out,
				  char **hostaddrs_out, char **ports_out)
{
	DmDnsLookups *d = DmResolveStart(conninfo, label);

	if (d == NULL)
		return false;
	if (!WaitOrRelease(d->lk, d->nhosts, deadline))
	{
		DmResolveRelease(d);
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not resolve the host name of node \"%s\": no answer before the deadline",
						label)));
	}
	DmResolveFinish(d, label, hosts_out, hostaddrs_out, ports_out);
	return true;
}

#else							/* no getaddrinfo_a: libpq resolves */

DmDnsLookups *
DmResolveStart(const char *conninfo, const char *label)
{
	return NULL;
}

bool
DmResolvePending(DmDnsLookups *d)
{
	return false;
}

void
DmResolveRelease(DmDnsLookups *d)
{
}

void
DmResolveFinish(DmDnsLookups *d, const char *label, char **hosts_out,
				char **hostaddrs_out, char **ports_out)
{
	elog(ERROR, "no name lookups without getaddrinfo_a");
}

bool
DmResolveConninfo(const char *conninfo, const char *label,
				  TimestampTz deadline, char **hosts_out,
				  char **hostaddrs_out, char **ports_out)
{
	return false;
}

#endif
