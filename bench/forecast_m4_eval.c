/*-------------------------------------------------------------------------
 *
 * forecast_m4_eval.c
 *	  Accuracy and speed of the forecasting core on the M4 Hourly set,
 *	  calling the C library directly (no server).  The SQL-level benchmark
 *	  is bench/forecast_m4; this one is for working on the methods.
 *
 *	  usage: forecast_m4_eval [-v] [-1] [-n FIRST] DIR [method ...]
 *	  (-1: the daily period only)
 *
 * DIR holds Hourly-train.csv and Hourly-test.csv of the M4 competition
 * (Mcompetitions/M4-methods, Dataset/); seasons {24, 168}, horizon 48,
 * MASE scaled by the in-sample seasonal naive error at lag 24 (M4 paper).
 *
 * bench/forecast_m4_eval.c
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "forecast_bench.h"

#define MAXS	414
#define MAXV	1024
#define LINE	65536

typedef struct Series
{
	int			n;
	double		v[MAXV];
} Series;

/* read_m4: rows of "id","v1",...; quoted numbers, empty cells at the end */
static int
read_m4(const char *path, Series *s, int max)
{
	FILE	   *f = fopen(path, "r");
	static char line[LINE];
	int			ns = 0;

	if (!f)
	{
		perror(path);
		exit(2);
	}
	if (!fgets(line, sizeof(line), f))
		exit(2);
	while (ns < max && fgets(line, sizeof(line), f))
	{
		char	   *p = strchr(line, ',');

		s[ns].n = 0;
		while (p && s[ns].n < MAXV)
		{
			p++;
			if (*p == '"')
				p++;
			if (*p == '"' || *p == ',' || *p == '\n' || *p == '\r' || !*p)
				break;
			s[ns].v[s[ns].n++] = strtod(p, NULL);
			p = strchr(p, ',');
		}
		ns++;
	}
	fclose(f);
	return ns;
}

int
main(int argc, char **argv)
{
	static Series train[MAXS],
				test[MAXS];
	static BenchScore sc[MAXS];
	static double mase[MAXS],
				ms[MAXS];
	const char *methods[16];
	char		path[1024];
	int			nmethods = 0,
				verbose = 0,
				first = MAXS,
				a = 1,
				ns,
				mi;
	int			seasons[2] = {24, 168},
				nseas = 2;

	while (a < argc && argv[a][0] == '-')
	{
		if (strcmp(argv[a], "-v") == 0)
			verbose = 1;
		else if (strcmp(argv[a], "-n") == 0 && a + 1 < argc)
			first = atoi(argv[++a]);
		else if (strcmp(argv[a], "-1") == 0)
			nseas = 1;			/* daily period only */
		a++;
	}
	if (a >= argc)
	{
		fprintf(stderr, "usage: %s [-v] [-1] [-n FIRST] DIR [method ...]\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/Hourly-train.csv", argv[a]);
	ns = read_m4(path, train, first < MAXS ? first : MAXS);
	snprintf(path, sizeof(path), "%s/Hourly-test.csv", argv[a]);
	read_m4(path, test, ns);
	a++;
	while (a < argc && nmethods < 16)
		methods[nmethods++] = argv[a++];
	if (nmethods == 0)
	{
		static const char *const all[] = {"snaive", "hw", "mstl", "arima", "auto"};

		for (mi = 0; mi < 5; mi++)
			methods[nmethods++] = all[mi];
	}
	printf("%-8s %5s %9s %9s %8s %6s %6s %9s %9s\n", "method", "series", "meanMASE",
		   "medMASE", "sMAPE%", "cov80", "cov95", "med ms", "total s");
	for (mi = 0; mi < nmethods; mi++)
	{
		int			method = dmf_method_parse(methods[mi]);
		int			i,
					nc = 0;

		for (i = 0; i < ns; i++)
		{
			int			h = test[i].n < 48 ? test[i].n : 48;
			DmfResult	res;
			char		err[256];
			double		t0;
			DmfStatus	st;

			t0 = bench_now_ms();
			st = dmf_forecast(train[i].v, train[i].n, seasons, nseas, h,
							  (DmfMethod) method, NULL, 0, NULL, &res, err,
							  sizeof(err));
			ms[nc] = bench_now_ms() - t0;
			if (st != DMF_OK)
			{
				printf("%s H%d: error %s (%s)\n", methods[mi], i + 1, err, res.detail);
				continue;
			}
			sc[nc] = bench_score(train[i].v, train[i].n, 24, test[i].v, h, &res);
			if (verbose)
				printf("  %-8s H%-4d n=%d MASE %6.3f cov95 %.2f %7.1f ms  %s\n",
					   methods[mi], i + 1, train[i].n, sc[nc].mase, sc[nc].c95,
					   ms[nc], res.model);
			nc++;
			dmf_result_free(&res);
		}
		bench_summary(methods[mi], sc, mase, ms, nc);
	}
	return 0;
}
