/*-------------------------------------------------------------------------
 *
 * forecast_sql.c
 *	  SQL interface of the forecasting core: dm_forecast() and
 *	  dm_forecast_model(), and for the models of the metric store
 *	  _forecast_params() (the smoothing parameters hw and mstl estimate) and
 *	  _forecast_with_params() (dm_forecast applying kept parameters).
 *
 * Both functions are pure: they read only their arguments, never the
 * catalog (and the setting driftmirror.forecast_work_mem).
 *
 * Memory: the numerical core (src/forecast/) takes its working memory from
 * a memory context of its own, "dm_forecast", a child of the caller's
 * context, through the allocator hook of DmfOptions; the core counts it
 * and refuses to go over driftmirror.forecast_work_mem (the whole call's
 * working memory, every block counts until the call ends), failing with
 * program_limit_exceeded.  The context is deleted as soon as the core
 * returns, and if an error escapes from palloc inside the core it goes
 * with the caller's context.  Only the result's arrays (5 x horizon
 * doubles, counted against the cap as well) come from malloc; they are
 * copied into a tuplestore (or a text) in the current memory context and
 * released with dmf_result_free() before any ereport, so an error cannot
 * leak them.
 *
 * Interrupts: the core polls InterruptPending through a callback in every
 * long loop (fits, searches, Kalman filters, the event setup) and returns
 * early; CHECK_FOR_INTERRUPTS() then raises the cancellation.
 *
 * Positions in the SQL API count from 1 like array subscripts: element 1 of
 * vals is position 1 and forecast step k is position n + k.  The core
 * counts from 0; the conversion happens here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/tuplestore.h"

#include "driftmirror.h"
#include "forecast/forecast.h"

PG_FUNCTION_INFO_V1(driftmirror_dm_forecast);
PG_FUNCTION_INFO_V1(driftmirror_dm_forecast_model);
PG_FUNCTION_INFO_V1(driftmirror_forecast_params);
PG_FUNCTION_INFO_V1(driftmirror_forecast_with_params);

/* elements of a parameter array: trend, nseas, alpha, beta, gamma1, gamma2, phi */
#define DM_PARAMS_LEN	7

/* arguments of both functions, decoded */
typedef struct ForecastArgs
{
	double	   *vals;
	int			n;
	int		   *seasons;
	int			nseasons;
	int			horizon;
	DmfMethod	method;
	DmfEvent   *events;
	int			nevents;
	bool		interpolate;
	DmfParams	params;			/* set: apply them (_forecast_with_params) */
} ForecastArgs;

/*
 * Interrupt callback for the core: stop when an interrupt is pending and
 * can be processed now.  (While interrupts are held, CHECK_FOR_INTERRUPTS
 * would not clear the flag and the caller's retry would spin.)
 */
static int
forecast_interrupt(void *arg)
{
	return (INTERRUPTS_PENDING_CONDITION() && INTERRUPTS_CAN_BE_PROCESSED()) ? 1 : 0;
}

/* allocator hook of the core: the dm_forecast memory context */
static void *
forecast_alloc(void *arg, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) arg, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
forecast_free(void *arg, void *ptr)
{
	pfree(ptr);
}

/*
 * float8_array
 *		Elements of a one-dimensional float8 array; NULL elements are refused
 *		(or, with interpolate, passed as NaN for the core to fill in).
 */
static double *
float8_array(ArrayType *arr, const char *argname, bool interpolate, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems,
				i;
	double	   *out;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", argname)));
	deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &nelems);
	out = palloc((nelems + 1) * sizeof(double));
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
		{
			if (!interpolate)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("%s must not contain null values", argname),
						 errdetail("Element %d is null.", i + 1),
						 errhint("Pass interpolate => true to fill missing values by linear interpolation.")));
			out[i] = get_float8_nan();
		}
		else
			out[i] = DatumGetFloat8(elems[i]);
	}
	*n = nelems;
	return out;
}

/* int4_array: elements of a one-dimensional int array, no NULLs */
static int *
int4_array(ArrayType *arr, const char *argname, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems,
				i;
	int		   *out;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", argname)));
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	out = palloc((nelems + 1) * sizeof(int));
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain null values", argname),
					 errdetail("Element %d is null.", i + 1)));
		out[i] = DatumGetInt32(elems[i]);
	}
	*n = nelems;
	return out;
}

/* integer member key of event i, or defval when absent */
static int
event_int(JsonbContainer *obj, int i, const char *key, bool required,
		  int defval)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
	double		d;

	if (v == NULL)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event"),
					 errdetail("Event %d has no \"%s\" member.", i + 1, key)));
		return defval;
	}
	d = (v->type == jbvNumeric)
		? DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											 NumericGetDatum(v->val.numeric)))
		: get_float8_nan();
	if (!(d == floor(d)) || d < -(double) DMF_MAX_INPUT ||
		d > 2.0 * DMF_MAX_INPUT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event"),
				 errdetail("Member \"%s\" of event %d is not an integer between %d and %d.",
						   key, i + 1, -DMF_MAX_INPUT, 2 * DMF_MAX_INPUT)));
	return (int) d;
}

/*
 * parse_events
 *		Events from a jsonb array of objects {"name": text, "start": int,
 *		"end": int, "before": int, "after": int} ("end" defaults to "start",
 *		the windows to 0).  Positions are 1-based; the result is 0-based.
 */
static DmfEvent *
parse_events(Jsonb *jb, int *nevents)
{
	int			n,
				i;
	DmfEvent   *ev;

	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array of objects")));
	n = JB_ROOT_COUNT(jb);
	if (n > DMF_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events"),
				 errdetail("%d events were given; at most %d are allowed.",
						   n, DMF_MAX_EVENTS)));
	ev = palloc0((n + 1) * sizeof(DmfEvent));
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&jb->root, i);
		JsonbContainer *obj;
		JsonbValue *name;

		if (elem == NULL || elem->type != jbvBinary ||
			!JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event"),
					 errdetail("Event %d is not a JSON object.", i + 1)));
		obj = elem->val.binary.data;
		name = getKeyJsonValueFromContainer(obj, "name", 4, NULL);
		if (name == NULL || name->type != jbvString ||
			name->val.string.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event"),
					 errdetail("Event %d has no \"name\" string.", i + 1)));
		ev[i].name = pnstrdup(name->val.string.val, name->val.string.len);
		ev[i].start = event_int(obj, i, "start", true, 0);
		ev[i].end = event_int(obj, i, "end", false, ev[i].start);
		ev[i].window_before = event_int(obj, i, "before", false, 0);
		ev[i].window_after = event_int(obj, i, "after", false, 0);
		/* 1-based to 0-based; the core checks the rest */
		ev[i].start--;
		ev[i].end--;
	}
	*nevents = n;
	return ev;
}

/*
 * parse_params
 *		A parameter array of _forecast_params (NULL elements refused; bounds
 *		checked, so that nothing out of the admissible region reaches the
 *		filter).
 */
static void
parse_params(ArrayType *arr, DmfParams *p)
{
	int			n;
	double	   *v = float8_array(arr, "params", false, &n);
	int			k;

	if (n != DM_PARAMS_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must have %d elements", DM_PARAMS_LEN),
				 errdetail("The array has %d.", n)));
	for (k = 0; k < n; k++)
		if (!isfinite(v[k]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("params must be finite"),
					 errdetail("Element %d is not.", k + 1)));
	if (!(v[0] == 0 || v[0] == 1 || v[0] == 2) ||
		!(v[1] == 0 || v[1] == 1 || v[1] == 2) ||
		!(v[2] > 0 && v[2] < 1) || !(v[3] >= 0 && v[3] <= v[2]) ||
		!(v[4] >= 0 && v[4] < 1) || !(v[5] >= 0 && v[5] < 1) ||
		!(v[6] >= 0 && v[6] <= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params are not the smoothing parameters of a fit"),
				 errdetail("Expected {trend 0-2, seasons 0-2, 0 < alpha < 1, 0 <= beta <= alpha, 0 <= gamma1, gamma2 < 1, 0 <= phi <= 1}.")));
	memset(p, 0, sizeof(*p));
	p->set = 1;
	p->trend = (int) v[0];
	p->nseas = (int) v[1];
	p->alpha = v[2];
	p->beta = v[3];
	p->gamma[0] = v[4];
	p->gamma[1] = v[5];
	p->phi = v[6];
}

/* decode and check the arguments shared by both functions */
static void
forecast_args(FunctionCallInfo fcinfo, ForecastArgs *a)
{
	char	   *method;
	int			m;

	memset(a, 0, sizeof(*a));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("vals must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("seasons must not be null"),
				 errhint("Pass an empty array for a series without seasonality.")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("horizon must not be null")));
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("method must not be null")));
	a->interpolate = !PG_ARGISNULL(5) && PG_GETARG_BOOL(5);
	a->vals = float8_array(PG_GETARG_ARRAYTYPE_P(0), "vals", a->interpolate,
						   &a->n);
	a->seasons = int4_array(PG_GETARG_ARRAYTYPE_P(1), "seasons",
							&a->nseasons);
	a->horizon = PG_GETARG_INT32(2);
	method = text_to_cstring(PG_GETARG_TEXT_PP(3));
	m = dmf_method_parse(method);
	if (m < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown forecasting method \"%s\"", method),
				 errhint("Valid methods are auto, snaive, hw, mstl, arima, prophet, theta and naive.")));
	a->method = (DmfMethod) m;
	if (!PG_ARGISNULL(4))
		a->events = parse_events(PG_GETARG_JSONB_P(4), &a->nevents);
	if (PG_NARGS() > 6 && !PG_ARGISNULL(6))
		parse_params(PG_GETARG_ARRAYTYPE_P(6), &a->params);
}

/*
 * run_forecast
 *		Call the core; on success *res holds malloc'd arrays the caller must
 *		free with dmf_result_free() before raising any error.  Raises the
 *		core's errors itself.
 */
static void
run_forecast(ForecastArgs *a, DmfResult *res)
{
	DmfOptions	opts;
	char		errbuf[DMF_MSG_LEN];
	DmfStatus	st;
	int			errc;
	MemoryContext workcxt;

	memset(&opts, 0, sizeof(opts));
	opts.interpolate = a->interpolate ? 1 : 0;
	opts.interrupt = forecast_interrupt;
	opts.alloc = forecast_alloc;
	opts.free = forecast_free;
	opts.max_memory = (size_t) DmForecastWorkMemKb * 1024;
	opts.params = a->params.set ? &a->params : NULL;
	for (;;)
	{
		workcxt = AllocSetContextCreate(CurrentMemoryContext, "dm_forecast",
										ALLOCSET_DEFAULT_SIZES);
		opts.alloc_arg = workcxt;
		st = dmf_forecast(a->vals, a->n, a->seasons, a->nseasons, a->horizon,
						  a->method, a->events, a->nevents, &opts, res,
						  errbuf, sizeof(errbuf));
		MemoryContextDelete(workcxt);
		if (st != DMF_EINTERRUPTED)
			break;
		/*
		 * Raises the error if it is a cancel or a termination; other
		 * interrupts (barriers, memory-context logging) are served and the
		 * forecast starts again.
		 */
		CHECK_FOR_INTERRUPTS();
	}
	if (st == DMF_OK)
		return;
	switch (st)
	{
		case DMF_ENONFINITE:
			errc = ERRCODE_DATA_EXCEPTION;
			break;
		case DMF_ETOOLONG:
			errc = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case DMF_ENOMEM:
			errc = ERRCODE_OUT_OF_MEMORY;
			break;
		case DMF_EMEMLIMIT:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s", errbuf),
					 errdetail("driftmirror.forecast_work_mem is %d kB.",
							   DmForecastWorkMemKb),
					 errhint("Raise driftmirror.forecast_work_mem, or forecast a shorter series or horizon.")));
			break;
		default:
			errc = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
	}
	ereport(ERROR,
			(errcode(errc),
			 errmsg("%s", errbuf),
			 res->detail[0] ? errdetail("%s", res->detail) : 0));
}

static Datum forecast_rows(FunctionCallInfo fcinfo);

/* report the core's notices (fallbacks) to the client */
static void
emit_notices(const char (*notices)[DMF_MSG_LEN], int n)
{
	int			i;

	for (i = 0; i < n; i++)
		ereport(NOTICE, (errmsg("%s", notices[i])));
}

/*
 * driftmirror_dm_forecast
 *		dm_forecast(vals, seasons, horizon, method, events, interpolate):
 *		one row per forecast step, materialised in a tuplestore.
 */
Datum
driftmirror_dm_forecast(PG_FUNCTION_ARGS)
{
	return forecast_rows(fcinfo);
}

/*
 * driftmirror_forecast_with_params
 *		_forecast_with_params(vals, seasons, horizon, method, events,
 *		interpolate, params): dm_forecast with the smoothing parameters of
 *		an earlier fit (NULL: estimated, as dm_forecast does).
 */
Datum
driftmirror_forecast_with_params(PG_FUNCTION_ARGS)
{
	return forecast_rows(fcinfo);
}

/*
 * forecast_rows
 *		The rows of dm_forecast and _forecast_with_params: one per forecast
 *		step, materialised in a tuplestore.
 */
static Datum
forecast_rows(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ForecastArgs a;
	DmfResult	res;
	char		notices[DMF_MAX_NOTICES][DMF_MSG_LEN];
	int			nnotices,
				k;

	forecast_args(fcinfo, &a);
	InitMaterializedSRF(fcinfo, 0);
	run_forecast(&a, &res);

	/* copy out, then free the core's memory before anything can fail */
	PG_TRY();
	{
		for (k = 0; k < res.horizon; k++)
		{
			Datum		values[6];
			bool		nulls[6] = {false, false, false, false, false, false};

			values[0] = Int32GetDatum(k + 1);
			values[1] = Float8GetDatum(res.yhat[k]);
			values[2] = Float8GetDatum(res.lo80[k]);
			values[3] = Float8GetDatum(res.hi80[k]);
			values[4] = Float8GetDatum(res.lo95[k]);
			values[5] = Float8GetDatum(res.hi95[k]);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 values, nulls);
		}
	}
	PG_FINALLY();
	{
		nnotices = res.nnotices;
		memcpy(notices, res.notices, sizeof(notices));
		dmf_result_free(&res);
	}
	PG_END_TRY();
	emit_notices((const char (*)[DMF_MSG_LEN]) notices, nnotices);
	return (Datum) 0;
}

/*
 * driftmirror_dm_forecast_model
 *		Same arguments as dm_forecast; returns the description of the model
 *		the forecast uses (method, orders, trend, periods).
 */
Datum
driftmirror_dm_forecast_model(PG_FUNCTION_ARGS)
{
	ForecastArgs a;
	DmfResult	res;
	char		notices[DMF_MAX_NOTICES][DMF_MSG_LEN];
	char		model[DMF_MSG_LEN];
	int			nnotices;

	forecast_args(fcinfo, &a);
	run_forecast(&a, &res);
	memcpy(model, res.model, sizeof(model));
	nnotices = res.nnotices;
	memcpy(notices, res.notices, sizeof(notices));
	dmf_result_free(&res);
	emit_notices((const char (*)[DMF_MSG_LEN]) notices, nnotices);
	PG_RETURN_TEXT_P(cstring_to_text(model));
}

/*
 * driftmirror_forecast_params
 *		_forecast_params(vals, seasons, horizon, method, events,
 *		interpolate): the smoothing parameters the method estimates
 *		({trend, seasons, alpha, beta, gamma1, gamma2, phi}), to be passed
 *		back to _forecast_with_params; NULL for methods that have none to
 *		keep (every method but hw and mstl).
 */
Datum
driftmirror_forecast_params(PG_FUNCTION_ARGS)
{
	ForecastArgs a;
	DmfResult	res;
	DmfParams	p;
	Datum		elems[DM_PARAMS_LEN];

	forecast_args(fcinfo, &a);
	run_forecast(&a, &res);
	p = res.params;
	dmf_result_free(&res);
	if (!p.set)
		PG_RETURN_NULL();
	elems[0] = Float8GetDatum((double) p.trend);
	elems[1] = Float8GetDatum((double) p.nseas);
	elems[2] = Float8GetDatum(p.alpha);
	elems[3] = Float8GetDatum(p.beta);
	elems[4] = Float8GetDatum(p.gamma[0]);
	elems[5] = Float8GetDatum(p.gamma[1]);
	elems[6] = Float8GetDatum(p.phi);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, DM_PARAMS_LEN, FLOAT8OID,
										  sizeof(float8), FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}
