/*-------------------------------------------------------------------------
 *
 * mirror.c
 *	  The worker's side of mirrors: a generic executor of remote actions.
 *
 * The state machine lives in SQL (sql/install/60_mirrors.sql): in one short
 * transaction, _mirror_next() records the next action of a mirror as
 * pending and returns its node and SQL text; here we run that text on the
 * node over libpq with no transaction open; then _mirror_done() records the
 * outcome in another short transaction.  A crash between the two leaves the
 * action pending, and since every action is idempotent the next step simply
 * does it again.  Cleanups of dropped mirrors follow the same pattern with
 * _cleanup_due() / _cleanup_done().
 *
 * Every remote session first creates driftmirror_node if needed and marks
 * itself as driftmirror's own (DmRemoteNodeSession), so it passes the write
 * fence.
 *
 * Memory: strings read inside a transaction are copied into the caller's
 * context (the worker's loop context), which is current again after every
 * commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "mirror.h"
#include "remote_conn.h"
#include "spi_util.h"

/* one remote action read from the catalog */
typedef struct RemoteAction
{
	int64		id;
	char	   *action;
	char	   *conninfo;
	char	   *label;
	char	   *sql;
} RemoteAction;

/* outcome of a remote action */
typedef struct RemoteOutcome
{
	bool		ok;
	char	   *result;
	char	   *sqlstate;
	char	   *error;			/* the message: names nodes by label only */
	char	   *detail;			/* may hold host names (libpq): admins only */
} RemoteOutcome;

/* copy column n of row 0 into context cxt (NULL stays NULL) */
static char *
CopyValue(MemoryContext cxt, int row, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/*
 * RunRemoteValue
 *		Connect, become a node session if asked, run sql, return the first
 *		value (palloc'd) or NULL.  Raises an error; closes the connection in
 *		every case.
 */
static char *
RunRemoteValue(const char *conninfo, const char *label, const char *sql,
			   bool node_session)
{
	PGconn	   *volatile conn = NULL;
	char	   *volatile val = NULL;

	PG_TRY();
	{
		conn = DmRemoteConnect(conninfo, label, 0);
		if (node_session)
			DmRemoteNodeSession(conn, label);
		val = DmRemoteValue(conn, label, sql, 0, NULL);
	}
	PG_CATCH();
	{
		DmRemoteClose(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	DmRemoteClose(conn);
	return val;
}

/*
 * RunAction
 *		Run one action outside any transaction; errors are caught and
 *		returned in the outcome (strings in the current context).
 */
static RemoteOutcome
RunAction(RemoteAction *a)
{
	RemoteOutcome out = {false, NULL, NULL, NULL, NULL};
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		out.result = RunRemoteValue(a->conninfo, a->label, a->sql, true);
		out.ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		out.ok = false;
		out.sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		out.error = pstrdup(edata->message);
		out.detail = edata->detail ? pstrdup(edata->detail) : NULL;
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return out;
}

static Datum
TextOrNull(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * NextMirrorAction
 *		In its own transaction: the next action of a mirror, or false.
 */
static bool
NextMirrorAction(int64 mirror_id, TimestampTz started, RemoteAction *a)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		found = false;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmSpiExec("SELECT action, conninfo, label, sql FROM driftmirror._mirror_next($1, $2)",
			  2, (Oid[]) {INT8OID, TIMESTAMPTZOID},
			  (Datum[]) {Int64GetDatum(mirror_id), TimestampTzGetDatum(started)});
	if (SPI_processed > 0)
	{
		a->id = mirror_id;
		a->action = CopyValue(cxt, 0, 1);
		a->conninfo = CopyValue(cxt, 0, 2);
		a->label = CopyValue(cxt, 0, 3);
		a->sql = CopyValue(cxt, 0, 4);
		found = (a->action != NULL && a->conninfo != NULL && a->sql != NULL);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return found;
}

/*
 * RecordMirrorOutcome
 *		In its own transaction: _mirror_done for one action.
 */
static void
RecordMirrorOutcome(RemoteAction *a, RemoteOutcome *o)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int			i;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	values[0] = Int64GetDatum(a->id);
	values[1] = CStringGetTextDatum(a->action);
	values[2] = BoolGetDatum(o->ok);
	values[3] = TextOrNull(o->result, &isnull);
	if (isnull)
		nulls[3] = 'n';
	values[4] = TextOrNull(o->sqlstate, &isnull);
	if (isnull)
		nulls[4] = 'n';
	values[5] = TextOrNull(o->error, &isnull);
	if (isnull)
		nulls[5] = 'n';
	values[6] = TextOrNull(o->detail, &isnull);
	if (isnull)
		nulls[6] = 'n';
	i = SPI_execute_with_args("SELECT driftmirror._mirror_done($1, $2, $3, $4, $5, $6, $7)",
							  7, (Oid[]) {INT8OID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
							  values, nulls, false, 0);
	if (i < 0)
		elog(ERROR, "could not record the outcome of mirror action %s", a->action);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * DmRunMirrorPhase
 *		Advance every mirror of a group as far as it can go in this step
 *		(creation actions, status reads).  A failing action is recorded
 *		against its mirror and ends that mirror's turn; other mirrors go on.
 *		May raise an error only when the catalog cannot be read or written.
 */
void
DmRunMirrorPhase(int64 group_id, TimestampTz step_started)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *ids = NIL;
	ListCell   *lc;
	uint64		i;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	DmSpiConnect();
	DmSpiExec("SELECT id FROM driftmirror._mirror_due($1) AS id",
			  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(group_id)});
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);

		ids = lappend(ids, palloc(sizeof(int64)));
		*(int64 *) llast(ids) = id;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	foreach(lc, ids)
	{
		int64		id = *(int64 *) lfirst(lc);
		int			n;

		/* a bounded number of actions per mirror and step */
		for (n = 0; n < 12; n++)
		{
			RemoteAction a;
			RemoteOutcome o;
			char		activity[128];

			CHECK_FOR_INTERRUPTS();
			if (!NextMirrorAction(id, step_started, &a))
				break;
			snprintf(activity, sizeof(activity),
					 "driftmirror: mirror " INT64_FORMAT ": %s", id, a.action);
			pgstat_report_activity(STATE_RUNNING, activity);
			o = RunAction(&a);
			RecordMirrorOutcome(&a, &o);
			if (!o.ok)
				break;
		}
	}
}

/*
 * DmRunMirrorCleanups
 *		Try every due cleanup of dropped mirrors once.  Never raises: errors
 *		are logged (and recorded per cleanup row).
 */
void
DmRunMirrorCleanups(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile todo = NIL;
	ListCell   *lc;

	PG_TRY();
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (OidIsValid(get_extension_oid(DM_EXTENSION_NAME, true)))
		{
			uint64		i;

			DmSpiConnect();
			DmSpiExec("SELECT id, conninfo, label, sql FROM driftmirror._cleanup_due()",
					  0, NULL, NULL);
			for (i = 0; i < SPI_processed; i++)
			{
				RemoteAction *a = MemoryContextAllocZero(cxt, sizeof(RemoteAction));
				MemoryContext old;
				bool		isnull;

				a->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1, &isnull));
				a->action = MemoryContextStrdup(cxt, "cleanup");
				a->conninfo = CopyValue(cxt, i, 2);
				a->label = CopyValue(cxt, i, 3);
				a->sql = CopyValue(cxt, i, 4);
				old = MemoryContextSwitchTo(cxt);
				todo = lappend(todo, a);
				MemoryContextSwitchTo(old);
			}
			SPI_finish();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: could not read pending mirror cleanups: %s",
						edata->message)));
		todo = NIL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);

	foreach(lc, todo)
	{
		RemoteAction *a = (RemoteAction *) lfirst(lc);
		RemoteOutcome o;

		CHECK_FOR_INTERRUPTS();
		pgstat_report_activity(STATE_RUNNING, "driftmirror: dropping replication objects");
		o = RunAction(a);

		PG_TRY();
		{
			Datum		values[5];
			char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
			bool		isnull;

			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			DmSpiConnect();
			values[0] = Int64GetDatum(a->id);
			values[1] = BoolGetDatum(o.ok);
			values[2] = TextOrNull(o.sqlstate, &isnull);
			if (isnull)
				nulls[2] = 'n';
			values[3] = TextOrNull(o.error, &isnull);
			if (isnull)
				nulls[3] = 'n';
			values[4] = TextOrNull(o.detail, &isnull);
			if (isnull)
				nulls[4] = 'n';
			if (SPI_execute_with_args("SELECT driftmirror._cleanup_done($1, $2, $3, $4, $5)",
									  5, (Oid[]) {INT8OID, BOOLOID, TEXTOID, TEXTOID, TEXTOID},
									  values, nulls, false, 0) < 0)
				elog(ERROR, "could not record a mirror cleanup");
			SPI_finish();
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("driftmirror: could not record a mirror cleanup: %s",
							edata->message)));
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
}

/* ---- SQL-callable ---- */

PG_FUNCTION_INFO_V1(driftmirror_remote_value);

/*
 * driftmirror._remote_value(conninfo, label, sql, node_session) returns text
 *		Used by the API (preflight, dm_sync_sequences): one statement on a
 *		node from the calling session, with driftmirror's timeouts.
 */
Datum
driftmirror_remote_value(PG_FUNCTION_ARGS)
{
	char	   *val;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("conninfo, label and sql must not be null")));
	val = RunRemoteValue(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						 text_to_cstring(PG_GETARG_TEXT_PP(1)),
						 text_to_cstring(PG_GETARG_TEXT_PP(2)),
						 !PG_ARGISNULL(3) && PG_GETARG_BOOL(3));
	if (val == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(val));
}
