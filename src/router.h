/*-------------------------------------------------------------------------
 *
 * router.h
 *	  Routers that follow a group's traffic shares: HAProxy (runtime API),
 *	  pgbouncer (admin console) and webhooks.  router.c loads what each
 *	  router must be told (driftmirror._router_work) in one transaction,
 *	  calls the driver of its kind outside any transaction, and records the
 *	  outcome in another.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_ROUTER_H
#define DM_ROUTER_H

/* first key of the advisory lock serialising router updates of a group */
#define DM_ROUTER_LOCK_KEY	6582898 /* 0x647272, "drr" */

/* one HAProxy server weight to set */
typedef struct DmRouterServer
{
	char	   *backend;
	char	   *server;
	int			weight;
} DmRouterServer;

/* one router and the change it must apply (palloc'd in the caller's context) */
typedef struct DmRouterTask
{
	int64		router_id;
	char	   *name;
	char	   *kind;
	char	   *endpoint;		/* socket, conninfo or URL: never in messages */
	int64		change_id;
	char	   *digest;			/* md5 of the change without id and key */
	char	   *change;			/* the change as JSON text (webhook body) */
	char	   *idempotency_key;
	int			timeout_ms;
	/* haproxy */
	DmRouterServer *servers;
	int			nservers;
	/* pgbouncer */
	char	   *database;
	char	   *target;			/* conninfo of the node it must point at */
	char	   *databases_file;
	/* webhook */
	int			retries;
	char	   *hmac_key_file;

	/* outcome, set by the driver (applied: JSON text) */
	bool		ok;
	char	   *error;
	char	   *applied;
} DmRouterTask;

/*
 * Drivers: apply task's change; on success set task->applied and return;
 * raise an error (caught by router.c and recorded as the router's error)
 * on failure.  Every network wait has the task's deadline and is
 * interruptible.
 */
extern void DmRouterApplyHaproxy(DmRouterTask *task);
extern void DmRouterApplyPgbouncer(DmRouterTask *task);
extern void DmRouterApplyWebhook(DmRouterTask *task);

/*
 * pgbouncer pieces a promotion uses to switch a paused pooler without
 * waiting (promote_poolers.c), all in router_pgbouncer.c:
 *	 - DmPgbouncerFileContent: the router's [databases] file pointing
 *	   database at target (a conninfo), palloc'd; sets *host and *port to
 *	   what SHOW DATABASES must then show.  Raises on a target that cannot
 *	   be written there;
 *	 - DmPgbouncerFilePath: where the file of databases_file lives (raises
 *	   when driftmirror.router_files_directory is not set);
 *	 - DmPgbouncerFileHolds: whether the file at path holds content;
 *	 - DmPgbouncerWriteSynced: write content to path, fsync'd (raises);
 *	 - DmPgbouncerCheckTarget: SHOW DATABASES on an admin console session
 *	   must show database on host and port (raises otherwise).
 */
extern char *DmPgbouncerFileContent(const char *router_name, const char *database,
									const char *target, char **host, char **port);
extern char *DmPgbouncerFilePath(const char *databases_file);
extern bool DmPgbouncerFileHolds(const char *path, const char *content);
extern void DmPgbouncerWriteSynced(const char *path, const char *content,
								   const char *router_name);
#ifdef LIBPQ_FE_H
extern void DmPgbouncerCheckTarget(PGconn *conn, const char *label, const char *database,
								   const char *host, const char *port, int timeout_ms);
#endif

/*
 * Bring the routers of a group up to date: all of them (due_only false,
 * dm_shift) or only those behind whose back-off has passed (the group
 * step).  Runs outside any transaction; opens its own.
 */
extern void DmApplyRouters(int64 group_id, bool due_only);

/*
 * The same for the routers of one kind only (a promotion's flip: its
 * pgbouncer routers, paused, before it resumes them), with the group's
 * router lock waited for lock_wait_ms at most.  Returns false when the
 * lock was not had in time (nothing done: the group step catches up).
 */
extern bool DmApplyRoutersOfKind(int64 group_id, const char *kind, int lock_wait_ms);

/* the group step's phase: retry routers left behind (takes a try-lock) */
extern void DmRunRouterPhase(int64 group_id);

/* the dm_shift worker */
extern PGDLLEXPORT void DmShiftWorkerMain(Datum main_arg);

#endif							/* DM_ROUTER_H */
