/*-------------------------------------------------------------------------
 *
 * group_step.c
 *	  The monitoring step of one resource group, run by the worker on the
 *	  group's interval.
 *
 * A step is a sequence of phases.  Each phase that reads or writes the
 * catalog runs in its own short transaction; phases that talk to other
 * systems (libpq, HTTP) run outside any transaction and record their
 * results in the next one.  Phases: recovery of interrupted promotions
 * (promote.c), mirrors (mirror.c), auto-promotion, the shift plan, routers
 * behind the shares (router.c), forecasts and scaling (scaling_phase.c),
 * then the heartbeat that dm_status shows.
 *
 * Any phase may raise an error: the worker catches it, aborts, records it
 * against the group and goes on with the next group.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
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

/*
 * DmRunGroupStep
 *		Run every phase of one group's monitoring step.  May raise an error.
 */
void
DmRunGroupStep(int64 group_id, const char *group_name)
{
	char		activity[NAMEDATALEN + 64];
	TimestampTz started = GetCurrentTimestamp();

	snprintf(activity, sizeof(activity),
			 "driftmirror: monitoring step of group \"%s\"", group_name);
	pgstat_report_activity(STATE_RUNNING, activity);

	/*
	 * phase: promotions left unfinished by a driver that died (worker,
	 * session or node failure) get a recovery worker, which finishes them or
	 * rolls them back
	 */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmRecoverPromotions(group_id);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/*
	 * phase: mirrors (creation actions, status of each mirror); the remote
	 * I/O runs outside transactions, see mirror.c
	 */
	DmRunMirrorPhase(group_id, started);
	pgstat_report_activity(STATE_RUNNING, activity);

	/* phase: auto-promotion, on the status the mirror phase just read */
	DmAutoPromote(group_id);

	/*
	 * phase: the group's shift plan, on the mirror status just read: gates,
	 * next step or rollback (76_routing_plans.sql; catalog only)
	 */
	RunInTransaction("SELECT driftmirror._shift_plan_tick($1)", group_id);

	/*
	 * phase: routers behind the group's shares are brought up to date,
	 * failed ones retried (router.c; the I/O runs outside transactions)
	 */
	DmRunRouterPhase(group_id);
	pgstat_report_activity(STATE_RUNNING, activity);

	/*
	 * phase: forecasts and scaling (models retrained on their schedule or
	 * when their accuracy degrades, decisions, actuators); HTTP requests run
	 * outside transactions, see scaling_phase.c
	 */
	DmRunForecastPhase(group_id);
	pgstat_report_activity(STATE_RUNNING, activity);

	/* phase: heartbeat and status (always last: it marks the step done) */
	RunInTransaction("SELECT driftmirror._step_heartbeat($1)", group_id);
}
