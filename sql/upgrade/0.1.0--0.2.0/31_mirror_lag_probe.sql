-- 31_mirror_lag_probe.sql: a lag sample taken on the old primary by a status
-- read that overlapped a promotion no longer freezes lag_seconds (it held
-- promotions off through the lag guardrail until the new primary's WAL passed it).
-- _mirror_record_status: store what status_primary / status_mirror read
CREATE OR REPLACE FUNCTION driftmirror._mirror_record_status(m driftmirror.mirror, p_action text, r jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total   integer;
    ready   integer;
    lagsec  double precision;
    probe   pg_lsn := m.lag_probe_lsn;
    probe_at timestamptz := m.lag_probe_at;
    errs    bigint;
    new_conflicts bigint := 0;
BEGIN
    IF p_action = 'status_primary' THEN
        IF NOT (r ->> 'slot_exists')::boolean THEN
            UPDATE driftmirror.mirror
               SET primary_checked_at = clock_timestamp(), lag_bytes = NULL, lag_seconds = NULL,
                   last_error = format('replication slot "%s" is missing on the primary', m.slot_name),
                   last_error_sqlstate = '55000', last_error_at = clock_timestamp()
             WHERE id = m.id;
            RETURN;
        END IF;
        -- lag in seconds: age of the oldest primary position (sampled once
        -- per step) the mirror has not confirmed yet; 0 once it has
        -- confirmed the previous sample (resolution: the group interval).
        -- A sample ahead of the primary's current position was taken on
        -- the other node (a status read that overlapped a promotion's flip):
        -- it would never be confirmed here, so sampling starts again.
        IF probe IS NOT NULL AND (r ->> 'now_lsn')::pg_lsn < probe THEN
            probe := NULL;
        END IF;
        IF probe IS NULL OR (r ->> 'confirmed_lsn')::pg_lsn >= probe THEN
            lagsec := CASE WHEN probe IS NULL THEN NULL ELSE 0 END;
            probe := (r ->> 'now_lsn')::pg_lsn;
            probe_at := clock_timestamp();
        ELSE
            lagsec := extract(epoch FROM clock_timestamp() - probe_at);
        END IF;
        errs := coalesce((r ->> 'rev_apply_errors')::bigint, 0) + coalesce((r ->> 'rev_sync_errors')::bigint, 0);
        IF errs > m.rev_apply_error_count + m.rev_sync_error_count THEN
            new_conflicts := errs - (m.rev_apply_error_count + m.rev_sync_error_count);
        END IF;
        UPDATE driftmirror.mirror
           SET primary_checked_at = clock_timestamp(),
               primary_fence = coalesce(r ->> 'fence', 'none'),
               slot_active = (r ->> 'slot_active')::boolean,
               lag_bytes = greatest((r ->> 'lag_bytes')::bigint, 0),
               lag_seconds = lagsec,
               lag_probe_lsn = probe,
               lag_probe_at = probe_at,
               rev_apply_error_count = coalesce((r ->> 'rev_apply_errors')::bigint, 0),
               rev_sync_error_count = coalesce((r ->> 'rev_sync_errors')::bigint, 0),
               conflicts = conflicts + new_conflicts,
               last_conflict_at = CASE WHEN new_conflicts > 0 THEN clock_timestamp() ELSE last_conflict_at END
         WHERE id = m.id;
        INSERT INTO driftmirror.mirror_sequence AS q (mirror_id, sequence_name, last_value, collected_at)
        SELECT m.id, s.key, (s.value #>> '{}')::bigint, clock_timestamp()
          FROM jsonb_each(r -> 'sequences') s
        ON CONFLICT (mirror_id, sequence_name) DO UPDATE
           SET last_value = excluded.last_value, collected_at = excluded.collected_at;
        DELETE FROM driftmirror.mirror_sequence q
         WHERE q.mirror_id = m.id AND NOT (r -> 'sequences') ? q.sequence_name;
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'mirror.lag_bytes', greatest((r ->> 'lag_bytes')::bigint, 0),
            'mirror.lag_seconds', lagsec,
            'mirror.rev_apply_errors', CASE WHEN m.two_way
                                            THEN coalesce((r ->> 'rev_apply_errors')::bigint, 0) END,
            'mirror.primary_xacts', r -> 'xacts', 'mirror.primary_rollbacks', r -> 'rollbacks'));
        IF new_conflicts > 0 THEN
            PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_conflict',
                format('%s new apply error(s) on the primary''s subscription %s (changes from the mirror); see the primary''s server log',
                       new_conflicts, m.rev_subscription_name),
                jsonb_build_object('apply_errors', r -> 'rev_apply_errors', 'sync_errors', r -> 'rev_sync_errors'),
                'conflict');
        END IF;
        RETURN;
    END IF;

    -- status_mirror
    IF NOT (r ->> 'sub_exists')::boolean THEN
        UPDATE driftmirror.mirror
           SET mirror_checked_at = clock_timestamp(),
               last_error = format('subscription "%s" is missing on the mirror', m.subscription_name),
               last_error_sqlstate = '55000', last_error_at = clock_timestamp()
         WHERE id = m.id;
        RETURN;
    END IF;
    SELECT count(*), count(*) FILTER (WHERE value #>> '{}' = 'ready')
      INTO total, ready FROM jsonb_each(r -> 'tables');
    errs := coalesce((r ->> 'apply_errors')::bigint, 0) + coalesce((r ->> 'sync_errors')::bigint, 0);
    IF errs > m.apply_error_count + m.sync_error_count THEN
        new_conflicts := errs - (m.apply_error_count + m.sync_error_count);
    END IF;
    UPDATE driftmirror.mirror
       SET mirror_checked_at = clock_timestamp(),
           mirror_fence = coalesce(r ->> 'fence', 'none'),
           tables_total = total, tables_ready = ready, tables = r -> 'tables',
           apply_error_count = coalesce((r ->> 'apply_errors')::bigint, 0),
           sync_error_count = coalesce((r ->> 'sync_errors')::bigint, 0),
           conflicts = conflicts + new_conflicts,
           last_conflict_at = CASE WHEN new_conflicts > 0 THEN clock_timestamp() ELSE last_conflict_at END,
           last_error = NULL, last_error_detail = NULL, last_error_sqlstate = NULL
     WHERE id = m.id;
    PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
        'mirror.apply_errors', coalesce((r ->> 'apply_errors')::bigint, 0),
        'mirror.mirror_xacts', r -> 'xacts', 'mirror.mirror_rollbacks', r -> 'rollbacks'));
    IF new_conflicts > 0 THEN
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_conflict',
            format('%s new apply error(s) on the mirror''s subscription %s; see the mirror''s server log',
                   new_conflicts, m.subscription_name),
            jsonb_build_object('apply_errors', r -> 'apply_errors', 'sync_errors', r -> 'sync_errors'),
            'conflict');
    END IF;

    IF m.state = 'syncing' THEN
        IF ready = total AND (NOT m.two_way OR m.step = 'rev_subscription') THEN
            PERFORM driftmirror._mirror_set_state(m, 'mirroring',
                format('initial copy of %s table(s) done; streaming changes', total));
        ELSE
            UPDATE driftmirror.mirror
               SET state_reason = format('initial copy: %s of %s table(s) ready', ready, total)
             WHERE id = m.id;
        END IF;
    ELSIF m.state = 'mirroring' THEN
        UPDATE driftmirror.mirror
           SET state_reason = CASE
                   WHEN NOT (r ->> 'sub_enabled')::boolean THEN 'the subscription on the mirror is disabled'
                   WHEN NOT (r ->> 'worker_running')::boolean OR NOT coalesce(m.slot_active, true)
                       THEN 'the mirror''s apply worker is not connected to the primary'
                   WHEN errs > 0 THEN format('streaming changes; %s apply error(s) so far', errs)
                   ELSE 'streaming changes' END
         WHERE id = m.id;
    END IF;
END
$$;
