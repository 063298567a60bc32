/*-------------------------------------------------------------------------
 *
 * contract.c
 *	  The typed contract between driftmirror's library and its SQL.
 *
 * The C code reads the results of SQL functions by column name (never by
 * position, never a hand-joined string): composite types such as
 * driftmirror.promotion_info, or the named columns of RETURNS TABLE.  The
 * list below says which columns of which object the library reads, and with
 * which type; DmContractCheck compares it with the installed SQL (the result
 * row type of each function, the attributes of each type) and raises a
 * clear error naming the object and column when they differ, as after
 * installing a new library without ALTER EXTENSION driftmirror UPDATE.
 *
 * The promotion states that end a promotion are defined in SQL by
 * driftmirror._promotion_is_final (sql/install/59_contract.sql); the
 * library keeps the same list in FinalStates and DmContractCheck compares
 * the two over every promotion state _state_transitions() names.
 *
 * The SQL function driftmirror._contract_problems() runs the same checks and
 * returns one line per difference: the pg_regress test contract expects
 * none, so a change on either side without the other fails the suite.
 *
 * Invariants: everything here needs a transaction (catalog lookups, SPI);
 * nothing is cached across transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "contract.h"
#include "ctl_txn.h"

/* promotion states that end a promotion: as driftmirror._promotion_is_final */
static const char *const FinalStates[] = {"done", "rolled_back", "refused", "failed"};

typedef struct ContractColumn
{
	const char *name;
	Oid			type;
} ContractColumn;

/*
 * One object whose result the library reads: a composite type (nargs < 0)
 * or a function of schema driftmirror with its argument types.
 */
typedef struct Contract
{
	const char *name;			/* without the schema */
	int			nargs;			/* -1 for a type */
	Oid			args[3];
	const char *reader;			/* the C file that reads it */
	const ContractColumn *columns;
	int			ncolumns;
} Contract;

#define COLUMNS(a) a, lengthof(a)

static const ContractColumn PromotionInfo[] = {
	{"group_name", TEXTOID}, {"resource_name", TEXTOID}, {"state", TEXTOID},
	{"old_primary", TEXTOID}, {"new_primary", TEXTOID},
	{"old_publication", TEXTOID}, {"old_slot", TEXTOID}, {"old_subscription", TEXTOID},
	{"new_publication", TEXTOID}, {"new_slot", TEXTOID}, {"new_subscription", TEXTOID},
	{"two_way", BOOLOID}, {"mirror_fence", BOOLOID}, {"mirror_state", TEXTOID},
	{"mirror_lag_seconds", FLOAT8OID}, {"fence_lsn", LSNOID},
	{"fenced_at", TIMESTAMPTZOID}, {"remaining_ms", INT8OID},
	{"max_lag_bytes", INT8OID}, {"max_lag_seconds", NUMERICOID},
	{"max_xact_seconds", NUMERICOID}, {"fence_grace_ms", INT8OID},
	{"sequence_gap", INT8OID},
};

/* the columns of a remote action (mirror.c) */
#define ACTION_COLUMNS \
	{"conninfo", TEXTOID}, {"label", TEXTOID}, {"sql", TEXTOID}, \
	{"http_method", TEXTOID}, {"http_url", TEXTOID}, {"http_body", TEXTOID}, \
	{"http_key", TEXTOID}, {"http_token_file", TEXTOID}, {"http_timeout_ms", INT4OID}

static const ContractColumn MirrorNext[] = {
	{"action", TEXTOID}, ACTION_COLUMNS, {"probe_sql", TEXTOID},
};

static const ContractColumn CleanupDue[] = {
	{"id", INT8OID}, ACTION_COLUMNS,
};

static const ContractColumn ActuatorNext[] = {
	{"action", TEXTOID}, {"label", TEXTOID}, {"http_method", TEXTOID},
	{"http_url", TEXTOID}, {"http_body", TEXTOID}, {"http_key", TEXTOID},
	{"http_token_file", TEXTOID}, {"http_timeout_ms", INT4OID},
	{"remaining_ms", INT4OID},
};

static const ContractColumn ActuatorResult[] = {
	{"state", TEXTOID}, {"new_primary", TEXTOID}, {"error", TEXTOID},
	{"error_sqlstate", TEXTOID}, {"detail", TEXTOID},
};

static const ContractColumn DueSources[] = {
	{"source_id", INT8OID}, {"resource_id", INT8OID}, {"kind", TEXTOID},
	{"endpoint", TEXTOID}, {"config", JSONBOID}, {"interval_ms", INT8OID},
	{"watermarks", JSONBOID},
};

static const ContractColumn IngestTarget[] = {
	{"resource_id", INT8OID}, {"metric_id", INT2OID},
	{"ts_min", TIMESTAMPTZOID}, {"ts_max", TIMESTAMPTZOID},
};

static const ContractColumn RouterWork[] = {
	{"router_id", INT8OID}, {"name", TEXTOID}, {"kind", TEXTOID},
	{"endpoint", TEXTOID}, {"options", JSONBOID}, {"change", JSONBOID},
	{"digest", TEXTOID},
};

static const ContractColumn NotifyDue[] = {
	{"id", INT8OID}, {"action_id", INT8OID}, {"outcome", TEXTOID},
	{"payload", TEXTOID}, {"attempts", INT4OID},
};

static const ContractColumn ForecastStep[] = {
	{"action_id", INT8OID}, {"label", TEXTOID}, {"url", TEXTOID},
	{"body", TEXTOID}, {"idempotency_key", TEXTOID}, {"token_file", TEXTOID},
	{"timeout_ms", INT4OID},
};

static const ContractColumn DueGroups[] = {
	{"id", INT8OID}, {"name", TEXTOID},
};

static const ContractColumn StepWork[] = {
	{"group_id", INT8OID}, {"promotions", BOOLOID}, {"mirrors", BOOLOID},
	{"shift_plan", BOOLOID}, {"routers", BOOLOID}, {"scaling", BOOLOID},
};

static const Contract Contracts[] = {
	{"promotion_info", -1, {0}, "promote_postgres.c", COLUMNS(PromotionInfo)},
	{"_promotion_info", 1, {INT8OID}, "promote_postgres.c", COLUMNS(PromotionInfo)},
	{"_mirror_next", 2, {INT8OID, TIMESTAMPTZOID}, "mirror.c", COLUMNS(MirrorNext)},
	{"_cleanup_due", 0, {0}, "mirror.c", COLUMNS(CleanupDue)},
	{"_promotion_actuator_next", 1, {INT8OID}, "promote_actuator.c", COLUMNS(ActuatorNext)},
	{"_promotion_actuator_result", 1, {INT8OID}, "promote_actuator.c", COLUMNS(ActuatorResult)},
	{"_due_sources", 1, {INT8ARRAYOID}, "collector.c", COLUMNS(DueSources)},
	{"_ingest_target", 3, {TEXTOID, TEXTOID, TEXTOID}, "metric_ingest.c", COLUMNS(IngestTarget)},
	{"_router_work", 2, {INT8OID, BOOLOID}, "router.c", COLUMNS(RouterWork)},
	{"_notify_due", 1, {INT4OID}, "notify_webhook.c", COLUMNS(NotifyDue)},
	{"_forecast_step", 1, {INT8OID}, "scaling_phase.c", COLUMNS(ForecastStep)},
	{"_due_groups", 0, {0}, "worker.c", COLUMNS(DueGroups)},
	{"_step_work", 1, {INT8ARRAYOID}, "group_step.c", COLUMNS(StepWork)},
};

/* one difference between the library and the installed SQL */
typedef struct Problem
{
	int			sqlerrcode;
	char	   *message;
} Problem;

static void
AddProblem(List **problems, int sqlerrcode, const char *fmt,...)
pg_attribute_printf(3, 4);

static void
AddProblem(List **problems, int sqlerrcode, const char *fmt,...)
{
	Problem    *p = palloc(sizeof(Problem));
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		ap;
		int			needed;

		va_start(ap, fmt);
		needed = appendStringInfoVA(&buf, fmt, ap);
		va_end(ap);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	p->sqlerrcode = sqlerrcode;
	p->message = buf.data;
	*problems = lappend(*problems, p);
}

/*
 * DmPromotionStateIsFinal
 *		Whether state ends a promotion.  Never raises.
 */
bool
DmPromotionStateIsFinal(const char *state)
{
	size_t		i;

	for (i = 0; i < lengthof(FinalStates); i++)
		if (strcmp(state, FinalStates[i]) == 0)
			return true;
	return false;
}

/*
 * ResultDesc
 *		The row type of contract c in the installed SQL (a copy, in the
 *		current memory context), or NULL after recording why there is none.
 */
static TupleDesc
ResultDesc(const Contract *c, Oid nsp, const char *what, List **problems)
{
	TupleDesc	desc = NULL;

	if (c->nargs < 0)
	{
		Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
											CStringGetDatum(c->name),
											ObjectIdGetDatum(nsp));

		if (!OidIsValid(typid) || get_typtype(typid) != TYPTYPE_COMPOSITE)
			AddProblem(problems, ERRCODE_UNDEFINED_OBJECT,
					   "%s is not a composite type of the installed SQL", what);
		else
			desc = lookup_rowtype_tupdesc_copy(typid, -1);
	}
	else
	{
		List	   *name = list_make2(makeString("driftmirror"),
									  makeString(pstrdup(c->name)));
		Oid			fn = LookupFuncName(name, c->nargs, c->args, true);

		if (!OidIsValid(fn))
			AddProblem(problems, ERRCODE_UNDEFINED_FUNCTION,
					   "%s does not exist in the installed SQL", what);
		else if (get_func_result_type(fn, NULL, &desc) != TYPEFUNC_COMPOSITE)
		{
			AddProblem(problems, ERRCODE_DATATYPE_MISMATCH,
					   "%s does not return rows with named columns", what);
			desc = NULL;
		}
	}
	return desc;
}

/*
 * ContractProblems
 *		Every difference between what the library reads and the installed
 *		SQL, as a list of Problem in the current memory context.  Runs SPI
 *		for the final states.  Raises only on internal errors.
 */
static List *
ContractProblems(void)
{
	List	   *problems = NIL;
	Oid			nsp = get_namespace_oid("driftmirror", true);
	size_t		i;

	if (!OidIsValid(nsp))
	{
		AddProblem(&problems, ERRCODE_UNDEFINED_SCHEMA,
				   "schema driftmirror does not exist");
		return problems;
	}

	for (i = 0; i < lengthof(Contracts); i++)
	{
		const Contract *c = &Contracts[i];
		char	   *what;
		TupleDesc	desc;
		int			j;

		if (c->nargs < 0)
			what = psprintf("type driftmirror.%s", c->name);
		else
		{
			StringInfoData buf;

			initStringInfo(&buf);
			appendStringInfo(&buf, "function driftmirror.%s(", c->name);
			for (j = 0; j < c->nargs; j++)
				appendStringInfo(&buf, "%s%s", j > 0 ? ", " : "",
								 format_type_be(c->args[j]));
			appendStringInfoChar(&buf, ')');
			what = buf.data;
		}

		desc = ResultDesc(c, nsp, what, &problems);
		if (desc == NULL)
			continue;
		for (j = 0; j < c->ncolumns; j++)
		{
			const ContractColumn *col = &c->columns[j];
			Form_pg_attribute att = NULL;
			int			k;

			for (k = 0; k < desc->natts; k++)
			{
				Form_pg_attribute a = TupleDescAttr(desc, k);

				if (!a->attisdropped && strcmp(NameStr(a->attname), col->name) == 0)
				{
					att = a;
					break;
				}
			}
			if (att == NULL)
				AddProblem(&problems, ERRCODE_UNDEFINED_COLUMN,
						   "%s has no column \"%s\" (read by %s)",
						   what, col->name, c->reader);
			else if (att->atttypid != col->type)
				AddProblem(&problems, ERRCODE_DATATYPE_MISMATCH,
						   "column \"%s\" of %s is of type %s, %s reads %s",
						   col->name, what, format_type_be(att->atttypid),
						   c->reader, format_type_be(col->type));
		}
	}

	/*
	 * the final promotion states: every state the machines name, and those
	 * the library holds final, asked of _promotion_is_final
	 */
	{
		Datum		finals[lengthof(FinalStates)];
		Datum		arg;
		DmCtlResult *r;
		int			n;

		for (i = 0; i < lengthof(FinalStates); i++)
			finals[i] = CStringGetTextDatum(FinalStates[i]);
		arg = PointerGetDatum(construct_array(finals, lengthof(FinalStates), TEXTOID,
											  -1, false, TYPALIGN_INT));
		DmCtlConnect();
		r = DmCtlExec("SELECT s.state, driftmirror._promotion_is_final(s.state) AS final "
					  "FROM (SELECT t.to_state FROM driftmirror._state_transitions() t "
					  "      WHERE t.machine OPERATOR(pg_catalog.=) 'promotion' "
					  "      UNION SELECT pg_catalog.unnest($1)) s (state)",
					  1, (Oid[]) {TEXTARRAYOID}, &arg, NULL);
		for (n = 0; n < r->nrows; n++)
		{
			char	   *state = DmCtlGet(r, n, "state");
			char	   *final = DmCtlGet(r, n, "final");
			bool		sql_final = final != NULL && strcmp(final, "t") == 0;

			if (state != NULL && sql_final != DmPromotionStateIsFinal(state))
				AddProblem(&problems, ERRCODE_DATA_EXCEPTION,
						   "promotion state \"%s\" is %sfinal in SQL (_promotion_is_final) but %sfinal in the library (contract.c)",
						   state, sql_final ? "" : "not ", sql_final ? "not " : "");
		}
		DmCtlFinish();
	}
	return problems;
}

/* DmContractAttnum: see contract.h */
int
DmContractAttnum(TupleDesc desc, const char *what, const char *name, Oid type)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("the SQL of extension driftmirror does not match its library: %s has no column \"%s\"",
						what, name),
				 errhint("Run ALTER EXTENSION driftmirror UPDATE in the control database.")));
	if (SPI_gettypeid(desc, attnum) != type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the SQL of extension driftmirror does not match its library: column \"%s\" of %s is of type %s, not %s",
						name, what, format_type_be(SPI_gettypeid(desc, attnum)),
						format_type_be(type)),
				 errhint("Run ALTER EXTENSION driftmirror UPDATE in the control database.")));
	return attnum;
}

/* DmContractCheck: see contract.h */
void
DmContractCheck(void)
{
	List	   *problems = ContractProblems();
	Problem    *first;

	if (problems == NIL)
		return;
	first = linitial(problems);
	ereport(ERROR,
			(errcode(first->sqlerrcode),
			 errmsg("the SQL of extension driftmirror does not match its library: %s",
					first->message),
			 list_length(problems) > 1 ?
			 errdetail("%d more difference(s); driftmirror._contract_problems() lists them all.",
					   list_length(problems) - 1) : 0,
			 errhint("Run ALTER EXTENSION driftmirror UPDATE in the control database.")));
}

/*
 * driftmirror_contract_problems
 *		SQL: driftmirror._contract_problems() RETURNS SETOF text, one line per
 *		difference between the library and the installed SQL ("SQLSTATE:
 *		message"); no row when they agree.
 */
PG_FUNCTION_INFO_V1(driftmirror_contract_problems);
Datum
driftmirror_contract_problems(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *problems;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	problems = ContractProblems();
	foreach(lc, problems)
	{
		Problem    *p = lfirst(lc);
		Datum		value = CStringGetTextDatum(psprintf("%s: %s",
														 unpack_sql_state(p->sqlerrcode),
														 p->message));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
