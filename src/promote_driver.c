/*-------------------------------------------------------------------------
 *
 * promote_driver.c
 *	  The promotion driver: the dynamic background worker that runs one
 *	  promotion.  It owns the entry (registration and DmPromotionWorkerMain),
 *	  the request and result exchanged with dm_promote through DSM, the
 *	  promotion's advisory lock, and the dispatch by kind to one of two
 *	  sibling switchovers: PostgreSQL (promote_postgres.c) or an HTTP
 *	  actuator (promote_actuator.c).  See promote.h for the layers.
 *
 * Three ways in (bgw_main_arg, bgw_extra):
 *	 - a request of dm_promote (DSM handle): the promotion is recorded and
 *	   its lock taken in one transaction (_promotion_start); the result
 *	   goes back through the segment, "done" set last;
 *	 - auto-promotion of a resource (second int64 of bgw_extra): the same
 *	   with _promotion_start_auto, nobody waiting;
 *	 - recovery of a promotion whose driver died (first int64): the lock is
 *	   only tried, so that two recovery workers never drive one promotion.
 *
 * Invariants: the lock is session-level and held until the process exits,
 * so the main worker's recovery sees a promotion as driven exactly while
 * this process lives; an error before the dispatch leaves nothing to undo
 * (the promotion is recorded, and locked, in one transaction).
 *
 * Memory: everything lives in the driver's context (child of
 * TopMemoryContext), current throughout; ctl_txn.c keeps it current across
 * transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "promote.h"
#include "promote_actuator.h"
#include "promote_postgres.h"

/*
 * DmStartPromotionWorker
 *		Register a dynamic promotion worker: for the request in seg, or to
 *		recover promotion recover_id, or to auto-promote auto_resource_id
 *		(seg NULL).  With handle non-NULL the caller is notified of its
 *		start and end.  Returns false when no worker slot is free.
 */
bool
DmStartPromotionWorker(dsm_segment *seg, int64 recover_id, int64 auto_resource_id,
					   BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "driftmirror");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "DmPromotionWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "driftmirror promotion");
	snprintf(worker.bgw_type, BGW_MAXLEN, "driftmirror promotion");
	worker.bgw_main_arg = UInt32GetDatum(seg ? dsm_segment_handle(seg) : 0);
	memcpy(worker.bgw_extra, &recover_id, sizeof(int64));
	memcpy(worker.bgw_extra + sizeof(int64), &auto_resource_id, sizeof(int64));
	worker.bgw_notify_pid = handle ? MyProcPid : 0;

	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/*
 * TakePromotion
 *		Record the promotion asked for and take its lock (auto_rid: an
 *		auto-promotion; shared: dm_promote's request), or try the lock of
 *		promotion recover_id.  Returns the promotion's id, or 0 when there
 *		is nothing to drive (the resource is gone, or another process drives
 *		the promotion).  Raises on error.
 */
static int64
TakePromotion(int64 auto_rid, DmPromoteShared *shared, int64 recover_id)
{
	char	   *idtext;

	if (auto_rid != 0)
	{
		const char *args[2] = {psprintf(INT64_FORMAT, auto_rid), psprintf("%d", MyProcPid)};

		idtext = DmCtlValueText("SELECT i, pg_catalog.pg_advisory_lock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", i::integer) "
								"FROM driftmirror._promotion_start_auto($1::bigint, $2::integer) i",
								2, args);
		return idtext ? strtoi64(idtext, NULL, 10) : 0;
	}
	if (shared != NULL)
	{
		const char *args[7] = {shared->group_name,
			shared->resource_name, shared->options, shared->trigger,
		shared->reason, psprintf("%d", MyProcPid), shared->requested_by};

		/* record it and take its lock in the same transaction */
		idtext = DmCtlValueText("SELECT i, pg_catalog.pg_advisory_lock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", i::integer) "
								"FROM driftmirror._promotion_start($1, $2, $3::jsonb, $4, $5, $6::integer, $7) i",
								7, args);
		if (idtext == NULL)
			elog(ERROR, "_promotion_start returned no promotion");
		shared->promotion_id = strtoi64(idtext, NULL, 10);
		return shared->promotion_id;
	}
	{
		const char *args[2] = {psprintf(INT64_FORMAT, recover_id), NULL};
		char	   *got;

		got = DmCtlValueText("SELECT pg_catalog.pg_try_advisory_lock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", $1::integer)",
							 1, args);
		if (got == NULL || strcmp(got, "t") != 0)
			return 0;			/* someone else drives it */
		args[1] = psprintf("{\"worker_pid\": %d, \"attempt\": 1}", MyProcPid);
		(void) DmCtlValueText("SELECT driftmirror._promotion_set($1::bigint, $2::jsonb)", 2, args);
		return recover_id;
	}
}

/*
 * Dispatch
 *		Hand promotion id to the switchover of its kind.  Never raises but
 *		for interrupts (the switchovers record their own failures).
 */
static void
Dispatch(int64 id, bool recovering, DmPromoteShared *shared)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile kind = NULL;

	PG_TRY();
	{
		const char *args[1] = {psprintf(INT64_FORMAT, id)};

		kind = DmCtlValueText("SELECT kind FROM driftmirror.promotion WHERE id = $1::bigint",
							  1, args);
	}
	PG_CATCH();
	{
		/* as before the dispatch: the recovery retries it */
		DmPromoteFailed(shared, DmCtlCatchWarn(cxt, "promotion " INT64_FORMAT " could not be read", id),
						NULL);
		return;
	}
	PG_END_TRY();

	if (kind != NULL && strcmp(kind, "postgres") != 0)
		DmDriveActuatorPromotion(id, recovering, shared);
	else
		DmDrivePostgresPromotion(id, recovering, shared);
}

/*
 * DmPromotionWorkerMain
 *		Entry point of the promotion driver.  main_arg is the DSM handle of
 *		a request from dm_promote, or 0 with, in bgw_extra, the id of a
 *		promotion to recover or (second int64) the id of a resource to
 *		auto-promote.
 */
void
DmPromotionWorkerMain(Datum main_arg)
{
	MemoryContext cxt;
	dsm_segment *seg = NULL;
	DmPromoteShared *volatile shared = NULL;
	volatile int64 id = 0;
	int64		recover_id = 0;
	int64		auto_rid = 0;
	bool		recovering;

	cxt = DmCtlWorkerConnect("driftmirror promotion", "10s");

	memcpy(&recover_id, MyBgworkerEntry->bgw_extra, sizeof(int64));
	memcpy(&auto_rid, MyBgworkerEntry->bgw_extra + sizeof(int64), sizeof(int64));
	recovering = DatumGetUInt32(main_arg) == 0 && auto_rid == 0;
	if (DatumGetUInt32(main_arg) != 0)
	{
		seg = dsm_attach(DatumGetUInt32(main_arg));
		if (seg == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("driftmirror: the promotion request is gone")));
		shared = dsm_segment_address(seg);
	}

	pgstat_report_activity(STATE_RUNNING, "driftmirror: promotion");

	PG_TRY();
	{
		id = TakePromotion(auto_rid, shared, recovering ? recover_id : 0);
	}
	PG_CATCH();
	{
		DmPromoteFailed(shared, DmCtlCatch(cxt, true), NULL);
		id = 0;
	}
	PG_END_TRY();

	if (id != 0)
		Dispatch(id, recovering, shared);

	if (shared)
	{
		pg_write_barrier();
		shared->done = true;
	}
	proc_exit(0);
}
