/*-------------------------------------------------------------------------
 *
 * io_engine.h
 *	  The worker's asynchronous I/O engine: requests to nodes run as state
 *	  machines over one WaitEventSet, side by side, each with its own
 *	  deadlines, on pooled hardened connections.
 *
 * Interface:
 *
 *	 req = DmIoPgRequestCreate(cxt, conninfo, label)
 *		a request in memory context cxt (strings copied there); the caller
 *		fills sql, probe_sql, probes, timeouts, callback and arg
 *	 DmIoPgStart(req)
 *		start it: take a pooled session of the endpoint or connect.  Never
 *		raises for the node's faults (they end the request); raises only
 *		for interrupts and out of memory.
 *	 DmIoWait(timeout_ms)
 *		wait up to timeout_ms on the latch and every request's socket,
 *		advance the requests, enforce their deadlines, and call the
 *		callback of each request that finished (after the wait, outside
 *		engine code; a callback may run transactions and may raise: the
 *		error propagates to DmIoWait's caller, the other finished requests
 *		are called back at the next DmIoWait).  Returns early when the
 *		latch is set (then reset, interrupts served, and true returned) or
 *		a request finished.
 *	 DmIoPgCancel(req)     drop one request started and not called back
 *	 DmIoActive()          requests and timers started and not yet called back
 *	 DmIoDiscardAll()      drop every request (no callback) and close the pool
 *
 *	 req = DmIoHttpRequestCreate(cxt)
 *		an HTTP request: the caller fills req->http (strings are copied
 *		when it starts, so they may be wiped right after DmIoHttpStart),
 *		callback and arg
 *	 DmIoHttpStart(req)
 *		start it on the engine's libcurl multi handle (http.c: its rules,
 *		its timeouts; no retries); the answer or the error arrives in
 *		req->resp, in cxt, and the callback runs from DmIoWait as above
 *	 DmIoHttpCancel(req)   drop it (no callback)
 *
 *	 req = DmIoSocketRequestCreate(cxt, endpoint, label)
 *		a raw-socket request (io_socket.c): connect to a unix or TCP socket
 *		(numeric address), send req->send, read until the peer closes, all
 *		before req->timeout_ms; the answer or the error arrives in the
 *		request, and the callback runs from DmIoWait as above
 *	 DmIoSocketStart(req), DmIoSocketCancel(req)   as for the others
 *
 *	 DmIoTimerStart(timer, delay_ms)
 *		call timer->callback from DmIoWait once delay_ms have passed (a
 *		retry's back-off that must not hold the worker); DmIoTimerCancel
 *		disarms it.  The timer is the caller's (embedded in its state).
 *
 * A PostgreSQL request: connect (or reuse a pooled session), on a new
 * session run the set-up (remote_conn.c's hardening, then, unless the
 * request is plain, the node session), then sql, then probe_sql `probes'
 * times, each round trip timed (latency).  The first value of sql's last
 * result is the request's result (and with keep_result, the whole last
 * result, valid during the callback).  A session that finished cleanly
 * goes back to the pool of its endpoint (conninfo, and the kind of
 * session); one that timed out or broke is cut (no cancel request: see
 * remote_conn.c).  A failed request says where it failed (failure), so
 * that callers label it without matching message text.  A console request
 * is for a server that speaks the protocol but is not PostgreSQL
 * (pgbouncer's admin console, which takes only its own simple-protocol
 * commands): no set-up statement at all, and its session is closed when
 * the request ends, never pooled.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_IO_ENGINE_H
#define DM_IO_ENGINE_H

#include "datatype/timestamp.h"
#include "libpq-fe.h"
#include "portability/instr_time.h"

#include "http.h"

#define DM_IO_MAX_PROBES 8

/* where a PostgreSQL request failed */
typedef enum DmIoFailure
{
	DM_IO_OK = 0,
	DM_IO_REFUSED,				/* the conninfo was refused (endpoint.c) */
	DM_IO_RESOLVE,				/* a host name did not resolve in time */
	DM_IO_CONNECT,				/* the login failed */
	DM_IO_CONNECT_TIMEOUT,		/* no session before the connect deadline */
	DM_IO_SETUP,				/* the session set-up failed */
	DM_IO_TIMEOUT,				/* sql did not finish before its deadline */
	DM_IO_LOST,					/* the session broke */
	DM_IO_REMOTE				/* sql failed on the node */
} DmIoFailure;

typedef struct DmIoPgRequest DmIoPgRequest;
typedef void (*DmIoCallback) (DmIoPgRequest *req, void *arg);

struct DmIoPgRequest
{
	/* what to do (filled by the caller before DmIoPgStart) */
	char	   *conninfo;
	char	   *label;			/* names the node in messages */
	char	   *sql;
	char	   *probe_sql;		/* or NULL */
	int			probes;			/* rounds of probe_sql, <= DM_IO_MAX_PROBES */
	int			probe_timeout_ms;
	int			connect_timeout_ms; /* <= 0: driftmirror.connect_timeout */
	int			timeout_ms;		/* sql; <= 0: driftmirror.remote_timeout */
	bool		plain;			/* hardened session without the node session
								 * (no driftmirror_node, no fence bypass):
								 * for nodes only watched, like metric polls */
	const char *application_name;	/* plain sessions: their name on the
									 * node (NULL: "driftmirror") */
	bool		console;		/* an admin console, not a PostgreSQL
								 * server: no set-up statement, not pooled
								 * (see above) */
	int			lock_timeout_ms;	/* node sessions: lock_timeout set with
									 * the node session (0: the node's) */
	bool		keep_result;	/* keep sql's last result for the callback */
	DmIoCallback callback;
	void	   *arg;

	/* the outcome (valid in the callback; strings in the request's context) */
	bool		ok;				/* sql ran */
	DmIoFailure failure;		/* when not ok: where it failed */
	char	   *result;			/* first value of its result, or NULL */
	PGresult   *res;			/* with keep_result: sql's last result (the
								 * engine clears it after the callback) */
	char	   *sqlstate;		/* when not ok */
	char	   *error;			/* when not ok: names the node by label */
	char	   *detail;			/* when not ok: libpq's words (may name hosts) */
	TimestampTz started;		/* when the request started */
	int			nsamples;		/* probe round trips, in ms */
	double		samples[DM_IO_MAX_PROBES];
	bool		probe_cut;		/* the last sample ended at a deadline or a
								 * timeout of the node */
	char	   *probe_error;	/* why the probes stopped early, or NULL */

	/* engine state */
	struct DmIoPgRequest *next;
	MemoryContext cxt;
	int			state;
	struct DmDnsLookups *dns;	/* name lookups under way, or NULL */
	void	   *session;
	int			step;
	bool		reused;			/* on a session taken from the pool */
	TimestampTz deadline;
	instr_time	probe_start;
	PGresult   *last;
	PGresult   *failed;
};

typedef struct DmIoHttpRequest DmIoHttpRequest;
typedef void (*DmIoHttpCallback) (DmIoHttpRequest *req, void *arg);

struct DmIoHttpRequest
{
	DmHttpRequest http;			/* what to send (filled by the caller) */
	DmIoHttpCallback callback;
	void	   *arg;

	/* the outcome (valid in the callback; strings in the request's context) */
	DmHttpResponse resp;		/* status and body, or error */

	/* engine state */
	struct DmIoHttpRequest *next;
	MemoryContext cxt;
	bool		started;
};

typedef struct DmIoSocketRequest DmIoSocketRequest;
typedef void (*DmIoSocketCallback) (DmIoSocketRequest *req, void *arg);

struct DmIoSocketRequest
{
	/* what to do (filled by the caller before DmIoSocketStart) */
	char	   *endpoint;		/* "unix:/path", "tcp:addr:port", "addr:port" */
	char	   *label;			/* names the peer in messages */
	char	   *send;			/* the bytes to send */
	int			timeout_ms;		/* one deadline: connect, send, answer */
	int			max_answer;		/* bytes; a longer answer fails the request */
	DmIoSocketCallback callback;
	void	   *arg;

	/* the outcome (valid in the callback; strings in the request's context) */
	bool		ok;				/* sent, and the peer closed after answering */
	DmIoFailure failure;		/* when not ok: DM_IO_REFUSED (bad endpoint),
								 * DM_IO_CONNECT, DM_IO_TIMEOUT (before the
								 * answer ended), DM_IO_LOST */
	char	   *answer;			/* what the peer sent, NUL-terminated */
	int			answer_len;
	char	   *error;			/* when not ok: names the peer by label */

	/* engine state */
	struct DmIoSocketRequest *next;
	MemoryContext cxt;
	int			state;
	int			fd;
	int			sent;
	int			answer_cap;
	TimestampTz deadline;
};

typedef struct DmIoTimer DmIoTimer;
typedef void (*DmIoTimerCallback) (DmIoTimer *timer, void *arg);

struct DmIoTimer
{
	DmIoTimerCallback callback;
	void	   *arg;
	/* engine state */
	TimestampTz at;
	bool		armed;
	struct DmIoTimer *next;
};

extern DmIoPgRequest *DmIoPgRequestCreate(MemoryContext cxt, const char *conninfo,
										  const char *label);
extern void DmIoPgStart(DmIoPgRequest *req);
extern void DmIoPgCancel(DmIoPgRequest *req);
extern DmIoHttpRequest *DmIoHttpRequestCreate(MemoryContext cxt);
extern void DmIoHttpStart(DmIoHttpRequest *req);
extern void DmIoHttpCancel(DmIoHttpRequest *req);
extern DmIoSocketRequest *DmIoSocketRequestCreate(MemoryContext cxt, const char *endpoint,
												  const char *label);
extern void DmIoSocketStart(DmIoSocketRequest *req);
extern void DmIoSocketCancel(DmIoSocketRequest *req);
extern void DmIoTimerStart(DmIoTimer *timer, long delay_ms);
extern void DmIoTimerCancel(DmIoTimer *timer);
extern bool DmIoWait(long timeout_ms);
extern int	DmIoActive(void);
extern void DmIoDiscardAll(void);

#endif							/* DM_IO_ENGINE_H */
