-- predictive: models (dm_train, dm_models, dm_model_forecast) and the
-- scaling policy as replayable decisions (dm_capacity_plan,
-- dm_backtest_scaling), with the effect of each option.
--
-- The series is 5-minute demand anchored on the current 5-minute bucket:
-- 100 most of the day, 1000 for one hour a day (from 12:00 to 13:00 after
-- the anchor's time of day), plus small deterministic noise.  Outputs are
-- booleans and counts: no wall-clock values.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

CREATE TEMP TABLE anchor AS
SELECT date_bin('5 minutes', now(), '2000-01-01 00:00+00') AS t;

SELECT dm_create_group('shop', '{"max_capacity": 20, "lead_time": "30 minutes", "forecast_horizon": "2 hours"}') > 0 AS created;
SELECT dm_add_resource('shop', 'web', 'app', 'http://127.0.0.1:9/act',
                       options => '{"scale_metric": "requests", "unit_capacity": 100}') > 0 AS added;
SELECT dm_register_metric('requests', '1/s', 'requests per second') > 0 AS registered;
SELECT dm_register_metric('other', '1/s') > 0 AS registered;

-- the daily peak: (ts - anchor) mod 1 day in [12 h, 13 h)
CREATE TEMP TABLE series AS
SELECT ts, CASE WHEN mod(extract(epoch FROM ts - a.t)::bigint + 4 * 86400, 86400) >= 43200
                 AND mod(extract(epoch FROM ts - a.t)::bigint + 4 * 86400, 86400) < 46800
                THEN 1000 ELSE 100 END + (i * 7919 % 97) / 10.0 AS v
  FROM anchor a, generate_series(1, 4 * 288) i,
       LATERAL (SELECT a.t - i * interval '5 minutes' AS ts) x;
SELECT dm_ingest('shop', 'web', 'requests', array_agg(ts ORDER BY ts), array_agg(v ORDER BY ts))
  FROM series;

-- ---------------------------------------------------------------------
-- models
-- ---------------------------------------------------------------------
-- err: the SQLSTATE and message of a statement that must fail
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;
SELECT resource_name, metric_name, version, model LIKE 'auto: %' AS auto,
       backtest_mase >= 0 AS judged, coverage95 >= 0.5 AS covers
  FROM dm_train('shop');
SELECT group_name, resource_name, metric, version, method IN ('mstl', 'hw', 'auto') AS method_ok, source, step, seasons,
       train_points BETWEEN 4 * 288 - 2 AND 4 * 288 AS window_ok,
       backtest_points, reason, age >= interval '0' AS age_ok
  FROM dm_models;
-- kept parameters: hw and mstl models keep theirs, the others none
SELECT bool_and((params IS NOT NULL) = (method IN ('hw', 'mstl'))) AS params_kept FROM model;
-- the parameters of a fit, applied to the same series, give the same
-- forecast (the core's unit tests apply them to later data)
CREATE TEMP TABLE hwp AS
SELECT _forecast_params(array_agg(v ORDER BY ts), '{288}', 12, 'hw') AS p,
       array_agg(v ORDER BY ts) AS vals
  FROM series;
SELECT cardinality(p) AS elements, p[3] > 0 AND p[3] < 1 AS alpha_ok FROM hwp;
SELECT bool_and(abs(a.yhat - b.yhat) < 1e-9 AND abs(a.hi95 - b.hi95) < 1e-9) AS same
  FROM hwp, dm_forecast(vals, '{288}', 12, 'hw') a
  JOIN _forecast_with_params(vals, '{288}', 12, 'hw', NULL, false, p) b ON b.step = a.step;
SELECT _forecast_params(vals, '{288}', 12, 'snaive') IS NULL AS snaive_none,
       _forecast_params(vals, '{288}', 12, 'mstl') IS NOT NULL AS mstl_kept
  FROM hwp;
SELECT pg_temp.err($$SELECT count(*) FROM _forecast_with_params('{1,2,3,4,5,6,7,8}', '{}', 2, 'hw', NULL, false, '{0,0,0.5}')$$);
SELECT pg_temp.err($$SELECT count(*) FROM _forecast_with_params('{1,2,3,4,5,6,7,8}', '{}', 2, 'hw', NULL, false, '{0,0,1.5,0,0,0,0}')$$);
SELECT pg_temp.err($$SELECT count(*) FROM _forecast_with_params('{1,2,3,4,5,6,7,8}', '{}', 2, 'hw', NULL, false, '{0,0,0.5,0,0,0,NaN}')$$);
-- forecast_horizon: 2 hours of 5 minutes stored with the model
SELECT count(*) AS stored_steps FROM forecast f JOIN model m ON m.id = f.model_id;
SELECT count(*) AS steps,
       bool_and(lo95 <= lo80 AND lo80 <= yhat AND yhat <= hi80 AND hi80 <= hi95) AS ordered,
       min(ts) = (SELECT date_bin('5 minutes', now(), '2000-01-01 00:00+00')) AS starts_now
  FROM dm_model_forecast('shop', 'web', 'requests', '1 hour');
-- the peak 12 hours after the anchor is forecast, the quiet hours are not
SELECT max(yhat) FILTER (WHERE ts >= a.t + interval '12 hours' AND ts < a.t + interval '13 hours') > 700 AS peak,
       max(yhat) FILTER (WHERE ts >= a.t + interval '2 hours' AND ts < a.t + interval '10 hours') < 400 AS quiet
  FROM anchor a, dm_model_forecast('shop', 'web', 'requests', '14 hours');
-- a second training is the next version; forecast_horizon sets the steps
SELECT dm_alter_group('shop', '{"forecast_horizon": "1 hour"}');
SELECT version FROM dm_train('shop', 'web', 'requests');
SELECT version, count(*) AS stored_steps
  FROM model m JOIN forecast f ON f.model_id = m.id GROUP BY 1 ORDER BY 1;
SELECT dm_alter_group('shop', '{"forecast_horizon": "2 hours"}');

-- events: a future event with an effect moves the forecast while it runs
CREATE TEMP TABLE before_event AS
SELECT * FROM dm_model_forecast('shop', 'web', 'requests', '6 hours');
SELECT dm_add_event('shop', 'launch', a.t + interval '3 hours', a.t + interval '4 hours',
                    '{"effect": 500}') > 0 AS added FROM anchor a;
SELECT bool_and(abs(n.yhat - b.yhat - 500) < 1e-6) FILTER (WHERE n.ts >= a.t + interval '3 hours' AND n.ts <= a.t + interval '4 hours') AS moved,
       bool_and(abs(n.yhat - b.yhat) < 1e-6) FILTER (WHERE n.ts < a.t + interval '3 hours' OR n.ts > a.t + interval '4 hours') AS elsewhere_same
  FROM anchor a, before_event b
  JOIN dm_model_forecast('shop', 'web', 'requests', '6 hours') n ON n.ts = b.ts;
-- an event of another resource does not
SELECT dm_add_resource('shop', 'cache', 'cache', 'http://127.0.0.1:9/act') > 0 AS added;
SELECT dm_add_event('shop', 'flush', a.t + interval '1 hour', a.t + interval '2 hours',
                    '{"effect": 300, "resource": "cache"}') > 0 AS added FROM anchor a;
SELECT bool_and(abs(n.yhat - b.yhat) < 1e-6) FILTER (WHERE n.ts < a.t + interval '3 hours') AS unmoved
  FROM anchor a, before_event b
  JOIN dm_model_forecast('shop', 'web', 'requests', '6 hours') n ON n.ts = b.ts;
-- an event that occurred in the history is estimated by the model: extra
-- demand during two past occurrences, a third one in the future
SELECT dm_ingest('shop', 'cache', 'requests', array_agg(ts ORDER BY ts),
                 array_agg(v + CASE WHEN ts >= a.t - interval '50 hours' AND ts < a.t - interval '49 hours'
                                      OR ts >= a.t - interval '26 hours' AND ts < a.t - interval '25 hours'
                                    THEN 600 ELSE 0 END ORDER BY ts))
  FROM anchor a, series;
SELECT count(*) AS trained FROM dm_train('shop', 'cache');
CREATE TEMP TABLE cache_before AS
SELECT * FROM dm_model_forecast('shop', 'cache', 'requests', '6 hours');
SELECT dm_add_event('shop', 'batch', a.t - interval '50 hours', a.t - interval '49 hours 5 minutes',
                    '{"resource": "cache"}') > 0 AS added FROM anchor a;
SELECT dm_add_event('shop', 'batch', a.t - interval '26 hours', a.t - interval '25 hours 5 minutes',
                    '{"resource": "cache"}') > 0 AS added FROM anchor a;
SELECT dm_add_event('shop', 'batch', a.t + interval '4 hours', a.t + interval '4 hours 55 minutes',
                    '{"resource": "cache"}') > 0 AS added FROM anchor a;
SELECT version FROM dm_train('shop', 'cache');
SELECT version, events FROM dm_models WHERE resource_name = 'cache';
SELECT avg(n.yhat - b.yhat) FILTER (WHERE n.ts >= a.t + interval '4 hours' AND n.ts < a.t + interval '5 hours') > 300 AS estimated
  FROM anchor a, cache_before b
  JOIN dm_model_forecast('shop', 'cache', 'requests', '6 hours') n ON n.ts = b.ts;
SELECT dm_remove_event('shop', 'batch');
SELECT dm_remove_event('shop', 'flush');
SELECT dm_remove_event('shop', 'launch');

-- ---------------------------------------------------------------------
-- dm_capacity_plan: 20 minutes before the last peak in the history
-- ---------------------------------------------------------------------
CREATE TEMP VIEW plan AS
SELECT p.* FROM anchor a,
       dm_capacity_plan('shop', 'web', a.t - interval '12 hours 20 minutes') p;
SELECT metric, observed < 200 AS quiet_now, forecast_upper > 900 AS peak_ahead,
       required, current_capacity, decision, target, reason LIKE 'forecast upper bound % when capacity ordered now is live, plus 20.0% headroom, needs 13 instance(s) of 100; 1 planned' AS reason_ok
  FROM plan;
-- lead_time: with no provisioning delay the peak is not yet due
SELECT dm_alter_group('shop', '{"lead_time": "0"}');
SELECT forecast_upper < 300 AS quiet_ahead, required, decision FROM plan;
SELECT dm_alter_group('shop', '{"lead_time": "30 minutes"}');
-- just in time: with lead_time 7 minutes the worker (a decision every
-- 10 s: the window ends two intervals later) orders the peak's capacity 7
-- minutes before the peak starts, not while the bucket before it still
-- ends more than 7 minutes ahead
SELECT dm_alter_group('shop', '{"lead_time": "7 minutes"}');
SELECT extract(epoch FROM x.before_peak)::integer AS seconds_before_peak, p.required, p.decision
  FROM anchor a, (VALUES (interval '8 minutes'), (interval '7 minutes 30 seconds'),
                         (interval '7 minutes')) x(before_peak),
       dm_capacity_plan('shop', 'web', a.t - interval '12 hours' - x.before_peak) p
 ORDER BY 1 DESC;
SELECT dm_alter_group('shop', '{"lead_time": "30 minutes"}');
-- headroom
SELECT dm_alter_group('shop', '{"headroom": 0.5}');
SELECT required FROM plan;
SELECT dm_alter_group('shop', '{"headroom": null}');
-- max_capacity caps
SELECT dm_alter_group('shop', '{"max_capacity": 5}');
SELECT required, decision, reason LIKE '%(capped at max_capacity)' AS capped FROM plan;
SELECT dm_alter_group('shop', '{"max_capacity": 20}');
-- unit_capacity: twice the demand per instance, half the instances
SELECT dm_alter_resource('shop', 'web', options => '{"scale_metric": "requests", "unit_capacity": 200}');
SELECT required FROM plan;
-- at a quiet time, min_capacity holds; more than needed is reduced
SELECT dm_alter_group('shop', '{"min_capacity": 3}');
SELECT p.required, p.decision FROM anchor a, dm_capacity_plan('shop', 'web', a.t - interval '6 hours') p;
SELECT dm_alter_resource('shop', 'web', options => '{"scale_metric": "requests", "unit_capacity": 200, "capacity": 8}');
SELECT p.required, p.current_capacity, p.decision, p.target FROM anchor a, dm_capacity_plan('shop', 'web', a.t - interval '6 hours') p;
SELECT dm_alter_group('shop', '{"min_capacity": null}');
-- scale_metric: another metric of the resource, a flat 450
SELECT dm_ingest('shop', 'web', 'other', array_agg(ts ORDER BY ts), array_agg(450.0 ORDER BY ts))
  FROM series;
SELECT dm_alter_resource('shop', 'web', options => '{"scale_metric": "other", "unit_capacity": 100}');
SELECT metric, required FROM plan;
SELECT dm_alter_resource('shop', 'web', options => '{"scale_metric": "requests", "unit_capacity": 100}');

-- ---------------------------------------------------------------------
-- dm_backtest_scaling over the last two days
-- ---------------------------------------------------------------------
CREATE TEMP TABLE bt AS
SELECT b.* FROM anchor a, dm_backtest_scaling('shop', 'web', a.t - interval '2 days', a.t) b;
SELECT count(*) AS steps, count(DISTINCT decision) <= 3 AS decisions,
       count(*) FILTER (WHERE demand > capacity * 100) AS under_provisioned
  FROM bt;
-- capacity is raised before each peak: the capacity the peak needs is
-- live when it starts, ordered while the demand seen was still low
SELECT floor(extract(epoch FROM b.ts - a.t) / 86400) AS day,
       (max(b.ts) FILTER (WHERE demand > 500)) IS NOT NULL AS peak,
       min(b.ts) FILTER (WHERE b.capacity >= 12) <= min(b.ts) FILTER (WHERE demand > 500) AS ahead,
       min(b.capacity) FILTER (WHERE demand > 500) >= 12 AS ready
  FROM anchor a, bt b GROUP BY 1 ORDER BY 1;
-- scale_cooldown: capacity comes down only after the cooldown, longer
-- with a longer cooldown
SELECT dm_alter_group('shop', '{"scale_cooldown": "3 hours"}');
CREATE TEMP TABLE bt_slow AS
SELECT b.* FROM anchor a, dm_backtest_scaling('shop', 'web', a.t - interval '2 days', a.t) b;
SELECT (SELECT sum(capacity) FROM bt_slow) > (SELECT sum(capacity) FROM bt) AS more_capacity,
       (SELECT min(ts) FROM bt_slow WHERE decision = 'scale_down')
         >= (SELECT min(ts) FROM bt WHERE decision = 'scale_up') + interval '3 hours' AS waited;
SELECT dm_alter_group('shop', '{"scale_cooldown": null}');
-- scale_down: 'forecast' (the default) brings the capacity down once the
-- peak's last bucket has been seen and the forecast from now until the
-- window is quiet; 'observed' also waits until the demand of the whole
-- cooldown has fallen, and keeps more capacity; neither is short
SELECT dm_alter_group('shop', '{"scale_down": "observed"}');
CREATE TEMP TABLE bt_observed AS
SELECT b.* FROM anchor a, dm_backtest_scaling('shop', 'web', a.t - interval '2 days', a.t) b;
SELECT dm_alter_group('shop', '{"scale_down": null}');
WITH runs AS (SELECT 'forecast' AS scale_down, * FROM bt
              UNION ALL SELECT 'observed', * FROM bt_observed),
     peaks AS (SELECT floor(extract(epoch FROM b.ts - a.t) / 86400) AS day,
                      min(b.ts) AS start, max(b.ts) + interval '5 minutes' AS stop
                 FROM anchor a, bt b WHERE b.demand > 500 GROUP BY 1)
SELECT r.scale_down, p.day,
       min(r.ts) FILTER (WHERE r.decision = 'scale_down' AND r.ts > p.start) < p.stop AS ordered_down_before_the_end,
       count(*) FILTER (WHERE r.demand > r.capacity * 100) AS under_provisioned
  FROM runs r, peaks p
 WHERE r.ts >= p.start - interval '6 hours' AND r.ts < p.stop + interval '6 hours'
 GROUP BY r.scale_down, p.day, p.start, p.stop ORDER BY 1, 2;
SELECT (SELECT sum(capacity) FROM bt_observed) > (SELECT sum(capacity) FROM bt) AS observed_keeps_more;
-- a scale-down takes effect at once, so it never goes below what the
-- buckets before the window need: during the peak's last bucket (5
-- minutes before its end) the window, 30 minutes on, is quiet (required
-- 2: the rule before scaled down to 2 there), but the bucket in progress
-- is the peak's: the 13 planned instances hold; at the end of the peak
-- every bucket from now on is quiet: they come down (and stay down 5
-- minutes later)
SELECT dm_alter_resource('shop', 'web', options => '{"scale_metric": "requests", "unit_capacity": 100, "capacity": 13}');
SELECT extract(epoch FROM x.after_peak_end)::integer / 60 AS minutes_after_peak_end,
       p.required, p.decision, p.target,
       p.reason LIKE '%from now until%' AS reason_ok
  FROM anchor a, (VALUES (interval '-5 minutes'), (interval '0'), (interval '5 minutes')) x(after_peak_end),
       dm_capacity_plan('shop', 'web', a.t - interval '11 hours' + x.after_peak_end) p
 ORDER BY 1;
SELECT dm_alter_resource('shop', 'web', options => '{"scale_metric": "requests", "unit_capacity": 100}');
-- in the replay too: a scale-down lowers the live capacity of its own
-- step, and the step is not short
SELECT count(*) > 0 AS scaled_down,
       bool_and(b.capacity < p.capacity) AS at_once,
       bool_and(b.demand <= b.capacity * 100) AS covered
  FROM bt b JOIN bt p ON p.ts = b.ts - interval '5 minutes'
 WHERE b.decision = 'scale_down';

-- capacity-hours: the time-weighted live capacity of each step, never
-- below its smallest capacity
SELECT bool_and(abs(capacity_hours - capacity / 12.0) < 1e-9) AS whole_steps_constant,
       bool_and(capacity_hours >= capacity / 12.0 - 1e-9) AS at_least_smallest
  FROM bt;
-- lead_time not a whole number of steps (7 minutes, 5-minute steps): the
-- replay also decides 3 minutes into each step, 7 minutes before the
-- step after next starts, so the capacity a peak needs is ordered just in
-- time: live when the peak starts, not bought during the step before it
-- (a decision at a step's start sizes the next step only)
SELECT dm_alter_group('shop', '{"lead_time": "7 minutes"}');
CREATE TEMP TABLE bt7 AS
SELECT b.* FROM anchor a, dm_backtest_scaling('shop', 'web', a.t - interval '2 days', a.t) b;
SELECT dm_alter_group('shop', '{"lead_time": "30 minutes"}');
SELECT floor(extract(epoch FROM b.ts - a.t) / 86400) AS day,
       count(*) FILTER (WHERE b.demand > b.capacity * 100) AS under_provisioned,
       min(b.capacity) FILTER (WHERE b.demand > 500) >= 12 AS ready,
       (SELECT round((x.capacity_hours * 12)::numeric, 2) FROM bt7 x
         WHERE x.ts = min(b.ts) FILTER (WHERE b.demand > 500) - interval '5 minutes') AS step_before,
       bool_and(b.capacity_hours >= b.capacity / 12.0 - 1e-9) AS at_least_smallest
  FROM anchor a, bt7 b GROUP BY 1 ORDER BY 1;

-- the bound of a forecast bucket: the model's 95 % bound until 20 errors
-- at its lead are known, then yhat plus their 80 % quantile (never under
-- yhat)
SELECT _scale_bound(100, 150, '{}') AS no_errors,
       _scale_bound(100, 150, (SELECT array_agg(x::float8) FROM generate_series(1, 19) x)) AS nineteen,
       _scale_bound(100, 150, (SELECT array_agg(x::float8) FROM generate_series(1, 20) x)) AS twenty,
       _scale_bound(100, 150, (SELECT array_agg(-x::float8) FROM generate_series(1, 20) x)) AS biased_high;
-- the window: the buckets that overlap [decision + lead_time,
-- next decision + lead_time); the replay's next decision is one step or
-- less away, the worker's two intervals (20 s)
SELECT l AS lead_time, o AS offset_in_bucket, nx AS next, w.*
  FROM (VALUES (interval '0', interval '0', interval '5 minutes'),
               (interval '0', interval '2 minutes', interval '5 minutes'),
               (interval '2 minutes', interval '0', interval '5 minutes'),
               (interval '5 minutes', interval '0', interval '5 minutes'),
               (interval '30 minutes', interval '0', interval '5 minutes'),
               (interval '30 minutes', interval '3 minutes', interval '5 minutes'),
               -- lead_time 2 minutes: the replay also decides at 3 minutes,
               -- for the next bucket only
               (interval '2 minutes', interval '0', interval '3 minutes'),
               (interval '2 minutes', interval '3 minutes', interval '2 minutes'),
               -- the worker: the bucket in progress until its last 2 minutes
               (interval '2 minutes', interval '1 minute', interval '20 seconds'),
               (interval '2 minutes', interval '2 minutes 50 seconds', interval '20 seconds'),
               (interval '2 minutes', interval '3 minutes', interval '20 seconds')) v(l, o, nx),
       _scale_window(o, l, interval '5 minutes', nx) w ORDER BY 1, 2;

-- ---------------------------------------------------------------------
-- bad input: clear errors, nothing changed
-- ---------------------------------------------------------------------
CREATE TEMP TABLE counts AS SELECT (SELECT count(*) FROM model) AS models, (SELECT count(*) FROM forecast) AS forecasts;
SELECT pg_temp.err($$SELECT * FROM dm_train('nosuch')$$);
SELECT pg_temp.err($$SELECT * FROM dm_train(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM dm_train('shop', 'nosuch')$$);
SELECT pg_temp.err($$SELECT * FROM dm_train('shop', 'web', 'nosuch')$$);
SELECT pg_temp.err($$SELECT * FROM dm_train('shop', 'cache', 'other')$$);
SELECT pg_temp.err($$SELECT * FROM dm_model_forecast('shop', 'web', 'requests', '-1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM dm_model_forecast('shop', 'web', 'requests', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM dm_model_forecast('shop', 'web', 'requests', '10 years')$$);
SELECT pg_temp.err($$SELECT * FROM dm_model_forecast('shop', 'web', 'other', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM dm_model_forecast('shop', 'web', NULL, '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM dm_capacity_plan('shop', 'cache')$$);
SELECT pg_temp.err($$SELECT * FROM dm_capacity_plan('shop', 'web', 'infinity')$$);
SELECT pg_temp.err($$SELECT * FROM dm_capacity_plan('shop', 'web', '2000-01-01 00:00+00')$$);
SELECT pg_temp.err($$SELECT * FROM dm_backtest_scaling('shop', 'web', '2026-01-02 00:00+00', '2026-01-01 00:00+00')$$);
SELECT pg_temp.err($$SELECT * FROM dm_backtest_scaling('shop', 'web', '2000-01-01 00:00+00', '2000-01-02 00:00+00')$$);
SELECT pg_temp.err($$SELECT * FROM (SELECT t FROM anchor) a, dm_backtest_scaling('shop', 'web', a.t - interval '1 day', a.t + interval '1 year')$$);
SELECT pg_temp.err($$SELECT * FROM dm_backtest_scaling('shop', 'web', NULL, now())$$);
SELECT pg_temp.err($$SELECT dm_alter_group('shop', '{"scale_down": "sometimes"}')$$);
SELECT pg_temp.err($$SELECT dm_schedule_training('nosuch', '* * * * *')$$);
SELECT pg_temp.err($$SELECT dm_schedule_training(NULL, '* * * * *')$$);
SELECT pg_temp.err($$SELECT dm_add_resource('shop', 'bad', 'app', 'http://127.0.0.1:9/act', options => '{"unit_capacity": 0}')$$);
SELECT pg_temp.err($$SELECT dm_add_resource('shop', 'bad', 'app', 'http://127.0.0.1:9/act', options => '{"scale_function": ["f"]}')$$);
SELECT pg_temp.err($$SELECT dm_add_resource('shop', 'bad', 'app', 'http://127.0.0.1:9/act', options => '{"scale_metric": 5}')$$);
SELECT models = (SELECT count(*) FROM model) AND forecasts = (SELECT count(*) FROM forecast) AS unchanged
  FROM counts;

SELECT dm_drop_group('shop', true);
SELECT count(*) AS models_left FROM model;
