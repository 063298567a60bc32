-- 80_views.sql: the public views.
--
-- Views run with their owner's rights on tables, so driftmirror_monitor
-- reads them without any right on the tables; but functions in a view run
-- with the reader's rights, so views read option defaults from option_def
-- directly instead of calling the owner-only helpers.  Endpoints (connection strings, URLs)
-- are shown only to members of driftmirror_admin: current_user inside a
-- view is the role that queries it.  So is raw error text (libpq, libcurl,
-- a remote server's message: hosts, ports, paths, file names): every other
-- reader gets a label instead (25_error_labels.sql).
--
-- Views and their comments only, each CREATE OR REPLACE: the update from
-- 0.1.0 pastes this file whole (sql/upgrade/0.1.0--0.2.0/85_views.include).

-- the defaults of each scope as one object (a view, so readers need no
-- right on option_def)
CREATE OR REPLACE VIEW driftmirror._option_defaults AS
SELECT o.scope,
       jsonb_object_agg(o.key, o.default_value)
           FILTER (WHERE o.default_value IS NOT NULL) AS defaults
  FROM driftmirror.option_def o
 GROUP BY o.scope;

CREATE OR REPLACE VIEW driftmirror.dm_groups AS
SELECT g.id,
       g.name,
       g.options,
       d.defaults || g.options AS effective_options,
       (SELECT count(*) FROM driftmirror.resource r WHERE r.group_id = g.id) AS resources,
       g.created_at,
       g.updated_at
  FROM driftmirror.resource_group g,
       driftmirror._option_defaults d
 WHERE d.scope = 'group';
COMMENT ON VIEW driftmirror.dm_groups IS
    'Resource groups with the options set and in effect';

CREATE OR REPLACE VIEW driftmirror.dm_resources AS
SELECT g.name AS group_name,
       r.name,
       r.kind,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN r.endpoint END AS endpoint,
       r.role,
       r.capacity,
       coalesce((SELECT array_agg(dr.name ORDER BY dr.name)
                   FROM driftmirror.resource_dependency d
                   JOIN driftmirror.resource dr ON dr.id = d.depends_on_id
                  WHERE d.resource_id = r.id), '{}') AS depends_on,
       -- the token file's name (HTTP actuators) only for admins, like endpoints
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN r.options ELSE r.options - 'bearer_token_file' END AS options,
       r.id,
       r.created_at,
       r.updated_at
  FROM driftmirror.resource r
  JOIN driftmirror.resource_group g ON g.id = r.group_id;
COMMENT ON VIEW driftmirror.dm_resources IS
    'Resources of every group; endpoint is null unless the reader is a driftmirror_admin';

CREATE OR REPLACE VIEW driftmirror.dm_events AS
SELECT g.name AS group_name, e.name, e.starts, e.ends, e.options, e.id
  FROM driftmirror.event e
  JOIN driftmirror.resource_group g ON g.id = e.group_id;

-- dm_actions: non-admins read the kind, the outcome and a label; reasons
-- may quote errors (hosts, ports) and are for driftmirror_admin, except the
-- name of the API function that made a change
CREATE OR REPLACE VIEW driftmirror.dm_actions AS
SELECT a.id, a.group_name, a.resource_name, a.kind,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                 OR a.reason ~ '^dm_[a-z_]+$'
            THEN a.reason
            ELSE a.kind
                 || coalesce(': ' || (a.inputs ->> 'label'), '')
                 || CASE WHEN a.inputs ? 'sqlstate'
                         THEN ': ' || driftmirror._error_label(a.inputs ->> 'sqlstate') ELSE '' END
       END AS reason,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN a.inputs
            ELSE (a.inputs - '{last_error,error,detail,url,endpoint,conninfo,bearer_token_file}'::text[])
                 #- '{config,bearer_token_file}' #- '{config,url}' END AS inputs,
       a.outcome, a.actor, a.started_at, a.finished_at
  FROM driftmirror.action a;
COMMENT ON VIEW driftmirror.dm_actions IS
    'Every change made through the API and every decision of the worker; reasons quoting errors are labels for non-admins';

CREATE OR REPLACE VIEW driftmirror.dm_worker AS
SELECT w.pid,
       w.started_at,
       w.last_pass_at,
       w.passes,
       w.enabled,
       w.naptime_ms,
       w.reloaded_at,
       w.last_pass_at > now() - greatest(interval '30 seconds',
                                         make_interval(secs => 10 * w.naptime_ms / 1000.0))
           AS alive
  FROM driftmirror.worker_state w;
COMMENT ON VIEW driftmirror.dm_worker IS
    'The background worker: process, last pass, settings in effect';

CREATE OR REPLACE VIEW driftmirror.dm_options AS
SELECT o.scope, o.key, o.type, o.default_value, o.min_value, o.max_value, o.allowed,
       o.description
  FROM driftmirror.option_def o;
COMMENT ON VIEW driftmirror.dm_options IS
    'Every option of groups, resources, events and mirrors, with defaults and bounds';

-- dm_status: one row per group, what it is doing now and why
CREATE OR REPLACE VIEW driftmirror.dm_status AS
SELECT g.name AS group_name,
       e.eff ->> 'mode' AS mode,
       CASE
           WHEN w.pid IS NULL OR NOT w.alive THEN 'no_worker'
           WHEN NOT w.enabled THEN 'disabled'
           WHEN s.group_id IS NULL THEN 'pending'
           WHEN s.consecutive_failures > 0 THEN 'failing'
           WHEN s.last_heartbeat < now() - 3 * i.iv - interval '5 seconds' THEN 'stale'
           WHEN ms.failing > 0 THEN 'degraded'
           ELSE s.activity
       END AS state,
       CASE
           WHEN w.pid IS NULL THEN
               'the driftmirror worker has never run here: is driftmirror in shared_preload_libraries and driftmirror.database set to this database?'
           WHEN NOT w.alive THEN
               format('the driftmirror worker has not run since %s', w.last_pass_at)
           WHEN NOT w.enabled THEN 'driftmirror.enabled is off'
           WHEN s.group_id IS NULL THEN 'waiting for the first monitoring step'
           WHEN s.consecutive_failures > 0 THEN
               format('%s consecutive failed step(s); last error: %s',
                      s.consecutive_failures,
                      CASE WHEN adm.admin THEN s.last_error
                           ELSE driftmirror._error_label(s.last_error_sqlstate) END)
           WHEN s.last_heartbeat < now() - 3 * i.iv - interval '5 seconds' THEN
               format('no heartbeat since %s (interval %s)', s.last_heartbeat, i.iv)
           WHEN ms.failing > 0 THEN
               format('%s of %s metric source(s) failing; %s', ms.failing, ms.sources, ms.first_error)
           ELSE coalesce(s.activity_reason, format('monitoring every %s', i.iv))
       END
       || CASE WHEN cl.n > 0
               THEN format('; %s replication object(s) of dropped mirrors still to drop (last error: %s)',
                           cl.n, CASE WHEN cl.last_error IS NULL THEN 'none yet'
                                      WHEN adm.admin THEN cl.last_error
                                      ELSE 'see dm_mirror_cleanups' END)
               ELSE '' END
       -- the group's last promotion failed (e.g. an actuator whose state is
       -- unknown after a timeout): said until a later promotion
       || CASE WHEN lp.state = 'failed'
               THEN format('; promotion %s of resource "%s" failed: %s', lp.id, lp.resource_name,
                           CASE WHEN adm.admin THEN lp.error
                                ELSE driftmirror._error_label(lp.error_sqlstate) END)
               ELSE '' END
       -- drift of a mirror over drift_threshold, now or forecast (78_drift.sql)
       || coalesce('; ' || dr.reasons, '') AS reason,
       (SELECT count(*) FROM driftmirror.resource r WHERE r.group_id = g.id) AS resources,
       i.iv AS "interval",
       s.last_heartbeat,
       s.next_step_at,
       coalesce(s.steps_ok, 0) AS steps_ok,
       coalesce(s.steps_failed, 0) AS steps_failed,
       coalesce(s.consecutive_failures, 0) AS consecutive_failures,
       CASE WHEN adm.admin THEN s.last_error
            ELSE driftmirror._error_label(s.last_error_sqlstate) END AS last_error,
       s.last_error_sqlstate,
       s.last_error_at,
       cl.n AS pending_cleanups
  FROM driftmirror.resource_group g
  -- raw error text for admins, labels for everyone else (25_error_labels.sql)
  CROSS JOIN (SELECT pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') AS admin) adm
  CROSS JOIN LATERAL (SELECT d.defaults || g.options AS eff
                        FROM driftmirror._option_defaults d
                       WHERE d.scope = 'group') e
  CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(e.eff -> 'interval')
                             WHEN 'number' THEN make_interval(secs => (e.eff ->> 'interval')::float8)
                             ELSE (e.eff ->> 'interval')::interval END AS iv) i
  CROSS JOIN LATERAL (SELECT count(*) AS n,
                             (array_agg(c.last_error ORDER BY c.last_error_at DESC NULLS LAST))[1] AS last_error
                        FROM driftmirror.mirror_cleanup c
                       WHERE c.group_name = g.name) AS cl
  LEFT JOIN LATERAL (SELECT p.id, p.resource_name, p.state, p.error, p.error_sqlstate
                       FROM driftmirror.promotion p
                      WHERE p.group_id = g.id
                      ORDER BY p.id DESC LIMIT 1) lp ON true
  LEFT JOIN LATERAL (SELECT string_agg(format('drift of resource "%s": %s', mm.resource_name, ds.reason),
                                        '; ' ORDER BY mm.resource_name) AS reasons
                       FROM driftmirror.drift_state ds
                       JOIN driftmirror.mirror mm ON mm.id = ds.mirror_id
                      WHERE mm.group_id = g.id AND ds.decision <> 'ok') dr ON true
  LEFT JOIN driftmirror.group_state s ON s.group_id = g.id
  LEFT JOIN driftmirror.dm_worker w ON true
  -- metric sources (55_metric_collectors.sql): a failing one degrades the group
  LEFT JOIN LATERAL (
      SELECT count(*) AS sources,
             count(*) FILTER (WHERE mst.consecutive_failures > 0) AS failing,
             (array_agg(format('%s source of resource "%s": %s', src.kind, res.name,
                               CASE WHEN adm.admin THEN mst.last_error ELSE mst.last_error_label END)
                        ORDER BY res.name, src.kind)
                  FILTER (WHERE mst.consecutive_failures > 0))[1] AS first_error
        FROM driftmirror.metric_source src
        JOIN driftmirror.resource res ON res.id = src.resource_id
        LEFT JOIN driftmirror.metric_source_state mst ON mst.source_id = src.id
       WHERE src.group_id = g.id) ms ON true
UNION ALL
-- a dropped group whose mirrors' replication objects are not all dropped yet
SELECT c.group_name, NULL, 'cleanup_pending',
       format('group dropped; %s replication object(s) of its mirrors still to drop (last error: %s)',
              count(*),
              CASE WHEN count(c.last_error) = 0 THEN 'none yet'
                   WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                   THEN (array_agg(c.last_error ORDER BY c.last_error_at DESC NULLS LAST))[1]
                   ELSE 'see dm_mirror_cleanups' END),
       0, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, count(*)
  FROM driftmirror.mirror_cleanup c
 WHERE NOT EXISTS (SELECT FROM driftmirror.resource_group g WHERE g.name = c.group_name)
 GROUP BY c.group_name;
COMMENT ON VIEW driftmirror.dm_status IS
    'One row per group: what it is doing now and why; errors as labels for non-admins';
