-- 56_models.sql: forecasting models of stored metrics: the model and
-- forecast catalogs, dm_train, dm_model_forecast and the view dm_models.
--
-- A model is the recipe for forecasting one metric of one resource: the
-- level it reads (raw samples, or the 5-minute / 1-hour rollups when the
-- forecast horizon is long enough for them), the step of its regular grid,
-- its seasonal periods in steps, its method, and how it did when it was
-- trained (a backtest on the end of its training window: MASE and interval
-- coverage), and, for hw and mstl, the smoothing parameters it estimated
-- (params).  Training chooses and judges the recipe and estimates the
-- parameters; forecasting applies both to fresh data: the states are
-- filtered again over the window before the origin with the kept
-- parameters (one pass instead of a search), and only methods without kept
-- parameters (auto, arima, snaive) fit again at every forecast.
--
-- Grid: buckets of `step` aligned on 2000-01-01 00:00 UTC (as the metric
-- partitions and rollups are); a bucket's value is the mean of its samples
-- (or the rollup's avg); a forecast made "as of" t uses only buckets that
-- end at or before t, and its first step is the bucket starting at
-- date_bin(step, t).  Empty buckets are filled by the core's interpolation.
--
-- Events of the group (all resources, or the one named by the event's
-- "resource" option) are regressors: occurrences are turned into grid
-- positions with their windows.  An event name with an occurrence inside
-- the training series is estimated by the core; a name that never occurred
-- there cannot be, and its "effect" option (if set) is added to the
-- forecast while it runs, as the user's own estimate.
--
-- This file creates only new objects, so the update script
-- (sql/upgrade/0.1.0--0.2.0/80_models.sql) is this same file.

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('resource', 'scale_metric', 'text', NULL, NULL, NULL, NULL,
     'the demand metric that capacity follows (see dm_capacity_plan)'),
    ('resource', 'unit_capacity', 'number', NULL, '0.000001', '1000000000000', NULL,
     'demand one instance serves, in the unit of scale_metric');

CREATE TABLE driftmirror.model (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id        bigint NOT NULL,
    resource_id     bigint NOT NULL,
    metric_id       smallint NOT NULL REFERENCES driftmirror.metric_def (id) ON DELETE CASCADE,
    version         integer NOT NULL,
    method          text NOT NULL,
    description     text NOT NULL,
    source          text NOT NULL CHECK (source IN ('raw', '5m', '1h')),
    step            interval NOT NULL CHECK (step > '0'),
    seasons         integer[] NOT NULL,
    window_points   integer NOT NULL CHECK (window_points > 0),
    horizon_steps   integer NOT NULL CHECK (horizon_steps > 0),
    train_start     timestamptz NOT NULL,
    train_end       timestamptz NOT NULL,
    train_points    integer NOT NULL,
    events          text[] NOT NULL DEFAULT '{}',
    backtest_points integer,
    backtest_mase   float8,
    coverage80      float8,
    coverage95      float8,
    backtest_mae    float8,
    reason          text NOT NULL,
    trained_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- rolling accuracy: one-step-ahead forecasts of the worker's steps
    -- against the demand then observed (58_scaling_phase.sql)
    rolling_mae     float8,
    rolling_points  integer,
    rolling_at      timestamptz,
    -- the smoothing parameters of the method's fit on the training window
    -- (hw, mstl; NULL for the others): every forecast of this version
    -- applies them to fresh data instead of estimating them again
    -- (51_forecast_params.sql)
    params          float8[],
    UNIQUE (resource_id, metric_id, version),
    FOREIGN KEY (group_id, resource_id)
        REFERENCES driftmirror.resource (group_id, id) ON DELETE CASCADE
);
COMMENT ON TABLE driftmirror.model IS
    'Forecasting models per resource and metric: grid, periods, method, backtest accuracy, version';
CREATE INDEX ON driftmirror.model (group_id);

CREATE TABLE driftmirror.forecast (
    model_id    bigint NOT NULL REFERENCES driftmirror.model (id) ON DELETE CASCADE,
    made_at     timestamptz NOT NULL,
    ts          timestamptz NOT NULL,
    yhat        float8 NOT NULL,
    lo80        float8 NOT NULL,
    hi80        float8 NOT NULL,
    lo95        float8 NOT NULL,
    hi95        float8 NOT NULL,
    PRIMARY KEY (model_id, made_at, ts)
);
COMMENT ON TABLE driftmirror.forecast IS
    'Stored forecasts: made_at is the first forecast bucket (the origin), kept to judge them later';

-- _model_step: the typical spacing of the raw samples of a series before
-- p_before (median of the last 200 gaps, whole seconds, at least 1 s);
-- NULL with fewer than 3 samples
CREATE FUNCTION driftmirror._model_step(p_rid bigint, p_mid smallint, p_before timestamptz)
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => greatest(1, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap))))
      FROM (SELECT extract(epoch FROM s.ts - lag(s.ts) OVER (ORDER BY s.ts)) AS gap
              FROM (SELECT m.ts FROM driftmirror.metric m
                     WHERE m.resource_id = p_rid AND m.metric_id = p_mid AND m.ts < p_before
                     ORDER BY m.ts DESC LIMIT 201) s) g
     WHERE gap IS NOT NULL
    HAVING count(*) >= 2
$$;

-- _model_seasons: daily, weekly and (for daily steps) yearly periods in
-- steps, those that fit twice in p_points
CREATE FUNCTION driftmirror._model_seasons(p_step interval, p_points integer)
RETURNS integer[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(p ORDER BY p), '{}')
      FROM (SELECT CASE WHEN d.per_day = 1 THEN x.days
                        ELSE x.days * d.per_day END::integer AS p
              FROM (SELECT 86400 / extract(epoch FROM p_step) AS per_day) d,
                   (VALUES (1), (7), (365)) x(days)
             WHERE d.per_day >= 1 AND d.per_day = trunc(d.per_day)
               AND (x.days < 365 OR d.per_day = 1)) s
     WHERE p >= 2 AND 2 * p <= p_points
$$;

-- _model_spec: the recipe a model trained now would use for a series:
-- level, step, periods, window and horizon in steps.  NULL step when the
-- series has too few samples before p_before.
CREATE FUNCTION driftmirror._model_spec(p_gid bigint, p_rid bigint, p_mid smallint,
                                        p_before timestamptz,
                                        OUT source text, OUT step interval,
                                        OUT seasons integer[], OUT window_points integer,
                                        OUT horizon_steps integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    eff     jsonb;
    horizon interval;
    first   timestamptz;
    avail   integer;
BEGIN
    SELECT driftmirror._effective_options('group', g.options) INTO eff
      FROM driftmirror.resource_group g WHERE g.id = p_gid;
    horizon := driftmirror._opt_interval(eff -> 'forecast_horizon');
    source := 'raw';
    step := driftmirror._model_step(p_rid, p_mid, p_before);
    IF step IS NULL THEN
        RETURN;
    END IF;
    -- coarser levels when the horizon would take over 1,000 raw steps
    IF step < interval '5 minutes' AND horizon > 1000 * step
       AND EXISTS (SELECT FROM driftmirror.metric_5m r
                    WHERE r.resource_id = p_rid AND r.metric_id = p_mid) THEN
        source := '5m';
        step := interval '5 minutes';
    END IF;
    IF step < interval '1 hour' AND horizon > 1000 * step
       AND EXISTS (SELECT FROM driftmirror.metric_1h r
                    WHERE r.resource_id = p_rid AND r.metric_id = p_mid) THEN
        source := '1h';
        step := interval '1 hour';
    END IF;

    first := least((SELECT min(m.ts) FROM driftmirror.metric m
                     WHERE m.resource_id = p_rid AND m.metric_id = p_mid AND m.ts < p_before),
                   (SELECT min(x.bucket) FROM driftmirror.metric_5m x
                     WHERE source = '5m' AND x.resource_id = p_rid AND x.metric_id = p_mid),
                   (SELECT min(x.bucket) FROM driftmirror.metric_1h x
                     WHERE source = '1h' AND x.resource_id = p_rid AND x.metric_id = p_mid));
    avail := floor(extract(epoch FROM p_before - first) / extract(epoch FROM step))::integer;
    seasons := driftmirror._model_seasons(step, avail);
    -- four cycles of the longest period (at least 1,000 steps), at most 10,000
    window_points := least(greatest(1000, 4 * coalesce(seasons[cardinality(seasons)], 0)), 10000);
    horizon_steps := least(greatest(1, ceil(extract(epoch FROM horizon) / extract(epoch FROM step))), 100000);
END
$$;

-- _model_series: the grid values of a series for the buckets starting in
-- [p_from, p_to), oldest first, NULL for empty buckets.  plpgsql, not sql,
-- so that a session (the worker's) keeps the plan instead of planning it
-- at every call
CREATE FUNCTION driftmirror._model_series(p_rid bigint, p_mid smallint, p_source text,
                                          p_step interval, p_from timestamptz, p_to timestamptz)
RETURNS float8[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    SELECT coalesce(array_agg(coalesce(r.avg, w.avg) ORDER BY g.b), '{}')
      FROM generate_series(p_from, p_to - p_step, p_step) g(b)
      LEFT JOIN (SELECT date_bin(p_step, m.ts, timestamptz '2000-01-01 00:00:00+00') AS b,
                        avg(m.value) AS avg
                   FROM driftmirror.metric m
                  WHERE m.resource_id = p_rid AND m.metric_id = p_mid
                    AND m.ts >= p_from AND m.ts < p_to
                  GROUP BY 1) w ON w.b = g.b
      LEFT JOIN (SELECT x.bucket, x.avg FROM driftmirror.metric_5m x
                  WHERE p_source = '5m' AND x.resource_id = p_rid AND x.metric_id = p_mid
                    AND x.bucket >= p_from AND x.bucket < p_to
                 UNION ALL
                 SELECT x.bucket, x.avg FROM driftmirror.metric_1h x
                  WHERE p_source = '1h' AND x.resource_id = p_rid AND x.metric_id = p_mid
                    AND x.bucket >= p_from AND x.bucket < p_to) r ON r.bucket = g.b);
END
$$;

-- _model_events: the group's event occurrences that concern a resource, as
-- grid positions counted from p_t0 (position 1 is the bucket at p_t0):
-- [{"name", "start", "end", "before", "after", "effect"}], oldest first,
-- at most the 1,000 occurrences nearest to p_to
CREATE FUNCTION driftmirror._model_events(p_gid bigint, p_rid bigint, p_t0 timestamptz,
                                          p_step interval, p_to timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(o ORDER BY o -> 'start'), '[]')
      FROM (SELECT jsonb_build_object(
                       'name', e.name,
                       'start', floor(extract(epoch FROM e.starts - p_t0) / s.secs)::bigint + 1,
                       'end', floor(extract(epoch FROM e.ends - p_t0) / s.secs)::bigint + 1,
                       'before', least(ceil(extract(epoch FROM driftmirror._opt_interval(x.eff -> 'window_before')) / s.secs), 1000)::integer,
                       'after', least(ceil(extract(epoch FROM driftmirror._opt_interval(x.eff -> 'window_after')) / s.secs), 1000)::integer,
                       'effect', x.eff -> 'effect') AS o
              FROM driftmirror.event e
              JOIN driftmirror.resource r ON r.id = p_rid
              CROSS JOIN LATERAL (SELECT driftmirror._effective_options('event', e.options) AS eff) x
              CROSS JOIN (SELECT extract(epoch FROM p_step) AS secs) s
             WHERE e.group_id = p_gid
               AND (NOT e.options ? 'resource' OR e.options ->> 'resource' = r.name)
               AND e.ends + driftmirror._opt_interval(x.eff -> 'window_after') >= p_t0
               AND e.starts - driftmirror._opt_interval(x.eff -> 'window_before') < p_to
             ORDER BY abs(extract(epoch FROM e.starts - p_to))
             LIMIT 1000) q
$$;

-- _forecast_series: forecast p_h steps after vals[p_lo .. p_hi] (1-based)
-- with p_occ's occurrences (positions relative to vals[1]), applying the
-- kept smoothing parameters p_params (NULL: estimated).  Names with an
-- occurrence inside the slice go to the core; the others add their
-- "effect" to the steps they cover.  Returns steps 1..p_h.  Raises the
-- core's errors (e.g. a series with no value).
CREATE FUNCTION driftmirror._forecast_series(p_vals float8[], p_lo integer, p_hi integer,
                                             p_seasons integer[], p_method text, p_h integer,
                                             p_occ jsonb, p_params float8[] DEFAULT NULL)
RETURNS TABLE(step integer, yhat float8, lo80 float8, hi80 float8, lo95 float8, hi95 float8)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    n       integer := p_hi - p_lo + 1;
    occ     jsonb := '[]';
    seen    text[];
    core    jsonb;
    hints   jsonb;
BEGIN
    -- re-base positions on the slice
    SELECT coalesce(jsonb_agg(o || jsonb_build_object('start', (o ->> 'start')::bigint - p_lo + 1,
                                                      'end', (o ->> 'end')::bigint - p_lo + 1)), '[]')
      INTO occ
      FROM jsonb_array_elements(p_occ) o
     WHERE (o ->> 'end')::bigint + (o ->> 'after')::bigint >= p_lo
       AND (o ->> 'start')::bigint - (o ->> 'before')::bigint <= p_hi + p_h;
    SELECT coalesce(array_agg(DISTINCT o ->> 'name'), '{}') INTO seen
      FROM jsonb_array_elements(occ) o
     WHERE (o ->> 'end')::bigint + (o ->> 'after')::bigint >= 1
       AND (o ->> 'start')::bigint - (o ->> 'before')::bigint <= n;
    SELECT jsonb_agg(o - 'effect') FILTER (WHERE (o ->> 'name') = ANY (seen)),
           jsonb_agg(o) FILTER (WHERE NOT (o ->> 'name') = ANY (seen) AND o ? 'effect')
      INTO core, hints
      FROM jsonb_array_elements(occ) o;

    RETURN QUERY
    SELECT f.step, f.yhat + a.eff, f.lo80 + a.eff, f.hi80 + a.eff, f.lo95 + a.eff, f.hi95 + a.eff
      FROM driftmirror._forecast_with_params(p_vals[p_lo:p_hi], p_seasons, p_h, p_method, core,
                                             true, p_params) f
     CROSS JOIN LATERAL (
           SELECT coalesce(sum((h ->> 'effect')::float8), 0) AS eff
             FROM jsonb_array_elements(coalesce(hints, '[]')) h
            WHERE n + f.step BETWEEN (h ->> 'start')::bigint - (h ->> 'before')::bigint
                                 AND (h ->> 'end')::bigint + (h ->> 'after')::bigint) a
     ORDER BY f.step;
END
$$;

-- _model_current: the newest model of a series trained at or before
-- p_as_of (NULL if none)
CREATE FUNCTION driftmirror._model_current(p_rid bigint, p_mid smallint,
                                           p_as_of timestamptz DEFAULT 'infinity')
RETURNS driftmirror.model
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM driftmirror.model m
     WHERE m.resource_id = p_rid AND m.metric_id = p_mid AND m.trained_at <= p_as_of
     ORDER BY m.version DESC LIMIT 1
$$;

-- _model_forecast_at: forecast p_h steps of a model's series from the
-- data before p_as_of; ts is each step's bucket start
CREATE FUNCTION driftmirror._model_forecast_at(p_model driftmirror.model,
                                               p_as_of timestamptz, p_h integer)
RETURNS TABLE(ts timestamptz, yhat float8, lo80 float8, hi80 float8, lo95 float8, hi95 float8)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t_end   timestamptz := date_bin(p_model.step, p_as_of, timestamptz '2000-01-01 00:00:00+00');
    t0      timestamptz := t_end - p_model.window_points * p_model.step;
    vals    float8[];
    lo      integer;
BEGIN
    vals := driftmirror._model_series(p_model.resource_id, p_model.metric_id, p_model.source,
                                      p_model.step, t0, t_end);
    -- start at the first bucket with a value
    SELECT min(i) INTO lo FROM generate_subscripts(vals, 1) i WHERE vals[i] IS NOT NULL;
    IF lo IS NULL THEN
        RAISE EXCEPTION 'no data before % for the model of this series', p_as_of
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT t_end + (f.step - 1) * p_model.step, f.yhat, f.lo80, f.hi80, f.lo95, f.hi95
      FROM driftmirror._forecast_series(vals, lo, cardinality(vals), p_model.seasons,
                                        p_model.method, p_h,
                                        driftmirror._model_events(p_model.group_id, p_model.resource_id,
                                                                  t0, p_model.step,
                                                                  t_end + p_h * p_model.step),
                                        p_model.params) f;
END
$$;

-- _select_method: the method for a series, chosen by a backtest on its
-- end: the last min(h, n/4) buckets of vals[p_lo .. p_hi] forecast from
-- those before by each candidate (mstl, hw and auto, the combination of
-- mstl, hw, arima and snaive that dm_forecast picks; the first of equals
-- wins, so a single cheap method is kept unless the combination is better).
-- Returns the method with its MASE (scaled by the in-sample seasonal naive
-- error of the first period) and interval coverage; method 'auto' and NULL
-- figures when the series is too short to judge.
CREATE FUNCTION driftmirror._select_method(p_vals float8[], p_lo integer, p_hi integer,
                                           p_seasons integer[], p_h integer, p_occ jsonb,
                                           OUT method text, OUT points integer,
                                           OUT mase float8, OUT cov80 float8, OUT cov95 float8,
                                           OUT mae float8)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n       integer := p_hi - p_lo + 1;
    hb      integer := least(p_h, n / 4);
    m       integer := coalesce(p_seasons[1], 1);
    seasons integer[];
    scale   float8;
    cand    text;
    r       record;
BEGIN
    method := 'auto';
    IF hb < 1 OR n - hb < 8 OR n - hb <= m THEN
        RETURN;
    END IF;
    SELECT avg(abs(p_vals[i] - p_vals[i - m])) INTO scale
      FROM generate_series(p_lo + m, p_hi - hb) i;
    SELECT coalesce(array_agg(p ORDER BY p), '{}') INTO seasons
      FROM unnest(p_seasons) p WHERE 2 * p <= n - hb;
    FOREACH cand IN ARRAY ARRAY['mstl', 'hw', 'auto'] LOOP
        SELECT count(*)::integer AS points,
               avg(abs(p_vals[p_hi - hb + f.step] - f.yhat)) AS mae,
               avg(abs(p_vals[p_hi - hb + f.step] - f.yhat)) / nullif(scale, 0) AS mase,
               avg((p_vals[p_hi - hb + f.step] BETWEEN f.lo80 AND f.hi80)::integer) AS cov80,
               avg((p_vals[p_hi - hb + f.step] BETWEEN f.lo95 AND f.hi95)::integer) AS cov95
          INTO r
          FROM driftmirror._forecast_series(p_vals, p_lo, p_hi - hb, seasons, cand, hb, p_occ) f
         WHERE p_vals[p_hi - hb + f.step] IS NOT NULL;
        IF r.points > 0 AND (mase IS NULL OR r.mase < mase * 0.98) THEN
            method := cand;
            points := r.points;
            mase := r.mase;
            cov80 := r.cov80;
            cov95 := r.cov95;
            mae := r.mae;
        END IF;
    END LOOP;
END
$$;

-- _train_model: fit and judge the model of one series on the data before
-- p_as_of, store it as the next version with its forecast; returns the
-- model, or NULL when the series has too little data (fewer than 8
-- buckets with a value)
CREATE FUNCTION driftmirror._train_model(p_gid bigint, p_rid bigint, p_mid smallint,
                                         p_reason text, p_as_of timestamptz DEFAULT now())
RETURNS driftmirror.model
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    spec    record;
    t_end   timestamptz;
    t0      timestamptz;
    vals    float8[];
    lo      integer;
    n       integer;
    occ     jsonb;
    bt      record;
    mdl     driftmirror.model;
BEGIN
    spec := driftmirror._model_spec(p_gid, p_rid, p_mid, p_as_of);
    IF spec.step IS NULL THEN
        RETURN NULL;
    END IF;
    t_end := date_bin(spec.step, p_as_of, timestamptz '2000-01-01 00:00:00+00');
    t0 := t_end - spec.window_points * spec.step;
    vals := driftmirror._model_series(p_rid, p_mid, spec.source, spec.step, t0, t_end);
    SELECT min(i) INTO lo FROM generate_subscripts(vals, 1) i WHERE vals[i] IS NOT NULL;
    IF lo IS NULL OR (SELECT count(*) FROM unnest(vals) v WHERE v IS NOT NULL) < 8 THEN
        RETURN NULL;
    END IF;
    vals := vals[lo:];
    t0 := t0 + (lo - 1) * spec.step;
    n := cardinality(vals);
    occ := driftmirror._model_events(p_gid, p_rid, t0, spec.step, t_end + spec.horizon_steps * spec.step);

    -- the method, judged on the end of the window
    bt := driftmirror._select_method(vals, 1, n, spec.seasons, spec.horizon_steps, occ);

    -- one version at a time per series
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.model'), p_rid::integer # (p_mid::integer << 20));
    INSERT INTO driftmirror.model
        (group_id, resource_id, metric_id, version, method, description, source, step,
         seasons, window_points, horizon_steps, train_start, train_end, train_points,
         events, backtest_points, backtest_mase, coverage80, coverage95, backtest_mae, reason,
         params)
    SELECT p_gid, p_rid, p_mid,
           coalesce((SELECT max(x.version) FROM driftmirror.model x
                      WHERE x.resource_id = p_rid AND x.metric_id = p_mid), 0) + 1,
           bt.method,
           driftmirror.dm_forecast_model(vals, spec.seasons, spec.horizon_steps, bt.method, NULL, true),
           spec.source, spec.step, spec.seasons, spec.window_points, spec.horizon_steps,
           t0, t_end, (SELECT count(*) FROM unnest(vals) v WHERE v IS NOT NULL),
           (SELECT coalesce(array_agg(DISTINCT o ->> 'name'), '{}') FROM jsonb_array_elements(occ) o
             WHERE (o ->> 'start')::bigint - (o ->> 'before')::bigint <= n),
           bt.points, bt.mase, bt.cov80, bt.cov95, bt.mae, p_reason,
           driftmirror._forecast_params(vals, spec.seasons, spec.horizon_steps, bt.method, NULL, true)
    RETURNING * INTO mdl;

    INSERT INTO driftmirror.forecast (model_id, made_at, ts, yhat, lo80, hi80, lo95, hi95)
    SELECT mdl.id, t_end, f.ts, f.yhat, f.lo80, f.hi80, f.lo95, f.hi95
      FROM driftmirror._model_forecast_at(mdl, p_as_of, spec.horizon_steps) f;

    -- keep the last 20 versions of a series, and those whose stored
    -- forecasts the scaling bound's calibration may still read (64 steps,
    -- 57_scaling.sql)
    DELETE FROM driftmirror.model x
     WHERE x.resource_id = p_rid AND x.metric_id = p_mid AND x.version <= mdl.version - 20
       AND x.trained_at < p_as_of - greatest(interval '2 days', 64 * x.step);
    RETURN mdl;
END
$$;

CREATE FUNCTION driftmirror.dm_train("group" text, resource text DEFAULT NULL,
                                     metric text DEFAULT NULL)
RETURNS TABLE(resource_name text, metric_name text, version integer, model text,
              backtest_mase float8, coverage80 float8, coverage95 float8)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group    ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_metric   ALIAS FOR $3;
    gid     bigint;
    rid     bigint;
    mid     smallint;
    s       record;
    mdl     driftmirror.model;
    n       integer := 0;
BEGIN
    gid := driftmirror._group_id(p_group, false);
    IF p_resource IS NOT NULL THEN
        rid := driftmirror._resource_id(gid, p_group, p_resource);
    END IF;
    IF p_metric IS NOT NULL THEN
        SELECT d.id INTO mid FROM driftmirror.metric_def d WHERE d.name = p_metric;
        IF mid IS NULL THEN
            RAISE EXCEPTION 'metric "%" is not registered', p_metric
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;

    -- every series of the group (or the one named) with data in the last
    -- 35 days
    FOR s IN
        SELECT r.id AS rid, r.name AS rname, d.id AS mid, d.name AS mname
          FROM driftmirror.resource r
          CROSS JOIN driftmirror.metric_def d
         WHERE r.group_id = gid
           AND (rid IS NULL OR r.id = rid)
           AND (mid IS NULL OR d.id = mid)
           AND EXISTS (SELECT FROM driftmirror.metric x
                        WHERE x.resource_id = r.id AND x.metric_id = d.id
                          AND x.ts >= now() - interval '35 days' AND x.ts < now())
         ORDER BY r.name, d.name
    LOOP
        mdl := driftmirror._train_model(gid, s.rid, s.mid, 'dm_train');
        IF mdl.id IS NULL THEN
            CONTINUE;
        END IF;
        n := n + 1;
        resource_name := s.rname;
        metric_name := s.mname;
        version := mdl.version;
        model := mdl.description;
        backtest_mase := mdl.backtest_mase;
        coverage80 := mdl.coverage80;
        coverage95 := mdl.coverage95;
        RETURN NEXT;
    END LOOP;

    IF n = 0 THEN
        RAISE EXCEPTION 'nothing to train in group "%"', p_group
            USING ERRCODE = 'no_data_found',
                  DETAIL = 'A model needs at least 8 grid buckets with a value in the last 35 days of the series.';
    END IF;
    PERFORM driftmirror._log_action(p_group, p_resource, 'train', 'dm_train',
                                    jsonb_build_object('metric', p_metric, 'models', n));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_train(text, text, text) IS
    'Train (choose, backtest and store) the forecasting model of every series of a group, or of one resource or metric';

CREATE FUNCTION driftmirror.dm_model_forecast("group" text, resource text, metric text,
                                              horizon interval)
RETURNS TABLE(ts timestamptz, yhat float8, lo80 float8, hi80 float8, lo95 float8, hi95 float8)
LANGUAGE plpgsql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tgt     record;
    mdl     driftmirror.model;
    h       float8;
BEGIN
    tgt := driftmirror._ingest_target($1, $2, $3);
    IF horizon IS NULL OR horizon <= interval '0' THEN
        RAISE EXCEPTION 'horizon must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    mdl := driftmirror._model_current(tgt.resource_id, tgt.metric_id);
    IF mdl.id IS NULL THEN
        RAISE EXCEPTION 'metric "%" of resource "%" has no model', $3, $2
            USING ERRCODE = 'undefined_object',
                  HINT = format('Train one with dm_train(%L, %L, %L).', $1, $2, $3);
    END IF;
    h := ceil(extract(epoch FROM horizon) / extract(epoch FROM mdl.step));
    IF h > 100000 THEN
        RAISE EXCEPTION 'horizon % is more than 100000 steps of %', horizon, mdl.step
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN QUERY SELECT * FROM driftmirror._model_forecast_at(mdl, now(), h::integer);
END
$$;
COMMENT ON FUNCTION driftmirror.dm_model_forecast(text, text, text, interval) IS
    'Forecast a series with its current model from the data up to now: one row per grid step';

CREATE VIEW driftmirror.dm_models AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       d.name AS metric,
       m.version,
       m.method,
       m.description AS model,
       m.source,
       m.step,
       m.seasons,
       m.train_start,
       m.train_end,
       m.train_points,
       m.events,
       m.backtest_points,
       m.backtest_mase,
       m.coverage80,
       m.coverage95,
       m.rolling_mae / nullif(m.backtest_mae, 0) AS rolling_error_ratio,
       m.rolling_points,
       m.reason,
       m.trained_at,
       now() - m.trained_at AS age
  FROM driftmirror.model m
  JOIN driftmirror.resource r ON r.id = m.resource_id
  JOIN driftmirror.resource_group g ON g.id = m.group_id
  JOIN driftmirror.metric_def d ON d.id = m.metric_id
 WHERE m.version = (SELECT max(x.version) FROM driftmirror.model x
                     WHERE x.resource_id = m.resource_id AND x.metric_id = m.metric_id);
COMMENT ON VIEW driftmirror.dm_models IS
    'The current model of every series: method, grid, training window, backtest accuracy, version, age';

REVOKE ALL ON driftmirror.model, driftmirror.forecast FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._model_step(bigint, smallint, timestamptz),
    driftmirror._model_seasons(interval, integer),
    driftmirror._model_spec(bigint, bigint, smallint, timestamptz),
    driftmirror._model_series(bigint, smallint, text, interval, timestamptz, timestamptz),
    driftmirror._model_events(bigint, bigint, timestamptz, interval, timestamptz),
    driftmirror._forecast_series(float8[], integer, integer, integer[], text, integer, jsonb, float8[]),
    driftmirror._select_method(float8[], integer, integer, integer[], integer, jsonb),
    driftmirror._model_current(bigint, smallint, timestamptz),
    driftmirror._model_forecast_at(driftmirror.model, timestamptz, integer),
    driftmirror._train_model(bigint, bigint, smallint, text, timestamptz),
    driftmirror.dm_train(text, text, text),
    driftmirror.dm_model_forecast(text, text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_train(text, text, text),
    driftmirror.dm_model_forecast(text, text, text, interval) TO driftmirror_admin;
GRANT SELECT ON driftmirror.dm_models TO driftmirror_monitor;
