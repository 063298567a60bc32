-- 85_notify.sql: every action is announced with NOTIFY.
--
-- Whatever writes the action log (the API, the worker's decisions, the
-- promotion driver) also sends, on channel "driftmirror_actions", a JSON
-- payload when an action is recorded and again when its outcome changes:
--   {"id": 42, "group": "orders", "resource": "orders-db", "kind": "promote_flip",
--    "outcome": "done", "actor": "driftmirror", "at": "2026-12-04T21:00:00.123+00"}
-- PostgreSQL lets any role LISTEN on any channel, so the payload carries
-- names, the kind and the outcome only, never the reason or the inputs
-- (which may name hosts): a listener reads those from dm_actions with its
-- own rights.  NOTIFY is transactional: an action whose transaction rolls
-- back is never announced, and listeners see them in commit order.
--
-- Optionally, the same events go to an HTTP webhook a superuser names
-- (driftmirror.notify_webhook_url): the trigger queues them in
-- notification_outbox, in the action's transaction, and the worker delivers
-- them (src/notify_webhook.c) with the full action (reason and inputs
-- included: the receiver is the superuser's), signed, retried with back-off.

CREATE TABLE driftmirror.notification_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id       bigint NOT NULL,
    outcome         text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error      text
);
CREATE INDEX ON driftmirror.notification_outbox (next_attempt_at);
COMMENT ON TABLE driftmirror.notification_outbox IS
    'Actions waiting to be sent to driftmirror.notify_webhook_url by the worker';

CREATE FUNCTION driftmirror._notify_action()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.outcome IS NOT DISTINCT FROM OLD.outcome THEN
        RETURN NULL;
    END IF;
    PERFORM pg_catalog.pg_notify('driftmirror_actions',
        pg_catalog.jsonb_build_object(
            'id', NEW.id,
            'group', NEW.group_name,
            'resource', NEW.resource_name,
            'kind', NEW.kind,
            'outcome', NEW.outcome,
            'actor', NEW.actor,
            'at', coalesce(NEW.finished_at, NEW.started_at))::text);
    IF coalesce(pg_catalog.current_setting('driftmirror.notify_webhook_url', true), '') <> '' THEN
        INSERT INTO driftmirror.notification_outbox (action_id, outcome, payload)
        VALUES (NEW.id, NEW.outcome,
                pg_catalog.jsonb_build_object(
                    'id', NEW.id, 'group', NEW.group_name, 'resource', NEW.resource_name,
                    'kind', NEW.kind, 'outcome', NEW.outcome, 'actor', NEW.actor,
                    'reason', NEW.reason, 'inputs', NEW.inputs,
                    'started_at', NEW.started_at, 'finished_at', NEW.finished_at));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER action_notify
    AFTER INSERT OR UPDATE OF outcome ON driftmirror.action
    FOR EACH ROW EXECUTE FUNCTION driftmirror._notify_action();

-- _notify_due: the queued notifications to send now, oldest first
CREATE FUNCTION driftmirror._notify_due(p_limit integer)
RETURNS TABLE (id bigint, action_id bigint, outcome text, payload text, attempts integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.action_id, o.outcome, o.payload::text, o.attempts
      FROM driftmirror.notification_outbox o
     WHERE o.next_attempt_at <= clock_timestamp()
     ORDER BY o.id
     LIMIT p_limit
$$;

-- _notify_done: record one delivery attempt.  Delivered: removed.  Failed:
-- retried with back-off (1 s doubling, at most 5 minutes); given up after a
-- day, with a WARNING, so that a receiver gone for good cannot grow the
-- queue without end
CREATE FUNCTION driftmirror._notify_done(p_id bigint, p_ok boolean, p_error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o driftmirror.notification_outbox;
BEGIN
    IF p_ok THEN
        DELETE FROM driftmirror.notification_outbox WHERE id = p_id;
        RETURN;
    END IF;
    UPDATE driftmirror.notification_outbox
       SET attempts = attempts + 1,
           next_attempt_at = clock_timestamp()
                             + least(interval '5 minutes', interval '1 second' * power(2, least(attempts, 20))),
           last_error = left(p_error, 1000)
     WHERE id = p_id
    RETURNING * INTO o;
    IF o.created_at < clock_timestamp() - interval '1 day' THEN
        DELETE FROM driftmirror.notification_outbox WHERE id = p_id;
        RAISE WARNING 'driftmirror: notification of action % given up after % attempts over a day: %',
                      o.action_id, o.attempts, o.last_error;
    END IF;
END
$$;
