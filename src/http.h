/*-------------------------------------------------------------------------
 *
 * http.h
 *	  A small libcurl wrapper for the backend: one blocking-but-interruptible
 *	  request (DmHttpPerform), or many concurrent requests driven by the
 *	  caller's own wait loop (DmHttpMulti*), for callers that also wait on
 *	  other sockets (the metric collector waits on libpq sockets too).
 *
 * Rules enforced for every request: only http and https URLs (also after a
 * redirect, and redirects are not followed anyway), no credentials in the
 * URL, a connect timeout and a total timeout, a cap on the response size
 * (driftmirror.http_max_response_size), no signals from libcurl.  Neither
 * the bearer token nor the request body ever appears in an error message or
 * the server log.
 *
 * Results (body, error) are palloc'd in the memory context current when the
 * request was started.  Network and HTTP-level problems never raise an
 * error: they are reported through the return value and resp->error.  Only
 * interrupts (query cancel, terminate) can leave through ereport.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_HTTP_H
#define DM_HTTP_H

#include "storage/latch.h"

typedef struct DmHttpRequest
{
	const char *method;			/* "GET" (default when NULL), "POST", "PUT",
								 * "DELETE", ... */
	const char *url;			/* http:// or https:// */
	const char *body;			/* request body or NULL */
	const char *content_type;	/* Content-Type of body, or NULL */
	const char *bearer_token;	/* Authorization: Bearer ..., or NULL */
	const char *idempotency_key;	/* Idempotency-Key header, or NULL */
	const char *signature;		/* X-Driftmirror-Signature header, or NULL */
	long		timeout_ms;		/* per attempt; <= 0 means 10 s */
	int			max_retries;	/* extra attempts after a transport error or
								 * a 429/502/503/504 answer */
	const char *aws_sigv4;		/* sign with AWS Signature Version 4, this
								 * provider ("aws:amz:REGION:SERVICE"), or
								 * NULL; needs username and password */
	const char *username;		/* with aws_sigv4: the access key id */
	const char *password;		/* with aws_sigv4: the secret access key;
								 * handed only to libcurl, never shown */
	const char *const *headers; /* more "Name: value" lines, NULL-terminated,
								 * or NULL */
} DmHttpRequest;

/* why a request got no response (resp->failure) */
typedef enum DmHttpFailure
{
	DM_HTTP_ANSWERED = 0,		/* a response arrived (any status) */
	DM_HTTP_FAIL_CONNECT,		/* the host could not be resolved or reached */
	DM_HTTP_FAIL_TIMEOUT,		/* no complete response within the timeout */
	DM_HTTP_FAIL_TOO_LARGE,		/* the response exceeded the size cap */
	DM_HTTP_FAIL_OTHER			/* refused request, TLS, protocol, ... */
} DmHttpFailure;

typedef struct DmHttpResponse
{
	long		status;			/* HTTP status, 0 if no response */
	char	   *body;			/* NUL-terminated, NULL if no response */
	size_t		body_len;
	char	   *error;			/* NULL on success */
	DmHttpFailure failure;		/* why there is no response */
} DmHttpResponse;

/*
 * DmHttpPerform: run one request (with its retries) and wait for it,
 * interruptibly.  Returns true when an HTTP response arrived, whatever its
 * status; false with resp->error set otherwise.  Retries happen only for
 * methods that are safe to repeat (GET, HEAD, PUT, DELETE, OPTIONS) or when
 * an idempotency key is given.
 */
extern bool DmHttpPerform(const DmHttpRequest *req, DmHttpResponse *resp);

/*
 * DmHttpRetryBackoffMs: after attempt (0 = the first) of req got resp, the
 * back-off before the next attempt in ms, or -1 when none is due (not a
 * transport error, 429 or 502-504; the retries spent; or a method not safe
 * to repeat without an idempotency key).  DmHttpPerform's rule, for callers
 * that retry through the I/O engine instead of waiting.
 */
extern long DmHttpRetryBackoffMs(const DmHttpRequest *req, const DmHttpResponse *resp,
								 int attempt);

/*
 * Concurrent requests without retries.  The caller adds requests, then
 * loops: DmHttpMultiAddWaitEvents() into its own WaitEventSet (each event
 * carries user_data), waits at most DmHttpMultiTimeoutMs(), passes each
 * fired event whose user_data is its marker to DmHttpMultiSocketReady(),
 * and calls DmHttpMultiCheckTimers(); until DmHttpMultiRunning() is 0.
 * Each response is complete when its request finished (the response's
 * error or status is set).  A DmHttpMulti can be kept across rounds: it
 * reuses connections.  DmHttpMultiAbortAll ends every running transfer
 * with an error (deadline passed); DmHttpMultiCancel drops one, leaving
 * its response untouched.
 */
typedef struct DmHttpMulti DmHttpMulti;

extern DmHttpMulti *DmHttpMultiCreate(void);
extern void DmHttpMultiDestroy(DmHttpMulti *multi);
extern void DmHttpMultiAdd(DmHttpMulti *multi, const DmHttpRequest *req,
						   DmHttpResponse *resp);
extern int	DmHttpMultiRunning(DmHttpMulti *multi);
extern int	DmHttpMultiSocketCount(DmHttpMulti *multi);
extern void DmHttpMultiAddWaitEvents(DmHttpMulti *multi, WaitEventSet *set,
									 void *user_data);
extern long DmHttpMultiTimeoutMs(DmHttpMulti *multi);
extern void DmHttpMultiSocketReady(DmHttpMulti *multi, pgsocket fd,
								   uint32 events);
extern void DmHttpMultiCheckTimers(DmHttpMulti *multi);
extern void DmHttpMultiAbortAll(DmHttpMulti *multi, const char *why);
extern void DmHttpMultiCancel(DmHttpMulti *multi, DmHttpResponse *resp);

/* percent-encode s for a URL query component; palloc'd */
extern char *DmHttpUrlEncode(const char *s);

#endif							/* DM_HTTP_H */
