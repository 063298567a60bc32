/*-------------------------------------------------------------------------
 *
 * group_step.c
 *	  The monitoring step of one resource group, run by the worker on the
 *	  group's interval.
 *
 * A step is a sequence of phases (the table Phases below).  Each phase
 * that reads or writes the catalog runs in its own short transaction;
 * phases that talk to other systems (libpq, HTTP) run outside any
 * transaction and record their results in the next one.  A phase that
 * hands a request to the I/O engine (io_engine.c) returns
 * DM_PHASE_WAITING: the step is parked, other groups' steps go on, and the
 * worker resumes this one when the engine calls back.  So a node that does
 * not answer holds only its own group's step, until its deadline.
 * Phases: recovery of interrupted promotions (promote.c), mirrors
 * (mirror.c), auto-promotion, the shift plan, routers behind the shares
 * (router.c), forecasts and scaling (scaling_phase.c), then the heartbeat
 * that dm_status shows.
 *
 * Memory: a step's state lives in its own context (run->cxt), current
 * while a phase runs; transaction commits switch to TopMemoryContext, so
 * phases switch back to run->cxt after each.
 *
 * Any phase may raise an error: the worker catches it, aborts, records it
 * against the group, frees the step and goes on with the next group.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "group_step.h"
#include "mirror.h"
#include "promote.h"
#include "router.h"
#include "scaling.h"
#include "spi_util.h"

/*
 * RunInTransaction
 *		Run one parameterised statement about a group in its own
 *		transaction.  Raises an error on failure.
 */
static void
RunInTransaction(const char *sql, int64 group_id)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmSpiExec(sql, 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)});
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* phase: promotions left unfinished by a driver that died (worker,
 * session or node failure) get a recovery worker, which finishes them or
 * rolls them back */
static DmPhaseResult
PhaseRecoverPromotions(DmGroupRun *run)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmRecoverPromotions(run->group_id);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(run->cxt);
	return DM_PHASE_DONE;
}

/* phase: mirrors (creation actions, status of each mirror); the remote
 * I/O runs outside transactions, status reads through the I/O engine, see
 * mirror.c */
static DmPhaseResult
PhaseMirrors(DmGroupRun *run)
{
	return DmMirrorPhase(run);
}

/* phase: auto-promotion, on the status the mirror phase just read */
static DmPhaseResult
PhaseAutoPromote(DmGroupRun *run)
{
	DmAutoPromote(run->group_id);
	MemoryContextSwitchTo(run->cxt);
	return DM_PHASE_DONE;
}

/* phase: the group's shift plan, on the mirror status just read: gates,
 * next step or rollback (76_routing_plans.sql; catalog only) */
static DmPhaseResult
PhaseShiftPlan(DmGroupRun *run)
{
	RunInTransaction("SELECT driftmirror._shift_plan_tick($1)", run->group_id);
	MemoryContextSwitchTo(run->cxt);
	return DM_PHASE_DONE;
}

/* phase: routers behind the group's shares are brought up to date, failed
 * ones retried (router.c; the I/O runs outside transactions) */
static DmPhaseResult
PhaseRouters(DmGroupRun *run)
{
	DmRunRouterPhase(run->group_id);
	MemoryContextSwitchTo(run->cxt);
	return DM_PHASE_DONE;
}

/* phase: forecasts and scaling (models retrained on their schedule or when
 * their accuracy degrades, decisions, actuators); HTTP requests run outside
 * transactions, see scaling_phase.c */
static DmPhaseResult
PhaseForecasts(DmGroupRun *run)
{
	DmRunForecastPhase(run->group_id);
	MemoryContextSwitchTo(run->cxt);
	return DM_PHASE_DONE;
}

/* phase: heartbeat and status (always last: it marks the step done) */
static DmPhaseResult
PhaseHeartbeat(DmGroupRun *run)
{
	RunInTransaction("SELECT driftmirror._step_heartbeat($1)", run->group_id);
	MemoryContextSwitchTo(run->cxt);
	return DM_PHASE_DONE;
}

/*
 * The phases of a step, in order.  A new phase is one line here and one
 * function above; keep the heartbeat last.
 */
static const struct
{
	const char *name;
	DmPhaseResult (*run) (DmGroupRun *run);
}			Phases[] =
{
	{"promotion recovery", PhaseRecoverPromotions},
	{"mirrors", PhaseMirrors},
	{"auto-promotion", PhaseAutoPromote},
	{"shift plan", PhaseShiftPlan},
	{"routers", PhaseRouters},
	{"forecasts and scaling", PhaseForecasts},
	{"heartbeat", PhaseHeartbeat},
};

/*
 * DmGroupStepCreate
 *		A step of the group, not started yet, in its own memory context.
 */
DmGroupRun *
DmGroupStepCreate(int64 group_id, const char *group_name)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "driftmirror group step",
											  ALLOCSET_SMALL_SIZES);
	DmGroupRun *run = MemoryContextAllocZero(cxt, sizeof(DmGroupRun));

	run->cxt = cxt;
	run->group_id = group_id;
	run->group_name = MemoryContextStrdup(cxt, group_name);
	run->started = GetCurrentTimestamp();
	return run;
}

/*
 * DmGroupStepAdvance
 *		See group_step.h.  The caller's memory context is current again on
 *		a normal return.
 */
bool
DmGroupStepAdvance(DmGroupRun *run)
{
	MemoryContext caller = CurrentMemoryContext;
	char		activity[NAMEDATALEN + 64];

	snprintf(activity, sizeof(activity),
			 "driftmirror: monitoring step of group \"%s\"", run->group_name);
	run->ready = false;
	while (run->phase < (int) lengthof(Phases))
	{
		DmPhaseResult r;

		pgstat_report_activity(STATE_RUNNING, activity);
		MemoryContextSwitchTo(run->cxt);
		r = Phases[run->phase].run(run);
		MemoryContextSwitchTo(caller);
		if (r == DM_PHASE_WAITING)
			return false;
		run->phase++;
		run->phase_state = NULL;
	}
	return true;
}

/*
 * DmGroupStepFree
 *		Release a step (done, failed or discarded).
 */
void
DmGroupStepFree(DmGroupRun *run)
{
	MemoryContextDelete(run->cxt);
}

/*
 * DmGroupStepWake
 *		See group_step.h.
 */
void
DmGroupStepWake(void *run)
{
	((DmGroupRun *) run)->ready = true;
}
