-- 99_privileges.sql: who may do what.  Runs last, so it covers every object
-- the install script created.
--
--   PUBLIC               nothing
--   driftmirror_monitor  the dm_* views (endpoints redacted) and the pure
--                        functions listed below
--   driftmirror_admin    every dm_* function, plus what the monitor has
--
-- Internal functions (_*) and tables stay with the owner, except the pure
-- _error_label that views call (granted at the end).

REVOKE ALL ON SCHEMA driftmirror FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA driftmirror FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA driftmirror FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA driftmirror FROM PUBLIC;
GRANT USAGE ON SCHEMA driftmirror TO driftmirror_monitor, driftmirror_admin;

DO $privileges$
DECLARE
    obj record;
    -- pure functions that reveal nothing: the monitor may call them too
    monitor_functions CONSTANT text[] := ARRAY['dm_forecast', 'dm_forecast_model', 'dm_client_conninfo'];
BEGIN
    FOR obj IN
        SELECT p.oid::regprocedure AS sig, p.proname
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'driftmirror'::regnamespace
           AND p.proname OPERATOR(pg_catalog.~) '^dm_'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO driftmirror_admin', obj.sig);
        IF obj.proname OPERATOR(pg_catalog.=) ANY (monitor_functions) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO driftmirror_monitor', obj.sig);
        END IF;
    END LOOP;

    FOR obj IN
        SELECT c.oid::regclass AS rel
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace OPERATOR(pg_catalog.=) 'driftmirror'::regnamespace
           AND c.relkind OPERATOR(pg_catalog.=) 'v'
           AND c.relname OPERATOR(pg_catalog.~) '^dm_'
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO driftmirror_monitor', obj.rel);
    END LOOP;
END
$privileges$;

-- the views call _error_label with the reader's rights: a pure function of
-- a SQLSTATE (25_error_labels.sql), so both roles may execute it
GRANT EXECUTE ON FUNCTION driftmirror._error_label(text) TO driftmirror_monitor, driftmirror_admin;
