/*-------------------------------------------------------------------------
 *
 * actuator_client.c
 *	  The client side of the HTTP actuator contract (docs/mirrors.md): one
 *	  request to an actuator, outside any transaction, and its answer.
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
		/* the catalog only takes text valid in the server encoding */
		if (resp.body != NULL &&
			(memchr(resp.body, '\0', resp.body_len) != NULL ||
			 !pg_verifymbstr(resp.body, (int) resp.body_len, true)))
			out->body = pstrdup("(the answer is not valid text in the server encoding)");
		return;
	}
	out->sqlstate = pstrdup("08000");
	if (resp.error && strstr(resp.error, "timed out") != NULL)
		out->error = psprintf("node \"%s\" did not answer within %d ms",
							  a->label, (int) req.timeout_ms);
	else if (resp.error && strncmp(resp.error, "response larger than", 20) == 0)
		out->error = psprintf("node \"%s\" answered with a %s", a->label, resp.error);
	else if (resp.error && (strstr(resp.error, "onnect") != NULL ||
							strstr(resp.error, "esolve") != NULL))
		out->error = psprintf("could not reach node \"%s\"", a->label);
	else
		out->error = psprintf("no answer from node \"%s\"", a->label);
	out->detail = resp.error ? pstrdup(resp.error) : NULL;
}
