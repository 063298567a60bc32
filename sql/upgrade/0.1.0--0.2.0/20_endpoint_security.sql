-- 20_endpoint_security.sql: who may name an endpoint (endpoint approvals),
-- the conninfo keyword allow-list (C, endpoint.c), the preflight's role
-- check, routes without the administration role.  Generated from the
-- install files' text of the objects concerned; see docs/operations.md,
-- "Security model".

-- ---- who may name an endpoint (docs/operations.md, "Security model") ----
--
-- The worker connects to endpoints with the server's own credentials (the
-- passfile of its operating-system user, peer or trust authentication on
-- its own socket) and sends an HTTP endpoint the bearer token of the file
-- its resource names.  So an endpoint is a delegation of those credentials:
-- a superuser may name any endpoint, and every endpoint a superuser sets is
-- recorded in endpoint_approval; a non-superuser (driftmirror_admin) may
-- name, and make driftmirror use, only endpoints recorded there.  The
-- check is by exact text.  Covered: postgres resource endpoints, mirror
-- endpoints and publisher_endpoint, HTTP endpoints of resources that carry a
-- bearer_token_file; dm_create_mirror, dm_sync_sequences and
-- dm_mirror_verify check both endpoints of the mirror they use.

-- _caller_is_superuser: the calling role (outside SECURITY DEFINER) is a
-- superuser
CREATE FUNCTION driftmirror._caller_is_superuser()
RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'driftmirror_caller_is_superuser';

CREATE TABLE driftmirror.endpoint_approval (
    endpoint     text PRIMARY KEY,
    approved_by  name NOT NULL,
    approved_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    via          text NOT NULL
);
COMMENT ON TABLE driftmirror.endpoint_approval IS
    'Endpoints a superuser approved (dm_approve_endpoint) or set: the only ones driftmirror_admin may name';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.endpoint_approval', '');

-- _check_endpoint_delegated: raise insufficient_privilege unless the caller
-- is a superuser or the endpoint is approved.  p_via: when a superuser sets
-- the endpoint, record it as approved (by that function).
CREATE FUNCTION driftmirror._check_endpoint_delegated(p_what text, p_endpoint text,
                                                      p_via text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF driftmirror._caller_is_superuser() THEN
        IF p_via IS NOT NULL THEN
            INSERT INTO driftmirror.endpoint_approval (endpoint, approved_by, via)
            VALUES (p_endpoint, session_user, p_via)
            ON CONFLICT (endpoint) DO NOTHING;
        END IF;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM driftmirror.endpoint_approval a WHERE a.endpoint = p_endpoint) THEN
        RAISE EXCEPTION 'permission denied to use this % without a superuser''s approval', p_what
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The server reaches it with its own credentials (its passfile, peer or trust authentication, or a bearer token file); only endpoints a superuser set or approved may be named by other roles.',
                  HINT = 'Ask a superuser to run driftmirror.dm_approve_endpoint() with exactly this text.';
    END IF;
END
$$;

CREATE FUNCTION driftmirror.dm_approve_endpoint(endpoint text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_endpoint ALIAS FOR $1;
BEGIN
    IF NOT driftmirror._caller_is_superuser() THEN
        RAISE EXCEPTION 'only a superuser may approve endpoints'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_endpoint IS NULL THEN
        RAISE EXCEPTION 'endpoint must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- a URL (the HTTP rules) unless it is a postgres URI (a conninfo)
    PERFORM driftmirror._check_endpoint(CASE WHEN p_endpoint ~ '^[A-Za-z][A-Za-z0-9+.-]*://'
                                              AND p_endpoint !~ '^postgres(ql)?://'
                                             THEN 'web' ELSE 'postgres' END,
                                        p_endpoint);
    INSERT INTO driftmirror.endpoint_approval (endpoint, approved_by, via)
    VALUES (p_endpoint, session_user, 'dm_approve_endpoint')
    ON CONFLICT ON CONSTRAINT endpoint_approval_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- not tied to a group: group_name ''
    PERFORM driftmirror._log_action('', NULL, 'approve_endpoint', 'dm_approve_endpoint');
    RETURN true;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_approve_endpoint(text) IS
    'Superusers: let driftmirror_admin name this endpoint (exact text); returns false if it was approved already';

CREATE FUNCTION driftmirror.dm_revoke_endpoint(endpoint text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_endpoint ALIAS FOR $1;
BEGIN
    IF NOT driftmirror._caller_is_superuser() THEN
        RAISE EXCEPTION 'only a superuser may revoke endpoint approvals'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM driftmirror.endpoint_approval a WHERE a.endpoint = p_endpoint;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM driftmirror._log_action('', NULL, 'revoke_endpoint', 'dm_revoke_endpoint');
    RETURN true;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_revoke_endpoint(text) IS
    'Superusers: withdraw an approval; non-superusers can no longer name the endpoint nor create, verify or sync mirrors through it';

CREATE VIEW driftmirror.dm_endpoint_approvals AS
SELECT CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN a.endpoint END AS endpoint,
       a.approved_by, a.approved_at, a.via
  FROM driftmirror.endpoint_approval a;
COMMENT ON VIEW driftmirror.dm_endpoint_approvals IS
    'Endpoints driftmirror_admin may name; endpoint is null unless the reader is a driftmirror_admin';

-- dm_client_conninfo: an endpoint as application clients should get it:
-- where to connect and how to protect the connection, no role and no
-- application name (routes return this form)
CREATE FUNCTION driftmirror.dm_client_conninfo(conninfo text)
RETURNS text
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'driftmirror_client_conninfo';
COMMENT ON FUNCTION driftmirror.dm_client_conninfo(text) IS
    'A conninfo without user and application_name: what routes hand to application clients';


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

-- _source_config: its final version is in 93_influxdb_source.sql

-- _node_role_sql, _mirror_preflight, dm_create_mirror, _check_mirror_delegated,
-- dm_sync_sequences and dm_mirror_verify: the mirror code is pasted whole
-- by 23_mirror_code.include (their grants: 24_mirror_code_grants.sql)

-- _route_endpoint, and routes without the administration role (dm_route,
-- dm_route_multihost, dm_routes): sql/install/70_routes.sql, pasted whole
-- by 71_routes.include

-- privileges of the new objects, as 99_privileges.sql grants them
REVOKE ALL ON driftmirror.endpoint_approval FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._caller_is_superuser(), driftmirror._check_endpoint_delegated(text, text, text),
    driftmirror.dm_approve_endpoint(text), driftmirror.dm_revoke_endpoint(text),
    driftmirror.dm_client_conninfo(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_approve_endpoint(text), driftmirror.dm_revoke_endpoint(text),
    driftmirror.dm_client_conninfo(text) TO driftmirror_admin;
GRANT EXECUTE ON FUNCTION driftmirror.dm_client_conninfo(text) TO driftmirror_monitor;
GRANT SELECT ON driftmirror.dm_endpoint_approvals TO driftmirror_monitor;
