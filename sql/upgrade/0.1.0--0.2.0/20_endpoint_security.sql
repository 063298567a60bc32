-- 20_endpoint_security.sql: who may name an endpoint (endpoint approvals,
-- sql/install/36_endpoint_approvals.sql, new in 0.2.0, pasted whole by
-- 20_endpoint_approvals.include), the conninfo keyword allow-list (C,
-- endpoint.c), the preflight's role check, routes without the
-- administration role; see docs/operations.md, "Security model".  The
-- code that uses them comes whole with other includes: the resource API
-- (dm_add_resource, dm_alter_resource) with 79_resources.include, the
-- mirror code (_node_role_sql, _mirror_preflight, dm_create_mirror,
-- _check_mirror_delegated, dm_sync_sequences, dm_mirror_verify) with
-- 23_mirror_code.include, the routes (dm_client_conninfo, _route_endpoint,
-- dm_route, dm_route_multihost, dm_routes) with 71_routes.include;
-- _source_config's final version is in 93_influxdb_source.sql.

-- privileges of the new objects, as 99_privileges.sql grants them
REVOKE ALL ON driftmirror.endpoint_approval FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._caller_is_superuser(), driftmirror._check_endpoint_delegated(text, text, text),
    driftmirror.dm_approve_endpoint(text), driftmirror.dm_revoke_endpoint(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_approve_endpoint(text), driftmirror.dm_revoke_endpoint(text)
    TO driftmirror_admin;
GRANT SELECT ON driftmirror.dm_endpoint_approvals TO driftmirror_monitor;
