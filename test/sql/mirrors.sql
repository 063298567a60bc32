-- mirrors.sql: bad input of the mirror API.  Nothing here reaches a
-- replication-capable node: every call fails before or at the connection,
-- and leaves nothing behind.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT dm_create_group('mg', '{}') > 0 AS created;
SELECT dm_add_resource('mg', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;
SELECT dm_add_resource('mg', 'cache', 'cache', 'http://127.0.0.1:1/cache') > 0 AS added;

-- unknown names and NULLs
SELECT dm_create_mirror('nope', 'db', 'host=127.0.0.1 port=2 dbname=app');
SELECT dm_create_mirror('mg', 'nope', 'host=127.0.0.1 port=2 dbname=app');
SELECT dm_create_mirror(NULL, 'db', 'host=127.0.0.1 port=2 dbname=app');
SELECT dm_create_mirror('mg', NULL, 'host=127.0.0.1 port=2 dbname=app');
SELECT dm_create_mirror('mg', 'db', NULL);
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app', NULL);

-- bad options
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app', '{"twoway": true}');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app', '{"two_way": "yes"}');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app', '[]');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app', '{"max_attempts": 0}');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app', '{"publisher_endpoint": "host=x password=secret"}');

-- bad endpoints
SELECT dm_create_mirror('mg', 'db', '');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app password=secret');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app x');
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=1 dbname=app');

-- non-postgres resources go through their HTTP actuator (mirror_actuator.sql):
-- the postgres options do not apply to them
SELECT dm_create_mirror('mg', 'cache', 'http://127.0.0.1:2/cache', '{"two_way": true}');

-- unreachable nodes: a clean error naming the node, not the conninfo
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app');

-- nothing was created
SELECT count(*) AS mirrors FROM dm_mirror_status;
SELECT count(*) AS cleanups FROM dm_mirror_cleanups;

-- drop and sequences of a resource without a mirror
SELECT dm_drop_mirror('mg', 'db');
SELECT dm_drop_mirror('mg', 'nope');
SELECT dm_drop_mirror('nope', 'db');
SELECT dm_sync_sequences('mg', 'db');

-- only driftmirror_admin may call the API; the monitor reads the views
CREATE ROLE dm_regress_monitor IN ROLE driftmirror_monitor;
SET ROLE dm_regress_monitor;
SELECT dm_create_mirror('mg', 'db', 'host=127.0.0.1 port=2 dbname=app');
SELECT dm_drop_mirror('mg', 'db');
SELECT count(*) FROM dm_mirror_status;
SELECT count(*) FROM driftmirror.mirror;
RESET ROLE;
DROP ROLE dm_regress_monitor;

-- mirror options are listed with the others
SELECT key, type, default_value FROM dm_options WHERE scope = 'mirror' ORDER BY key;

-- the cleanup queue: a mirror row made by hand (the worker of this test
-- instance watches another database, so nothing below is carried out)
SELECT dm_create_group('cg', '{}') > 0 AS created;
SELECT dm_add_resource('cg', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;
INSERT INTO driftmirror.mirror
    (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
     publisher_endpoint, mirror_endpoint, two_way, fence, copy_data,
     publication_name, slot_name, subscription_name,
     rev_publication_name, rev_slot_name, rev_subscription_name)
SELECT g.id, r.id, 'cg', 'db', 'postgres', r.endpoint, r.endpoint,
       'host=127.0.0.1 port=2 dbname=app', true, true, true,
       'dm_x', 'dm_x', 'dm_x', 'dm_x_rev', 'dm_x_rev', 'dm_x_rev'
  FROM driftmirror.resource_group g JOIN driftmirror.resource r ON r.group_id = g.id
 WHERE g.name = 'cg';
SELECT group_name, resource_name, state, two_way, fence FROM dm_mirror_status;
-- dropping the group queues the drop of every object on every node
SELECT dm_drop_group('cg', true);
SELECT group_name, resource_name, node, what, object_name, attempts
  FROM dm_mirror_cleanups ORDER BY id;
-- in dependency order, each statement idempotent
SELECT label, sql FROM driftmirror._cleanup_due() ORDER BY id;
SELECT group_name, state, reason, pending_cleanups FROM dm_status WHERE group_name = 'cg';
-- a new mirror of a resource with that name waits until they are done
SELECT dm_create_group('cg', '{}') > 0 AS created;
SELECT dm_add_resource('cg', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;
SELECT dm_create_mirror('cg', 'db', 'host=127.0.0.1 port=2 dbname=app');
-- a failed attempt backs off and is shown
SELECT driftmirror._cleanup_done(min(id), false, '08001', 'could not connect to node "cg/db mirror"')
  FROM driftmirror.mirror_cleanup;
SELECT what, attempts, next_attempt_at > now() AS backed_off, last_error
  FROM dm_mirror_cleanups WHERE attempts > 0;
SELECT group_name, state, reason FROM dm_status WHERE group_name = 'cg';
-- success removes the rows
SELECT count(*) FROM (SELECT driftmirror._cleanup_done(id, true, NULL, NULL)
                        FROM driftmirror.mirror_cleanup) s;
SELECT count(*) AS cleanups FROM dm_mirror_cleanups;
SELECT dm_drop_group('cg', true);

SELECT dm_drop_group('mg', true);
