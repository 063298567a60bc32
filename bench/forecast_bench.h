/*-------------------------------------------------------------------------
 *
 * forecast_bench.h
 *	  Scoring shared by the benchmarks that link the forecasting core
 *	  directly (forecast_eval.c, forecast_m4_eval.c): MASE, sMAPE and
 *	  interval coverage of one forecast, and the summary line of a method.
 *
 * bench/forecast_bench.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FORECAST_BENCH_H
#define FORECAST_BENCH_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/forecast/forecast.h"

/* the scores of one forecast */
typedef struct BenchScore
{
	double		mase;
	double		smape;
	double		c80;
	double		c95;
} BenchScore;

static int
bench_cmpd(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* bench_median: median of x[0..n), which it sorts */
static double
bench_median(double *x, int n)
{
	qsort(x, n, sizeof(double), bench_cmpd);
	return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static double
bench_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * bench_score
 *		Scores of res against test[0..h): MASE scaled by the in-sample
 *		seasonal naive error at lag m of train[0..n), sMAPE in percent, and
 *		the share of test values inside the 80 and 95 percent intervals.
 */
static BenchScore
bench_score(const double *train, int n, int m, const double *test, int h,
			const DmfResult *res)
{
	BenchScore	s = {0, 0, 0, 0};
	double		sc = 0,
				e = 0;
	int			t,
				k;

	for (t = m; t < n; t++)
		sc += fabs(train[t] - train[t - m]);
	sc /= (n - m);
	for (k = 0; k < h; k++)
	{
		double		y = test[k],
					f = res->yhat[k];

		e += fabs(y - f);
		s.smape += (fabs(y) + fabs(f) > 0) ? 200 * fabs(y - f) / (fabs(y) + fabs(f)) : 0;
		s.c80 += (y >= res->lo80[k] && y <= res->hi80[k]);
		s.c95 += (y >= res->lo95[k] && y <= res->hi95[k]);
	}
	s.mase = e / h / sc;
	s.smape /= h;
	s.c80 /= h;
	s.c95 /= h;
	return s;
}

/*
 * bench_summary
 *		Print a method's line: cases, mean and median MASE, mean sMAPE and
 *		coverage, median and total milliseconds (sorts mase and ms).
 */
static void
bench_summary(const char *method, const BenchScore *sc, double *mase,
			  double *ms, int nc)
{
	double		m = 0,
				sm = 0,
				c80 = 0,
				c95 = 0,
				tot = 0;
	int			i;

	for (i = 0; i < nc; i++)
	{
		m += sc[i].mase;
		sm += sc[i].smape;
		c80 += sc[i].c80;
		c95 += sc[i].c95;
		tot += ms[i];
		mase[i] = sc[i].mase;
	}
	printf("%-8s %5d %9.3f %9.3f %8.2f %6.2f %6.2f %9.2f %9.2f\n", method, nc,
		   m / nc, bench_median(mase, nc), sm / nc, c80 / nc, c95 / nc,
		   bench_median(ms, nc), tot / 1e3);
	fflush(stdout);
}

#endif							/* FORECAST_BENCH_H */
