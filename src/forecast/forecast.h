/*-------------------------------------------------------------------------
 *
 * forecast.h
 *	  Public interface of driftmirror's numerical forecasting core.
 *
 * The core is plain C99: it includes no PostgreSQL header, keeps no global
 * state and never prints or exits.  One call, dmf_forecast(), validates a
 * series, fits the requested method and returns point forecasts with 80 and
 * 95 percent prediction intervals.  Every allocation made during the call
 * is released before it returns, except the arrays of the result, which the
 * caller frees with dmf_result_free().  Working memory comes from the
 * caller's allocator when DmfOptions gives one (malloc otherwise) and is
 * capped by DmfOptions.max_memory; long loops poll DmfOptions.interrupt.  Errors come back as a status code
 * plus a message and a detail sentence; fallbacks the caller should tell the
 * user about come back as notices.
 *
 * Positions are 0-based: element 0 is the oldest value of the series, and
 * position n + k - 1 is forecast step k.
 *
 * src/forecast/forecast.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DMF_FORECAST_H
#define DMF_FORECAST_H

#include <stddef.h>

/* limits checked by dmf_forecast() */
#define DMF_MAX_INPUT		10000000	/* longest accepted series */
#define DMF_MAX_HORIZON		100000	/* longest forecast */
#define DMF_MAX_SEASON		100000	/* longest seasonal period */
#define DMF_MAX_SEASONS		8	/* number of seasonal periods */
#define DMF_MAX_EVENTS		1000	/* number of event occurrences */
#define DMF_MAX_EVENT_WINDOW 1000	/* positions before / after an event */
#define DMF_MAX_MEMORY		((size_t) 512 * 1024 * 1024)	/* working memory */

#define DMF_MAX_NOTICES		8
#define DMF_MSG_LEN			256

/* status codes returned by dmf_forecast() */
typedef enum DmfStatus
{
	DMF_OK = 0,
	DMF_EINVAL,					/* bad parameter (horizon, season, method, event) */
	DMF_ENONFINITE,				/* NaN or infinite value in the series */
	DMF_ETOOLONG,				/* series longer than DMF_MAX_INPUT */
	DMF_EEMPTY,					/* series with no element */
	DMF_ENOMEM,					/* allocation failed or memory cap reached */
	DMF_EINTERRUPTED,			/* the interrupt callback asked to stop */
	DMF_EMEMLIMIT				/* the call needs more than max_memory */
} DmfStatus;

typedef enum DmfMethod
{
	DMF_AUTO = 0,
	DMF_SNAIVE,
	DMF_HW,
	DMF_MSTL,
	DMF_ARIMA,
	DMF_PROPHET,
	DMF_NAIVE,					/* only reached as a fallback */
	DMF_THETA
} DmfMethod;

/*
 * An event occurrence used as a regressor.  Occurrences that share a name
 * share an effect.  start and end are inclusive positions (see above); they
 * may lie before the series, inside it or in the forecast period.  The
 * effect also covers window_before positions before start and window_after
 * positions after end, each offset with its own coefficient.
 */
typedef struct DmfEvent
{
	const char *name;
	int			start;
	int			end;
	int			window_before;
	int			window_after;
} DmfEvent;

/*
 * The smoothing parameters of an additive ETS fit: what hw estimates on the
 * series, and mstl on its seasonally adjusted series.  A caller that keeps
 * them (DmfResult.params) can pass them back (DmfOptions.params) to
 * forecast fresh data of the same series with them: the states are filtered
 * again over the data, the parameters are not searched, which is what makes
 * a fit cost hundreds of passes over the data instead of one.
 */
typedef struct DmfParams
{
	int			set;			/* nonzero when the fields below hold a fit */
	int			trend;			/* 0 none, 1 additive, 2 damped */
	int			nseas;			/* seasonal components (0 - 2) */
	double		alpha;
	double		beta;
	double		gamma[2];
	double		phi;
} DmfParams;

/*
 * Options of a call; zero every field you do not set (memset), so that
 * fields added later keep their defaults.
 */
typedef struct DmfOptions
{
	int			interpolate;	/* nonzero: replace NaN values by linear
								 * interpolation instead of failing */
	/* polled during long fits; return nonzero to abandon the call */
	int			(*interrupt) (void *arg);
	void	   *interrupt_arg;

	/*
	 * Working memory.  alloc returns size bytes (suitably aligned for any
	 * type) or NULL, and must not return to the core in any other way than
	 * by returning (an allocator that raises an error through longjmp is
	 * fine only if it also abandons the caller's use of the core's state,
	 * which holds nothing but that memory); free releases one block.  Both
	 * NULL: malloc and free.  The result's arrays always come from malloc.
	 */
	void	   *(*alloc) (void *arg, size_t size);
	void		(*free) (void *arg, void *ptr);
	void	   *alloc_arg;

	/*
	 * Cap on the working memory of the call (every allocation counts until
	 * the call returns, plus the result's arrays); 0 means DMF_MAX_MEMORY.
	 * Over it, the call fails with DMF_EMEMLIMIT and frees everything.
	 */
	size_t		max_memory;

	/*
	 * Parameters of an earlier fit to apply instead of estimating them (hw
	 * and mstl; ignored by the other methods, and when they do not fit the
	 * seasons of the call, e.g. a season dropped because the series is too
	 * short: then the method estimates).  NULL or set = 0: estimate.
	 */
	const DmfParams *params;
} DmfOptions;

typedef struct DmfResult
{
	int			horizon;
	double	   *yhat;			/* each array has horizon elements */
	double	   *lo80;
	double	   *hi80;
	double	   *lo95;
	double	   *hi95;
	DmfMethod	method;			/* method that produced the forecast */
	char		model[DMF_MSG_LEN]; /* e.g. "ETS(A,Ad,A) m=48,336" */
	int			nnotices;
	char		notices[DMF_MAX_NOTICES][DMF_MSG_LEN];
	char		detail[DMF_MSG_LEN];	/* detail sentence of an error */
	size_t		work_bytes;		/* working memory the call used */
	double		sigma;			/* residual standard deviation of the fit */
	DmfParams	params;			/* hw and mstl: the parameters used (set) */
} DmfResult;

/*
 * dmf_forecast
 *
 * Forecast horizon steps of y[0..n) with the given seasonal periods and
 * method; events may be NULL when nevents is 0 (only the prophet method and
 * auto use them).  opts may be NULL.  On DMF_OK, out holds the forecast and
 * must be released with dmf_result_free(); on error, errbuf holds a
 * lower-case message, out->detail a detail sentence and out owns no memory.
 */
extern DmfStatus dmf_forecast(const double *y, int n,
							  const int *seasons, int nseasons,
							  int horizon, DmfMethod method,
							  const DmfEvent *events, int nevents,
							  const DmfOptions *opts, DmfResult *out,
							  char *errbuf, size_t errlen);

extern void dmf_result_free(DmfResult *out);

/* dmf_method_parse: method for a name such as "hw"; returns -1 if unknown */
extern int	dmf_method_parse(const char *name);

/* dmf_method_name: name of a method, "naive" for the fallback */
extern const char *dmf_method_name(DmfMethod method);

#endif							/* DMF_FORECAST_H */
