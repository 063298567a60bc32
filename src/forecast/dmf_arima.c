/*-------------------------------------------------------------------------
 *
 * dmf_arima.c
 *	  Seasonal ARIMA with automatic order selection.
 *
 * Following Hyndman and Khandakar's auto.arima:
 *	- D (0 or 1): seasonal differencing when the seasonal strength of an
 *	  STL-like decomposition exceeds 0.64 (R's default "seas" test);
 *	- d (0 to 2): KPSS level-stationarity test at 5 percent (critical value
 *	  0.463), repeated on the differenced series;
 *	- a stepwise search over (p, q, P, Q) and the constant, starting from
 *	  (2,2)(1,1), (0,0)(0,0), (1,0)(1,0), (0,1)(0,1), moving to the best
 *	  neighbour by AICc until none improves (p, q <= 5, P, Q <= 2, order sum
 *	  <= 5, at most MAX_MODELS models).
 * Each candidate is estimated by conditional sum of squares (Nelder-Mead
 * over a partial-autocorrelation parametrisation that keeps the AR part
 * stationary and the MA part invertible) and scored by AICc from its exact
 * Gaussian likelihood, computed with a Kalman filter on the state space form
 * of the ARMA model (initial covariance from the stationary Lyapunov
 * equation, filter switched to its steady state once the gain converges).
 * Models whose state is larger than MAX_EXACT_STATE (seasonal terms at
 * periods over about 20) are scored by the CSS likelihood instead during
 * the search, which is three times faster there for the same choices; the
 * chosen model's likelihood is always the exact one.
 * The chosen model is then refined by maximising the exact likelihood when
 * its state dimension is small.  The constant (mean or drift) is the mean
 * of the differenced series and not re-estimated.
 *
 * auto's candidate (dmf_method_arima_fast) searches more cheaply: two
 * starting models, (1,1)(0,1) and (2,0)(0,1), p, q <= 2, P, Q <= 1, at most
 * FAST_MODELS models, fewer Nelder-Mead steps, every model scored by its
 * CSS likelihood and no exact-likelihood refinement (the final state still
 * comes from the exact Kalman filter).  Given a DmfArimaHint that holds
 * orders already, it skips the search and the differencing tests and
 * estimates that model from the hint's estimates; without, it records its
 * choice there.
 *
 * Periods over MAX_SEASON (48 and 336 half-hourly, 288 and 2016 at five
 * minutes...) make seasonal ARIMA's state huge; like R's advice for such
 * data, those components are removed by the MSTL decomposition first and
 * continued by their last cycle, and ARIMA models the rest with the largest
 * remaining period.
 *
 * src/forecast/dmf_arima.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmf_internal.h"

#define MAX_SEASON	52			/* longest period modelled by seasonal ARIMA */
#define MAX_MODELS	40			/* models tried by the stepwise search */
#define MAX_ML_STATE 40			/* exact-ML refinement up to this state size */
#define FAST_MODELS	20			/* auto's cheap search: models tried, */
#define FAST_EVALS(np)	(20 + 25 * (np))	/* CSS evaluations per model */
#define FAST_ABSTOL	1e-2		/* log-likelihood: nothing for AICc */
#define WARM_EVALS(np)	(10 + 10 * (np))	/* and from a hint's estimates */
#define MAX_EXACT_STATE 20		/* search scored by exact likelihood up to
								 * this state size, by CSS above */

typedef struct ArimaSpec
{
	int			p,
				q,
				P,
				Q,
				cst;
} ArimaSpec;

typedef struct ArimaModel
{
	ArimaSpec	s;
	int			m;
	int			np;				/* number of ARMA coefficients */
	double		raw[16];		/* unconstrained parameters */
	double		sigma2;
	double		loglik;
	double		aicc;
	int			ok;
} ArimaModel;

typedef struct ArimaWork
{
	DmfCtx	   *ctx;
	const double *z;			/* differenced, demeaned series */
	int			nz;
	int			m;
	ArimaSpec	s;
	/* expanded polynomials: x_t = sum phi[i] x_{t-i} + e_t + sum theta[j] e_{t-j} */
	double	   *phi;			/* 1..pmax */
	double	   *theta;			/* 1..qmax */
	int			pmax;
	int			qmax;
	double	   *resid;
	/* Kalman scratch */
	double	   *P;
	double	   *Pn;
	double	   *A;
	double	   *B;
	double	   *a;
	double	   *an;
	int			fast;			/* the cheap search of auto (see above) */
	const double *warm;			/* start of the estimation, NULL: zeros */
} ArimaWork;

/* R's partrans: unconstrained to stationary AR coefficients */
static void
partrans(int p, const double *raw, double *out)
{
	double		work[8];
	int			j,
				k;

	for (j = 0; j < p; j++)
		out[j] = work[j] = tanh(raw[j]);
	for (j = 1; j < p; j++)
	{
		double		a = out[j];

		for (k = 0; k < j; k++)
			work[k] -= a * out[j - k - 1];
		memcpy(out, work, j * sizeof(double));
	}
}

/* expand the multiplicative polynomials of raw into w->phi and w->theta */
static void
arima_expand(ArimaWork *w, const double *raw)
{
	const ArimaSpec *s = &w->s;
	double		ar[8],
				ma[8],
				sar[8],
				sma[8];
	int			i,
				j,
				k = 0,
				m = w->m;

	partrans(s->p, raw + k, ar);
	k += s->p;
	partrans(s->q, raw + k, ma);
	k += s->q;
	partrans(s->P, raw + k, sar);
	k += s->P;
	partrans(s->Q, raw + k, sma);
	for (i = 0; i < s->q; i++)
		ma[i] = -ma[i];
	for (i = 0; i < s->Q; i++)
		sma[i] = -sma[i];

	w->pmax = s->p + m * s->P;
	w->qmax = s->q + m * s->Q;
	memset(w->phi, 0, (w->pmax + 1) * sizeof(double));
	memset(w->theta, 0, (w->qmax + 1) * sizeof(double));
	/* (1 - sum ar B^i)(1 - sum sar B^mj) */
	for (i = 0; i < s->p; i++)
		w->phi[i + 1] += ar[i];
	for (j = 0; j < s->P; j++)
	{
		w->phi[m * (j + 1)] += sar[j];
		for (i = 0; i < s->p; i++)
			w->phi[m * (j + 1) + i + 1] -= ar[i] * sar[j];
	}
	/* (1 + sum ma B^i)(1 + sum sma B^mj) */
	for (i = 0; i < s->q; i++)
		w->theta[i + 1] += ma[i];
	for (j = 0; j < s->Q; j++)
	{
		w->theta[m * (j + 1)] += sma[j];
		for (i = 0; i < s->q; i++)
			w->theta[m * (j + 1) + i + 1] += ma[i] * sma[j];
	}
}

/*
 * arima_css
 *		Conditional sum of squares objective (negative log-likelihood with
 *		sigma^2 concentrated out).  The residuals before the largest MA lag
 *		need a bounds check; the loop is split so that the rest, nearly all
 *		of the series, runs without it.
 */
static double
arima_css(const double *raw, void *arg)
{
	ArimaWork  *w = (ArimaWork *) arg;
	const double *z = w->z;
	double	   *e = w->resid;
	double		sse = 0,
				cp[16],
				cq[16];
	int			t,
				i,
				nc,
				tq;
	int			lagp[16],
				lagq[16],
				np = 0,
				nq = 0;

	arima_expand(w, raw);
	for (i = 1; i <= w->pmax; i++)
		if (w->phi[i] != 0 && np < 16)
		{
			cp[np] = w->phi[i];
			lagp[np++] = i;
		}
	for (i = 1; i <= w->qmax; i++)
		if (w->theta[i] != 0 && nq < 16)
		{
			cq[nq] = w->theta[i];
			lagq[nq++] = i;
		}
	nc = w->pmax;
	tq = nq > 0 ? lagq[nq - 1] : 0;
	if (tq < nc)
		tq = nc;
	for (t = 0; t < nc && t < w->nz; t++)
		e[t] = 0;
	for (t = nc; t < tq && t < w->nz; t++)
	{
		double		v = z[t];

		for (i = 0; i < np; i++)
			v -= cp[i] * z[t - lagp[i]];
		for (i = 0; i < nq; i++)
			if (t - lagq[i] >= 0)
				v -= cq[i] * e[t - lagq[i]];
		e[t] = v;
		sse += v * v;
	}
	for (t = tq; t < w->nz; t++)
	{
		double		v = z[t];

		for (i = 0; i < np; i++)
			v -= cp[i] * z[t - lagp[i]];
		for (i = 0; i < nq; i++)
			v -= cq[i] * e[t - lagq[i]];
		e[t] = v;
		sse += v * v;
	}
	if (!(sse > 0) || w->nz - nc <= 0)
		return HUGE_VAL;
	return 0.5 * (w->nz - nc) * log(sse / (w->nz - nc));
}

/*
 * arima_kalman
 *		Exact Gaussian log-likelihood of the current expanded model (sigma^2
 *		concentrated out), or -HUGE_VAL on numerical failure.  With a and
 *		sigma2 non-NULL, leaves the predicted state for the step after the
 *		data in w->a and the innovation variance in *sigma2.
 */
static double
arima_kalman(ArimaWork *w, double *sigma2)
{
	int			r = w->pmax > w->qmax + 1 ? w->pmax : w->qmax + 1;
	double	   *P = w->P,
			   *Pn = w->Pn,
			   *A = w->A,
			   *B = w->B,
			   *a = w->a,
			   *an = w->an;
	double	   *phi = w->phi,
			   *th = w->theta;
	double		ssq = 0,
				sumlog = 0,
				Fprev = -1;
	int			i,
				j,
				k,
				t,
				it,
				steady = 0;

#define PHI(i)	((i) < w->pmax ? phi[(i) + 1] : 0.0)
#define RV(i)	((i) == 0 ? 1.0 : ((i) <= w->qmax ? th[(i)] : 0.0))

	/* P0 = sum_k T^k R R' T'^k by doubling: P += A P A', A = A A */
	for (i = 0; i < r; i++)
		for (j = 0; j < r; j++)
		{
			P[i * r + j] = RV(i) * RV(j);
			A[i * r + j] = (j == 0 ? PHI(i) : 0) + (j == i + 1 ? 1 : 0);
		}
	for (it = 0; it < 40; it++)
	{
		double		delta = 0,
					scale = 0;

		dmf_tick(w->ctx);
		/* B = A P */
		for (i = 0; i < r; i++)
			for (j = 0; j < r; j++)
			{
				double		s = 0;

				for (k = 0; k < r; k++)
					s += A[i * r + k] * P[k * r + j];
				B[i * r + j] = s;
			}
		/* Pn = B A' */
		for (i = 0; i < r; i++)
			for (j = 0; j < r; j++)
			{
				double		s = 0;

				for (k = 0; k < r; k++)
					s += B[i * r + k] * A[j * r + k];
				Pn[i * r + j] = s;
				delta += fabs(s);
				scale += fabs(P[i * r + j]);
			}
		for (i = 0; i < r * r; i++)
			P[i] += Pn[i];
		if (!isfinite(delta) || delta > 1e12 * (scale + 1))
			return -HUGE_VAL;
		if (delta <= 1e-10 * scale)
			break;
		/* A = A A */
		for (i = 0; i < r; i++)
			for (j = 0; j < r; j++)
			{
				double		s = 0;

				for (k = 0; k < r; k++)
					s += A[i * r + k] * A[k * r + j];
				B[i * r + j] = s;
			}
		memcpy(A, B, r * r * sizeof(double));
	}

	memset(a, 0, r * sizeof(double));
	for (t = 0; t < w->nz; t++)
	{
		double		F = P[0],
					v = w->z[t] - a[0];

		if ((t & 63) == 0)
			dmf_tick(w->ctx);
		if (!(F > 1e-12))
			return -HUGE_VAL;
		ssq += v * v / F;
		sumlog += log(F);
		/* updated state, then predicted: an = T (a + P[:,0] v / F) */
		for (i = 0; i < r; i++)
			an[i] = a[i] + P[i * r] * v / F;
		for (i = 0; i < r; i++)
			a[i] = PHI(i) * an[0] + (i + 1 < r ? an[i + 1] : 0);
		if (steady)
			continue;
		/* Pu = P - P[:,0] P[0,:] / F, kept in Pn */
		for (i = 0; i < r; i++)
			for (j = 0; j < r; j++)
				Pn[i * r + j] = P[i * r + j] - P[i * r] * P[j] / F;
		/* B = T Pu; P = B T' + R R' */
		for (i = 0; i < r; i++)
			for (j = 0; j < r; j++)
				B[i * r + j] = PHI(i) * Pn[j] + (i + 1 < r ? Pn[(i + 1) * r + j] : 0);
		for (i = 0; i < r; i++)
			for (j = 0; j < r; j++)
				P[i * r + j] = B[i * r] * PHI(j) +
					(j + 1 < r ? B[i * r + j + 1] : 0) + RV(i) * RV(j);
		if (fabs(P[0] - Fprev) < 1e-9 * P[0])
			steady = 1;
		Fprev = P[0];
	}
#undef PHI
#undef RV
	if (!(ssq > 0))
		return -HUGE_VAL;
	if (sigma2)
		*sigma2 = ssq / w->nz;
	return -0.5 * (w->nz * (log(2 * 3.14159265358979323846 * ssq / w->nz) + 1) + sumlog);
}

static double
arima_negll(const double *raw, void *arg)
{
	ArimaWork  *w = (ArimaWork *) arg;
	double		ll;

	arima_expand(w, raw);
	ll = arima_kalman(w, NULL);
	return isfinite(ll) ? -ll : HUGE_VAL;
}

static int
state_dim(const ArimaSpec *s, int m)
{
	int			p = s->p + m * s->P,
				q = s->q + m * s->Q;

	return p > q + 1 ? p : q + 1;
}

/*
 * arima_fit
 *		Estimate one candidate on the differenced series w0 (nw values) by
 *		CSS and score it by exact-likelihood AICc.
 */
static void
arima_fit(ArimaWork *w, const double *w0, double *zbuf, int nw,
		  ArimaModel *mod)
{
	double		mu = mod->s.cst ? dmf_mean(w0, nw) : 0;
	int			t,
				k;
	double		ll,
				sig2 = 0;

	for (t = 0; t < nw; t++)
		zbuf[t] = w0[t] - mu;
	w->z = zbuf;
	w->nz = nw;
	w->s = mod->s;
	mod->np = mod->s.p + mod->s.q + mod->s.P + mod->s.Q;
	memset(mod->raw, 0, sizeof(mod->raw));
	if (w->warm)
		memcpy(mod->raw, w->warm, sizeof(mod->raw));
	if (mod->np > 0)
		dmf_nelder_mead(w->ctx, arima_css, w, mod->raw, mod->np,
						w->warm ? 0.1 : 0.5,
						w->warm ? WARM_EVALS(mod->np) :
						w->fast ? FAST_EVALS(mod->np) : 60 + 60 * mod->np,
						w->fast ? FAST_ABSTOL : 1e-4);
	arima_expand(w, mod->raw);
	if (w->fast || state_dim(&mod->s, w->m) > MAX_EXACT_STATE)
	{
		double		css = arima_css(mod->raw, w);
		int			neff = nw - w->pmax;

		sig2 = exp(2 * css / neff);
		ll = -0.5 * nw * (log(2 * 3.14159265358979323846 * sig2) + 1);
	}
	else
		ll = arima_kalman(w, &sig2);
	mod->ok = isfinite(ll);
	mod->loglik = ll;
	mod->sigma2 = sig2;
	k = mod->np + mod->s.cst + 1;
	mod->aicc = -2 * ll + 2.0 * k;
	if (nw - k - 1 > 0)
		mod->aicc += 2.0 * k * (k + 1) / (nw - k - 1);
	else
		mod->ok = 0;
	if (!mod->ok)
		mod->aicc = HUGE_VAL;
}

/*
 * KPSS level-stationarity statistic of x[0..n), with the lag truncation
 * trunc(3 sqrt(n) / 13) that R's forecast::ndiffs() uses (Hobijn et al.)
 */
static double
kpss_stat(const double *x, int n)
{
	double		mean = dmf_mean(x, n),
				s = 0,
				eta = 0,
				lrv = 0;
	int			l = (int) (3.0 * sqrt((double) n) / 13.0),
				t,
				j;

	for (t = 0; t < n; t++)
	{
		s += x[t] - mean;
		eta += s * s;
	}
	for (t = 0; t < n; t++)
		lrv += (x[t] - mean) * (x[t] - mean);
	for (j = 1; j <= l && j < n; j++)
	{
		double		g = 0;

		for (t = j; t < n; t++)
			g += (x[t] - mean) * (x[t - j] - mean);
		lrv += 2 * (1 - j / (l + 1.0)) * g;
	}
	lrv /= n;
	if (!(lrv > 0))
		return 0;
	return eta / ((double) n * n) / lrv;
}

/* difference x[0..*n) in place at lag; *n shrinks by lag */
static void
difference(double *x, int *n, int lag)
{
	int			t;

	for (t = 0; t + lag < *n; t++)
		x[t] = x[t + lag] - x[t];
	*n -= lag;
}

static int
spec_equal(const ArimaSpec *a, const ArimaSpec *b)
{
	return a->p == b->p && a->q == b->q && a->P == b->P && a->Q == b->Q &&
		a->cst == b->cst;
}

/*
 * dmf_arima_period
 *		The period seasonal ARIMA models itself on in: the longest of at
 *		most MAX_SEASON, 1 when none.  The cost of its Kalman filter grows
 *		with the square of it.
 */
int
dmf_arima_period(const DmfInput *in)
{
	int			i,
				m = 1;

	for (i = 0; i < in->nseasons; i++)
		if (in->seasons[i] <= MAX_SEASON)
			m = in->seasons[i];
	return m;
}

/*
 * arima_run
 *		The method; fast selects auto's cheap search.
 */
static void
arima_run(DmfCtx *ctx, const DmfInput *in, int fast, DmfFc *fc)
{
	DmfArimaHint *hint = fast ? in->arima_hint : NULL;
	int			reuse;
	int			n = in->n,
				h = in->h,
				m = 1,
				nlong = 0,
				d = 0,
				D = 0,
				nw,
				nmod = 0,
				best = -1,
				i,
				j,
				k,
				t,
				r,
				improved;
	double	   *x = dmf_dalloc(ctx, n);
	double	   *w0 = dmf_dalloc(ctx, n);
	double	   *zbuf = dmf_dalloc(ctx, n);
	double	  **seas = NULL;
	ArimaModel	mods[MAX_MODELS];
	ArimaWork	w;
	ArimaSpec	start[5];
	int			nstart = 0,
				maxmod = fast ? FAST_MODELS : MAX_MODELS,
				maxpq = fast ? 2 : 5,
				cstok;
	char		desc[DMF_MSG_LEN];
	size_t		dl;

	memcpy(x, in->y, n * sizeof(double));
	/* longest period ARIMA models itself; longer ones go through MSTL */
	for (i = 0; i < in->nseasons; i++)
	{
		if (in->seasons[i] <= MAX_SEASON)
			m = in->seasons[i];
		else
			nlong++;
	}
	if (nlong > 0)
	{
		double	   *adj = dmf_dalloc(ctx, n);

		seas = dmf_alloc(ctx, in->nseasons * sizeof(double *));
		for (i = 0; i < in->nseasons; i++)
			seas[i] = dmf_dalloc(ctx, n);
		dmf_mstl(ctx, in->y, n, in->seasons, in->nseasons, 0, seas, adj);
		for (i = 0; i < in->nseasons; i++)
			if (in->seasons[i] > MAX_SEASON)
				for (t = 0; t < n; t++)
					x[t] -= seas[i][t];
	}
	if (n < 10)
	{
		dmf_notice(ctx, "series too short for arima: falls back to naive");
		dmf_method_naive(ctx, in, fc);
		return;
	}

	/* differencing orders */
	memcpy(w0, x, n * sizeof(double));
	nw = n;
	reuse = hint && hint->set && hint->m == m;
	if (reuse)
	{
		D = (hint->D && n >= 3 * m) ? 1 : 0;
		if (D)
			difference(w0, &nw, m);
		for (d = 0; d < hint->d && nw > 12; d++)
			difference(w0, &nw, 1);
	}
	else
	{
		if (m > 1 && n >= 3 * m &&
			dmf_seasonal_strength(ctx, x, n, m) > 0.64)
		{
			D = 1;
			difference(w0, &nw, m);
		}
		while (d < 2 && nw > 12 && kpss_stat(w0, nw) > 0.463)
		{
			d++;
			difference(w0, &nw, 1);
		}
	}
	cstok = (d + D <= 1);

	/* workspace for the largest model */
	memset(&w, 0, sizeof(w));
	w.ctx = ctx;
	w.m = m;
	w.fast = fast;
	r = 5 + 2 * m + 1;
	w.phi = dmf_dalloc(ctx, r + 1);
	w.theta = dmf_dalloc(ctx, r + 1);
	w.resid = dmf_dalloc(ctx, n);
	w.P = dmf_dalloc(ctx, (size_t) r * r);
	w.Pn = dmf_dalloc(ctx, (size_t) r * r);
	w.A = dmf_dalloc(ctx, (size_t) r * r);
	w.B = dmf_dalloc(ctx, (size_t) r * r);
	w.a = dmf_dalloc(ctx, r);
	w.an = dmf_dalloc(ctx, r);

	/* stepwise search */
	memset(start, 0, sizeof(start));
	start[nstart++] = (ArimaSpec) {2, 2, m > 1, m > 1, cstok};
	start[nstart++] = (ArimaSpec) {0, 0, 0, 0, cstok};
	start[nstart++] = (ArimaSpec) {1, 0, m > 1, 0, cstok};
	start[nstart++] = (ArimaSpec) {0, 1, 0, m > 1, cstok};
	if (cstok)
		start[nstart++] = (ArimaSpec) {0, 0, 0, 0, 0};
	if (fast)
	{
		/* two starts near the usual choice on load: a seasonal MA term */
		start[0] = (ArimaSpec) {1, 1, 0, m > 1, cstok};
		start[1] = (ArimaSpec) {2, 0, 0, m > 1, cstok};
		nstart = 2;
	}
	if (reuse)
	{
		/* orders known: one model, estimated from the hint's estimates */
		start[0] = (ArimaSpec) {hint->p, hint->q, hint->P, hint->Q,
		hint->cst && cstok};
		nstart = 1;
		w.warm = hint->raw;
		maxmod = 1;
	}
	for (i = 0; i < nstart && nmod < maxmod; i++)
	{
		ArimaModel *mod = &mods[nmod++];

		memset(mod, 0, sizeof(*mod));
		mod->s = start[i];
		mod->m = m;
		if (state_dim(&mod->s, m) > r || mod->s.p + mod->s.q + mod->s.P + mod->s.Q >= nw - 3)
		{
			mod->aicc = HUGE_VAL;
			continue;
		}
		arima_fit(&w, w0, zbuf, nw, mod);
		if (mod->ok && (best < 0 || mod->aicc < mods[best].aicc))
			best = nmod - 1;
	}
	do
	{
		static const int moves[][4] = {
			{1, 0, 0, 0}, {-1, 0, 0, 0}, {0, 1, 0, 0}, {0, -1, 0, 0},
			{0, 0, 1, 0}, {0, 0, -1, 0}, {0, 0, 0, 1}, {0, 0, 0, -1},
			{1, 1, 0, 0}, {-1, -1, 0, 0}, {0, 0, 1, 1}, {0, 0, -1, -1},
			{1, -1, 0, 0}, {-1, 1, 0, 0}, {0, 0, 0, 0}
		};

		improved = 0;
		if (best < 0)
			break;
		for (j = 0; j < (int) (sizeof(moves) / sizeof(moves[0])) &&
			 nmod < maxmod; j++)
		{
			ArimaSpec	s = mods[best].s;
			ArimaModel *mod;
			int			seen = 0;

			s.p += moves[j][0];
			s.q += moves[j][1];
			s.P += moves[j][2];
			s.Q += moves[j][3];
			if (j == 14)
			{
				if (!cstok)
					continue;
				s.cst = !s.cst;
			}
			if (s.p < 0 || s.q < 0 || s.P < 0 || s.Q < 0 || s.p > maxpq ||
				s.q > maxpq || s.P > (m > 12 ? 1 : 2) || s.Q > (m > 12 ? 1 : 2) ||
				(m == 1 && (s.P || s.Q)) || s.p + s.q + s.P + s.Q > 5 ||
				s.p + s.q + s.P + s.Q >= nw - 3 || state_dim(&s, m) > r ||
				(fast && (s.P > 1 || s.Q > 1)))
				continue;
			for (k = 0; k < nmod; k++)
				if (spec_equal(&mods[k].s, &s))
					seen = 1;
			if (seen)
				continue;
			mod = &mods[nmod++];
			memset(mod, 0, sizeof(*mod));
			mod->s = s;
			mod->m = m;
			arima_fit(&w, w0, zbuf, nw, mod);
			if (mod->ok && mod->aicc < mods[best].aicc)
			{
				best = nmod - 1;
				improved = 1;
				break;
			}
		}
	} while (improved && nmod < maxmod);

	if (best < 0)
	{
		dmf_notice(ctx, "no ARIMA model could be fitted: falls back to naive");
		dmf_method_naive(ctx, in, fc);
		return;
	}

	if (hint && !hint->set)
	{
		hint->set = 1;
		hint->m = m;
		hint->d = d;
		hint->D = D;
		hint->p = mods[best].s.p;
		hint->q = mods[best].s.q;
		hint->P = mods[best].s.P;
		hint->Q = mods[best].s.Q;
		hint->cst = mods[best].s.cst;
		memcpy(hint->raw, mods[best].raw, sizeof(hint->raw));
	}

	/* refit the chosen model, refining by exact likelihood when small */
	{
		ArimaModel *mod = &mods[best];
		double		mu = mod->s.cst ? dmf_mean(w0, nw) : 0;
		double		sig2 = mod->sigma2;
		int			rr = state_dim(&mod->s, m);
		int			np;
		double	   *delta,
				   *full,
				   *psi,
				   *ext;
		int			ndelta = d + D * m,
					nfull;
		double		ll;

		for (t = 0; t < nw; t++)
			zbuf[t] = w0[t] - mu;
		w.z = zbuf;
		w.nz = nw;
		w.s = mod->s;
		np = mod->np;
		if (np > 0 && rr <= MAX_ML_STATE && !fast)
			dmf_nelder_mead(ctx, arima_negll, &w, mod->raw, np, 0.1,
							40 * np, 1e-4);
		arima_expand(&w, mod->raw);
		ll = arima_kalman(&w, &sig2);
		if (!isfinite(ll))
		{
			dmf_notice(ctx, "ARIMA likelihood failed: falls back to naive");
			dmf_method_naive(ctx, in, fc);
			return;
		}
		mod->sigma2 = sig2;

		/* forecasts of the differenced series from the final state */
		dmf_fc_init(ctx, fc, h);
		fc->sigma = sqrt(sig2);
		ext = dmf_dalloc(ctx, (size_t) n + h);
		memcpy(ext, x, n * sizeof(double));
		{
			double	   *a = w.a,
					   *an = w.an;
			int			rdim = w.pmax > w.qmax + 1 ? w.pmax : w.qmax + 1;

			for (k = 0; k < h; k++)
			{
				fc->mean[k] = a[0] + mu;
				memcpy(an, a, rdim * sizeof(double));
				for (i = 0; i < rdim; i++)
					a[i] = (i < w.pmax ? w.phi[i + 1] : 0) * an[0] +
						(i + 1 < rdim ? an[i + 1] : 0);
			}
		}
		/* differencing polynomial delta(B) = (1-B)^d (1-B^m)^D */
		delta = dmf_dalloc(ctx, ndelta + 1);
		delta[0] = 1;
		for (i = 0; i < d; i++)
			for (j = ndelta; j >= 1; j--)
				delta[j] -= delta[j - 1];
		for (i = 0; i < D; i++)
			for (j = ndelta; j >= m; j--)
				delta[j] -= delta[j - m];
		/* undo the differencing: y_t = w_t - sum_{k>=1} delta_k y_{t-k} */
		for (k = 0; k < h; k++)
		{
			double		v = fc->mean[k];

			for (j = 1; j <= ndelta; j++)
				v -= delta[j] * ext[n + k - j];
			ext[n + k] = v;
			fc->mean[k] = v;
		}
		/* psi weights of theta(B) / (phi(B) delta(B)) */
		nfull = w.pmax + ndelta;
		full = dmf_dalloc(ctx, nfull + 1);
		/* full[k] = a_k in y_t = sum a_k y_{t-k} + MA part */
		for (i = 0; i <= ndelta; i++)
		{
			if (i > 0)
				full[i] -= delta[i];
			for (j = 1; j <= w.pmax; j++)
				full[i + j] += w.phi[j] * delta[i];
		}
		psi = dmf_dalloc(ctx, h);
		psi[0] = 1;
		{
			double		cum = 0;

			for (k = 0; k < h; k++)
			{
				if (k > 0)
				{
					double		v = (k <= w.qmax) ? w.theta[k] : 0;

					for (j = 1; j <= k && j <= nfull; j++)
						v += full[j] * psi[k - j];
					psi[k] = v;
				}
				cum += psi[k] * psi[k];
				fc->sd[k] = sqrt(sig2 * cum);
			}
		}
		snprintf(desc, sizeof(desc), "ARIMA(%d,%d,%d)", mod->s.p, d, mod->s.q);
		dl = strlen(desc);
		if (m > 1)
			snprintf(desc + dl, sizeof(desc) - dl, "(%d,%d,%d)[%d]",
					 mod->s.P, D, mod->s.Q, m);
		dl = strlen(desc);
		if (mod->s.cst)
			snprintf(desc + dl, sizeof(desc) - dl, " with %s",
					 d + D == 0 ? "mean" : "drift");
	}

	/* long periods: add their last cycle back */
	if (nlong > 0)
	{
		for (i = 0; i < in->nseasons; i++)
		{
			int			p = in->seasons[i];

			if (p <= MAX_SEASON)
				continue;
			for (k = 0; k < h; k++)
				fc->mean[k] += seas[i][n - p + (k % p)];
			dl = strlen(desc);
			snprintf(desc + dl, sizeof(desc) - dl, " + season %d", p);
		}
	}
	snprintf(fc->desc, sizeof(fc->desc), "arima %s", desc);
}

void
dmf_method_arima(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	arima_run(ctx, in, 0, fc);
}

/*
 * dmf_method_arima_fast
 *		auto's ARIMA candidate: the same model family with a cheap search
 *		(see the file header).
 */
void
dmf_method_arima_fast(DmfCtx *ctx, const DmfInput *in, DmfFc *fc)
{
	arima_run(ctx, in, 1, fc);
}
