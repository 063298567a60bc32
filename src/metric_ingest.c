/*-------------------------------------------------------------------------
 *
 * metric_ingest.c
 *	  dm_ingest(group, resource, metric, ts timestamptz[], val float8[]):
 *	  bulk insert of the samples of one metric of one resource.
 *
 * Every element is checked before anything is written, so a bad element
 * raises an error naming the first one (its 1-based position and value) and
 * the table is untouched; the insert itself is one statement, so it is
 * all-or-nothing as well.  Accepted timestamps lie between now() minus the
 * group's retention (older rows would be deleted at once) and now() plus one
 * day.  Names are resolved by driftmirror._ingest_target, which raises for
 * unknown ones.
 *
 * The rows go in through DmMetricInsert (metric_insert.c): the executor's
 * partition routing, then table_multi_insert per partition and the entries
 * of the indexes each partition has.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"

#include "contract.h"
#include "ctl_txn.h"
#include "driftmirror.h"
#include "metric_insert.h"

PG_FUNCTION_INFO_V1(driftmirror_dm_ingest);

/*
 * CheckArray
 *		Raise an error unless arr is a one-dimensional array (or empty).
 *		Returns its number of elements.
 */
static int
CheckArray(ArrayType *arr, const char *what)
{
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s array must be one-dimensional", what)));
	return ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
}

/*
 * driftmirror_dm_ingest
 *		SQL-callable.  Returns the number of rows written.  Raises an error
 *		for any bad argument or element; writes nothing then.
 */
Datum
driftmirror_dm_ingest(PG_FUNCTION_ARGS)
{
	ArrayType  *ts_arr;
	ArrayType  *val_arr;
	Datum	   *ts;
	Datum	   *val;
	bool	   *ts_null;
	bool	   *val_null;
	int			nts;
	int			nval;
	int			lb;
	int			i;
	int64		resource_id;
	int16		metric_id;
	TimestampTz ts_min;
	TimestampTz ts_max;
	TimestampTz lo = 0;
	TimestampTz hi = 0;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	uint64		written;

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timestamp array must not be null")));
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("value array must not be null")));

	ts_arr = PG_GETARG_ARRAYTYPE_P(3);
	val_arr = PG_GETARG_ARRAYTYPE_P(4);
	nts = CheckArray(ts_arr, "timestamp");
	nval = CheckArray(val_arr, "value");
	if (nts != nval)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("timestamp and value arrays have different lengths"),
				 errdetail("There are %d timestamps and %d values.", nts, nval)));
	if (nts > 0 && ARR_LBOUND(ts_arr)[0] != ARR_LBOUND(val_arr)[0])
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("timestamp and value arrays have different lower bounds")));
	lb = nts > 0 ? ARR_LBOUND(ts_arr)[0] : 1;

	/* here, not after SPI_connect: SPI_finish frees its memory */
	deconstruct_array(ts_arr, TIMESTAMPTZOID, sizeof(TimestampTz), true,
					  TYPALIGN_DOUBLE, &ts, &ts_null, &nts);
	deconstruct_array(val_arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &val, &val_null, &nval);

	DmCtlConnect();

	/* names first: an unknown name is reported even for empty arrays */
	{
		Datum		args[3];
		char		nulls[3];

		for (i = 0; i < 3; i++)
		{
			nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
			args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		}
		if (SPI_execute_with_args("SELECT resource_id, metric_id, ts_min, ts_max "
								  "FROM driftmirror._ingest_target($1, $2, $3)",
								  3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID},
								  args, nulls, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "resolving the names of dm_ingest failed");
	}
	if (SPI_processed != 1)
		elog(ERROR, "driftmirror._ingest_target returned %llu rows",
			 (unsigned long long) SPI_processed);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
#define TARGET_COLUMN(name, type) \
	SPI_getbinval(tup, desc, DmContractAttnum(desc, "driftmirror._ingest_target()", name, type), &isnull)
	resource_id = DatumGetInt64(TARGET_COLUMN("resource_id", INT8OID));
	metric_id = DatumGetInt16(TARGET_COLUMN("metric_id", INT2OID));
	ts_min = DatumGetTimestampTz(TARGET_COLUMN("ts_min", TIMESTAMPTZOID));
	ts_max = DatumGetTimestampTz(TARGET_COLUMN("ts_max", TIMESTAMPTZOID));
#undef TARGET_COLUMN

	if (nts == 0)
	{
		DmCtlFinish();
		PG_RETURN_INT64(0);
	}


	/* every element before anything is written; the first bad one wins */
	for (i = 0; i < nts; i++)
	{
		TimestampTz t;
		float8		v;

		if (ts_null[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("timestamp at index %d is null", lb + i)));
		t = DatumGetTimestampTz(ts[i]);
		if (t < ts_min || t > ts_max)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("timestamp at index %d is out of range: %s",
							lb + i, timestamptz_to_str(t)),
					 errdetail("Accepted timestamps lie between now minus the group's retention (%s) and now plus one day (%s).",
							   timestamptz_to_str(ts_min), timestamptz_to_str(ts_max))));
		if (val_null[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("value at index %d is null", lb + i)));
		v = DatumGetFloat8(val[i]);
		if (isnan(v) || isinf(v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value at index %d is not a finite number: %s",
							lb + i, isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"))));
		if (i == 0 || t < lo)
			lo = t;
		if (i == 0 || t > hi)
			hi = t;
	}

	(void) DmCtlExec("SELECT driftmirror._ensure_partitions($1, $2)",
					 2, (Oid[]) {TIMESTAMPTZOID, TIMESTAMPTZOID},
					 (Datum[]) {TimestampTzGetDatum(lo), TimestampTzGetDatum(hi)}, NULL);

	DmCtlFinish();
	written = DmMetricInsert(resource_id, metric_id, ts, val, nts);
	PG_RETURN_INT64((int64) written);
}
