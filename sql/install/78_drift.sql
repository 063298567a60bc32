-- 78_drift.sql: drift of each mirror from its primary, computed, stored,
-- forecast over the group's lead_time and acted on before it breaches
-- drift_threshold (the worker's "drift" phase, between the mirror status
-- and auto-promotion; see docs/predictive-scaling.md#drift).
--
-- Each group step whose mode is not 'off', for every postgres mirror of the
-- group, _drift_step:
--   1. computes three components, each divided by the group's own limit so
--      that 1.0 means "at the limit" (_drift_components, pure):
--        drift.lag          lag_seconds / auto_promote_max_lag_seconds
--        drift.latency      (latency ratio - 1) / (auto_promote_max_latency_ratio - 1),
--                           the ratio of the medians over auto_promote_window,
--                           as auto-promotion measures it (a short window
--                           would make the score, and the log, flap)
--        drift.apply_errors new apply + sync errors per minute since the
--                           last step (one error a minute = 1.0)
--        drift.error_rate   failed transactions per transaction of the
--                           mirror's database minus the primary's, over
--                           auto_promote_window, times 100 (one more failed
--                           transaction in a hundred than on the primary =
--                           1.0): errors normalised by the traffic each node
--                           serves (status reads store each node's
--                           pg_stat_database counters as mirror.*_xacts and
--                           mirror.*_rollbacks, 63_mirror_status.sql; known once
--                           both nodes served 20 transactions in the window)
--      and drift.score = the largest of them, and stores the five in the
--      metric store under the mirror's resource;
--   2. forecasts drift.score over lead_time (dm_forecast, method 'hw', on
--      the last 60 stored scores; needs 30: on fewer, hw's choice of trend
--      flips from one step to the next) and takes the largest 95 % upper
--      bound;
--   3. decides (_drift_decision, pure): 'breach' when the score is at or over
--      drift_threshold (same unit as drift.score), 'forecast_breach' when
--      the upper bound is, else 'ok'; once over, a mirror is 'ok' again only
--      when both are under 0.8 x drift_threshold.  In mode forecast_and_scale a breach
--      or forecast breach holds auto-promotion of the mirror and the next
--      step of a running shift plan; forecast_only records the decision
--      only.  Every change of decision is logged to the action log (kind
--      'drift') with its inputs.
--
-- This file creates only new objects, so the update script lists it
-- (sql/upgrade/0.1.0--0.2.0/84_drift.include).

INSERT INTO driftmirror.metric_def (name, unit, description, builtin) VALUES
    ('drift.lag', 'ratio', 'lag of a mirror over the group''s auto_promote_max_lag_seconds (1 = at the limit)', true),
    ('drift.latency', 'ratio', 'latency ratio of a mirror to its primary, minus 1, over auto_promote_max_latency_ratio minus 1 (1 = at the limit)', true),
    ('drift.apply_errors', 'ratio', 'new apply and sync errors of a mirror per minute since the last step', true),
    ('drift.error_rate', 'ratio', 'failed transactions per transaction of the mirror minus the primary''s, over auto_promote_window, times 100 (1 = one more in a hundred)', true),
    ('drift.score', 'ratio', 'drift of a mirror from its primary: the largest of drift.lag, drift.latency, drift.apply_errors and drift.error_rate; compared with drift_threshold', true),
    ('mirror.primary_xacts', 'transactions', 'transactions (commits and rollbacks) of the primary''s database so far (pg_stat_database, cumulative)', true),
    ('mirror.primary_rollbacks', 'transactions', 'rolled back transactions of the primary''s database so far (pg_stat_database, cumulative)', true),
    ('mirror.mirror_xacts', 'transactions', 'transactions (commits and rollbacks) of the mirror''s database so far (pg_stat_database, cumulative; the apply worker''s count too)', true),
    ('mirror.mirror_rollbacks', 'transactions', 'rolled back transactions of the mirror''s database so far (pg_stat_database, cumulative)', true);

-- drift_state: the last drift decision of each mirror
CREATE TABLE driftmirror.drift_state (
    mirror_id   bigint PRIMARY KEY REFERENCES driftmirror.mirror (id) ON DELETE CASCADE,
    decision    text NOT NULL CHECK (decision IN ('ok', 'forecast_breach', 'breach')),
    held        boolean NOT NULL,
    score       double precision,
    upper       double precision,
    threshold   double precision NOT NULL,
    errors      bigint,
    reason      text NOT NULL,
    checked_at  timestamptz NOT NULL
);
COMMENT ON TABLE driftmirror.drift_state IS
    'Drift of each mirror from its primary: the last decision, and whether it holds auto-promotion and shift plans';

-- _drift_components: the normalised components and the score (pure; NULL
-- inputs give a NULL component, the score is the largest known one).
-- The traffic inputs are the transactions and rollbacks each node's
-- database served over the window; the error rate needs 20 transactions
-- on each.
CREATE FUNCTION driftmirror._drift_components(lag_seconds double precision, max_lag_seconds double precision,
                                              latency_ratio double precision, max_latency_ratio double precision,
                                              new_errors bigint, elapsed_seconds double precision,
                                              primary_xacts double precision DEFAULT NULL,
                                              primary_rollbacks double precision DEFAULT NULL,
                                              mirror_xacts double precision DEFAULT NULL,
                                              mirror_rollbacks double precision DEFAULT NULL,
                                              OUT lag double precision, OUT latency double precision,
                                              OUT apply_errors double precision, OUT error_rate double precision,
                                              OUT score double precision)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.lag, c.latency, c.apply_errors, c.error_rate,
           greatest(c.lag, c.latency, c.apply_errors, c.error_rate)
      FROM (SELECT CASE WHEN lag_seconds IS NOT NULL
                        THEN greatest(lag_seconds, 0) / greatest(max_lag_seconds, 1e-3) END AS lag,
                   CASE WHEN latency_ratio IS NOT NULL
                        THEN greatest(latency_ratio - 1, 0) / greatest(max_latency_ratio - 1, 1e-3) END AS latency,
                   CASE WHEN elapsed_seconds > 0
                        THEN greatest(new_errors, 0) * 60.0 / elapsed_seconds END AS apply_errors,
                   CASE WHEN primary_xacts >= 20 AND mirror_xacts >= 20
                        THEN greatest(least(greatest(mirror_rollbacks, 0), mirror_xacts) / mirror_xacts
                                      - least(greatest(primary_rollbacks, 0), primary_xacts) / primary_xacts,
                                      0) * 100 END AS error_rate) c
$$;

-- _drift_traffic: what each node's database served over the window, from
-- the counters the status reads store (the last sample minus the first
-- one since p_since, of each counter: 0 with a single sample); NULL for a
-- counter without a sample, or that went down (statistics reset)
CREATE FUNCTION driftmirror._drift_traffic(p_resource_id bigint, p_since timestamptz,
                                           OUT primary_xacts double precision,
                                           OUT primary_rollbacks double precision,
                                           OUT mirror_xacts double precision,
                                           OUT mirror_rollbacks double precision)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- plpgsql, not sql: the worker's session keeps the plan (planning the
    -- eight lookups at every call cost more than running them)
    SELECT max(x.delta) FILTER (WHERE x.name = 'mirror.primary_xacts'),
           max(x.delta) FILTER (WHERE x.name = 'mirror.primary_rollbacks'),
           max(x.delta) FILTER (WHERE x.name = 'mirror.mirror_xacts'),
           max(x.delta) FILTER (WHERE x.name = 'mirror.mirror_rollbacks')
      INTO primary_xacts, primary_rollbacks, mirror_xacts, mirror_rollbacks
      FROM (SELECT d.name,
                   nullif(greatest(
                       (SELECT y.value FROM driftmirror.metric y
                         WHERE y.resource_id = p_resource_id AND y.metric_id = d.id AND y.ts >= p_since
                         ORDER BY y.ts DESC LIMIT 1)
                     - (SELECT y.value FROM driftmirror.metric y
                         WHERE y.resource_id = p_resource_id AND y.metric_id = d.id AND y.ts >= p_since
                         ORDER BY y.ts LIMIT 1), -1), -1) AS delta
              FROM driftmirror.metric_def d
             WHERE d.name IN ('mirror.primary_xacts', 'mirror.primary_rollbacks',
                              'mirror.mirror_xacts', 'mirror.mirror_rollbacks')) x;
END
$$;

-- _drift_decision: compare the score now and its forecast upper bound with
-- the threshold (pure); held only in mode forecast_and_scale.  A mirror that
-- was over (p_was_over) stays over until both are under 0.8 x the threshold:
-- an upper bound that hovers at the threshold must not hold and release on
-- alternate steps.
CREATE FUNCTION driftmirror._drift_decision(score double precision, upper double precision,
                                            threshold double precision, mode text,
                                            was_over boolean DEFAULT false,
                                            OUT decision text, OUT held boolean, OUT reason text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.decision, d.decision <> 'ok' AND mode = 'forecast_and_scale',
           CASE
               WHEN d.decision = 'breach' THEN format('drift score %s is at or over drift_threshold %s',
                                                      round(score::numeric, 3), threshold)
               WHEN d.decision = 'forecast_breach' AND upper >= threshold
                   THEN format('drift score %s is forecast to reach %s (95%% upper bound) within the lead time, at or over drift_threshold %s',
                               round(score::numeric, 3), round(upper::numeric, 3), threshold)
               WHEN d.decision = 'forecast_breach'
                   THEN format('drift score %s, forecast upper bound %s: not yet under 0.8 x drift_threshold %s, where the hold ends',
                               round(score::numeric, 3), coalesce(round(upper::numeric, 3)::text, 'unknown'), threshold)
               ELSE format('drift score %s%s under drift_threshold %s', coalesce(round(score::numeric, 3)::text, 'unknown'),
                           CASE WHEN upper IS NULL THEN ' (no forecast yet)'
                                ELSE format(', forecast upper bound %s', round(upper::numeric, 3)) END,
                           threshold)
           END
           || CASE WHEN d.decision <> 'ok' AND mode = 'forecast_only'
                   THEN ' (mode forecast_only: not acted on)' ELSE '' END
      FROM (SELECT CASE WHEN score >= threshold THEN 'breach'
                        WHEN upper >= threshold THEN 'forecast_breach'
                        WHEN was_over AND (score >= 0.8 * threshold OR upper >= 0.8 * threshold)
                            THEN 'forecast_breach'
                        ELSE 'ok' END AS decision) d
$$;

-- _drift_hold: why drift holds this mirror (NULL when it does not)
CREATE FUNCTION driftmirror._drift_hold(p_mirror_id bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'drift: ' || s.reason FROM driftmirror.drift_state s
     WHERE s.mirror_id = p_mirror_id AND s.held
$$;

-- _drift_step: the drift phase of one group (see the top of this file)
CREATE FUNCTION driftmirror._drift_step(p_gid bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       record;
    mode    text;
    thr     double precision;
    iv      interval;
    win     interval;
    k       integer;
    m       driftmirror.mirror;
    st      driftmirror.drift_state;
    lat     record;
    tr      record;
    errs    bigint;
    c       record;
    upper   double precision;
    vals    float8[];
    d       record;
    sid     smallint := (SELECT x.id FROM driftmirror.metric_def x WHERE x.name = 'drift.score');
    t_now   timestamptz := clock_timestamp();
BEGIN
    SELECT x.id, x.name, driftmirror._effective_options('group', x.options) AS eff INTO g
      FROM driftmirror.resource_group x WHERE x.id = p_gid;
    mode := g.eff ->> 'mode';
    IF g.id IS NULL OR mode = 'off' THEN
        DELETE FROM driftmirror.drift_state s
         USING driftmirror.mirror mm WHERE mm.id = s.mirror_id AND mm.group_id = p_gid;
        RETURN;
    END IF;
    thr := (g.eff ->> 'drift_threshold')::double precision;
    iv := driftmirror._opt_interval(g.eff -> 'interval');
    win := driftmirror._opt_interval(g.eff -> 'auto_promote_window');
    k := greatest(1, ceil(extract(epoch FROM driftmirror._opt_interval(g.eff -> 'lead_time'))
                          / extract(epoch FROM iv))::integer);

    FOR m IN SELECT * FROM driftmirror.mirror mm
              WHERE mm.group_id = p_gid AND mm.kind = 'postgres' AND mm.state = 'mirroring'
              ORDER BY mm.id
    LOOP
        SELECT * INTO st FROM driftmirror.drift_state s WHERE s.mirror_id = m.id;
        errs := m.apply_error_count + m.sync_error_count;
        SELECT * INTO lat FROM driftmirror._mirror_latency(m.id, win);
        SELECT * INTO tr FROM driftmirror._drift_traffic(m.resource_id, greatest(t_now - win, m.latency_since));
        c := driftmirror._drift_components(m.lag_seconds, (g.eff ->> 'auto_promote_max_lag_seconds')::double precision,
                                           lat.ratio, (g.eff ->> 'auto_promote_max_latency_ratio')::double precision,
                                           errs - st.errors,
                                           extract(epoch FROM t_now - st.checked_at)::double precision,
                                           tr.primary_xacts, tr.primary_rollbacks,
                                           tr.mirror_xacts, tr.mirror_rollbacks);
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'drift.lag', c.lag, 'drift.latency', c.latency,
            'drift.apply_errors', c.apply_errors, 'drift.error_rate', c.error_rate,
            'drift.score', c.score));

        -- forecast of the score over the lead time, on its recent series
        -- (since the pair last changed roles: latency_since, 60_mirror_catalog.sql)
        SELECT array_agg(x.value ORDER BY x.ts) INTO vals
          FROM (SELECT y.ts, y.value FROM driftmirror.metric y
                 WHERE y.resource_id = m.resource_id AND y.metric_id = sid
                   AND y.ts > t_now - 60 * iv
                   AND y.ts >= m.latency_since
                 ORDER BY y.ts DESC LIMIT 60) x;
        upper := NULL;
        IF cardinality(vals) >= 30 THEN
            -- a forecast that fails (a WARNING in the server log) or is not
            -- finite counts as none: the score alone decides, and the
            -- group's step goes on
            BEGIN
                SELECT max(f.hi95) INTO upper FROM driftmirror.dm_forecast(vals, '{}', k, 'hw') f;
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'driftmirror: drift forecast of resource "%" of group "%" failed: %',
                    m.resource_name, g.name, SQLERRM;
                upper := NULL;
            END;
            IF upper = 'NaN' OR upper IN ('Infinity', '-Infinity') THEN
                upper := NULL;
            END IF;
        END IF;

        d := driftmirror._drift_decision(c.score, upper, thr, mode, coalesce(st.decision, 'ok') <> 'ok');
        INSERT INTO driftmirror.drift_state AS s
            (mirror_id, decision, held, score, upper, threshold, errors, reason, checked_at)
        VALUES (m.id, d.decision, d.held, c.score, upper, thr, errs, d.reason, t_now)
        ON CONFLICT (mirror_id) DO UPDATE
           SET decision = EXCLUDED.decision, held = EXCLUDED.held, score = EXCLUDED.score,
               upper = EXCLUDED.upper, threshold = EXCLUDED.threshold, errors = EXCLUDED.errors,
               reason = EXCLUDED.reason, checked_at = EXCLUDED.checked_at;
        IF d.decision IS DISTINCT FROM coalesce(st.decision, 'ok') OR d.held IS DISTINCT FROM coalesce(st.held, false) THEN
            PERFORM driftmirror._log_action(g.name, m.resource_name, 'drift', d.reason,
                jsonb_build_object('decision', d.decision, 'held', d.held, 'score', c.score,
                                   'lag', c.lag, 'latency', c.latency, 'apply_errors', c.apply_errors,
                                   'error_rate', c.error_rate,
                                   'forecast_upper', upper, 'bound', '95%', 'threshold', thr,
                                   'lead_time', driftmirror._opt_interval(g.eff -> 'lead_time')::text,
                                   'forecast_points', cardinality(vals), 'mode', mode),
                CASE WHEN d.held THEN 'held'
                     WHEN d.decision <> 'ok' THEN 'proposed'
                     ELSE 'released' END);
        END IF;
    END LOOP;
    -- mirrors no longer mirroring: nothing to hold
    DELETE FROM driftmirror.drift_state s
     USING driftmirror.mirror mm
     WHERE mm.id = s.mirror_id AND mm.group_id = p_gid AND mm.state <> 'mirroring';
END
$$;

REVOKE ALL ON FUNCTION driftmirror._drift_components(double precision, double precision, double precision,
                                                     double precision, bigint, double precision,
                                                     double precision, double precision,
                                                     double precision, double precision),
    driftmirror._drift_traffic(bigint, timestamptz),
    driftmirror._drift_decision(double precision, double precision, double precision, text, boolean),
    driftmirror._drift_hold(bigint),
    driftmirror._drift_step(bigint) FROM PUBLIC;
