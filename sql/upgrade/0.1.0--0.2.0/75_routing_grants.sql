-- 75_routing_grants.sql: what 99_privileges.sql grants on the objects of
-- 70_routing.sql and 74_routing.include.
REVOKE ALL ON FUNCTION driftmirror._route_pick(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror.dm_route_multihost(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror.dm_add_router(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror.dm_remove_router(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror.dm_shift(text, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._router_options_check(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._route_weight(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._shift_set(text, numeric, numeric, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._router_work(bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._router_record(bigint, bigint, text, boolean, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._shift_result(bigint) FROM PUBLIC;
REVOKE ALL ON driftmirror.router, driftmirror.shift, driftmirror.dm_routers, driftmirror.dm_shifts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_route_multihost(text, text, text, text) TO driftmirror_admin;
GRANT EXECUTE ON FUNCTION driftmirror.dm_add_router(text, text, text, text, jsonb) TO driftmirror_admin;
GRANT EXECUTE ON FUNCTION driftmirror.dm_remove_router(text, text) TO driftmirror_admin;
GRANT EXECUTE ON FUNCTION driftmirror.dm_shift(text, numeric, numeric) TO driftmirror_admin;
GRANT SELECT ON driftmirror.dm_routers, driftmirror.dm_shifts TO driftmirror_monitor;
