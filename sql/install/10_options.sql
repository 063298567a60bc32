-- 10_options.sql: option definitions and their validation.
--
-- Every option of a group, resource or event is a row of
-- driftmirror.option_def: its type, default, bounds and meaning.  Later
-- features add their options as rows here; _validate_options enforces them
-- and names the offending key and value in its error.

CREATE TABLE driftmirror.option_def (
    scope         text NOT NULL CHECK (scope IN ('group', 'resource', 'event', 'mirror')),
    key           text NOT NULL,
    type          text NOT NULL CHECK (type IN ('interval', 'number', 'integer', 'boolean', 'text', 'object')),
    default_value jsonb,
    min_value     text,
    max_value     text,
    allowed       text[],
    description   text NOT NULL,
    PRIMARY KEY (scope, key)
);

COMMENT ON TABLE driftmirror.option_def IS
    'Known options of groups, resources, events and mirrors: type, default, bounds';

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('group', 'interval', 'interval', '"10 seconds"', '1 second', '1 day', NULL,
     'how often the worker runs the monitoring step of the group'),
    ('group', 'mode', 'text', '"forecast_only"', NULL, NULL,
     '{off,forecast_only,forecast_and_scale}',
     'off: monitor only; forecast_only: forecast and record what would be done; forecast_and_scale: also act'),
    ('group', 'drift_threshold', 'number', '1', '0.001', '10', NULL,
     'drift.score (lag, latency ratio, apply errors and failed transactions per transaction beyond the primary''s of a mirror, each over its limit: 1 = at the limit) at which drift, now or forecast over lead_time, holds auto-promotion and shift plans and scales the mirror''s resource'),
    ('group', 'forecast_horizon', 'interval', '"1 hour"', '1 minute', '90 days', NULL,
     'how far ahead load and drift are forecast'),
    ('group', 'lead_time', 'interval', '"5 minutes"', '0', '1 day', NULL,
     'provisioning time: how early capacity must be requested'),
    ('group', 'headroom', 'number', '0.2', '0', '10', NULL,
     'spare capacity kept above the forecast upper bound, as a fraction'),
    ('group', 'min_capacity', 'integer', '1', '0', '100000', NULL,
     'fewest mirror instances the group keeps'),
    ('group', 'max_capacity', 'integer', '10', '0', '100000', NULL,
     'most mirror instances the group may scale to'),
    ('group', 'scale_cooldown', 'interval', '"10 minutes"', '0', '1 day', NULL,
     'minimum time after a scale action before capacity is reduced'),
    ('group', 'retention', 'interval', '"30 days"', '1 hour', '3650 days', NULL,
     'how long raw metrics are kept'),
    ('group', 'promote_timeout', 'interval', '"30 seconds"', '1 second', '1 hour', NULL,
     'a promotion that has not flipped routes by then is rolled back'),
    ('group', 'auto_promote', 'boolean', 'false', NULL, NULL, NULL,
     'whether the worker may promote a mirror on its own when the thresholds hold'),
    ('group', 'auto_promote_window', 'interval', '"15 minutes"', '1 minute', '7 days', NULL,
     'how long the auto-promotion thresholds must hold'),
    ('group', 'auto_promote_max_lag_bytes', 'integer', '1048576', '0', '1000000000000', NULL,
     'largest replication lag in bytes that allows auto-promotion'),
    ('group', 'auto_promote_max_lag_seconds', 'number', '5', '0', '3600', NULL,
     'largest replication lag in seconds that allows auto-promotion'),
    ('group', 'auto_promote_max_latency_ratio', 'number', '1.2', '1', '100', NULL,
     'largest latency ratio mirror/primary (medians over auto_promote_window, floored at 1 ms) that allows auto-promotion'),
    ('resource', 'role', 'text', '"primary"', NULL, NULL, '{primary,mirror}',
     'whether the resource is a primary or a mirror of another'),
    ('resource', 'capacity', 'integer', '1', '0', '100000', NULL,
     'instances currently provisioned'),
    ('resource', 'description', 'text', NULL, NULL, NULL, NULL,
     'free text for people'),
    ('event', 'effect', 'number', NULL, '-1000000000', '1000000000', NULL,
     'expected effect on load while the event runs (a hint; models estimate their own)'),
    ('event', 'resource', 'text', NULL, NULL, NULL, NULL,
     'the resource the event affects (default: the whole group)'),
    ('event', 'window_before', 'interval', '"0"', '0', '30 days', NULL,
     'how long before the start the event already has an effect'),
    ('event', 'window_after', 'interval', '"0"', '0', '30 days', NULL,
     'how long after the end the event still has an effect'),
    ('event', 'description', 'text', NULL, NULL, NULL, NULL,
     'free text for people');

-- _opt_interval: an interval option value (a string, or a number of seconds)
CREATE FUNCTION driftmirror._opt_interval(v jsonb)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE jsonb_typeof(v)
           WHEN 'number' THEN make_interval(secs => (v #>> '{}')::float8)
           WHEN 'string' THEN (v #>> '{}')::interval
           END
$$;

-- _bad_option: raise the error for an invalid option value
CREATE FUNCTION driftmirror._bad_option(scope text, key text, v jsonb, expected text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'invalid value for % option "%": %', scope, key, v::text
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = expected;
END
$$;

-- _validate_options: check every key and value of an options object against
-- option_def; returns the object with JSON nulls removed.  Raises an error
-- naming the first bad key or value.
CREATE FUNCTION driftmirror._validate_options(p_scope text, p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k       text;
    v       jsonb;
    d       driftmirror.option_def;
    iv      interval;
    num     numeric;
    known   text;
BEGIN
    IF p_options IS NULL THEN
        RAISE EXCEPTION '% options must not be null', p_scope
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass ''{}'' for no options.';
    END IF;
    IF jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION '% options must be a JSON object, not %', p_scope, jsonb_typeof(p_options)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    p_options := jsonb_strip_nulls(p_options);

    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_options) e ORDER BY e.key
    LOOP
        SELECT * INTO d FROM driftmirror.option_def o
         WHERE o.scope = p_scope AND o.key = k;
        IF NOT FOUND THEN
            SELECT string_agg(o.key, ', ' ORDER BY o.key) INTO known
              FROM driftmirror.option_def o WHERE o.scope = p_scope;
            RAISE EXCEPTION 'unknown % option "%"', p_scope, k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Known %s options: %s.', p_scope, known);
        END IF;

        CASE d.type
        WHEN 'interval' THEN
            BEGIN
                iv := driftmirror._opt_interval(v);
            EXCEPTION WHEN data_exception OR syntax_error THEN
                iv := NULL;
            END;
            IF iv IS NULL OR iv < d.min_value::interval OR iv > d.max_value::interval THEN
                PERFORM driftmirror._bad_option(p_scope, k, v,
                    format('The value must be an interval (a string such as ''10 seconds'', or a number of seconds) from %s to %s.',
                           d.min_value, d.max_value));
            END IF;
        WHEN 'number', 'integer' THEN
            IF jsonb_typeof(v) <> 'number' THEN
                PERFORM driftmirror._bad_option(p_scope, k, v,
                    format('The value must be a JSON number from %s to %s.', d.min_value, d.max_value));
            END IF;
            num := (v #>> '{}')::numeric;
            IF (d.type = 'integer' AND num <> trunc(num))
               OR num < d.min_value::numeric OR num > d.max_value::numeric THEN
                PERFORM driftmirror._bad_option(p_scope, k, v,
                    format('The value must be %s from %s to %s.',
                           CASE d.type WHEN 'integer' THEN 'a whole number' ELSE 'a number' END,
                           d.min_value, d.max_value));
            END IF;
        WHEN 'boolean' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                PERFORM driftmirror._bad_option(p_scope, k, v,
                    'The value must be true or false.');
            END IF;
        WHEN 'text' THEN
            IF jsonb_typeof(v) <> 'string'
               OR (d.allowed IS NOT NULL AND NOT (v #>> '{}') = ANY (d.allowed))
               OR length(v #>> '{}') > 1000 THEN
                PERFORM driftmirror._bad_option(p_scope, k, v,
                    CASE WHEN d.allowed IS NULL
                         THEN 'The value must be a string of at most 1000 characters.'
                         ELSE format('The value must be one of: %s.', array_to_string(d.allowed, ', '))
                    END);
            END IF;
        WHEN 'object' THEN
            IF jsonb_typeof(v) <> 'object' OR length(v::text) > 10000 THEN
                PERFORM driftmirror._bad_option(p_scope, k, v,
                    'The value must be a JSON object of at most 10000 characters.');
            END IF;
        END CASE;
    END LOOP;

    RETURN p_options;
END
$$;

-- _effective_options: the defaults of a scope overlaid with the options set
CREATE FUNCTION driftmirror._effective_options(p_scope text, p_options jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(o.key, o.default_value)
                        FILTER (WHERE o.default_value IS NOT NULL), '{}')
           || coalesce(p_options, '{}')
      FROM driftmirror.option_def o
     WHERE o.scope = p_scope
$$;

-- _validate_group_options: per-key checks, then the checks across keys
CREATE FUNCTION driftmirror._validate_group_options(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opts jsonb := driftmirror._validate_options('group', p_options);
    eff  jsonb := driftmirror._effective_options('group', opts);
BEGIN
    IF (eff ->> 'min_capacity')::numeric > (eff ->> 'max_capacity')::numeric THEN
        RAISE EXCEPTION 'group option "min_capacity" (%) is greater than "max_capacity" (%)',
            eff -> 'min_capacity', eff -> 'max_capacity'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF driftmirror._opt_interval(eff -> 'lead_time')
       > driftmirror._opt_interval(eff -> 'forecast_horizon') THEN
        RAISE EXCEPTION 'group option "lead_time" (%) is longer than "forecast_horizon" (%)',
            eff -> 'lead_time', eff -> 'forecast_horizon'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN opts;
END
$$;
