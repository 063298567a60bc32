/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *	  Validation of resource endpoints: libpq conninfo strings for
 *	  PostgreSQL resources, http/https URLs for actuator-driven resources.
 *
 * Passwords are refused in both forms: they belong in the passfile or
 * pg_service.conf of the operating-system user running the server, never in
 * the catalog where they could be read or logged.  Error messages never
 * repeat the endpoint text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "libpq-fe.h"
#include "utils/builtins.h"

#include "driftmirror.h"
#include "endpoint.h"

PG_FUNCTION_INFO_V1(driftmirror_check_endpoint);

/*
 * DmCheckConninfo
 *		Raise an error unless conninfo parses as a libpq connection string
 *		without a password.
 */
void
DmCheckConninfo(const char *conninfo)
{
	PQconninfoOption *opts;
	PQconninfoOption *opt;
	char	   *err = NULL;
	bool		has_password = false;

	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL)
	{
		char	   *msg = pstrdup(err ? err : "out of memory");

		if (err)
			PQfreemem(err);
		/* libpq's message ends with a newline */
		if (msg[0] != '\0' && msg[strlen(msg) - 1] == '\n')
			msg[strlen(msg) - 1] = '\0';
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid connection string for a postgres resource"),
				 errdetail_internal("%s", msg)));
	}

	for (opt = opts; opt->keyword != NULL; opt++)
	{
		if (strcmp(opt->keyword, "password") == 0 &&
			opt->val != NULL && opt->val[0] != '\0')
			has_password = true;
	}
	PQconninfoFree(opts);

	if (has_password)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("connection string must not contain a password"),
				 errhint("Put the password in the passfile (~/.pgpass) or pg_service.conf of the operating system user that runs the server.")));
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
 * driftmirror_check_endpoint(kind text, endpoint text) returns void
 *		SQL wrapper used by dm_add_resource: raises an error for a bad
 *		endpoint of the given resource kind.
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
