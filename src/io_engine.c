/*-------------------------------------------------------------------------
 *
 * io_engine.c
 *	  The worker's asynchronous I/O engine (see io_engine.h).
 *
 * Every request is a state machine:
 *
 *	 (RESOLVING) --> CONNECTING --PQconnectPoll--> RUNNING(step) ... --> DONE
 *	 steps: SETUP (hardening, new sessions only) -> NODE_SESSION (new
 *	 sessions only) -> SQL -> PROBE x probes
 *
 * advanced by DmIoWait from socket events of one WaitEventSet that holds
 * the latch and the socket of every request in flight, so any number of
 * requests to any number of nodes progress side by side, and a node that
 * never answers holds only its own requests, until their deadlines.  The
 * sessions are remote_conn.c's (same libpq keywords, same set-up, same cut
 * instead of a cancel request); only the driving differs.
 *
 * Deadlines: the connection and the set-up share one (connect_timeout_ms);
 * sql has its own (timeout_ms), each probe too (probe_timeout_ms).  A
 * request past a deadline ends at once: its session is cut (a probe cut at
 * its deadline counts as a sample of its elapsed time, as in mirror.c).
 *
 * Pool: a session that ends a request cleanly (idle, no transaction) waits
 * in the pool of its endpoint (the conninfo) for the next request there;
 * one idle session per endpoint is kept, for at most DM_IO_IDLE_MS.
 *
 * Names: a new connection first resolves its conninfo's host names with
 * io_dns.c's lookups (RS_RESOLVING); DmIoWait polls them every
 * DM_IO_DNS_POLL_MS while any is under way, so a dead resolver holds only
 * the requests that need it, until their connect deadline.  Numeric hosts
 * and Unix sockets need none.
 *
 * Memory: requests live in their caller's context; sessions and the lists
 * in EngineContext (TopMemoryContext's child).  Nothing here runs in a
 * transaction or raises for a node's faults; callbacks run after the wait.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "endpoint.h"
#include "io_dns.h"
#include "io_engine.h"
#include "remote_conn.h"

/* idle sessions are closed after this */
#define DM_IO_IDLE_MS 60000

/* how often name lookups under way are polled */
#define DM_IO_DNS_POLL_MS 10

typedef enum
{
	RS_NEW,
	RS_RESOLVING,
	RS_CONNECTING,
	RS_RUNNING,
	RS_DONE
} RequestState;

typedef enum
{
	STEP_SETUP,
	STEP_NODE_SESSION,
	STEP_SQL,
	STEP_PROBE
} RequestStep;

/* one session to a node */
typedef struct Session
{
	struct Session *next;		/* in Idle */
	char	   *conninfo;
	PGconn	   *conn;
	bool		ready;			/* set-up done */
	bool		flushing;		/* output not yet all sent */
	PostgresPollingStatusType pstat;
	int			step_timeout_ms;	/* of the statement in flight */
	TimestampTz idle_since;
} Session;

static MemoryContext EngineContext = NULL;
static DmIoPgRequest *Active = NULL;	/* started, not finished */
static DmIoPgRequest *Finished = NULL;	/* finished, not called back */
static Session *Idle = NULL;

static void Advance(DmIoPgRequest *r, uint32 events);
static void StartConnection(DmIoPgRequest *r);

static void
EnsureContext(void)
{
	if (EngineContext == NULL)
		EngineContext = AllocSetContextCreate(TopMemoryContext,
											  "driftmirror I/O engine",
											  ALLOCSET_SMALL_SIZES);
}

/* Chomp: libpq's message without its final newline, in cxt */
static char *
Chomp(MemoryContext cxt, const char *msg)
{
	char	   *s = MemoryContextStrdup(cxt, msg ? msg : "");
	size_t		len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = '\0';
	return s;
}

static void
CloseSession(Session *s, bool cut)
{
	if (s->conn != NULL)
	{
		if (cut)
			DmRemoteAbandon(s->conn);
		PQfinish(s->conn);
	}
	pfree(s->conninfo);
	pfree(s);
}

/* Unlink: take r off the Active list */
static void
Unlink(DmIoPgRequest *r)
{
	DmIoPgRequest **p;

	for (p = &Active; *p != NULL; p = &(*p)->next)
		if (*p == r)
		{
			*p = r->next;
			break;
		}
	r->next = NULL;
}

/* ClearResults: drop the results a request holds */
static void
ClearResults(DmIoPgRequest *r)
{
	if (r->last)
		PQclear(r->last);
	if (r->failed)
		PQclear(r->failed);
	r->last = r->failed = NULL;
}

/*
 * Finish
 *		End a request: its session goes back to the pool when it is clean,
 *		else it is cut; the request waits for its callback.
 */
static void
Finish(DmIoPgRequest *r, bool cut)
{
	Session    *s = (Session *) r->session;

	ClearResults(r);
	if (s != NULL)
	{
		if (!cut && s->ready && PQstatus(s->conn) == CONNECTION_OK &&
			PQtransactionStatus(s->conn) == PQTRANS_IDLE)
		{
			Session   **p;

			/* one idle session per endpoint */
			for (p = &Idle; *p != NULL; p = &(*p)->next)
				if (strcmp((*p)->conninfo, s->conninfo) == 0)
				{
					Session    *old = *p;

					*p = old->next;
					CloseSession(old, false);
					break;
				}
			s->idle_since = GetCurrentTimestamp();
			s->next = Idle;
			Idle = s;
		}
		else
			CloseSession(s, cut);
		r->session = NULL;
	}
	r->state = RS_DONE;
	Unlink(r);
	r->next = Finished;
	Finished = r;
}

/* Fail: end a request whose sql did not run */
static void
Fail(DmIoPgRequest *r, const char *sqlstate, char *error, const char *detail,
	 bool cut)
{
	r->ok = false;
	r->sqlstate = MemoryContextStrdup(r->cxt, sqlstate);
	r->error = MemoryContextStrdup(r->cxt, error);
	r->detail = detail ? MemoryContextStrdup(r->cxt, detail) : NULL;
	Finish(r, cut);
}

/*
 * LostConnection
 *		The session broke under a request.  A pooled session the node closed
 *		meanwhile (a restart, a terminated backend) is replaced once by a new
 *		connection, if nothing of the request's sql came back yet; otherwise
 *		the request fails.
 */
static void
LostConnection(DmIoPgRequest *r)
{
	Session    *s = (Session *) r->session;

	if (r->reused && r->step == STEP_SQL && r->last == NULL && r->failed == NULL)
	{
		r->reused = false;
		Unlink(r);
		r->session = NULL;
		CloseSession(s, true);
		r->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  r->connect_timeout_ms);
		StartConnection(r);
		return;
	}
	Fail(r, "08006",
		 psprintf("lost the connection to node \"%s\"", r->label),
		 Chomp(r->cxt, PQerrorMessage(s->conn)), true);
}

/*
 * SendStep
 *		Send the statement of r->step, with its deadline.
 */
static void
SendStep(DmIoPgRequest *r, TimestampTz deadline, int timeout_ms)
{
	Session    *s = (Session *) r->session;
	const char *sql = NULL;
	char		budget[32];
	const char *values[1] = {budget};
	int			sent;

	switch ((RequestStep) r->step)
	{
		case STEP_SETUP:
			snprintf(budget, sizeof(budget), "%d",
					 DmRemoteSessionBudgetMs(r->connect_timeout_ms));
			sent = PQsendQueryParams(s->conn, DmRemoteHardenSql(s->conn), 1,
									 NULL, values, NULL, NULL, 0);
			break;
		case STEP_NODE_SESSION:
			sql = DmRemoteNodeSessionSql(0);
			sent = PQsendQuery(s->conn, sql);
			break;
		case STEP_SQL:
			sent = PQsendQuery(s->conn, r->sql);
			break;
		case STEP_PROBE:
		default:
			INSTR_TIME_SET_CURRENT(r->probe_start);
			sent = PQsendQuery(s->conn, r->probe_sql);
			break;
	}
	if (!sent)
	{
		LostConnection(r);
		return;
	}
	r->deadline = deadline;
	s->step_timeout_ms = timeout_ms;
	s->flushing = true;
	r->state = RS_RUNNING;
}

/* ProbeElapsed: ms since the probe in flight was sent */
static double
ProbeElapsed(DmIoPgRequest *r)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, r->probe_start);
	return INSTR_TIME_GET_MILLISEC(now);
}

/* NextProbeOrFinish: after sql or a probe */
static void
NextProbeOrFinish(DmIoPgRequest *r)
{
	if (r->probe_sql != NULL && r->nsamples < Min(r->probes, DM_IO_MAX_PROBES))
	{
		r->step = STEP_PROBE;
		SendStep(r, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->probe_timeout_ms),
				 r->probe_timeout_ms);
		return;
	}
	Finish(r, false);
}

/*
 * StepDone
 *		Every result of the statement in flight has arrived.
 */
static void
StepDone(DmIoPgRequest *r)
{
	Session    *s = (Session *) r->session;
	PGresult   *failed = r->failed;
	PGresult   *last = r->last;

	r->failed = r->last = NULL;
	if (failed != NULL)
	{
		const char *state = PQresultErrorField(failed, PG_DIAG_SQLSTATE);
		const char *primary = PQresultErrorField(failed, PG_DIAG_MESSAGE_PRIMARY);
		const char *detail = PQresultErrorField(failed, PG_DIAG_MESSAGE_DETAIL);
		char	   *msg = Chomp(r->cxt, primary ? primary : PQresultErrorMessage(failed));

		if (last)
			PQclear(last);
		if (r->step == STEP_PROBE)
		{
			/* cut by the node's own limits: the elapsed time is the sample */
			if (state && (strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0))
			{
				r->samples[r->nsamples++] = ProbeElapsed(r);
				r->probe_cut = true;
			}
			else
				r->probe_error = msg;
			PQclear(failed);
			Finish(r, false);
			return;
		}
		r->ok = false;
		r->sqlstate = MemoryContextStrdup(r->cxt, state && strlen(state) == 5 ? state : "08006");
		r->error = msg;
		r->detail = detail ? MemoryContextStrdup(r->cxt, detail) : NULL;
		PQclear(failed);
		/* a failed set-up leaves a session nobody should reuse */
		Finish(r, r->step != STEP_SQL);
		return;
	}

	switch ((RequestStep) r->step)
	{
		case STEP_SETUP:
			if (last)
				PQclear(last);
			r->step = STEP_NODE_SESSION;
			SendStep(r, r->deadline, s->step_timeout_ms);
			return;
		case STEP_NODE_SESSION:
			if (last)
				PQclear(last);
			s->ready = true;
			r->step = STEP_SQL;
			SendStep(r, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->timeout_ms),
					 r->timeout_ms);
			return;
		case STEP_SQL:
			r->ok = true;
			if (last && PQntuples(last) > 0 && PQnfields(last) > 0 && !PQgetisnull(last, 0, 0))
				r->result = MemoryContextStrdup(r->cxt, PQgetvalue(last, 0, 0));
			if (last)
				PQclear(last);
			NextProbeOrFinish(r);
			return;
		case STEP_PROBE:
			if (last)
				PQclear(last);
			r->samples[r->nsamples++] = ProbeElapsed(r);
			NextProbeOrFinish(r);
			return;
	}
}

/*
 * Advance
 *		Drive one request on the socket events seen (0: just try).
 */
static void
Advance(DmIoPgRequest *r, uint32 events)
{
	Session    *s = (Session *) r->session;

	if (r->state == RS_CONNECTING)
	{
		if (events == 0)
			return;
		s->pstat = PQconnectPoll(s->conn);
		if (s->pstat == PGRES_POLLING_FAILED || PQstatus(s->conn) == CONNECTION_BAD)
		{
			Fail(r, "08001", psprintf("could not connect to node \"%s\"", r->label),
				 Chomp(r->cxt, PQerrorMessage(s->conn)), false);
			return;
		}
		if (s->pstat != PGRES_POLLING_OK)
			return;
		if (PQsetnonblocking(s->conn, 1) != 0)
		{
			Fail(r, "08001", psprintf("could not connect to node \"%s\"", r->label),
				 Chomp(r->cxt, PQerrorMessage(s->conn)), true);
			return;
		}
		r->step = STEP_SETUP;
		SendStep(r, r->deadline, s->step_timeout_ms);
		if (r->state != RS_RUNNING)
			return;
	}
	if (r->state != RS_RUNNING)
		return;

	if (s->flushing)
	{
		int			rc = PQflush(s->conn);

		if (rc < 0)
		{
			LostConnection(r);
			return;
		}
		s->flushing = (rc == 1);
	}
	if ((events & WL_SOCKET_READABLE) && !PQconsumeInput(s->conn))
	{
		LostConnection(r);
		return;
	}
	while (!PQisBusy(s->conn))
	{
		PGresult   *res = PQgetResult(s->conn);

		if (res == NULL)
		{
			StepDone(r);
			return;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
			PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (r->failed == NULL)
				r->failed = res;
			else
				PQclear(res);
			continue;
		}
		if (r->last)
			PQclear(r->last);
		r->last = res;
	}
}

/*
 * Expire
 *		End the requests whose deadline has passed; returns the earliest
 *		deadline of the others (0 if none).
 */
static TimestampTz
Expire(TimestampTz now)
{
	DmIoPgRequest *r = Active;
	TimestampTz earliest = 0;

	while (r != NULL)
	{
		DmIoPgRequest *next = r->next;
		Session    *s = (Session *) r->session;

		if (now < r->deadline)
		{
			if (earliest == 0 || r->deadline < earliest)
				earliest = r->deadline;
		}
		else if (r->state == RS_RESOLVING)
		{
			DmResolveRelease(r->dns);
			r->dns = NULL;
			Fail(r, "08001",
				 psprintf("could not resolve the host name of node \"%s\": no answer before the deadline",
						  r->label), NULL, false);
		}
		else if (r->state == RS_CONNECTING)
			Fail(r, "08001",
				 psprintf("could not connect to node \"%s\": timed out after %d ms",
						  r->label, r->connect_timeout_ms), NULL, true);
		else if (r->step == STEP_PROBE)
		{
			/* the node did not answer sooner: the elapsed time is the sample */
			r->samples[r->nsamples++] = ProbeElapsed(r);
			r->probe_cut = true;
			Finish(r, true);
		}
		else
			Fail(r, "57014",
				 psprintf("command on node \"%s\" timed out after %d ms",
						  r->label, s->step_timeout_ms), NULL, true);
		r = next;
	}
	return earliest;
}

/* CloseStaleSessions: idle sessions past DM_IO_IDLE_MS, or broken */
static void
CloseStaleSessions(TimestampTz now)
{
	Session   **p = &Idle;

	while (*p != NULL)
	{
		Session    *s = *p;

		if (PQstatus(s->conn) != CONNECTION_OK ||
			now >= TimestampTzPlusMilliseconds(s->idle_since, DM_IO_IDLE_MS))
		{
			*p = s->next;
			CloseSession(s, false);
		}
		else
			p = &s->next;
	}
}

/*
 * DmIoPgRequestCreate
 *		See io_engine.h.
 */
DmIoPgRequest *
DmIoPgRequestCreate(MemoryContext cxt, const char *conninfo, const char *label)
{
	DmIoPgRequest *r = MemoryContextAllocZero(cxt, sizeof(DmIoPgRequest));

	r->cxt = cxt;
	r->conninfo = MemoryContextStrdup(cxt, conninfo);
	r->label = MemoryContextStrdup(cxt, label);
	r->state = RS_NEW;
	return r;
}

/*
 * NodeErrorOrRethrow
 *		In a PG_CATCH: an interrupt (or out of memory) goes on up; any other
 *		error (a refused conninfo, a name that does not resolve) is the
 *		request's, returned as a copy in cxt.
 */
static ErrorData *
NodeErrorOrRethrow(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		PG_RE_THROW();
	FlushErrorState();
	return edata;
}

/*
 * Connect
 *		Start the connection of r, its names resolved (hosts NULL: none to
 *		resolve).
 */
static void
Connect(DmIoPgRequest *r, const char *hosts, const char *hostaddrs,
		const char *ports)
{
	Session    *s = MemoryContextAllocZero(EngineContext, sizeof(Session));

	s->conninfo = MemoryContextStrdup(EngineContext, r->conninfo);
	r->session = s;
	r->state = RS_CONNECTING;
	s->conn = DmRemoteConnectStartResolved(r->conninfo, r->label,
										   r->connect_timeout_ms,
										   hosts, hostaddrs, ports);
	s->pstat = PGRES_POLLING_WRITING;
	s->step_timeout_ms = r->connect_timeout_ms;
	if (PQstatus(s->conn) == CONNECTION_BAD)
		Fail(r, "08001", psprintf("could not connect to node \"%s\"", r->label),
			 Chomp(r->cxt, PQerrorMessage(s->conn)), false);
}

/*
 * StartConnection
 *		A new session for r: check the conninfo and start the lookups of its
 *		host names (the request waits in RS_RESOLVING, polled by DmIoWait)
 *		or, with no name to resolve, the connection.  A refused conninfo
 *		fails the request; interrupts propagate.
 */
static void
StartConnection(DmIoPgRequest *r)
{
	MemoryContext cxt = CurrentMemoryContext;
	DmDnsLookups *volatile dns = NULL;
	ErrorData  *volatile edata = NULL;

	PG_TRY();
	{
		DmCheckConninfo(r->conninfo);
		dns = DmResolveStart(r->conninfo, r->label);
	}
	PG_CATCH();
	{
		edata = NodeErrorOrRethrow(cxt);
	}
	PG_END_TRY();

	/* from here on the request is the engine's: it ends by Fail or Finish */
	r->next = Active;
	Active = r;
	if (edata != NULL)
		Fail(r, unpack_sql_state(edata->sqlerrcode), edata->message, edata->detail, false);
	else if (dns != NULL)
	{
		r->dns = dns;
		r->state = RS_RESOLVING;
	}
	else
		Connect(r, NULL, NULL, NULL);
}

/*
 * ResolveDone
 *		The lookups of a resolving request are over: connect, or fail when
 *		no name resolved.
 */
static void
ResolveDone(DmIoPgRequest *r)
{
	MemoryContext cxt = CurrentMemoryContext;
	DmDnsLookups *dns = r->dns;
	char	   *volatile hosts = NULL;
	char	   *volatile hostaddrs = NULL;
	char	   *volatile ports = NULL;
	ErrorData  *volatile edata = NULL;

	r->dns = NULL;
	PG_TRY();
	{
		char	   *h;
		char	   *a;
		char	   *p;

		DmResolveFinish(dns, r->label, &h, &a, &p);
		hosts = h;
		hostaddrs = a;
		ports = p;
	}
	PG_CATCH();
	{
		edata = NodeErrorOrRethrow(cxt);
	}
	PG_END_TRY();

	if (edata != NULL)
		Fail(r, unpack_sql_state(edata->sqlerrcode), edata->message, edata->detail, false);
	else
		Connect(r, hosts, hostaddrs, ports);
}

/*
 * DmIoPgStart
 *		See io_engine.h.
 */
void
DmIoPgStart(DmIoPgRequest *r)
{
	Session   **p;
	Session    *s = NULL;

	EnsureContext();
	if (r->connect_timeout_ms <= 0)
		r->connect_timeout_ms = DmConnectTimeoutMs;
	if (r->timeout_ms <= 0)
		r->timeout_ms = DmRemoteTimeoutMs;
	if (r->probe_timeout_ms <= 0)
		r->probe_timeout_ms = DmLatencyProbeTimeoutMs;
	r->started = GetCurrentTimestamp();

	/* a pooled session of this endpoint */
	for (p = &Idle; *p != NULL; p = &(*p)->next)
		if (strcmp((*p)->conninfo, r->conninfo) == 0)
		{
			s = *p;
			*p = s->next;
			s->next = NULL;
			break;
		}
	if (s != NULL && PQstatus(s->conn) == CONNECTION_OK)
	{
		r->next = Active;
		Active = r;
		r->session = s;
		r->reused = true;
		r->step = STEP_SQL;
		SendStep(r, TimestampTzPlusMilliseconds(r->started, r->timeout_ms), r->timeout_ms);
		if (r->state == RS_RUNNING)
			Advance(r, 0);
		return;
	}
	if (s != NULL)
		CloseSession(s, false);

	r->deadline = TimestampTzPlusMilliseconds(r->started, r->connect_timeout_ms);
	StartConnection(r);
}

/*
 * RunCallbacks
 *		Hand every finished request to its callback (each taken off the
 *		list first, so an error in one leaves the others for later).
 */
static void
RunCallbacks(void)
{
	while (Finished != NULL)
	{
		DmIoPgRequest *r = Finished;

		Finished = r->next;
		r->next = NULL;
		if (r->callback)
			r->callback(r, r->arg);
	}
}

/*
 * DmIoWait
 *		See io_engine.h.
 */
bool
DmIoWait(long timeout_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake = TimestampTzPlusMilliseconds(now, timeout_ms);
	TimestampTz earliest;
	WaitEventSet *set;
	WaitEvent  *events;
	DmIoPgRequest *r;
	int			nactive = 0;
	int			n;
	int			i;
	long		wait_ms;
	bool		latch = false;
	bool		resolving = false;
	DmIoPgRequest *next;

	EnsureContext();
	CloseStaleSessions(now);
	earliest = Expire(now);
	if (Finished != NULL)
	{
		RunCallbacks();
		return false;
	}
	if (earliest != 0 && earliest < wake)
		wake = earliest;

	/* name lookups: those done go on to connect; the others are polled */
	for (r = Active; r != NULL; r = next)
	{
		next = r->next;
		if (r->state != RS_RESOLVING)
			continue;
		if (DmResolvePending(r->dns))
			resolving = true;
		else
			ResolveDone(r);
	}
	if (resolving && wake > TimestampTzPlusMilliseconds(now, DM_IO_DNS_POLL_MS))
		wake = TimestampTzPlusMilliseconds(now, DM_IO_DNS_POLL_MS);
	if (Finished != NULL)
	{
		RunCallbacks();
		return false;
	}

	for (r = Active; r != NULL; r = r->next)
		nactive++;
	set = CreateWaitEventSet(CurrentMemoryContext, 2 + nactive);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (r = Active; r != NULL; r = r->next)
	{
		Session    *s = (Session *) r->session;
		uint32		ev;

		if (s == NULL || s->conn == NULL || PQsocket(s->conn) == PGINVALID_SOCKET)
			continue;
		if (r->state == RS_CONNECTING)
			ev = (s->pstat == PGRES_POLLING_READING) ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		else
			ev = WL_SOCKET_READABLE | (s->flushing ? WL_SOCKET_WRITEABLE : 0);
		AddWaitEventToSet(set, ev, PQsocket(s->conn), NULL, r);
	}
	events = palloc(sizeof(WaitEvent) * (2 + nactive));
	wait_ms = (long) Max((wake - now + 999) / 1000, 0);
	n = WaitEventSetWait(set, wait_ms, events, 2 + nactive, PG_WAIT_EXTENSION);
	/* events[] holds copies: free the set (an epoll fd) before anything can raise */
	FreeWaitEventSet(set);

	for (i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
			latch = true;
		else if (events[i].user_data != NULL)
		{
			r = (DmIoPgRequest *) events[i].user_data;
			if (r->state == RS_CONNECTING || r->state == RS_RUNNING)
				Advance(r, events[i].events);
		}
	}
	pfree(events);
	(void) Expire(GetCurrentTimestamp());
	if (latch)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	RunCallbacks();
	return latch;
}

/*
 * DmIoActive
 *		See io_engine.h.
 */
int
DmIoActive(void)
{
	DmIoPgRequest *r;
	int			n = 0;

	for (r = Active; r != NULL; r = r->next)
		n++;
	for (r = Finished; r != NULL; r = r->next)
		n++;
	return n;
}

/*
 * DmIoDiscardAll
 *		See io_engine.h.
 */
void
DmIoDiscardAll(void)
{
	while (Active != NULL)
	{
		DmIoPgRequest *r = Active;
		Session    *s = (Session *) r->session;

		Active = r->next;
		ClearResults(r);
		if (r->dns != NULL)
			DmResolveRelease(r->dns);
		r->dns = NULL;
		if (s != NULL)
			CloseSession(s, true);
		r->session = NULL;
		r->state = RS_DONE;
	}
	Finished = NULL;
	while (Idle != NULL)
	{
		Session    *s = Idle;

		Idle = s->next;
		CloseSession(s, false);
	}
}
