/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *	  Validation of resource endpoints: libpq conninfo strings for
 *	  PostgreSQL resources, http/https URLs for actuator-driven resources;
 *	  the client form of a conninfo that routes hand out; the hint of a
 *	  connection that found no password.
 *
 * The server connects to endpoints with its own credentials: the passfile
 * of its operating-system user, or trust/peer authentication on its own
 * socket.  So a conninfo is reduced to an allow-list of keywords that name
 * where to connect and how to protect the connection; every keyword that
 * reads a file of the server (passfile, service, sslkey, ...), changes the
 * remote session (options) or splits the host the passfile is matched on
 * from the address the password goes to (hostaddr next to host) is
 * refused.  Passwords are refused too: they belong in the passfile, never
 * in the catalog.  Who may name an endpoint at all is decided in SQL
 * (35_resources.sql, the endpoint approvals); DmCallerIsSuperuser is its
 * C half.  Error messages never repeat the endpoint text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pwd.h>
#include <unistd.h>

#include "fmgr.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "endpoint.h"

PG_FUNCTION_INFO_V1(driftmirror_check_endpoint);
PG_FUNCTION_INFO_V1(driftmirror_caller_is_superuser);
PG_FUNCTION_INFO_V1(driftmirror_client_conninfo);

/*
 * The keywords an endpoint may use.  client: kept in what routes hand to
 * application clients (where to connect and how to protect the
 * connection; never the role, which is the administration role).
 */
typedef struct ConnKeyword
{
	const char *name;
	bool		client;
} ConnKeyword;

static const ConnKeyword AllowedKeywords[] = {
	{"host", true},
	{"hostaddr", true},
	{"port", true},
	{"dbname", true},
	{"user", false},
	{"connect_timeout", true},
	{"application_name", false},
	{"fallback_application_name", false},
	{"keepalives", true},
	{"keepalives_idle", true},
	{"keepalives_interval", true},
	{"keepalives_count", true},
	{"tcp_user_timeout", true},
	{"sslmode", true},
	{"sslcompression", true},
	{"sslsni", true},
	{"ssl_min_protocol_version", true},
	{"ssl_max_protocol_version", true},
	{"channel_binding", true},
	{"gssencmode", true},
	{"target_session_attrs", true},
	{NULL, false}
};

/* Why a known keyword is refused: shown as the error's detail */
typedef struct RefusedKeyword
{
	const char *name;
	const char *why;
} RefusedKeyword;

static const RefusedKeyword RefusedKeywords[] = {
	{"passfile", "It would make the server read a password file of the caller's choice."},
	{"service", "It would make the server read a service file entry of the caller's choice, with settings this check cannot see."},
	{"servicefile", "It would make the server read a service file of the caller's choice."},
	{"sslkey", "It would make the server read and use a private key of the caller's choice."},
	{"sslcert", "It would make the server read and present a client certificate of the caller's choice."},
	{"sslpassword", "It would unlock a private key of the server's."},
	{"sslrootcert", "It would make the server read a file of the caller's choice; the server's default root certificate file applies."},
	{"sslcrl", "It would make the server read a file of the caller's choice."},
	{"sslcrldir", "It would make the server read a directory of the caller's choice."},
	{"options", "It would change settings of the remote session the worker relies on."},
	{"requirepeer", "It changes how the server authenticates a socket peer."},
	{"krbsrvname", "It would change the Kerberos principal the server's credentials are used for."},
	{"gsslib", "It would change the GSS library the server's credentials are used with."},
	{"replication", "The worker chooses the connection type itself."},
	{"load_balance_hosts", "The order of hosts is part of the endpoint."},
	{"require_auth", "Not known to this PostgreSQL 15 client library."},
	{NULL, NULL}
};

static const ConnKeyword *
FindAllowed(const char *keyword)
{
	const ConnKeyword *k;

	for (k = AllowedKeywords; k->name != NULL; k++)
		if (strcmp(k->name, keyword) == 0)
			return k;
	return NULL;
}

/* libpq's parse error without its final newline, palloc'd */
static char *
ParseError(char *err)
{
	char	   *msg = pstrdup(err ? err : "out of memory");
	size_t		len = strlen(msg);

	if (err)
		PQfreemem(err);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	return msg;
}

/*
 * ParseConninfo
 *		PQconninfoParse, raising invalid_parameter_value on a string libpq
 *		cannot parse.  The result holds only what the string sets (no
 *		defaults); free it with PQconninfoFree.
 */
static PQconninfoOption *
ParseConninfo(const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	if (opts == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid connection string for a postgres endpoint"),
				 errdetail_internal("%s", ParseError(err))));
	return opts;
}

/* is v one of the values of list (NULL-terminated)? */
static bool
OneOf(const char *v, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(v, *list) == 0)
			return true;
	return false;
}

/*
 * CheckOneKeyword
 *		Raise an error for a keyword (with a value) an endpoint must not use.
 */
static void
CheckOneKeyword(const char *keyword, const char *val)
{
	static const char *const sslmodes[] = {"disable", "allow", "prefer", "require",
	"verify-ca", "verify-full", NULL};
	static const char *const bindings[] = {"disable", "prefer", "require", NULL};
	const RefusedKeyword *r;

	if (strcmp(keyword, "password") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("connection string must not contain a password"),
				 errhint("Put the password in the passfile (~/.pgpass) of the operating system user that runs the server.")));

	if (FindAllowed(keyword) == NULL)
	{
		for (r = RefusedKeywords; r->name != NULL; r++)
			if (strcmp(r->name, keyword) == 0)
				break;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("connection string keyword \"%s\" is not allowed in an endpoint",
						keyword),
				 r->why ? errdetail("%s", r->why) : 0,
				 errhint("Endpoints may use host, hostaddr (without host), port, dbname, user, connect_timeout, application_name, keepalives*, tcp_user_timeout, sslmode, sslcompression, sslsni, ssl_min/max_protocol_version, channel_binding, gssencmode and target_session_attrs.")));
	}

	if (strcmp(keyword, "dbname") == 0 &&
		(strchr(val, '=') != NULL ||
		 strncmp(val, "postgresql://", 13) == 0 ||
		 strncmp(val, "postgres://", 11) == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dbname of an endpoint must be a database name, not a connection string"),
				 errdetail("libpq would expand it into more keywords than this check has seen.")));

	if (strcmp(keyword, "sslmode") == 0 && !OneOf(val, sslmodes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid sslmode \"%s\" in an endpoint", val)));
	if (strcmp(keyword, "channel_binding") == 0 && !OneOf(val, bindings))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid channel_binding \"%s\" in an endpoint", val)));
}

/*
 * DmCheckConninfo
 *		Raise an error unless conninfo parses as a libpq connection string
 *		that uses only allowed keywords (see the file header), no password,
 *		no hostaddr next to host, and no connection string in dbname.
 *		Multi-host strings are checked the same way (the keywords hold
 *		lists).
 */
void
DmCheckConninfo(const char *conninfo)
{
	PQconninfoOption *opts = ParseConninfo(conninfo);
	PQconninfoOption *opt;
	bool		has_host = false;
	bool		has_hostaddr = false;

	PG_TRY();
	{
		for (opt = opts; opt->keyword != NULL; opt++)
		{
			if (opt->val == NULL)
				continue;
			/* an empty password is no password, as before */
			if (opt->val[0] == '\0' && strcmp(opt->keyword, "password") == 0)
				continue;
			CheckOneKeyword(opt->keyword, opt->val);
			if (strcmp(opt->keyword, "host") == 0 && opt->val[0] != '\0')
				has_host = true;
			if (strcmp(opt->keyword, "hostaddr") == 0 && opt->val[0] != '\0')
				has_hostaddr = true;
		}
		if (has_host && has_hostaddr)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an endpoint must not give both host and hostaddr"),
					 errdetail("libpq matches the passfile on host but sends the password to hostaddr, so the two together could send the password of one server to another."),
					 errhint("Give host alone (a name or an address), or hostaddr alone.")));
	}
	PG_FINALLY();
	{
		PQconninfoFree(opts);
	}
	PG_END_TRY();
}

/*
 * DmConninfoProblem
 *		DmCheckConninfo for callers that must not raise (the metric
 *		collector): NULL when conninfo passes, else the error message,
 *		palloc'd in the caller's memory context.  The check only parses and
 *		allocates, so the caught error leaves nothing to clean up.
 */
char *
DmConninfoProblem(const char *conninfo)
{
	MemoryContext ctx = CurrentMemoryContext;
	char	   *volatile problem = NULL;

	PG_TRY();
	{
		DmCheckConninfo(conninfo);
	}
	PG_CATCH();
	{
		problem = DmCtlCatch(ctx, false)->message;
	}
	PG_END_TRY();
	return problem;
}

/*
 * DmCheckUrl
 *		Raise an error unless url is an http or https URL with a host and no
 *		credentials.
 */
void
DmCheckUrl(const char *url)
{
	const char *rest;
	const char *p;
	size_t		hostlen;

	if (pg_strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint URL must use the http or https scheme")));

	for (p = url; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("endpoint URL must not contain spaces or control characters")));
	}

	hostlen = strcspn(rest, "/?#");
	if (hostlen == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint URL has no host")));
	if (memchr(rest, '@', hostlen) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint URL must not contain credentials"),
				 errhint("Give credentials to the actuator through its own configuration, not in the URL.")));
}

/*
 * DmAppendConnValue
 *		Append a conninfo value to buf, single-quoted (with \ and ' escaped)
 *		when it is empty or holds a space, quote, backslash or '='.
 */
void
DmAppendConnValue(StringInfo buf, const char *v)
{
	const char *c;
	bool		plain = *v != '\0';

	for (c = v; *c; c++)
		if (*c == ' ' || *c == '\'' || *c == '\\' || *c == '=')
			plain = false;
	if (plain)
	{
		appendStringInfoString(buf, v);
		return;
	}
	appendStringInfoChar(buf, '\'');
	for (c = v; *c; c++)
	{
		if (*c == '\'' || *c == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *c);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * DmClientConninfo
 *		The form of an endpoint that application clients get from routes: a
 *		palloc'd conninfo with only the keywords of AllowedKeywords marked
 *		client (no user, no application name, nothing else).  Raises on a
 *		string libpq cannot parse.
 */
char *
DmClientConninfo(const char *conninfo)
{
	PQconninfoOption *opts = ParseConninfo(conninfo);
	const ConnKeyword *k;
	StringInfoData out;

	initStringInfo(&out);
	/* in the order of AllowedKeywords: host, port and dbname first */
	for (k = AllowedKeywords; k->name != NULL; k++)
	{
		PQconninfoOption *opt;

		if (!k->client)
			continue;
		for (opt = opts; opt->keyword != NULL; opt++)
			if (strcmp(opt->keyword, k->name) == 0)
				break;
		if (opt->keyword == NULL || opt->val == NULL)
			continue;
		if (out.len > 0)
			appendStringInfoChar(&out, ' ');
		appendStringInfo(&out, "%s=", opt->keyword);
		DmAppendConnValue(&out, opt->val);
	}
	PQconninfoFree(opts);
	return out.data;
}

/*
 * DmPassfileHint
 *		For use inside ereport(): when a libpq connection error says that no
 *		password was found or the password was refused, add a hint naming the
 *		passfile of the operating-system user that runs the server (PGPASSFILE
 *		when the server's environment sets it).  Returns 0 like errhint.
 */
int
DmPassfileHint(const char *libpq_message)
{
	const char *file = getenv("PGPASSFILE");
	char		path[MAXPGPATH];
	struct passwd *pw;

	if (libpq_message == NULL ||
		(strstr(libpq_message, "no password supplied") == NULL &&
		 strstr(libpq_message, "password authentication failed") == NULL))
		return 0;

	pw = getpwuid(geteuid());
	if (file == NULL || file[0] == '\0')
	{
		snprintf(path, sizeof(path), "%s/.pgpass",
				 (pw && pw->pw_dir) ? pw->pw_dir : "~");
		file = path;
	}
	return errhint("The server connects with the passfile of its operating system user \"%s\": add a line host:port:database:user:password for this node to %s, owned by that user with mode 0600 (see \"The replication role and the passfile\" in docs/operations.md).",
				   pw ? pw->pw_name : "?", file);
}

/*
 * DmCallerIsSuperuser
 *		Whether the role that called into driftmirror is a superuser: the
 *		outer role (session user or SET ROLE), not the owner of the
 *		SECURITY DEFINER function that asks.
 */
bool
DmCallerIsSuperuser(void)
{
	return superuser_arg(GetOuterUserId());
}

/*
 * driftmirror_check_endpoint(kind text, endpoint text) returns void
 *		SQL wrapper used wherever an endpoint is set: raises an error for a
 *		bad endpoint of the given resource kind.
 */
Datum
driftmirror_check_endpoint(PG_FUNCTION_ARGS)
{
	char	   *kind;
	char	   *endpoint;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("resource kind and endpoint must not be null")));

	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	endpoint = text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (endpoint[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint must not be empty")));

	if (strcmp(kind, "postgres") == 0)
		DmCheckConninfo(endpoint);
	else
		DmCheckUrl(endpoint);

	PG_RETURN_VOID();
}

/*
 * driftmirror_caller_is_superuser() returns boolean
 *		SQL wrapper of DmCallerIsSuperuser.
 */
Datum
driftmirror_caller_is_superuser(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(DmCallerIsSuperuser());
}

/*
 * driftmirror_client_conninfo(conninfo text) returns text
 *		SQL wrapper of DmClientConninfo (dm_client_conninfo).
 */
Datum
driftmirror_client_conninfo(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(DmClientConninfo(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}
