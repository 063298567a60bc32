/*-------------------------------------------------------------------------
 *
 * router_haproxy.c
 *	  The HAProxy router: server weights and states through the runtime API
 *	  (the "stats socket"), over a unix socket or TCP.
 *
 * The conversation (DmRouterHaproxyNext; router_io.c carries it as raw
 * socket requests of the I/O engine): each command is one connection in
 * HAProxy's non-interactive mode: the command and a newline are sent, the
 * answer is read until HAProxy closes, all within the router's timeout.
 * For each server: "set server B/S weight W", then "set server B/S state
 * ready" (W > 0) or "drain" (W = 0), each of which must answer nothing;
 * finally "show servers state B" for each backend, which must show every
 * weight and state set.  The first command that fails or times out ends
 * the conversation with that error.  TCP endpoints take a numeric address
 * (no DNS lookup without a deadline).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "router.h"

/* HAProxy's srv_admin_state bits: forced or inherited drain */
#define DM_HAPROXY_ADMF_FDRAIN	0x08
#define DM_HAPROXY_ADMF_IDRAIN	0x10

/* the conversation's state between exchanges */
typedef struct HaproxyState
{
	int			sent;			/* commands sent so far */
	const char *showing;		/* the backend of the "show" in flight, or
								 * NULL (a "set" was) */
	StringInfoData applied;		/* the applied record, being built */
	bool		first;			/* no server in it yet */
} HaproxyState;

/* CheckSetAnswer: a set command answers nothing when it worked (raises) */
static void
CheckSetAnswer(const char *command, char *answer)
{
	char	   *p = answer;

	while (*p == '\n' || *p == ' ' || *p == '\r')
		p++;
	if (*p != '\0')
	{
		size_t		len = strlen(p);

		while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
			p[--len] = '\0';
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HAProxy refused \"%s\"", command),
				 errdetail_internal("HAProxy answered: %s", p)));
	}
}

/*
 * ReadBack
 *		Check with the answer to "show servers state B" that every server of
 *		backend B has its weight and state; appends {"backend","server",
 *		"weight","drain"} objects to applied.  Raises when one differs or is
 *		missing.
 */
static void
ReadBack(DmRouterTask *t, const char *backend, char *answer, StringInfo applied, bool *first)
{
	char	   *save;
	char	   *line;
	int			col_name = -1,
				col_admin = -1,
				col_weight = -1;
	int			found = 0;
	int			expected = 0;
	int			i;

	for (i = 0; i < t->nservers; i++)
		if (strcmp(t->servers[i].backend, backend) == 0)
			expected++;

	for (line = strtok_r(answer, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	{
		char	   *fields[64];
		int			nf = 0;
		char	   *fsave;
		char	   *f;
		bool		header = (line[0] == '#');

		for (f = strtok_r(header ? line + 1 : line, " ", &fsave); f && nf < 64;
			 f = strtok_r(NULL, " ", &fsave))
			fields[nf++] = f;
		if (header)
		{
			for (i = 0; i < nf; i++)
			{
				if (strcmp(fields[i], "srv_name") == 0)
					col_name = i;
				else if (strcmp(fields[i], "srv_admin_state") == 0)
					col_admin = i;
				else if (strcmp(fields[i], "srv_uweight") == 0)
					col_weight = i;
			}
			continue;
		}
		if (col_name < 0 || col_admin < 0 || col_weight < 0 ||
			nf <= Max(col_name, Max(col_admin, col_weight)))
			continue;
		for (i = 0; i < t->nservers; i++)
		{
			DmRouterServer *s = &t->servers[i];
			int			weight = atoi(fields[col_weight]);
			int			admin = atoi(fields[col_admin]);
			bool		drain = (admin & (DM_HAPROXY_ADMF_FDRAIN | DM_HAPROXY_ADMF_IDRAIN)) != 0;

			if (strcmp(s->backend, backend) != 0 || strcmp(s->server, fields[col_name]) != 0)
				continue;
			if (weight != s->weight || drain != (s->weight == 0))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("HAProxy shows server %s/%s with weight %d%s, not %d as set",
								backend, s->server, weight, drain ? " (draining)" : "", s->weight)));
			appendStringInfo(applied, "%s{\"backend\": \"%s\", \"server\": \"%s\", \"weight\": %d, \"drain\": %s}",
							 *first ? "" : ", ", backend, s->server, weight, drain ? "true" : "false");
			*first = false;
			found++;
		}
	}
	if (col_name < 0 || found != expected)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("HAProxy's server state of backend %s lists %d of the %d servers set",
						backend, found, expected)));
}

/* NthBackend: the n-th distinct backend of the task's servers, or NULL */
static const char *
NthBackend(DmRouterTask *t, int n)
{
	int			i;

	for (i = 0; i < t->nservers; i++)
	{
		int			j;
		bool		seen = false;

		for (j = 0; j < i; j++)
			if (strcmp(t->servers[j].backend, t->servers[i].backend) == 0)
				seen = true;
		if (!seen && n-- == 0)
			return t->servers[i].backend;
	}
	return NULL;
}

/*
 * DmRouterHaproxyNext
 *		See router.h.
 */
bool
DmRouterHaproxyNext(DmRouterTask *t, DmRouterExchange *x)
{
	HaproxyState *st = (HaproxyState *) t->driver_state;
	const char *backend;
	int			n;

	if (st == NULL)
	{
		st = palloc0(sizeof(HaproxyState));
		initStringInfo(&st->applied);
		appendStringInfo(&st->applied, "{\"change_id\": " INT64_FORMAT ", \"servers\": [",
						 t->change_id);
		st->first = true;
		t->driver_state = st;
	}
	else
	{
		/* the answer to the command sent last */
		if (st->showing == NULL)
			CheckSetAnswer(x->text, x->answer);
		else
			ReadBack(t, st->showing, x->answer, &st->applied, &st->first);
	}

	x->kind = DM_ROUTER_IO_SOCKET;
	n = st->sent++;
	st->showing = NULL;
	if (n < 2 * t->nservers)
	{
		DmRouterServer *s = &t->servers[n / 2];

		x->text = (n % 2 == 0) ?
			psprintf("set server %s/%s weight %d", s->backend, s->server, s->weight) :
			psprintf("set server %s/%s state %s", s->backend, s->server,
					 s->weight > 0 ? "ready" : "drain");
		return true;
	}
	backend = NthBackend(t, n - 2 * t->nservers);
	if (backend != NULL)
	{
		st->showing = backend;
		x->text = psprintf("show servers state %s", backend);
		return true;
	}
	appendStringInfoString(&st->applied, "]}");
	t->applied = st->applied.data;
	return false;
}
