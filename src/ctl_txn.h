/*-------------------------------------------------------------------------
 *
 * ctl_txn.h
 *	  Statements in the control database: the one module through which
 *	  driftmirror's C code reads and writes its catalog (ctl_txn.c).
 *
 * Two ways in:
 *	 - a transaction of its own, for the background workers (main worker,
 *	   promotion and shift workers), which run outside any transaction:
 *	   DmCtlBegin ... DmCtlExec ... DmCtlCommit (or DmCtlRollback), or, for one statement,
 *	   DmCtlQuery / DmCtlQueryText / DmCtlValueText / DmCtlRun;
 *	 - the caller's transaction, for SQL-callable functions:
 *	   DmCtlConnect ... DmCtlExec ... DmCtlFinish.
 *
 * Every statement is parameterised (nothing is pasted into SQL text), runs
 * with the statement start time set (now() in a background worker would
 * otherwise stay at its start) and, in a background worker, under
 * driftmirror.worker_statement_timeout (PostgreSQL arms statement_timeout
 * only for client statements).  Results come back as text, NULL for SQL
 * NULL, copied into the memory context that was current at DmCtlBegin /
 * DmCtlConnect (or at the call, for the one-statement forms), which is
 * current again after DmCtlCommit / DmCtlFinish; columns are read by name.
 * Every function raises on error.
 *
 * Errors: DmCtlCatch, in a PG_CATCH block, copies the error (SQLSTATE,
 * message, detail, hint) into a context of the caller's, flushes the error
 * state and, if asked, aborts the transaction; DmCtlCatchWarn also logs it
 * as a WARNING with its SQLSTATE; DmCtlSaveError records it for a process
 * waiting on a worker, which raises it again with DmCtlRaiseSaved.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_CTL_TXN_H
#define DM_CTL_TXN_H

#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

/* the rows of one statement, as text, in the caller's memory context */
typedef struct DmCtlResult
{
	int			nrows;
	int			ncols;
	char	  **names;			/* column names */
	char	  **values;			/* nrows x ncols, row after row; NULL for
								 * SQL NULL */
	TupleDesc	desc;			/* the columns' names and types (a copy), for
								 * checks such as DmContractAttnum */
} DmCtlResult;

/* a background worker's session: fixed search_path, lock_timeout, name */
extern void DmCtlSessionInit(const char *application_name, const char *lock_timeout);
/*
 * a dynamic worker (promotion, shift) joins the control database: SIGTERM
 * ends it, DmCtlSessionInit, and a memory context of its own named name,
 * current on return
 */
extern MemoryContext DmCtlWorkerConnect(const char *name, const char *lock_timeout);

/* a transaction of its own (background workers, outside any transaction) */
extern void DmCtlBegin(const char *activity);
extern void DmCtlCommit(void);
extern void DmCtlRollback(void);
/*
 * while on, transactions begun here commit with synchronous_commit = off:
 * only for a caller that loses nothing if a crash drops such a commit (the
 * promotion's step boundaries inside the write pause); reset it in a
 * PG_FINALLY
 */
extern void DmCtlAsyncCommit(bool on);

/* SPI in the caller's transaction (SQL-callable functions) */
extern void DmCtlConnect(void);
extern void DmCtlFinish(void);

/* one statement in the open transaction (after DmCtlBegin / DmCtlConnect) */
extern DmCtlResult *DmCtlExec(const char *sql, int nargs, const Oid *types,
							  const Datum *values, const bool *nulls);

/* one statement in a transaction of its own */
extern DmCtlResult *DmCtlQuery(const char *sql, int nargs, const Oid *types,
							   const Datum *values, const bool *nulls);
extern void DmCtlRun(const char *sql, int nargs, const Oid *types,
					 const Datum *values, const bool *nulls);
/* the same with text parameters (a NULL pointer is SQL NULL) */
extern DmCtlResult *DmCtlExecText(const char *sql, int nargs, const char *const *args);
extern DmCtlResult *DmCtlQueryText(const char *sql, int nargs, const char *const *args);
/* its first value: NULL when there is no row or the value is NULL */
extern char *DmCtlValueText(const char *sql, int nargs, const char *const *args);

/* reading a result; an unknown column name raises (a bug, not data) */
extern char *DmCtlGet(const DmCtlResult *r, int row, const char *column);
extern int64 DmCtlGetInt64(const DmCtlResult *r, int row, const char *column,
						   int64 if_null);
extern int32 DmCtlGetInt32(const DmCtlResult *r, int row, const char *column,
						   int32 if_null);
extern bool DmCtlGetBool(const DmCtlResult *r, int row, const char *column,
						 bool if_null);
/* the text of a column by attribute number (from 1: a name looked up in desc) */
extern char *DmCtlGetAt(const DmCtlResult *r, int row, int attnum);
/* the first value of the first row, or NULL */
extern char *DmCtlFirst(const DmCtlResult *r);

/*
 * An error kept for another process (a DSM result: dm_promote and dm_shift
 * wait for their workers): SQLSTATE, message, detail and hint, truncated to
 * fit.  DmCtlSaveError stores a caught error, with a prefix before its
 * message; DmCtlRaiseSaved raises it again in the waiting process, with an
 * errcontext line when context is not NULL.
 */
typedef struct DmCtlSavedError
{
	int			sqlerrcode;		/* 0: none saved */
	char		message[1024];
	char		detail[2048];
	char		hint[512];
} DmCtlSavedError;

extern void DmCtlSaveError(DmCtlSavedError *dst, const ErrorData *edata,
						   const char *prefix);
extern void DmCtlRaiseSaved(const DmCtlSavedError *saved, const char *context) pg_attribute_noreturn();

/* in a PG_CATCH block: the error, copied into cxt (current on return) */
extern ErrorData *DmCtlCatch(MemoryContext cxt, bool abort_xact);
/* the same, aborting, logged as WARNING "driftmirror: <what>: <message>" */
extern ErrorData *DmCtlCatchWarn(MemoryContext cxt, const char *fmt,...) pg_attribute_printf(2, 3);

#endif							/* DM_CTL_TXN_H */
