/*-------------------------------------------------------------------------
 *
 * probe.c
 *	  The write probe used by the promotion tests and bench/switchover.
 *
 *	  probe run   --conninfo CI [--clients N] [--rate R] [--duration S]
 *	              [--table T] --acks FILE
 *		N client threads insert rows (client_id, seq, payload) into table T
 *		through one libpq connection string (normally a multi-host string
 *		with target_session_attrs=read-write), R rows per second in total.
 *		Each client numbers its rows itself (seq 1, 2, ...).  Every
 *		ACKNOWLEDGED commit is appended to FILE as "client seq ack_us"
 *		(microseconds since the epoch).  On any error the client drops the
 *		connection, reconnects (every --retry-ms, default 10 ms, until it
 *		succeeds: each attempt costs the servers a backend start per host
 *		tried, so retrying much faster steals CPU from the switchover on a
 *		small machine) and goes on
 *		with the NEXT sequence number: a row whose commit was not
 *		acknowledged may or may not exist, and is never written twice.
 *		Runs for S seconds, or until SIGTERM/SIGINT (--pidfile F writes its
 *		process id to F, for callers that start it through runuser).
 *
 *	  probe setup --conninfo CI [--table T]
 *		Creates table T (id bigserial primary key, client_id, seq, payload,
 *		created_at) if it does not exist.  The serial key means that a
 *		switchover which forgets to synchronise sequences shows up as
 *		failed inserts on the new primary.
 *
 *	  probe check --acks FILE --primary CI [--other CI] [--table T]
 *	              [--wait S]
 *		Verifies that every acknowledged (client, seq) is present exactly
 *		once on the primary, that no (client, seq) appears twice at all,
 *		and, with --other, waits up to S seconds for both nodes to hold
 *		identical content (row count and an ordered checksum).  Prints one
 *		summary line "acked=.. present=.. lost=.. duplicated=.. extra=..
 *		identical=yes|no" and exits 0 only if lost = duplicated = 0 and
 *		the nodes are identical.
 *
 *	  probe pause --acks FILE [--windows FILE]
 *		The write pause: the longest gap between two consecutive
 *		acknowledged commits (all clients together).  With a windows file
 *		(lines "start_us end_us [label]"), the pause of each window: the
 *		longest gap between consecutive acknowledgements that overlaps it.
 *		Prints "window LABEL pause_ms X" per window, then "pause p50_ms ..
 *		max_ms .. windows ..".
 *
 * The program holds no state between runs but the acks file.  It is built
 * by bench/probe/Makefile against the system libpq.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define MAX_CLIENTS 64

static volatile sig_atomic_t stop_requested = 0;

/* options */
static const char *opt_conninfo = NULL;
static const char *opt_primary = NULL;
static const char *opt_other = NULL;
static const char *opt_table = "public.dm_probe";
static const char *opt_acks = NULL;
static const char *opt_windows = NULL;
static const char *opt_pidfile = NULL;
static int	opt_clients = 4;
static double opt_rate = 1000.0;
static double opt_duration = 0;
static double opt_wait = 60;
static int	opt_verbose = 0;
static int	opt_retry_ms = 10;

/* run: shared output */
static FILE *acks_file = NULL;
static pthread_mutex_t acks_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t run_started_us;

typedef struct ClientStats
{
	int			id;
	int64_t		acked;
	int64_t		errors;
	int64_t		reconnects;
} ClientStats;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_us(int64_t us)
{
	struct timespec ts;

	if (us <= 0)
		return;
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (us % 1000000) * 1000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested)
		;
}

static void
handle_stop(int sig)
{
	stop_requested = 1;
}

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "probe: ");
	fprintf(stderr, fmt, arg ? arg : "");
	fprintf(stderr, "\n");
	exit(2);
}

static void
quiet_notices(void *arg, const char *message)
{
	if (opt_verbose)
		fprintf(stderr, "probe: %s", message);
}

/*
 * connect_until_ok: connect, retrying every opt_retry_ms until it works or
 * a stop is requested.  Returns NULL only on stop.
 */
static PGconn *
connect_until_ok(ClientStats *st)
{
	int			attempts = 0;

	while (!stop_requested)
	{
		PGconn	   *conn = PQconnectdb(opt_conninfo);

		if (PQstatus(conn) == CONNECTION_OK)
		{
			PGresult   *res;

			PQsetNoticeProcessor(conn, quiet_notices, NULL);
			res = PQexec(conn, "SET synchronous_commit = on");

			PQclear(res);
			return conn;
		}
		if (opt_verbose && attempts++ % 200 == 0)
			fprintf(stderr, "probe: client %d: connect failed: %s",
					st->id, PQerrorMessage(conn));
		PQfinish(conn);
		sleep_us(opt_retry_ms * 1000);
	}
	return NULL;
}

static void *
client_main(void *arg)
{
	ClientStats *st = arg;
	PGconn	   *conn = NULL;
	char		sql[512];
	char		line[96];
	int64_t		seq = 0;
	double		interval_us = 1e6 * opt_clients / opt_rate;
	double		next_at = (double) now_us();
	char		buf[8192];
	size_t		buflen = 0;
	int64_t		last_flush = now_us();

	snprintf(sql, sizeof(sql),
			 "INSERT INTO %s (client_id, seq, payload) VALUES ($1, $2, $3)",
			 opt_table);

	while (!stop_requested)
	{
		PGresult   *res;
		char		cid[16],
					cseq[24],
					payload[80];
		const char *params[3] = {cid, cseq, payload};
		int64_t		t;

		if (opt_duration > 0 &&
			now_us() - run_started_us >= (int64_t) (opt_duration * 1e6))
			break;

		if (conn == NULL)
		{
			conn = connect_until_ok(st);
			if (conn == NULL)
				break;
		}

		/* pace: one insert per interval; after a stall, do not burst */
		t = now_us();
		if (next_at > t)
			sleep_us((int64_t) (next_at - t));
		else if (t - next_at > 100000)
			next_at = (double) t;
		next_at += interval_us;

		seq++;
		snprintf(cid, sizeof(cid), "%d", st->id);
		snprintf(cseq, sizeof(cseq), "%" PRId64, seq);
		snprintf(payload, sizeof(payload), "client %d row %" PRId64 " probe payload", st->id, seq);

		res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
		{
			int			n;

			t = now_us();
			n = snprintf(line, sizeof(line), "%d %" PRId64 " %" PRId64 "\n",
						 st->id, seq, t);
			if (buflen + n >= sizeof(buf))
			{
				pthread_mutex_lock(&acks_lock);
				fwrite(buf, 1, buflen, acks_file);
				pthread_mutex_unlock(&acks_lock);
				buflen = 0;
			}
			memcpy(buf + buflen, line, n);
			buflen += n;
			st->acked++;
			if (t - last_flush > 200000)
			{
				pthread_mutex_lock(&acks_lock);
				fwrite(buf, 1, buflen, acks_file);
				fflush(acks_file);
				pthread_mutex_unlock(&acks_lock);
				buflen = 0;
				last_flush = t;
			}
		}
		else
		{
			st->errors++;
			if (opt_verbose)
				fprintf(stderr, "probe: client %d seq %" PRId64 ": %s",
						st->id, seq, PQresultErrorMessage(res));
			/* whatever the error, start over with a fresh connection */
			PQfinish(conn);
			conn = NULL;
			st->reconnects++;
		}
		PQclear(res);
	}

	pthread_mutex_lock(&acks_lock);
	fwrite(buf, 1, buflen, acks_file);
	fflush(acks_file);
	pthread_mutex_unlock(&acks_lock);
	if (conn)
		PQfinish(conn);
	return NULL;
}

static int
cmd_run(void)
{
	pthread_t	threads[MAX_CLIENTS];
	ClientStats stats[MAX_CLIENTS];
	int64_t		acked = 0,
				errors = 0,
				reconnects = 0;
	double		secs;
	int			i;

	if (!opt_conninfo || !opt_acks)
		die("run needs --conninfo and --acks%s", NULL);
	if (opt_clients < 1 || opt_clients > MAX_CLIENTS)
		die("--clients must be 1 to 64%s", NULL);
	acks_file = fopen(opt_acks, "a");
	if (!acks_file)
		die("cannot open %s", opt_acks);
	if (opt_pidfile)
	{
		FILE	   *pf = fopen(opt_pidfile, "w");

		if (!pf)
			die("cannot open %s", opt_pidfile);
		fprintf(pf, "%d\n", (int) getpid());
		fclose(pf);
	}

	signal(SIGTERM, handle_stop);
	signal(SIGINT, handle_stop);
	signal(SIGPIPE, SIG_IGN);

	run_started_us = now_us();
	for (i = 0; i < opt_clients; i++)
	{
		memset(&stats[i], 0, sizeof(ClientStats));
		stats[i].id = i + 1;
		if (pthread_create(&threads[i], NULL, client_main, &stats[i]) != 0)
			die("cannot start a client thread%s", NULL);
	}
	for (i = 0; i < opt_clients; i++)
	{
		pthread_join(threads[i], NULL);
		acked += stats[i].acked;
		errors += stats[i].errors;
		reconnects += stats[i].reconnects;
	}
	fclose(acks_file);
	secs = (now_us() - run_started_us) / 1e6;
	printf("run clients=%d seconds=%.1f acked=%" PRId64 " rate=%.0f errors=%" PRId64
		   " reconnects=%" PRId64 "\n",
		   opt_clients, secs, acked, acked / (secs > 0 ? secs : 1), errors, reconnects);
	return 0;
}

static PGconn *
connect_or_die(const char *ci)
{
	PGconn	   *conn = PQconnectdb(ci);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "probe: cannot connect: %s", PQerrorMessage(conn));
		exit(2);
	}
	return conn;
}

static PGresult *
exec_or_die(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "probe: %s: %s", sql, PQresultErrorMessage(res));
		exit(2);
	}
	return res;
}

static int
cmd_setup(void)
{
	PGconn	   *conn;
	char		sql[1024];

	if (!opt_conninfo)
		die("setup needs --conninfo%s", NULL);
	conn = connect_or_die(opt_conninfo);
	snprintf(sql, sizeof(sql),
			 "CREATE TABLE IF NOT EXISTS %s ("
			 " id bigserial PRIMARY KEY,"
			 " client_id integer NOT NULL,"
			 " seq bigint NOT NULL,"
			 " payload text NOT NULL,"
			 " created_at timestamptz NOT NULL DEFAULT now())", opt_table);
	PQclear(exec_or_die(conn, sql));
	PQfinish(conn);
	return 0;
}

/* acknowledged rows, as loaded from an acks file */
typedef struct Ack
{
	int			client;
	int64_t		seq;
	int64_t		at;
} Ack;

static Ack *
load_acks(const char *path, size_t *n_out)
{
	FILE	   *f = fopen(path, "r");
	size_t		n = 0,
				cap = 1 << 16;
	Ack		   *a;
	Ack			one;

	if (!f)
		die("cannot open %s", path);
	a = malloc(cap * sizeof(Ack));
	while (fscanf(f, "%d %" SCNd64 " %" SCNd64, &one.client, &one.seq, &one.at) == 3)
	{
		if (n == cap)
		{
			cap *= 2;
			a = realloc(a, cap * sizeof(Ack));
		}
		a[n++] = one;
	}
	fclose(f);
	*n_out = n;
	return a;
}

static int
cmp_key(const void *x, const void *y)
{
	const Ack  *a = x,
			   *b = y;

	if (a->client != b->client)
		return a->client < b->client ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

static int
cmp_time(const void *x, const void *y)
{
	const Ack  *a = x,
			   *b = y;

	return a->at < b->at ? -1 : (a->at > b->at ? 1 : 0);
}

static char *
content_digest(PGconn *conn)
{
	char		sql[1024];
	PGresult   *res;
	char	   *out;

	snprintf(sql, sizeof(sql),
			 "SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ',' || client_id || ','"
			 " || seq || ',' || payload, ';' ORDER BY id)), '-') FROM %s", opt_table);
	res = exec_or_die(conn, sql);
	out = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return out;
}

static int
cmd_check(void)
{
	size_t		n,
				i,
				j;
	Ack		   *acks;
	PGconn	   *conn;
	PGresult   *res;
	char		sql[1024];
	int64_t		lost = 0,
				dup = 0,
				extra = 0,
				present = 0,
				acked_dup = 0;
	int			identical = 1;
	int			nrows;

	if (!opt_acks || !opt_primary)
		die("check needs --acks and --primary%s", NULL);
	acks = load_acks(opt_acks, &n);
	qsort(acks, n, sizeof(Ack), cmp_key);
	/* a (client, seq) acknowledged twice would be a probe bug */
	for (i = 1; i < n; i++)
		if (cmp_key(&acks[i - 1], &acks[i]) == 0)
			acked_dup++;

	conn = connect_or_die(opt_primary);
	snprintf(sql, sizeof(sql),
			 "SELECT client_id, seq, count(*) FROM %s GROUP BY 1, 2 ORDER BY 1, 2",
			 opt_table);
	res = exec_or_die(conn, sql);
	nrows = PQntuples(res);

	/* merge the sorted acks with the sorted table content */
	i = 0;
	for (j = 0; j < (size_t) nrows; j++)
	{
		Ack			row;
		int64_t		cnt = atoll(PQgetvalue(res, j, 2));

		row.client = atoi(PQgetvalue(res, j, 0));
		row.seq = atoll(PQgetvalue(res, j, 1));
		if (cnt > 1)
			dup += cnt - 1;
		while (i < n && cmp_key(&acks[i], &row) < 0)
		{
			lost++;
			if (opt_verbose)
				fprintf(stderr, "probe: lost client %d seq %" PRId64 "\n",
						acks[i].client, acks[i].seq);
			i++;
		}
		if (i < n && cmp_key(&acks[i], &row) == 0)
		{
			present++;
			while (i < n && cmp_key(&acks[i], &row) == 0)
				i++;
		}
		else
			extra++;			/* committed without acknowledgement: allowed */
	}
	for (; i < n; i++)
		lost++;
	PQclear(res);

	if (opt_other)
	{
		PGconn	   *other = connect_or_die(opt_other);
		int64_t		deadline = now_us() + (int64_t) (opt_wait * 1e6);
		char	   *a = NULL,
				   *b = NULL;

		for (;;)
		{
			free(a);
			free(b);
			a = content_digest(conn);
			b = content_digest(other);
			identical = strcmp(a, b) == 0;
			if (identical || now_us() > deadline)
				break;
			sleep_us(200000);
		}
		if (!identical)
			fprintf(stderr, "probe: content differs: primary %s, other %s\n", a, b);
		free(a);
		free(b);
		PQfinish(other);
	}
	PQfinish(conn);

	printf("check acked=%zu present=%" PRId64 " lost=%" PRId64 " duplicated=%" PRId64
		   " extra=%" PRId64 " identical=%s\n",
		   n, present, lost, dup + acked_dup, extra,
		   opt_other ? (identical ? "yes" : "no") : "n/a");
	return (lost == 0 && dup == 0 && acked_dup == 0 && identical) ? 0 : 1;
}

static int
cmp_double(const void *x, const void *y)
{
	double		a = *(const double *) x,
				b = *(const double *) y;

	return a < b ? -1 : (a > b ? 1 : 0);
}

static int
cmd_pause(void)
{
	size_t		n,
				i;
	Ack		   *acks;
	double		pauses[1024];
	int			nw = 0;

	if (!opt_acks)
		die("pause needs --acks%s", NULL);
	acks = load_acks(opt_acks, &n);
	if (n < 2)
		die("too few acknowledgements in %s", opt_acks);
	qsort(acks, n, sizeof(Ack), cmp_time);

	if (opt_windows)
	{
		FILE	   *f = fopen(opt_windows, "r");
		char		line[512];

		if (!f)
			die("cannot open %s", opt_windows);
		while (fgets(line, sizeof(line), f) && nw < 1024)
		{
			int64_t		ws,
						we;
			char		label[256] = "-";
			int64_t		best = 0;

			if (sscanf(line, "%" SCNd64 " %" SCNd64 " %255s", &ws, &we, label) < 2)
				continue;
			for (i = 1; i < n; i++)
			{
				if (acks[i].at < ws)
					continue;
				if (acks[i - 1].at > we)
					break;
				if (acks[i].at - acks[i - 1].at > best)
					best = acks[i].at - acks[i - 1].at;
			}
			pauses[nw] = best / 1000.0;
			printf("window %s pause_ms %.1f\n", label, pauses[nw]);
			nw++;
		}
		fclose(f);
	}
	else
	{
		int64_t		best = 0;

		for (i = 1; i < n; i++)
			if (acks[i].at - acks[i - 1].at > best)
				best = acks[i].at - acks[i - 1].at;
		pauses[nw++] = best / 1000.0;
	}

	if (nw == 0)
		die("no windows in %s", opt_windows);
	qsort(pauses, nw, sizeof(double), cmp_double);
	printf("pause p50_ms %.1f max_ms %.1f windows %d\n",
		   nw % 2 ? pauses[nw / 2] : (pauses[nw / 2 - 1] + pauses[nw / 2]) / 2,
		   pauses[nw - 1], nw);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: probe run --conninfo CI --acks FILE [--clients N] [--rate R] [--duration S] [--table T] [--pidfile F] [--retry-ms MS]\n"
			"       probe setup --conninfo CI [--table T]\n"
			"       probe check --acks FILE --primary CI [--other CI] [--wait S] [--table T]\n"
			"       probe pause --acks FILE [--windows FILE]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *cmd;
	int			i;

	if (argc < 2)
		usage();
	cmd = argv[1];
	for (i = 2; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--verbose") == 0)
		{
			opt_verbose = 1;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--conninfo") == 0)
			opt_conninfo = v;
		else if (strcmp(a, "--primary") == 0)
			opt_primary = v;
		else if (strcmp(a, "--other") == 0)
			opt_other = v;
		else if (strcmp(a, "--table") == 0)
			opt_table = v;
		else if (strcmp(a, "--acks") == 0)
			opt_acks = v;
		else if (strcmp(a, "--pidfile") == 0)
			opt_pidfile = v;
		else if (strcmp(a, "--windows") == 0)
			opt_windows = v;
		else if (strcmp(a, "--clients") == 0)
			opt_clients = atoi(v);
		else if (strcmp(a, "--rate") == 0)
			opt_rate = atof(v);
		else if (strcmp(a, "--duration") == 0)
			opt_duration = atof(v);
		else if (strcmp(a, "--retry-ms") == 0)
			opt_retry_ms = atoi(v);
		else if (strcmp(a, "--wait") == 0)
			opt_wait = atof(v);
		else
			usage();
	}
	if (opt_rate <= 0)
		die("--rate must be positive%s", NULL);

	if (strcmp(cmd, "run") == 0)
		return cmd_run();
	if (strcmp(cmd, "setup") == 0)
		return cmd_setup();
	if (strcmp(cmd, "check") == 0)
		return cmd_check();
	if (strcmp(cmd, "pause") == 0)
		return cmd_pause();
	usage();
	return 2;
}
