/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The driftmirror background worker.
 *
 * One worker per cluster, registered when the library is preloaded.  It
 * connects to driftmirror.database and loops: each pass reads the groups
 * whose monitoring step is due (one short transaction), then starts each
 * group's step (group_step.c manages its transactions, so no transaction is
 * held across a network wait).  A step whose phase waits for the I/O engine
 * (io_engine.c) is parked in Runs and the pass goes on; the nap between
 * passes drives the engine's requests and resumes the parked steps they
 * answer, so a node that does not answer holds only its own group.  A
 * group with a parked step is not started again.  While the extension does
 * not exist in that database the worker waits quietly.
 *
 * Metric collection (collector.c) is a pass-level phase before the group
 * steps: it records the polls that finished and starts those of the due
 * groups, as requests of the same I/O engine.  The nap between passes is
 * the engine's wait (DmIoWait): the only place the worker waits for the
 * network, on one WaitEventSet over the latch and every socket.  The metric
 * store maintenance runs after the steps, at most every
 * driftmirror.metric_maintenance_interval.
 *
 * Fault isolation: an error in one group's step is caught here, logged,
 * recorded in driftmirror.group_state, and the pass goes on with the next
 * group.  If even recording fails, the group is skipped in memory until its
 * interval has passed, so a broken group cannot make the worker spin.
 *
 * Memory: LoopContext is reset at the start of every pass; everything a pass
 * allocates outside transactions lives there, except parked steps, which
 * live in their own contexts (freed when the step ends or is discarded).
 * Every transaction is run through ctl_txn.c, which keeps the caller's
 * context current across commits and copies rows into it.
 *
 * Time: a background worker has no client loop setting the statement start
 * time (a transaction's now() is taken from it) or arming statement_timeout:
 * ctl_txn.c does both for every transaction and statement of the worker and
 * its callees, the timeout being driftmirror.worker_statement_timeout.
 *
 * Signals: SIGHUP reloads settings (and restarts the worker if
 * driftmirror.database changed), SIGTERM ends it through the standard die()
 * path.  A crash restarts it through the postmaster.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "group_step.h"
#include "io_engine.h"
#include "mirror.h"

/* one group whose step is due in this pass */
typedef struct DueGroup
{
	int64		id;
	char	   *name;
	uint32		work;			/* phases with work (group_step.h) */
} DueGroup;

/* a due group by id (ReadStepWork) */
typedef struct DueEntry
{
	int64		id;				/* hash key */
	DueGroup   *group;
} DueEntry;

/* in-memory back-off for a group whose failure could not be recorded */
typedef struct GroupBackoff
{
	int64		group_id;		/* hash key */
	TimestampTz retry_at;
} GroupBackoff;

static MemoryContext LoopContext = NULL;
static HTAB *Backoff = NULL;
static List *Runs = NIL;		/* steps in progress (DmGroupRun *), in
								 * TopMemoryContext */
static char *ConnectedDatabase = NULL;
static bool ExtensionPresent = false;

static List *ReadDueGroups(bool reloaded);
static void ReadStepWork(List *due);
static void StartStep(DueGroup *group);
static bool AdvanceStep(DmGroupRun *run);
static void AdvanceReadySteps(void);
static void DiscardSteps(void);
static void Nap(long timeout_ms);
static void RecordStepFailure(int64 group_id, ErrorData *edata);

/*
 * DmRegisterWorker
 *		Register the worker with the postmaster.  Only valid while
 *		shared_preload_libraries is being processed.
 */
void
DmRegisterWorker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "driftmirror");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "DmWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "driftmirror worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, DM_WORKER_TYPE);
	worker.bgw_notify_pid = 0;

	RegisterBackgroundWorker(&worker);
}

/*
 * DmWorkerMain
 *		Entry point of the background worker.  Never returns.
 */
void
DmWorkerMain(Datum main_arg)
{
	HASHCTL		ctl;
	bool		reloaded = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(DmDatabase, NULL, 0);
	ConnectedDatabase = MemoryContextStrdup(TopMemoryContext, DmDatabase);

	/*
	 * The worker's own session: a fixed search_path and bounded waits, so
	 * that a lock held by a long admin transaction delays one group, not
	 * the whole loop (every statement is also bounded by
	 * driftmirror.worker_statement_timeout: ctl_txn.c).
	 */
	DmCtlSessionInit("driftmirror worker", "5s");

	LoopContext = AllocSetContextCreate(TopMemoryContext,
										"driftmirror worker loop",
										ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(GroupBackoff);
	ctl.hcxt = TopMemoryContext;
	Backoff = hash_create("driftmirror group back-off", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	ereport(LOG,
			(errmsg("driftmirror worker started in database \"%s\"",
					ConnectedDatabase)));

	for (;;)
	{
		List	   *due;
		ListCell   *lc;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(DmDatabase, ConnectedDatabase) != 0)
			{
				ereport(LOG,
						(errmsg("driftmirror worker restarting: driftmirror.database changed from \"%s\" to \"%s\"",
								ConnectedDatabase, DmDatabase)));
				proc_exit(1);
			}
			reloaded = true;
		}

		MemoryContextReset(LoopContext);
		MemoryContextSwitchTo(LoopContext);

		due = ReadDueGroups(reloaded);
		reloaded = false;

		/*
		 * Pass-level phase: record the metric polls that finished, start
		 * those of the due groups.  Polls run concurrently and outlive the
		 * pass: the nap below drives them, so a slow node delays nothing.
		 */
		if (ExtensionPresent && DmEnabled)
		{
			int64	   *ids = palloc(sizeof(int64) * Max(list_length(due), 1));
			int			n = 0;

			foreach(lc, due)
				ids[n++] = ((DueGroup *) lfirst(lc))->id;
			DmCollectMetrics(ids, n);
		}
		else
			DmCollectorDiscard();

		if (!(ExtensionPresent && DmEnabled))
			DiscardSteps();
		foreach(lc, due)
		{
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
				break;			/* apply new settings before going on */
			StartStep((DueGroup *) lfirst(lc));
		}

		/* drops of dropped mirrors' objects, retried until done */
		if (ExtensionPresent && DmEnabled && !ConfigReloadPending)
			DmRunMirrorCleanups();
		if (ExtensionPresent && DmEnabled)
			DmMaybeRunMetricMaintenance(false);
		/* queued action notifications to the webhook, if one is set */
		if (ExtensionPresent && DmEnabled && !ConfigReloadPending)
			DmDeliverNotifications();
		pgstat_report_activity(STATE_IDLE, NULL);

		Nap(DmNaptimeMs);
		ResetLatch(MyLatch);
	}
}

/*
 * Nap
 *		The pause between passes: up to timeout_ms, shorter when the latch
 *		is set.  The I/O engine's wait drives every request in flight (the
 *		steps' and the collector's) and the steps it answered are resumed
 *		as soon as it returns.  Never raises except for interrupts; an
 *		error of an engine callback is logged and the nap goes on.
 */
static void
Nap(long timeout_ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	AdvanceReadySteps();
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);
		volatile bool latch = false;

		if (left <= 0)
			break;
		PG_TRY();
		{
			latch = DmIoWait(left);
		}
		PG_CATCH();
		{
			(void) DmCtlCatchWarn(LoopContext, "error while handling an answer of the I/O engine");
		}
		PG_END_TRY();
		AdvanceReadySteps();
		if (latch || ConfigReloadPending)
			break;
	}
	MemoryContextSwitchTo(LoopContext);
}

/* StepInProgress: whether the group's step waits for the I/O engine */
static bool
StepInProgress(int64 group_id)
{
	ListCell   *lc;

	foreach(lc, Runs)
		if (((DmGroupRun *) lfirst(lc))->group_id == group_id)
			return true;
	return false;
}

/*
 * ReadDueGroups
 *		In one transaction: check that the extension exists, record the
 *		worker's own state, and list the groups whose step is due and not
 *		backed off.  Returns a list in LoopContext; NIL when the extension
 *		is absent, the worker is disabled, or reading failed (logged).
 */
static List *
ReadDueGroups(bool reloaded)
{
	List	   *volatile due = NIL;

	PG_TRY();
	{
		TimestampTz now = GetCurrentTimestamp();
		DmCtlResult *r;
		int			i;

		DmCtlBegin("driftmirror: looking for due groups");
		ExtensionPresent = OidIsValid(get_extension_oid(DM_EXTENSION_NAME, true));
		if (ExtensionPresent)
		{
			(void) DmCtlExec("SELECT driftmirror._worker_heartbeat($1, $2, $3, $4)",
							 4, (Oid[]) {INT4OID, BOOLOID, INT4OID, BOOLOID},
							 (Datum[]) {Int32GetDatum(MyProcPid),
								 BoolGetDatum(DmEnabled),
								 Int32GetDatum(DmNaptimeMs),
							 BoolGetDatum(reloaded)}, NULL);
			if (DmEnabled)
			{
				r = DmCtlExec("SELECT id, name FROM driftmirror._due_groups()",
							  0, NULL, NULL, NULL);
				for (i = 0; i < r->nrows; i++)
				{
					int64		id = DmCtlGetInt64(r, i, "id", 0);
					GroupBackoff *b;
					DueGroup   *g;

					if (StepInProgress(id))
						continue;	/* waits for the I/O engine */
					b = hash_search(Backoff, &id, HASH_FIND, NULL);
					if (b != NULL && b->retry_at > now)
						continue;
					if (b != NULL)
						hash_search(Backoff, &id, HASH_REMOVE, NULL);

					g = palloc(sizeof(DueGroup));
					g->id = id;
					g->work = DM_WORK_ALL;
					g->name = DmCtlGet(r, i, "name");
					due = lappend(due, g);
				}
				ReadStepWork(due);
			}
		}
		DmCtlCommit();
	}
	PG_CATCH();
	{
		(void) DmCtlCatchWarn(LoopContext, "error while reading the groups to monitor");
		ExtensionPresent = false;
		due = NIL;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(LoopContext);
	return due;
}

/*
 * ReadStepWork
 *		In ReadDueGroups' transaction (ctl_txn.c): set the work
 *		flags of every due group from one query (driftmirror._step_work).
 *		A catalog that predates the function (0.1.0, before ALTER EXTENSION
 *		UPDATE) leaves them all set: every phase runs.
 */
static void
ReadStepWork(List *due)
{
	HASHCTL		ctl;
	HTAB	   *byid;
	Datum	   *ids;
	ArrayType  *arr;
	ListCell   *lc;
	DmCtlResult *r;
	int			n = 0;
	int			i;

	if (due == NIL ||
		!OidIsValid(LookupFuncName(list_make2(makeString(DM_SCHEMA_NAME),
											  makeString("_step_work")),
								   1, (Oid[]) {INT8ARRAYOID}, true)))
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(DueEntry);
	ctl.hcxt = LoopContext;
	byid = hash_create("driftmirror due groups", list_length(due), &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ids = palloc(sizeof(Datum) * list_length(due));
	foreach(lc, due)
	{
		DueGroup   *g = (DueGroup *) lfirst(lc);
		DueEntry   *e = hash_search(byid, &g->id, HASH_ENTER, NULL);

		e->group = g;
		ids[n++] = Int64GetDatum(g->id);
	}
	arr = construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE);

	r = DmCtlExec(DM_STEP_WORK_SQL, 1, (Oid[]) {INT8ARRAYOID},
				  (Datum[]) {PointerGetDatum(arr)}, NULL);
	for (i = 0; i < r->nrows; i++)
	{
		char	   *gid = DmCtlGet(r, i, "group_id");
		DueEntry   *e;

		if (gid == NULL)
			continue;
		e = hash_search(byid, &(int64) {strtoi64(gid, NULL, 10)}, HASH_FIND, NULL);
		if (e != NULL)
			e->group->work = DmGroupStepWork(r, i);
	}
}

/*
 * StartStep
 *		Begin one group's step; if a phase waits for the I/O engine, the
 *		step joins Runs and is resumed from the nap.
 */
static void
StartStep(DueGroup *group)
{
	DmGroupRun *run = DmGroupStepCreate(group->id, group->name, group->work);

	if (!AdvanceStep(run))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		Runs = lappend(Runs, run);
		MemoryContextSwitchTo(old);
	}
}

/*
 * AdvanceStep
 *		Run a step's phases until one waits (false) or it ends (true: done
 *		or failed, and freed).  An error is logged and recorded, never
 *		propagated.
 */
static bool
AdvanceStep(DmGroupRun *run)
{
	volatile bool done = false;

	PG_TRY();
	{
		done = DmGroupStepAdvance(run);
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(LoopContext, true);

		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: monitoring step of group \"%s\" failed: %s",
						run->group_name, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));

		RecordStepFailure(run->group_id, edata);
		done = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(LoopContext);
	if (done)
		DmGroupStepFree(run);
	return done;
}

/*
 * AdvanceReadySteps
 *		Resume the steps the I/O engine has answered.
 */
static void
AdvanceReadySteps(void)
{
	ListCell   *lc;

	foreach(lc, Runs)
	{
		DmGroupRun *run = (DmGroupRun *) lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		if (!run->ready)
			continue;
		if (AdvanceStep(run))
			Runs = foreach_delete_current(Runs, lc);
	}
}

/*
 * DiscardSteps
 *		The extension is gone or the worker disabled: drop the steps in
 *		progress, the notifications and cleanups in flight and the
 *		engine's requests.
 */
static void
DiscardSteps(void)
{
	ListCell   *lc;

	DmNotifyDiscard();
	DmMirrorCleanupsDiscard();
	DmIoDiscardAll();
	foreach(lc, Runs)
		DmGroupStepFree((DmGroupRun *) lfirst(lc));
	list_free(Runs);
	Runs = NIL;
}

/*
 * RecordStepFailure
 *		Record a failed step in group_state (and the action log on the first
 *		failure of a run).  If that fails too, back the group off in memory.
 */
static void
RecordStepFailure(int64 group_id, ErrorData *edata)
{
	PG_TRY();
	{
		DmCtlRun("SELECT driftmirror._step_failed($1, $2, $3)",
				 3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
				 (Datum[]) {Int64GetDatum(group_id),
					 CStringGetTextDatum(edata->message),
				 CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode))}, NULL);
	}
	PG_CATCH();
	{
		GroupBackoff *b;
		bool		found;

		(void) DmCtlCatchWarn(LoopContext, "error while recording a failed monitoring step");
		b = hash_search(Backoff, &group_id, HASH_ENTER, &found);
		b->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  Max(DmNaptimeMs, 10000));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(LoopContext);
}
