-- 55_metric_settings_restore.sql: the metric store's settings survive
-- pg_dump and pg_restore.
--
-- metric_settings holds one row, inserted by CREATE EXTENSION and marked
-- for pg_dump (pg_extension_config_dump in 55_metric_catalog.sql).  A
-- restore runs CREATE EXTENSION first, which inserts the default row, then
-- copies the dumped row into the table: without this trigger that copy
-- fails on the primary key and the restored store silently runs with the
-- defaults.  The trigger makes an insert that finds the row already there
-- update it instead (a BEFORE INSERT row trigger also fires for COPY), so
-- the dumped settings win.  The row's checks apply to the update as to
-- any other.  Pasted whole by the update from 0.1.0
-- (sql/upgrade/0.1.0--0.2.0/45_metric_settings_restore.include).

CREATE OR REPLACE FUNCTION driftmirror._metric_settings_upsert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE driftmirror.metric_settings
       SET partition_interval = NEW.partition_interval,
           premake = NEW.premake,
           rollup_delay = NEW.rollup_delay,
           rollup_retention = NEW.rollup_retention,
           index_mode = NEW.index_mode,
           stage_interval = NEW.stage_interval
     WHERE singleton = NEW.singleton;
    IF FOUND THEN
        RETURN NULL;            -- the row was there: updated instead
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION driftmirror._metric_settings_upsert() IS
    'Trigger of metric_settings: an insert (pg_restore''s copy) updates the one row when it exists';

CREATE OR REPLACE TRIGGER metric_settings_upsert
    BEFORE INSERT ON driftmirror.metric_settings
    FOR EACH ROW EXECUTE FUNCTION driftmirror._metric_settings_upsert();
