/*-------------------------------------------------------------------------
 *
 * router_webhook.c
 *	  The webhook router: any other router or mesh is told each change of
 *	  the shares by an HTTP POST of a JSON body (driftmirror._router_work's
 *	  change: group, router, resource, change_id, shares, and per node its
 *	  role, endpoint and weights).
 *
 * Every request of one change carries the same Idempotency-Key
 * ("dm-<group id>-<router id>-<change id>"), whether it is a retry within
 * one attempt (http.c: transport errors, 429 and 5xx, back-off from 200 ms
 * doubling) or a later attempt by the worker's group step.  With option
 * hmac_key_file the body is signed: X-Driftmirror-Signature: sha256=<hex
 * of HMAC-SHA256(key, body)>, the key read from driftmirror_secrets in the
 * data directory just before use and wiped afterwards.  Any 2xx answer
 * means applied.  Each request is bounded by the router's timeout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "http.h"
#include "router.h"
#include "secrets.h"
#include "signature.h"

/*
 * DmRouterApplyWebhook
 *		See router.h.
 */
void
DmRouterApplyWebhook(DmRouterTask *t)
{
	DmHttpRequest req;
	DmHttpResponse resp;

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.method = "POST";
	req.url = t->endpoint;
	req.body = t->change;
	req.content_type = "application/json";
	req.idempotency_key = t->idempotency_key;
	req.timeout_ms = t->timeout_ms;
	req.max_retries = t->retries;
	if (t->hmac_key_file)
		req.signature = DmHmacSha256Signature(t->hmac_key_file, t->change);

	if (!DmHttpPerform(&req, &resp))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("webhook of router \"%s\" failed", t->name),
				 errdetail_internal("%s", resp.error)));
	if (resp.status < 200 || resp.status >= 300)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("webhook of router \"%s\" answered HTTP %ld", t->name, resp.status)));
	t->applied = psprintf("{\"change_id\": " INT64_FORMAT ", \"idempotency_key\": \"%s\", \"status\": %ld}",
						  t->change_id, t->idempotency_key, resp.status);
}
