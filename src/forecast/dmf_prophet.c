/*-------------------------------------------------------------------------
 *
 * dmf_prophet.c
 *	  A Prophet-style additive regression: piecewise-linear trend with
 *	  automatic changepoints and a sparsity prior, Fourier terms per season
 *	  and event regressors with windows, fitted by maximum a posteriori.
 *
 * Model (on y scaled by its largest absolute value, time t in [0, 1] over
 * the history):
 *	  y(t) = m + k t + sum_j delta_j (t - s_j)+ + sum_P fourier_P(t)
 *			 + sum_e beta_e x_e(t) + noise
 * with 25 potential changepoints s_j spread over the first 80 percent of
 * the history, Laplace(0, 0.05) priors on delta (Prophet's
 * changepoint_prior_scale), Normal(0, 10) priors on seasonal and event
 * coefficients and Normal(0, 5) on k and m.  The MAP estimate is found by
 * iteratively reweighted ridge regression (the L1 term as a quadratic
 * around the previous estimate) alternating with the noise variance; the
 * Gram matrix is built once, so a fit costs O(n p^2 + iterations p^3).
 *
 * Intervals: the noise variance plus the variance of future trend changes
 * that Prophet simulates (changepoints at the historical rate with Laplace
 * magnitudes of the fitted mean size), computed in closed form instead of
 * by sampling: Var = 2 b^2 rate dt^3 / 3 at a distance dt past the data.
 *
 * Events: one coefficient per event name and offset: the offsets before
 * the start (window_before), "during" (start to end) and after the end
 * (window_after).  dmf_event_effects() reuses this fit to give the other
 * methods the event effects as a regression adjustment.
 *
 * src/forecast/dmf_prophet.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmf_internal.h"

#define N_CHANGEPOINTS	25
#define CP_PRIOR		0.05
#define SEAS_PRIOR		10.0
#define TREND_PRIOR		5.0
#define MAX_FOURIER		10
#define MAX_EVENT_COLS	200

/* one regressor column per (distinct event name, offset) */
typedef struct EventCol
{
	int			first;			/* index of an occurrence with this name */
	int			offset;			/* <0 before, 0 during, >0 after */
} EventCol;

typedef struct ProphetDesign
{
	int			n;				/* history length */
	int			p;				/* number of columns */
	int			ncp;
	double	   *cp;				/* changepoint times */
	int			nseas;
	const int  *seasons;
	int			K[DMF_MAX_SEASONS];
	int			ncols_seas;
	int			nev;
	EventCol   *ev;
	const DmfEvent *events;
	int			nevents;
	unsigned char *act;			/* nev x ntot activity table */
	int			ntot;			/* n + h */
	int			col_cp;			/* first column of each block */
	int			col_seas;
	int			col_ev;
} ProphetDesign;

/* does event column c cover position i (0 <= i < n + h)? */
static int
event_active(const ProphetDesign *d, int c, int i)
{
	return d->act[(size_t) c * d->ntot + i];
}

/* mark the positions event column c covers */
static void
event_mark(DmfCtx *ctx, ProphetDesign *d, int c)
{
	const EventCol *col = &d->ev[c];
	const char *name = d->events[col->first].name;
	unsigned char *act = d->act + (size_t) c * d->ntot;
	int			e;

	for (e = 0; e < d->nevents; e++)
	{
		const DmfEvent *ev = &d->events[e];
		long		lo,
					hi,
					i;

		dmf_tick(ctx);
		if (strcmp(ev->name, name) != 0)
			continue;
		if (col->offset == 0)
		{
			lo = ev->start;
			hi = ev->end;
		}
		else
			lo = hi = (col->offset < 0) ? (long) ev->start + col->offset
				: (long) ev->end + col->offset;
		if (lo < 0)
			lo = 0;
		if (hi >= d->ntot)
			hi = d->ntot - 1;
		for (i = lo; i <= hi; i++)
			act[i] = 1;
	}
}

/* fill row x (p values) of the design for position i (may be >= n) */
static void
design_row(const ProphetDesign *d, int i, double *x)
{
	double		t = (d->n > 1) ? (double) i / (d->n - 1) : 0;
	int			j,
				k,
				c = 0;

	x[c++] = 1;
	x[c++] = t;
	for (j = 0; j < d->ncp; j++)
		x[c++] = t > d->cp[j] ? t - d->cp[j] : 0;
	for (j = 0; j < d->nseas; j++)
	{
		double		P = d->seasons[j];

		for (k = 1; k <= d->K[j]; k++)
		{
			double		a = 2 * 3.14159265358979323846 * k * fmod((double) i, P) / P;

			x[c++] = cos(a);
			x[c++] = sin(a);
		}
	}
	for (j = 0; j < d->nev; j++)
		x[c++] = event_active(d, j, i);
}

/* build the column layout; event columns only if active in the history */
static void
design_init(DmfCtx *ctx, const DmfInput *in, ProphetDesign *d)
{
	int			j,
				e,
				o;
	int			hist;

	memset(d, 0, sizeof(*d));
	d->n = in->n;
	hist = (int) floor(in->n * 0.8);
	d->ncp = N_CHANGEPOINTS;
	if (d->ncp > hist - 1)
		d->ncp = hist > 1 ? hist - 1 : 0;
	d->cp = dmf_dalloc(ctx, d->ncp + 1);
	for (j = 0; j < d->ncp; j++)
	{
		int			idx = (int) floor((double) (hist - 1) * (j + 1) / d->ncp + 0.5);

		d->cp[j] = (in->n > 1) ? (double) idx / (in->n - 1) : 0;
	}
	d->nseas = in->nseasons;
	d->seasons = in->seasons;
	for (j = 0; j < d->nseas; j++)
	{
		d->K[j] = in->seasons[j] / 2;
		if (d->K[j] > MAX_FOURIER)
			d->K[j] = MAX_FOURIER;
		d->ncols_seas += 2 * d->K[j];
	}
	d->events = in->events;
	d->nevents = in->nevents;
	d->ev = dmf_alloc(ctx, (MAX_EVENT_COLS + 1) * sizeof(EventCol));
	d->ntot = in->n + in->h;
	for (e = 0; e < in->nevents; e++)
	{
		const DmfEvent *ev = &in->events[e];
		int			seen = 0,
					f;

		for (f = 0; f < e; f++)
			if (strcmp(in->events[f].name, ev->name) == 0)
				seen = 1;
		if (seen)
			continue;
		for (o = -ev->window_before; o <= ev->window_after; o++)
		{
			EventCol	c;
			int			i,
						used = 0;

			dmf_tick(ctx);
			c.first = e;
			c.offset = o;
			/* keep a column only when the history shows its effect */
			for (f = e; f < in->nevents && !used; f++)
			{
				const DmfEvent *g = &in->events[f];

				if (strcmp(g->name, ev->name) != 0)
					continue;
				if (o == 0)
					used = g->start < in->n && g->end >= 0;
				else
				{
					i = (o < 0) ? g->start + o : g->end + o;
					used = i >= 0 && i < in->n;
				}
			}
			if (used && d->nev < MAX_EVENT_COLS)
				d->ev[d->nev++] = c;
			else if (used)
				dmf_notice(ctx, "more than %d event regressors: "
						   "the rest are ignored", MAX_EVENT_COLS);
		}
	}
	d->act = dmf_alloc(ctx, (size_t) d->nev * d->ntot + 1);
	for (j = 0; j < d->nev; j++)
		event_mark(ctx, d, j);
	d->col_cp = 2;
	d->col_seas = 2 + d->ncp;
	d->col_ev = d->col_seas + d->ncols_seas;
	d->p = d->col_ev + d->nev;
}

/*
 * prophet_fit
 *		MAP coefficients (beta, p values, on the scaled series) and the noise
 *		variance of the design d for y[0..n) scaled by 1 / scale.
 */
static void
prophet_fit(DmfCtx *ctx, const ProphetDesign *d, const double *y,
			double scale, double *beta, double *sigma2)
{
	int			n = d->n,
				p = d->p,
				i,
				j,
				k,
				it;
	double	   *xtx = dmf_dalloc(ctx, (size_t) p * p);
	double	   *xty = dmf_dalloc(ctx, p);
	double	   *a = dmf_dalloc(ctx, (size_t) p * p);
	double	   *row = dmf_dalloc(ctx, p);
	double	   *X = dmf_dalloc(ctx, (size_t) n * p);
	double		yy = 0,
				s2;

	for (i = 0; i < n; i++)
	{
		double		yi = y[i] / scale;

		design_row(d, i, X + (size_t) i * p);
		memcpy(row, X + (size_t) i * p, p * sizeof(double));
		for (j = 0; j < p; j++)
		{
			double		rj = row[j];

			if (rj == 0)
				continue;
			xty[j] += rj * yi;
			for (k = j; k < p; k++)
				xtx[j * p + k] += rj * row[k];
		}
		yy += yi * yi;
		if ((i & 1023) == 0)
			dmf_tick(ctx);
	}
	for (j = 0; j < p; j++)
		for (k = 0; k < j; k++)
			xtx[j * p + k] = xtx[k * p + j];

	for (j = 0; j < p; j++)
		beta[j] = 0;
	s2 = dmf_var(y, n) / (scale * scale) + 1e-12;
	for (it = 0; it < 25; it++)
	{
		double		rss = 0;

		dmf_tick(ctx);
		memcpy(a, xtx, (size_t) p * p * sizeof(double));
		for (j = 0; j < p; j++)
		{
			double		lam;

			if (j < 2)
				lam = s2 / (TREND_PRIOR * TREND_PRIOR);
			else if (j < d->col_seas)
				lam = s2 / (CP_PRIOR * (it == 0 ? CP_PRIOR : fabs(beta[j]) + 1e-6));
			else
				lam = s2 / (SEAS_PRIOR * SEAS_PRIOR);
			a[j * p + j] += lam + 1e-10;
			row[j] = xty[j];
		}
		if (dmf_solve_spd(a, row, p) != 0)
			break;
		memcpy(beta, row, p * sizeof(double));
		for (i = 0; i < n; i++)
		{
			double		f = 0,
						r;
			const double *x = X + (size_t) i * p;

			for (j = 0; j < p; j++)
				f += x[j] * beta[j];
			r = y[i] / scale - f;
			rss += r * r;
		}
		s2 = rss / n + 1e-12;
	}
	*sigma2 = s2;
}

static double
absmax_scale(const double *y, int n)
{
	double		s = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (fabs(y[i]) > s)
			s = fabs(y[i]);
	return s > 0 ? s : 1;
}

void
dmf_method_prophet(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	ProphetDesign d;
	double	   *beta,
			   *row;
	double		scale = absmax_scale(in->y, in->n),
				sigma2,
				b = 0,
				rate;
	int			j,
				k;

	if (in->n < 4)
	{
		dmf_notice(ctx, "series too short for prophet: falls back to naive");
		dmf_method_naive(ctx, in, fc);
		return;
	}
	design_init(ctx, in, &d);
	beta = dmf_dalloc(ctx, d.p);
	row = dmf_dalloc(ctx, d.p);
	prophet_fit(ctx, &d, in->y, scale, beta, &sigma2);

	for (j = 0; j < d.ncp; j++)
		b += fabs(beta[d.col_cp + j]);
	b = d.ncp ? b / d.ncp : 0;
	rate = d.ncp;				/* changepoints per unit of history time */

	dmf_fc_init(ctx, fc, in->h);
	fc->sigma = scale * sqrt(sigma2);
	for (k = 0; k < in->h; k++)
	{
		double		f = 0,
					dt = (in->n > 1) ? (double) (k + 1) / (in->n - 1) : 0;

		design_row(&d, in->n + k, row);
		for (j = 0; j < d.p; j++)
			f += row[j] * beta[j];
		fc->mean[k] = f * scale;
		fc->sd[k] = scale * sqrt(sigma2 + 2 * b * b * rate * dt * dt * dt / 3);
	}
	snprintf(fc->desc, sizeof(fc->desc),
			 "prophet changepoints=%d fourier=%d events=%d",
			 d.ncp, d.ncols_seas / 2, d.nev);
}

/*
 * dmf_event_effects
 *		Event effects estimated by the Prophet-style regression, for the
 *		methods without regressors: hist[0..n) gets the effect at each
 *		position of the history, fut[0..h) at each forecast step.  Returns
 *		the number of event columns the history could estimate.
 */
int
dmf_event_effects(DmfCtx *ctx, const DmfInput *in, double *hist, double *fut)
{
	ProphetDesign d;
	double	   *beta;
	double		scale = absmax_scale(in->y, in->n),
				sigma2;
	int			i,
				j;

	design_init(ctx, in, &d);
	beta = dmf_dalloc(ctx, d.p);
	if (d.nev > 0)
		prophet_fit(ctx, &d, in->y, scale, beta, &sigma2);
	for (i = 0; i < in->n + in->h; i++)
	{
		double		f = 0;

		for (j = 0; j < d.nev; j++)
			if (event_active(&d, j, i))
				f += beta[d.col_ev + j];
		if (i < in->n)
			hist[i] = f * scale;
		else
			fut[i - in->n] = f * scale;
	}
	return d.nev;
}
