-- 85_drift.sql: drift acts (78_drift.sql, new in 0.2.0, comes from
-- 84_drift.include): drift_threshold is in the unit of drift.score (default
-- 1 = at the limits).  Auto-promotion held while a mirror's drift is over
-- drift_threshold now or forecast over lead_time comes with
-- 85_auto_promotion.include, dm_status saying it with 85_views.include.
UPDATE driftmirror.option_def
   SET default_value = '1',
       description = 'drift.score (lag, latency ratio, apply errors and failed transactions per transaction beyond the primary''s of a mirror, each over its limit: 1 = at the limit) at which drift, now or forecast over lead_time, holds auto-promotion and shift plans and scales the mirror''s resource'
 WHERE scope = 'group' AND key = 'drift_threshold';
