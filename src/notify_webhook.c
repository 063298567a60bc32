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

#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "ctl_txn.h"
#include "driftmirror.h"
#include "http.h"
#include "signature.h"

#define DM_NOTIFY_BATCH 50

typedef struct Notification
{
	int64		id;
	char	   *key;			/* idempotency key */
	char	   *payload;
	bool		ok;
	char	   *error;
} Notification;

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
			err = DmCtlCatch(cxt, false)->message;
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
