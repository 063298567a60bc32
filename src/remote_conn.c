/*-------------------------------------------------------------------------
 *
 * remote_conn.c
 *	  Hardened libpq connections to managed nodes (see remote_conn.h).
 *
 * Every wait here is WaitLatchOrSocket on the connection's socket and the
 * process latch with a deadline, so a query cancel, a SIGTERM or a
 * postmaster death ends it at once, and a node that never answers costs at
 * most the caller's timeout.  Nothing here blocks outside such a wait:
 *
 *	 - names: libpq (PostgreSQL 15) resolves host names synchronously inside
 *	   PQconnectStart/PQconnectPoll, so io_dns.c resolves them first (with a
 *	   deadline, interruptibly) and libpq gets numeric hostaddr entries;
 *	 - sending: the connection is non-blocking once logged in, and the
 *	   output is flushed under the same waits (a node that stops reading
 *	   cannot block a send);
 *	 - results: PQgetResult is only called when PQisBusy says it will not
 *	   block, also when draining the results that follow an error;
 *	 - cancelling: there is no cancel request.  PG15's PQcancel opens a
 *	   blocking connection and then waits, with no limit, for the server to
 *	   close it: a node that accepts the cancel connection and holds it open
 *	   froze the worker for good (and made it deaf to pg_terminate_backend:
 *	   the wait retries on EINTR).  libpq 15 offers no non-blocking cancel
 *	   (that came in 17), and sending our own CancelRequest would need the
 *	   cancel key, which libpq 15 keeps in an opaque struct.  So a statement
 *	   that runs past its deadline, or is interrupted, abandons the
 *	   connection: the socket is shut down at once (nothing waits for the
 *	   node) and libpq marks the connection bad.  The node then ends the
 *	   statement on its own: every session is hardened at login with
 *	   client_connection_check_interval (1 s; PostgreSQL 14 and later), so a
 *	   running or lock-waiting statement notices the vanished client within
 *	   a second, and with statement_timeout and
 *	   idle_in_transaction_session_timeout set to the caller's budget plus a
 *	   second, which bound it even on older nodes or when the check cannot
 *	   see the disconnection.  The cost is a new connection after a timeout,
 *	   which every caller already handles (mirror actions connect per
 *	   action; promotion reconnects when PQstatus is bad).
 *	 - the network: TCP keepalives (idle 10 s, interval 5 s, 3 probes) and
 *	   tcp_user_timeout (25 s) let the kernel drop dead peers of idle or
 *	   sending connections; libpq's connect_timeout is passed too (for its
 *	   own blocking paths; ours is the deadline above).
 *
 * lock_timeout is not a session setting: status reads time the latency
 * probe, whose lock waits are the measurement, and promotion steps may wait
 * for locks within promote_timeout.  Sessions that run mirror actions (DDL
 * on the node) get DM_REMOTE_ACTION_LOCK_TIMEOUT_MS through
 * DmRemoteNodeSession, so that a DDL queued behind a long transaction does
 * not hold the application's queries behind it for remote_timeout.
 *
 * Remote errors are re-raised with their own SQLSTATE and an errcontext
 * naming the node and the command; connection strings never appear in
 * messages (nodes take passwords from a passfile), host names only in the
 * details, which only admins see.
 *
 * libpq memory (PGconn, PGresult) is malloc'd: callers free it, in
 * PG_FINALLY blocks where an error can intervene.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "endpoint.h"
#include "io_dns.h"
#include "remote_conn.h"

/* TCP settings given to libpq for every node connection */
#define DM_KEEPALIVES_IDLE		"10"
#define DM_KEEPALIVES_INTERVAL	"5"
#define DM_KEEPALIVES_COUNT		"3"
#define DM_TCP_USER_TIMEOUT		"25000"

/* how often a node checks that we are still there during a statement */
#define DM_CLIENT_CHECK_INTERVAL "1000"

static PGconn *ConnectHardened(const char *conninfo, const char *label,
							   int timeout_ms);
static void ReportRemoteError(PGresult *res, PGconn *conn, const char *label,
							  const char *sql);

/* milliseconds left before deadline, at least 0 */
static long
RemainingMs(TimestampTz deadline)
{
	long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													 deadline);

	return ms < 0 ? 0 : ms;
}

/* libpq messages end with a newline: a palloc'd copy without it */
static char *
Chomp(const char *msg)
{
	char	   *s = pstrdup(msg ? msg : "");
	size_t		len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = '\0';
	return s;
}

/*
 * WaitOnSocket
 *		Wait for socket_events on the connection, the latch or the deadline;
 *		serves interrupts (which may raise).  Returns the events seen, 0 when
 *		the deadline has passed.
 */
static int
WaitOnSocket(PGconn *conn, int socket_events, TimestampTz deadline)
{
	long		left = RemainingMs(deadline);
	int			rc;

	if (left <= 0)
		return 0;
	rc = WaitLatchOrSocket(MyLatch,
						   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | socket_events,
						   PQsocket(conn), left, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return rc & ~(WL_LATCH_SET | WL_TIMEOUT);
}

/*
 * DmRemoteHardenSql
 *		The session set-up statement of a new connection (see the file
 *		header), with one parameter: the statement and idle-in-transaction
 *		budget in ms (DmRemoteSessionBudgetMs).  A constant string.
 */
const char *
DmRemoteHardenSql(PGconn *conn)
{
#define DM_HARDEN_SQL \
	"SELECT pg_catalog.set_config('search_path', 'pg_catalog', false), " \
	"pg_catalog.set_config('datestyle', 'ISO', false), " \
	"pg_catalog.set_config('timezone', 'UTC', false), " \
	"pg_catalog.set_config('intervalstyle', 'postgres', false), " \
	"pg_catalog.set_config('default_transaction_read_only', 'off', false), " \
	"pg_catalog.set_config('statement_timeout', $1, false), " \
	"pg_catalog.set_config('idle_in_transaction_session_timeout', $1, false)"

	/* client_connection_check_interval exists from PostgreSQL 14 on */
	return PQserverVersion(conn) >= 140000 ?
		DM_HARDEN_SQL ", pg_catalog.set_config('client_connection_check_interval', '"
		DM_CLIENT_CHECK_INTERVAL "', false)" :
		DM_HARDEN_SQL;
#undef DM_HARDEN_SQL
}

/*
 * DmRemoteSessionBudgetMs
 *		The statement_timeout of a session connected with timeout_ms: the
 *		longest wait any caller gives a statement, plus a second, so that
 *		the node never ends a statement its client still waits for.
 */
int
DmRemoteSessionBudgetMs(int timeout_ms)
{
	return Max(DmRemoteTimeoutMs, timeout_ms) + 1000;
}

/*
 * DmRemoteConnectStart
 *		Resolve the conninfo's host names before deadline (io_dns.c) and
 *		start a hardened connection attempt (DmRemoteConnectStartResolved).
 *		Raises when the conninfo is refused, names do not resolve in time,
 *		or on interrupts.
 */
PGconn *
DmRemoteConnectStart(const char *conninfo, const char *label,
					 TimestampTz deadline, int timeout_ms)
{
	char	   *hosts = NULL;
	char	   *hostaddrs = NULL;
	char	   *ports = NULL;

	/* defence in depth: the keyword allow-list of endpoint.c, again here */
	DmCheckConninfo(conninfo);
	if (!DmResolveConninfo(conninfo, label, deadline, &hosts, &hostaddrs, &ports))
		hosts = hostaddrs = ports = NULL;
	return DmRemoteConnectStartResolved(conninfo, label, timeout_ms,
										hosts, hostaddrs, ports, NULL);
}

/*
 * DmRemoteConnectStartResolved
 *		Start a hardened, non-blocking connection attempt with the host,
 *		hostaddr and port lists of a finished name resolution (hosts NULL:
 *		nothing was resolved; ports NULL: the conninfo's).  Returns the
 *		PGconn, which may already be CONNECTION_BAD (the caller reports
 *		PQerrorMessage).  timeout_ms becomes libpq's connect_timeout;
 *		application_name names the session on the node (NULL:
 *		"driftmirror").  The caller has checked the conninfo
 *		(DmCheckConninfo).
 */
PGconn *
DmRemoteConnectStartResolved(const char *conninfo, const char *label,
							 int timeout_ms, const char *hosts,
							 const char *hostaddrs, const char *ports,
							 const char *application_name)
{
	const char *keywords[16];
	const char *values[16];
	int			n = 0;
	char		connect_timeout[16];
	PGconn	   *conn;

	/* later keywords override what the conninfo (dbname) says */
	keywords[n] = "dbname";
	values[n++] = conninfo;
	if (hosts != NULL)
	{
		keywords[n] = "host";
		values[n++] = hosts;
		keywords[n] = "hostaddr";
		values[n++] = hostaddrs;
		if (ports != NULL)
		{
			keywords[n] = "port";
			values[n++] = ports;
		}
	}
	snprintf(connect_timeout, sizeof(connect_timeout), "%d",
			 Max(2, (timeout_ms + 999) / 1000));
	keywords[n] = "application_name";
	values[n++] = application_name ? application_name : "driftmirror";
	keywords[n] = "connect_timeout";
	values[n++] = connect_timeout;
	keywords[n] = "keepalives";
	values[n++] = "1";
	keywords[n] = "keepalives_idle";
	values[n++] = DM_KEEPALIVES_IDLE;
	keywords[n] = "keepalives_interval";
	values[n++] = DM_KEEPALIVES_INTERVAL;
	keywords[n] = "keepalives_count";
	values[n++] = DM_KEEPALIVES_COUNT;
	keywords[n] = "tcp_user_timeout";
	values[n++] = DM_TCP_USER_TIMEOUT;
	keywords[n] = NULL;
	values[n] = NULL;
	Assert(n < lengthof(keywords));

	conn = PQconnectStartParams(keywords, values, 1);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to node \"%s\"", label)));
	return conn;
}

/*
 * ConnectBy
 *		Connect before deadline, without running anything; the connection
 *		is non-blocking on return.  Raises an error (nothing left open) on
 *		failure, timeout or interrupt.
 */
static PGconn *
ConnectBy(const char *conninfo, const char *label, int timeout_ms,
		  TimestampTz deadline)
{
	PGconn	   *volatile conn = DmRemoteConnectStart(conninfo, label, deadline,
													 timeout_ms);

	PG_TRY();
	{
		PostgresPollingStatusType st = PGRES_POLLING_WRITING;

		if (PQstatus(conn) == CONNECTION_BAD)
			st = PGRES_POLLING_FAILED;

		while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
		{
			int			rc;

			rc = WaitOnSocket(conn, st == PGRES_POLLING_READING ?
							  WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
							  deadline);
			if (rc == 0 && RemainingMs(deadline) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("could not connect to node \"%s\": timed out after %d ms",
								label, timeout_ms)));
			if (rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
				st = PQconnectPoll(conn);
		}

		if (st == PGRES_POLLING_FAILED || PQstatus(conn) != CONNECTION_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to node \"%s\"", label),
					 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
					 DmPassfileHint(PQerrorMessage(conn))));

		if (PQsetnonblocking(conn, 1) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to node \"%s\"", label),
					 errdetail_internal("%s", Chomp(PQerrorMessage(conn)))));
	}
	PG_CATCH();
	{
		DmRemoteAbandon(conn);
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();

	return conn;
}

/*
 * DmRemoteConnect
 *		Connect to a node and harden the session, all before one deadline.
 *		Returns the connection; raises an error (nothing left open) on
 *		failure, timeout or interrupt.
 */
PGconn *
DmRemoteConnect(const char *conninfo, const char *label, int timeout)
{
	return ConnectHardened(conninfo, label, timeout > 0 ? timeout : DmConnectTimeoutMs);
}

/* ConnectHardened: DmRemoteConnect with the timeout resolved */
static PGconn *
ConnectHardened(const char *conninfo, const char *label, int timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	PGconn	   *volatile conn = ConnectBy(conninfo, label, timeout_ms, deadline);

	PG_TRY();
	{
		char		budget[32];
		const char *values[1] = {budget};

		/*
		 * The set-up counts against the connection's deadline: a node that
		 * logs us in and then never answers fails here, in time.
		 */
		snprintf(budget, sizeof(budget), "%d", DmRemoteSessionBudgetMs(timeout_ms));
		PQclear(DmRemoteExec(conn, label, DmRemoteHardenSql(conn), 1, values,
							 Max(RemainingMs(deadline), 1)));
	}
	PG_CATCH();
	{
		DmRemoteAbandon(conn);
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return conn;
}

/*
 * DmRemoteConnectPlain
 *		Connect without running anything: for servers that speak the
 *		protocol but are not PostgreSQL (the pgbouncer admin console).
 *		Returns the (non-blocking) connection; raises an error (nothing left
 *		open) on failure, timeout or interrupt.
 */
PGconn *
DmRemoteConnectPlain(const char *conninfo, const char *label, int timeout)
{
	int			timeout_ms = timeout > 0 ? timeout : DmConnectTimeoutMs;

	return ConnectBy(conninfo, label, timeout_ms,
					 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms));
}

/*
 * DmRemoteClose
 *		Close a connection; NULL is ignored.  Does not block: the connection
 *		is non-blocking, so the goodbye message is sent if it fits.
 */
void
DmRemoteClose(PGconn *conn)
{
	if (conn != NULL)
		PQfinish(conn);
}

/*
 * DmRemoteAbandon
 *		Cut a connection whose node did not answer in time (see the file
 *		header: no cancel request).  The socket is shut down without
 *		waiting, and libpq, reading the end of the stream, marks the
 *		connection bad.  Never raises; the caller still PQfinish()es.
 */
void
DmRemoteAbandon(PGconn *conn)
{
	pgsocket	sock = PQsocket(conn);
	int			i;

	if (sock == PGINVALID_SOCKET)
		return;
	(void) shutdown(sock, SHUT_RDWR);
	/* what was already buffered comes first, then the end of the stream */
	for (i = 0; i < 16 && PQstatus(conn) == CONNECTION_OK; i++)
		if (!PQconsumeInput(conn))
			break;
}

/*
 * ReportRemoteError
 *		Raise a remote error with its own SQLSTATE; frees res.
 */
static void
ReportRemoteError(PGresult *res, PGconn *conn, const char *label,
				  const char *sql)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	int			code = ERRCODE_CONNECTION_FAILURE;
	char	   *msg;
	char	   *det = detail ? pstrdup(detail) : NULL;
	char	   *hnt = hint ? pstrdup(hint) : NULL;

	if (sqlstate != NULL && strlen(sqlstate) == 5)
		code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
							 sqlstate[3], sqlstate[4]);
	msg = Chomp(primary ? primary : PQerrorMessage(conn));
	if (msg[0] == '\0')
		msg = pstrdup("unknown error");
	if (res)
		PQclear(res);

	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", msg),
			 det ? errdetail_internal("%s", det) : 0,
			 hnt ? errhint("%s", hnt) : 0,
			 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
}

/* LostConnection: raise the error of a connection that broke */
static void
LostConnection(PGconn *conn, const char *label, const char *sql)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("lost the connection to node \"%s\"", label),
			 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
			 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
}

/* TimedOut: raise the error of a command that ran out of time */
static void
TimedOut(const char *label, const char *sql, int timeout_ms)
{
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("command on node \"%s\" timed out after %d ms",
					label, timeout_ms),
			 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
}

/*
 * SendCommand
 *		Send sql and flush it to the node before deadline.  Raises (the
 *		connection is abandoned).
 */
static void
SendCommand(PGconn *conn, const char *label, const char *sql,
			int nparams, const char *const *values,
			TimestampTz deadline, int timeout_ms)
{
	int			sent;

	if (PQstatus(conn) != CONNECTION_OK)
		LostConnection(conn, label, sql);
	if (nparams > 0)
		sent = PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	else
		sent = PQsendQuery(conn, sql);
	if (!sent)
	{
		char	   *why = Chomp(PQerrorMessage(conn));

		DmRemoteAbandon(conn);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not send a command to node \"%s\"", label),
				 errdetail_internal("%s", why),
				 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
	}

	PG_TRY();
	{
		int			flushed;

		/* the rest of the command, as the node reads it */
		while ((flushed = PQflush(conn)) != 0)
		{
			int			rc;

			if (flushed < 0)
				LostConnection(conn, label, sql);
			rc = WaitOnSocket(conn, WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE, deadline);
			if (rc == 0 && RemainingMs(deadline) <= 0)
				TimedOut(label, sql, timeout_ms);
			if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
				LostConnection(conn, label, sql);
		}
	}
	PG_CATCH();
	{
		DmRemoteAbandon(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * CollectResult
 *		Every result of the command sent last, before deadline; returns
 *		the last one.  With all != NULL, the results before it are kept
 *		there too (in order; the caller PQclear()s them).  Raises as
 *		DmRemoteExec.
 */
static PGresult *
CollectResult(PGconn *conn, const char *label, const char *sql,
			  TimestampTz deadline, int timeout_ms, List **all)
{
	PGresult   *volatile last = NULL;
	PGresult   *volatile failed = NULL;
	List	   *volatile kept = NIL;

	PG_TRY();
	{
		/* every result, without ever letting PQgetResult block */
		for (;;)
		{
			PGresult   *res;

			while (PQisBusy(conn))
			{
				int			rc = WaitOnSocket(conn, WL_SOCKET_READABLE, deadline);

				if (rc == 0 && RemainingMs(deadline) <= 0)
					TimedOut(label, sql, timeout_ms);
				if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
					LostConnection(conn, label, sql);
			}
			res = PQgetResult(conn);
			if (res == NULL)
				break;
			if (PQresultStatus(res) != PGRES_COMMAND_OK &&
				PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				/* keep the first error; drain the rest */
				if (failed == NULL)
					failed = res;
				else
					PQclear(res);
				continue;
			}
			if (last != NULL && all != NULL)
				kept = lappend(kept, last);
			else if (last != NULL)
				PQclear(last);
			last = res;
		}
	}
	PG_CATCH();
	{
		ListCell   *lc;

		foreach(lc, kept)
			PQclear(lfirst(lc));
		if (last)
			PQclear(last);
		if (failed)
			PQclear(failed);
		DmRemoteAbandon(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (failed != NULL || last == NULL)
	{
		ListCell   *lc;

		foreach(lc, kept)
			PQclear(lfirst(lc));
		list_free(kept);
	}
	if (failed != NULL)
	{
		if (last)
			PQclear(last);
		ReportRemoteError(failed, conn, label, sql);
	}
	if (last == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no result from node \"%s\"", label),
				 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
				 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
	if (all != NULL)
		*all = lappend(kept, last);
	return last;
}

/*
 * DmRemoteExec
 *		Run sql on the node; returns the (last) result, which the caller
 *		PQclear()s.  Raises the remote error (the connection stays usable),
 *		or an error on timeout, interrupt or lost connection (the connection
 *		is abandoned).
 */
PGresult *
DmRemoteExec(PGconn *conn, const char *label, const char *sql,
			 int nparams, const char *const *values, int timeout)
{
	int			timeout_ms = timeout > 0 ? timeout : DmRemoteTimeoutMs;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	SendCommand(conn, label, sql, nparams, values, deadline, timeout_ms);
	return CollectResult(conn, label, sql, deadline, timeout_ms, NULL);
}

/*
 * DmRemoteExecAll
 *		Run sql, several statements in one message (one round trip: the
 *		node runs them in order and stops at the first error), and return
 *		the result of every statement, in order, as a List of PGresult*
 *		the caller PQclear()s.  Raises as DmRemoteExec: an error of any
 *		statement frees them all.
 */
List *
DmRemoteExecAll(PGconn *conn, const char *label, const char *sql, int timeout)
{
	int			timeout_ms = timeout > 0 ? timeout : DmRemoteTimeoutMs;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	List	   *all = NIL;

	SendCommand(conn, label, sql, 0, NULL, deadline, timeout_ms);
	(void) CollectResult(conn, label, sql, deadline, timeout_ms, &all);
	return all;
}

/*
 * DmRemoteSend, DmRemoteCollect
 *		DmRemoteExec in two halves, so that the caller can work elsewhere
 *		(other nodes, the control database) while the node runs sql: send
 *		now, collect the result later (nothing else may be sent on conn in
 *		between).  Each half has its own timeout; both raise as
 *		DmRemoteExec.  The caller PQclear()s the result.
 */
void
DmRemoteSend(PGconn *conn, const char *label, const char *sql,
			 int nparams, const char *const *values, int timeout)
{
	int			timeout_ms = timeout > 0 ? timeout : DmRemoteTimeoutMs;

	SendCommand(conn, label, sql, nparams, values,
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms), timeout_ms);
}

PGresult *
DmRemoteCollect(PGconn *conn, const char *label, const char *sql, int timeout)
{
	int			timeout_ms = timeout > 0 ? timeout : DmRemoteTimeoutMs;

	return CollectResult(conn, label, sql,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms), timeout_ms,
						 NULL);
}

/*
 * DmRemoteCommand
 *		Run sql and discard its result.  Raises an error as DmRemoteExec.
 */
void
DmRemoteCommand(PGconn *conn, const char *label, const char *sql,
				int timeout_ms)
{
	PQclear(DmRemoteExec(conn, label, sql, 0, NULL, timeout_ms));
}

/*
 * DmRemoteValue
 *		The first column of the first row, palloc'd, or NULL (no row or a
 *		null value).  Raises an error as DmRemoteExec.
 */
char *
DmRemoteValue(PGconn *conn, const char *label, const char *sql,
			  int nparams, const char *const *values, int timeout_ms)
{
	PGresult   *res = DmRemoteExec(conn, label, sql, nparams, values, timeout_ms);
	char	   *val = NULL;

	if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
		val = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return val;
}

/*
 * DmRemoteNodeSessionSql, DmRemoteNodeSession
 *		Make sure the driftmirror_node extension exists in the remote
 *		database and mark the session as driftmirror's own, so that the
 *		write fence lets it through; with lock_timeout_ms > 0, also limit
 *		the session's lock waits.  Needs a superuser connection.  The first
 *		returns the statement (palloc'd), the second runs it, raising an
 *		error as DmRemoteExec.
 */
char *
DmRemoteNodeSessionSql(int lock_timeout_ms)
{
	return psprintf("DO $dm$ BEGIN "
					"IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension "
					"WHERE extname OPERATOR(pg_catalog.=) 'driftmirror_node') THEN "
					"CREATE EXTENSION driftmirror_node; END IF; "
					"PERFORM driftmirror_node.session_bypass(); "
					"IF %d > 0 THEN PERFORM pg_catalog.set_config('lock_timeout', '%d', false); END IF; "
					"END $dm$",
					lock_timeout_ms, lock_timeout_ms);
}

void
DmRemoteNodeSession(PGconn *conn, const char *label, int lock_timeout_ms,
					int timeout_ms)
{
	DmRemoteCommand(conn, label, DmRemoteNodeSessionSql(lock_timeout_ms),
					timeout_ms);
}
