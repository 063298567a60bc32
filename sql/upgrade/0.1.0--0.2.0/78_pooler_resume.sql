-- 78_pooler_resume.sql: a promotion never leaves a pgbouncer router paused
-- (issue 11): a router removed while a promotion had it paused stays owed
-- a RESUME (the promotion keeps what resuming it needs), and the worker's
-- recovery looks for ended promotions that still owe one
-- (_promotions_unfinished, from 25_promotion_code.include; dm_remove_router
-- from 74_routing.include).

ALTER TABLE driftmirror.promotion ADD COLUMN poolers_removed jsonb;

CREATE INDEX promotion_poolers_owed ON driftmirror.promotion (group_id)
    WHERE poolers_paused IS NOT NULL OR poolers_removed IS NOT NULL;
