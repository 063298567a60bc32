-- 98_export_grants.sql: what 99_privileges.sql grants on the objects of
-- 97_export.include.
REVOKE ALL ON FUNCTION driftmirror._s3_request(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._export_payload(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._export_checksum(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror.dm_export(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror.dm_import(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION driftmirror.dm_export(text, text) TO driftmirror_admin;
GRANT EXECUTE ON FUNCTION driftmirror.dm_import(text) TO driftmirror_admin;
