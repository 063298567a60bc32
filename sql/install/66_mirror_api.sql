-- 66_mirror_api.sql: the SQL API of mirrors: dm_create_mirror (postgres and
-- HTTP actuator kinds), dm_drop_mirror, dm_sync_sequences,
-- dm_mirror_verify, and the checks they share.

-- ---- the API ----

-- _create_actuator_mirror: dm_create_mirror for kinds cache, app, web and
-- service: checks, then the mirror row (state creating).  The worker makes
-- every request to the actuator; this call makes none.
CREATE OR REPLACE FUNCTION driftmirror._create_actuator_mirror(p_group text, p_resource text, p_endpoint text,
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

CREATE OR REPLACE FUNCTION driftmirror.dm_drop_mirror("group" text, resource text)
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
CREATE OR REPLACE FUNCTION driftmirror._postgres_mirror(p_resource_id bigint, p_group text, p_resource text)
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

-- _check_mirror_delegated: the check of _check_endpoint_delegated
-- (35_resources.sql) on both endpoints of the postgres mirror of a resource,
-- for the calls that use an existing mirror (sequences, verify, promote);
-- nothing for other kinds (their tokens go only to approved URLs) or
-- without a mirror
CREATE OR REPLACE FUNCTION driftmirror._check_mirror_delegated(p_resource_id bigint)
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
