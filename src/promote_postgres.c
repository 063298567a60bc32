/*-------------------------------------------------------------------------
 *
 * promote_postgres.c
 *	  The PostgreSQL switchover: one promotion of a postgres resource run
 *	  as a persisted state machine (states in sql/install/70_promotion_catalog.sql):
 *	  guardrails, reverse slot, fence, catch-up, sequences, the flip,
 *	  unfence, reverse replication, or the rollback.  Run by the promotion
 *	  driver (promote_driver.c), which holds the promotion's lock; it knows
 *	  neither the driver nor the actuator switchover (promote.h).
 *
 * Invariants (PostgreSQL promotions):
 *	 - every state change is committed in the control database BEFORE the
 *	   action it announces is taken on a node, and every action is
 *	   idempotent, so a promotion can be re-driven from its recorded state
 *	   (one exception, harmless in any state: the first catch-up check,
 *	   which also sets the mirror's sequences ahead, is sent while the
 *	   fence step is being recorded; a mirror's sequences are not used
 *	   until a promotion sets them again);
 *	 - no transaction is open while the driver waits for a node:
 *	   control-database statements run in their own short transactions
 *	   (ctl_txn.c), and a node's answer is collected outside them;
 *	 - inside the clients' write pause (fence to unfence) the driver does
 *	   as few round trips as it can, and nothing for the first time: the
 *	   pause's control-database transactions and node queries are
 *	   rehearsed before it (Rehearse);
 *	 - the mirror is never unfenced before the flip (_promotion_flip, the
 *	   commit point), and the old primary is unfenced only by a rollback,
 *	   which happens only before the flip: so at no moment are both nodes
 *	   writable;
 *	 - before the flip, any error or the deadline (promote_timeout) rolls
 *	   back; after it, the promotion is finished, by this worker or, after
 *	   an interruption, by a recovery worker started by the main worker.
 *
 * Memory: everything lives in DriverContext, the driver's context, current
 * when DmDrivePostgresPromotion is called; ctl_txn.c returns every row
 * there and keeps it current.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "contract.h"
#include "ctl_txn.h"
#include "driftmirror.h"
#include "promote.h"
#include "promote_postgres.h"
#include "promote_poolers.h"
#include "remote_conn.h"

/* what the driver knows about its promotion (from _promotion_info) */
typedef struct PromInfo
{
	int64		id;
	char	   *group;
	char	   *resource;
	char	   *state;
	char	   *old_primary;
	char	   *new_primary;
	char	   *old_publication;
	char	   *old_slot;
	char	   *old_subscription;
	char	   *new_publication;
	char	   *new_slot;
	char	   *new_subscription;
	bool		two_way;
	bool		mirror_fence;
	char	   *mirror_state;
	char	   *mirror_lag_seconds;
	char	   *fence_lsn;
	int64		remaining_ms;
	char	   *max_lag_bytes;
	char	   *max_lag_seconds;
	char	   *max_xact_seconds;
	int64		fence_grace_ms;
	char	   *sequence_gap;
	TimestampTz deadline;		/* local clock */
	char	   *sequences;		/* read at the fence (jsonb text), or NULL */
	int			sequences_synced;	/* set on the mirror, or -1 */
} PromInfo;

static MemoryContext DriverContext = NULL;
static PGconn *OldConn = NULL;	/* old primary */
static PGconn *NewConn = NULL;	/* mirror, the new primary */
static char OldLabel[256];
static char NewLabel[256];

/*
 * The old primary's fence is set without waiting for its fence file
 * (driftmirror.fence_durable off), and this call, which writes the file,
 * runs on OldConn while the driver works elsewhere: collected before the
 * flip at the latest, and before anything else is sent on OldConn
 * (CollectFenceFile).
 */
static const char *const FenceFileSql = "SELECT driftmirror_node.fence_set('switchover')";
static bool FenceFilePending = false;
static bool CatchUpPending = false;	/* a catch-up check runs on the mirror */

static TimestampTz FencedAt = 0;
static bool DeadlineRaised = false; /* CheckDeadline's error is on its way */
static TimestampTz UnfencedAt = 0;

static char *
Int64Text(int64 v)
{
	return psprintf(INT64_FORMAT, v);
}

/*
 * Step
 *		Record a step (see _promotion_step) in its own transaction.
 */
static void
Step(PromInfo *p, const char *step, const char *outcome, const char *state,
	 const char *reason, const char *details, const char *lsn)
{
	const char *args[7] = {Int64Text(p->id), step, outcome, state, reason, details, lsn};

	DmCtlValueText("SELECT driftmirror._promotion_step($1::bigint, $2, $3, $4, $5, $6::jsonb, $7::pg_lsn)",
			 7, args);
	if (state)
		p->state = pstrdup(state);
}

/* one step boundary: see Advance */
static const char *const AdvanceSql =
"SELECT driftmirror._promotion_advance($1::bigint, $2, $3::pg_lsn, $4::jsonb, $5::jsonb, $6, $7, $8::boolean)";

/*
 * Advance
 *		One transaction at a step boundary: figures, the end of step done,
 *		the flip if asked, the start of step next in state next_state.
 */
static void
Advance(PromInfo *p, const char *done, const char *lsn, const char *details,
		const char *figures, const char *next, const char *next_state, bool flip)
{
	const char *args[8] = {Int64Text(p->id), done, lsn, details, figures, next,
	next_state, flip ? "true" : "false"};

	/*
	 * Inside the write pause and before the flip, a step boundary need not
	 * wait for its WAL flush: if a crash lost it, the promotion would be
	 * found in the state before, also before the flip, and rolled back all
	 * the same; the flip's own commit (synchronous) flushes it with the
	 * flip.  Outside the pause, and for the flip, the usual commit.
	 */
	DmCtlAsyncCommit(!flip && (strcmp(done, "fence") == 0 || strcmp(done, "catch_up") == 0));
	PG_TRY();
	{
		(void) DmCtlValueText(AdvanceSql, 8, args);
	}
	PG_FINALLY();
	{
		DmCtlAsyncCommit(false);
	}
	PG_END_TRY();
	if (flip)
		p->state = "unfencing";
	if (next_state)
		p->state = pstrdup(next_state);
}

/* SetFigures: store figures (a jsonb object) in the promotion row */
static void
SetFigures(PromInfo *p, const char *json)
{
	const char *args[2] = {Int64Text(p->id), json};

	DmCtlValueText("SELECT driftmirror._promotion_set($1::bigint, $2::jsonb)", 2, args);
}

/*
 * LoadInfo
 *		Read the promotion's row (and its mirror's) into *p: the composite
 *		type driftmirror.promotion_info from _promotion_info, its attributes
 *		by name, after checking that the installed SQL offers every column
 *		the library reads (contract.c).  Strings are copied into the memory
 *		context current at the call.  Raises if there is no such promotion,
 *		or if the SQL does not match the library.
 */
static void
LoadInfo(int64 id, PromInfo *p)
{
	DmCtlResult *r;
	char	   *fenced_at;
	char	   *remaining_ms;
	char	   *fence_grace_ms;

	DmCtlBegin(NULL);
	DmContractCheck();
	r = DmCtlExec("SELECT * FROM driftmirror._promotion_info($1)",
				  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL);
	DmCtlCommit();
	if (r->nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("promotion " INT64_FORMAT " does not exist", id)));

	/* the text of attribute name of type type, or NULL */
#define INFO_TEXT(name, type) \
	DmCtlGetAt(r, 0, DmContractAttnum(r->desc, "driftmirror.promotion_info", name, type))

	memset(p, 0, sizeof(*p));
	p->id = id;
	p->group = INFO_TEXT("group_name", TEXTOID);
	p->resource = INFO_TEXT("resource_name", TEXTOID);
	p->state = INFO_TEXT("state", TEXTOID);
	p->old_primary = INFO_TEXT("old_primary", TEXTOID);
	p->new_primary = INFO_TEXT("new_primary", TEXTOID);
	p->old_publication = INFO_TEXT("old_publication", TEXTOID);
	p->old_slot = INFO_TEXT("old_slot", TEXTOID);
	p->old_subscription = INFO_TEXT("old_subscription", TEXTOID);
	p->new_publication = INFO_TEXT("new_publication", TEXTOID);
	p->new_slot = INFO_TEXT("new_slot", TEXTOID);
	p->new_subscription = INFO_TEXT("new_subscription", TEXTOID);
	p->two_way = strcmp(INFO_TEXT("two_way", BOOLOID), "t") == 0;
	p->mirror_fence = strcmp(INFO_TEXT("mirror_fence", BOOLOID), "t") == 0;
	p->mirror_state = INFO_TEXT("mirror_state", TEXTOID);
	p->mirror_lag_seconds = INFO_TEXT("mirror_lag_seconds", FLOAT8OID);
	p->fence_lsn = INFO_TEXT("fence_lsn", LSNOID);
	remaining_ms = INFO_TEXT("remaining_ms", INT8OID);
	p->max_lag_bytes = INFO_TEXT("max_lag_bytes", INT8OID);
	p->max_lag_seconds = INFO_TEXT("max_lag_seconds", NUMERICOID);
	p->max_xact_seconds = INFO_TEXT("max_xact_seconds", NUMERICOID);
	fence_grace_ms = INFO_TEXT("fence_grace_ms", INT8OID);
	p->sequence_gap = INFO_TEXT("sequence_gap", INT8OID);
	fenced_at = INFO_TEXT("fenced_at", TIMESTAMPTZOID);
#undef INFO_TEXT

	p->sequences_synced = -1;
	p->remaining_ms = remaining_ms ? strtoll(remaining_ms, NULL, 10) : 0;
	p->fence_grace_ms = fence_grace_ms ? strtoll(fence_grace_ms, NULL, 10) : 0;
	if (fenced_at)
		FencedAt = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
														   CStringGetDatum(fenced_at),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
	p->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), p->remaining_ms);

	snprintf(OldLabel, sizeof(OldLabel), "%s/%s old primary", p->group, p->resource);
	snprintf(NewLabel, sizeof(NewLabel), "%s/%s mirror (new primary)", p->group, p->resource);
}

/* ---- node helpers ---- */

/* RemainingMs: milliseconds left before the deadline (at least 1) */
static int
RemainingMs(PromInfo *p)
{
	long		secs;
	int			usecs;

	if (GetCurrentTimestamp() >= p->deadline)
		return 1;
	TimestampDifference(GetCurrentTimestamp(), p->deadline, &secs, &usecs);
	return (int) Min((int64) secs * 1000 + usecs / 1000 + 1, INT_MAX);
}

/*
 * CheckDeadline
 *		Before the flip: raise the timeout error once promote_timeout has
 *		passed, naming the step.
 */
static void
CheckDeadline(PromInfo *p, const char *step)
{
	if (GetCurrentTimestamp() < p->deadline)
		return;
	DeadlineRaised = true;
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("promotion of resource \"%s\" of group \"%s\" timed out in step %s",
					p->resource, p->group, step),
			 errhint("The limit is the group option promote_timeout; dm_promote accepts it in its options too.")));
}

/*
 * ConnectNode
 *		A hardened node session (remote_conn.c) within timeout_ms in all:
 *		the connection and the node-session set-up share the deadline.
 *		Raises; leaves nothing open on error.
 */
static PGconn *
ConnectNode(const char *conninfo, const char *label, int timeout_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													timeout_ms > 0 ? timeout_ms : DmConnectTimeoutMs);
	PGconn	   *c = DmRemoteConnect(conninfo, label, timeout_ms);

	PG_TRY();
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		DmRemoteNodeSession(c, label, 0, (int) Max(left, 1));
	}
	PG_CATCH();
	{
		DmRemoteClose(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return c;
}

/*
 * OldPrimary, NewPrimary
 *		The driver's session on each node, (re)connected within timeout_ms
 *		when there is none or the last one was abandoned after a timeout.
 */
static void CollectFenceFile(PromInfo *p);
static bool TestPauseArmed(const char *step);
static void SendCatchUpCheck(PromInfo *p, const char *fence_lsn);
static char *CollectCatchUpCheck(PromInfo *p);

static PGconn *
OldPrimary(PromInfo *p, int timeout_ms)
{
	CollectFenceFile(p);
	if (OldConn != NULL && PQstatus(OldConn) != CONNECTION_OK)
	{
		DmRemoteClose(OldConn);
		OldConn = NULL;
	}
	if (OldConn == NULL)
		OldConn = ConnectNode(p->old_primary, OldLabel, timeout_ms);
	return OldConn;
}

static PGconn *
NewPrimary(PromInfo *p, int timeout_ms)
{
	/* a check left pending is read and dropped (CatchUp sends another) */
	if (CatchUpPending && NewConn != NULL && PQstatus(NewConn) == CONNECTION_OK)
		(void) CollectCatchUpCheck(p);
	CatchUpPending = false;
	if (NewConn != NULL && PQstatus(NewConn) != CONNECTION_OK)
	{
		DmRemoteClose(NewConn);
		NewConn = NULL;
	}
	if (NewConn == NULL)
		NewConn = ConnectNode(p->new_primary, NewLabel, timeout_ms);
	return NewConn;
}

static void
CloseNodes(void)
{
	FenceFilePending = false;
	CatchUpPending = false;
	DmRemoteClose(OldConn);
	DmRemoteClose(NewConn);
	OldConn = NULL;
	NewConn = NULL;
}

/* Nap: sleep a little, interruptibly */
static void
Nap(long ms)
{
	int			rc;

	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* ---- the steps ---- */

/* what both nodes report for the guardrails */
#define SCHEMA_SQL \
	"(SELECT coalesce(pg_catalog.array_agg(pg_catalog.format('%I.%I.%I %s%s', n.nspname, c.relname, " \
	"a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END) " \
	"ORDER BY 1), '{}') FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace " \
	"JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid " \
	"WHERE c.relkind IN ('r', 'p') AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped " \
	"AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'driftmirror_node') " \
	"AND n.nspname NOT LIKE 'pg\\_%' AND NOT c.relispartition)"

/*
 * the old primary's sequences (jsonb text: name, value, increment, bounds),
 * read once it is fenced: no client can advance one any more
 */
#define SEQUENCES_SQL \
	"(SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(" \
	"'s', pg_catalog.format('%I.%I', schemaname, sequencename), 'v', last_value, " \
	"'i', increment_by, 'lo', min_value, 'hi', max_value)), '[]')::text " \
	"FROM pg_catalog.pg_sequences WHERE last_value IS NOT NULL)"

/*
 * on the mirror: set the sequences of list $3 to their value plus the
 * safety gap $4 (increments), and count them
 */
#define SETVAL_SQL \
	"(SELECT pg_catalog.count(pg_catalog.setval(x.s::pg_catalog.regclass, " \
	"  CASE WHEN x.i OPERATOR(pg_catalog.>) 0 " \
	"       THEN LEAST(x.hi::numeric, x.v::numeric OPERATOR(pg_catalog.+) (x.i::numeric OPERATOR(pg_catalog.*) $4::numeric)) " \
	"       ELSE GREATEST(x.lo::numeric, x.v::numeric OPERATOR(pg_catalog.+) (x.i::numeric OPERATOR(pg_catalog.*) $4::numeric)) " \
	"  END::bigint, true)) " \
	"FROM pg_catalog.jsonb_to_recordset($3::jsonb) AS x(s text, v bigint, i bigint, lo bigint, hi bigint))"

/*
 * Guardrails
 *		Read both nodes and compare the figures with the limits.  Returns
 *		NULL when every check passes, else the reasons (one per line); the
 *		figures are stored in the promotion row either way.
 */
static char *
Guardrails(PromInfo *p)
{
	const char *pargs[2] = {p->old_slot, p->max_xact_seconds};
	const char *margs[1] = {p->old_subscription};
	char	   *old_json;
	char	   *new_json;
	char	   *verdict;
	int			t = RemainingMs(p);

	old_json = DmRemoteValue(OldPrimary(p, t), OldLabel,
						   "SELECT pg_catalog.jsonb_build_object("
						   "'slot_exists', EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1),"
						   "'lag_bytes', (SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
						   "   FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1),"
						   "'long_xacts', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity "
						   "   WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database() AND backend_xid IS NOT NULL "
						   "   AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() "
						   "   AND xact_start OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2::float8))),"
						   "'oldest_write_xact_seconds', (SELECT pg_catalog.round(EXTRACT(epoch FROM pg_catalog.max(pg_catalog.now() OPERATOR(pg_catalog.-) xact_start))::numeric, 3) "
						   "   FROM pg_catalog.pg_stat_activity WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database() "
						   "   AND backend_xid IS NOT NULL AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()),"
						   "'prepared_xacts', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_xacts "
						   "   WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database()),"
						   "'oldest_prepared_seconds', (SELECT pg_catalog.round(EXTRACT(epoch FROM pg_catalog.max(pg_catalog.now() OPERATOR(pg_catalog.-) prepared))::numeric, 3) "
						   "   FROM pg_catalog.pg_prepared_xacts WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database()),"
						   "'schema', " SCHEMA_SQL ")::text",
						   2, pargs, t);
	t = RemainingMs(p);
	new_json = DmRemoteValue(NewPrimary(p, t), NewLabel,
						   "SELECT pg_catalog.jsonb_build_object("
						   "'sub_exists', s.oid IS NOT NULL, 'sub_enabled', s.subenabled,"
						   "'worker_running', EXISTS (SELECT FROM pg_catalog.pg_stat_subscription w "
						   "   WHERE w.subid OPERATOR(pg_catalog.=) s.oid AND w.pid IS NOT NULL AND w.relid IS NULL),"
						   "'tables_not_ready', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_subscription_rel r "
						   "   WHERE r.srsubid OPERATOR(pg_catalog.=) s.oid AND r.srsubstate OPERATOR(pg_catalog.<>) 'r'),"
						   "'apply_errors', st.apply_error_count, 'sync_errors', st.sync_error_count,"
						   "'worker_uptime_seconds', (SELECT pg_catalog.round(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) a.backend_start)::numeric, 1) "
						   "   FROM pg_catalog.pg_stat_subscription w JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) w.pid "
						   "   WHERE w.subid OPERATOR(pg_catalog.=) s.oid AND w.relid IS NULL),"
						   "'schema', " SCHEMA_SQL ")::text "
						   "FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_subscription s "
						   "  ON s.subname OPERATOR(pg_catalog.=) $1 AND s.subdbid OPERATOR(pg_catalog.=) "
						   "     (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) "
						   "LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid OPERATOR(pg_catalog.=) s.oid",
						   1, margs, t);

	/* compare in the control database, where the limits are */
	{
		const char *args[3] = {Int64Text(p->id), old_json, new_json};

		verdict = DmCtlValueText("SELECT driftmirror._promotion_guardrails($1::bigint, $2::jsonb, $3::jsonb)",
						   3, args);
	}
	return verdict;
}

/*
 * on the old primary: client sessions of the database holding a
 * transaction id (n, pids), the WAL insert position when there is none,
 * and the prepared transactions of the database, counted after the
 * sessions were read (the target list after the aggregate it reads): with
 * no writer left, none can be preparing, so the count is final
 */
#define WRITERS_SQL \
	"SELECT w.n, w.pids, CASE WHEN w.n OPERATOR(pg_catalog.=) 0 THEN pg_catalog.pg_current_wal_lsn() END, " \
	"  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_xacts " \
	"   WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database()) " \
	"FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.array_agg(pid) AS pids " \
	"      FROM pg_catalog.pg_stat_activity " \
	"      WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database() " \
	"        AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() " \
	"        AND backend_type OPERATOR(pg_catalog.=) 'client backend' " \
	"        AND backend_xid IS NOT NULL) w"

/*
 * a commit of the driver's own that flushes all WAL before it: it must
 * write WAL and have a transaction id, and commit with synchronous_commit
 * on (a transaction that only took an id, such as SELECT txid_current(),
 * commits asynchronously whatever the setting: its commit record waits for
 * the WAL writer's next round, and so would the WAL sender).  A
 * transactional logical decoding message (prefix driftmirror) is both;
 * subscribers do not ask for messages, so the decoder skips it.  Then the
 * flushed position is the fence LSN, read with the sequences, final now
 * that the fence refuses nextval.  Without it a client that commits with
 * synchronous_commit off could be told "committed" for a commit record
 * the mirror is never waited for.
 */
#define FLUSH_SQL \
	"SELECT pg_catalog.pg_logical_emit_message(true, 'driftmirror', 'fence') " \
	"FROM (SELECT pg_catalog.set_config('synchronous_commit', 'on', true) AS sync) s " \
	"WHERE s.sync OPERATOR(pg_catalog.=) 'on'"
#define FENCE_LSN_SQL "SELECT pg_catalog.pg_current_wal_flush_lsn(), " SEQUENCES_SQL

/*
 * The fence in one round trip, for the usual case of no writer left (the
 * clients wait in their pooler, or write in short transactions): set in
 * force at once (its file comes later), the writers' check in the same
 * transaction (pg_stat_activity is read at its first use, after the fence
 * is set), committed (the flush), and the fence LSN with the sequences.
 * The node stops at the first error.  With writers left, everything after
 * the check is discarded and Fence waits for them.
 */
static const char *const FenceRoundSql =
"BEGIN; "
"SELECT driftmirror_node.fence_set('switchover') "
"FROM (SELECT pg_catalog.set_config('driftmirror.fence_durable', 'off', true) AS durable) s "
"WHERE s.durable OPERATOR(pg_catalog.=) 'off'; "
WRITERS_SQL "; "
FLUSH_SQL "; "
"COMMIT; "
FENCE_LSN_SQL;

/* the statements of FenceRoundSql whose results Fence reads */
#define FENCE_ROUND_RESULTS 6
#define FENCE_ROUND_WRITERS 2
#define FENCE_ROUND_LSN 5

/*
 * Fence
 *		Fence the old primary ('switchover' mode: client writes refused, new
 *		sessions read-only so that target_session_attrs=read-write moves
 *		on), give sessions holding a write transaction the grace period,
 *		end those still holding one, and return the fence LSN: the WAL
 *		insert position once no client transaction can commit any more.
 *		Reads the sequences (p->sequences) with it.  The fence is in force
 *		from its first call; its fence file is written by a second call
 *		left running on the old primary (CollectFenceFile waits for it,
 *		before the flip at the latest).  With no writer left, all of it is
 *		one round trip (FenceRoundSql).
 */
static char *
Fence(PromInfo *p)
{
	PGconn	   *conn = OldPrimary(p, RemainingMs(p));
	TimestampTz grace_end;
	List	   *round;
	PGresult   *res;
	char	   *lsn = NULL;
	char	   *prepared = NULL;
	bool		writers;
	int			terminated = 0;

	/* in force at once; its file is written below, outside the wait */
	FencedAt = GetCurrentTimestamp();
	grace_end = TimestampTzPlusMilliseconds(FencedAt, p->fence_grace_ms);
	round = DmRemoteExecAll(conn, OldLabel, FenceRoundSql, RemainingMs(p));
	if (list_length(round) != FENCE_ROUND_RESULTS)
		elog(ERROR, "fencing node \"%s\" returned %d results, not %d",
			 OldLabel, list_length(round), FENCE_ROUND_RESULTS);
	res = list_nth(round, FENCE_ROUND_WRITERS);
	writers = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
	if (!writers)
	{
		prepared = pstrdup(PQgetvalue(res, 0, 3));
		res = list_nth(round, FENCE_ROUND_LSN);
		lsn = pstrdup(PQgetvalue(res, 0, 0));
		p->sequences = pstrdup(PQgetvalue(res, 0, 1));
	}
	{
		ListCell   *lc;

		foreach(lc, round)
			PQclear(lfirst(lc));
		list_free(round);
	}

	while (writers)
	{
		Nap(1);
		CheckDeadline(p, "fence");
		res = DmRemoteExec(conn, OldLabel, WRITERS_SQL, 0, NULL, RemainingMs(p));
		writers = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
		if (!writers)
			prepared = pstrdup(PQgetvalue(res, 0, 3));
		PQclear(res);
		if (!writers)
		{
			(void) DmRemoteValue(conn, OldLabel, FLUSH_SQL, 0, NULL, RemainingMs(p));
			res = DmRemoteExec(conn, OldLabel, FENCE_LSN_SQL, 0, NULL, RemainingMs(p));
			lsn = pstrdup(PQgetvalue(res, 0, 0));
			p->sequences = pstrdup(PQgetvalue(res, 0, 1));
			PQclear(res);
		}
		else if (GetCurrentTimestamp() >= grace_end)
		{
			char	   *n;

			n = DmRemoteValue(conn, OldLabel,
							"SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) "
							"FROM pg_catalog.pg_stat_activity "
							"WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database() "
							"  AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() "
							"  AND backend_type OPERATOR(pg_catalog.=) 'client backend' "
							"  AND backend_xid IS NOT NULL",
							0, NULL, RemainingMs(p));
			terminated += n ? atoi(n) : 0;
		}
	}

	/*
	 * A transaction prepared after the guardrails could only be committed
	 * here, and the fence refuses its COMMIT PREPARED: finishing the
	 * promotion would strand it.  No new one can appear (the fence refuses
	 * PREPARE TRANSACTION, and a PREPARE under way holds its
	 * transaction id until it is done, so the wait above waited for it).
	 * Roll back instead.
	 */
	if (prepared != NULL && strcmp(prepared, "0") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s prepared transaction(s) in the primary's database when it was fenced: the fence would refuse their COMMIT PREPARED",
						prepared),
				 errhint("Finish them (COMMIT PREPARED or ROLLBACK PREPARED) and promote again.")));

	/*
	 * the fence file, while the control database records the fence and
	 * the mirror catches up (the same call again, durable this time:
	 * nothing to change but the file)
	 */
	DmRemoteSend(conn, OldLabel, FenceFileSql, 0, NULL, RemainingMs(p));
	FenceFilePending = true;

	if (terminated > 0)
		ereport(LOG,
				(errmsg("driftmirror: promotion " INT64_FORMAT ": ended %d session(s) still holding a write transaction after the grace period",
						p->id, terminated)));
	return lsn;
}

/*
 * CollectFenceFile
 *		Wait for the old primary's fence file (sent by Fence), if pending:
 *		from then on a crash of the old primary restarts it fenced.
 *		Raises, the flip not made: a connection lost meanwhile leaves it
 *		unknown whether the file was written.
 */
static void
CollectFenceFile(PromInfo *p)
{
	if (!FenceFilePending)
		return;
	FenceFilePending = false;
	PQclear(DmRemoteCollect(OldConn, OldLabel, FenceFileSql, RemainingMs(p)));
}

/*
 * on the mirror: its subscription's latest_end_lsn ($1 the subscription,
 * $2 the fence LSN), whether it reached the fence LSN, and SETVAL_SQL
 */
#define CATCH_UP_SQL \
	"SELECT w.latest_end_lsn, w.latest_end_lsn OPERATOR(pg_catalog.>=) $2::pg_catalog.pg_lsn, " \
	SETVAL_SQL " " \
	"FROM pg_catalog.pg_stat_subscription w JOIN pg_catalog.pg_subscription s ON s.oid OPERATOR(pg_catalog.=) w.subid " \
	"WHERE s.subname OPERATOR(pg_catalog.=) $1 AND w.relid IS NULL " \
	"AND s.subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database " \
	"  WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())"

/*
 * CatchUp
 *		Wait until the mirror has applied everything the old primary
 *		committed before the fence.  The proof is the subscription's
 *		latest_end_lsn on the mirror: it is set only by the WAL sender's
 *		keepalives, which the apply worker reads in stream order, after it
 *		has applied (committed) every change sent before them; and no
 *		change can follow the fence LSN, the old primary being fenced.  So
 *		latest_end_lsn >= fence LSN means every acknowledged commit is on
 *		the mirror.  (The slot's confirmed_flush_lsn says the same but
 *		moves only after the mirror's WAL writer has flushed, up to
 *		wal_writer_delay later; the unfence commit on the mirror flushes
 *		its WAL before any client can write there.)  Returns the LSN seen.
 *		The first check also sets the sequences read at the fence on the
 *		mirror (p->sequences_synced: how many).
 */
static char *
CatchUp(PromInfo *p, const char *fence_lsn)
{
	int			rounds = 0;

	for (;;)
	{
		char	   *seen;

		CheckDeadline(p, "catch_up");
		if (!CatchUpPending)
			SendCatchUpCheck(p, fence_lsn);
		seen = CollectCatchUpCheck(p);
		if (seen != NULL)
			return seen;

		/*
		 * Not yet.  The WAL sender pings the mirror when it has decoded new
		 * flushed WAL: every few rounds a flushed commit of our own on the
		 * old primary (its message skipped by the decoder) makes sure it
		 * does.
		 */
		if (++rounds % 5 == 0)
			(void) DmRemoteValue(OldPrimary(p, RemainingMs(p)), OldLabel,
							   FLUSH_SQL, 0, NULL, RemainingMs(p));
		Nap(1);
	}
}

/*
 * SendCatchUpCheck, CollectCatchUpCheck
 *		CatchUp's check in two halves, so that the first one runs on the
 *		mirror while the control database records the fence.  The
 *		sequences go with the first check (not replicated: any time).
 *		Collect returns the LSN seen once the mirror has caught up, else
 *		NULL; it raises as DmRemoteCollect.
 */
static void
SendCatchUpCheck(PromInfo *p, const char *fence_lsn)
{
	const char *args[4] = {p->old_subscription, fence_lsn, NULL, p->sequence_gap};

	if (p->sequences == NULL)
		elog(ERROR, "promotion " INT64_FORMAT " is catching up without the sequences read at its fence",
			 p->id);
	args[2] = p->sequences_synced < 0 ? p->sequences : "[]";
	DmRemoteSend(NewPrimary(p, RemainingMs(p)), NewLabel, CATCH_UP_SQL, 4, args,
				 RemainingMs(p));
	CatchUpPending = true;
}

static char *
CollectCatchUpCheck(PromInfo *p)
{
	PGresult   *res;
	char	   *seen = NULL;

	if (!CatchUpPending)
		return NULL;
	CatchUpPending = false;
	res = DmRemoteCollect(NewConn, NewLabel, CATCH_UP_SQL, RemainingMs(p));
	if (PQntuples(res) > 0 && p->sequences_synced < 0)
		p->sequences_synced = atoi(PQgetvalue(res, 0, 2));
	if (PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 1), "t") == 0)
		seen = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return seen;
}

/*
 * Rehearse
 *		At the end of step reverse_slot, well before the pause (so that
 *		its work does not slow the clients' last writes before PAUSE):
 *		the step boundary into fencing and the three the pause will commit
 *		(fence, catch_up, and sequences with the flip), with figures of the
 *		same shape, in one transaction that is rolled back.  Nothing of it stays but the sequence numbers its rows drew
 *		(and the NOTIFY of its action is never sent).  What stays is this
 *		process's catalog caches and PL/pgSQL plans: a driver is a new
 *		process, and cold, the same transactions took about 1, 1 and 3 ms
 *		inside the pause.  Only a speed-up: an error here is logged and the
 *		promotion goes on (the real transactions report their own errors).
 */
static void
Rehearse(PromInfo *p)
{
	MemoryContext cxt = CurrentMemoryContext;
	const char *id = Int64Text(p->id);
	const char *lsn = "0/0";
	const char *fencing[8] = {id, "reverse_slot", NULL, NULL, NULL, "fence", "fencing", "false"};
	const char *fence[8] = {id, "fence", lsn,
		"{\"poolers_paused\": 0, \"pooler_pause_wait_ms\": 0}",
		"{\"fence_lsn\": \"0/0\", \"fenced_at\": \"2000-01-01 00:00:00+00\"}",
	"catch_up", "catching_up", "false"};
	const char *caught_up[8] = {id, "catch_up", lsn, NULL, "{\"confirmed_lsn\": \"0/0\"}",
	"sequences", "sequences", "false"};
	const char *flip[8] = {id, "sequences", NULL, "{\"sequences_synced\": 0}",
	"{\"sequences_synced\": 0}", "unfence", NULL, "true"};

	/*
	 * the nodes' read-only statements of the pause, once (their sessions'
	 * catalog caches); errors raise, as they would inside the pause
	 */
	{
		const char *args[4] = {p->old_subscription, "0/0", "[]", p->sequence_gap};

		PQclear(DmRemoteExec(OldPrimary(p, RemainingMs(p)), OldLabel, WRITERS_SQL, 0, NULL,
							 RemainingMs(p)));
		PQclear(DmRemoteExec(OldPrimary(p, RemainingMs(p)), OldLabel, FENCE_LSN_SQL, 0, NULL,
							 RemainingMs(p)));
		PQclear(DmRemoteExec(NewPrimary(p, RemainingMs(p)), NewLabel, CATCH_UP_SQL, 4, args,
							 RemainingMs(p)));
	}

	PG_TRY();
	{
		DmCtlBegin("driftmirror: promotion rehearses the step boundaries of its write pause");
		(void) DmCtlExecText(AdvanceSql, 8, fencing);
		(void) DmCtlExecText(AdvanceSql, 8, fence);
		(void) DmCtlExecText(AdvanceSql, 8, caught_up);
		(void) DmCtlExecText(AdvanceSql, 8, flip);
		DmCtlRollback();
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(cxt, true);

		ereport(LOG,
				(errmsg("driftmirror: promotion " INT64_FORMAT ": rehearsal of the write pause's step boundaries failed (the promotion goes on): %s",
						p->id, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	CHECK_FOR_INTERRUPTS();
}

/*
 * ReverseSlot
 *		Before the fence (so outside the write pause) and so before the new
 *		primary takes writes: its publication and the slot (driftmirror
 *		plugin) the old primary will subscribe through, so that no change
 *		made after the unfence can be missed.  Until then the slot decodes
 *		only the apply worker's changes, which the origin filter drops.
 *		Idempotent.  In two-way mode both exist already.
 */
static void
ReverseSlot(PromInfo *p)
{
	PGconn	   *conn = NewPrimary(p, RemainingMs(p));
	const char *args[1];
	char	   *sql;

	if (!p->two_way)
	{
		args[0] = p->new_publication;
		sql = DmCtlValueText("SELECT driftmirror._mirror_pub_sql($1)", 1, args);
		PQclear(DmRemoteExec(conn, NewLabel, sql, 0, NULL, RemainingMs(p)));
		args[0] = p->new_slot;
		sql = DmCtlValueText("SELECT driftmirror._mirror_slot_sql($1)", 1, args);
		PQclear(DmRemoteExec(conn, NewLabel, sql, 0, NULL, RemainingMs(p)));
	}
	else
	{
		args[0] = p->new_slot;
		if (DmRemoteValue(conn, NewLabel,
						"SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1",
						1, args, RemainingMs(p)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("two-way slot \"%s\" is missing on the mirror", p->new_slot)));
	}
}

/*
 * Unfence
 *		Lift the fence of the new primary (after the flip), without waiting
 *		for its fence file: the clients of the write pause go on once it is
 *		lifted in shared memory.  UnfenceDurable must follow before the
 *		promotion leaves state unfencing: until then a crash of the new
 *		primary restarts it fenced, and a recovery unfences it again.
 *		Idempotent.
 */
static void
Unfence(PromInfo *p)
{
	(void) DmRemoteValue(NewPrimary(p, 0), NewLabel,
					   "SELECT driftmirror_node.fence_clear() "
					   "FROM (SELECT pg_catalog.set_config('driftmirror.fence_durable', 'off', true) AS durable) s "
					   "WHERE s.durable OPERATOR(pg_catalog.=) 'off'",
					   0, NULL, 0);
	UnfencedAt = GetCurrentTimestamp();
}

/*
 * UnfenceDurable
 *		The new primary's fence file no longer names its database (fsync'd;
 *		a no-op when it was written already).  Raises.
 */
static void
UnfenceDurable(PromInfo *p)
{
	(void) DmRemoteValue(NewPrimary(p, 0), NewLabel,
					   "SELECT driftmirror_node.fence_clear()", 0, NULL, 0);
}

/*
 * Reverse
 *		After the unfence: the old primary becomes the mirror: its fence
 *		goes to 'mirror' mode (or is lifted in two-way mode without fence),
 *		it subscribes to the new primary (copy_data = false) through the
 *		slot made before the unfence, and once that subscription runs the
 *		old direction is retired.  Idempotent; retried after failures.
 */
static void
Reverse(PromInfo *p)
{
	PGconn	   *oldc = OldPrimary(p, 0);
	PGconn	   *newc = NewPrimary(p, 0);
	const char *args[5];
	char	   *sql;
	TimestampTz give_up;

	if (p->mirror_fence)
		(void) DmRemoteValue(oldc, OldLabel, "SELECT driftmirror_node.fence_set('mirror')", 0, NULL, 0);
	else
		(void) DmRemoteValue(oldc, OldLabel, "SELECT driftmirror_node.fence_clear()", 0, NULL, 0);

	if (p->two_way)
		return;					/* both directions run already */

	/* stop the old direction; its slot keeps its position meanwhile */
	args[0] = p->old_subscription;
	sql = DmRemoteValue(newc, NewLabel,
					  "SELECT pg_catalog.format('ALTER SUBSCRIPTION %I DISABLE', subname) "
					  "FROM pg_catalog.pg_subscription WHERE subname OPERATOR(pg_catalog.=) $1 AND subenabled "
					  "AND subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())",
					  1, args, 0);
	if (sql)
		DmRemoteCommand(newc, NewLabel, sql, 0);

	/* the way back */
	args[0] = p->new_subscription;
	args[1] = p->new_primary;
	args[2] = p->new_publication;
	args[3] = p->new_slot;
	sql = DmCtlValueText("SELECT driftmirror._mirror_sub_sql($1, $2, $3, $4, false)", 4, args);
	DmRemoteCommand(oldc, OldLabel, sql, 0);

	/* wait until it streams: the new primary's slot is in use */
	args[0] = p->new_slot;
	give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60 * 1000);
	for (;;)
	{
		char	   *active = DmRemoteValue(newc, NewLabel,
										 "SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1",
										 1, args, 0);

		if (active && strcmp(active, "t") == 0)
			break;
		if (GetCurrentTimestamp() >= give_up)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the old primary's subscription \"%s\" did not start streaming within a minute",
							p->new_subscription)));
		Nap(20);
	}

	/* retire the old direction: subscription on the new primary, slot and
	 * publication on the old one */
	args[0] = p->old_subscription;
	sql = DmRemoteValue(newc, NewLabel,
					  "SELECT pg_catalog.format('ALTER SUBSCRIPTION %1$I DISABLE; ALTER SUBSCRIPTION %1$I SET (slot_name = NONE); DROP SUBSCRIPTION %1$I', subname) "
					  "FROM pg_catalog.pg_subscription WHERE subname OPERATOR(pg_catalog.=) $1 "
					  "AND subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())",
					  1, args, 0);
	if (sql)
		DmRemoteCommand(newc, NewLabel, sql, 0);
	/* the old slot: its WAL sender ends shortly after the subscription */
	args[0] = p->old_slot;
	give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 30 * 1000);
	for (;;)
	{
		char	   *state = DmRemoteValue(oldc, OldLabel,
										"SELECT CASE WHEN active THEN 'active' "
										"ELSE pg_catalog.pg_drop_replication_slot(slot_name)::text END "
										"FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1",
										1, args, 0);

		if (state == NULL || strcmp(state, "active") != 0)
			break;				/* dropped, or gone already */
		if (GetCurrentTimestamp() >= give_up)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" of the old direction is still in use after 30 s",
							p->old_slot)));
		Nap(10);
	}
	args[0] = p->old_publication;
	sql = DmRemoteValue(oldc, OldLabel,
					  "SELECT pg_catalog.format('DROP PUBLICATION %I', pubname) FROM pg_catalog.pg_publication "
					  "WHERE pubname OPERATOR(pg_catalog.=) $1",
					  1, args, 0);
	if (sql)
		DmRemoteCommand(oldc, OldLabel, sql, 0);
}

/*
 * Rollback
 *		Before the flip: undo.  The mirror stays (or is made) fenced and
 *		loses the slot and publication made for the way back; the old
 *		primary is unfenced last.  The old primary is retried for up to a
 *		minute; if it stays unreachable the promotion stays in
 *		rolling_back and the main worker tries again.  Raises on failure.
 */
static void
Rollback(PromInfo *p, const char *why)
{
	TimestampTz give_up;

	Step(p, "rollback", "running", "rolling_back", why, NULL, NULL);

	/*
	 * the mirror: best effort (it was never unfenced).  Past promote_timeout
	 * without a working session to it (the mirror is what did not answer),
	 * it is not contacted again: that would hold the rollback, and the old
	 * primary's unfence, as long again.  Its cleanup queue does the drops.
	 */
	PG_TRY();
	{
		PGconn	   *conn;
		const char *args[1];

		if (GetCurrentTimestamp() >= p->deadline &&
			(NewConn == NULL || PQstatus(NewConn) != CONNECTION_OK))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the mirror did not answer before promote_timeout; its cleanup queue drops what the promotion made")));
		conn = NewPrimary(p, 5000);

		if (p->mirror_fence)
			(void) DmRemoteValue(conn, NewLabel, "SELECT driftmirror_node.fence_set('mirror')", 0, NULL, 5000);
		if (!p->two_way)
		{
			args[0] = p->new_slot;
			(void) DmRemoteValue(conn, NewLabel,
							   "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots "
							   "WHERE slot_name OPERATOR(pg_catalog.=) $1 AND NOT active",
							   1, args, 5000);
			args[0] = p->new_publication;
			{
				char	   *sql = DmRemoteValue(conn, NewLabel,
											  "SELECT pg_catalog.format('DROP PUBLICATION %I', pubname) FROM pg_catalog.pg_publication "
											  "WHERE pubname OPERATOR(pg_catalog.=) $1",
											  1, args, 5000);

				if (sql)
					DmRemoteCommand(conn, NewLabel, sql, 5000);
			}
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(DriverContext, false);
		const char *args[1];

		DmRemoteClose(NewConn);
		NewConn = NULL;
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: promotion " INT64_FORMAT ": could not clean up the mirror: %s",
						p->id, edata->message)));
		/* the mirror's cleanup queue retries the drops */
		args[0] = Int64Text(p->id);
		DmCtlValueText("SELECT driftmirror._promotion_queue_cleanup($1::bigint)", 1, args);
	}
	PG_END_TRY();

	/* the old primary: retry until it answers */
	give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
	for (;;)
	{
		volatile bool ok = false;

		PG_TRY();
		{
			(void) DmRemoteValue(OldPrimary(p, 5000), OldLabel,
							   "SELECT driftmirror_node.fence_clear()", 0, NULL, 5000);
			ok = true;
		}
		PG_CATCH();
		{
			if (GetCurrentTimestamp() >= give_up)
				PG_RE_THROW();
			MemoryContextSwitchTo(DriverContext);
			FlushErrorState();
			DmRemoteClose(OldConn);
			OldConn = NULL;
		}
		PG_END_TRY();
		if (ok)
			break;
		Nap(500);
	}
	UnfencedAt = GetCurrentTimestamp();
	if (FencedAt != 0)
		SetFigures(p, psprintf("{\"pause_ms\": %.1f}",
							   (double) (UnfencedAt - FencedAt) / 1000.0));
	/* poolers the promotion paused: RESUME, still on the old primary */
	DmPoolersResume(p->id, false);
	Step(p, "rollback", "ok", NULL, "the old primary is writable again; the mirror stayed fenced", NULL, NULL);
}

/*
 * TestPause
 *		Fault injection for the crash tests: if driftmirror.promote_test_pause
 *		names this step ("step:ms"), wait that long, visibly in
 *		pg_stat_activity, so that a test can kill a process at a known
 *		point.  A configuration reload that sets the parameter to "release"
 *		ends the wait early: the test says when it has done what it paused
 *		for, and ms is only the bound.  The state before the step is
 *		already committed.  This worker handles configuration reloads only
 *		while it waits here: a promotion otherwise runs with the settings it
 *		started with.  TestPauseArmed says whether it names step: a pause
 *		armed before catch_up comes before any catch-up check (the first
 *		one is otherwise sent with the fence's record).
 */
static bool
TestPauseArmed(const char *step)
{
	const char *colon;
	size_t		len;

	if (DmPromoteTestPause == NULL || DmPromoteTestPause[0] == '\0')
		return false;
	colon = strchr(DmPromoteTestPause, ':');
	if (colon == NULL)
		return false;
	len = colon - DmPromoteTestPause;
	return len == strlen(step) && strncmp(DmPromoteTestPause, step, len) == 0;
}

static void
TestPause(PromInfo *p, const char *step)
{
	long		ms;
	TimestampTz until;
	char		activity[128];

	if (!TestPauseArmed(step))
		return;
	ms = strtol(strchr(DmPromoteTestPause, ':') + 1, NULL, 10);
	snprintf(activity, sizeof(activity),
			 "driftmirror: promotion " INT64_FORMAT " paused before step %s (test)", p->id, step);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pgstat_report_activity(STATE_RUNNING, activity);
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	while (GetCurrentTimestamp() < until)
	{
		Nap(10);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(DmPromoteTestPause, "release") == 0)
				break;
		}
	}
	pqsignal(SIGHUP, SIG_IGN);
	pgstat_report_activity(STATE_RUNNING, "driftmirror: promotion");
}

/* ---- the driver ---- */

static void
WriteResult(DmPromoteShared *shared, PromInfo *p)
{
	const char *args[1] = {Int64Text(p->id)};
	DmCtlResult *r;

	if (shared == NULL)
		return;
	r = DmCtlQueryText("SELECT new_primary, pause_ms, fence_lsn "
					   "FROM driftmirror.promotion WHERE id = $1::bigint", 1, args);
	if (r->nrows > 0)
	{
		char	   *new_primary = DmCtlGet(r, 0, "new_primary");
		char	   *pause_ms = DmCtlGet(r, 0, "pause_ms");
		char	   *fence_lsn = DmCtlGet(r, 0, "fence_lsn");

		strlcpy(shared->new_primary, new_primary ? new_primary : "", sizeof(shared->new_primary));
		shared->pause_ms = pause_ms ? strtod(pause_ms, NULL) : 0;
		strlcpy(shared->fence_lsn, fence_lsn ? fence_lsn : "", sizeof(shared->fence_lsn));
	}
	shared->ok = true;
}

/*
 * Forward
 *		Run the promotion from its recorded state to the end.  Raises on
 *		error; the caller rolls back or leaves it for recovery.
 */
static void
Forward(PromInfo *p)
{
	char	   *fence_lsn = p->fence_lsn;
	char		buf[256];

	if (strcmp(p->state, "guardrails") == 0)
	{
		char	   *refused;

		Step(p, "guardrails", "running", NULL, NULL, NULL, NULL);
		refused = Guardrails(p);
		if (refused != NULL)
		{
			Step(p, "guardrails", "refused", "refused", refused, NULL, NULL);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("promotion of resource \"%s\" of group \"%s\" refused",
							p->resource, p->group),
					 errdetail_internal("%s", refused)));
		}
		Step(p, "guardrails", "ok", NULL, NULL, NULL, NULL);
		Step(p, "reverse_slot", "running", "reverse_slot", NULL, NULL, NULL);
	}

	if (strcmp(p->state, "reverse_slot") == 0)
	{
		TestPause(p, "reverse_slot");
		CheckDeadline(p, "reverse_slot");
		ReverseSlot(p);
		/* one transaction (and _promotion_advance ready before the pause) */
		Rehearse(p);
		Advance(p, "reverse_slot", NULL, NULL, NULL, "fence", "fencing", false);
	}

	if (strcmp(p->state, "fencing") == 0)
	{
		char	   *pooler_details;

		/*
		 * pgbouncer routers of the resource: their clients wait from here
		 * to the flip's RESUME (recorded first, resumed on every path)
		 */
		DmPoolersPause(p->id, p->new_primary, p->deadline, &pooler_details);
		TestPause(p, "fence");
		fence_lsn = Fence(p);
		/* the mirror's first catch-up check runs while the fence is recorded */
		if (!TestPauseArmed("catch_up"))
			SendCatchUpCheck(p, fence_lsn);
		snprintf(buf, sizeof(buf), "{\"fence_lsn\": \"%s\", \"fenced_at\": \"%s\"}",
				 fence_lsn, timestamptz_to_str(FencedAt));
		Advance(p, "fence", fence_lsn, pooler_details, buf, "catch_up", "catching_up", false);
	}

	if (strcmp(p->state, "catching_up") == 0)
	{
		char	   *confirmed;

		TestPause(p, "catch_up");
		confirmed = CatchUp(p, fence_lsn);

		snprintf(buf, sizeof(buf), "{\"confirmed_lsn\": \"%s\"}", confirmed);
		Advance(p, "catch_up", confirmed, NULL, buf, "sequences", "sequences", false);
	}

	if (strcmp(p->state, "sequences") == 0)
	{
		int			n;

		TestPause(p, "sequences");
		CheckDeadline(p, "sequences");
		n = p->sequences_synced;	/* set with the catch-up */
		CollectFenceFile(p);	/* the old primary stays fenced, crash or not */
		snprintf(buf, sizeof(buf), "{\"sequences_synced\": %d}", n);
		CheckDeadline(p, "flip");
		/* the commit point: the flip, in the same transaction */
		Advance(p, "sequences", NULL, buf, buf, "unfence", NULL, true);
	}

	if (strcmp(p->state, "unfencing") == 0)
	{
		char	   *pooler_details;

		TestPause(p, "unfence");
		Unfence(p);
		/* the paused poolers now point at the new primary, and resume */
		DmPoolersSwitchResume(p->id, &pooler_details);
		UnfenceDurable(p);
		if (FencedAt != 0)
			snprintf(buf, sizeof(buf), "{\"pause_ms\": %.1f, \"unfenced_at\": \"%s\"}",
					 (double) (UnfencedAt - FencedAt) / 1000.0, timestamptz_to_str(UnfencedAt));
		else
			strlcpy(buf, "{}", sizeof(buf));
		Advance(p, "unfence", NULL, pooler_details, buf, "reverse", "reversing", false);
	}

	if (strcmp(p->state, "reversing") == 0)
	{
		const char *args[3] = {Int64Text(p->id), "done", NULL};

		TestPause(p, "reverse");
		Reverse(p);
		Step(p, "reverse", "ok", NULL, NULL, NULL, NULL);
		DmCtlValueText("SELECT driftmirror._promotion_finish($1::bigint, $2, $3)", 3, args);
		p->state = "done";
	}
}

/* StepOfState: the step a state belongs to (for the step log) */
static const char *
StepOfState(const char *state)
{
	static const char *const map[][2] = {
		{"guardrails", "guardrails"}, {"reverse_slot", "reverse_slot"},
		{"fencing", "fence"}, {"catching_up", "catch_up"},
		{"sequences", "sequences"}, {"unfencing", "unfence"},
		{"reversing", "reverse"}, {"rolling_back", "rollback"}};
	size_t		i;

	for (i = 0; i < lengthof(map); i++)
		if (strcmp(map[i][0], state) == 0)
			return map[i][1];
	return state;
}

/* states before the flip: a failure there rolls back */
static bool
BeforeFlip(const char *state)
{
	return strcmp(state, "guardrails") == 0 || strcmp(state, "reverse_slot") == 0 ||
		strcmp(state, "fencing") == 0 || strcmp(state, "catching_up") == 0 ||
		strcmp(state, "sequences") == 0 || strcmp(state, "rolling_back") == 0;
}

/*
 * ResumeLeftPoolers
 *		RESUME the poolers an ended promotion still records as paused,
 *		pointed first at the node the routes name.  A failure is a WARNING:
 *		they stay recorded and the main worker tries again.
 */
static void
ResumeLeftPoolers(int64 id)
{
	PG_TRY();
	{
		DmPoolersResume(id, true);
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(DriverContext, true);

		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: promotion " INT64_FORMAT " has ended; its paused pgbouncer routers are resumed later: %s",
						id, edata->message)));
	}
	PG_END_TRY();
}

/*
 * DmDrivePostgresPromotion
 *		See promote_postgres.h: run or recover promotion "id".  Never
 *		raises: outcomes are recorded in the catalog and, for a caller, in
 *		*shared.
 */
void
DmDrivePostgresPromotion(int64 id, bool recovering, DmPromoteShared *shared)
{
	PromInfo	p;
	PromInfo   *volatile pp = &p;

	DriverContext = CurrentMemoryContext;

	/*
	 * Ended, or its mirror dropped after the flip (the operator gave up on
	 * the way back): end it failed, and resume the poolers still recorded
	 * as paused (the main worker sends a recovery for those too).
	 */
	{
		const char *args[1] = {Int64Text(id)};
		DmCtlResult *r;
		char	   *state;

		r = DmCtlQueryText("SELECT p.state, EXISTS (SELECT FROM driftmirror.mirror m "
						   "  WHERE m.id OPERATOR(pg_catalog.=) p.mirror_id) AS mirror_exists "
						   "FROM driftmirror.promotion p WHERE p.id OPERATOR(pg_catalog.=) $1::bigint",
						   1, args);
		if (r->nrows == 0)
			return;
		state = DmCtlGet(r, 0, "state");
		if (!DmPromotionStateIsFinal(state) && !DmCtlGetBool(r, 0, "mirror_exists", false))
		{
			const char *fargs[4] = {args[0], "failed",
				psprintf("the mirror was dropped during the promotion (in state %s); the promotion was abandoned there", state),
			"55000"};

			(void) DmCtlValueText("SELECT driftmirror._promotion_finish($1::bigint, $2, $3, $4)", 4, fargs);
			ereport(LOG,
					(errmsg("driftmirror: promotion " INT64_FORMAT " ended failed: its mirror was dropped in state %s",
							id, state)));
			state = "failed";
		}
		if (DmPromotionStateIsFinal(state))
		{
			ResumeLeftPoolers(id);
			return;
		}
	}

	LoadInfo(id, &p);

	if (recovering)
		ereport(LOG,
				(errmsg("driftmirror: recovering promotion " INT64_FORMAT " of resource \"%s\" of group \"%s\" left in state %s",
						id, p.resource, p.group, p.state)));

	PG_TRY();
	{
		if (recovering && BeforeFlip(pp->state))
		{
			/*
			 * Interrupted before the commit point: undo.  A rollback that an
			 * error had started keeps that error as the reason.
			 */
			const char *args[3] = {Int64Text(id), "rolled_back", NULL};
			char	   *earlier = NULL;

			if (strcmp(pp->state, "rolling_back") == 0)
				earlier = DmCtlValueText("SELECT error FROM driftmirror.promotion WHERE id OPERATOR(pg_catalog.=) $1::bigint",
								   1, args);
			Rollback(pp, earlier ? earlier :
					 "the promotion was interrupted before the routes were flipped");
			if (earlier)
			{
				args[2] = psprintf("%s (rolled back; the rollback was finished by a recovery after it could not complete at first)",
								   earlier);
				DmCtlValueText("SELECT driftmirror._promotion_finish($1::bigint, $2, $3)", 3, args);
			}
			else
			{
				args[2] = "interrupted before the flip (driver, session or node failure); rolled back";
				DmCtlValueText("SELECT driftmirror._promotion_finish($1::bigint, $2, $3, '57P01')", 3, args);
			}
		}
		else
		{
			if (recovering)
				Step(pp, StepOfState(pp->state), "running", NULL,
					 "resumed after an interruption", NULL, NULL);
			Forward(pp);
			WriteResult(shared, pp);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(DriverContext, true);
		char	   *state = pstrdup(pp->state);

		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: promotion " INT64_FORMAT " in state %s: %s",
						id, state, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));

		/*
		 * A wait cut by the deadline (a node that did not answer in time)
		 * says which node and what it was asked; say that promote_timeout
		 * ended the promotion, and in which step.
		 */
		if (BeforeFlip(state) && !DeadlineRaised &&
			GetCurrentTimestamp() >= pp->deadline)
		{
			edata->message = psprintf("promotion of resource \"%s\" of group \"%s\" timed out in step %s: %s",
									  pp->resource, pp->group, StepOfState(state),
									  edata->message);
			edata->sqlerrcode = ERRCODE_QUERY_CANCELED;
		}

		PG_TRY();
		{
			const char *args[4] = {Int64Text(id), NULL, edata->message,
			unpack_sql_state(edata->sqlerrcode)};

			if (strcmp(state, "refused") == 0)
			{
				args[1] = "refused";
				DmCtlValueText("SELECT driftmirror._promotion_finish($1::bigint, $2, $3, $4)", 4, args);
				DmPromoteFailed(shared, edata, NULL);
			}
			else if (BeforeFlip(state))
			{
				char	   *why = psprintf("%s", edata->message);

				Step(pp, StepOfState(state), "failed", NULL, why, NULL, NULL);
				/* kept if the rollback has to be finished by a recovery */
				DmCtlValueText("UPDATE driftmirror.promotion SET error = $3, error_sqlstate = $4 "
						 "WHERE id OPERATOR(pg_catalog.=) $1::bigint AND finished_at IS NULL",
						 4, args);
				Rollback(pp, why);
				args[1] = "rolled_back";
				DmCtlValueText("SELECT driftmirror._promotion_finish($1::bigint, $2, $3, $4)", 4, args);
				DmPromoteFailed(shared, edata, "promotion failed and was rolled back: ");
			}
			else
			{
				/* after the flip: record, the main worker finishes it */
				Step(pp, StepOfState(state), "failed", NULL, edata->message, NULL, NULL);
				DmPromoteFailed(shared, edata,
						   "promotion flipped the routes but could not finish yet (the worker retries): ");
			}
		}
		PG_CATCH();
		{
			(void) DmCtlCatchWarn(DriverContext,
								  "promotion " INT64_FORMAT ": rollback did not complete, the worker retries",
								  id);
			DmPromoteFailed(shared, edata, "promotion failed; its rollback is pending (the worker retries): ");
		}
		PG_END_TRY();
	}
	PG_END_TRY();
	CloseNodes();
	DmPoolersRelease();
}
