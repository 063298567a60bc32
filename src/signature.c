/*-------------------------------------------------------------------------
 *
 * signature.c
 *	  HMAC-SHA256 signatures of the bodies driftmirror sends to webhooks
 *	  (routers of kind webhook, the notification webhook): the header value
 *	  X-Driftmirror-Signature: sha256=<hex>, with a key read from a file of
 *	  $PGDATA/driftmirror_secrets just before use and wiped after it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "utils/resowner.h"

#include "secrets.h"
#include "signature.h"

/*
 * DmHmacSha256Signature
 *		"sha256=<hex>" of the body with the key in key_file (a file of
 *		driftmirror_secrets), palloc'd.  Raises if the key cannot be read or
 *		the HMAC fails; works inside or outside a transaction.
 */
char *
DmHmacSha256Signature(const char *key_file, const char *body)
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
				 errmsg("could not read the signing key file"),
				 errdetail_internal("%s", error)));
	/*
	 * OpenSSL contexts are tracked by the current resource owner, and there
	 * is none outside a transaction: lend one for the computation
	 */
	save = CurrentResourceOwner;
	CurrentResourceOwner = owner = ResourceOwnerCreate(NULL, "driftmirror signature");
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
				 errmsg("could not compute an HMAC-SHA256 signature")));
	initStringInfo(&out);
	appendStringInfoString(&out, "sha256=");
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		appendStringInfo(&out, "%02x", digest[i]);
	return out.data;
}
