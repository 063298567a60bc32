/*-------------------------------------------------------------------------
 *
 * dmf_internal.h
 *	  Declarations shared by the files of the forecasting core.
 *
 * Every call of dmf_forecast() owns one DmfCtx.  All working memory comes
 * from the context's arena (dmf_alloc) and is released in one go when the
 * call ends, so an error or an interrupt can leave any function through
 * dmf_fail(), which longjmps back to dmf_forecast(), without leaking.
 *
 * A method fills a DmfFc: point forecasts and the standard deviation of the
 * forecast error for each step; the prediction intervals are derived from
 * them (normal quantiles) in one place.
 *
 * src/forecast/dmf_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DMF_INTERNAL_H
#define DMF_INTERNAL_H

#include <setjmp.h>
#include <stddef.h>

#include "forecast.h"

#if defined(__GNUC__)
#define DMF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define DMF_NORETURN __attribute__((noreturn))
#else
#define DMF_PRINTF(f, a)
#define DMF_NORETURN
#endif

#define DMF_Z80		1.2815515655446004
#define DMF_Z95		1.9599639845400540

typedef struct DmfBlock DmfBlock;

typedef struct DmfCtx
{
	jmp_buf		jmp;
	DmfBlock   *blocks;
	size_t		allocated;
	const DmfOptions *opts;
	DmfResult  *res;
	int			status;
	char		msg[DMF_MSG_LEN];
	unsigned	ticks;
} DmfCtx;

/* a forecast made by one method */
typedef struct DmfFc
{
	int			h;
	double	   *mean;
	double	   *sd;
	double		sigma;			/* one-step residual standard deviation */
	char		desc[DMF_MSG_LEN];
} DmfFc;

/*
 * Work auto shares between the fits of its ARIMA candidate: the first fit
 * (at the earliest backtest origin) searches the orders and records them
 * here with its estimates; the later fits (the other origins and the final
 * one) reuse the orders and start their estimation from those estimates.
 */
typedef struct DmfArimaHint
{
	int			set;
	int			m,				/* the period the orders were chosen for */
				d,
				D,
				p,
				q,
				P,
				Q,
				cst;
	double		raw[16];
} DmfArimaHint;

/* what a method gets: validated, finite data and usable seasons */
typedef struct DmfInput
{
	const double *y;
	int			n;
	const int  *seasons;		/* ascending, each at most n / 2 */
	int			nseasons;
	int			h;
	const DmfEvent *events;		/* positions relative to y[0] */
	int			nevents;
	DmfArimaHint *arima_hint;	/* NULL, or shared by auto's ARIMA fits */
	const DmfParams *params;	/* hw, mstl: apply these (NULL: estimate) */
	DmfParams  *fitted;			/* hw, mstl: where to put the parameters */
} DmfInput;

/* dmf_util.c */
extern void *dmf_alloc(DmfCtx *ctx, size_t nbytes);
extern size_t dmf_memory_limit(const DmfCtx *ctx);
extern void dmf_memory_check(DmfCtx *ctx, size_t nbytes);
extern double *dmf_dalloc(DmfCtx *ctx, size_t n);
extern void dmf_fail(DmfCtx *ctx, int status, const char *fmt,...)
			DMF_PRINTF(3, 4) DMF_NORETURN;
extern void dmf_ctx_release(DmfCtx *ctx);
extern void dmf_notice(DmfCtx *ctx, const char *fmt,...) DMF_PRINTF(2, 3);
extern void dmf_tick(DmfCtx *ctx);
extern void dmf_fc_init(DmfCtx *ctx, DmfFc *fc, int h);
extern double dmf_mean(const double *x, int n);
extern double dmf_var(const double *x, int n);
extern int	dmf_solve_spd(double *a, double *b, int p);

typedef double (*DmfObjFn) (const double *x, void *arg);
extern double dmf_nelder_mead(DmfCtx *ctx, DmfObjFn fn, void *arg,
							  double *x, int dim, double step,
							  int maxeval, double abstol);

/* dmf_decomp.c */
extern void dmf_mstl(DmfCtx *ctx, const double *y, int n,
					 const int *seasons, int nseasons, int swin,
					 double **seasonal, double *adjusted);
extern double dmf_seasonal_strength(DmfCtx *ctx, const double *y, int n,
									int m);

/* dmf_ets.c */
typedef struct DmfEts
{
	int			trend;			/* 0 none, 1 additive, 2 damped */
	int			nseas;
	int			m[2];
	double		alpha;
	double		beta;
	double		gamma[2];
	double		phi;
	double		level;			/* final states */
	double		slope;
	double	   *s[2];			/* circular, s[k][t % m] */
	int			phase[2];		/* index of the next step in s[k] */
	double		sigma2;
	double		aicc;
	int			n;
} DmfEts;

extern void dmf_ets_fit(DmfCtx *ctx, const double *y, int n, int trend,
						const int *m, int nseas, int kstep,
						const DmfEts *from, int maxeval, DmfEts *fit);
extern void dmf_ets_select(DmfCtx *ctx, const double *y, int n,
						   const int *m, int nseas, int kstep,
						   DmfEts *best);
extern void dmf_ets_select_or_apply(DmfCtx *ctx, const DmfInput *in,
									const double *y, int n, const int *m,
									int nseas, int kstep, DmfEts *fit);
extern void dmf_ets_eval(const double *y, int n, int trend, const int *m,
						 int nseas, const double *par, double l0, double b0,
						 double *const *s0, double *const *s, int kstep,
						 double *ring, double *sse, double *sse_plain,
						 double *ssek);
extern void dmf_ets_forecast(const DmfEts *fit, int h, double *mean,
							 double *sd);
extern const char *dmf_ets_name(const DmfEts *fit, char *buf, size_t len);

/* dmf_theta.c */
typedef struct DmfTheta
{
	double		alpha;
	double		theta;
	double		A;				/* the least-squares line A + B t */
	double		B;
	double		level;			/* final level of the theta line */
	double		sigma2;
	int			n;
} DmfTheta;

extern void dmf_theta_fit(DmfCtx *ctx, const double *x, int n, DmfTheta *fit);
extern void dmf_theta_forecast(const DmfTheta *fit, int h, double *mean,
							   double *sd);
extern const char *dmf_theta_name(const DmfTheta *fit, char *buf, size_t len);

/* dmf_arima.c */
extern int	dmf_arima_period(const DmfInput *in);

/* methods */
extern void dmf_method_naive(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_snaive(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_hw(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_hw_mle(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_mstl(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_mstl_fast(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_mstl_log(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_theta(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);

extern void dmf_method_snaive_short(DmfCtx *ctx, const DmfInput *in,
									DmfFc *fc);
extern void dmf_method_arima(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_arima_fast(DmfCtx *ctx, const DmfInput *in,
								  DmfFc *fc);
extern void dmf_method_prophet(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_method_auto(DmfCtx *ctx, const DmfInput *in, DmfFc *fc);
extern void dmf_auto_combine(const DmfFc *parts, int ncand, int members,
							 DmfFc *fc);

/* dmf_prophet.c */
extern int	dmf_event_effects(DmfCtx *ctx, const DmfInput *in, double *hist,
							  double *fut);

#endif							/* DMF_INTERNAL_H */
