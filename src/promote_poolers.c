/*-------------------------------------------------------------------------
 *
 * promote_poolers.c
 *	  A PostgreSQL promotion drives the pgbouncer routers of its resource
 *	  (write access) so that their clients wait instead of failing:
 *
 *	  - before the fence: "PAUSE <db>" on each one's admin console (it
 *		returns once every server connection of the database is released,
 *		so at once under transaction pooling), each router's id recorded in
 *		promotion.poolers_paused in its own committed transaction BEFORE it
 *		is asked; the wait is bounded by promote_timeout;
 *	  - after the flip and the unfence: the router is pointed at the new
 *		primary (its [databases] file, RELOAD, RECONNECT: router_pgbouncer.c)
 *		and then "RESUME <db>";
 *	  - on a rollback (error, timeout, or a recovery after the driver was
 *		killed): "RESUME <db>" once the old primary is writable again.
 *
 *	  The record is cleared only once every recorded pooler has resumed (or
 *	  shows the database not paused), so a pooler is never left paused by a
 *	  driver that died: the recovery worker resumes it.  A pooler that
 *	  cannot be reached keeps the promotion (or its rollback) pending and
 *	  the main worker retries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "libpq-fe.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "promote_poolers.h"
#include "remote_conn.h"
#include "router.h"

/* one pooler of the promotion */
typedef struct Pooler
{
	char	   *id;
	char	   *name;
	char	   *endpoint;
	char	   *database;
	int			timeout_ms;
} Pooler;

/*
 * NthPooler
 *		The n-th (from 0) pgbouncer router that sql (promotion id as $1)
 *		lists, or false when there is none.
 */
static bool
NthPooler(const char *sql, int64 promotion_id, int n, Pooler *out)
{
	const char *args[2] = {psprintf(INT64_FORMAT, promotion_id), psprintf("%d", n)};
	DmCtlResult *r = DmCtlQueryText(sql, 2, args);

	if (r->nrows == 0 || DmCtlGet(r, 0, "id") == NULL)
		return false;
	out->id = DmCtlGet(r, 0, "id");
	out->name = DmCtlGet(r, 0, "name");
	out->endpoint = DmCtlGet(r, 0, "endpoint");
	out->database = DmCtlGet(r, 0, "database");
	out->timeout_ms = DmCtlGetInt32(r, 0, "timeout_ms", 2000);
	return true;
}

#define POOLER_COLUMNS \
	"SELECT r.id, r.name, r.endpoint, r.options ->> 'database' AS database, " \
	"  (extract(epoch FROM driftmirror._opt_interval(r.options -> 'timeout')) * 1000)::integer AS timeout_ms " \
	"FROM driftmirror.router r JOIN driftmirror.promotion p ON p.id OPERATOR(pg_catalog.=) $1::bigint "

/* the promotion's write poolers, to pause */
static const char *const ToPauseSql =
POOLER_COLUMNS
"WHERE r.group_id OPERATOR(pg_catalog.=) p.group_id AND r.resource_id OPERATOR(pg_catalog.=) p.resource_id "
"  AND r.kind OPERATOR(pg_catalog.=) 'pgbouncer' "
"  AND coalesce(r.options ->> 'access', 'write') OPERATOR(pg_catalog.=) 'write' "
"ORDER BY r.id OFFSET $2::integer LIMIT 1";

/* the poolers it recorded as paused */
static const char *const PausedSql =
POOLER_COLUMNS
"WHERE r.id OPERATOR(pg_catalog.=) ANY (p.poolers_paused) "
"ORDER BY r.id OFFSET $2::integer LIMIT 1";

static void
Record(int64 promotion_id, const char *router_id, bool add)
{
	const char *args[2] = {psprintf(INT64_FORMAT, promotion_id), router_id};

	(void) DmCtlQueryText(add ?
						   "UPDATE driftmirror.promotion SET poolers_paused = "
						   "pg_catalog.array_append(pg_catalog.array_remove(coalesce(poolers_paused, '{}'), $2::bigint), $2::bigint) "
						   "WHERE id OPERATOR(pg_catalog.=) $1::bigint" :
						   "UPDATE driftmirror.promotion SET poolers_paused = "
						   "NULLIF(pg_catalog.array_remove(poolers_paused, $2::bigint), '{}') "
						   "WHERE id OPERATOR(pg_catalog.=) $1::bigint",
						   2, args);
}

static int
MsUntil(TimestampTz deadline)
{
	long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

	return (int) Max(Min(ms, INT_MAX), 1);
}

/*
 * ConnectOrUnrecord
 *		The pooler's admin console within the deadline; a pooler that
 *		cannot be reached was never paused, so it is unrecorded.  Raises.
 */
static PGconn *
ConnectOrUnrecord(int64 promotion_id, Pooler *pl, const char *label, TimestampTz deadline)
{
	PGconn	   *conn = NULL;

	PG_TRY();
	{
		conn = DmRemoteConnectPlain(pl->endpoint, label,
									Min(pl->timeout_ms, MsUntil(deadline)));
	}
	PG_CATCH();
	{
		Record(promotion_id, pl->id, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return conn;
}

/*
 * PauseOne
 *		Record the pooler, then PAUSE its database within the deadline.
 *		Raises; a pooler that could not even be reached is unrecorded.
 */
static void
PauseOne(int64 promotion_id, Pooler *pl, TimestampTz deadline)
{
	char	   *label = psprintf("pgbouncer router %s", pl->name);
	PGconn	   *volatile conn = NULL;

	if (GetCurrentTimestamp() >= deadline)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("no time was left to pause pgbouncer router \"%s\" before promote_timeout",
						pl->name)));

	/* recorded first: a driver that dies from here on is resumed */
	Record(promotion_id, pl->id, true);
	conn = ConnectOrUnrecord(promotion_id, pl, label, deadline);
	PG_TRY();
	{
		/* returns once its server connections are released */
		PQclear(DmRemoteExec(conn, label, psprintf("PAUSE %s", pl->database),
							 0, NULL, MsUntil(deadline)));
	}
	PG_FINALLY();
	{
		DmRemoteClose(conn);
	}
	PG_END_TRY();
}

/*
 * DmPoolersPause
 *		See promote_poolers.h.
 */
void
DmPoolersPause(int64 promotion_id, TimestampTz deadline)
{
	Pooler		pl;
	int			n;

	for (n = 0; NthPooler(ToPauseSql, promotion_id, n, &pl); n++)
	{
		CHECK_FOR_INTERRUPTS();
		if (pl.database != NULL)
			PauseOne(promotion_id, &pl, deadline);
	}
}

/*
 * Resume
 *		RESUME the pooler's database unless SHOW DATABASES shows it not
 *		paused (never paused, or resumed already).  Raises.
 */
static void
Resume(Pooler *pl)
{
	char	   *label = psprintf("pgbouncer router %s", pl->name);
	PGconn	   *volatile conn = NULL;

	PG_TRY();
	{
		PGresult   *res;
		int			c_name;
		int			c_paused;
		int			row;
		bool		paused = false;

		conn = DmRemoteConnectPlain(pl->endpoint, label, pl->timeout_ms);
		res = DmRemoteExec(conn, label, "SHOW DATABASES", 0, NULL, pl->timeout_ms);
		c_name = PQfnumber(res, "name");
		c_paused = PQfnumber(res, "paused");
		for (row = 0; row < PQntuples(res) && c_name >= 0 && c_paused >= 0; row++)
			if (strcmp(PQgetvalue(res, row, c_name), pl->database) == 0)
				paused = strcmp(PQgetvalue(res, row, c_paused), "0") != 0;
		PQclear(res);
		if (paused)
			PQclear(DmRemoteExec(conn, label, psprintf("RESUME %s", pl->database),
								 0, NULL, pl->timeout_ms));
	}
	PG_FINALLY();
	{
		DmRemoteClose(conn);
	}
	PG_END_TRY();
}

/*
 * DmPoolersResume
 *		See promote_poolers.h.
 */
void
DmPoolersResume(int64 promotion_id, bool switch_first)
{
	MemoryContext cxt = CurrentMemoryContext;
	Pooler		pl;
	volatile int n;
	volatile int failed = 0;
	char	   *volatile first_error = NULL;

	if (!NthPooler(PausedSql, promotion_id, 0, &pl))
		return;

	if (switch_first)
	{
		const char *args[1] = {psprintf(INT64_FORMAT, promotion_id)};
		char	   *gid;

		/* the routes name the new primary: point the poolers at it */
		gid = DmCtlValueText("SELECT group_id FROM driftmirror.promotion WHERE id OPERATOR(pg_catalog.=) $1::bigint",
							 1, args);
		if (gid != NULL)
			DmApplyRoutersOfKind(strtoll(gid, NULL, 10), "pgbouncer", 2000);
	}

	/* resume each; one that fails stays recorded, the others go on */
	for (n = 0; NthPooler(PausedSql, promotion_id, n, &pl);)
	{
		volatile bool ok = false;

		CHECK_FOR_INTERRUPTS();
		PG_TRY();
		{
			if (pl.database != NULL)
				Resume(&pl);
			ok = true;
		}
		PG_CATCH();
		{
			ErrorData  *edata = DmCtlCatch(cxt, false);

			if (first_error == NULL)
				first_error = psprintf("%s", edata->message);
			FreeErrorData(edata);
			failed++;
		}
		PG_END_TRY();
		if (ok)
			Record(promotion_id, pl.id, false); /* the next one moves to n */
		else
			n++;
	}
	if (failed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%d pgbouncer router(s) paused by the promotion could not be resumed yet: %s",
						failed, first_error)));
}
