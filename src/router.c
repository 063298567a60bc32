/*-------------------------------------------------------------------------
 *
 * router.c
 *	  Traffic shares through routers: dm_shift, its dynamic worker, and the
 *	  group step's phase that retries routers left behind; and client-side
 *	  routing: the libpq multi-host string behind dm_route_multihost.
 *
 * dm_shift runs in the caller's transaction, which cannot commit and must
 * not wait on the network, so it hands the work to a dynamic background
 * worker (backend_type "driftmirror shift") and waits for it, as
 * dm_promote does.  The worker sets the shares and the routes in its own
 * transaction (driftmirror._shift_set: validation, nothing changed on a
 * refusal), then updates every router of the group: the work is read in
 * one transaction, the routers are talked to outside any transaction, and
 * each outcome is recorded in a transaction of its own.  The result (or
 * the error with its SQLSTATE) travels back through a DSM segment.
 *
 * Every router update runs as a batch: the group's routers (all, of one
 * kind, or those due), their conversations started side by side in the
 * I/O engine (router_io.c), each outcome recorded as it ends.  The main
 * worker's phase (DmRouterPhase) parks the group's step while its batch
 * is in flight, so a router that never answers holds only its own group,
 * for its timeout (and its webhook retries); the dm_shift worker and a
 * promotion's flip (DmApplyRoutersOfKind), which have a process of their
 * own, wait in the engine until their batch has ended.
 *
 * Updates of one group's routers are serialised by a session-level
 * advisory lock (DM_ROUTER_LOCK_KEY, group id), so that two changes never
 * reach a router in the wrong order: the shift worker waits for it, a
 * promotion's flip waits for it a bounded time, the main worker's phase
 * only tries it (and skips the phase when another process has it).  A
 * batch takes it before it reads its work and holds it, as a session lock
 * of its process, across every asynchronous exchange while the step is
 * parked, until its last outcome is recorded.  It is released by the
 * batch's memory context's reset callback, so on every path that ends the
 * batch: done, an error (the step's or the waiting worker's context is
 * freed after the abort; a session lock outlives an abort), the worker's
 * steps discarded (DiscardSteps), and at process exit by PostgreSQL itself.
 * The same callback cancels the conversations still in the engine.
 *
 * Memory: a batch lives in its own context (a child of the step's, or of
 * the caller's); each SPI result is copied out before its transaction
 * ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "endpoint.h"
#include "io_engine.h"
#include "router.h"

PG_FUNCTION_INFO_V1(driftmirror_dm_shift);
PG_FUNCTION_INFO_V1(driftmirror_multihost);

#define DM_ROUTER_DEFAULT_TIMEOUT_MS	2000
#define DM_ROUTER_DEFAULT_RETRIES		3

/* request and result exchanged between dm_shift and its worker (DSM) */
typedef struct DmShiftShared
{
	/* request */
	char		group_name[NAMEDATALEN * 2];
	char		read_pct[64];
	char		write_pct[64];
	char		requested_by[NAMEDATALEN];

	/* result; "done" is set last */
	bool		ok;
	DmCtlSavedError error;		/* when not ok */
	char		result[16384];
	volatile bool done;
} DmShiftShared;

/* ---- control database ---- */

/*
 * LoadTasks
 *		The routers of a group and the change each must apply, palloc'd in
 *		cxt.  Runs its own transaction; raises on error.
 */
static List *
LoadTasks(int64 group_id, bool due_only, MemoryContext cxt)
{
	List	   *tasks = NIL;
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		vals[2] = {Int64GetDatum(group_id), BoolGetDatum(due_only)};
	MemoryContext old = MemoryContextSwitchTo(cxt);
	DmCtlResult *work;
	DmCtlResult *servers;
	int			i;
	ListCell   *lc;

	DmCtlBegin(NULL);
	work = DmCtlExec("SELECT w.router_id, w.name, w.kind, w.endpoint, w.change::text AS change, w.digest, "
					 "  w.change ->> 'change_id' AS change_id, "
					 "  w.change ->> 'idempotency_key' AS idempotency_key, "
					 "  (extract(epoch FROM driftmirror._opt_interval(w.options -> 'timeout')) * 1000)::integer AS timeout_ms, "
					 "  w.change ->> 'database' AS database, w.change ->> 'target' AS target, "
					 "  w.options ->> 'databases_file' AS databases_file, "
					 "  w.options ->> 'retries' AS retries, w.options ->> 'hmac_key_file' AS hmac_key_file "
					 "FROM driftmirror._router_work($1, $2) w",
					 2, types, vals, NULL);
	/* HAProxy: the server weights */
	servers = DmCtlExec("SELECT w.router_id, s.backend, s.server, s.weight "
						"FROM driftmirror._router_work($1, $2) w, "
						"     jsonb_to_recordset(w.change -> 'servers') s (backend text, server text, weight integer) "
						"WHERE w.kind = 'haproxy' ORDER BY w.router_id, s.backend, s.server",
						2, types, vals, NULL);
	DmCtlCommit();

	for (i = 0; i < work->nrows; i++)
	{
		DmRouterTask *t = palloc0(sizeof(DmRouterTask));

		t->router_id = DmCtlGetInt64(work, i, "router_id", 0);
		t->name = DmCtlGet(work, i, "name");
		t->kind = DmCtlGet(work, i, "kind");
		t->endpoint = DmCtlGet(work, i, "endpoint");
		t->change = DmCtlGet(work, i, "change");
		t->change_id = DmCtlGetInt64(work, i, "change_id", 0);
		t->digest = DmCtlGet(work, i, "digest");
		t->idempotency_key = DmCtlGet(work, i, "idempotency_key");
		t->timeout_ms = DmCtlGetInt32(work, i, "timeout_ms", DM_ROUTER_DEFAULT_TIMEOUT_MS);
		t->database = DmCtlGet(work, i, "database");
		t->target = DmCtlGet(work, i, "target");
		t->databases_file = DmCtlGet(work, i, "databases_file");
		t->retries = DmCtlGetInt32(work, i, "retries", DM_ROUTER_DEFAULT_RETRIES);
		t->hmac_key_file = DmCtlGet(work, i, "hmac_key_file");
		tasks = lappend(tasks, t);
	}

	foreach(lc, tasks)
	{
		DmRouterTask *t = lfirst(lc);

		for (i = 0; i < servers->nrows; i++)
			if (DmCtlGetInt64(servers, i, "router_id", 0) == t->router_id)
				t->nservers++;
		if (t->nservers == 0)
			continue;
		t->servers = palloc0(sizeof(DmRouterServer) * t->nservers);
		t->nservers = 0;
		for (i = 0; i < servers->nrows; i++)
		{
			DmRouterServer *s;

			if (DmCtlGetInt64(servers, i, "router_id", 0) != t->router_id)
				continue;
			s = &t->servers[t->nservers++];
			s->backend = DmCtlGet(servers, i, "backend");
			s->server = DmCtlGet(servers, i, "server");
			s->weight = DmCtlGetInt32(servers, i, "weight", 0);
		}
	}
	MemoryContextSwitchTo(old);
	return tasks;
}

/*
 * RecordOutcome
 *		Store one router's outcome in its own transaction.  Raises on error.
 */
static void
RecordOutcome(DmRouterTask *t)
{
	Oid			types[6] = {INT8OID, INT8OID, TEXTOID, BOOLOID, TEXTOID, TEXTOID};
	Datum		vals[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	vals[0] = Int64GetDatum(t->router_id);
	vals[1] = Int64GetDatum(t->change_id);
	vals[2] = CStringGetTextDatum(t->digest);
	vals[3] = BoolGetDatum(t->ok);
	nulls[4] = (t->error == NULL);
	vals[4] = t->error ? CStringGetTextDatum(t->error) : (Datum) 0;
	nulls[5] = (t->applied == NULL);
	vals[5] = t->applied ? CStringGetTextDatum(t->applied) : (Datum) 0;
	DmCtlRun("SELECT driftmirror._router_record($1, $2, $3, $4, $5, $6::jsonb)",
			 6, types, vals, nulls);
}

/* ---- the group's router lock ---- */

static void
RouterLockTag(LOCKTAG *tag, int64 group_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, DM_ROUTER_LOCK_KEY, (uint32) group_id, 2);
}

/*
 * RouterLock
 *		Take the group's router lock for the session (waiting if asked).
 *		Returns whether it is held.  Runs its own transaction.
 */
static bool
RouterLock(int64 group_id, bool wait)
{
	LOCKTAG		tag;
	LockAcquireResult res;

	RouterLockTag(&tag, group_id);
	StartTransactionCommand();
	res = LockAcquire(&tag, ExclusiveLock, true, !wait);
	CommitTransactionCommand();
	return res != LOCKACQUIRE_NOT_AVAIL;
}

static void
RouterUnlock(int64 group_id)
{
	LOCKTAG		tag;

	RouterLockTag(&tag, group_id);
	LockRelease(&tag, ExclusiveLock, true);
}

/* ---- batches ---- */

/* the routers of one update of a group, in flight */
typedef struct RouterBatch
{
	int64		group_id;
	MemoryContext cxt;			/* the batch and its tasks; deleting it
								 * cancels and unlocks */
	bool		locked;			/* holds the group's router lock */
	List	   *tasks;			/* DmRouterTask *, those started */
	MemoryContextCallback release;
} RouterBatch;

/* BatchRelease: the batch's context goes: cancel what is in flight, unlock */
static void
BatchRelease(void *arg)
{
	RouterBatch *b = (RouterBatch *) arg;
	ListCell   *lc;

	foreach(lc, b->tasks)
	{
		DmRouterTask *t = lfirst(lc);

		if (!t->done)
			DmRouterCancel(t);
	}
	b->tasks = NIL;
	if (b->locked)
		RouterUnlock(b->group_id);
	b->locked = false;
}

/* BatchCreate: an empty batch in a new child context of parent */
static RouterBatch *
BatchCreate(MemoryContext parent, int64 group_id)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "driftmirror routers",
											  ALLOCSET_SMALL_SIZES);
	RouterBatch *b = MemoryContextAllocZero(cxt, sizeof(RouterBatch));

	b->group_id = group_id;
	b->cxt = cxt;
	b->release.func = BatchRelease;
	b->release.arg = b;
	MemoryContextRegisterResetCallback(cxt, &b->release);
	return b;
}

/* BatchLock: take the group's router lock for the batch (see RouterLock) */
static bool
BatchLock(RouterBatch *b, bool wait)
{
	b->locked = RouterLock(b->group_id, wait);
	return b->locked;
}

/*
 * BatchStart
 *		Read the batch's work (its own transaction) and start the
 *		conversation of each router (of kind, unless NULL) in the I/O
 *		engine; done(arg) is called as each ends.  Raises only if the
 *		control database fails.
 */
static void
BatchStart(RouterBatch *b, bool due_only, const char *kind,
		   void (*done) (void *arg), void *arg)
{
	List	   *tasks = LoadTasks(b->group_id, due_only, b->cxt);
	ListCell   *lc;

	foreach(lc, tasks)
	{
		DmRouterTask *t = lfirst(lc);
		MemoryContext old;

		if (kind != NULL && strcmp(t->kind, kind) != 0)
			continue;
		old = MemoryContextSwitchTo(b->cxt);
		b->tasks = lappend(b->tasks, t);
		MemoryContextSwitchTo(old);
		DmRouterStart(t, b->cxt, done, arg);
	}
}

/*
 * BatchRecord
 *		Record the outcome of every router whose conversation has ended
 *		since the last call (a transaction each), in the batch's order.
 *		Returns whether some are still in flight.  Raises only if the
 *		control database fails.
 */
static bool
BatchRecord(RouterBatch *b)
{
	ListCell   *lc;
	bool		pending = false;

	foreach(lc, b->tasks)
	{
		DmRouterTask *t = lfirst(lc);

		if (!t->done)
		{
			pending = true;
			continue;
		}
		if (t->job == NULL)
			continue;			/* recorded */
		t->job = NULL;
		RecordOutcome(t);
		if (!t->ok)
			ereport(LOG,
					(errmsg("driftmirror: router \"%s\" (%s) could not apply change " INT64_FORMAT ": %s",
							t->name, t->kind, t->change_id, t->error)));
	}
	return pending;
}

/*
 * RunBatch
 *		For a process of its own (the dm_shift and promotion workers): run
 *		the batch, locked, and wait in the I/O engine until every outcome
 *		is recorded; the batch is released on every path.  Raises only if
 *		the control database fails (or on interrupts).
 */
static pg_noinline void
WaitBatch(RouterBatch *b, const char *kind)
{
	BatchStart(b, false, kind, NULL, NULL);
	while (BatchRecord(b))
	{
		CHECK_FOR_INTERRUPTS();
		(void) DmIoWait(1000);
	}
}

static pg_noinline void
RunBatch(RouterBatch *b, const char *kind)
{
	MemoryContext cxt = b->cxt;

	PG_TRY();
	{
		WaitBatch(b, kind);
	}
	PG_CATCH();
	{
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextDelete(cxt);
}

/*
 * DmApplyRouters
 *		See router.h.  Waits for the group's router lock.
 */
void
DmApplyRouters(int64 group_id)
{
	RouterBatch *b = BatchCreate(CurrentMemoryContext, group_id);

	(void) BatchLock(b, true);
	RunBatch(b, NULL);
}

/*
 * DmRouterPhase
 *		See router.h: the group step's phase.  Routers behind the group's
 *		shares (failed, new, or changed while nobody could reach them) are
 *		retried with a back-off; skipped while another process (dm_shift, a
 *		promotion) updates them.  The step waits (DM_PHASE_WAITING) while
 *		the batch is in flight; the batch lives in the step's context, so
 *		an error or a discarded step releases it.  Raises only if the
 *		control database fails.
 */
DmPhaseResult
DmRouterPhase(DmGroupRun *run)
{
	RouterBatch *b = (RouterBatch *) run->phase_state;

	if (b == NULL)
	{
		b = BatchCreate(run->cxt, run->group_id);
		if (!BatchLock(b, false))
		{
			MemoryContextDelete(b->cxt);
			return DM_PHASE_DONE;
		}
		run->phase_state = b;
		BatchStart(b, true, NULL, DmGroupStepWake, run);
	}
	if (BatchRecord(b))
		return DM_PHASE_WAITING;
	MemoryContextDelete(b->cxt);
	return DM_PHASE_DONE;
}

/*
 * DmApplyRoutersOfKind
 *		See router.h.
 */
bool
DmApplyRoutersOfKind(int64 group_id, const char *kind, int lock_wait_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), lock_wait_ms);
	RouterBatch *b = BatchCreate(CurrentMemoryContext, group_id);

	while (!BatchLock(b, false))
	{
		int			rc;

		if (GetCurrentTimestamp() >= until)
		{
			MemoryContextDelete(b->cxt);
			return false;
		}
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   10, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	RunBatch(b, kind);
	return true;
}

/* ---- dm_shift and its worker ---- */

/*
 * DmShiftWorkerMain
 *		Entry point of the dm_shift worker; main_arg is the DSM handle of
 *		the request.  Always sets the result's "done" unless the request is
 *		gone.
 */
void
DmShiftWorkerMain(Datum main_arg)
{
	dsm_segment *seg;
	DmShiftShared *volatile shared;
	MemoryContext cxt;

	cxt = DmCtlWorkerConnect("driftmirror shift", "10s");

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("driftmirror: the shift request is gone")));
	shared = dsm_segment_address(seg);
	pgstat_report_activity(STATE_RUNNING, "driftmirror: shift");

	PG_TRY();
	{
		const char *args[4];
		DmCtlResult *r;
		int64		group_id;
		char	   *result;

		args[0] = shared->group_name;
		args[1] = shared->read_pct;
		args[2] = shared->write_pct;
		args[3] = psprintf("dm_shift by %s", shared->requested_by);

		/* the shares and routes, validated, in one transaction */
		r = DmCtlQueryText("SELECT driftmirror._shift_set($1, $2::numeric, $3::numeric, $4), "
						   "driftmirror._group_id($1) AS group_id",
						   4, args);
		group_id = DmCtlGetInt64(r, 0, "group_id", 0);

		/* every router, in order with any other update of the group's */
		DmApplyRouters(group_id);

		result = DmCtlFirst(DmCtlQuery("SELECT driftmirror._shift_result($1)::text", 1,
									   (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)},
									   NULL));
		if (result == NULL || strlen(result) >= sizeof(shared->result))
			elog(ERROR, "the result of the shift does not fit its buffer");
		strlcpy(shared->result, result, sizeof(shared->result));
		shared->ok = true;
	}
	PG_CATCH();
	{
		shared->ok = false;
		DmCtlSaveError(&shared->error, DmCtlCatch(cxt, true), NULL);
	}
	PG_END_TRY();

	pg_write_barrier();
	shared->done = true;
	dsm_detach(seg);
	proc_exit(0);
}

/*
 * driftmirror_dm_shift
 *		dm_shift(group, read_pct, write_pct DEFAULT 0) → jsonb: run the
 *		shift through a worker and wait for it.  Returns what was applied
 *		(shares, change id, each router's outcome); raises the worker's
 *		refusal with its SQLSTATE.
 */
Datum
driftmirror_dm_shift(PG_FUNCTION_ARGS)
{
	dsm_segment *seg;
	DmShiftShared *shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;
	char	   *db;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("group name must not be null")));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("shares must not be null")));
	db = get_database_name(MyDatabaseId);
	if (db == NULL || strcmp(db, DmDatabase) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dm_shift runs in the control database \"%s\" only", DmDatabase)));

	seg = dsm_create(sizeof(DmShiftShared), 0);
	shared = dsm_segment_address(seg);
	memset(shared, 0, sizeof(DmShiftShared));
	if (strlen(text_to_cstring(PG_GETARG_TEXT_PP(0))) >= sizeof(shared->group_name))
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("group name is too long")));
	strlcpy(shared->group_name, text_to_cstring(PG_GETARG_TEXT_PP(0)), sizeof(shared->group_name));
	strlcpy(shared->read_pct, DatumGetCString(DirectFunctionCall1(numeric_out, PG_GETARG_DATUM(1))),
			sizeof(shared->read_pct));
	strlcpy(shared->write_pct, DatumGetCString(DirectFunctionCall1(numeric_out, PG_GETARG_DATUM(2))),
			sizeof(shared->write_pct));
	strlcpy(shared->requested_by, GetUserNameFromId(GetSessionUserId(), false),
			sizeof(shared->requested_by));

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "driftmirror");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "DmShiftWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "driftmirror shift");
	snprintf(worker.bgw_type, BGW_MAXLEN, "driftmirror shift");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a shift worker: no background worker slot is free"),
				 errhint("Raise max_worker_processes.")));
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status != BGWH_STARTED && status != BGWH_STOPPED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a shift worker")));
	/* interruptible: a cancel leaves the worker to finish on its own */
	(void) WaitForBackgroundWorkerShutdown(handle);
	pg_read_barrier();
	if (!shared->done)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the shift worker of group \"%s\" ended without a result", shared->group_name),
				 errdetail("Routers left behind are brought up to date by the driftmirror worker; see dm_routers.")));
	if (!shared->ok)
		DmCtlRaiseSaved(&shared->error, NULL);
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(shared->result));
	dsm_detach(seg);
	PG_RETURN_DATUM(result);
}

/* ---- client-side routing ---- */

/*
 * driftmirror_multihost
 *		_multihost(endpoints text[], target_session_attrs text): one libpq
 *		conninfo listing the hosts and ports of every endpoint in order;
 *		the other settings come from the first endpoint.  Raises on an
 *		endpoint libpq cannot parse.
 */
Datum
driftmirror_multihost(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	char	   *tsa = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;
	StringInfoData hosts,
				ports,
				out;
	PQconninfoOption *first = NULL;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	initStringInfo(&hosts);
	initStringInfo(&ports);
	initStringInfo(&out);

	for (i = 0; i < n; i++)
	{
		char	   *err = NULL;
		PQconninfoOption *opts;
		PQconninfoOption *o;
		const char *host = "";
		const char *port = "";

		if (nulls[i])
			continue;
		opts = PQconninfoParse(TextDatumGetCString(elems[i]), &err);
		if (opts == NULL)
		{
			char	   *msg = err ? pstrdup(err) : pstrdup("out of memory");
			size_t		len = strlen(msg);

			if (err)
				PQfreemem(err);
			while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
				msg[--len] = '\0';
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid endpoint %d: %s", i + 1, msg)));
		}
		for (o = opts; o->keyword; o++)
		{
			if (o->val == NULL)
				continue;
			if (strcmp(o->keyword, "host") == 0)
				host = o->val;
			else if (strcmp(o->keyword, "port") == 0)
				port = o->val;
		}
		if (hosts.len > 0)
		{
			appendStringInfoChar(&hosts, ',');
			appendStringInfoChar(&ports, ',');
		}
		appendStringInfoString(&hosts, host);
		appendStringInfoString(&ports, port);
		if (first == NULL)
			first = opts;
		else
			PQconninfoFree(opts);
	}
	if (first == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no endpoint given")));

	appendStringInfoString(&out, "host=");
	DmAppendConnValue(&out, hosts.data);
	appendStringInfoString(&out, " port=");
	DmAppendConnValue(&out, ports.data);
	{
		PQconninfoOption *o;

		for (o = first; o->keyword; o++)
		{
			if (o->val == NULL || o->val[0] == '\0' ||
				strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
				strcmp(o->keyword, "port") == 0 ||
				strcmp(o->keyword, "target_session_attrs") == 0)
				continue;
			/* only what the user set: skip libpq's compiled-in defaults */
			if (o->compiled && strcmp(o->val, o->compiled) == 0)
				continue;
			appendStringInfo(&out, " %s=", o->keyword);
			DmAppendConnValue(&out, o->val);
		}
	}
	PQconninfoFree(first);
	appendStringInfoString(&out, " target_session_attrs=");
	DmAppendConnValue(&out, tsa);
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}
