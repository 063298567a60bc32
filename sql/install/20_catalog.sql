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
    reloaded_at   timestamptz,
    -- time between the last two passes' starts: one loop (work and nap)
    last_cycle_ms float8
);

SELECT pg_catalog.pg_extension_config_dump('driftmirror.resource_group', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.resource', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.resource_dependency', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.event', '');
-- and their identity sequences, or a restored database would hand out the
-- restored rows' ids again (a sequence is not dumped with its table)
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.resource_group', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.resource', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.event', 'id'), '');

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
