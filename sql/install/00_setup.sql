-- 00_setup.sql: preconditions and roles.
--
-- The extension lives in schema driftmirror (see driftmirror.control).  A
-- schema of that name created beforehand by another role would let that role
-- plant objects among ours, so refuse it.  Roles are cluster-wide: create
-- them once, reuse them in every database that has the extension.

DO $setup$
BEGIN
    IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n
         WHERE n.nspname OPERATOR(pg_catalog.=) 'driftmirror')
       OPERATOR(pg_catalog.<>)
       (SELECT r.oid FROM pg_catalog.pg_roles r
         WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION 'schema "driftmirror" exists and is owned by another role'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop or rename that schema, then create the extension as the role that should own it.';
    END IF;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'driftmirror_monitor') THEN
        CREATE ROLE driftmirror_monitor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'driftmirror_admin') THEN
        CREATE ROLE driftmirror_admin NOLOGIN;
    END IF;
END
$setup$;

-- the admin sees everything the monitor sees
GRANT driftmirror_monitor TO driftmirror_admin;

COMMENT ON ROLE driftmirror_admin IS
    'driftmirror: may create, change and drop groups, resources, mirrors and routes';
COMMENT ON ROLE driftmirror_monitor IS
    'driftmirror: may read status views (without endpoints or connection strings)';
