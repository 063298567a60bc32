-- 70_promotion_views.sql: the views of promotions: dm_promotions and
-- dm_promotion_steps (endpoints and details redacted for non-admins).
--
-- Views and their comments only, each CREATE OR REPLACE: the update from
-- 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/70_promotion_views.include).

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
