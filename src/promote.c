/*-------------------------------------------------------------------------
 *
 * promote.c
 *	  SQL side of promotion: dm_promote, which hands each resource's
 *	  promotion to a dynamic background worker (promote_worker.c) and waits
 *	  for it; the main worker's recovery of interrupted promotions; and the
 *	  libpq multi-host string helper behind dm_route_multihost.
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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "driftmirror.h"
#include "endpoint.h"
#include "fence.h"
#include "promote.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(driftmirror_dm_promote);
PG_FUNCTION_INFO_V1(driftmirror_multihost);

/*
 * DmStartPromotionWorker
 *		Register a dynamic promotion worker: for the request in seg, or to
 *		recover promotion recover_id (seg NULL).  With handle non-NULL the
 *		caller is notified of its start and end.  Returns false when no
 *		worker slot is free.
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
 * DmRecoverPromotions
 *		Called by the main worker in each group step, inside a transaction
 *		with SPI connected: for every unfinished promotion of the group that
 *		no process drives (its advisory lock is free), and every ended one
 *		that still records pgbouncer routers as paused, start a recovery
 *		worker.  The lock is only probed here: the recovery worker takes it.
 */
void
DmRecoverPromotions(int64 group_id)
{
	uint64		i;
	List	   *ids = NIL;
	ListCell   *lc;

	/* unfinished ones, and ended ones still owing a pooler a RESUME */
	DmSpiExec("SELECT id FROM driftmirror._promotions_unfinished($1) id "
			  "WHERE CASE WHEN pg_catalog.pg_try_advisory_lock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", id::integer) "
			  "THEN pg_catalog.pg_advisory_unlock(" CppAsString2(DM_PROMOTION_LOCK_KEY) ", id::integer) "
			  "ELSE false END",
			  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)});
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));
		int64	   *copy = palloc(sizeof(int64));

		*copy = id;
		ids = lappend(ids, copy);
	}
	foreach(lc, ids)
	{
		int64		id = *(int64 *) lfirst(lc);

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
	MemoryContext outer = CurrentMemoryContext;
	List	   *ids = NIL;
	ListCell   *lc;
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmSpiExec("SELECT resource_id FROM driftmirror._auto_promote_check($1)",
			  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)});
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(outer);
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		ids = lappend(ids, id);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);

	foreach(lc, ids)
	{
		int64		rid = *(int64 *) lfirst(lc);

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
		ereport(ERROR,
				(errcode(shared->sqlstate ? shared->sqlstate : ERRCODE_INTERNAL_ERROR),
				 errmsg("%s", shared->message),
				 shared->detail[0] ? errdetail_internal("%s", shared->detail) : 0,
				 shared->promotion_id ?
				 errcontext("promotion " INT64_FORMAT " of resource \"%s\" of group \"%s\"",
							shared->promotion_id, resource, group) : 0));

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
	MemoryContext outer = CurrentMemoryContext;
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

	/* check the arguments and list the resources, in this transaction */
	DmSpiConnect();
	{
		Datum		gid;
		bool		isnull;

		DmSpiExec("SELECT driftmirror._group_id($1)", 1, (Oid[]) {TEXTOID},
				  (Datum[]) {CStringGetTextDatum(group)});
		gid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		DmSpiExec("SELECT driftmirror._promotion_options($1, $2::jsonb)", 2,
				  (Oid[]) {INT8OID, TEXTOID},
				  (Datum[]) {gid, CStringGetTextDatum(options)});
		if (resource != NULL)
		{
			DmSpiExec("SELECT EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = r.id) "
					  "FROM driftmirror._resource_id($1, $2, $3) r (id)", 3,
					  (Oid[]) {INT8OID, TEXTOID, TEXTOID},
					  (Datum[]) {gid, CStringGetTextDatum(group), CStringGetTextDatum(resource)});
			if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("resource \"%s\" of group \"%s\" has no mirror to promote",
								resource, group),
						 errhint("Create one with dm_create_mirror.")));
			resources = list_make1(resource);
		}
		else
		{
			uint64		i;

			DmSpiExec("SELECT resource_name FROM driftmirror._promotion_order($1)", 1,
					  (Oid[]) {INT8OID}, (Datum[]) {gid});
			for (i = 0; i < SPI_processed; i++)
			{
				char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
				MemoryContext spi = MemoryContextSwitchTo(outer);

				resources = lappend(resources, pstrdup(name));
				MemoryContextSwitchTo(spi);
			}
			if (resources == NIL)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("group \"%s\" has no resource with a mirror to promote", group),
						 errhint("Create one with dm_create_mirror.")));
		}
		/* a non-superuser promotes only mirrors of approved endpoints */
		foreach(lc, resources)
			DmSpiExec("SELECT driftmirror._check_mirror_delegated(driftmirror._resource_id($1, $2, $3))",
					  3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
					  (Datum[]) {gid, CStringGetTextDatum(group),
					  CStringGetTextDatum((char *) lfirst(lc))});
	}
	SPI_finish();

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
