/*-------------------------------------------------------------------------
 *
 * promote_actuator.c
 *	  Promotion of mirrors of cache, app, web and service resources through
 *	  their HTTP actuator: the driver, run by the promotion worker
 *	  (promote_worker.c) for promotions whose kind is not postgres.
 *
 * The state machine lives in SQL (sql/install/72_promotion_actuator.sql);
 * this file is a generic executor, like mirror.c for mirrors: in one short
 * transaction _promotion_actuator_next() moves the promotion on (guardrails,
 * deadlines) and returns the next request, already counted in the step log;
 * the request goes out with no transaction open (DmActuatorPerform: one
 * request, the actuator_timeout of the mirror, at most the time left); then
 * _promotion_actuator_answer() records the answer in another short
 * transaction and says whether to send the same request again.
 *
 * Invariants:
 *	 - the promotion's state is committed before any request it announces is
 *	   sent, and every request of one promotion carries the same
 *	   Idempotency-Key (one for the promote, one for the abort), so a driver
 *	   that dies mid-request is replaced by the recovery worker the main
 *	   worker starts (its advisory lock is free), which sends again: before
 *	   the deadline the promote, after it the abort;
 *	 - the routes flip only in the transaction that records the answer
 *	   "promoted": at any moment they point at the primary the actuator last
 *	   confirmed;
 *	 - resends back off from 100 ms to 1 s and never wait past the deadline;
 *	   the promote is resent until promote_timeout, the abort until
 *	   promote_abort_timeout, so the driver always ends;
 *	 - the bearer token is read from its file per request (mirror.c) and
 *	   never reaches the catalog, an error message or the log.
 *
 * Memory: each round runs in a child context of the caller's, reset every
 * round; the verdict is copied out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "driftmirror.h"
#include "mirror.h"
#include "promote_actuator.h"

/* columns of _promotion_actuator_next, in order */
#define NEXT_SQL \
	"SELECT action, label, http_method, http_url, http_body, http_key, " \
	"http_token_file, http_timeout_ms, remaining_ms " \
	"FROM driftmirror._promotion_actuator_next($1::bigint)"
#define NEXT_COLUMNS 9

/* resends back off from RESEND_MIN_MS, doubling, up to RESEND_MAX_MS */
#define RESEND_MIN_MS 100
#define RESEND_MAX_MS 1000

/*
 * WaitUntil
 *		Sleep until the given time, interruptibly.
 */
static void
WaitUntil(TimestampTz until)
{
	for (;;)
	{
		TimestampTz now;
		long		secs;
		int			usecs;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		now = GetCurrentTimestamp();
		if (now >= until)
			return;
		TimestampDifference(now, until, &secs, &usecs);
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   secs * 1000L + usecs / 1000 + 1, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
	}
}

/*
 * RunRequests
 *		Send requests until the promotion has ended.  Returns its final
 *		state as _promotion_actuator_answer said it (palloc'd in the
 *		caller's context), or NULL when _promotion_actuator_next ended it
 *		(refused by the guardrails, failed after the abort deadline, or
 *		ended already).  Raises only on catalog errors and interrupts.
 */
static char *
RunRequests(int64 id)
{
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext round = AllocSetContextCreate(outer, "driftmirror actuator promotion round",
												ALLOCSET_SMALL_SIZES);
	char	   *idtext = psprintf(INT64_FORMAT, id);
	char	   *last_action = NULL;
	char	   *result = NULL;
	int			sent_of_action = 0;

	for (;;)
	{
		char	   *row[NEXT_COLUMNS];
		const char *args[1] = {idtext};
		DmActuatorRequest req;
		DmActuatorAnswer ans;
		TimestampTz sent;
		TimestampTz until;
		char		activity[128];
		char	   *verdict;
		int			remaining_ms;
		int			wait_ms;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(round);
		MemoryContextSwitchTo(round);

		if (!DmPromoteCtlRow(NEXT_SQL, 1, args, NEXT_COLUMNS, row) || row[0] == NULL)
			break;				/* ended */

		if (last_action == NULL || strcmp(last_action, row[0]) != 0)
		{
			sent_of_action = 0;
			if (last_action)
				pfree(last_action);
			last_action = MemoryContextStrdup(outer, row[0]);
		}
		sent_of_action++;

		req.label = row[1];
		req.method = row[2];
		req.url = row[3];
		req.body = row[4];
		req.idempotency_key = row[5];
		req.token_file = row[6];
		req.timeout_ms = row[7] ? atoi(row[7]) : 0;
		remaining_ms = row[8] ? atoi(row[8]) : 0;

		snprintf(activity, sizeof(activity),
				 "driftmirror: promotion " INT64_FORMAT ": %s request %d to the actuator",
				 id, row[0], sent_of_action);
		pgstat_report_activity(STATE_RUNNING, activity);

		sent = GetCurrentTimestamp();
		DmActuatorPerform(&req, &ans);

		{
			const char *a[7];

			a[0] = idtext;
			a[1] = row[0];
			a[2] = ans.answered ? "true" : "false";
			a[3] = ans.answered ? psprintf("%d", ans.status) : NULL;
			a[4] = ans.answered ? ans.body : NULL;
			a[5] = ans.error;
			a[6] = ans.detail;
			(void) DmPromoteCtlRow("SELECT driftmirror._promotion_actuator_answer("
								   "$1::bigint, $2, $3::boolean, $4::integer, $5, $6, $7)",
								   7, a, 1, &verdict);
		}
		if (verdict == NULL || strcmp(verdict, "retry") != 0)
		{
			result = verdict ? MemoryContextStrdup(outer, verdict) : NULL;
			break;
		}

		/* the same request again: back off, never past the deadline */
		wait_ms = RESEND_MIN_MS << Min(sent_of_action - 1, 4);
		wait_ms = Min(wait_ms, RESEND_MAX_MS);
		until = Min(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms),
					TimestampTzPlusMilliseconds(sent, remaining_ms));
		snprintf(activity, sizeof(activity),
				 "driftmirror: promotion " INT64_FORMAT ": waiting to send the %s request again",
				 id, row[0]);
		pgstat_report_activity(STATE_RUNNING, activity);
		WaitUntil(until);
	}

	MemoryContextSwitchTo(outer);
	MemoryContextDelete(round);
	return result;
}

/*
 * WriteOutcome
 *		For a waiting dm_promote: the promotion's outcome from the catalog.
 */
static void
WriteOutcome(int64 id, DmPromoteShared *shared)
{
	const char *args[1];
	char	   *row[5];

	if (shared == NULL)
		return;
	args[0] = psprintf(INT64_FORMAT, id);
	(void) DmPromoteCtlRow("SELECT state, new_primary, error, error_sqlstate, detail "
						   "FROM driftmirror._promotion_actuator_result($1::bigint)",
						   1, args, 5, row);
	shared->promotion_id = id;
	shared->no_pause = true;
	shared->fence_lsn[0] = '\0';
	if (row[0] != NULL && strcmp(row[0], "done") == 0)
	{
		shared->ok = true;
		strlcpy(shared->new_primary, row[1] ? row[1] : "", sizeof(shared->new_primary));
		return;
	}
	shared->ok = false;
	if (row[3] != NULL && strlen(row[3]) == 5)
		shared->sqlstate = MAKE_SQLSTATE(row[3][0], row[3][1], row[3][2], row[3][3], row[3][4]);
	else
		shared->sqlstate = ERRCODE_INTERNAL_ERROR;
	if (row[2] != NULL)
		strlcpy(shared->message, row[2], sizeof(shared->message));
	else
		snprintf(shared->message, sizeof(shared->message),
				 "promotion " INT64_FORMAT " ended in state %s", id,
				 row[0] ? row[0] : "unknown");
	if (row[4] != NULL)
		strlcpy(shared->detail, row[4], sizeof(shared->detail));
}

/*
 * DmDriveActuatorPromotion
 *		Run (or, recovering, resume) actuator promotion id to its end.
 *		The caller holds the promotion's advisory lock.  Outcomes are
 *		recorded in the catalog and, for a caller, in *shared.  A catalog
 *		error leaves the promotion as it is recorded: the main worker's
 *		recovery resumes it once this process has ended.  Never raises
 *		except for interrupts.
 */
void
DmDriveActuatorPromotion(int64 id, bool recovering, DmPromoteShared *shared)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		if (recovering)
		{
			const char *args[1] = {psprintf(INT64_FORMAT, id)};
			char	   *state;

			(void) DmPromoteCtlRow("SELECT state FROM driftmirror.promotion WHERE id = $1::bigint",
								   1, args, 1, &state);
			ereport(LOG,
					(errmsg("driftmirror: recovering actuator promotion " INT64_FORMAT " left in state %s",
							id, state ? state : "unknown")));
			(void) DmPromoteCtlRow("SELECT driftmirror._promotion_actuator_recover($1::bigint)",
								   1, args, 1, &state);
		}
		(void) RunRequests(id);
		WriteOutcome(id, shared);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: actuator promotion " INT64_FORMAT " could not go on; the worker resumes it: %s",
						id, edata->message)));
		if (shared != NULL)
		{
			shared->ok = false;
			shared->sqlstate = edata->sqlerrcode;
			snprintf(shared->message, sizeof(shared->message),
					 "promotion could not go on; the driftmirror worker resumes it: %s",
					 edata->message ? edata->message : "unknown error");
		}
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_RUNNING, "driftmirror: promotion");
}
