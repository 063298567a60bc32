-- 85_drift.sql: drift acts (78_drift.sql, new in 0.2.0, comes from
-- 84_drift.include): auto-promotion is held while a mirror's drift is over
-- drift_threshold now or forecast over lead_time, dm_status says it, and
-- drift_threshold is in the unit of drift.score (default 1 = at the limits).
UPDATE driftmirror.option_def
   SET default_value = '1',
       description = 'drift.score (lag, latency ratio, apply errors and failed transactions per transaction beyond the primary''s of a mirror, each over its limit: 1 = at the limit) at which drift, now or forecast over lead_time, holds auto-promotion and shift plans and scales the mirror''s resource'
 WHERE scope = 'group' AND key = 'drift_threshold';

-- _auto_promote_check: as in sql/install/71_auto_promotion.sql
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

-- dm_status: as in sql/install/80_views.sql
CREATE OR REPLACE VIEW driftmirror.dm_status AS
SELECT g.name AS group_name,
       e.eff ->> 'mode' AS mode,
       CASE
           WHEN w.pid IS NULL OR NOT w.alive THEN 'no_worker'
           WHEN NOT w.enabled THEN 'disabled'
           WHEN s.group_id IS NULL THEN 'pending'
           WHEN s.consecutive_failures > 0 THEN 'failing'
           WHEN s.last_heartbeat < now() - 3 * i.iv - interval '5 seconds' THEN 'stale'
           WHEN ms.failing > 0 THEN 'degraded'
           ELSE s.activity
       END AS state,
       CASE
           WHEN w.pid IS NULL THEN
               'the driftmirror worker has never run here: is driftmirror in shared_preload_libraries and driftmirror.database set to this database?'
           WHEN NOT w.alive THEN
               format('the driftmirror worker has not run since %s', w.last_pass_at)
           WHEN NOT w.enabled THEN 'driftmirror.enabled is off'
           WHEN s.group_id IS NULL THEN 'waiting for the first monitoring step'
           WHEN s.consecutive_failures > 0 THEN
               format('%s consecutive failed step(s); last error: %s',
                      s.consecutive_failures,
                      CASE WHEN adm.admin THEN s.last_error
                           ELSE driftmirror._error_label(s.last_error_sqlstate) END)
           WHEN s.last_heartbeat < now() - 3 * i.iv - interval '5 seconds' THEN
               format('no heartbeat since %s (interval %s)', s.last_heartbeat, i.iv)
           WHEN ms.failing > 0 THEN
               format('%s of %s metric source(s) failing; %s', ms.failing, ms.sources, ms.first_error)
           ELSE coalesce(s.activity_reason, format('monitoring every %s', i.iv))
       END
       || CASE WHEN cl.n > 0
               THEN format('; %s replication object(s) of dropped mirrors still to drop (last error: %s)',
                           cl.n, CASE WHEN cl.last_error IS NULL THEN 'none yet'
                                      WHEN adm.admin THEN cl.last_error
                                      ELSE 'see dm_mirror_cleanups' END)
               ELSE '' END
       -- the group's last promotion failed (e.g. an actuator whose state is
       -- unknown after a timeout): said until a later promotion
       || CASE WHEN lp.state = 'failed'
               THEN format('; promotion %s of resource "%s" failed: %s', lp.id, lp.resource_name,
                           CASE WHEN adm.admin THEN lp.error
                                ELSE driftmirror._error_label(lp.error_sqlstate) END)
               ELSE '' END
       -- drift of a mirror over drift_threshold, now or forecast (78_drift.sql)
       || coalesce('; ' || dr.reasons, '') AS reason,
       (SELECT count(*) FROM driftmirror.resource r WHERE r.group_id = g.id) AS resources,
       i.iv AS "interval",
       s.last_heartbeat,
       s.next_step_at,
       coalesce(s.steps_ok, 0) AS steps_ok,
       coalesce(s.steps_failed, 0) AS steps_failed,
       coalesce(s.consecutive_failures, 0) AS consecutive_failures,
       CASE WHEN adm.admin THEN s.last_error
            ELSE driftmirror._error_label(s.last_error_sqlstate) END AS last_error,
       s.last_error_sqlstate,
       s.last_error_at,
       cl.n AS pending_cleanups
  FROM driftmirror.resource_group g
  -- raw error text for admins, labels for everyone else (25_error_labels.sql)
  CROSS JOIN (SELECT pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') AS admin) adm
  CROSS JOIN LATERAL (SELECT d.defaults || g.options AS eff
                        FROM driftmirror._option_defaults d
                       WHERE d.scope = 'group') e
  CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(e.eff -> 'interval')
                             WHEN 'number' THEN make_interval(secs => (e.eff ->> 'interval')::float8)
                             ELSE (e.eff ->> 'interval')::interval END AS iv) i
  CROSS JOIN LATERAL (SELECT count(*) AS n,
                             (array_agg(c.last_error ORDER BY c.last_error_at DESC NULLS LAST))[1] AS last_error
                        FROM driftmirror.mirror_cleanup c
                       WHERE c.group_name = g.name) AS cl
  LEFT JOIN LATERAL (SELECT p.id, p.resource_name, p.state, p.error, p.error_sqlstate
                       FROM driftmirror.promotion p
                      WHERE p.group_id = g.id
                      ORDER BY p.id DESC LIMIT 1) lp ON true
  LEFT JOIN LATERAL (SELECT string_agg(format('drift of resource "%s": %s', mm.resource_name, ds.reason),
                                        '; ' ORDER BY mm.resource_name) AS reasons
                       FROM driftmirror.drift_state ds
                       JOIN driftmirror.mirror mm ON mm.id = ds.mirror_id
                      WHERE mm.group_id = g.id AND ds.decision <> 'ok') dr ON true
  LEFT JOIN driftmirror.group_state s ON s.group_id = g.id
  LEFT JOIN driftmirror.dm_worker w ON true
  -- metric sources (55_metric_collectors.sql): a failing one degrades the group
  LEFT JOIN LATERAL (
      SELECT count(*) AS sources,
             count(*) FILTER (WHERE mst.consecutive_failures > 0) AS failing,
             (array_agg(format('%s source of resource "%s": %s', src.kind, res.name,
                               CASE WHEN adm.admin THEN mst.last_error ELSE mst.last_error_label END)
                        ORDER BY res.name, src.kind)
                  FILTER (WHERE mst.consecutive_failures > 0))[1] AS first_error
        FROM driftmirror.metric_source src
        JOIN driftmirror.resource res ON res.id = src.resource_id
        LEFT JOIN driftmirror.metric_source_state mst ON mst.source_id = src.id
       WHERE src.group_id = g.id) ms ON true
UNION ALL
-- a dropped group whose mirrors' replication objects are not all dropped yet
SELECT c.group_name, NULL, 'cleanup_pending',
       format('group dropped; %s replication object(s) of its mirrors still to drop (last error: %s)',
              count(*),
              CASE WHEN count(c.last_error) = 0 THEN 'none yet'
                   WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                   THEN (array_agg(c.last_error ORDER BY c.last_error_at DESC NULLS LAST))[1]
                   ELSE 'see dm_mirror_cleanups' END),
       0, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, count(*)
  FROM driftmirror.mirror_cleanup c
 WHERE NOT EXISTS (SELECT FROM driftmirror.resource_group g WHERE g.name = c.group_name)
 GROUP BY c.group_name;
