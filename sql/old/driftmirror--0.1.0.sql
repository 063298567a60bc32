-- driftmirror 0.1.0 install script, kept as released so that the upgrade test can install it (do not edit)
\echo Use "CREATE EXTENSION driftmirror" to load this file. \quit

-- ---- sql/install/00_setup.sql ----
-- 00_setup.sql: preconditions and roles.
--
-- The extension lives in schema driftmirror (see driftmirror.control).  A
-- schema of that name created beforehand by another role would let that role
-- plant objects among ours, so refuse it.  Roles are cluster-wide: create
-- them once, reuse them in every database that has the extension.

DO $setup$
BEGIN
    IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n
         WHERE n.nspname OPERATOR(pg_catalog.=) 'driftmirror')
       OPERATOR(pg_catalog.<>)
       (SELECT r.oid FROM pg_catalog.pg_roles r
         WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION 'schema "driftmirror" exists and is owned by another role'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop or rename that schema, then create the extension as the role that should own it.';
    END IF;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'driftmirror_monitor') THEN
        CREATE ROLE driftmirror_monitor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'driftmirror_admin') THEN
        CREATE ROLE driftmirror_admin NOLOGIN;
    END IF;
END
$setup$;

-- the admin sees everything the monitor sees
GRANT driftmirror_monitor TO driftmirror_admin;

COMMENT ON ROLE driftmirror_admin IS
    'driftmirror: may create, change and drop groups, resources, mirrors and routes';
COMMENT ON ROLE driftmirror_monitor IS
    'driftmirror: may read status views (without endpoints or connection strings)';

-- ---- sql/install/10_options.sql ----
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
    ('group', 'drift_threshold', 'number', '0.2', '0.001', '10', NULL,
     'relative divergence of a mirror from its primary that counts as drift'),
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
     'minimum time between two scale-down actions'),
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

-- ---- sql/install/20_catalog.sql ----
-- 20_catalog.sql: the core catalog: groups, resources and their
-- dependencies, events, the action log, and the worker's state.
--
-- Only the SQL API writes these tables (SECURITY DEFINER functions); nobody
-- but the owner has privileges on them.  Configuration tables are marked for
-- pg_dump; state and history are not.

CREATE TABLE driftmirror.resource_group (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    options     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE driftmirror.resource_group IS
    'Resource groups: a set of resources managed together, with their options';

CREATE TABLE driftmirror.resource (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('postgres', 'cache', 'app', 'web', 'service')),
    endpoint    text NOT NULL,
    role        text NOT NULL DEFAULT 'primary' CHECK (role IN ('primary', 'mirror')),
    capacity    integer NOT NULL DEFAULT 1 CHECK (capacity >= 0),
    options     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, name),
    UNIQUE (group_id, id)
);
COMMENT ON TABLE driftmirror.resource IS
    'Resources of a group: PostgreSQL databases (endpoint = conninfo) and HTTP-actuated services (endpoint = URL)';

-- depends_on edges; both ends in the same group (composite keys), no cycles
-- (checked by the API under the group's row lock)
CREATE TABLE driftmirror.resource_dependency (
    group_id       bigint NOT NULL,
    resource_id    bigint NOT NULL,
    depends_on_id  bigint NOT NULL,
    PRIMARY KEY (resource_id, depends_on_id),
    FOREIGN KEY (group_id, resource_id)
        REFERENCES driftmirror.resource (group_id, id) ON DELETE CASCADE,
    FOREIGN KEY (group_id, depends_on_id)
        REFERENCES driftmirror.resource (group_id, id),
    CHECK (resource_id <> depends_on_id)
);
CREATE INDEX ON driftmirror.resource_dependency (depends_on_id);

CREATE TABLE driftmirror.event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    name        text NOT NULL,
    starts      timestamptz NOT NULL,
    ends        timestamptz NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends >= starts),
    UNIQUE (group_id, name, starts)
);
COMMENT ON TABLE driftmirror.event IS
    'External factors (campaigns, scheduled jobs, holidays) used as forecasting regressors';

-- every decision or change: by a person through the API or by the worker
CREATE TABLE driftmirror.action (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name    text NOT NULL,
    resource_name text,
    kind          text NOT NULL,
    reason        text NOT NULL,
    inputs        jsonb NOT NULL DEFAULT '{}',
    outcome       text NOT NULL DEFAULT 'done',
    actor         text NOT NULL DEFAULT session_user,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz
);
CREATE INDEX ON driftmirror.action (group_name, started_at);
COMMENT ON TABLE driftmirror.action IS
    'Action log: every change made through the API and every decision of the worker';

-- what the worker last did for each group
CREATE TABLE driftmirror.group_state (
    group_id              bigint PRIMARY KEY
                          REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    activity              text NOT NULL DEFAULT 'monitoring',
    activity_reason       text,
    last_step_at          timestamptz,
    last_heartbeat        timestamptz,
    next_step_at          timestamptz,
    steps_ok              bigint NOT NULL DEFAULT 0,
    steps_failed          bigint NOT NULL DEFAULT 0,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    last_error            text,
    last_error_sqlstate   text,
    last_error_at         timestamptz
);

-- the worker itself (one row)
CREATE TABLE driftmirror.worker_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL,
    last_pass_at  timestamptz NOT NULL,
    passes        bigint NOT NULL DEFAULT 0,
    enabled       boolean NOT NULL,
    naptime_ms    integer NOT NULL,
    reloaded_at   timestamptz
);

SELECT pg_catalog.pg_extension_config_dump('driftmirror.resource_group', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.resource', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.resource_dependency', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.event', '');

-- _log_action: append to the action log; returns the action's id
CREATE FUNCTION driftmirror._log_action(p_group text, p_resource text, p_kind text,
                                        p_reason text, p_inputs jsonb DEFAULT '{}',
                                        p_outcome text DEFAULT 'done')
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.action
        (group_name, resource_name, kind, reason, inputs, outcome, finished_at)
    VALUES (p_group, p_resource, p_kind, p_reason, coalesce(p_inputs, '{}'),
            p_outcome, clock_timestamp())
    RETURNING id
$$;

-- _check_name: names of groups, resources and events
CREATE FUNCTION driftmirror._check_name(p_what text, p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name IS NULL THEN
        RAISE EXCEPTION '% name must not be null', p_what
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name "%"', p_what, p_name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A name has 1 to 63 characters: letters, digits, "_", "." and "-", and starts with a letter, digit or "_".';
    END IF;
END
$$;

-- _group_id: the id of a group by name, optionally locking its row so that
-- concurrent changes to one group are serialised; raises if unknown.  The
-- lock is FOR NO KEY UPDATE: it serialises the API's changes but lets the
-- worker insert rows that reference the group (their foreign key takes FOR
-- KEY SHARE) while it holds other rows, such as its mirror's, which an API
-- call may want next; FOR UPDATE deadlocked dm_promote against the worker.
CREATE FUNCTION driftmirror._group_id(p_group text, p_lock boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid bigint;
BEGIN
    IF p_group IS NULL THEN
        RAISE EXCEPTION 'group name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_lock THEN
        SELECT id INTO gid FROM driftmirror.resource_group WHERE name = p_group FOR NO KEY UPDATE;
    ELSE
        SELECT id INTO gid FROM driftmirror.resource_group WHERE name = p_group;
    END IF;
    IF gid IS NULL THEN
        RAISE EXCEPTION 'resource group "%" does not exist', p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN gid;
END
$$;

-- _resource_id: the id of a resource of a group by name; raises if unknown
CREATE FUNCTION driftmirror._resource_id(p_group_id bigint, p_group text, p_resource text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
BEGIN
    IF p_resource IS NULL THEN
        RAISE EXCEPTION 'resource name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT id INTO rid FROM driftmirror.resource
     WHERE group_id = p_group_id AND name = p_resource;
    IF rid IS NULL THEN
        RAISE EXCEPTION 'resource "%" does not exist in group "%"', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN rid;
END
$$;

-- ---- sql/install/30_groups.sql ----
-- 30_groups.sql: the group API: dm_create_group, dm_alter_group, dm_drop_group.
--
-- Every API function is SECURITY DEFINER with a fixed search_path, executable
-- by driftmirror_admin only (see 99_privileges.sql), and changes nothing when
-- it raises an error.

CREATE FUNCTION driftmirror.dm_create_group(name text, options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    opts   jsonb;
    gid    bigint;
BEGIN
    PERFORM driftmirror._check_name('group', p_name);
    opts := driftmirror._validate_group_options(options);

    -- serialise creations of the same name without relying on the error text
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.group:' || p_name));
    IF EXISTS (SELECT FROM driftmirror.resource_group g WHERE g.name = p_name) THEN
        RAISE EXCEPTION 'resource group "%" already exists', p_name
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO driftmirror.resource_group (name, options)
    VALUES (p_name, opts)
    RETURNING id INTO gid;

    PERFORM driftmirror._log_action(p_name, NULL, 'create_group', 'dm_create_group',
                                    jsonb_build_object('options', opts));
    RETURN gid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_create_group(text, jsonb) IS
    'Create a resource group; returns its id';

CREATE FUNCTION driftmirror.dm_alter_group(name text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    gid    bigint;
    old    jsonb;
    merged jsonb;
BEGIN
    gid := driftmirror._group_id(p_name, true);
    IF options IS NULL THEN
        RAISE EXCEPTION 'group options must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'To reset an option to its default, set it to JSON null: ''{"interval": null}''.';
    END IF;
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'group options must be a JSON object, not %', jsonb_typeof(options)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT g.options INTO old FROM driftmirror.resource_group g WHERE g.id = gid;
    -- a JSON null resets a key to its default
    merged := driftmirror._validate_group_options(jsonb_strip_nulls(old || options));

    UPDATE driftmirror.resource_group g
       SET options = merged, updated_at = now()
     WHERE g.id = gid;

    -- a new interval takes effect at once
    IF driftmirror._opt_interval(driftmirror._effective_options('group', merged) -> 'interval')
       IS DISTINCT FROM
       driftmirror._opt_interval(driftmirror._effective_options('group', old) -> 'interval') THEN
        UPDATE driftmirror.group_state SET next_step_at = NULL WHERE group_id = gid;
    END IF;

    PERFORM driftmirror._log_action(p_name, NULL, 'alter_group', 'dm_alter_group',
                                    jsonb_build_object('old', old, 'new', merged));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_alter_group(text, jsonb) IS
    'Change group options: given keys are set, keys set to null return to their default';

CREATE FUNCTION driftmirror.dm_drop_group(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    gid    bigint;
    nres   bigint;
    nmir   bigint;
BEGIN
    IF force IS NULL THEN
        RAISE EXCEPTION 'force must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    gid := driftmirror._group_id(p_name, true);
    PERFORM driftmirror._refuse_while_promoting(gid, p_name);

    SELECT count(*) INTO nres FROM driftmirror.resource r WHERE r.group_id = gid;
    IF nres > 0 AND NOT force THEN
        RAISE EXCEPTION 'resource group "%" still has % resource(s)', p_name, nres
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Remove the resources first, or call dm_drop_group(name, force => true).';
    END IF;

    -- deleting the group cascades to its mirrors, whose delete trigger
    -- queues the drop of their replication objects on every node (see
    -- 60_mirrors.sql): the worker keeps retrying those after the group is gone
    SELECT count(*) INTO nmir FROM driftmirror.mirror m WHERE m.group_id = gid;
    -- edges first: the depends_on side of an edge does not cascade
    DELETE FROM driftmirror.resource_dependency d WHERE d.group_id = gid;
    DELETE FROM driftmirror.resource_group g WHERE g.id = gid;
    PERFORM driftmirror._log_action(p_name, NULL, 'drop_group', 'dm_drop_group',
                                    jsonb_build_object('force', force, 'resources', nres,
                                                       'mirrors', nmir));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_drop_group(text, boolean) IS
    'Drop a group; with force, also its resources and their mirrors (replication objects are dropped by the worker)';

-- ---- sql/install/35_resources.sql ----
-- 35_resources.sql: the resource API: dm_add_resource, dm_alter_resource,
-- dm_remove_resource, and the dependency-graph checks.
--
-- All changes to one group hold that group's row lock, so two concurrent
-- calls cannot together create a dependency cycle.

-- _check_kind: a known resource kind
CREATE FUNCTION driftmirror._check_kind(p_kind text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind IS NULL THEN
        RAISE EXCEPTION 'resource kind must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_kind NOT IN ('postgres', 'cache', 'app', 'web', 'service') THEN
        RAISE EXCEPTION 'unknown resource kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known kinds: postgres, cache, app, web, service.';
    END IF;
END
$$;

CREATE FUNCTION driftmirror._check_endpoint(kind text, endpoint text)
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'driftmirror_check_endpoint';

-- _check_resource_options: checks across the options and the kind of a
-- resource.  bearer_token_file (the HTTP actuator's token, 60_mirrors.sql)
-- names a file of the data directory's driftmirror_secrets directory: a
-- plain name, never a path, and only for resources reached over HTTP.
CREATE FUNCTION driftmirror._check_resource_options(p_kind text, p_options jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_options ? 'bearer_token_file' THEN
        IF p_kind = 'postgres' THEN
            RAISE EXCEPTION 'resource option "bearer_token_file" applies to resources reached over HTTP, not to postgres resources'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'PostgreSQL passwords belong in the passfile of the server''s operating system user.';
        END IF;
        IF (p_options ->> 'bearer_token_file') !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$' THEN
            RAISE EXCEPTION 'bearer_token_file must be a plain file name'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The file is read from the driftmirror_secrets directory of the data directory; no paths.';
        END IF;
    END IF;
END
$$;

-- _set_dependencies: replace the depends_on edges of a resource, then check
-- that the group's graph has no cycle.  Raises on unknown or repeated names.
CREATE FUNCTION driftmirror._set_dependencies(p_group_id bigint, p_group text,
                                              p_resource_id bigint, p_resource text,
                                              p_depends_on text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dep   text;
    depid bigint;
    cyc   text;
BEGIN
    IF p_depends_on IS NULL THEN
        RAISE EXCEPTION 'depends_on must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass ''{}'' for no dependencies.';
    END IF;
    IF array_position(p_depends_on, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'depends_on must not contain null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    DELETE FROM driftmirror.resource_dependency WHERE resource_id = p_resource_id;

    FOREACH dep IN ARRAY p_depends_on
    LOOP
        IF dep = p_resource THEN
            RAISE EXCEPTION 'resource "%" cannot depend on itself', p_resource
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT id INTO depid FROM driftmirror.resource
         WHERE group_id = p_group_id AND name = dep;
        IF depid IS NULL THEN
            RAISE EXCEPTION 'dependency "%" of resource "%" does not exist in group "%"',
                dep, p_resource, p_group
                USING ERRCODE = 'undefined_object';
        END IF;
        IF EXISTS (SELECT FROM driftmirror.resource_dependency
                    WHERE resource_id = p_resource_id AND depends_on_id = depid) THEN
            RAISE EXCEPTION 'dependency "%" of resource "%" is listed twice', dep, p_resource
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO driftmirror.resource_dependency (group_id, resource_id, depends_on_id)
        VALUES (p_group_id, p_resource_id, depid);
    END LOOP;

    -- any path from this resource back to itself is a cycle
    WITH RECURSIVE walk (node, path) AS (
        SELECT d.depends_on_id, ARRAY[p_resource_id, d.depends_on_id]
          FROM driftmirror.resource_dependency d
         WHERE d.resource_id = p_resource_id
        UNION ALL
        SELECT d.depends_on_id, w.path || d.depends_on_id
          FROM walk w
          JOIN driftmirror.resource_dependency d ON d.resource_id = w.node
         WHERE w.node <> p_resource_id
           AND NOT d.depends_on_id = ANY (w.path[2:])
    )
    SELECT string_agg(r.name, ' -> ' ORDER BY p.ord) INTO cyc
      FROM (SELECT path FROM walk WHERE node = p_resource_id LIMIT 1) w,
           unnest(w.path) WITH ORDINALITY AS p (id, ord)
      JOIN driftmirror.resource r ON r.id = p.id;

    IF cyc IS NOT NULL THEN
        RAISE EXCEPTION 'dependencies of resource "%" would form a cycle', p_resource
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Cycle: %s.', cyc);
    END IF;
END
$$;

CREATE FUNCTION driftmirror.dm_add_resource(
    "group" text, name text, kind text, endpoint text,
    depends_on text[] DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    p_kind  ALIAS FOR $3;
    p_endpoint ALIAS FOR $4;
    gid     bigint;
    rid     bigint;
    opts    jsonb;
    eff     jsonb;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    PERFORM driftmirror._check_name('resource', p_name);
    PERFORM driftmirror._check_kind(p_kind);
    IF p_endpoint IS NULL THEN
        RAISE EXCEPTION 'endpoint must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM driftmirror._check_endpoint(p_kind, p_endpoint);
    opts := driftmirror._validate_options('resource', options);
    PERFORM driftmirror._check_resource_options(p_kind, opts);
    eff := driftmirror._effective_options('resource', opts);

    IF EXISTS (SELECT FROM driftmirror.resource r
                WHERE r.group_id = gid AND r.name = p_name) THEN
        RAISE EXCEPTION 'resource "%" already exists in group "%"', p_name, p_group
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO driftmirror.resource (group_id, name, kind, endpoint, role, capacity, options)
    VALUES (gid, p_name, p_kind, p_endpoint, eff ->> 'role',
            (eff ->> 'capacity')::integer, opts)
    RETURNING id INTO rid;

    PERFORM driftmirror._set_dependencies(gid, p_group, rid, p_name, depends_on);
    PERFORM driftmirror._log_action(p_group, p_name, 'add_resource', 'dm_add_resource',
                                    jsonb_build_object('kind', p_kind,
                                                       'depends_on', to_jsonb(depends_on),
                                                       'options', opts));
    RETURN rid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_add_resource(text, text, text, text, text[], jsonb) IS
    'Add a resource to a group; returns its id';

CREATE FUNCTION driftmirror.dm_alter_resource(
    "group" text, name text, endpoint text DEFAULT NULL,
    depends_on text[] DEFAULT NULL, options jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    p_endpoint ALIAS FOR $3;
    gid     bigint;
    rid     bigint;
    res     driftmirror.resource;
    opts    jsonb;
    eff     jsonb;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_name);
    SELECT * INTO res FROM driftmirror.resource r WHERE r.id = rid;

    IF p_endpoint IS NOT NULL THEN
        PERFORM driftmirror._check_endpoint(res.kind, p_endpoint);
    END IF;
    IF options IS NOT NULL THEN
        IF jsonb_typeof(options) <> 'object' THEN
            RAISE EXCEPTION 'resource options must be a JSON object, not %', jsonb_typeof(options)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        opts := driftmirror._validate_options('resource', jsonb_strip_nulls(res.options || options));
    ELSE
        opts := res.options;
    END IF;
    PERFORM driftmirror._check_resource_options(res.kind, opts);
    eff := driftmirror._effective_options('resource', opts);

    UPDATE driftmirror.resource r
       SET endpoint = coalesce(p_endpoint, r.endpoint),
           options = opts,
           role = eff ->> 'role',
           capacity = (eff ->> 'capacity')::integer,
           updated_at = now()
     WHERE r.id = rid;

    IF depends_on IS NOT NULL THEN
        PERFORM driftmirror._set_dependencies(gid, p_group, rid, p_name, depends_on);
    END IF;

    PERFORM driftmirror._log_action(p_group, p_name, 'alter_resource', 'dm_alter_resource',
                                    jsonb_build_object('endpoint_changed', p_endpoint IS NOT NULL,
                                                       'depends_on', to_jsonb(depends_on),
                                                       'options', opts));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_alter_resource(text, text, text, text[], jsonb) IS
    'Change a resource: arguments left null are kept; options are merged, null values reset';

CREATE FUNCTION driftmirror.dm_remove_resource("group" text, name text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    gid     bigint;
    rid     bigint;
    users   text;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_name);
    PERFORM driftmirror._refuse_while_promoting(gid, p_group, rid);

    SELECT string_agg(format('"%s"', r.name), ', ' ORDER BY r.name) INTO users
      FROM driftmirror.resource_dependency d
      JOIN driftmirror.resource r ON r.id = d.resource_id
     WHERE d.depends_on_id = rid;
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'resource "%" is a dependency of %', p_name, users
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Remove those resources or their dependency on it first.';
    END IF;

    DELETE FROM driftmirror.resource r WHERE r.id = rid;
    PERFORM driftmirror._log_action(p_group, p_name, 'remove_resource', 'dm_remove_resource');
END
$$;
COMMENT ON FUNCTION driftmirror.dm_remove_resource(text, text) IS
    'Remove a resource that no other resource depends on';

-- ---- sql/install/40_events.sql ----
-- 40_events.sql: the event API: dm_add_event, dm_remove_event.
--
-- Events are external factors (campaigns, batch jobs, holidays) that the
-- forecasting models use as regressors.

CREATE FUNCTION driftmirror.dm_add_event("group" text, name text,
                                         starts timestamptz, ends timestamptz,
                                         options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    gid     bigint;
    eid     bigint;
    opts    jsonb;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    PERFORM driftmirror._check_name('event', p_name);
    IF starts IS NULL OR ends IS NULL THEN
        RAISE EXCEPTION 'event start and end must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(starts) OR NOT isfinite(ends) THEN
        RAISE EXCEPTION 'event start and end must be finite'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ends < starts THEN
        RAISE EXCEPTION 'event "%" ends before it starts', p_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    opts := driftmirror._validate_options('event', options);
    IF opts ? 'resource' THEN
        PERFORM driftmirror._resource_id(gid, p_group, opts ->> 'resource');
    END IF;
    IF EXISTS (SELECT FROM driftmirror.event e
                WHERE e.group_id = gid AND e.name = p_name AND e.starts = $3) THEN
        RAISE EXCEPTION 'event "%" starting at % already exists in group "%"', p_name, $3, p_group
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO driftmirror.event (group_id, name, starts, ends, options)
    VALUES (gid, p_name, $3, $4, opts)
    RETURNING id INTO eid;
    PERFORM driftmirror._log_action(p_group, NULL, 'add_event', 'dm_add_event',
                                    jsonb_build_object('event', p_name, 'starts', $3,
                                                       'ends', $4, 'options', opts));
    RETURN eid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_add_event(text, text, timestamptz, timestamptz, jsonb) IS
    'Record an external event (campaign, batch job, holiday) used as a forecasting regressor';

CREATE FUNCTION driftmirror.dm_remove_event("group" text, name text,
                                            starts timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    gid     bigint;
    n       integer;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    PERFORM driftmirror._check_name('event', p_name);
    DELETE FROM driftmirror.event e
     WHERE e.group_id = gid AND e.name = p_name
       AND ($3 IS NULL OR e.starts = $3);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION 'event "%" does not exist in group "%"', p_name, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM driftmirror._log_action(p_group, NULL, 'remove_event', 'dm_remove_event',
                                    jsonb_build_object('event', p_name, 'removed', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_remove_event(text, text, timestamptz) IS
    'Remove an event (every occurrence of the name, or the one starting at starts)';

-- ---- sql/install/45_worker.sql ----
-- 45_worker.sql: functions the background worker calls.  Not for people:
-- executable by nobody but the owner (the worker runs as the bootstrap
-- superuser).

-- _worker_heartbeat: record one pass of the worker
CREATE FUNCTION driftmirror._worker_heartbeat(p_pid integer, p_enabled boolean,
                                              p_naptime_ms integer, p_reloaded boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.worker_state AS w
        (pid, started_at, last_pass_at, passes, enabled, naptime_ms, reloaded_at)
    VALUES (p_pid, clock_timestamp(), clock_timestamp(), 1, p_enabled, p_naptime_ms,
            CASE WHEN p_reloaded THEN clock_timestamp() END)
    ON CONFLICT (singleton) DO UPDATE
       SET pid = excluded.pid,
           started_at = CASE WHEN w.pid = excluded.pid THEN w.started_at
                             ELSE excluded.started_at END,
           last_pass_at = excluded.last_pass_at,
           passes = CASE WHEN w.pid = excluded.pid THEN w.passes + 1 ELSE 1 END,
           enabled = excluded.enabled,
           naptime_ms = excluded.naptime_ms,
           reloaded_at = coalesce(excluded.reloaded_at, w.reloaded_at)
$$;

-- _due_groups: groups whose monitoring step is due, most overdue first
CREATE FUNCTION driftmirror._due_groups()
RETURNS TABLE (id bigint, name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.id, g.name
      FROM driftmirror.resource_group g
      LEFT JOIN driftmirror.group_state s ON s.group_id = g.id
     WHERE s.next_step_at IS NULL OR s.next_step_at <= clock_timestamp()
     ORDER BY s.next_step_at NULLS FIRST, g.id
$$;

-- _next_step_at: keep a steady cadence; after a late step, restart from now
CREATE FUNCTION driftmirror._next_step_at(p_prev timestamptz, p_interval interval)
RETURNS timestamptz
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_prev + p_interval > clock_timestamp()
                THEN p_prev + p_interval
                ELSE clock_timestamp() + p_interval END
$$;

-- _step_heartbeat: the last phase of a successful step
CREATE FUNCTION driftmirror._step_heartbeat(p_group_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g     driftmirror.resource_group;
    s     driftmirror.group_state;
    iv    interval;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    IF NOT FOUND THEN
        RETURN;                 -- dropped meanwhile
    END IF;
    iv := driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval');

    SELECT * INTO s FROM driftmirror.group_state WHERE group_id = p_group_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO driftmirror.group_state
            (group_id, last_step_at, last_heartbeat, next_step_at, steps_ok)
        VALUES (p_group_id, now(), clock_timestamp(), clock_timestamp() + iv, 1);
        RETURN;
    END IF;

    UPDATE driftmirror.group_state
       SET last_step_at = now(),
           last_heartbeat = clock_timestamp(),
           next_step_at = driftmirror._next_step_at(s.next_step_at, iv),
           steps_ok = s.steps_ok + 1,
           consecutive_failures = 0
     WHERE group_id = p_group_id;

    IF s.consecutive_failures > 0 THEN
        PERFORM driftmirror._log_action(g.name, NULL, 'step_recovered',
            format('monitoring step succeeded after %s failed step(s)', s.consecutive_failures),
            jsonb_build_object('last_error', s.last_error));
    END IF;
END
$$;

-- _step_failed: record a failed step; the first failure of a run is logged
-- as an action, the following ones only counted
CREATE FUNCTION driftmirror._step_failed(p_group_id bigint, p_message text, p_sqlstate text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g     driftmirror.resource_group;
    s     driftmirror.group_state;
    iv    interval;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    iv := driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval');

    INSERT INTO driftmirror.group_state AS st
        (group_id, last_step_at, next_step_at, steps_failed, consecutive_failures,
         last_error, last_error_sqlstate, last_error_at)
    VALUES (p_group_id, now(), clock_timestamp() + iv, 1, 1,
            p_message, p_sqlstate, clock_timestamp())
    ON CONFLICT (group_id) DO UPDATE
       SET last_step_at = now(),
           next_step_at = driftmirror._next_step_at(st.next_step_at, iv),
           steps_failed = st.steps_failed + 1,
           consecutive_failures = st.consecutive_failures + 1,
           last_error = excluded.last_error,
           last_error_sqlstate = excluded.last_error_sqlstate,
           last_error_at = excluded.last_error_at
    RETURNING * INTO s;

    IF s.consecutive_failures = 1 THEN
        PERFORM driftmirror._log_action(g.name, NULL, 'step_failed',
            format('monitoring step failed: %s', p_message),
            jsonb_build_object('sqlstate', p_sqlstate), 'failed');
    END IF;
END
$$;

-- ---- sql/install/50_forecast.sql ----
-- 50_forecast.sql: the forecasting functions, thin wrappers over the
-- numerical core in src/forecast/ (see docs/forecasting.md).
--
-- Both are pure: they read only their arguments, so they are IMMUTABLE and
-- PARALLEL SAFE, and reveal nothing (99_privileges.sql lets the monitor
-- role call dm_forecast).  Positions (events) count from 1 like array
-- subscripts: vals[1] is position 1, forecast step k is position
-- array_length(vals, 1) + k.

CREATE FUNCTION driftmirror.dm_forecast(vals float8[], seasons int[], horizon int,
                                        method text DEFAULT 'auto',
                                        events jsonb DEFAULT NULL,
                                        interpolate boolean DEFAULT false)
RETURNS TABLE(step int, yhat float8, lo80 float8, hi80 float8, lo95 float8, hi95 float8)
LANGUAGE c
IMMUTABLE PARALLEL SAFE
ROWS 48
AS 'MODULE_PATHNAME', 'driftmirror_dm_forecast';

COMMENT ON FUNCTION driftmirror.dm_forecast(float8[], int[], int, text, jsonb, boolean) IS
'forecast horizon steps of vals with 80 and 95 percent prediction intervals; methods auto, snaive, hw, mstl, arima, prophet, naive; events: [{"name", "start", "end", "before", "after"}] positions from 1';

CREATE FUNCTION driftmirror.dm_forecast_model(vals float8[], seasons int[], horizon int,
                                              method text DEFAULT 'auto',
                                              events jsonb DEFAULT NULL,
                                              interpolate boolean DEFAULT false)
RETURNS text
LANGUAGE c
IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'driftmirror_dm_forecast_model';

COMMENT ON FUNCTION driftmirror.dm_forecast_model(float8[], int[], int, text, jsonb, boolean) IS
'the model dm_forecast uses for the same arguments, e.g. "hw ETS(A,Ad,A) m=48"';

-- ---- sql/install/55_metrics.sql ----
-- 55_metrics.sql: the metric store: the metric-name dictionary, the
-- time-partitioned raw table, partition maintenance and retention, the
-- 5-minute and 1-hour rollups, dm_ingest and the views for people.
--
-- Layout
--   driftmirror.metric      (ts, resource_id, metric_id, value), partitioned
--                           by range of ts; one partition per
--                           metric_settings.partition_interval (default one
--                           day, aligned on 2000-01-01 00:00 UTC).  Every
--                           partition gets a btree on (resource_id,
--                           metric_id, ts) and a BRIN on ts: when it is
--                           created (index_mode 'immediate', the default) or
--                           once it is closed (index_mode 'deferred', for
--                           the highest ingest rates).  No foreign keys and
--                           no row or transition-table triggers: either would
--                           disable COPY's multi-row inserts.  Ids come from
--                           the catalog (dm_ingest, the collectors); rows
--                           COPYed with ids that name nothing are never shown
--                           (the views join the catalog) and are deleted when
--                           their partition closes.
--   driftmirror.metric_def  the dictionary: id, name, unit, description.
--   metric_5m, metric_1h    rollups: samples, avg, max, p95 per bucket.
--
-- Retention: partitions are shared by all groups.  A partition is dropped
-- once it is entirely older than the longest retention of any group; before
-- that, the rows of a group whose own (shorter) retention has passed are
-- deleted from it once, and the partition remembers which groups it has been
-- purged of.  Rows of resources that no longer exist go with their partition.

-- ---------------------------------------------------------------------
-- settings of the store (one row; not per group)
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_settings (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    partition_interval  interval NOT NULL DEFAULT '1 day'
                        CHECK (partition_interval BETWEEN '1 hour' AND '31 days'
                               AND date_part('month', partition_interval) = 0
                               AND date_part('year', partition_interval) = 0),
    premake             integer NOT NULL DEFAULT 3 CHECK (premake BETWEEN 1 AND 100),
    rollup_delay        interval NOT NULL DEFAULT '1 minute'
                        CHECK (rollup_delay BETWEEN '0' AND '1 day'),
    rollup_retention    interval NOT NULL DEFAULT '400 days'
                        CHECK (rollup_retention BETWEEN '1 day' AND '3650 days'),
    index_mode          text NOT NULL DEFAULT 'immediate'
                        CHECK (index_mode IN ('immediate', 'deferred'))
);
INSERT INTO driftmirror.metric_settings DEFAULT VALUES;
COMMENT ON TABLE driftmirror.metric_settings IS
    'Settings of the metric store: partition interval, partitions made ahead, rollup delay and retention';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_settings', '');

-- ---------------------------------------------------------------------
-- metric-name dictionary
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_def (
    id          smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    unit        text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE driftmirror.metric_def IS
    'Metric names: the raw table stores the id, people and the API use the name';

INSERT INTO driftmirror.metric_def (name, unit, description, builtin) VALUES
    ('pg.xacts_per_s', '1/s', 'committed and rolled-back transactions per second in the polled database', true),
    ('pg.tup_read_per_s', '1/s', 'tuples returned and fetched per second in the polled database', true),
    ('pg.tup_written_per_s', '1/s', 'tuples inserted, updated and deleted per second in the polled database', true),
    ('pg.connections_active', 'connections', 'client backends running a statement', true),
    ('pg.connections_total', 'connections', 'client backends connected', true),
    ('pg.cache_hit_ratio', 'ratio', 'shared-buffer hits / (hits + reads) since the previous poll, 0 to 1', true),
    ('pg.wal_bytes_per_s', 'B/s', 'WAL written per second (replayed, on a standby)', true),
    ('pg.database_size', 'B', 'size of the polled database', true),
    ('pg.replication_lag_bytes', 'B', 'primary: largest replay lag of its standbys; standby: received minus replayed', true),
    ('pg.replication_lag_seconds', 's', 'standby: time since the last replayed transaction was committed on the primary', true);

SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_def', 'WHERE NOT builtin');

-- ---------------------------------------------------------------------
-- raw metrics
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric (
    ts          timestamptz NOT NULL,
    resource_id bigint NOT NULL,
    metric_id   smallint NOT NULL,
    value       float8 NOT NULL
                CONSTRAINT metric_value_finite
                CHECK (value > '-Infinity'::float8 AND value < 'Infinity'::float8),
    CONSTRAINT metric_ids_positive CHECK (resource_id > 0 AND metric_id > 0)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE driftmirror.metric IS
    'Raw metric samples, range-partitioned by ts; write with dm_ingest or COPY (ids from dm_metric_names and dm_resources)';
-- Indexes are made per partition by _index_partition (see index_mode):
--   <partition>_series  btree (resource_id, metric_id, ts), no deduplication
--                       (keys are unique): "the last N hours
--                       of one metric of one resource" is an index range scan
--                       in the partitions the ts condition keeps
--   <partition>_ts      BRIN (ts): time-range scans over all series (rollups)

-- the partitions the store made, with the groups already purged from each
CREATE TABLE driftmirror.metric_partition (
    name          text PRIMARY KEY,
    lo            timestamptz NOT NULL,
    hi            timestamptz NOT NULL,
    purged_groups bigint[] NOT NULL DEFAULT '{}',
    indexed       boolean NOT NULL DEFAULT false,
    checked       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (hi > lo),
    UNIQUE (lo)
);
COMMENT ON TABLE driftmirror.metric_partition IS
    'Partitions of driftmirror.metric: bounds and the groups whose expired rows were deleted';
-- dumped with the partitions (which pg_dump dumps as ordinary tables: they
-- are created at run time, not by the extension script)
SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_partition', '');

-- ---------------------------------------------------------------------
-- rollups
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_5m (
    resource_id bigint NOT NULL,
    metric_id   smallint NOT NULL,
    bucket      timestamptz NOT NULL,
    samples     integer NOT NULL,
    avg         float8 NOT NULL,
    max         float8 NOT NULL,
    p95         float8 NOT NULL,
    PRIMARY KEY (resource_id, metric_id, bucket)
);
CREATE TABLE driftmirror.metric_1h (LIKE driftmirror.metric_5m INCLUDING ALL);
COMMENT ON TABLE driftmirror.metric_5m IS
    '5-minute rollups of driftmirror.metric: sample count, average, maximum, 95th percentile';
COMMENT ON TABLE driftmirror.metric_1h IS
    '1-hour rollups of driftmirror.metric: sample count, average, maximum, 95th percentile';

-- how far each rollup is complete: every bucket ending at or before the
-- watermark has been computed from the raw rows
CREATE TABLE driftmirror.metric_rollup_state (
    level       text PRIMARY KEY CHECK (level IN ('5m', '1h')),
    width       interval NOT NULL,
    tbl         name NOT NULL,
    max_span    interval NOT NULL,
    watermark   timestamptz,
    updated_at  timestamptz
);
INSERT INTO driftmirror.metric_rollup_state (level, width, tbl, max_span) VALUES
    ('5m', '5 minutes', 'metric_5m', '1 day'),
    ('1h', '1 hour', 'metric_1h', '7 days');

-- ---------------------------------------------------------------------
-- partitions
-- ---------------------------------------------------------------------

-- _index_partition: the indexes of one partition (idempotent)
CREATE FUNCTION driftmirror._index_partition(p_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON driftmirror.%I (resource_id, metric_id, ts) WITH (deduplicate_items = off)',
                   p_name || '_series', p_name);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON driftmirror.%I USING brin (ts)',
                   p_name || '_ts', p_name);
    UPDATE driftmirror.metric_partition SET indexed = true WHERE name = p_name;
END
$$;

-- _ensure_partitions: make sure partitions cover [p_from, p_to]; returns how
-- many it created.  Bounds are aligned on the partition interval; a range
-- next to an existing partition made with another interval is clipped to
-- fit.  Creations are serialised by an advisory lock; the common case (all
-- covered) takes no lock.
CREATE FUNCTION driftmirror._ensure_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    iv  interval;
    t   timestamptz;
    lo  timestamptz;
    hi  timestamptz;
    nm  text;
    n   integer := 0;
    cov timestamptz;
    mode text;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (
        WITH RECURSIVE walk (upto) AS (
            SELECT p.hi FROM driftmirror.metric_partition p
             WHERE p.lo <= p_from AND p.hi > p_from
            UNION ALL
            SELECT p.hi FROM walk w JOIN driftmirror.metric_partition p ON p.lo = w.upto
             WHERE w.upto <= p_to
        )
        SELECT FROM walk HAVING max(upto) > p_to) THEN
        NULL;                   -- something is missing: fall through
    ELSE
        RETURN 0;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric_partition'));
    SELECT s.partition_interval, s.index_mode INTO iv, mode FROM driftmirror.metric_settings s;
    t := p_from;
    WHILE t <= p_to LOOP
        SELECT p.hi INTO cov FROM driftmirror.metric_partition p
         WHERE p.lo <= t AND p.hi > t;
        IF FOUND THEN
            t := cov;
            CONTINUE;
        END IF;
        lo := date_bin(iv, t, timestamptz '2000-01-01 00:00:00+00');
        hi := lo + iv;
        lo := greatest(lo, (SELECT max(p.hi) FROM driftmirror.metric_partition p WHERE p.hi <= t));
        hi := least(hi, (SELECT min(p.lo) FROM driftmirror.metric_partition p WHERE p.lo > t));
        nm := 'metric_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
        EXECUTE format('CREATE TABLE driftmirror.%I PARTITION OF driftmirror.metric FOR VALUES FROM (%L) TO (%L)',
                       nm, lo, hi);
        EXECUTE format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', nm);
        INSERT INTO driftmirror.metric_partition (name, lo, hi) VALUES (nm, lo, hi);
        IF mode = 'immediate' THEN
            PERFORM driftmirror._index_partition(nm);
        END IF;
        n := n + 1;
        t := hi;
    END LOOP;
    RETURN n;
END
$$;

-- _group_retention: the retention of every group, as intervals
CREATE FUNCTION driftmirror._group_retention()
RETURNS TABLE (group_id bigint, retention interval)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.id,
           driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'retention')
      FROM driftmirror.resource_group g
$$;

-- _metric_retention: drop partitions no group needs, purge expired rows of
-- groups with a shorter retention.  Returns (dropped, purged rows).
CREATE FUNCTION driftmirror._metric_retention(p_now timestamptz,
                                              OUT dropped integer, OUT purged bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keep   interval;
    p      driftmirror.metric_partition;
    g      record;
    n      bigint;
BEGIN
    dropped := 0;
    purged := 0;
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric_partition'));

    -- forget partitions dropped by hand
    DELETE FROM driftmirror.metric_partition mp
     WHERE to_regclass(format('driftmirror.%I', mp.name)) IS NULL;

    SELECT coalesce(max(r.retention),
                    driftmirror._opt_interval((SELECT o.default_value FROM driftmirror.option_def o
                                                WHERE o.scope = 'group' AND o.key = 'retention')))
      INTO keep FROM driftmirror._group_retention() r;

    FOR p IN SELECT * FROM driftmirror.metric_partition mp
              WHERE mp.hi <= p_now - keep ORDER BY mp.lo
    LOOP
        EXECUTE format('DROP TABLE driftmirror.%I', p.name);
        DELETE FROM driftmirror.metric_partition mp WHERE mp.name = p.name;
        dropped := dropped + 1;
    END LOOP;

    FOR g IN
        SELECT mp.name, r.group_id
          FROM driftmirror.metric_partition mp
          JOIN driftmirror._group_retention() r ON mp.hi <= p_now - r.retention
         WHERE NOT r.group_id = ANY (mp.purged_groups)
         ORDER BY mp.lo, r.group_id
    LOOP
        EXECUTE format('DELETE FROM driftmirror.%I m USING driftmirror.resource r
                         WHERE r.group_id = $1 AND m.resource_id = r.id', g.name)
          USING g.group_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        purged := purged + n;
        UPDATE driftmirror.metric_partition mp
           SET purged_groups = mp.purged_groups || g.group_id
         WHERE mp.name = g.name;
    END LOOP;
END
$$;

-- _metric_rollup: compute the closed buckets of one rollup level after its
-- watermark, at most max_span of raw data per call; returns the number of
-- bucket rows written.  Rows arriving later for buckets already rolled up
-- are not seen: call dm_rollup(from, to) after a backfill.
CREATE FUNCTION driftmirror._metric_rollup(p_level text, p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st     driftmirror.metric_rollup_state;
    delay  interval;
    w      timestamptz;
    upto   timestamptz;
    n      bigint;
BEGIN
    SELECT * INTO st FROM driftmirror.metric_rollup_state s WHERE s.level = p_level FOR UPDATE;
    SELECT s.rollup_delay INTO delay FROM driftmirror.metric_settings s;
    w := coalesce(st.watermark,
                  date_bin(st.width, (SELECT min(mp.lo) FROM driftmirror.metric_partition mp),
                           timestamptz '2000-01-01 00:00:00+00'));
    IF w IS NULL THEN
        RETURN 0;               -- no partitions yet
    END IF;
    upto := date_bin(st.width, p_now - delay, timestamptz '2000-01-01 00:00:00+00');
    upto := least(upto, w + st.max_span);
    IF upto <= w THEN
        RETURN 0;
    END IF;
    n := driftmirror._rollup_range(st, w, upto);
    UPDATE driftmirror.metric_rollup_state s
       SET watermark = upto, updated_at = clock_timestamp()
     WHERE s.level = p_level;
    RETURN n;
END
$$;

-- _rollup_range: (re)compute the buckets of one level in [p_from, p_to)
CREATE FUNCTION driftmirror._rollup_range(st driftmirror.metric_rollup_state,
                                          p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        INSERT INTO driftmirror.%1$I AS r (resource_id, metric_id, bucket, samples, avg, max, p95)
        SELECT m.resource_id, m.metric_id,
               date_bin($1, m.ts, timestamptz '2000-01-01 00:00:00+00'),
               count(*), avg(m.value), max(m.value),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY m.value)
          FROM driftmirror.metric m
         WHERE m.ts >= $2 AND m.ts < $3
         GROUP BY 1, 2, 3
        ON CONFLICT (resource_id, metric_id, bucket) DO UPDATE
           SET samples = excluded.samples, avg = excluded.avg,
               max = excluded.max, p95 = excluded.p95$q$, st.tbl)
      USING st.width, p_from, p_to;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- _metric_maintenance: everything the worker does on the store, in one
-- transaction: partitions ahead, retention, rollups.  Returns a summary.
CREATE FUNCTION driftmirror._metric_maintenance(p_now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s        driftmirror.metric_settings;
    created  integer;
    ret      record;
    r5       bigint;
    r1       bigint;
    rdel     bigint := 0;
    n        bigint;
    nm       text;
    orphans  bigint := 0;
    indexed  integer := 0;
BEGIN
    SELECT * INTO s FROM driftmirror.metric_settings;
    created := driftmirror._ensure_partitions(p_now, p_now + s.premake * s.partition_interval);
    SELECT * INTO ret FROM driftmirror._metric_retention(p_now);
    -- closed partitions: drop rows naming no resource or metric (COPY does
    -- not check ids), then index them if that was deferred
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE mp.hi <= p_now AND NOT mp.checked ORDER BY mp.lo LOOP
        EXECUTE format('DELETE FROM driftmirror.%I m
                         WHERE NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = m.resource_id)
                            OR NOT EXISTS (SELECT FROM driftmirror.metric_def d WHERE d.id = m.metric_id)', nm);
        GET DIAGNOSTICS n = ROW_COUNT;
        orphans := orphans + n;
        UPDATE driftmirror.metric_partition mp SET checked = true WHERE mp.name = nm;
    END LOOP;
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE mp.hi <= p_now AND NOT mp.indexed ORDER BY mp.lo LOOP
        PERFORM driftmirror._index_partition(nm);
        indexed := indexed + 1;
    END LOOP;
    r5 := driftmirror._metric_rollup('5m', p_now);
    r1 := driftmirror._metric_rollup('1h', p_now);
    DELETE FROM driftmirror.metric_5m WHERE bucket < p_now - s.rollup_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    rdel := rdel + n;
    DELETE FROM driftmirror.metric_1h WHERE bucket < p_now - s.rollup_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    rdel := rdel + n;
    RETURN jsonb_build_object('partitions_created', created,
                              'partitions_dropped', ret.dropped,
                              'rows_purged', ret.purged,
                              'orphan_rows_deleted', orphans,
                              'partitions_indexed', indexed,
                              'rollup_5m_rows', r5,
                              'rollup_1h_rows', r1,
                              'rollup_rows_deleted', rdel);
END
$$;

CREATE FUNCTION driftmirror.dm_run_maintenance()
RETURNS jsonb
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT driftmirror._metric_maintenance(now())
$$;
COMMENT ON FUNCTION driftmirror.dm_run_maintenance() IS
    'Run the metric store maintenance now (the worker also runs it): partitions ahead, retention, rollups';

CREATE FUNCTION driftmirror.dm_create_partitions(starts timestamptz, ends timestamptz)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF starts IS NULL OR ends IS NULL THEN
        RAISE EXCEPTION 'partition range bounds must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(starts) OR NOT isfinite(ends) OR ends < starts
       OR starts < now() - interval '3650 days' OR ends > now() + interval '400 days' THEN
        RAISE EXCEPTION 'invalid partition range from % to %', starts, ends
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The range must be finite, ordered, and within 3650 days before and 400 days after now.';
    END IF;
    RETURN driftmirror._ensure_partitions(starts, ends);
END
$$;
COMMENT ON FUNCTION driftmirror.dm_create_partitions(timestamptz, timestamptz) IS
    'Create the metric partitions covering a time range (before a COPY of old data); returns how many were created';

CREATE FUNCTION driftmirror.dm_rollup(starts timestamptz, ends timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st driftmirror.metric_rollup_state;
    n  bigint := 0;
BEGIN
    IF starts IS NULL OR ends IS NULL OR NOT isfinite(starts) OR NOT isfinite(ends) OR ends < starts THEN
        RAISE EXCEPTION 'invalid rollup range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Both bounds must be finite and not null, and ends must not be before starts.';
    END IF;
    FOR st IN SELECT * FROM driftmirror.metric_rollup_state ORDER BY width LOOP
        n := n + driftmirror._rollup_range(st,
                    date_bin(st.width, starts, timestamptz '2000-01-01 00:00:00+00'),
                    date_bin(st.width, ends, timestamptz '2000-01-01 00:00:00+00') + st.width);
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_rollup(timestamptz, timestamptz) IS
    'Recompute the 5-minute and 1-hour rollups of the buckets touching a time range (after a backfill)';

CREATE FUNCTION driftmirror.dm_set_metric_settings(settings jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION 'metric settings must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(settings) LOOP
        IF k NOT IN ('partition_interval', 'premake', 'rollup_delay', 'rollup_retention', 'index_mode') THEN
            RAISE EXCEPTION 'unknown metric setting "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known settings: partition_interval, premake, rollup_delay, rollup_retention, index_mode.';
        END IF;
    END LOOP;
    BEGIN
        UPDATE driftmirror.metric_settings s
           SET partition_interval = coalesce(driftmirror._opt_interval(settings -> 'partition_interval'),
                                             s.partition_interval),
               premake = coalesce((settings ->> 'premake')::integer, s.premake),
               rollup_delay = coalesce(driftmirror._opt_interval(settings -> 'rollup_delay'),
                                       s.rollup_delay),
               rollup_retention = coalesce(driftmirror._opt_interval(settings -> 'rollup_retention'),
                                           s.rollup_retention),
               index_mode = coalesce(settings ->> 'index_mode', s.index_mode);
    EXCEPTION WHEN check_violation OR data_exception OR syntax_error THEN
        RAISE EXCEPTION 'invalid metric settings %', settings
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'partition_interval: 1 hour to 31 days without months; premake: 1 to 100; rollup_delay: 0 to 1 day; rollup_retention: 1 to 3650 days; index_mode: immediate or deferred.';
    END;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_set_metric_settings(jsonb) IS
    'Change metric store settings; partition_interval and index_mode apply to partitions created from now on';

-- ---------------------------------------------------------------------
-- names and ingest
-- ---------------------------------------------------------------------
CREATE FUNCTION driftmirror._check_metric_name(p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name IS NULL THEN
        RAISE EXCEPTION 'metric name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_name !~ '^[a-z_][a-z0-9_.:]{0,62}$' THEN
        RAISE EXCEPTION 'invalid metric name "%"', p_name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A metric name has 1 to 63 characters: lower-case letters, digits, "_", "." and ":", and starts with a letter or "_".';
    END IF;
END
$$;

CREATE FUNCTION driftmirror.dm_register_metric(name text, unit text DEFAULT '',
                                               description text DEFAULT '')
RETURNS smallint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    mid    smallint;
BEGIN
    PERFORM driftmirror._check_metric_name(p_name);
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric:' || p_name));
    IF EXISTS (SELECT FROM driftmirror.metric_def m WHERE m.name = p_name) THEN
        RAISE EXCEPTION 'metric "%" is already registered', p_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO driftmirror.metric_def (name, unit, description)
    VALUES (p_name, coalesce(unit, ''), coalesce(description, ''))
    RETURNING id INTO mid;
    RETURN mid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_register_metric(text, text, text) IS
    'Register a metric name (with unit and description) so that it can be ingested; returns its id';

-- _ingest_target: resolve the names of a dm_ingest call; raises an error
-- naming the unknown one.  Also returns the accepted time range.
CREATE FUNCTION driftmirror._ingest_target(p_group text, p_resource text, p_metric text,
                                           OUT resource_id bigint, OUT metric_id smallint,
                                           OUT ts_min timestamptz, OUT ts_max timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid bigint;
    ret interval;
BEGIN
    gid := driftmirror._group_id(p_group, false);
    resource_id := driftmirror._resource_id(gid, p_group, p_resource);
    IF p_metric IS NULL THEN
        RAISE EXCEPTION 'metric name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT m.id INTO metric_id FROM driftmirror.metric_def m WHERE m.name = p_metric;
    IF metric_id IS NULL THEN
        RAISE EXCEPTION 'metric "%" is not registered', p_metric
            USING ERRCODE = 'undefined_object',
                  HINT = 'Register it first with dm_register_metric(name, unit, description); dm_metric_names lists the known names.';
    END IF;
    SELECT r.retention INTO ret FROM driftmirror._group_retention() r WHERE r.group_id = gid;
    ts_min := now() - ret;
    ts_max := now() + interval '1 day';
END
$$;

CREATE FUNCTION driftmirror.dm_ingest("group" text, resource text, metric text,
                                      ts timestamptz[], val float8[])
RETURNS bigint
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'driftmirror_dm_ingest';
COMMENT ON FUNCTION driftmirror.dm_ingest(text, text, text, timestamptz[], float8[]) IS
    'Store samples of one metric of one resource; checks every element first and writes all or nothing; returns rows written';

-- ---------------------------------------------------------------------
-- views
-- ---------------------------------------------------------------------
CREATE VIEW driftmirror.dm_metric_names AS
SELECT m.id, m.name, m.unit, m.description, m.builtin
  FROM driftmirror.metric_def m;
COMMENT ON VIEW driftmirror.dm_metric_names IS
    'Registered metric names with their ids (for COPY into driftmirror.metric) and units';

CREATE VIEW driftmirror.dm_metrics AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       d.name AS metric,
       m.ts,
       m.value,
       d.unit
  FROM driftmirror.metric m
  JOIN driftmirror.resource r ON r.id = m.resource_id
  JOIN driftmirror.resource_group g ON g.id = r.group_id
  JOIN driftmirror.metric_def d ON d.id = m.metric_id;
COMMENT ON VIEW driftmirror.dm_metrics IS
    'Raw metric samples by group, resource and metric name';

CREATE VIEW driftmirror.dm_metric_rollups AS
SELECT x.level, g.name AS group_name, r.name AS resource_name, d.name AS metric,
       x.bucket, x.samples, x.avg, x.max, x.p95
  FROM (SELECT '5m'::text AS level, * FROM driftmirror.metric_5m
        UNION ALL
        SELECT '1h'::text, * FROM driftmirror.metric_1h) x
  JOIN driftmirror.resource r ON r.id = x.resource_id
  JOIN driftmirror.resource_group g ON g.id = r.group_id
  JOIN driftmirror.metric_def d ON d.id = x.metric_id;
COMMENT ON VIEW driftmirror.dm_metric_rollups IS
    '5-minute and 1-hour rollups (samples, avg, max, p95) for model training';

CREATE VIEW driftmirror.dm_metric_partitions AS
SELECT p.name, p.lo, p.hi,
       pg_catalog.pg_total_relation_size(format('driftmirror.%I', p.name)::regclass) AS bytes,
       p.purged_groups, p.created_at
  FROM driftmirror.metric_partition p
 WHERE to_regclass(format('driftmirror.%I', p.name)) IS NOT NULL;
COMMENT ON VIEW driftmirror.dm_metric_partitions IS
    'Partitions of the raw metric table with their bounds and size';

GRANT INSERT ON driftmirror.metric TO driftmirror_admin;

-- _http_request: the HTTP layer from SQL (owner-only; tests and diagnosis)
CREATE FUNCTION driftmirror._http_request(method text, url text, req_body text DEFAULT NULL,
                                          timeout_ms integer DEFAULT 10000,
                                          max_retries integer DEFAULT 0,
                                          bearer_token text DEFAULT NULL,
                                          OUT ok boolean, OUT status integer,
                                          OUT body text, OUT error text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_http_request';

-- ---------------------------------------------------------------------
-- collectors (pull sources polled by the worker)
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_source (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id bigint NOT NULL REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('postgres', 'prometheus')),
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (resource_id, kind)
);
CREATE INDEX ON driftmirror.metric_source (group_id);
COMMENT ON TABLE driftmirror.metric_source IS
    'Pull sources of metrics: a resource polled over libpq (postgres) or through the Prometheus HTTP API';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_source', '');

-- what the worker last saw of each source
CREATE TABLE driftmirror.metric_source_state (
    source_id            bigint PRIMARY KEY
                         REFERENCES driftmirror.metric_source (id) ON DELETE CASCADE,
    last_poll_at         timestamptz,
    last_ok_at           timestamptz,
    last_error           text,
    last_error_at        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    rows_last_poll       integer NOT NULL DEFAULT 0,
    rows_total           bigint NOT NULL DEFAULT 0,
    watermarks           jsonb NOT NULL DEFAULT '{}'
);

-- _source_config: check the configuration of a source; returns it with
-- the names of its metrics (registered on the way for prometheus queries)
CREATE FUNCTION driftmirror._source_config(p_kind text, p_resource_kind text, p_config jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k       text;
    v       jsonb;
    allowed text[];
    iv      interval;
    maxiv   interval;
BEGIN
    IF p_config IS NULL OR jsonb_typeof(p_config) <> 'object' THEN
        RAISE EXCEPTION 'metric source configuration must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_kind IS NULL THEN
        RAISE EXCEPTION 'metric source kind must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    CASE p_kind
    WHEN 'postgres' THEN
        allowed := '{timeout,max_backoff}';
        IF p_resource_kind <> 'postgres' THEN
            RAISE EXCEPTION 'a postgres metric source needs a postgres resource, not a % resource', p_resource_kind
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'prometheus' THEN
        allowed := '{url,queries,units,step,lookback,timeout,max_backoff,bearer_token,bearer_token_file}';
    ELSE
        RAISE EXCEPTION 'unknown metric source kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known kinds: postgres, prometheus.';
    END CASE;

    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_config) e ORDER BY e.key LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown % metric source setting "%"', p_kind, k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Known settings: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k IN ('timeout', 'max_backoff', 'step', 'lookback') THEN
            BEGIN
                iv := driftmirror._opt_interval(v);
            EXCEPTION WHEN data_exception OR syntax_error THEN
                iv := NULL;
            END;
            maxiv := CASE k WHEN 'timeout' THEN interval '60 seconds'
                            WHEN 'lookback' THEN interval '1 day'
                            ELSE interval '1 hour' END;
            IF iv IS NULL OR iv < interval '1 second' OR iv > maxiv THEN
                RAISE EXCEPTION 'invalid value for metric source setting "%": %', k, v
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'The value must be an interval from 1 second to 60 seconds (timeout), 1 day (lookback) or 1 hour (step, max_backoff).';
            END IF;
        ELSIF k IN ('url', 'bearer_token', 'bearer_token_file') AND jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION 'metric source setting "%" must be a string', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    IF p_kind = 'prometheus' THEN
        IF NOT p_config ? 'url' THEN
            RAISE EXCEPTION 'a prometheus metric source needs a "url"'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example {"url": "http://127.0.0.1:9090", "queries": {"app.cpu": "sum(rate(process_cpu_seconds_total[1m]))"}}.';
        END IF;
        PERFORM driftmirror._check_endpoint('web', p_config ->> 'url');
        IF jsonb_typeof(p_config -> 'queries') IS DISTINCT FROM 'object'
           OR NOT EXISTS (SELECT FROM jsonb_object_keys(p_config -> 'queries')) THEN
            RAISE EXCEPTION 'a prometheus metric source needs "queries": an object of metric name to PromQL'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(p_config -> 'queries')) > 100 THEN
            RAISE EXCEPTION 'a prometheus metric source has at most 100 queries'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_config -> 'queries') e ORDER BY e.key LOOP
            PERFORM driftmirror._check_metric_name(k);
            IF jsonb_typeof(v) <> 'string' OR length(v #>> '{}') NOT BETWEEN 1 AND 4000 THEN
                RAISE EXCEPTION 'the PromQL query of metric "%" must be a string of 1 to 4000 characters', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF k LIKE 'pg.%' THEN
                RAISE EXCEPTION 'metric names starting with "pg." are reserved for the postgres collector'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF p_config ? 'units' AND jsonb_typeof(p_config -> 'units') <> 'object' THEN
            RAISE EXCEPTION 'metric source setting "units" must be an object of metric name to unit'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p_config ? 'bearer_token_file'
           AND (p_config ->> 'bearer_token_file') !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$' THEN
            RAISE EXCEPTION 'bearer_token_file must be a plain file name'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The file is read from the driftmirror_secrets directory of the data directory; no paths.';
        END IF;
        IF p_config ? 'bearer_token' AND p_config ? 'bearer_token_file' THEN
            RAISE EXCEPTION 'give either bearer_token or bearer_token_file, not both'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- the query names become metric names
        INSERT INTO driftmirror.metric_def (name, unit, description)
        SELECT q.key, coalesce(p_config -> 'units' ->> q.key, ''),
               'Prometheus: ' || left(q.value #>> '{}', 200)
          FROM jsonb_each(p_config -> 'queries') q
        ON CONFLICT (name) DO NOTHING;
    END IF;
    RETURN p_config;
END
$$;

CREATE FUNCTION driftmirror.dm_add_metric_source("group" text, resource text, kind text,
                                                 config jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group    ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_kind     ALIAS FOR $3;
    gid        bigint;
    rid        bigint;
    rkind      text;
    cfg        jsonb;
    sid        bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT r.kind INTO rkind FROM driftmirror.resource r WHERE r.id = rid;
    cfg := driftmirror._source_config(p_kind, rkind, config);
    IF EXISTS (SELECT FROM driftmirror.metric_source s WHERE s.resource_id = rid AND s.kind = p_kind) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a % metric source', p_resource, p_group, p_kind
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Remove it first with dm_remove_metric_source.';
    END IF;
    INSERT INTO driftmirror.metric_source (group_id, resource_id, kind, config)
    VALUES (gid, rid, p_kind, cfg)
    RETURNING id INTO sid;
    INSERT INTO driftmirror.metric_source_state (source_id) VALUES (sid);
    PERFORM driftmirror._log_action(p_group, p_resource, 'add_metric_source', 'dm_add_metric_source',
                                    jsonb_build_object('kind', p_kind,
                                                       'config', cfg - 'bearer_token' - 'bearer_token_file' - 'url'));
    RETURN sid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_add_metric_source(text, text, text, jsonb) IS
    'Have the worker poll a resource for metrics: kind postgres (libpq) or prometheus (query_range); returns the source id';

CREATE FUNCTION driftmirror.dm_remove_metric_source("group" text, resource text, kind text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group    ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_kind     ALIAS FOR $3;
    gid        bigint;
    rid        bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    DELETE FROM driftmirror.metric_source s WHERE s.resource_id = rid AND s.kind = p_kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no % metric source', p_resource, p_group, p_kind
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM driftmirror._log_action(p_group, p_resource, 'remove_metric_source',
                                    'dm_remove_metric_source', jsonb_build_object('kind', p_kind));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_remove_metric_source(text, text, text) IS
    'Stop polling a metric source; samples already stored stay';

-- _due_sources: sources of the given groups whose next attempt is due.
-- Runs in the worker's read transaction; the I/O happens after it.
CREATE FUNCTION driftmirror._due_sources(p_group_ids bigint[])
RETURNS TABLE (source_id bigint, resource_id bigint, kind text, endpoint text,
               config jsonb, interval_ms bigint, watermarks jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, s.resource_id, s.kind,
           CASE s.kind WHEN 'postgres' THEN r.endpoint ELSE s.config ->> 'url' END,
           s.config,
           (extract(epoch FROM driftmirror._opt_interval(
                driftmirror._effective_options('group', g.options) -> 'interval')) * 1000)::bigint,
           coalesce(st.watermarks, '{}')
      FROM driftmirror.metric_source s
      JOIN driftmirror.resource r ON r.id = s.resource_id
      JOIN driftmirror.resource_group g ON g.id = s.group_id
      LEFT JOIN driftmirror.metric_source_state st ON st.source_id = s.id
     WHERE s.group_id = ANY (p_group_ids)
       AND (st.next_attempt_at IS NULL OR st.next_attempt_at <= clock_timestamp())
     ORDER BY s.id
$$;

-- _store_samples: write collected samples (rows of resources removed
-- meanwhile are dropped); returns rows written
CREATE FUNCTION driftmirror._store_samples(p_ts timestamptz[], p_rid bigint[],
                                           p_mid smallint[], p_val float8[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF cardinality(p_ts) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM driftmirror._ensure_partitions(min(t), max(t)) FROM unnest(p_ts) t;
    INSERT INTO driftmirror.metric (ts, resource_id, metric_id, value)
    SELECT u.t, u.rid, u.mid, u.v
      FROM unnest(p_ts, p_rid, p_mid, p_val) AS u (t, rid, mid, v)
     WHERE EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = u.rid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- _record_polls: the outcome of one pass's polls.  A failure backs the
-- source off exponentially: its group's interval times 2^(failures-1), at
-- most max_backoff (default 60 s).  The first failure of a run and the
-- recovery are logged as actions.
CREATE FUNCTION driftmirror._record_polls(p_source bigint[], p_ok boolean[], p_error text[],
                                          p_rows integer[], p_watermarks jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH u AS (
            SELECT * FROM unnest(p_source, p_ok, p_error, p_rows, p_watermarks)
                       AS u (source_id, ok, error, nrows, wm)
        ), upd AS (
            UPDATE driftmirror.metric_source_state st
               SET last_poll_at = clock_timestamp(),
                   last_ok_at = CASE WHEN u.ok THEN clock_timestamp() ELSE st.last_ok_at END,
                   last_error = CASE WHEN u.ok THEN st.last_error ELSE u.error END,
                   last_error_at = CASE WHEN u.ok THEN st.last_error_at ELSE clock_timestamp() END,
                   consecutive_failures = CASE WHEN u.ok THEN 0 ELSE st.consecutive_failures + 1 END,
                   next_attempt_at = CASE WHEN u.ok THEN NULL
                       ELSE clock_timestamp() + least(
                            coalesce(driftmirror._opt_interval(s.config -> 'max_backoff'), interval '60 seconds'),
                            driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval')
                              * power(2, least(st.consecutive_failures, 20)))
                       END,
                   rows_last_poll = u.nrows,
                   rows_total = st.rows_total + u.nrows,
                   watermarks = coalesce(u.wm, st.watermarks)
              FROM u, driftmirror.metric_source s, driftmirror.resource_group g
             WHERE st.source_id = u.source_id AND s.id = u.source_id AND g.id = s.group_id
            RETURNING st.source_id, u.ok, u.error, st.consecutive_failures, s.kind,
                      s.resource_id, g.name AS group_name
        ), old AS (
            SELECT st.source_id, st.consecutive_failures AS old_failures
              FROM driftmirror.metric_source_state st
             WHERE st.source_id = ANY (p_source)
        )
        SELECT upd.*, old.old_failures, res.name AS resource_name
          FROM upd
          JOIN old ON old.source_id = upd.source_id
          JOIN driftmirror.resource res ON res.id = upd.resource_id
         WHERE (NOT upd.ok AND upd.consecutive_failures = 1)
            OR (upd.ok AND old.old_failures > 0)
    LOOP
        IF r.ok THEN
            PERFORM driftmirror._log_action(r.group_name, r.resource_name, 'metric_source_recovered',
                format('%s metric source polled again after %s failed poll(s)', r.kind, r.old_failures));
        ELSE
            PERFORM driftmirror._log_action(r.group_name, r.resource_name, 'metric_source_failed',
                format('%s metric source failed: %s', r.kind, r.error), '{}', 'failed');
        END IF;
    END LOOP;
END
$$;

CREATE VIEW driftmirror.dm_metric_sources AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       s.kind,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN s.config - 'bearer_token'
                 || CASE WHEN s.config ? 'bearer_token'
                         THEN '{"bearer_token": "(redacted)"}'::jsonb ELSE '{}' END
            ELSE s.config - 'bearer_token' - 'url' - 'bearer_token_file' END AS config,
       CASE WHEN st.last_poll_at IS NULL THEN 'pending'
            WHEN st.consecutive_failures > 0 THEN 'failing'
            ELSE 'ok' END AS state,
       st.last_poll_at,
       st.last_ok_at,
       st.last_error,
       st.last_error_at,
       coalesce(st.consecutive_failures, 0) AS consecutive_failures,
       st.next_attempt_at,
       coalesce(st.rows_last_poll, 0) AS rows_last_poll,
       coalesce(st.rows_total, 0) AS rows_total,
       s.id,
       s.created_at
  FROM driftmirror.metric_source s
  JOIN driftmirror.resource r ON r.id = s.resource_id
  JOIN driftmirror.resource_group g ON g.id = s.group_id
  LEFT JOIN driftmirror.metric_source_state st ON st.source_id = s.id;
COMMENT ON VIEW driftmirror.dm_metric_sources IS
    'Metric sources with their last poll, last error and next attempt; URLs and tokens hidden from non-admins';

-- ---- sql/install/60_mirrors.sql ----
-- 60_mirrors.sql: mirrors of PostgreSQL resources over logical replication,
-- and of cache, app, web and service resources through their HTTP actuator.
--
-- Interfaces other features build on (promotion in particular):
--
--   Objects on the nodes, names derived from ids (dm_<group id>_<resource id>):
--     primary:  publication  <base>      FOR ALL TABLES
--               slot         <base>      plugin driftmirror (origin filter)
--     mirror:   subscription <base>      create_slot = false, slot_name = <base>,
--                                        copy_data = true
--     two-way (option two_way), created once the initial copy is done:
--     mirror:   publication  <base>_rev  FOR ALL TABLES
--               slot         <base>_rev  plugin driftmirror
--     primary:  subscription <base>_rev  copy_data = false
--     Both application databases get the extension driftmirror_node (the
--     fence controls, no tables); the mirror's database is fenced in mode
--     'mirror' (option fence, default true for one-way, false for two-way)
--     before anything else is created.
--   Creation actions, in order (mirror.step = the last one done):
--     fence (if fenced), publication, slot, subscription; then, once every
--     table is ready, two-way only: rev_publication, rev_slot,
--     rev_subscription.
--
--   Table driftmirror.mirror (one row per mirrored resource):
--     id, group_id, resource_id, group_name, resource_name, kind,
--     primary_endpoint (conninfo of the primary when the mirror was made),
--     mirror_endpoint, options, two_way, fence, state
--     ('creating' -> 'syncing' -> 'mirroring', or 'failed'), step (the last
--     action done), pending_action (the action started and not yet recorded:
--     set BEFORE the action, so a crash leaves it to be redone; every action
--     is idempotent), the object names (publication_name, slot_name,
--     subscription_name, rev_*), and the status the worker refreshes each
--     group step: tables_total, tables_ready, tables (jsonb), lag_bytes,
--     lag_seconds, apply_error_count, sync_error_count, rev_apply_error_count,
--     rev_sync_error_count, conflicts, primary_fence and mirror_fence (the
--     fence mode each application database reports: none, mirror,
--     switchover), slot_active, last_error, checked_at.
--   Table driftmirror.mirror_sequence: last_value of every sequence of the
--     primary (refreshed each step; dm_sync_sequences copies fresh values).
--   Table driftmirror.mirror_cleanup: remote drops still to do; rows are
--     queued by a trigger whenever a mirror row is deleted (dm_drop_mirror,
--     dm_remove_resource, dm_drop_group cascades alike), retried by the
--     worker with back-off until they succeed.  Nothing is forgotten
--     silently: dm_status and dm_mirror_cleanups show what is pending.
--
--   Protocol between the worker (C, src/mirror.c) and this file: the worker
--   asks _mirror_next(id, step_started) for the next remote action of a
--   mirror (one short transaction; the action is recorded as pending before
--   it is returned), runs it over libpq outside any transaction, and records
--   the outcome with _mirror_done(...) in another short transaction.  The
--   same for cleanups with _cleanup_due() / _cleanup_done().
--
--   HTTP actuator mirrors (kind <> 'postgres'; contract in docs/mirrors.md,
--   "HTTP actuator contract"): the same protocol, with actions
--   actuator_create (POST <endpoint>/mirrors, Idempotency-Key
--   dm-<actuator_key>-create-<actuator_generation>) and actuator_status
--   (GET <endpoint>/mirrors/<actuator_name>), returned in the http_* columns
--   of _mirror_next and interpreted by _mirror_http_done from the HTTP
--   status and body.  States creating -> provisioning -> mirroring, or
--   failed.  primary_endpoint holds the actuator URL; mirror_endpoint is
--   what the actuator reports (NULL until then, unless asked for); the
--   replication-object columns stay NULL.  A failure counts in attempts and
--   sets retry_at (back-off); _mirror_due skips the mirror until then.  A
--   drop queues one cleanup row (node 'actuator', what 'actuator_mirror':
--   DELETE with key dm-<actuator_key>-drop) if the actuator was ever asked
--   (actuator_contacted).  The bearer token never enters the catalog: only
--   the name of its file (resource option bearer_token_file, copied to
--   token_file) is kept, and the worker reads the file per request.
--
--   Metrics: each status refresh stores mirror.lag_bytes,
--   mirror.lag_seconds, mirror.apply_errors, mirror.rev_apply_errors (two-way)
--   of the primary resource via _mirror_store_metrics, in the transaction of
--   _mirror_done.
--
--   Latency (postgres mirrors): each status read comes with a probe
--   statement (_mirror_probe_sql, the same text for both nodes: a read of
--   the first replicated table that returns no row), which the worker runs
--   three times on the status read's connection and times; the median is
--   the node's sample, passed to _mirror_done as p_latency_ms and recorded
--   by _mirror_record_latency: columns primary_latency_ms /
--   mirror_latency_ms, metrics mirror.primary_latency_ms /
--   mirror.mirror_latency_ms (of the primary resource).  The ratio
--   mirror/primary is _mirror_latency(mirror id, window): the median of
--   each node's samples in the window, both floored at 1 ms, divided; the
--   row keeps it for the group's auto_promote_window (latency_ratio,
--   *_latency_median_ms, latency_samples).  Samples from before
--   latency_since (reset whenever an endpoint of the mirror changes, as a
--   promotion does) do not count.

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('mirror', 'two_way', 'boolean', 'false', NULL, NULL, NULL,
     'also replicate from the mirror back to the primary (both through the origin filter)'),
    ('mirror', 'fence', 'boolean', NULL, NULL, NULL, NULL,
     'fence the mirror database against client writes (default: true for one-way, false for two-way)'),
    ('mirror', 'copy_data', 'boolean', 'true', NULL, NULL, NULL,
     'copy the existing data to the mirror before streaming changes'),
    ('mirror', 'publisher_endpoint', 'text', NULL, NULL, NULL, NULL,
     'conninfo the mirror uses to reach the primary, when it differs from the primary resource''s endpoint'),
    ('mirror', 'max_attempts', 'integer', '5', '1', '1000', NULL,
     'failed attempts of one creation action before the mirror is marked failed'),
    ('mirror', 'actuator_timeout', 'interval', '"10 seconds"', '1 second', '60 seconds', NULL,
     'HTTP actuator mirrors: deadline of one request to the actuator'),
    ('mirror', 'max_backoff', 'interval', '"60 seconds"', '1 second', '1 hour', NULL,
     'HTTP actuator mirrors: longest wait before a failed request is tried again'),
    ('mirror', 'actuator_options', 'object', NULL, NULL, NULL, NULL,
     'HTTP actuator mirrors: a JSON object passed as is in the "options" member of the create request'),
    ('resource', 'bearer_token_file', 'text', NULL, NULL, NULL, NULL,
     'resources reached over HTTP: file of the data directory''s driftmirror_secrets directory holding the actuator''s bearer token');

CREATE TABLE driftmirror.mirror (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id            bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id         bigint NOT NULL UNIQUE REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    group_name          text NOT NULL,
    resource_name       text NOT NULL,
    kind                text NOT NULL,
    primary_endpoint    text NOT NULL,
    publisher_endpoint  text NOT NULL,
    mirror_endpoint     text,
    options             jsonb NOT NULL DEFAULT '{}',
    two_way             boolean NOT NULL,
    fence               boolean NOT NULL,
    copy_data           boolean NOT NULL,
    state               text NOT NULL DEFAULT 'creating'
                        CHECK (state IN ('creating', 'syncing', 'provisioning', 'mirroring', 'failed')),
    state_reason        text,
    step                text NOT NULL DEFAULT 'start',
    pending_action      text,
    pending_since       timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    publication_name    text,
    slot_name           text,
    subscription_name   text,
    rev_publication_name  text,
    rev_slot_name       text,
    rev_subscription_name text,
    tables_total        integer,
    tables_ready        integer,
    tables              jsonb,
    lag_bytes           bigint,
    lag_seconds         double precision,
    lag_probe_lsn       pg_lsn,
    lag_probe_at        timestamptz,
    primary_latency_ms  double precision,
    mirror_latency_ms   double precision,
    latency_ratio       double precision,
    primary_latency_median_ms double precision,
    mirror_latency_median_ms  double precision,
    latency_samples     integer,
    latency_since       timestamptz NOT NULL DEFAULT now(),
    latency_error       text,
    apply_error_count   bigint NOT NULL DEFAULT 0,
    sync_error_count    bigint NOT NULL DEFAULT 0,
    rev_apply_error_count bigint NOT NULL DEFAULT 0,
    rev_sync_error_count  bigint NOT NULL DEFAULT 0,
    conflicts           bigint NOT NULL DEFAULT 0,
    primary_fence       text,
    mirror_fence        text,
    slot_active         boolean,
    last_conflict_at    timestamptz,
    primary_checked_at  timestamptz,
    mirror_checked_at   timestamptz,
    last_error          text,
    last_error_detail   text,
    last_error_sqlstate text,
    last_error_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    state_changed_at    timestamptz NOT NULL DEFAULT now(),
    synced_at           timestamptz,
    -- HTTP actuator mirrors (kinds cache, app, web, service)
    actuator_name       text,
    actuator_key        text,
    actuator_generation integer NOT NULL DEFAULT 0,
    actuator_state      text,
    actuator_detail     text,
    actuator_contacted  boolean NOT NULL DEFAULT false,
    token_file          text,
    retry_at            timestamptz,
    UNIQUE (group_id, resource_id),
    CHECK (kind <> 'postgres' OR (mirror_endpoint IS NOT NULL AND publication_name IS NOT NULL
                                  AND slot_name IS NOT NULL AND subscription_name IS NOT NULL)),
    CHECK (kind = 'postgres' OR (actuator_name IS NOT NULL AND actuator_key IS NOT NULL)),
    CHECK (state <> 'syncing' OR kind = 'postgres'),
    CHECK (state <> 'provisioning' OR kind <> 'postgres')
);
COMMENT ON TABLE driftmirror.mirror IS
    'Mirrors: a primary resource, its mirror, the replication objects and their state';

CREATE TABLE driftmirror.mirror_sequence (
    mirror_id     bigint NOT NULL REFERENCES driftmirror.mirror (id) ON DELETE CASCADE,
    sequence_name text NOT NULL,
    last_value    bigint,
    collected_at  timestamptz NOT NULL,
    PRIMARY KEY (mirror_id, sequence_name)
);
COMMENT ON TABLE driftmirror.mirror_sequence IS
    'Last value of every sequence of a mirrored primary, for switchover';

CREATE TABLE driftmirror.mirror_cleanup (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name      text NOT NULL,
    resource_name   text NOT NULL,
    mirror_id       bigint NOT NULL,
    node            text NOT NULL CHECK (node IN ('primary', 'mirror', 'actuator')),
    endpoint        text NOT NULL,
    what            text NOT NULL CHECK (what IN ('subscription', 'slot', 'publication', 'fence',
                                                  'actuator_mirror')),
    object_name     text,
    priority        integer NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_error_detail text,
    last_error_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- actuator_mirror rows: DELETE <endpoint>/mirrors/<object_name>
    idempotency_key text,
    token_file      text,
    timeout_ms      integer
);
CREATE INDEX ON driftmirror.mirror_cleanup (next_attempt_at);
COMMENT ON TABLE driftmirror.mirror_cleanup IS
    'Replication objects still to drop on a node (retried by the worker until done)';

-- mirror figures recorded in the metric store (55_metrics.sql) at every
-- status refresh, as metrics of the primary resource
INSERT INTO driftmirror.metric_def (name, unit, description, builtin) VALUES
    ('mirror.lag_bytes', 'B', 'WAL of the primary not yet confirmed by its mirror (actuator mirrors: as the actuator reports it)', true),
    ('mirror.lag_seconds', 's', 'age of the oldest primary position its mirror has not confirmed (actuator mirrors: as the actuator reports it)', true),
    ('mirror.apply_errors', 'errors', 'apply errors of the mirror''s subscription so far (pg_stat_subscription_stats, cumulative)', true),
    ('mirror.rev_apply_errors', 'errors', 'two-way mirrors: apply errors of the primary''s subscription to the mirror so far (cumulative)', true),
    ('mirror.primary_latency_ms', 'ms', 'round trip of the latency probe on the primary, seen from the control node: median of 3 probes per refresh', true),
    ('mirror.mirror_latency_ms', 'ms', 'round trip of the same latency probe on the mirror, seen from the control node: median of 3 probes per refresh', true);

-- ---- C helpers (remote_conn.c via mirror.c) ----

-- _remote_value: run one SQL text on a node and return the first column of
-- the first row (NULL if none).  node_session: first create
-- driftmirror_node there if missing and pass the write fence.
CREATE FUNCTION driftmirror._remote_value(conninfo text, label text, sql text,
                                          node_session boolean DEFAULT false)
RETURNS text
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_remote_value';

-- ---- names and node-side SQL ----

-- _node_facts_sql: what preflight needs to know about a node, as one jsonb
CREATE FUNCTION driftmirror._node_facts_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $sql$ SELECT $q$
WITH rels AS (
    SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS name, c.relreplident
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND c.relpersistence OPERATOR(pg_catalog.=) 'p'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname OPERATOR(pg_catalog.!~) '^pg_toast'
)
SELECT pg_catalog.jsonb_build_object(
    'wal_level', pg_catalog.current_setting('wal_level'),
    'max_replication_slots', pg_catalog.current_setting('max_replication_slots')::int,
    'used_slots', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots),
    'max_wal_senders', pg_catalog.current_setting('max_wal_senders')::int,
    'used_wal_senders', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
                          WHERE backend_type OPERATOR(pg_catalog.=) 'walsender'),
    'output_plugin_libraries', (SELECT setting FROM pg_catalog.pg_settings
                                 WHERE name OPERATOR(pg_catalog.=) 'output_plugin_libraries'),
    'shared_preload_libraries', pg_catalog.current_setting('shared_preload_libraries'),
    'superuser', (SELECT rolsuper FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) current_user),
    'server_version_num', pg_catalog.current_setting('server_version_num')::int,
    'no_identity', (SELECT COALESCE(pg_catalog.jsonb_agg(r.name ORDER BY r.name), '[]')
                      FROM rels r
                     WHERE r.relreplident OPERATOR(pg_catalog.=) 'n'
                        OR (r.relreplident OPERATOR(pg_catalog.=) 'd' AND NOT EXISTS (
                               SELECT FROM pg_catalog.pg_index i
                                WHERE i.indrelid OPERATOR(pg_catalog.=) r.oid AND i.indisprimary))),
    'columns', (SELECT COALESCE(pg_catalog.jsonb_object_agg(t.name, t.cols), '{}')
                  FROM (SELECT r.name,
                               pg_catalog.jsonb_object_agg(a.attname,
                                   pg_catalog.format_type(a.atttypid, a.atttypmod)) AS cols
                          FROM rels r
                          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) r.oid
                         WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                         GROUP BY r.name) t))::text
$q$ $sql$;

-- _split_list: a comma-separated setting as a trimmed array
CREATE FUNCTION driftmirror._split_list(p_list text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(btrim(x, ' "')), '{}')
      FROM unnest(string_to_array(coalesce(p_list, ''), ',')) x
     WHERE btrim(x, ' "') <> ''
$$;

-- _mirror_preflight: check both nodes; returns the problems found, one
-- clear sentence each (empty when all is well).  Raises only if a node
-- cannot be reached (with the node named, never the conninfo).
CREATE FUNCTION driftmirror._mirror_preflight(p_primary text, p_primary_label text,
                                              p_mirror text, p_mirror_label text,
                                              p_two_way boolean)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    facts   jsonb[];
    f       jsonb;
    lbl     text;
    probs   text[] := '{}';
    need_slots integer;
    need_senders integer;
    t       text;
    c       text;
    pcols   jsonb;
    mcols   jsonb;
    i       integer;
BEGIN
    facts := ARRAY[driftmirror._remote_value(p_primary, p_primary_label, driftmirror._node_facts_sql())::jsonb,
                   driftmirror._remote_value(p_mirror, p_mirror_label, driftmirror._node_facts_sql())::jsonb];
    FOR i IN 1..2 LOOP
        f := facts[i];
        lbl := CASE i WHEN 1 THEN p_primary_label ELSE p_mirror_label END;
        IF f ->> 'wal_level' <> 'logical' THEN
            probs := probs || format('node "%s": wal_level is "%s", not "logical"', lbl, f ->> 'wal_level');
        END IF;
        need_slots := CASE WHEN i = 1 OR p_two_way THEN 2 ELSE 1 END;
        IF (f ->> 'max_replication_slots')::int - (f ->> 'used_slots')::int < need_slots THEN
            probs := probs || format('node "%s": only %s free replication slot(s) of max_replication_slots = %s; %s needed',
                                     lbl, (f ->> 'max_replication_slots')::int - (f ->> 'used_slots')::int,
                                     f ->> 'max_replication_slots', need_slots);
        END IF;
        need_senders := CASE WHEN i = 1 OR p_two_way THEN 2 ELSE 0 END;
        IF (f ->> 'max_wal_senders')::int - (f ->> 'used_wal_senders')::int < need_senders THEN
            probs := probs || format('node "%s": only %s free WAL sender(s) of max_wal_senders = %s; %s needed',
                                     lbl, (f ->> 'max_wal_senders')::int - (f ->> 'used_wal_senders')::int,
                                     f ->> 'max_wal_senders', need_senders);
        END IF;
        IF NOT 'driftmirror' = ANY (driftmirror._split_list(f ->> 'output_plugin_libraries')) THEN
            probs := probs || format('node "%s": output_plugin_libraries (%s) does not list driftmirror',
                                     lbl, coalesce(nullif(f ->> 'output_plugin_libraries', ''), 'empty'));
        END IF;
        IF NOT 'driftmirror' = ANY (driftmirror._split_list(f ->> 'shared_preload_libraries')) THEN
            probs := probs || format('node "%s": driftmirror is not in shared_preload_libraries', lbl);
        END IF;
        IF NOT (f ->> 'superuser')::boolean THEN
            probs := probs || format('node "%s": the connection role is not a superuser', lbl);
        END IF;
        IF i = 1 OR p_two_way THEN
            FOR t IN SELECT jsonb_array_elements_text(f -> 'no_identity') LOOP
                probs := probs || format('node "%s": table %s has neither a primary key nor a replica identity',
                                         lbl, t);
            END LOOP;
        END IF;
    END LOOP;

    -- schema: every table and column of the primary exists on the mirror with
    -- the same type (in two-way mode also the other way round)
    FOR t, pcols IN SELECT key, value FROM jsonb_each(facts[1] -> 'columns') ORDER BY key LOOP
        mcols := facts[2] -> 'columns' -> t;
        IF mcols IS NULL THEN
            probs := probs || format('schema: table %s is missing on the mirror', t);
            CONTINUE;
        END IF;
        FOR c IN SELECT key FROM jsonb_each(pcols) ORDER BY key LOOP
            IF NOT mcols ? c THEN
                probs := probs || format('schema: column %s.%I (%s) is missing on the mirror',
                                         t, c, pcols ->> c);
            ELSIF mcols ->> c <> pcols ->> c THEN
                probs := probs || format('schema: column %s.%I is %s on the primary but %s on the mirror',
                                         t, c, pcols ->> c, mcols ->> c);
            END IF;
        END LOOP;
        IF p_two_way THEN
            FOR c IN SELECT key FROM jsonb_each(mcols) ORDER BY key LOOP
                IF NOT pcols ? c THEN
                    probs := probs || format('schema: column %s.%I exists only on the mirror (two-way mode)', t, c);
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    IF p_two_way THEN
        FOR t IN SELECT key FROM jsonb_each(facts[2] -> 'columns')
                  WHERE NOT facts[1] -> 'columns' ? key ORDER BY key LOOP
            probs := probs || format('schema: table %s exists only on the mirror (two-way mode)', t);
        END LOOP;
    END IF;
    RETURN probs;
END
$$;

-- _mirror_sub_sql: the idempotent CREATE SUBSCRIPTION run on the subscriber
CREATE FUNCTION driftmirror._mirror_sub_sql(p_name text, p_conninfo text, p_pub text,
                                            p_slot text, p_copy boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$DO $dm$ BEGIN
IF NOT EXISTS (SELECT FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
                WHERE s.subname OPERATOR(pg_catalog.=) %L AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) THEN
  CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I
    WITH (create_slot = false, slot_name = %L, copy_data = %s, enabled = true);
END IF; END $dm$ $f$, p_name, p_name, p_conninfo, p_pub, p_slot,
                  CASE WHEN p_copy THEN 'true' ELSE 'false' END)
$$;

-- _mirror_pub_sql / _mirror_slot_sql: idempotent publication and slot creation
CREATE FUNCTION driftmirror._mirror_pub_sql(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$DO $dm$ BEGIN
IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname OPERATOR(pg_catalog.=) %L) THEN
  CREATE PUBLICATION %I FOR ALL TABLES;
END IF; END $dm$ $f$, p_name, p_name)
$$;

CREATE FUNCTION driftmirror._mirror_slot_sql(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$SELECT pg_catalog.count(*) FROM (
  SELECT pg_catalog.pg_create_logical_replication_slot(%L, 'driftmirror')
   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots
                      WHERE slot_name OPERATOR(pg_catalog.=) %L)) s$f$, p_name, p_name)
$$;

-- _mirror_primary_status_sql: what the worker reads on the primary each step
CREATE FUNCTION driftmirror._mirror_primary_status_sql(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$SELECT pg_catalog.jsonb_build_object(
  'now_lsn', pg_catalog.pg_current_wal_lsn(),
  'slot_exists', s.slot_name IS NOT NULL,
  'slot_active', s.active,
  'confirmed_lsn', s.confirmed_flush_lsn,
  'lag_bytes', pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
  'fence', (SELECT f.mode FROM driftmirror_node.fence_status() f
             WHERE f.dboid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                                   WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())),
  'sequences', (SELECT COALESCE(pg_catalog.jsonb_object_agg(
                    pg_catalog.format('%%I.%%I', q.schemaname, q.sequencename), q.last_value), '{}')
                  FROM pg_catalog.pg_sequences q),
  'rev_apply_errors', (SELECT apply_error_count FROM pg_catalog.pg_stat_subscription_stats
                        WHERE subname OPERATOR(pg_catalog.=) %L),
  'rev_sync_errors', (SELECT sync_error_count FROM pg_catalog.pg_stat_subscription_stats
                       WHERE subname OPERATOR(pg_catalog.=) %L))::text
FROM (SELECT 1) one
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name OPERATOR(pg_catalog.=) %L$f$,
        coalesce(m.rev_subscription_name, ''), coalesce(m.rev_subscription_name, ''), m.slot_name)
$$;

-- _mirror_mirror_status_sql: what the worker reads on the mirror each step
CREATE FUNCTION driftmirror._mirror_mirror_status_sql(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$SELECT pg_catalog.jsonb_build_object(
  'sub_exists', s.oid IS NOT NULL,
  'sub_enabled', s.subenabled,
  'fence', (SELECT f.mode FROM driftmirror_node.fence_status() f
             WHERE f.dboid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                                   WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())),
  'tables', (SELECT COALESCE(pg_catalog.jsonb_object_agg(r.srrelid::pg_catalog.regclass::text,
                      CASE r.srsubstate WHEN 'i' THEN 'init' WHEN 'd' THEN 'copying' WHEN 'f' THEN 'copied'
                                        WHEN 's' THEN 'synced' WHEN 'r' THEN 'ready' ELSE r.srsubstate::text END), '{}')
               FROM pg_catalog.pg_subscription_rel r WHERE r.srsubid OPERATOR(pg_catalog.=) s.oid),
  'apply_errors', st.apply_error_count,
  'sync_errors', st.sync_error_count,
  'worker_running', EXISTS (SELECT FROM pg_catalog.pg_stat_subscription w
                             WHERE w.subid OPERATOR(pg_catalog.=) s.oid AND w.pid IS NOT NULL AND w.relid IS NULL),
  'last_msg', (SELECT pg_catalog.max(w.last_msg_receipt_time) FROM pg_catalog.pg_stat_subscription w
                WHERE w.subid OPERATOR(pg_catalog.=) s.oid))::text
FROM (SELECT 1) one
LEFT JOIN pg_catalog.pg_subscription s ON s.subname OPERATOR(pg_catalog.=) %L
     AND s.subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                           WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid OPERATOR(pg_catalog.=) s.oid$f$,
        m.subscription_name)
$$;

-- _mirror_probe_sql: the latency probe, the same text for both nodes: a
-- read of the first replicated table (byte order of its qualified name,
-- as the mirror reports them) that returns no row.
-- It takes the path of a client's read (parse, the table's lock, plan,
-- executor start, the answer) but no data page, so it costs the same on
-- both nodes whatever their tables hold; it waits like a client for a lock
-- that blocks reads (ACCESS EXCLUSIVE, as DDL or VACUUM FULL take).  Before
-- the mirror has reported its tables, or without tables: an empty SELECT.
-- Table names come from the mirror (regclass text): they are parsed and
-- quoted again, and anything else is not used.
CREATE FUNCTION driftmirror._mirror_probe_sql(m driftmirror.mirror)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     text;
    parts text[];
BEGIN
    IF jsonb_typeof(m.tables) = 'object' THEN
        SELECT min(k COLLATE "C") INTO t FROM jsonb_object_keys(m.tables) k;
    END IF;
    IF t IS NOT NULL THEN
        BEGIN
            parts := parse_ident(t);
        EXCEPTION WHEN invalid_parameter_value THEN
            parts := NULL;
        END;
        IF cardinality(parts) = 2 THEN
            RETURN format('SELECT FROM %I.%I WHERE false', parts[1], parts[2]);
        END IF;
    END IF;
    RETURN 'SELECT';
END
$$;

-- ---- the state machine ----

-- _mirror_set_state: change state and log the transition
CREATE FUNCTION driftmirror._mirror_set_state(m driftmirror.mirror, p_state text, p_reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.state = p_state THEN
        UPDATE driftmirror.mirror SET state_reason = p_reason WHERE id = m.id;
        RETURN;
    END IF;
    UPDATE driftmirror.mirror
       SET state = p_state, state_reason = p_reason, state_changed_at = now(),
           synced_at = CASE WHEN p_state = 'mirroring' THEN coalesce(synced_at, now()) ELSE synced_at END
     WHERE id = m.id;
    PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_' || p_state, p_reason,
                                    jsonb_build_object('from', m.state, 'to', p_state));
END
$$;

-- _mirror_due: the mirrors of a group the worker has work for
CREATE FUNCTION driftmirror._mirror_due(p_group_id bigint)
RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id FROM driftmirror.mirror
     WHERE group_id = p_group_id AND state <> 'failed'
       AND (retry_at IS NULL OR retry_at <= clock_timestamp())
     ORDER BY id
$$;

-- _actuator_token_file: the token file an actuator request of mirror m
-- uses: the one its resource names now (none once the option is removed),
-- or, once the resource is gone, the one recorded with the mirror
CREATE FUNCTION driftmirror._actuator_token_file(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.id IS NULL THEN m.token_file ELSE r.options ->> 'bearer_token_file' END
      FROM (SELECT 1) one LEFT JOIN driftmirror.resource r ON r.id = m.resource_id
$$;

-- _mirror_next: the next remote action of a mirror in this step, recorded as
-- pending before it is returned; no row when there is nothing to do now.
-- node_session is true for every action: the worker's sessions pass the fence.
-- A postgres action has conninfo and sql; an HTTP actuator action (kinds
-- cache, app, web, service) has the http_* columns instead.  Status reads
-- (status_primary, status_mirror) also have probe_sql: the latency probe
-- the worker times on the same connection after the status query.
CREATE FUNCTION driftmirror._mirror_next(p_mirror_id bigint, p_step_started timestamptz)
RETURNS TABLE (action text, conninfo text, label text, sql text,
               http_method text, http_url text, http_body text, http_key text,
               http_token_file text, http_timeout_ms integer, probe_sql text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m       driftmirror.mirror;
    plabel  text;
    mlabel  text;
    eff     jsonb;
    base_url text;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id FOR UPDATE;
    IF NOT FOUND OR m.state = 'failed' THEN
        RETURN;
    END IF;

    IF m.kind <> 'postgres' THEN
        -- HTTP actuator: a failed request waits for its back-off
        IF m.retry_at IS NOT NULL AND m.retry_at > clock_timestamp() THEN
            RETURN;
        END IF;
        eff := driftmirror._effective_options('mirror', m.options);
        label := format('%s/%s actuator', m.group_name, m.resource_name);
        http_timeout_ms := (extract(epoch FROM driftmirror._opt_interval(eff -> 'actuator_timeout')) * 1000)::integer;
        -- the token file named by the resource now (it may have been changed)
        http_token_file := driftmirror._actuator_token_file(m);
        base_url := rtrim(m.primary_endpoint, '/') || '/mirrors';
        IF m.state = 'creating' THEN
            action := 'actuator_create';
            http_method := 'POST';
            http_url := base_url;
            http_body := jsonb_build_object('group', m.group_name, 'resource', m.resource_name,
                                            'kind', m.kind, 'mirror', m.actuator_name,
                                            'action', 'create', 'endpoint', m.mirror_endpoint,
                                            'options', coalesce(eff -> 'actuator_options', '{}'))::text;
            http_key := format('dm-%s-create-%s', m.actuator_key, m.actuator_generation);
            UPDATE driftmirror.mirror
               SET pending_action = action, pending_since = clock_timestamp(),
                   actuator_contacted = true, token_file = http_token_file
             WHERE id = m.id;
            RETURN NEXT;
            RETURN;
        END IF;
        -- provisioning, mirroring: one status poll per step, none while the
        -- mirror is being promoted (70_promotion.sql, 72_promotion_actuator.sql:
        -- an answer read before the switch must not land after it); the
        -- poll's start is kept in pending_since for _mirror_http_done
        IF (m.mirror_checked_at IS NULL OR m.mirror_checked_at < p_step_started)
           AND NOT EXISTS (SELECT FROM driftmirror.promotion p
                            WHERE p.mirror_id = m.id
                              AND p.state NOT IN ('done', 'rolled_back', 'refused', 'failed')) THEN
            action := 'actuator_status';
            http_method := 'GET';
            http_url := base_url || '/' || m.actuator_name;
            UPDATE driftmirror.mirror SET token_file = http_token_file, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
        END IF;
        RETURN;
    END IF;

    plabel := format('%s/%s primary', m.group_name, m.resource_name);
    mlabel := format('%s/%s mirror', m.group_name, m.resource_name);

    IF m.state = 'creating' THEN
        -- the fence comes first, so that no client writes into the mirror
        -- from the moment it starts receiving data
        action := CASE m.step
                  WHEN 'start' THEN CASE WHEN m.fence THEN 'fence' ELSE 'publication' END
                  WHEN 'fence' THEN 'publication'
                  WHEN 'publication' THEN 'slot'
                  WHEN 'slot' THEN 'subscription'
                  END;
        IF action IS NULL THEN
            PERFORM driftmirror._mirror_set_state(m, 'syncing', 'initial copy running');
            m.state := 'syncing';
        ELSE
            CASE action
            WHEN 'publication' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_pub_sql(m.publication_name);
            WHEN 'slot' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_slot_sql(m.slot_name);
            WHEN 'subscription' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_sub_sql(m.subscription_name, m.publisher_endpoint,
                                                   m.publication_name, m.slot_name, m.copy_data);
            WHEN 'fence' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := $q$SELECT driftmirror_node.fence_set('mirror')$q$;
            END CASE;
            UPDATE driftmirror.mirror SET pending_action = action, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    -- syncing / mirroring: read both sides once per step, each with the
    -- same latency probe
    IF m.primary_checked_at IS NULL OR m.primary_checked_at < p_step_started THEN
        action := 'status_primary'; conninfo := m.primary_endpoint; label := plabel;
        sql := driftmirror._mirror_primary_status_sql(m);
        probe_sql := driftmirror._mirror_probe_sql(m);
        RETURN NEXT;
        RETURN;
    END IF;
    IF m.mirror_checked_at IS NULL OR m.mirror_checked_at < p_step_started THEN
        action := 'status_mirror'; conninfo := m.mirror_endpoint; label := mlabel;
        sql := driftmirror._mirror_mirror_status_sql(m);
        probe_sql := driftmirror._mirror_probe_sql(m);
        RETURN NEXT;
        RETURN;
    END IF;

    -- two-way: the way back is made once the initial copy is done, so that
    -- copied rows are never decoded on the mirror
    IF m.state = 'syncing' AND m.two_way AND m.tables_ready = m.tables_total THEN
        action := CASE m.step
                  WHEN 'subscription' THEN 'rev_publication'
                  WHEN 'rev_publication' THEN 'rev_slot'
                  WHEN 'rev_slot' THEN 'rev_subscription'
                  END;
        IF action IS NOT NULL THEN
            CASE action
            WHEN 'rev_publication' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_pub_sql(m.rev_publication_name);
            WHEN 'rev_slot' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_slot_sql(m.rev_slot_name);
            WHEN 'rev_subscription' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_sub_sql(m.rev_subscription_name, m.mirror_endpoint,
                                                   m.rev_publication_name, m.rev_slot_name, false);
            END CASE;
            UPDATE driftmirror.mirror SET pending_action = action, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
        END IF;
    END IF;
END
$$;

-- _mirror_store_metrics: record mirror figures as metrics of the primary
-- resource in the metric store (55_metrics.sql), through the collectors'
-- own path (_store_samples), in the caller's transaction: the one that
-- records the mirror's state.  p_values: {"metric name": number, ...};
-- nulls and non-finite values are skipped.  Does nothing when the metric
-- store is absent.
CREATE FUNCTION driftmirror._mirror_store_metrics(p_resource_id bigint, p_values jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts   timestamptz[];
    rids bigint[];
    mids smallint[];
    vals float8[];
BEGIN
    IF to_regprocedure('driftmirror._store_samples(timestamp with time zone[], bigint[], smallint[], double precision[])') IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(clock_timestamp()), array_agg(p_resource_id), array_agg(d.id),
           array_agg((v.value #>> '{}')::float8)
      INTO ts, rids, mids, vals
      FROM jsonb_each(p_values) v
      JOIN driftmirror.metric_def d ON d.name = v.key
     WHERE jsonb_typeof(v.value) = 'number'
       AND (v.value #>> '{}')::float8 > '-Infinity'::float8
       AND (v.value #>> '{}')::float8 < 'Infinity'::float8;
    IF ts IS NOT NULL THEN
        PERFORM driftmirror._store_samples(ts, rids, mids, vals);
    END IF;
END
$$;

-- _mirror_latency: the latency of a mirror against its primary over the
-- last p_window: the median of each node's samples (metrics
-- mirror.primary_latency_ms and mirror.mirror_latency_ms of the primary
-- resource, taken since latency_since), and their ratio mirror/primary with
-- both medians floored at 1 ms, so that sub-millisecond noise cannot make a
-- large ratio (two nodes both under 1 ms have ratio 1).  ratio is NULL
-- while either node has no sample in the window.  For auto-promotion (over
-- auto_promote_window) and any other gate that compares the two nodes.
CREATE FUNCTION driftmirror._mirror_latency(p_mirror_id bigint, p_window interval)
RETURNS TABLE (primary_ms double precision, mirror_ms double precision, ratio double precision,
               primary_samples integer, mirror_samples integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    floor_ms constant double precision := 1.0;
    rid   bigint;
    since timestamptz;
    pid   smallint := (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = 'mirror.primary_latency_ms');
    mid   smallint := (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = 'mirror.mirror_latency_ms');
BEGIN
    SELECT m.resource_id, greatest(m.latency_since, clock_timestamp() - p_window)
      INTO rid, since
      FROM driftmirror.mirror m WHERE m.id = p_mirror_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x.value) FILTER (WHERE x.metric_id = pid),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY x.value) FILTER (WHERE x.metric_id = mid),
           count(*) FILTER (WHERE x.metric_id = pid),
           count(*) FILTER (WHERE x.metric_id = mid)
      INTO primary_ms, mirror_ms, primary_samples, mirror_samples
      FROM driftmirror.metric x
     WHERE x.resource_id = rid AND x.metric_id IN (pid, mid) AND x.ts >= since;
    IF primary_ms IS NOT NULL AND mirror_ms IS NOT NULL THEN
        ratio := greatest(mirror_ms, floor_ms) / greatest(primary_ms, floor_ms);
    END IF;
    RETURN NEXT;
END
$$;

-- _mirror_record_latency: record a node's latency sample (p_latency_ms, from
-- status_primary or status_mirror; NULL when none was taken) in the mirror
-- row and as a metric, a failed probe in latency_error ("primary: ..." or
-- "mirror: ...", until that node gives a sample), and, after the mirror's
-- read (the second of a step), refresh the ratio the row shows (over the
-- group's auto_promote_window).  A sample whose read began before
-- latency_since (p_read_started: an endpoint changed meanwhile, as a
-- promotion's flip does) may describe the other node and is dropped.
-- Called by _mirror_done after _mirror_record_status, in the same
-- transaction.
CREATE FUNCTION driftmirror._mirror_record_latency(p_mirror_id bigint, p_action text,
                                                   p_latency_ms double precision, p_probe_error text,
                                                   p_read_started timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m    driftmirror.mirror;
    side text := CASE p_action WHEN 'status_primary' THEN 'primary' ELSE 'mirror' END;
    win  interval;
    l    record;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id;
    IF NOT FOUND OR m.kind <> 'postgres' OR p_read_started < m.latency_since THEN
        RETURN;
    END IF;
    IF p_latency_ms >= 0 AND p_latency_ms < 'Infinity'::float8 THEN
        UPDATE driftmirror.mirror
           SET primary_latency_ms = CASE WHEN side = 'primary' THEN p_latency_ms ELSE primary_latency_ms END,
               mirror_latency_ms = CASE WHEN side = 'mirror' THEN p_latency_ms ELSE mirror_latency_ms END,
               latency_error = CASE WHEN starts_with(latency_error, side || ':') THEN NULL ELSE latency_error END
         WHERE id = m.id;
        PERFORM driftmirror._mirror_store_metrics(m.resource_id,
            jsonb_build_object(format('mirror.%s_latency_ms', side), p_latency_ms));
    ELSIF p_probe_error IS NOT NULL THEN
        UPDATE driftmirror.mirror
           SET latency_error = format('%s: %s', side, left(p_probe_error, 500))
         WHERE id = m.id;
    END IF;
    IF side = 'primary' AND m.latency_ratio IS NOT NULL THEN
        RETURN;
    END IF;
    win := driftmirror._opt_interval(driftmirror._effective_options('group',
               (SELECT g.options FROM driftmirror.resource_group g WHERE g.id = m.group_id))
           -> 'auto_promote_window');
    SELECT * INTO l FROM driftmirror._mirror_latency(m.id, win);
    UPDATE driftmirror.mirror
       SET latency_ratio = l.ratio,
           primary_latency_median_ms = l.primary_ms,
           mirror_latency_median_ms = l.mirror_ms,
           latency_samples = least(l.primary_samples, l.mirror_samples)
     WHERE id = m.id;
END
$$;

-- _mirror_latency_reset: BEFORE UPDATE trigger on mirror: when an endpoint
-- changes (a promotion swaps them), earlier latency samples describe other
-- nodes: start afresh
CREATE FUNCTION driftmirror._mirror_latency_reset()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.latency_since := clock_timestamp();
    NEW.primary_latency_ms := NULL;
    NEW.mirror_latency_ms := NULL;
    NEW.latency_ratio := NULL;
    NEW.primary_latency_median_ms := NULL;
    NEW.mirror_latency_median_ms := NULL;
    NEW.latency_samples := NULL;
    NEW.latency_error := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER mirror_latency_reset BEFORE UPDATE OF primary_endpoint, mirror_endpoint
    ON driftmirror.mirror
    FOR EACH ROW
    WHEN (OLD.primary_endpoint IS DISTINCT FROM NEW.primary_endpoint
          OR OLD.mirror_endpoint IS DISTINCT FROM NEW.mirror_endpoint)
    EXECUTE FUNCTION driftmirror._mirror_latency_reset();

-- _mirror_record_status: store what status_primary / status_mirror read
CREATE FUNCTION driftmirror._mirror_record_status(m driftmirror.mirror, p_action text, r jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total   integer;
    ready   integer;
    lagsec  double precision;
    probe   pg_lsn := m.lag_probe_lsn;
    probe_at timestamptz := m.lag_probe_at;
    errs    bigint;
    new_conflicts bigint := 0;
BEGIN
    IF p_action = 'status_primary' THEN
        IF NOT (r ->> 'slot_exists')::boolean THEN
            UPDATE driftmirror.mirror
               SET primary_checked_at = clock_timestamp(), lag_bytes = NULL, lag_seconds = NULL,
                   last_error = format('replication slot "%s" is missing on the primary', m.slot_name),
                   last_error_sqlstate = '55000', last_error_at = clock_timestamp()
             WHERE id = m.id;
            RETURN;
        END IF;
        -- lag in seconds: age of the oldest primary position (sampled once
        -- per step) the mirror has not confirmed yet; 0 once it has
        -- confirmed the previous sample (resolution: the group interval)
        IF probe IS NULL OR (r ->> 'confirmed_lsn')::pg_lsn >= probe THEN
            lagsec := CASE WHEN probe IS NULL THEN NULL ELSE 0 END;
            probe := (r ->> 'now_lsn')::pg_lsn;
            probe_at := clock_timestamp();
        ELSE
            lagsec := extract(epoch FROM clock_timestamp() - probe_at);
        END IF;
        errs := coalesce((r ->> 'rev_apply_errors')::bigint, 0) + coalesce((r ->> 'rev_sync_errors')::bigint, 0);
        IF errs > m.rev_apply_error_count + m.rev_sync_error_count THEN
            new_conflicts := errs - (m.rev_apply_error_count + m.rev_sync_error_count);
        END IF;
        UPDATE driftmirror.mirror
           SET primary_checked_at = clock_timestamp(),
               primary_fence = coalesce(r ->> 'fence', 'none'),
               slot_active = (r ->> 'slot_active')::boolean,
               lag_bytes = greatest((r ->> 'lag_bytes')::bigint, 0),
               lag_seconds = lagsec,
               lag_probe_lsn = probe,
               lag_probe_at = probe_at,
               rev_apply_error_count = coalesce((r ->> 'rev_apply_errors')::bigint, 0),
               rev_sync_error_count = coalesce((r ->> 'rev_sync_errors')::bigint, 0),
               conflicts = conflicts + new_conflicts,
               last_conflict_at = CASE WHEN new_conflicts > 0 THEN clock_timestamp() ELSE last_conflict_at END
         WHERE id = m.id;
        INSERT INTO driftmirror.mirror_sequence AS q (mirror_id, sequence_name, last_value, collected_at)
        SELECT m.id, s.key, (s.value #>> '{}')::bigint, clock_timestamp()
          FROM jsonb_each(r -> 'sequences') s
        ON CONFLICT (mirror_id, sequence_name) DO UPDATE
           SET last_value = excluded.last_value, collected_at = excluded.collected_at;
        DELETE FROM driftmirror.mirror_sequence q
         WHERE q.mirror_id = m.id AND NOT (r -> 'sequences') ? q.sequence_name;
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'mirror.lag_bytes', greatest((r ->> 'lag_bytes')::bigint, 0),
            'mirror.lag_seconds', lagsec,
            'mirror.rev_apply_errors', CASE WHEN m.two_way
                                            THEN coalesce((r ->> 'rev_apply_errors')::bigint, 0) END));
        IF new_conflicts > 0 THEN
            PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_conflict',
                format('%s new apply error(s) on the primary''s subscription %s (changes from the mirror); see the primary''s server log',
                       new_conflicts, m.rev_subscription_name),
                jsonb_build_object('apply_errors', r -> 'rev_apply_errors', 'sync_errors', r -> 'rev_sync_errors'),
                'conflict');
        END IF;
        RETURN;
    END IF;

    -- status_mirror
    IF NOT (r ->> 'sub_exists')::boolean THEN
        UPDATE driftmirror.mirror
           SET mirror_checked_at = clock_timestamp(),
               last_error = format('subscription "%s" is missing on the mirror', m.subscription_name),
               last_error_sqlstate = '55000', last_error_at = clock_timestamp()
         WHERE id = m.id;
        RETURN;
    END IF;
    SELECT count(*), count(*) FILTER (WHERE value #>> '{}' = 'ready')
      INTO total, ready FROM jsonb_each(r -> 'tables');
    errs := coalesce((r ->> 'apply_errors')::bigint, 0) + coalesce((r ->> 'sync_errors')::bigint, 0);
    IF errs > m.apply_error_count + m.sync_error_count THEN
        new_conflicts := errs - (m.apply_error_count + m.sync_error_count);
    END IF;
    UPDATE driftmirror.mirror
       SET mirror_checked_at = clock_timestamp(),
           mirror_fence = coalesce(r ->> 'fence', 'none'),
           tables_total = total, tables_ready = ready, tables = r -> 'tables',
           apply_error_count = coalesce((r ->> 'apply_errors')::bigint, 0),
           sync_error_count = coalesce((r ->> 'sync_errors')::bigint, 0),
           conflicts = conflicts + new_conflicts,
           last_conflict_at = CASE WHEN new_conflicts > 0 THEN clock_timestamp() ELSE last_conflict_at END,
           last_error = NULL, last_error_detail = NULL, last_error_sqlstate = NULL
     WHERE id = m.id;
    PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
        'mirror.apply_errors', coalesce((r ->> 'apply_errors')::bigint, 0)));
    IF new_conflicts > 0 THEN
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_conflict',
            format('%s new apply error(s) on the mirror''s subscription %s; see the mirror''s server log',
                   new_conflicts, m.subscription_name),
            jsonb_build_object('apply_errors', r -> 'apply_errors', 'sync_errors', r -> 'sync_errors'),
            'conflict');
    END IF;

    IF m.state = 'syncing' THEN
        IF ready = total AND (NOT m.two_way OR m.step = 'rev_subscription') THEN
            PERFORM driftmirror._mirror_set_state(m, 'mirroring',
                format('initial copy of %s table(s) done; streaming changes', total));
        ELSE
            UPDATE driftmirror.mirror
               SET state_reason = format('initial copy: %s of %s table(s) ready', ready, total)
             WHERE id = m.id;
        END IF;
    ELSIF m.state = 'mirroring' THEN
        UPDATE driftmirror.mirror
           SET state_reason = CASE
                   WHEN NOT (r ->> 'sub_enabled')::boolean THEN 'the subscription on the mirror is disabled'
                   WHEN NOT (r ->> 'worker_running')::boolean OR NOT coalesce(m.slot_active, true)
                       THEN 'the mirror''s apply worker is not connected to the primary'
                   WHEN errs > 0 THEN format('streaming changes; %s apply error(s) so far', errs)
                   ELSE 'streaming changes' END
         WHERE id = m.id;
    END IF;
END
$$;

-- _mirror_http_done: the outcome of an HTTP actuator request (see the
-- contract in docs/mirrors.md, "HTTP actuator contract").  p_ok: an HTTP
-- answer arrived (p_status, p_body); otherwise p_error / p_detail say why
-- not.  A failure counts one attempt and backs the mirror off (2^(n-1)
-- seconds, at most max_backoff); while the mirror is not made yet
-- (creating, provisioning), max_attempts failures in a row mark it failed.
-- An actuator that no longer knows the mirror (404 or 410 to a status poll)
-- is asked to create it again under a new idempotency key (generation + 1).
CREATE FUNCTION driftmirror._mirror_http_done(m driftmirror.mirror, p_action text, p_ok boolean,
                                              p_status integer, p_body text,
                                              p_error text, p_detail text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    eff     jsonb := driftmirror._effective_options('mirror', m.options);
    maxa    integer := (eff ->> 'max_attempts')::integer;
    what    text := CASE p_action WHEN 'actuator_create' THEN 'POST /mirrors'
                                  ELSE format('GET /mirrors/%s', m.actuator_name) END;
    j       jsonb;
    st      text;
    err     text;
    errdet  text;
    sqlst   text := '58000';
    lost    boolean := false;
    n       integer;
    det     text;
BEGIN
    -- a status answer that overlapped a promotion of the mirror describes
    -- the mirror as it was before the switch: dropped, the next step asks
    -- again
    IF p_action = 'actuator_status' AND m.pending_since IS NOT NULL
       AND EXISTS (SELECT FROM driftmirror.promotion p
                    WHERE p.mirror_id = m.id
                      AND (p.finished_at IS NULL OR p.finished_at >= m.pending_since)) THEN
        UPDATE driftmirror.mirror SET pending_since = NULL WHERE id = m.id;
        RETURN;
    END IF;
    IF NOT p_ok THEN
        err := p_error;
        errdet := p_detail;
        sqlst := '08000';
    ELSIF p_action = 'actuator_status' AND p_status IN (404, 410) THEN
        lost := true;
        err := format('the actuator does not know mirror %s (HTTP %s to %s); creating it again',
                      m.actuator_name, p_status, what);
    ELSIF p_action = 'actuator_create' AND p_status = 409 THEN
        st := 'exists';
    ELSIF p_status NOT IN (200, 201, 202) THEN
        err := format('the actuator answered HTTP %s to %s', p_status, what);
        errdet := left(p_body, 500);
    ELSE
        BEGIN
            j := p_body::jsonb;
        EXCEPTION WHEN data_exception THEN
            j := NULL;
        END;
        IF jsonb_typeof(j) = 'object' AND jsonb_typeof(j -> 'state') = 'string' THEN
            st := j ->> 'state';
        END IF;
        IF st IS NULL OR st NOT IN ('creating', 'ready', 'failed') THEN
            st := NULL;
            err := format('the actuator''s answer to %s (HTTP %s) is not a JSON object with "state": "creating", "ready" or "failed"',
                          what, p_status);
            errdet := left(p_body, 500);
        END IF;
    END IF;

    IF err IS NOT NULL THEN
        -- a mirror lost after it was made starts counting afresh
        n := CASE WHEN lost AND m.state = 'mirroring' THEN 1 ELSE m.attempts + 1 END;
        UPDATE driftmirror.mirror
           SET attempts = n,
               retry_at = CASE WHEN lost THEN NULL
                               ELSE clock_timestamp()
                                    + least(make_interval(secs => power(2, least(n - 1, 20))),
                                            driftmirror._opt_interval(eff -> 'max_backoff')) END,
               mirror_checked_at = CASE WHEN p_action = 'actuator_status' THEN clock_timestamp()
                                        ELSE mirror_checked_at END,
               last_error = err, last_error_detail = errdet, last_error_sqlstate = sqlst,
               last_error_at = clock_timestamp()
         WHERE id = m.id;
        IF m.state IN ('creating', 'provisioning') AND n >= maxa THEN
            PERFORM driftmirror._mirror_set_state(m, 'failed',
                format('%s failed %s time(s) in a row: %s', what, n, err));
            RETURN;
        END IF;
        IF lost THEN
            UPDATE driftmirror.mirror
               SET actuator_generation = actuator_generation + 1, step = 'start',
                   actuator_state = NULL
             WHERE id = m.id;
            PERFORM driftmirror._mirror_set_state(m, 'creating', err);
        ELSIF m.state = 'mirroring' THEN
            UPDATE driftmirror.mirror
               SET state_reason = format('the actuator could not be asked for the mirror''s state (%s failure(s) in a row): %s', n, err)
             WHERE id = m.id;
        ELSE
            UPDATE driftmirror.mirror
               SET state_reason = format('%s failed (attempt %s of %s), will retry: %s', what, n, maxa, err)
             WHERE id = m.id;
        END IF;
        RETURN;
    END IF;

    -- an answer of the contract
    det := CASE WHEN j ? 'detail' THEN left(CASE jsonb_typeof(j -> 'detail') WHEN 'string' THEN j ->> 'detail'
                                                  ELSE (j -> 'detail')::text END, 1000) END;
    UPDATE driftmirror.mirror
       SET step = CASE WHEN p_action = 'actuator_create' THEN 'actuator_create' ELSE step END,
           pending_action = NULL, pending_since = NULL, attempts = 0, retry_at = NULL,
           mirror_checked_at = clock_timestamp(),
           actuator_state = coalesce(nullif(st, 'exists'), actuator_state),
           actuator_detail = CASE WHEN j IS NOT NULL THEN det ELSE actuator_detail END,
           mirror_endpoint = CASE WHEN jsonb_typeof(j -> 'endpoint') = 'string'
                                  THEN left(j ->> 'endpoint', 1000) ELSE mirror_endpoint END,
           lag_seconds = CASE WHEN jsonb_typeof(j -> 'lag_seconds') = 'number'
                              THEN (j ->> 'lag_seconds')::float8 ELSE lag_seconds END,
           lag_bytes = CASE WHEN jsonb_typeof(j -> 'lag_bytes') = 'number'
                                 AND (j ->> 'lag_bytes')::numeric BETWEEN 0 AND 1e18
                            THEN (j ->> 'lag_bytes')::numeric::bigint ELSE lag_bytes END,
           last_error = CASE WHEN st = 'failed' THEN 'the actuator reports that the mirror failed' END,
           last_error_detail = CASE WHEN st = 'failed' THEN det END,
           last_error_sqlstate = CASE WHEN st = 'failed' THEN '58000' END,
           last_error_at = CASE WHEN st = 'failed' THEN clock_timestamp() ELSE last_error_at END
     WHERE id = m.id;
    IF p_action = 'actuator_create' THEN
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_step',
            format('the actuator accepted the mirror %s (%s)', m.actuator_name,
                   CASE st WHEN 'exists' THEN 'it exists already' ELSE st END),
            jsonb_build_object('step', p_action, 'status', p_status, 'generation', m.actuator_generation));
    END IF;
    IF j IS NOT NULL AND (j ? 'lag_seconds' OR j ? 'lag_bytes') THEN
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'mirror.lag_seconds', j -> 'lag_seconds', 'mirror.lag_bytes', j -> 'lag_bytes'));
    END IF;

    CASE st
    WHEN 'failed' THEN
        PERFORM driftmirror._mirror_set_state(m, 'failed', 'the actuator reports that the mirror failed');
    WHEN 'ready' THEN
        PERFORM driftmirror._mirror_set_state(m, 'mirroring', 'the actuator reports the mirror ready');
    ELSE                        -- creating, exists
        PERFORM driftmirror._mirror_set_state(m, 'provisioning',
            CASE st WHEN 'exists' THEN 'the actuator has the mirror already; waiting until it is ready'
                    ELSE 'the actuator is creating the mirror' END);
    END CASE;
END
$$;

-- _mirror_done: record the outcome of the action _mirror_next returned
-- (p_status: the HTTP status of an actuator's answer, p_result its body;
-- status reads: p_latency_ms the node's latency sample, p_probe_error why
-- the probe gave none, p_read_started when the read began)
CREATE FUNCTION driftmirror._mirror_done(p_mirror_id bigint, p_action text, p_ok boolean,
                                         p_result text, p_sqlstate text, p_error text,
                                         p_detail text DEFAULT NULL, p_status integer DEFAULT NULL,
                                         p_latency_ms double precision DEFAULT NULL,
                                         p_probe_error text DEFAULT NULL,
                                         p_read_started timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m   driftmirror.mirror;
    maxa integer;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;                 -- dropped meanwhile: the cleanup queue has it
    END IF;

    IF p_action IN ('actuator_create', 'actuator_status') THEN
        PERFORM driftmirror._mirror_http_done(m, p_action, p_ok, p_status, p_result, p_error, p_detail);
        RETURN;
    END IF;

    IF p_action IN ('status_primary', 'status_mirror') THEN
        IF p_ok THEN
            PERFORM driftmirror._mirror_record_status(m, p_action, p_result::jsonb);
            PERFORM driftmirror._mirror_record_latency(m.id, p_action, p_latency_ms, p_probe_error,
                                                       p_read_started);
        ELSE
            UPDATE driftmirror.mirror
               SET primary_checked_at = CASE WHEN p_action = 'status_primary' THEN clock_timestamp() ELSE primary_checked_at END,
                   mirror_checked_at = CASE WHEN p_action = 'status_mirror' THEN clock_timestamp() ELSE mirror_checked_at END,
                   last_error = p_error, last_error_detail = p_detail,
                   last_error_sqlstate = p_sqlstate, last_error_at = clock_timestamp()
             WHERE id = m.id;
        END IF;
        RETURN;
    END IF;

    IF p_ok THEN
        UPDATE driftmirror.mirror
           SET step = p_action, pending_action = NULL, pending_since = NULL, attempts = 0,
               last_error = NULL, last_error_detail = NULL, last_error_sqlstate = NULL
         WHERE id = m.id;
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_step',
                                        format('created %s', p_action),
                                        jsonb_build_object('step', p_action));
        RETURN;
    END IF;

    maxa := (driftmirror._effective_options('mirror', m.options) ->> 'max_attempts')::integer;
    UPDATE driftmirror.mirror
       SET attempts = attempts + 1, last_error = p_error, last_error_detail = p_detail,
           last_error_sqlstate = p_sqlstate, last_error_at = clock_timestamp()
     WHERE id = m.id;
    IF m.attempts + 1 >= maxa THEN
        PERFORM driftmirror._mirror_set_state(m, 'failed',
            format('step %s failed %s time(s): %s', p_action, m.attempts + 1, p_error));
    ELSE
        UPDATE driftmirror.mirror
           SET state_reason = format('step %s failed (attempt %s of %s), will retry: %s',
                                     p_action, m.attempts + 1, maxa, p_error)
         WHERE id = m.id;
    END IF;
END
$$;

-- ---- cleanup queue ----

-- _mirror_enqueue_cleanup: BEFORE DELETE trigger on mirror: queue the drop
-- of every object the mirror may have created, on every node
CREATE FUNCTION driftmirror._mirror_enqueue_cleanup()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror := OLD;
BEGIN
    IF m.kind = 'postgres' THEN
        INSERT INTO driftmirror.mirror_cleanup
            (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
        VALUES (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                'subscription', m.subscription_name, 1),
               (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                'slot', m.slot_name, 2),
               (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                'publication', m.publication_name, 3);
        IF m.two_way THEN
            INSERT INTO driftmirror.mirror_cleanup
                (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
            VALUES (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                    'subscription', m.rev_subscription_name, 1),
                   (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'slot', m.rev_slot_name, 2),
                   (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'publication', m.rev_publication_name, 3);
        END IF;
        IF m.fence THEN
            INSERT INTO driftmirror.mirror_cleanup
                (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
            VALUES (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'fence', NULL, 4);
        END IF;
    ELSIF m.actuator_contacted THEN
        -- an HTTP actuator was asked to create it: ask it to delete it
        INSERT INTO driftmirror.mirror_cleanup
            (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority,
             idempotency_key, token_file, timeout_ms)
        VALUES (m.group_name, m.resource_name, m.id, 'actuator', m.primary_endpoint,
                'actuator_mirror', m.actuator_name, 1, format('dm-%s-drop', m.actuator_key),
                CASE WHEN EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = m.resource_id)
                     THEN (SELECT r.options ->> 'bearer_token_file' FROM driftmirror.resource r
                            WHERE r.id = m.resource_id)
                     ELSE m.token_file END,
                (extract(epoch FROM driftmirror._opt_interval(
                    driftmirror._effective_options('mirror', m.options) -> 'actuator_timeout')) * 1000)::integer);
    END IF;
    PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_dropped',
        CASE WHEN m.kind = 'postgres' THEN 'mirror removed; dropping its replication objects on every node'
             WHEN m.actuator_contacted THEN 'mirror removed; asking the actuator to delete it'
             ELSE 'mirror removed before the actuator was asked to create it' END,
        jsonb_build_object('state', m.state, 'two_way', m.two_way));
    RETURN OLD;
END
$$;

CREATE TRIGGER mirror_cleanup BEFORE DELETE ON driftmirror.mirror
    FOR EACH ROW EXECUTE FUNCTION driftmirror._mirror_enqueue_cleanup();

-- _cleanup_sql: the idempotent remote statement of one cleanup row
CREATE FUNCTION driftmirror._cleanup_sql(c driftmirror.mirror_cleanup)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE c.what
    WHEN 'subscription' THEN format($f$DO $dm$ BEGIN
IF EXISTS (SELECT FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
            WHERE s.subname OPERATOR(pg_catalog.=) %L AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) THEN
  ALTER SUBSCRIPTION %I DISABLE;
  ALTER SUBSCRIPTION %I SET (slot_name = NONE);
  DROP SUBSCRIPTION %I;
END IF; END $dm$ $f$, c.object_name, c.object_name, c.object_name, c.object_name)
    WHEN 'slot' THEN format($f$DO $dm$ DECLARE p integer; BEGIN
FOR i IN 1..50 LOOP
  SELECT active_pid INTO p FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %L;
  EXIT WHEN p IS NULL;
  PERFORM pg_catalog.pg_terminate_backend(p);
  PERFORM pg_catalog.pg_sleep(0.1);
END LOOP;
IF EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %L) THEN
  PERFORM pg_catalog.pg_drop_replication_slot(%L);
END IF; END $dm$ $f$, c.object_name, c.object_name, c.object_name)
    WHEN 'publication' THEN format('DROP PUBLICATION IF EXISTS %I', c.object_name)
    WHEN 'fence' THEN $f$SELECT driftmirror_node.fence_clear()$f$
    END                         -- actuator_mirror: an HTTP DELETE, no SQL
$$;

-- _cleanup_due: cleanups whose next attempt is due, in dependency order
-- (subscriptions before the slots they use, publications last).  A
-- postgres row has conninfo and sql; an actuator row the http_* columns.
CREATE FUNCTION driftmirror._cleanup_due()
RETURNS TABLE (id bigint, conninfo text, label text, sql text,
               http_method text, http_url text, http_body text, http_key text,
               http_token_file text, http_timeout_ms integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id,
           CASE WHEN c.what <> 'actuator_mirror' THEN c.endpoint END,
           format('%s/%s %s', c.group_name, c.resource_name, c.node),
           driftmirror._cleanup_sql(c),
           CASE WHEN c.what = 'actuator_mirror' THEN 'DELETE' END,
           CASE WHEN c.what = 'actuator_mirror'
                THEN rtrim(c.endpoint, '/') || '/mirrors/' || c.object_name END,
           NULL::text,
           c.idempotency_key, c.token_file, c.timeout_ms
      FROM driftmirror.mirror_cleanup c
     WHERE c.next_attempt_at <= clock_timestamp()
     ORDER BY c.priority, c.id
     LIMIT 100
$$;

-- _cleanup_done: a cleanup succeeded (row removed) or failed (back-off).
-- For an actuator row p_ok means an HTTP answer arrived: 2xx, 404 and 410
-- (gone already) are success, anything else a failure.
CREATE FUNCTION driftmirror._cleanup_done(p_id bigint, p_ok boolean, p_sqlstate text, p_error text,
                                          p_detail text DEFAULT NULL, p_status integer DEFAULT NULL,
                                          p_body text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c driftmirror.mirror_cleanup;
BEGIN
    SELECT * INTO c FROM driftmirror.mirror_cleanup x WHERE x.id = p_id;
    IF p_ok AND c.what = 'actuator_mirror'
       AND NOT (p_status BETWEEN 200 AND 299 OR p_status IN (404, 410)) THEN
        p_ok := false;
        p_sqlstate := '58000';
        p_error := format('the actuator answered HTTP %s to DELETE /mirrors/%s', p_status, c.object_name);
        p_detail := left(p_body, 500);
    END IF;
    IF p_ok THEN
        DELETE FROM driftmirror.mirror_cleanup WHERE id = p_id RETURNING * INTO c;
        IF FOUND AND c.attempts > 0 THEN
            PERFORM driftmirror._log_action(c.group_name, c.resource_name, 'mirror_cleanup',
                format('dropped %s %s on the %s after %s failed attempt(s)',
                       c.what, coalesce(c.object_name, ''), c.node, c.attempts));
        END IF;
        RETURN;
    END IF;
    UPDATE driftmirror.mirror_cleanup
       SET attempts = attempts + 1,
           next_attempt_at = clock_timestamp()
                             + least(make_interval(secs => power(2, least(attempts, 6))), interval '60 seconds'),
           last_error = p_error, last_error_detail = p_detail, last_error_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO c;
    IF FOUND AND c.attempts = 1 THEN
        PERFORM driftmirror._log_action(c.group_name, c.resource_name, 'mirror_cleanup',
            format('could not drop %s %s on the %s, will retry: %s',
                   c.what, coalesce(c.object_name, ''), c.node, p_error),
            jsonb_build_object('sqlstate', p_sqlstate), 'pending');
    END IF;
END
$$;

-- ---- the API ----

-- _create_actuator_mirror: dm_create_mirror for kinds cache, app, web and
-- service: checks, then the mirror row (state creating).  The worker makes
-- every request to the actuator; this call makes none.
CREATE FUNCTION driftmirror._create_actuator_mirror(p_group text, p_resource text, p_endpoint text,
                                                    gid bigint, res driftmirror.resource, opts jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k    text;
    mid  bigint;
    base text;
BEGIN
    SELECT min(x) INTO k FROM jsonb_object_keys(opts) x
     WHERE x IN ('two_way', 'fence', 'copy_data', 'publisher_endpoint');
    IF k IS NOT NULL THEN
        RAISE EXCEPTION 'mirror option "%" applies to postgres resources only', k
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Mirrors of cache, app, web and service resources take max_attempts, actuator_timeout, max_backoff and actuator_options.';
    END IF;
    IF res.role <> 'primary' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is a mirror itself', p_resource, p_group
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the mirror's endpoint: asked for, or (NULL) chosen by the actuator
    IF p_endpoint IS NOT NULL THEN
        PERFORM driftmirror._check_endpoint(res.kind, p_endpoint);
        IF p_endpoint = res.endpoint THEN
            RAISE EXCEPTION 'the mirror endpoint is the endpoint of the primary'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    PERFORM driftmirror._group_id(p_group, true);
    IF NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = res.id) THEN
        RAISE EXCEPTION 'resource "%" does not exist in group "%"', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = res.id) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a mirror', p_resource, p_group
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with dm_drop_mirror.';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror_cleanup c
                WHERE c.group_name = p_group AND c.resource_name = p_resource) THEN
        RAISE EXCEPTION 'the previous mirror of resource "%" of group "%" is still being dropped',
                        p_resource, p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until dm_mirror_cleanups shows nothing for it.';
    END IF;

    base := format('dm_%s_%s', gid, res.id);
    INSERT INTO driftmirror.mirror AS m
        (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
         publisher_endpoint, mirror_endpoint, options, two_way, fence, copy_data,
         state_reason, actuator_name, actuator_key, token_file)
    VALUES (gid, res.id, p_group, p_resource, res.kind, res.endpoint, res.endpoint, p_endpoint,
            opts, false, false, false,
            'waiting for the worker to ask the actuator for a mirror',
            base, replace(pg_catalog.gen_random_uuid()::text, '-', ''),
            res.options ->> 'bearer_token_file')
    RETURNING m.id INTO mid;

    UPDATE driftmirror.group_state SET next_step_at = NULL WHERE group_id = gid;
    PERFORM driftmirror._log_action(p_group, p_resource, 'create_mirror', 'dm_create_mirror',
                                    jsonb_build_object('options', opts - 'actuator_options',
                                                       'actuator_options_set', opts ? 'actuator_options',
                                                       'kind', res.kind, 'actuator_name', base));
    RETURN mid;
END
$$;

CREATE FUNCTION driftmirror.dm_create_mirror("group" text, resource text, mirror_endpoint text DEFAULT NULL,
                                             options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_endpoint ALIAS FOR $3;
    gid     bigint;
    rid     bigint;
    res     driftmirror.resource;
    opts    jsonb;
    eff     jsonb;
    two_way boolean;
    fence   boolean;
    pub_ep  text;
    probs   text[];
    base    text;
    mid     bigint;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT * INTO res FROM driftmirror.resource r WHERE r.id = rid;
    opts := driftmirror._validate_options('mirror', options);
    IF res.kind <> 'postgres' THEN
        RETURN driftmirror._create_actuator_mirror(p_group, p_resource, p_endpoint, gid, res, opts);
    END IF;
    IF p_endpoint IS NULL THEN
        RAISE EXCEPTION 'mirror endpoint must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'A postgres mirror needs the connection string of the mirror database.';
    END IF;
    SELECT min(x) INTO base FROM jsonb_object_keys(opts) x
     WHERE x IN ('actuator_timeout', 'max_backoff', 'actuator_options');
    IF base IS NOT NULL THEN
        RAISE EXCEPTION 'mirror option "%" applies to mirrors of cache, app, web and service resources only', base
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    eff := driftmirror._effective_options('mirror', opts);
    two_way := (eff ->> 'two_way')::boolean;
    fence := coalesce((eff ->> 'fence')::boolean, NOT two_way);

    IF res.role <> 'primary' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is a mirror itself', p_resource, p_group
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM driftmirror._check_endpoint('postgres', p_endpoint);
    pub_ep := coalesce(eff ->> 'publisher_endpoint', res.endpoint);
    PERFORM driftmirror._check_endpoint('postgres', pub_ep);
    IF p_endpoint = res.endpoint THEN
        RAISE EXCEPTION 'the mirror endpoint is the endpoint of the primary'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = rid) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a mirror', p_resource, p_group
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with dm_drop_mirror.';
    END IF;

    IF EXISTS (SELECT FROM driftmirror.mirror_cleanup c
                WHERE c.group_name = p_group AND c.resource_name = p_resource) THEN
        RAISE EXCEPTION 'the previous mirror of resource "%" of group "%" is still being dropped',
                        p_resource, p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until dm_mirror_cleanups shows nothing for it.';
    END IF;

    -- preflight: read-only queries on both nodes, no lock held meanwhile
    probs := driftmirror._mirror_preflight(res.endpoint, format('%s/%s primary', p_group, p_resource),
                                           p_endpoint, format('%s/%s mirror', p_group, p_resource),
                                           two_way);
    IF cardinality(probs) > 0 THEN
        RAISE EXCEPTION 'cannot mirror resource "%" of group "%": % problem(s) found',
                        p_resource, p_group, cardinality(probs)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = array_to_string(probs, E'\n');
    END IF;

    -- now serialise with other changes to the group and re-check
    PERFORM driftmirror._group_id(p_group, true);
    IF NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = rid) THEN
        RAISE EXCEPTION 'resource "%" does not exist in group "%"', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = rid) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a mirror', p_resource, p_group
            USING ERRCODE = 'duplicate_object';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror_cleanup c
                WHERE c.group_name = p_group AND c.resource_name = p_resource) THEN
        RAISE EXCEPTION 'the previous mirror of resource "%" of group "%" is still being dropped',
                        p_resource, p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until dm_mirror_cleanups shows nothing for it.';
    END IF;

    base := format('dm_%s_%s', gid, rid);
    INSERT INTO driftmirror.mirror AS m
        (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
         publisher_endpoint, mirror_endpoint, options, two_way, fence, copy_data,
         state_reason, publication_name, slot_name, subscription_name,
         rev_publication_name, rev_slot_name, rev_subscription_name)
    VALUES (gid, rid, p_group, p_resource, res.kind, res.endpoint, pub_ep, p_endpoint, opts,
            two_way, fence, (eff ->> 'copy_data')::boolean,
            'waiting for the worker to create the replication objects',
            base, base, base,
            CASE WHEN two_way THEN base || '_rev' END,
            CASE WHEN two_way THEN base || '_rev' END,
            CASE WHEN two_way THEN base || '_rev' END)
    RETURNING m.id INTO mid;

    -- run the group's step at the worker's next pass
    UPDATE driftmirror.group_state SET next_step_at = NULL WHERE group_id = gid;
    PERFORM driftmirror._log_action(p_group, p_resource, 'create_mirror', 'dm_create_mirror',
                                    jsonb_build_object('options', opts - 'publisher_endpoint',
                                                       'publisher_endpoint_set', opts ? 'publisher_endpoint',
                                                       'two_way', two_way,
                                                       'fence', fence, 'objects', base));
    RETURN mid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_create_mirror(text, text, text, jsonb) IS
    'Start mirroring a resource: postgres (both nodes checked; the worker creates the replication objects) or cache/app/web/service (the worker asks the HTTP actuator); see dm_mirror_status';

CREATE FUNCTION driftmirror.dm_drop_mirror("group" text, resource text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    gid bigint;
    rid bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    PERFORM driftmirror._refuse_while_promoting(gid, p_group, rid);
    -- the trigger queues the remote drops; the worker runs them
    DELETE FROM driftmirror.mirror m WHERE m.resource_id = rid;
    IF NOT FOUND THEN
        RAISE NOTICE 'resource "%" of group "%" has no mirror', p_resource, p_group;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_drop_mirror(text, text) IS
    'Drop the mirror of a resource: its subscriptions, slots, publications and fence are removed on every node by the worker (idempotent)';

-- _postgres_mirror: the mirror of a postgres resource; raises
-- undefined_object when it has none, wrong_object_type for other kinds
-- (their mirrors have no sequences or tables to read)
CREATE FUNCTION driftmirror._postgres_mirror(p_resource_id bigint, p_group text, p_resource text)
RETURNS driftmirror.mirror
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror x WHERE x.resource_id = p_resource_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no mirror', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    IF m.kind <> 'postgres' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is a % resource, not postgres', p_resource, p_group, m.kind
            USING ERRCODE = 'wrong_object_type';
    END IF;
    RETURN m;
END
$$;

-- dm_sync_sequences: read every sequence of the primary now and set the
-- mirror's sequences to the same values; returns how many were set.  For
-- switchover (after the primary is fenced).  Talks to both nodes from the
-- calling transaction, with driftmirror's timeouts.
CREATE FUNCTION driftmirror.dm_sync_sequences("group" text, resource text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    gid bigint;
    rid bigint;
    m   driftmirror.mirror;
    seqs jsonb;
    setsql text;
    n   integer;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    m := driftmirror._postgres_mirror(rid, p_group, p_resource);
    seqs := driftmirror._remote_value(m.primary_endpoint, format('%s/%s primary', p_group, p_resource),
        $q$SELECT COALESCE(pg_catalog.jsonb_object_agg(
               pg_catalog.format('%I.%I', schemaname, sequencename),
               pg_catalog.jsonb_build_array(last_value, last_value IS NOT NULL)), '{}')::text
             FROM pg_catalog.pg_sequences$q$)::jsonb;
    SELECT count(*), string_agg(format('SELECT pg_catalog.setval(%L, %s, %s) FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%L)',
                                       s.key,
                                       coalesce((s.value ->> 0)::bigint, 1),
                                       CASE WHEN (s.value ->> 1)::boolean THEN 'true' ELSE 'false' END,
                                       s.key), '; ')
      INTO n, setsql
      FROM jsonb_each(seqs) s;
    IF n > 0 THEN
        PERFORM driftmirror._remote_value(m.mirror_endpoint, format('%s/%s mirror', p_group, p_resource),
                                          setsql, true);
    END IF;
    INSERT INTO driftmirror.mirror_sequence AS q (mirror_id, sequence_name, last_value, collected_at)
    SELECT m.id, s.key, (s.value ->> 0)::bigint, clock_timestamp() FROM jsonb_each(seqs) s
    ON CONFLICT (mirror_id, sequence_name) DO UPDATE
       SET last_value = excluded.last_value, collected_at = excluded.collected_at;
    PERFORM driftmirror._log_action(p_group, p_resource, 'sync_sequences', 'dm_sync_sequences',
                                    jsonb_build_object('sequences', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_sync_sequences(text, text) IS
    'Copy the current value of every sequence from the primary to the mirror';

-- dm_mirror_verify: compare every published table of the primary with the
-- mirror: row count and an md5 of the rows (the primary's columns, sorted).
-- This is how updates and deletes that found no row on the receiving side
-- are found: PostgreSQL 15 skips those silently (they are not apply errors).
-- Reads every table on both nodes from the calling transaction: run it when
-- the mirror has caught up and writes are quiet (under writes the two reads
-- see different moments and differ).
CREATE FUNCTION driftmirror.dm_mirror_verify("group" text, resource text)
RETURNS TABLE (table_name text, primary_rows bigint, mirror_rows bigint, matches boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    gid     bigint;
    rid     bigint;
    m       driftmirror.mirror;
    facts   jsonb;
    q       text;
    pres    jsonb;
    mres    jsonb;
    bad     integer;
    n       integer;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    m := driftmirror._postgres_mirror(rid, p_group, p_resource);
    facts := driftmirror._remote_value(m.primary_endpoint, format('%s/%s primary', p_group, p_resource),
                                       driftmirror._node_facts_sql())::jsonb;
    -- table names come from the node as format('%I.%I'): accept nothing else
    IF EXISTS (SELECT FROM jsonb_object_keys(facts -> 'columns') k
                WHERE k !~ '^("([^"]|"")+"|[a-z_][a-z0-9_$]*)\.("([^"]|"")+"|[a-z_][a-z0-9_$]*)$') THEN
        RAISE EXCEPTION 'unexpected table name from the primary'
            USING ERRCODE = 'data_exception';
    END IF;
    SELECT 'SELECT (' || coalesce(string_agg(format(
               'pg_catalog.jsonb_build_object(%L, (SELECT pg_catalog.jsonb_build_array(pg_catalog.count(*), '
               'pg_catalog.md5(COALESCE(pg_catalog.string_agg(ROW(%s)::text, E''\n'' ORDER BY ROW(%s)::text), ''''))) FROM %s x))',
               t.key, cl.cols, cl.cols, t.key), ' || ' ORDER BY t.key), '''{}''::jsonb') || ')::text'
      INTO q
      FROM jsonb_each(facts -> 'columns') t
      CROSS JOIN LATERAL (SELECT string_agg('x.' || quote_ident(c.key), ', ' ORDER BY c.key) AS cols
                            FROM jsonb_each(t.value) c) cl;
    pres := driftmirror._remote_value(m.primary_endpoint, format('%s/%s primary', p_group, p_resource), q)::jsonb;
    mres := driftmirror._remote_value(m.mirror_endpoint, format('%s/%s mirror', p_group, p_resource), q)::jsonb;

    SELECT count(*), count(*) FILTER (WHERE pres -> k IS DISTINCT FROM mres -> k)
      INTO n, bad FROM jsonb_object_keys(pres) k;
    PERFORM driftmirror._log_action(p_group, p_resource, 'mirror_verify',
        format('%s of %s table(s) differ between the primary and the mirror', bad, n),
        jsonb_build_object('tables', n, 'differ', bad),
        CASE WHEN bad > 0 THEN 'mismatch' ELSE 'done' END);

    RETURN QUERY
        SELECT k, (pres -> k ->> 0)::bigint, (mres -> k ->> 0)::bigint,
               pres -> k IS NOT DISTINCT FROM mres -> k
          FROM jsonb_object_keys(pres) k
         ORDER BY k;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_mirror_verify(text, text) IS
    'Compare row counts and checksums of every table between a primary and its mirror (heavy: reads every row)';

-- ---- views ----

CREATE VIEW driftmirror.dm_mirror_status AS
SELECT m.group_name,
       m.resource_name,
       m.kind,
       m.state,
       m.state_reason,
       m.two_way,
       m.fence,
       m.mirror_fence,
       m.primary_fence,
       m.slot_active,
       m.tables_total,
       m.tables_ready,
       CASE WHEN m.tables_total > 0
            THEN round(100.0 * m.tables_ready / m.tables_total, 1) END AS sync_pct,
       m.tables,
       m.lag_bytes,
       m.lag_seconds,
       round(m.primary_latency_ms::numeric, 3) AS primary_latency_ms,
       round(m.mirror_latency_ms::numeric, 3) AS mirror_latency_ms,
       round(m.latency_ratio::numeric, 2) AS latency_ratio,
       round(m.primary_latency_median_ms::numeric, 3) AS primary_latency_median_ms,
       round(m.mirror_latency_median_ms::numeric, 3) AS mirror_latency_median_ms,
       m.latency_samples,
       m.latency_error,
       m.apply_error_count,
       m.sync_error_count,
       m.rev_apply_error_count,
       m.rev_sync_error_count,
       m.conflicts,
       m.last_conflict_at,
       m.last_error,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.last_error_detail END AS last_error_detail,
       m.last_error_sqlstate,
       m.last_error_at,
       greatest(m.primary_checked_at, m.mirror_checked_at) AS checked_at,
       m.step,
       m.pending_action,
       m.publication_name,
       m.slot_name,
       m.subscription_name,
       m.rev_publication_name,
       m.rev_slot_name,
       m.rev_subscription_name,
       m.attempts,
       m.retry_at AS next_attempt_at,
       m.actuator_name,
       m.actuator_state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.actuator_detail END AS actuator_detail,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.mirror_endpoint END AS mirror_endpoint,
       (SELECT count(*) FROM driftmirror.mirror_sequence q WHERE q.mirror_id = m.id) AS sequences,
       m.created_at,
       m.state_changed_at,
       m.synced_at,
       m.id
  FROM driftmirror.mirror m;
COMMENT ON VIEW driftmirror.dm_mirror_status IS
    'Every mirror: state, initial copy progress, lag in bytes and seconds, latency of both nodes and their ratio, apply errors and conflicts, the HTTP actuator''s answers; endpoint and error details (which may name hosts) only for driftmirror_admin';

CREATE VIEW driftmirror.dm_mirror_cleanups AS
SELECT c.group_name, c.resource_name, c.node, c.what, c.object_name, c.attempts,
       c.next_attempt_at, c.last_error,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN c.last_error_detail END AS last_error_detail,
       c.last_error_at, c.created_at, c.id
  FROM driftmirror.mirror_cleanup c;
COMMENT ON VIEW driftmirror.dm_mirror_cleanups IS
    'Replication objects of dropped mirrors still to be removed from their nodes';

CREATE VIEW driftmirror.dm_mirror_sequences AS
SELECT m.group_name, m.resource_name, q.sequence_name, q.last_value, q.collected_at
  FROM driftmirror.mirror_sequence q
  JOIN driftmirror.mirror m ON m.id = q.mirror_id;
COMMENT ON VIEW driftmirror.dm_mirror_sequences IS
    'Last known value of every sequence of each mirrored primary';

-- ---- sql/install/70_promotion.sql ----
-- 70_promotion.sql: promotion (switchover) of a mirror to primary, and the
-- routes clients use to find the primary.
--
-- dm_promote (C, src/promote.c) starts a dynamic background worker
-- (src/promote_worker.c) that drives one promotion per resource as a
-- persisted state machine and waits for it.  The worker commits every state
-- change here BEFORE it acts on a node, each action is idempotent, and a
-- promotion left unfinished (worker, session or node killed) is picked up by
-- the main worker's group step, which rolls it back if the routes had not
-- been flipped yet and finishes it otherwise.
--
--   states (promotion.state), in order:
--     guardrails   checks, nothing changed yet                 -> refused
--     reverse_slot slot (+ publication) for the way back created on the
--                  mirror, before the fence (its changes are filtered out)
--     fencing      old primary fenced, write sessions drained
--     catching_up  waiting for the mirror to confirm the fence LSN
--     sequences    sequences copied to the mirror with a gap
--     --- commit point: _promotion_flip swaps the catalog and the routes
--     unfencing    new primary unfenced, pause recorded
--     reversing    old primary subscribes to the new one, old direction retired
--     done
--   on failure or timeout before the flip: rolling_back -> rolled_back
--   (the mirror stays fenced, the old primary is unfenced).
--
--   Mirrors of cache, app, web and service resources (kind <> 'postgres')
--   are switched through their HTTP actuator instead (driver
--   src/promote_actuator.c, functions in 72_promotion_actuator.sql):
--     guardrails   checks on the catalog, nothing changed yet  -> refused
--     switching    the promote request is being sent (recorded before the
--                  first one); the answer "promoted" flips the routes and
--                  ends in done, in one transaction
--     aborting     promote_timeout passed without a definitive answer: the
--                  abort is being sent -> rolled_back (confirmed), or
--                  failed (not confirmed: the actuator's state is unknown)
--   The replication-object columns are NULL for these, and so are the
--   pause and the fence LSN.
--
-- Only one unfinished promotion per group (partial unique index).  Tables
-- are owner-only; dm_promotions / dm_promotion_steps / dm_routes are the
-- public views (endpoints redacted for non-admins).

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('group', 'promote_max_lag_bytes', 'integer', '16777216', '0', '1000000000000', NULL,
     'dm_promote refuses when the mirror is further behind than this many bytes of WAL'),
    ('group', 'promote_max_lag_seconds', 'number', '10', '0', '3600', NULL,
     'dm_promote refuses when the mirror''s measured lag is longer than this'),
    ('group', 'promote_max_xact_seconds', 'number', '30', '0', '86400', NULL,
     'dm_promote refuses while a write transaction on the primary is older than this'),
    ('group', 'promote_fence_grace', 'interval', '"200 milliseconds"', '0', '1 minute', NULL,
     'how long sessions holding a write transaction may finish after the fence before they are ended'),
    ('group', 'promote_sequence_gap', 'integer', '1000', '0', '1000000000', NULL,
     'how many values each sequence skips on the new primary (safety gap)');

CREATE TABLE driftmirror.promotion (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id          bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    group_name        text NOT NULL,
    resource_id       bigint NOT NULL,
    resource_name     text NOT NULL,
    mirror_id         bigint NOT NULL,
    kind              text NOT NULL DEFAULT 'postgres',
    trigger           text NOT NULL CHECK (trigger IN ('manual', 'auto')),
    reason            text NOT NULL,
    options           jsonb NOT NULL,
    state             text NOT NULL DEFAULT 'guardrails'
                      CHECK (state IN ('guardrails', 'fencing', 'catching_up', 'sequences',
                                       'reverse_slot', 'unfencing', 'reversing', 'done',
                                       'rolling_back', 'rolled_back', 'refused', 'failed',
                                       'switching', 'aborting')),
    -- actuator promotions: old_primary is where clients wrote before (the
    -- write route, or the resource's endpoint without one), new_primary the
    -- mirror's endpoint (NULL if unknown: refused), replaced by the
    -- endpoint the actuator reports when it has promoted
    old_primary       text NOT NULL,
    new_primary       text,
    -- replication objects of the old direction (old primary -> mirror), as
    -- they were when the promotion started: after the flip the mirror row
    -- names the new ones (postgres promotions only)
    old_publication   text,
    old_slot          text,
    old_subscription  text,
    -- replication objects of the new direction (new primary -> old primary)
    new_publication   text,
    new_slot          text,
    new_subscription  text,
    two_way           boolean NOT NULL,
    mirror_fence      boolean NOT NULL,
    guardrails        jsonb,
    fence_lsn         pg_lsn,
    confirmed_lsn     pg_lsn,
    sequences_synced  integer,
    fenced_at         timestamptz,
    unfenced_at       timestamptz,
    pause_ms          double precision,
    deadline          timestamptz NOT NULL,
    -- actuator promotions: until when the abort is retried, and the
    -- actuator's last words (libcurl's reason or its answer: may name
    -- hosts, shown to admins only)
    abort_deadline    timestamptz,
    actuator_detail   text,
    worker_pid        integer,
    attempts          integer NOT NULL DEFAULT 0,
    error             text,
    error_sqlstate    text,
    requested_by      text NOT NULL DEFAULT session_user,
    started_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at       timestamptz,
    CHECK (kind <> 'postgres' OR (new_primary IS NOT NULL
                                  AND old_publication IS NOT NULL AND old_slot IS NOT NULL
                                  AND old_subscription IS NOT NULL AND new_publication IS NOT NULL
                                  AND new_slot IS NOT NULL AND new_subscription IS NOT NULL)),
    CHECK (kind = 'postgres' OR state NOT IN ('fencing', 'catching_up', 'sequences', 'reverse_slot',
                                              'unfencing', 'reversing', 'rolling_back')),
    CHECK (kind <> 'postgres' OR state NOT IN ('switching', 'aborting'))
);
CREATE UNIQUE INDEX promotion_one_running ON driftmirror.promotion (group_id)
    WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed');
COMMENT ON TABLE driftmirror.promotion IS
    'Promotions (switchovers): one row per resource promoted, with its persisted state';

CREATE TABLE driftmirror.promotion_step (
    promotion_id  bigint NOT NULL REFERENCES driftmirror.promotion (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    step          text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    lsn           pg_lsn,
    outcome       text NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'ok', 'failed', 'refused', 'interrupted')),
    reason        text,
    details       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (promotion_id, seq)
);
COMMENT ON TABLE driftmirror.promotion_step IS
    'Step log of every promotion: step, start, end, LSN, outcome, reason';

-- routes: where clients of a resource should go, per access kind
CREATE TABLE driftmirror.route (
    group_id     bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id  bigint NOT NULL REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    access       text NOT NULL CHECK (access IN ('read', 'write')),
    endpoint     text NOT NULL,
    weight       integer NOT NULL CHECK (weight BETWEEN 0 AND 100),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (resource_id, access, endpoint)
);
COMMENT ON TABLE driftmirror.route IS
    'Routes: per resource and access kind, the endpoints clients use and their weights';

CREATE TABLE driftmirror.route_history (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name    text NOT NULL,
    resource_name text NOT NULL,
    access        text NOT NULL,
    endpoint      text NOT NULL,
    weight        integer NOT NULL,
    reason        text NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- _set_route: set one route's weight and record it in the history
CREATE FUNCTION driftmirror._set_route(p_group_id bigint, p_resource_id bigint, p_access text,
                                       p_endpoint text, p_weight integer, p_reason text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.route AS r (group_id, resource_id, access, endpoint, weight)
    VALUES (p_group_id, p_resource_id, p_access, p_endpoint, p_weight)
    ON CONFLICT (resource_id, access, endpoint)
    DO UPDATE SET weight = EXCLUDED.weight, updated_at = clock_timestamp();
    INSERT INTO driftmirror.route_history (group_name, resource_name, access, endpoint, weight, reason)
    SELECT g.name, r.name, p_access, p_endpoint, p_weight, p_reason
      FROM driftmirror.resource r JOIN driftmirror.resource_group g ON g.id = r.group_id
     WHERE r.id = p_resource_id;
$$;

-- _multihost: a libpq multi-host conninfo from several conninfos (C)
CREATE FUNCTION driftmirror._multihost(endpoints text[], target_session_attrs text)
RETURNS text
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'driftmirror_multihost';

-- dm_route: the endpoint a client of a resource should use.  'write': the
-- primary.  'read': chosen by weight among the read routes, deterministically
-- for a given key (same key, same endpoint), at random without one.  With
-- no route recorded yet, the resource's endpoint (its primary).
CREATE FUNCTION driftmirror.dm_route("group" text, resource text, access text DEFAULT 'read',
                                     key text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_access ALIAS FOR $3;
    p_key ALIAS FOR $4;
    gid    bigint;
    rid    bigint;
    total  bigint;
    pick   double precision;
    ep     text;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    IF p_access IS NULL OR p_access NOT IN ('read', 'write') THEN
        RAISE EXCEPTION 'invalid access kind "%"', p_access
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''read'' or ''write''.';
    END IF;
    SELECT sum(rt.weight) INTO total FROM driftmirror.route rt
     WHERE rt.resource_id = rid AND rt.access = p_access AND rt.weight > 0;
    IF total IS NULL THEN
        SELECT r.endpoint INTO ep FROM driftmirror.resource r WHERE r.id = rid;
        RETURN ep;
    END IF;
    IF p_key IS NULL THEN
        pick := random() * total;
    ELSE
        -- a stable point in [0, total) from the key
        pick := (('x' || substr(md5(p_key), 1, 8))::bit(32)::bigint % 1000000) / 1000000.0 * total;
    END IF;
    SELECT w.endpoint INTO ep
      FROM (SELECT rt.endpoint,
                   sum(rt.weight) OVER (ORDER BY rt.endpoint) AS upto
              FROM driftmirror.route rt
             WHERE rt.resource_id = rid AND rt.access = p_access AND rt.weight > 0) w
     WHERE w.upto > pick
     ORDER BY w.upto
     LIMIT 1;
    RETURN ep;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route(text, text, text, text) IS
    'The endpoint (conninfo) a client of a resource should use for reads or writes';

-- dm_route_multihost: a libpq multi-host string listing the primary first,
-- then its mirror, with target_session_attrs=read-write: clients using it
-- follow a promotion on their own (the fenced node reports read-only)
CREATE FUNCTION driftmirror.dm_route_multihost("group" text, resource text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid bigint;
    rid bigint;
    eps text[];
BEGIN
    gid := driftmirror._group_id($1);
    rid := driftmirror._resource_id(gid, $1, $2);
    IF (SELECT r.kind FROM driftmirror.resource r WHERE r.id = rid) <> 'postgres' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is not a postgres resource: a libpq multi-host string needs one', $2, $1
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Use dm_route() or dm_routes for other kinds.';
    END IF;
    SELECT ARRAY[r.endpoint] || coalesce((SELECT array_agg(m.mirror_endpoint)
                                           FROM driftmirror.mirror m WHERE m.resource_id = r.id), '{}')
      INTO eps
      FROM driftmirror.resource r WHERE r.id = rid;
    RETURN driftmirror._multihost(eps, 'read-write');
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route_multihost(text, text) IS
    'A libpq multi-host conninfo (primary first, then its mirror) with target_session_attrs=read-write';

-- _promotion_order: the resources of a group that have a mirror (postgres
-- ones and those switched through an HTTP actuator), dependencies first
CREATE FUNCTION driftmirror._promotion_order(p_group_id bigint)
RETURNS TABLE (resource_name text, depth integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d (id, depth) AS (
        SELECT r.id, 0 FROM driftmirror.resource r WHERE r.group_id = p_group_id
        UNION ALL
        SELECT dep.resource_id, d.depth + 1
          FROM d JOIN driftmirror.resource_dependency dep ON dep.depends_on_id = d.id
         WHERE d.depth < 100
    )
    SELECT r.name, max(d.depth)::integer
      FROM d JOIN driftmirror.resource r ON r.id = d.id
      JOIN driftmirror.mirror m ON m.resource_id = r.id
     GROUP BY r.name
     ORDER BY 2, 1
$$;

-- _refuse_while_promoting: raise object_in_use when a promotion of the
-- group (of one resource, when p_resource_id is given) is in a step bounded
-- by its deadline: before the flip, or while an actuator switches or
-- aborts.  dm_drop_mirror, dm_remove_resource and dm_drop_group call it,
-- so that a drop never pulls a mirror from under a promotion that is about
-- to decide.  After the flip (unfencing, reversing) and while rolling back,
-- a drop is allowed: those steps wait for a node that may be gone for good,
-- and dropping the mirror is how an operator gives up on the way back (the
-- promotion then ends failed, saying so).
CREATE FUNCTION driftmirror._refuse_while_promoting(p_group_id bigint, p_group text,
                                                    p_resource_id bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion pr
     WHERE pr.group_id = p_group_id
       AND (p_resource_id IS NULL OR pr.resource_id = p_resource_id)
       AND pr.state IN ('guardrails', 'reverse_slot', 'fencing', 'catching_up', 'sequences',
                        'switching', 'aborting')
     ORDER BY pr.id DESC LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" is being promoted (promotion %, state %)',
                        p.resource_name, p_group, p.id, p.state
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('The promotion must finish or roll back first; its deadline is %s.',
                                  coalesce(p.abort_deadline, p.deadline)),
                  HINT = 'See dm_promotions, and try again once it has ended.';
    END IF;
END
$$;

-- _promotion_options: the promotion options in effect: group defaults and
-- group options, overridden by the options of the call (promote_* keys only)
CREATE FUNCTION driftmirror._promotion_options(p_group_id bigint, p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opts jsonb := driftmirror._validate_options('group', p_options);
    k    text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(opts) LOOP
        IF k NOT LIKE 'promote\_%' THEN
            RAISE EXCEPTION 'option "%" cannot be set for one promotion', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Only promote_* options can be passed to dm_promote; set others with dm_alter_group.';
        END IF;
    END LOOP;
    RETURN (SELECT driftmirror._effective_options('group', g.options) || opts
              FROM driftmirror.resource_group g WHERE g.id = p_group_id);
END
$$;

-- _promotion_flip_name: the other name of an alternating pair (x <-> x_rev)
CREATE FUNCTION driftmirror._promotion_flip_name(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_name LIKE '%\_rev' THEN left(p_name, -4) ELSE p_name || '_rev' END
$$;

-- _promotion_start: record a new promotion of one resource (state
-- guardrails) and return its id.  Raises if the resource has no usable
-- mirror or the group already has a promotion running.
CREATE FUNCTION driftmirror._promotion_start(p_group text, p_resource text, p_options jsonb,
                                             p_trigger text, p_reason text, p_pid integer,
                                             p_requested_by text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid  bigint;
    rid  bigint;
    m    driftmirror.mirror;
    eff  jsonb;
    pid  bigint;
    run  bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT * INTO m FROM driftmirror.mirror WHERE resource_id = rid FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no mirror to promote', p_resource, p_group
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create one with dm_create_mirror.';
    END IF;
    SELECT id INTO run FROM driftmirror.promotion
     WHERE group_id = gid AND state NOT IN ('done', 'rolled_back', 'refused', 'failed');
    IF run IS NOT NULL THEN
        RAISE EXCEPTION 'group "%" already has a promotion in progress (id %)', p_group, run
            USING ERRCODE = 'object_in_use',
                  HINT = 'See dm_promotions.';
    END IF;
    eff := driftmirror._promotion_options(gid, p_options);

    IF m.kind <> 'postgres' THEN
        -- switched through the HTTP actuator (72_promotion_actuator.sql)
        INSERT INTO driftmirror.promotion AS p
            (group_id, group_name, resource_id, resource_name, mirror_id, kind, trigger, reason,
             options, old_primary, new_primary, two_way, mirror_fence, deadline, worker_pid,
             requested_by)
        VALUES (gid, p_group, rid, p_resource, m.id, m.kind, p_trigger, p_reason, eff,
                driftmirror._promotion_actuator_primary(rid), m.mirror_endpoint, false, false,
                clock_timestamp() + driftmirror._opt_interval(eff -> 'promote_timeout'), p_pid,
                coalesce(p_requested_by, CASE p_trigger WHEN 'auto' THEN 'driftmirror worker' ELSE session_user END))
        RETURNING p.id INTO pid;
        PERFORM driftmirror._log_action(p_group, p_resource, 'promote_start', p_reason,
                                        jsonb_build_object('promotion', pid, 'trigger', p_trigger,
                                                           'kind', m.kind, 'options', eff));
        RETURN pid;
    END IF;

    INSERT INTO driftmirror.promotion AS p
        (group_id, group_name, resource_id, resource_name, mirror_id, trigger, reason, options,
         old_primary, new_primary, old_publication, old_slot, old_subscription,
         new_publication, new_slot, new_subscription,
         two_way, mirror_fence, deadline, worker_pid, requested_by)
    VALUES (gid, p_group, rid, p_resource, m.id, p_trigger, p_reason, eff,
            m.primary_endpoint, m.mirror_endpoint,
            m.publication_name, m.slot_name, m.subscription_name,
            coalesce(m.rev_publication_name, driftmirror._promotion_flip_name(m.publication_name)),
            coalesce(m.rev_slot_name, driftmirror._promotion_flip_name(m.slot_name)),
            coalesce(m.rev_subscription_name, driftmirror._promotion_flip_name(m.subscription_name)),
            m.two_way, m.fence,
            clock_timestamp() + driftmirror._opt_interval(eff -> 'promote_timeout'), p_pid,
            coalesce(p_requested_by, CASE p_trigger WHEN 'auto' THEN 'driftmirror worker' ELSE session_user END))
    RETURNING p.id INTO pid;
    PERFORM driftmirror._log_action(p_group, p_resource, 'promote_start', p_reason,
                                    jsonb_build_object('promotion', pid, 'trigger', p_trigger,
                                                       'options', eff));
    RETURN pid;
END
$$;

-- _promotion_info: what the driver needs to know about a promotion, as jsonb
CREATE FUNCTION driftmirror._promotion_info(p_id bigint)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'group', p.group_name, 'resource', p.resource_name, 'state', p.state,
        'old_primary', p.old_primary, 'new_primary', p.new_primary,
        'old_publication', p.old_publication, 'old_slot', p.old_slot,
        'old_subscription', p.old_subscription,
        'new_publication', p.new_publication, 'new_slot', p.new_slot,
        'new_subscription', p.new_subscription,
        'two_way', p.two_way, 'mirror_fence', p.mirror_fence,
        'mirror_state', m.state, 'mirror_lag_seconds', m.lag_seconds,
        'flipped', m.primary_endpoint = p.new_primary,
        'fence_lsn', p.fence_lsn, 'fenced_at', p.fenced_at,
        'remaining_ms', greatest(0, extract(epoch FROM p.deadline - clock_timestamp()) * 1000)::bigint,
        'max_lag_bytes', p.options -> 'promote_max_lag_bytes',
        'max_lag_seconds', p.options -> 'promote_max_lag_seconds',
        'max_xact_seconds', p.options -> 'promote_max_xact_seconds',
        'fence_grace_ms', (extract(epoch FROM driftmirror._opt_interval(p.options -> 'promote_fence_grace')) * 1000)::bigint,
        'sequence_gap', p.options -> 'promote_sequence_gap')
      FROM driftmirror.promotion p
      JOIN driftmirror.mirror m ON m.id = p.mirror_id
     WHERE p.id = p_id
$$;

-- _promotion_step: record a step.  outcome 'running' starts it (and moves
-- the promotion to p_state when given); anything else ends the step's
-- running row.  Returns nothing; the caller commits.
CREATE FUNCTION driftmirror._promotion_step(p_id bigint, p_step text, p_outcome text,
                                            p_state text DEFAULT NULL, p_reason text DEFAULT NULL,
                                            p_details jsonb DEFAULT NULL, p_lsn pg_lsn DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_state IS NOT NULL THEN
        UPDATE driftmirror.promotion SET state = p_state WHERE id = p_id;
    END IF;
    IF p_outcome = 'running' THEN
        -- a step started again (after an interruption) closes its old row
        UPDATE driftmirror.promotion_step
           SET outcome = 'interrupted', finished_at = clock_timestamp(),
               reason = 'the promotion was interrupted here and resumed'
         WHERE promotion_id = p_id AND outcome = 'running';
        INSERT INTO driftmirror.promotion_step (promotion_id, seq, step, reason, details, lsn)
        SELECT p_id, coalesce(max(seq), 0) + 1, p_step, p_reason, coalesce(p_details, '{}'), p_lsn
          FROM driftmirror.promotion_step WHERE promotion_id = p_id;
    ELSE
        UPDATE driftmirror.promotion_step
           SET outcome = p_outcome, finished_at = clock_timestamp(),
               reason = coalesce(p_reason, reason),
               details = details || coalesce(p_details, '{}'),
               lsn = coalesce(p_lsn, lsn)
         WHERE promotion_id = p_id AND step = p_step AND outcome = 'running';
    END IF;
END
$$;

-- _promotion_set: store figures measured by the driver
CREATE FUNCTION driftmirror._promotion_set(p_id bigint, p jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE driftmirror.promotion
       SET guardrails = coalesce(p -> 'guardrails', guardrails),
           fence_lsn = coalesce((p ->> 'fence_lsn')::pg_lsn, fence_lsn),
           confirmed_lsn = coalesce((p ->> 'confirmed_lsn')::pg_lsn, confirmed_lsn),
           sequences_synced = coalesce((p ->> 'sequences_synced')::integer, sequences_synced),
           fenced_at = coalesce((p ->> 'fenced_at')::timestamptz, fenced_at),
           unfenced_at = coalesce((p ->> 'unfenced_at')::timestamptz, unfenced_at),
           pause_ms = coalesce((p ->> 'pause_ms')::double precision, pause_ms),
           worker_pid = coalesce((p ->> 'worker_pid')::integer, worker_pid),
           attempts = attempts + coalesce((p ->> 'attempt')::integer, 0)
     WHERE id = p_id
$$;

-- _promotion_flip: THE commit point.  In one transaction: the mirror row
-- swaps primary and mirror (endpoints and the names of the replication
-- objects of the new direction), the resource points at its new primary,
-- the routes follow, and the promotion moves to 'unfencing'.  Idempotent.
CREATE FUNCTION driftmirror._promotion_flip(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
    m driftmirror.mirror;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id FOR UPDATE;
    IF p.state <> 'sequences' THEN
        RAISE EXCEPTION 'promotion % cannot flip in state %', p_id, p.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE driftmirror.mirror
       SET primary_endpoint = p.new_primary,
           publisher_endpoint = p.new_primary,
           mirror_endpoint = p.old_primary,
           publication_name = p.new_publication,
           slot_name = p.new_slot,
           subscription_name = p.new_subscription,
           rev_publication_name = CASE WHEN m.two_way THEN p.old_publication END,
           rev_slot_name = CASE WHEN m.two_way THEN p.old_slot END,
           rev_subscription_name = CASE WHEN m.two_way THEN p.old_subscription END,
           lag_bytes = NULL, lag_seconds = NULL, lag_probe_lsn = NULL,
           primary_checked_at = NULL, mirror_checked_at = NULL,
           state_reason = format('promoted by promotion %s', p_id)
     WHERE id = m.id;
    UPDATE driftmirror.resource SET endpoint = p.new_primary, updated_at = now()
     WHERE id = p.resource_id;
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', p.new_primary, 100,
                                   format('promotion %s', p_id));
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', p.old_primary, 0,
                                   format('promotion %s', p_id));
    -- reads follow the primary; read shifting may change them later
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', p.new_primary, 100,
                                   format('promotion %s', p_id));
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', p.old_primary, 0,
                                   format('promotion %s', p_id));
    UPDATE driftmirror.promotion SET state = 'unfencing' WHERE id = p_id;
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_flip',
                                    'routes and catalog point at the new primary',
                                    jsonb_build_object('promotion', p_id));
END
$$;

-- _promotion_finish: end a promotion in a terminal state
CREATE FUNCTION driftmirror._promotion_finish(p_id bigint, p_state text, p_error text DEFAULT NULL,
                                              p_sqlstate text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
BEGIN
    UPDATE driftmirror.promotion
       SET state = p_state, finished_at = clock_timestamp(),
           error = coalesce(p_error, error), error_sqlstate = coalesce(p_sqlstate, error_sqlstate)
     WHERE id = p_id
    RETURNING * INTO p;
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_' || p_state,
                                    coalesce(p_error, p.reason),
                                    jsonb_build_object('promotion', p_id, 'pause_ms', p.pause_ms,
                                                       'fence_lsn', p.fence_lsn,
                                                       'trigger', p.trigger),
                                    p_state);
END
$$;

-- _promotions_unfinished: promotions of a group left unfinished (the main
-- worker's recovery looks for them every step)
CREATE FUNCTION driftmirror._promotions_unfinished(p_group_id bigint)
RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id FROM driftmirror.promotion
     WHERE group_id = p_group_id AND state NOT IN ('done', 'rolled_back', 'refused', 'failed')
     ORDER BY id
$$;

-- dm_promote: promote the mirror of a resource (or of every mirrored
-- resource of the group, dependencies first) to primary: postgres mirrors
-- by switchover, the others through their HTTP actuator.  Returns one row
-- per resource promoted (pause_ms and fence_lsn NULL for actuator ones).
CREATE FUNCTION driftmirror.dm_promote("group" text, resource text DEFAULT NULL,
                                       options jsonb DEFAULT '{}',
                                       OUT resource_name text, OUT new_primary text,
                                       OUT pause_ms double precision, OUT fence_lsn pg_lsn,
                                       OUT promotion_id bigint)
RETURNS SETOF record
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'driftmirror_dm_promote';
COMMENT ON FUNCTION driftmirror.dm_promote(text, text, jsonb) IS
    'Switch over: the mirror becomes the primary and the old primary its mirror (through the HTTP actuator for cache/app/web/service resources); returns the new primary, the write pause and the fence LSN';

CREATE VIEW driftmirror.dm_promotions AS
SELECT p.id, p.group_name, p.resource_name, p.trigger, p.reason, p.state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.old_primary END AS old_primary,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.new_primary END AS new_primary,
       p.pause_ms, p.fence_lsn, p.confirmed_lsn, p.sequences_synced, p.guardrails,
       p.error, p.error_sqlstate, p.requested_by, p.started_at, p.finished_at,
       (SELECT jsonb_agg(jsonb_build_object('step', s.step, 'started', s.started_at,
                                            'finished', s.finished_at, 'lsn', s.lsn,
                                            'outcome', s.outcome, 'reason', s.reason,
                                            'details', s.details) ORDER BY s.seq)
          FROM driftmirror.promotion_step s WHERE s.promotion_id = p.id) AS steps,
       p.kind, p.deadline, p.abort_deadline,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.actuator_detail END AS actuator_detail
  FROM driftmirror.promotion p;
COMMENT ON VIEW driftmirror.dm_promotions IS
    'Every promotion with its state, pause, fence LSN and step log';

CREATE VIEW driftmirror.dm_promotion_steps AS
SELECT p.group_name, p.resource_name, s.promotion_id, s.seq, s.step, s.started_at,
       s.finished_at, round(extract(epoch FROM s.finished_at - s.started_at)::numeric * 1000, 1) AS ms,
       s.lsn, s.outcome, s.reason, s.details
  FROM driftmirror.promotion_step s
  JOIN driftmirror.promotion p ON p.id = s.promotion_id;
COMMENT ON VIEW driftmirror.dm_promotion_steps IS
    'The step log of every promotion, one row per step';

CREATE VIEW driftmirror.dm_routes AS
SELECT g.name AS group_name, r.name AS resource_name, rt.access,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN rt.endpoint END AS endpoint,
       rt.weight, rt.updated_at
  FROM driftmirror.route rt
  JOIN driftmirror.resource r ON r.id = rt.resource_id
  JOIN driftmirror.resource_group g ON g.id = rt.group_id;
COMMENT ON VIEW driftmirror.dm_routes IS
    'Routes per resource and access kind; endpoint is null unless the reader is a driftmirror_admin';

-- _promotion_guardrails: compare what the driver read on both nodes with
-- the limits; store the figures; return NULL when every check passes, else
-- one reason per line, each with the figures compared
CREATE FUNCTION driftmirror._promotion_guardrails(p_id bigint, o jsonb, n jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p        driftmirror.promotion;
    m        driftmirror.mirror;
    reasons  text[] := '{}';
    only_old text[];
    only_new text[];
    lag_b    bigint := (o ->> 'lag_bytes')::bigint;
    max_b    bigint;
    max_s    double precision;
    max_x    double precision;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    max_b := (p.options ->> 'promote_max_lag_bytes')::bigint;
    max_s := (p.options ->> 'promote_max_lag_seconds')::double precision;
    max_x := (p.options ->> 'promote_max_xact_seconds')::double precision;

    IF m.state <> 'mirroring' THEN
        reasons := reasons || format('mirror not in sync: its state is %s (%s)', m.state,
                                     coalesce(m.state_reason, 'no reason recorded'));
    END IF;
    IF NOT coalesce((o ->> 'slot_exists')::boolean, false) THEN
        reasons := reasons || format('mirror not in sync: its replication slot %s is missing on the primary',
                                     m.slot_name);
    END IF;
    IF NOT coalesce((n ->> 'sub_exists')::boolean, false) THEN
        reasons := reasons || format('mirror not in sync: subscription %s is missing on the mirror',
                                     m.subscription_name);
    ELSIF NOT (n ->> 'sub_enabled')::boolean THEN
        reasons := reasons || format('mirror not in sync: subscription %s is disabled', m.subscription_name);
    ELSIF NOT (n ->> 'worker_running')::boolean THEN
        reasons := reasons || 'mirror not in sync: its apply worker is not running'::text;
    END IF;
    IF coalesce((n ->> 'tables_not_ready')::integer, 0) > 0 THEN
        reasons := reasons || format('mirror not in sync: %s table(s) still in their initial copy',
                                     n ->> 'tables_not_ready');
    END IF;
    IF lag_b IS NOT NULL AND lag_b > max_b THEN
        reasons := reasons || format('replication lag %s bytes exceeds promote_max_lag_bytes %s',
                                     lag_b, max_b);
    END IF;
    IF m.lag_seconds IS NOT NULL AND m.lag_seconds > max_s THEN
        reasons := reasons || format('replication lag %s s exceeds promote_max_lag_seconds %s',
                                     round(m.lag_seconds::numeric, 3), max_s);
    END IF;
    -- an error stops the apply worker, which restarts 5 s later: errors
    -- count as current until the worker has run cleanly for 10 s since
    -- (a lost connection to the primary counts as an error too)
    IF coalesce((n ->> 'apply_errors')::bigint, 0) + coalesce((n ->> 'sync_errors')::bigint, 0) > 0
       AND coalesce((n ->> 'worker_uptime_seconds')::numeric, 0) < 10 THEN
        reasons := reasons || format('the mirror reports %s apply error(s) and %s sync error(s) and its apply worker has run only %s s since (less than 10 s; pg_stat_subscription_stats, reset with pg_stat_reset_subscription_stats once fixed)',
                                     coalesce(n ->> 'apply_errors', '0'), coalesce(n ->> 'sync_errors', '0'),
                                     coalesce(n ->> 'worker_uptime_seconds', '0'));
    END IF;
    IF coalesce((o ->> 'long_xacts')::integer, 0) > 0 THEN
        reasons := reasons || format('%s write transaction(s) on the primary older than promote_max_xact_seconds %s; the oldest has run %s s',
                                     o ->> 'long_xacts', max_x, o ->> 'oldest_write_xact_seconds');
    END IF;
    SELECT array_agg(x ORDER BY x) INTO only_old
      FROM (SELECT jsonb_array_elements_text(o -> 'schema') EXCEPT
            SELECT jsonb_array_elements_text(n -> 'schema')) d (x);
    SELECT array_agg(x ORDER BY x) INTO only_new
      FROM (SELECT jsonb_array_elements_text(n -> 'schema') EXCEPT
            SELECT jsonb_array_elements_text(o -> 'schema')) d (x);
    IF only_old IS NOT NULL OR only_new IS NOT NULL THEN
        reasons := reasons || format('DDL since the mirror was made: the schemas differ (only on the primary: %s; only on the mirror: %s)',
                                     coalesce(array_to_string(only_old[1:10], ', '), 'nothing'),
                                     coalesce(array_to_string(only_new[1:10], ', '), 'nothing'));
    END IF;

    UPDATE driftmirror.promotion
       SET guardrails = jsonb_build_object(
               'mirror_state', m.state,
               'lag_bytes', lag_b, 'max_lag_bytes', max_b,
               'lag_seconds', m.lag_seconds, 'max_lag_seconds', max_s,
               'apply_errors', n -> 'apply_errors', 'sync_errors', n -> 'sync_errors',
               'worker_running', n -> 'worker_running',
               'worker_uptime_seconds', n -> 'worker_uptime_seconds',
               'tables_not_ready', n -> 'tables_not_ready',
               'long_write_xacts', o -> 'long_xacts', 'max_xact_seconds', max_x,
               'oldest_write_xact_seconds', o -> 'oldest_write_xact_seconds',
               'schema_only_on_primary', to_jsonb(coalesce(only_old, '{}')),
               'schema_only_on_mirror', to_jsonb(coalesce(only_new, '{}')),
               'passed', cardinality(reasons) = 0,
               'reasons', to_jsonb(reasons))
     WHERE id = p_id;
    UPDATE driftmirror.promotion_step
       SET details = (SELECT guardrails FROM driftmirror.promotion WHERE id = p_id)
     WHERE promotion_id = p_id AND step = 'guardrails' AND outcome = 'running';
    RETURN CASE WHEN cardinality(reasons) > 0 THEN array_to_string(reasons, E'\n') END;
END
$$;

-- _promotion_queue_cleanup: a rollback that could not reach the mirror
-- leaves the slot and publication made for the way back to the mirrors'
-- cleanup queue, which retries until they are gone
CREATE FUNCTION driftmirror._promotion_queue_cleanup(p_id bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.mirror_cleanup
        (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
    SELECT p.group_name, p.resource_name, p.mirror_id, 'mirror', p.new_primary, w.what, w.name, w.prio
      FROM driftmirror.promotion p,
           LATERAL (VALUES ('slot', p.new_slot, 2), ('publication', p.new_publication, 3)) w (what, name, prio)
     WHERE p.id = p_id AND NOT p.two_way
$$;

-- ---- auto-promotion ----
--
-- With the group option auto_promote, the worker promotes a mirror on its
-- own once, for auto_promote_window without interruption: the mirror takes
-- all read traffic (its read route has weight 100: the last step of a
-- blue/green read shift), it is mirroring with fresh status, its lag is
-- within auto_promote_max_lag_bytes and auto_promote_max_lag_seconds, no
-- apply error appeared, and its latency ratio (_mirror_latency over
-- auto_promote_window: median mirror latency / median primary latency,
-- both floored at 1 ms, rounded to 2 decimals) is at most
-- auto_promote_max_latency_ratio.  While no latency sample of both nodes
-- exists the ratio is "not measured yet" and the window does not start.
-- After the promotion the routes send reads to the new primary, so the
-- condition does not hold for the old one: no ping-pong.

CREATE TABLE driftmirror.auto_promote_state (
    mirror_id      bigint PRIMARY KEY REFERENCES driftmirror.mirror (id) ON DELETE CASCADE,
    holding_since  timestamptz,
    errors_at_start bigint,
    last_reason    text,
    checked_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- _auto_promote_check: evaluate the thresholds of every mirror of a group
-- (called by the worker each group step); returns the resources to promote
-- now, after logging the decision with its figures in the action log
CREATE FUNCTION driftmirror._auto_promote_check(p_group_id bigint)
RETURNS TABLE (resource_id bigint, reason text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       driftmirror.resource_group;
    eff     jsonb;
    m       driftmirror.mirror;
    st      driftmirror.auto_promote_state;
    win     interval;
    iv      interval;
    errs    bigint;
    weight  integer;
    fails   text[];
    figures jsonb;
    lat     record;
    ratio   numeric;
    maxratio numeric;
    latency text;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    eff := driftmirror._effective_options('group', g.options);
    IF NOT coalesce((eff ->> 'auto_promote')::boolean, false) THEN
        DELETE FROM driftmirror.auto_promote_state s
         USING driftmirror.mirror mm WHERE mm.id = s.mirror_id AND mm.group_id = p_group_id;
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM driftmirror.promotion p WHERE p.group_id = p_group_id
                AND p.state NOT IN ('done', 'rolled_back', 'refused', 'failed')) THEN
        RETURN;
    END IF;
    win := driftmirror._opt_interval(eff -> 'auto_promote_window');
    iv := driftmirror._opt_interval(eff -> 'interval');
    maxratio := (eff ->> 'auto_promote_max_latency_ratio')::numeric;

    FOR m IN SELECT * FROM driftmirror.mirror mm
              WHERE mm.group_id = p_group_id AND mm.kind = 'postgres' ORDER BY mm.id
    LOOP
        errs := m.apply_error_count + m.sync_error_count;
        SELECT rt.weight INTO weight FROM driftmirror.route rt
         WHERE rt.resource_id = m.resource_id AND rt.access = 'read' AND rt.endpoint = m.mirror_endpoint;
        SELECT * INTO st FROM driftmirror.auto_promote_state s WHERE s.mirror_id = m.id;
        fails := '{}';
        IF coalesce(weight, 0) < 100 THEN
            fails := fails || format('the mirror takes %s%% of reads, not 100%%', coalesce(weight, 0));
        END IF;
        IF m.state <> 'mirroring' THEN
            fails := fails || format('the mirror is %s', m.state);
        END IF;
        IF greatest(m.primary_checked_at, m.mirror_checked_at) IS NULL
           OR least(m.primary_checked_at, m.mirror_checked_at) < clock_timestamp() - 3 * iv THEN
            fails := fails || 'the mirror''s status is not fresh'::text;
        END IF;
        IF m.lag_bytes IS NULL OR m.lag_bytes > (eff ->> 'auto_promote_max_lag_bytes')::bigint THEN
            fails := fails || format('lag %s bytes exceeds auto_promote_max_lag_bytes %s',
                                     coalesce(m.lag_bytes::text, 'unknown'), eff ->> 'auto_promote_max_lag_bytes');
        END IF;
        IF m.lag_seconds IS NULL OR m.lag_seconds > (eff ->> 'auto_promote_max_lag_seconds')::double precision THEN
            fails := fails || format('lag %s s exceeds auto_promote_max_lag_seconds %s',
                                     coalesce(round(m.lag_seconds::numeric, 3)::text, 'unknown'),
                                     eff ->> 'auto_promote_max_lag_seconds');
        END IF;
        IF st.holding_since IS NOT NULL AND errs > st.errors_at_start THEN
            fails := fails || format('%s new apply error(s) during the window', errs - st.errors_at_start);
        END IF;
        -- latency: medians of the window's samples, ratio to 2 decimals
        SELECT * INTO lat FROM driftmirror._mirror_latency(m.id, win);
        ratio := round(lat.ratio::numeric, 2);
        latency := format('median %s ms on the mirror, %s ms on the primary',
                          trim_scale(round(lat.mirror_ms::numeric, 3)),
                          trim_scale(round(lat.primary_ms::numeric, 3)));
        IF ratio IS NULL THEN
            fails := fails || format('latency ratio not measured yet (no latency sample of the %s)',
                                     CASE WHEN lat.mirror_ms IS NULL AND lat.primary_ms IS NULL THEN 'mirror and the primary'
                                          WHEN lat.mirror_ms IS NULL THEN 'mirror' ELSE 'primary' END);
        ELSIF ratio > maxratio THEN
            fails := fails || format('latency ratio %s exceeds auto_promote_max_latency_ratio %s (%s)',
                                     trim_scale(ratio), trim_scale(maxratio), latency);
        END IF;
        figures := jsonb_build_object('read_weight', weight, 'lag_bytes', m.lag_bytes,
                                      'lag_seconds', m.lag_seconds, 'apply_errors', errs,
                                      'window', win::text,
                                      'latency_ratio', ratio,
                                      'max_latency_ratio', maxratio,
                                      'primary_latency_ms', round(lat.primary_ms::numeric, 3),
                                      'mirror_latency_ms', round(lat.mirror_ms::numeric, 3),
                                      'primary_latency_samples', lat.primary_samples,
                                      'mirror_latency_samples', lat.mirror_samples);

        IF cardinality(fails) > 0 THEN
            INSERT INTO driftmirror.auto_promote_state AS s (mirror_id, holding_since, errors_at_start, last_reason, checked_at)
            VALUES (m.id, NULL, NULL, array_to_string(fails, '; '), clock_timestamp())
            ON CONFLICT (mirror_id) DO UPDATE
               SET holding_since = NULL, errors_at_start = NULL,
                   last_reason = EXCLUDED.last_reason, checked_at = EXCLUDED.checked_at;
            CONTINUE;
        END IF;
        IF st.holding_since IS NULL THEN
            INSERT INTO driftmirror.auto_promote_state AS s (mirror_id, holding_since, errors_at_start, last_reason, checked_at)
            VALUES (m.id, clock_timestamp(), errs,
                    format('thresholds hold; window started (latency ratio %s)', trim_scale(ratio)),
                    clock_timestamp())
            ON CONFLICT (mirror_id) DO UPDATE
               SET holding_since = EXCLUDED.holding_since, errors_at_start = EXCLUDED.errors_at_start,
                   last_reason = EXCLUDED.last_reason, checked_at = EXCLUDED.checked_at;
            CONTINUE;
        END IF;
        IF clock_timestamp() - st.holding_since < win THEN
            UPDATE driftmirror.auto_promote_state s
               SET last_reason = format('thresholds hold since %s (latency ratio %s)', st.holding_since, trim_scale(ratio)),
                   checked_at = clock_timestamp()
             WHERE s.mirror_id = m.id;
            CONTINUE;
        END IF;

        -- held for the whole window: promote
        UPDATE driftmirror.auto_promote_state s
           SET holding_since = NULL, errors_at_start = NULL,
               last_reason = 'promotion started', checked_at = clock_timestamp()
         WHERE s.mirror_id = m.id;
        resource_id := m.resource_id;
        reason := format('auto-promotion: for %s the mirror took 100%% of reads, lag %s bytes and %s s within %s bytes and %s s, no new apply error, latency ratio %s within %s (%s)',
                         win, m.lag_bytes, round(m.lag_seconds::numeric, 3),
                         eff ->> 'auto_promote_max_lag_bytes', eff ->> 'auto_promote_max_lag_seconds',
                         trim_scale(ratio), trim_scale(maxratio), latency);
        PERFORM driftmirror._log_action(g.name, m.resource_name, 'auto_promote', reason,
                                        figures || jsonb_build_object('holding_since', st.holding_since));
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE VIEW driftmirror.dm_auto_promotion AS
SELECT mm.group_name, mm.resource_name, s.holding_since, s.last_reason, s.checked_at
  FROM driftmirror.auto_promote_state s
  JOIN driftmirror.mirror mm ON mm.id = s.mirror_id;
COMMENT ON VIEW driftmirror.dm_auto_promotion IS
    'Auto-promotion: per mirror, since when its thresholds hold, or why they do not';

-- _promotion_start_auto: record an auto-promotion of a resource (its reason
-- is the last auto_promote decision in the action log)
CREATE FUNCTION driftmirror._promotion_start_auto(p_resource_id bigint, p_pid integer)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT driftmirror._promotion_start(g.name, r.name, '{}', 'auto',
               coalesce((SELECT a.reason FROM driftmirror.action a
                          WHERE a.group_name = g.name AND a.resource_name = r.name
                            AND a.kind = 'auto_promote'
                          ORDER BY a.id DESC LIMIT 1), 'auto-promotion'),
               p_pid)
      FROM driftmirror.resource r JOIN driftmirror.resource_group g ON g.id = r.group_id
     WHERE r.id = p_resource_id
$$;

-- _promotion_advance: one transaction per step boundary (fewer commits in
-- the write pause): store figures, end step p_done, flip if asked (the
-- commit point), start step p_next and move to p_next_state
CREATE FUNCTION driftmirror._promotion_advance(p_id bigint, p_done text, p_lsn pg_lsn,
                                               p_details jsonb, p_figures jsonb,
                                               p_next text, p_next_state text, p_flip boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_figures IS NOT NULL THEN
        PERFORM driftmirror._promotion_set(p_id, p_figures);
    END IF;
    PERFORM driftmirror._promotion_step(p_id, p_done, 'ok', NULL, NULL, p_details, p_lsn);
    IF p_flip THEN
        PERFORM driftmirror._promotion_flip(p_id);
    END IF;
    IF p_next IS NOT NULL THEN
        PERFORM driftmirror._promotion_step(p_id, p_next, 'running', p_next_state);
    END IF;
END
$$;

-- ---- sql/install/72_promotion_actuator.sql ----
-- 72_promotion_actuator.sql: promotion of mirrors of cache, app, web and
-- service resources through their HTTP actuator (contract in
-- docs/mirrors.md, "Promote"; behaviour in docs/promotion.md).
--
-- The same persisted promotion row and step log as PostgreSQL promotions
-- (70_promotion.sql), with states guardrails -> switching -> done, or
-- refused, or (promote_timeout passed) aborting -> rolled_back / failed /
-- done.  The driver (src/promote_actuator.c) is a generic executor, like
-- the mirrors' one: in one short transaction _promotion_actuator_next()
-- moves the state machine on (guardrails, deadlines) and returns the next
-- request, recorded in the step log before it is sent; the driver sends it
-- with no transaction open; _promotion_actuator_answer() records the answer
-- in another short transaction and says whether to send again ('retry') or
-- the promotion has ended (its final state).  Requests are idempotent (same
-- Idempotency-Key for every resend of one promotion), so a driver that dies
-- mid-request is replaced by a recovery worker that simply sends again:
--   promote  POST <endpoint>/mirrors/<mirror>/promote  key dm-<k>-promote-<id>
--   abort    POST <endpoint>/mirrors/<mirror>/promote  key dm-<k>-promote-<id>-abort
--            (body "action": "abort")
-- The answer "promoted" flips the routes, the mirror row and the promotion
-- (done) in one transaction.  The bearer token never enters the catalog:
-- the driver reads the resource's bearer_token_file per request.

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('group', 'promote_abort_timeout', 'interval', '"10 seconds"', '1 second', '1 hour', NULL,
     'actuator promotions: how long the abort of a timed-out promotion is retried before the promotion is recorded as failed with the actuator''s state unknown');

-- _promotion_actuator_primary: where clients of a resource write now: the
-- write route with the highest weight, or the resource's endpoint without
-- one (what dm_route(..., 'write') answers)
CREATE FUNCTION driftmirror._promotion_actuator_primary(p_resource_id bigint)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT rt.endpoint FROM driftmirror.route rt
                      WHERE rt.resource_id = p_resource_id AND rt.access = 'write' AND rt.weight > 0
                      ORDER BY rt.weight DESC, rt.endpoint LIMIT 1),
                    (SELECT r.endpoint FROM driftmirror.resource r WHERE r.id = p_resource_id))
$$;

-- _promotion_actuator_guardrails: the checks of an actuator promotion, on
-- what the mirror phase last read from the actuator; stores the figures;
-- returns NULL when every check passes, else one reason per line
CREATE FUNCTION driftmirror._promotion_actuator_guardrails(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p       driftmirror.promotion;
    m       driftmirror.mirror;
    iv      interval;
    age_s   numeric;
    max_b   bigint;
    max_s   double precision;
    reasons text[] := '{}';
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    SELECT driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval')
      INTO iv FROM driftmirror.resource_group g WHERE g.id = p.group_id;
    max_b := (p.options ->> 'promote_max_lag_bytes')::bigint;
    max_s := (p.options ->> 'promote_max_lag_seconds')::double precision;
    age_s := round(extract(epoch FROM clock_timestamp() - m.mirror_checked_at)::numeric, 1);

    IF m.state <> 'mirroring' THEN
        reasons := reasons || format('mirror not in sync: its state is %s (%s)', m.state,
                                     coalesce(m.state_reason, 'no reason recorded'));
    END IF;
    IF m.mirror_checked_at IS NULL THEN
        reasons := reasons || 'the mirror''s status is not fresh: the actuator has not been asked for it since the mirror was made or last promoted'::text;
    ELSIF m.mirror_checked_at < clock_timestamp() - 3 * iv THEN
        reasons := reasons || format('the mirror''s status is not fresh: last asked %s s ago, more than 3 monitoring intervals (%s s)',
                                     age_s, round(extract(epoch FROM 3 * iv)::numeric, 1));
    ELSIF m.attempts > 0 THEN
        reasons := reasons || format('the mirror''s status is not fresh: the last %s request(s) to the actuator for it failed (%s)',
                                     m.attempts, coalesce(m.last_error, 'no error recorded'));
    END IF;
    IF m.lag_bytes IS NOT NULL AND m.lag_bytes > max_b THEN
        reasons := reasons || format('replication lag %s bytes (as the actuator reports it) exceeds promote_max_lag_bytes %s',
                                     m.lag_bytes, max_b);
    END IF;
    IF m.lag_seconds IS NOT NULL AND m.lag_seconds > max_s THEN
        reasons := reasons || format('replication lag %s s (as the actuator reports it) exceeds promote_max_lag_seconds %s',
                                     round(m.lag_seconds::numeric, 3), max_s);
    END IF;
    IF p.new_primary IS NULL THEN
        reasons := reasons || 'the mirror''s endpoint is unknown: the actuator has not said where clients reach it, so the routes could not be flipped'::text;
    END IF;

    UPDATE driftmirror.promotion
       SET guardrails = jsonb_build_object(
               'mirror_state', m.state,
               'status_age_seconds', age_s,
               'max_status_age_seconds', round(extract(epoch FROM 3 * iv)::numeric, 1),
               'failed_status_requests', m.attempts,
               'lag_bytes', m.lag_bytes, 'max_lag_bytes', max_b,
               'lag_seconds', m.lag_seconds, 'max_lag_seconds', max_s,
               'endpoint_known', p.new_primary IS NOT NULL,
               'passed', cardinality(reasons) = 0,
               'reasons', to_jsonb(reasons))
     WHERE id = p_id;
    UPDATE driftmirror.promotion_step
       SET details = (SELECT guardrails FROM driftmirror.promotion WHERE id = p_id)
     WHERE promotion_id = p_id AND step = 'guardrails' AND outcome = 'running';
    RETURN CASE WHEN cardinality(reasons) > 0 THEN array_to_string(reasons, E'\n') END;
END
$$;

-- _promotion_actuator_flip: THE commit point of an actuator promotion,
-- called in the transaction that records the answer "promoted" (j): the
-- routes (write and read) go to the new primary (the endpoint the actuator
-- reports, else the mirror's endpoint), every other route of the resource
-- to 0; the mirror row takes the mirror's new endpoint (NULL until the
-- actuator says) and its status is read afresh.  Returns what was set.
CREATE FUNCTION driftmirror._promotion_actuator_flip(p_id bigint, j jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p      driftmirror.promotion;
    new_ep text;
    mir_ep text;
    why    text := format('promotion %s', p_id);
    rt     record;
    zeroed integer := 0;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    PERFORM FROM driftmirror.mirror WHERE id = p.mirror_id FOR UPDATE;
    new_ep := coalesce(CASE WHEN jsonb_typeof(j -> 'endpoint') = 'string' THEN j ->> 'endpoint' END,
                       p.new_primary);
    mir_ep := CASE WHEN jsonb_typeof(j -> 'mirror_endpoint') = 'string' THEN j ->> 'mirror_endpoint' END;

    UPDATE driftmirror.promotion SET new_primary = new_ep WHERE id = p_id;
    UPDATE driftmirror.mirror
       SET mirror_endpoint = mir_ep,
           lag_bytes = NULL, lag_seconds = NULL,
           primary_checked_at = NULL, mirror_checked_at = NULL,
           state_reason = format('promoted by promotion %s', p_id)
     WHERE id = p.mirror_id;

    FOR rt IN SELECT r.access, r.endpoint FROM driftmirror.route r
               WHERE r.resource_id = p.resource_id AND r.weight > 0 AND r.endpoint <> new_ep
               ORDER BY 1, 2
    LOOP
        PERFORM driftmirror._set_route(p.group_id, p.resource_id, rt.access, rt.endpoint, 0, why);
        zeroed := zeroed + 1;
    END LOOP;
    IF p.old_primary <> new_ep THEN
        PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', p.old_primary, 0, why);
        PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', p.old_primary, 0, why);
    END IF;
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', new_ep, 100, why);
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', new_ep, 100, why);
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_flip',
                                    'the actuator promoted the mirror; the routes point at the new primary',
                                    jsonb_build_object('promotion', p_id));
    RETURN jsonb_build_object('write', 100, 'read', 100, 'other_routes_set_to_0', zeroed,
                              'mirror_endpoint_known', mir_ep IS NOT NULL);
END
$$;

-- _promotion_actuator_next: in one transaction, move an actuator promotion
-- on (guardrails; promote_timeout -> abort; promote_abort_timeout ->
-- failed) and return the next request to send, counted in the step log
-- before it is sent.  No row: the promotion has ended.
CREATE FUNCTION driftmirror._promotion_actuator_next(p_id bigint)
RETURNS TABLE (action text, label text, http_method text, http_url text, http_body text,
               http_key text, http_token_file text, http_timeout_ms integer,
               remaining_ms integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p        driftmirror.promotion;
    m        driftmirror.mirror;
    refused  text;
    v_step   text;
    until    timestamptz;
    left_ms  double precision;
    max_ms   integer;
    last     text;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR p.state IN ('done', 'rolled_back', 'refused', 'failed') THEN
        RETURN;
    END IF;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    IF NOT FOUND THEN
        -- a mirror cannot be dropped during its promotion (the row locks),
        -- but be definite about it
        PERFORM driftmirror._promotion_step(p_id, CASE p.state WHEN 'aborting' THEN 'abort'
                                                    WHEN 'switching' THEN 'actuator_switch'
                                                    ELSE 'guardrails' END,
                                            'failed', NULL, 'the mirror is gone');
        PERFORM driftmirror._promotion_finish(p_id, 'failed', 'the mirror was dropped during its promotion', '55000');
        RETURN;
    END IF;

    IF p.state = 'guardrails' THEN
        PERFORM driftmirror._promotion_step(p_id, 'guardrails', 'running');
        refused := driftmirror._promotion_actuator_guardrails(p_id);
        IF refused IS NOT NULL THEN
            PERFORM driftmirror._promotion_step(p_id, 'guardrails', 'refused', 'refused', refused);
            PERFORM driftmirror._promotion_finish(p_id, 'refused',
                format('promotion of resource "%s" of group "%s" refused', p.resource_name, p.group_name),
                '55000');
            RETURN;
        END IF;
        PERFORM driftmirror._promotion_step(p_id, 'guardrails', 'ok');
        PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'running', 'switching', NULL,
            jsonb_build_object('key', format('dm-%s-promote-%s', m.actuator_key, p_id), 'requests', 0));
        p.state := 'switching';
    END IF;

    IF p.state = 'switching' AND clock_timestamp() >= p.deadline THEN
        SELECT s.details ->> 'last' INTO last FROM driftmirror.promotion_step s
         WHERE s.promotion_id = p_id AND s.step = 'actuator_switch' AND s.outcome = 'running';
        PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'failed', NULL,
            format('promote_timeout (%s) passed without a definitive answer from the actuator (last: %s)',
                   driftmirror._opt_interval(p.options -> 'promote_timeout'),
                   coalesce(last, 'no request completed')));
        UPDATE driftmirror.promotion
           SET abort_deadline = clock_timestamp()
                                + driftmirror._opt_interval(p.options -> 'promote_abort_timeout')
         WHERE id = p_id
        RETURNING * INTO p;
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'running', 'aborting', NULL,
            jsonb_build_object('key', format('dm-%s-promote-%s-abort', m.actuator_key, p_id), 'requests', 0));
        p.state := 'aborting';
    END IF;

    IF p.state = 'aborting' AND clock_timestamp() >= p.abort_deadline THEN
        SELECT s.details ->> 'last' INTO last FROM driftmirror.promotion_step s
         WHERE s.promotion_id = p_id AND s.step = 'abort' AND s.outcome = 'running';
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'failed', NULL,
            format('the actuator did not confirm the abort within promote_abort_timeout (%s) (last: %s); its state is unknown',
                   driftmirror._opt_interval(p.options -> 'promote_abort_timeout'),
                   coalesce(last, 'no request completed')));
        PERFORM driftmirror._promotion_finish(p_id, 'failed',
            format('promotion of resource "%s" of group "%s" timed out in step actuator_switch and the actuator did not confirm the abort; its state is unknown',
                   p.resource_name, p.group_name),
            '57014');
        RETURN;
    END IF;

    IF p.state NOT IN ('switching', 'aborting') THEN
        RAISE EXCEPTION 'actuator promotion % is in state %', p_id, p.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- the request
    action := CASE p.state WHEN 'switching' THEN 'promote' ELSE 'abort' END;
    v_step := CASE p.state WHEN 'switching' THEN 'actuator_switch' ELSE 'abort' END;
    until := CASE p.state WHEN 'switching' THEN p.deadline ELSE p.abort_deadline END;
    left_ms := extract(epoch FROM until - clock_timestamp()) * 1000;
    remaining_ms := greatest(1, least(left_ms, 2000000000))::integer;
    max_ms := (extract(epoch FROM driftmirror._opt_interval(
                  driftmirror._effective_options('mirror', m.options) -> 'actuator_timeout')) * 1000)::integer;
    http_timeout_ms := greatest(100, least(max_ms, remaining_ms));
    label := format('%s/%s actuator', p.group_name, p.resource_name);
    http_method := 'POST';
    http_url := rtrim(m.primary_endpoint, '/') || '/mirrors/' || m.actuator_name || '/promote';
    http_body := jsonb_build_object('group', p.group_name, 'resource', p.resource_name,
                                    'kind', p.kind, 'mirror', m.actuator_name, 'action', action,
                                    'promotion', p_id, 'endpoint', p.new_primary)::text;
    http_key := format('dm-%s-promote-%s', m.actuator_key, p_id)
                || CASE action WHEN 'abort' THEN '-abort' ELSE '' END;
    -- the token file named by the resource now (it may have been changed)
    http_token_file := driftmirror._actuator_token_file(m);
    UPDATE driftmirror.promotion_step s
       SET details = s.details || jsonb_build_object(
               'key', http_key,
               'requests', coalesce((s.details ->> 'requests')::integer, 0) + 1,
               'sent_at', clock_timestamp())
     WHERE s.promotion_id = p_id AND s.step = v_step AND s.outcome = 'running';
    RETURN NEXT;
END
$$;

-- _promotion_actuator_answer: record the outcome of a request returned by
-- _promotion_actuator_next.  p_ok: an HTTP answer arrived (p_status,
-- p_body); otherwise p_error (names the actuator by label only) and
-- p_detail (libcurl's reason) say why not.  Returns 'retry' (send the same
-- request again, with the same key) or the promotion's final state
-- ('done', 'refused', 'rolled_back', 'failed').
CREATE FUNCTION driftmirror._promotion_actuator_answer(p_id bigint, p_action text, p_ok boolean,
                                                       p_status integer, p_body text,
                                                       p_error text, p_detail text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p     driftmirror.promotion;
    m     driftmirror.mirror;
    v_step text := CASE p_action WHEN 'promote' THEN 'actuator_switch' ELSE 'abort' END;
    what  text;
    j     jsonb;
    st    text;
    valid boolean := false;
    last  text;
    det   text;
    flip  jsonb;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'failed';
    END IF;
    IF p.state <> (CASE p_action WHEN 'promote' THEN 'switching' ELSE 'aborting' END) THEN
        -- moved on meanwhile (cannot happen with one driver): say where it is
        RETURN CASE WHEN p.state IN ('done', 'rolled_back', 'refused', 'failed') THEN p.state
                    ELSE 'retry' END;
    END IF;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    what := format('POST /mirrors/%s/promote', m.actuator_name);

    IF p_ok AND p_status BETWEEN 200 AND 299 THEN
        BEGIN
            j := p_body::jsonb;
        EXCEPTION WHEN data_exception THEN
            j := NULL;
        END;
        IF jsonb_typeof(j) = 'object' AND jsonb_typeof(j -> 'state') = 'string' THEN
            st := j ->> 'state';
            valid := CASE p_action
                     WHEN 'promote' THEN st IN ('promoted', 'promoting', 'failed')
                     ELSE st IN ('aborted', 'failed', 'promoted', 'promoting') END;
            -- the endpoints, when given, must be usable as routes
            IF valid AND st = 'promoted' THEN
                valid := NOT EXISTS (
                    SELECT FROM (VALUES ('endpoint'), ('mirror_endpoint')) k (key)
                     WHERE j ? k.key
                       AND (jsonb_typeof(j -> k.key) <> 'string' OR j ->> k.key = ''
                            OR length(j ->> k.key) > 1000 OR j ->> k.key ~ '[[:cntrl:]]'));
            END IF;
        END IF;
        IF valid THEN
            last := format('"%s" (HTTP %s)', st, p_status);
            det := CASE WHEN j ? 'detail' THEN left(CASE jsonb_typeof(j -> 'detail')
                                                    WHEN 'string' THEN j ->> 'detail'
                                                    ELSE (j -> 'detail')::text END, 1000) END;
        ELSE
            st := NULL;
            last := format('an answer that is not the contract''s JSON (HTTP %s)', p_status);
            det := left(p_body, 500);
        END IF;
    ELSIF p_ok THEN
        last := format('HTTP %s', p_status);
        det := left(p_body, 500);
    ELSE
        last := format('no answer: %s', p_error);
        det := p_detail;
    END IF;

    UPDATE driftmirror.promotion SET actuator_detail = coalesce(det, actuator_detail) WHERE id = p_id;
    UPDATE driftmirror.promotion_step s
       SET details = s.details || jsonb_build_object('last', last, 'last_status', CASE WHEN p_ok THEN p_status END)
     WHERE s.promotion_id = p_id AND s.step = v_step AND s.outcome = 'running';

    IF p_action = 'promote' THEN
        IF st = 'promoted' THEN
            PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'ok', NULL,
                                                format('the actuator promoted the mirror (HTTP %s)', p_status));
            PERFORM driftmirror._promotion_step(p_id, 'flip', 'running');
            flip := driftmirror._promotion_actuator_flip(p_id, j);
            PERFORM driftmirror._promotion_step(p_id, 'flip', 'ok', NULL, NULL, flip);
            PERFORM driftmirror._promotion_finish(p_id, 'done');
            RETURN 'done';
        ELSIF st = 'failed' OR (p_ok AND p_status BETWEEN 400 AND 499) THEN
            PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'refused', 'refused',
                format('the actuator refused the promotion: %s to %s; by the contract nothing changed',
                       last, what));
            PERFORM driftmirror._promotion_finish(p_id, 'refused',
                format('the actuator refused the promotion of resource "%s" of group "%s" (%s)',
                       p.resource_name, p.group_name, last),
                '55000');
            RETURN 'refused';
        END IF;
        RETURN 'retry';         -- promoting, 5xx, no answer, not the contract
    END IF;

    -- the abort
    IF st IN ('aborted', 'failed') THEN
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'ok', 'rolled_back',
            format('the actuator confirmed the abort (%s): nothing changed', last));
        PERFORM driftmirror._promotion_finish(p_id, 'rolled_back',
            format('promotion of resource "%s" of group "%s" timed out in step actuator_switch; the actuator confirmed the abort and nothing changed',
                   p.resource_name, p.group_name),
            '57014');
        RETURN 'rolled_back';
    ELSIF st = 'promoted' THEN
        -- too late: the switch happened; the catalog follows the actuator
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'failed', NULL,
            format('too late: the actuator had promoted the mirror already (HTTP %s); the routes follow it',
                   p_status));
        PERFORM driftmirror._promotion_step(p_id, 'flip', 'running');
        flip := driftmirror._promotion_actuator_flip(p_id, j);
        PERFORM driftmirror._promotion_step(p_id, 'flip', 'ok', NULL, NULL, flip);
        PERFORM driftmirror._promotion_finish(p_id, 'done',
            'promote_timeout passed, but the actuator had promoted the mirror: finished');
        RETURN 'done';
    ELSIF p_ok AND p_status BETWEEN 400 AND 499 THEN
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'failed', NULL,
            format('the actuator refused the abort: %s to %s; its state is unknown', last, what));
        PERFORM driftmirror._promotion_finish(p_id, 'failed',
            format('promotion of resource "%s" of group "%s" timed out in step actuator_switch and the actuator refused the abort (%s); its state is unknown',
                   p.resource_name, p.group_name, last),
            '57014');
        RETURN 'failed';
    END IF;
    RETURN 'retry';             -- promoting, 5xx, no answer, not the contract
END
$$;

-- _promotion_actuator_recover: a recovery worker took over an actuator
-- promotion whose driver died.  In guardrails nothing was sent: it ends
-- rolled back.  Otherwise the step is resumed (the next request reuses the
-- key; past the deadline _promotion_actuator_next aborts).
CREATE FUNCTION driftmirror._promotion_actuator_recover(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    IF p.state = 'guardrails' THEN
        UPDATE driftmirror.promotion_step
           SET outcome = 'interrupted', finished_at = clock_timestamp(),
               reason = 'the promotion was interrupted here'
         WHERE promotion_id = p_id AND outcome = 'running';
        PERFORM driftmirror._promotion_finish(p_id, 'rolled_back',
            'interrupted before the actuator was asked (driver, session or node failure); nothing changed',
            '57P01');
    ELSIF p.state IN ('switching', 'aborting') THEN
        -- a new step row (the old one ends 'interrupted'), same key
        PERFORM driftmirror._promotion_step(p_id,
            CASE p.state WHEN 'switching' THEN 'actuator_switch' ELSE 'abort' END,
            'running', NULL, 'resumed after an interruption',
            (SELECT jsonb_build_object('key', s.details -> 'key', 'requests', 0)
               FROM driftmirror.promotion_step s
              WHERE s.promotion_id = p_id AND s.outcome = 'running'));
    END IF;
END
$$;

-- _promotion_actuator_result: what dm_promote reports for an ended
-- actuator promotion: its state, the new primary, and for a failure the
-- error, its SQLSTATE and a detail (the reason of the step that failed,
-- and the actuator's last words)
CREATE FUNCTION driftmirror._promotion_actuator_result(p_id bigint)
RETURNS TABLE (state text, new_primary text, error text, error_sqlstate text, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.state, p.new_primary, p.error, p.error_sqlstate,
           concat_ws(E'\n',
                     (SELECT s.reason FROM driftmirror.promotion_step s
                       WHERE s.promotion_id = p.id AND s.outcome IN ('refused', 'failed')
                       ORDER BY s.seq DESC LIMIT 1),
                     CASE WHEN p.state <> 'done' AND p.actuator_detail IS NOT NULL
                          THEN format('The actuator said: %s', p.actuator_detail) END)
      FROM driftmirror.promotion p
     WHERE p.id = p_id
$$;

-- ---- sql/install/80_views.sql ----
-- 80_views.sql: the public views.
--
-- Views run with their owner's rights on tables, so driftmirror_monitor
-- reads them without any right on the tables; but functions in a view run
-- with the reader's rights, so views read option defaults from option_def
-- directly instead of calling the owner-only helpers.  Endpoints (connection strings, URLs)
-- are shown only to members of driftmirror_admin: current_user inside a
-- view is the role that queries it.

-- the defaults of each scope as one object (a view, so readers need no
-- right on option_def)
CREATE VIEW driftmirror._option_defaults AS
SELECT o.scope,
       jsonb_object_agg(o.key, o.default_value)
           FILTER (WHERE o.default_value IS NOT NULL) AS defaults
  FROM driftmirror.option_def o
 GROUP BY o.scope;

CREATE VIEW driftmirror.dm_groups AS
SELECT g.id,
       g.name,
       g.options,
       d.defaults || g.options AS effective_options,
       (SELECT count(*) FROM driftmirror.resource r WHERE r.group_id = g.id) AS resources,
       g.created_at,
       g.updated_at
  FROM driftmirror.resource_group g,
       driftmirror._option_defaults d
 WHERE d.scope = 'group';
COMMENT ON VIEW driftmirror.dm_groups IS
    'Resource groups with the options set and in effect';

CREATE VIEW driftmirror.dm_resources AS
SELECT g.name AS group_name,
       r.name,
       r.kind,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN r.endpoint END AS endpoint,
       r.role,
       r.capacity,
       coalesce((SELECT array_agg(dr.name ORDER BY dr.name)
                   FROM driftmirror.resource_dependency d
                   JOIN driftmirror.resource dr ON dr.id = d.depends_on_id
                  WHERE d.resource_id = r.id), '{}') AS depends_on,
       -- the token file's name (HTTP actuators) only for admins, like endpoints
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN r.options ELSE r.options - 'bearer_token_file' END AS options,
       r.id,
       r.created_at,
       r.updated_at
  FROM driftmirror.resource r
  JOIN driftmirror.resource_group g ON g.id = r.group_id;
COMMENT ON VIEW driftmirror.dm_resources IS
    'Resources of every group; endpoint is null unless the reader is a driftmirror_admin';

CREATE VIEW driftmirror.dm_events AS
SELECT g.name AS group_name, e.name, e.starts, e.ends, e.options, e.id
  FROM driftmirror.event e
  JOIN driftmirror.resource_group g ON g.id = e.group_id;

CREATE VIEW driftmirror.dm_actions AS
SELECT a.id, a.group_name, a.resource_name, a.kind, a.reason, a.inputs, a.outcome,
       a.actor, a.started_at, a.finished_at
  FROM driftmirror.action a;
COMMENT ON VIEW driftmirror.dm_actions IS
    'Every change made through the API and every decision of the worker';

CREATE VIEW driftmirror.dm_worker AS
SELECT w.pid,
       w.started_at,
       w.last_pass_at,
       w.passes,
       w.enabled,
       w.naptime_ms,
       w.reloaded_at,
       w.last_pass_at > now() - greatest(interval '30 seconds',
                                         make_interval(secs => 10 * w.naptime_ms / 1000.0))
           AS alive
  FROM driftmirror.worker_state w;
COMMENT ON VIEW driftmirror.dm_worker IS
    'The background worker: process, last pass, settings in effect';

CREATE VIEW driftmirror.dm_options AS
SELECT o.scope, o.key, o.type, o.default_value, o.min_value, o.max_value, o.allowed,
       o.description
  FROM driftmirror.option_def o;
COMMENT ON VIEW driftmirror.dm_options IS
    'Every option of groups, resources, events and mirrors, with defaults and bounds';

-- dm_status: one row per group, what it is doing now and why
CREATE VIEW driftmirror.dm_status AS
SELECT g.name AS group_name,
       e.eff ->> 'mode' AS mode,
       CASE
           WHEN w.pid IS NULL OR NOT w.alive THEN 'no_worker'
           WHEN NOT w.enabled THEN 'disabled'
           WHEN s.group_id IS NULL THEN 'pending'
           WHEN s.consecutive_failures > 0 THEN 'failing'
           WHEN s.last_heartbeat < now() - 3 * i.iv - interval '5 seconds' THEN 'stale'
           WHEN ms.failing > 0 THEN 'degraded'
           ELSE s.activity
       END AS state,
       CASE
           WHEN w.pid IS NULL THEN
               'the driftmirror worker has never run here: is driftmirror in shared_preload_libraries and driftmirror.database set to this database?'
           WHEN NOT w.alive THEN
               format('the driftmirror worker has not run since %s', w.last_pass_at)
           WHEN NOT w.enabled THEN 'driftmirror.enabled is off'
           WHEN s.group_id IS NULL THEN 'waiting for the first monitoring step'
           WHEN s.consecutive_failures > 0 THEN
               format('%s consecutive failed step(s); last error: %s',
                      s.consecutive_failures, s.last_error)
           WHEN s.last_heartbeat < now() - 3 * i.iv - interval '5 seconds' THEN
               format('no heartbeat since %s (interval %s)', s.last_heartbeat, i.iv)
           WHEN ms.failing > 0 THEN
               format('%s of %s metric source(s) failing; %s', ms.failing, ms.sources, ms.first_error)
           ELSE coalesce(s.activity_reason, format('monitoring every %s', i.iv))
       END
       || CASE WHEN cl.n > 0
               THEN format('; %s replication object(s) of dropped mirrors still to drop (last error: %s)',
                           cl.n, coalesce(cl.last_error, 'none yet'))
               ELSE '' END
       -- the group's last promotion failed (e.g. an actuator whose state is
       -- unknown after a timeout): said until a later promotion
       || CASE WHEN lp.state = 'failed'
               THEN format('; promotion %s of resource "%s" failed: %s', lp.id, lp.resource_name, lp.error)
               ELSE '' END AS reason,
       (SELECT count(*) FROM driftmirror.resource r WHERE r.group_id = g.id) AS resources,
       i.iv AS "interval",
       s.last_heartbeat,
       s.next_step_at,
       coalesce(s.steps_ok, 0) AS steps_ok,
       coalesce(s.steps_failed, 0) AS steps_failed,
       coalesce(s.consecutive_failures, 0) AS consecutive_failures,
       s.last_error,
       s.last_error_sqlstate,
       s.last_error_at,
       cl.n AS pending_cleanups
  FROM driftmirror.resource_group g
  CROSS JOIN LATERAL (SELECT d.defaults || g.options AS eff
                        FROM driftmirror._option_defaults d
                       WHERE d.scope = 'group') e
  CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(e.eff -> 'interval')
                             WHEN 'number' THEN make_interval(secs => (e.eff ->> 'interval')::float8)
                             ELSE (e.eff ->> 'interval')::interval END AS iv) i
  CROSS JOIN LATERAL (SELECT count(*) AS n,
                             (array_agg(c.last_error ORDER BY c.last_error_at DESC NULLS LAST))[1] AS last_error
                        FROM driftmirror.mirror_cleanup c
                       WHERE c.group_name = g.name) AS cl
  LEFT JOIN LATERAL (SELECT p.id, p.resource_name, p.state, p.error
                       FROM driftmirror.promotion p
                      WHERE p.group_id = g.id
                      ORDER BY p.id DESC LIMIT 1) lp ON true
  LEFT JOIN driftmirror.group_state s ON s.group_id = g.id
  LEFT JOIN driftmirror.dm_worker w ON true
  -- metric sources (55_metrics.sql): a failing one degrades the group
  LEFT JOIN LATERAL (
      SELECT count(*) AS sources,
             count(*) FILTER (WHERE mst.consecutive_failures > 0) AS failing,
             (array_agg(format('%s source of resource "%s": %s', src.kind, res.name, mst.last_error)
                        ORDER BY res.name, src.kind)
                  FILTER (WHERE mst.consecutive_failures > 0))[1] AS first_error
        FROM driftmirror.metric_source src
        JOIN driftmirror.resource res ON res.id = src.resource_id
        LEFT JOIN driftmirror.metric_source_state mst ON mst.source_id = src.id
       WHERE src.group_id = g.id) ms ON true
UNION ALL
-- a dropped group whose mirrors' replication objects are not all dropped yet
SELECT c.group_name, NULL, 'cleanup_pending',
       format('group dropped; %s replication object(s) of its mirrors still to drop (last error: %s)',
              count(*), coalesce((array_agg(c.last_error ORDER BY c.last_error_at DESC NULLS LAST))[1], 'none yet')),
       0, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, count(*)
  FROM driftmirror.mirror_cleanup c
 WHERE NOT EXISTS (SELECT FROM driftmirror.resource_group g WHERE g.name = c.group_name)
 GROUP BY c.group_name;
COMMENT ON VIEW driftmirror.dm_status IS
    'One row per group: what it is doing now and why';

-- ---- sql/install/99_privileges.sql ----
-- 99_privileges.sql: who may do what.  Runs last, so it covers every object
-- the install script created.
--
--   PUBLIC               nothing
--   driftmirror_monitor  the dm_* views (endpoints redacted) and the pure
--                        functions listed below
--   driftmirror_admin    every dm_* function, plus what the monitor has
--
-- Internal functions (_*) and tables stay with the owner.

REVOKE ALL ON SCHEMA driftmirror FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA driftmirror FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA driftmirror FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA driftmirror FROM PUBLIC;
GRANT USAGE ON SCHEMA driftmirror TO driftmirror_monitor, driftmirror_admin;

DO $privileges$
DECLARE
    obj record;
    -- pure functions that reveal nothing: the monitor may call them too
    monitor_functions CONSTANT text[] := ARRAY['dm_forecast', 'dm_forecast_model'];
BEGIN
    FOR obj IN
        SELECT p.oid::regprocedure AS sig, p.proname
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'driftmirror'::regnamespace
           AND p.proname OPERATOR(pg_catalog.~) '^dm_'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO driftmirror_admin', obj.sig);
        IF obj.proname OPERATOR(pg_catalog.=) ANY (monitor_functions) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO driftmirror_monitor', obj.sig);
        END IF;
    END LOOP;

    FOR obj IN
        SELECT c.oid::regclass AS rel
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace OPERATOR(pg_catalog.=) 'driftmirror'::regnamespace
           AND c.relkind OPERATOR(pg_catalog.=) 'v'
           AND c.relname OPERATOR(pg_catalog.~) '^dm_'
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO driftmirror_monitor', obj.rel);
    END LOOP;
END
$privileges$;
