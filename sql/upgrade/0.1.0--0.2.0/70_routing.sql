-- 70_routing.sql: the route functions follow the traffic shares of issue 11
-- (_route_pick; dm_route key-affine for writes; dm_route_multihost gains
-- access and key, so it is dropped here and created again by
-- 71_routes.include, which pastes sql/install/70_routes.sql whole; grants
-- in 75_routing_grants.sql).  The routing objects themselves come whole
-- from 74_routing.include.

DROP FUNCTION driftmirror.dm_route_multihost(text, text);
