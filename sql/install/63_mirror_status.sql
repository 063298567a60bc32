-- 63_mirror_status.sql: what a mirror's status reads bring back: the
-- figures stored in the mirror row and in the metric store, the latency
-- samples and the mirror/primary latency ratio (_mirror_latency), and the
-- reset of samples when an endpoint changes.
--
-- The mirror catalog and the worker protocol: 60_mirror_catalog.sql.

-- _mirror_store_metrics: record mirror figures as metrics of the primary
-- resource in the metric store (55_metric_collectors.sql), through the collectors'
-- own path (_store_samples), in the caller's transaction: the one that
-- records the mirror's state.  p_values: {"metric name": number, ...};
-- nulls and non-finite values are skipped.  Does nothing when the metric
-- store is absent.
-- _mirror_json_float8: a JSON number as float8, NULL for anything else and
-- for numbers beyond a double (an actuator answering 1e400 must not make
-- the recording of its mirror fail: a plain ::float8 cast raises)
CREATE OR REPLACE FUNCTION driftmirror._mirror_json_float8(p_value jsonb)
RETURNS float8
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(p_value) = 'number'
                     AND abs((p_value #>> '{}')::numeric) <= 1e300
                THEN (p_value #>> '{}')::float8 END
$$;

CREATE OR REPLACE FUNCTION driftmirror._mirror_store_metrics(p_resource_id bigint, p_values jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts   timestamptz[];
    rids bigint[];
    mids smallint[];
    vals float8[];
BEGIN
    IF to_regprocedure('driftmirror._store_samples(timestamp with time zone[], bigint[], smallint[], double precision[])') IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(clock_timestamp()), array_agg(p_resource_id), array_agg(d.id),
           array_agg(driftmirror._mirror_json_float8(v.value))
      INTO ts, rids, mids, vals
      FROM jsonb_each(p_values) v
      JOIN driftmirror.metric_def d ON d.name = v.key
     WHERE driftmirror._mirror_json_float8(v.value) IS NOT NULL;
    IF ts IS NOT NULL THEN
        PERFORM driftmirror._store_samples(ts, rids, mids, vals);
    END IF;
END
$$;

-- _mirror_latency: the latency of a mirror against its primary over the
-- last p_window: the median of each node's samples (metrics
-- mirror.primary_latency_ms and mirror.mirror_latency_ms of the primary
-- resource, taken since latency_since), and their ratio mirror/primary with
-- both medians floored at 1 ms, so that sub-millisecond noise cannot make a
-- large ratio (two nodes both under 1 ms have ratio 1).  ratio is NULL
-- while either node has no sample in the window.  For auto-promotion (over
-- auto_promote_window) and any other gate that compares the two nodes.
CREATE OR REPLACE FUNCTION driftmirror._mirror_latency(p_mirror_id bigint, p_window interval)
RETURNS TABLE (primary_ms double precision, mirror_ms double precision, ratio double precision,
               primary_samples integer, mirror_samples integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    floor_ms constant double precision := 1.0;
    rid   bigint;
    since timestamptz;
    pid   smallint := (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = 'mirror.primary_latency_ms');
    mid   smallint := (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = 'mirror.mirror_latency_ms');
BEGIN
    SELECT m.resource_id, greatest(m.latency_since, clock_timestamp() - p_window)
      INTO rid, since
      FROM driftmirror.mirror m WHERE m.id = p_mirror_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x.value) FILTER (WHERE x.metric_id = pid),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY x.value) FILTER (WHERE x.metric_id = mid),
           count(*) FILTER (WHERE x.metric_id = pid),
           count(*) FILTER (WHERE x.metric_id = mid)
      INTO primary_ms, mirror_ms, primary_samples, mirror_samples
      FROM driftmirror.metric x
     WHERE x.resource_id = rid AND x.metric_id IN (pid, mid) AND x.ts >= since;
    IF primary_ms IS NOT NULL AND mirror_ms IS NOT NULL THEN
        ratio := greatest(mirror_ms, floor_ms) / greatest(primary_ms, floor_ms);
    END IF;
    RETURN NEXT;
END
$$;

-- _mirror_record_latency: record a node's latency sample (p_latency_ms, from
-- status_primary or status_mirror; NULL when none was taken) in the mirror
-- row and as a metric, a failed probe in latency_error ("primary: ..." or
-- "mirror: ...", until that node gives a sample), and, after the mirror's
-- read (the second of a step), refresh the ratio the row shows (over the
-- group's auto_promote_window).  A sample whose read began before
-- latency_since (p_read_started: an endpoint changed meanwhile, as a
-- promotion's flip does) may describe the other node and is dropped.
-- Called by _mirror_done after _mirror_record_status, in the same
-- transaction.
CREATE OR REPLACE FUNCTION driftmirror._mirror_record_latency(p_mirror_id bigint, p_action text,
                                                   p_latency_ms double precision, p_probe_error text,
                                                   p_read_started timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m    driftmirror.mirror;
    side text := CASE p_action WHEN 'status_primary' THEN 'primary' ELSE 'mirror' END;
    win  interval;
    l    record;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id;
    IF NOT FOUND OR m.kind <> 'postgres' OR p_read_started < m.latency_since THEN
        RETURN;
    END IF;
    IF p_latency_ms >= 0 AND p_latency_ms < 'Infinity'::float8 THEN
        UPDATE driftmirror.mirror
           SET primary_latency_ms = CASE WHEN side = 'primary' THEN p_latency_ms ELSE primary_latency_ms END,
               mirror_latency_ms = CASE WHEN side = 'mirror' THEN p_latency_ms ELSE mirror_latency_ms END,
               latency_error = CASE WHEN starts_with(latency_error, side || ':') THEN NULL ELSE latency_error END
         WHERE id = m.id;
        PERFORM driftmirror._mirror_store_metrics(m.resource_id,
            jsonb_build_object(format('mirror.%s_latency_ms', side), p_latency_ms));
    ELSIF p_probe_error IS NOT NULL THEN
        UPDATE driftmirror.mirror
           SET latency_error = format('%s: %s', side, left(p_probe_error, 500))
         WHERE id = m.id;
    END IF;
    IF side = 'primary' AND m.latency_ratio IS NOT NULL THEN
        RETURN;
    END IF;
    win := driftmirror._opt_interval(driftmirror._effective_options('group',
               (SELECT g.options FROM driftmirror.resource_group g WHERE g.id = m.group_id))
           -> 'auto_promote_window');
    SELECT * INTO l FROM driftmirror._mirror_latency(m.id, win);
    UPDATE driftmirror.mirror
       SET latency_ratio = l.ratio,
           primary_latency_median_ms = l.primary_ms,
           mirror_latency_median_ms = l.mirror_ms,
           latency_samples = least(l.primary_samples, l.mirror_samples)
     WHERE id = m.id;
END
$$;

-- _mirror_latency_reset: BEFORE UPDATE trigger on mirror: when an endpoint
-- changes (a promotion swaps them), earlier latency samples describe other
-- nodes: start afresh
CREATE OR REPLACE FUNCTION driftmirror._mirror_latency_reset()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.latency_since := clock_timestamp();
    NEW.primary_latency_ms := NULL;
    NEW.mirror_latency_ms := NULL;
    NEW.latency_ratio := NULL;
    NEW.primary_latency_median_ms := NULL;
    NEW.mirror_latency_median_ms := NULL;
    NEW.latency_samples := NULL;
    NEW.latency_error := NULL;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER mirror_latency_reset BEFORE UPDATE OF primary_endpoint, mirror_endpoint
    ON driftmirror.mirror
    FOR EACH ROW
    WHEN (OLD.primary_endpoint IS DISTINCT FROM NEW.primary_endpoint
          OR OLD.mirror_endpoint IS DISTINCT FROM NEW.mirror_endpoint)
    EXECUTE FUNCTION driftmirror._mirror_latency_reset();

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
