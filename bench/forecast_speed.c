/*-------------------------------------------------------------------------
 *
 * forecast_speed.c
 *	  Fit + forecast time and memory of each method of the forecasting core
 *	  on synthetic five-minute load (seasons 288 and 2016) of 1,000, 4,032,
 *	  16,000 and 64,000 points, linking src/forecast directly.
 *
 *	  usage: forecast_speed [-r REPEATS] [-H HORIZON] [method ...]
 *
 * Each measurement runs in a child process so that its peak resident size
 * (ru_maxrss) is its own; the time is the median of the repeats.  Two
 * baselines are timed in the same run, because ratios hold on noisy
 * machines: a plain pass over the data (sum of squares) and snaive.
 * "work KB" is the core's own working memory for the call.
 *
 * bench/forecast_speed.c
 *
 *-------------------------------------------------------------------------
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/forecast/forecast.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmpd(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* synthetic load: daily and weekly cycles, slow trend, AR(1) noise */
static void
make_series(double *y, int n)
{
	unsigned long long s = 88172645463325252ULL;
	double		ar = 0;
	int			t;

	for (t = 0; t < n; t++)
	{
		double		u1,
					u2,
					z;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		u1 = ((s >> 11) + 0.5) / 9007199254740992.0;
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		u2 = ((s >> 11) + 0.5) / 9007199254740992.0;
		z = sqrt(-2 * log(u1)) * cos(2 * 3.14159265358979 * u2);
		ar = 0.7 * ar + z;
		y[t] = 500 + 0.002 * t
			+ 120 * sin(2 * 3.14159265358979 * t / 288.0)
			+ 40 * sin(4 * 3.14159265358979 * t / 288.0 + 1)
			+ ((t / 288) % 7 >= 5 ? -80 : 0) + 8 * ar;
	}
}

/* one measurement in this process: median ms over repeats */
static double
measure(const char *method, const double *y, int n, int horizon, int repeats,
		size_t *work, char *model)
{
	static const int seasons[2] = {288, 2016};
	double	   *ms = malloc(repeats * sizeof(double));
	double		med,
				sink = 0;
	int			r,
				t;

	for (r = 0; r < repeats; r++)
	{
		double		t0 = now_ms();

		if (strcmp(method, "pass") == 0)
		{
			double		s = 0;

			for (t = 0; t < n; t++)
				s += y[t] * y[t];
			sink += s;
			*work = 0;
			strcpy(model, "sum of squares over the input");
		}
		else
		{
			DmfResult	res;
			char		err[256];

			if (dmf_forecast(y, n, seasons, 2, horizon,
							 (DmfMethod) dmf_method_parse(method), NULL, 0,
							 NULL, &res, err, sizeof(err)) != DMF_OK)
			{
				fprintf(stderr, "%s: %s\n", method, err);
				exit(1);
			}
			*work = res.work_bytes;
			snprintf(model, 256, "%s", res.model);
			sink += res.yhat[0];
			dmf_result_free(&res);
		}
		ms[r] = now_ms() - t0;
	}
	qsort(ms, repeats, sizeof(double), cmpd);
	med = ms[repeats / 2];
	free(ms);
	if (sink == 12345.678)
		printf(" ");
	return med;
}

int
main(int argc, char **argv)
{
	static const int sizes[] = {1000, 4032, 16000, 64000};
	const char *methods[16];
	int			nmethods = 0,
				repeats = 5,
				horizon = 288,
				a = 1,
				si,
				mi;

	while (a < argc && argv[a][0] == '-')
	{
		if (strcmp(argv[a], "-r") == 0 && a + 1 < argc)
			repeats = atoi(argv[a + 1]);
		else if (strcmp(argv[a], "-H") == 0 && a + 1 < argc)
			horizon = atoi(argv[a + 1]);
		else
		{
			fprintf(stderr, "usage: %s [-r REPEATS] [-H HORIZON] [method ...]\n",
					argv[0]);
			return 2;
		}
		a += 2;
	}
	if (repeats < 1)
		repeats = 1;
	methods[nmethods++] = "pass";
	while (a < argc && nmethods < 16)
		methods[nmethods++] = argv[a++];
	if (nmethods == 1)
	{
		static const char *const all[] = {"snaive", "hw", "mstl", "arima", "prophet", "auto"};

		for (mi = 0; mi < 6; mi++)
			methods[nmethods++] = all[mi];
	}
	printf("seasons {288,2016}, horizon %d, median of %d runs\n", horizon, repeats);
	printf("%-8s %7s %10s %9s %9s %9s  %s\n", "method", "n", "ms", "x pass", "work KB",
		   "maxrss KB", "model");
	for (si = 0; si < 4; si++)
	{
		double		pass_ms = 0;

		for (mi = 0; mi < nmethods; mi++)
		{
			int			fd[2];
			pid_t		pid;
			struct rusage ru;
			int			status;
			char		buf[512];
			ssize_t		got;

			if (pipe(fd) != 0)
				return 1;
			fflush(stdout);
			pid = fork();
			if (pid == 0)
			{
				int			n = sizes[si];
				double	   *y = malloc(n * sizeof(double));
				size_t		work = 0;
				char		model[256];
				double		ms;

				make_series(y, n);
				ms = measure(methods[mi], y, n, horizon, repeats, &work, model);
				snprintf(buf, sizeof(buf), "%.4f %zu %s", ms, work, model);
				if (write(fd[1], buf, strlen(buf) + 1) < 0)
					_exit(1);
				_exit(0);
			}
			close(fd[1]);
			got = read(fd[0], buf, sizeof(buf) - 1);
			close(fd[0]);
			if (wait4(pid, &status, 0, &ru) < 0 || got <= 0 ||
				!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			{
				printf("%-8s %7d failed\n", methods[mi], sizes[si]);
				continue;
			}
			buf[got] = '\0';
			{
				double		ms = strtod(buf, NULL);
				char	   *p = strchr(buf, ' ');
				size_t		work = strtoul(p + 1, &p, 10);

				if (mi == 0)
					pass_ms = ms;
				printf("%-8s %7d %10.3f %9.0f %9zu %9ld  %s\n", methods[mi],
					   sizes[si], ms, pass_ms > 0 ? ms / pass_ms : 0,
					   work / 1024, ru.ru_maxrss, p + 1);
			}
		}
	}
	return 0;
}
