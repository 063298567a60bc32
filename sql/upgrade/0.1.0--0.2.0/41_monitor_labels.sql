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

-- dm_actions, dm_status, dm_mirror_status, dm_mirror_cleanups, dm_promotions
-- and dm_promotion_steps, which show labels to the monitor, come whole with
-- their install files (67_mirror_views.include, 70_promotion_views.include,
-- 85_views.include).
