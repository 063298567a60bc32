-- 57_scaling.sql: the scaling policy as replayable decisions:
-- dm_capacity_plan (the decision at one instant) and dm_backtest_scaling
-- (the policy replayed over stored history).
--
-- The policy, for a resource with the options scale_metric (the demand
-- metric) and unit_capacity (demand one instance serves), under its
-- group's lead_time, headroom, min_capacity, max_capacity and
-- scale_cooldown:
--
--   need(x)   = ceil(x * (1 + headroom) / unit_capacity), within
--               [min_capacity, max_capacity]
--   required  = need(upper), upper = the largest 95 % upper bound of the
--               forecast over the buckets from the decision until the
--               capacity ordered now and the next order could arrive
--               (lead_time plus one step)
--   scale up  at once when required exceeds the capacity planned (live or
--             ordered);
--   scale down only to max(required, need(observed)), observed = the
--             largest demand seen during the last scale_cooldown, and only
--             once scale_cooldown has passed since the last scale action:
--             capacity goes up on the forecast and comes down on what was
--             seen (the hysteresis between the two thresholds);
--   hold      otherwise.
--
-- Decisions at an instant use only buckets that ended before it.  The
-- models of 56_models.sql give the grid and the periods; the forecast of
-- every decision refits the model's method on the data before it, which
-- is what the worker does at each step.  The replay chooses the method
-- again (_select_method) at its start and once a day of replayed time, as
-- daily training would.
--
-- This file creates only new objects, so the update script
-- (sql/upgrade/0.1.0--0.2.0/81_scaling.sql) is this same file.

-- _scale_settings: the scaling inputs of a resource; raises when the
-- resource cannot be scaled (no scale_metric or unit_capacity)
CREATE FUNCTION driftmirror._scale_settings(p_group text, p_resource text,
                                            OUT group_id bigint, OUT resource_id bigint,
                                            OUT metric_id smallint, OUT metric text,
                                            OUT unit float8, OUT headroom float8,
                                            OUT lead_time interval, OUT min_capacity integer,
                                            OUT max_capacity integer, OUT cooldown interval,
                                            OUT capacity integer)
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
-- planned (live or ordered); cooldown_over says whether scale_cooldown has
-- passed since the last scale action
CREATE FUNCTION driftmirror._scale_decision(planned integer, upper float8, observed float8,
                                            unit float8, headroom float8,
                                            min_capacity integer, max_capacity integer,
                                            cooldown_over boolean,
                                            OUT required integer, OUT target integer,
                                            OUT decision text, OUT reason text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seen integer := driftmirror._scale_need(observed, unit, headroom, min_capacity, max_capacity);
BEGIN
    required := driftmirror._scale_need(upper, unit, headroom, min_capacity, max_capacity);
    target := planned;
    decision := 'hold';
    IF required > planned THEN
        target := required;
        decision := 'scale_up';
        reason := format('forecast upper bound %s within the lead time plus %s%% headroom needs %s instance(s) of %s; %s planned',
                         round(upper::numeric, 3), round((headroom * 100)::numeric, 1),
                         required, unit, planned)
                  || CASE WHEN required = max_capacity
                               AND ceil(upper * (1 + headroom) / unit - 1e-9) > max_capacity
                          THEN ' (capped at max_capacity)' ELSE '' END;
    ELSIF greatest(required, seen) < planned THEN
        IF cooldown_over THEN
            target := greatest(required, seen);
            decision := 'scale_down';
            reason := format('forecast upper bound %s and the largest demand of the cooldown window %s both fit in %s instance(s); %s planned',
                             round(upper::numeric, 3), round(observed::numeric, 3), target, planned);
        ELSE
            reason := format('%s instance(s) would do, but scale_cooldown has not passed since the last scale action',
                             greatest(required, seen));
        END IF;
    ELSE
        reason := format('%s planned instance(s) cover the forecast upper bound %s and the demand seen %s',
                         planned, round(upper::numeric, 3), round(observed::numeric, 3));
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

-- _scale_steps: forecast steps a decision looks at: until the capacity
-- ordered now and the next order could both have arrived
CREATE FUNCTION driftmirror._scale_steps(p_lead interval, p_step interval)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ceil(extract(epoch FROM p_lead) / extract(epoch FROM p_step))::integer + 1
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
    k       integer;
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
    k := driftmirror._scale_steps(st.lead_time, mdl.step);
    SELECT max(f.hi95) INTO forecast_upper
      FROM driftmirror._model_forecast_at(mdl, p_as_of, k) f;
    observed := driftmirror._scale_observed(mdl, st.cooldown, p_as_of);
    last_scale := driftmirror._scale_last_action(st.group_id, $2, p_as_of);
    dec := driftmirror._scale_decision(st.capacity, forecast_upper, observed, st.unit,
                                       st.headroom, st.min_capacity, st.max_capacity,
                                       last_scale IS NULL OR p_as_of - last_scale >= st.cooldown);
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
RETURNS TABLE(ts timestamptz, demand float8, capacity integer, decision text)
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
    cw      integer;
    w       integer;
    first_v integer;
    idx     integer;
    t       timestamptz;
    upper   float8;
    seen    float8;
    planned integer;
    live    integer;
    last_order timestamptz;
    arr_ts  timestamptz[] := '{}';
    arr_cap integer[] := '{}';
    dec     record;
    j       bigint;
    method  text;
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

    w := mdl.window_points;
    k := driftmirror._scale_steps(st.lead_time, mdl.step);
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

    -- start with the capacity the last demand seen before starts needs
    SELECT vals[max(i)] INTO seen FROM generate_subscripts(vals, 1) i
     WHERE i <= w AND vals[i] IS NOT NULL;
    live := driftmirror._scale_need(seen, st.unit, st.headroom, st.min_capacity, st.max_capacity);
    planned := live;

    FOR j IN 0 .. nsteps - 1 LOOP
        idx := w + j::integer + 1;
        t := t_first + j * mdl.step;
        -- the method is chosen again once a day, as training would
        IF selected_at IS NULL OR t - selected_at >= interval '1 day' THEN
            method := (driftmirror._select_method(vals, greatest(first_v, idx - w), idx - 1,
                                                  mdl.seasons, mdl.horizon_steps, occ)).method;
            selected_at := t;
        END IF;
        SELECT max(f.hi95) INTO upper
          FROM driftmirror._forecast_series(vals, greatest(first_v, idx - w), idx - 1,
                                            mdl.seasons, method, k, occ) f;
        SELECT max(v) INTO seen FROM unnest(vals[greatest(1, idx - cw):idx - 1]) v;
        dec := driftmirror._scale_decision(planned, upper, seen, st.unit, st.headroom,
                                           st.min_capacity, st.max_capacity,
                                           last_order IS NULL OR t - last_order >= st.cooldown);
        IF dec.decision <> 'hold' THEN
            planned := dec.target;
            last_order := t;
            arr_ts := arr_ts || (t + st.lead_time);
            arr_cap := arr_cap || dec.target;
        END IF;
        -- orders that have arrived by now, in order
        WHILE cardinality(arr_ts) > 0 AND arr_ts[1] <= t LOOP
            live := arr_cap[1];
            arr_ts := arr_ts[2:];
            arr_cap := arr_cap[2:];
        END LOOP;
        ts := t;
        demand := vals[idx];
        capacity := live;
        decision := dec.decision;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_backtest_scaling(text, text, timestamptz, timestamptz) IS
    'Replay the scaling policy over stored history at the metric''s step: demand, live capacity (orders arrive lead_time after their decision) and the decision of each step';

REVOKE ALL ON FUNCTION driftmirror._scale_settings(text, text),
    driftmirror._scale_need(float8, float8, float8, integer, integer),
    driftmirror._scale_decision(integer, float8, float8, float8, float8, integer, integer, boolean),
    driftmirror._scale_model(bigint, bigint, smallint, timestamptz),
    driftmirror._scale_steps(interval, interval),
    driftmirror._scale_observed(driftmirror.model, interval, timestamptz),
    driftmirror._scale_last_action(bigint, text, timestamptz),
    driftmirror.dm_capacity_plan(text, text, timestamptz),
    driftmirror.dm_backtest_scaling(text, text, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_capacity_plan(text, text, timestamptz),
    driftmirror.dm_backtest_scaling(text, text, timestamptz, timestamptz) TO driftmirror_admin;
