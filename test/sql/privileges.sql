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

-- raw error text names hosts, ports and files: only the admin reads it,
-- the monitor reads labels (errors recorded as the worker would)
SELECT dm_add_resource('secured', 'web', 'service', 'http://10.0.0.6:9090') > 0 AS added;
SELECT dm_add_metric_source('secured', 'web', 'prometheus',
       '{"url": "http://10.0.0.6:9090", "queries": {"web.up": "sum(up)"},
         "bearer_token_file": "regress_token"}') > 0 AS added;
SELECT driftmirror._record_polls(array_agg(s.id), '{f}', '{"query \"web.up\": Failed to connect to 10.0.0.6 port 9090"}',
                                 '{0}', '{NULL}', '{"query \"web.up\": the server could not be reached or did not answer"}')
  FROM driftmirror.metric_source s JOIN driftmirror.resource_group g ON g.id = s.group_id
 WHERE g.name = 'secured';
SELECT driftmirror._step_failed(g.id, 'connection to server at "10.0.0.5", port 5432 failed: Connection refused', '08001')
  FROM driftmirror.resource_group g WHERE g.name = 'secured';
SET ROLE regress_dm_monitor;
SELECT state, last_error, config FROM driftmirror.dm_metric_sources;
SELECT state, reason, last_error FROM driftmirror.dm_status WHERE group_name = 'secured';
SELECT kind, reason, inputs, outcome FROM driftmirror.dm_actions
 WHERE group_name = 'secured' AND kind IN ('metric_source_failed', 'step_failed', 'add_metric_source')
 ORDER BY id;
-- nothing the monitor reads names the host, the port or the token file
-- (ports with their context: bare digits occur in timestamps)
SELECT count(*) AS monitor_rows_naming_hosts_or_files
  FROM (SELECT row_to_json(v)::text AS t FROM driftmirror.dm_metric_sources v
        UNION ALL SELECT row_to_json(v)::text FROM driftmirror.dm_status v
        UNION ALL SELECT row_to_json(v)::text FROM driftmirror.dm_actions v) x
 WHERE t ~ '10\.0\.0\.|:9090|port 9090|:5432|port 5432|regress_token';
RESET ROLE;
SET ROLE regress_dm_admin;
SELECT last_error FROM driftmirror.dm_metric_sources;
SELECT last_error FROM driftmirror.dm_status WHERE group_name = 'secured';
RESET ROLE;

-- inline bearer tokens are refused (files only)
SELECT dm_add_metric_source('secured', 'db', 'prometheus',
       '{"url": "http://10.0.0.6:9090", "queries": {"web.up": "sum(up)"}, "bearer_token": "s3cret"}');

-- metric-admin functions write to the action log like every other change
SELECT max(id) AS actions_before FROM driftmirror.action \gset
SELECT dm_register_metric('regress.metric', 'ms', 'a metric of the privileges test') > 0 AS registered;
SELECT dm_set_metric_settings('{"premake": 3}');
SELECT dm_create_partitions(now(), now()) >= 0 AS created;
SELECT dm_rollup(now() - interval '1 hour', now()) >= 0 AS rolled_up;
SELECT dm_run_maintenance() IS NOT NULL AS maintained;
SELECT kind, reason FROM driftmirror.dm_actions
 WHERE id > :actions_before ORDER BY id;
DELETE FROM driftmirror.metric_def WHERE name = 'regress.metric';

SELECT dm_drop_group('secured', true);
DROP ROLE regress_dm_admin, regress_dm_monitor, regress_dm_nobody;
