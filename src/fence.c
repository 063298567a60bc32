/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  The write fence: per-database refusal of client writes.
 *
 * A fenced database refuses every write from client sessions, whatever the
 * client sets: default_transaction_read_only, transaction_read_only and
 * session_replication_role make no difference.  Logical replication
 * workers (background workers) keep applying, and driftmirror's own
 * sessions pass: they call driftmirror_node.session_bypass(), which sets a
 * backend-local flag that only that function (superuser or
 * driftmirror_admin) sets.  Other databases of the node, the control
 * database in particular, are not affected.
 *
 * Enforcement, for client backends, WAL senders and background workers
 * (pg_cron's jobs, other extensions' workers; not PostgreSQL's own, such as
 * logical replication and parallel workers, nor driftmirror's) connected to
 * a fenced database:
 *	 - ExecutorStart_hook refuses plans that write (INSERT, UPDATE, DELETE,
 *	   MERGE, SELECT FOR UPDATE/SHARE, data-modifying CTEs) on anything but
 *	   temporary tables, and marks the transaction read-only, so that
 *	   functions called by the plan (nextval, setval, lo_*, ...) hit
 *	   PostgreSQL's own read-only checks;
 *	 - ProcessUtility_hook refuses, before they start, what PostgreSQL
 *	   allows in a read-only transaction but the fence must not (see
 *	   RefusedUtility): COMMIT PREPARED and PREPARE TRANSACTION, the
 *	   rewrites VACUUM FULL, CLUSTER, REINDEX, also ANALYZE, and LOCK
 *	   stronger than ROW EXCLUSIVE; plain VACUUM passes.  It marks the
 *	   transaction read-only before every utility statement, so COPY FROM,
 *	   TRUNCATE, DDL, CALL/DO bodies, etc. are refused by PostgreSQL's
 *	   read-only checks; a client's SET transaction_read_only = off is
 *	   undone by the next statement;
 *	 - a pre-commit (and pre-prepare) transaction callback refuses to
 *	   commit or prepare any transaction that has a transaction id, i.e.
 *	   that wrote anything at all: this catches what PostgreSQL's read-only
 *	   checks let through (large object writes, which PostgreSQL 15 does
 *	   not check, also through libpq's fast-path lo_* calls that go through
 *	   neither hook).  Side effect:
 *	   like on a hot standby, temporary tables cannot be written, and a
 *	   function that only assigns an xid (txid_current()) fails at commit.
 *	 Errors use ERRCODE_READ_ONLY_SQL_TRANSACTION.
 *
 * State: a small array of (database oid, mode) in shared memory, protected
 * by one LWLock, with a generation counter so that backends check a
 * backend-local cache on every statement and take the lock only after a
 * change.  Every change is persisted in the file DM_FENCE_FILE in the
 * data directory (written to a temporary file, fsynced, renamed, directory
 * fsynced): a fence before it is applied to shared memory, a lifted fence
 * just after (see ChangeFence); fence_set and fence_clear return once the
 * file is written (or at once, the file left to a later call, when the
 * superuser setting driftmirror.fence_durable is off).  The file is read
 * back at server start (shmem_startup_hook, also after a crash restart),
 * so a restarted node stays fenced.  Changes are NOT transactional: fence_set takes effect at
 * once and stays even if the calling transaction rolls back.
 *
 * New client sessions of a fenced database also start with
 * default_transaction_read_only = on (a ClientAuthentication_hook sets it
 * at the "override" level, above database, role and startup-packet
 * settings, before the server reports it to the client), so that libpq's
 * target_session_attrs=read-write skips the node.  That is only advice to
 * clients (a session may SET it back); the hooks are the fence.  It takes
 * no catalog write: an earlier version ran ALTER DATABASE ... SET in
 * fence_set and fence_clear, two commits inside a switchover's write pause.
 * The hook matches the database by the name recorded when it was fenced: a
 * fenced database renamed afterwards keeps the fence but not the advice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "replication/walsender.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "fence.h"

#define DM_FENCE_TRANCHE	"driftmirror_fence"

typedef struct DmFenceEntry
{
	Oid			dboid;
	DmFenceMode mode;
	TimestampTz since;
	NameData	dbname;			/* for display; the oid is the key */
} DmFenceEntry;

typedef struct DmFenceShared
{
	LWLock	   *lock;			/* the array: brief, taken by every backend */
	LWLock	   *change_lock;	/* serialises changes, held across the file write */
	pg_atomic_uint64 generation;
	bool		file_stale;		/* the file lags the array (a failed write) */
	int			count;
	DmFenceEntry entries[DM_FENCE_MAX_DATABASES];
} DmFenceShared;

bool		DmFenceBypass = false;

static DmFenceShared *FenceShared = NULL;
static bool FenceHooksInstalled = false;

/* backend-local cache of this database's mode */
static uint64 CachedGeneration = PG_UINT64_MAX;
static DmFenceMode CachedMode = DM_FENCE_NONE;

/* > 0 while driftmirror's fence functions run their own statements */
static int	FenceInternal = 0;

/* the current transaction changed the fence itself (fence_set/clear) */
static bool FenceAdminXact = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;

static void DmFenceShmemRequest(void);
static void DmFenceShmemStartup(void);
static void DmFenceExecutorStart(QueryDesc *queryDesc, int eflags);
static void DmFenceProcessUtility(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree,
								  ProcessUtilityContext context,
								  ParamListInfo params,
								  QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);
static void DmFenceXactCallback(XactEvent event, void *arg);
static void DmFenceClientAuthentication(Port *port, int status);
static void DmFenceErrorContext(void *arg);
static DmFenceMode DmFenceCurrent(void);
static void LoadFenceFile(void);
static void WriteFenceFile(DmFenceEntry *entries, int count);

/*
 * DmFenceInit
 *		Install the hooks and request shared memory.  Call from _PG_init
 *		while shared_preload_libraries is processed; does nothing otherwise
 *		(the fence then does not exist and the SQL functions say so).
 */
void
DmFenceInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = DmFenceShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = DmFenceShmemStartup;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = DmFenceExecutorStart;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = DmFenceProcessUtility;
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = DmFenceClientAuthentication;
	RegisterXactCallback(DmFenceXactCallback, NULL);
	FenceHooksInstalled = true;
}

/*
 * DmFenceAvailable
 *		Whether the fence works in this server (library preloaded).
 */
bool
DmFenceAvailable(void)
{
	return FenceHooksInstalled && FenceShared != NULL;
}

static void
DmFenceShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DmFenceShared)));
	RequestNamedLWLockTranche(DM_FENCE_TRANCHE, 2);
}

/*
 * DmFenceShmemStartup
 *		Create (or attach to) the shared state; the first time, load the
 *		fence file.  Runs in the postmaster at start and after a crash.
 */
static void
DmFenceShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	FenceShared = ShmemInitStruct("driftmirror fence",
								  sizeof(DmFenceShared), &found);
	if (!found)
	{
		memset(FenceShared, 0, sizeof(DmFenceShared));
		FenceShared->lock = &(GetNamedLWLockTranche(DM_FENCE_TRANCHE))[0].lock;
		FenceShared->change_lock = &(GetNamedLWLockTranche(DM_FENCE_TRANCHE))[1].lock;
		pg_atomic_init_u64(&FenceShared->generation, 1);
		LoadFenceFile();
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * LoadFenceFile
 *		Fill the shared array from DM_FENCE_FILE.  A missing file means no
 *		fence; a malformed line is logged and skipped (a WARNING, not an
 *		error: the server must start).
 */
static void
LoadFenceFile(void)
{
	FILE	   *f;
	char		line[256];
	int			lineno = 0;

	f = fopen(DM_FENCE_FILE, "r");
	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not read driftmirror fence file \"%s\": %m",
							DM_FENCE_FILE)));
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL)
	{
		unsigned int oid;
		char		mode[32];
		long long	since;
		int			namepos = 0;
		DmFenceMode m;
		DmFenceEntry *e;
		size_t		len;

		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (sscanf(line, "%u %31s %lld %n", &oid, mode, &since, &namepos) < 3 ||
			namepos == 0 ||
			(m = DmFenceModeFromName(mode)) == DM_FENCE_NONE ||
			FenceShared->count >= DM_FENCE_MAX_DATABASES)
		{
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("ignoring line %d of driftmirror fence file \"%s\"",
							lineno, DM_FENCE_FILE)));
			continue;
		}
		e = &FenceShared->entries[FenceShared->count++];
		e->dboid = (Oid) oid;
		e->mode = m;
		e->since = (TimestampTz) since;
		namestrcpy(&e->dbname, line + namepos);
		ereport(LOG,
				(errmsg("driftmirror: database \"%s\" is fenced (mode %s)",
						NameStr(e->dbname), mode)));
	}
	fclose(f);
}

/*
 * WriteFenceFile
 *		Persist a fence array durably: temporary file, fsync, rename.
 *		Raises an error on failure.  Caller holds change_lock.
 */
static void
WriteFenceFile(DmFenceEntry *entries, int count)
{
	char		tmp[MAXPGPATH];
	StringInfoData buf;
	int			fd;
	int			i;

	snprintf(tmp, sizeof(tmp), "%s.tmp", DM_FENCE_FILE);
	initStringInfo(&buf);
	appendStringInfoString(&buf,
						   "# driftmirror write fence: database oid, mode, since (us), database name\n"
						   "# written by driftmirror_node.fence_set/fence_clear; do not edit\n");
	for (i = 0; i < count; i++)
		appendStringInfo(&buf, "%u %s " INT64_FORMAT " %s\n",
						 entries[i].dboid, DmFenceModeName(entries[i].mode),
						 (int64) entries[i].since, NameStr(entries[i].dbname));

	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
	errno = 0;
	if (write(fd, buf.data, buf.len) != buf.len)
	{
		if (errno == 0)
			errno = ENOSPC;
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
	}
	if (pg_fsync(fd) != 0)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmp)));
	}
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmp)));

	/*
	 * Two fsyncs, not durable_rename's four: the new file's (above) and the
	 * directory's after the rename.  The old file's content need not be
	 * durable: the rename replaces it whole.
	 */
	if (rename(tmp, DM_FENCE_FILE) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not rename file \"%s\" to \"%s\": %m",
						tmp, DM_FENCE_FILE)));
	fsync_fname(".", true);
	pfree(buf.data);
}

/*
 * DmFenceModeName / DmFenceModeFromName
 *		Mode <-> its SQL name; an unknown name gives DM_FENCE_NONE.
 */
const char *
DmFenceModeName(DmFenceMode mode)
{
	switch (mode)
	{
		case DM_FENCE_MIRROR:
			return "mirror";
		case DM_FENCE_SWITCHOVER:
			return "switchover";
		case DM_FENCE_NONE:
			break;
	}
	return "none";
}

DmFenceMode
DmFenceModeFromName(const char *name)
{
	if (strcmp(name, "mirror") == 0)
		return DM_FENCE_MIRROR;
	if (strcmp(name, "switchover") == 0)
		return DM_FENCE_SWITCHOVER;
	return DM_FENCE_NONE;
}

static void
RequireFence(void)
{
	if (!DmFenceAvailable())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the driftmirror write fence is not available"),
				 errhint("Add driftmirror to shared_preload_libraries and restart the server.")));
}

/*
 * DmFenceModeOf
 *		The fence mode of a database of this node (DM_FENCE_NONE if the
 *		fence is not available).
 */
DmFenceMode
DmFenceModeOf(Oid dboid)
{
	DmFenceMode mode = DM_FENCE_NONE;
	int			i;

	if (FenceShared == NULL)
		return DM_FENCE_NONE;
	LWLockAcquire(FenceShared->lock, LW_SHARED);
	for (i = 0; i < FenceShared->count; i++)
	{
		if (FenceShared->entries[i].dboid == dboid)
		{
			mode = FenceShared->entries[i].mode;
			break;
		}
	}
	LWLockRelease(FenceShared->lock);
	return mode;
}

/* error context of a failed write after a fence was lifted */
static void
LiftedButStaleContext(void *arg)
{
	errcontext("the fence of database %u is lifted; the fence file still names it until a retry succeeds",
			   *(Oid *) arg);
}

/*
 * ChangeFence
 *		Set (mode != NONE) or clear the fence of a database, persisted in the
 *		fence file and published in shared memory.  Returns the previous
 *		mode.  Raises an error if the file cannot be written or the array is
 *		full.
 *
 * Order: a fence is written to the file before it is published, so that
 * a fence someone relies on survives a crash; a lifted fence is published
 * first, then written, so that clients write as soon as it is lifted (the
 * caller, waiting for fence_clear's answer, still waits for the fsyncs:
 * see below).  If that write fails, the database is unfenced already
 * and the error says so; the file still names it (a crash before a
 * successful retry brings the fence back: the safe side), and the next
 * change rewrites the file.  With driftmirror.fence_durable off (a
 * superuser setting), a change is only published: the file is left stale
 * in the same way on purpose, and the caller mends it by calling the same
 * function again with the setting on (same mode: nothing to change but the
 * file).  A fence set that way does NOT survive a crash until mended: the
 * promotion driver mends the old primary's fence while the mirror catches
 * up, and before the flip, and the new primary's lifted fence once its
 * clients resumed, before leaving state unfencing (promote_postgres.c).
 * Changes are serialised by change_lock; backends checking the fence take
 * only the array's lock, briefly.
 */
static DmFenceMode
ChangeFence(Oid dboid, DmFenceMode mode)
{
	DmFenceEntry entries[DM_FENCE_MAX_DATABASES];
	int			count;
	int			i;
	int			found = -1;
	DmFenceMode old = DM_FENCE_NONE;
	char	   *name = NULL;

	RequireFence();
	/* catalog access before taking the locks */
	if (mode != DM_FENCE_NONE)
		name = get_database_name(dboid);

	/* an error below releases the locks through error cleanup */
	LWLockAcquire(FenceShared->change_lock, LW_EXCLUSIVE);
	count = FenceShared->count;	/* only changers write it: stable now */
	memcpy(entries, FenceShared->entries, sizeof(DmFenceEntry) * count);
	for (i = 0; i < count; i++)
		if (entries[i].dboid == dboid)
			found = i;
	if (found >= 0)
		old = entries[found].mode;

	if (old == mode)
	{
		/* nothing to change, but a file left stale by a failure is mended */
		if (FenceShared->file_stale)
		{
			WriteFenceFile(entries, count);
			FenceShared->file_stale = false;
		}
		LWLockRelease(FenceShared->change_lock);
		return old;
	}

	if (mode == DM_FENCE_NONE)
	{
		entries[found] = entries[count - 1];
		count--;
	}
	else
	{
		if (found < 0)
		{
			if (count >= DM_FENCE_MAX_DATABASES)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("too many fenced databases on this node"),
						 errdetail("At most %d databases can be fenced at once.",
								   DM_FENCE_MAX_DATABASES)));
			found = count++;
			entries[found].dboid = dboid;
		}
		entries[found].mode = mode;
		entries[found].since = GetCurrentTimestamp();
		namestrcpy(&entries[found].dbname, name ? name : "?");
	}

	if (mode != DM_FENCE_NONE && DmFenceDurable)
		WriteFenceFile(entries, count);
	else
		FenceShared->file_stale = true;

	LWLockAcquire(FenceShared->lock, LW_EXCLUSIVE);
	memcpy(FenceShared->entries, entries, sizeof(DmFenceEntry) * count);
	FenceShared->count = count;
	pg_atomic_fetch_add_u64(&FenceShared->generation, 1);
	LWLockRelease(FenceShared->lock);

	if (!DmFenceDurable)
	{
		/* the file has the old state (file_stale): a later change mends it */
		LWLockRelease(FenceShared->change_lock);
		ereport(LOG,
				(errmsg("driftmirror: fence of database %u changed from %s to %s (the fence file is written later)",
						dboid, DmFenceModeName(old), DmFenceModeName(mode))));
		return old;
	}

	if (mode == DM_FENCE_NONE)
	{
		ErrorContextCallback errcallback;

		errcallback.callback = LiftedButStaleContext;
		errcallback.arg = (void *) &dboid;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
		WriteFenceFile(entries, count);
		error_context_stack = errcallback.previous;
	}
	FenceShared->file_stale = false;
	LWLockRelease(FenceShared->change_lock);

	ereport(LOG,
			(errmsg("driftmirror: fence of database %u changed from %s to %s",
					dboid, DmFenceModeName(old), DmFenceModeName(mode))));
	return old;
}

DmFenceMode
DmFenceSet(Oid dboid, DmFenceMode mode)
{
	Assert(mode != DM_FENCE_NONE);
	return ChangeFence(dboid, mode);
}

DmFenceMode
DmFenceClear(Oid dboid)
{
	return ChangeFence(dboid, DM_FENCE_NONE);
}

/*
 * FencedProcess
 *		Whether the fence applies to this kind of process at all: client
 *		backends, WAL senders, and background workers other than
 *		PostgreSQL's own (logical replication apply and table sync,
 *		parallel workers, whose leader is checked) and driftmirror's.
 *		Autovacuum and the other auxiliary processes are never fenced.
 */
static bool
FencedProcess(void)
{
	if (MyBackendType == B_BACKEND || MyBackendType == B_WAL_SENDER)
		return true;
	if (MyBackendType != B_BG_WORKER || MyBgworkerEntry == NULL)
		return false;
	return strcmp(MyBgworkerEntry->bgw_library_name, "postgres") != 0 &&
		strcmp(MyBgworkerEntry->bgw_library_name, "driftmirror") != 0;
}

/*
 * DmFenceCurrent
 *		The fence that applies to this session's statements: NONE unless
 *		this is a fenced kind of process (FencedProcess) connected to a
 *		fenced database and not one of driftmirror's own sessions.
 */
static DmFenceMode
DmFenceCurrent(void)
{
	uint64		gen;

	if (FenceShared == NULL || DmFenceBypass || FenceInternal > 0)
		return DM_FENCE_NONE;
	if (!FencedProcess())
		return DM_FENCE_NONE;
	if (!OidIsValid(MyDatabaseId))
		return DM_FENCE_NONE;

	pg_memory_barrier();
	gen = pg_atomic_read_u64(&FenceShared->generation);
	if (gen != CachedGeneration)
	{
		CachedMode = DmFenceModeOf(MyDatabaseId);
		CachedGeneration = gen;
	}
	return CachedMode;
}

/*
 * PlanWrites
 *		Whether a plan writes or locks rows of a non-temporary relation (the
 *		same test as PostgreSQL's ExecCheckXactReadOnly).
 */
static bool
PlanWrites(PlannedStmt *plannedstmt)
{
	ListCell   *l;

	foreach(l, plannedstmt->rtable)
	{
		RangeTblEntry *rte = (RangeTblEntry *) lfirst(l);

		if (rte->rtekind != RTE_RELATION)
			continue;
		if ((rte->requiredPerms & (~ACL_SELECT)) == 0)
			continue;
		return true;
	}
	return false;
}

static void
FenceErrorHint(DmFenceMode mode, const char *what, const char *hint)
{
	char	   *db = get_database_name(MyDatabaseId);

	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot execute %s in database \"%s\": it is fenced by driftmirror",
					what, db ? db : "?"),
			 errdetail("The database is fenced in %s mode; only logical replication and driftmirror may write.",
					   DmFenceModeName(mode)),
			 errhint("%s", hint)));
}

static void
FenceError(DmFenceMode mode, const char *what)
{
	FenceErrorHint(mode, what, "Write to the primary of this database.");
}

/*
 * VacuumOption
 *		Whether a VACUUM statement's option list turns option "name" on.
 */
static bool
VacuumOption(VacuumStmt *stmt, const char *name)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *opt = (DefElem *) lfirst(lc);

		if (strcmp(opt->defname, name) == 0)
			return defGetBoolean(opt);
	}
	return false;
}

/*
 * RefusedUtility
 *		The name of a utility statement the fence refuses before it starts,
 *		or NULL.  PostgreSQL lets these run in a read-only transaction
 *		(they change no data as pg_dump sees it), so without this they
 *		would run to the end, holding strong locks that stall the apply
 *		worker, and fail only at commit (they take a transaction id):
 *		VACUUM FULL, CLUSTER and REINDEX rewrite whole relations, ANALYZE
 *		writes pg_statistic.  COMMIT PREPARED is refused because the
 *		transaction it commits was prepared before the fence: its commit
 *		would land after the fence LSN, on a node that is no longer the
 *		primary (ROLLBACK PREPARED passes); PREPARE TRANSACTION, as on a hot
 *		standby, because what it prepares could not commit here.  Plain
 *		VACUUM passes: it takes no transaction id, and autovacuum does the
 *		same work anyway.
 */
static const char *
RefusedUtility(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_TransactionStmt:
			if (((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
				return "COMMIT PREPARED";
			/* even of a read-only transaction: it could not commit here */
			if (((TransactionStmt *) stmt)->kind == TRANS_STMT_PREPARE)
				return "PREPARE TRANSACTION";
			return NULL;
		case T_VacuumStmt:
			{
				VacuumStmt *v = (VacuumStmt *) stmt;

				if (!v->is_vacuumcmd)
					return "ANALYZE";
				if (VacuumOption(v, "full"))
					return "VACUUM FULL";
				if (VacuumOption(v, "analyze"))
					return "VACUUM ANALYZE";
				return NULL;
			}
		case T_ClusterStmt:
			return "CLUSTER";
		case T_ReindexStmt:
			return "REINDEX";
		case T_LockStmt:
			/*
			 * PostgreSQL allows LOCK in read-only transactions, but a strong
			 * lock on a mirror stalls the apply worker: refuse what a hot
			 * standby refuses.
			 */
			if (((LockStmt *) stmt)->mode > RowExclusiveLock)
				return "LOCK TABLE in this mode";
			return NULL;
		default:
			return NULL;
	}
}

static void
DmFenceExecutorStart(QueryDesc *queryDesc, int eflags)
{
	DmFenceMode mode = DmFenceCurrent();

	if (mode != DM_FENCE_NONE && (eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0)
	{
		if (PlanWrites(queryDesc->plannedstmt))
			FenceError(mode, GetCommandTagName(CreateCommandTag((Node *) queryDesc->plannedstmt)));
		XactReadOnly = true;
	}

	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
DmFenceProcessUtility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	DmFenceMode mode = DmFenceCurrent();
	ErrorContextCallback errcallback;

	if (mode != DM_FENCE_NONE)
	{
		const char *refused = RefusedUtility(pstmt->utilityStmt);

		if (refused != NULL && IsA(pstmt->utilityStmt, TransactionStmt) &&
			((TransactionStmt *) pstmt->utilityStmt)->kind == TRANS_STMT_COMMIT_PREPARED)
			FenceErrorHint(mode, refused,
						   "ROLLBACK PREPARED is allowed; COMMIT PREPARED only once the database is no longer fenced.");
		if (refused != NULL)
			FenceError(mode, refused);
		XactReadOnly = true;
		errcallback.callback = DmFenceErrorContext;
		errcallback.arg = (void *) DmFenceModeName(mode);
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (mode != DM_FENCE_NONE)
		error_context_stack = errcallback.previous;
}

/*
 * DmFenceErrorContext
 *		Explain read-only errors raised inside a fenced utility statement.
 */
static void
DmFenceErrorContext(void *arg)
{
	if (geterrcode() == ERRCODE_READ_ONLY_SQL_TRANSACTION)
		errcontext("database is fenced by driftmirror (mode %s)",
				   (const char *) arg);
}

/*
 * DmFenceXactCallback
 *		Backstop: refuse to commit a transaction of a fenced database that
 *		wrote without going through the hooks (fast-path function calls).
 */
static void
DmFenceXactCallback(XactEvent event, void *arg)
{
	DmFenceMode mode;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (FenceAdminXact)
				break;
			if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
				break;
			mode = DmFenceCurrent();
			if (mode != DM_FENCE_NONE)
				FenceError(mode, "a writing transaction");
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			FenceAdminXact = false;
			break;
		default:
			break;
	}
}

/*
 * DmFenceClientAuthentication
 *		Advice to clients: a new session of a fenced database starts with
 *		default_transaction_read_only = on, reported to the client with the
 *		other settings at the end of the startup, so that libpq's
 *		target_session_attrs=read-write moves on to another host.  Set at
 *		the override level: database, role and startup-packet settings
 *		applied later in the startup do not undo it; a SET in the session
 *		does (session_bypass relies on that).
 */
static void
DmFenceClientAuthentication(Port *port, int status)
{
	bool		fenced = false;
	int			i;

	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);
	if (status != STATUS_OK || FenceShared == NULL ||
		port->database_name == NULL || port->database_name[0] == '\0' ||
		(am_walsender && !am_db_walsender))
		return;

	LWLockAcquire(FenceShared->lock, LW_SHARED);
	for (i = 0; i < FenceShared->count; i++)
		if (strcmp(NameStr(FenceShared->entries[i].dbname), port->database_name) == 0)
			fenced = true;
	LWLockRelease(FenceShared->lock);

	if (fenced)
		SetConfigOption("default_transaction_read_only", "on",
						PGC_SUSET, PGC_S_OVERRIDE);
}

/* ---- SQL interface (extension driftmirror_node) ---- */

PG_FUNCTION_INFO_V1(driftmirror_fence_set);
PG_FUNCTION_INFO_V1(driftmirror_fence_clear);
PG_FUNCTION_INFO_V1(driftmirror_fence_status);
PG_FUNCTION_INFO_V1(driftmirror_session_bypass);

/*
 * driftmirror_node.fence_set(mode text) returns text
 *		Fence the current database; returns the previous mode ('none' if it
 *		was not fenced).  Immediate and not transactional.
 */
Datum
driftmirror_fence_set(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	DmFenceMode mode = DmFenceModeFromName(name);
	DmFenceMode old;

	if (mode == DM_FENCE_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid fence mode \"%s\"", name),
				 errhint("Valid modes are \"mirror\" and \"switchover\"; use fence_clear() to lift the fence.")));
	RequireFence();
	old = DmFenceSet(MyDatabaseId, mode);
	FenceAdminXact = true;
	PG_RETURN_TEXT_P(cstring_to_text(DmFenceModeName(old)));
}

/*
 * driftmirror_node.fence_clear() returns text
 *		Lift the fence of the current database; returns the previous mode.
 *		Idempotent.
 */
Datum
driftmirror_fence_clear(PG_FUNCTION_ARGS)
{
	DmFenceMode old;

	RequireFence();
	old = DmFenceClear(MyDatabaseId);
	FenceAdminXact = true;
	PG_RETURN_TEXT_P(cstring_to_text(DmFenceModeName(old)));
}

/*
 * driftmirror_node.fence_status() returns setof (dboid oid, database name,
 *		mode text, since timestamptz): every fenced database of the node.
 */
Datum
driftmirror_fence_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DmFenceEntry entries[DM_FENCE_MAX_DATABASES];
	int			count;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (FenceShared == NULL)
		PG_RETURN_VOID();

	LWLockAcquire(FenceShared->lock, LW_SHARED);
	count = FenceShared->count;
	memcpy(entries, FenceShared->entries, sizeof(DmFenceEntry) * count);
	LWLockRelease(FenceShared->lock);

	for (i = 0; i < count; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = ObjectIdGetDatum(entries[i].dboid);
		values[1] = NameGetDatum(&entries[i].dbname);
		values[2] = CStringGetTextDatum(DmFenceModeName(entries[i].mode));
		values[3] = TimestampTzGetDatum(entries[i].since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/*
 * driftmirror_node.session_bypass() returns void
 *		Mark this session as one of driftmirror's own: the fence lets it
 *		write until it ends, and its later transactions are read-write by
 *		default (the current one keeps its mode).  EXECUTE is granted to nobody but superusers
 *		and driftmirror_admin.
 */
Datum
driftmirror_session_bypass(PG_FUNCTION_ARGS)
{
	DmFenceBypass = true;
	/* new sessions of a fenced database start read-only: this one writes */
	SetConfigOption("default_transaction_read_only", "off",
					PGC_USERSET, PGC_S_SESSION);
	PG_RETURN_VOID();
}
