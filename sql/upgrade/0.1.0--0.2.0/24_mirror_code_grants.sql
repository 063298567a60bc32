-- 24_mirror_code_grants.sql: the functions of the mirror code new in 0.2.0
-- (created by 23_mirror_code.include), owner-only as 99_privileges.sql
-- leaves them
REVOKE ALL ON FUNCTION driftmirror._node_role_sql(), driftmirror._check_mirror_delegated(bigint),
    driftmirror._mirror_json_float8(jsonb), driftmirror._mirror_traffic_sql() FROM PUBLIC;
