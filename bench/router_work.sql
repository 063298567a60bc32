-- bench/router_work.sql: the cost of one call of driftmirror._router_work
-- (what each router of a group must be told; the worker's router phase
-- calls it twice per group with routers and step, dm_shift twice) as
-- installed (PL/pgSQL, its generic plan forced and kept in the session,
-- each node's weights from one scan of its resource's routes), beside two
-- baselines made here as temporary functions from the installed one's
-- text: the same query as the LANGUAGE sql function with SET search_path
-- it was before (never inlined, so parsed and planned at every call), and
-- the installed function with each node's weights from the function it
-- called before, driftmirror._route_weight (LANGUAGE sql with SET
-- search_path, planned at every call too; twice per node).
--
-- Run it in a scratch database where driftmirror is created and that the
-- worker does not watch (not driftmirror.database):
--   psql -X -d scratch -v routers=3 -v calls=2000 -f bench/router_work.sql
-- It makes group bench_router with one resource, a hand-made mirror row
-- (no node behind it: the function reads the catalog) and :routers
-- routers (haproxy, pgbouncer and webhook in turn, inserted as
-- dm_add_router would leave them) and its routes at a 25 % read share,
-- times :calls calls of each function in the same run (p_due false: every
-- router is computed), prints ms per call and whether each returns the
-- installed one's rows, and drops the group.
\set ON_ERROR_STOP on
\if :{?routers} \else \set routers 3 \endif
\if :{?calls} \else \set calls 2000 \endif
SET client_min_messages = warning;

SELECT driftmirror.dm_create_group('bench_router') IS NOT NULL AS created \gset
SELECT driftmirror.dm_add_resource('bench_router', 'db', 'postgres',
                                   'host=127.0.0.1 port=20001 dbname=app') IS NOT NULL AS added \gset
INSERT INTO driftmirror.mirror
    (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
     publisher_endpoint, mirror_endpoint, two_way, fence, copy_data,
     publication_name, slot_name, subscription_name, state, step)
SELECT g.id, r.id, g.name, r.name, 'postgres', r.endpoint, r.endpoint,
       'host=127.0.0.1 port=30001 dbname=app', false, false, true,
       'dm_b' || r.id, 'dm_b' || r.id, 'dm_b' || r.id, 'mirroring', 'subscription'
  FROM driftmirror.resource_group g JOIN driftmirror.resource r ON r.group_id = g.id
 WHERE g.name = 'bench_router';
INSERT INTO driftmirror.router (group_id, resource_id, name, kind, endpoint, options, server_endpoints)
SELECT g.id, r.id, 'rt' || i, k.kind, 'unix:///tmp/none' || i, k.options, k.servers
  FROM driftmirror.resource_group g JOIN driftmirror.resource r ON r.group_id = g.id,
       generate_series(1, :routers) i,
       LATERAL (SELECT * FROM (VALUES
           (0, 'haproxy', '{"backends": {"read": "be_read", "write": "be_write"}}'::jsonb,
            '{"primary": "host=127.0.0.1 port=20001 dbname=app", "mirror": "host=127.0.0.1 port=30001 dbname=app"}'::jsonb),
           (1, 'pgbouncer', '{"database": "app", "access": "write"}', '{}'),
           (2, 'webhook', '{}', '{}')) v (n, kind, options, servers)
                WHERE v.n = i % 3) k
 WHERE g.name = 'bench_router';
SELECT id AS gid FROM driftmirror.resource_group WHERE name = 'bench_router' \gset
-- routes as dm_shift('bench_router', 25) leaves them (reads only: writes
-- keep the default, all on the primary)
INSERT INTO driftmirror.route (group_id, resource_id, access, endpoint, weight)
SELECT r.group_id, r.id, 'read', e.endpoint, e.weight
  FROM driftmirror.resource r,
       (VALUES ('host=127.0.0.1 port=20001 dbname=app', 75),
               ('host=127.0.0.1 port=30001 dbname=app', 25)) e (endpoint, weight)
 WHERE r.group_id = :gid;

-- the baseline: the installed query as a LANGUAGE sql function
SELECT regexp_replace(regexp_replace(p.prosrc, '^\s*#variable_conflict use_column\s*BEGIN\s*RETURN QUERY', ''),
                      ';\s*END\s*$', '') AS body
  FROM pg_proc p WHERE p.oid = 'driftmirror._router_work(bigint, boolean)'::regprocedure \gset
CREATE FUNCTION pg_temp.router_work_sql(p_group_id bigint, p_due boolean)
RETURNS TABLE (router_id bigint, name text, kind text, endpoint text, options jsonb, change jsonb,
               digest text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS :'body';

-- the second baseline: each node's weights from _route_weight as it was
CREATE FUNCTION pg_temp.route_weight_sql(p_resource_id bigint, p_access text, p_endpoint text)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN EXISTS (SELECT FROM driftmirror.route rt
                      WHERE rt.resource_id = p_resource_id AND rt.access = p_access AND rt.weight > 0)
        THEN coalesce((SELECT rt.weight FROM driftmirror.route rt
                        WHERE rt.resource_id = p_resource_id AND rt.access = p_access
                          AND rt.endpoint = p_endpoint), 0)
        ELSE CASE WHEN p_endpoint = (SELECT r.endpoint FROM driftmirror.resource r WHERE r.id = p_resource_id)
                  THEN 100 ELSE 0 END
    END
$$;
SELECT regexp_replace(regexp_replace(regexp_replace(p.prosrc,
           'CASE WHEN rw\.read_routed.*?END AS read_weight',
           'pg_temp.route_weight_sql(r.id, ''read'', n.endpoint) AS read_weight'),
           'CASE WHEN rw\.write_routed.*?END AS write_weight',
           'pg_temp.route_weight_sql(r.id, ''write'', n.endpoint) AS write_weight'),
           ',\s*LATERAL \(SELECT bool_or.*?\) rw\M', '') AS body_fn
  FROM pg_proc p WHERE p.oid = 'driftmirror._router_work(bigint, boolean)'::regprocedure \gset
SELECT :'body_fn' LIKE '%rw.%' OR :'body_fn' NOT LIKE '%route_weight_sql(r.id, ''write''%' AS bad_body \gset
\if :bad_body
\echo 'router_work.sql: the installed _router_work no longer has the weights this bench replaces'
\quit
\endif
CREATE FUNCTION pg_temp.router_work_fn(p_group_id bigint, p_due boolean)
RETURNS TABLE (router_id bigint, name text, kind text, endpoint text, options jsonb, change jsonb,
               digest text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS :'body_fn';

SELECT set_config('bench.gid', :'gid', false), set_config('bench.calls', :'calls', false) \gset
CREATE TEMP TABLE bench_result (function text, ms_per_call numeric, same_result boolean);
DO $$
DECLARE
    gid   bigint := current_setting('bench.gid')::bigint;
    calls integer := current_setting('bench.calls')::integer;
    ph    record;
    t0    timestamptz;
    same  boolean;
BEGIN
    FOR ph IN SELECT * FROM (VALUES ('_router_work (PL/pgSQL)', 'driftmirror._router_work'),
                                    ('baseline: LANGUAGE sql', 'pg_temp.router_work_sql'),
                                    ('baseline: _route_weight per node', 'pg_temp.router_work_fn')) v(label, fn)
    LOOP
        EXECUTE format('SELECT (SELECT array_agg(a ORDER BY a.router_id) FROM %s($1, false) a)
                             = (SELECT array_agg(b ORDER BY b.router_id) FROM driftmirror._router_work($1, false) b)',
                       ph.fn) INTO same USING gid;
        EXECUTE format('SELECT count(*) FROM %s($1, false)', ph.fn) USING gid;     -- warm caches
        t0 := clock_timestamp();
        FOR i IN 1 .. calls LOOP
            EXECUTE format('SELECT count(*) FROM %s($1, false)', ph.fn) USING gid;
        END LOOP;
        INSERT INTO bench_result VALUES (ph.label,
            round((extract(epoch FROM clock_timestamp() - t0) * 1000 / calls)::numeric, 3), same);
    END LOOP;
END
$$;
SELECT :routers AS routers, :calls AS calls, function, ms_per_call, same_result FROM bench_result;
SELECT driftmirror.dm_drop_group('bench_router', force => true) IS NOT NULL AS dropped \gset
