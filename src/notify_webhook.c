/*-------------------------------------------------------------------------
 *
 * notify_webhook.c
 *	  Delivery of queued action notifications to the webhook a superuser
 *	  named in driftmirror.notify_webhook_url (see sql/install/85_notify.sql).
 *
 * Once per worker pass: read the due entries of notification_outbox (one
 * short transaction), POST each outside any transaction, record each
 * outcome (another).  Each request carries the action's JSON, an
 * Idempotency-Key per action and outcome ("dm-action-<id>-<outcome>", the
 * same on every retry) and, with driftmirror.notify_webhook_hmac_key_file,
 * X-Driftmirror-Signature: sha256=<hex HMAC-SHA256 of the body>.  Any 2xx
 * answer is a delivery.  A batch stops at the first failure: a receiver
 * that is down costs one request timeout (driftmirror.notify_webhook_timeout)
 * per attempt, and the back-off of _notify_done spaces the attempts.
 *
 * Never raises: problems are WARNINGs and the entries stay queued.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "driftmirror.h"
#include "http.h"
#include "signature.h"
#include "ctl_txn.h"

#define DM_NOTIFY_BATCH 50

typedef struct Notification
{
	int64		id;
	char	   *key;			/* idempotency key */
	char	   *payload;
	bool		ok;
	char	   *error;
} Notification;

/* ReadDue: the due notifications, in cxt; may raise */
static List *
ReadDue(MemoryContext cxt)
{
	List	   *due = NIL;
	uint64		i;

	DmSpiExec("SELECT id, action_id, outcome, payload FROM driftmirror._notify_due($1)",
			  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(DM_NOTIFY_BATCH)});
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Notification *n = palloc0(sizeof(Notification));

		n->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		n->key = psprintf("dm-action-%s-%s", SPI_getvalue(tup, desc, 2), SPI_getvalue(tup, desc, 3));
		n->payload = SPI_getvalue(tup, desc, 4);
		due = lappend(due, n);
		MemoryContextSwitchTo(old);
	}
	return due;
}

/* Send: one POST; fills n->ok / n->error; raises only on interrupts */
static void
Send(Notification *n)
{
	DmHttpRequest req;
	DmHttpResponse resp;
	char	   *volatile sig = NULL;
	char	   *volatile err = NULL;

	if (DmNotifyWebhookKeyFile && DmNotifyWebhookKeyFile[0] != '\0')
	{
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			sig = DmHmacSha256Signature(DmNotifyWebhookKeyFile, n->payload);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			err = edata->message;
		}
		PG_END_TRY();
		if (sig == NULL)
		{
			n->error = psprintf("could not sign: %s", err);
			return;
		}
	}
	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.method = "POST";
	req.url = DmNotifyWebhookUrl;
	req.body = n->payload;
	req.content_type = "application/json";
	req.idempotency_key = n->key;
	req.signature = sig;
	req.timeout_ms = DmNotifyWebhookTimeoutMs;
	req.max_retries = 0;
	if (!DmHttpPerform(&req, &resp))
		n->error = resp.error ? resp.error : pstrdup("no answer");
	else if (resp.status < 200 || resp.status > 299)
		n->error = psprintf("HTTP status %ld", resp.status);
	else
		n->ok = true;
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
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (OidIsValid(get_extension_oid(DM_EXTENSION_NAME, true)))
		{
			DmSpiConnect();
			due = ReadDue(cxt);
			SPI_finish();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: could not read the notifications to send: %s",
						edata->message)));
		due = NIL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
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
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		DmSpiConnect();
		foreach(lc, due)
		{
			Notification *n = lfirst(lc);

			if (!n->ok && n->error == NULL)
				break;			/* not attempted in this pass */
			DmSpiExec("SELECT driftmirror._notify_done($1, $2, $3)", 3,
					  (Oid[]) {INT8OID, BOOLOID, TEXTOID},
					  (Datum[]) {Int64GetDatum(n->id), BoolGetDatum(n->ok),
						  CStringGetTextDatum(n->error ? n->error : "")});
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("driftmirror: could not record the notifications sent: %s",
						edata->message)));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

/*
 * DmDeliverNotifications
 *		Send what is due to the notification webhook, if one is set.  Called
 *		by the worker once per pass, outside any transaction.  Never raises
 *		but for interrupts.
 */
void
DmDeliverNotifications(void)
{
	List	   *due;
	ListCell   *lc;

	if (DmNotifyWebhookUrl == NULL || DmNotifyWebhookUrl[0] == '\0')
		return;
	due = ReadDueInTransaction();
	if (due == NIL)
		return;

	/* outside any transaction; a batch stops at its first failure */
	foreach(lc, due)
	{
		Notification *n = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		Send(n);
		if (!n->ok)
			break;
	}
	RecordInTransaction(due);
}
