/*-------------------------------------------------------------------------
 *
 * scaling_phase.c
 *	  The forecast phase of a group step: retrain models on their schedule
 *	  or when their rolling accuracy degrades, store forecasts, take the
 *	  scaling decisions and carry them out through the resources' actuators.
 *
 * The decisions are taken in SQL (driftmirror._forecast_step, one short
 * transaction), which also calls SQL actuators and records everything in
 * the action log.  What it returns are the HTTP scale requests for actuator
 * mirrors: they are copied out of the transaction, sent after it has
 * committed (no transaction or snapshot is held across the network wait),
 * one at a time with the actuator's deadline, and each answer is recorded
 * by driftmirror._scale_outcome in its own transaction.  A request without
 * an answer is recorded as failed; the next step decides again, with a new
 * idempotency key.
 *
 * Memory: the requests live in the caller's memory context (the worker
 * resets it after every group step).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "mirror.h"
#include "scaling.h"
#include "ctl_txn.h"

/* one HTTP scale request returned by _forecast_step */
typedef struct ScaleRequest
{
	int64		action_id;
	DmActuatorRequest req;
} ScaleRequest;

/* text column `name' of SPI row `row', copied into cxt, or NULL */
static char *
ColumnText(MemoryContext cxt, int row, const char *name)
{
	int			col = SPI_fnumber(SPI_tuptable->tupdesc, name);
	char	   *v;

	if (col <= 0)
		elog(ERROR, "column \"%s\" missing from the forecast step's result", name);
	v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/*
 * RecordScaleOutcome
 *		In its own transaction: _scale_outcome for one request.
 */
static void
RecordScaleOutcome(int64 action_id, const DmActuatorAnswer *ans)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(action_id);
	values[1] = BoolGetDatum(ans->answered);
	values[2] = Int32GetDatum(ans->status);
	if (!ans->answered)
		nulls[2] = 'n';
	values[3] = ans->error ? CStringGetTextDatum(ans->error) : (Datum) 0;
	if (ans->error == NULL)
		nulls[3] = 'n';

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	if (SPI_execute_with_args("SELECT driftmirror._scale_outcome($1, $2, $3, $4)",
							  4, (Oid[]) {INT8OID, BOOLOID, INT4OID, TEXTOID},
							  values, nulls, false, 0) < 0)
		elog(ERROR, "could not record the outcome of scale action " INT64_FORMAT,
			 action_id);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * DmRunForecastPhase
 *		Run _forecast_step for a group, then send the HTTP scale requests it
 *		returned and record their answers.  Raises only when the catalog
 *		cannot be read or written (or on interrupts).
 */
void
DmRunForecastPhase(int64 group_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *requests = NIL;
	ListCell   *lc;
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmSpiExec("SELECT * FROM driftmirror._forecast_step($1)",
			  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)});
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		ScaleRequest *r = palloc0(sizeof(ScaleRequest));
		char	   *v;

		MemoryContextSwitchTo(old);
		v = ColumnText(cxt, (int) i, "action_id");
		r->action_id = v ? strtoi64(v, NULL, 10) : 0;
		r->req.label = ColumnText(cxt, (int) i, "label");
		r->req.method = "POST";
		r->req.url = ColumnText(cxt, (int) i, "url");
		r->req.body = ColumnText(cxt, (int) i, "body");
		r->req.idempotency_key = ColumnText(cxt, (int) i, "idempotency_key");
		r->req.token_file = ColumnText(cxt, (int) i, "token_file");
		v = ColumnText(cxt, (int) i, "timeout_ms");
		r->req.timeout_ms = v ? atoi(v) : 0;
		if (r->action_id > 0 && r->req.url != NULL && r->req.label != NULL)
		{
			old = MemoryContextSwitchTo(cxt);
			requests = lappend(requests, r);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	foreach(lc, requests)
	{
		ScaleRequest *r = (ScaleRequest *) lfirst(lc);
		DmActuatorAnswer ans;

		DmActuatorPerform(&r->req, &ans);
		RecordScaleOutcome(r->action_id, &ans);
	}
}
