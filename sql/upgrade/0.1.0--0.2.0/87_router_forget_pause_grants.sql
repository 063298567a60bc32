-- 87_router_forget_pause_grants.sql: what 99_privileges.sql grants on
-- dm_router_forget_pause (created with 74_routing.sql, 74_routing.include).
REVOKE ALL ON FUNCTION driftmirror.dm_router_forget_pause(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_router_forget_pause(text, text) TO driftmirror_admin;
