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

-- _node_role_sql: the connection role of a node, as one jsonb: user,
-- superuser, replication (readable by any role)
CREATE FUNCTION driftmirror._node_role_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $sql$ SELECT $q$
SELECT pg_catalog.jsonb_build_object('user', rolname, 'superuser', rolsuper,
                                     'replication', rolreplication)::text
  FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user
$q$ $sql$;

-- _mirror_preflight: check both nodes; returns the problems found, one
-- clear sentence each (empty when all is well).  Raises only if a node
-- cannot be reached (with the node named, never the conninfo).
CREATE OR REPLACE FUNCTION driftmirror._mirror_preflight(p_primary text, p_primary_label text,
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
    -- the connection role first: the facts query reads settings only a
    -- superuser (or pg_read_all_settings) may read, and everything the
    -- worker creates on the nodes needs a superuser
    FOR i IN 1..2 LOOP
        lbl := CASE i WHEN 1 THEN p_primary_label ELSE p_mirror_label END;
        f := driftmirror._remote_value(CASE i WHEN 1 THEN p_primary ELSE p_mirror END, lbl,
                                       driftmirror._node_role_sql())::jsonb;
        IF NOT coalesce((f ->> 'superuser')::boolean, false) THEN
            probs := probs || format('node "%s": the connection role %s is not a superuser%s; driftmirror creates publications, slots, subscriptions and the driftmirror_node extension with it: name a superuser in the endpoint (user=...), or run ALTER ROLE %s SUPERUSER on that node',
                                     lbl, quote_ident(f ->> 'user'),
                                     CASE WHEN (f ->> 'replication')::boolean THEN ' (it has REPLICATION, which is not enough)' ELSE '' END,
                                     quote_ident(f ->> 'user'));
        END IF;
    END LOOP;
    IF cardinality(probs) > 0 THEN
        RETURN probs;
    END IF;

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
        -- output_plugin_libraries exists from 15.19 on; older builds load any plugin
        IF f ->> 'output_plugin_libraries' IS NOT NULL
           AND NOT 'driftmirror' = ANY (driftmirror._split_list(f ->> 'output_plugin_libraries')) THEN
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

CREATE OR REPLACE FUNCTION driftmirror.dm_create_mirror("group" text, resource text, mirror_endpoint text DEFAULT NULL,
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
    -- every node this mirror reaches with the servers' credentials
    PERFORM driftmirror._check_endpoint_delegated('primary endpoint', res.endpoint);
    PERFORM driftmirror._check_endpoint_delegated('mirror endpoint', p_endpoint, 'dm_create_mirror');
    PERFORM driftmirror._check_endpoint_delegated('publisher endpoint', pub_ep, 'dm_create_mirror');
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

-- _check_mirror_delegated: the check of _check_endpoint_delegated
-- (35_resources.sql) on both endpoints of the postgres mirror of a resource,
-- for the calls that use an existing mirror (sequences, verify, promote);
-- nothing for other kinds (their tokens go only to approved URLs) or
-- without a mirror
CREATE FUNCTION driftmirror._check_mirror_delegated(p_resource_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror x WHERE x.resource_id = p_resource_id;
    IF FOUND AND m.kind = 'postgres' THEN
        PERFORM driftmirror._check_endpoint_delegated('primary endpoint', m.primary_endpoint);
        PERFORM driftmirror._check_endpoint_delegated('mirror endpoint', m.mirror_endpoint);
    END IF;
END
$$;

-- dm_sync_sequences: read every sequence of the primary now and set the
-- mirror's sequences to the same values; returns how many were set.  For
-- switchover (after the primary is fenced).  Talks to both nodes from the
-- calling transaction, with driftmirror's timeouts.
CREATE OR REPLACE FUNCTION driftmirror.dm_sync_sequences("group" text, resource text)
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
    PERFORM driftmirror._check_mirror_delegated(rid);
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
CREATE OR REPLACE FUNCTION driftmirror.dm_mirror_verify("group" text, resource text)
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
    PERFORM driftmirror._check_mirror_delegated(rid);
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

-- _route_endpoint: an endpoint of a resource as routes hand it to
-- application clients: for postgres resources without the administration
-- role (dm_client_conninfo); clients add their own user=
CREATE FUNCTION driftmirror._route_endpoint(p_resource_id bigint, p_endpoint text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.kind = 'postgres' THEN driftmirror.dm_client_conninfo(p_endpoint)
                ELSE p_endpoint END
      FROM driftmirror.resource r WHERE r.id = p_resource_id
$$;

-- dm_route: the endpoint a client of a resource should use.  'write': the
-- primary.  'read': chosen by weight among the read routes, deterministically
-- for a given key (same key, same endpoint), at random without one.  With
-- no route recorded yet, the resource's endpoint (its primary).
CREATE OR REPLACE FUNCTION driftmirror.dm_route("group" text, resource text, access text DEFAULT 'read',
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
        RETURN driftmirror._route_endpoint(rid, ep);
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
    RETURN driftmirror._route_endpoint(rid, ep);
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route(text, text, text, text) IS
    'The endpoint (conninfo) a client of a resource should use for reads or writes';

-- dm_route_multihost: a libpq multi-host string listing the primary first,
-- then its mirror, with target_session_attrs=read-write: clients using it
-- follow a promotion on their own (the fenced node reports read-only)
CREATE OR REPLACE FUNCTION driftmirror.dm_route_multihost("group" text, resource text)
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
    RETURN driftmirror.dm_client_conninfo(driftmirror._multihost(eps, 'read-write'));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route_multihost(text, text) IS
    'A libpq multi-host conninfo (primary first, then its mirror) with target_session_attrs=read-write';

CREATE OR REPLACE VIEW driftmirror.dm_routes AS
SELECT g.name AS group_name, r.name AS resource_name, rt.access,
       CASE WHEN NOT pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN NULL
            WHEN r.kind OPERATOR(pg_catalog.=) 'postgres' THEN driftmirror.dm_client_conninfo(rt.endpoint)
            ELSE rt.endpoint END AS endpoint,
       rt.weight, rt.updated_at
  FROM driftmirror.route rt
  JOIN driftmirror.resource r ON r.id = rt.resource_id
  JOIN driftmirror.resource_group g ON g.id = rt.group_id;
COMMENT ON VIEW driftmirror.dm_routes IS
    'Routes per resource and access kind; endpoint (without user=) is null unless the reader is a driftmirror_admin';

-- privileges of the new objects, as 99_privileges.sql grants them
REVOKE ALL ON driftmirror.endpoint_approval FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._caller_is_superuser(), driftmirror._check_endpoint_delegated(text, text, text),
    driftmirror.dm_approve_endpoint(text), driftmirror.dm_revoke_endpoint(text),
    driftmirror.dm_client_conninfo(text), driftmirror._node_role_sql(),
    driftmirror._route_endpoint(bigint, text), driftmirror._check_mirror_delegated(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_approve_endpoint(text), driftmirror.dm_revoke_endpoint(text),
    driftmirror.dm_client_conninfo(text) TO driftmirror_admin;
GRANT EXECUTE ON FUNCTION driftmirror.dm_client_conninfo(text) TO driftmirror_monitor;
GRANT SELECT ON driftmirror.dm_endpoint_approvals TO driftmirror_monitor;
