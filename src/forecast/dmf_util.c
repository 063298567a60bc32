/*-------------------------------------------------------------------------
 *
 * dmf_util.c
 *	  Memory, error and numerical helpers of the forecasting core.
 *
 * Memory: every allocation is chained to the call's DmfCtx and freed by
 * dmf_ctx_release() (dmf_forecast.c); it comes from the caller's allocator
 * (DmfOptions.alloc, a PostgreSQL memory context in the extension) or from
 * malloc.  dmf_alloc() never returns NULL: it leaves through dmf_fail()
 * when the allocator fails (DMF_ENOMEM) or when the call would use more
 * than its cap (dmf_memory_limit(), DMF_EMEMLIMIT).  Nothing is freed
 * before the call ends, so the count is also the peak.
 *
 * src/forecast/dmf_util.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmf_internal.h"

/* header of each allocation; the union keeps the payload aligned */
struct DmfBlock
{
	union
	{
		DmfBlock   *next;
		double		d;
		long double ld;
		void	   *p;
	}			u;
};

/*
 * dmf_alloc
 *		Zeroed memory that lives until the end of the dmf_forecast() call.
 *		Never returns NULL: fails the call with DMF_ENOMEM instead.
 */
/* dmf_memory_limit: the cap on the working memory of the call */
size_t
dmf_memory_limit(const DmfCtx *ctx)
{
	if (ctx->opts && ctx->opts->max_memory > 0)
		return ctx->opts->max_memory;
	return DMF_MAX_MEMORY;
}

/*
 * dmf_memory_check
 *		Fail the call with DMF_EMEMLIMIT if nbytes more would exceed its cap.
 */
void
dmf_memory_check(DmfCtx *ctx, size_t nbytes)
{
	size_t		limit = dmf_memory_limit(ctx);

	if (nbytes > limit || ctx->allocated + nbytes > limit)
		dmf_fail(ctx, DMF_EMEMLIMIT,
				 "forecast needs more than %zu kB of working memory",
				 limit >> 10);
}

void *
dmf_alloc(DmfCtx *ctx, size_t nbytes)
{
	DmfBlock   *b;
	size_t		total;
	const DmfOptions *o = ctx->opts;

	dmf_memory_check(ctx, nbytes);
	total = sizeof(DmfBlock) + (nbytes ? nbytes : 1);
	if (o && o->alloc)
		b = o->alloc(o->alloc_arg, total);
	else
		b = malloc(total);
	if (b == NULL)
		dmf_fail(ctx, DMF_ENOMEM, "out of memory");
	memset(b, 0, total);
	b->u.next = ctx->blocks;
	ctx->blocks = b;
	ctx->allocated += nbytes;
	return (void *) (b + 1);
}

/* dmf_dalloc: n zeroed doubles, see dmf_alloc */
double *
dmf_dalloc(DmfCtx *ctx, size_t n)
{
	if (n > dmf_memory_limit(ctx) / sizeof(double))
		dmf_memory_check(ctx, (size_t) -1);
	return (double *) dmf_alloc(ctx, n * sizeof(double));
}

/* dmf_ctx_release: free every allocation of the context */
void
dmf_ctx_release(DmfCtx *ctx)
{
	const DmfOptions *o = ctx->opts;

	while (ctx->blocks)
	{
		DmfBlock   *next = ctx->blocks->u.next;

		if (o && o->free)
			o->free(o->alloc_arg, ctx->blocks);
		else if (!(o && o->alloc))
			free(ctx->blocks);
		ctx->blocks = next;
	}
	ctx->allocated = 0;
}

/*
 * dmf_fail
 *		Abandon the current dmf_forecast() call with a status and a message.
 *		Does not return.
 */
void
dmf_fail(DmfCtx *ctx, int status, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(ctx->msg, sizeof(ctx->msg), fmt, ap);
	va_end(ap);
	ctx->status = status;
	longjmp(ctx->jmp, 1);
}

/* dmf_notice: record a notice for the caller (extra ones are dropped) */
void
dmf_notice(DmfCtx *ctx, const char *fmt,...)
{
	va_list		ap;
	DmfResult  *res = ctx->res;
	int			i;
	char		buf[DMF_MSG_LEN];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* auto runs methods several times: report each fallback once */
	for (i = 0; i < res->nnotices; i++)
		if (strcmp(res->notices[i], buf) == 0)
			return;
	if (res->nnotices < DMF_MAX_NOTICES)
		memcpy(res->notices[res->nnotices++], buf, sizeof(buf));
}

/* dmf_tick: poll the interrupt callback every few calls */
void
dmf_tick(DmfCtx *ctx)
{
	if (ctx->opts && ctx->opts->interrupt && (++ctx->ticks & 15) == 0 &&
		ctx->opts->interrupt(ctx->opts->interrupt_arg))
		dmf_fail(ctx, DMF_EINTERRUPTED, "forecast interrupted");
}

/* dmf_fc_init: allocate the arrays of a forecast of h steps */
void
dmf_fc_init(DmfCtx *ctx, DmfFc *fc, int h)
{
	fc->h = h;
	fc->mean = dmf_dalloc(ctx, h);
	fc->sd = dmf_dalloc(ctx, h);
	fc->sigma = 0;
	fc->desc[0] = '\0';
}

double
dmf_mean(const double *x, int n)
{
	double		s = 0;
	int			i;

	if (n <= 0)
		return 0;
	for (i = 0; i < n; i++)
		s += x[i];
	return s / n;
}

/* dmf_var: population variance */
double
dmf_var(const double *x, int n)
{
	double		m = dmf_mean(x, n),
				s = 0;
	int			i;

	if (n <= 1)
		return 0;
	for (i = 0; i < n; i++)
		s += (x[i] - m) * (x[i] - m);
	return s / n;
}

/*
 * dmf_solve_spd
 *		Solve a x = b for a symmetric positive definite p x p matrix a (row
 *		major) by Cholesky; a is overwritten, b receives x.  Returns 0, or -1
 *		if a is not numerically positive definite.
 */
int
dmf_solve_spd(double *a, double *b, int p)
{
	int			i,
				j,
				k;

	for (j = 0; j < p; j++)
	{
		double		d = a[j * p + j];

		for (k = 0; k < j; k++)
			d -= a[j * p + k] * a[j * p + k];
		if (!(d > 1e-300))
			return -1;
		d = sqrt(d);
		a[j * p + j] = d;
		for (i = j + 1; i < p; i++)
		{
			double		s = a[i * p + j];

			for (k = 0; k < j; k++)
				s -= a[i * p + k] * a[j * p + k];
			a[i * p + j] = s / d;
		}
	}
	for (i = 0; i < p; i++)
	{
		double		s = b[i];

		for (k = 0; k < i; k++)
			s -= a[i * p + k] * b[k];
		b[i] = s / a[i * p + i];
	}
	for (i = p - 1; i >= 0; i--)
	{
		double		s = b[i];

		for (k = i + 1; k < p; k++)
			s -= a[k * p + i] * b[k];
		b[i] = s / a[i * p + i];
	}
	return 0;
}

/*
 * dmf_nelder_mead
 *		Minimise fn over R^dim from x (overwritten by the best point found)
 *		with an initial simplex of the given step, at most maxeval
 *		evaluations, stopping when the simplex values agree to abstol.
 *		Returns the minimum.  Non-finite values count as +inf.
 */
double
dmf_nelder_mead(DmfCtx *ctx, DmfObjFn fn, void *arg, double *x, int dim,
				double step, int maxeval, double abstol)
{
	int			np = dim + 1;
	double	   *pts = dmf_dalloc(ctx, (size_t) np * dim);
	double	   *val = dmf_dalloc(ctx, np);
	double	   *cen = dmf_dalloc(ctx, dim);
	double	   *xr = dmf_dalloc(ctx, dim);
	double	   *xe = dmf_dalloc(ctx, dim);
	int			neval = 0;
	int			i,
				j;

#define NM_EVAL(p, out) do { double v_ = fn((p), arg); neval++; \
		(out) = isfinite(v_) ? v_ : HUGE_VAL; } while (0)

	for (i = 0; i < np; i++)
	{
		memcpy(pts + i * dim, x, dim * sizeof(double));
		if (i > 0)
			pts[i * dim + i - 1] += step;
		NM_EVAL(pts + i * dim, val[i]);
	}
	while (neval < maxeval)
	{
		int			lo = 0,
					hi = 0,
					nh = 0;
		double		fr,
					fe;

		dmf_tick(ctx);
		for (i = 1; i < np; i++)
		{
			if (val[i] < val[lo])
				lo = i;
			if (val[i] > val[hi])
				hi = i;
		}
		nh = (hi == 0) ? 1 : 0;
		for (i = 0; i < np; i++)
			if (i != hi && val[i] > val[nh])
				nh = i;
		if (val[hi] - val[lo] <= abstol)
			break;
		for (j = 0; j < dim; j++)
		{
			double		s = 0;

			for (i = 0; i < np; i++)
				if (i != hi)
					s += pts[i * dim + j];
			cen[j] = s / dim;
		}
		for (j = 0; j < dim; j++)
			xr[j] = 2 * cen[j] - pts[hi * dim + j];
		NM_EVAL(xr, fr);
		if (fr < val[lo])
		{
			for (j = 0; j < dim; j++)
				xe[j] = 3 * cen[j] - 2 * pts[hi * dim + j];
			NM_EVAL(xe, fe);
			if (fe < fr)
			{
				memcpy(pts + hi * dim, xe, dim * sizeof(double));
				val[hi] = fe;
			}
			else
			{
				memcpy(pts + hi * dim, xr, dim * sizeof(double));
				val[hi] = fr;
			}
		}
		else if (fr < val[nh])
		{
			memcpy(pts + hi * dim, xr, dim * sizeof(double));
			val[hi] = fr;
		}
		else
		{
			/* contraction, outside or inside */
			int			outside = fr < val[hi];

			for (j = 0; j < dim; j++)
				xe[j] = outside ? cen[j] + 0.5 * (xr[j] - cen[j])
					: cen[j] + 0.5 * (pts[hi * dim + j] - cen[j]);
			NM_EVAL(xe, fe);
			if (fe < (outside ? fr : val[hi]))
			{
				memcpy(pts + hi * dim, xe, dim * sizeof(double));
				val[hi] = fe;
			}
			else
			{
				/* shrink towards the best point */
				for (i = 0; i < np; i++)
				{
					if (i == lo)
						continue;
					for (j = 0; j < dim; j++)
						pts[i * dim + j] = pts[lo * dim + j] +
							0.5 * (pts[i * dim + j] - pts[lo * dim + j]);
					NM_EVAL(pts + i * dim, val[i]);
				}
			}
		}
	}
#undef NM_EVAL
	j = 0;
	for (i = 1; i < np; i++)
		if (val[i] < val[j])
			j = i;
	memcpy(x, pts + j * dim, dim * sizeof(double));
	return val[j];
}
