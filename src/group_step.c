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
 * (mirror.c), drift (78_drift.sql), auto-promotion, the shift plan,
 * routers behind the shares (router.c), forecasts and scaling
 * (scaling_phase.c), then the heartbeat that dm_status shows.  A phase
 * whose catalog rows the group does not have (no mirror, no router, no
 * running shift plan...) is skipped: the worker reads these facts for all
 * due groups in one query per pass (DmGroupStepWork), so a group with
 * nothing but metrics costs one transaction per step, its heartbeat.
 *
 * Memory: a step's state lives in its own context (run->cxt), current
 * while a phase runs; phases run their transactions through ctl_txn.c,
 * which keeps that context current across commits.
 *
 * Any phase may raise an error: the worker catches it, aborts, records it
 * against the group, frees the step and goes on with the next group.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "group_step.h"
#include "mirror.h"
#include "promote.h"
#include "router.h"
#include "scaling.h"

/*
 * RunInTransaction
 *		Run one parameterised statement about a group in its own
 *		transaction.  Raises an error on failure.
 */
static void
RunInTransaction(const char *sql, int64 group_id)
{
	DmCtlRun(sql, 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)}, NULL);
}

/*
 * The phases of a step, in order.  A phase is one of: a catalog statement
 * about the group run in its own transaction (sql), a function of the
 * group that never waits (run), or a function of the step that may park it
 * for the I/O engine (wait).  A new phase is one line here; keep the
 * heartbeat last: it marks the step done.
 */
static const struct
{
	const char *name;
	uint32		needs;			/* DM_WORK_* flag, 0: always runs */
	const char *sql;
	void		(*run) (int64 group_id);
	DmPhaseResult (*wait) (DmGroupRun *run);
}			Phases[] =
{
	/* promotions left unfinished by a driver that died (worker, session or
	 * node failure) get a recovery worker, which finishes them or rolls
	 * them back (promote.c) */
	{"promotion recovery", DM_WORK_PROMOTIONS, NULL, DmRecoverPromotions, NULL},
	/* creation actions and status of each mirror; status reads through the
	 * I/O engine, see mirror.c */
	{"mirrors", DM_WORK_MIRRORS, NULL, NULL, DmMirrorPhase},
	/* drift of each mirror from its primary, forecast over lead_time: may
	 * hold auto-promotion and the shift plan (78_drift.sql) */
	{"drift", DM_WORK_MIRRORS, "SELECT driftmirror._drift_step($1)", NULL, NULL},
	/* on the status the mirror phase just read */
	{"auto-promotion", DM_WORK_MIRRORS, NULL, DmAutoPromote, NULL},
	/* gates, next step or rollback of the shift plan, on the mirror status
	 * just read (76_routing_plans.sql; catalog only) */
	{"shift plan", DM_WORK_SHIFT_PLAN, "SELECT driftmirror._shift_plan_tick($1)", NULL, NULL},
	/* routers behind the group's shares brought up to date, failed ones
	 * retried; their conversations through the I/O engine (router.c) */
	{"routers", DM_WORK_ROUTERS, NULL, NULL, DmRouterPhase},
	/* models retrained on their schedule or when their accuracy degrades,
	 * decisions; actuators' scale requests through the I/O engine
	 * (scaling_phase.c) */
	{"forecasts and scaling", DM_WORK_SCALING, NULL, NULL, DmForecastPhase},
	{"heartbeat", 0, "SELECT driftmirror._step_heartbeat($1)", NULL, NULL},
};

/* the columns of driftmirror._step_work() and the flag each sets */
static const struct
{
	const char *column;
	uint32		flag;
}			WorkColumns[] =
{
	{"promotions", DM_WORK_PROMOTIONS},
	{"mirrors", DM_WORK_MIRRORS},
	{"shift_plan", DM_WORK_SHIFT_PLAN},
	{"routers", DM_WORK_ROUTERS},
	{"scaling", DM_WORK_SCALING},
};

/*
 * DmGroupStepWork
 *		The DM_WORK_* flags of row `row' of driftmirror._step_work()'s
 *		result, its columns read by name.  A column missing or NULL counts
 *		as work (the phase runs and finds out itself).
 */
uint32
DmGroupStepWork(const DmCtlResult *r, int row)
{
	uint32		work = 0;
	int			i;

	for (i = 0; i < (int) lengthof(WorkColumns); i++)
	{
		int			fno = r->desc ? SPI_fnumber(r->desc, WorkColumns[i].column) : 0;
		char	   *v = fno > 0 ? DmCtlGetAt(r, row, fno) : NULL;

		if (v == NULL || strcmp(v, "t") == 0)
			work |= WorkColumns[i].flag;
	}
	return work;
}

/*
 * DmGroupStepCreate
 *		A step of the group, not started yet, in its own memory context;
 *		work says which phases have something to do (DM_WORK_ALL: all).
 */
DmGroupRun *
DmGroupStepCreate(int64 group_id, const char *group_name, uint32 work)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "driftmirror group step",
											  ALLOCSET_SMALL_SIZES);
	DmGroupRun *run = MemoryContextAllocZero(cxt, sizeof(DmGroupRun));

	run->cxt = cxt;
	run->group_id = group_id;
	run->group_name = MemoryContextStrdup(cxt, group_name);
	run->work = work;
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
	char		activity[NAMEDATALEN + 96];

	run->ready = false;
	while (run->phase < (int) lengthof(Phases))
	{
		DmPhaseResult r;

		if (Phases[run->phase].needs != 0 &&
			(run->work & Phases[run->phase].needs) == 0)
		{
			run->phase++;		/* nothing for it in this group */
			continue;
		}
		snprintf(activity, sizeof(activity),
				 "driftmirror: monitoring step of group \"%s\": %s",
				 run->group_name, Phases[run->phase].name);
		pgstat_report_activity(STATE_RUNNING, activity);
		MemoryContextSwitchTo(run->cxt);
		r = DM_PHASE_DONE;
		if (Phases[run->phase].sql != NULL)
			RunInTransaction(Phases[run->phase].sql, run->group_id);
		else if (Phases[run->phase].run != NULL)
			Phases[run->phase].run(run->group_id);
		else
			r = Phases[run->phase].wait(run);
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
