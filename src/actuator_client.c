/*-------------------------------------------------------------------------
 *
 * actuator_client.c
 *	  The client side of the HTTP actuator contract (docs/mirrors.md): one
 *	  request to an actuator, outside any transaction, and its answer
 *	  classified by kind (DmActuatorErrorKind).
 *
 * Invariants:
 *	 - the bearer token is read from its file just before the request and
 *	   wiped after it; it never reaches the catalog, a message or the log;
 *	 - no retry here: callers retry with their own back-off and deadline
 *	   (the mirror phase at its next step, the promotion driver until
 *	   promote_timeout), with the same Idempotency-Key;
 *	 - errors name the actuator by its label, never its URL; libcurl's
 *	   reason, which may name the host, goes to the detail only;
 *	 - the kind comes from http.c's failure code and the status, never from
 *	   the text of a message;
 *	 - the same request either waits (DmActuatorPerform: the promotion
 *	   driver, which has nothing else to do) or runs in the worker's I/O
 *	   engine (DmActuatorStart: the worker's phases and cleanups, so that an
 *	   actuator that hangs holds only its own group); one preparation and
 *	   one classification serve both.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "actuator_client.h"
#include "http.h"
#include "io_engine.h"
#include "secrets.h"

/*
 * ActuatorPrepare
 *		The HTTP request of actuator request a, into *req, with the bearer
 *		token read from its file into *token (NULL without one: the caller
 *		wipes it once the request is handed over).  Returns false, with
 *		*out filled (DM_ACT_ERR_TOKEN), when the token cannot be read:
 *		nothing is to be sent.
 */
static bool
ActuatorPrepare(const DmActuatorRequest *a, DmHttpRequest *req, char **token,
				DmActuatorAnswer *out)
{
	char	   *err = NULL;

	memset(out, 0, sizeof(*out));
	*token = NULL;
	if (a->token_file != NULL)
	{
		*token = DmReadSecretFile(a->token_file, &err);
		if (*token == NULL)
		{
			out->kind = DM_ACT_ERR_TOKEN;
			out->sqlstate = pstrdup("58P01");
			out->error = err;
			return false;
		}
	}
	memset(req, 0, sizeof(*req));
	req->method = a->method;
	req->url = a->url;
	req->body = a->body;
	req->content_type = a->body ? "application/json" : NULL;
	req->bearer_token = *token;
	req->idempotency_key = a->idempotency_key;
	req->timeout_ms = a->timeout_ms > 0 ? a->timeout_ms : 10000;
	req->max_retries = 0;		/* callers retry, with back-off */
	return true;
}

/* WipeToken: the token must not outlive its request */
static void
WipeToken(char *token)
{
	if (token)
		explicit_bzero(token, strlen(token));
}

/*
 * ActuatorClassify
 *		*out from what came back for a (sent as req): an answer (answered)
 *		or resp's failure.  Strings palloc'd in the current context.
 */
static void
ActuatorClassify(const DmActuatorRequest *a, const DmHttpRequest *req,
				 bool answered, DmHttpResponse *resp, DmActuatorAnswer *out)
{
	memset(out, 0, sizeof(*out));
	if (answered)
	{
		out->answered = true;
		out->status = (int) resp->status;
		out->body = resp->body;
		if (out->status >= 200 && out->status <= 299)
			out->kind = DM_ACT_OK;
		else if (out->status >= 400 && out->status <= 499)
			out->kind = DM_ACT_ERR_HTTP_4XX;
		else if (out->status >= 500 && out->status <= 599)
			out->kind = DM_ACT_ERR_HTTP_5XX;
		else
			out->kind = DM_ACT_ERR_BAD_RESPONSE;
		/* the catalog only takes text valid in the server encoding */
		if (resp->body != NULL &&
			(memchr(resp->body, '\0', resp->body_len) != NULL ||
			 !pg_verifymbstr(resp->body, (int) resp->body_len, true)))
		{
			out->body = pstrdup("(the answer is not valid text in the server encoding)");
			out->kind = DM_ACT_ERR_BAD_RESPONSE;
		}
		return;
	}
	out->sqlstate = pstrdup("08000");
	switch (resp->failure)
	{
		case DM_HTTP_FAIL_TIMEOUT:
			out->kind = DM_ACT_ERR_TIMEOUT;
			out->error = psprintf("node \"%s\" did not answer within %d ms",
								  a->label, (int) req->timeout_ms);
			break;
		case DM_HTTP_FAIL_TOO_LARGE:
			out->kind = DM_ACT_ERR_TOO_LARGE;
			out->error = psprintf("node \"%s\" answered with a %s", a->label,
								  resp->error ? resp->error : "response too large");
			break;
		case DM_HTTP_FAIL_CONNECT:
			out->kind = DM_ACT_ERR_CONNECT;
			out->error = psprintf("could not reach node \"%s\"", a->label);
			break;
		case DM_HTTP_ANSWERED:
		case DM_HTTP_FAIL_OTHER:
			out->kind = DM_ACT_ERR_TRANSPORT;
			out->error = psprintf("no answer from node \"%s\"", a->label);
			break;
	}
	out->detail = resp->error ? pstrdup(resp->error) : NULL;
}

/*
 * DmActuatorPerform
 *		See actuator_client.h.
 */
void
DmActuatorPerform(const DmActuatorRequest *a, DmActuatorAnswer *out)
{
	DmHttpRequest req;
	DmHttpResponse resp;
	char	   *token;
	volatile bool answered = false;

	if (!ActuatorPrepare(a, &req, &token, out))
		return;
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		answered = DmHttpPerform(&req, &resp);
	}
	PG_FINALLY();
	{
		WipeToken(token);
	}
	PG_END_TRY();
	ActuatorClassify(a, &req, answered, &resp, out);
}

/*
 * ActuatorAnswered
 *		The I/O engine's callback for an actuator call: classify the answer
 *		(in the call's context) and hand the call to its caller's callback.
 */
static void
ActuatorAnswered(DmIoHttpRequest *io, void *arg)
{
	DmActuatorCall *call = (DmActuatorCall *) arg;
	MemoryContext old = MemoryContextSwitchTo(call->cxt);

	ActuatorClassify(&call->req, &io->http, io->resp.error == NULL, &io->resp,
					 &call->answer);
	MemoryContextSwitchTo(old);
	call->io = NULL;
	call->done = true;
	if (call->callback)
		call->callback(call, call->arg);
}

/*
 * DmActuatorStart
 *		See actuator_client.h.
 */
DmActuatorCall *
DmActuatorStart(const DmActuatorRequest *a, MemoryContext cxt,
				DmActuatorDone callback, void *arg)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	DmActuatorCall *call = palloc0(sizeof(DmActuatorCall));
	char	   *token;

	call->cxt = cxt;
	/* what the answer needs: the label (the rest is copied by libcurl) */
	call->req.label = pstrdup(a->label);
	call->req.timeout_ms = a->timeout_ms;
	call->callback = callback;
	call->arg = arg;
	call->io = DmIoHttpRequestCreate(cxt);
	if (!ActuatorPrepare(a, &call->io->http, &token, &call->answer))
	{
		call->io = NULL;
		call->done = true;		/* nothing sent: the token is missing */
		MemoryContextSwitchTo(old);
		return call;
	}
	call->io->callback = ActuatorAnswered;
	call->io->arg = call;
	PG_TRY();
	{
		DmIoHttpStart(call->io);
	}
	PG_FINALLY();
	{
		/* libcurl has its copy of the header */
		WipeToken(token);
		call->io->http.bearer_token = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return call;
}

/*
 * DmActuatorCancel
 *		See actuator_client.h.
 */
void
DmActuatorCancel(DmActuatorCall *call)
{
	if (call->io != NULL)
		DmIoHttpCancel(call->io);
	call->io = NULL;
}
