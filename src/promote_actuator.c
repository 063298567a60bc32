/*-------------------------------------------------------------------------
 *
 * promote_actuator.c
 *	  Promotion of mirrors of cache, app, web and service resources through
 *	  their HTTP actuator: the actuator switchover, run by the promotion
 *	  driver (promote_driver.c) for promotions whose kind is not postgres;
 *	  requests go out through actuator_client.c.  It knows neither the
 *	  driver nor the PostgreSQL switchover (promote.h).
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
 *	 - the bearer token is read from its file per request (actuator_client.c) and
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

#include "ctl_txn.h"
#include "driftmirror.h"
#include "actuator_client.h"
#include "promote_actuator.h"

/* the next request, read by column name */
#define NEXT_SQL \
	"SELECT action, label, http_method, http_url, http_body, http_key, " \
	"http_token_file, http_timeout_ms, remaining_ms " \
	"FROM driftmirror._promotion_actuator_next($1::bigint)"

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
		DmCtlResult *next;
		char	   *action;
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

		next = DmCtlQueryText(NEXT_SQL, 1, args);
		action = next->nrows > 0 ? DmCtlGet(next, 0, "action") : NULL;
		if (action == NULL)
			break;				/* ended */

		if (last_action == NULL || strcmp(last_action, action) != 0)
		{
			sent_of_action = 0;
			if (last_action)
				pfree(last_action);
			last_action = MemoryContextStrdup(outer, action);
		}
		sent_of_action++;

		req.label = DmCtlGet(next, 0, "label");
		req.method = DmCtlGet(next, 0, "http_method");
		req.url = DmCtlGet(next, 0, "http_url");
		req.body = DmCtlGet(next, 0, "http_body");
		req.idempotency_key = DmCtlGet(next, 0, "http_key");
		req.token_file = DmCtlGet(next, 0, "http_token_file");
		req.timeout_ms = DmCtlGetInt32(next, 0, "http_timeout_ms", 0);
		remaining_ms = DmCtlGetInt32(next, 0, "remaining_ms", 0);

		snprintf(activity, sizeof(activity),
				 "driftmirror: promotion " INT64_FORMAT ": %s request %d to the actuator",
				 id, action, sent_of_action);
		pgstat_report_activity(STATE_RUNNING, activity);

		sent = GetCurrentTimestamp();
		DmActuatorPerform(&req, &ans);

		{
			const char *a[7];

			a[0] = idtext;
			a[1] = action;
			a[2] = ans.answered ? "true" : "false";
			a[3] = ans.answered ? psprintf("%d", ans.status) : NULL;
			a[4] = ans.answered ? ans.body : NULL;
			a[5] = ans.error;
			a[6] = ans.detail;
			verdict = DmCtlValueText("SELECT driftmirror._promotion_actuator_answer("
									 "$1::bigint, $2, $3::boolean, $4::integer, $5, $6, $7)",
									 7, a);
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
				 id, action);
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
	DmCtlResult *r;
	char	   *state;
	char	   *sqlstate;
	char	   *error;
	char	   *detail;

	if (shared == NULL)
		return;
	args[0] = psprintf(INT64_FORMAT, id);
	r = DmCtlQueryText("SELECT state, new_primary, error, error_sqlstate, detail "
					   "FROM driftmirror._promotion_actuator_result($1::bigint)",
					   1, args);
	state = r->nrows > 0 ? DmCtlGet(r, 0, "state") : NULL;
	shared->promotion_id = id;
	shared->no_pause = true;
	shared->fence_lsn[0] = '\0';
	if (state != NULL && strcmp(state, "done") == 0)
	{
		char	   *new_primary = DmCtlGet(r, 0, "new_primary");

		shared->ok = true;
		strlcpy(shared->new_primary, new_primary ? new_primary : "", sizeof(shared->new_primary));
		return;
	}
	shared->ok = false;
	sqlstate = r->nrows > 0 ? DmCtlGet(r, 0, "error_sqlstate") : NULL;
	error = r->nrows > 0 ? DmCtlGet(r, 0, "error") : NULL;
	detail = r->nrows > 0 ? DmCtlGet(r, 0, "detail") : NULL;
	if (sqlstate != NULL && strlen(sqlstate) == 5)
		shared->error.sqlerrcode = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]);
	else
		shared->error.sqlerrcode = ERRCODE_INTERNAL_ERROR;
	if (error != NULL)
		strlcpy(shared->error.message, error, sizeof(shared->error.message));
	else
		snprintf(shared->error.message, sizeof(shared->error.message),
				 "promotion " INT64_FORMAT " ended in state %s", id,
				 state ? state : "unknown");
	if (detail != NULL)
		strlcpy(shared->error.detail, detail, sizeof(shared->error.detail));
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

			state = DmCtlValueText("SELECT state FROM driftmirror.promotion WHERE id = $1::bigint",
								   1, args);
			ereport(LOG,
					(errmsg("driftmirror: recovering actuator promotion " INT64_FORMAT " left in state %s",
							id, state ? state : "unknown")));
			(void) DmCtlValueText("SELECT driftmirror._promotion_actuator_recover($1::bigint)",
								  1, args);
		}
		(void) RunRequests(id);
		WriteOutcome(id, shared);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = DmCtlCatchWarn(cxt, "actuator promotion " INT64_FORMAT " could not go on; the worker resumes it",
							   id);
		DmPromoteFailed(shared, edata,
						"promotion could not go on; the driftmirror worker resumes it: ");
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_RUNNING, "driftmirror: promotion");
}
