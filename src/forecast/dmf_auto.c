/*-------------------------------------------------------------------------
 *
 * dmf_auto.c
 *	  Method choice by rolling-origin backtest on the series itself.
 *
 * The last part of the training series is held out at up to two origins
 * (n - 2h, then n - h; horizon h capped at n / 4, where the rest still
 * holds two cycles of the shortest usable period; the candidates then use
 * the periods that fit twice before the origin, so two weeks of
 * five-minute data, {288, 2016} at 4,032 points, are backtested with the
 * daily period only, and the chosen methods are then refitted on the whole
 * series with both).  Each candidate forecasts the held-out values from the
 * data before the origin, and its error is scaled like MASE.
 *
 * Candidates (all cheap: a few passes over the data each):
 *	- snaive (longest period) and, with several periods, snaive at the
 *	  shortest one ("snaive_short"): the last day of hourly data adapts at
 *	  once to a daily profile that drifts, which no smoothed model does;
 *	- mstl (MSTL + ETS, R's seasonal windows, of the logarithm when every
 *	  value is positive: dmf_method_mstl_log; plain MSTL + ETS is the
 *	  fallback of series too short to backtest) and mstl_fast (seasonal
 *	  windows of three cycles: follows a changing pattern);
 *	- hw (additive Holt-Winters, one or two seasons, maximum likelihood:
 *	  the hw method's two-horizon fit made the combinations worse);
 *	- seasonal ARIMA, on series of at most ARIMA_MAX_N values (its cost
 *	  grows faster than linearly; longer ones do without): the full
 *	  stepwise search when n m^2 (the cost of its Kalman filter, m the
 *	  period it models) is at most ARIMA_MAX_COST (monthly, quarterly,
 *	  weekly data), else the cheap search of
 *	  dmf_method_arima_fast, whose orders are chosen once, at the earliest
 *	  origin, and reused with warm-started estimates at the later origin and
 *	  in the final fit (DmfArimaHint).  Choosing the orders on the earliest
 *	  data only keeps the backtest honest.
 *
 * The forecast combines every candidate, seasonal naive ones included,
 * whose backtest error is within AUTO_TAU (1.5) times the best one: their
 * mean, or with three members or more their trimmed mean (at each step the
 * highest and the lowest member's values are left out).  Combinations of
 * the good candidates are more accurate than picking the single best on a
 * short backtest (the forecast combination puzzle); the trimmed mean keeps
 * one member that runs off (a smoothed model past a level shift, the last
 * cycle of a seasonal naive) from pulling the whole forecast with it,
 * which let the seasonal naive forecasts be ordinary members.  A
 * combination's standard deviation is the mean of all its members' (their
 * errors are strongly correlated), which keeps the intervals' coverage
 * close to the members'.  This rule, the previous one (seasonal naive only
 * when it won) and the one before (only when no model came close), and
 * factors from 1.3 to 2, were compared on the public cases, the M4 Hourly
 * set and the unit tests' accuracy set (docs/forecasting.md): this one is
 * the only one that was not worse on any of the three.  The Theta method
 * and a forced damped trend (MSTL + ETS(A,Ad,N)) were tried as candidates
 * too and made all three worse; the damped trend stays one of the trends
 * every ETS fit chooses from by AICc.
 *
 * Series too short to backtest (fewer than two cycles of the shortest
 * period, or 8 points, before the first origin) use MSTL + ETS alone (with
 * a notice).  The candidates are called directly, so their intervals are
 * the analytic ones, without dmf_forecast's held-out calibration.
 *
 * src/forecast/dmf_auto.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmf_internal.h"

#define MAX_CAND	8
#define MAX_ORIG	2
#define ARIMA_MAX_COST 100000.0 /* full arima search while n m^2 is below */
#define ARIMA_MAX_N	2500		/* no arima candidate on longer series */
#define AUTO_TAU	1.5			/* combine candidates within this factor of
								 * the best backtest error */
#define CAND_MSTL	1			/* index of mstl, the fallback */

typedef void (*MethodFn) (DmfCtx *ctx, const DmfInput *in, DmfFc *fc);

typedef struct Candidate
{
	const char *name;
	MethodFn	fn;
} Candidate;

/*
 * seasonal_mae
 *		In-sample mean absolute error of the seasonal naive forecast at lag
 *		m (naive when m is 1), the MASE scale.
 */
static double
seasonal_mae(const double *y, int n, int m)
{
	double		s = 0;
	int			t;

	if (m >= n)
		m = 1;
	for (t = m; t < n; t++)
		s += fabs(y[t] - y[t - m]);
	return (n > m) ? s / (n - m) : 0;
}

/*
 * usable_seasons
 *		Copy to out the seasons of in that fit twice in the first n values;
 *		returns how many.
 */
static int
usable_seasons(const DmfInput *in, int n, int *out)
{
	int			i,
				k = 0;

	for (i = 0; i < in->nseasons; i++)
		if (in->seasons[i] <= n / 2)
			out[k++] = in->seasons[i];
	return k;
}

/* add_candidate: append a candidate to cand[*ncand] */
static void
add_candidate(Candidate *cand, int *ncand, const char *name, MethodFn fn)
{
	cand[*ncand].name = name;
	cand[*ncand].fn = fn;
	(*ncand)++;
}

/*
 * choose_members
 *		The members of the combination from the backtest scores (see the
 *		file header); returns their bitmask.
 */
static int
choose_members(int ncand, const double *score)
{
	double		bestscore = HUGE_VAL;
	int			members = 0,
				bestc = 0,
				c;

	for (c = 0; c < ncand; c++)
		if (score[c] < bestscore)
		{
			bestscore = score[c];
			bestc = c;
		}
	for (c = 0; c < ncand; c++)
		if (score[c] <= AUTO_TAU * bestscore)
			members |= 1 << c;
	return members | (1 << bestc);
}

/*
 * dmf_auto_combine
 *		fc (allocated, zeroed) = the combination of the forecasts parts[c]
 *		whose bit c is set in members (at least one; see the file header):
 *		their mean, or their trimmed mean with three members or more; the
 *		standard deviations and sigmas are averaged.  Cannot fail.
 */
void
dmf_auto_combine(const DmfFc *parts, int ncand, int members, DmfFc *fc)
{
	int			nm = 0,
				c,
				k;

	for (c = 0; c < ncand; c++)
		nm += (members >> c) & 1;
	for (k = 0; k < fc->h; k++)
	{
		double		sum = 0,
					sd = 0,
					hi = -HUGE_VAL,
					lo = HUGE_VAL;

		for (c = 0; c < ncand; c++)
		{
			double		v;

			if (!((members >> c) & 1))
				continue;
			v = parts[c].mean[k];
			sum += v;
			hi = v > hi ? v : hi;
			lo = v < lo ? v : lo;
			sd += parts[c].sd[k];
		}
		fc->mean[k] = (nm >= 3) ? (sum - hi - lo) / (nm - 2) : sum / nm;
		fc->sd[k] = sd / nm;
	}
	for (c = 0; c < ncand; c++)
		if ((members >> c) & 1)
			fc->sigma += parts[c].sigma / nm;
}

void
dmf_method_auto(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	Candidate	cand[MAX_CAND];
	int			ncand = 0;
	int			n = in->n,
				h = in->h,
				hb,
				norig = 0,
				orig[MAX_ORIG],
				mmain,
				marima,
				o,
				c,
				k,
				members;
	double	   *bt[MAX_CAND][MAX_ORIG];
	int			seas[DMF_MAX_SEASONS];
	DmfFc		parts[MAX_CAND];
	DmfArimaHint hint;
	DmfInput	fin = *in;
	char		desc[DMF_MSG_LEN];
	size_t		dl;

	memset(cand, 0, sizeof(cand));
	memset(&hint, 0, sizeof(hint));
	fin.arima_hint = &hint;

	add_candidate(cand, &ncand, "snaive", dmf_method_snaive);
	add_candidate(cand, &ncand, "mstl", dmf_method_mstl_log);
	add_candidate(cand, &ncand, "hw", dmf_method_hw_mle);
	if (in->nseasons > 1)
		add_candidate(cand, &ncand, "snaive_short", dmf_method_snaive_short);
	if (in->nseasons > 0)
		add_candidate(cand, &ncand, "mstl_fast", dmf_method_mstl_fast);
	marima = dmf_arima_period(in);
	if (n <= ARIMA_MAX_N && (double) n * marima * marima <= ARIMA_MAX_COST)
		add_candidate(cand, &ncand, "arima", dmf_method_arima);
	else if (n <= ARIMA_MAX_N)
		add_candidate(cand, &ncand, "arima_fast", dmf_method_arima_fast);
	mmain = in->nseasons > 0 ? in->seasons[in->nseasons - 1] : 1;

	/*
	 * backtest origins, earliest first (it chooses arima_fast's orders):
	 * each leaves two cycles of the shortest period (the candidates then
	 * see only the periods that fit twice before the origin)
	 */
	hb = h;
	if (hb > n / 4)
		hb = n / 4;
	if (hb >= 1)
	{
		int			mshort = in->nseasons > 0 ? in->seasons[0] : 1;
		int			need = 2 * mshort > 8 ? 2 * mshort : 8;

		for (k = MAX_ORIG; k >= 1; k--)
			if (n - k * hb >= need)
				orig[norig++] = n - k * hb;
	}

	if (norig > 0)
	{
		double		scale[MAX_ORIG];
		double		score[MAX_CAND];

		for (o = 0; o < norig; o++)
		{
			DmfInput	sub = *in;

			sub.arima_hint = &hint;
			sub.n = orig[o];
			sub.h = hb;
			sub.nseasons = usable_seasons(in, orig[o], seas);
			sub.seasons = seas;
			scale[o] = seasonal_mae(in->y, orig[o], mmain);
			if (!(scale[o] > 0))
				scale[o] = 1;
			for (c = 0; c < ncand; c++)
			{
				DmfFc		f;

				dmf_tick(ctx);
				cand[c].fn(ctx, &sub, &f);
				bt[c][o] = f.mean;
			}
		}
		/* score each candidate: mean scaled absolute error over origins */
		for (c = 0; c < ncand; c++)
		{
			score[c] = 0;
			for (o = 0; o < norig; o++)
			{
				double		err = 0;

				for (k = 0; k < hb; k++)
					err += fabs(in->y[orig[o] + k] - bt[c][o][k]);
				score[c] += err / hb / scale[o] / norig;
			}
			if (!isfinite(score[c]))
				score[c] = HUGE_VAL;
		}
		members = choose_members(ncand, score);
	}
	else
	{
		/* too short to backtest: MSTL + ETS (not of the log) covers all */
		cand[CAND_MSTL].fn = dmf_method_mstl;
		members = 1 << CAND_MSTL;
	}

	dmf_fc_init(ctx, fc, h);
	snprintf(desc, sizeof(desc), "auto:");
	for (c = 0; c < ncand; c++)
	{
		if (!((members >> c) & 1))
			continue;
		dmf_tick(ctx);
		cand[c].fn(ctx, &fin, &parts[c]);
		dl = strlen(desc);
		snprintf(desc + dl, sizeof(desc) - dl, " %s", parts[c].desc);
	}
	dmf_auto_combine(parts, ncand, members, fc);
	if (norig == 0)
		dmf_notice(ctx, "series too short to backtest: auto uses mstl");
	memcpy(fc->desc, desc, sizeof(desc));
}
