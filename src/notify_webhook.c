/*-------------------------------------------------------------------------
 *
 * notify_webhook.c
 *	  Delivery of queued action notifications to the webhook a superuser
 *	  named in driftmirror.notify_webhook_url (see sql/install/85_notify.sql).
 *
 * A batch at a time, through the worker's I/O engine (io_engine.c): a
 * pass with no batch in flight reads the due entries of
 * notification_outbox (one short transaction) and hands the first POST to
 * the engine; each answer (the engine's callback) starts the next one, in
 * order, and the batch stops at the first failure; the first pass after
 * the batch ended records every outcome (another short transaction).  So
 * the posts run during the worker's nap, beside every other request, and a
 * receiver that hangs holds nothing but the notifications, for at most
 * driftmirror.notify_webhook_timeout per attempt; the back-off of
 * _notify_done spaces the attempts.  Each request carries the action's
 * JSON, an Idempotency-Key per action and outcome
 * ("dm-action-<id>-<outcome>", the same on every retry) and, with
 * driftmirror.notify_webhook_hmac_key_file, X-Driftmirror-Signature:
 * sha256=<hex HMAC-SHA256 of the body>, computed when the batch is read.
 * Any 2xx answer is a delivery.
 *
 * Memory: the batch lives in its own context (TopMemoryContext's child)
 * until it is recorded or discarded.
 *
 * Never raises: problems are WARNINGs and the entries stay queued.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "http.h"
#include "io_engine.h"
#include "signature.h"

#define DM_NOTIFY_BATCH 50

typedef struct Notification
{
	int64		id;
	char	   *key;			/* idempotency key */
	char	   *payload;
	char	   *signature;		/* or NULL */
	bool		ok;
	char	   *error;
} Notification;

/* the batch in flight (or ended, waiting to be recorded) */
typedef struct Batch
{
	MemoryContext cxt;			/* holds the batch and all it points to */
	List	   *due;			/* Notification *, in order */
	int			next;			/* index of the next one to post */
	DmIoHttpRequest *req;		/* the post in flight, or NULL */
	bool		ended;			/* every post answered, or one failed */
} Batch;

static Batch *Current = NULL;

static void PostNext(Batch *b);

/*
 * Sign
 *		The signature of n's payload when a key file is set; a failure to
 *		sign becomes n's error.  Raises only on interrupts.
 */
static void
Sign(Notification *n)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile sig = NULL;
	char	   *volatile err = NULL;

	if (DmNotifyWebhookKeyFile == NULL || DmNotifyWebhookKeyFile[0] == '\0')
		return;
	PG_TRY();
	{
		sig = DmHmacSha256Signature(DmNotifyWebhookKeyFile, n->payload);
	}
	PG_CATCH();
	{
		err = DmCtlCatch(cxt, false)->message;
	}
	PG_END_TRY();
	if (sig == NULL)
		n->error = psprintf("could not sign: %s", err);
	n->signature = sig;
}

/*
 * Posted
 *		The engine's callback: the outcome of the post in flight; the next
 *		one starts, or the batch ends at its first failure.
 */
static void
Posted(DmIoHttpRequest *req, void *arg)
{
	Batch	   *b = (Batch *) arg;
	Notification *n = list_nth(b->due, b->next);
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	b->req = NULL;
	if (req->resp.error != NULL)
		n->error = pstrdup(req->resp.error);
	else if (req->resp.status < 200 || req->resp.status > 299)
		n->error = psprintf("HTTP status %ld", req->resp.status);
	else
		n->ok = true;
	MemoryContextSwitchTo(old);
	b->next++;
	if (!n->ok)
		b->ended = true;
	else
		PostNext(b);
}

/*
 * PostNext
 *		Hand the next notification of the batch to the engine, or end the
 *		batch.  Raises only on interrupts or out of memory.
 */
static void
PostNext(Batch *b)
{
	Notification *n;
	DmHttpRequest *h;

	if (b->next >= list_length(b->due))
	{
		b->ended = true;
		return;
	}
	n = list_nth(b->due, b->next);
	if (n->error != NULL)
	{
		/* could not be signed: a failure of this attempt */
		b->next++;
		b->ended = true;
		return;
	}
	b->req = DmIoHttpRequestCreate(b->cxt);
	h = &b->req->http;
	h->method = "POST";
	h->url = DmNotifyWebhookUrl;
	h->body = n->payload;
	h->content_type = "application/json";
	h->idempotency_key = n->key;
	h->signature = n->signature;
	h->timeout_ms = DmNotifyWebhookTimeoutMs;
	h->max_retries = 0;
	b->req->callback = Posted;
	b->req->arg = b;
	DmIoHttpStart(b->req);
}

/*
 * ReadDueInTransaction
 *		The due notifications (in the caller's context), read in a short
 *		transaction of their own; NIL, after a WARNING, if that fails.
 */
static List *
ReadDueInTransaction(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile due = NIL;

	PG_TRY();
	{
		DmCtlResult *r = NULL;
		int			i;

		DmCtlBegin(NULL);
		if (OidIsValid(get_extension_oid(DM_EXTENSION_NAME, true)))
			r = DmCtlExec("SELECT id, action_id, outcome, payload FROM driftmirror._notify_due($1)",
						  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(DM_NOTIFY_BATCH)}, NULL);
		DmCtlCommit();
		for (i = 0; r != NULL && i < r->nrows; i++)
		{
			Notification *n = palloc0(sizeof(Notification));

			n->id = DmCtlGetInt64(r, i, "id", 0);
			n->key = psprintf("dm-action-%s-%s", DmCtlGet(r, i, "action_id"),
							  DmCtlGet(r, i, "outcome"));
			n->payload = DmCtlGet(r, i, "payload");
			due = lappend(due, n);
		}
	}
	PG_CATCH();
	{
		(void) DmCtlCatchWarn(cxt, "could not read the notifications to send");
		due = NIL;
	}
	PG_END_TRY();
	return due;
}

/*
 * RecordInTransaction
 *		Record the outcome of each attempted notification; a WARNING if that
 *		fails (they are sent again: the idempotency key makes it harmless).
 */
static void
RecordInTransaction(List *due)
{
	MemoryContext cxt = CurrentMemoryContext;
	ListCell   *lc;

	PG_TRY();
	{
		DmCtlBegin(NULL);
		foreach(lc, due)
		{
			Notification *n = lfirst(lc);

			if (!n->ok && n->error == NULL)
				break;			/* not attempted in this pass */
			(void) DmCtlExec("SELECT driftmirror._notify_done($1, $2, $3)", 3,
							 (Oid[]) {INT8OID, BOOLOID, TEXTOID},
							 (Datum[]) {Int64GetDatum(n->id), BoolGetDatum(n->ok),
							 CStringGetTextDatum(n->error ? n->error : "")}, NULL);
		}
		DmCtlCommit();
	}
	PG_CATCH();
	{
		(void) DmCtlCatchWarn(cxt, "could not record the notifications sent");
	}
	PG_END_TRY();
}

/* FreeBatch: forget the current batch */
static void
FreeBatch(void)
{
	MemoryContextDelete(Current->cxt);
	Current = NULL;
}

/*
 * DmDeliverNotifications
 *		Called by the worker once per pass, outside any transaction: record
 *		the batch that ended, then, if a webhook is set and no batch is in
 *		flight, start the next one.  Never raises but for interrupts.
 */
void
DmDeliverNotifications(void)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt;
	List	   *due;
	ListCell   *lc;

	if (Current != NULL && !Current->ended)
		return;					/* in flight: the engine drives it */
	if (Current != NULL)
	{
		MemoryContextSwitchTo(Current->cxt);
		RecordInTransaction(Current->due);
		MemoryContextSwitchTo(caller);
		FreeBatch();
	}

	if (DmNotifyWebhookUrl == NULL || DmNotifyWebhookUrl[0] == '\0')
		return;
	cxt = AllocSetContextCreate(TopMemoryContext, "driftmirror notifications",
								ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(cxt);
	due = ReadDueInTransaction();
	if (due == NIL)
	{
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(cxt);
		return;
	}
	foreach(lc, due)
		Sign((Notification *) lfirst(lc));
	Current = palloc0(sizeof(Batch));
	Current->cxt = cxt;
	Current->due = due;
	PostNext(Current);
	MemoryContextSwitchTo(caller);
}

/*
 * DmNotifyDiscard
 *		The extension is gone or the worker disabled: drop the batch, its
 *		post cancelled (the entries stay queued).
 */
void
DmNotifyDiscard(void)
{
	if (Current == NULL)
		return;
	if (Current->req != NULL)
		DmIoHttpCancel(Current->req);
	FreeBatch();
}
