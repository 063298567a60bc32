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
 * one attempt (http.c's rule: transport errors, 429 and 502-504, back-off
 * from 200 ms doubling) or a later attempt by the worker's group step.  With option
 * hmac_key_file the body is signed: X-Driftmirror-Signature: sha256=<hex
 * of HMAC-SHA256(key, body)>, the key read from driftmirror_secrets in the
 * data directory just before use and wiped afterwards.  Any 2xx answer
 * means applied.  Each request is bounded by the router's timeout.  The
 * conversation is DmRouterWebhookNext; router_io.c sends each attempt as
 * an HTTP request of the I/O engine and waits out the back-off on an
 * engine timer, so neither holds the worker.
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
 * DmRouterWebhookNext
 *		See router.h.  The first call signs the body (the key read and
 *		wiped there) and asks for the POST; an answer that http.c's rule
 *		says to retry (DmHttpRetryBackoffMs) asks for it again after the
 *		back-off, up to the router's retries.
 */
bool
DmRouterWebhookNext(DmRouterTask *t, DmRouterExchange *x)
{
	long		backoff_ms;

	if (x->kind == DM_ROUTER_IO_NONE)
	{
		DmHttpRequest *req = &x->http;

		memset(req, 0, sizeof(*req));
		req->method = "POST";
		req->url = t->endpoint;
		req->body = t->change;
		req->content_type = "application/json";
		req->idempotency_key = t->idempotency_key;
		req->timeout_ms = t->timeout_ms;
		req->max_retries = t->retries;
		if (t->hmac_key_file)
			req->signature = DmHmacSha256Signature(t->hmac_key_file, t->change);
		x->kind = DM_ROUTER_IO_HTTP;
		x->sees_failure = true; /* transport errors are retried */
		x->attempt = 0;
		return true;
	}

	backoff_ms = DmHttpRetryBackoffMs(&x->http, &x->resp, x->attempt);
	if (backoff_ms >= 0)
	{
		x->attempt++;
		x->delay_ms = (int) backoff_ms;
		return true;
	}
	if (x->resp.error != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("webhook of router \"%s\" failed", t->name),
				 errdetail_internal("%s", x->resp.error)));
	if (x->resp.status < 200 || x->resp.status >= 300)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("webhook of router \"%s\" answered HTTP %ld", t->name, x->resp.status)));
	t->applied = psprintf("{\"change_id\": " INT64_FORMAT ", \"idempotency_key\": \"%s\", \"status\": %ld}",
						  t->change_id, t->idempotency_key, x->resp.status);
	return false;
}
