-- 74_routing.sql: routers and traffic shares (dm_shift).
--
-- A group's traffic shares (the share of reads, and of key-affine writes,
-- sent to the mirror of each mirrored resource) live in the route table of
-- 70_routes.sql, which dm_route and dm_route_multihost read.  Routers
-- are the outside systems that must follow the same shares: HAProxy (the
-- runtime API), pgbouncer (the admin console) and webhooks.
--
--   shift       one row per group: the shares set last and the change id
--               (bumped by every change of the shares)
--   router      one row per router: what it is, where it is reached, and
--               which change it applied last (applied_change_id)
--
-- A router is behind when its applied_change_id differs from its group's
-- change_id, or what it was told last (applied_digest) differs from what
-- the routes say now (a promotion's flip moves the routes without a
-- dm_shift; the worker's next group step re-applies).  dm_shift (C, src/router.c) sets the shares and the routes in
-- one transaction of a dynamic worker, then brings every router of the
-- group up to date outside any transaction and records each outcome; the
-- main worker's group step retries routers left behind (failed, new, or
-- changed while the worker was down) with a back-off.  _router_work
-- computes what each router must be told, so the C drivers only talk.
--
-- Endpoints and options (socket paths, URLs, server maps holding
-- conninfos) and the routers' raw errors are shown to driftmirror_admin
-- members only.

CREATE TABLE driftmirror.shift (
    group_id    bigint PRIMARY KEY REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    read_pct    integer NOT NULL CHECK (read_pct BETWEEN 0 AND 100),
    write_pct   integer NOT NULL CHECK (write_pct BETWEEN 0 AND 100),
    change_id   bigint NOT NULL DEFAULT 1,
    reason      text NOT NULL,
    changed_by  text NOT NULL DEFAULT session_user,
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE driftmirror.shift IS
    'Traffic shares of each group (reads and key-affine writes to the mirror) and their change id';

CREATE TABLE driftmirror.router (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id           bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id        bigint NOT NULL REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    name               text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('haproxy', 'pgbouncer', 'webhook')),
    endpoint           text NOT NULL,
    options            jsonb NOT NULL DEFAULT '{}',
    -- haproxy: server name -> the endpoint (conninfo) of the node it is,
    -- resolved from the roles given in options.servers when the router
    -- was added, so that the map survives a promotion
    server_endpoints   jsonb NOT NULL DEFAULT '{}',
    state              text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'applied', 'failed')),
    applied_change_id  bigint,
    -- md5 of what it was told (without change id and key): a route changed
    -- by anything else (a promotion's flip) makes the router behind too
    applied_digest     text,
    applied            jsonb,
    applied_at         timestamptz,
    attempts           integer NOT NULL DEFAULT 0,
    last_attempt_at    timestamptz,
    last_error         text,
    last_error_at      timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (group_id, name)
);
COMMENT ON TABLE driftmirror.router IS
    'Routers (HAProxy, pgbouncer, webhooks) that follow a group''s traffic shares';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.router', '');
SELECT pg_catalog.pg_extension_config_dump('driftmirror.shift', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.router', 'id'), '');

-- _router_options_check: validate a router's options for its kind; raises
-- invalid_parameter_value naming the option, changes nothing
CREATE FUNCTION driftmirror._router_options_check(p_kind text, p_endpoint text, o jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    allowed text[];
    k       text;
    v       jsonb;
BEGIN
    IF jsonb_typeof(o) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'router options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    allowed := CASE p_kind
        WHEN 'haproxy' THEN ARRAY['resource', 'backends', 'servers', 'timeout']
        WHEN 'pgbouncer' THEN ARRAY['resource', 'database', 'access', 'databases_file', 'timeout']
        WHEN 'webhook' THEN ARRAY['resource', 'timeout', 'retries', 'hmac_key_file'] END;
    FOR k IN SELECT jsonb_object_keys(o) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown option "%" for a % router', k, p_kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Options of %s routers: %s.', p_kind, array_to_string(allowed, ', '));
        END IF;
    END LOOP;
    IF o ? 'timeout' THEN
        IF jsonb_typeof(o -> 'timeout') <> 'string'
           OR driftmirror._opt_interval(o -> 'timeout') NOT BETWEEN interval '10 milliseconds' AND interval '1 minute' THEN
            RAISE EXCEPTION 'option "timeout" must be an interval between 10 milliseconds and 1 minute'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF p_kind = 'haproxy' THEN
        IF p_endpoint !~ '^(unix:/[^[:space:]]+|(tcp:)?[A-Za-z0-9.:\[\]-]+:[0-9]{1,5})$' THEN
            RAISE EXCEPTION 'invalid HAProxy runtime API endpoint "%"', p_endpoint
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use unix:/path/to/socket or host:port.';
        END IF;
        IF jsonb_typeof(o -> 'backends') IS DISTINCT FROM 'object' OR o -> 'backends' = '{}' THEN
            RAISE EXCEPTION 'a haproxy router needs option "backends": {"read": "<backend>", "write": "<backend>"} (one or both)'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(o -> 'backends') LOOP
            IF k NOT IN ('read', 'write') OR jsonb_typeof(v) <> 'string'
               OR v #>> '{}' !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
                RAISE EXCEPTION 'invalid backend entry "%": keys are read or write, values HAProxy backend names', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF jsonb_typeof(o -> 'servers') IS DISTINCT FROM 'object' OR o -> 'servers' = '{}' THEN
            RAISE EXCEPTION 'a haproxy router needs option "servers": {"<server>": "primary" | "mirror", ...}'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(o -> 'servers') LOOP
            IF k !~ '^[A-Za-z0-9_.:-]{1,100}$' OR v NOT IN ('"primary"', '"mirror"') THEN
                RAISE EXCEPTION 'invalid server entry "%": keys are HAProxy server names, values "primary" or "mirror"', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    ELSIF p_kind = 'pgbouncer' THEN
        IF jsonb_typeof(o -> 'database') IS DISTINCT FROM 'string'
           OR o ->> 'database' !~ '^[A-Za-z0-9_]{1,63}$' THEN
            RAISE EXCEPTION 'a pgbouncer router needs option "database": the pgbouncer database it points at the node'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF coalesce(o ->> 'access', 'write') NOT IN ('read', 'write') THEN
            RAISE EXCEPTION 'option "access" must be read or write'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(o -> 'databases_file') IS DISTINCT FROM 'string'
           OR o ->> 'databases_file' !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$' THEN
            RAISE EXCEPTION 'a pgbouncer router needs option "databases_file": a file name in driftmirror.router_files_directory'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'pgbouncer.ini includes that file (%include); driftmirror rewrites it and sends RELOAD.';
        END IF;
    ELSIF p_kind = 'webhook' THEN
        IF p_endpoint !~ '^https?://[^[:space:]]+$' THEN
            RAISE EXCEPTION 'a webhook endpoint must be an http:// or https:// URL'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF o ? 'retries' AND (jsonb_typeof(o -> 'retries') <> 'number'
                              OR (o ->> 'retries')::numeric NOT IN (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)) THEN
            RAISE EXCEPTION 'option "retries" must be a whole number from 0 to 10'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF o ? 'hmac_key_file' AND (jsonb_typeof(o -> 'hmac_key_file') <> 'string'
                                    OR o ->> 'hmac_key_file' !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$') THEN
            RAISE EXCEPTION 'option "hmac_key_file" must be a file name in driftmirror_secrets of the data directory'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
END
$$;

-- dm_add_router: register a router of a group; returns its id.  It is
-- brought to the group's current shares by the next group step (or the
-- next dm_shift).
CREATE FUNCTION driftmirror.dm_add_router("group" text, name text, kind text, endpoint text,
                                          options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name ALIAS FOR $2;
    p_kind ALIAS FOR $3;
    p_endpoint ALIAS FOR $4;
    p_options ALIAS FOR $5;
    gid  bigint;
    rid  bigint;
    n    integer;
    smap jsonb := '{}';
    r    record;
    id   bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    IF p_name IS NULL OR p_kind IS NULL OR p_endpoint IS NULL OR p_options IS NULL THEN
        RAISE EXCEPTION 'router name, kind, endpoint and options must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM driftmirror._check_name('router', p_name);
    IF p_kind NOT IN ('haproxy', 'pgbouncer', 'webhook') THEN
        RAISE EXCEPTION 'unknown router kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Kinds: haproxy, pgbouncer, webhook.';
    END IF;
    IF p_endpoint ~* '(^|[[:space:]])password[[:space:]]*=|://[^/@]*:[^/@]*@' THEN
        RAISE EXCEPTION 'a router endpoint must not contain a password'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Put the password in the passfile (~/.pgpass) of the operating system user that runs the server.';
    END IF;
    PERFORM driftmirror._router_options_check(p_kind, p_endpoint, p_options);
    -- the server talks to the router with its own credentials (a pooler's
    -- admin console, an admin socket, a signing key): endpoints a
    -- superuser set or approved only (35_resources.sql)
    IF p_kind = 'pgbouncer' THEN
        PERFORM driftmirror._check_endpoint('postgres', p_endpoint);
    ELSIF p_kind = 'webhook' THEN
        PERFORM driftmirror._check_endpoint('web', p_endpoint);
    END IF;
    IF p_kind <> 'webhook' OR p_options ? 'hmac_key_file' THEN
        PERFORM driftmirror._check_endpoint_delegated('router endpoint', p_endpoint, 'dm_add_router');
    END IF;
    IF EXISTS (SELECT FROM driftmirror.router rt WHERE rt.group_id = gid AND rt.name = p_name) THEN
        RAISE EXCEPTION 'router "%" already exists in group "%"', p_name, p_group
            USING ERRCODE = 'duplicate_object';
    END IF;
    -- the resource it routes: named, or the group's only mirrored one
    IF p_options ? 'resource' THEN
        rid := driftmirror._resource_id(gid, p_group, p_options ->> 'resource');
    ELSE
        SELECT count(*), min(m.resource_id) INTO n, rid
          FROM driftmirror.mirror m WHERE m.group_id = gid;
        IF n <> 1 THEN
            RAISE EXCEPTION 'group "%" has % mirrored resources: name the router''s one in option "resource"', p_group, n
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = rid AND m.mirror_endpoint IS NOT NULL) THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no mirror to route to', p_options ->> 'resource', p_group
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create the mirror with dm_create_mirror first.';
    END IF;
    IF p_kind = 'haproxy' THEN
        FOR r IN SELECT s.key, s.value #>> '{}' AS role FROM jsonb_each(p_options -> 'servers') s LOOP
            smap := smap || jsonb_build_object(r.key,
                (SELECT CASE r.role WHEN 'primary' THEN res.endpoint ELSE m.mirror_endpoint END
                   FROM driftmirror.resource res JOIN driftmirror.mirror m ON m.resource_id = res.id
                  WHERE res.id = rid));
        END LOOP;
    END IF;
    INSERT INTO driftmirror.router AS rt (group_id, resource_id, name, kind, endpoint, options, server_endpoints)
    VALUES (gid, rid, p_name, p_kind, p_endpoint, p_options, smap)
    RETURNING rt.id INTO id;
    PERFORM driftmirror._log_action(p_group, NULL, 'router_add',
                                    format('router "%s" (%s) added', p_name, p_kind),
                                    jsonb_build_object('router', p_name, 'kind', p_kind));
    RETURN id;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_add_router(text, text, text, text, jsonb) IS
    'Register a router (haproxy, pgbouncer, webhook) that follows the group''s traffic shares';

-- dm_remove_router: forget a router (it keeps the weights it has).  A
-- pgbouncer router that a promotion recorded as paused is not forgotten
-- paused: the promotion keeps what resuming it needs (poolers_removed) and
-- its driver, or the main worker's recovery, sends it RESUME
-- (promote_poolers.c)
CREATE FUNCTION driftmirror.dm_remove_router("group" text, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid     bigint;
    paused  bigint[];
BEGIN
    gid := driftmirror._group_id($1, true);
    WITH moved AS (
        UPDATE driftmirror.promotion p
           SET poolers_paused = NULLIF(array_remove(p.poolers_paused, rt.id), '{}'),
               poolers_removed = coalesce(p.poolers_removed, '[]'::jsonb)
                   || jsonb_build_array(jsonb_build_object(
                          'name', rt.name, 'endpoint', rt.endpoint,
                          'database', rt.options ->> 'database', 'timeout', rt.options -> 'timeout'))
          FROM driftmirror.router rt
         WHERE rt.group_id = gid AND rt.name = $2 AND rt.id = ANY (p.poolers_paused)
        RETURNING p.id)
    SELECT array_agg(moved.id ORDER BY moved.id) INTO paused FROM moved;
    DELETE FROM driftmirror.router rt WHERE rt.group_id = gid AND rt.name = $2;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'router "%" does not exist in group "%"', $2, $1
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM driftmirror._log_action($1, NULL, 'router_remove',
                                    CASE WHEN paused IS NULL THEN format('router "%s" removed', $2)
                                         ELSE format('router "%s" removed; promotion %s paused it and resumes it',
                                                     $2, array_to_string(paused, ', ')) END,
                                    jsonb_build_object('router', $2)
                                    || CASE WHEN paused IS NULL THEN '{}'::jsonb
                                            ELSE jsonb_build_object('resume_pending_in_promotions', to_jsonb(paused)) END);
END
$$;
COMMENT ON FUNCTION driftmirror.dm_remove_router(text, text) IS
    'Remove a router from a group (the router keeps its current weights)';

-- dm_router_forget_pause: give up the RESUME that promotions of the group
-- owe a pgbouncer router (named: a router of the group, or one removed
-- with dm_remove_router while paused), for a pgbouncer that is gone for
-- good.  Nothing is sent to it: if it ever comes back it starts unpaused
-- from its files (a restart), or stays paused until someone sends RESUME.
-- Returns the promotions that owed it.  Refused, with nothing changed:
-- nothing owed to that router (55000), or a promotion that owes it is
-- being driven right now (55006: its driver resumes it or gives up, and
-- an ended promotion's driver must not find the record gone under it).
-- Taking each promotion's lock (the driver's, promote.h) in this
-- transaction keeps a recovery from starting on it until the commit.
CREATE FUNCTION driftmirror.dm_router_forget_pause("group" text, router text)
RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group  ALIAS FOR $1;
    p_router ALIAS FOR $2;
    gid      bigint;
    rid      bigint;
    owed     bigint[];
    busy     bigint[];
BEGIN
    IF p_router IS NULL THEN
        RAISE EXCEPTION 'router name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    gid := driftmirror._group_id(p_group, true);
    SELECT rt.id INTO rid FROM driftmirror.router rt WHERE rt.group_id = gid AND rt.name = p_router;

    -- the promotions that owe it a RESUME, locked; those whose driver
    -- (or a recovery) holds the promotion's lock are busy
    SELECT array_agg(o.id ORDER BY o.id),
           array_agg(o.id ORDER BY o.id) FILTER (WHERE NOT o.free)
      INTO owed, busy
      FROM (SELECT p.id,
                   pg_try_advisory_xact_lock(6581616, p.id::integer) AS free  -- DM_PROMOTION_LOCK_KEY
              FROM driftmirror.promotion p
             WHERE p.group_id = gid
               AND ((rid IS NOT NULL AND rid = ANY (p.poolers_paused))
                    OR EXISTS (SELECT FROM jsonb_array_elements(p.poolers_removed) e
                                WHERE e ->> 'name' = p_router))
             ORDER BY p.id
               FOR NO KEY UPDATE OF p) o;
    IF owed IS NULL THEN
        IF rid IS NULL THEN
            RAISE EXCEPTION 'router "%" does not exist in group "%"', p_router, p_group
                USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'no promotion of group "%" owes router "%" a RESUME', p_group, p_router
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'dm_router_forget_pause is only for a pgbouncer router that a promotion paused and could not resume.';
    END IF;
    IF busy IS NOT NULL THEN
        RAISE EXCEPTION 'promotion % of group "%" is being driven right now', array_to_string(busy, ', '), p_group
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Its driver resumes router "%s" or records that it could not.', p_router),
                  HINT = 'Try again once it has ended or stopped retrying (see dm_promotions).';
    END IF;

    UPDATE driftmirror.promotion p
       SET poolers_paused = NULLIF(array_remove(p.poolers_paused, rid), '{}'),
           poolers_removed = NULLIF(
               (SELECT coalesce(jsonb_agg(x.e ORDER BY x.n), '[]')
                  FROM jsonb_array_elements(p.poolers_removed) WITH ORDINALITY x (e, n)
                 WHERE (x.e ->> 'name') IS DISTINCT FROM p_router), '[]'::jsonb)
     WHERE p.id = ANY (owed);
    PERFORM driftmirror._log_action(p_group, NULL, 'router_forget_pause',
                                    format('the RESUME that promotion %s owed pgbouncer router "%s" was given up; '
                                           'that pgbouncer is not resumed by driftmirror any more',
                                           array_to_string(owed, ', '), p_router),
                                    jsonb_build_object('router', p_router, 'promotions', to_jsonb(owed),
                                                       'router_removed', rid IS NULL));
    RETURN owed;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_router_forget_pause(text, text) IS
    'Give up the RESUME that promotions owe a pgbouncer router that is gone for good';

-- _shift_set: validate and set a group's shares: the routes of every
-- mirrored resource (primary 100 - pct, mirror pct) and the change id.
-- Refuses (nothing changed): shares outside 0-100 or fractional, a write
-- share on a one-way mirror, a read share on a mirror that is not
-- mirroring, an unfinished promotion, a shift plan in progress (unless
-- p_plan_id says the plan itself sets them).  Returns the new change id.
CREATE FUNCTION driftmirror._shift_set(p_group text, p_read numeric, p_write numeric, p_reason text,
                                       p_plan_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid   bigint;
    m     record;
    n     integer := 0;
    cid   bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    IF p_read IS NULL OR p_write IS NULL THEN
        RAISE EXCEPTION 'shares must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_read NOT BETWEEN 0 AND 100 OR p_write NOT BETWEEN 0 AND 100 THEN
        RAISE EXCEPTION 'shares must be between 0 and 100 (read %, write %)', p_read, p_write
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_read <> trunc(p_read) OR p_write <> trunc(p_write) THEN
        RAISE EXCEPTION 'shares must be whole percentages (read %, write %)', p_read, p_write
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_plan_id IS NULL AND EXISTS (SELECT FROM driftmirror.shift_plan sp WHERE sp.group_id = gid
                                       AND sp.state IN ('running', 'paused')) THEN
        RAISE EXCEPTION 'group "%" has a shift plan in progress: its shares change only through the plan', p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Pause it (dm_shift_pause) or abort it (dm_shift_abort) first.';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.promotion p WHERE p.group_id = gid
                AND NOT driftmirror._promotion_is_final(p.state)) THEN
        RAISE EXCEPTION 'group "%" is being promoted: shares cannot change now', p_group
            USING ERRCODE = 'object_in_use';
    END IF;
    FOR m IN SELECT mm.*, r.endpoint AS primary_endpoint
               FROM driftmirror.mirror mm JOIN driftmirror.resource r ON r.id = mm.resource_id
              WHERE mm.group_id = gid ORDER BY mm.id
    LOOP
        n := n + 1;
        IF p_write > 0 AND NOT m.two_way THEN
            RAISE EXCEPTION 'the mirror of resource "%" is one-way: writes cannot be shifted to it', m.resource_name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'A write share needs a two-way mirror (dm_create_mirror with "two_way": true), so that writes on each side reach the other.';
        END IF;
        IF (p_read > 0 OR p_write > 0) AND (m.state <> 'mirroring' OR m.mirror_endpoint IS NULL) THEN
            RAISE EXCEPTION 'the mirror of resource "%" is %, not mirroring: no traffic can be shifted to it', m.resource_name, m.state
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;
    IF n = 0 THEN
        RAISE EXCEPTION 'group "%" has no mirror to shift traffic to', p_group
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR m IN SELECT mm.*, r.endpoint AS primary_endpoint
               FROM driftmirror.mirror mm JOIN driftmirror.resource r ON r.id = mm.resource_id
              WHERE mm.group_id = gid AND mm.mirror_endpoint IS NOT NULL ORDER BY mm.id
    LOOP
        PERFORM driftmirror._set_route(gid, m.resource_id, 'read', m.primary_endpoint, 100 - p_read::integer, p_reason);
        PERFORM driftmirror._set_route(gid, m.resource_id, 'read', m.mirror_endpoint, p_read::integer, p_reason);
        PERFORM driftmirror._set_route(gid, m.resource_id, 'write', m.primary_endpoint, 100 - p_write::integer, p_reason);
        PERFORM driftmirror._set_route(gid, m.resource_id, 'write', m.mirror_endpoint, p_write::integer, p_reason);
    END LOOP;
    INSERT INTO driftmirror.shift AS s (group_id, read_pct, write_pct, reason)
    VALUES (gid, p_read::integer, p_write::integer, p_reason)
    ON CONFLICT (group_id) DO UPDATE
       SET read_pct = EXCLUDED.read_pct, write_pct = EXCLUDED.write_pct,
           change_id = s.change_id + 1, reason = EXCLUDED.reason,
           changed_by = EXCLUDED.changed_by, changed_at = EXCLUDED.changed_at
    RETURNING s.change_id INTO cid;
    PERFORM driftmirror._log_action(p_group, NULL, 'shift',
                                    format('shares set: %s%% of reads, %s%% of writes to the mirror (%s)',
                                           p_read::integer, p_write::integer, p_reason),
                                    jsonb_build_object('read_pct', p_read::integer, 'write_pct', p_write::integer,
                                                       'change_id', cid));
    RETURN cid;
END
$$;

-- _router_work: what each router of a group must be told to follow the
-- current routes; all routers, or (p_due) only those behind whose back-off
-- has passed.  change is the JSON the drivers act on:
--   haproxy    {"servers": [{"backend", "server", "weight"}, ...]}
--   pgbouncer  {"database", "access", "target": conninfo of the node}
--   webhook    the request body: group, router, change_id, shares, and
--              per node its role and weights (endpoints without passwords
--              are added by the driver)
-- Every change also has change_id and idempotency_key
-- (dm-<group id>-<router id>-<change id>-<digest prefix>); digest is the
-- md5 of the change without them.  PL/pgSQL, not LANGUAGE sql: the worker
-- calls it for every group with routers at every step, and PL/pgSQL keeps
-- the query's plan in the session where a SQL function with SET
-- search_path (never inlined) was parsed and planned again on every call;
-- the generic plan is forced, as the plan cache otherwise kept choosing
-- custom plans, planned at every call too (bench/router_work.sql).  Each
-- node's weight for an access kind is its route's, or, when no route of
-- that access has a weight above 0, 100 for the resource's endpoint (the
-- primary) and 0 for the other (as dm_route sees it); computed here from
-- one scan of the resource's routes rather than by a function per node
-- and access (a LANGUAGE sql function with SET search_path is planned
-- again at every call: bench/router_work.sql measures both).
CREATE FUNCTION driftmirror._router_work(p_group_id bigint, p_due boolean)
RETURNS TABLE (router_id bigint, name text, kind text, endpoint text, options jsonb, change jsonb,
               digest text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH s AS (
        SELECT g.id AS group_id, g.name AS group_name, coalesce(sh.change_id, 0) AS change_id
          FROM driftmirror.resource_group g
          LEFT JOIN driftmirror.shift sh ON sh.group_id = g.id
         WHERE g.id = p_group_id
    ),
    nodes AS (
        SELECT r.id AS resource_id, r.name AS resource_name, n.role, n.endpoint,
               CASE WHEN rw.read_routed THEN coalesce(rw.read_route, 0)
                    WHEN n.endpoint = r.endpoint THEN 100 ELSE 0 END AS read_weight,
               CASE WHEN rw.write_routed THEN coalesce(rw.write_route, 0)
                    WHEN n.endpoint = r.endpoint THEN 100 ELSE 0 END AS write_weight
          FROM driftmirror.resource r
          JOIN driftmirror.mirror m ON m.resource_id = r.id,
               LATERAL (VALUES ('primary', r.endpoint), ('mirror', m.mirror_endpoint)) n (role, endpoint),
               LATERAL (SELECT bool_or(rt.weight > 0) FILTER (WHERE rt.access = 'read') AS read_routed,
                               max(rt.weight) FILTER (WHERE rt.access = 'read' AND rt.endpoint = n.endpoint) AS read_route,
                               bool_or(rt.weight > 0) FILTER (WHERE rt.access = 'write') AS write_routed,
                               max(rt.weight) FILTER (WHERE rt.access = 'write' AND rt.endpoint = n.endpoint) AS write_route
                          FROM driftmirror.route rt
                         WHERE rt.resource_id = r.id) rw
         WHERE r.group_id = p_group_id AND n.endpoint IS NOT NULL
    )
    SELECT w.id, w.name, w.kind, w.endpoint, w.options,
           w.body || jsonb_build_object('change_id', w.change_id,
                                        'idempotency_key', format('dm-%s-%s-%s-%s', w.group_id, w.id, w.change_id,
                                                                  left(md5(w.body::text), 8))),
           md5(w.body::text)
      FROM (
    SELECT rt.id, rt.name, rt.kind, rt.endpoint, rt.options, s.group_id, s.change_id,
           rt.applied_change_id, rt.applied_digest, rt.last_attempt_at, rt.attempts,
           jsonb_build_object('group', s.group_name, 'router', rt.name,
                              'resource', (SELECT r.name FROM driftmirror.resource r WHERE r.id = rt.resource_id),
                              'read_pct', (SELECT nd.read_weight FROM nodes nd
                                            WHERE nd.resource_id = rt.resource_id AND nd.role = 'mirror'),
                              'write_pct', (SELECT nd.write_weight FROM nodes nd
                                             WHERE nd.resource_id = rt.resource_id AND nd.role = 'mirror'))
           || CASE rt.kind
              WHEN 'haproxy' THEN jsonb_build_object('servers', coalesce((
                  SELECT jsonb_agg(jsonb_build_object(
                             'backend', b.value #>> '{}', 'server', sv.key,
                             'weight', coalesce((SELECT CASE b.key WHEN 'read' THEN nd.read_weight ELSE nd.write_weight END
                                                   FROM nodes nd
                                                  WHERE nd.resource_id = rt.resource_id
                                                    AND nd.endpoint = sv.value #>> '{}'), 0))
                             ORDER BY b.key, sv.key)
                    FROM jsonb_each(rt.options -> 'backends') b, jsonb_each(rt.server_endpoints) sv), '[]'))
              WHEN 'pgbouncer' THEN jsonb_build_object(
                  'database', rt.options ->> 'database',
                  'access', coalesce(rt.options ->> 'access', 'write'),
                  'target', (SELECT nd.endpoint FROM nodes nd
                              WHERE nd.resource_id = rt.resource_id
                              ORDER BY CASE coalesce(rt.options ->> 'access', 'write')
                                       WHEN 'read' THEN nd.read_weight ELSE nd.write_weight END DESC,
                                       nd.role = 'mirror'
                              LIMIT 1))
              ELSE jsonb_build_object('nodes', coalesce((
                  SELECT jsonb_agg(jsonb_build_object('role', nd.role,
                                                      'endpoint', driftmirror._route_endpoint(nd.resource_id, nd.endpoint),
                                                      'read_weight', nd.read_weight,
                                                      'write_weight', nd.write_weight)
                                   ORDER BY nd.role DESC)
                    FROM nodes nd WHERE nd.resource_id = rt.resource_id), '[]'))
              END AS body
      FROM driftmirror.router rt, s
     WHERE rt.group_id = p_group_id) w
     WHERE NOT p_due
        OR ((w.applied_change_id IS DISTINCT FROM w.change_id OR w.applied_digest IS DISTINCT FROM md5(w.body::text))
            AND (w.attempts = 0 OR w.last_attempt_at IS NULL
                 OR w.last_attempt_at < clock_timestamp()
                    - make_interval(secs => least(60, 2 ^ least(w.attempts, 6)))))
     ORDER BY w.id;
END
$$;

-- _router_record: the outcome of one router's attempt (in its own
-- transaction, after the I/O)
CREATE FUNCTION driftmirror._router_record(p_router_id bigint, p_change_id bigint, p_digest text,
                                           p_ok boolean, p_error text, p_applied jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE driftmirror.router rt
       SET state = CASE WHEN p_ok THEN 'applied' ELSE 'failed' END,
           applied_change_id = CASE WHEN p_ok THEN p_change_id ELSE rt.applied_change_id END,
           applied_digest = CASE WHEN p_ok THEN p_digest ELSE rt.applied_digest END,
           applied = CASE WHEN p_ok THEN p_applied ELSE rt.applied END,
           applied_at = CASE WHEN p_ok THEN clock_timestamp() ELSE rt.applied_at END,
           attempts = CASE WHEN p_ok THEN 0 ELSE rt.attempts + 1 END,
           last_attempt_at = clock_timestamp(),
           last_error = CASE WHEN p_ok THEN rt.last_error ELSE p_error END,
           last_error_at = CASE WHEN p_ok THEN rt.last_error_at ELSE clock_timestamp() END
     WHERE rt.id = p_router_id
$$;

-- _shift_result: what dm_shift returns: the shares, the routes of each
-- mirrored resource, and each router's outcome for this change
CREATE FUNCTION driftmirror._shift_result(p_group_id bigint)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'group', g.name, 'change_id', s.change_id,
        'read_pct', s.read_pct, 'write_pct', s.write_pct,
        'routers', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                 'router', rt.name, 'kind', rt.kind,
                                 'applied', rt.applied_change_id IS NOT DISTINCT FROM s.change_id,
                                 'state', rt.state,
                                 'error', CASE WHEN rt.applied_change_id IS DISTINCT FROM s.change_id
                                               THEN rt.last_error END)
                                 ORDER BY rt.name)
                               FROM driftmirror.router rt WHERE rt.group_id = g.id), '[]'))
      FROM driftmirror.resource_group g
      JOIN driftmirror.shift s ON s.group_id = g.id
     WHERE g.id = p_group_id
$$;

-- dm_shift: set the group's shares now: the routes dm_route and
-- dm_route_multihost read, and every router of the group (C: a dynamic
-- worker sets the shares in its own transaction, talks to the routers
-- outside any transaction, records the outcomes and returns _shift_result;
-- a router that failed is retried by the worker's group step)
CREATE FUNCTION driftmirror.dm_shift("group" text, read_pct numeric, write_pct numeric DEFAULT 0)
RETURNS jsonb
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_dm_shift';
COMMENT ON FUNCTION driftmirror.dm_shift(text, numeric, numeric) IS
    'Send read_pct % of reads and write_pct % of key-affine writes to the mirror, through routes and routers';

CREATE VIEW driftmirror.dm_routers AS
SELECT g.name AS group_name,
       rt.name,
       rt.kind,
       r.name AS resource_name,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN rt.endpoint END AS endpoint,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN rt.options END AS options,
       rt.state,
       rt.applied_change_id IS NOT DISTINCT FROM coalesce(s.change_id, 0) AS in_sync,
       rt.applied_change_id,
       coalesce(s.change_id, 0) AS current_change_id,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN rt.applied
            ELSE rt.applied - 'target' - 'nodes' END AS last_change,
       rt.applied_at,
       rt.attempts,
       rt.last_error_at,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN rt.last_error
            WHEN rt.last_error IS NOT NULL THEN 'the router could not be updated (details for admins)' END AS last_error,
       rt.id,
       rt.created_at
  FROM driftmirror.router rt
  JOIN driftmirror.resource_group g ON g.id = rt.group_id
  JOIN driftmirror.resource r ON r.id = rt.resource_id
  LEFT JOIN driftmirror.shift s ON s.group_id = rt.group_id;
COMMENT ON VIEW driftmirror.dm_routers IS
    'Routers of every group: state, last change applied, last error (endpoint, options and raw errors for admins only)';

CREATE VIEW driftmirror.dm_shifts AS
SELECT g.name AS group_name, s.read_pct, s.write_pct, s.change_id, s.reason, s.changed_by, s.changed_at
  FROM driftmirror.shift s
  JOIN driftmirror.resource_group g ON g.id = s.group_id;
COMMENT ON VIEW driftmirror.dm_shifts IS
    'Traffic shares of each group (set by dm_shift)';
