/*-------------------------------------------------------------------------
 *
 * promote_poolers.c
 *	  A PostgreSQL promotion drives the pgbouncer routers of its resource
 *	  (write access) so that their clients wait instead of failing:
 *
 *	  - before the fence, outside the clients' wait: each one's [databases]
 *		file pointing at the new primary is written beside the router's
 *		file (fsync'd, not in place yet), its id is recorded in
 *		promotion.poolers_paused in its own committed transaction, and an
 *		admin console session is opened; then, once every pooler is that
 *		far, "PAUSE <db>" goes to all of them at once (each returns once
 *		every server connection of the database is released, so soon under
 *		transaction pooling).  The sessions stay open.  The wait is bounded
 *		by promote_timeout;
 *	  - after the flip and the unfence, on that same session and with no
 *		control-database transaction in between: the prepared file is
 *		renamed into place, RELOAD, RECONNECT <db>, SHOW DATABASES must show
 *		the new primary, "RESUME <db>".  Only then, with the clients going
 *		again, the record is cleared and the router's state is brought up
 *		to date (router.c);
 *	  - on a rollback (error, timeout, or a recovery after the driver was
 *		killed): the prepared files are removed and "RESUME <db>" is sent
 *		once the old primary is writable again;
 *	  - a promotion that ended (done, rolled back, refused or failed) with
 *		poolers still recorded (its driver could not resume them, or the
 *		mirror was dropped under it) is handed to a recovery worker by the
 *		main worker, which resumes them (DmPoolersResume).
 *
 *	  The record is cleared only once every recorded pooler has resumed (or
 *	  shows the database not paused), so a pooler is never left paused by a
 *	  driver that died.  A pooler that cannot be reached keeps the record
 *	  and the main worker retries.
 *
 *	  Memory: the console sessions and what goes with them live in the
 *	  memory context current at DmPoolersPause (the driver's) until
 *	  DmPoolersRelease.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/fd.h"
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
	char	   *databases_file;
	int			timeout_ms;
} Pooler;

/* a pooler this driver paused, with its console session still open */
typedef struct HeldPooler
{
	Pooler		pl;
	char	   *label;
	PGconn	   *conn;			/* NULL once closed */
	char	   *path;			/* the router's [databases] file */
	char	   *staged;			/* the new one, not in place yet (NULL: the
								 * file holds it already) */
	char	   *host;			/* where SHOW DATABASES must show the */
	char	   *port;			/* database after the switch */
	bool		paused;			/* PAUSE answered */
} HeldPooler;

static List *Held = NIL;

/* timings of the last pause and switch, for the step log (ms) */
static double PauseWaitMs = 0;
static TimestampTz FirstPauseSent = 0;

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

	if (r->nrows == 0 || DmCtlGet(r, 0, "name") == NULL)
		return false;
	out->id = DmCtlGet(r, 0, "id");
	out->name = DmCtlGet(r, 0, "name");
	out->endpoint = DmCtlGet(r, 0, "endpoint");
	out->database = DmCtlGet(r, 0, "database");
	out->timeout_ms = DmCtlGetInt32(r, 0, "timeout_ms", 2000);
	out->databases_file = DmCtlGet(r, 0, "databases_file");
	return true;
}

#define POOLER_COLUMNS \
	"SELECT r.id, r.name, r.endpoint, r.options ->> 'database' AS database, " \
	"  (extract(epoch FROM driftmirror._opt_interval(r.options -> 'timeout')) * 1000)::integer AS timeout_ms, " \
	"  r.options ->> 'databases_file' AS databases_file " \
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

/*
 * the routers removed (dm_remove_router) while recorded as paused: what
 * resuming them needs, kept in the promotion row (no id)
 */
static const char *const RemovedSql =
"SELECT NULL::bigint AS id, x.e ->> 'name' AS name, x.e ->> 'endpoint' AS endpoint, x.e ->> 'database' AS database, "
"  (extract(epoch FROM driftmirror._opt_interval(x.e -> 'timeout')) * 1000)::integer AS timeout_ms, NULL::text AS databases_file "
"FROM driftmirror.promotion p, pg_catalog.jsonb_array_elements(p.poolers_removed) WITH ORDINALITY x (e, n) "
"WHERE p.id OPERATOR(pg_catalog.=) $1::bigint "
"ORDER BY x.n OFFSET $2::integer LIMIT 1";

/* forget a removed router once it has resumed */
static void
RecordRemovedResumed(int64 promotion_id, const char *name)
{
	const char *args[2] = {psprintf(INT64_FORMAT, promotion_id), name};

	(void) DmCtlQueryText("UPDATE driftmirror.promotion p SET poolers_removed = NULLIF("
						   "  (SELECT coalesce(pg_catalog.jsonb_agg(x.e ORDER BY x.n), '[]') "
						   "   FROM pg_catalog.jsonb_array_elements(p.poolers_removed) WITH ORDINALITY x (e, n) "
						   "   WHERE (x.e ->> 'name') IS DISTINCT FROM $2), '[]'::jsonb) "
						   "WHERE p.id OPERATOR(pg_catalog.=) $1::bigint",
						   2, args);
}

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

static double
MsSince(TimestampTz start)
{
	return (double) (GetCurrentTimestamp() - start) / 1000.0;
}

/*
 * Stage
 *		Write the pooler's [databases] file pointing at new_primary beside
 *		its file, unless the file holds it already.  Raises: a pooler that
 *		could not be switched must not be paused.
 */
static void
Stage(HeldPooler *h, const char *new_primary)
{
	char	   *content;

	if (h->pl.databases_file == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgbouncer router \"%s\" has no databases_file", h->pl.name)));
	content = DmPgbouncerFileContent(h->pl.name, h->pl.database, new_primary,
									 &h->host, &h->port);
	h->path = DmPgbouncerFilePath(h->pl.databases_file);
	if (DmPgbouncerFileHolds(h->path, content))
		return;
	h->staged = psprintf("%s.promotion", h->path);
	DmPgbouncerWriteSynced(h->staged, content, h->pl.name);
}

/*
 * HoldOne
 *		Stage the switch, record the pooler and open its console session
 *		(in Held, not paused yet).  Raises; a pooler that could not even be
 *		reached is unrecorded (it was never paused).
 */
static HeldPooler *
HoldOne(int64 promotion_id, Pooler *pl, const char *new_primary, TimestampTz deadline)
{
	HeldPooler *h = palloc0(sizeof(HeldPooler));

	h->pl = *pl;
	h->label = psprintf("pgbouncer router %s", pl->name);
	if (GetCurrentTimestamp() >= deadline)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("no time was left to pause pgbouncer router \"%s\" before promote_timeout",
						pl->name)));

	Held = lappend(Held, h);	/* from here DmPoolersRelease cleans up */
	Stage(h, new_primary);

	/* recorded first: a driver that dies from here on is resumed */
	Record(promotion_id, pl->id, true);
	PG_TRY();
	{
		h->conn = DmRemoteConnectPlain(pl->endpoint, h->label,
									   Min(pl->timeout_ms, MsUntil(deadline)));
	}
	PG_CATCH();
	{
		Record(promotion_id, pl->id, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return h;
}

/*
 * DmPoolersPause
 *		See promote_poolers.h.  Every pooler is listed, staged, recorded
 *		and connected first; then PAUSE goes to all of them at once, and
 *		the clients' wait is the slowest one's.
 */
void
DmPoolersPause(int64 promotion_id, const char *new_primary, TimestampTz deadline,
			   char **details)
{
	Pooler		pl;
	List	   *poolers = NIL;
	List	   *held = NIL;
	ListCell   *lc;
	TimestampTz sent;
	int			n;

	PauseWaitMs = 0;
	FirstPauseSent = 0;
	*details = NULL;
	for (n = 0; NthPooler(ToPauseSql, promotion_id, n, &pl); n++)
	{
		Pooler	   *copy;

		if (pl.database == NULL)
			continue;
		copy = palloc(sizeof(Pooler));
		*copy = pl;
		poolers = lappend(poolers, copy);
	}
	foreach(lc, poolers)
	{
		CHECK_FOR_INTERRUPTS();
		held = lappend(held, HoldOne(promotion_id, lfirst(lc), new_primary, deadline));
	}
	if (held == NIL)
		return;

	/* the clients' wait starts here: each returns once its servers are released */
	sent = GetCurrentTimestamp();
	FirstPauseSent = sent;
	foreach(lc, held)
	{
		HeldPooler *h = lfirst(lc);

		DmRemoteSend(h->conn, h->label, psprintf("PAUSE %s", h->pl.database),
					 0, NULL, MsUntil(deadline));
	}
	foreach(lc, held)
	{
		HeldPooler *h = lfirst(lc);

		PQclear(DmRemoteCollect(h->conn, h->label, psprintf("PAUSE %s", h->pl.database),
								MsUntil(deadline)));
		h->paused = true;
	}
	PauseWaitMs = MsSince(sent);
	*details = psprintf("{\"poolers_paused\": %d, \"pooler_pause_wait_ms\": %.1f}",
						list_length(held), PauseWaitMs);
}

/*
 * SwitchHeld
 *		On the open session: put the staged file in place, RELOAD,
 *		RECONNECT, check, RESUME.  Raises (the pooler stays recorded).
 */
static void
SwitchHeld(HeldPooler *h)
{
	if (h->staged != NULL)
	{
		if (rename(h->staged, h->path) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not replace the databases file of router \"%s\": %m",
							h->pl.name)));
		h->staged = NULL;
		PQclear(DmRemoteExec(h->conn, h->label, "RELOAD", 0, NULL, h->pl.timeout_ms));
		PQclear(DmRemoteExec(h->conn, h->label, psprintf("RECONNECT %s", h->pl.database),
							 0, NULL, h->pl.timeout_ms));
	}
	DmPgbouncerCheckTarget(h->conn, h->label, h->pl.database, h->host, h->port,
						   h->pl.timeout_ms);
	PQclear(DmRemoteExec(h->conn, h->label, psprintf("RESUME %s", h->pl.database),
						 0, NULL, h->pl.timeout_ms));
}

/*
 * ApplyPoolerRouters
 *		Point the group's pgbouncer routers at the node their routes name
 *		(router.c records each outcome).  Raises only if the control
 *		database fails.
 */
static void
ApplyPoolerRouters(int64 promotion_id)
{
	const char *args[1] = {psprintf(INT64_FORMAT, promotion_id)};
	char	   *gid;

	gid = DmCtlValueText("SELECT group_id FROM driftmirror.promotion WHERE id OPERATOR(pg_catalog.=) $1::bigint",
						 1, args);
	if (gid != NULL)
		DmApplyRoutersOfKind(strtoll(gid, NULL, 10), "pgbouncer", 2000);
}

/*
 * DmPoolersSwitchResume
 *		See promote_poolers.h.
 */
void
DmPoolersSwitchResume(int64 promotion_id, char **details)
{
	MemoryContext cxt = CurrentMemoryContext;
	ListCell   *lc;
	List	   *done = NIL;
	TimestampTz start = GetCurrentTimestamp();
	double		switch_ms;
	double		held_ms;
	int			switched = 0;

	*details = NULL;

	/* first every held pooler, with nothing else in between */
	foreach(lc, Held)
	{
		HeldPooler *h = lfirst(lc);

		if (h->conn == NULL || !h->paused)
			continue;
		PG_TRY();
		{
			SwitchHeld(h);
			done = lappend(done, h);
		}
		PG_CATCH();
		{
			/* left to the slower way below, which reconnects */
			ErrorData  *edata = DmCtlCatch(cxt, false);

			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("driftmirror: promotion " INT64_FORMAT ": could not switch pgbouncer router \"%s\" on its console session, retrying: %s",
							promotion_id, h->pl.name, edata->message)));
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	switch_ms = MsSince(start);
	held_ms = FirstPauseSent != 0 ? MsSince(FirstPauseSent) : 0;

	/* then, with the clients going again, the bookkeeping */
	foreach(lc, done)
	{
		HeldPooler *h = lfirst(lc);

		Record(promotion_id, h->pl.id, false);
		switched++;
	}
	if (switched > 0)
	{
		if (DmRouterFilesDirectory != NULL && DmRouterFilesDirectory[0] == '/')
			fsync_fname(DmRouterFilesDirectory, true);
		*details = psprintf("{\"poolers_switched\": %d, \"pooler_switch_resume_ms\": %.1f, "
							"\"pooler_hold_ms\": %.1f}", switched, switch_ms, held_ms);
	}
	DmPoolersRelease();

	/*
	 * The router rows (their files hold the change already, so this only
	 * reloads and records them), then whatever is still recorded, through
	 * new sessions
	 */
	if (switched > 0)
		ApplyPoolerRouters(promotion_id);
	DmPoolersResume(promotion_id, true);
}

/*
 * DmPoolersRelease
 *		See promote_poolers.h.
 */
void
DmPoolersRelease(void)
{
	ListCell   *lc;

	foreach(lc, Held)
	{
		HeldPooler *h = lfirst(lc);

		if (h->staged != NULL)
			(void) unlink(h->staged);
		DmRemoteClose(h->conn);
		h->conn = NULL;
	}
	list_free_deep(Held);
	Held = NIL;
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
	volatile int pass;
	volatile int failed = 0;
	char	   *volatile first_error = NULL;

	/* a rollback: the prepared switches are not to be made */
	DmPoolersRelease();

	if (!NthPooler(PausedSql, promotion_id, 0, &pl) &&
		!NthPooler(RemovedSql, promotion_id, 0, &pl))
		return;

	if (switch_first)
		ApplyPoolerRouters(promotion_id);

	/*
	 * resume each (the routers, then those removed since); one that fails
	 * stays recorded, the others go on
	 */
	for (pass = 0; pass < 2; pass++)
	{
		for (n = 0; NthPooler(pass == 0 ? PausedSql : RemovedSql, promotion_id, n, &pl);)
		{
			volatile bool ok = false;

			CHECK_FOR_INTERRUPTS();
			PG_TRY();
			{
				if (pl.database != NULL && pl.endpoint != NULL)
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
			if (!ok)
				n++;
			else if (pass == 0)
				Record(promotion_id, pl.id, false); /* the next one moves to n */
			else
				RecordRemovedResumed(promotion_id, pl.name);
		}
	}
	if (failed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%d pgbouncer router(s) paused by the promotion could not be resumed yet: %s",
						failed, first_error)));
}
