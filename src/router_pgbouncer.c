/*-------------------------------------------------------------------------
 *
 * router_pgbouncer.c
 *	  The pgbouncer router: points one pgbouncer database at the node that
 *	  takes its access kind's traffic (the largest share; the primary on a
 *	  tie), through a [databases] file pgbouncer includes and its admin
 *	  console.
 *
 * pgbouncer cannot change a database's host from the console, so the
 * router owns one small file, driftmirror.router_files_directory/<file>
 * (set by a superuser; pgbouncer.ini has "%include <that path>"), rewritten
 * atomically when the target changes.  Then, on the admin console (libpq,
 * simple queries only): RELOAD (pgbouncer re-reads its files), RECONNECT
 * <db> when the target changed (server connections close once released,
 * new ones go to the new node), and SHOW DATABASES must show the database
 * on the target's host and port.  That conversation is
 * DmRouterPgbouncerNext; router_io.c carries each statement as a console
 * request of the I/O engine (a session of its own each, with no set-up
 * statement: the console takes no SET), within the router's timeout, so
 * a console that never answers holds only its own router.
 *
 * A share strictly between 0 and 100 cannot be expressed by pgbouncer: it
 * follows the node with the larger share (docs/routing.md says so).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "storage/fd.h"
#include "utils/json.h"

#include "driftmirror.h"
#include "remote_conn.h"
#include "router.h"

/* a pgbouncer connection-string value: plain, or refused */
static const char *
PlainValue(const char *v, const char *what)
{
	const char *p;

	for (p = v; *p; p++)
		if (*p == ' ' || *p == '\'' || *p == '\\' || *p == '\n' || *p == '\r' || *p == '"')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the node's %s cannot be written in a pgbouncer [databases] line", what)));
	return v;
}

/*
 * DatabasesLine
 *		"<db> = host=.. port=.. dbname=.." from the target conninfo; sets
 *		*host and *port (palloc'd).  Raises if the conninfo has no host or
 *		cannot be parsed.
 */
static char *
DatabasesLine(const char *database, const char *target, char **host, char **port)
{
	PQconninfoOption *opts;
	PQconninfoOption *o;
	char	   *err = NULL;
	StringInfoData line;

	*host = NULL;
	*port = pstrdup("5432");
	opts = PQconninfoParse(target, &err);
	if (opts == NULL)
	{
		if (err)
			PQfreemem(err);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the node's connection string cannot be parsed")));
	}
	initStringInfo(&line);
	appendStringInfo(&line, "%s =", database);
	for (o = opts; o->keyword; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		/* no user=: pgbouncer logs in as its client, never as our role */
		if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "port") == 0 ||
			strcmp(o->keyword, "dbname") == 0)
		{
			appendStringInfo(&line, " %s=%s", o->keyword, PlainValue(o->val, o->keyword));
			if (strcmp(o->keyword, "host") == 0)
				*host = pstrdup(o->val);
			else if (strcmp(o->keyword, "port") == 0)
				*port = pstrdup(o->val);
		}
	}
	PQconninfoFree(opts);
	if (*host == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the node's connection string names no host")));
	return line.data;
}

/*
 * DmPgbouncerFileContent
 *		See router.h.
 */
char *
DmPgbouncerFileContent(const char *router_name, const char *database,
					   const char *target, char **host, char **port)
{
	return psprintf("; written by driftmirror for router %s: do not edit\n"
					"[databases]\n%s\n", router_name,
					DatabasesLine(database, target, host, port));
}

/*
 * DmPgbouncerFilePath
 *		See router.h.
 */
char *
DmPgbouncerFilePath(const char *databases_file)
{
	if (DmRouterFilesDirectory == NULL || DmRouterFilesDirectory[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("driftmirror.router_files_directory is not set to an absolute path"),
				 errhint("A superuser sets it; pgbouncer.ini includes the router's file from there.")));
	return psprintf("%s/%s", DmRouterFilesDirectory, databases_file);
}

/*
 * DmPgbouncerFileHolds
 *		See router.h.
 */
bool
DmPgbouncerFileHolds(const char *path, const char *content)
{
	StringInfoData old;
	char		buf[4096];
	size_t		n;
	FILE	   *f;

	f = AllocateFile(path, "r");
	if (f == NULL)
		return false;
	initStringInfo(&old);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		appendBinaryStringInfo(&old, buf, n);
	FreeFile(f);
	return strcmp(old.data, content) == 0;
}

/*
 * DmPgbouncerWriteSynced
 *		See router.h.
 */
void
DmPgbouncerWriteSynced(const char *path, const char *content, const char *router_name)
{
	FILE	   *f;

	f = AllocateFile(path, "w");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the databases file of router \"%s\": %m", router_name)));
	if (fwrite(content, 1, strlen(content), f) != strlen(content) ||
		fflush(f) != 0 || pg_fsync(fileno(f)) != 0)
	{
		int			save = errno;

		FreeFile(f);
		unlink(path);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the databases file of router \"%s\": %m", router_name)));
	}
	FreeFile(f);
}

/*
 * WriteDatabasesFile
 *		Replace the router's file with content unless it holds it already
 *		(atomic rename, fsync'd).  Returns whether it changed.  Raises on
 *		failure.
 */
static bool
WriteDatabasesFile(DmRouterTask *t, const char *content)
{
	char	   *path = DmPgbouncerFilePath(t->databases_file);
	char	   *tmp = psprintf("%s.tmp", path);

	if (DmPgbouncerFileHolds(path, content))
		return false;
	DmPgbouncerWriteSynced(tmp, content, t->name);
	if (durable_rename(tmp, path, ERROR) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not replace the databases file of router \"%s\"", t->name)));
	return true;
}

/*
 * DmPgbouncerCheckTarget
 *		See router.h.
 */
void
DmPgbouncerCheckTarget(PGconn *conn, const char *label, const char *database,
					   const char *host, const char *port, int timeout_ms)
{
	PGresult   *volatile res;

	res = DmRemoteExec(conn, label, "SHOW DATABASES", 0, NULL, timeout_ms);
	PG_TRY();
	{
		DmPgbouncerShowsTarget(res, database, host, port);
	}
	PG_FINALLY();
	{
		PQclear(res);
	}
	PG_END_TRY();
}

/*
 * DmPgbouncerShowsTarget
 *		See router.h.
 */
void
DmPgbouncerShowsTarget(const PGresult *res, const char *database,
					   const char *host, const char *port)
{
	int			row;
	int			c_name,
				c_host,
				c_port;
	bool		ok = false;

	c_name = PQfnumber(res, "name");
	c_host = PQfnumber(res, "host");
	c_port = PQfnumber(res, "port");
	for (row = 0; row < PQntuples(res) && c_name >= 0 && c_host >= 0 && c_port >= 0; row++)
		if (strcmp(PQgetvalue(res, row, c_name), database) == 0)
			ok = strcmp(PQgetvalue(res, row, c_host), host) == 0 &&
				strcmp(PQgetvalue(res, row, c_port), port) == 0;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("pgbouncer does not show database \"%s\" on the node it was pointed at after RELOAD",
						database),
				 errhint("Check that pgbouncer.ini includes the router's file (%%include) after its own [databases] entries.")));
}

/* the conversation's state between exchanges */
typedef struct PgbouncerState
{
	char	   *host;			/* where SHOW DATABASES must show it */
	char	   *port;
	bool		changed;		/* the file changed: RECONNECT */
	int			sent;			/* statements sent so far */
} PgbouncerState;

/*
 * DmRouterPgbouncerNext
 *		See router.h.  The first call writes the router's file (local, fast)
 *		and asks for RELOAD; then RECONNECT <db> if the file changed; then
 *		SHOW DATABASES, whose answer is checked.
 */
bool
DmRouterPgbouncerNext(DmRouterTask *t, DmRouterExchange *x)
{
	PgbouncerState *st = (PgbouncerState *) t->driver_state;

	if (st == NULL)
	{
		char	   *content;

		if (t->target == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("router \"%s\" has no node to point at", t->name)));
		st = palloc0(sizeof(PgbouncerState));
		content = DmPgbouncerFileContent(t->name, t->database, t->target, &st->host, &st->port);
		st->changed = WriteDatabasesFile(t, content);
		t->driver_state = st;
		x->kind = DM_ROUTER_IO_CONSOLE;
		x->text = "RELOAD";
		st->sent = 1;
		return true;
	}
	if (st->sent == 1 && st->changed)
	{
		x->text = psprintf("RECONNECT %s", t->database);
		st->sent = 2;
		return true;
	}
	if (st->sent < 3)
	{
		x->text = "SHOW DATABASES";
		st->sent = 3;
		return true;
	}
	DmPgbouncerShowsTarget(x->res, t->database, st->host, st->port);

	{
		StringInfoData applied;

		initStringInfo(&applied);
		appendStringInfo(&applied, "{\"change_id\": " INT64_FORMAT ", \"database\": ", t->change_id);
		escape_json(&applied, t->database);
		appendStringInfoString(&applied, ", \"target\": ");
		escape_json(&applied, t->target);
		appendStringInfo(&applied, ", \"reconnected\": %s}", st->changed ? "true" : "false");
		t->applied = applied.data;
	}
	return false;
}
