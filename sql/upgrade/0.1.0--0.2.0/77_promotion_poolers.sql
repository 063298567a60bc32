-- 77_promotion_poolers.sql: a promotion records the pgbouncer routers it
-- paused until it has resumed them (issue 11, promotion through routers).

ALTER TABLE driftmirror.promotion ADD COLUMN poolers_paused bigint[];
