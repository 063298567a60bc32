-- 67_mirror_views.sql: the views of mirrors: dm_mirror_status,
-- dm_mirror_cleanups, dm_mirror_sequences.
--
-- Views and their comments only, each CREATE OR REPLACE: the update from
-- 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/67_mirror_views.include).

-- ---- views ----

-- raw error text (libpq, libcurl, the nodes' messages) only for admins;
-- others read labels (25_error_labels.sql): a reason quoting an error is cut
-- where the error starts and ends with the error's label instead
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

CREATE OR REPLACE VIEW driftmirror.dm_mirror_sequences AS
SELECT m.group_name, m.resource_name, q.sequence_name, q.last_value, q.collected_at
  FROM driftmirror.mirror_sequence q
  JOIN driftmirror.mirror m ON m.id = q.mirror_id;
COMMENT ON VIEW driftmirror.dm_mirror_sequences IS
    'Last known value of every sequence of each mirrored primary';
