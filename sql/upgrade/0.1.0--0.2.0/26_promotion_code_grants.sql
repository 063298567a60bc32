-- 26_promotion_code_grants.sql: _promotion_info, made again by
-- 25_promotion_code.include (it returns driftmirror.promotion_info now),
-- owner-only as 99_privileges.sql leaves it
REVOKE ALL ON FUNCTION driftmirror._promotion_info(bigint) FROM PUBLIC;
