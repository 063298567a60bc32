-- promotion.sql: bad input of dm_promote, dm_route and dm_route_multihost,
-- and the multi-host string.  No node is reached: this database is not the
-- control database (driftmirror.database is postgres), so a call that gets
-- past the checks stops there, and nothing is left behind.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT dm_create_group('pg', '{}') > 0 AS created;
SELECT dm_add_resource('pg', 'db', 'postgres', 'host=/tmp port=5999 dbname=app user=app') > 0 AS added;
SELECT dm_add_resource('pg', 'web', 'web', 'http://127.0.0.1:1/web') > 0 AS added;

-- unknown names, NULLs, bad options
SELECT * FROM dm_promote('nope');
SELECT * FROM dm_promote(NULL);
SELECT * FROM dm_promote('pg', 'nope');
SELECT * FROM dm_promote('pg', 'db', NULL);
SELECT * FROM dm_promote('pg', 'db', '[]');
SELECT * FROM dm_promote('pg', 'db', '{"interval": "5s"}');
SELECT * FROM dm_promote('pg', 'db', '{"promote_timeout": "0 seconds"}');
SELECT * FROM dm_promote('pg', 'db', '{"promote_sequence_gap": -1}');
SELECT * FROM dm_promote('pg', 'db', '{"promote_bogus": 1}');
SELECT * FROM dm_promote('pg', 'db', '{"promote_abort_timeout": "0 seconds"}');
SELECT * FROM dm_promote('pg', 'db', '{"promote_abort_timeout": "2 hours"}');
-- no mirror in the group, none for the resource
SELECT * FROM dm_promote('pg');
SELECT * FROM dm_promote('pg', 'db');
SELECT * FROM dm_promote('pg', 'web');
-- a mirror made through the HTTP actuator (the worker would ask it; it does
-- not run in this database): it counts for the group, in dependency order
SELECT dm_create_mirror('pg', 'web') > 0 AS mirrored;
SELECT dm_add_resource('pg', 'app', 'app', 'http://127.0.0.1:1/app', depends_on => '{web}') > 0 AS added;
SELECT dm_create_mirror('pg', 'app') > 0 AS mirrored;
SELECT resource_name, depth FROM _promotion_order((SELECT id FROM resource_group WHERE name = 'pg'));
-- valid input, but not in the control database
SELECT * FROM dm_promote('pg', 'web', '{"promote_timeout": "5 seconds", "promote_abort_timeout": "2 seconds"}');
SELECT * FROM dm_promote('pg');
SELECT count(*) AS promotions FROM dm_promotions;

-- routes: without route rows, the resource's endpoint
SELECT dm_route('pg', 'db');
SELECT dm_route('pg', 'db', 'write');
SELECT dm_route('pg', 'db', 'admin');
SELECT dm_route('pg', 'db', NULL);
SELECT dm_route('pg', 'nope');
SELECT dm_route('nope', 'db');
-- weights: the same key always gets the same endpoint; weight 0 never
SELECT _set_route(g.id, r.id, 'read', e.ep, e.w, 'test')
  FROM resource_group g JOIN resource r ON r.group_id = g.id AND r.name = 'db',
       (VALUES ('host=/tmp port=5998 dbname=app', 50), ('host=/tmp port=5997 dbname=app', 50),
               ('host=/tmp port=5996 dbname=app', 0)) e (ep, w)
 WHERE g.name = 'pg';
SELECT count(DISTINCT dm_route('pg', 'db', 'read', 'customer-42')) AS one_endpoint_per_key
  FROM generate_series(1, 20);
SELECT count(*) FILTER (WHERE ep = 'host=/tmp port=5996 dbname=app') AS weight_zero_picked,
       count(DISTINCT ep) AS endpoints_used
  FROM (SELECT dm_route('pg', 'db', 'read', 'k' || g) AS ep FROM generate_series(1, 200) g) s;
SELECT access, weight FROM dm_routes WHERE group_name = 'pg' ORDER BY weight, endpoint;

-- the multi-host string
SELECT dm_route_multihost('pg', 'db');
SELECT _multihost(ARRAY['host=/tmp port=5432 dbname=app', 'host=db2.example port=5433 dbname=app'], 'read-write');
SELECT _multihost(ARRAY['postgresql://a.example:5432/app?application_name=my%20app', 'host=b.example'], 'read-write');
SELECT _multihost(ARRAY['host=a port=1 dbname=app target_session_attrs=any'], 'read-write');
SELECT _multihost(ARRAY['this is not a conninfo'], 'read-write');
SELECT _multihost('{}', 'read-write');

-- a promotion that ended still owing a pgbouncer router a RESUME (its
-- driver could not resume it; the router was then removed): the group is
-- not dropped, which would forget the promotion and leave the pooler
-- paused, and nothing changes; once the worker has resumed it (the record
-- cleared), the drop goes ahead
INSERT INTO promotion (group_id, group_name, resource_id, resource_name, mirror_id, trigger, reason,
                       options, state, old_primary, new_primary, old_publication, old_slot,
                       old_subscription, new_publication, new_slot, new_subscription, two_way,
                       mirror_fence, deadline, poolers_removed)
SELECT g.id, g.name, r.id, r.name, 0, 'manual', 'test', '{}', 'guardrails', r.endpoint,
       'host=/tmp port=5998 dbname=app', 'p', 's', 's', 'p', 's', 's', false, false, now(),
       '[{"name": "pgb", "endpoint": "host=/tmp port=1", "database": "app"}]'
  FROM resource_group g JOIN resource r ON r.group_id = g.id AND r.name = 'db'
 WHERE g.name = 'pg';
UPDATE promotion SET state = 'rolling_back' WHERE group_name = 'pg';
UPDATE promotion SET state = 'rolled_back', finished_at = now() WHERE group_name = 'pg';
\set VERBOSITY default
SELECT dm_drop_group('pg', force => true);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
\set VERBOSITY terse
-- a pgbouncer gone for good: dm_router_forget_pause gives up the RESUME
-- owed to the removed router (by its name), logged; a second time there is
-- nothing to give up (no such router, nothing owed)
SELECT dm_router_forget_pause('pg', 'pgb') AS given_up;
SELECT poolers_removed IS NULL AS nothing_owed, state FROM promotion WHERE group_name = 'pg';
SELECT group_name, reason, inputs FROM dm_actions WHERE kind = 'router_forget_pause';
SELECT dm_router_forget_pause('pg', 'pgb');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT dm_router_forget_pause('pg', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a router still recorded as paused (not removed) counts alike
UPDATE promotion SET poolers_removed = NULL, poolers_paused = '{42}' WHERE group_name = 'pg';
SELECT dm_drop_group('pg', force => true);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- nor is the resource removed: its routers would go with it
SELECT dm_remove_resource('pg', 'db');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS groups, (SELECT count(*) FROM resource r JOIN resource_group g ON g.id = r.group_id
                             WHERE g.name = 'pg') AS resources,
       (SELECT count(*) FROM promotion WHERE group_name = 'pg') AS promotions
  FROM resource_group WHERE name = 'pg';
UPDATE promotion SET poolers_paused = NULL WHERE group_name = 'pg';
SELECT dm_drop_group('pg', force => true);
SELECT count(*) AS promotions_left FROM promotion WHERE group_name = 'pg';
