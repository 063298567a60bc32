/*-------------------------------------------------------------------------
 *
 * dmf_theta.c
 *	  The optimised Theta method on a non-seasonal series.
 *
 * Theta (Assimakopoulos and Nikolopoulos, 2000) forecasts with two "theta
 * lines" of the series x: the least-squares line L_t = A + B t (theta 0)
 * and Z_t = theta x_t + (1 - theta) L_t, which magnifies the local
 * curvature, extrapolated by simple exponential smoothing.  The forecast
 * is their combination with weights 1 - 1/theta and 1/theta:
 *		x^_{n+k} = (1/theta) l_n + (1 - 1/theta) L_{n+k},
 * l_n the smoothed level of Z.  With theta = 2 this is the classical
 * method, SES with drift (Hyndman and Billah, 2003).  The optimised Theta
 * method (Fiorucci et al., 2016) chooses theta (here between 1 and
 * THETA_MAX) and the smoothing constant alpha together, minimising the
 * in-sample one-step squared error of x^ by Nelder-Mead.
 *
 * The one-step error of x^ is e_t = (Z_t - l_{t-1}) / theta and the level
 * part of x^ moves by alpha e_t per step: the model is SES with a linear
 * drift, whose k-step forecast variance is sigma^2 (1 + (k - 1) alpha^2).
 *
 * The seasonal part is handled by the caller (dmf_methods.c: MSTL, the
 * seasonal components continued by their last cycle).
 *
 * src/forecast/dmf_theta.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmf_internal.h"

#define THETA_MAX	10.0		/* largest theta tried */
#define THETA_EVALS 80			/* Nelder-Mead evaluations, two parameters */
#define THETA_INIT	10			/* values averaged for the initial level */

typedef struct ThetaWork
{
	const double *x;
	int			n;
	double		A;				/* the least-squares line A + B t */
	double		B;
	double		alpha;			/* parameters and final level of the */
	double		theta;			/* last run */
	double		level;
} ThetaWork;

static double
bounded(double u, double lo, double hi)
{
	return lo + (hi - lo) / (1.0 + exp(-u));
}

static double
unbounded(double p, double lo, double hi)
{
	double		q = (p - lo) / (hi - lo);

	q = q < 1e-4 ? 1e-4 : (q > 1 - 1e-4 ? 1 - 1e-4 : q);
	return log(q / (1 - q));
}

/*
 * theta_sse
 *		Run the filter with the parameters of w; returns the sum of squared
 *		one-step errors and leaves the final level of Z in w->level.  The
 *		level starts at the mean of the first THETA_INIT values of Z, each
 *		moved back to t = -1 along the least-squares line.
 */
static double
theta_sse(ThetaWork *w)
{
	const double *x = w->x;
	double		th = w->theta,
				a = w->alpha,
				inv = 1.0 / th,
				A = w->A,
				B = w->B,
				l = 0,
				sse = 0;
	int			c = w->n < THETA_INIT ? w->n : THETA_INIT,
				t;

	/* Z at t = -1 from each of the first c values, moved along the line */
	for (t = 0; t < c; t++)
		l += th * (x[t] - B * (t + 1)) + (1 - th) * (A - B);
	l /= c;
	for (t = 0; t < w->n; t++)
	{
		double		line = A + B * t,
					e = x[t] - (inv * l + (1 - inv) * line);

		sse += e * e;
		l += a * th * e;
	}
	w->level = l;
	return sse;
}

static double
theta_objective(const double *u, void *arg)
{
	ThetaWork  *w = (ThetaWork *) arg;

	w->alpha = bounded(u[0], 1e-4, 1 - 1e-4);
	w->theta = bounded(u[1], 1.0, THETA_MAX);
	return theta_sse(w);
}

/*
 * dmf_theta_fit
 *		Fit the optimised Theta method to x[0..n) (n >= 2); the result goes
 *		to *fit.  Raises only through dmf_fail (memory, interrupt).
 */
void
dmf_theta_fit(DmfCtx *ctx, const double *x, int n, DmfTheta *fit)
{
	ThetaWork	w;
	double		u[2],
				sse,
				st = 0,
				sx = 0,
				stt = 0,
				stx = 0;
	int			t;

	memset(&w, 0, sizeof(w));
	w.x = x;
	w.n = n;
	for (t = 0; t < n; t++)
	{
		st += t;
		sx += x[t];
		stt += (double) t * t;
		stx += t * x[t];
	}
	w.B = (n * stt - st * st > 0) ? (n * stx - st * sx) / (n * stt - st * st) : 0;
	w.A = (sx - w.B * st) / n;

	/* start from the classical method: theta 2, alpha 0.5 */
	u[0] = unbounded(0.5, 1e-4, 1 - 1e-4);
	u[1] = unbounded(2.0, 1.0, THETA_MAX);
	dmf_nelder_mead(ctx, theta_objective, &w, u, 2, 1.0, THETA_EVALS, 1e-9 *
					(1 + dmf_var(x, n) * n));
	sse = theta_objective(u, &w);	/* the states of the best point */

	memset(fit, 0, sizeof(*fit));
	fit->alpha = w.alpha;
	fit->theta = w.theta;
	fit->A = w.A;
	fit->B = w.B;
	fit->level = w.level;
	fit->n = n;
	fit->sigma2 = sse / (n > 3 ? n - 2 : 1);
}

/*
 * dmf_theta_forecast
 *		Point forecasts and forecast standard deviations for h steps of a
 *		Theta fit (see the file header).
 */
void
dmf_theta_forecast(const DmfTheta *fit, int h, double *mean, double *sd)
{
	double		inv = 1.0 / fit->theta;
	int			k;

	for (k = 1; k <= h; k++)
	{
		mean[k - 1] = inv * fit->level +
			(1 - inv) * (fit->A + fit->B * (fit->n - 1 + k));
		sd[k - 1] = sqrt(fit->sigma2 * (1.0 + (k - 1) * fit->alpha * fit->alpha));
	}
}

/* dmf_theta_name: "Theta(theta=2.10, alpha=0.31)", written to buf */
const char *
dmf_theta_name(const DmfTheta *fit, char *buf, size_t len)
{
	snprintf(buf, len, "Theta(theta=%.2f, alpha=%.2f)", fit->theta, fit->alpha);
	return buf;
}
