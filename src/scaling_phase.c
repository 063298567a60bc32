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
 * mirrors: they are copied out of the transaction and handed to the
 * worker's I/O engine after it has committed (no transaction or snapshot
 * is held across the network wait), all at once, each with the actuator's
 * deadline; the phase waits (the group's step is parked, other groups go
 * on) and each answer is recorded by driftmirror._scale_outcome in its own
 * transaction.  A request without an answer is recorded as failed; the
 * next step decides again, with a new idempotency key.
 *
 * Memory: the requests live in the step's memory context (run->cxt).  A
 * reset callback of that context drops the requests still in the engine
 * when the step ends before they do (recording an answer raised, the step
 * was discarded): the engine must never call back into freed memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "ctl_txn.h"
#include "actuator_client.h"
#include "scaling.h"

/* one HTTP scale request returned by _forecast_step */
typedef struct ScaleRequest
{
	int64		action_id;
	DmActuatorRequest req;
	DmActuatorCall *call;		/* in the I/O engine, or done */
	bool		recorded;
} ScaleRequest;

/* the phase's state (run->phase_state), in the step's context */
typedef struct ScalePhase
{
	List	   *requests;		/* of ScaleRequest */
	MemoryContextCallback drop;
} ScalePhase;

/*
 * DropScaleRequests
 *		Reset callback of the step's context: cancel the requests still in
 *		the engine (a request done has nothing left there).
 */
static void
DropScaleRequests(void *arg)
{
	ScalePhase *st = (ScalePhase *) arg;
	ListCell   *lc;

	foreach(lc, st->requests)
	{
		ScaleRequest *r = (ScaleRequest *) lfirst(lc);

		if (r->call != NULL)
			DmActuatorCancel(r->call);
	}
}

/*
 * RecordScaleOutcome
 *		In its own transaction: _scale_outcome for one request.
 */
static void
RecordScaleOutcome(int64 action_id, const DmActuatorAnswer *ans)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = Int64GetDatum(action_id);
	values[1] = BoolGetDatum(ans->answered);
	values[2] = Int32GetDatum(ans->status);
	nulls[2] = !ans->answered;
	values[3] = ans->error ? CStringGetTextDatum(ans->error) : (Datum) 0;
	nulls[3] = (ans->error == NULL);
	DmCtlRun("SELECT driftmirror._scale_outcome($1, $2, $3, $4)",
			 4, (Oid[]) {INT8OID, BOOLOID, INT4OID, TEXTOID}, values, nulls);
}

/* ScaleAnswered: the engine's callback for a scale request: wakes the step */
static void
ScaleAnswered(DmActuatorCall *call, void *arg)
{
	DmGroupStepWake(arg);
}

/*
 * DmForecastPhase
 *		Run _forecast_step for a group (one transaction), hand the HTTP scale
 *		requests it returned to the I/O engine, all at once, and record each
 *		answer as it comes (a transaction each); the phase waits
 *		(DM_PHASE_WAITING) until every request is answered or past its
 *		deadline.  Raises only when the catalog cannot be read or written
 *		(or on interrupts).
 */
DmPhaseResult
DmForecastPhase(DmGroupRun *run)
{
	ScalePhase *st = (ScalePhase *) run->phase_state;
	ListCell   *lc;
	bool		waiting = false;

	if (st == NULL)
	{
		DmCtlResult *res;
		List	   *requests = NIL;
		int			i;

		res = DmCtlQuery("SELECT * FROM driftmirror._forecast_step($1)",
						 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(run->group_id)}, NULL);
		for (i = 0; i < res->nrows; i++)
		{
			ScaleRequest *r = palloc0(sizeof(ScaleRequest));

			r->action_id = DmCtlGetInt64(res, i, "action_id", 0);
			r->req.label = DmCtlGet(res, i, "label");
			r->req.method = "POST";
			r->req.url = DmCtlGet(res, i, "url");
			r->req.body = DmCtlGet(res, i, "body");
			r->req.idempotency_key = DmCtlGet(res, i, "idempotency_key");
			r->req.token_file = DmCtlGet(res, i, "token_file");
			r->req.timeout_ms = DmCtlGetInt32(res, i, "timeout_ms", 0);
			if (r->action_id > 0 && r->req.url != NULL && r->req.label != NULL)
				requests = lappend(requests, r);
		}
		if (requests == NIL)
			return DM_PHASE_DONE;
		st = palloc0(sizeof(ScalePhase));
		st->requests = requests;
		st->drop.func = DropScaleRequests;
		st->drop.arg = st;
		MemoryContextRegisterResetCallback(run->cxt, &st->drop);
		run->phase_state = st;
		foreach(lc, st->requests)
		{
			ScaleRequest *r = (ScaleRequest *) lfirst(lc);

			r->call = DmActuatorStart(&r->req, run->cxt, ScaleAnswered, run);
		}
	}

	foreach(lc, st->requests)
	{
		ScaleRequest *r = (ScaleRequest *) lfirst(lc);

		if (r->recorded)
			continue;
		if (!r->call->done)
		{
			waiting = true;
			continue;
		}
		r->recorded = true;
		RecordScaleOutcome(r->action_id, &r->call->answer);
	}
	return waiting ? DM_PHASE_WAITING : DM_PHASE_DONE;
}
