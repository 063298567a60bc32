-- forecast.sql: dm_forecast and dm_forecast_model, the SQL face of the
-- forecasting core.  Values are rounded and checked through properties so
-- that the output does not depend on the last bits of the optimisers.
SET search_path = driftmirror, public;

-- a monthly-like series: season 12, trend, no noise
CREATE TEMP TABLE s12 AS
SELECT array_agg(100 + 10 * sin(2 * pi() * i / 12) + 0.5 * i ORDER BY i) AS v
  FROM generate_series(1, 96) i;
-- the same pattern continued, to score the forecasts
CREATE TEMP TABLE s12_future AS
SELECT i - 96 AS step, 100 + 10 * sin(2 * pi() * i / 12) + 0.5 * i AS y
  FROM generate_series(97, 120) i;

-- seasonal naive repeats the last cycle exactly
SELECT step, round(yhat::numeric, 3) AS yhat,
       round((hi95 - yhat)::numeric, 3) = round((yhat - lo95)::numeric, 3) AS symmetric
  FROM dm_forecast((SELECT v FROM s12), '{12}', 14, 'snaive')
 ORDER BY step;

-- every method: 24 rows, ordered bounds, finite, and close to the truth
SELECT m AS method,
       count(*) AS steps,
       bool_and(lo95 <= lo80 AND lo80 <= yhat AND yhat <= hi80 AND hi80 <= hi95) AS ordered,
       bool_and(yhat::text NOT IN ('NaN', 'Infinity', '-Infinity')) AS finite,
       max(abs(yhat - f.y)) < 3 AS accurate
  FROM unnest(ARRAY['snaive', 'hw', 'mstl', 'arima', 'prophet', 'theta', 'auto', 'naive']) m,
       LATERAL dm_forecast((SELECT v FROM s12), ARRAY[12], 24, m) d
  JOIN s12_future f USING (step)
 GROUP BY m
 ORDER BY m;

-- which model each method uses (its first word: the method)
SELECT m AS method,
       split_part(dm_forecast_model((SELECT v FROM s12), ARRAY[12], 24, m), ' ', 1) AS model
  FROM unnest(ARRAY['snaive', 'hw', 'mstl', 'arima', 'prophet', 'theta', 'auto']) m
 ORDER BY m;

-- two seasonalities (daily and weekly at 30 minutes), default method
SELECT count(*) AS steps, bool_and(hi95 > lo95) AS intervals
  FROM dm_forecast((SELECT array_agg(50 + 10 * sin(2 * pi() * i / 48)
                                     + CASE WHEN (i / 48) % 7 >= 5 THEN -8 ELSE 0 END
                                     + (i % 7) * 0.1 ORDER BY i)
                      FROM generate_series(0, 48 * 21 - 1) i),
                   '{48,336}', 48);

-- prediction intervals widen with the horizon
SELECT bool_and(w2 >= w1 - 1e-9) AS widening
  FROM (SELECT hi95 - lo95 AS w2,
               lag(hi95 - lo95) OVER (ORDER BY step) AS w1
          FROM dm_forecast((SELECT v FROM s12), '{12}', 24, 'hw')) x
 WHERE w1 IS NOT NULL;

-- fallbacks, said in a NOTICE, never NaN
SELECT step, yhat, lo95, hi95
  FROM dm_forecast('{5,5,5,5,5,5}', '{}', 2, 'hw') ORDER BY step;
SELECT step, yhat
  FROM dm_forecast(array_fill(0::float8, ARRAY[30]), '{7}', 2) ORDER BY step;
SELECT step, round(yhat::numeric, 2) AS yhat
  FROM dm_forecast('{1,2}', '{}', 2, 'arima') ORDER BY step;
SELECT step, yhat, lo95, hi95
  FROM dm_forecast('{42}', '{}', 1) ORDER BY step;
SELECT count(*) AS steps
  FROM dm_forecast((SELECT v[1:20] FROM s12), '{12}', 3, 'snaive');
SELECT count(*) AS steps
  FROM dm_forecast((SELECT v[1:30] FROM s12), '{12}', 3, 'mstl');

-- missing values: refused, or interpolated on request
SELECT * FROM dm_forecast('{1,2,NULL,4,5,6}', '{}', 1, 'naive');
SELECT step, yhat
  FROM dm_forecast('{1,2,NULL,4,5,6}', '{}', 1, 'naive', interpolate => true);
SELECT step, yhat
  FROM dm_forecast('{1,2,NaN,4,5,6}', '{}', 1, 'naive', interpolate => true);

-- bad input
SELECT * FROM dm_forecast(NULL, '{}', 1);
SELECT * FROM dm_forecast('{1,2,3}', NULL, 1);
SELECT * FROM dm_forecast('{1,2,3}', '{}', NULL);
SELECT * FROM dm_forecast('{1,2,3}', '{}', 1, NULL);
SELECT * FROM dm_forecast('{}', '{}', 1);
SELECT * FROM dm_forecast('{1,2,NaN,4}', '{}', 1);
SELECT * FROM dm_forecast('{1,2,3,Infinity}', '{}', 1);
SELECT * FROM dm_forecast('{1,2,3,-Infinity}', '{}', 1);
SELECT * FROM dm_forecast('{{1,2},{3,4}}', '{}', 1);
SELECT * FROM dm_forecast('{1,2,3}', '{}', 0);
SELECT * FROM dm_forecast('{1,2,3}', '{}', -5);
SELECT * FROM dm_forecast('{1,2,3}', '{}', 1000000);
SELECT * FROM dm_forecast('{1,2,3}', '{0}', 1);
SELECT * FROM dm_forecast('{1,2,3}', '{-4}', 1);
SELECT * FROM dm_forecast('{1,2,3}', '{200000}', 1);
SELECT * FROM dm_forecast('{1,2,3}', '{2,NULL}', 1);
SELECT * FROM dm_forecast('{1,2,3}', '{2,3,4,5,6,7,8,9,10}', 1);
SELECT * FROM dm_forecast('{1,2,3}', '{}', 1, 'magic');

-- events: a campaign that lifts positions 30-32 and 66-68 by 20,
-- announced again for the future (positions 102-104 = steps 6-8)
CREATE TEMP TABLE ev AS
SELECT array_agg(100 + 10 * sin(2 * pi() * i / 12)
                 + CASE WHEN i BETWEEN 30 AND 32 OR i BETWEEN 66 AND 68 THEN 20 ELSE 0 END
                 ORDER BY i) AS v
  FROM generate_series(1, 96) i;
SELECT step,
       round(e.yhat - p.yhat) AS lift
  FROM dm_forecast((SELECT v FROM ev), '{12}', 10, 'prophet',
                   '[{"name": "campaign", "start": 30, "end": 32},
                     {"name": "campaign", "start": 66, "end": 68},
                     {"name": "campaign", "start": 102, "end": 104}]') e
  JOIN dm_forecast((SELECT v FROM ev), '{12}', 10, 'prophet') p USING (step)
 ORDER BY step;
-- other methods take events as an adjustment
SELECT step, round(yhat - 100 - 10 * sin(2 * pi() * (96 + step) / 12)) AS lift
  FROM dm_forecast((SELECT v FROM ev), '{12}', 8, 'hw',
                   '[{"name": "campaign", "start": 30, "end": 32},
                     {"name": "campaign", "start": 66, "end": 68},
                     {"name": "campaign", "start": 102, "end": 104}]')
 WHERE step >= 5
 ORDER BY step;
SELECT split_part(dm_forecast_model((SELECT v FROM ev), '{12}', 8, 'mstl',
                  '[{"name": "campaign", "start": 30, "end": 32}]'), ' + ', 2) AS adjustment;
-- events only in the future cannot be estimated
SELECT count(*) FROM dm_forecast((SELECT v FROM ev), '{12}', 8, 'hw',
                                 '[{"name": "sale", "start": 100}]');
-- bad events
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '{"name": "x"}');
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '[1]');
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '[{"start": 2}]');
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '[{"name": "x"}]');
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '[{"name": "x", "start": 2.5}]');
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '[{"name": "x", "start": 3, "end": 2}]');
SELECT * FROM dm_forecast('{1,2,3,4}', '{}', 1, 'prophet', '[{"name": "x", "start": 3, "before": -1}]');

-- a long input is fitted on a bounded tail and stays fast
SELECT count(*) AS steps
  FROM dm_forecast((SELECT array_agg(sin(i / 10.0) ORDER BY i) FROM generate_series(1, 200000) i),
                   '{63}', 5, 'hw');

-- the functions are pure
SELECT p.proname, p.provolatile, p.proparallel
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace AND p.proname LIKE 'dm_forecast%'
 ORDER BY p.proname;

-- working memory: capped by driftmirror.forecast_work_mem (superuser only)
CREATE ROLE regress_dm_fc_user;
SET ROLE regress_dm_fc_user;
SET driftmirror.forecast_work_mem = '1GB';
RESET ROLE;
DROP ROLE regress_dm_fc_user;
SET driftmirror.forecast_work_mem = '64kB';
SELECT count(*) FROM dm_forecast((SELECT v FROM s12), '{12}', 24, 'auto');
-- the same failure, by SQLSTATE, from calls in a loop
DO $$
BEGIN
    FOR i IN 1 .. 20 LOOP
        BEGIN
            PERFORM * FROM driftmirror.dm_forecast(
                (SELECT array_agg(sin(j / 5.0) ORDER BY j) FROM generate_series(1, 20000) j),
                '{24, 168}', 48, 'auto');
            RAISE NOTICE 'not refused';
        EXCEPTION WHEN program_limit_exceeded THEN
            NULL;
        END;
    END LOOP;
    RAISE NOTICE 'every call refused with program_limit_exceeded';
END
$$;
RESET driftmirror.forecast_work_mem;
SELECT count(*) AS steps FROM dm_forecast((SELECT v FROM s12), '{12}', 24, 'auto');

-- a long call (here the setup of 1,000 event regressors with windows of
-- 1,000 positions, seconds of work) stops at a cancel or a timeout
SET statement_timeout = '300ms';
SELECT count(*) FROM dm_forecast(
    (SELECT array_agg(sin(i / 3.0) + i % 7 ORDER BY i) FROM generate_series(1, 20000) i),
    '{}', 48, 'hw',
    (SELECT jsonb_agg(jsonb_build_object('name', 'e' || i, 'start', i * 10, 'end', i * 10 + 2,
                                         'before', 1000, 'after', 1000))
       FROM generate_series(1, 1000) i));
RESET statement_timeout;
