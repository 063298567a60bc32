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
 *	   the text of a message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "actuator_client.h"
#include "http.h"
#include "secrets.h"

/*
 * DmActuatorPerform
 *		One request to an HTTP actuator, outside any transaction, without
 *		retries.  Never raises except for interrupts: a request without an
 *		answer fills *answer with answered = false, an error naming the
 *		actuator by its label and libcurl's reason (which may name the host)
 *		in the detail.  The bearer token is read from its file just before
 *		the request and wiped after it.  Strings are palloc'd in the current
 *		memory context.
 */
void
DmActuatorPerform(const DmActuatorRequest *a, DmActuatorAnswer *out)
{
	DmHttpRequest req;
	DmHttpResponse resp;
	char	   *volatile token = NULL;
	char	   *err = NULL;
	volatile bool answered = false;

	memset(out, 0, sizeof(*out));
	if (a->token_file != NULL)
	{
		token = DmReadSecretFile(a->token_file, &err);
		if (token == NULL)
		{
			out->kind = DM_ACT_ERR_TOKEN;
			out->sqlstate = pstrdup("58P01");
			out->error = err;
			return;
		}
	}

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.method = a->method;
	req.url = a->url;
	req.body = a->body;
	req.content_type = a->body ? "application/json" : NULL;
	req.bearer_token = token;
	req.idempotency_key = a->idempotency_key;
	req.timeout_ms = a->timeout_ms > 0 ? a->timeout_ms : 10000;
	req.max_retries = 0;		/* callers retry, with back-off */

	PG_TRY();
	{
		answered = DmHttpPerform(&req, &resp);
	}
	PG_FINALLY();
	{
		if (token)
			explicit_bzero(token, strlen(token));
	}
	PG_END_TRY();

	if (answered)
	{
		out->answered = true;
		out->status = (int) resp.status;
		out->body = resp.body;
		if (out->status >= 200 && out->status <= 299)
			out->kind = DM_ACT_OK;
		else if (out->status >= 400 && out->status <= 499)
			out->kind = DM_ACT_ERR_HTTP_4XX;
		else if (out->status >= 500 && out->status <= 599)
			out->kind = DM_ACT_ERR_HTTP_5XX;
		else
			out->kind = DM_ACT_ERR_BAD_RESPONSE;
		/* the catalog only takes text valid in the server encoding */
		if (resp.body != NULL &&
			(memchr(resp.body, '\0', resp.body_len) != NULL ||
			 !pg_verifymbstr(resp.body, (int) resp.body_len, true)))
		{
			out->body = pstrdup("(the answer is not valid text in the server encoding)");
			out->kind = DM_ACT_ERR_BAD_RESPONSE;
		}
		return;
	}
	out->sqlstate = pstrdup("08000");
	switch (resp.failure)
	{
		case DM_HTTP_FAIL_TIMEOUT:
			out->kind = DM_ACT_ERR_TIMEOUT;
			out->error = psprintf("node \"%s\" did not answer within %d ms",
								  a->label, (int) req.timeout_ms);
			break;
		case DM_HTTP_FAIL_TOO_LARGE:
			out->kind = DM_ACT_ERR_TOO_LARGE;
			out->error = psprintf("node \"%s\" answered with a %s", a->label,
								  resp.error ? resp.error : "response too large");
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
	out->detail = resp.error ? pstrdup(resp.error) : NULL;
}
