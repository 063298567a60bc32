/*-------------------------------------------------------------------------
 *
 * mirror.c
 *	  The worker's side of mirrors: a generic executor of remote actions.
 *
 * The state machine lives in SQL (sql/install/6?_mirror_*.sql): in one short
 * transaction, _mirror_next() records the next action of a mirror as
 * pending and returns its node and SQL text; here we run that text on the
 * node over libpq with no transaction open; then _mirror_done() records the
 * outcome in another short transaction.  A crash between the two leaves the
 * action pending, and since every action is idempotent the next step simply
 * does it again.  Cleanups of dropped mirrors follow the same pattern with
 * _cleanup_due() / _cleanup_done().
 *
 * Every remote session first creates driftmirror_node if needed and marks
 * itself as driftmirror's own (DmRemoteNodeSession), so it passes the write
 * fence.
 *
 * Every postgres action of the mirror phase (status reads, status_primary
 * and status_mirror, every step of every postgres mirror; and the creation
 * actions) goes through the I/O engine (io_engine.c): the mirror phase
 * hands the action over and returns DM_PHASE_WAITING, the group's step is
 * parked, and other groups' steps go on; the engine wakes the step when
 * the action is done, and the phase records it and goes on with the
 * mirror's next action.  The engine keeps the session to each node between
 * steps (one pool entry for status reads, one for actions, whose session
 * bounds lock waits).  Actuator actions go through the engine too
 * (DmActuatorStart, actuator_client.c), and wake the step the same way.
 *
 * Latency: a status read comes with a probe statement, the same text for
 * both nodes.  After the status query, on the same session (so connection
 * set-up and the first query of a new backend are not counted), the engine
 * runs the probe DM_LATENCY_PROBES times and times each round trip with the
 * monotonic clock; the median is the node's sample for this step, passed
 * to _mirror_done.  A probe still running after
 * driftmirror.latency_probe_timeout (or ended by the node's own
 * statement_timeout or lock_timeout) ends the measurement: the sample is
 * its elapsed time (at least the timeout), and the session is cut.  The
 * ratio and its window are computed in SQL (_mirror_latency).
 *
 * Mirrors of cache, app, web and service resources are made by an HTTP
 * actuator: their actions (and the cleanups of dropped ones) are HTTP
 * requests (src/http.c) instead of SQL texts, run the same way, outside
 * transactions, with the actuator's answer (status and body) interpreted
 * by _mirror_done / _cleanup_done in SQL.  One request per action, no
 * retry inside it: a failure is recorded and retried at a later step with
 * back-off, so a dead or hung actuator holds its own group's step for at
 * most one actuator_timeout per step, and no other group's.  The bearer token is read from its file just
 * before the request and wiped after it; it never reaches the catalog, an
 * error message or the log.
 *
 * Memory: strings read inside a transaction are copied into the caller's
 * context (the step's context in the mirror phase, the worker's loop
 * context for cleanups), which is current again after every commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "actuator_client.h"
#include "ctl_txn.h"
#include "driftmirror.h"
#include "io_engine.h"
#include "mirror.h"
#include "remote_conn.h"

/* one remote action read from the catalog */
typedef struct RemoteAction
{
	int64		id;
	char	   *action;
	char	   *conninfo;		/* postgres actions: node and SQL text */
	char	   *label;
	char	   *sql;
	char	   *probe_sql;		/* status reads: the latency probe, or NULL */
	char	   *http_method;	/* actuator actions: the request */
	char	   *http_url;
	char	   *http_body;
	char	   *http_key;
	char	   *http_token_file;
	int			http_timeout_ms;
} RemoteAction;

/* outcome of a remote action */
typedef struct RemoteOutcome
{
	bool		ok;				/* postgres: it ran; HTTP: an answer came */
	bool		done;			/* postgres: it ran; HTTP: an answer of kind
								 * DM_ACT_OK (2xx, text body) */
	char	   *result;			/* first value, or the HTTP answer's body */
	int			status;			/* HTTP status, 0 for postgres actions */
	char	   *sqlstate;
	char	   *error;			/* the message: names nodes by label only */
	char	   *detail;			/* may hold host names (libpq): admins only */
	bool		has_latency;	/* a latency sample was taken */
	double		latency_ms;		/* the sample: median round trip of the probe */
	TimestampTz read_started;	/* when the status read began */
	char	   *probe_error;	/* why the probe gave no sample, or NULL */
} RemoteOutcome;

/* probe round trips per status read; the sample is their median */
#define DM_LATENCY_PROBES 3

/* columns of _mirror_next() and _cleanup_due(), in order */
#define ACTION_COLUMNS \
	"conninfo, label, sql, http_method, http_url, http_body, http_key, " \
	"http_token_file, http_timeout_ms"

/*
 * RunRemoteValue
 *		Connect, become a node session if asked, run sql, return the first
 *		value (palloc'd) or NULL.  Raises an error; closes the connection in
 *		every case.
 */
static char *
RunRemoteValue(const char *conninfo, const char *label, const char *sql,
			   bool node_session)
{
	PGconn	   *volatile conn = NULL;
	char	   *volatile val = NULL;

	PG_TRY();
	{
		conn = DmRemoteConnect(conninfo, label, 0);
		if (node_session)
			DmRemoteNodeSession(conn, label, DM_REMOTE_ACTION_LOCK_TIMEOUT_MS, 0);
		val = DmRemoteValue(conn, label, sql, 0, NULL, 0);
	}
	PG_CATCH();
	{
		DmRemoteClose(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	DmRemoteClose(conn);
	return val;
}

/*
 * Median
 *		The median of n > 0 samples (sorted in place: a handful of values).
 */
static double
Median(double *samples, int n)
{
	int			i;

	for (i = 1; i < n; i++)
	{
		double		v = samples[i];
		int			j = i - 1;

		while (j >= 0 && samples[j] > v)
		{
			samples[j + 1] = samples[j];
			j--;
		}
		samples[j + 1] = v;
	}
	return (n % 2 == 1) ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0;
}

/*
 * StartHttpAction
 *		Hand a mirror's actuator action to the I/O engine
 *		(DmActuatorStart); callback(call, arg) runs when it is answered.
 *		The call lives in cxt; check call->done at once (a token that
 *		cannot be read ends it before anything is sent).
 */
static DmActuatorCall *
StartHttpAction(RemoteAction *a, MemoryContext cxt, DmActuatorDone callback,
				void *arg)
{
	DmActuatorRequest req;

	req.label = a->label;
	req.method = a->http_method;
	req.url = a->http_url;
	req.body = a->http_body;
	req.idempotency_key = a->http_key;
	req.token_file = a->http_token_file;
	req.timeout_ms = a->http_timeout_ms;
	return DmActuatorStart(&req, cxt, callback, arg);
}

/*
 * HttpOutcome
 *		The outcome of an actuator action from its answer.
 */
static RemoteOutcome
HttpOutcome(const DmActuatorAnswer *ans)
{
	RemoteOutcome out = {0};

	out.ok = ans->answered;
	out.done = (ans->kind == DM_ACT_OK);
	out.status = ans->status;
	out.result = ans->body;
	out.sqlstate = ans->sqlstate;
	out.error = ans->error;
	out.detail = ans->detail;
	return out;
}

/* ActionCallDone: the engine's callback for an actuator action: wakes the step */
static void
ActionCallDone(DmActuatorCall *call, void *arg)
{
	DmGroupStepWake(arg);
}

static Datum
TextOrNull(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * ReadAction
 *		Fill a from row `row' of a result with the ACTION_COLUMNS (strings
 *		stay in the result's context).  Returns whether the row describes
 *		something that can be run.
 */
static bool
ReadAction(DmCtlResult *r, int row, RemoteAction *a)
{
	a->conninfo = DmCtlGet(r, row, "conninfo");
	a->label = DmCtlGet(r, row, "label");
	a->sql = DmCtlGet(r, row, "sql");
	a->http_method = DmCtlGet(r, row, "http_method");
	a->http_url = DmCtlGet(r, row, "http_url");
	a->http_body = DmCtlGet(r, row, "http_body");
	a->http_key = DmCtlGet(r, row, "http_key");
	a->http_token_file = DmCtlGet(r, row, "http_token_file");
	a->http_timeout_ms = DmCtlGetInt32(r, row, "http_timeout_ms", 0);
	if (a->label == NULL)
		return false;
	if (a->http_method != NULL)
		return a->http_url != NULL;
	return a->conninfo != NULL && a->sql != NULL;
}

/*
 * NextMirrorAction
 *		In its own transaction: the next action of a mirror, or false.
 */
static bool
NextMirrorAction(int64 mirror_id, TimestampTz started, RemoteAction *a)
{
	DmCtlResult *r;
	bool		found = false;

	memset(a, 0, sizeof(RemoteAction));
	r = DmCtlQuery("SELECT action, " ACTION_COLUMNS ", probe_sql FROM driftmirror._mirror_next($1, $2)",
				   2, (Oid[]) {INT8OID, TIMESTAMPTZOID},
				   (Datum[]) {Int64GetDatum(mirror_id), TimestampTzGetDatum(started)}, NULL);
	if (r->nrows > 0)
	{
		a->id = mirror_id;
		a->action = DmCtlGet(r, 0, "action");
		found = ReadAction(r, 0, a) && a->action != NULL;
		a->probe_sql = DmCtlGet(r, 0, "probe_sql");
	}
	return found;
}

/*
 * RecordMirrorOutcome
 *		In its own transaction: _mirror_done for one action.
 */
static void
RecordMirrorOutcome(RemoteAction *a, RemoteOutcome *o)
{
	Datum		values[11];
	bool		nulls[11];

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum(a->id);
	values[1] = CStringGetTextDatum(a->action);
	values[2] = BoolGetDatum(o->ok);
	values[3] = TextOrNull(o->result, &nulls[3]);
	values[4] = TextOrNull(o->sqlstate, &nulls[4]);
	values[5] = TextOrNull(o->error, &nulls[5]);
	values[6] = TextOrNull(o->detail, &nulls[6]);
	values[7] = Int32GetDatum(o->status);
	nulls[7] = (a->http_method == NULL || !o->ok);
	values[8] = Float8GetDatum(o->latency_ms);
	nulls[8] = (!o->ok || !o->has_latency);
	values[9] = TextOrNull(o->probe_error, &nulls[9]);
	nulls[9] = nulls[9] || !o->ok;
	values[10] = TimestampTzGetDatum(o->read_started);
	nulls[10] = (!o->ok || !o->has_latency);
	DmCtlRun("SELECT driftmirror._mirror_done($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
			 11, (Oid[]) {INT8OID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, FLOAT8OID, TEXTOID, TIMESTAMPTZOID},
			 values, nulls);
}

/* the mirror phase's state while a step runs (in the step's context) */
typedef struct MirrorPhaseState
{
	List	   *ids;			/* due mirrors (int64 *) */
	int			index;			/* the mirror being advanced */
	int			nactions;		/* its actions in this step */
	RemoteAction action;		/* the action in flight */
	DmIoPgRequest *req;			/* its engine request, or NULL */
	DmActuatorCall *call;		/* or its actuator call, or NULL */
} MirrorPhaseState;

/* actions per mirror and step, at most */
#define DM_MIRROR_ACTIONS_PER_STEP 12

/*
 * DueMirrors
 *		In its own transaction: the mirrors of a group to advance now
 *		(int64 * in the current context).
 */
static List *
DueMirrors(int64 group_id)
{
	List	   *ids = NIL;
	DmCtlResult *r;
	int			i;

	r = DmCtlQuery("SELECT id FROM driftmirror._mirror_due($1) AS id",
				   1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)}, NULL);
	for (i = 0; i < r->nrows; i++)
	{
		ids = lappend(ids, palloc(sizeof(int64)));
		*(int64 *) llast(ids) = DmCtlGetInt64(r, i, "id", 0);
	}
	return ids;
}

/* StatusReadDone: the engine's callback for any action, which wakes the step */
static void
StatusReadDone(DmIoPgRequest *req, void *arg)
{
	DmGroupStepWake(arg);
}

/*
 * StartEngineAction
 *		Hand a postgres action to the I/O engine; the engine wakes the step
 *		when it is done.  A status read comes with its latency probe; any
 *		other action runs on a node session whose lock waits are bounded
 *		(DM_REMOTE_ACTION_LOCK_TIMEOUT_MS), as RunRemoteValue's.
 */
static DmIoPgRequest *
StartEngineAction(RemoteAction *a, DmGroupRun *run)
{
	DmIoPgRequest *req = DmIoPgRequestCreate(run->cxt, a->conninfo, a->label);

	req->sql = a->sql;
	if (strncmp(a->action, "status_", 7) == 0)
	{
		req->probe_sql = a->probe_sql;
		req->probes = a->probe_sql ? DM_LATENCY_PROBES : 0;
		req->probe_timeout_ms = DmLatencyProbeTimeoutMs;
	}
	else
		req->lock_timeout_ms = DM_REMOTE_ACTION_LOCK_TIMEOUT_MS;
	req->callback = StatusReadDone;
	req->arg = run;
	DmIoPgStart(req);
	return req;
}

/*
 * StatusOutcome
 *		The outcome of an action done by the engine; for a status read, the
 *		latency sample is the median of the probe round trips, or, when a
 *		probe was cut (at its deadline or by the node's own limits), that
 *		probe's elapsed time alone.
 */
static RemoteOutcome
StatusOutcome(DmIoPgRequest *req)
{
	RemoteOutcome out = {0};

	out.ok = req->ok;
	out.done = req->ok;
	out.result = req->result;
	out.sqlstate = req->sqlstate;
	out.error = req->error;
	out.detail = req->detail;
	out.read_started = req->started;
	if (!req->ok)
		return out;
	if (req->probe_error != NULL)
		out.probe_error = req->probe_error;
	else if (req->probe_cut && req->nsamples > 0)
	{
		out.has_latency = true;
		out.latency_ms = req->samples[req->nsamples - 1];
	}
	else if (req->nsamples > 0)
	{
		out.has_latency = true;
		out.latency_ms = Median(req->samples, req->nsamples);
	}
	return out;
}

/*
 * DmMirrorPhase
 *		Advance every mirror of a group as far as it can go in this step
 *		(creation actions, status reads).  A failing action is recorded
 *		against its mirror and ends that mirror's turn; other mirrors go on.
 *		Every action (status reads and creation on nodes, actuator calls)
 *		goes through the I/O engine: the phase returns DM_PHASE_WAITING and
 *		is called again when the action is done.
 *		May raise an error only when the catalog cannot be read or written.
 */
DmPhaseResult
DmMirrorPhase(DmGroupRun *run)
{
	MirrorPhaseState *st = (MirrorPhaseState *) run->phase_state;

	if (st == NULL)
	{
		st = palloc0(sizeof(MirrorPhaseState));
		st->ids = DueMirrors(run->group_id);
		run->phase_state = st;
	}

	/* the engine answered: record the action */
	if (st->req != NULL || st->call != NULL)
	{
		RemoteOutcome o = st->req ? StatusOutcome(st->req) : HttpOutcome(&st->call->answer);

		st->req = NULL;
		st->call = NULL;
		RecordMirrorOutcome(&st->action, &o);
		if (o.done)
			st->nactions++;
		else
		{
			st->index++;
			st->nactions = 0;
		}
	}

	while (st->index < list_length(st->ids))
	{
		int64		id = *(int64 *) list_nth(st->ids, st->index);
		RemoteAction *a = &st->action;
		RemoteOutcome o;
		char		activity[128];

		CHECK_FOR_INTERRUPTS();
		if (st->nactions >= DM_MIRROR_ACTIONS_PER_STEP ||
			!NextMirrorAction(id, run->started, a))
		{
			st->index++;
			st->nactions = 0;
			continue;
		}
		snprintf(activity, sizeof(activity),
				 "driftmirror: mirror " INT64_FORMAT ": %s", id, a->action);
		pgstat_report_activity(STATE_RUNNING, activity);

		if (a->http_method == NULL)
		{
			st->req = StartEngineAction(a, run);
			return DM_PHASE_WAITING;
		}

		st->call = StartHttpAction(a, run->cxt, ActionCallDone, run);
		if (!st->call->done)
			return DM_PHASE_WAITING;

		/* not sent (its token could not be read): recorded at once */
		o = HttpOutcome(&st->call->answer);
		st->call = NULL;
		RecordMirrorOutcome(a, &o);
		if (!o.done)
		{
			st->index++;
			st->nactions = 0;
		}
		else
			st->nactions++;
	}
	return DM_PHASE_DONE;
}

/* cleanups in flight: one batch at a time, in its own context */
typedef struct Cleanup
{
	RemoteAction a;
	DmIoPgRequest *req;			/* postgres: its engine request, or NULL */
	DmActuatorCall *call;		/* actuator: its call in flight, or NULL */
} Cleanup;

static MemoryContext CleanupContext = NULL;
static List *CleanupsInFlight = NIL;	/* Cleanup *, in CleanupContext */

/*
 * RecordCleanup
 *		In its own transaction: _cleanup_done for one attempt.  Never
 *		raises: a failure to record is a WARNING (the cleanup is tried
 *		again; dropping is idempotent).
 */
static void
RecordCleanup(RemoteAction *a, RemoteOutcome *o)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		Datum		values[7];
		bool		nulls[7];

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum(a->id);
		values[1] = BoolGetDatum(o->ok);
		values[2] = TextOrNull(o->sqlstate, &nulls[2]);
		values[3] = TextOrNull(o->error, &nulls[3]);
		values[4] = TextOrNull(o->detail, &nulls[4]);
		values[5] = Int32GetDatum(o->status);
		nulls[5] = (a->http_method == NULL || !o->ok);
		values[6] = TextOrNull(o->result, &nulls[6]);
		nulls[6] = nulls[6] || a->http_method == NULL;
		DmCtlRun("SELECT driftmirror._cleanup_done($1, $2, $3, $4, $5, $6, $7)",
				 7, (Oid[]) {INT8OID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID},
				 values, nulls);
	}
	PG_CATCH();
	{
		(void) DmCtlCatchWarn(cxt, "could not record a mirror cleanup");
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

/*
 * CleanupDone
 *		The engine's callback for a postgres cleanup: record it (a
 *		transaction of its own; never raises).
 */
static void
CleanupDone(DmIoPgRequest *req, void *arg)
{
	Cleanup    *c = (Cleanup *) arg;
	RemoteOutcome o = StatusOutcome(req);

	c->req = NULL;
	RecordCleanup(&c->a, &o);
}

/*
 * CleanupCallDone
 *		The engine's callback for an actuator cleanup: record it (a
 *		transaction of its own; never raises).
 */
static void
CleanupCallDone(DmActuatorCall *call, void *arg)
{
	Cleanup    *c = (Cleanup *) arg;
	RemoteOutcome o = HttpOutcome(&call->answer);

	c->call = NULL;
	RecordCleanup(&c->a, &o);
}

/* CleanupsRunning: whether a cleanup of the batch is still in the engine */
static bool
CleanupsRunning(void)
{
	ListCell   *lc;

	foreach(lc, CleanupsInFlight)
	{
		Cleanup    *c = (Cleanup *) lfirst(lc);

		if (c->req != NULL || c->call != NULL)
			return true;
	}
	return false;
}

/*
 * DmRunMirrorCleanups
 *		Once the previous batch has ended: try every due cleanup of dropped
 *		mirrors once.  Every cleanup (drops on the nodes, on action sessions;
 *		deletions at actuators) goes to the I/O engine and is recorded by
 *		its callback, so the pass never waits for a node or an actuator.  Never raises: errors are logged (and
 *		recorded per cleanup row).
 */
void
DmRunMirrorCleanups(void)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt;
	List	   *volatile todo = NIL;
	ListCell   *lc;

	if (CleanupsRunning())
		return;
	if (CleanupContext != NULL)
		MemoryContextDelete(CleanupContext);
	CleanupsInFlight = NIL;
	CleanupContext = cxt = AllocSetContextCreate(TopMemoryContext,
												 "driftmirror mirror cleanups",
												 ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		DmCtlResult *r = NULL;
		int			i;

		DmCtlBegin(NULL);
		if (OidIsValid(get_extension_oid(DM_EXTENSION_NAME, true)))
			r = DmCtlExec("SELECT id, " ACTION_COLUMNS " FROM driftmirror._cleanup_due()",
						  0, NULL, NULL, NULL);
		DmCtlCommit();
		for (i = 0; r != NULL && i < r->nrows; i++)
		{
			Cleanup    *c = palloc0(sizeof(Cleanup));
			RemoteAction *a = &c->a;

			a->id = DmCtlGetInt64(r, i, "id", 0);
			a->action = "cleanup";
			if (ReadAction(r, i, a))
				todo = lappend(todo, c);
		}
	}
	PG_CATCH();
	{
		(void) DmCtlCatchWarn(cxt, "could not read pending mirror cleanups");
		todo = NIL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CleanupsInFlight = todo;

	foreach(lc, CleanupsInFlight)
	{
		Cleanup    *c = (Cleanup *) lfirst(lc);
		RemoteAction *a = &c->a;

		CHECK_FOR_INTERRUPTS();
		if (a->http_method != NULL)
		{
			c->call = StartHttpAction(a, cxt, CleanupCallDone, c);
			if (c->call->done)
			{
				/* not sent (its token could not be read) */
				RemoteOutcome o = HttpOutcome(&c->call->answer);

				c->call = NULL;
				RecordCleanup(a, &o);
				MemoryContextSwitchTo(cxt);
			}
			continue;
		}
		c->req = DmIoPgRequestCreate(cxt, a->conninfo, a->label);
		c->req->sql = a->sql;
		c->req->lock_timeout_ms = DM_REMOTE_ACTION_LOCK_TIMEOUT_MS;
		c->req->callback = CleanupDone;
		c->req->arg = c;
		DmIoPgStart(c->req);
	}
	MemoryContextSwitchTo(caller);
}

/*
 * DmMirrorCleanupsDiscard
 *		The extension is gone or the worker disabled: drop the cleanups in
 *		flight (they stay due in the catalog).
 */
void
DmMirrorCleanupsDiscard(void)
{
	ListCell   *lc;

	foreach(lc, CleanupsInFlight)
	{
		Cleanup    *c = (Cleanup *) lfirst(lc);

		if (c->req != NULL)
			DmIoPgCancel(c->req);
		if (c->call != NULL)
			DmActuatorCancel(c->call);
		c->req = NULL;
		c->call = NULL;
	}
	CleanupsInFlight = NIL;
	if (CleanupContext != NULL)
		MemoryContextDelete(CleanupContext);
	CleanupContext = NULL;
}

/* ---- SQL-callable ---- */

PG_FUNCTION_INFO_V1(driftmirror_remote_value);

/*
 * driftmirror._remote_value(conninfo, label, sql, node_session) returns text
 *		Used by the API (preflight, dm_sync_sequences): one statement on a
 *		node from the calling session, with driftmirror's timeouts.
 */
Datum
driftmirror_remote_value(PG_FUNCTION_ARGS)
{
	char	   *val;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("conninfo, label and sql must not be null")));
	val = RunRemoteValue(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						 text_to_cstring(PG_GETARG_TEXT_PP(1)),
						 text_to_cstring(PG_GETARG_TEXT_PP(2)),
						 !PG_ARGISNULL(3) && PG_GETARG_BOOL(3));
	if (val == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(val));
}
