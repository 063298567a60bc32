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
 *	 DmIoActive()          requests started and not yet called back
 *	 DmIoDiscardAll()      drop every request (no callback) and close the pool
 *
 * A request: connect (or reuse a pooled session), on a new session run the
 * set-up (remote_conn.c's hardening, then the node session), then sql, then
 * probe_sql `probes' times, each round trip timed (latency).  The first
 * value of sql's last result is the request's result.  A session that
 * finished cleanly goes back to the pool of its endpoint (conninfo); one
 * that timed out or broke is cut (no cancel request: see remote_conn.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_IO_ENGINE_H
#define DM_IO_ENGINE_H

#include "datatype/timestamp.h"
#include "libpq-fe.h"
#include "portability/instr_time.h"

#define DM_IO_MAX_PROBES 8

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
	DmIoCallback callback;
	void	   *arg;

	/* the outcome (valid in the callback; strings in the request's context) */
	bool		ok;				/* sql ran */
	char	   *result;			/* first value of its result, or NULL */
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

extern DmIoPgRequest *DmIoPgRequestCreate(MemoryContext cxt, const char *conninfo,
										  const char *label);
extern void DmIoPgStart(DmIoPgRequest *req);
extern bool DmIoWait(long timeout_ms);
extern int	DmIoActive(void);
extern void DmIoDiscardAll(void);

#endif							/* DM_IO_ENGINE_H */
