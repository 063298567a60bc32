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
#include <string.h>

#include "forecast_bench.h"

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
		BenchScore	sc[64];
		double		mase[64],
					ms[64];
		int			nc = 0;
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
			double		t0;
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
			t0 = bench_now_ms();
			st = dmf_forecast(train, n, seasons, ns, h, (DmfMethod) method,
							  NULL, 0, NULL, &res, err, sizeof(err));
			ms[nc] = bench_now_ms() - t0;
			if (st != DMF_OK)
			{
				printf("%s %s: error %s (%s)\n", methods[mi], fld[0], err, res.detail);
				continue;
			}
			sc[nc] = bench_score(train, n, m, test, h, &res);
			if (verbose)
			{
				printf("  %-8s %-30s MASE %6.3f cov95 %.2f %7.1f ms  %s", methods[mi], fld[0],
					   sc[nc].mase, sc[nc].c95, ms[nc], res.model);
				for (k = 0; k < res.nnotices; k++)
					printf(" [%s]", res.notices[k]);
				printf("\n");
			}
			nc++;
			dmf_result_free(&res);
		}
		fclose(mf);
		bench_summary(methods[mi], sc, mase, ms, nc);
	}
	return 0;
}
