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

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "utils/resowner.h"

#include "http.h"
#include "router.h"
#include "secrets.h"

/*
 * Signature
 *		"sha256=<hex>" of the body with the key in key_file (palloc'd).
 *		Raises if the key cannot be read or the HMAC fails.
 */
static char *
Signature(const char *key_file, const char *body)
{
	char	   *error = NULL;
	char	   *key = DmReadSecretFile(key_file, &error);
	pg_hmac_ctx *volatile ctx = NULL;
	ResourceOwner save;
	ResourceOwner owner;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	StringInfoData out;
	int			i;
	volatile bool ok = false;

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not read the webhook's hmac_key_file"),
				 errdetail_internal("%s", error)));
	/*
	 * OpenSSL contexts are tracked by the current resource owner, and there
	 * is none outside a transaction: lend one for the computation
	 */
	save = CurrentResourceOwner;
	CurrentResourceOwner = owner = ResourceOwnerCreate(NULL, "driftmirror webhook signature");
	PG_TRY();
	{
		ctx = pg_hmac_create(PG_SHA256);
		ok = ctx != NULL &&
			pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) == 0 &&
			pg_hmac_update(ctx, (const uint8 *) body, strlen(body)) == 0 &&
			pg_hmac_final(ctx, digest, sizeof(digest)) == 0;
		if (ctx)
			pg_hmac_free(ctx);
	}
	PG_FINALLY();
	{
		explicit_bzero(key, strlen(key));
		ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
		ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, false, true);
		ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
		CurrentResourceOwner = save;
		ResourceOwnerDelete(owner);
	}
	PG_END_TRY();
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the webhook's signature")));
	initStringInfo(&out);
	appendStringInfoString(&out, "sha256=");
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		appendStringInfo(&out, "%02x", digest[i]);
	return out.data;
}

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
		req.signature = Signature(t->hmac_key_file, t->change);

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
