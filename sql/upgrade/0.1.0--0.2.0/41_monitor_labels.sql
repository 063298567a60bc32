-- 41_monitor_labels.sql: the monitor reads labels, never raw error text;
-- no inline bearer tokens; metric-admin functions write to the action log.
--
-- Inline bearer_token settings of metric sources are dropped from the
-- catalog (and from the action log): they came out of pg_dump.  The sources
-- that had one are named in a WARNING; give them a bearer_token_file.
DO $inline_tokens$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT g.name AS group_name, res.name AS resource_name
          FROM driftmirror.metric_source s
          JOIN driftmirror.resource res ON res.id = s.resource_id
          JOIN driftmirror.resource_group g ON g.id = s.group_id
         WHERE s.config ? 'bearer_token'
         ORDER BY 1, 2
    LOOP
        RAISE WARNING 'the inline bearer_token of the prometheus metric source of resource "%" of group "%" was removed', r.resource_name, r.group_name
            USING HINT = 'Write the token to a file of the driftmirror_secrets directory of the data directory and set bearer_token_file with dm_remove_metric_source and dm_add_metric_source.';
    END LOOP;
END
$inline_tokens$;
UPDATE driftmirror.metric_source SET config = config - 'bearer_token' WHERE config ? 'bearer_token';
UPDATE driftmirror.action SET inputs = inputs #- '{config,bearer_token}'
 WHERE inputs -> 'config' ? 'bearer_token';

-- _error_label: sql/install/25_error_labels.sql, by 41_error_labels.include
REVOKE ALL ON FUNCTION driftmirror._error_label(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror._error_label(text) TO driftmirror_monitor, driftmirror_admin;

ALTER TABLE driftmirror.metric_source_state ADD COLUMN last_error_label text;

DROP FUNCTION driftmirror._record_polls(bigint[], boolean[], text[], integer[], jsonb[]);
CREATE FUNCTION driftmirror._record_polls(p_source bigint[], p_ok boolean[], p_error text[],
                                          p_rows integer[], p_watermarks jsonb[],
                                          p_label text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH u AS (
            SELECT * FROM unnest(p_source, p_ok, p_error, p_rows, p_watermarks, p_label)
                       AS u (source_id, ok, error, nrows, wm, label)
        ), upd AS (
            UPDATE driftmirror.metric_source_state st
               SET last_poll_at = clock_timestamp(),
                   last_ok_at = CASE WHEN u.ok THEN clock_timestamp() ELSE st.last_ok_at END,
                   last_error = CASE WHEN u.ok THEN st.last_error ELSE u.error END,
                   last_error_label = CASE WHEN u.ok THEN st.last_error_label ELSE u.label END,
                   last_error_at = CASE WHEN u.ok THEN st.last_error_at ELSE clock_timestamp() END,
                   consecutive_failures = CASE WHEN u.ok THEN 0 ELSE st.consecutive_failures + 1 END,
                   next_attempt_at = CASE WHEN u.ok THEN NULL
                       ELSE clock_timestamp() + least(
                            coalesce(driftmirror._opt_interval(s.config -> 'max_backoff'), interval '60 seconds'),
                            driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval')
                              * power(2, least(st.consecutive_failures, 20)))
                       END,
                   rows_last_poll = u.nrows,
                   rows_total = st.rows_total + u.nrows,
                   watermarks = coalesce(u.wm, st.watermarks)
              FROM u, driftmirror.metric_source s, driftmirror.resource_group g
             WHERE st.source_id = u.source_id AND s.id = u.source_id AND g.id = s.group_id
            RETURNING st.source_id, u.ok, u.error, u.label, st.consecutive_failures, s.kind,
                      s.resource_id, g.name AS group_name
        ), old AS (
            SELECT st.source_id, st.consecutive_failures AS old_failures
              FROM driftmirror.metric_source_state st
             WHERE st.source_id = ANY (p_source)
        )
        SELECT upd.*, old.old_failures, res.name AS resource_name
          FROM upd
          JOIN old ON old.source_id = upd.source_id
          JOIN driftmirror.resource res ON res.id = upd.resource_id
         WHERE (NOT upd.ok AND upd.consecutive_failures = 1)
            OR (upd.ok AND old.old_failures > 0)
    LOOP
        IF r.ok THEN
            PERFORM driftmirror._log_action(r.group_name, r.resource_name, 'metric_source_recovered',
                format('%s metric source polled again after %s failed poll(s)', r.kind, r.old_failures));
        ELSE
            PERFORM driftmirror._log_action(r.group_name, r.resource_name, 'metric_source_failed',
                format('%s metric source failed: %s', r.kind, r.error),
                jsonb_build_object('label', r.label), 'failed');
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION driftmirror._record_polls(bigint[], boolean[], text[], integer[], jsonb[], text[]) FROM PUBLIC;

-- _source_config: its final version is in 93_influxdb_source.sql

CREATE OR REPLACE FUNCTION driftmirror.dm_add_metric_source("group" text, resource text, kind text,
                                                 config jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group    ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_kind     ALIAS FOR $3;
    gid        bigint;
    rid        bigint;
    rkind      text;
    cfg        jsonb;
    sid        bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT r.kind INTO rkind FROM driftmirror.resource r WHERE r.id = rid;
    cfg := driftmirror._source_config(p_kind, rkind, config);
    IF EXISTS (SELECT FROM driftmirror.metric_source s WHERE s.resource_id = rid AND s.kind = p_kind) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a % metric source', p_resource, p_group, p_kind
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Remove it first with dm_remove_metric_source.';
    END IF;
    INSERT INTO driftmirror.metric_source (group_id, resource_id, kind, config)
    VALUES (gid, rid, p_kind, cfg)
    RETURNING id INTO sid;
    INSERT INTO driftmirror.metric_source_state (source_id) VALUES (sid);
    PERFORM driftmirror._log_action(p_group, p_resource, 'add_metric_source', 'dm_add_metric_source',
                                    jsonb_build_object('kind', p_kind,
                                                       'config', cfg - 'bearer_token_file' - 'url'));
    RETURN sid;
END
$$;

-- dm_run_maintenance, dm_create_partitions, dm_rollup and
-- dm_set_metric_settings (which write to the action log) come with
-- sql/install/55_metric_maintenance.sql, pasted whole by
-- 43_metric_code.include.

CREATE OR REPLACE FUNCTION driftmirror.dm_register_metric(name text, unit text DEFAULT '',
                                               description text DEFAULT '')
RETURNS smallint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    mid    smallint;
BEGIN
    PERFORM driftmirror._check_metric_name(p_name);
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric:' || p_name));
    IF EXISTS (SELECT FROM driftmirror.metric_def m WHERE m.name = p_name) THEN
        RAISE EXCEPTION 'metric "%" is already registered', p_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO driftmirror.metric_def (name, unit, description)
    VALUES (p_name, coalesce(unit, ''), coalesce(description, ''))
    RETURNING id INTO mid;
    PERFORM driftmirror._log_action('', NULL, 'register_metric', 'dm_register_metric',
                                    jsonb_build_object('name', p_name, 'id', mid, 'unit', coalesce(unit, '')));
    RETURN mid;
END
$$;

CREATE OR REPLACE VIEW driftmirror.dm_metric_sources AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       s.kind,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN s.config
            ELSE s.config - 'url' - 'bearer_token_file' END AS config,
       CASE WHEN st.last_poll_at IS NULL THEN 'pending'
            WHEN st.consecutive_failures > 0 THEN 'failing'
            ELSE 'ok' END AS state,
       st.last_poll_at,
       st.last_ok_at,
       -- raw text (libpq, libcurl, the server) names hosts: admins only
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN st.last_error ELSE st.last_error_label END AS last_error,
       st.last_error_at,
       coalesce(st.consecutive_failures, 0) AS consecutive_failures,
       st.next_attempt_at,
       coalesce(st.rows_last_poll, 0) AS rows_last_poll,
       coalesce(st.rows_total, 0) AS rows_total,
       s.id,
       s.created_at
  FROM driftmirror.metric_source s
  JOIN driftmirror.resource r ON r.id = s.resource_id
  JOIN driftmirror.resource_group g ON g.id = s.group_id
  LEFT JOIN driftmirror.metric_source_state st ON st.source_id = s.id;
COMMENT ON VIEW driftmirror.dm_metric_sources IS
    'Metric sources with their last poll, last error and next attempt; URLs, token file names and raw error text (a label instead) hidden from non-admins';

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
               ELSE '' END AS reason,
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

CREATE OR REPLACE VIEW driftmirror.dm_mirror_status AS
SELECT m.group_name,
       m.resource_name,
       m.kind,
       m.state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN m.state_reason
            WHEN m.last_error IS NOT NULL AND strpos(m.state_reason, m.last_error) > 0
            THEN replace(m.state_reason, m.last_error, driftmirror._error_label(m.last_error_sqlstate))
            WHEN m.state_reason ~ '(failed|could not|error)'
            THEN split_part(m.state_reason, ': ', 1) || ': ' || driftmirror._error_label(m.last_error_sqlstate)
            ELSE m.state_reason END AS state_reason,
       m.two_way,
       m.fence,
       m.mirror_fence,
       m.primary_fence,
       m.slot_active,
       m.tables_total,
       m.tables_ready,
       CASE WHEN m.tables_total > 0
            THEN round(100.0 * m.tables_ready / m.tables_total, 1) END AS sync_pct,
       m.tables,
       m.lag_bytes,
       m.lag_seconds,
       round(m.primary_latency_ms::numeric, 3) AS primary_latency_ms,
       round(m.mirror_latency_ms::numeric, 3) AS mirror_latency_ms,
       round(m.latency_ratio::numeric, 2) AS latency_ratio,
       round(m.primary_latency_median_ms::numeric, 3) AS primary_latency_median_ms,
       round(m.mirror_latency_median_ms::numeric, 3) AS mirror_latency_median_ms,
       m.latency_samples,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN m.latency_error
            WHEN m.latency_error IS NOT NULL
            THEN split_part(m.latency_error, ':', 1) || ': probe failed' END AS latency_error,
       m.apply_error_count,
       m.sync_error_count,
       m.rev_apply_error_count,
       m.rev_sync_error_count,
       m.conflicts,
       m.last_conflict_at,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN m.last_error
            WHEN m.last_error IS NOT NULL
            -- our own sentences naming a node by its label, not its host
            THEN coalesce(substring(m.last_error from
                              '^(?:(?:could not connect to|no answer from) node "[^"]*"|the actuator reports that the mirror failed)'),
                          'step ' || m.step, 'mirror')
                 || ': ' || driftmirror._error_label(m.last_error_sqlstate) END AS last_error,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.last_error_detail END AS last_error_detail,
       m.last_error_sqlstate,
       m.last_error_at,
       greatest(m.primary_checked_at, m.mirror_checked_at) AS checked_at,
       m.step,
       m.pending_action,
       m.publication_name,
       m.slot_name,
       m.subscription_name,
       m.rev_publication_name,
       m.rev_slot_name,
       m.rev_subscription_name,
       m.attempts,
       m.retry_at AS next_attempt_at,
       m.actuator_name,
       m.actuator_state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.actuator_detail END AS actuator_detail,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.mirror_endpoint END AS mirror_endpoint,
       (SELECT count(*) FROM driftmirror.mirror_sequence q WHERE q.mirror_id = m.id) AS sequences,
       m.created_at,
       m.state_changed_at,
       m.synced_at,
       m.id
  FROM driftmirror.mirror m;
COMMENT ON VIEW driftmirror.dm_mirror_status IS
    'Every mirror: state, initial copy progress, lag in bytes and seconds, latency of both nodes and their ratio, apply errors and conflicts, the HTTP actuator''s answers; endpoint and error text (which may name hosts) only for driftmirror_admin, labels for others';

CREATE OR REPLACE VIEW driftmirror.dm_mirror_cleanups AS
SELECT c.group_name, c.resource_name, c.node, c.what, c.object_name, c.attempts,
       c.next_attempt_at,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN c.last_error
            WHEN c.last_error IS NOT NULL
            THEN format('dropping %s on the %s failed', c.what, c.node) END AS last_error,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN c.last_error_detail END AS last_error_detail,
       c.last_error_at, c.created_at, c.id
  FROM driftmirror.mirror_cleanup c;
COMMENT ON VIEW driftmirror.dm_mirror_cleanups IS
    'Replication objects of dropped mirrors still to be removed from their nodes';

CREATE OR REPLACE VIEW driftmirror.dm_promotions AS
SELECT p.id, p.group_name, p.resource_name, p.trigger, p.reason, p.state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.old_primary END AS old_primary,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.new_primary END AS new_primary,
       p.pause_ms, p.fence_lsn, p.confirmed_lsn, p.sequences_synced, p.guardrails,
       -- raw error text (hosts, ports) only for admins; others read labels
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN p.error
            WHEN p.error IS NOT NULL THEN driftmirror._error_label(p.error_sqlstate) END AS error,
       p.error_sqlstate, p.requested_by, p.started_at, p.finished_at,
       (SELECT jsonb_agg(jsonb_build_object('step', s.step, 'started', s.started_at,
                                            'finished', s.finished_at, 'lsn', s.lsn,
                                            'outcome', s.outcome,
                                            'reason', CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                                                                OR s.outcome IN ('ok', 'running')
                                                           THEN s.reason ELSE s.outcome END,
                                            'details', CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                                                            THEN s.details END) ORDER BY s.seq)
          FROM driftmirror.promotion_step s WHERE s.promotion_id = p.id) AS steps,
       p.kind, p.deadline, p.abort_deadline,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.actuator_detail END AS actuator_detail
  FROM driftmirror.promotion p;
COMMENT ON VIEW driftmirror.dm_promotions IS
    'Every promotion with its state, pause, fence LSN and step log';

CREATE OR REPLACE VIEW driftmirror.dm_promotion_steps AS
SELECT p.group_name, p.resource_name, s.promotion_id, s.seq, s.step, s.started_at,
       s.finished_at, round(extract(epoch FROM s.finished_at - s.started_at)::numeric * 1000, 1) AS ms,
       s.lsn, s.outcome,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                 OR s.outcome IN ('ok', 'running')
            THEN s.reason ELSE s.outcome END AS reason,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN s.details END AS details
  FROM driftmirror.promotion_step s
  JOIN driftmirror.promotion p ON p.id = s.promotion_id;
COMMENT ON VIEW driftmirror.dm_promotion_steps IS
    'The step log of every promotion, one row per step';
