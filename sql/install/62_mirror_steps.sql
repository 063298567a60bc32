-- 62_mirror_steps.sql: the mirror state machine's side that decides: state
-- changes (_mirror_set_state), which mirrors of a group have work
-- (_mirror_due), and the next remote action of a mirror (_mirror_next),
-- recorded as pending before the worker runs it.
--
-- The mirror catalog and the worker protocol: 60_mirror_catalog.sql; the
-- recording of an action's outcome: 63_mirror_status.sql and
-- 64_mirror_outcome.sql.

-- ---- the state machine ----

-- _mirror_set_state: change state and log the transition
CREATE OR REPLACE FUNCTION driftmirror._mirror_set_state(m driftmirror.mirror, p_state text, p_reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.state = p_state THEN
        UPDATE driftmirror.mirror SET state_reason = p_reason WHERE id = m.id;
        RETURN;
    END IF;
    UPDATE driftmirror.mirror
       SET state = p_state, state_reason = p_reason, state_changed_at = now(),
           synced_at = CASE WHEN p_state = 'mirroring' THEN coalesce(synced_at, now()) ELSE synced_at END
     WHERE id = m.id;
    PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_' || p_state, p_reason,
                                    jsonb_build_object('from', m.state, 'to', p_state));
END
$$;

-- _mirror_due: the mirrors of a group the worker has work for
CREATE OR REPLACE FUNCTION driftmirror._mirror_due(p_group_id bigint)
RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id FROM driftmirror.mirror
     WHERE group_id = p_group_id AND state <> 'failed'
       AND (retry_at IS NULL OR retry_at <= clock_timestamp())
     ORDER BY id
$$;

-- _actuator_token_file: the token file an actuator request of mirror m
-- uses: the one its resource names now (none once the option is removed),
-- or, once the resource is gone, the one recorded with the mirror
CREATE OR REPLACE FUNCTION driftmirror._actuator_token_file(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.id IS NULL THEN m.token_file ELSE r.options ->> 'bearer_token_file' END
      FROM (SELECT 1) one LEFT JOIN driftmirror.resource r ON r.id = m.resource_id
$$;

-- _mirror_next: the next remote action of a mirror in this step, recorded as
-- pending before it is returned; no row when there is nothing to do now.
-- node_session is true for every action: the worker's sessions pass the fence.
-- A postgres action has conninfo and sql; an HTTP actuator action (kinds
-- cache, app, web, service) has the http_* columns instead.  Status reads
-- (status_primary, status_mirror) also have probe_sql: the latency probe
-- the worker times on the same connection after the status query.
CREATE OR REPLACE FUNCTION driftmirror._mirror_next(p_mirror_id bigint, p_step_started timestamptz)
RETURNS TABLE (action text, conninfo text, label text, sql text,
               http_method text, http_url text, http_body text, http_key text,
               http_token_file text, http_timeout_ms integer, probe_sql text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m       driftmirror.mirror;
    plabel  text;
    mlabel  text;
    eff     jsonb;
    base_url text;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id FOR UPDATE;
    IF NOT FOUND OR m.state = 'failed' THEN
        RETURN;
    END IF;

    IF m.kind <> 'postgres' THEN
        -- HTTP actuator: a failed request waits for its back-off
        IF m.retry_at IS NOT NULL AND m.retry_at > clock_timestamp() THEN
            RETURN;
        END IF;
        eff := driftmirror._effective_options('mirror', m.options);
        label := format('%s/%s actuator', m.group_name, m.resource_name);
        http_timeout_ms := (extract(epoch FROM driftmirror._opt_interval(eff -> 'actuator_timeout')) * 1000)::integer;
        -- the token file named by the resource now (it may have been changed)
        http_token_file := driftmirror._actuator_token_file(m);
        base_url := rtrim(m.primary_endpoint, '/') || '/mirrors';
        IF m.state = 'creating' THEN
            action := 'actuator_create';
            http_method := 'POST';
            http_url := base_url;
            http_body := jsonb_build_object('group', m.group_name, 'resource', m.resource_name,
                                            'kind', m.kind, 'mirror', m.actuator_name,
                                            'action', 'create', 'endpoint', m.mirror_endpoint,
                                            'options', coalesce(eff -> 'actuator_options', '{}'))::text;
            http_key := format('dm-%s-create-%s', m.actuator_key, m.actuator_generation);
            UPDATE driftmirror.mirror
               SET pending_action = action, pending_since = clock_timestamp(),
                   actuator_contacted = true, token_file = http_token_file
             WHERE id = m.id;
            RETURN NEXT;
            RETURN;
        END IF;
        -- provisioning, mirroring: one status poll per step, none while the
        -- mirror is being promoted (70_promotion_steps.sql, 72_promotion_actuator.sql:
        -- an answer read before the switch must not land after it); the
        -- poll's start is kept in pending_since for _mirror_http_done
        IF (m.mirror_checked_at IS NULL OR m.mirror_checked_at < p_step_started)
           AND NOT EXISTS (SELECT FROM driftmirror.promotion p
                            WHERE p.mirror_id = m.id
                              AND NOT driftmirror._promotion_is_final(p.state)) THEN
            action := 'actuator_status';
            http_method := 'GET';
            http_url := base_url || '/' || m.actuator_name;
            UPDATE driftmirror.mirror SET token_file = http_token_file, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
        END IF;
        RETURN;
    END IF;

    plabel := format('%s/%s primary', m.group_name, m.resource_name);
    mlabel := format('%s/%s mirror', m.group_name, m.resource_name);

    IF m.state = 'creating' THEN
        -- the fence comes first, so that no client writes into the mirror
        -- from the moment it starts receiving data
        action := CASE m.step
                  WHEN 'start' THEN CASE WHEN m.fence THEN 'fence' ELSE 'publication' END
                  WHEN 'fence' THEN 'publication'
                  WHEN 'publication' THEN 'slot'
                  WHEN 'slot' THEN 'subscription'
                  END;
        IF action IS NULL THEN
            PERFORM driftmirror._mirror_set_state(m, 'syncing', 'initial copy running');
            m.state := 'syncing';
        ELSE
            CASE action
            WHEN 'publication' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_pub_sql(m.publication_name);
            WHEN 'slot' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_slot_sql(m.slot_name);
            WHEN 'subscription' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_sub_sql(m.subscription_name, m.publisher_endpoint,
                                                   m.publication_name, m.slot_name, m.copy_data);
            WHEN 'fence' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := $q$SELECT driftmirror_node.fence_set('mirror')$q$;
            END CASE;
            UPDATE driftmirror.mirror SET pending_action = action, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    -- syncing / mirroring: read both sides once per step, each with the
    -- same latency probe
    IF m.primary_checked_at IS NULL OR m.primary_checked_at < p_step_started THEN
        action := 'status_primary'; conninfo := m.primary_endpoint; label := plabel;
        sql := driftmirror._mirror_primary_status_sql(m);
        probe_sql := driftmirror._mirror_probe_sql(m);
        RETURN NEXT;
        RETURN;
    END IF;
    IF m.mirror_checked_at IS NULL OR m.mirror_checked_at < p_step_started THEN
        action := 'status_mirror'; conninfo := m.mirror_endpoint; label := mlabel;
        sql := driftmirror._mirror_mirror_status_sql(m);
        probe_sql := driftmirror._mirror_probe_sql(m);
        RETURN NEXT;
        RETURN;
    END IF;

    -- two-way: the way back is made once the initial copy is done, so that
    -- copied rows are never decoded on the mirror
    IF m.state = 'syncing' AND m.two_way AND m.tables_ready = m.tables_total THEN
        action := CASE m.step
                  WHEN 'subscription' THEN 'rev_publication'
                  WHEN 'rev_publication' THEN 'rev_slot'
                  WHEN 'rev_slot' THEN 'rev_subscription'
                  END;
        IF action IS NOT NULL THEN
            CASE action
            WHEN 'rev_publication' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_pub_sql(m.rev_publication_name);
            WHEN 'rev_slot' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_slot_sql(m.rev_slot_name);
            WHEN 'rev_subscription' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_sub_sql(m.rev_subscription_name, m.mirror_endpoint,
                                                   m.rev_publication_name, m.rev_slot_name, false);
            END CASE;
            UPDATE driftmirror.mirror SET pending_action = action, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
        END IF;
    END IF;
END
$$;
