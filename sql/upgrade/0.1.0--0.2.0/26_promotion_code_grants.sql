-- 26_promotion_code_grants.sql: _promotion_info, made again by
-- 25_promotion_code.include (it returns driftmirror.promotion_info now),
-- owner-only as 99_privileges.sql leaves it; and the new
-- _refuse_while_poolers_owed
REVOKE ALL ON FUNCTION driftmirror._promotion_info(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._refuse_while_poolers_owed(text, text, bigint, bigint) FROM PUBLIC;
