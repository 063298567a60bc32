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
 * in the pool of its endpoint (the conninfo and the kind of session: node
 * session or plain, and a plain one's application_name) for the next
 * request there; one idle session per endpoint is kept, for at most
 * DM_IO_IDLE_MS.
 *
 * HTTP: requests to actuators, webhooks and HTTP metric sources run on one
 * libcurl multi handle (http.c's DmHttpMulti: its URL rules, its timeouts,
 * libcurl's own asynchronous resolver); its sockets and timer join the same
 * WaitEventSet, so every network wait of the worker is this one wait.
 *
 * Raw sockets and timers: io_socket.c's requests (a line protocol on a
 * unix or TCP socket: HAProxy's runtime API) join the same WaitEventSet
 * and end at their deadline the same way; a timer (DmIoTimer) is a
 * deadline with nothing to wait for, so that a retry's back-off is part
 * of the one wait too.
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
#include "io_socket.h"
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
	bool		plain;			/* no node session (see io_engine.h) */
	char	   *appname;		/* plain sessions: application_name, or NULL */
	int			lock_timeout_ms;	/* node sessions: their lock_timeout */
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
static DmHttpMulti *Http = NULL;	/* libcurl's transfers, or NULL */
static DmIoHttpRequest *HttpActive = NULL;	/* started, not finished */
static DmIoHttpRequest *HttpFinished = NULL;	/* finished, not called back */
static DmIoTimer *Timers = NULL;	/* armed */
static DmIoTimer *TimersFired = NULL;	/* due, not called back */

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

/*
 * SessionIs
 *		Whether session s is of this endpoint and kind: the pool's key.
 */
static bool
SessionIs(Session *s, const char *conninfo, bool plain, const char *appname,
		  int lock_timeout_ms)
{
	if (strcmp(s->conninfo, conninfo) != 0 || s->plain != plain)
		return false;
	if (!plain)
		return s->lock_timeout_ms == lock_timeout_ms;
	if (s->appname == NULL || appname == NULL)
		return s->appname == appname;
	return strcmp(s->appname, appname) == 0;
}

/* SessionFits: whether pooled session s can serve request r */
static bool
SessionFits(Session *s, DmIoPgRequest *r)
{
	return SessionIs(s, r->conninfo, r->plain, r->application_name,
					 r->lock_timeout_ms);
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
	if (s->appname)
		pfree(s->appname);
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
		if (!cut && !r->console && s->ready && PQstatus(s->conn) == CONNECTION_OK &&
			PQtransactionStatus(s->conn) == PQTRANS_IDLE)
		{
			Session   **p;

			/* one idle session per endpoint and kind */
			for (p = &Idle; *p != NULL; p = &(*p)->next)
				if (SessionIs(*p, s->conninfo, s->plain, s->appname,
							  s->lock_timeout_ms))
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
Fail(DmIoPgRequest *r, DmIoFailure failure, const char *sqlstate, char *error,
	 const char *detail, bool cut)
{
	r->ok = false;
	r->failure = failure;
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
	Fail(r, DM_IO_LOST, "08006",
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
			sql = DmRemoteNodeSessionSql(r->lock_timeout_ms);
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
		r->failure = (r->step == STEP_SQL) ? DM_IO_REMOTE : DM_IO_SETUP;
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
			if (!r->plain)
			{
				r->step = STEP_NODE_SESSION;
				SendStep(r, r->deadline, s->step_timeout_ms);
				return;
			}
			/* a plain session is ready after the hardening */
			s->ready = true;
			r->step = STEP_SQL;
			SendStep(r, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->timeout_ms),
					 r->timeout_ms);
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
			if (last && r->keep_result)
				r->res = last;
			else if (last)
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
			Fail(r, DM_IO_CONNECT, "08001", psprintf("could not connect to node \"%s\"", r->label),
				 Chomp(r->cxt, PQerrorMessage(s->conn)), false);
			return;
		}
		if (s->pstat != PGRES_POLLING_OK)
			return;
		if (PQsetnonblocking(s->conn, 1) != 0)
		{
			Fail(r, DM_IO_CONNECT, "08001", psprintf("could not connect to node \"%s\"", r->label),
				 Chomp(r->cxt, PQerrorMessage(s->conn)), true);
			return;
		}
		if (r->console)
		{
			/* an admin console takes no set-up statement */
			s->ready = true;
			r->step = STEP_SQL;
			SendStep(r, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->timeout_ms),
					 r->timeout_ms);
		}
		else
		{
			r->step = STEP_SETUP;
			SendStep(r, r->deadline, s->step_timeout_ms);
		}
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
			Fail(r, DM_IO_RESOLVE, "08001",
				 psprintf("could not resolve the host name of node \"%s\": no answer before the deadline",
						  r->label), NULL, false);
		}
		else if (r->state == RS_CONNECTING)
			Fail(r, DM_IO_CONNECT_TIMEOUT, "08001",
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
			Fail(r, r->step == STEP_SQL ? DM_IO_TIMEOUT : DM_IO_CONNECT_TIMEOUT, "57014",
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
	s->plain = r->plain;
	s->lock_timeout_ms = r->plain ? 0 : r->lock_timeout_ms;
	if (r->plain && r->application_name != NULL)
		s->appname = MemoryContextStrdup(EngineContext, r->application_name);
	r->session = s;
	r->state = RS_CONNECTING;
	s->conn = DmRemoteConnectStartResolved(r->conninfo, r->label,
										   r->connect_timeout_ms,
										   hosts, hostaddrs, ports,
										   s->appname);
	s->pstat = PGRES_POLLING_WRITING;
	s->step_timeout_ms = r->connect_timeout_ms;
	if (PQstatus(s->conn) == CONNECTION_BAD)
		Fail(r, DM_IO_CONNECT, "08001", psprintf("could not connect to node \"%s\"", r->label),
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
	volatile DmIoFailure failure = DM_IO_REFUSED;

	PG_TRY();
	{
		DmCheckConninfo(r->conninfo);
		failure = DM_IO_RESOLVE;
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
		Fail(r, failure, unpack_sql_state(edata->sqlerrcode), edata->message,
			 edata->detail, false);
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
		Fail(r, DM_IO_RESOLVE, unpack_sql_state(edata->sqlerrcode), edata->message,
			 edata->detail, false);
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

	/* a pooled session of this endpoint (never for a console) */
	for (p = &Idle; !r->console && *p != NULL; p = &(*p)->next)
		if (SessionFits(*p, r))
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
 * CollectHttpDone
 *		Move the HTTP requests whose answer or error has arrived to
 *		HttpFinished.
 */
static void
CollectHttpDone(void)
{
	DmIoHttpRequest **p = &HttpActive;

	while (*p != NULL)
	{
		DmIoHttpRequest *h = *p;

		if (h->resp.status != 0 || h->resp.error != NULL || h->resp.body != NULL)
		{
			*p = h->next;
			h->next = HttpFinished;
			HttpFinished = h;
		}
		else
			p = &h->next;
	}
}

/* CallBack: run r's callback, then clear the result it kept */
static pg_noinline void
CallBack(DmIoPgRequest *r)
{
	PG_TRY();
	{
		if (r->callback)
			r->callback(r, r->arg);
	}
	PG_CATCH();
	{
		if (r->res)
			PQclear(r->res);
		r->res = NULL;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (r->res)
		PQclear(r->res);
	r->res = NULL;
}

/*
 * RunCallbacks
 *		Hand every finished request to its callback (each taken off the
 *		list first, so an error in one leaves the others for later).  A
 *		result kept for the callback is cleared after it, even if it raises.
 */
static void
RunCallbacks(void)
{
	while (Finished != NULL)
	{
		DmIoPgRequest *r = Finished;

		Finished = r->next;
		r->next = NULL;
		CallBack(r);
	}
	while (HttpFinished != NULL)
	{
		DmIoHttpRequest *h = HttpFinished;

		HttpFinished = h->next;
		h->next = NULL;
		h->started = false;
		if (h->callback)
			h->callback(h, h->arg);
	}
	DmIoSocketRunCallbacks();
	while (TimersFired != NULL)
	{
		DmIoTimer  *t = TimersFired;

		TimersFired = t->next;
		t->next = NULL;
		if (t->callback)
			t->callback(t, t->arg);
	}
}

/* AnyFinished: whether a request or a timer waits for its callback */
static bool
AnyFinished(void)
{
	return Finished != NULL || HttpFinished != NULL || TimersFired != NULL ||
		DmIoSocketAnyFinished();
}

/*
 * ExpireTimers
 *		Move the timers due at now to TimersFired; returns the earliest
 *		time of the others (0 if none).
 */
static TimestampTz
ExpireTimers(TimestampTz now)
{
	DmIoTimer **p = &Timers;
	TimestampTz earliest = 0;

	while (*p != NULL)
	{
		DmIoTimer  *t = *p;

		if (now >= t->at)
		{
			*p = t->next;
			t->armed = false;
			t->next = TimersFired;
			TimersFired = t;
			continue;
		}
		if (earliest == 0 || t->at < earliest)
			earliest = t->at;
		p = &t->next;
	}
	return earliest;
}

/* Earlier: the earlier of two times, 0 meaning none */
static TimestampTz
Earlier(TimestampTz a, TimestampTz b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
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
	int			nevents;
	int			n;
	int			i;
	long		wait_ms;
	long		http_ms;
	bool		latch = false;
	bool		resolving = false;
	int			sock_first;
	DmIoPgRequest *next;

	EnsureContext();
	CloseStaleSessions(now);
	earliest = Expire(now);
	earliest = Earlier(earliest, DmIoSocketExpire(now));
	earliest = Earlier(earliest, ExpireTimers(now));
	if (AnyFinished())
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
	nevents = 2 + nactive + DmIoSocketInFlight() +
		(Http ? DmHttpMultiSocketCount(Http) : 0);
	set = CreateWaitEventSet(CurrentMemoryContext, nevents);
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
	/* raw sockets: their events are told apart by position */
	sock_first = DmIoSocketAddWaitEvents(set);
	/* libcurl's sockets, tagged with the multi handle itself */
	if (Http)
		DmHttpMultiAddWaitEvents(Http, set, (void *) Http);
	events = palloc(sizeof(WaitEvent) * nevents);
	wait_ms = (long) Max((wake - now + 999) / 1000, 0);
	http_ms = Http ? DmHttpMultiTimeoutMs(Http) : -1;
	if (http_ms >= 0 && http_ms < wait_ms)
		wait_ms = http_ms;
	n = WaitEventSetWait(set, wait_ms, events, nevents, PG_WAIT_EXTENSION);
	/* events[] holds copies: free the set (an epoll fd) before anything can raise */
	FreeWaitEventSet(set);

	for (i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
			latch = true;
		else if (Http != NULL && events[i].user_data == (void *) Http)
			DmHttpMultiSocketReady(Http, events[i].fd, events[i].events);
		else if (sock_first >= 0 && events[i].pos >= sock_first)
			DmIoSocketReady(events[i].user_data, events[i].events);
		else if (events[i].user_data != NULL)
		{
			r = (DmIoPgRequest *) events[i].user_data;
			if (r->state == RS_CONNECTING || r->state == RS_RUNNING)
				Advance(r, events[i].events);
		}
	}
	pfree(events);
	if (Http)
	{
		DmHttpMultiCheckTimers(Http);
		CollectHttpDone();
	}
	now = GetCurrentTimestamp();
	(void) Expire(now);
	(void) DmIoSocketExpire(now);
	(void) ExpireTimers(now);
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
	DmIoHttpRequest *h;
	DmIoTimer  *t;
	int			n = 0;

	for (r = Active; r != NULL; r = r->next)
		n++;
	for (r = Finished; r != NULL; r = r->next)
		n++;
	for (h = HttpActive; h != NULL; h = h->next)
		n++;
	for (h = HttpFinished; h != NULL; h = h->next)
		n++;
	for (t = Timers; t != NULL; t = t->next)
		n++;
	for (t = TimersFired; t != NULL; t = t->next)
		n++;
	return n + DmIoSocketCount();
}

/* DropRequest: take r off the engine without its callback */
static void
DropRequest(DmIoPgRequest *r)
{
	Session    *s = (Session *) r->session;

	ClearResults(r);
	if (r->res)
		PQclear(r->res);
	r->res = NULL;
	if (r->dns != NULL)
		DmResolveRelease(r->dns);
	r->dns = NULL;
	if (s != NULL)
		CloseSession(s, true);
	r->session = NULL;
	r->state = RS_DONE;
	r->next = NULL;
}

/*
 * DmIoPgCancel
 *		See io_engine.h.  A request not known to the engine (never started,
 *		or already called back) is left alone.
 */
void
DmIoPgCancel(DmIoPgRequest *req)
{
	DmIoPgRequest **p;

	for (p = &Active; *p != NULL; p = &(*p)->next)
		if (*p == req)
		{
			*p = req->next;
			DropRequest(req);
			return;
		}
	for (p = &Finished; *p != NULL; p = &(*p)->next)
		if (*p == req)
		{
			*p = req->next;
			DropRequest(req);
			return;
		}
}

/*
 * DmIoHttpRequestCreate
 *		See io_engine.h.
 */
DmIoHttpRequest *
DmIoHttpRequestCreate(MemoryContext cxt)
{
	DmIoHttpRequest *h = MemoryContextAllocZero(cxt, sizeof(DmIoHttpRequest));

	h->cxt = cxt;
	return h;
}

/*
 * DmIoHttpStart
 *		See io_engine.h.  Raises only when libcurl cannot be initialised or
 *		out of memory; a request that cannot be made (a bad URL) finishes at
 *		once with resp.error set.
 */
void
DmIoHttpStart(DmIoHttpRequest *h)
{
	MemoryContext old;

	EnsureContext();
	if (Http == NULL)
		Http = DmHttpMultiCreate();
	old = MemoryContextSwitchTo(h->cxt);
	DmHttpMultiAdd(Http, &h->http, &h->resp);
	MemoryContextSwitchTo(old);
	h->started = true;
	h->next = HttpActive;
	HttpActive = h;
	CollectHttpDone();
}

/*
 * DmIoHttpCancel
 *		See io_engine.h.
 */
void
DmIoHttpCancel(DmIoHttpRequest *req)
{
	DmIoHttpRequest **p;

	for (p = &HttpActive; *p != NULL; p = &(*p)->next)
		if (*p == req)
		{
			*p = req->next;
			if (Http)
				DmHttpMultiCancel(Http, &req->resp);
			req->next = NULL;
			req->started = false;
			return;
		}
	for (p = &HttpFinished; *p != NULL; p = &(*p)->next)
		if (*p == req)
		{
			*p = req->next;
			req->next = NULL;
			req->started = false;
			return;
		}
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

		Active = r->next;
		DropRequest(r);
	}
	while (Finished != NULL)
	{
		DmIoPgRequest *r = Finished;

		Finished = r->next;
		DropRequest(r);
	}
	while (Idle != NULL)
	{
		Session    *s = Idle;

		Idle = s->next;
		CloseSession(s, false);
	}
	/* transfers are dropped without touching their answers */
	if (Http)
		DmHttpMultiDestroy(Http);
	Http = NULL;
	HttpActive = HttpFinished = NULL;
	DmIoSocketDiscardAll();
	while (Timers != NULL)
		DmIoTimerCancel(Timers);
	while (TimersFired != NULL)
		DmIoTimerCancel(TimersFired);
}

/*
 * DmIoTimerStart
 *		See io_engine.h.  A timer armed already is moved to the new time.
 */
void
DmIoTimerStart(DmIoTimer *timer, long delay_ms)
{
	DmIoTimerCancel(timer);
	timer->at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(delay_ms, 0));
	timer->armed = true;
	timer->next = Timers;
	Timers = timer;
}

/*
 * DmIoTimerCancel
 *		See io_engine.h.  A timer not armed (or fired and called back) is
 *		left alone.
 */
void
DmIoTimerCancel(DmIoTimer *timer)
{
	DmIoTimer **p;

	for (p = &Timers; *p != NULL; p = &(*p)->next)
		if (*p == timer)
		{
			*p = timer->next;
			break;
		}
	for (p = &TimersFired; *p != NULL; p = &(*p)->next)
		if (*p == timer)
		{
			*p = timer->next;
			break;
		}
	timer->next = NULL;
	timer->armed = false;
}
