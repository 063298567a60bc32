/*-------------------------------------------------------------------------
 *
 * io_socket.c
 *	  Raw-socket requests of the worker's I/O engine (see io_socket.h and
 *	  io_engine.h): a line protocol over a unix or TCP socket, such as
 *	  HAProxy's runtime API, spoken without blocking.
 *
 * Every request is a state machine:
 *
 *	 CONNECTING --writable, SO_ERROR 0--> SENDING --all sent--> RECEIVING
 *	 --peer closed--> DONE
 *
 * driven by io_engine.c's DmIoWait from the events of its one WaitEventSet
 * (the socket joins it while the request is in flight), so a peer that
 * accepts the connection and never answers holds only its own request,
 * until the request's one deadline (connect, send and the whole answer).
 * The socket is non-blocking from its creation and closed on every path:
 * at the end, at the deadline, on cancel and on discard.
 *
 * Endpoints take numeric addresses only ("tcp:127.0.0.1:9999",
 * "[::1]:9999") or a unix socket path ("unix:/run/haproxy.sock"): a name
 * lookup would be a wait without a deadline.
 *
 * Memory: a request and its outcome (answer, error) live in the caller's
 * context (req->cxt); the lists are of the caller's requests.  Nothing
 * here raises for the peer's faults; a refused endpoint fails the request.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "io_engine.h"
#include "io_socket.h"

typedef enum
{
	SS_NEW,
	SS_CONNECTING,
	SS_SENDING,
	SS_RECEIVING,
	SS_DONE
} SocketState;

static DmIoSocketRequest *Active = NULL;	/* started, not finished */
static DmIoSocketRequest *Finished = NULL;	/* finished, not called back */

/*
 * ParseEndpoint
 *		The address of endpoint; false with *why set (in cxt) when it is
 *		not a unix socket path or a numeric address and port.
 */
static bool
ParseEndpoint(DmIoSocketRequest *r, struct sockaddr_storage *addr, socklen_t *addrlen,
			  char **why)
{
	const char *endpoint = r->endpoint;

	memset(addr, 0, sizeof(*addr));
	if (strncmp(endpoint, "unix:", 5) == 0)
	{
		struct sockaddr_un *un = (struct sockaddr_un *) addr;

		if (strlen(endpoint + 5) >= sizeof(un->sun_path))
		{
			*why = psprintf("the socket path of %s is too long", r->label);
			return false;
		}
		un->sun_family = AF_UNIX;
		strlcpy(un->sun_path, endpoint + 5, sizeof(un->sun_path));
		*addrlen = sizeof(struct sockaddr_un);
	}
	else
	{
		const char *hp = strncmp(endpoint, "tcp:", 4) == 0 ? endpoint + 4 : endpoint;
		const char *colon = strrchr(hp, ':');
		char	   *host;
		struct addrinfo hints;
		struct addrinfo *res = NULL;

		if (colon == NULL)
		{
			*why = psprintf("the endpoint of %s has no port", r->label);
			return false;
		}
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
		{
			*why = psprintf("the endpoint of %s is not a numeric address and port", r->label);
			return false;
		}
		memcpy(addr, res->ai_addr, res->ai_addrlen);
		*addrlen = res->ai_addrlen;
		freeaddrinfo(res);
	}
	return true;
}

/* Unlink: take r off the Active list */
static void
Unlink(DmIoSocketRequest *r)
{
	DmIoSocketRequest **p;

	for (p = &Active; *p != NULL; p = &(*p)->next)
		if (*p == r)
		{
			*p = r->next;
			break;
		}
	r->next = NULL;
}

/* CloseSocket: close r's socket, if open */
static void
CloseSocket(DmIoSocketRequest *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* Finish: end r (ok or failed); it waits for its callback */
static void
Finish(DmIoSocketRequest *r)
{
	CloseSocket(r);
	r->state = SS_DONE;
	Unlink(r);
	r->next = Finished;
	Finished = r;
}

/* Fail: end r with an error (message in r->cxt) */
static void
Fail(DmIoSocketRequest *r, DmIoFailure failure, const char *error)
{
	r->ok = false;
	r->failure = failure;
	r->error = MemoryContextStrdup(r->cxt, error);
	Finish(r);
}

/*
 * Send
 *		Send what is left of r->send; go on to RECEIVING when all is sent.
 */
static void
Send(DmIoSocketRequest *r)
{
	int			len = strlen(r->send);

	r->state = SS_SENDING;
	while (r->sent < len)
	{
		ssize_t		n = send(r->fd, r->send + r->sent, len - r->sent, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;				/* wait until writable */
		if (n < 0)
		{
			Fail(r, DM_IO_LOST, psprintf("could not send to %s: %s", r->label, strerror(errno)));
			return;
		}
		r->sent += n;
	}
	r->state = SS_RECEIVING;
}

/*
 * Receive
 *		Read what the peer sent; the request ends when the peer closes.
 */
static void
Receive(DmIoSocketRequest *r)
{
	for (;;)
	{
		char		buf[8192];
		ssize_t		n = recv(r->fd, buf, sizeof(buf), 0);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;				/* wait until readable */
		if (n < 0)
		{
			Fail(r, DM_IO_LOST, psprintf("could not read from %s: %s", r->label, strerror(errno)));
			return;
		}
		if (n == 0)
		{
			r->ok = true;
			r->failure = DM_IO_OK;
			Finish(r);
			return;
		}
		if (r->answer_len + n > r->max_answer)
		{
			Fail(r, DM_IO_REMOTE, psprintf("%s answered more than %d bytes", r->label, r->max_answer));
			return;
		}
		if (r->answer_len + n + 1 > r->answer_cap)
		{
			r->answer_cap = Max(r->answer_cap * 2, r->answer_len + (int) n + 1);
			r->answer = repalloc(r->answer, r->answer_cap);
		}
		memcpy(r->answer + r->answer_len, buf, n);
		r->answer_len += n;
		r->answer[r->answer_len] = '\0';
	}
}

/*
 * Advance
 *		Drive r on the socket events seen.
 */
static void
Advance(DmIoSocketRequest *r, uint32 events)
{
	if (r->state == SS_CONNECTING)
	{
		int			err = 0;
		socklen_t	errlen = sizeof(err);

		if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
			err = errno;
		if (err != 0)
		{
			Fail(r, DM_IO_CONNECT, psprintf("could not connect to %s: %s", r->label, strerror(err)));
			return;
		}
		Send(r);
	}
	else if (r->state == SS_SENDING)
		Send(r);
	if (r->state == SS_RECEIVING && (events & WL_SOCKET_READABLE))
		Receive(r);
}

/*
 * DmIoSocketRequestCreate
 *		See io_engine.h.
 */
DmIoSocketRequest *
DmIoSocketRequestCreate(MemoryContext cxt, const char *endpoint, const char *label)
{
	DmIoSocketRequest *r = MemoryContextAllocZero(cxt, sizeof(DmIoSocketRequest));

	r->cxt = cxt;
	r->endpoint = MemoryContextStrdup(cxt, endpoint);
	r->label = MemoryContextStrdup(cxt, label);
	r->fd = -1;
	r->max_answer = 1024 * 1024;
	r->state = SS_NEW;
	return r;
}

/*
 * DmIoSocketStart
 *		See io_engine.h.  Never raises for the peer's faults or a bad
 *		endpoint (the request fails); only out of memory.
 */
void
DmIoSocketStart(DmIoSocketRequest *r)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	struct sockaddr_storage addr;
	socklen_t	addrlen = 0;
	char	   *why = NULL;

	r->answer_cap = 1024;
	r->answer = palloc(r->answer_cap);
	r->answer[0] = '\0';
	r->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(r->timeout_ms, 1));
	r->next = Active;
	Active = r;

	if (!ParseEndpoint(r, &addr, &addrlen, &why))
		Fail(r, DM_IO_REFUSED, why);
	else if ((r->fd = socket(addr.ss_family, SOCK_STREAM, 0)) < 0 ||
			 fcntl(r->fd, F_SETFL, O_NONBLOCK) < 0)
		Fail(r, DM_IO_CONNECT, psprintf("could not create a socket for %s: %s", r->label,
										strerror(errno)));
	else if (connect(r->fd, (struct sockaddr *) &addr, addrlen) == 0)
		Send(r);
	else if (errno == EINPROGRESS || errno == EAGAIN || errno == EINTR)
		r->state = SS_CONNECTING;
	else
		Fail(r, DM_IO_CONNECT, psprintf("could not connect to %s: %s", r->label, strerror(errno)));
	MemoryContextSwitchTo(old);
}

/*
 * DmIoSocketCancel
 *		See io_engine.h.  A request unknown to the engine is left alone.
 */
void
DmIoSocketCancel(DmIoSocketRequest *req)
{
	DmIoSocketRequest **p;

	for (p = &Active; *p != NULL; p = &(*p)->next)
		if (*p == req)
		{
			*p = req->next;
			CloseSocket(req);
			req->state = SS_DONE;
			req->next = NULL;
			return;
		}
	for (p = &Finished; *p != NULL; p = &(*p)->next)
		if (*p == req)
		{
			*p = req->next;
			req->next = NULL;
			return;
		}
}

/* ---- the engine's side ---- */

/* DmIoSocketInFlight: the sockets DmIoSocketAddWaitEvents adds at most */
int
DmIoSocketInFlight(void)
{
	DmIoSocketRequest *r;
	int			n = 0;

	for (r = Active; r != NULL; r = r->next)
		n++;
	return n;
}

/*
 * DmIoSocketAddWaitEvents
 *		Add the socket of every request in flight to set, with the request
 *		as user_data; returns the position of the first one added (-1:
 *		none), so that the engine tells their events from its others.
 */
int
DmIoSocketAddWaitEvents(WaitEventSet *set)
{
	DmIoSocketRequest *r;
	int			first = -1;

	for (r = Active; r != NULL; r = r->next)
	{
		int			pos;

		if (r->fd < 0)
			continue;
		pos = AddWaitEventToSet(set, r->state == SS_RECEIVING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
								r->fd, NULL, r);
		if (first < 0)
			first = pos;
	}
	return first;
}

/* DmIoSocketReady: an event of one of the sockets DmIoSocketAddWaitEvents added */
void
DmIoSocketReady(void *user_data, uint32 events)
{
	DmIoSocketRequest *r = (DmIoSocketRequest *) user_data;

	if (r->state == SS_CONNECTING || r->state == SS_SENDING || r->state == SS_RECEIVING)
		Advance(r, events);
}

/*
 * DmIoSocketExpire
 *		End the requests past their deadline; returns the earliest deadline
 *		of the others (0 if none).
 */
TimestampTz
DmIoSocketExpire(TimestampTz now)
{
	DmIoSocketRequest *r = Active;
	TimestampTz earliest = 0;

	while (r != NULL)
	{
		DmIoSocketRequest *next = r->next;

		if (now < r->deadline)
		{
			if (earliest == 0 || r->deadline < earliest)
				earliest = r->deadline;
		}
		else if (r->state == SS_CONNECTING)
			Fail(r, DM_IO_CONNECT_TIMEOUT,
				 psprintf("could not connect to %s: timed out after %d ms", r->label, r->timeout_ms));
		else
			Fail(r, DM_IO_TIMEOUT,
				 psprintf("%s did not answer within %d ms", r->label, r->timeout_ms));
		r = next;
	}
	return earliest;
}

/* DmIoSocketAnyFinished: whether a request waits for its callback */
bool
DmIoSocketAnyFinished(void)
{
	return Finished != NULL;
}

/*
 * DmIoSocketRunCallbacks
 *		Hand every finished request to its callback, each taken off the
 *		list first (an error in one leaves the others for later).
 */
void
DmIoSocketRunCallbacks(void)
{
	while (Finished != NULL)
	{
		DmIoSocketRequest *r = Finished;

		Finished = r->next;
		r->next = NULL;
		if (r->callback)
			r->callback(r, r->arg);
	}
}

/* DmIoSocketCount: requests started and not yet called back */
int
DmIoSocketCount(void)
{
	DmIoSocketRequest *r;
	int			n = DmIoSocketInFlight();

	for (r = Finished; r != NULL; r = r->next)
		n++;
	return n;
}

/* DmIoSocketDiscardAll: drop every request (no callback) */
void
DmIoSocketDiscardAll(void)
{
	while (Active != NULL)
	{
		DmIoSocketRequest *r = Active;

		Active = r->next;
		CloseSocket(r);
		r->state = SS_DONE;
		r->next = NULL;
	}
	while (Finished != NULL)
	{
		DmIoSocketRequest *r = Finished;

		Finished = r->next;
		r->next = NULL;
	}
}
