/*-------------------------------------------------------------------------
 *
 * remote_conn.c
 *	  Interruptible libpq connections to managed nodes (see remote_conn.h).
 *
 * Every wait here is WaitLatchOrSocket on the connection's socket with a
 * deadline, so a query cancel, a SIGTERM or a postmaster death interrupts
 * it; an interrupted remote statement is cancelled on the remote side
 * before the error propagates.  Remote errors are re-raised with their own
 * SQLSTATE and an errcontext naming the node and the command; connection
 * strings never appear in messages (nodes take passwords from a passfile).
 *
 * libpq memory (PGconn, PGresult) is malloc'd: callers free it, in
 * PG_FINALLY blocks where an error can intervene.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "endpoint.h"
#include "remote_conn.h"

static void CancelRemote(PGconn *conn);
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
 * DmRemoteConnect
 *		Connect to a node and harden the session.  Returns the connection;
 *		raises an error (nothing left open) on failure, timeout or
 *		interrupt.
 */
PGconn *
DmRemoteConnect(const char *conninfo, const char *label, int timeout)
{
	PGconn	   *volatile conn = DmRemoteConnectPlain(conninfo, label, timeout);

	PG_TRY();
	{
		/* harden the session: our statements qualify every name anyway */
		DmRemoteCommand(conn, label,
						"SELECT pg_catalog.set_config('search_path', 'pg_catalog', false), "
						"pg_catalog.set_config('datestyle', 'ISO', false), "
						"pg_catalog.set_config('timezone', 'UTC', false), "
						"pg_catalog.set_config('intervalstyle', 'postgres', false), "
						"pg_catalog.set_config('default_transaction_read_only', 'off', false)");
	}
	PG_CATCH();
	{
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
 *		Returns the connection; raises an error (nothing left open) on
 *		failure, timeout or interrupt.
 */
PGconn *
DmRemoteConnectPlain(const char *conninfo, const char *label, int timeout)
{
	volatile int timeout_ms = timeout > 0 ? timeout : DmConnectTimeoutMs;
	const char *keywords[] = {"dbname", "application_name", NULL};
	const char *values[] = {conninfo, "driftmirror", NULL};
	PGconn	   *volatile conn;
	TimestampTz deadline;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	/* defence in depth: the keyword allow-list of endpoint.c, again here */
	DmCheckConninfo(conninfo);

	conn = PQconnectStartParams(keywords, values, 1);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to node \"%s\"", label)));

	PG_TRY();
	{
		PostgresPollingStatusType st = PGRES_POLLING_WRITING;

		if (PQstatus(conn) == CONNECTION_BAD)
			st = PGRES_POLLING_FAILED;

		while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
		{
			int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
			int			rc;
			long		left = RemainingMs(deadline);

			if (left <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("could not connect to node \"%s\": timed out after %d ms",
								label, timeout_ms)));
			events |= (st == PGRES_POLLING_READING) ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
			rc = WaitLatchOrSocket(MyLatch, events, PQsocket(conn), left,
								   PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
			if (rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
				st = PQconnectPoll(conn);
		}

		if (st == PGRES_POLLING_FAILED || PQstatus(conn) != CONNECTION_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to node \"%s\"", label),
					 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
					 DmPassfileHint(PQerrorMessage(conn))));
	}
	PG_CATCH();
	{
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();

	return conn;
}

/*
 * DmRemoteClose
 *		Close a connection; NULL is ignored.
 */
void
DmRemoteClose(PGconn *conn)
{
	if (conn != NULL)
		PQfinish(conn);
}

/*
 * CancelRemote
 *		Best effort: ask the node to cancel the running statement and drain
 *		the results for a short while.  Never raises an error.
 */
static void
CancelRemote(PGconn *conn)
{
	PGcancel   *cancel = PQgetCancel(conn);
	char		errbuf[256];
	PGresult   *res;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 2000);

	if (cancel != NULL)
	{
		(void) PQcancel(cancel, errbuf, sizeof(errbuf));
		PQfreeCancel(cancel);
	}
	/* drain without blocking forever; the caller closes the connection */
	while (PQisBusy(conn) && RemainingMs(deadline) > 0)
	{
		int			rc = WaitLatchOrSocket(NULL, WL_SOCKET_READABLE | WL_TIMEOUT |
										   WL_EXIT_ON_PM_DEATH,
										   PQsocket(conn), RemainingMs(deadline),
										   PG_WAIT_EXTENSION);

		if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
			return;
	}
	if (!PQisBusy(conn))
		while ((res = PQgetResult(conn)) != NULL)
			PQclear(res);
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

/*
 * DmRemoteExec
 *		Run sql on the node; returns the (last) result, which the caller
 *		PQclear()s.  Raises the remote error, or an error on timeout,
 *		interrupt or lost connection (the remote statement is cancelled).
 */
PGresult *
DmRemoteExec(PGconn *conn, const char *label, const char *sql,
			 int nparams, const char *const *values, int timeout)
{
	volatile int timeout_ms = timeout > 0 ? timeout : DmRemoteTimeoutMs;
	TimestampTz deadline;
	PGresult   *volatile last = NULL;
	int			sent;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	if (nparams > 0)
		sent = PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	else
		sent = PQsendQuery(conn, sql);
	if (!sent)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not send a command to node \"%s\"", label),
				 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
				 errcontext("remote SQL command on node \"%s\": %s", label, sql)));

	PG_TRY();
	{
		for (;;)
		{
			PGresult   *res;

			while (PQisBusy(conn))
			{
				long		left = RemainingMs(deadline);
				int			rc;

				if (left <= 0)
					ereport(ERROR,
							(errcode(ERRCODE_QUERY_CANCELED),
							 errmsg("command on node \"%s\" timed out after %d ms",
									label, timeout_ms),
							 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
				rc = WaitLatchOrSocket(MyLatch,
									   WL_LATCH_SET | WL_SOCKET_READABLE |
									   WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									   PQsocket(conn), left, PG_WAIT_EXTENSION);
				if (rc & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					CHECK_FOR_INTERRUPTS();
				}
				if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
					ereport(ERROR,
							(errcode(ERRCODE_CONNECTION_FAILURE),
							 errmsg("lost the connection to node \"%s\"", label),
							 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
							 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
			}
			res = PQgetResult(conn);
			if (res == NULL)
				break;
			if (PQresultStatus(res) != PGRES_COMMAND_OK &&
				PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				/* drain the rest so the connection stays usable */
				PGresult   *more;

				while ((more = PQgetResult(conn)) != NULL)
					PQclear(more);
				if (last)
					PQclear(last);
				last = NULL;
				ReportRemoteError(res, conn, label, sql);
			}
			if (last)
				PQclear(last);
			last = res;
		}
	}
	PG_CATCH();
	{
		if (last)
			PQclear(last);
		if (PQisBusy(conn))
			CancelRemote(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (last == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no result from node \"%s\"", label),
				 errdetail_internal("%s", Chomp(PQerrorMessage(conn))),
				 errcontext("remote SQL command on node \"%s\": %s", label, sql)));
	return last;
}

/*
 * DmRemoteCommand
 *		Run sql and discard its result.  Raises an error as DmRemoteExec.
 */
void
DmRemoteCommand(PGconn *conn, const char *label, const char *sql)
{
	PQclear(DmRemoteExec(conn, label, sql, 0, NULL, 0));
}

/*
 * DmRemoteValue
 *		The first column of the first row, palloc'd, or NULL (no row or a
 *		null value).
 */
char *
DmRemoteValue(PGconn *conn, const char *label, const char *sql,
			  int nparams, const char *const *values)
{
	PGresult   *res = DmRemoteExec(conn, label, sql, nparams, values, 0);
	char	   *val = NULL;

	if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
		val = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return val;
}

/*
 * DmRemoteNodeSession
 *		Make sure the driftmirror_node extension exists in the remote
 *		database and mark the session as driftmirror's own, so that the
 *		write fence lets it through.  Needs a superuser connection.
 */
void
DmRemoteNodeSession(PGconn *conn, const char *label)
{
	DmRemoteCommand(conn, label,
					"DO $dm$ BEGIN "
					"IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension "
					"WHERE extname OPERATOR(pg_catalog.=) 'driftmirror_node') THEN "
					"CREATE EXTENSION driftmirror_node; END IF; "
					"PERFORM driftmirror_node.session_bypass(); END $dm$");
}
