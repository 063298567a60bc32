-- 46_metric_settings_restore.sql: the trigger function pasted by
-- 45_metric_settings_restore.include is owner-only, as 99_privileges.sql
-- makes every function of a fresh install.
REVOKE ALL ON FUNCTION driftmirror._metric_settings_upsert() FROM PUBLIC;
