/*-------------------------------------------------------------------------
 *
 * dmf_ets.c
 *	  Additive exponential smoothing (ETS / Holt-Winters) with no, additive
 *	  or damped trend and up to two additive seasonal components (Taylor's
 *	  double seasonal Holt-Winters when two periods are given).
 *
 * Fitting: the initial states come from a classical decomposition of the
 * first two cycles of the longest period; the smoothing parameters (alpha,
 * beta, gamma per season, phi) maximise the Gaussian likelihood, i.e.
 * minimise n log(SSE / n), by Nelder-Mead in a logistic parametrisation
 * that keeps them inside the usual admissible box (0 < beta <= alpha,
 * 0 < gamma <= 1 - alpha, 0.8 <= phi <= 0.98).  Only these few parameters
 * are optimised, so a fit costs a few hundred linear passes over the data,
 * whatever the seasonal periods.
 *
 * With kstep > 0 the parameters minimise instead the geometric mean of the
 * one-step and the kstep-step mean squared errors within the sample (a
 * two-horizon form of R's ets(opt.crit = "amse")).  The likelihood judges
 * one-step errors only, and on hourly data with two seasons it prefers
 * gains that follow the last hours (a level that absorbs what the seasonal
 * states miss) and whose forecasts run off over a day or two; hw uses
 * kstep = half the shortest period there (docs/forecasting.md).  sigma^2
 * and AICc still come from the one-step errors.  Models are compared by AICc, counting
 * the initial states as parameters like R's ets() does.
 *
 * src/forecast/dmf_ets.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmf_internal.h"

typedef struct EtsWork
{
	const double *y;
	int			n;
	int			trend;
	int			nseas;
	int			m[2];			/* 1 for an unused component */
	double		l0;
	double		b0;
	double	   *s0[2];
	double	   *s[2];
	/* parameters of the last run */
	double		alpha;
	double		beta;
	double		gamma[2];
	double		phi;
	double		level;
	double		slope;
	int			kstep;			/* 0, or the second horizon of the fit */
	double	   *lring;			/* kstep levels and slopes (ets_run_kstep) */
	double	   *bring;
} EtsWork;

/*
 * logistic, kept inside [1e-4, 1 - 1e-4]: parameters never come so close to
 * 0 that products become denormal (which makes the filter ten times
 * slower), and the objective is flat beyond, so Nelder-Mead stops there.
 */
static double
logistic(double x)
{
	double		p = 1.0 / (1.0 + exp(-x));

	return p < 1e-4 ? 1e-4 : (p > 1 - 1e-4 ? 1 - 1e-4 : p);
}

static double
logit(double p)
{
	p = p < 1e-4 ? 1e-4 : (p > 1 - 1e-4 ? 1 - 1e-4 : p);
	return log(p / (1.0 - p));
}

/* map the unconstrained vector x to the smoothing parameters of w */
static void
ets_params(EtsWork *w, const double *x)
{
	int			k = 0,
				j;

	w->alpha = 0.0001 + 0.9998 * logistic(x[k++]);
	w->beta = 0;
	w->phi = 0;
	if (w->trend > 0)
	{
		w->beta = w->alpha * logistic(x[k++]);
		w->phi = 1.0;
	}
	w->gamma[0] = w->gamma[1] = 0;
	for (j = 0; j < w->nseas; j++)
		w->gamma[j] = (1.0 - w->alpha) * logistic(x[k++]);
	if (w->trend == 2)
		w->phi = 0.8 + 0.18 * logistic(x[k++]);
}

/*
 * The filter.  The textbook recursion (e = y - lb - s; l = lb + alpha e;
 * b = phi b + beta e; lb = l + phi b, with lb the one-step prediction of the
 * level) is linear in the state (lb, b): with c = y - s and k = alpha + phi
 * beta,
 *		lb' = (1 - k) lb + k c + phi^2 b,	b' = phi b + beta (c - lb).
 * The loop takes two steps at a time and computes the state two steps
 * ahead directly from the current one (the square of that 2 x 2 map), so
 * the loop-carried dependency is one multiply and one or two adds per two
 * observations instead of per observation; the intermediate state, needed
 * only for the second error, is off that path.  The sum of squares uses
 * one accumulator per step parity for the same reason.  The seasonal state
 * read at the second step is never the one updated at the first (periods
 * are at least 2).  The loop is instantiated for each combination of trend
 * and number of seasons so that unused states cost nothing.
 */
typedef struct EtsCoef
{
	double		k,
				omk,
				phi2,
				beta,
				g1,
				g2,
				omk2,
				omkk,
				a11,
				a12,
				a21,
				a22,
				u0,
				v0;
} EtsCoef;

#define ETS_LOOP(NAME, USE_B, NS) \
static double \
NAME(const EtsCoef *cf, const double *y, int n, double *s1, int m1, \
	 double *s2, int m2, double *lbp, double *bp) \
{ \
	const double k = cf->k, \
				omk = cf->omk, \
				phi2 = cf->phi2, \
				beta = cf->beta, \
				g1 = cf->g1, \
				g2 = cf->g2, \
				omk2 = cf->omk2, \
				omkk = cf->omkk, \
				a11 = cf->a11, \
				a12 = cf->a12, \
				a21 = cf->a21, \
				a22 = cf->a22, \
				u0 = cf->u0, \
				v0 = cf->v0; \
	double		lb = *lbp, \
				b = *bp, \
				sse = 0, \
				sse1 = 0; \
	int			i1 = 0, \
				i2 = 0, \
				t; \
	(void) phi2; (void) beta; (void) g1; (void) g2; (void) omk2; \
	(void) omkk; (void) a11; (void) a12; (void) a21; (void) a22; \
	(void) u0; (void) v0; (void) s1; (void) s2; (void) m1; (void) m2; \
	for (t = 0; t + 1 < n; t += 2) \
	{ \
		double		c0 = y[t], \
					c1 = y[t + 1], \
					e0, \
					e1, \
					lb1; \
		int			j1 = 0, \
					j2 = 0; \
		if (NS >= 1) \
		{ \
			j1 = (i1 + 1 == m1) ? 0 : i1 + 1; \
			c0 -= s1[i1]; \
			c1 -= s1[j1]; \
		} \
		if (NS >= 2) \
		{ \
			j2 = (i2 + 1 == m2) ? 0 : i2 + 1; \
			c0 -= s2[i2]; \
			c1 -= s2[j2]; \
		} \
		e0 = c0 - lb; \
		if (USE_B) \
		{ \
			double		u = u0 * c0 + k * c1, \
						v = v0 * c0 + beta * c1, \
						nb = a21 * lb + (a22 * b + v); \
			lb1 = omk * lb + (k * c0 + phi2 * b); \
			lb = a11 * lb + (a12 * b + u); \
			b = nb; \
		} \
		else \
		{ \
			double		u = omkk * c0 + k * c1; \
			lb1 = omk * lb + k * c0; \
			lb = omk2 * lb + u; \
		} \
		e1 = c1 - lb1; \
		sse += e0 * e0; \
		sse1 += e1 * e1; \
		if (NS >= 1) \
		{ \
			s1[i1] += g1 * e0; \
			s1[j1] += g1 * e1; \
			i1 = (j1 + 1 == m1) ? 0 : j1 + 1; \
		} \
		if (NS >= 2) \
		{ \
			s2[i2] += g2 * e0; \
			s2[j2] += g2 * e1; \
			i2 = (j2 + 1 == m2) ? 0 : j2 + 1; \
		} \
	} \
	*lbp = lb; \
	*bp = b; \
	return sse + sse1; \
}

ETS_LOOP(ets_loop_n0, 0, 0)
ETS_LOOP(ets_loop_n1, 0, 1)
ETS_LOOP(ets_loop_n2, 0, 2)
ETS_LOOP(ets_loop_b0, 1, 0)
ETS_LOOP(ets_loop_b1, 1, 1)
ETS_LOOP(ets_loop_b2, 1, 2)

/*
 * ets_run
 *		Filter the series with the parameters stored in w, leaving the final
 *		states in w->level, w->slope and w->s; returns the sum of squared
 *		one-step errors.
 */
static double
ets_run(EtsWork *w)
{
	const double *y = w->y;
	double		beta = w->beta,
				phi = w->phi;
	double		lb = w->l0 + phi * w->b0,
				b = w->trend ? w->b0 : 0,
				sse;
	double	   *s1 = w->s[0],
			   *s2 = w->s[1];
	int			m1 = w->m[0],
				m2 = w->m[1],
				n = w->n;
	EtsCoef		cf;

	cf.k = w->alpha + phi * beta;
	cf.omk = 1.0 - cf.k;
	cf.phi2 = phi * phi;
	cf.beta = beta;
	cf.g1 = w->gamma[0];
	cf.g2 = w->gamma[1];
	/* the two-step map */
	cf.omk2 = cf.omk * cf.omk;
	cf.omkk = cf.omk * cf.k;
	cf.a11 = cf.omk * cf.omk - cf.phi2 * beta;
	cf.a12 = cf.phi2 * (cf.omk + phi);
	cf.a21 = -beta * (phi + cf.omk);
	cf.a22 = phi * phi - beta * cf.phi2;
	cf.u0 = cf.omk * cf.k + cf.phi2 * beta;
	cf.v0 = beta * (phi - cf.k);

	memcpy(s1, w->s0[0], m1 * sizeof(double));
	memcpy(s2, w->s0[1], m2 * sizeof(double));
	if (w->trend == 0)
	{
		if (w->nseas == 0)
			sse = ets_loop_n0(&cf, y, n, s1, m1, s2, m2, &lb, &b);
		else if (w->nseas == 1)
			sse = ets_loop_n1(&cf, y, n, s1, m1, s2, m2, &lb, &b);
		else
			sse = ets_loop_n2(&cf, y, n, s1, m1, s2, m2, &lb, &b);
	}
	else
	{
		if (w->nseas == 0)
			sse = ets_loop_b0(&cf, y, n, s1, m1, s2, m2, &lb, &b);
		else if (w->nseas == 1)
			sse = ets_loop_b1(&cf, y, n, s1, m1, s2, m2, &lb, &b);
		else
			sse = ets_loop_b2(&cf, y, n, s1, m1, s2, m2, &lb, &b);
	}
	/* the last observation of an odd length, one plain step */
	if (n % 2)
	{
		int			t = n - 1,
					i1 = t % m1,
					i2 = t % m2;
		double		c = y[t],
					e;

		if (w->nseas >= 1)
			c -= s1[i1];
		if (w->nseas >= 2)
			c -= s2[i2];
		e = c - lb;
		sse += e * e;
		lb = cf.omk * lb + (cf.k * c + cf.phi2 * b);
		b = phi * b + beta * e;
		if (w->nseas >= 1)
			s1[i1] += cf.g1 * e;
		if (w->nseas >= 2)
			s2[i2] += cf.g2 * e;
	}
	w->slope = b;
	w->level = lb - phi * b;
	return sse;
}

/*
 * ets_run_kstep
 *		The filter of ets_run one step at a time, also summing into *ssek the
 *		squared errors of the forecasts made kstep steps earlier (kstep at
 *		most the shortest period): such a forecast is the level and slope
 *		of then, which a ring buffer keeps, plus the seasonal states of now,
 *		which no observation has changed since then.
 */
static double
ets_run_kstep(EtsWork *w, double *ssek)
{
	const double *y = w->y;
	const int	K = w->kstep;
	double		l = w->l0,
				b = w->trend ? w->b0 : 0,
				phi = w->phi,
				sse = 0,
				sk = 0,
				phk = 0,
				pj = 1;
	double	   *lring = w->lring,
			   *bring = w->bring;
	double	   *s1 = w->s[0],
			   *s2 = w->s[1];
	int			i1 = 0,
				i2 = 0,
				r = 0,
				t,
				j;

	for (j = 1; j <= K && w->trend; j++)
	{
		pj *= (w->trend == 1) ? 1 : phi;
		phk += pj;
	}
	memcpy(s1, w->s0[0], w->m[0] * sizeof(double));
	memcpy(s2, w->s0[1], w->m[1] * sizeof(double));
	for (t = 0; t < w->n; t++)
	{
		double		s = (w->nseas >= 1 ? s1[i1] : 0) +
			(w->nseas >= 2 ? s2[i2] : 0),
					e = y[t] - (l + phi * b) - s;

		if (t >= K)
		{
			/* ring slot r holds the states after observation t - K */
			double		ek = y[t] - (lring[r] + phk * bring[r]) - s;

			sk += ek * ek;
		}
		sse += e * e;
		l = l + phi * b + w->alpha * e;
		b = phi * b + w->beta * e;
		if (w->nseas >= 1)
			s1[i1] += w->gamma[0] * e;
		if (w->nseas >= 2)
			s2[i2] += w->gamma[1] * e;
		lring[r] = l;
		bring[r] = b;
		if (++r == K)
			r = 0;
		if (++i1 == w->m[0])
			i1 = 0;
		if (++i2 == w->m[1])
			i2 = 0;
	}
	*ssek = sk;
	return sse;
}

static double
ets_objective(const double *x, void *arg)
{
	EtsWork    *w = (EtsWork *) arg;
	double		sse;

	ets_params(w, x);
	if (w->kstep > 0)
	{
		double		ssek;

		sse = ets_run_kstep(w, &ssek);
		if (!(sse > 0) || !(ssek > 0))
			return isfinite(sse) && isfinite(ssek) ? -1e300 : HUGE_VAL;
		return 0.5 * w->n * log(sse / w->n) +
			0.5 * (w->n - w->kstep) * log(ssek / (w->n - w->kstep));
	}
	sse = ets_run(w);
	if (!(sse > 0))
		return isfinite(sse) ? -1e300 : HUGE_VAL;
	return w->n * log(sse / w->n);
}

/*
 * dmf_ets_eval
 *		For tests: run both filters on y[0..n) with the given parameters
 *		(alpha, beta, gamma1, gamma2, phi in par) and initial states (s0[k]
 *		holds m[k] values; s[k], m[k] values of scratch; ring, 2 kstep
 *		values of scratch); *sse the one-step
 *		sum of squares of the two-step-at-a-time filter, *sse_plain that
 *		of the plain one, *ssek the kstep-step sum of squares.
 */
void
dmf_ets_eval(const double *y, int n, int trend, const int *m, int nseas,
			 const double *par, double l0, double b0, double *const *s0,
			 double *const *s, int kstep, double *ring, double *sse,
			 double *sse_plain, double *ssek)
{
	EtsWork		w;
	static double one = 0;
	int			k;

	memset(&w, 0, sizeof(w));
	w.y = y;
	w.n = n;
	w.trend = trend;
	w.nseas = nseas;
	for (k = 0; k < 2; k++)
	{
		w.m[k] = k < nseas ? m[k] : 1;
		w.s0[k] = k < nseas ? s0[k] : &one;
		w.s[k] = k < nseas ? s[k] : &one;
	}
	w.l0 = l0;
	w.b0 = b0;
	w.alpha = par[0];
	w.beta = trend ? par[1] : 0;
	w.gamma[0] = nseas > 0 ? par[2] : 0;
	w.gamma[1] = nseas > 1 ? par[3] : 0;
	w.phi = trend == 2 ? par[4] : (trend ? 1 : 0);
	*sse = ets_run(&w);
	w.kstep = kstep;
	w.lring = ring;
	w.bring = ring + kstep;
	*sse_plain = ets_run_kstep(&w, ssek);
}

/*
 * ets_init_states
 *		Heuristic initial level, slope and seasonal states from the first two
 *		cycles of the longest period (or the first ten values without
 *		season).
 */
static void
ets_init_states(EtsWork *w)
{
	const double *y = w->y;
	int			n = w->n;
	int			k,
				j,
				p0,
				t;

	if (w->nseas == 0)
	{
		int			c = n < 20 ? n / 2 : 10;

		if (c < 1)
			c = 1;
		w->l0 = dmf_mean(y, c);
		w->b0 = 0;
		if (w->trend > 0 && n >= 2 * c && c > 0)
			w->b0 = (dmf_mean(y + c, c) - dmf_mean(y, c)) / c;
		w->l0 -= w->b0 * (c + 1) / 2.0;
		return;
	}
	else
	{
		int			M = w->m[w->nseas - 1];
		int			L = 2 * M;
		double		m1 = dmf_mean(y, M),
					m2 = dmf_mean(y + M, M);
		double		b0 = (w->trend > 0) ? (m2 - m1) / M : 0;

		/* seasonal states: mean deviation from the line, per phase */
		for (k = 0; k < w->nseas; k++)
		{
			int			m = w->m[k];
			double	   *s = w->s0[k];
			double		mean;

			for (j = 0; j < m; j++)
				s[j] = 0;
			/* phases kept by counters: no division per point */
			for (t = 0, j = 0, p0 = 0; t < L; t++)
			{
				double		d = y[t] - (m1 + b0 * (t - (M - 1) / 2.0));

				if (k == 1)
				{
					d -= w->s0[0][p0];
					if (++p0 == w->m[0])
						p0 = 0;
				}
				s[j] += d;
				if (++j == m)
					j = 0;
			}
			for (j = 0; j < m; j++)
				s[j] /= (double) (L / m + (j < L % m ? 1 : 0));
			mean = dmf_mean(s, m);
			for (j = 0; j < m; j++)
				s[j] -= mean;
		}
		w->b0 = b0;
		w->l0 = m1 - b0 * (M + 1) / 2.0;
	}
}

/*
 * ets_work_init
 *		Set up the work of a fit of y[0..n) with the given trend and seasonal
 *		periods (see dmf_ets_fit), initial states included.
 */
static void
ets_work_init(DmfCtx *ctx, EtsWork *w, const double *y, int n, int trend,
			  const int *m, int nseas, int kstep)
{
	int			k;

	memset(w, 0, sizeof(*w));
	w->y = y;
	w->n = n;
	w->trend = trend;
	/* the k-step ring starts after kstep values: leave some */
	w->kstep = (kstep > 0 && nseas > 0 && kstep <= m[0] && n > 4 * kstep)
		? kstep : 0;
	if (w->kstep > 0)
	{
		w->lring = dmf_dalloc(ctx, w->kstep);
		w->bring = dmf_dalloc(ctx, w->kstep);
	}
	w->nseas = nseas;
	for (k = 0; k < 2; k++)
	{
		w->m[k] = (k < nseas) ? m[k] : 1;
		w->s0[k] = dmf_dalloc(ctx, w->m[k]);
		w->s[k] = dmf_dalloc(ctx, w->m[k]);
	}
	ets_init_states(w);
}

/*
 * ets_finish
 *		Fill *fit from the work after its last run (sum of squared errors
 *		sse, dim estimated smoothing parameters): parameters, final states
 *		(they stay in ctx), sigma^2 and AICc.
 */
static void
ets_finish(const EtsWork *w, int dim, double sse, DmfEts *fit)
{
	int			n = w->n,
				k,
				nstates,
				npar;

	memset(fit, 0, sizeof(*fit));
	fit->trend = w->trend;
	fit->nseas = w->nseas;
	fit->alpha = w->alpha;
	fit->beta = w->beta;
	fit->phi = w->phi;
	fit->level = w->level;
	fit->slope = w->slope;
	fit->n = n;
	nstates = 1 + (w->trend > 0 ? 1 : 0);
	for (k = 0; k < 2; k++)
	{
		fit->m[k] = w->m[k];
		fit->gamma[k] = w->gamma[k];
		fit->s[k] = w->s[k];
		fit->phase[k] = n % w->m[k];
		if (k < w->nseas)
			nstates += w->m[k] - 1;
	}
	npar = dim + nstates + 1;
	if (!(sse > 1e-300 * n))
		sse = 1e-300 * n;
	fit->sigma2 = sse / (n > dim + 1 ? n - dim : 1);
	fit->aicc = n * log(sse / n) + 2.0 * npar;
	if (n - npar - 1 > 0)
		fit->aicc += 2.0 * npar * (npar + 1) / (n - npar - 1);
}

/*
 * dmf_ets_fit
 *		Fit an additive ETS model with the given trend (0 none, 1 additive,
 *		2 damped) and seasonal periods m[0..nseas) (ascending, nseas <= 2,
 *		each at most n / 2) to y[0..n).  The fit, with final states
 *		allocated in ctx, goes to *fit.  from, if not NULL, is a fit of
 *		the same or another trend on the same data whose parameters start
 *		the search (with a smaller simplex: from a better place).  The
 *		search stops after maxeval passes over the data.
 */
void
dmf_ets_fit(DmfCtx *ctx, const double *y, int n, int trend,
			const int *m, int nseas, int kstep, const DmfEts *from,
			int maxeval,
			DmfEts *fit)
{
	EtsWork		w;
	double		x[5];
	int			dim = 0,
				k;
	double		sse,
				best;

	ets_work_init(ctx, &w, y, n, trend, m, nseas, kstep);
	{
		double		a0 = from ? from->alpha : 0.2;
		double		b0 = (from && from->trend > 0) ? from->beta / a0 : 0.1;
		double		p0 = (from && from->trend == 2) ? from->phi : 0.95;

		x[dim++] = logit((a0 - 0.0001) / 0.9998);
		if (trend > 0)
			x[dim++] = logit(b0);
		for (k = 0; k < nseas; k++)
			x[dim++] = logit(from ? from->gamma[k] / (1 - a0) : 0.05);
		if (trend == 2)
			x[dim++] = logit((p0 - 0.8) / 0.18);
	}

	/* the objective is -2 log-likelihood up to a constant: 1e-3 is nothing */
	best = dmf_nelder_mead(ctx, ets_objective, &w, x, dim,
						   from ? 0.5 : 1.0, maxeval, 1e-3);
	(void) best;
	ets_params(&w, x);
	sse = ets_run(&w);
	ets_finish(&w, dim, sse, fit);
}

/*
 * ets_apply
 *		The fit of y[0..n) with the smoothing parameters of par (trend and
 *		nseas included) instead of searched ones: the initial states of
 *		dmf_ets_fit, then one pass of the filter.
 */
static void
ets_apply(DmfCtx *ctx, const double *y, int n, const DmfParams *par,
		  const int *m, DmfEts *fit)
{
	EtsWork		w;
	double		sse;
	int			dim = 1 + par->nseas + (par->trend > 0) + (par->trend == 2);

	ets_work_init(ctx, &w, y, n, par->trend, m, par->nseas, 0);
	w.alpha = par->alpha;
	w.beta = par->trend ? par->beta : 0;
	w.gamma[0] = par->nseas > 0 ? par->gamma[0] : 0;
	w.gamma[1] = par->nseas > 1 ? par->gamma[1] : 0;
	w.phi = par->trend == 2 ? par->phi : (par->trend ? 1 : 0);
	sse = ets_run(&w);
	ets_finish(&w, dim, sse, fit);
}

/*
 * dmf_ets_select_or_apply
 *		The ETS fit of a method (hw, mstl): with in->params set for the same
 *		number of seasonal components (and n long enough for the trend),
 *		those parameters applied; otherwise dmf_ets_select.  Records the
 *		parameters used in in->fitted when the caller asked for them.
 */
void
dmf_ets_select_or_apply(DmfCtx *ctx, const DmfInput *in, const double *y,
						int n, const int *m, int nseas, int kstep,
						DmfEts *fit)
{
	const DmfParams *p = in->params;

	if (p && p->set && p->nseas == nseas && p->trend >= 0 && p->trend <= 2 &&
		(p->trend == 0 || n >= 8))
		ets_apply(ctx, y, n, p, m, fit);
	else
		dmf_ets_select(ctx, y, n, m, nseas, kstep, fit);
	if (in->fitted)
	{
		memset(in->fitted, 0, sizeof(*in->fitted));
		in->fitted->set = 1;
		in->fitted->trend = fit->trend;
		in->fitted->nseas = fit->nseas;
		in->fitted->alpha = fit->alpha;
		in->fitted->beta = fit->beta;
		in->fitted->gamma[0] = fit->gamma[0];
		in->fitted->gamma[1] = fit->gamma[1];
		in->fitted->phi = fit->phi;
	}
}

/*
 * dmf_ets_select
 *		Fit the trend variants the data support and keep the best by AICc;
 *		each variant starts from the previous one's parameters.
 */
/*
 * dmf_ets_select
 *		Choose the trend (none, additive, damped) by AICc.  The model without
 *		trend is fitted fully; the two trend variants get a short search
 *		each, started from the previous fit's parameters, which is enough to
 *		tell whether a trend pays for its extra parameters.  Only when one
 *		of them beats the trendless model are both refined (from where their
 *		short search stopped) before the final comparison, so a trend model
 *		never loses or wins only because its search was cut short.  Seasonal
 *		load usually has no trend worth its parameters, and then the cost is
 *		about two thirds of three full fits.
 */
#define ETS_FULL_EVALS(dim)		(15 + 15 * (dim))
#define ETS_SHORT_EVALS(dim)	(4 + 3 * (dim))
#define ETS_REFINE_EVALS(dim)	(4 + 6 * (dim))

void
dmf_ets_select(DmfCtx *ctx, const double *y, int n, const int *m, int nseas,
			   int kstep, DmfEts *best)
{
	int			trend;
	int			maxtrend = (n >= 8) ? 2 : 0;
	DmfEts		fits[3];

	for (trend = 0; trend <= maxtrend; trend++)
	{
		int			dim = 1 + nseas + (trend > 0) + (trend == 2);

		dmf_ets_fit(ctx, y, n, trend, m, nseas, kstep,
					trend ? &fits[trend - 1] : NULL,
					trend ? ETS_SHORT_EVALS(dim) : ETS_FULL_EVALS(dim),
					&fits[trend]);
		if (trend == 0 || fits[trend].aicc < best->aicc)
			*best = fits[trend];
	}
	if (best->trend > 0)
	{
		for (trend = 1; trend <= maxtrend; trend++)
		{
			int			dim = 2 + nseas + (trend == 2);
			DmfEts		fit;

			dmf_ets_fit(ctx, y, n, trend, m, nseas, kstep, &fits[trend],
						ETS_REFINE_EVALS(dim), &fit);
			if (fit.aicc < best->aicc)
				*best = fit;
		}
	}
}

/*
 * dmf_ets_forecast
 *		Point forecasts and forecast standard deviations for h steps of a
 *		fitted model (the analytic variance of the additive ETS class).
 */
void
dmf_ets_forecast(const DmfEts *fit, int h, double *mean, double *sd)
{
	double		phisum = 0,
				phik = 1,
				cvar = 0;
	int			i1 = fit->phase[0],
				i2 = fit->phase[1];
	int			k;

	for (k = 1; k <= h; k++)
	{
		double		c;

		if (fit->trend == 1)
			phisum = k;
		else if (fit->trend == 2)
		{
			phik *= fit->phi;
			phisum += phik;
		}
		mean[k - 1] = fit->level + phisum * fit->slope +
			fit->s[0][i1] + fit->s[1][i2];
		sd[k - 1] = sqrt(fit->sigma2 * (1.0 + cvar));
		/* c_k, used for the variance of step k + 1 */
		c = fit->alpha + fit->beta * phisum;
		if (fit->nseas > 0 && k % fit->m[0] == 0)
			c += fit->gamma[0];
		if (fit->nseas > 1 && k % fit->m[1] == 0)
			c += fit->gamma[1];
		cvar += c * c;
		if (++i1 == fit->m[0])
			i1 = 0;
		if (++i2 == fit->m[1])
			i2 = 0;
	}
}

/* dmf_ets_name: "ETS(A,Ad,A)"-style name of a fit, written to buf */
const char *
dmf_ets_name(const DmfEts *fit, char *buf, size_t len)
{
	static const char *const tn[] = {"N", "A", "Ad"};

	if (fit->nseas == 0)
		snprintf(buf, len, "ETS(A,%s,N)", tn[fit->trend]);
	else if (fit->nseas == 1)
		snprintf(buf, len, "ETS(A,%s,A) m=%d", tn[fit->trend], fit->m[0]);
	else
		snprintf(buf, len, "ETS(A,%s,A,A) m=%d,%d", tn[fit->trend],
				 fit->m[0], fit->m[1]);
	return buf;
}
