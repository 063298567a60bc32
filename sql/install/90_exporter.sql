-- 90_exporter.sql: views shaped for Prometheus' postgres_exporter.
--
-- Each view is one metric family: text columns are labels, numeric columns
-- are samples (contrib/prometheus/queries.yaml maps them).  They read the
-- public dm_* views, so driftmirror_monitor may scrape them and sees what
-- those views show it: names, states and figures, never endpoints, hosts
-- or raw error text.  Labels are bounded: group, resource and state names,
-- action kinds, never free text, so a scrape's series count stays small.

-- one row per group: its state as a label (value 1), counters and ages
CREATE VIEW driftmirror.dm_exporter_groups AS
SELECT s.group_name,
       coalesce(s.mode, '') AS mode,
       s.state,
       1::int AS up,
       s.steps_ok,
       s.steps_failed,
       s.consecutive_failures,
       s.resources,
       extract(epoch FROM s."interval")::float8 AS interval_seconds,
       extract(epoch FROM pg_catalog.clock_timestamp() - s.last_heartbeat)::float8
           AS heartbeat_age_seconds
  FROM driftmirror.dm_status s;
COMMENT ON VIEW driftmirror.dm_exporter_groups IS
    'postgres_exporter: one row per group (state as a label), steps and heartbeat age';

-- one row per mirror: lag, apply errors, conflicts, latency ratio
CREATE VIEW driftmirror.dm_exporter_mirrors AS
SELECT m.group_name,
       m.resource_name,
       m.kind,
       m.state,
       CASE WHEN m.two_way THEN 'true' ELSE 'false' END AS two_way,
       coalesce(m.lag_bytes, 0)::float8 AS lag_bytes,
       coalesce(m.lag_seconds, 0)::float8 AS lag_seconds,
       coalesce(m.sync_pct, 0)::float8 AS sync_pct,
       coalesce(m.apply_error_count, 0)::float8
           + coalesce(m.rev_apply_error_count, 0) AS apply_errors,
       coalesce(m.sync_error_count, 0)::float8
           + coalesce(m.rev_sync_error_count, 0) AS sync_errors,
       coalesce(m.conflicts, 0)::float8 AS conflicts,
       m.latency_ratio::float8 AS latency_ratio,
       m.primary_latency_ms::float8 AS primary_latency_ms,
       m.mirror_latency_ms::float8 AS mirror_latency_ms
  FROM driftmirror.dm_mirror_status m;
COMMENT ON VIEW driftmirror.dm_exporter_mirrors IS
    'postgres_exporter: one row per mirror: lag, sync progress, apply errors, conflicts, latency';

-- one row per route: the share of traffic (weight) per resource, access
-- and node role (primary, mirror); endpoints stay hidden
CREATE VIEW driftmirror.dm_exporter_routes AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       rt.access,
       CASE WHEN rt.endpoint = r.endpoint THEN 'primary'
            WHEN rt.endpoint = m.mirror_endpoint THEN 'mirror'
            ELSE 'other' END AS node,
       rt.weight::float8 AS weight
  FROM driftmirror.route rt
  JOIN driftmirror.resource r ON r.id = rt.resource_id
  JOIN driftmirror.resource_group g ON g.id = rt.group_id
  LEFT JOIN driftmirror.mirror m ON m.group_name = g.name AND m.resource_name = r.name;
COMMENT ON VIEW driftmirror.dm_exporter_routes IS
    'postgres_exporter: route weights per resource, access kind and node role';

-- actions by group, kind and outcome: a counter of the action log
CREATE VIEW driftmirror.dm_exporter_actions AS
SELECT a.group_name, a.kind, a.outcome, count(*)::float8 AS total
  FROM driftmirror.action a
 GROUP BY a.group_name, a.kind, a.outcome;
COMMENT ON VIEW driftmirror.dm_exporter_actions IS
    'postgres_exporter: number of actions per group, kind and outcome';

-- the worker: alive, passes, age of the last pass, loop time, nap time
CREATE VIEW driftmirror.dm_exporter_worker AS
SELECT CASE WHEN w.alive THEN 1 ELSE 0 END::float8 AS alive,
       CASE WHEN w.enabled THEN 1 ELSE 0 END::float8 AS enabled,
       w.passes::float8 AS passes,
       extract(epoch FROM pg_catalog.clock_timestamp() - w.last_pass_at)::float8
           AS last_pass_age_seconds,
       s.last_cycle_ms / 1000.0 AS loop_seconds,
       w.naptime_ms / 1000.0::float8 AS naptime_seconds
  FROM driftmirror.dm_worker w
  LEFT JOIN driftmirror.worker_state s ON true;
COMMENT ON VIEW driftmirror.dm_exporter_worker IS
    'postgres_exporter: whether the worker runs, its passes and the age of its last pass';

-- promotions: count per outcome, and the write pause of each resource's
-- last finished promotion
CREATE VIEW driftmirror.dm_exporter_promotions AS
SELECT p.group_name,
       p.resource_name,
       p.state,
       count(*)::float8 AS total,
       (array_agg(p.pause_ms ORDER BY p.id DESC) FILTER (WHERE p.pause_ms IS NOT NULL))[1]::float8
           AS last_pause_ms
  FROM driftmirror.promotion p
 GROUP BY p.group_name, p.resource_name, p.state;
COMMENT ON VIEW driftmirror.dm_exporter_promotions IS
    'postgres_exporter: promotions per resource and final state, with the last write pause';

-- the current model of each series: its accuracy, age, and the forecast
-- for now beside the last value observed (forecast against actual)
CREATE VIEW driftmirror.dm_exporter_models AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       d.name AS metric,
       m.method,
       m.version::float8 AS version,
       m.backtest_mase,
       m.coverage95,
       m.rolling_mae / nullif(m.backtest_mae, 0) AS rolling_error_ratio,
       extract(epoch FROM pg_catalog.clock_timestamp() - m.trained_at)::float8 AS age_seconds,
       f.yhat AS forecast,
       f.hi95 AS forecast_hi95,
       f.lo95 AS forecast_lo95,
       a.value AS actual
  FROM driftmirror.model m
  JOIN driftmirror.resource r ON r.id = m.resource_id
  JOIN driftmirror.resource_group g ON g.id = m.group_id
  JOIN driftmirror.metric_def d ON d.id = m.metric_id
  -- the stored forecast of the bucket that holds now, from the latest run
  LEFT JOIN LATERAL (SELECT fc.yhat, fc.hi95, fc.lo95
                       FROM driftmirror.forecast fc
                      WHERE fc.model_id = m.id AND fc.ts <= pg_catalog.clock_timestamp()
                      ORDER BY fc.ts DESC, fc.made_at DESC LIMIT 1) f ON true
  -- the last value stored in the last day
  LEFT JOIN LATERAL (SELECT x.value
                       FROM driftmirror.metric x
                      WHERE x.resource_id = m.resource_id AND x.metric_id = m.metric_id
                        AND x.ts > pg_catalog.clock_timestamp() - interval '1 day'
                      ORDER BY x.ts DESC LIMIT 1) a ON true
 WHERE m.version = (SELECT max(v.version) FROM driftmirror.model v
                     WHERE v.resource_id = m.resource_id AND v.metric_id = m.metric_id);
COMMENT ON VIEW driftmirror.dm_exporter_models IS
    'postgres_exporter: per series, the current model''s accuracy and age, its forecast for now and the last observed value';

-- capacity of the resources that scale (resource option scale_metric)
CREATE VIEW driftmirror.dm_exporter_capacity AS
SELECT r.group_name,
       r.name AS resource_name,
       r.capacity::float8 AS capacity,
       (r.options ->> 'unit_capacity')::float8 AS unit_capacity
  FROM driftmirror.dm_resources r
 WHERE r.options ? 'scale_metric';
COMMENT ON VIEW driftmirror.dm_exporter_capacity IS
    'postgres_exporter: instances of each scaled resource and the demand one instance serves';

-- the traffic shares each group's routers apply (dm_shift)
CREATE VIEW driftmirror.dm_exporter_shifts AS
SELECT s.group_name, s.read_pct::float8 AS read_pct, s.write_pct::float8 AS write_pct,
       s.change_id::float8 AS change_id
  FROM driftmirror.dm_shifts s;
COMMENT ON VIEW driftmirror.dm_exporter_shifts IS
    'postgres_exporter: the read and write shares sent to each group''s mirror';

-- the running (or last) shift plan of each group: its state as a label,
-- the step it is on, the last good step, the number of steps
CREATE VIEW driftmirror.dm_exporter_shift_plans AS
SELECT DISTINCT ON (s.group_name)
       s.group_name,
       s.state,
       s.step::float8 AS step,
       s.good_step::float8 AS good_step,
       s.steps::float8 AS steps,
       s.step_read_pct::float8 AS step_read_pct,
       s.step_write_pct::float8 AS step_write_pct
  FROM driftmirror.dm_shift_status s
 ORDER BY s.group_name, s.plan_id DESC;
COMMENT ON VIEW driftmirror.dm_exporter_shift_plans IS
    'postgres_exporter: the latest shift plan of each group: state, step, last good step';
