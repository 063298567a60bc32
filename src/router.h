/*-------------------------------------------------------------------------
 *
 * router.h
 *	  Routers that follow a group's traffic shares: HAProxy (runtime API),
 *	  pgbouncer (admin console) and webhooks.  router.c loads what each
 *	  router must be told (driftmirror._router_work) in one transaction,
 *	  has its conversation run outside any transaction, and records the
 *	  outcome in another.
 *
 * A driver (router_haproxy.c, router_pgbouncer.c, router_webhook.c) is
 * one function, DmRouter<Kind>Next(task, exchange): what to send next,
 * given the answer to what it sent before.  It owns the protocol (the
 * commands, how an answer is read and checked, retries and their
 * back-off, the applied record) and does no I/O itself; router_io.c runs
 * the conversations in the worker's I/O engine (io_engine.c), side by
 * side, for the group step (which parks) and for the dm_shift and
 * promotion workers (which wait in the engine until their routers are
 * done).  So each protocol is written once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_ROUTER_H
#define DM_ROUTER_H

#include "libpq-fe.h"

#include "group_step.h"
#include "http.h"

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

	/* outcome (applied: JSON text, set by the driver) */
	bool		done;			/* the conversation has ended */
	bool		ok;
	char	   *error;
	char	   *applied;

	/* the driver's own state between exchanges, and router_io.c's */
	void	   *driver_state;
	struct DmRouterJob *job;
} DmRouterTask;

/* how an exchange travels (router_io.c picks the engine's request) */
typedef enum DmRouterIoKind
{
	DM_ROUTER_IO_NONE = 0,		/* nothing sent yet: the driver's first call */
	DM_ROUTER_IO_SOCKET,		/* a line on a raw socket, read to EOF */
	DM_ROUTER_IO_CONSOLE,		/* a statement on an admin console (libpq) */
	DM_ROUTER_IO_HTTP			/* an HTTP request */
} DmRouterIoKind;

/*
 * One exchange of a router's conversation: the driver fills the first
 * part, router_io.c the answer, and calls the driver again with it.  The
 * task's endpoint and timeout_ms apply to every exchange.
 */
typedef struct DmRouterExchange
{
	DmRouterIoKind kind;
	char	   *text;			/* socket: the command line (a newline is
								 * added); console: the statement */
	DmHttpRequest http;			/* http: the request */
	int			delay_ms;		/* wait this long (in the engine) first */
	int			attempt;		/* the driver's count of tries (retries) */
	bool		sees_failure;	/* hand a failed exchange back to the driver
								 * (retries); else the failure ends the
								 * conversation as the router's error */

	/* the answer */
	bool		ok;				/* it went through (any answer) */
	char	   *error;			/* when not ok: why, naming the router */
	char	   *sqlstate;		/* when not ok: an SQLSTATE for it */
	char	   *detail;			/* when not ok: the transport's words */
	char	   *answer;			/* socket: what the peer sent */
	PGresult   *res;			/* console: the result (valid during the
								 * call only) */
	DmHttpResponse resp;		/* http: the response or the error */
} DmRouterExchange;

/*
 * Drivers: given the answer to the exchange sent last (x->kind NONE on
 * the first call), check it and fill x with the next exchange (true), or
 * set task->applied (false: done).  Raise an error when the router
 * refused or answered wrong (router_io.c records it as the router's
 * error); an exchange that did not go through comes back only with
 * sees_failure.  No network I/O here: local work only (pgbouncer's file).
 */
extern bool DmRouterHaproxyNext(DmRouterTask *task, DmRouterExchange *x);
extern bool DmRouterPgbouncerNext(DmRouterTask *task, DmRouterExchange *x);
extern bool DmRouterWebhookNext(DmRouterTask *task, DmRouterExchange *x);

/*
 * router_io.c: run one task's conversation in the I/O engine.
 * DmRouterStart starts it (the task and everything it needs live in cxt);
 * when it ends (task->done, ok or error set), done(arg) is called from
 * the engine's wait, or at once if it ended without a network exchange.
 * DmRouterCancel drops what is in flight (no call).  Never raise except
 * for interrupts and out of memory.
 */
extern void DmRouterStart(DmRouterTask *task, MemoryContext cxt,
						  void (*done) (void *arg), void *arg);
extern void DmRouterCancel(DmRouterTask *task);

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
 *	   must show database on host and port (raises otherwise);
 *	   DmPgbouncerShowsTarget the same check of a SHOW DATABASES result.
 */
extern char *DmPgbouncerFileContent(const char *router_name, const char *database,
									const char *target, char **host, char **port);
extern char *DmPgbouncerFilePath(const char *databases_file);
extern bool DmPgbouncerFileHolds(const char *path, const char *content);
extern void DmPgbouncerWriteSynced(const char *path, const char *content,
								   const char *router_name);
extern void DmPgbouncerCheckTarget(PGconn *conn, const char *label, const char *database,
								   const char *host, const char *port, int timeout_ms);
extern void DmPgbouncerShowsTarget(const PGresult *res, const char *database,
								   const char *host, const char *port);

/*
 * Bring all the routers of a group up to date (dm_shift's worker), waiting
 * in the I/O engine until every one has answered or failed.  Runs outside
 * any transaction; opens its own.
 */
extern void DmApplyRouters(int64 group_id);

/*
 * The same for the routers of one kind only (a promotion's flip: its
 * pgbouncer routers, paused, before it resumes them), with the group's
 * router lock waited for lock_wait_ms at most.  Returns false when the
 * lock was not had in time (nothing done: the group step catches up).
 */
extern bool DmApplyRoutersOfKind(int64 group_id, const char *kind, int lock_wait_ms);

/*
 * The group step's phase: the routers behind the shares whose back-off
 * has passed, updated through the I/O engine while the step is parked
 * (tries the group's router lock, held until they are done)
 */
extern DmPhaseResult DmRouterPhase(DmGroupRun *run);

/* the dm_shift worker */
extern PGDLLEXPORT void DmShiftWorkerMain(Datum main_arg);

#endif							/* DM_ROUTER_H */
