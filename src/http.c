/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl wrapper: DmHttpPerform for one interruptible request with
 *	  retries, DmHttpMulti* for many concurrent requests driven by the
 *	  caller's WaitEventSet (see http.h for the contract).
 *
 * Everything libcurl calls back into (write, socket and timer callbacks)
 * uses malloc and never raises an error: a longjmp through libcurl would
 * leave it in an undefined state.  Results are copied into palloc'd memory
 * afterwards, in our own code, in the memory context that was current when
 * the request was added.  libcurl handles are freed on every path,
 * including errors raised by CHECK_FOR_INTERRUPTS while waiting.
 *
 * The bearer token only ever goes into a header list handed to libcurl;
 * error messages are built from libcurl's error codes and buffers, which do
 * not contain headers or bodies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "http.h"

#define DM_HTTP_DEFAULT_TIMEOUT_MS	10000
#define DM_HTTP_MAX_CONNECT_MS		10000
#define DM_HTTP_USER_AGENT			"driftmirror/0.1"

/* one transfer in flight (malloc'd) */
typedef struct DmHttpTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;
	DmHttpResponse *resp;
	MemoryContext cxt;			/* where the results go */
	char	   *buf;			/* response body so far (malloc'd) */
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		too_big;
	char		errbuf[CURL_ERROR_SIZE];
	struct DmHttpTransfer *next;
} DmHttpTransfer;

/* a socket libcurl asked us to watch */
typedef struct DmHttpSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} DmHttpSocket;

struct DmHttpMulti
{
	CURLM	   *multi;
	DmHttpTransfer *transfers;
	int			running;
	DmHttpSocket *socks;		/* malloc'd */
	int			nsocks;
	int			maxsocks;
	bool		timer_set;
	TimestampTz timer_at;
};

static bool CurlReady = false;

/*
 * EnsureCurl
 *		Initialise libcurl once per process.  Raises an error if it cannot.
 */
static void
EnsureCurl(void)
{
	if (CurlReady)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialise libcurl")));
	CurlReady = true;
}

/*
 * CheckUrl
 *		Returns NULL if url may be requested, else a static message saying
 *		why not.  Never repeats the URL (it may carry secrets in its query).
 */
static const char *
CheckUrl(const char *url)
{
	const char *rest;
	const char *p;
	size_t		hostlen;

	if (url == NULL || url[0] == '\0')
		return "no URL given";
	if (pg_strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return "URL scheme not allowed: only http and https";
	for (p = url; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return "URL contains spaces or control characters";
	hostlen = strcspn(rest, "/?#");
	if (hostlen == 0)
		return "URL has no host";
	if (memchr(rest, '@', hostlen) != NULL)
		return "URL must not contain credentials";
	return NULL;
}

/* a header value must not smuggle further headers */
static bool
HeaderValueOk(const char *v)
{
	return v == NULL || strpbrk(v, "\r\n") == NULL;
}

/*
 * WriteCallback
 *		Append received data; refuse (ending the transfer with an error)
 *		past the size limit or when memory runs out.
 */
static size_t
WriteCallback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	DmHttpTransfer *t = (DmHttpTransfer *) userdata;
	size_t		n = size * nmemb;

	if (t->len + n > t->limit)
	{
		t->too_big = true;
		return 0;
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = Max(Max(t->cap * 2, t->len + n + 1), (size_t) 8192);
		char	   *nb = realloc(t->buf, newcap);

		if (nb == NULL)
			return 0;
		t->buf = nb;
		t->cap = newcap;
	}
	memcpy(t->buf + t->len, ptr, n);
	t->len += n;
	return n;
}

/*
 * SocketCallback
 *		libcurl tells us which sockets to watch for what.
 */
static int
SocketCallback(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	DmHttpMulti *m = (DmHttpMulti *) userp;
	int			i;

	for (i = 0; i < m->nsocks; i++)
		if (m->socks[i].fd == s)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < m->nsocks)
			m->socks[i] = m->socks[--m->nsocks];
		return 0;
	}
	if (i == m->nsocks)
	{
		if (m->nsocks == m->maxsocks)
		{
			int			newmax = Max(8, m->maxsocks * 2);
			DmHttpSocket *ns = realloc(m->socks, newmax * sizeof(DmHttpSocket));

			if (ns == NULL)
				return -1;
			m->socks = ns;
			m->maxsocks = newmax;
		}
		m->socks[m->nsocks].fd = s;
		m->nsocks++;
	}
	m->socks[i].what = what;
	return 0;
}

/*
 * TimerCallback
 *		libcurl asks to be called back after timeout_ms (-1: no timer).
 */
static int
TimerCallback(CURLM *cm, long timeout_ms, void *userp)
{
	DmHttpMulti *m = (DmHttpMulti *) userp;

	m->timer_set = (timeout_ms >= 0);
	if (m->timer_set)
		m->timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * SetError
 *		Record an error in a response, palloc'd in cxt, with its kind.
 */
static void
SetError(DmHttpResponse *resp, MemoryContext cxt, DmHttpFailure failure,
		 const char *msg)
{
	resp->failure = failure;
	resp->status = 0;
	resp->body = NULL;
	resp->body_len = 0;
	resp->error = MemoryContextStrdup(cxt, msg);
}

/*
 * FreeTransfer
 *		Release libcurl and malloc'd resources of one transfer (already
 *		removed from the multi handle).
 */
static void
FreeTransfer(DmHttpTransfer *t)
{
	if (t->easy)
		curl_easy_cleanup(t->easy);
	if (t->headers)
		curl_slist_free_all(t->headers);
	free(t->buf);
	free(t);
}

/*
 * SetupTransfer
 *		Configure the easy handle of t for req.  Returns NULL, or a static
 *		message saying why the request cannot be made.
 */
static const char *
SetupTransfer(DmHttpTransfer *t, const DmHttpRequest *req)
{
	const char *method = req->method ? req->method : "GET";
	long		timeout = req->timeout_ms > 0 ? req->timeout_ms : DM_HTTP_DEFAULT_TIMEOUT_MS;
	const char *bad;
	CURL	   *e;

	if ((bad = CheckUrl(req->url)) != NULL)
		return bad;
	if (!HeaderValueOk(req->bearer_token) || !HeaderValueOk(req->idempotency_key) ||
		!HeaderValueOk(req->content_type) || !HeaderValueOk(req->signature))
		return "header values must not contain line breaks";
	for (const char *const *hl = req->headers; hl && *hl; hl++)
		if (!HeaderValueOk(*hl) || strchr(*hl, ':') == NULL)
			return "header values must not contain line breaks";
	if (req->aws_sigv4 && (req->username == NULL || req->password == NULL))
		return "a signed request needs an access key id and a secret";
	if (strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method) || method[0] == '\0')
		return "invalid HTTP method";

	t->easy = e = curl_easy_init();
	if (e == NULL)
		return "could not create a libcurl handle";

#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, Min(timeout, (long) DM_HTTP_MAX_CONNECT_MS));
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700

	/*
	 * Without it, removing a handle whose name lookup still runs waits for
	 * the resolver thread (Curl_resolver_kill joins it): a dead DNS server
	 * would block the worker there, deaf to interrupts, past every timeout.
	 */
	curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->limit);
	curl_easy_setopt(e, CURLOPT_USERAGENT, DM_HTTP_USER_AGENT);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, WriteCallback);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	if (req->aws_sigv4)
	{
		/* libcurl signs the method, path, query and headers with these */
		curl_easy_setopt(e, CURLOPT_AWS_SIGV4, req->aws_sigv4);
		curl_easy_setopt(e, CURLOPT_USERNAME, req->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, req->password);
	}

	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else
	{
		if (strcmp(method, "POST") == 0)
			curl_easy_setopt(e, CURLOPT_POST, 1L);
		else
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		/* always send a body (possibly empty) with POST/PUT/...: a length */
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) (req->body ? strlen(req->body) : 0));
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
	}

	/* headers: copies of the values live in libcurl's list */
	{
		char		line[8192];
		struct curl_slist *h = NULL;
		struct curl_slist *n;

#define DM_ADD_HEADER(fmt, val) \
		do { \
			if (snprintf(line, sizeof(line), fmt, val) >= (int) sizeof(line)) \
				return "header value too long"; \
			n = curl_slist_append(h, line); \
			if (n == NULL) \
				return "out of memory"; \
			t->headers = h = n; \
		} while (0)

		if (req->content_type)
			DM_ADD_HEADER("Content-Type: %s", req->content_type);
		if (req->bearer_token)
			DM_ADD_HEADER("Authorization: Bearer %s", req->bearer_token);
		if (req->idempotency_key)
			DM_ADD_HEADER("Idempotency-Key: %s", req->idempotency_key);
		for (const char *const *hl = req->headers; hl && *hl; hl++)
			DM_ADD_HEADER("%s", *hl);
		if (req->signature)
			DM_ADD_HEADER("X-Driftmirror-Signature: %s", req->signature);
		/* no "Expect: 100-continue" round trip */
		DM_ADD_HEADER("%s", "Expect:");
#undef DM_ADD_HEADER
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
		/* the token must not survive in the stack buffer */
		explicit_bzero(line, sizeof(line));
	}
	return NULL;
}

/*
 * FinishTransfer
 *		Fill the response of a finished transfer.  May raise only on out of
 *		memory.
 */
static void
FinishTransfer(DmHttpTransfer *t, CURLcode code)
{
	DmHttpResponse *resp = t->resp;

	if (code == CURLE_OK)
	{
		long		status = 0;

		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
		resp->status = status;
		resp->body = MemoryContextAlloc(t->cxt, t->len + 1);
		if (t->len > 0)
			memcpy(resp->body, t->buf, t->len);
		resp->body[t->len] = '\0';
		resp->body_len = t->len;
		resp->error = NULL;
		resp->failure = DM_HTTP_ANSWERED;
	}
	else
	{
		char		msg[CURL_ERROR_SIZE + 128];
		DmHttpFailure failure;

		if (t->too_big || code == CURLE_FILESIZE_EXCEEDED)
			failure = DM_HTTP_FAIL_TOO_LARGE;
		else if (code == CURLE_OPERATION_TIMEDOUT)
			failure = DM_HTTP_FAIL_TIMEOUT;
		else if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
				 code == CURLE_COULDNT_RESOLVE_PROXY)
			failure = DM_HTTP_FAIL_CONNECT;
		else
			failure = DM_HTTP_FAIL_OTHER;
		if (failure == DM_HTTP_FAIL_TOO_LARGE)
			snprintf(msg, sizeof(msg), "response larger than %zu bytes", t->limit);
		else if (t->errbuf[0] != '\0')
			snprintf(msg, sizeof(msg), "%s", t->errbuf);
		else
			snprintf(msg, sizeof(msg), "%s", curl_easy_strerror(code));
		SetError(resp, t->cxt, failure, msg);
	}
}

/*
 * ProcessDone
 *		Collect finished transfers from libcurl.
 */
static void
ProcessDone(DmHttpMulti *m)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
	{
		DmHttpTransfer *t = NULL;
		DmHttpTransfer **pp;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		if (t == NULL)
			continue;
		FinishTransfer(t, msg->data.result);
		curl_multi_remove_handle(m->multi, t->easy);
		for (pp = &m->transfers; *pp; pp = &(*pp)->next)
			if (*pp == t)
			{
				*pp = t->next;
				break;
			}
		FreeTransfer(t);
		m->running--;
	}
}

/*
 * DmHttpMultiCreate
 *		A new set of concurrent transfers.  Raises an error only if libcurl
 *		cannot be initialised.  Free with DmHttpMultiDestroy.
 */
DmHttpMulti *
DmHttpMultiCreate(void)
{
	DmHttpMulti *m;

	EnsureCurl();
	m = calloc(1, sizeof(DmHttpMulti));
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	m->multi = curl_multi_init();
	if (m->multi == NULL)
	{
		free(m);
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	}
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, SocketCallback);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, TimerCallback);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	return m;
}

/*
 * DmHttpMultiAbortAll
 *		End every running transfer; each response gets error why (failure
 *		DM_HTTP_FAIL_TIMEOUT: the caller's deadline passed).
 */
void
DmHttpMultiAbortAll(DmHttpMulti *m, const char *why)
{
	while (m->transfers)
	{
		DmHttpTransfer *t = m->transfers;

		m->transfers = t->next;
		curl_multi_remove_handle(m->multi, t->easy);
		SetError(t->resp, t->cxt, DM_HTTP_FAIL_TIMEOUT, why);
		FreeTransfer(t);
	}
	m->running = 0;
}

/*
 * DmHttpMultiCancel
 *		Drop the running transfer that fills resp, without touching resp
 *		(its memory may already be gone).  Nothing when none does.
 */
void
DmHttpMultiCancel(DmHttpMulti *m, DmHttpResponse *resp)
{
	DmHttpTransfer **pp;

	for (pp = &m->transfers; *pp; pp = &(*pp)->next)
		if ((*pp)->resp == resp)
		{
			DmHttpTransfer *t = *pp;

			*pp = t->next;
			curl_multi_remove_handle(m->multi, t->easy);
			FreeTransfer(t);
			m->running--;
			return;
		}
}

/*
 * DmHttpMultiDestroy
 *		Free everything; running transfers are dropped without touching
 *		their responses (which may live in a context already reset).
 */
void
DmHttpMultiDestroy(DmHttpMulti *m)
{
	if (m == NULL)
		return;
	while (m->transfers)
	{
		DmHttpTransfer *t = m->transfers;

		m->transfers = t->next;
		curl_multi_remove_handle(m->multi, t->easy);
		FreeTransfer(t);
	}
	curl_multi_cleanup(m->multi);
	free(m->socks);
	free(m);
}

/*
 * DmHttpMultiAdd
 *		Start a request.  Its response is filled when it finishes; a request
 *		that cannot be made at all (bad URL, ...) is finished at once with
 *		resp->error set.  Results are palloc'd in CurrentMemoryContext.
 */
void
DmHttpMultiAdd(DmHttpMulti *m, const DmHttpRequest *req, DmHttpResponse *resp)
{
	DmHttpTransfer *t;
	const char *bad;

	memset(resp, 0, sizeof(*resp));
	t = calloc(1, sizeof(DmHttpTransfer));
	if (t == NULL)
	{
		SetError(resp, CurrentMemoryContext, DM_HTTP_FAIL_OTHER, "out of memory");
		return;
	}
	t->resp = resp;
	t->cxt = CurrentMemoryContext;
	t->limit = (size_t) DmHttpMaxResponseKb * 1024;

	bad = SetupTransfer(t, req);
	if (bad == NULL && curl_multi_add_handle(m->multi, t->easy) != CURLM_OK)
		bad = "could not start the transfer";
	if (bad != NULL)
	{
		SetError(resp, t->cxt, DM_HTTP_FAIL_OTHER, bad);
		FreeTransfer(t);
		return;
	}
	t->next = m->transfers;
	m->transfers = t;
	m->running++;
}

/* DmHttpMultiRunning: transfers not finished yet */
int
DmHttpMultiRunning(DmHttpMulti *m)
{
	return m->running;
}

/* DmHttpMultiSocketCount: sockets libcurl currently wants watched */
int
DmHttpMultiSocketCount(DmHttpMulti *m)
{
	return m->nsocks;
}

/*
 * DmHttpMultiAddWaitEvents
 *		Add libcurl's sockets to set (which must have room for
 *		DmHttpMultiSocketCount() more events), tagged with user_data.
 */
void
DmHttpMultiAddWaitEvents(DmHttpMulti *m, WaitEventSet *set, void *user_data)
{
	int			i;

	for (i = 0; i < m->nsocks; i++)
	{
		uint32		ev = 0;

		if (m->socks[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (m->socks[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		if (ev != 0)
			AddWaitEventToSet(set, ev, m->socks[i].fd, NULL, user_data);
	}
}

/*
 * DmHttpMultiTimeoutMs
 *		Milliseconds until libcurl's timer fires (0: now), -1 if none.
 */
long
DmHttpMultiTimeoutMs(DmHttpMulti *m)
{
	TimestampTz now;

	if (!m->timer_set)
		return -1;
	now = GetCurrentTimestamp();
	if (m->timer_at <= now)
		return 0;
	return (long) ((m->timer_at - now + 999) / 1000);
}

/*
 * DmHttpMultiSocketReady
 *		Tell libcurl that fd is ready for events (WL_SOCKET_* flags).
 */
void
DmHttpMultiSocketReady(DmHttpMulti *m, pgsocket fd, uint32 events)
{
	int			flags = 0;
	int			still;

	if (events & WL_SOCKET_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & WL_SOCKET_WRITEABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(m->multi, fd, flags, &still);
	ProcessDone(m);
}

/*
 * DmHttpMultiCheckTimers
 *		Run libcurl's timeouts if they are due.
 */
void
DmHttpMultiCheckTimers(DmHttpMulti *m)
{
	int			still;

	if (m->timer_set && m->timer_at <= GetCurrentTimestamp())
	{
		m->timer_set = false;
		curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}
	ProcessDone(m);
}

/*
 * RetryableMethod
 *		Whether a request may be sent again after a failure.
 */
static bool
RetryableMethod(const DmHttpRequest *req)
{
	const char *method = req->method ? req->method : "GET";

	if (req->idempotency_key != NULL)
		return true;
	return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
		strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0 ||
		strcmp(method, "OPTIONS") == 0;
}

/*
 * RunOne
 *		One attempt: run the request to completion, waiting on the latch and
 *		libcurl's sockets.  Raises only for interrupts.
 */
static void
RunOne(const DmHttpRequest *req, DmHttpResponse *resp)
{
	DmHttpMulti *volatile m = DmHttpMultiCreate();
	WaitEventSet *volatile set = NULL;
	long		timeout = req->timeout_ms > 0 ? req->timeout_ms : DM_HTTP_DEFAULT_TIMEOUT_MS;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout + 1000);

	PG_TRY();
	{
		DmHttpMultiAdd(m, req, resp);
		while (DmHttpMultiRunning(m) > 0)
		{
			WaitEvent	events[16];
			long		wait_ms;
			int			n;
			int			i;

			if (GetCurrentTimestamp() >= deadline)
			{
				DmHttpMultiAbortAll(m, "request timed out");
				break;
			}
			set = CreateWaitEventSet(CurrentMemoryContext, 2 + DmHttpMultiSocketCount(m));
			AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
			if (IsUnderPostmaster)
				AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
			DmHttpMultiAddWaitEvents(m, set, (void *) m);

			wait_ms = DmHttpMultiTimeoutMs(m);
			if (wait_ms < 0 || wait_ms > 1000)
				wait_ms = 1000;
			n = WaitEventSetWait(set, wait_ms, events, lengthof(events), PG_WAIT_EXTENSION);
			for (i = 0; i < n; i++)
			{
				if (events[i].events & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					CHECK_FOR_INTERRUPTS();
				}
				else if (events[i].user_data == (void *) m)
					DmHttpMultiSocketReady(m, events[i].fd, events[i].events);
			}
			FreeWaitEventSet(set);
			set = NULL;
			DmHttpMultiCheckTimers(m);
		}
	}
	PG_FINALLY();
	{
		if (set != NULL)
			FreeWaitEventSet(set);
		DmHttpMultiDestroy(m);
	}
	PG_END_TRY();
}

/*
 * DmHttpRetryBackoffMs
 *		See http.h: 200 ms, 400 ms, ... up to 5 s.
 */
long
DmHttpRetryBackoffMs(const DmHttpRequest *req, const DmHttpResponse *resp, int attempt)
{
	bool		transient = (resp->error != NULL && resp->status == 0) ||
		resp->status == 429 || resp->status == 502 ||
		resp->status == 503 || resp->status == 504;

	if (!transient || attempt >= Max(req->max_retries, 0) || !RetryableMethod(req))
		return -1;
	return Min(200L << Min(attempt, 5), 5000L);
}

/*
 * DmHttpPerform
 *		See http.h.  Results are palloc'd in CurrentMemoryContext.
 */
bool
DmHttpPerform(const DmHttpRequest *req, DmHttpResponse *resp)
{
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		long		backoff_ms;

		RunOne(req, resp);
		backoff_ms = DmHttpRetryBackoffMs(req, resp, attempt);
		if (backoff_ms < 0)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | (IsUnderPostmaster ? WL_EXIT_ON_PM_DEATH : 0),
						 backoff_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return resp->error == NULL;
}

/*
 * DmHttpUrlEncode
 *		Percent-encode everything but RFC 3986 unreserved characters.
 *		Returns a palloc'd string.
 */
char *
DmHttpUrlEncode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char	   *out = palloc(strlen(s) * 3 + 1);
	char	   *o = out;

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~')
			*o++ = c;
		else
		{
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}
