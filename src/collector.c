/*-------------------------------------------------------------------------
 *
 * collector.c
 *	  Metric collection by the worker: poll every due metric source
 *	  concurrently, record the samples and the outcome of each poll.
 *
 * Polls outlive the worker pass that starts them:
 *	 1. DmCollectMetrics (each pass) first records, in one short
 *		transaction, every poll that finished since the last pass
 *		(_store_samples, then _record_polls: errors, backoff, watermarks);
 *		then reads the due sources of the due groups (_due_sources) in
 *		another and starts their polls as requests of the worker's I/O
 *		engine (io_engine.c): one plain PostgreSQL request per postgres
 *		target (a hardened session without the node session, its names
 *		resolved by io_dns.c, pooled between polls), one HTTP request per
 *		query of an HTTP source (Prometheus query_range, InfluxDB 1.x /query
 *		with InfluxQL);
 *	 2. the engine drives them outside any transaction, in the worker's nap
 *		(DmIoWait: one WaitEventSet over the latch and every socket of the
 *		worker), each with the source's timeout (default 5 s) as its
 *		deadlines, and calls back here when one ends: the callbacks only
 *		take the answer (no transaction, no I/O).
 * So a slow or dead node delays nothing but its own samples: the groups'
 * steps and the other polls go on, and a poll still running when its
 * group is due again is not started twice.
 *
 * What a server answers is data, never trusted: numbers are converted
 * without raising (JsonNumber, UnixToTimestamp), points outside the window
 * asked for or not finite are dropped, and each source's samples are stored
 * in a subtransaction of their own (StoreSourceSamples): a failure there is
 * that source's error, backed off, and the other sources are stored.  Every
 * error is recorded twice: its raw text (libpq's, libcurl's, the server's:
 * it names hosts and ports) for driftmirror_admin, and a label without it
 * for every other reader of dm_metric_sources and dm_status.
 *
 * PostgreSQL targets are shared by conninfo: sources whose resources have
 * the same connection string share one request and one query per poll.
 * Sessions stay open between polls in the engine's pool; a failed one is
 * cut and reopened at the source's next attempt, which _record_polls
 * backs off exponentially; a target idle for ten minutes is forgotten.  Rates come
 * from counter deltas between two polls of the same target; a counter going
 * backwards or a new stats_reset time means a reset: no rate for that poll.
 *
 * Memory: each source in flight has its own small context (TopMemoryContext
 * child) holding its configuration and its HTTP requests and responses,
 * deleted once the poll is recorded (its requests cancelled first if they
 * still run); targets and their errors live in TopMemoryContext, each
 * target's engine request in the target's own context; the rest is per
 * pass (the worker's loop context).
 *
 * The entry points do not raise: an error is logged as a WARNING, the polls
 * in flight are dropped, and the worker goes on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <sys/stat.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "http.h"
#include "io_engine.h"
#include "secrets.h"

#define DM_DEFAULT_TIMEOUT_MS	5000
#define DM_TARGET_IDLE_MS		(10 * 60 * 1000)
#define DM_MAX_ERROR_LEN		500

/* the postgres collector's metrics, in the order of the query's columns */
enum
{
	PGM_XACTS,
	PGM_TUP_READ,
	PGM_TUP_WRITTEN,
	PGM_CONN_ACTIVE,
	PGM_CONN_TOTAL,
	PGM_CACHE_HIT,
	PGM_WAL,
	PGM_DB_SIZE,
	PGM_LAG_BYTES,
	PGM_LAG_SECONDS,
	PGM_COUNT
};

static const char *const PgMetricNames[PGM_COUNT] = {
	"pg.xacts_per_s",
	"pg.tup_read_per_s",
	"pg.tup_written_per_s",
	"pg.connections_active",
	"pg.connections_total",
	"pg.cache_hit_ratio",
	"pg.wal_bytes_per_s",
	"pg.database_size",
	"pg.replication_lag_bytes",
	"pg.replication_lag_seconds",
};

/*
 * One round trip for everything; works on a primary and on a standby.
 * Columns: 0 in_recovery, 1 xacts, 2 tup_read, 3 tup_written, 4 blks_hit,
 * 5 blks_read, 6 stats_reset (epoch), 7 active, 8 total, 9 db size,
 * 10 wal position, 11 lag bytes, 12 lag seconds
 */
static const char *const PgPollQuery =
"SELECT pg_catalog.pg_is_in_recovery(),"
" d.xact_commit + d.xact_rollback,"
" d.tup_returned + d.tup_fetched,"
" d.tup_inserted + d.tup_updated + d.tup_deleted,"
" d.blks_hit, d.blks_read,"
" coalesce(extract(epoch FROM d.stats_reset), 0),"
" (SELECT count(*) FILTER (WHERE a.state = 'active') FROM pg_catalog.pg_stat_activity a"
"   WHERE a.backend_type = 'client backend' AND a.pid <> pg_catalog.pg_backend_pid()),"
" (SELECT count(*) FROM pg_catalog.pg_stat_activity a"
"   WHERE a.backend_type = 'client backend' AND a.pid <> pg_catalog.pg_backend_pid()),"
" pg_catalog.pg_database_size(d.datid),"
" pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery()"
"   THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END, '0/0'),"
" CASE WHEN pg_catalog.pg_is_in_recovery()"
"   THEN pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())"
"   ELSE (SELECT max(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn))"
"         FROM pg_catalog.pg_stat_replication r) END,"
" CASE WHEN pg_catalog.pg_is_in_recovery()"
"   THEN extract(epoch FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()) END"
" FROM pg_catalog.pg_stat_database d WHERE d.datname = pg_catalog.current_database()";

typedef enum TargetState
{
	TS_IDLE,					/* not polled in this pass */
	TS_BUSY,					/* its request runs in the engine */
	TS_DONE,					/* result in hand */
	TS_FAILED
} TargetState;

/* a PostgreSQL server polled by one or more sources (TopMemoryContext) */
typedef struct PgTarget
{
	char	   *conninfo;
	TargetState state;
	MemoryContext cxt;			/* its engine request, reset per poll */
	DmIoPgRequest *req;			/* the poll in flight (TS_BUSY), or NULL */
	long		timeout_ms;
	TimestampTz last_used;
	/* previous counters, for rates */
	bool		have_prev;
	TimestampTz prev_at;
	double		prev_stats_reset;
	double		prev_xacts,
				prev_read,
				prev_written,
				prev_hit,
				prev_blks_read,
				prev_wal;
	/* this pass: error (raw text, and a label without host or port) or values */
	char	   *error;
	const char *label;			/* a string constant */
	TimestampTz sample_at;
	double		values[PGM_COUNT];
	bool		have[PGM_COUNT];
	struct PgTarget *next;
} PgTarget;

/*
 * One query of an HTTP source (prometheus: PromQL; influxdb: InfluxQL),
 * for this pass.  Both kinds share everything but the request's URL and
 * the shape of the answer (see HttpQueryUrl and SeriesPoints).
 */
typedef struct PromQuery
{
	char	   *metric;			/* metric name */
	int16		metric_id;
	double		start;			/* unix seconds */
	double		end;
	DmIoHttpRequest *io;		/* its engine request, or NULL */
	DmHttpResponse resp;		/* the answer, once the engine has it */
} PromQuery;

/* one due source, for this pass */
typedef struct Source
{
	MemoryContext cxt;			/* holds this struct and all it points to */
	int64		id;
	int64		resource_id;
	bool		is_postgres;
	bool		is_influx;		/* else prometheus, when not postgres */
	char	   *endpoint;
	Jsonb	   *config;
	long		interval_ms;
	long		timeout_ms;
	Jsonb	   *watermarks;
	PgTarget   *target;			/* postgres */
	PromQuery  *queries;		/* prometheus, influxdb */
	int			nqueries;
	double		step;
	/* outcome */
	bool		ok;
	char	   *error;			/* raw text: for driftmirror_admin */
	char	   *label;			/* the same without remote text: for the monitor */
	int			first;			/* its samples: Samples[first .. first + rows) */
	int			rows;
	StringInfoData new_watermarks;	/* JSON object text, HTTP sources only */
} Source;

/* samples collected in this pass */
typedef struct Samples
{
	int			n;
	int			cap;
	Datum	   *ts;
	Datum	   *rid;
	Datum	   *mid;
	Datum	   *val;
} Samples;

/* metric name -> id, read each pass */
typedef struct MetricIds
{
	int			n;
	char	  **names;
	int16	   *ids;
} MetricIds;

static PgTarget *Targets = NULL;
static List *InFlight = NIL;	/* Source *, in TopMemoryContext */
static int16 PgIds[PGM_COUNT];	/* ids of the postgres collector's metrics */

/* ---------------------------------------------------------------- */
/* small helpers                                                      */
/* ---------------------------------------------------------------- */

static char *
TrimErrorIn(MemoryContext cxt, const char *msg)
{
	char	   *s = MemoryContextStrdup(cxt, msg ? msg : "unknown error");
	size_t		len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = '\0';
	if (len > DM_MAX_ERROR_LEN)
		s[DM_MAX_ERROR_LEN] = '\0';
	return s;
}

static int16
LookupMetric(MetricIds *ids, const char *name)
{
	int			i;

	for (i = 0; i < ids->n; i++)
		if (strcmp(ids->names[i], name) == 0)
			return ids->ids[i];
	return 0;
}

static void
AddSample(Samples *s, TimestampTz ts, int64 rid, int16 mid, double v)
{
	if (mid == 0 || !isfinite(v))
		return;
	if (s->n == s->cap)
	{
		s->cap = s->cap ? s->cap * 2 : 256;
		s->ts = s->ts ? repalloc(s->ts, s->cap * sizeof(Datum)) : palloc(s->cap * sizeof(Datum));
		s->rid = s->rid ? repalloc(s->rid, s->cap * sizeof(Datum)) : palloc(s->cap * sizeof(Datum));
		s->mid = s->mid ? repalloc(s->mid, s->cap * sizeof(Datum)) : palloc(s->cap * sizeof(Datum));
		s->val = s->val ? repalloc(s->val, s->cap * sizeof(Datum)) : palloc(s->cap * sizeof(Datum));
	}
	s->ts[s->n] = TimestampTzGetDatum(ts);
	s->rid[s->n] = Int64GetDatum(rid);
	s->mid[s->n] = Int16GetDatum(mid);
	s->val[s->n] = Float8GetDatum(v);
	s->n++;
}

/* JSON helpers over a Jsonb container */
static bool
JsonGet(JsonbContainer *c, const char *key, JsonbValue *out)
{
	JsonbValue *v = getKeyJsonValueFromContainer(c, key, strlen(key), out);

	return v != NULL;
}

static char *
JsonGetString(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (!JsonGet(c, key, &v) || v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/* interval setting (string or number of seconds) in milliseconds, or dflt */
static long
JsonGetIntervalMs(JsonbContainer *c, const char *key, long dflt)
{
	JsonbValue	v;

	if (!JsonGet(c, key, &v))
		return dflt;
	if (v.type == jbvNumeric)
		return (long) (DatumGetFloat8(DirectFunctionCall1(numeric_float8,
														  NumericGetDatum(v.val.numeric))) * 1000);
	if (v.type == jbvString)
	{
		char	   *s = pnstrdup(v.val.string.val, v.val.string.len);
		Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
															   CStringGetDatum(s),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));

		return (long) (iv->time / 1000 + (int64) iv->day * 86400000);
	}
	return dflt;
}

/*
 * ParseDouble
 *		The number in a string (Prometheus writes values as strings: "1.5",
 *		"NaN", "+Inf", "1e400").  Returns NAN for anything that is not a
 *		number; values beyond the range of a double come back as infinities.
 *		Never raises.
 */
static double
ParseDouble(const char *s, int len)
{
	char	   *buf;
	char	   *end;
	double		d;

	/* a number of a thousand characters is junk, not a value */
	if (len <= 0 || len > 1000)
		return NAN;
	buf = pnstrdup(s, len);
	d = strtod(buf, &end);
	if (*end != '\0' || end == buf)
		d = NAN;
	pfree(buf);
	return d;
}

/*
 * JsonNumber
 *		A JSON number, or a string holding one, as a double; NAN for
 *		anything else.  Out-of-range numbers (1e400) become infinities:
 *		numeric_float8 would raise, and one bad point must not stop the
 *		collection.  Never raises.
 */
static double
JsonNumber(JsonbValue *v)
{
	if (v->type == jbvNumeric)
	{
		/* scientific notation: 1e300 stays short; NaN, Infinity parse too */
		char	   *txt = numeric_out_sci(v->val.numeric, 17);
		double		d = strtod(txt, NULL);

		pfree(txt);
		return d;
	}
	if (v->type == jbvString)
		return ParseDouble(v->val.string.val, v->val.string.len);
	return NAN;
}

static double
TimestampToUnix(TimestampTz t)
{
	return (double) t / 1e6 + (double) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
}

/*
 * UnixToTimestamp
 *		Unix seconds as a timestamptz.  Returns false for a value that is not
 *		finite or outside the range of timestamptz (the cast of such a double
 *		to int64 would be undefined).  Never raises.
 */
static bool
UnixToTimestamp(double s, TimestampTz *out)
{
	double		us;

	if (!isfinite(s))
		return false;
	us = (s - (double) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) * 1e6;
	if (!(us >= (double) MIN_TIMESTAMP && us < (double) END_TIMESTAMP))
		return false;
	*out = (TimestampTz) us;
	return true;
}

/* ---------------------------------------------------------------- */
/* step 1: read the due sources                                       */
/* ---------------------------------------------------------------- */

/*
 * ReadSources
 *		One transaction: the due sources of the given groups and the metric
 *		dictionary.  Results in cxt.  Raises on error.
 */
static List *
ReadSources(int64 *group_ids, int ngroups, MetricIds *ids, MemoryContext cxt)
{
	List	   *sources = NIL;
	Datum	   *elems;
	ArrayType  *arr;
	DmCtlResult *r;
	DmCtlResult *names = NULL;
	int			i;
	int			j;

	elems = palloc(sizeof(Datum) * ngroups);
	for (j = 0; j < ngroups; j++)
		elems[j] = Int64GetDatum(group_ids[j]);
	arr = construct_array(elems, ngroups, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);

	DmCtlBegin(NULL);
	r = DmCtlExec("SELECT source_id, resource_id, kind, endpoint, config, interval_ms, watermarks "
				  "FROM driftmirror._due_sources($1)",
				  1, (Oid[]) {INT8ARRAYOID}, (Datum[]) {PointerGetDatum(arr)}, NULL);
	if (r->nrows > 0)
		names = DmCtlExec("SELECT name, id FROM driftmirror.metric_def", 0, NULL, NULL, NULL);
	DmCtlCommit();

	for (i = 0; i < r->nrows; i++)
	{
		int64		id = DmCtlGetInt64(r, i, "source_id", 0);
		MemoryContext scxt;
		MemoryContext old;
		Source	   *s;
		char	   *kind;
		ListCell   *lc;
		bool		busy = false;

		foreach(lc, InFlight)
			if (((Source *) lfirst(lc))->id == id)
				busy = true;
		if (busy)
			continue;			/* still being polled from an earlier pass */

		/* under the pass's context until it is in flight (CollectInner) */
		scxt = AllocSetContextCreate(cxt, "driftmirror metric source",
									 ALLOCSET_SMALL_SIZES);
		old = MemoryContextSwitchTo(scxt);
		s = palloc0(sizeof(Source));
		s->cxt = scxt;
		s->id = id;
		s->resource_id = DmCtlGetInt64(r, i, "resource_id", 0);
		kind = DmCtlGet(r, i, "kind");
		s->is_postgres = (strcmp(kind, "postgres") == 0);
		s->is_influx = (strcmp(kind, "influxdb") == 0);
		s->endpoint = pstrdup(DmCtlGet(r, i, "endpoint"));
		s->config = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													   CStringGetDatum(DmCtlGet(r, i, "config"))));
		s->interval_ms = (long) DmCtlGetInt64(r, i, "interval_ms", 0);
		s->watermarks = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														   CStringGetDatum(DmCtlGet(r, i, "watermarks"))));
		s->timeout_ms = JsonGetIntervalMs(&s->config->root, "timeout", DM_DEFAULT_TIMEOUT_MS);
		MemoryContextSwitchTo(cxt);
		sources = lappend(sources, s);
		MemoryContextSwitchTo(old);
	}

	if (sources != NIL)
	{
		ids->n = names->nrows;
		ids->names = MemoryContextAlloc(cxt, sizeof(char *) * Max(ids->n, 1));
		ids->ids = MemoryContextAlloc(cxt, sizeof(int16) * Max(ids->n, 1));
		for (i = 0; i < names->nrows; i++)
		{
			ids->names[i] = MemoryContextStrdup(cxt, DmCtlGet(names, i, "name"));
			ids->ids[i] = (int16) DmCtlGetInt32(names, i, "id", 0);
		}
		for (j = 0; j < PGM_COUNT; j++)
			PgIds[j] = LookupMetric(ids, PgMetricNames[j]);
	}
	return sources;
}

/* ---------------------------------------------------------------- */
/* step 2: the event loop                                             */
/* ---------------------------------------------------------------- */

/*
 * TargetFail
 *		End a target's poll with an error: msg is the raw text (libpq's, which
 *		names the host), label a constant saying the same without it.
 */
static void
TargetFail(PgTarget *t, const char *label, const char *msg)
{
	if (t->error)
		pfree(t->error);
	t->error = TrimErrorIn(TopMemoryContext, msg);
	t->label = label;
	t->state = TS_FAILED;
	t->have_prev = false;
}

/*
 * TargetResult
 *		Take the query's row: store raw values, compute rates against the
 *		previous poll.
 */
static void
TargetResult(PgTarget *t, PGresult *res)
{
	double		c[13];
	bool		isnull[13];
	int			i;
	TimestampTz now = GetCurrentTimestamp();
	bool		reset;
	double		dt;

	if (PQntuples(res) != 1 || PQnfields(res) != 13)
	{
		TargetFail(t, "statistics query failed", PQntuples(res) == 0 ?
				   "the polled database is missing from pg_stat_database" :
				   "statistics query returned an unexpected result");
		return;
	}
	for (i = 0; i < 13; i++)
	{
		isnull[i] = PQgetisnull(res, 0, i);
		if (i == 0)
			c[i] = (!isnull[i] && PQgetvalue(res, 0, 0)[0] == 't') ? 1 : 0;
		else
			c[i] = isnull[i] ? 0 : strtod(PQgetvalue(res, 0, i), NULL);
	}

	t->sample_at = now;
	t->values[PGM_CONN_ACTIVE] = c[7];
	t->have[PGM_CONN_ACTIVE] = true;
	t->values[PGM_CONN_TOTAL] = c[8];
	t->have[PGM_CONN_TOTAL] = true;
	t->values[PGM_DB_SIZE] = c[9];
	t->have[PGM_DB_SIZE] = true;
	if (!isnull[11])
	{
		t->values[PGM_LAG_BYTES] = Max(c[11], 0);
		t->have[PGM_LAG_BYTES] = true;
	}
	if (!isnull[12])
	{
		t->values[PGM_LAG_SECONDS] = Max(c[12], 0);
		t->have[PGM_LAG_SECONDS] = true;
	}

	dt = t->have_prev ? (double) (now - t->prev_at) / 1e6 : 0;
	reset = !t->have_prev || dt <= 0.001 || c[6] != t->prev_stats_reset ||
		c[1] < t->prev_xacts || c[2] < t->prev_read || c[3] < t->prev_written ||
		c[4] < t->prev_hit || c[5] < t->prev_blks_read;
	if (!reset)
	{
		double		dhit = c[4] - t->prev_hit;
		double		dread = c[5] - t->prev_blks_read;

		t->values[PGM_XACTS] = (c[1] - t->prev_xacts) / dt;
		t->values[PGM_TUP_READ] = (c[2] - t->prev_read) / dt;
		t->values[PGM_TUP_WRITTEN] = (c[3] - t->prev_written) / dt;
		t->have[PGM_XACTS] = t->have[PGM_TUP_READ] = t->have[PGM_TUP_WRITTEN] = true;
		if (dhit + dread > 0)
		{
			t->values[PGM_CACHE_HIT] = dhit / (dhit + dread);
			t->have[PGM_CACHE_HIT] = true;
		}
		if (!isnull[10] && c[10] >= t->prev_wal)
		{
			t->values[PGM_WAL] = (c[10] - t->prev_wal) / dt;
			t->have[PGM_WAL] = true;
		}
	}
	t->have_prev = true;
	t->prev_at = now;
	t->prev_stats_reset = c[6];
	t->prev_xacts = c[1];
	t->prev_read = c[2];
	t->prev_written = c[3];
	t->prev_hit = c[4];
	t->prev_blks_read = c[5];
	t->prev_wal = isnull[10] ? 0 : c[10];
}

/*
 * FailureLabel
 *		What the monitor may read about a failed poll: a constant per place
 *		the engine says the request failed (io_engine.h), never remote text.
 */
static const char *
FailureLabel(DmIoFailure failure)
{
	switch (failure)
	{
		case DM_IO_REFUSED:
			return "endpoint refused by the connection keyword allow-list";
		case DM_IO_CONNECT_TIMEOUT:
			return "no answer within the timeout (connecting)";
		case DM_IO_TIMEOUT:
			return "no answer within the timeout (statistics query)";
		case DM_IO_LOST:
			return "connection lost";
		case DM_IO_REMOTE:
			return "statistics query failed";
		case DM_IO_RESOLVE:
		case DM_IO_CONNECT:
		case DM_IO_SETUP:
		case DM_IO_OK:
			break;
	}
	return "connection failed";
}

/*
 * TargetPolled
 *		The engine's callback for a target's poll: take the row or the
 *		error.  No transaction, no I/O.
 */
static void
TargetPolled(DmIoPgRequest *req, void *arg)
{
	PgTarget   *t = (PgTarget *) arg;

	t->req = NULL;
	if (req->ok && req->res != NULL)
	{
		t->state = TS_DONE;
		TargetResult(t, req->res);
	}
	else if (req->ok)
		TargetFail(t, "statistics query failed", "no result from the statistics query");
	else if (req->failure == DM_IO_TIMEOUT || req->failure == DM_IO_CONNECT_TIMEOUT)
		TargetFail(t, FailureLabel(req->failure),
				   psprintf("no answer within %ld ms (%s)", t->timeout_ms,
							req->failure == DM_IO_CONNECT_TIMEOUT ? "connecting" :
							"waiting for the statistics query"));
	else
		TargetFail(t, FailureLabel(req->failure),
				   req->detail ? psprintf("%s: %s", req->error, req->detail) : req->error);
}

/*
 * TargetStart
 *		Begin one poll: hand the statistics query to the I/O engine, on a
 *		plain hardened session of the target (pooled between polls).
 */
static void
TargetStart(PgTarget *t, long timeout_ms)
{
	DmIoPgRequest *req;

	if (t->error)
		pfree(t->error);
	t->error = NULL;
	memset(t->have, 0, sizeof(t->have));
	t->last_used = GetCurrentTimestamp();
	t->timeout_ms = timeout_ms;

	MemoryContextReset(t->cxt);
	req = DmIoPgRequestCreate(t->cxt, t->conninfo, "metric source");
	req->plain = true;
	req->application_name = "driftmirror collector";
	req->sql = (char *) PgPollQuery;
	req->keep_result = true;
	req->connect_timeout_ms = (int) timeout_ms;
	req->timeout_ms = (int) timeout_ms;
	req->callback = TargetPolled;
	req->arg = t;
	t->req = req;
	t->state = TS_BUSY;
	DmIoPgStart(req);
}

/* TargetCancel: drop a target's poll in flight, if any */
static void
TargetCancel(PgTarget *t)
{
	if (t->req != NULL)
		DmIoPgCancel(t->req);
	t->req = NULL;
	if (t->state == TS_BUSY)
		t->have_prev = false;
	t->state = TS_IDLE;
}

/*
 * ReadBearerToken
 *		The bearer token of a prometheus source, read from
 *		$PGDATA/driftmirror_secrets/<bearer_token_file> (inline tokens are
 *		refused since 0.2.0), or NULL without one.  Returns NULL and sets
 *		*error if the file cannot be read; never puts the token in *error.
 */
static char *
ReadBearerToken(Source *s, char **error)
{
	char	   *file = JsonGetString(&s->config->root, "bearer_token_file");

	if (file == NULL)
		return NULL;
	return DmReadSecretFile(file, error);
}

/*
 * HttpQueryUrl
 *		The URL asking an HTTP source for one query's points in
 *		[start, end] (unix seconds), palloc'd.  Prometheus: query_range at
 *		the source's step.  InfluxDB 1.x: /query with the InfluxQL text,
 *		its $timeFilter replaced by the window (validated to be there by
 *		_source_config), times in milliseconds.
 */
static char *
HttpQueryUrl(Source *s, const char *url, const char *query, double start, double end)
{
	StringInfoData q;
	const char *p;
	const char *mark;
	char	   *db;

	if (!s->is_influx)
		return psprintf("%s/api/v1/query_range?query=%s&start=%.3f&end=%.3f&step=%.3f",
						url, DmHttpUrlEncode(query), start, end, s->step);

	initStringInfo(&q);
	for (p = query; (mark = strstr(p, "$timeFilter")) != NULL; p = mark + strlen("$timeFilter"))
	{
		appendBinaryStringInfo(&q, p, mark - p);
		appendStringInfo(&q, "time >= %.0fms AND time <= %.0fms", start * 1000.0, end * 1000.0);
	}
	appendStringInfoString(&q, p);
	db = JsonGetString(&s->config->root, "database");
	return psprintf("%s/query?db=%s&epoch=ms&q=%s", url, DmHttpUrlEncode(db ? db : ""),
					DmHttpUrlEncode(q.data));
}

/*
 * HttpQueryDone
 *		The engine's callback for one query of an HTTP source: keep the
 *		answer (in the source's context).
 */
static void
HttpQueryDone(DmIoHttpRequest *io, void *arg)
{
	PromQuery  *q = (PromQuery *) arg;

	q->resp = io->resp;
	q->io = NULL;
}

/* HttpSourceCancel: drop the queries of a source still in the engine */
static void
HttpSourceCancel(Source *s)
{
	int			i;

	for (i = 0; i < s->nqueries; i++)
		if (s->queries[i].io != NULL)
		{
			DmIoHttpCancel(s->queries[i].io);
			s->queries[i].io = NULL;
		}
}

/*
 * StartHttpSource
 *		Add one request per query of a prometheus or influxdb source.
 */
static void
StartHttpSource(Source *s, MetricIds *ids)
{
	JsonbValue	qv;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *url = JsonGetString(&s->config->root, "url");
	char	   *token;
	char	   *err = NULL;
	double		now = TimestampToUnix(GetCurrentTimestamp());
	long		step_ms = JsonGetIntervalMs(&s->config->root, "step", s->interval_ms);
	long		lookback_ms = JsonGetIntervalMs(&s->config->root, "lookback",
												Max(s->interval_ms, step_ms) * 3);
	size_t		ulen;
	int			n = 0;
	int			cap = 8;

	s->step = Max(step_ms, 1000) / 1000.0;
	s->queries = palloc0(sizeof(PromQuery) * cap);
	s->nqueries = 0;
	token = ReadBearerToken(s, &err);
	if (err != NULL || url == NULL)
	{
		s->error = err ? err : pstrdup("no url");
		s->label = err ? "bearer_token_file unreadable" : "configuration incomplete";
		return;
	}
	ulen = strlen(url);
	while (ulen > 0 && url[ulen - 1] == '/')
		url[--ulen] = '\0';

	if (!JsonGet(&s->config->root, "queries", &qv) || qv.type != jbvBinary)
	{
		s->error = pstrdup("no queries");
		s->label = "configuration incomplete";
		return;
	}
	it = JsonbIteratorInit(qv.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		PromQuery  *q;
		char	   *promql;
		JsonbValue	wm;
		DmHttpRequest *req;

		if (tok != WJB_KEY)
			continue;
		if (n == cap)
		{
			cap *= 2;
			s->queries = repalloc(s->queries, sizeof(PromQuery) * cap);
		}
		q = &s->queries[n++];
		s->nqueries = n;
		memset(q, 0, sizeof(*q));
		q->metric = pnstrdup(v.val.string.val, v.val.string.len);
		q->metric_id = LookupMetric(ids, q->metric);
		tok = JsonbIteratorNext(&it, &v, true);
		promql = (v.type == jbvString) ? pnstrdup(v.val.string.val, v.val.string.len) : pstrdup("");

		/* from just after the last stored sample, or a lookback window */
		q->end = floor(now / s->step) * s->step;
		if (JsonGet(&s->watermarks->root, q->metric, &wm) && !isnan(JsonNumber(&wm)))
			q->start = JsonNumber(&wm) + s->step;
		else
			q->start = q->end - lookback_ms / 1000.0;
		/* Prometheus refuses more than 11,000 points per series (and a
		 * bounded window keeps an InfluxDB answer bounded too) */
		if ((q->end - q->start) / s->step > 10000)
			q->start = q->end - 10000 * s->step;
		if (q->start > q->end)
		{
			q->resp.status = -1;	/* nothing new yet */
			continue;
		}

		q->io = DmIoHttpRequestCreate(s->cxt);
		req = &q->io->http;
		req->method = "GET";
		req->url = HttpQueryUrl(s, url, promql, q->start, q->end);
		req->bearer_token = token;
		req->timeout_ms = s->timeout_ms;
		q->io->callback = HttpQueryDone;
		q->io->arg = q;
		DmIoHttpStart(q->io);
		/* libcurl has its copy of the header: the token is wiped below */
		req->bearer_token = NULL;
	}
	s->nqueries = n;
	if (token)
		explicit_bzero(token, strlen(token));
}

/*
 * SourceFinished
 *		Whether every poll of a source has an outcome.
 */
static bool
SourceFinished(Source *s)
{
	int			i;

	if (s->is_postgres)
		return s->target->state == TS_DONE || s->target->state == TS_FAILED;
	if (s->error != NULL)
		return true;
	for (i = 0; i < s->nqueries; i++)
	{
		DmHttpResponse *r = &s->queries[i].resp;

		if (r->status != -1 && r->error == NULL && r->body == NULL)
			return false;
	}
	return true;
}

/*
 * ParseJson
 *		PostgreSQL's own JSON parser (jsonb input); returns NULL for text
 *		that is not JSON instead of raising.
 */
static Jsonb *
ParseJson(const char *text)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile jb = NULL;

	if (text == NULL)
		return NULL;
	PG_TRY();
	{
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		jb = NULL;
	}
	PG_END_TRY();
	return jb;
}

/*
 * SeriesPoints
 *		Find the points of the one series in an HTTP source's answer (a JSON
 *		object already checked): *points is the array of points, or NULL when
 *		the window holds no data.  Returns NULL, or what is wrong (palloc'd).
 *		Prometheus: {"status": "success", "data": {"resultType": "matrix",
 *		"result": [{"values": [[t, "v"], ...]}]}}.  InfluxDB 1.x:
 *		{"results": [{"series": [{"columns": ["time", f], "values":
 *		[[t_ms, v], ...]}]}]}, or an "error" in the result.  When the
 *		problem carries the server's own text, *label says the same
 *		without it (for the monitor role).
 */
static char *
SeriesPoints(Source *s, Jsonb *jb, JsonbContainer **points, const char **label)
{
	JsonbValue	v;
	JsonbValue	data;
	JsonbValue	result;
	JsonbValue *series;
	JsonbValue	values;
	int			nseries;

	*points = NULL;
	*label = NULL;
	if (s->is_influx)
	{
		JsonbValue *first;
		char	   *ierr;

		if (!JsonGet(&jb->root, "results", &result) || result.type != jbvBinary ||
			!JsonContainerIsArray(result.val.binary.data) ||
			JsonContainerSize(result.val.binary.data) != 1 ||
			(first = getIthJsonbValueFromContainer(result.val.binary.data, 0)) == NULL ||
			first->type != jbvBinary || !JsonContainerIsObject(first->val.binary.data))
			return pstrdup("the answer has no results array with one result (one statement per query)");
		if ((ierr = JsonGetString(first->val.binary.data, "error")) != NULL)
		{
			*label = "InfluxDB answered with an error";
			return psprintf("InfluxDB answered: %s", ierr);
		}
		if (!JsonGet(first->val.binary.data, "series", &data))
			return NULL;		/* no data in the window: not an error */
		if (data.type != jbvBinary || !JsonContainerIsArray(data.val.binary.data))
			return pstrdup("the result's series is not an array");
		nseries = JsonContainerSize(data.val.binary.data);
		if (nseries > 1)
			return psprintf("the query returned %d series; aggregate it to one (no GROUP BY tag)",
							nseries);
		if (nseries == 0)
			return NULL;
		series = getIthJsonbValueFromContainer(data.val.binary.data, 0);
		if (series == NULL || series->type != jbvBinary ||
			!JsonGet(series->val.binary.data, "columns", &v) || v.type != jbvBinary ||
			!JsonContainerIsArray(v.val.binary.data) || JsonContainerSize(v.val.binary.data) != 2)
			return pstrdup("the series must have two columns: time and one field");
	}
	else
	{
		char	   *rtype;

		if (!JsonGet(&jb->root, "status", &v) || v.type != jbvString ||
			v.val.string.len != 7 || strncmp(v.val.string.val, "success", 7) != 0)
		{
			char	   *perr = JsonGetString(&jb->root, "error");

			*label = "Prometheus answered without success";
			return psprintf("Prometheus answered without success%s%s",
							perr ? ": " : "", perr ? perr : "");
		}
		if (!JsonGet(&jb->root, "data", &data) || data.type != jbvBinary ||
			!JsonGet(data.val.binary.data, "result", &result) || result.type != jbvBinary ||
			!JsonContainerIsArray(result.val.binary.data))
			return pstrdup("the answer has no data.result array");
		rtype = JsonGetString(data.val.binary.data, "resultType");
		if (rtype == NULL || strcmp(rtype, "matrix") != 0)
			return pstrdup("expected a matrix result");
		nseries = JsonContainerSize(result.val.binary.data);
		if (nseries > 1)
			return psprintf("returned %d series; aggregate it to one, e.g. sum(...)", nseries);
		if (nseries == 0)
			return NULL;		/* no data in the window: not an error */
		series = getIthJsonbValueFromContainer(result.val.binary.data, 0);
	}
	if (series == NULL || series->type != jbvBinary ||
		!JsonGet(series->val.binary.data, "values", &values) ||
		values.type != jbvBinary || !JsonContainerIsArray(values.val.binary.data))
		return pstrdup("the series has no values array");
	*points = values.val.binary.data;
	return NULL;
}

/*
 * DecodePoint
 *		One point of a series: its time in unix seconds and its value; a
 *		value that is missing (InfluxDB's null of an empty interval) gives
 *		NaN.  Returns false if the point is not of the expected shape:
 *		Prometheus [seconds, "value"], InfluxDB [milliseconds, value|null].
 */
static bool
DecodePoint(Source *s, JsonbValue *pt, double *ts, double *val)
{
	JsonbValue *tv;
	JsonbValue *vv;

	if (pt == NULL || pt->type != jbvBinary || !JsonContainerIsArray(pt->val.binary.data) ||
		JsonContainerSize(pt->val.binary.data) != 2 ||
		(tv = getIthJsonbValueFromContainer(pt->val.binary.data, 0)) == NULL ||
		(vv = getIthJsonbValueFromContainer(pt->val.binary.data, 1)) == NULL ||
		tv->type != jbvNumeric)
		return false;
	if (s->is_influx)
	{
		if (vv->type == jbvNull)
			*val = NAN;
		else if (vv->type == jbvNumeric)
			*val = JsonNumber(vv);
		else
			return false;
		*ts = JsonNumber(tv) / 1000.0;
	}
	else
	{
		if (vv->type != jbvString)
			return false;
		*val = JsonNumber(vv);
		*ts = JsonNumber(tv);
	}
	return true;
}

/*
 * ParseHttpSource
 *		Turn the answers of one prometheus or influxdb source into samples.
 *		Any problem
 *		with any query fails the whole source for this poll and stores
 *		nothing of it.
 */
static void
ParseHttpSource(Source *s, Samples *samples)
{
	int			q;
	int			first_new = samples->n;

	initStringInfo(&s->new_watermarks);
	appendStringInfoChar(&s->new_watermarks, '{');
	for (q = 0; q < s->nqueries && s->error == NULL; q++)
	{
		PromQuery  *pq = &s->queries[q];
		Jsonb	   *jb = NULL;
		JsonbContainer *points;
		int			npoints;
		int			i;
		double		last = NAN;
		JsonbValue	wm;

		if (JsonGet(&s->watermarks->root, pq->metric, &wm))
			last = JsonNumber(&wm);

		if (pq->resp.status == -1)
			goto keep_watermark;	/* nothing to ask yet */
		if (pq->metric_id == 0)
		{
			s->error = psprintf("metric \"%s\" is not registered", pq->metric);
			s->label = s->error;
			break;
		}
		if (pq->resp.error)
		{
			s->error = psprintf("query \"%s\": %s", pq->metric, pq->resp.error);
			s->label = psprintf("query \"%s\": the server could not be reached or did not answer", pq->metric);
			break;
		}

		jb = ParseJson(pq->resp.body);

		if (pq->resp.status != 200)
		{
			char	   *perr = (jb && JB_ROOT_IS_OBJECT(jb)) ? JsonGetString(&jb->root, "error") : NULL;

			s->label = psprintf("query \"%s\": HTTP status %ld", pq->metric, pq->resp.status);
			s->error = psprintf("query \"%s\": HTTP status %ld%s%s", pq->metric, pq->resp.status,
								perr ? ": " : "", perr ? perr : "");
			break;
		}
		if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		{
			s->error = psprintf("query \"%s\": the answer is not a JSON object", pq->metric);
			break;
		}
		{
			const char *slabel;
			char	   *serr = SeriesPoints(s, jb, &points, &slabel);

			if (serr != NULL)
			{
				s->error = psprintf("query \"%s\": %s", pq->metric, serr);
				if (slabel)
					s->label = psprintf("query \"%s\": %s", pq->metric, slabel);
				break;
			}
			if (points == NULL)
				goto keep_watermark;	/* no data in the window */
		}
		npoints = JsonContainerSize(points);
		for (i = 0; i < npoints; i++)
		{
			JsonbValue *pt = getIthJsonbValueFromContainer(points, i);
			double		ts;
			double		val;
			TimestampTz at;

			if (!DecodePoint(s, pt, &ts, &val))
			{
				s->error = psprintf("query \"%s\": point %d is not [time, value]", pq->metric, i);
				break;
			}

			/*
			 * Only points of the window asked for: a point far in the past or
			 * future (or not a time at all: 1e300, 1e400) would otherwise
			 * make the store create partitions for it, or fail the pass.
			 */
			if (!(ts >= pq->start - 0.001 && ts <= pq->end + 0.001) ||
				!UnixToTimestamp(ts, &at))
				continue;
			if (!isnan(last) && ts <= last)
				continue;		/* already stored */
			/* NaN / +Inf / -Inf / InfluxDB's null are not samples: skip them */
			if (isfinite(val))
				AddSample(samples, at, s->resource_id, pq->metric_id, val);
			if (isnan(last) || ts > last)
				last = ts;
		}
		if (s->error)
			break;
keep_watermark:
		if (!isnan(last))
			appendStringInfo(&s->new_watermarks, "%s\"%s\": %.3f",
							 s->new_watermarks.len > 1 ? ", " : "", pq->metric, last);
	}
	appendStringInfoChar(&s->new_watermarks, '}');

	s->first = first_new;
	if (s->error)
	{
		samples->n = first_new; /* nothing of a failed source */
		s->ok = false;
		s->rows = 0;
	}
	else
	{
		s->ok = true;
		s->rows = samples->n - first_new;
	}
}

/* ---------------------------------------------------------------- */
/* step 3: record                                                     */
/* ---------------------------------------------------------------- */

static ArrayType *
MakeArray(Datum *d, bool *nulls, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	if (n == 0)
		return construct_empty_array(type);
	return construct_md_array(d, nulls, 1, dims, lbs, type, typlen, typbyval, typalign);
}

/*
 * StoreSourceSamples
 *		In a subtransaction of the recording transaction: store the samples
 *		of one source.  A failure (a value the store refuses, a partition
 *		that cannot be made) rolls back that source's rows only and becomes
 *		that source's error, backed off like any other; the other sources'
 *		samples are stored.  Sets s->rows to the rows written.  Raises only
 *		for what a subtransaction cannot contain (out of memory, interrupts).
 */
static void
StoreSourceSamples(Source *s, Samples *samples)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			first = s->first;
	int			n = s->rows;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		DmCtlResult *r;

		r = DmCtlExec("SELECT driftmirror._store_samples($1, $2, $3, $4) AS rows",
					  4, (Oid[]) {TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT2ARRAYOID, FLOAT8ARRAYOID},
					  (Datum[]) {PointerGetDatum(MakeArray(samples->ts + first, NULL, n, TIMESTAMPTZOID)),
						  PointerGetDatum(MakeArray(samples->rid + first, NULL, n, INT8OID)),
						  PointerGetDatum(MakeArray(samples->mid + first, NULL, n, INT2OID)),
					  PointerGetDatum(MakeArray(samples->val + first, NULL, n, FLOAT8OID))}, NULL);
		s->rows = (int) DmCtlGetInt64(r, 0, "rows", 0);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(cxt, false);

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		s->ok = false;
		s->rows = 0;
		s->error = TrimErrorIn(cxt, psprintf("storing the samples failed: %s", edata->message));
		s->label = psprintf("storing the samples failed (SQLSTATE %s)",
							unpack_sql_state(edata->sqlerrcode));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * Record
 *		One transaction: store the samples of every source (each on its own,
 *		see StoreSourceSamples) and the outcome of every poll.  Raises on
 *		error.
 */
static void
Record(List *sources, Samples *samples)
{
	int			n = list_length(sources);
	Datum	   *sid = palloc(sizeof(Datum) * n);
	Datum	   *ok = palloc(sizeof(Datum) * n);
	Datum	   *err = palloc(sizeof(Datum) * n);
	Datum	   *label = palloc(sizeof(Datum) * n);
	bool	   *errnull = palloc(sizeof(bool) * n);
	Datum	   *rows = palloc(sizeof(Datum) * n);
	Datum	   *wm = palloc(sizeof(Datum) * n);
	bool	   *wmnull = palloc(sizeof(bool) * n);
	ListCell   *lc;
	int			i = 0;

	DmCtlBegin("driftmirror: storing collected metrics");

	foreach(lc, sources)
	{
		Source	   *s = lfirst(lc);

		if (s->ok && s->rows > 0)
			StoreSourceSamples(s, samples);
	}

	foreach(lc, sources)
	{
		Source	   *s = lfirst(lc);

		sid[i] = Int64GetDatum(s->id);
		ok[i] = BoolGetDatum(s->ok);
		errnull[i] = (s->error == NULL);
		err[i] = s->error ? CStringGetTextDatum(s->error) : (Datum) 0;
		/* our own messages (no remote text) are their own label */
		label[i] = s->error ? CStringGetTextDatum(s->label ? s->label : s->error) : (Datum) 0;
		rows[i] = Int32GetDatum(s->rows);
		wmnull[i] = (s->is_postgres || !s->ok);
		wm[i] = wmnull[i] ? (Datum) 0 :
			DirectFunctionCall1(jsonb_in, CStringGetDatum(s->new_watermarks.data));
		i++;
	}

	(void) DmCtlExec("SELECT driftmirror._record_polls($1, $2, $3, $4, $5, $6)",
					 6, (Oid[]) {INT8ARRAYOID, BOOLARRAYOID, TEXTARRAYOID, INT4ARRAYOID, JSONBARRAYOID,
					 TEXTARRAYOID},
					 (Datum[]) {PointerGetDatum(MakeArray(sid, NULL, n, INT8OID)),
						 PointerGetDatum(MakeArray(ok, NULL, n, BOOLOID)),
						 PointerGetDatum(MakeArray(err, errnull, n, TEXTOID)),
						 PointerGetDatum(MakeArray(rows, NULL, n, INT4OID)),
						 PointerGetDatum(MakeArray(wm, wmnull, n, JSONBOID)),
					 PointerGetDatum(MakeArray(label, errnull, n, TEXTOID))}, NULL);
	DmCtlCommit();
}

/* ---------------------------------------------------------------- */
/* the phase                                                          */
/* ---------------------------------------------------------------- */

static PgTarget *
FindTarget(const char *conninfo)
{
	PgTarget   *t;

	for (t = Targets; t; t = t->next)
		if (strcmp(t->conninfo, conninfo) == 0)
			return t;
	t = MemoryContextAllocZero(TopMemoryContext, sizeof(PgTarget));
	t->conninfo = MemoryContextStrdup(TopMemoryContext, conninfo);
	t->cxt = AllocSetContextCreate(TopMemoryContext, "driftmirror metric target",
								   ALLOCSET_SMALL_SIZES);
	t->next = Targets;
	Targets = t;
	return t;
}

/* FreeTarget: forget a target, its poll cancelled */
static void
FreeTarget(PgTarget *t)
{
	TargetCancel(t);
	MemoryContextDelete(t->cxt);
	if (t->error)
		pfree(t->error);
	pfree(t->conninfo);
	pfree(t);
}

/* forget targets nobody polled for a while */
static void
CloseIdleTargets(void)
{
	PgTarget  **pp = &Targets;
	TimestampTz limit = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -DM_TARGET_IDLE_MS);

	while (*pp)
	{
		PgTarget   *t = *pp;

		if (t->last_used < limit && t->state != TS_BUSY)
		{
			*pp = t->next;
			FreeTarget(t);
		}
		else
			pp = &t->next;
	}
}

/*
 * RecordFinished
 *		Store the samples and outcomes of every source whose polls are
 *		finished, in one transaction, then forget those sources.  Raises on
 *		error (the caller discards everything in flight).
 */
static void
RecordFinished(void)
{
	List	   *done = NIL;
	List	   *still = NIL;
	ListCell   *lc;
	Samples		samples = {0};
	PgTarget   *t;
	MemoryContext old;

	foreach(lc, InFlight)
	{
		Source	   *s = lfirst(lc);

		if (SourceFinished(s))
			done = lappend(done, s);
	}
	if (done == NIL)
		return;

	foreach(lc, done)
	{
		Source	   *s = lfirst(lc);

		if (s->is_postgres)
		{
			t = s->target;
			if (t->state == TS_DONE)
			{
				int			before = samples.n;
				int			i;

				for (i = 0; i < PGM_COUNT; i++)
					if (t->have[i])
						AddSample(&samples, t->sample_at, s->resource_id, PgIds[i], t->values[i]);
				s->ok = true;
				s->first = before;
				s->rows = samples.n - before;
			}
			else
			{
				s->ok = false;
				s->error = pstrdup(t->error ? t->error : "poll did not finish");
				s->label = pstrdup(t->error ? t->label : "poll did not finish");
			}
		}
		else if (s->error != NULL)
			s->ok = false;
		else
			ParseHttpSource(s, &samples);
	}

	Record(done, &samples);

	/* forget the recorded sources; their targets are free again */
	old = MemoryContextSwitchTo(TopMemoryContext);
	foreach(lc, InFlight)
	{
		Source	   *s = lfirst(lc);

		if (list_member_ptr(done, s))
			MemoryContextDelete(s->cxt);
		else
			still = lappend(still, s);
	}
	list_free(InFlight);
	InFlight = still;
	MemoryContextSwitchTo(old);
	for (t = Targets; t; t = t->next)
		if (t->state == TS_DONE || t->state == TS_FAILED)
			t->state = TS_IDLE;
}

/*
 * DiscardAll
 *		After an error: drop every poll in flight without recording it.
 */
static void
DiscardAll(void)
{
	ListCell   *lc;
	PgTarget   *t;

	for (t = Targets; t; t = t->next)
		TargetCancel(t);
	foreach(lc, InFlight)
	{
		Source	   *s = (Source *) lfirst(lc);

		if (!s->is_postgres)
			HttpSourceCancel(s);
		MemoryContextDelete(s->cxt);
	}
	list_free(InFlight);
	InFlight = NIL;
}

/*
 * CollectInner
 *		Record what finished, then start the polls of the due sources.  May
 *		raise.
 */
static void
CollectInner(int64 *group_ids, int ngroups)
{
	MemoryContext cxt = CurrentMemoryContext;
	MetricIds	ids = {0};
	List	   *sources;
	ListCell   *lc;

	if (InFlight != NIL)
	{
		RecordFinished();
		MemoryContextSwitchTo(cxt);
	}
	if (ngroups == 0)
		return;

	sources = ReadSources(group_ids, ngroups, &ids, cxt);
	if (sources == NIL)
	{
		CloseIdleTargets();
		return;
	}
	pgstat_report_activity(STATE_RUNNING, "driftmirror: collecting metrics");

	foreach(lc, sources)
	{
		Source	   *s = lfirst(lc);
		MemoryContext old;

		old = MemoryContextSwitchTo(TopMemoryContext);
		InFlight = lappend(InFlight, s);
		/* in flight: it outlives this pass, until RecordFinished */
		MemoryContextSetParent(s->cxt, TopMemoryContext);
		MemoryContextSwitchTo(s->cxt);
		if (s->is_postgres)
		{
			PgTarget   *t = FindTarget(s->endpoint);

			s->target = t;
			/* a target already being polled serves this source too */
			if (t->state == TS_IDLE)
				TargetStart(t, s->timeout_ms);
		}
		else
			StartHttpSource(s, &ids);
		MemoryContextSwitchTo(old);
	}
	CloseIdleTargets();
}

/*
 * CollectionFailed
 *		Called in a PG_CATCH block of the collector's entry points: log the
 *		error as a WARNING, abort the transaction if asked, and drop every
 *		poll in flight (they restart on the next pass).  Never raises.
 */
static void
CollectionFailed(MemoryContext cxt, bool abort_xact)
{
	ErrorData  *edata = DmCtlCatch(cxt, abort_xact);

	DiscardAll();
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("driftmirror: metric collection failed: %s", edata->message)));
	FreeErrorData(edata);
}

/*
 * DmCollectMetrics
 *		The collection phase of a pass: record the polls that finished
 *		since the last pass, start those of the sources due now.  Never
 *		raises: errors are logged and the pass goes on.
 */
void
DmCollectMetrics(int64 *group_ids, int ngroups)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		CollectInner(group_ids, ngroups);
	}
	PG_CATCH();
	{
		CollectionFailed(cxt, true);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

/*
 * DmCollectorDiscard
 *		The extension is absent or the worker disabled: drop the polls in
 *		flight and close every connection.
 */
void
DmCollectorDiscard(void)
{
	if (InFlight != NIL)
		DiscardAll();
	while (Targets)
	{
		PgTarget   *t = Targets;

		Targets = t->next;
		FreeTarget(t);
	}
}

/*
 * DmMaybeRunMetricMaintenance
 *		Every driftmirror.metric_maintenance_interval: partitions ahead,
 *		retention, rollups, in one transaction.  Never raises.
 */
void
DmMaybeRunMetricMaintenance(bool force)
{
	static TimestampTz last_run = 0;
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();

	if (!force && last_run != 0 &&
		now < TimestampTzPlusMilliseconds(last_run, (int64) DmMetricMaintenanceS * 1000))
		return;
	last_run = now;

	PG_TRY();
	{
		DmCtlBegin("driftmirror: metric store maintenance");
		(void) DmCtlExec("SELECT driftmirror._metric_maintenance(pg_catalog.now())", 0, NULL, NULL, NULL);
		DmCtlCommit();
	}
	PG_CATCH();
	{
		FreeErrorData(DmCtlCatchWarn(cxt, "metric store maintenance failed"));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}
