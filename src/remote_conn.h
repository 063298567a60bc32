/*-------------------------------------------------------------------------
 *
 * remote_conn.h
 *	  Hardened libpq connections to managed nodes: every wait with a
 *	  deadline, every wait interruptible, nothing that can block.
 *
 * Interface (used by mirrors and promotion):
 *
 *	 conn = DmRemoteConnect(conninfo, label, timeout_ms)
 *		Connect with a deadline (timeout_ms <= 0: driftmirror.connect_timeout)
 *		covering name resolution, the login and the session set-up.  The
 *		session is hardened (search_path = pg_catalog, application_name
 *		'driftmirror', DateStyle ISO, TimeZone UTC, statement_timeout and
 *		idle_in_transaction_session_timeout, client_connection_check_interval,
 *		TCP keepalives and tcp_user_timeout) and non-blocking.  Raises
 *		ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION naming the node
 *		by its label, never by its conninfo.
 *	 res = DmRemoteExec(conn, label, sql, nparams, values, timeout_ms)
 *		Run one statement (parameters as text, NULL allowed; with nparams
 *		0 the text may hold several statements and the last result is
 *		returned).  Waits on the latch and the socket until timeout_ms
 *		(<= 0: driftmirror.remote_timeout).  Remote errors are re-raised with
 *		their SQLSTATE, message, detail and hint, plus an errcontext naming
 *		the node and the command, and leave the connection usable.  A
 *		timeout (ERRCODE_QUERY_CANCELED), an interrupt or a lost connection
 *		abandons the connection: it is cut at once, PQstatus() is then
 *		CONNECTION_BAD, and the caller reconnects or closes it.  Returns a
 *		PGresult the caller PQclear()s.
 *	 DmRemoteSend(conn, label, sql, timeout_ms); ... ;
 *	 res = DmRemoteCollect(conn, label, sql, timeout_ms)
 *		DmRemoteExec in two halves (no parameters): the node runs sql while
 *		the caller does other work; nothing else is sent on conn between
 *		them; each half has its own timeout
 *	 DmRemoteCommand(conn, label, sql, timeout_ms)   exec, discard the result
 *	 val = DmRemoteValue(conn, label, sql, nparams, values, timeout_ms)
 *		first column of the first row, palloc'd, or NULL
 *	 DmRemoteNodeSession(conn, label, lock_timeout_ms, timeout_ms)
 *		create extension driftmirror_node if missing, mark the session as
 *		driftmirror's own (passes the write fence) and, with
 *		lock_timeout_ms > 0, set the session's lock_timeout
 *	 DmRemoteClose(conn)                       PQfinish; NULL is fine
 *
 * Pieces for asynchronous callers (io_engine.c), which drive the same
 * connections in their own state machines:
 *	 conn = DmRemoteConnectStart(conninfo, label, deadline, timeout_ms)
 *		names resolved before deadline, hardened libpq keywords, the attempt
 *		started (poll it with PQconnectPoll; it may be CONNECTION_BAD)
 *	 conn = DmRemoteConnectStartResolved(conninfo, label, timeout_ms,
 *										 hosts, hostaddrs, ports, appname)
 *		the same after a name resolution the caller drove (io_dns.h), the
 *		session named appname on the node (NULL: "driftmirror")
 *	 DmRemoteHardenSql(conn), DmRemoteSessionBudgetMs(timeout_ms)
 *		the set-up statement of a new session and its one parameter
 *	 DmRemoteNodeSessionSql(lock_timeout_ms)  what DmRemoteNodeSession runs
 *	 DmRemoteAbandon(conn)   cut a connection at once (no cancel request)
 *
 * Callers must close connections on error: wrap the use in
 * PG_TRY()/PG_FINALLY() with the PGconn pointer declared volatile.  Never
 * call these with a transaction whose locks others wait for: the waits are
 * bounded, but a transaction held across them is still held.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_REMOTE_CONN_H
#define DM_REMOTE_CONN_H

#include "datatype/timestamp.h"
#include "libpq-fe.h"
#include "nodes/pg_list.h"

/* lock_timeout of the sessions that run mirror actions (not status reads) */
#define DM_REMOTE_ACTION_LOCK_TIMEOUT_MS 5000

extern PGconn *DmRemoteConnect(const char *conninfo, const char *label,
							   int timeout_ms);
extern PGconn *DmRemoteConnectPlain(const char *conninfo, const char *label,
									int timeout_ms);
extern PGresult *DmRemoteExec(PGconn *conn, const char *label, const char *sql,
							  int nparams, const char *const *values,
							  int timeout_ms);
extern List *DmRemoteExecAll(PGconn *conn, const char *label, const char *sql,
							 int timeout_ms);
extern void DmRemoteSend(PGconn *conn, const char *label, const char *sql,
						 int nparams, const char *const *values, int timeout_ms);
extern PGresult *DmRemoteCollect(PGconn *conn, const char *label, const char *sql,
								 int timeout_ms);
extern void DmRemoteCommand(PGconn *conn, const char *label, const char *sql,
							int timeout_ms);
extern char *DmRemoteValue(PGconn *conn, const char *label, const char *sql,
						   int nparams, const char *const *values,
						   int timeout_ms);
extern void DmRemoteNodeSession(PGconn *conn, const char *label,
								int lock_timeout_ms, int timeout_ms);
extern void DmRemoteClose(PGconn *conn);

extern PGconn *DmRemoteConnectStart(const char *conninfo, const char *label,
									TimestampTz deadline, int timeout_ms);
extern PGconn *DmRemoteConnectStartResolved(const char *conninfo, const char *label,
											int timeout_ms, const char *hosts,
											const char *hostaddrs, const char *ports,
											const char *application_name);
extern const char *DmRemoteHardenSql(PGconn *conn);
extern int	DmRemoteSessionBudgetMs(int timeout_ms);
extern char *DmRemoteNodeSessionSql(int lock_timeout_ms);
extern void DmRemoteAbandon(PGconn *conn);

#endif							/* DM_REMOTE_CONN_H */
