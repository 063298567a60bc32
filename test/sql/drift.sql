-- drift.sql: the pure parts of drift (78_drift.sql): the normalised
-- components and score of a mirror from given inputs, the decision against
-- drift_threshold by mode, and the option.  The worker of this test
-- instance watches another database; the phase itself runs in TAP 081.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

-- the option: drift.score units, default 1 (at the limits)
SELECT key, type, default_value, min_value, max_value, description FROM dm_options
 WHERE key = 'drift_threshold';
-- the metric names
SELECT name, unit, builtin FROM dm_metric_names WHERE name LIKE 'drift.%' ORDER BY name;

-- components: lag 2.5 s of a 5 s limit, ratio 1.1 of a 1.2 limit, 3 new
-- errors in 30 s; the score is the largest
SELECT round(lag::numeric, 3) AS lag, round(latency::numeric, 3) AS latency,
       round(apply_errors::numeric, 3) AS apply_errors, round(score::numeric, 3) AS score
  FROM _drift_components(2.5, 5, 1.1, 1.2, 3, 30);
-- a mirror faster than its primary has no latency drift; unknown inputs
-- give NULL components, the score is the largest known
SELECT lag, latency, apply_errors, score FROM _drift_components(0, 5, 0.5, 1.2, 0, 10);
SELECT lag, latency, apply_errors, round(score::numeric, 3) AS score
  FROM _drift_components(NULL, 5, NULL, 1.2, NULL, NULL);
SELECT round(lag::numeric, 3) AS lag, latency, apply_errors, round(score::numeric, 3) AS score
  FROM _drift_components(12, 5, NULL, 1.2, NULL, NULL);
-- a zero limit counts from a millisecond, a latency limit of 1 from 0.001
SELECT lag, round(latency::numeric, 3) AS latency FROM _drift_components(0.002, 0, 1.002, 1, 0, 10);

-- error rate, normalised by the traffic each node served: the mirror
-- failed 30 of 1000 transactions, the primary 10 of 1000: two more in a
-- hundred (2.0), the largest component; a mirror that fails less than its
-- primary has none; as many failures on a busier primary are a lower rate
-- there; under 20 transactions on a node it is unknown
SELECT t.*, round(c.error_rate::numeric, 3) AS error_rate, round(c.score::numeric, 3) AS score
  FROM (VALUES (1000::float8, 10::float8, 1000::float8, 30::float8),
               (1000, 30, 1000, 10),
               (4000, 30, 1000, 30),
               (1000, 0, 19, 19),
               (19, 0, 1000, 500),
               (NULL, NULL, 1000, 30)) t(p_xacts, p_rollbacks, m_xacts, m_rollbacks),
       _drift_components(0.5, 5, 1.0, 1.2, 0, 10, t.p_xacts, t.p_rollbacks, t.m_xacts, t.m_rollbacks) c
 ORDER BY 1 NULLS FIRST, 2, 3, 4;

-- the traffic of the window, from the counters the status reads store:
-- the last sample minus the first since the window's start; a counter
-- that went down (statistics reset) is unknown
SELECT dm_create_group('drift_traffic', '{}') > 0 AS created;
SELECT dm_add_resource('drift_traffic', 'db', 'service', 'http://127.0.0.1:9/db') > 0 AS added;
SELECT dm_ingest('drift_traffic', 'db', n.name, ARRAY[now() - interval '50 seconds', now() - interval '30 seconds', now() - interval '10 seconds'],
                 n.vals)
  FROM (VALUES ('mirror.primary_xacts', ARRAY[100, 400, 1100]::float8[]),
               ('mirror.primary_rollbacks', ARRAY[5, 6, 7]::float8[]),
               ('mirror.mirror_xacts', ARRAY[2000, 2200, 2500]::float8[]),
               ('mirror.mirror_rollbacks', ARRAY[50, 10, 12]::float8[])) n(name, vals);
SELECT t.* FROM resource r JOIN resource_group g ON g.id = r.group_id,
       _drift_traffic(r.id, now() - interval '40 seconds') t
 WHERE g.name = 'drift_traffic';
SELECT t.* FROM resource r JOIN resource_group g ON g.id = r.group_id,
       _drift_traffic(r.id, now() - interval '1 minute') t
 WHERE g.name = 'drift_traffic';
SELECT dm_drop_group('drift_traffic', true);

-- the decision: over now, forecast over, under, unknown; held only in
-- forecast_and_scale
SELECT m.mode, s.score, s.upper, d.*
  FROM (VALUES ('forecast_and_scale'), ('forecast_only')) m(mode)
  CROSS JOIN (VALUES (1.2::float8, 1.5::float8), (0.4, 1.1), (0.4, 0.9), (0.4, NULL), (NULL, NULL)) s(score, upper)
  CROSS JOIN LATERAL _drift_decision(s.score, s.upper, 1.0, m.mode) d
 ORDER BY m.mode, s.score DESC NULLS LAST, s.upper DESC NULLS LAST;

-- hysteresis: a mirror that was over stays over until the score and the
-- upper bound are both under 0.8 x the threshold
SELECT s.score, s.upper, d.*
  FROM (VALUES (0.1::float8, 0.95::float8), (0.85, 0.5), (0.1, NULL), (0.1, 0.79)) s(score, upper)
  CROSS JOIN LATERAL _drift_decision(s.score, s.upper, 1.0, 'forecast_and_scale', true) d;
SELECT decision FROM _drift_decision(0.1, 0.95, 1.0, 'forecast_and_scale', false);

-- no drift state: nothing held
SELECT _drift_hold(-1) IS NULL AS not_held;
