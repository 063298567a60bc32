-- 58_scaling_phase.sql: the worker's forecast phase (src/scaling_phase.c
-- drives it), the SQL actuator and dm_schedule_training.
--
-- Each group step, for every resource with a scaling policy (resource
-- options scale_metric and unit_capacity) in a group whose mode is not
-- 'off', _forecast_step:
--   1. updates the rolling accuracy of the current model at the first step
--      of each grid bucket: the one-step-ahead forecasts stored by earlier
--      steps against the demand then observed, over the last day
--      (model.rolling_mae, rolling_points; dm_models shows
--      rolling_error_ratio = rolling_mae / backtest_mae);
--   2. trains a new version when there is none, when the current one is a
--      day old (the schedule), or when its rolling error is over twice its
--      backtest error on at least 6 points (the regime changed);
--   3. forecasts as far as the window of the bucket's last step reaches
--      (lead_time plus two group intervals past the bucket's end) once
--      per grid bucket, with the model's kept parameters
--      (model.params: hw and mstl filter the fresh data with them instead
--      of estimating them again; the other methods fit again), stores it
--      (forecasts are kept two days and at least 64 steps: the bound's
--      calibration reads the errors of the last 60 at each lead); the
--      later steps of the bucket read the stored forecast; and takes the
--      decision of dm_capacity_plan (57_scaling.sql);
--   4. drift: while the drift phase (78_drift.sql, earlier in the same
--      step) finds the resource's mirror over drift_threshold or forecast
--      to be, a scale-down waits, and where the demand policy would hold
--      (or has no model yet) the capacity grows by one instance, at most
--      once per scale_cooldown (the decision's reason and inputs say so);
--   5. for scale_up / scale_down: mode forecast_only records it in the
--      action log (outcome 'proposed', once per target) and does nothing;
--      forecast_and_scale calls the resource's SQL actuator (resource option
--      scale_function: a function (group text, resource text, capacity
--      integer) owned by a superuser, called in the step's transaction), or
--      returns the HTTP request for the resource's actuator mirror (POST
--      <endpoint>/mirrors/<mirror>/scale with an idempotency key), which the
--      worker sends outside any transaction and records with _scale_outcome.
-- A failing resource is recorded in the action log (kind 'scale_error')
-- and does not stop the others.
--
-- This file creates only new objects, so the update script
-- (sql/upgrade/0.1.0--0.2.0/83_scaling_phase.sql) is this same file.

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('resource', 'scale_function', 'text', NULL, NULL, NULL, NULL,
     'SQL actuator: a function (group text, resource text, capacity integer), owned by a superuser, that the worker calls to scale in forecast_and_scale mode');

-- _scale_accuracy: refresh the rolling accuracy of a model from its stored
-- one-step-ahead forecasts of the last day
CREATE FUNCTION driftmirror._scale_accuracy(p_model driftmirror.model)
RETURNS driftmirror.model
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mdl driftmirror.model;
BEGIN
    UPDATE driftmirror.model m
       SET rolling_mae = a.mae, rolling_points = a.n, rolling_at = now()
      FROM (SELECT avg(abs(o.v - f.yhat)) AS mae, count(o.v)::integer AS n
              FROM driftmirror.forecast f
              CROSS JOIN LATERAL (
                    SELECT avg(x.value) AS v FROM driftmirror.metric x
                     WHERE x.resource_id = p_model.resource_id AND x.metric_id = p_model.metric_id
                       AND x.ts >= f.ts AND x.ts < f.ts + p_model.step) o
             WHERE f.model_id = p_model.id AND f.ts = f.made_at
               AND f.ts >= now() - interval '1 day' AND f.ts + p_model.step <= now()
               AND o.v IS NOT NULL) a
     WHERE m.id = p_model.id
    RETURNING m.* INTO mdl;
    RETURN mdl;
END
$$;

-- _scale_sql_actuator: call a resource's scale_function; raises when the
-- function is unknown or not owned by a superuser
CREATE FUNCTION driftmirror._scale_sql_actuator(p_fn text, p_group text, p_resource text,
                                                p_capacity integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
BEGIN
    fn := to_regprocedure(p_fn || '(text, text, integer)');
    IF fn IS NULL THEN
        RAISE EXCEPTION 'scale_function "%" of resource "%" is not a function (text, text, integer)', p_fn, p_resource
            USING ERRCODE = 'undefined_function';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
             WHERE p.oid = fn) THEN
        RAISE EXCEPTION 'scale_function "%" of resource "%" is not owned by a superuser', p_fn, p_resource
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The worker runs with the server''s identity; it calls only functions a superuser owns.';
    END IF;
    EXECUTE format('SELECT %s($1, $2, $3)', fn::regproc::text) USING p_group, p_resource, p_capacity;
END
$$;

-- _forecast_step: the forecast phase of one group (see the top of this
-- file); returns the HTTP scale requests to send
CREATE FUNCTION driftmirror._forecast_step(p_gid bigint)
RETURNS TABLE(action_id bigint, label text, url text, body text, idempotency_key text,
              token_file text, timeout_ms integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       record;
    mode    text;
    r       record;
    st      record;
    mdl     driftmirror.model;
    why     text;
    made    timestamptz;
    win     record;
    fc_yhat float8[];
    fc_hi95 float8[];
    upper   float8;
    span    float8;
    seen    float8;
    last_at timestamptz;
    dec     record;
    inputs  jsonb;
    aid     bigint;
    mir     record;
    t_now   timestamptz := now();
    reach   integer;
    drift   text;
BEGIN
    SELECT x.id, x.name, driftmirror._effective_options('group', x.options) AS eff INTO g
      FROM driftmirror.resource_group x WHERE x.id = p_gid;
    mode := g.eff ->> 'mode';
    IF g.id IS NULL OR mode = 'off' THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT x.id, x.name, x.options FROM driftmirror.resource x
         WHERE x.group_id = p_gid AND x.options ? 'scale_metric' AND x.options ? 'unit_capacity'
         ORDER BY x.name
    LOOP
        BEGIN
            st := driftmirror._scale_settings(g.name, r.name);
            -- the drift of the resource's mirror, as the drift phase
            -- decided earlier in this step: over drift_threshold, or
            -- forecast to be
            SELECT d.reason INTO drift
              FROM driftmirror.drift_state d JOIN driftmirror.mirror m ON m.id = d.mirror_id
             WHERE m.resource_id = r.id AND d.decision <> 'ok'
             ORDER BY d.checked_at DESC LIMIT 1;
            last_at := driftmirror._scale_last_action(p_gid, r.name, t_now);
            mdl := driftmirror._model_current(r.id, st.metric_id);
            why := NULL;
            IF mdl.id IS NULL THEN
                why := 'no model yet';
            ELSE
                -- nothing new is observed inside a bucket: the accuracy is
                -- refreshed at the first step of each
                IF mdl.rolling_at IS NULL
                   OR mdl.rolling_at < date_bin(mdl.step, t_now, timestamptz '2000-01-01 00:00:00+00') THEN
                    mdl := driftmirror._scale_accuracy(mdl);
                END IF;
                IF t_now - mdl.trained_at >= interval '1 day' THEN
                    why := 'daily schedule';
                ELSIF mdl.rolling_points >= 6
                      AND mdl.rolling_mae > 2 * greatest(mdl.backtest_mae, 1e-9) THEN
                    why := format('rolling error %s is over twice the backtest error %s',
                                  round(mdl.rolling_mae::numeric, 3), round(mdl.backtest_mae::numeric, 3));
                END IF;
            END IF;
            IF why IS NOT NULL THEN
                mdl := driftmirror._train_model(p_gid, r.id, st.metric_id, 'worker: ' || why);
                IF mdl.id IS NOT NULL THEN
                    PERFORM driftmirror._log_action(g.name, r.name, 'train', 'worker: ' || why,
                                                    jsonb_build_object('metric', st.metric, 'version', mdl.version,
                                                                       'model', mdl.description,
                                                                       'backtest_mase', mdl.backtest_mase));
                END IF;
            END IF;

            IF mdl.id IS NULL THEN
                -- not enough data for a model yet: only drift decides
                IF drift IS NULL THEN
                    CONTINUE;
                END IF;
                upper := NULL;
                span := NULL;
                seen := NULL;
                SELECT st.capacity AS required, st.capacity AS target, 'hold'::text AS decision,
                       'no model of the demand yet'::text AS reason
                  INTO dec;
            ELSE
                -- forecast (stored once per bucket) and decision
                made := date_bin(mdl.step, t_now, timestamptz '2000-01-01 00:00:00+00');
                win := driftmirror._scale_window(t_now - made, st.lead_time, mdl.step, st.next_decision);
                -- a bucket's forecast is made once (at its first step, or by
                -- the training), with the model's kept parameters, as far as
                -- the window of its last step reaches; the later steps of the
                -- bucket read it
                reach := (driftmirror._scale_window(mdl.step, st.lead_time, mdl.step, st.next_decision)).last;
                IF NOT EXISTS (SELECT FROM driftmirror.forecast f
                                WHERE f.model_id = mdl.id AND f.made_at = made
                                  AND f.ts = made + (reach - 1) * mdl.step) THEN
                    INSERT INTO driftmirror.forecast (model_id, made_at, ts, yhat, lo80, hi80, lo95, hi95)
                    SELECT mdl.id, made, f.*
                      FROM driftmirror._model_forecast_at(mdl, t_now, reach) f
                    ON CONFLICT DO NOTHING;
                END IF;
                -- forecasts are kept two days, and at least 64 steps: accuracy
                -- looks at the last one, the bound's calibration at 60
                DELETE FROM driftmirror.forecast f
                 WHERE f.model_id = mdl.id
                   AND f.made_at < t_now - greatest(interval '2 days', 64 * mdl.step);
                SELECT array_agg(f.yhat ORDER BY f.ts), array_agg(f.hi95 ORDER BY f.ts)
                  INTO fc_yhat, fc_hi95
                  FROM driftmirror.forecast f
                 WHERE f.model_id = mdl.id AND f.made_at = made;
                upper := driftmirror._scale_upper(mdl, win.first, win.last, fc_yhat, fc_hi95, t_now);
                seen := driftmirror._scale_observed(mdl, st.cooldown, t_now);
                span := driftmirror._scale_span(mdl, win.last, fc_yhat, fc_hi95, t_now);
                dec := driftmirror._scale_decision(st.capacity, upper, span, seen, st.unit, st.headroom,
                                                   st.min_capacity, st.max_capacity,
                                                   last_at IS NULL OR t_now - last_at >= st.cooldown,
                                                   st.scale_down);
            END IF;

            -- drift of the mirror: scale-downs wait, and capacity grows by
            -- one instance per scale_cooldown while it lasts (the demand
            -- policy alone would hold)
            IF drift IS NOT NULL THEN
                IF dec.decision = 'scale_down' THEN
                    dec.decision := 'hold';
                    dec.target := st.capacity;
                ELSIF dec.decision = 'hold' AND st.capacity < st.max_capacity
                      AND (last_at IS NULL OR t_now - last_at >= st.cooldown) THEN
                    dec.decision := 'scale_up';
                    dec.target := st.capacity + 1;
                    dec.reason := format('drift of its mirror (%s): one more instance than the %s planned, at most one per scale_cooldown (%s)',
                                         drift, st.capacity, dec.reason);
                END IF;
            END IF;
            IF dec.decision = 'hold' THEN
                CONTINUE;
            END IF;
            inputs := jsonb_build_object('decision', dec.decision, 'capacity', st.capacity,
                                         'target', dec.target, 'required', dec.required,
                                         'forecast_upper', upper, 'span_upper', span,
                                         'observed', seen,
                                         'metric', st.metric, 'unit_capacity', st.unit,
                                         'headroom', st.headroom, 'lead_time', st.lead_time,
                                         'scale_down', st.scale_down,
                                         'model_version', mdl.version, 'model', mdl.description,
                                         'drift', drift, 'mode', mode);

            IF mode = 'forecast_only' THEN
                -- record a proposal once per target
                IF NOT EXISTS (SELECT FROM driftmirror.action a
                                WHERE a.group_name = g.name AND a.resource_name = r.name
                                  AND a.kind = 'scale'
                                  AND a.id = (SELECT max(b.id) FROM driftmirror.action b
                                               WHERE b.group_name = g.name AND b.resource_name = r.name
                                                 AND b.kind = 'scale')
                                  AND a.outcome = 'proposed'
                                  AND (a.inputs ->> 'target')::integer = dec.target) THEN
                    PERFORM driftmirror._log_action(g.name, r.name, 'scale',
                                                    dec.reason || ' (mode forecast_only: not acted on)',
                                                    inputs, 'proposed');
                END IF;
                CONTINUE;
            END IF;

            IF r.options ? 'scale_function' THEN
                PERFORM driftmirror._scale_sql_actuator(r.options ->> 'scale_function', g.name, r.name,
                                                        dec.target);
                UPDATE driftmirror.resource x SET capacity = dec.target, updated_at = now()
                 WHERE x.id = r.id;
                PERFORM driftmirror._log_action(g.name, r.name, 'scale', dec.reason,
                                                inputs || jsonb_build_object('actuator', 'sql'), 'done');
                CONTINUE;
            END IF;

            SELECT m.actuator_name, m.actuator_key, m.options, x.endpoint, x.options AS ropts INTO mir
              FROM driftmirror.mirror m JOIN driftmirror.resource x ON x.id = m.resource_id
             WHERE m.resource_id = r.id AND m.actuator_key IS NOT NULL AND m.state = 'mirroring';
            IF mir.actuator_key IS NULL THEN
                PERFORM driftmirror._log_action(g.name, r.name, 'scale',
                                                dec.reason || ' (no actuator: the resource has no scale_function and no actuator mirror in state mirroring)',
                                                inputs, 'skipped');
                CONTINUE;
            END IF;
            INSERT INTO driftmirror.action (group_name, resource_name, kind, reason, inputs, outcome)
            VALUES (g.name, r.name, 'scale', dec.reason,
                    inputs || jsonb_build_object('actuator', 'http'), 'requested')
            RETURNING id INTO aid;
            action_id := aid;
            label := format('%s/%s actuator', g.name, r.name);
            url := rtrim(mir.endpoint, '/') || '/mirrors/' || mir.actuator_name || '/scale';
            body := jsonb_build_object('mirror', mir.actuator_name, 'capacity', dec.target,
                                       'decision', dec.decision, 'reason', dec.reason)::text;
            idempotency_key := format('dm-%s-scale-%s', mir.actuator_key, aid);
            token_file := mir.ropts ->> 'bearer_token_file';
            timeout_ms := (extract(epoch FROM coalesce(driftmirror._opt_interval(mir.options -> 'actuator_timeout'),
                                                       interval '10 seconds')) * 1000)::integer;
            RETURN NEXT;
        EXCEPTION WHEN OTHERS THEN
            PERFORM driftmirror._log_action(g.name, r.name, 'scale_error', SQLERRM,
                                            jsonb_build_object('sqlstate', SQLSTATE), 'failed');
        END;
    END LOOP;
END
$$;

-- _scale_outcome: record the answer to an HTTP scale request; a 2xx
-- answer sets the resource's capacity to the target
CREATE FUNCTION driftmirror._scale_outcome(p_action bigint, p_answered boolean, p_status integer,
                                           p_error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a driftmirror.action;
BEGIN
    SELECT * INTO a FROM driftmirror.action x WHERE x.id = p_action;
    IF a.id IS NULL THEN
        RETURN;
    END IF;
    IF p_answered AND p_status BETWEEN 200 AND 299 THEN
        UPDATE driftmirror.resource x SET capacity = (a.inputs ->> 'target')::integer, updated_at = now()
          FROM driftmirror.resource_group g
         WHERE g.name = a.group_name AND x.group_id = g.id AND x.name = a.resource_name;
        UPDATE driftmirror.action x SET outcome = 'done', finished_at = clock_timestamp()
         WHERE x.id = p_action;
    ELSE
        UPDATE driftmirror.action x
           SET outcome = 'failed', finished_at = clock_timestamp(),
               reason = x.reason || '; ' || CASE WHEN p_answered
                                                THEN format('the actuator answered HTTP %s', p_status)
                                                ELSE coalesce(p_error, 'no answer') END
         WHERE x.id = p_action;
    END IF;
END
$$;

-- dm_schedule_training: a pg_cron job that trains the group's models on a
-- schedule (cron NULL removes it); returns the job id, or NULL
CREATE FUNCTION driftmirror.dm_schedule_training("group" text, cron text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    gid     bigint;
    job     text;
    jid     bigint;
BEGIN
    gid := driftmirror._group_id(p_group, false);
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE EXTENSION pg_cron here (cron.database_name must name this database).';
    END IF;
    job := 'driftmirror_train_' || gid;
    IF cron IS NULL THEN
        IF EXISTS (SELECT FROM cron.job j WHERE j.jobname = job) THEN
            PERFORM cron.unschedule(job);
        END IF;
        PERFORM driftmirror._log_action(p_group, NULL, 'schedule_training', 'dm_schedule_training',
                                        jsonb_build_object('cron', NULL));
        RETURN NULL;
    END IF;
    BEGIN
        jid := cron.schedule(job, cron, format('SELECT driftmirror.dm_train(%L)', p_group));
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'invalid cron schedule "%"', cron
            USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    PERFORM driftmirror._log_action(p_group, NULL, 'schedule_training', 'dm_schedule_training',
                                    jsonb_build_object('cron', cron, 'job', jid));
    RETURN jid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_schedule_training(text, text) IS
    'Create (or replace) the pg_cron job that trains the group''s models on a cron schedule; NULL removes it';

REVOKE ALL ON FUNCTION driftmirror._scale_accuracy(driftmirror.model),
    driftmirror._scale_sql_actuator(text, text, text, integer),
    driftmirror._forecast_step(bigint),
    driftmirror._scale_outcome(bigint, boolean, integer, text),
    driftmirror.dm_schedule_training(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_schedule_training(text, text) TO driftmirror_admin;
