/*-------------------------------------------------------------------------
 *
 * test_internal.c
 *	  Unit tests of the forecasting core's internal paths: auto's
 *	  candidates that have no public method name (snaive_short, mstl_fast,
 *	  mstl_log, arima_fast and its reuse of orders), auto's trimmed-mean
 *	  combination, hw's choice of fit by the nesting of its periods, the
 *	  allocator hook and the memory cap.  Known answers come from independent computations in this
 *	  file (direct indexing, the optimal forecast of the simulated model).
 *
 * Included by test_forecast.c (one program, one pass/fail count).
 *
 * test/unit/test_internal.c
 *
 *-------------------------------------------------------------------------
 */
#include "dmf_internal.h"

typedef void (*InternalFn) (DmfCtx *ctx, const DmfInput *in, DmfFc *fc);

/*
 * run_internal
 *		Call an internal method on y with the given seasons and horizon,
 *		copying the point forecasts to mean (h values) and its description
 *		to desc.  hint may be NULL.  Returns 0, or the failure status.
 */
static int
run_internal(InternalFn fn, const double *y, int n, const int *seasons,
			 int nseasons, int h, DmfArimaHint *hint, double *mean,
			 char *desc, size_t desclen)
{
	DmfCtx		ctx;
	DmfResult	res;
	DmfInput	in;
	DmfFc		f;

	memset(&ctx, 0, sizeof(ctx));
	memset(&res, 0, sizeof(res));
	memset(&in, 0, sizeof(in));
	ctx.res = &res;
	if (setjmp(ctx.jmp) != 0)
	{
		dmf_ctx_release(&ctx);
		return ctx.status ? ctx.status : -1;
	}
	in.y = y;
	in.n = n;
	in.seasons = seasons;
	in.nseasons = nseasons;
	in.h = h;
	in.arima_hint = hint;
	fn(&ctx, &in, &f);
	memcpy(mean, f.mean, h * sizeof(double));
	if (desc)
		snprintf(desc, desclen, "%s", f.desc);
	dmf_ctx_release(&ctx);
	return 0;
}

/* snaive_short repeats the last cycle of the shortest period */
static void
test_snaive_short(void)
{
	static const int s[] = {3, 6};
	double		y[30],
				mean[7];
	int			t,
				k,
				ok = 1;

	for (t = 0; t < 30; t++)
		y[t] = t * t % 11;
	CHECK(run_internal(dmf_method_snaive_short, y, 30, s, 2, 7, NULL, mean,
					   NULL, 0) == 0, "snaive_short failed");
	for (k = 0; k < 7; k++)
		ok &= mean[k] == y[27 + k % 3];
	CHECK(ok, "snaive_short does not repeat the last 3 values");
}

/*
 * mstl_fast follows a daily profile that moves: a peak that comes one step
 * earlier every cycle.  The forecast of the next cycle, against its truth,
 * must be better than mstl's (seven-cycle windows), and on a profile that
 * does not move both must be close to exact.
 */
static double
moving_peak(int t, int drift)
{
	int			day = t / 24;
	double		phase = (t % 24) + (drift ? 0.7 * day : 0);

	return 100 + 30 * exp(-pow(fmod(phase, 24.0) - 12, 2) / 8) + 0.02 * t;
}

static void
test_mstl_fast(void)
{
	static const int s[] = {24};
	int			n = 24 * 20,
				h = 24,
				t,
				k,
				drift;

	for (drift = 0; drift <= 1; drift++)
	{
		double		y[24 * 21],
					fast[24],
					slow[24];
		double		efast = 0,
					eslow = 0;

		for (t = 0; t < n + h; t++)
			y[t] = moving_peak(t, drift);
		CHECK(run_internal(dmf_method_mstl_fast, y, n, s, 1, h, NULL, fast,
						   NULL, 0) == 0 &&
			  run_internal(dmf_method_mstl, y, n, s, 1, h, NULL, slow,
						   NULL, 0) == 0, "mstl / mstl_fast failed");
		for (k = 0; k < h; k++)
		{
			efast += fabs(fast[k] - y[n + k]) / h;
			eslow += fabs(slow[k] - y[n + k]) / h;
		}
		if (drift)
			CHECK(efast < 0.7 * eslow,
				  "mstl_fast %.3f not better than mstl %.3f on a moving peak",
				  efast, eslow);
		else
			CHECK(efast < 0.5 && eslow < 0.5,
				  "fixed profile: mstl_fast %.3f, mstl %.3f off", efast, eslow);
	}
}

/* a standard normal from a fixed linear congruential generator */
static double
lcg_normal(unsigned long *state)
{
	double		u1,
				u2;

	*state = *state * 6364136223846793005UL + 1442695040888963407UL;
	u1 = ((*state >> 11) + 1.0) / 9007199254740994.0;
	*state = *state * 6364136223846793005UL + 1442695040888963407UL;
	u2 = ((*state >> 11) + 1.0) / 9007199254740994.0;
	return sqrt(-2 * log(u1)) * cos(2 * 3.14159265358979323846 * u2);
}

/*
 * arima_fast on a simulated seasonal ARIMA(1,0,0)(0,1,0)[24] with phi 0.7:
 * its forecasts must be close to the model's optimal forecast, computed here
 * from the true parameter (y_t = y_{t-24} + 0.7 (y_{t-1} - y_{t-25}));
 * a second fit with the recorded hint must reuse the orders.
 */
static void
test_arima_fast(void)
{
	static const int s[] = {24};
	int			n = 24 * 30,
				h = 24,
				t,
				k;
	double		y[24 * 30 + 24],
				mean[24],
				mean2[24],
				opt[24 * 31],
				e = 0,
				scale = 0;
	unsigned long st = 42;
	char		d1[DMF_MSG_LEN],
				d2[DMF_MSG_LEN];
	DmfArimaHint hint;

	for (t = 0; t < 25; t++)
		y[t] = 50 + 10 * sin(2 * 3.14159265358979 * t / 24);
	for (t = 25; t < n; t++)
		y[t] = y[t - 24] + 0.7 * (y[t - 1] - y[t - 25]) + lcg_normal(&st);
	memcpy(opt, y, n * sizeof(double));
	for (k = 0; k < h; k++)
		opt[n + k] = opt[n + k - 24] + 0.7 * (opt[n + k - 1] - opt[n + k - 25]);
	for (t = 24; t < n; t++)
		scale += fabs(y[t] - y[t - 24]) / (n - 24);

	memset(&hint, 0, sizeof(hint));
	CHECK(run_internal(dmf_method_arima_fast, y, n, s, 1, h, &hint, mean,
					   d1, sizeof(d1)) == 0, "arima_fast failed");
	for (k = 0; k < h; k++)
		e += fabs(mean[k] - opt[n + k]) / h;
	CHECK(e / scale < 0.25, "arima_fast %.3f (scaled) from the optimal forecast (%s)",
		  e / scale, d1);
	CHECK(hint.set && hint.m == 24 && hint.D == 1,
		  "arima_fast did not record its orders (set %d, m %d, D %d)",
		  hint.set, hint.m, hint.D);
	CHECK(run_internal(dmf_method_arima_fast, y, n, s, 1, h, &hint, mean2,
					   d2, sizeof(d2)) == 0 && strcmp(d1, d2) == 0,
		  "arima_fast with a hint chose another model: %s, then %s", d1, d2);
	e = 0;
	for (k = 0; k < h; k++)
		e += fabs(mean2[k] - mean[k]) / h;
	CHECK(e / scale < 0.05, "arima_fast refit from its hint moved by %.3f", e / scale);
}

/* allocator hook that counts */
typedef struct CountingAlloc
{
	long		nalloc;
	long		nfree;
} CountingAlloc;

static void *
counting_alloc(void *arg, size_t size)
{
	((CountingAlloc *) arg)->nalloc++;
	return malloc(size);
}

static void
counting_free(void *arg, void *ptr)
{
	((CountingAlloc *) arg)->nfree++;
	free(ptr);
}

/*
 * The allocator hook gets every block and sees each freed, on success, on
 * reaching the cap and on an interrupt; the result is the same as with
 * malloc; the cap fails the call with DMF_EMEMLIMIT.
 */
static void
test_allocator_and_cap(void)
{
	static const int s[] = {24, 168};
	int			n = 24 * 40,
				t,
				k,
				same = 1;
	double	   *y = malloc(n * sizeof(double));
	DmfOptions	opts;
	DmfResult	a,
				b;
	CountingAlloc cnt;
	char		err[DMF_MSG_LEN];
	DmfStatus	st;

	for (t = 0; t < n; t++)
		y[t] = syn_value(t);
	memset(&opts, 0, sizeof(opts));
	memset(&cnt, 0, sizeof(cnt));
	opts.alloc = counting_alloc;
	opts.free = counting_free;
	opts.alloc_arg = &cnt;
	st = dmf_forecast(y, n, s, 2, 48, DMF_AUTO, NULL, 0, &opts, &a, err, sizeof(err));
	CHECK(st == DMF_OK && cnt.nalloc > 10 && cnt.nalloc == cnt.nfree,
		  "hook: status %d, %ld blocks allocated, %ld freed", st, cnt.nalloc, cnt.nfree);
	if (st == DMF_OK && fc(y, n, s, 2, 48, "auto", NULL, 0, &b) == DMF_OK)
	{
		for (k = 0; k < 48; k++)
			same &= a.yhat[k] == b.yhat[k] && a.hi95[k] == b.hi95[k];
		CHECK(same && strcmp(a.model, b.model) == 0,
			  "hook and malloc give different forecasts");
		dmf_result_free(&b);
		/* a cap just under what the call used fails it, and frees all */
		memset(&cnt, 0, sizeof(cnt));
		opts.max_memory = a.work_bytes / 2;
		st = dmf_forecast(y, n, s, 2, 48, DMF_AUTO, NULL, 0, &opts, &b, err, sizeof(err));
		CHECK(st == DMF_EMEMLIMIT && strstr(err, "working memory") &&
			  cnt.nalloc > 0 && cnt.nalloc == cnt.nfree && b.yhat == NULL,
			  "cap: status %d (%s), %ld allocated, %ld freed", st, err,
			  cnt.nalloc, cnt.nfree);
		/* the cap counts the result's arrays too */
		opts.max_memory = 4096;
		st = dmf_forecast(y, n, NULL, 0, 100000, DMF_NAIVE, NULL, 0, &opts, &b,
						  err, sizeof(err));
		CHECK(st == DMF_EMEMLIMIT, "cap on the result: status %d", st);
		dmf_result_free(&a);
	}
	/* an interrupt frees everything too */
	memset(&cnt, 0, sizeof(cnt));
	opts.max_memory = 0;
	opts.interrupt = always_interrupt;
	st = dmf_forecast(y, n, s, 2, 48, DMF_AUTO, NULL, 0, &opts, &b, err, sizeof(err));
	CHECK(st == DMF_EINTERRUPTED && cnt.nalloc == cnt.nfree,
		  "interrupt: status %d, %ld allocated, %ld freed", st, cnt.nalloc, cnt.nfree);
	free(y);
}

/*
 * The event setup polls the interrupt callback: with 300 event names and
 * windows of 300 positions, the callback (which never stops the call) is
 * polled many times before the fit starts; counted by a callback that
 * records the polls and a method (naive) whose own fit never polls.
 */
static int	npolls;

static int
count_polls(void *arg)
{
	(void) arg;
	npolls++;
	return 0;
}

static void
test_event_setup_interruptible(void)
{
	int			n = 4000,
				ne = 300,
				t;
	double	   *y = malloc(n * sizeof(double));
	DmfEvent   *ev = malloc(ne * sizeof(DmfEvent));
	char	  (*names)[16] = malloc(ne * sizeof(*names));
	DmfOptions	opts;
	DmfResult	res;
	char		err[DMF_MSG_LEN];
	DmfStatus	st;

	for (t = 0; t < n; t++)
		y[t] = 10 + sin(t / 3.0) + t % 7;
	for (t = 0; t < ne; t++)
	{
		snprintf(names[t], sizeof(names[t]), "e%d", t);
		ev[t].name = names[t];
		ev[t].start = 10 * t + 5;
		ev[t].end = ev[t].start + 2;
		ev[t].window_before = ev[t].window_after = 300;
	}
	memset(&opts, 0, sizeof(opts));
	opts.interrupt = count_polls;
	npolls = 0;
	st = dmf_forecast(y, n, NULL, 0, 10, DMF_NAIVE, ev, ne, &opts, &res, err, sizeof(err));
	CHECK(st == DMF_OK, "events: %s", err);
	/* 300 names x 601 offsets, one poll every 16 ticks: > 10,000 polls */
	CHECK(npolls > 10000, "event setup polled the callback %d times", npolls);
	if (st == DMF_OK)
		dmf_result_free(&res);
	free(y);
	free(ev);
	free(names);
}

/*
 * The k-step fit of hw (dmf_ets_fit with kstep): its filter must give the
 * same one-step errors as the two-steps-at-a-time filter, and its k-step
 * sum of squares must equal a brute-force one computed here from the full
 * history of states (every origin's own forecast k steps ahead).
 */
static void
test_ets_kstep(void)
{
	enum
	{
		N = 200, M1 = 6, M2 = 21
	};
	static const int m[2] = {M1, M2};
	double		y[N],
				s0a[M1],
				s0b[M2],
				sa[M1],
				sb[M2];
	double	   *s0[2] = {s0a, s0b},
			   *s[2] = {sa, sb};
	/* history of the states after each observation */
	static double L[N],
				B[N],
				S1[N][M1],
				S2[N][M2];
	const double par[5] = {0.3, 0.05, 0.2, 0.1, 0.9};
	unsigned long st = 7;
	int			trend,
				kstep = 3,
				t,
				j;

	for (t = 0; t < N; t++)
		y[t] = 10 + 3 * sin(2 * 3.14159265358979 * t / M1) +
			2 * cos(2 * 3.14159265358979 * t / M2) + 0.05 * t + 0.5 * lcg_normal(&st);
	for (j = 0; j < M1; j++)
		s0a[j] = 3 * sin(2 * 3.14159265358979 * j / M1) + 0.1;
	for (j = 0; j < M2; j++)
		s0b[j] = 2 * cos(2 * 3.14159265358979 * j / M2) - 0.1;
	for (trend = 0; trend <= 2; trend++)
	{
		double		phi = trend == 2 ? par[4] : (trend ? 1 : 0),
					beta = trend ? par[1] : 0,
					l = 10,
					b = trend ? 0.04 : 0,
					s1[M1],
					s2[M2],
					sse = 0,
					ssek = 0,
					got,
					got_plain,
					gotk;

		memcpy(s1, s0a, sizeof(s1));
		memcpy(s2, s0b, sizeof(s2));
		for (t = 0; t < N; t++)
		{
			double		e = y[t] - (l + phi * b) - s1[t % M1] - s2[t % M2];

			sse += e * e;
			l = l + phi * b + par[0] * e;
			b = phi * b + beta * e;
			s1[t % M1] += par[2] * e;
			s2[t % M2] += par[3] * e;
			L[t] = l;
			B[t] = b;
			memcpy(S1[t], s1, sizeof(s1));
			memcpy(S2[t], s2, sizeof(s2));
		}
		for (t = kstep; t < N; t++)
		{
			int			u = t - kstep;
			double		damp = 0,
						pw = 1,
						f;

			for (j = 1; j <= kstep && trend; j++)
			{
				pw *= phi;
				damp += pw;
			}
			f = L[u] + damp * B[u] + S1[u][t % M1] + S2[u][t % M2];
			ssek += (y[t] - f) * (y[t] - f);
		}
		double		ring[2 * 3];

		dmf_ets_eval(y, N, trend, m, 2, par, 10, trend ? 0.04 : 0, s0, s,
					 kstep, ring, &got, &got_plain, &gotk);
		CHECK(fabs(got - sse) < 1e-8 * sse && fabs(got_plain - sse) < 1e-8 * sse,
			  "ets trend %d: one-step SSE %.10g / %.10g, brute force %.10g",
			  trend, got, got_plain, sse);
		CHECK(fabs(gotk - ssek) < 1e-8 * ssek,
			  "ets trend %d: %d-step SSE %.10g, brute force %.10g",
			  trend, kstep, gotk, ssek);
	}
}

/*
 * auto's combination: the mean of one or two members, the trimmed mean of
 * three or more (the highest and the lowest value of each step out), the
 * mean of every member's standard deviation.
 */
static void
test_auto_combine(void)
{
	static double m[4][2] = {{1, 10}, {2, 40}, {6, 20}, {100, 30}},
				s[4][2] = {{1, 2}, {3, 4}, {5, 6}, {7, 8}};
	DmfFc		parts[4],
				out;
	double		mean[2],
				sd[2];
	int			c;

	for (c = 0; c < 4; c++)
	{
		parts[c].h = 2;
		parts[c].mean = m[c];
		parts[c].sd = s[c];
		parts[c].sigma = c + 1;
	}
	out.h = 2;
	out.mean = mean;
	out.sd = sd;

	/* members 0 and 2: the mean */
	out.sigma = 0;
	dmf_auto_combine(parts, 4, 0x5, &out);
	CHECK(mean[0] == 3.5 && mean[1] == 15 && sd[0] == 3 && sd[1] == 4 &&
		  out.sigma == 2, "combination of two: %g %g, sd %g %g, sigma %g",
		  mean[0], mean[1], sd[0], sd[1], out.sigma);
	/* all four: step 1 keeps 2 and 6, step 2 keeps 20 and 30 */
	out.sigma = 0;
	dmf_auto_combine(parts, 4, 0xf, &out);
	CHECK(mean[0] == 4 && mean[1] == 25 && sd[0] == 4 && sd[1] == 5 &&
		  out.sigma == 2.5, "trimmed combination of four: %g %g, sd %g %g, sigma %g",
		  mean[0], mean[1], sd[0], sd[1], out.sigma);
	/* three: the median */
	out.sigma = 0;
	dmf_auto_combine(parts, 4, 0xe, &out);
	CHECK(mean[0] == 6 && mean[1] == 30,
		  "trimmed combination of three: %g %g", mean[0], mean[1]);
}

/*
 * hw_is_mle
 *		1 if hw's forecasts of y with the two seasons equal those of the
 *		maximum-likelihood fit, 0 if not, -1 if a fit failed.
 */
static int
hw_is_mle(const double *y, int n, const int *seasons)
{
	double		a[14],
				b[14];
	int			k,
				same = 1;

	if (run_internal(dmf_method_hw, y, n, seasons, 2, 14, NULL, a, NULL, 0) != 0 ||
		run_internal(dmf_method_hw_mle, y, n, seasons, 2, 14, NULL, b, NULL, 0) != 0)
		return -1;
	for (k = 0; k < 14; k++)
		same &= a[k] == b[k];
	return same;
}

/*
 * hw's two-horizon fit only for nested periods: with {7, 30} hw is the
 * maximum-likelihood fit exactly, with {7, 28} it is not.
 */
static void
test_hw_nested_only(void)
{
	static const int nonnested[] = {7, 30},
				nested[] = {7, 28};
	double		y[240];
	unsigned long st = 5;
	int			t;

	for (t = 0; t < 240; t++)
		y[t] = 20 + 4 * sin(2 * 3.14159265358979 * t / 7) +
			2 * cos(2 * 3.14159265358979 * t / 30) +
			1.5 * cos(2 * 3.14159265358979 * t / 28) + lcg_normal(&st);
	CHECK(hw_is_mle(y, 240, nonnested) == 1,
		  "hw with {7, 30} is not the maximum-likelihood fit");
	CHECK(hw_is_mle(y, 240, nested) == 0,
		  "hw with {7, 28} did not use the two-horizon fit");
}

/*
 * mstl_log is MSTL + ETS of the logarithm, back-transformed: exactly what
 * mstl gives on log y, exponentiated; a series with a zero gets plain mstl.
 */
static void
test_mstl_log(void)
{
	static const int s24[] = {24};
	double		y[480],
				ly[480],
				got[48],
				viaLog[48],
				plain[48];
	unsigned long st = 3;
	int			t,
				k,
				ok = 1;

	for (t = 0; t < 480; t++)
	{
		ly[t] = 3 + 0.001 * t + 0.4 * sin(2 * 3.14159265358979 * t / 24) +
			0.05 * lcg_normal(&st);
		y[t] = exp(ly[t]);
	}
	CHECK(run_internal(dmf_method_mstl_log, y, 480, s24, 1, 48, NULL, got,
					   NULL, 0) == 0 &&
		  run_internal(dmf_method_mstl, ly, 480, s24, 1, 48, NULL, viaLog,
					   NULL, 0) == 0, "mstl_log fits failed");
	for (k = 0; k < 48; k++)
		ok &= fabs(got[k] - exp(viaLog[k])) <= 1e-12 * got[k];
	CHECK(ok, "mstl_log is not exp(mstl of log y)");
	y[100] = 0;
	CHECK(run_internal(dmf_method_mstl_log, y, 480, s24, 1, 48, NULL, got,
					   NULL, 0) == 0 &&
		  run_internal(dmf_method_mstl, y, 480, s24, 1, 48, NULL, plain,
					   NULL, 0) == 0, "mstl_log fits failed");
	ok = 1;
	for (k = 0; k < 48; k++)
		ok &= got[k] == plain[k];
	CHECK(ok, "mstl_log with a zero in the series is not plain mstl");
}
