-- 78_pooler_resume.sql: a pgbouncer router removed while a promotion had
-- it paused stays owed a RESUME (issue 11): the promotion keeps what
-- resuming it needs.  dm_remove_router itself comes from
-- 74_routing.include.

ALTER TABLE driftmirror.promotion ADD COLUMN poolers_removed jsonb;
