/*-------------------------------------------------------------------------
 *
 * remote_conn.h
 *	  Interruptible libpq connections to managed nodes.
 *
 * Interface (used by mirrors and promotion):
 *
 *	 conn = DmRemoteConnect(conninfo, label, timeout_ms)
 *		Connect with a deadline (timeout_ms <= 0: driftmirror.connect_timeout);
 *		the session is hardened (search_path = pg_catalog, application_name
 *		'driftmirror', DateStyle ISO, TimeZone UTC).  Raises
 *		ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION naming the node
 *		by its label, never by its conninfo.
 *	 res = DmRemoteExec(conn, label, sql, nparams, values, timeout_ms)
 *		Run one statement (parameters as text, NULL allowed; with nparams
 *		0 the text may hold several statements and the last result is
 *		returned).  Waits on the latch and the socket, cancels the remote
 *		statement on an interrupt or after timeout_ms (<= 0:
 *		driftmirror.remote_timeout).  Remote errors are re-raised with their
 *		SQLSTATE, message, detail and hint, plus an errcontext naming the
 *		node and the command.  Returns a PGresult the caller PQclear()s.
 *	 DmRemoteCommand(conn, label, sql)       exec and discard the result
 *	 val = DmRemoteValue(conn, label, sql, nparams, values)
 *		first column of the first row, palloc'd, or NULL
 *	 DmRemoteNodeSession(conn, label)
 *		create extension driftmirror_node if missing and mark the session as
 *		driftmirror's own (passes the write fence)
 *	 DmRemoteClose(conn)                       PQfinish; NULL is fine
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

#include "libpq-fe.h"

extern PGconn *DmRemoteConnect(const char *conninfo, const char *label,
							   int timeout_ms);
extern PGconn *DmRemoteConnectPlain(const char *conninfo, const char *label,
									int timeout_ms);
extern PGresult *DmRemoteExec(PGconn *conn, const char *label, const char *sql,
							  int nparams, const char *const *values,
							  int timeout_ms);
extern void DmRemoteCommand(PGconn *conn, const char *label, const char *sql);
extern char *DmRemoteValue(PGconn *conn, const char *label, const char *sql,
						   int nparams, const char *const *values);
extern void DmRemoteNodeSession(PGconn *conn, const char *label);
extern void DmRemoteClose(PGconn *conn);

#endif							/* DM_REMOTE_CONN_H */
