-- 70_routes.sql: the routes clients use to find a resource's nodes (tables
-- route and route_history in 70_promotion_catalog.sql): _set_route, the
-- endpoint as clients get it (dm_client_conninfo), the pick by weight and
-- key, dm_route, dm_route_multihost and the view dm_routes.  Routers that
-- carry the weights to HAProxy, pgbouncer and webhooks: 74_routing.sql.
--
-- Functions, a view and their comments only, each CREATE OR REPLACE: the
-- update from 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/71_routes.include).

-- _set_route: set one route's weight and record it in the history
CREATE OR REPLACE FUNCTION driftmirror._set_route(p_group_id bigint, p_resource_id bigint, p_access text,
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
CREATE OR REPLACE FUNCTION driftmirror._multihost(endpoints text[], target_session_attrs text)
RETURNS text
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'driftmirror_multihost';

-- dm_client_conninfo: an endpoint as application clients should get it:
-- where to connect and how to protect the connection, no role and no
-- application name (routes return this form)
CREATE OR REPLACE FUNCTION driftmirror.dm_client_conninfo(conninfo text)
RETURNS text
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'driftmirror_client_conninfo';
COMMENT ON FUNCTION driftmirror.dm_client_conninfo(text) IS
    'A conninfo without user and application_name: what routes hand to application clients';

-- _route_endpoint: an endpoint of a resource as routes hand it to
-- application clients: for postgres resources without the administration
-- role (dm_client_conninfo); clients add their own user=
CREATE OR REPLACE FUNCTION driftmirror._route_endpoint(p_resource_id bigint, p_endpoint text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.kind = 'postgres' THEN driftmirror.dm_client_conninfo(p_endpoint)
                ELSE p_endpoint END
      FROM driftmirror.resource r WHERE r.id = p_resource_id
$$;

-- _route_pick: the endpoint (as stored) of the node a client of a
-- resource should use for an access kind, chosen by weight among its
-- routes (dm_shift sets them; a promotion moves them to the new primary).
-- With a key the choice is stable: a point in [0, 1) from the key's hash,
-- the primary's share first, so a key stays on its node at a given share
-- and, as the mirror's share grows, only keys move to the mirror (none
-- come back).  Without a key: reads at random by weight, writes to the
-- endpoint with the largest write share (the primary on a tie): a write
-- share only ever applies to keyed writes, so that no row has two
-- writers.  With no route recorded, the resource's endpoint (its primary).
CREATE OR REPLACE FUNCTION driftmirror._route_pick(p_resource_id bigint, p_access text, p_key text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prim   text;
    total  bigint;
    pick   double precision;
    ep     text;
BEGIN
    IF p_access IS NULL OR p_access NOT IN ('read', 'write') THEN
        RAISE EXCEPTION 'invalid access kind "%"', p_access
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''read'' or ''write''.';
    END IF;
    SELECT r.endpoint INTO prim FROM driftmirror.resource r WHERE r.id = p_resource_id;
    SELECT sum(rt.weight) INTO total FROM driftmirror.route rt
     WHERE rt.resource_id = p_resource_id AND rt.access = p_access AND rt.weight > 0;
    IF total IS NULL THEN
        RETURN prim;
    END IF;
    IF p_key IS NULL AND p_access = 'write' THEN
        SELECT rt.endpoint INTO ep FROM driftmirror.route rt
         WHERE rt.resource_id = p_resource_id AND rt.access = 'write' AND rt.weight > 0
         ORDER BY rt.weight DESC, rt.endpoint IS DISTINCT FROM prim, rt.endpoint
         LIMIT 1;
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
                   sum(rt.weight) OVER (ORDER BY rt.endpoint IS DISTINCT FROM prim, rt.endpoint) AS upto
              FROM driftmirror.route rt
             WHERE rt.resource_id = p_resource_id AND rt.access = p_access AND rt.weight > 0) w
     WHERE w.upto > pick
     ORDER BY w.upto
     LIMIT 1;
    RETURN ep;
END
$$;

-- dm_route: the endpoint a client of a resource should use (_route_pick),
-- as clients get it (_route_endpoint)
CREATE OR REPLACE FUNCTION driftmirror.dm_route("group" text, resource text, access text DEFAULT 'read',
                                     key text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
BEGIN
    rid := driftmirror._resource_id(driftmirror._group_id($1), $1, $2);
    RETURN driftmirror._route_endpoint(rid, driftmirror._route_pick(rid, $3, $4));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route(text, text, text, text) IS
    'The endpoint (conninfo) a client of a resource should use for reads or writes';

-- dm_route_multihost: a libpq multi-host string listing first the node
-- dm_route picks for this access and key, then the other(s).  For writes
-- with target_session_attrs=read-write: clients using it follow a
-- promotion on their own (the fenced node reports read-only); for reads
-- with target_session_attrs=any.  With the defaults: the primary first.
CREATE OR REPLACE FUNCTION driftmirror.dm_route_multihost("group" text, resource text,
                                               access text DEFAULT 'write', key text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid   bigint;
    first text;
    eps   text[];
BEGIN
    rid := driftmirror._resource_id(driftmirror._group_id($1), $1, $2);
    IF (SELECT r.kind FROM driftmirror.resource r WHERE r.id = rid) <> 'postgres' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is not a postgres resource: a libpq multi-host string needs one', $2, $1
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Use dm_route() or dm_routes for other kinds.';
    END IF;
    first := driftmirror._route_pick(rid, $3, $4);
    SELECT ARRAY[first] || coalesce(array_agg(e.ep ORDER BY e.ord) FILTER (WHERE e.ep IS DISTINCT FROM first), '{}')
      INTO eps
      FROM driftmirror.resource r,
           LATERAL (SELECT r.endpoint, 0
                    UNION ALL
                    SELECT m.mirror_endpoint, 1 FROM driftmirror.mirror m
                     WHERE m.resource_id = r.id AND m.mirror_endpoint IS NOT NULL) e (ep, ord)
     WHERE r.id = rid;
    RETURN driftmirror.dm_client_conninfo(
        driftmirror._multihost(eps, CASE $3 WHEN 'read' THEN 'any' ELSE 'read-write' END));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route_multihost(text, text, text, text) IS
    'A libpq multi-host conninfo: the node dm_route picks first, then the other; read-write for writes';

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
