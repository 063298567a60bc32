-- 65_mirror_cleanup.sql: the queue of remote drops left by a deleted mirror
-- (table mirror_cleanup, 60_mirror_catalog.sql): the trigger that fills it,
-- the drop statements, and what the worker asks (_cleanup_due) and
-- records (_cleanup_done).

-- ---- cleanup queue ----

-- _mirror_enqueue_cleanup: BEFORE DELETE trigger on mirror: queue the drop
-- of every object the mirror may have created, on every node
CREATE OR REPLACE FUNCTION driftmirror._mirror_enqueue_cleanup()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror := OLD;
BEGIN
    IF m.kind = 'postgres' THEN
        INSERT INTO driftmirror.mirror_cleanup
            (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
        VALUES (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                'subscription', m.subscription_name, 1),
               (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                'slot', m.slot_name, 2),
               (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                'publication', m.publication_name, 3);
        IF m.two_way THEN
            INSERT INTO driftmirror.mirror_cleanup
                (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
            VALUES (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                    'subscription', m.rev_subscription_name, 1),
                   (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'slot', m.rev_slot_name, 2),
                   (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'publication', m.rev_publication_name, 3);
        END IF;
        IF m.fence THEN
            INSERT INTO driftmirror.mirror_cleanup
                (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
            VALUES (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'fence', NULL, 4);
        END IF;
    ELSIF m.actuator_contacted THEN
        -- an HTTP actuator was asked to create it: ask it to delete it
        INSERT INTO driftmirror.mirror_cleanup
            (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority,
             idempotency_key, token_file, timeout_ms)
        VALUES (m.group_name, m.resource_name, m.id, 'actuator', m.primary_endpoint,
                'actuator_mirror', m.actuator_name, 1, format('dm-%s-drop', m.actuator_key),
                CASE WHEN EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = m.resource_id)
                     THEN (SELECT r.options ->> 'bearer_token_file' FROM driftmirror.resource r
                            WHERE r.id = m.resource_id)
                     ELSE m.token_file END,
                (extract(epoch FROM driftmirror._opt_interval(
                    driftmirror._effective_options('mirror', m.options) -> 'actuator_timeout')) * 1000)::integer);
    END IF;
    PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_dropped',
        CASE WHEN m.kind = 'postgres' THEN 'mirror removed; dropping its replication objects on every node'
             WHEN m.actuator_contacted THEN 'mirror removed; asking the actuator to delete it'
             ELSE 'mirror removed before the actuator was asked to create it' END,
        jsonb_build_object('state', m.state, 'two_way', m.two_way));
    RETURN OLD;
END
$$;

CREATE OR REPLACE TRIGGER mirror_cleanup BEFORE DELETE ON driftmirror.mirror
    FOR EACH ROW EXECUTE FUNCTION driftmirror._mirror_enqueue_cleanup();

-- _cleanup_sql: the idempotent remote statement of one cleanup row
CREATE OR REPLACE FUNCTION driftmirror._cleanup_sql(c driftmirror.mirror_cleanup)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE c.what
    WHEN 'subscription' THEN format($f$DO $dm$ BEGIN
IF EXISTS (SELECT FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
            WHERE s.subname OPERATOR(pg_catalog.=) %L AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) THEN
  ALTER SUBSCRIPTION %I DISABLE;
  ALTER SUBSCRIPTION %I SET (slot_name = NONE);
  DROP SUBSCRIPTION %I;
END IF; END $dm$ $f$, c.object_name, c.object_name, c.object_name, c.object_name)
    WHEN 'slot' THEN format($f$DO $dm$ DECLARE p integer; BEGIN
FOR i IN 1..50 LOOP
  SELECT active_pid INTO p FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %L;
  EXIT WHEN p IS NULL;
  PERFORM pg_catalog.pg_terminate_backend(p);
  PERFORM pg_catalog.pg_sleep(0.1);
END LOOP;
IF EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %L) THEN
  PERFORM pg_catalog.pg_drop_replication_slot(%L);
END IF; END $dm$ $f$, c.object_name, c.object_name, c.object_name)
    WHEN 'publication' THEN format('DROP PUBLICATION IF EXISTS %I', c.object_name)
    WHEN 'fence' THEN $f$SELECT driftmirror_node.fence_clear()$f$
    END                         -- actuator_mirror: an HTTP DELETE, no SQL
$$;

-- _cleanup_due: cleanups whose next attempt is due, in dependency order
-- (subscriptions before the slots they use, publications last).  A
-- postgres row has conninfo and sql; an actuator row the http_* columns.
CREATE OR REPLACE FUNCTION driftmirror._cleanup_due()
RETURNS TABLE (id bigint, conninfo text, label text, sql text,
               http_method text, http_url text, http_body text, http_key text,
               http_token_file text, http_timeout_ms integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id,
           CASE WHEN c.what <> 'actuator_mirror' THEN c.endpoint END,
           format('%s/%s %s', c.group_name, c.resource_name, c.node),
           driftmirror._cleanup_sql(c),
           CASE WHEN c.what = 'actuator_mirror' THEN 'DELETE' END,
           CASE WHEN c.what = 'actuator_mirror'
                THEN rtrim(c.endpoint, '/') || '/mirrors/' || c.object_name END,
           NULL::text,
           c.idempotency_key, c.token_file, c.timeout_ms
      FROM driftmirror.mirror_cleanup c
     WHERE c.next_attempt_at <= clock_timestamp()
     ORDER BY c.priority, c.id
     LIMIT 100
$$;

-- _cleanup_done: a cleanup succeeded (row removed) or failed (back-off).
-- For an actuator row p_ok means an HTTP answer arrived: 2xx, 404 and 410
-- (gone already) are success, anything else a failure.
CREATE OR REPLACE FUNCTION driftmirror._cleanup_done(p_id bigint, p_ok boolean, p_sqlstate text, p_error text,
                                          p_detail text DEFAULT NULL, p_status integer DEFAULT NULL,
                                          p_body text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c driftmirror.mirror_cleanup;
BEGIN
    SELECT * INTO c FROM driftmirror.mirror_cleanup x WHERE x.id = p_id;
    IF p_ok AND c.what = 'actuator_mirror'
       AND NOT (p_status BETWEEN 200 AND 299 OR p_status IN (404, 410)) THEN
        p_ok := false;
        p_sqlstate := '58000';
        p_error := format('the actuator answered HTTP %s to DELETE /mirrors/%s', p_status, c.object_name);
        p_detail := left(p_body, 500);
    END IF;
    IF p_ok THEN
        DELETE FROM driftmirror.mirror_cleanup WHERE id = p_id RETURNING * INTO c;
        IF FOUND AND c.attempts > 0 THEN
            PERFORM driftmirror._log_action(c.group_name, c.resource_name, 'mirror_cleanup',
                format('dropped %s %s on the %s after %s failed attempt(s)',
                       c.what, coalesce(c.object_name, ''), c.node, c.attempts));
        END IF;
        RETURN;
    END IF;
    UPDATE driftmirror.mirror_cleanup
       SET attempts = attempts + 1,
           next_attempt_at = clock_timestamp()
                             + least(make_interval(secs => power(2, least(attempts, 6))), interval '60 seconds'),
           last_error = p_error, last_error_detail = p_detail, last_error_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO c;
    IF FOUND AND c.attempts = 1 THEN
        PERFORM driftmirror._log_action(c.group_name, c.resource_name, 'mirror_cleanup',
            format('could not drop %s %s on the %s, will retry: %s',
                   c.what, coalesce(c.object_name, ''), c.node, p_error),
            jsonb_build_object('sqlstate', p_sqlstate), 'pending');
    END IF;
END
$$;
