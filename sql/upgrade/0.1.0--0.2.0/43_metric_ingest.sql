-- 43_metric_ingest.sql: index_mode 'brin' of the metric store: an open
-- partition has only a BRIN on (resource_id, metric_id, ts), the series
-- btree is built when it closes (sql/install/55_metric_catalog.sql).  The default
-- stays 'immediate'; existing partitions and settings are kept as they are.
-- The functions come from 43_metric_code.include (55_metric_maintenance.sql
-- whole); the new ones are owner-only, as 99_privileges.sql makes them.
ALTER TABLE driftmirror.metric_settings
    DROP CONSTRAINT metric_settings_index_mode_check,
    ADD CONSTRAINT metric_settings_index_mode_check
        CHECK (index_mode IN ('immediate', 'deferred', 'brin'));

REVOKE ALL ON FUNCTION driftmirror._brin_partition(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._ensure_partitions(timestamptz, timestamptz, integer, boolean) FROM PUBLIC;
