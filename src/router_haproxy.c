/*-------------------------------------------------------------------------
 *
 * router_haproxy.c
 *	  The HAProxy router: server weights and states through the runtime API
 *	  (the "stats socket"), over a unix socket or TCP.
 *
 * Each command is one connection in HAProxy's non-interactive mode: send
 * the command and a newline, read the answer until HAProxy closes.  Every
 * wait (connect, send, receive) is WaitLatchOrSocket with the router's
 * deadline, so a cancel or a SIGTERM interrupts it; the socket is closed
 * on every path.  For each server: "set server B/S weight W", then "set
 * server B/S state ready" (W > 0) or "drain" (W = 0); finally "show
 * servers state B" is read back and must show every weight and state set.
 * TCP endpoints take a numeric address (no DNS lookup without a deadline).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "router.h"

#define DM_HAPROXY_MAX_ANSWER	(1024 * 1024)

/* HAProxy's srv_admin_state bits: forced or inherited drain */
#define DM_HAPROXY_ADMF_FDRAIN	0x08
#define DM_HAPROXY_ADMF_IDRAIN	0x10

/* wait for the socket until the deadline; raises on timeout */
static void
WaitSocket(pgsocket fd, int what, TimestampTz deadline, const char *router)
{
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		int			rc;

		if (left <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the HAProxy runtime API of router \"%s\" did not answer in time", router)));
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | what,
							   fd, left, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & what)
			return;
	}
}

/*
 * ConnectRuntimeApi
 *		A non-blocking socket connected to endpoint ("unix:/path",
 *		"tcp:addr:port" or "addr:port").  Raises on failure (nothing left
 *		open).
 */
static int
ConnectRuntimeApi(const char *endpoint, TimestampTz deadline, const char *router)
{
	struct sockaddr_storage addr;
	socklen_t	addrlen;
	int			fd;
	int			err = 0;
	socklen_t	errlen = sizeof(err);

	memset(&addr, 0, sizeof(addr));
	if (strncmp(endpoint, "unix:", 5) == 0)
	{
		struct sockaddr_un *un = (struct sockaddr_un *) &addr;

		if (strlen(endpoint + 5) >= sizeof(un->sun_path))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the socket path of router \"%s\" is too long", router)));
		un->sun_family = AF_UNIX;
		strlcpy(un->sun_path, endpoint + 5, sizeof(un->sun_path));
		addrlen = sizeof(struct sockaddr_un);
	}
	else
	{
		const char *hp = strncmp(endpoint, "tcp:", 4) == 0 ? endpoint + 4 : endpoint;
		const char *colon = strrchr(hp, ':');
		char	   *host;
		struct addrinfo hints;
		struct addrinfo *res;

		if (colon == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the endpoint of router \"%s\" has no port", router)));
		host = pnstrdup(hp, colon - hp);
		if (host[0] == '[' && host[strlen(host) - 1] == ']')
		{
			host[strlen(host) - 1] = '\0';
			host++;
		}
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
		if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the endpoint of router \"%s\" is not a numeric address and port", router)));
		memcpy(&addr, res->ai_addr, res->ai_addrlen);
		addrlen = res->ai_addrlen;
		freeaddrinfo(res);
	}

	fd = socket(addr.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create a socket for router \"%s\": %m", router)));
	PG_TRY();
	{
		if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not set up the socket of router \"%s\": %m", router)));
		if (connect(fd, (struct sockaddr *) &addr, addrlen) < 0)
		{
			if (errno != EINPROGRESS && errno != EAGAIN)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not connect to the HAProxy runtime API of router \"%s\": %m", router)));
			WaitSocket(fd, WL_SOCKET_WRITEABLE, deadline, router);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0)
			{
				errno = err;
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not connect to the HAProxy runtime API of router \"%s\": %m", router)));
			}
		}
	}
	PG_CATCH();
	{
		close(fd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return fd;
}

/*
 * RuntimeCommand
 *		Send one command; returns HAProxy's answer (palloc'd).  Raises on
 *		failure or timeout.
 */
static char *
RuntimeCommand(DmRouterTask *t, const char *command)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), t->timeout_ms);
	int			fd = ConnectRuntimeApi(t->endpoint, deadline, t->name);
	StringInfoData answer;

	initStringInfo(&answer);
	PG_TRY();
	{
		char	   *line = psprintf("%s\n", command);
		size_t		sent = 0;
		size_t		len = strlen(line);

		while (sent < len)
		{
			ssize_t		n = send(fd, line + sent, len - sent, MSG_NOSIGNAL);

			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			{
				WaitSocket(fd, WL_SOCKET_WRITEABLE, deadline, t->name);
				continue;
			}
			if (n < 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not send to the HAProxy runtime API of router \"%s\": %m", t->name)));
			sent += n;
		}
		for (;;)
		{
			char		buf[8192];
			ssize_t		n = recv(fd, buf, sizeof(buf), 0);

			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			{
				WaitSocket(fd, WL_SOCKET_READABLE, deadline, t->name);
				continue;
			}
			if (n < 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not read from the HAProxy runtime API of router \"%s\": %m", t->name)));
			if (n == 0)
				break;
			if (answer.len + n > DM_HAPROXY_MAX_ANSWER)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("the HAProxy runtime API of router \"%s\" answered more than %d bytes",
								t->name, DM_HAPROXY_MAX_ANSWER)));
			appendBinaryStringInfo(&answer, buf, n);
		}
	}
	PG_FINALLY();
	{
		close(fd);
	}
	PG_END_TRY();
	return answer.data;
}

/* a set command answers nothing when it worked */
static void
SetCommand(DmRouterTask *t, const char *command)
{
	char	   *answer = RuntimeCommand(t, command);
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
 *		Check with "show servers state B" that every server of backend B has
 *		its weight and state; appends {"backend","server","weight","drain"}
 *		objects to applied.  Raises when one differs or is missing.
 */
static void
ReadBack(DmRouterTask *t, const char *backend, StringInfo applied, bool *first)
{
	char	   *answer = RuntimeCommand(t, psprintf("show servers state %s", backend));
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

/*
 * DmRouterApplyHaproxy
 *		See router.h.
 */
void
DmRouterApplyHaproxy(DmRouterTask *t)
{
	StringInfoData applied;
	bool		first = true;
	int			i;

	for (i = 0; i < t->nservers; i++)
	{
		DmRouterServer *s = &t->servers[i];

		SetCommand(t, psprintf("set server %s/%s weight %d", s->backend, s->server, s->weight));
		SetCommand(t, psprintf("set server %s/%s state %s", s->backend, s->server,
							   s->weight > 0 ? "ready" : "drain"));
	}

	initStringInfo(&applied);
	appendStringInfo(&applied, "{\"change_id\": " INT64_FORMAT ", \"servers\": [", t->change_id);
	for (i = 0; i < t->nservers; i++)
	{
		int			j;
		bool		seen = false;

		/* each backend once */
		for (j = 0; j < i; j++)
			if (strcmp(t->servers[j].backend, t->servers[i].backend) == 0)
				seen = true;
		if (!seen)
			ReadBack(t, t->servers[i].backend, &applied, &first);
	}
	appendStringInfoString(&applied, "]}");
	t->applied = applied.data;
}
