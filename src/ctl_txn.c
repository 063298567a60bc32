/*-------------------------------------------------------------------------
 *
 * ctl_txn.c
 *	  Statements in the control database: transactions of their own for the
 *	  background workers, SPI in the caller's transaction for SQL-callable
 *	  functions, results copied out as text, errors caught with their
 *	  SQLSTATE.  See ctl_txn.h for the interface.
 *
 * Invariants:
 *	 - no state of its own but the asynchronous-commit switch of
 *	   DmCtlAsyncCommit: the caller's memory context travels with SPI
 *	   (SPI_connect is always called with the caller's context current, so
 *	   SPI_palloc allocates there and SPI_finish switches back to it); an
 *	   error anywhere leaves nothing behind but what the caller's abort (or
 *	   PostgreSQL's) cleans up;
 *	 - in driftmirror's own background workers (main worker, promotion
 *	   driver, dm_shift worker) every statement is bounded by
 *	   driftmirror.worker_statement_timeout, armed here (PostgreSQL arms
 *	   statement_timeout only around a client's statements), unless an outer
 *	   statement of the same process has armed it already; in a client
 *	   session (or another extension's worker) its own rules apply;
 *	 - in those workers the statement start time is set before each
 *	   transaction and each statement, as the client loop would: a
 *	   transaction's now() is taken from it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "ctl_txn.h"
#include "driftmirror.h"

/*
 * DmCtlSessionInit
 *		A background worker's session: every name it uses is qualified, but
 *		search_path is fixed anyway; lock waits are bounded so that a lock
 *		held by a long admin transaction delays one step, not the process.
 */
void
DmCtlSessionInit(const char *application_name, const char *lock_timeout)
{
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", lock_timeout, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", application_name, PGC_USERSET,
					PGC_S_SESSION);
}

/*
 * DmCtlWorkerConnect
 *		The start of a dynamic background worker of driftmirror (promotion
 *		driver, dm_shift worker): signals, the connection to
 *		driftmirror.database, the session (DmCtlSessionInit, name as its
 *		application_name), and its own memory context (identified by name,
 *		which must be a constant), returned and current.
 */
MemoryContext
DmCtlWorkerConnect(const char *name, const char *lock_timeout)
{
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(DmDatabase, NULL, 0);
	DmCtlSessionInit(name, lock_timeout);
	cxt = AllocSetContextCreate(TopMemoryContext, "driftmirror dynamic worker",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSetIdentifier(cxt, name);	/* a constant of the caller's */
	MemoryContextSwitchTo(cxt);
	return cxt;
}

/* DmCtlAsyncCommit: see ctl_txn.h */
static bool AsyncCommit = false;

void
DmCtlAsyncCommit(bool on)
{
	AsyncCommit = on;
}

/*
 * DmCtlBegin
 *		Start a transaction of its own with a snapshot and SPI, reporting
 *		activity (when not NULL) in pg_stat_activity.  The caller's memory
 *		context stays current.  Raises on error.
 */
void
DmCtlBegin(const char *activity)
{
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (AsyncCommit)
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	PushActiveSnapshot(GetTransactionSnapshot());
	if (activity != NULL)
		pgstat_report_activity(STATE_RUNNING, activity);
	MemoryContextSwitchTo(cxt);
	DmCtlConnect();
}

/*
 * DmCtlCommit
 *		End the transaction DmCtlBegin started, committing; the caller's
 *		memory context (current at DmCtlBegin) is current again.
 */
void
DmCtlCommit(void)
{
	MemoryContext cxt;

	DmCtlFinish();
	cxt = CurrentMemoryContext;
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * DmCtlRollback
 *		End the transaction DmCtlBegin started, rolling it back; the
 *		caller's memory context (current at DmCtlBegin) is current again.
 */
void
DmCtlRollback(void)
{
	MemoryContext cxt;

	DmCtlFinish();
	cxt = CurrentMemoryContext;
	PopActiveSnapshot();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);
}

/*
 * DmCtlConnect
 *		SPI_connect, raising an error if it fails.  The memory context
 *		current now stays current (SPI would switch to its own), and the
 *		results of DmCtlExec go there.
 */
void
DmCtlConnect(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(cxt);
}

/*
 * DmCtlFinish
 *		SPI_finish: the context current at DmCtlConnect is current again.
 */
void
DmCtlFinish(void)
{
	SPI_finish();
}

/*
 * OwnWorker
 *		Whether this process is one of driftmirror's background workers
 *		(not a client, nor another extension's worker running dm_promote,
 *		such as a pg_cron job: those keep their own statement rules).
 */
static bool
OwnWorker(void)
{
	return IsBackgroundWorker && MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "driftmirror") == 0;
}

/* SpiStrdup: s copied into the context current at SPI_connect */
static char *
SpiStrdup(const char *s)
{
	size_t		len = strlen(s) + 1;
	char	   *copy = SPI_palloc(len);

	memcpy(copy, s, len);
	return copy;
}

/*
 * CopyResult
 *		The last statement's rows as text, in the context current at
 *		SPI_connect.
 */
static DmCtlResult *
CopyResult(void)
{
	DmCtlResult *r = SPI_palloc(sizeof(DmCtlResult));
	TupleDesc	desc;
	uint64		i;
	int			j;

	memset(r, 0, sizeof(DmCtlResult));
	if (SPI_tuptable == NULL)
		return r;
	desc = SPI_tuptable->tupdesc;
	if (SPI_processed > (uint64) (INT_MAX / Max(desc->natts, 1)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a control-database statement returned too many rows")));
	r->nrows = (int) SPI_processed;
	r->ncols = desc->natts;
	{
		MemoryContext spi = MemoryContextSwitchTo(GetMemoryChunkContext(r));

		r->desc = CreateTupleDescCopy(desc);
		MemoryContextSwitchTo(spi);
	}
	r->names = SPI_palloc(sizeof(char *) * Max(r->ncols, 1));
	for (j = 0; j < r->ncols; j++)
		r->names[j] = SpiStrdup(NameStr(TupleDescAttr(desc, j)->attname));
	r->values = SPI_palloc(sizeof(char *) * Max((Size) r->nrows * r->ncols, 1));
	for (i = 0; i < SPI_processed; i++)
		for (j = 0; j < r->ncols; j++)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[i], desc, j + 1);

			r->values[i * r->ncols + j] = v ? SpiStrdup(v) : NULL;
			if (v)
				pfree(v);
		}
	return r;
}

/*
 * DmCtlExec
 *		Run one statement in the open transaction, SPI connected (nulls may
 *		be NULL: no parameter is NULL).  Returns its rows, copied into the
 *		context current at DmCtlBegin / DmCtlConnect; the context current
 *		at the call is current again on return.  Raises on error,
 *		including the statement timeout.
 */
DmCtlResult *
DmCtlExec(const char *sql, int nargs, const Oid *types, const Datum *values,
		  const bool *nulls)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile spinulls = NULL;
	volatile int rc = 0;
	volatile bool armed = false;
	DmCtlResult *result;
	int			i;

	if (nulls != NULL && nargs > 0)
	{
		spinulls = palloc(nargs);
		for (i = 0; i < nargs; i++)
			spinulls[i] = nulls[i] ? 'n' : ' ';
	}
	if (OwnWorker())
	{
		SetCurrentStatementStartTimestamp();
		if (DmWorkerStatementTimeoutMs > 0 &&
			!get_timeout_active(STATEMENT_TIMEOUT))
		{
			enable_timeout_after(STATEMENT_TIMEOUT, DmWorkerStatementTimeoutMs);
			armed = true;
		}
	}
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, (Oid *) types, (Datum *) values,
								   spinulls, false, 0);
	}
	PG_FINALLY();
	{
		if (armed)
			disable_timeout(STATEMENT_TIMEOUT, false);
	}
	PG_END_TRY();
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed for \"%s\": %s",
			 sql, SPI_result_code_string(rc));
	result = CopyResult();
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(cxt);	/* SPI leaves its own context current */
	return result;
}

/*
 * DmCtlQuery
 *		One statement in a transaction of its own; rows in the caller's
 *		context.  Raises on error.
 */
DmCtlResult *
DmCtlQuery(const char *sql, int nargs, const Oid *types, const Datum *values,
		   const bool *nulls)
{
	DmCtlResult *r;

	DmCtlBegin(NULL);
	r = DmCtlExec(sql, nargs, types, values, nulls);
	DmCtlCommit();
	return r;
}

/*
 * DmCtlRun
 *		DmCtlQuery without the rows.
 */
void
DmCtlRun(const char *sql, int nargs, const Oid *types, const Datum *values,
		 const bool *nulls)
{
	(void) DmCtlQuery(sql, nargs, types, values, nulls);
}

/*
 * TextArgs: text parameters (a NULL pointer is SQL NULL) as SPI wants them
 */
static void
TextArgs(int nargs, const char *const *args, Oid **types, Datum **values, bool **nulls)
{
	int			i;

	*types = palloc(sizeof(Oid) * Max(nargs, 1));
	*values = palloc(sizeof(Datum) * Max(nargs, 1));
	*nulls = palloc(sizeof(bool) * Max(nargs, 1));
	for (i = 0; i < nargs; i++)
	{
		(*types)[i] = TEXTOID;
		(*nulls)[i] = (args[i] == NULL);
		(*values)[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
	}
}

/*
 * DmCtlExecText
 *		DmCtlExec with text parameters; a NULL pointer is SQL NULL.
 */
DmCtlResult *
DmCtlExecText(const char *sql, int nargs, const char *const *args)
{
	Oid		   *types;
	Datum	   *values;
	bool	   *nulls;

	TextArgs(nargs, args, &types, &values, &nulls);
	return DmCtlExec(sql, nargs, types, values, nulls);
}

/*
 * DmCtlQueryText
 *		DmCtlQuery with text parameters; a NULL pointer is SQL NULL.
 */
DmCtlResult *
DmCtlQueryText(const char *sql, int nargs, const char *const *args)
{
	Oid		   *types;
	Datum	   *values;
	bool	   *nulls;

	TextArgs(nargs, args, &types, &values, &nulls);
	return DmCtlQuery(sql, nargs, types, values, nulls);
}

/*
 * DmCtlValueText
 *		The first value of DmCtlQueryText's first row, or NULL (no row, or
 *		NULL).
 */
char *
DmCtlValueText(const char *sql, int nargs, const char *const *args)
{
	return DmCtlFirst(DmCtlQueryText(sql, nargs, args));
}

/*
 * ColumnIndex: the index of a column by name; a missing one means that the
 * installed SQL does not match this library (the C/SQL contract)
 */
static int
ColumnIndex(const DmCtlResult *r, const char *column)
{
	int			j;

	for (j = 0; j < r->ncols; j++)
		if (strcmp(r->names[j], column) == 0)
			return j;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" missing from a control-database result", column),
			 errhint("Run ALTER EXTENSION driftmirror UPDATE in the control database.")));
	return -1;					/* keep the compiler quiet */
}

/*
 * DmCtlGet
 *		The text of a column of a row (0-based), or NULL for NULL.
 */
char *
DmCtlGet(const DmCtlResult *r, int row, const char *column)
{
	int			j = ColumnIndex(r, column);

	Assert(row >= 0 && row < r->nrows);
	return r->values[row * r->ncols + j];
}

/*
 * DmCtlGetAt
 *		The text of attribute attnum (from 1) of a row, or NULL for NULL.
 */
char *
DmCtlGetAt(const DmCtlResult *r, int row, int attnum)
{
	if (attnum < 1 || attnum > r->ncols)
		elog(ERROR, "column %d missing from a control-database result", attnum);
	Assert(row >= 0 && row < r->nrows);
	return r->values[row * r->ncols + attnum - 1];
}

/*
 * DmCtlGetInt64, DmCtlGetInt32, DmCtlGetBool
 *		A column read as a number (the leading digits of its text) or a
 *		boolean, or if_null for NULL.
 */
int64
DmCtlGetInt64(const DmCtlResult *r, int row, const char *column, int64 if_null)
{
	char	   *v = DmCtlGet(r, row, column);

	return v ? strtoi64(v, NULL, 10) : if_null;
}

int32
DmCtlGetInt32(const DmCtlResult *r, int row, const char *column, int32 if_null)
{
	char	   *v = DmCtlGet(r, row, column);

	return v ? (int32) strtol(v, NULL, 10) : if_null;
}

bool
DmCtlGetBool(const DmCtlResult *r, int row, const char *column, bool if_null)
{
	char	   *v = DmCtlGet(r, row, column);

	return v ? (strcmp(v, "t") == 0) : if_null;
}

/* DmCtlFirst: see ctl_txn.h */
char *
DmCtlFirst(const DmCtlResult *r)
{
	return (r->nrows > 0 && r->ncols > 0) ? r->values[0] : NULL;
}

/*
 * DmCtlCatch
 *		Called in a PG_CATCH block: the error (SQLSTATE in sqlerrcode,
 *		message, detail, hint) copied into cxt, the error state flushed, and
 *		with abort_xact every transaction (and SPI) aborted.  cxt is current
 *		on return.
 */
ErrorData *
DmCtlCatch(MemoryContext cxt, bool abort_xact)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	if (abort_xact)
		AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(cxt);
	return edata;
}

/*
 * DmCtlCatchWarn
 *		DmCtlCatch aborting, then the error logged as a WARNING with its
 *		SQLSTATE: "driftmirror: <what>: <message>".  Returns the error.
 */
ErrorData *
DmCtlCatchWarn(MemoryContext cxt, const char *fmt,...)
{
	ErrorData  *edata = DmCtlCatch(cxt, true);
	StringInfoData what;

	initStringInfo(&what);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&what, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&what, needed);
	}
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("driftmirror: %s: %s", what.data, edata->message)));
	pfree(what.data);
	return edata;
}

/*
 * DmCtlSaveError
 *		Keep edata (SQLSTATE, message after prefix, detail, hint) in *dst,
 *		shared memory of a waiting process.  Never raises.
 */
void
DmCtlSaveError(DmCtlSavedError *dst, const ErrorData *edata, const char *prefix)
{
	dst->sqlerrcode = edata->sqlerrcode ? edata->sqlerrcode : ERRCODE_INTERNAL_ERROR;
	snprintf(dst->message, sizeof(dst->message), "%s%s", prefix ? prefix : "",
			 edata->message ? edata->message : "unknown error");
	strlcpy(dst->detail, edata->detail ? edata->detail : "", sizeof(dst->detail));
	strlcpy(dst->hint, edata->hint ? edata->hint : "", sizeof(dst->hint));
}

/*
 * DmCtlRaiseSaved
 *		Raise the error DmCtlSaveError kept, with its SQLSTATE (internal
 *		error if none was kept) and, when context is not NULL, that context.
 */
void
DmCtlRaiseSaved(const DmCtlSavedError *saved, const char *context)
{
	ereport(ERROR,
			(errcode(saved->sqlerrcode ? saved->sqlerrcode : ERRCODE_INTERNAL_ERROR),
			 errmsg("%s", saved->message),
			 saved->detail[0] ? errdetail_internal("%s", saved->detail) : 0,
			 saved->hint[0] ? errhint("%s", saved->hint) : 0,
			 context ? errcontext("%s", context) : 0));
	pg_unreachable();
}
