/*-------------------------------------------------------------------------
 *
 * object_store.c
 *	  One signed request to S3-compatible object storage, for dm_export and
 *	  dm_import (sql/install/92_export.sql): driftmirror._s3_request().
 *
 * Rules:
 * - Only URLs under driftmirror.s3_endpoint (a superuser's setting), so the
 *   server's credentials sign requests to the store a superuser chose, never
 *   to a host an admin names.  No query string, fragment or dot segments.
 * - Requests are signed with AWS Signature Version 4 by libcurl
 *   (CURLOPT_AWS_SIGV4), with the payload's SHA-256 in
 *   x-amz-content-sha256 as S3 requires.  The access key id comes from a
 *   superuser-only setting, the secret from a file of
 *   $PGDATA/driftmirror_secrets/ (secrets.c), read just before the request
 *   and wiped after it; neither appears in a message.
 * - The HTTP layer (http.c) gives the timeouts, the size cap and
 *   interruptibility.  Network errors come back as the error column; only
 *   configuration problems raise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "driftmirror.h"
#include "http.h"
#include "secrets.h"

PG_FUNCTION_INFO_V1(driftmirror_s3_request);

/* hex SHA-256 of data, palloc'd */
static char *
Sha256Hex(const char *data, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest");
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	return hex;
}

/*
 * CheckObjectUrl
 *		Raise unless url names an object under driftmirror.s3_endpoint.
 */
static void
CheckObjectUrl(const char *url)
{
	size_t		base_len;

	if (DmS3Endpoint == NULL || DmS3Endpoint[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("object storage is not configured"),
				 errhint("A superuser sets driftmirror.s3_endpoint, driftmirror.s3_access_key_id and driftmirror.s3_secret_access_key_file; see docs/operations.md.")));
	base_len = strlen(DmS3Endpoint);
	while (base_len > 0 && DmS3Endpoint[base_len - 1] == '/')
		base_len--;
	if (strncmp(url, DmS3Endpoint, base_len) != 0 || url[base_len] != '/' ||
		url[base_len + 1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("object URL is not under driftmirror.s3_endpoint"),
				 errdetail("dm_export and dm_import address only objects under the store a superuser configured.")));
	if (strpbrk(url + base_len, "?#\\ ") != NULL || strstr(url + base_len, "/.") != NULL ||
		strstr(url + base_len, "//") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid object URL"),
				 errdetail("An object key must not contain a query, a fragment, spaces, empty or dot segments.")));
}

/*
 * driftmirror_s3_request(method text, url text, body text)
 *		RETURNS (status int, body text, error text)
 *		Raises only for configuration problems (setting missing, URL outside
 *		the store, unreadable secret); a failed request returns its error.
 */
Datum
driftmirror_s3_request(PG_FUNCTION_ARGS)
{
	const char *method = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *url = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *body = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *volatile secret = NULL;
	char	   *err = NULL;
	char		provider[128];
	const char *headers[2];
	DmHttpRequest req;
	DmHttpResponse resp;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	CheckObjectUrl(url);
	if (DmS3AccessKeyId == NULL || DmS3AccessKeyId[0] == '\0' ||
		DmS3SecretFile == NULL || DmS3SecretFile[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("object storage credentials are not configured"),
				 errhint("A superuser sets driftmirror.s3_access_key_id and driftmirror.s3_secret_access_key_file.")));
	if (DmS3Region == NULL || DmS3Region[0] == '\0' ||
		strspn(DmS3Region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(DmS3Region))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid driftmirror.s3_region")));
	snprintf(provider, sizeof(provider), "aws:amz:%s:s3", DmS3Region);
	headers[0] = psprintf("x-amz-content-sha256: %s",
						  Sha256Hex(body ? body : "", body ? strlen(body) : 0));
	headers[1] = NULL;

	secret = DmReadSecretFile(DmS3SecretFile, &err);
	if (secret == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("could not read the object storage secret: %s", err)));

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.method = method;
	req.url = url;
	req.body = body;
	req.content_type = body ? "application/json" : NULL;
	req.timeout_ms = 30000;
	req.max_retries = 2;
	req.aws_sigv4 = provider;
	req.username = DmS3AccessKeyId;
	req.password = secret;
	req.headers = headers;
	PG_TRY();
	{
		DmHttpPerform(&req, &resp);
	}
	PG_FINALLY();
	{
		explicit_bzero(secret, strlen(secret));
	}
	PG_END_TRY();

	values[0] = Int32GetDatum((int32) resp.status);
	if (resp.body)
		values[1] = CStringGetTextDatum(resp.body);
	else
		nulls[1] = true;
	if (resp.error)
		values[2] = CStringGetTextDatum(resp.error);
	else
		nulls[2] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
