/*-------------------------------------------------------------------------
 *
 * http_sql.c
 *	  driftmirror._http_request(): a thin SQL wrapper over DmHttpPerform,
 *	  owner-only (never granted), used by the tests of the HTTP layer and
 *	  handy to check an endpoint by hand.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "driftmirror.h"
#include "http.h"

PG_FUNCTION_INFO_V1(driftmirror_http_request);

/*
 * driftmirror_http_request(method text, url text, body text, timeout_ms int,
 *							max_retries int, bearer_token text)
 *		RETURNS (ok bool, status int, body text, error text)
 *		Never raises for network errors.
 */
Datum
driftmirror_http_request(PG_FUNCTION_ARGS)
{
	DmHttpRequest req;
	DmHttpResponse resp;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	bool		ok;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	memset(&req, 0, sizeof(req));
	req.method = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	req.url = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	req.body = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	req.content_type = req.body ? "application/json" : NULL;
	req.timeout_ms = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	req.max_retries = PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4);
	req.bearer_token = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));

	ok = DmHttpPerform(&req, &resp);
	values[0] = BoolGetDatum(ok);
	values[1] = Int32GetDatum((int32) resp.status);
	if (resp.body)
		values[2] = CStringGetTextDatum(resp.body);
	else
		nulls[2] = true;
	if (resp.error)
		values[3] = CStringGetTextDatum(resp.error);
	else
		nulls[3] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
