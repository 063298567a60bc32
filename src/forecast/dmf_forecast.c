/*-------------------------------------------------------------------------
 *
 * dmf_forecast.c
 *	  Entry point of the forecasting core: validation, fallbacks, dispatch
 *	  to a method and the prediction intervals.
 *
 * dmf_forecast() owns a DmfCtx for the duration of the call.  Methods leave
 * through dmf_fail() (a longjmp back here) on errors, running out of memory
 * or an interrupt; the arena is freed on every path, so the only memory that
 * survives the call is the result's arrays, allocated at the very end.
 *
 * Inputs longer than needed are fitted on a bounded tail (DMF_FIT_MIN points
 * or eight cycles of the longest period, whichever is longer), which bounds
 * both time and memory whatever the length of the input.
 *
 * src/forecast/dmf_forecast.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmf_internal.h"

#define DMF_FIT_MIN		5000

static const char *const method_names[] = {
	"auto", "snaive", "hw", "mstl", "arima", "prophet", "naive", "theta"
};

int
dmf_method_parse(const char *name)
{
	int			i;

	if (name == NULL)
		return -1;
	for (i = 0; i < (int) (sizeof(method_names) / sizeof(method_names[0])); i++)
		if (strcmp(name, method_names[i]) == 0)
			return i;
	return -1;
}

const char *
dmf_method_name(DmfMethod method)
{
	if ((int) method < 0 ||
		(int) method >= (int) (sizeof(method_names) / sizeof(method_names[0])))
		return "unknown";
	return method_names[method];
}

void
dmf_result_free(DmfResult *out)
{
	if (out == NULL)
		return;
	free(out->yhat);
	free(out->lo80);
	free(out->hi80);
	free(out->lo95);
	free(out->hi95);
	out->yhat = out->lo80 = out->hi80 = out->lo95 = out->hi95 = NULL;
}

static int
cmp_int(const void *a, const void *b)
{
	int			x = *(const int *) a,
				y = *(const int *) b;

	return (x > y) - (x < y);
}

/* set the error message and detail of a validation failure */
static DmfStatus
invalid(DmfResult *out, char *errbuf, size_t errlen, DmfStatus st,
		const char *msg, const char *detail)
{
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s", msg);
	snprintf(out->detail, sizeof(out->detail), "%s", detail);
	return st;
}

/*
 * fill_missing
 *		Replace non-finite values by linear interpolation between the finite
 *		neighbours (the nearest finite value at the ends).  Returns 0, or -1
 *		if no value is finite.
 */
static int
fill_missing(double *y, int n)
{
	int			prev = -1,
				t;

	for (t = 0; t < n; t++)
	{
		if (!isfinite(y[t]))
			continue;
		if (prev < 0)
		{
			int			u;

			for (u = 0; u < t; u++)
				y[u] = y[t];
		}
		else if (t - prev > 1)
		{
			int			u;

			for (u = prev + 1; u < t; u++)
				y[u] = y[prev] + (y[t] - y[prev]) * (u - prev) / (t - prev);
		}
		prev = t;
	}
	if (prev < 0)
		return -1;
	for (t = prev + 1; t < n; t++)
		y[t] = y[prev];
	return 0;
}

/*
 * calibrate
 *		Widen the forecast standard deviations of fc (made by fn on in) by
 *		the error of the same method at one held-out origin of the series.
 *
 * The analytic intervals of mstl, arima and prophet count only the noise of
 * their model: not the error of the estimated seasonal pattern, parameters
 * or changepoints, nor the misfit of a model that is not the right one.
 * The method is refitted on the series without its last hc = min(h, n / 4)
 * values (only if what is left holds two cycles of the shortest period, the
 * same origin auto's backtest uses first) and forecasts them; r^2 is the
 * mean of the squared errors over the forecast variances.  Every omitted
 * component adds variance, so the correction only widens: the standard
 * deviations are multiplied by min(max(r, 1), CALIB_MAX).  The seasonal
 * periods the shorter series cannot hold are dropped for the refit.
 */
#define CALIB_MAX	3.0

static void
calibrate(DmfCtx *ctx, void (*fn) (DmfCtx *, const DmfInput *, DmfFc *),
		  const DmfInput *in, DmfFc *fc)
{
	DmfInput	sub = *in;
	DmfFc		bt;
	int			seas[DMF_MAX_SEASONS];
	int			hc = in->h < in->n / 4 ? in->h : in->n / 4,
				mshort = in->nseasons > 0 ? in->seasons[0] : 1,
				i,
				k,
				nk = 0;
	double		r2 = 0,
				f;

	if (hc < 1 || in->n - hc < (2 * mshort > 8 ? 2 * mshort : 8))
		return;
	sub.n = in->n - hc;
	sub.h = hc;
	sub.fitted = NULL;			/* the parameters are those of the full fit */
	sub.nseasons = 0;
	for (i = 0; i < in->nseasons; i++)
		if (in->seasons[i] <= sub.n / 2)
			seas[sub.nseasons++] = in->seasons[i];
	sub.seasons = seas;
	dmf_tick(ctx);
	fn(ctx, &sub, &bt);
	for (k = 0; k < hc; k++)
	{
		double		e = in->y[sub.n + k] - bt.mean[k];

		if (!isfinite(e) || !(bt.sd[k] > 0) || !isfinite(bt.sd[k]))
			continue;
		r2 += e * e / (bt.sd[k] * bt.sd[k]);
		nk++;
	}
	if (nk == 0)
		return;
	f = sqrt(r2 / nk);
	if (!(f > 1))
		return;
	if (f > CALIB_MAX)
		f = CALIB_MAX;
	for (k = 0; k < fc->h; k++)
		fc->sd[k] *= f;
}

/*
 * run_method
 *		Run one method; falls back to naive if it produced non-finite
 *		numbers.  Methods without regressors get events as an adjustment:
 *		their effects, estimated by the Prophet-style regression, are taken
 *		out of the history and added to the forecast.
 */
static void
run_method(DmfCtx *ctx, DmfMethod method, const DmfInput *in, DmfFc *fc)
{
	int			k;

	if (in->nevents > 0 && method != DMF_PROPHET)
	{
		double	   *hist = dmf_dalloc(ctx, in->n);
		double	   *fut = dmf_dalloc(ctx, in->h);
		double	   *y2 = dmf_dalloc(ctx, in->n);
		DmfInput	in2 = *in;
		size_t		dl;

		if (dmf_event_effects(ctx, in, hist, fut) > 0)
		{
			for (k = 0; k < in->n; k++)
				y2[k] = in->y[k] - hist[k];
			in2.y = y2;
			in2.events = NULL;
			in2.nevents = 0;
			run_method(ctx, method, &in2, fc);
			for (k = 0; k < in->h; k++)
				fc->mean[k] += fut[k];
			dl = strlen(fc->desc);
			snprintf(fc->desc + dl, sizeof(fc->desc) - dl, " + events");
			return;
		}
		dmf_notice(ctx, "no event falls inside the series: "
				   "events are ignored");
	}

	switch (method)
	{
		case DMF_SNAIVE:
			dmf_method_snaive(ctx, in, fc);
			break;
		case DMF_HW:
			dmf_method_hw(ctx, in, fc);
			break;
		case DMF_MSTL:
			dmf_method_mstl(ctx, in, fc);
			calibrate(ctx, dmf_method_mstl, in, fc);
			break;
		case DMF_ARIMA:
			dmf_method_arima(ctx, in, fc);
			calibrate(ctx, dmf_method_arima, in, fc);
			break;
		case DMF_PROPHET:
			dmf_method_prophet(ctx, in, fc);
			calibrate(ctx, dmf_method_prophet, in, fc);
			break;
		case DMF_THETA:
			dmf_method_theta(ctx, in, fc);
			calibrate(ctx, dmf_method_theta, in, fc);
			break;
		case DMF_NAIVE:
			dmf_method_naive(ctx, in, fc);
			break;
		case DMF_AUTO:
		default:
			dmf_method_auto(ctx, in, fc);
			break;
	}
	for (k = 0; k < fc->h; k++)
	{
		if (!isfinite(fc->mean[k]) || !isfinite(fc->sd[k]))
		{
			dmf_notice(ctx, "%s produced a non-finite forecast: "
					   "falls back to naive", dmf_method_name(method));
			dmf_method_naive(ctx, in, fc);
			return;
		}
		if (fc->sd[k] < 0)
			fc->sd[k] = 0;
	}
}

/*
 * forecast_run
 *		The part of dmf_forecast() that allocates: tail, seasons, events,
 *		fallbacks, the method and the result.  Leaves through dmf_fail().
 */
static void
forecast_run(DmfCtx *ctx, const double *y, int n, const int *seasons,
			 int nseasons, int horizon, DmfMethod method,
			 const DmfEvent *events, int nevents, const DmfOptions *opts,
			 DmfResult *out)
{
	DmfInput	in;
	DmfFc		fc;
	double	   *work;
	DmfEvent   *ev = NULL;
	int		   *seas;
	int			nuse = 0,
				maxseason = 1,
				start,
				nfit,
				i,
				k;
	double		lo,
				hi;

	/* fit on a bounded tail */
	for (i = 0; i < nseasons; i++)
		if (seasons[i] > maxseason)
			maxseason = seasons[i];
	nfit = DMF_FIT_MIN;
	if ((long) maxseason * 8 > nfit)
		nfit = maxseason * 8;
	if (nfit > n)
		nfit = n;
	start = n - nfit;
	work = dmf_dalloc(ctx, nfit);
	memcpy(work, y + start, nfit * sizeof(double));
	if (opts && opts->interpolate)
	{
		int			nbad = 0;

		for (i = 0; i < nfit; i++)
			nbad += !isfinite(work[i]);
		if (nbad > 0)
		{
			if (fill_missing(work, nfit) != 0)
				dmf_fail(ctx, DMF_ENONFINITE, "series has no finite value");
			dmf_notice(ctx, "%d missing value%s interpolated", nbad,
					   nbad == 1 ? "" : "s");
		}
	}

	/* usable seasons: sorted, distinct, > 1, at most half the series */
	seas = dmf_alloc(ctx, (nseasons + 1) * sizeof(int));
	if (nseasons > 0)
		memcpy(seas, seasons, nseasons * sizeof(int));
	qsort(seas, nseasons, sizeof(int), cmp_int);
	for (i = 0; i < nseasons; i++)
	{
		if (seas[i] <= 1 || (nuse > 0 && seas[nuse - 1] == seas[i]))
			continue;
		if (seas[i] > nfit / 2)
		{
			dmf_notice(ctx, "season %d ignored: the series holds fewer "
					   "than two cycles of it", seas[i]);
			continue;
		}
		seas[nuse++] = seas[i];
	}

	/* events, moved to the tail's positions */
	if (nevents > 0)
	{
		ev = dmf_alloc(ctx, nevents * sizeof(DmfEvent));
		for (i = 0; i < nevents; i++)
		{
			ev[i] = events[i];
			ev[i].start -= start;
			ev[i].end -= start;
		}
	}

	in.y = work;
	in.n = nfit;
	in.seasons = seas;
	in.nseasons = nuse;
	in.h = horizon;
	in.events = ev;
	in.nevents = nevents;
	in.arima_hint = NULL;
	/* parameters kept between calls: hw and mstl only (auto's members fit) */
	in.params = NULL;
	in.fitted = NULL;
	if (method == DMF_HW || method == DMF_MSTL)
	{
		in.params = opts ? opts->params : NULL;
		in.fitted = &out->params;
	}

	lo = hi = work[0];
	for (i = 1; i < nfit; i++)
	{
		if (work[i] < lo)
			lo = work[i];
		if (work[i] > hi)
			hi = work[i];
	}
	if (hi - lo <= 1e-12 * fmax(1.0, fabs(hi)))
	{
		dmf_notice(ctx, "series is constant: forecasting its value");
		dmf_fc_init(ctx, &fc, horizon);
		for (k = 0; k < horizon; k++)
			fc.mean[k] = work[nfit - 1];
		snprintf(fc.desc, sizeof(fc.desc), "constant");
		method = DMF_NAIVE;
	}
	else if (nfit < 3)
	{
		dmf_notice(ctx, "series has fewer than 3 values: "
				   "falls back to naive");
		dmf_method_naive(ctx, &in, &fc);
		method = DMF_NAIVE;
	}
	else
		run_method(ctx, method, &in, &fc);

	/* the result, the only memory that outlives the call (counted too) */
	dmf_memory_check(ctx, 5 * sizeof(double) * (size_t) horizon);
	out->horizon = horizon;
	out->yhat = malloc(horizon * sizeof(double));
	out->lo80 = malloc(horizon * sizeof(double));
	out->hi80 = malloc(horizon * sizeof(double));
	out->lo95 = malloc(horizon * sizeof(double));
	out->hi95 = malloc(horizon * sizeof(double));
	if (!out->yhat || !out->lo80 || !out->hi80 || !out->lo95 || !out->hi95)
	{
		dmf_result_free(out);
		dmf_fail(ctx, DMF_ENOMEM, "out of memory");
	}
	for (k = 0; k < horizon; k++)
	{
		double		m = fc.mean[k],
					s = fc.sd[k];

		out->yhat[k] = m;
		out->lo80[k] = m - DMF_Z80 * s;
		out->hi80[k] = m + DMF_Z80 * s;
		out->lo95[k] = m - DMF_Z95 * s;
		out->hi95[k] = m + DMF_Z95 * s;
	}
	out->method = method;
	snprintf(out->model, sizeof(out->model), "%s", fc.desc);
	out->work_bytes = ctx->allocated;
	out->sigma = fc.sigma;
}

DmfStatus
dmf_forecast(const double *y, int n, const int *seasons, int nseasons,
			 int horizon, DmfMethod method, const DmfEvent *events,
			 int nevents, const DmfOptions *opts, DmfResult *out,
			 char *errbuf, size_t errlen)
{
	DmfCtx		ctx;
	char		detail[DMF_MSG_LEN];
	int			i;

	memset(out, 0, sizeof(*out));
	if (errbuf && errlen)
		errbuf[0] = '\0';

	/* argument checks, before any allocation */
	if (n <= 0 || y == NULL)
		return invalid(out, errbuf, errlen, DMF_EEMPTY,
					   "series is empty", "A forecast needs at least one value.");
	if (n > DMF_MAX_INPUT)
	{
		snprintf(detail, sizeof(detail),
				 "The series has %d values; the limit is %d.", n, DMF_MAX_INPUT);
		return invalid(out, errbuf, errlen, DMF_ETOOLONG,
					   "series is too long", detail);
	}
	if (horizon < 1 || horizon > DMF_MAX_HORIZON)
	{
		snprintf(detail, sizeof(detail),
				 "The horizon is %d; it must be between 1 and %d.",
				 horizon, DMF_MAX_HORIZON);
		return invalid(out, errbuf, errlen, DMF_EINVAL,
					   "horizon out of range", detail);
	}
	if ((int) method < 0 || (int) method > DMF_THETA)
		return invalid(out, errbuf, errlen, DMF_EINVAL,
					   "unknown forecasting method", "");
	if (nseasons < 0 || nseasons > DMF_MAX_SEASONS ||
		(nseasons > 0 && seasons == NULL))
	{
		snprintf(detail, sizeof(detail),
				 "%d seasonal periods were given; at most %d are allowed.",
				 nseasons, DMF_MAX_SEASONS);
		return invalid(out, errbuf, errlen, DMF_EINVAL,
					   "too many seasonal periods", detail);
	}
	for (i = 0; i < nseasons; i++)
	{
		if (seasons[i] < 1 || seasons[i] > DMF_MAX_SEASON)
		{
			snprintf(detail, sizeof(detail),
					 "Element %d of seasons is %d; a period must be between 1 and %d.",
					 i + 1, seasons[i], DMF_MAX_SEASON);
			return invalid(out, errbuf, errlen, DMF_EINVAL,
						   "seasonal period out of range", detail);
		}
	}
	if (nevents < 0 || nevents > DMF_MAX_EVENTS || (nevents > 0 && !events))
	{
		snprintf(detail, sizeof(detail),
				 "%d event occurrences were given; at most %d are allowed.",
				 nevents, DMF_MAX_EVENTS);
		return invalid(out, errbuf, errlen, DMF_EINVAL,
					   "too many events", detail);
	}
	for (i = 0; i < nevents; i++)
	{
		const DmfEvent *e = &events[i];

		if (e->name == NULL || e->name[0] == '\0')
		{
			snprintf(detail, sizeof(detail), "Event %d has no name.", i + 1);
			return invalid(out, errbuf, errlen, DMF_EINVAL,
						   "invalid event", detail);
		}
		if (e->end < e->start)
		{
			snprintf(detail, sizeof(detail),
					 "Event %d (\"%.64s\") ends before it starts.",
					 i + 1, e->name);
			return invalid(out, errbuf, errlen, DMF_EINVAL,
						   "invalid event", detail);
		}
		if (e->window_before < 0 || e->window_after < 0 ||
			e->window_before > DMF_MAX_EVENT_WINDOW ||
			e->window_after > DMF_MAX_EVENT_WINDOW ||
			(long) e->end - e->start > DMF_MAX_INPUT)
		{
			snprintf(detail, sizeof(detail),
					 "Event %d (\"%.64s\") has a window outside 0 to %d or is too long.",
					 i + 1, e->name, DMF_MAX_EVENT_WINDOW);
			return invalid(out, errbuf, errlen, DMF_EINVAL,
						   "invalid event", detail);
		}
	}
	if (!(opts && opts->interpolate))
	{
		for (i = 0; i < n; i++)
			if (!isfinite(y[i]))
			{
				snprintf(detail, sizeof(detail), "Element %d is %s.", i + 1,
						 isnan(y[i]) ? "NaN" : (y[i] > 0 ? "Infinity" : "-Infinity"));
				return invalid(out, errbuf, errlen, DMF_ENONFINITE,
							   isnan(y[i]) ? "series contains a NaN value"
							   : "series contains an infinite value", detail);
			}
	}

	memset(&ctx, 0, sizeof(ctx));
	ctx.opts = opts;
	ctx.res = out;
	if (setjmp(ctx.jmp) != 0)
	{
		DmfStatus	st = (DmfStatus) ctx.status;

		dmf_ctx_release(&ctx);
		out->nnotices = 0;
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "%s", ctx.msg);
		return st;
	}

	forecast_run(&ctx, y, n, seasons, nseasons, horizon, method,
				 events, nevents, opts, out);
	dmf_ctx_release(&ctx);
	return DMF_OK;
}
