/*-------------------------------------------------------------------------
 *
 * promote.c
 *	  SQL side of promotion: dm_promote, which hands each resource's
 *	  promotion to the promotion driver (promote_driver.c, a dynamic
 *	  background worker) and waits for it; and the main worker's hooks:
 *	  recovery of interrupted promotions and auto-promotion, which start
 *	  drivers too.  See promote.h for the layers.
 *
 * dm_promote cannot commit (it runs inside the caller's transaction), so
 * the worker records the promotion and every step in its own transactions.
 * The request and the result travel through a small DSM segment.  If the
 * caller is cancelled or killed, the worker carries on: it finishes the
 * promotion or rolls it back on its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/pg_lsn.h"
#include "utils/tuplestore.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "fence.h"
#include "promote.h"

PG_FUNCTION_INFO_V1(driftmirror_dm_promote);

/*
 * DmRecoverPromotions
 *		The main worker's group step, outside any transaction: for every
 *		unfinished promotion of the group that no process drives (its
 *		advisory lock is free), and every ended one that still records
 *		pgbouncer routers as paused, start a recovery worker.  The lock is
 *		only probed here: the recovery worker takes it.  Raises on catalog
 *		errors.
 */
void
DmRecoverPromotions(int64 group_id)
{
	DmCtlResult *r;
	int			i;

	/* unfinished ones, and ended ones still owing a pooler a RESUME */
	r = DmCtlQuery("SELECT id FROM driftmirror._promotions_unfinished($1) id "
				   "WHERE CASE WHEN pg_catalog.pg_try_advisory_lock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", id::integer) "
				   "THEN pg_catalog.pg_advisory_unlock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", id::integer) "
				   "ELSE false END",
				   1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)}, NULL);
	for (i = 0; i < r->nrows; i++)
	{
		int64		id = DmCtlGetInt64(r, i, "id", 0);

		if (DmStartPromotionWorker(NULL, id, 0, NULL))
			ereport(LOG,
					(errmsg("driftmirror: promotion " INT64_FORMAT " has no driver; started a worker to finish it or roll it back, or to resume its paused pgbouncer routers",
							id)));
		else
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("driftmirror: no background worker slot free to recover promotion " INT64_FORMAT, id),
					 errhint("Raise max_worker_processes.")));
	}
}

/*
 * DmAutoPromote
 *		Called by the main worker in each group step, outside transactions:
 *		evaluate the auto-promotion thresholds (_auto_promote_check logs
 *		every decision) and start a promotion worker for each resource whose
 *		thresholds held for the whole window.
 */
void
DmAutoPromote(int64 group_id)
{
	DmCtlResult *r;
	int			i;

	r = DmCtlQuery("SELECT resource_id FROM driftmirror._auto_promote_check($1)",
				   1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)}, NULL);
	for (i = 0; i < r->nrows; i++)
	{
		int64		rid = DmCtlGetInt64(r, i, "resource_id", 0);

		if (!DmStartPromotionWorker(NULL, 0, rid, NULL))
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("driftmirror: no background worker slot free to auto-promote resource " INT64_FORMAT, rid),
					 errhint("Raise max_worker_processes.")));
	}
}

/* what the caller's error says while it waits for the driver */
typedef struct PromoteWait
{
	DmPromoteShared *shared;
	const char *group;
	const char *resource;
} PromoteWait;

/*
 * PromoteWaitContext
 *		Error context of an interrupted wait (pg_cancel_backend, a
 *		statement_timeout): the caller gives up waiting, the promotion does
 *		not stop.
 */
static void
PromoteWaitContext(void *arg)
{
	PromoteWait *w = (PromoteWait *) arg;
	int64		id;

	pg_read_barrier();
	id = w->shared->promotion_id;
	if (id != 0)
		errcontext("promotion " INT64_FORMAT " of resource \"%s\" of group \"%s\" goes on in the background: its driver finishes or rolls it back on its own (see dm_promotions)",
				   id, w->resource, w->group);
	else
		errcontext("the promotion of resource \"%s\" of group \"%s\" goes on in the background: its driver finishes or rolls it back on its own (see dm_promotions)",
				   w->resource, w->group);
}

/*
 * PromoteOne
 *		Run the promotion of one resource through a worker and wait for it.
 *		Fills *shared with the result; raises the worker's error.
 */
static void
PromoteOne(const char *group, const char *resource, const char *options,
		   DmPromoteShared **result)
{
	dsm_segment *seg;
	DmPromoteShared *shared;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;

	seg = dsm_create(sizeof(DmPromoteShared), 0);
	shared = dsm_segment_address(seg);
	memset(shared, 0, sizeof(DmPromoteShared));
	strlcpy(shared->group_name, group, sizeof(shared->group_name));
	strlcpy(shared->resource_name, resource, sizeof(shared->resource_name));
	strlcpy(shared->trigger, "manual", sizeof(shared->trigger));
	strlcpy(shared->requested_by, GetUserNameFromId(GetSessionUserId(), false),
			sizeof(shared->requested_by));
	snprintf(shared->reason, sizeof(shared->reason), "dm_promote by %s",
			 shared->requested_by);
	if (strlen(options) >= sizeof(shared->options))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("promotion options are too long")));
	strlcpy(shared->options, options, sizeof(shared->options));

	if (!DmStartPromotionWorker(seg, 0, 0, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a promotion worker: no background worker slot is free"),
				 errhint("Raise max_worker_processes.")));
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status != BGWH_STARTED && status != BGWH_STOPPED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a promotion worker")));

	/* interruptible: a cancel leaves the worker to finish on its own */
	{
		ErrorContextCallback errcallback;
		PromoteWait wait = {shared, group, resource};

		errcallback.callback = PromoteWaitContext;
		errcallback.arg = (void *) &wait;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
		status = WaitForBackgroundWorkerShutdown(handle);
		error_context_stack = errcallback.previous;
	}
	pg_read_barrier();
	if (!shared->done)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the promotion worker of resource \"%s\" of group \"%s\" ended without a result",
						resource, group),
				 shared->promotion_id ?
				 errdetail("Promotion " INT64_FORMAT " is finished or rolled back by the driftmirror worker; see dm_promotions.",
						   shared->promotion_id) : 0));
	if (!shared->ok)
		DmCtlRaiseSaved(&shared->error, shared->promotion_id ?
						psprintf("promotion " INT64_FORMAT " of resource \"%s\" of group \"%s\"",
								 shared->promotion_id, resource, group) : NULL);

	*result = palloc(sizeof(DmPromoteShared));
	memcpy(*result, shared, sizeof(DmPromoteShared));
	dsm_detach(seg);
}

/*
 * driftmirror_dm_promote
 *		dm_promote(group, resource DEFAULT NULL, options DEFAULT '{}'):
 *		promote one resource's mirror, or every mirrored resource of the
 *		group in dependency order (postgres ones by switchover, the others
 *		through their HTTP actuator).  Returns one row per resource.
 *		Raises the first failure (resources promoted before it stay
 *		promoted).
 */
Datum
driftmirror_dm_promote(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *group;
	char	   *options;
	char	   *resource = NULL;
	List	   *resources = NIL;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("group name must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("promotion options must not be null"),
				 errhint("Pass '{}' for no options.")));
	if (!DmFenceAvailable())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dm_promote needs driftmirror in shared_preload_libraries")));

	group = text_to_cstring(PG_GETARG_TEXT_PP(0));
	options = JsonbToCString(NULL, &PG_GETARG_JSONB_P(2)->root, VARSIZE(PG_GETARG_JSONB_P(2)));
	if (!PG_ARGISNULL(1))
		resource = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/*
	 * check the arguments and list the resources, in this transaction (the
	 * rows come back in this function's context)
	 */
	DmCtlConnect();
	{
		DmCtlResult *r;
		Datum		gid;

		r = DmCtlExec("SELECT driftmirror._group_id($1) AS id", 1, (Oid[]) {TEXTOID},
					  (Datum[]) {CStringGetTextDatum(group)}, NULL);
		gid = Int64GetDatum(DmCtlGetInt64(r, 0, "id", 0));
		(void) DmCtlExec("SELECT driftmirror._promotion_options($1, $2::jsonb)", 2,
						 (Oid[]) {INT8OID, TEXTOID},
						 (Datum[]) {gid, CStringGetTextDatum(options)}, NULL);
		if (resource != NULL)
		{
			r = DmCtlExec("SELECT EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = r.id) AS mirrored "
						  "FROM driftmirror._resource_id($1, $2, $3) r (id)", 3,
						  (Oid[]) {INT8OID, TEXTOID, TEXTOID},
						  (Datum[]) {gid, CStringGetTextDatum(group), CStringGetTextDatum(resource)},
						  NULL);
			if (!DmCtlGetBool(r, 0, "mirrored", false))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("resource \"%s\" of group \"%s\" has no mirror to promote",
								resource, group),
						 errhint("Create one with dm_create_mirror.")));
			resources = list_make1(resource);
		}
		else
		{
			int			i;

			r = DmCtlExec("SELECT resource_name FROM driftmirror._promotion_order($1)", 1,
						  (Oid[]) {INT8OID}, (Datum[]) {gid}, NULL);
			for (i = 0; i < r->nrows; i++)
				resources = lappend(resources, DmCtlGet(r, i, "resource_name"));
			if (resources == NIL)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("group \"%s\" has no resource with a mirror to promote", group),
						 errhint("Create one with dm_create_mirror.")));
		}
		/* a non-superuser promotes only mirrors of approved endpoints */
		foreach(lc, resources)
			(void) DmCtlExec("SELECT driftmirror._check_mirror_delegated(driftmirror._resource_id($1, $2, $3))",
							 3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
							 (Datum[]) {gid, CStringGetTextDatum(group),
							 CStringGetTextDatum((char *) lfirst(lc))}, NULL);
	}
	DmCtlFinish();

	/* the driver works in the control database: the catalog is there */
	if (MyDatabaseId != get_database_oid(DmDatabase, true))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dm_promote must be called in the control database \"%s\"", DmDatabase),
				 errhint("The control database is set by driftmirror.database.")));

	InitMaterializedSRF(fcinfo, 0);

	foreach(lc, resources)
	{
		const char *res = lfirst(lc);
		DmPromoteShared *r;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		PromoteOne(group, res, options, &r);
		values[0] = CStringGetTextDatum(res);
		values[1] = CStringGetTextDatum(r->new_primary);
		values[2] = Float8GetDatum(r->pause_ms);
		nulls[2] = r->no_pause;
		if (r->fence_lsn[0])
			values[3] = DirectFunctionCall1(pg_lsn_in, CStringGetDatum(r->fence_lsn));
		else
			nulls[3] = true;
		values[4] = Int64GetDatum(r->promotion_id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
