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
    RETURN NULL;
END
$$;

CREATE TRIGGER action_notify
    AFTER INSERT OR UPDATE OF outcome ON driftmirror.action
    FOR EACH ROW EXECUTE FUNCTION driftmirror._notify_action();
