-- 57_scaling.sql: the scaling policy as replayable decisions:
-- dm_capacity_plan (the decision at one instant) and dm_backtest_scaling
-- (the policy replayed over stored history).
--
-- The policy, for a resource with the options scale_metric (the demand
-- metric) and unit_capacity (demand one instance serves), under its
-- group's lead_time, headroom, min_capacity, max_capacity, scale_cooldown
-- and scale_down:
--
--   need(x)   = ceil(x * (1 + headroom) / unit_capacity), within
--               [min_capacity, max_capacity]
--   next      = when the next decision comes: the worker decides at every
--               step of the group, so two group intervals (room for a late
--               step); the replay decides when the worker's decisions can
--               differ (below)
--   window    = the forecast buckets that overlap [t + lead_time,
--               t + next + lead_time): capacity ordered at t is live from
--               its start, and the next decision can order what is needed
--               after its end (one or two buckets; _scale_window).  A
--               scale-up is thus ordered lead_time before the bucket that
--               needs it starts, not a whole step earlier
--   upper     = the largest upper bound of the window's buckets, where a
--               bucket's upper bound is its forecast yhat plus the 80 %
--               quantile of the errors (observed - yhat, at least 0) of the
--               last 60 forecasts made at the same lead whose bucket has
--               been observed; until 20 such errors are known, the model's
--               95 % upper bound (_scale_bound).  The model's Gaussian
--               interval is as wide on every bucket as its worst residuals
--               make it; the errors at the lead say how wrong the forecasts
--               of this series actually were.
--   required  = need(upper)
--   span      = the largest upper bound of the buckets from the one in
--               progress to the window's end, [t, t + next + lead_time):
--               a scale-down takes effect at once, so what it leaves must
--               serve every bucket until a later order can arrive, not
--               only the window (_scale_span)
--   scale up  when required exceeds the capacity planned (live or
--             ordered): to required;
--   scale down, only once scale_cooldown has passed since the last scale
--             action, and by at least one instance (the band of one
--             instance between the two thresholds is the hysteresis):
--               scale_down = 'forecast' (the default): to need(span), so
--               capacity follows the forecast down as well as up, but
--               never below what the buckets before the window need;
--               scale_down = 'observed': only to max(need(span),
--               need(observed)), observed = the largest demand of the
--               buckets that ended during the last scale_cooldown (at
--               least the last bucket): capacity comes down only on demand
--               already seen;
--   hold      otherwise.
--
-- Decisions at an instant use only buckets that ended before it.  The
-- models of 56_models.sql give the grid, the periods, the method and its
-- kept parameters; the forecast of every decision applies them to the
-- data before it, which is what the worker does at each new bucket.
--
-- The replay decides at each bucket's start (new data) and, when lead_time
-- is not a whole number of steps, also lead_time before a later bucket
-- starts (the last moment a scale-up for it can be ordered): between those
-- instants the worker's decisions are the same (same data, same windows).
-- It models the actuator as production has it: a scale-up is live
-- lead_time after its decision, a scale-down at once (instances live or
-- still being provisioned above its target are released); capacity can
-- thus change inside a bucket, and each bucket reports the smallest
-- capacity live during it and its capacity-hours (time-weighted).  The replay
-- chooses the method (_select_method) and estimates its parameters
-- again at its start and once a day of replayed time, as daily training
-- would, and calibrates the bound on the errors of its own earlier
-- forecasts, as the worker does on the forecasts it stored.
--
-- This file creates only new objects, so the update script
-- (sql/upgrade/0.1.0--0.2.0/81_scaling.sql) is this same file.

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('group', 'scale_down', 'text', '"forecast"', NULL, NULL, '{forecast,observed}',
     'forecast: capacity comes down to what the forecast upper bound of every bucket from now until capacity ordered now is live needs; observed: also never below what the demand of the last scale_cooldown needs');

-- _scale_settings: the scaling inputs of a resource; raises when the
-- resource cannot be scaled (no scale_metric or unit_capacity)
CREATE FUNCTION driftmirror._scale_settings(p_group text, p_resource text,
                                            OUT group_id bigint, OUT resource_id bigint,
                                            OUT metric_id smallint, OUT metric text,
                                            OUT unit float8, OUT headroom float8,
                                            OUT lead_time interval, OUT min_capacity integer,
                                            OUT max_capacity integer, OUT cooldown interval,
                                            OUT capacity integer, OUT scale_down text,
                                            OUT next_decision interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    geff    jsonb;
    ropts   jsonb;
BEGIN
    group_id := driftmirror._group_id(p_group, false);
    resource_id := driftmirror._resource_id(group_id, p_group, p_resource);
    SELECT driftmirror._effective_options('group', g.options) INTO geff
      FROM driftmirror.resource_group g WHERE g.id = group_id;
    SELECT r.options, r.capacity INTO ropts, capacity
      FROM driftmirror.resource r WHERE r.id = resource_id;
    IF NOT ropts ? 'scale_metric' OR NOT ropts ? 'unit_capacity' THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no scaling policy', p_resource, p_group
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Scaling needs the resource options "scale_metric" and "unit_capacity".',
                  HINT = 'Set them with dm_alter_resource.';
    END IF;
    metric := ropts ->> 'scale_metric';
    SELECT d.id INTO metric_id FROM driftmirror.metric_def d WHERE d.name = metric;
    IF metric_id IS NULL THEN
        RAISE EXCEPTION 'scale_metric "%" of resource "%" is not registered', metric, p_resource
            USING ERRCODE = 'undefined_object';
    END IF;
    unit := (ropts ->> 'unit_capacity')::float8;
    headroom := (geff ->> 'headroom')::float8;
    lead_time := driftmirror._opt_interval(geff -> 'lead_time');
    min_capacity := (geff ->> 'min_capacity')::integer;
    max_capacity := (geff ->> 'max_capacity')::integer;
    cooldown := driftmirror._opt_interval(geff -> 'scale_cooldown');
    scale_down := geff ->> 'scale_down';
    -- the worker decides at every step of the group; two intervals leave
    -- room for a late step
    next_decision := 2 * driftmirror._opt_interval(geff -> 'interval');
END
$$;

-- _scale_need: instances that serve demand x with headroom, within bounds
CREATE FUNCTION driftmirror._scale_need(x float8, unit float8, headroom float8,
                                        min_capacity integer, max_capacity integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(greatest(coalesce(ceil(greatest(x, 0) * (1 + headroom) / unit - 1e-9)::bigint, 0),
                          min_capacity), max_capacity)::integer
$$;

-- _scale_decision: the policy (see the top of this file) for capacity
-- planned (live or ordered); upper is the window's upper bound, span the
-- upper bound of every bucket from now to the window's end, observed the
-- largest demand of the cooldown window, cooldown_over whether
-- scale_cooldown has passed since the last scale action, down the group's
-- scale_down
CREATE FUNCTION driftmirror._scale_decision(planned integer, upper float8, span float8,
                                            observed float8,
                                            unit float8, headroom float8,
                                            min_capacity integer, max_capacity integer,
                                            cooldown_over boolean, down text,
                                            OUT required integer, OUT target integer,
                                            OUT decision text, OUT reason text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seen integer := driftmirror._scale_need(observed, unit, headroom, min_capacity, max_capacity);
    safe integer := driftmirror._scale_need(greatest(span, upper), unit, headroom,
                                            min_capacity, max_capacity);
    lowest integer;
BEGIN
    required := driftmirror._scale_need(upper, unit, headroom, min_capacity, max_capacity);
    -- a scale-down takes effect at once: never below what the buckets
    -- until the window's end need
    lowest := CASE WHEN down = 'observed' THEN greatest(safe, seen) ELSE safe END;
    target := planned;
    decision := 'hold';
    IF required > planned THEN
        target := required;
        decision := 'scale_up';
        reason := format('forecast upper bound %s when capacity ordered now is live, plus %s%% headroom, needs %s instance(s) of %s; %s planned',
                         round(upper::numeric, 3), round((headroom * 100)::numeric, 1),
                         required, unit, planned)
                  || CASE WHEN required = max_capacity
                               AND ceil(upper * (1 + headroom) / unit - 1e-9) > max_capacity
                          THEN ' (capped at max_capacity)' ELSE '' END;
    ELSIF lowest < planned THEN
        IF cooldown_over THEN
            target := lowest;
            decision := 'scale_down';
            reason := format('forecast upper bound %s from now until capacity ordered now is replaced',
                             round(greatest(span, upper)::numeric, 3))
                      || CASE WHEN down = 'observed'
                              THEN format(' and the largest demand of the cooldown window %s both fit',
                                          round(observed::numeric, 3))
                              ELSE ' fits' END
                      || format(' in %s instance(s); %s planned', target, planned);
        ELSE
            reason := format('%s instance(s) would do, but scale_cooldown has not passed since the last scale action',
                             lowest);
        END IF;
    ELSE
        reason := format('%s planned instance(s) cover the forecast upper bound %s of the window (%s from now until it)%s',
                         planned, round(upper::numeric, 3), round(greatest(span, upper)::numeric, 3),
                         CASE WHEN down = 'observed'
                              THEN format(' and the demand seen %s', round(observed::numeric, 3))
                              ELSE '' END);
    END IF;
END
$$;

-- _scale_model: the model a decision at p_as_of uses: the newest stored
-- model of the series trained by then, else the recipe a model trained
-- then would have (not stored: id NULL); NULL when there is no data
CREATE FUNCTION driftmirror._scale_model(p_gid bigint, p_rid bigint, p_mid smallint,
                                         p_as_of timestamptz)
RETURNS driftmirror.model
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mdl     driftmirror.model;
    spec    record;
BEGIN
    mdl := driftmirror._model_current(p_rid, p_mid, p_as_of);
    IF mdl.id IS NOT NULL THEN
        RETURN mdl;
    END IF;
    spec := driftmirror._model_spec(p_gid, p_rid, p_mid, p_as_of);
    IF spec.step IS NULL THEN
        RETURN NULL;
    END IF;
    mdl.group_id := p_gid;
    mdl.resource_id := p_rid;
    mdl.metric_id := p_mid;
    mdl.method := 'auto';
    mdl.source := spec.source;
    mdl.step := spec.step;
    mdl.seasons := spec.seasons;
    mdl.window_points := spec.window_points;
    mdl.horizon_steps := spec.horizon_steps;
    RETURN mdl;
END
$$;

-- _scale_window: the forecast steps (1 = the bucket that contains the
-- decision, which lies p_offset after that bucket's start) that overlap
-- [decision + lead, decision + p_next + lead): capacity ordered at the
-- decision is live from its start, and the next decision, p_next later,
-- can order what is needed after its end
CREATE FUNCTION driftmirror._scale_window(p_offset interval, p_lead interval, p_step interval,
                                          p_next interval,
                                          OUT first integer, OUT last integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT floor(x.a / x.s)::integer + 1, greatest(ceil(x.e / x.s)::integer, floor(x.a / x.s)::integer + 1)
      FROM (SELECT extract(epoch FROM p_offset + p_lead)::float8 AS a,
                   extract(epoch FROM p_offset + p_next + p_lead)::float8 AS e,
                   extract(epoch FROM p_step)::float8 AS s) x
$$;

-- _scale_bound: the upper bound of one forecast bucket: yhat plus the 80 %
-- quantile of p_errors (at least 0) when 20 or more are known, else the
-- model's 95 % upper bound
CREATE FUNCTION driftmirror._scale_bound(p_yhat float8, p_hi95 float8, p_errors float8[])
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(e) >= 20
                THEN p_yhat + greatest(percentile_cont(0.8) WITHIN GROUP (ORDER BY e), 0)
                ELSE p_hi95 END
      FROM unnest(p_errors) e
$$;

-- _scale_errors: errors (observed - yhat) of the newest 60 stored
-- forecasts of a model's series made p_lead steps before their bucket,
-- whose bucket ended before p_as_of (one per bucket: the newest model's)
CREATE FUNCTION driftmirror._scale_errors(p_model driftmirror.model, p_lead integer,
                                          p_as_of timestamptz)
RETURNS float8[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- plpgsql: the worker's session keeps the plan
    RETURN (
    SELECT coalesce(array_agg(o.v - x.yhat), '{}')
      FROM (SELECT DISTINCT ON (f.ts) f.ts, f.yhat
              FROM driftmirror.forecast f
              JOIN driftmirror.model m ON m.id = f.model_id
             WHERE m.resource_id = p_model.resource_id AND m.metric_id = p_model.metric_id
               AND m.step = p_model.step
               AND f.ts = f.made_at + (p_lead - 1) * p_model.step
               AND f.ts + p_model.step <= p_as_of
               AND f.ts >= p_as_of - (p_lead + 64) * p_model.step
             ORDER BY f.ts DESC, m.version DESC
             LIMIT 60) x
     CROSS JOIN LATERAL (
           SELECT avg(y.value) AS v FROM driftmirror.metric y
            WHERE y.resource_id = p_model.resource_id AND y.metric_id = p_model.metric_id
              AND y.ts >= x.ts AND y.ts < x.ts + p_model.step) o
     WHERE o.v IS NOT NULL);
END
$$;

-- _scale_upper: the window's upper bound (see the top of this file) from
-- a forecast made at p_as_of (steps 1..; p_fc holds at least win.last)
-- and the errors of the forecasts stored before
CREATE FUNCTION driftmirror._scale_upper(p_model driftmirror.model, p_first integer, p_last integer,
                                         p_yhat float8[], p_hi95 float8[], p_as_of timestamptz)
RETURNS float8
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(driftmirror._scale_bound(p_yhat[i], p_hi95[i],
                                        driftmirror._scale_errors(p_model, i, p_as_of)))
      FROM generate_series(p_first, p_last) i
$$;

-- _scale_observed: the largest demand of the buckets that ended during the
-- scale_cooldown before p_as_of (at least the last bucket)
CREATE FUNCTION driftmirror._scale_observed(p_model driftmirror.model, p_cooldown interval,
                                            p_as_of timestamptz)
RETURNS float8
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(v)
      FROM unnest(driftmirror._model_series(
               p_model.resource_id, p_model.metric_id, p_model.source, p_model.step,
               date_bin(p_model.step, p_as_of, timestamptz '2000-01-01 00:00:00+00')
                 - greatest(1, ceil(extract(epoch FROM p_cooldown) / extract(epoch FROM p_model.step)))::integer * p_model.step,
               date_bin(p_model.step, p_as_of, timestamptz '2000-01-01 00:00:00+00'))) v
$$;

-- _scale_span: the upper bound a scale-down at p_as_of must keep: the
-- largest upper bound (_scale_bound) of the buckets from the one in
-- progress (step 1) to the window's end (p_last)
CREATE FUNCTION driftmirror._scale_span(p_model driftmirror.model, p_last integer,
                                        p_yhat float8[], p_hi95 float8[], p_as_of timestamptz)
RETURNS float8
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT driftmirror._scale_upper(p_model, 1, p_last, p_yhat, p_hi95, p_as_of)
$$;

-- _scale_last_action: when the last scale action of a resource that
-- changed its capacity started (before p_as_of)
CREATE FUNCTION driftmirror._scale_last_action(p_gid bigint, p_resource text,
                                               p_as_of timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(a.started_at)
      FROM driftmirror.action a
      JOIN driftmirror.resource_group g ON g.name = a.group_name AND g.id = p_gid
     WHERE a.resource_name = p_resource AND a.kind = 'scale' AND a.outcome = 'done'
       AND a.started_at < p_as_of
$$;

CREATE FUNCTION driftmirror.dm_capacity_plan("group" text, resource text,
                                             as_of timestamptz DEFAULT now())
RETURNS TABLE(metric text, observed float8, forecast_upper float8,
              required integer, current_capacity integer, decision text, target integer,
              reason text, model text)
LANGUAGE plpgsql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_as_of ALIAS FOR $3;
    st      record;
    mdl     driftmirror.model;
    win     record;
    fc_yhat float8[];
    fc_hi95 float8[];
    last_scale timestamptz;
    dec     record;
BEGIN
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    st := driftmirror._scale_settings($1, $2);
    mdl := driftmirror._scale_model(st.group_id, st.resource_id, st.metric_id, p_as_of);
    IF mdl.step IS NULL THEN
        RAISE EXCEPTION 'no data of metric "%" of resource "%" before %', st.metric, $2, p_as_of
            USING ERRCODE = 'no_data_found';
    END IF;
    win := driftmirror._scale_window(p_as_of - date_bin(mdl.step, p_as_of, timestamptz '2000-01-01 00:00:00+00'),
                                     st.lead_time, mdl.step, st.next_decision);
    SELECT array_agg(f.yhat ORDER BY f.ts), array_agg(f.hi95 ORDER BY f.ts) INTO fc_yhat, fc_hi95
      FROM driftmirror._model_forecast_at(mdl, p_as_of, win.last) f;
    forecast_upper := driftmirror._scale_upper(mdl, win.first, win.last, fc_yhat, fc_hi95, p_as_of);
    observed := driftmirror._scale_observed(mdl, st.cooldown, p_as_of);
    last_scale := driftmirror._scale_last_action(st.group_id, $2, p_as_of);
    dec := driftmirror._scale_decision(st.capacity, forecast_upper,
                                       driftmirror._scale_span(mdl, win.last, fc_yhat, fc_hi95, p_as_of),
                                       observed, st.unit,
                                       st.headroom, st.min_capacity, st.max_capacity,
                                       last_scale IS NULL OR p_as_of - last_scale >= st.cooldown,
                                       st.scale_down);
    metric := st.metric;
    required := dec.required;
    current_capacity := st.capacity;
    decision := dec.decision;
    target := dec.target;
    reason := dec.reason;
    model := coalesce(mdl.description, 'auto (no stored model yet)');
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_capacity_plan(text, text, timestamptz) IS
    'The scaling decision for a resource at as_of from the data before it: forecast upper bound, required and current capacity, decision, reason';

CREATE FUNCTION driftmirror.dm_backtest_scaling("group" text, resource text,
                                                starts timestamptz, ends timestamptz)
RETURNS TABLE(ts timestamptz, demand float8, capacity integer, decision text,
              capacity_hours float8)
LANGUAGE plpgsql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_starts ALIAS FOR $3;
    p_ends   ALIAS FOR $4;
    st      record;
    mdl     driftmirror.model;
    origin  CONSTANT timestamptz := timestamptz '2000-01-01 00:00:00+00';
    t_first timestamptz;
    nsteps  bigint;
    t0      timestamptz;
    vals    float8[];
    occ     jsonb;
    k       integer;
    offs    interval[];
    wins    integer[];
    win     record;
    past    float8[];
    fc_yhat float8[];
    fc_hi95 float8[];
    errs    float8[];
    bounds  float8[];
    ld      integer;
    cw      integer;
    w       integer;
    first_v integer;
    idx     integer;
    n       integer;
    t       timestamptz;
    ti      timestamptz;
    upper   float8;
    span    float8;
    seen    float8;
    planned integer;
    live    integer;
    last_order timestamptz;
    arr_ts  timestamptz[] := '{}';
    arr_cap integer[] := '{}';
    seg_at  timestamptz;
    low     integer;
    cap_h   float8;
    dec     record;
    j       bigint;
    method  text;
    params  float8[];
    selected_at timestamptz;
BEGIN
    IF p_starts IS NULL OR p_ends IS NULL OR NOT isfinite(p_starts) OR NOT isfinite(p_ends) THEN
        RAISE EXCEPTION 'starts and ends must be finite timestamps'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_ends <= p_starts THEN
        RAISE EXCEPTION 'ends (%) must be after starts (%)', p_ends, p_starts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    st := driftmirror._scale_settings($1, $2);
    mdl := driftmirror._scale_model(st.group_id, st.resource_id, st.metric_id, p_starts);
    IF mdl.step IS NULL THEN
        RAISE EXCEPTION 'no data of metric "%" of resource "%" before %', st.metric, $2, p_starts
            USING ERRCODE = 'no_data_found',
                  HINT = 'The replay forecasts from the data before each step: it needs history before starts.';
    END IF;
    t_first := date_bin(mdl.step, p_starts, origin);
    IF t_first < p_starts THEN
        t_first := t_first + mdl.step;
    END IF;
    nsteps := ceil(extract(epoch FROM p_ends - t_first) / extract(epoch FROM mdl.step));
    IF nsteps > 100000 THEN
        RAISE EXCEPTION 'the replay would take more than 100000 steps of %', mdl.step
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'At most 100000 steps are replayed in one call.';
    END IF;

    -- the decision instants of a bucket (offsets from its start): its
    -- start, and lead_time before a later bucket starts when lead_time is
    -- not a whole number of steps; each decides for the window up to the
    -- next instant (wins: first and last step of each)
    offs := ARRAY[interval '0'];
    IF extract(epoch FROM st.lead_time)::numeric % extract(epoch FROM mdl.step)::numeric > 0 THEN
        offs := offs || (mdl.step - make_interval(secs => (extract(epoch FROM st.lead_time)::numeric
                                                            % extract(epoch FROM mdl.step)::numeric)::float8));
    END IF;
    k := 1;
    wins := '{}';
    FOR n IN 1 .. cardinality(offs) LOOP
        win := driftmirror._scale_window(offs[n], st.lead_time, mdl.step,
                                         coalesce(offs[n + 1], mdl.step) - offs[n]);
        wins := wins || ARRAY[win.first, win.last];
        k := greatest(k, win.last);
    END LOOP;

    w := mdl.window_points;
    cw := greatest(1, ceil(extract(epoch FROM st.cooldown) / extract(epoch FROM mdl.step)))::integer;
    t0 := t_first - w * mdl.step;
    vals := driftmirror._model_series(mdl.resource_id, mdl.metric_id, mdl.source, mdl.step,
                                      t0, t_first + nsteps * mdl.step);
    SELECT min(i) INTO first_v FROM generate_subscripts(vals, 1) i
     WHERE i <= w AND vals[i] IS NOT NULL;
    IF first_v IS NULL THEN
        RAISE EXCEPTION 'no data of metric "%" of resource "%" in the % before %',
                        st.metric, $2, w * mdl.step, t_first
            USING ERRCODE = 'no_data_found';
    END IF;
    occ := driftmirror._model_events(mdl.group_id, mdl.resource_id, t0, mdl.step,
                                     t_first + (nsteps + k) * mdl.step);

    -- past[(b - 1) * k + l]: the forecast of bucket b made at lead l
    past := array_fill(NULL::float8, ARRAY[(cardinality(vals) + k) * k]);

    -- start with the capacity the last demand seen before starts needs
    SELECT vals[max(i)] INTO seen FROM generate_subscripts(vals, 1) i
     WHERE i <= w AND vals[i] IS NOT NULL;
    live := driftmirror._scale_need(seen, st.unit, st.headroom, st.min_capacity, st.max_capacity);
    planned := live;

    FOR j IN 0 .. nsteps - 1 LOOP
        idx := w + j::integer + 1;
        t := t_first + j * mdl.step;
        -- the method is chosen, and its parameters estimated, again once a
        -- day, as training would; the steps between apply them
        IF selected_at IS NULL OR t - selected_at >= interval '1 day' THEN
            method := (driftmirror._select_method(vals, greatest(first_v, idx - w), idx - 1,
                                                  mdl.seasons, mdl.horizon_steps, occ)).method;
            params := driftmirror._forecast_params(vals[greatest(first_v, idx - w):idx - 1],
                                                   mdl.seasons, mdl.horizon_steps, method, NULL, true);
            selected_at := t;
        END IF;
        SELECT array_agg(f.yhat ORDER BY f.step), array_agg(f.hi95 ORDER BY f.step)
          INTO fc_yhat, fc_hi95
          FROM driftmirror._forecast_series(vals, greatest(first_v, idx - w), idx - 1,
                                            mdl.seasons, method, k, occ, params) f;
        -- the upper bound of each bucket until the window's end,
        -- calibrated on the errors of this replay's own earlier forecasts
        -- at its lead (as the worker does on the forecasts it stored:
        -- _scale_errors)
        bounds := '{}';
        FOR ld IN 1 .. k LOOP
            SELECT coalesce(array_agg(x.e), '{}') INTO errs
              FROM (SELECT vals[b] - past[(b - 1) * k + ld] AS e
                      FROM generate_series(idx - 1, greatest(1, idx - ld - 64), -1) b
                     WHERE vals[b] IS NOT NULL AND past[(b - 1) * k + ld] IS NOT NULL
                     LIMIT 60) x;
            bounds := bounds || driftmirror._scale_bound(fc_yhat[ld], fc_hi95[ld], errs);
            past[(idx + ld - 2) * k + ld] := fc_yhat[ld];
        END LOOP;
        SELECT max(v) INTO seen FROM unnest(vals[greatest(1, idx - cw):idx - 1]) v;

        seg_at := t;
        low := NULL;
        cap_h := 0;
        decision := 'hold';
        -- each decision instant, then the step's end: the scale-ups that
        -- arrive before it (and at it, for an instant) come first
        FOR n IN 1 .. cardinality(offs) + 1 LOOP
            ti := t + coalesce(offs[n], mdl.step);
            WHILE cardinality(arr_ts) > 0
                  AND (arr_ts[1] < ti OR (arr_ts[1] = ti AND n <= cardinality(offs))) LOOP
                IF arr_ts[1] > seg_at THEN
                    cap_h := cap_h + live * extract(epoch FROM arr_ts[1] - seg_at) / 3600;
                    low := least(low, live);
                    seg_at := arr_ts[1];
                END IF;
                live := arr_cap[1];
                arr_ts := arr_ts[2:];
                arr_cap := arr_cap[2:];
            END LOOP;
            EXIT WHEN n > cardinality(offs);
            -- the window's bound (upper) sizes a scale-up, every bound
            -- until the window's end (span) a scale-down
            SELECT max(bounds[l]) FILTER (WHERE l >= wins[2 * n - 1]), max(bounds[l])
              INTO upper, span
              FROM generate_series(1, wins[2 * n]) l;
            dec := driftmirror._scale_decision(planned, upper, span, seen, st.unit, st.headroom,
                                               st.min_capacity, st.max_capacity,
                                               last_order IS NULL OR ti - last_order >= st.cooldown,
                                               st.scale_down);
            IF dec.decision = 'scale_down' OR (dec.decision = 'scale_up' AND st.lead_time = interval '0') THEN
                -- a scale-down takes effect at once (instances live or
                -- still being provisioned above the target are released
                -- now), and so does a scale-up when lead_time is 0
                IF ti > seg_at THEN
                    cap_h := cap_h + live * extract(epoch FROM ti - seg_at) / 3600;
                    low := least(low, live);
                    seg_at := ti;
                END IF;
                live := CASE WHEN dec.decision = 'scale_up' THEN dec.target ELSE least(live, dec.target) END;
                SELECT coalesce(array_agg(least(c, dec.target) ORDER BY o), '{}') INTO arr_cap
                  FROM unnest(arr_cap) WITH ORDINALITY u(c, o);
            ELSIF dec.decision = 'scale_up' THEN
                arr_ts := arr_ts || (ti + st.lead_time);
                arr_cap := arr_cap || dec.target;
            END IF;
            IF dec.decision <> 'hold' THEN
                planned := dec.target;
                last_order := ti;
                decision := dec.decision;
            END IF;
        END LOOP;
        cap_h := cap_h + live * extract(epoch FROM t + mdl.step - seg_at) / 3600;
        low := least(low, live);
        ts := t;
        demand := vals[idx];
        capacity := low;
        capacity_hours := cap_h;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_backtest_scaling(text, text, timestamptz, timestamptz) IS
    'Replay the scaling policy over stored history at the metric''s step: demand, the smallest capacity live in each step (a scale-up arrives lead_time after its decision, a scale-down takes effect at once), the decision of the step and its capacity-hours';

REVOKE ALL ON FUNCTION driftmirror._scale_settings(text, text),
    driftmirror._scale_need(float8, float8, float8, integer, integer),
    driftmirror._scale_decision(integer, float8, float8, float8, float8, float8, integer, integer, boolean, text),
    driftmirror._scale_model(bigint, bigint, smallint, timestamptz),
    driftmirror._scale_window(interval, interval, interval, interval),
    driftmirror._scale_bound(float8, float8, float8[]),
    driftmirror._scale_errors(driftmirror.model, integer, timestamptz),
    driftmirror._scale_upper(driftmirror.model, integer, integer, float8[], float8[], timestamptz),
    driftmirror._scale_observed(driftmirror.model, interval, timestamptz),
    driftmirror._scale_span(driftmirror.model, integer, float8[], float8[], timestamptz),
    driftmirror._scale_last_action(bigint, text, timestamptz),
    driftmirror.dm_capacity_plan(text, text, timestamptz),
    driftmirror.dm_backtest_scaling(text, text, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_capacity_plan(text, text, timestamptz),
    driftmirror.dm_backtest_scaling(text, text, timestamptz, timestamptz) TO driftmirror_admin;
