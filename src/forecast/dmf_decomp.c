/*-------------------------------------------------------------------------
 *
 * dmf_decomp.c
 *	  Linear-time seasonal decomposition: an STL-like inner loop per period
 *	  and MSTL's iteration over several periods.
 *
 * STL (Cleveland et al., 1990) smooths with loess; here every smoother is a
 * running-sum one so the cost is O(n) per pass whatever the period:
 *	- cycle-subseries: local mean over a window of cycles (STL's default
 *	  seasonal degree is 0 as well);
 *	- low-pass and trend: local linear fit with uniform weights over a
 *	  window, so that the ends extrapolate the local slope instead of
 *	  flattening.
 * There is no robustness iteration.
 *
 * src/forecast/dmf_decomp.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <string.h>

#include "dmf_internal.h"

/*
 * local_linear
 *		out[t] = value at t of the least-squares line through x over a window
 *		of w consecutive points around t (moved inside [0, n) at the ends),
 *		for the points x[0], x[stride], ... (n of them).  O(n).
 *		cs and csi are scratch arrays of n + 1 doubles.
 */
static void
local_linear(const double *x, int n, int stride, int w, double *out,
			 int outstride, double *cs, double *csi)
{
	int			t;

	if (w > n)
		w = n;
	if (w < 1)
		w = 1;
	cs[0] = csi[0] = 0;
	for (t = 0; t < n; t++)
	{
		cs[t + 1] = cs[t] + x[(size_t) t * stride];
		csi[t + 1] = csi[t] + (double) t * x[(size_t) t * stride];
	}
	for (t = 0; t < n; t++)
	{
		int			lo = t - w / 2,
					hi;
		double		k,
					sx,
					sxi,
					ci,
					sii,
					slope;

		if (lo < 0)
			lo = 0;
		if (lo + w > n)
			lo = n - w;
		hi = lo + w;			/* exclusive */
		k = w;
		sx = cs[hi] - cs[lo];
		sxi = csi[hi] - csi[lo];
		ci = (lo + hi - 1) / 2.0;	/* centre of the window */
		/* sum of (i - ci)^2 over the window */
		sii = k * (k * k - 1) / 12.0;
		slope = (sii > 0) ? (sxi - ci * sx) / sii : 0;
		out[(size_t) t * outstride] = sx / k + slope * (t - ci);
	}
}

/*
 * local_mean
 *		Like local_linear, a uniform moving mean over w points (degree 0).
 */
static void
local_mean(const double *x, int n, int stride, int w, double *out,
		   int outstride, double *cs)
{
	int			t;

	if (w > n)
		w = n;
	if (w < 1)
		w = 1;
	cs[0] = 0;
	for (t = 0; t < n; t++)
		cs[t + 1] = cs[t] + x[(size_t) t * stride];
	for (t = 0; t < n; t++)
	{
		int			lo = t - w / 2;

		if (lo < 0)
			lo = 0;
		if (lo + w > n)
			lo = n - w;
		out[(size_t) t * outstride] = (cs[lo + w] - cs[lo]) / w;
	}
}

/*
 * stl_seasonal
 *		Seasonal component S (and trend T if not NULL) of x[0..n) for period
 *		m with a cycle-subseries window of ns cycles.
 */
static void
stl_seasonal(DmfCtx *ctx, const double *x, int n, int m, int ns,
			 double *S, double *T)
{
	double	   *trend = dmf_dalloc(ctx, n);
	double	   *detr = dmf_dalloc(ctx, n);
	double	   *C = dmf_dalloc(ctx, n);
	double	   *L = dmf_dalloc(ctx, n);
	double	   *cs = dmf_dalloc(ctx, n + 1);
	double	   *csi = dmf_dalloc(ctx, n + 1);
	int			nt,
				iter,
				j,
				t;

	nt = (int) ceil(1.5 * m / (1.0 - 1.5 / ns));
	if (nt % 2 == 0)
		nt++;
	for (iter = 0; iter < 2; iter++)
	{
		dmf_tick(ctx);
		for (t = 0; t < n; t++)
			detr[t] = x[t] - trend[t];
		/* cycle-subseries smoothing, one phase at a time */
		for (j = 0; j < m && j < n; j++)
		{
			int			len = (n - j + m - 1) / m;

			local_mean(detr + j, len, m, ns, C + j, m, cs);
		}
		/*
		 * low-pass filter of C: what of it is trend, not season.  A moving
		 * mean over one period: a line fitted to one period of a periodic
		 * signal has a spurious slope that would leak into the ends.
		 */
		local_mean(C, n, 1, m, L, 1, cs);
		for (t = 0; t < n; t++)
		{
			S[t] = C[t] - L[t];
			detr[t] = x[t] - S[t];
		}
		local_linear(detr, n, 1, nt, trend, 1, cs, csi);
	}
	if (T)
		memcpy(T, trend, n * sizeof(double));
}

/*
 * dmf_mstl
 *		Decompose y[0..n) into one seasonal component per period (seasonal[i]
 *		must point to n doubles; periods ascending) and the seasonally
 *		adjusted rest (adjusted, n doubles).  Two outer iterations, like
 *		R's mstl().  swin is the cycle-subseries window in cycles: 0 for
 *		R's default (7 + 4 i for the i-th period), else the same for all.
 */
void
dmf_mstl(DmfCtx *ctx, const double *y, int n, const int *seasons,
		 int nseasons, int swin, double **seasonal, double *adjusted)
{
	int			iter,
				i,
				t;

	memcpy(adjusted, y, n * sizeof(double));
	for (i = 0; i < nseasons; i++)
		memset(seasonal[i], 0, n * sizeof(double));
	for (iter = 0; iter < 2; iter++)
	{
		for (i = 0; i < nseasons; i++)
		{
			int			ns = swin > 0 ? swin : 7 + 4 * i;

			for (t = 0; t < n; t++)
				adjusted[t] += seasonal[i][t];
			stl_seasonal(ctx, adjusted, n, seasons[i], ns, seasonal[i], NULL);
			for (t = 0; t < n; t++)
				adjusted[t] -= seasonal[i][t];
		}
	}
}

/*
 * dmf_seasonal_strength
 *		Hyndman's seasonal strength max(0, 1 - var(R) / var(S + R)) of period
 *		m in y[0..n), from one STL-like decomposition.
 */
double
dmf_seasonal_strength(DmfCtx *ctx, const double *y, int n, int m)
{
	double	   *S = dmf_dalloc(ctx, n);
	double	   *T = dmf_dalloc(ctx, n);
	double	   *R = dmf_dalloc(ctx, n);
	double	   *SR = dmf_dalloc(ctx, n);
	double		vr,
				vsr;
	int			t;

	stl_seasonal(ctx, y, n, m, 7, S, T);
	for (t = 0; t < n; t++)
	{
		R[t] = y[t] - T[t] - S[t];
		SR[t] = y[t] - T[t];
	}
	vr = dmf_var(R, n);
	vsr = dmf_var(SR, n);
	if (!(vsr > 0))
		return 0;
	return fmax(0.0, 1.0 - vr / vsr);
}
