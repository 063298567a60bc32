/*-------------------------------------------------------------------------
 *
 * test_theta.c
 *	  Unit tests of the optimised Theta method (dmf_theta.c) and the
 *	  theta method.  Known answers come from an independent implementation
 *	  of the Theta recursion written from its definition in this file and
 *	  a brute-force search over its two parameters.
 *
 * Included by test_forecast.c.
 *
 * test/unit/test_theta.c
 *
 *-------------------------------------------------------------------------
 */

/*
 * ref_theta
 *		The Theta model written from its definition: the least-squares line
 *		L, the theta line Z = theta x + (1 - theta) L, simple exponential
 *		smoothing of Z started at the mean of Z's first ten values each
 *		moved back to t = -1 along L, one-step forecasts l / theta +
 *		(1 - 1 / theta) L_t.  Returns the sum of squared one-step errors;
 *		fills mean[0..h) with the forecasts when mean is not NULL.
 */
static double
ref_theta(const double *x, int n, double alpha, double theta, int h,
		  double *mean)
{
	double		tbar = (n - 1) / 2.0,
				xbar = 0,
				sxy = 0,
				sxx = 0,
				A,
				B,
				l = 0,
				sse = 0;
	int			t,
				c = n < 10 ? n : 10;

	for (t = 0; t < n; t++)
		xbar += x[t] / n;
	for (t = 0; t < n; t++)
	{
		sxy += (t - tbar) * (x[t] - xbar);
		sxx += (t - tbar) * (t - tbar);
	}
	B = sxy / sxx;
	A = xbar - B * tbar;
	for (t = 0; t < c; t++)
	{
		double		z = theta * x[t] + (1 - theta) * (A + B * t);

		/* Z's slope along the line is B: back to t = -1 */
		l += (z - B * (t + 1)) / c;
	}
	for (t = 0; t < n; t++)
	{
		double		line = A + B * t,
					z = theta * x[t] + (1 - theta) * line,
					f = l / theta + (1 - 1 / theta) * line;

		sse += (x[t] - f) * (x[t] - f);
		l += alpha * (z - l);
	}
	for (t = 0; mean && t < h; t++)
		mean[t] = l / theta + (1 - 1 / theta) * (A + B * (n + t));
	return sse;
}

/* fit_theta: dmf_theta_fit and dmf_theta_forecast; 0, or a failure status */
static int
fit_theta(const double *x, int n, int h, DmfTheta *fit, double *mean,
		  double *sd)
{
	DmfCtx		ctx;
	DmfResult	res;

	memset(&ctx, 0, sizeof(ctx));
	memset(&res, 0, sizeof(res));
	ctx.res = &res;
	if (setjmp(ctx.jmp) != 0)
	{
		dmf_ctx_release(&ctx);
		return ctx.status ? ctx.status : -1;
	}
	dmf_theta_fit(&ctx, x, n, fit);
	dmf_theta_forecast(fit, h, mean, sd);
	dmf_ctx_release(&ctx);
	return 0;
}

/*
 * The fit must reach the minimum of a fine grid over (alpha, theta), and
 * its forecasts and standard deviations must be the model's at the fitted
 * parameters.
 */
static void
test_theta_fit(void)
{
	enum
	{
		N = 240, H = 12
	};
	double		x[N],
				mean[H],
				sd[H],
				ref[H],
				level = 50,
				gridmin = HUGE_VAL,
				sse;
	unsigned long st = 11;
	DmfTheta	fit;
	int			t,
				i,
				j;

	/* a local level with a drift and noise: SES with drift's own model */
	for (t = 0; t < N; t++)
	{
		level += 0.2 + 0.6 * lcg_normal(&st);
		x[t] = level + lcg_normal(&st);
	}
	for (i = 1; i < 100; i++)
		for (j = 0; j <= 180; j++)
		{
			double		v = ref_theta(x, N, i / 100.0, 1 + j / 20.0, 0, NULL);

			if (v < gridmin)
				gridmin = v;
		}

	if (fit_theta(x, N, H, &fit, mean, sd) != 0)
	{
		CHECK(0, "theta fit failed");
		return;
	}

	sse = ref_theta(x, N, fit.alpha, fit.theta, H, ref);
	printf("theta: alpha %.4f theta %.4f sse %.4f, grid minimum %.4f\n",
		   fit.alpha, fit.theta, sse, gridmin);
	CHECK(sse <= gridmin * (1 + 1e-3),
		  "theta fit sse %.6f above the grid minimum %.6f", sse, gridmin);
	CHECK(fabs(fit.sigma2 * (N - 2) - sse) <= 1e-9 * sse,
		  "theta sigma2 %.9g is not the fit's sse %.9g / (n - 2)",
		  fit.sigma2, sse);
	for (t = 0; t < H; t++)
	{
		double		want = sqrt(fit.sigma2 * (1 + t * fit.alpha * fit.alpha));

		CHECK(fabs(mean[t] - ref[t]) <= 1e-9 * (1 + fabs(ref[t])),
			  "theta step %d: forecast %.12g, the model's %.12g", t + 1,
			  mean[t], ref[t]);
		CHECK(fabs(sd[t] - want) <= 1e-12 * (1 + want),
			  "theta step %d: sd %.12g, want %.12g", t + 1, sd[t], want);
	}
	/* the drift of 0.2 per step is followed */
	CHECK(mean[H - 1] - mean[0] > 0.2 * (H - 1) * 0.3,
		  "theta lost the drift: %.3f to %.3f", mean[0], mean[H - 1]);
}

/*
 * theta on a seasonal series: MSTL removes the season, Theta continues the
 * trend; the method name comes back in the model.
 */
static void
test_theta_method(void)
{
	static const int s12[] = {12};
	double		y[120];
	DmfResult	res;
	int			t;

	for (t = 0; t < 120; t++)
		y[t] = 100 + 10 * sin(2 * 3.14159265358979 * t / 12) + 0.5 * t;
	if (fc(y, 96, s12, 1, 24, "theta", NULL, 0, &res) != DMF_OK)
		return;
	CHECK(strstr(res.model, "Theta(") != NULL, "theta model \"%s\"", res.model);
	CHECK(distance(res.yhat, y + 96, 24, mase_scale(y, 96, 12)) < 0.2,
		  "theta on a clean trend and season: MASE %.3f",
		  distance(res.yhat, y + 96, 24, mase_scale(y, 96, 12)));
	dmf_result_free(&res);
}
