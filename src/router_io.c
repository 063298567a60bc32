/*-------------------------------------------------------------------------
 *
 * router_io.c
 *	  A router's conversation carried by the worker's I/O engine.
 *
 * A driver (router.h: DmRouter<Kind>Next) says what to send next given the
 * answer to what it sent before; here each exchange becomes a request of
 * the engine (io_engine.c): a raw-socket request for HAProxy's runtime
 * API, a console request (libpq, no set-up statement, not pooled) for
 * pgbouncer's admin console, an HTTP request for webhooks, after an engine
 * timer when the driver asks for a back-off.  The engine's callback hands
 * the answer to the driver, which asks for the next exchange or ends the
 * conversation; the task's done callback then runs.  So the conversations
 * of many routers progress side by side in the engine's one wait, and a
 * router that accepts connections and never answers holds only its own
 * conversation, for its timeout.
 *
 * Every exchange has the router's timeout (timeout_ms): the socket
 * request's one deadline, the console's connect and statement deadlines,
 * the HTTP request's total timeout.
 *
 * Errors: an exchange that did not go through (refused, no answer in
 * time, connection lost) ends the conversation with its error, unless the
 * driver asked to see it (a webhook's retries); a driver's error (a
 * refusal, an answer that does not check) is caught here too.  Either
 * becomes the task's outcome.  Nothing here raises for a router's faults.
 *
 * Memory: the job and every exchange's strings live in the context given
 * to DmRouterStart (the caller's, which outlives the conversation or
 * cancels it first: DmRouterCancel).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "ctl_txn.h"
#include "io_engine.h"
#include "router.h"

/* one task's conversation in flight */
typedef struct DmRouterJob
{
	DmRouterTask *task;
	bool		(*next) (DmRouterTask *task, DmRouterExchange *x);
	DmRouterExchange x;
	MemoryContext cxt;
	void		(*done) (void *arg);
	void	   *arg;
	/* the engine's request or timer in flight, if any */
	DmIoSocketRequest *sock;
	DmIoPgRequest *pg;
	DmIoHttpRequest *http;
	DmIoTimer	timer;
} DmRouterJob;

/* the drivers by kind */
static const struct
{
	const char *kind;
	bool		(*next) (DmRouterTask *task, DmRouterExchange *x);
	const char *label;			/* names the router's endpoint in errors */
}			Drivers[] =
{
	{"haproxy", DmRouterHaproxyNext, "the HAProxy runtime API of router \"%s\""},
	{"pgbouncer", DmRouterPgbouncerNext, "pgbouncer router %s"},
	{"webhook", DmRouterWebhookNext, "webhook of router \"%s\""},
};

static void Send(DmRouterJob *job);

/* ExchangeFailed: raise the failure of an exchange that did not go through */
static void
ExchangeFailed(const DmRouterExchange *x)
{
	ereport(ERROR,
			(errcode(x->sqlstate ? MAKE_SQLSTATE(x->sqlstate[0], x->sqlstate[1], x->sqlstate[2],
												 x->sqlstate[3], x->sqlstate[4]) :
					 ERRCODE_CONNECTION_FAILURE),
			 errmsg_internal("%s", x->error ? x->error : "the router did not answer"),
			 x->detail ? errdetail_internal("%s", x->detail) : 0));
}

/* End: the conversation is over (the task's outcome is set) */
static void
End(DmRouterJob *job)
{
	job->task->done = true;
	if (job->done)
		job->done(job->arg);
}

/*
 * Step
 *		Hand the answer of the exchange (or nothing, at first) to the
 *		driver; send what it asks for next, or end the conversation.  A
 *		driver's error ends it as the task's error.
 */
static void
Step(DmRouterJob *job)
{
	DmRouterTask *t = job->task;
	MemoryContext old = MemoryContextSwitchTo(job->cxt);
	volatile bool more = false;

	PG_TRY();
	{
		job->x.delay_ms = 0;
		if (job->x.kind != DM_ROUTER_IO_NONE && !job->x.ok && !job->x.sees_failure)
			ExchangeFailed(&job->x);
		more = job->next(t, &job->x);
		if (!more)
			t->ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata = DmCtlCatch(job->cxt, false);

		t->ok = false;
		t->error = edata->detail ?
			psprintf("%s: %s", edata->message, edata->detail) : pstrdup(edata->message);
		FreeErrorData(edata);
		more = false;
	}
	PG_END_TRY();
	job->x.res = NULL;			/* the engine's, cleared after its callback */
	MemoryContextSwitchTo(old);

	if (!more)
		End(job);
	else if (job->x.delay_ms > 0)
		DmIoTimerStart(&job->timer, job->x.delay_ms);
	else
		Send(job);
}

/* ClearAnswer: clear the answer part of the exchange before one is sent */
static void
ClearAnswer(DmRouterExchange *x)
{
	x->ok = false;
	x->error = x->sqlstate = x->detail = x->answer = NULL;
	x->res = NULL;
	memset(&x->resp, 0, sizeof(x->resp));
}

static void
SocketDone(DmIoSocketRequest *req, void *arg)
{
	DmRouterJob *job = (DmRouterJob *) arg;

	job->sock = NULL;
	job->x.ok = req->ok;
	job->x.answer = req->answer;
	job->x.error = req->error;
	Step(job);
}

static void
ConsoleDone(DmIoPgRequest *req, void *arg)
{
	DmRouterJob *job = (DmRouterJob *) arg;

	job->pg = NULL;
	job->x.ok = req->ok;
	job->x.res = req->res;
	job->x.error = req->error;
	job->x.sqlstate = req->sqlstate;
	job->x.detail = req->detail;
	Step(job);
}

static void
HttpDone(DmIoHttpRequest *req, void *arg)
{
	DmRouterJob *job = (DmRouterJob *) arg;

	job->http = NULL;
	job->x.resp = req->resp;
	job->x.ok = (req->resp.error == NULL);
	Step(job);
}

static void
TimerDone(DmIoTimer *timer, void *arg)
{
	Send((DmRouterJob *) arg);
}

/*
 * Send
 *		Hand the exchange the driver asked for to the engine.
 */
static void
Send(DmRouterJob *job)
{
	DmRouterTask *t = job->task;
	DmRouterExchange *x = &job->x;
	MemoryContext old = MemoryContextSwitchTo(job->cxt);
	char	   *label = NULL;
	int			i;

	for (i = 0; i < (int) lengthof(Drivers); i++)
		if (strcmp(Drivers[i].kind, t->kind) == 0)
			label = psprintf(Drivers[i].label, t->name);
	ClearAnswer(x);
	switch (x->kind)
	{
		case DM_ROUTER_IO_SOCKET:
			job->sock = DmIoSocketRequestCreate(job->cxt, t->endpoint, label);
			job->sock->send = psprintf("%s\n", x->text);
			job->sock->timeout_ms = t->timeout_ms;
			job->sock->callback = SocketDone;
			job->sock->arg = job;
			DmIoSocketStart(job->sock);
			break;
		case DM_ROUTER_IO_CONSOLE:
			job->pg = DmIoPgRequestCreate(job->cxt, t->endpoint, label);
			job->pg->console = true;
			job->pg->sql = x->text;
			job->pg->keep_result = true;
			job->pg->connect_timeout_ms = t->timeout_ms;
			job->pg->timeout_ms = t->timeout_ms;
			job->pg->callback = ConsoleDone;
			job->pg->arg = job;
			DmIoPgStart(job->pg);
			break;
		case DM_ROUTER_IO_HTTP:
			job->http = DmIoHttpRequestCreate(job->cxt);
			job->http->http = x->http;
			job->http->callback = HttpDone;
			job->http->arg = job;
			DmIoHttpStart(job->http);
			break;
		case DM_ROUTER_IO_NONE:
			elog(ERROR, "router \"%s\": no exchange to send", t->name);
	}
	MemoryContextSwitchTo(old);
}

/*
 * DmRouterStart
 *		See router.h.
 */
void
DmRouterStart(DmRouterTask *t, MemoryContext cxt, void (*done) (void *arg), void *arg)
{
	DmRouterJob *job = MemoryContextAllocZero(cxt, sizeof(DmRouterJob));
	int			i;

	job->task = t;
	job->cxt = cxt;
	job->done = done;
	job->arg = arg;
	job->timer.callback = TimerDone;
	job->timer.arg = job;
	t->job = job;
	for (i = 0; i < (int) lengthof(Drivers); i++)
		if (strcmp(Drivers[i].kind, t->kind) == 0)
			job->next = Drivers[i].next;
	if (job->next == NULL)
	{
		t->ok = false;
		t->error = MemoryContextStrdup(cxt, psprintf("unknown router kind \"%s\"", t->kind));
		End(job);
		return;
	}
	Step(job);
}

/*
 * DmRouterCancel
 *		See router.h.
 */
void
DmRouterCancel(DmRouterTask *t)
{
	DmRouterJob *job = t->job;

	if (job == NULL)
		return;
	if (job->sock)
		DmIoSocketCancel(job->sock);
	if (job->pg)
		DmIoPgCancel(job->pg);
	if (job->http)
		DmIoHttpCancel(job->http);
	DmIoTimerCancel(&job->timer);
	job->sock = NULL;
	job->pg = NULL;
	job->http = NULL;
	job->done = NULL;
}
