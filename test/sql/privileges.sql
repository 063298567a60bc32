-- privileges: PUBLIC, driftmirror_monitor and driftmirror_admin
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

CREATE ROLE regress_dm_admin IN ROLE driftmirror_admin;
CREATE ROLE regress_dm_monitor IN ROLE driftmirror_monitor;
CREATE ROLE regress_dm_nobody;

SELECT dm_create_group('secured') > 0 AS created;
SELECT dm_add_resource('secured', 'db', 'postgres', 'host=10.0.0.5 dbname=prod user=app') > 0 AS added;

-- nothing in the schema is executable by PUBLIC, except nothing
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace
   AND has_function_privilege('regress_dm_nobody', p.oid, 'EXECUTE')
 ORDER BY 1;
-- no table or view readable by PUBLIC
SELECT c.oid::regclass AS readable_by_public
  FROM pg_class c
 WHERE c.relnamespace = 'driftmirror'::regnamespace
   AND c.relkind IN ('r', 'v', 'p', 'm')
   AND has_table_privilege('regress_dm_nobody', c.oid, 'SELECT')
 ORDER BY 1;
-- every SECURITY DEFINER function has a fixed search_path
SELECT p.oid::regprocedure AS definer_without_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace
   AND p.prosecdef
   AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)
 ORDER BY 1;
-- the monitor can execute no function that changes state
SELECT p.proname AS monitor_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace
   AND has_function_privilege('regress_dm_monitor', p.oid, 'EXECUTE')
 ORDER BY 1;

-- a role without driftmirror roles
SET ROLE regress_dm_nobody;
SELECT driftmirror.dm_create_group('x');
SELECT * FROM driftmirror.dm_status;
SELECT * FROM driftmirror.dm_resources;
RESET ROLE;

-- the monitor reads status but not endpoints, and changes nothing
SET ROLE regress_dm_monitor;
SELECT group_name, resources FROM driftmirror.dm_status ORDER BY 1;
SELECT name, kind, endpoint FROM driftmirror.dm_resources ORDER BY name;
SELECT endpoint FROM driftmirror.resource;
SELECT driftmirror.dm_create_group('x');
SELECT driftmirror.dm_drop_group('secured', true);
SELECT driftmirror.dm_add_resource('secured', 'y', 'app', 'http://h/');
SELECT driftmirror._step_heartbeat(1);
UPDATE driftmirror.resource_group SET options = '{}';
RESET ROLE;

-- the admin changes things through the API and sees endpoints
SET ROLE regress_dm_admin;
SELECT driftmirror.dm_create_group('by_admin') > 0 AS created;
SELECT name, endpoint FROM driftmirror.dm_resources ORDER BY name;
-- the actor is the login role (whatever the server's superuser is called)
SELECT actor = session_user AS actor_is_login, kind, group_name
  FROM driftmirror.dm_actions WHERE group_name = 'by_admin';
-- but not behind the API's back
DELETE FROM driftmirror.resource_group;
SELECT driftmirror._step_heartbeat(1);
SELECT driftmirror.dm_drop_group('by_admin');
RESET ROLE;

SELECT dm_drop_group('secured', true);
DROP ROLE regress_dm_admin, regress_dm_monitor, regress_dm_nobody;
