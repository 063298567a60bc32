/*-------------------------------------------------------------------------
 *
 * forecast_eval.c
 *	  Accuracy of the forecasting core on the evaluation cases, measured by
 *	  calling the C library directly (no server).  The SQL-level benchmark
 *	  is bench/forecast_accuracy; this one is for working on the methods.
 *
 *	  usage: forecast_eval [-v] CASES_DIR [method ...]
 *
 * bench/forecast_eval.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/forecast/forecast.h"

#define MAXN 100000

static int
read_values(const char *path, double *v, int max)
{
	FILE	   *f = fopen(path, "r");
	char		line[512];
	int			n = 0;

	if (!f)
	{
		perror(path);
		exit(2);
	}
	if (!fgets(line, sizeof(line), f))
		exit(2);
	while (n < max && fgets(line, sizeof(line), f))
	{
		char	   *c = strchr(line, ',');

		if (c)
			v[n++] = strtod(c + 1, NULL);
	}
	fclose(f);
	return n;
}

static int
cmpd(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
median(double *x, int n)
{
	qsort(x, n, sizeof(double), cmpd);
	return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
	const char *dir;
	const char *methods[16];
	int			nmethods = 0,
				verbose = 0,
				a = 1,
				mi;
	static double train[MAXN],
				test[MAXN];

	if (a < argc && strcmp(argv[a], "-v") == 0)
	{
		verbose = 1;
		a++;
	}
	if (a >= argc)
	{
		fprintf(stderr, "usage: %s [-v] CASES_DIR [method ...]\n", argv[0]);
		return 2;
	}
	dir = argv[a++];
	while (a < argc && nmethods < 16)
		methods[nmethods++] = argv[a++];
	if (nmethods == 0)
	{
		static const char *const all[] = {"snaive", "hw", "mstl", "arima", "prophet", "auto"};

		for (mi = 0; mi < 6; mi++)
			methods[nmethods++] = all[mi];
	}
	printf("%-8s %5s %9s %9s %8s %6s %6s %9s %9s\n", "method", "cases", "meanMASE",
		   "medMASE", "sMAPE%", "cov80", "cov95", "med ms", "total s");
	for (mi = 0; mi < nmethods; mi++)
	{
		char		path[1024],
					line[1024];
		FILE	   *mf;
		double		mase[64],
					smape[64],
					c80[64],
					c95[64],
					ms[64],
					tot = 0;
		int			nc = 0,
					i;
		int			method = dmf_method_parse(methods[mi]);

		snprintf(path, sizeof(path), "%s/manifest.csv", dir);
		mf = fopen(path, "r");
		if (!mf || !fgets(line, sizeof(line), mf))
		{
			perror(path);
			return 2;
		}
		while (fgets(line, sizeof(line), mf) && nc < 64)
		{
			char	   *fld[16];
			int			nf = 0,
						n,
						nt,
						h,
						m,
						seasons[8],
						ns = 0,
						k,
						t;
			char	   *p = line,
					   *q;
			DmfResult	res;
			char		err[256];
			double		t0,
						sc = 0,
						e = 0,
						sm = 0,
						in80 = 0,
						in95 = 0;
			DmfStatus	st;

			line[strcspn(line, "\r\n")] = 0;
			while (nf < 16)
			{
				fld[nf++] = p;
				q = strchr(p, ',');
				if (!q)
					break;
				*q = 0;
				p = q + 1;
			}
			if (nf < 13)
				continue;
			m = atoi(fld[5]);
			h = atoi(fld[6]);
			for (p = fld[4]; p && *p && ns < 8;)
			{
				seasons[ns++] = (int) floor(strtod(p, NULL) + 0.5);
				p = strchr(p, ';');
				if (p)
					p++;
			}
			snprintf(path, sizeof(path), "%s/%s", dir, fld[11]);
			n = read_values(path, train, MAXN);
			snprintf(path, sizeof(path), "%s/%s", dir, fld[12]);
			nt = read_values(path, test, MAXN);
			if (nt < h)
				h = nt;
			/* ignore periods longer than half the training window */
			for (k = 0, t = 0; k < ns; k++)
				if (seasons[k] <= n / 2)
					seasons[t++] = seasons[k];
			ns = t;
			t0 = now_ms();
			st = dmf_forecast(train, n, seasons, ns, h, (DmfMethod) method,
							  NULL, 0, NULL, &res, err, sizeof(err));
			ms[nc] = now_ms() - t0;
			tot += ms[nc];
			if (st != DMF_OK)
			{
				printf("%s %s: error %s (%s)\n", methods[mi], fld[0], err, res.detail);
				continue;
			}
			for (t = m; t < n; t++)
				sc += fabs(train[t] - train[t - m]);
			sc /= (n - m);
			for (k = 0; k < h; k++)
			{
				double		y = test[k],
							f = res.yhat[k];

				e += fabs(y - f);
				sm += (fabs(y) + fabs(f) > 0) ? 200 * fabs(y - f) / (fabs(y) + fabs(f)) : 0;
				in80 += (y >= res.lo80[k] && y <= res.hi80[k]);
				in95 += (y >= res.lo95[k] && y <= res.hi95[k]);
			}
			mase[nc] = e / h / sc;
			smape[nc] = sm / h;
			c80[nc] = in80 / h;
			c95[nc] = in95 / h;
			if (verbose)
			{
				printf("  %-8s %-30s MASE %6.3f cov95 %.2f %7.1f ms  %s", methods[mi], fld[0],
					   mase[nc], c95[nc], ms[nc], res.model);
				for (k = 0; k < res.nnotices; k++)
					printf(" [%s]", res.notices[k]);
				printf("\n");
			}
			nc++;
			dmf_result_free(&res);
		}
		fclose(mf);
		{
			double		sm_ = 0,
						ss = 0,
						s80 = 0,
						s95 = 0;

			for (i = 0; i < nc; i++)
			{
				sm_ += mase[i];
				ss += smape[i];
				s80 += c80[i];
				s95 += c95[i];
			}
			printf("%-8s %5d %9.3f %9.3f %8.2f %6.2f %6.2f %9.1f %9.2f\n", methods[mi], nc,
				   sm_ / nc, median(mase, nc), ss / nc, s80 / nc, s95 / nc,
				   median(ms, nc), tot / 1e3);
		}
	}
	return 0;
}
