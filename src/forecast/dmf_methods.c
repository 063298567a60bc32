/*-------------------------------------------------------------------------
 *
 * dmf_methods.c
 *	  The simple methods: naive, seasonal naive, Holt-Winters (ETS),
 *	  MSTL + ETS and MSTL + Theta.
 *
 * Each method takes a validated DmfInput (finite values, usable seasons in
 * ascending order) and fills a DmfFc with point forecasts and forecast
 * standard deviations.  Fallbacks are reported with dmf_notice().
 *
 * src/forecast/dmf_methods.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmf_internal.h"

/*
 * dmf_method_naive
 *		Random walk: the last value, with the spread of one-step changes.
 */
void
dmf_method_naive(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	const double *y = in->y;
	int			n = in->n,
				k,
				t;
	double		ss = 0;

	dmf_fc_init(ctx, fc, in->h);
	for (t = 1; t < n; t++)
		ss += (y[t] - y[t - 1]) * (y[t] - y[t - 1]);
	ss = (n > 1) ? sqrt(ss / (n - 1)) : 0;
	for (k = 0; k < in->h; k++)
	{
		fc->mean[k] = y[n - 1];
		fc->sd[k] = ss * sqrt(k + 1.0);
	}
	fc->sigma = ss;
	snprintf(fc->desc, sizeof(fc->desc), "naive");
}

/*
 * dmf_method_snaive
 *		Seasonal naive on the longest period that fits twice; naive (with a
 *		notice) when none does.
 */
void
dmf_method_snaive(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	const double *y = in->y;
	int			n = in->n,
				m,
				k,
				t;
	double		ss = 0;

	if (in->nseasons == 0)
	{
		dmf_notice(ctx, "no seasonal period fits twice in the series: "
				   "snaive falls back to naive");
		dmf_method_naive(ctx, in, fc);
		return;
	}
	m = in->seasons[in->nseasons - 1];
	dmf_fc_init(ctx, fc, in->h);
	for (t = m; t < n; t++)
		ss += (y[t] - y[t - m]) * (y[t] - y[t - m]);
	ss = sqrt(ss / (n - m));
	for (k = 0; k < in->h; k++)
	{
		fc->mean[k] = y[n - m + (k % m)];
		fc->sd[k] = ss * sqrt((double) (k / m + 1));
	}
	fc->sigma = ss;
	snprintf(fc->desc, sizeof(fc->desc), "snaive m=%d", m);
}

/*
 * dmf_method_snaive_short
 *		Seasonal naive on the shortest period (the last day of hourly data
 *		given {24, 168}); naive when there is no period.  Only an auto
 *		candidate: it adapts at once to a pattern that changes from day to
 *		day, which the longest period's cycle cannot.
 */
void
dmf_method_snaive_short(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	DmfInput	one = *in;

	if (in->nseasons > 1)
		one.nseasons = 1;
	dmf_method_snaive(ctx, &one, fc);
}

/*
 * hw_fit
 *		Additive Holt-Winters / ETS on the (at most two) longest periods,
 *		trend chosen by AICc among none, additive and damped; kstep as in
 *		dmf_ets_fit (0: maximum likelihood).
 */
static void
hw_fit(DmfCtx *ctx, const DmfInput *in, int kstep, DmfFc *fc)
{
	DmfEts		fit;
	int			nseas = in->nseasons > 2 ? 2 : in->nseasons;
	const int  *m = in->seasons + (in->nseasons - nseas);
	char		name[64];

	if (in->n < 4)
	{
		dmf_notice(ctx, "series too short for hw: falls back to naive");
		dmf_method_naive(ctx, in, fc);
		return;
	}
	dmf_ets_select_or_apply(ctx, in, in->y, in->n, m, nseas,
							nseas == 2 ? kstep : 0, &fit);
	dmf_fc_init(ctx, fc, in->h);
	dmf_ets_forecast(&fit, in->h, fc->mean, fc->sd);
	fc->sigma = sqrt(fit.sigma2);
	snprintf(fc->desc, sizeof(fc->desc), "hw %s",
			 dmf_ets_name(&fit, name, sizeof(name)));
}

/*
 * dmf_method_hw
 *		The hw method.  With two seasons (Taylor's double seasonal
 *		Holt-Winters), the smoothing parameters minimise the one-step and
 *		the half-shortest-period-step errors together (dmf_ets_fit): by
 *		likelihood alone, two-season fits to hourly data chase the last
 *		hours and were worse than seasonal naive over two days.  Only for
 *		nested cycles (the longer period a multiple of the shorter: days in
 *		a week, the case Taylor's model was made for; on daily data with
 *		{7, 365} it was worse than the likelihood on the public cases) and
 *		while that step is at most HW_KSTEP_MAX (hourly {24, 168},
 *		half-hourly {48, 336}): at five minutes ({288, 2016}, step 144) the
 *		fit took ten times longer, and nothing measured its accuracy there.
 */
#define HW_KSTEP_MAX	64

void
dmf_method_hw(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	int			kstep = 0;

	if (in->nseasons >= 2)
	{
		int			mshort = in->seasons[in->nseasons - 2],
					mlong = in->seasons[in->nseasons - 1];

		if (mlong % mshort == 0 && mshort / 2 <= HW_KSTEP_MAX)
			kstep = mshort / 2;
	}
	hw_fit(ctx, in, kstep, fc);
}

/*
 * dmf_method_hw_mle
 *		Holt-Winters by maximum likelihood whatever the seasons: auto's
 *		candidate, which its backtest measured better as a member of the
 *		combinations than the two-horizon fit.
 */
void
dmf_method_hw_mle(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	hw_fit(ctx, in, 0, fc);
}

/* what models the seasonally adjusted series in mstl_model */
typedef enum AdjModel
{
	ADJ_ETS,					/* ETS, trend chosen by AICc */
	ADJ_THETA					/* the optimised Theta method */
} AdjModel;

/*
 * mstl_model
 *		MSTL decomposition over every period with a cycle-subseries window
 *		of swin cycles (0: R's default), the seasonally adjusted series
 *		forecast by the given model, each seasonal component continued by
 *		its last cycle.
 */
static void
mstl_model(DmfCtx *ctx, const DmfInput *in, int swin, AdjModel model,
		   DmfFc *fc)
{
	int			n = in->n,
				ns = in->nseasons,
				i,
				k;
	double	   *adj;
	double	  **seas;
	char		name[64];
	const char *what = (model == ADJ_THETA) ? "theta" : "mstl";

	if (n < 4)
	{
		dmf_notice(ctx, "series too short for %s: falls back to naive", what);
		dmf_method_naive(ctx, in, fc);
		return;
	}
	adj = dmf_dalloc(ctx, n);
	seas = dmf_alloc(ctx, (ns + 1) * sizeof(double *));
	for (i = 0; i < ns; i++)
		seas[i] = dmf_dalloc(ctx, n);
	dmf_mstl(ctx, in->y, n, in->seasons, ns, swin, seas, adj);
	dmf_fc_init(ctx, fc, in->h);
	if (model == ADJ_THETA)
	{
		DmfTheta	fit;

		dmf_theta_fit(ctx, adj, n, &fit);
		dmf_theta_forecast(&fit, in->h, fc->mean, fc->sd);
		fc->sigma = sqrt(fit.sigma2);
		dmf_theta_name(&fit, name, sizeof(name));
	}
	else
	{
		DmfEts		fit;

		dmf_ets_select_or_apply(ctx, in, adj, n, NULL, 0, 0, &fit);
		dmf_ets_forecast(&fit, in->h, fc->mean, fc->sd);
		fc->sigma = sqrt(fit.sigma2);
		dmf_ets_name(&fit, name, sizeof(name));
	}
	for (i = 0; i < ns; i++)
	{
		int			m = in->seasons[i];

		for (k = 0; k < in->h; k++)
			fc->mean[k] += seas[i][n - m + (k % m)];
	}
	if (model == ADJ_THETA)
	{
		size_t		dl;

		snprintf(fc->desc, sizeof(fc->desc), "theta %s", name);
		for (i = 0; i < ns; i++)
		{
			dl = strlen(fc->desc);
			snprintf(fc->desc + dl, sizeof(fc->desc) - dl, "%s%d",
					 i == 0 ? " mstl m=" : ",", in->seasons[i]);
		}
	}
	else if (swin > 0)
		snprintf(fc->desc, sizeof(fc->desc), "mstl(s.window=%d) %s", swin,
				 name);
	else
		snprintf(fc->desc, sizeof(fc->desc), "mstl %s", name);
}

/*
 * dmf_method_mstl
 *		MSTL + ETS with R's seasonal windows (7 + 4 i cycles): R's stlf()
 *		for one or several periods.
 */
void
dmf_method_mstl(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	mstl_model(ctx, in, 0, ADJ_ETS, fc);
}

/*
 * dmf_method_mstl_fast
 *		MSTL + ETS whose seasonal components follow the last MSTL_FAST_WIN
 *		cycles only: for seasonal patterns that move (a daily peak that
 *		drifts by an hour a day), where a seven-cycle mean lags behind.
 *		Only an auto candidate.
 */
#define MSTL_FAST_WIN	3

void
dmf_method_mstl_fast(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	mstl_model(ctx, in, MSTL_FAST_WIN, ADJ_ETS, fc);
}

/*
 * dmf_method_mstl_log
 *		MSTL + ETS on the logarithm of a positive series, back-transformed:
 *		seasonal swings that grow with the level (multiplicative
 *		seasonality: traffic, sales, AirPassengers) are additive there.
 *		exp() of the forecast is its median; the standard deviations
 *		follow by the delta method (sd times the forecast).  A series with a
 *		value at or below zero gets plain MSTL + ETS.  Only an auto
 *		candidate, in place of plain MSTL + ETS.
 */
void
dmf_method_mstl_log(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	DmfInput	lg = *in;
	double	   *ly;
	int			t,
				k;
	size_t		dl;

	for (t = 0; t < in->n; t++)
		if (!(in->y[t] > 0))
		{
			dmf_method_mstl(ctx, in, fc);
			return;
		}
	ly = dmf_dalloc(ctx, in->n);
	for (t = 0; t < in->n; t++)
		ly[t] = log(in->y[t]);
	lg.y = ly;
	mstl_model(ctx, &lg, 0, ADJ_ETS, fc);
	for (k = 0; k < fc->h; k++)
	{
		double		m = exp(fc->mean[k]);

		fc->sd[k] *= m;
		fc->mean[k] = m;
	}
	fc->sigma *= exp(ly[in->n - 1]);
	dl = strlen(fc->desc);
	snprintf(fc->desc + dl, sizeof(fc->desc) - dl, " of log");
}

/*
 * dmf_method_theta
 *		The theta method: the optimised Theta method (dmf_theta.c) on the
 *		series seasonally adjusted by MSTL (R's windows), the seasonal
 *		components continued by their last cycle; on the series itself
 *		when there is no period.
 */
void
dmf_method_theta(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	mstl_model(ctx, in, 0, ADJ_THETA, fc);
}
