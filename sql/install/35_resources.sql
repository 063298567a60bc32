-- 35_resources.sql: the resource API: dm_add_resource, dm_alter_resource,
-- dm_remove_resource, and the dependency-graph checks (table resource in
-- 20_catalog.sql; who may name an endpoint: 36_endpoint_approvals.sql).
--
-- All changes to one group hold that group's row lock, so two concurrent
-- calls cannot together create a dependency cycle.
--
-- Functions and their comments only, each CREATE OR REPLACE: the update
-- from 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/79_resources.include).

-- _check_kind: a known resource kind
CREATE OR REPLACE FUNCTION driftmirror._check_kind(p_kind text)
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

CREATE OR REPLACE FUNCTION driftmirror._check_endpoint(kind text, endpoint text)
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'driftmirror_check_endpoint';

-- _check_resource_options: checks across the options and the kind of a
-- resource.  bearer_token_file (the HTTP actuator's token, 60_mirror_catalog.sql)
-- names a file of the data directory's driftmirror_secrets directory: a
-- plain name, never a path, and only for resources reached over HTTP.
CREATE OR REPLACE FUNCTION driftmirror._check_resource_options(p_kind text, p_options jsonb)
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
CREATE OR REPLACE FUNCTION driftmirror._set_dependencies(p_group_id bigint, p_group text,
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

CREATE OR REPLACE FUNCTION driftmirror.dm_add_resource(
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
    IF p_kind = 'postgres' OR opts ? 'bearer_token_file' THEN
        PERFORM driftmirror._check_endpoint_delegated('resource endpoint', p_endpoint, 'dm_add_resource');
    END IF;
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

CREATE OR REPLACE FUNCTION driftmirror.dm_alter_resource(
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
    -- a new postgres endpoint, or a token sent to a new URL or a new token
    IF (res.kind = 'postgres' AND p_endpoint IS NOT NULL)
       OR (opts ? 'bearer_token_file'
           AND (p_endpoint IS NOT NULL
                OR (opts ->> 'bearer_token_file') IS DISTINCT FROM (res.options ->> 'bearer_token_file'))) THEN
        PERFORM driftmirror._check_endpoint_delegated('resource endpoint', coalesce(p_endpoint, res.endpoint),
                                                      'dm_alter_resource');
    END IF;
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

CREATE OR REPLACE FUNCTION driftmirror.dm_remove_resource("group" text, name text)
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

    -- the resource's routers go with it (ON DELETE CASCADE)
    PERFORM driftmirror._refuse_while_poolers_owed(format('resource "%s"', p_name),
                                                   'removing the resource would lose the router',
                                                   gid, rid);

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
