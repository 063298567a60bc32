-- status: dm_status without a worker for this database (the regression
-- instance's worker watches another database), dm_worker, update paths
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

SELECT dm_create_group('quiet', '{"interval": "1 minute", "mode": "off"}') > 0 AS created;
SELECT dm_add_resource('quiet', 'db', 'postgres', 'dbname=quiet') > 0 AS added;
SELECT group_name, mode, state, reason, resources, "interval", steps_ok, steps_failed
  FROM dm_status ORDER BY group_name;
SELECT count(*) AS worker_rows FROM dm_worker;

-- the catalog of the installed version has no pending update
SELECT extversion FROM pg_extension WHERE extname = 'driftmirror';
SELECT count(*) AS update_paths_to_newer
  FROM pg_extension_update_paths('driftmirror')
 WHERE source = (SELECT extversion FROM pg_extension WHERE extname = 'driftmirror')
   AND path IS NOT NULL;

SELECT dm_drop_group('quiet', true);
