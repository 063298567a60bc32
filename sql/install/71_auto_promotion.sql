-- 71_auto_promotion.sql: auto-promotion (table auto_promote_state in
-- 70_promotion_catalog.sql): the worker's check of a group's thresholds,
-- the view dm_auto_promotion and the start of an auto-promotion.
--
-- With the group option auto_promote, the worker promotes a mirror on its
-- own once, for auto_promote_window without interruption: the mirror takes
-- all read traffic (its read route has weight 100: the last step of a
-- blue/green read shift), it is mirroring with fresh status, its lag is
-- within auto_promote_max_lag_bytes and auto_promote_max_lag_seconds, no
-- apply error appeared, and its latency ratio (_mirror_latency over
-- auto_promote_window: median mirror latency / median primary latency,
-- both floored at 1 ms, rounded to 2 decimals) is at most
-- auto_promote_max_latency_ratio.  While no latency sample of both nodes
-- exists the ratio is "not measured yet" and the window does not start.
-- After the promotion the routes send reads to the new primary, so the
-- condition does not hold for the old one: no ping-pong.
--
-- Functions, a view and its comment only, each CREATE OR REPLACE: the update
-- from 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/85_auto_promotion.include).

-- _auto_promote_check: evaluate the thresholds of every mirror of a group
-- (called by the worker each group step); returns the resources to promote
-- now, after logging the decision with its figures in the action log
CREATE OR REPLACE FUNCTION driftmirror._auto_promote_check(p_group_id bigint)
RETURNS TABLE (resource_id bigint, reason text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       driftmirror.resource_group;
    eff     jsonb;
    m       driftmirror.mirror;
    st      driftmirror.auto_promote_state;
    win     interval;
    iv      interval;
    errs    bigint;
    weight  integer;
    fails   text[];
    figures jsonb;
    lat     record;
    ratio   numeric;
    maxratio numeric;
    latency text;
    drift   text;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    eff := driftmirror._effective_options('group', g.options);
    IF NOT coalesce((eff ->> 'auto_promote')::boolean, false) THEN
        DELETE FROM driftmirror.auto_promote_state s
         USING driftmirror.mirror mm WHERE mm.id = s.mirror_id AND mm.group_id = p_group_id;
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM driftmirror.promotion p WHERE p.group_id = p_group_id
                AND NOT driftmirror._promotion_is_final(p.state)) THEN
        RETURN;
    END IF;
    win := driftmirror._opt_interval(eff -> 'auto_promote_window');
    iv := driftmirror._opt_interval(eff -> 'interval');
    maxratio := (eff ->> 'auto_promote_max_latency_ratio')::numeric;

    FOR m IN SELECT * FROM driftmirror.mirror mm
              WHERE mm.group_id = p_group_id AND mm.kind = 'postgres' ORDER BY mm.id
    LOOP
        errs := m.apply_error_count + m.sync_error_count;
        SELECT rt.weight INTO weight FROM driftmirror.route rt
         WHERE rt.resource_id = m.resource_id AND rt.access = 'read' AND rt.endpoint = m.mirror_endpoint;
        SELECT * INTO st FROM driftmirror.auto_promote_state s WHERE s.mirror_id = m.id;
        fails := '{}';
        IF coalesce(weight, 0) < 100 THEN
            fails := fails || format('the mirror takes %s%% of reads, not 100%%', coalesce(weight, 0));
        END IF;
        IF m.state <> 'mirroring' THEN
            fails := fails || format('the mirror is %s', m.state);
        END IF;
        IF greatest(m.primary_checked_at, m.mirror_checked_at) IS NULL
           OR least(m.primary_checked_at, m.mirror_checked_at) < clock_timestamp() - 3 * iv THEN
            fails := fails || 'the mirror''s status is not fresh'::text;
        END IF;
        IF m.lag_bytes IS NULL OR m.lag_bytes > (eff ->> 'auto_promote_max_lag_bytes')::bigint THEN
            fails := fails || format('lag %s bytes exceeds auto_promote_max_lag_bytes %s',
                                     coalesce(m.lag_bytes::text, 'unknown'), eff ->> 'auto_promote_max_lag_bytes');
        END IF;
        IF m.lag_seconds IS NULL OR m.lag_seconds > (eff ->> 'auto_promote_max_lag_seconds')::double precision THEN
            fails := fails || format('lag %s s exceeds auto_promote_max_lag_seconds %s',
                                     coalesce(round(m.lag_seconds::numeric, 3)::text, 'unknown'),
                                     eff ->> 'auto_promote_max_lag_seconds');
        END IF;
        drift := driftmirror._drift_hold(m.id);
        IF drift IS NOT NULL THEN
            fails := fails || drift;
        END IF;
        IF st.holding_since IS NOT NULL AND errs > st.errors_at_start THEN
            fails := fails || format('%s new apply error(s) during the window', errs - st.errors_at_start);
        END IF;
        -- latency: medians of the window's samples, ratio to 2 decimals
        SELECT * INTO lat FROM driftmirror._mirror_latency(m.id, win);
        ratio := round(lat.ratio::numeric, 2);
        latency := format('median %s ms on the mirror, %s ms on the primary',
                          trim_scale(round(lat.mirror_ms::numeric, 3)),
                          trim_scale(round(lat.primary_ms::numeric, 3)));
        IF ratio IS NULL THEN
            fails := fails || format('latency ratio not measured yet (no latency sample of the %s)',
                                     CASE WHEN lat.mirror_ms IS NULL AND lat.primary_ms IS NULL THEN 'mirror and the primary'
                                          WHEN lat.mirror_ms IS NULL THEN 'mirror' ELSE 'primary' END);
        ELSIF ratio > maxratio THEN
            fails := fails || format('latency ratio %s exceeds auto_promote_max_latency_ratio %s (%s)',
                                     trim_scale(ratio), trim_scale(maxratio), latency);
        END IF;
        figures := jsonb_build_object('read_weight', weight, 'lag_bytes', m.lag_bytes,
                                      'lag_seconds', m.lag_seconds, 'apply_errors', errs,
                                      'window', win::text,
                                      'latency_ratio', ratio,
                                      'max_latency_ratio', maxratio,
                                      'primary_latency_ms', round(lat.primary_ms::numeric, 3),
                                      'mirror_latency_ms', round(lat.mirror_ms::numeric, 3),
                                      'primary_latency_samples', lat.primary_samples,
                                      'mirror_latency_samples', lat.mirror_samples);

        IF cardinality(fails) > 0 THEN
            INSERT INTO driftmirror.auto_promote_state AS s (mirror_id, holding_since, errors_at_start, last_reason, checked_at)
            VALUES (m.id, NULL, NULL, array_to_string(fails, '; '), clock_timestamp())
            ON CONFLICT (mirror_id) DO UPDATE
               SET holding_since = NULL, errors_at_start = NULL,
                   last_reason = EXCLUDED.last_reason, checked_at = EXCLUDED.checked_at;
            CONTINUE;
        END IF;
        IF st.holding_since IS NULL THEN
            INSERT INTO driftmirror.auto_promote_state AS s (mirror_id, holding_since, errors_at_start, last_reason, checked_at)
            VALUES (m.id, clock_timestamp(), errs,
                    format('thresholds hold; window started (latency ratio %s)', trim_scale(ratio)),
                    clock_timestamp())
            ON CONFLICT (mirror_id) DO UPDATE
               SET holding_since = EXCLUDED.holding_since, errors_at_start = EXCLUDED.errors_at_start,
                   last_reason = EXCLUDED.last_reason, checked_at = EXCLUDED.checked_at;
            CONTINUE;
        END IF;
        IF clock_timestamp() - st.holding_since < win THEN
            UPDATE driftmirror.auto_promote_state s
               SET last_reason = format('thresholds hold since %s (latency ratio %s)', st.holding_since, trim_scale(ratio)),
                   checked_at = clock_timestamp()
             WHERE s.mirror_id = m.id;
            CONTINUE;
        END IF;

        -- held for the whole window: promote
        UPDATE driftmirror.auto_promote_state s
           SET holding_since = NULL, errors_at_start = NULL,
               last_reason = 'promotion started', checked_at = clock_timestamp()
         WHERE s.mirror_id = m.id;
        resource_id := m.resource_id;
        reason := format('auto-promotion: for %s the mirror took 100%% of reads, lag %s bytes and %s s within %s bytes and %s s, no new apply error, latency ratio %s within %s (%s)',
                         win, m.lag_bytes, round(m.lag_seconds::numeric, 3),
                         eff ->> 'auto_promote_max_lag_bytes', eff ->> 'auto_promote_max_lag_seconds',
                         trim_scale(ratio), trim_scale(maxratio), latency);
        PERFORM driftmirror._log_action(g.name, m.resource_name, 'auto_promote', reason,
                                        figures || jsonb_build_object('holding_since', st.holding_since));
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW driftmirror.dm_auto_promotion AS
SELECT mm.group_name, mm.resource_name, s.holding_since, s.last_reason, s.checked_at
  FROM driftmirror.auto_promote_state s
  JOIN driftmirror.mirror mm ON mm.id = s.mirror_id;
COMMENT ON VIEW driftmirror.dm_auto_promotion IS
    'Auto-promotion: per mirror, since when its thresholds hold, or why they do not';

-- _promotion_start_auto: record an auto-promotion of a resource (its reason
-- is the last auto_promote decision in the action log)
CREATE OR REPLACE FUNCTION driftmirror._promotion_start_auto(p_resource_id bigint, p_pid integer)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT driftmirror._promotion_start(g.name, r.name, '{}', 'auto',
               coalesce((SELECT a.reason FROM driftmirror.action a
                          WHERE a.group_name = g.name AND a.resource_name = r.name
                            AND a.kind = 'auto_promote'
                          ORDER BY a.id DESC LIMIT 1), 'auto-promotion'),
               p_pid)
      FROM driftmirror.resource r JOIN driftmirror.resource_group g ON g.id = r.group_id
     WHERE r.id = p_resource_id
$$;
