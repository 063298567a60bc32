-- 44_metric_staged.sql: index_mode 'staged' of the metric store, the new
-- default of a fresh install: a partition cut into leaves of stage_interval,
-- sealed (series btree) once past and merged into one sorted plain table
-- once closed (sql/install/55_metric_catalog.sql).  An updated store keeps
-- its settings row as it was (index_mode 'immediate' unless changed): the
-- column default changes, the row does not, so an installation behaves as
-- before until dm_set_metric_settings('{"index_mode": "staged"}').  The
-- functions come from 43_metric_code.include (55_metric_maintenance.sql
-- whole), dm_metric_partitions' new columns from 44_metric_views.include;
-- the new functions are owner-only, as 99_privileges.sql makes them.
ALTER TABLE driftmirror.metric_settings
    DROP CONSTRAINT metric_settings_index_mode_check,
    ADD CONSTRAINT metric_settings_index_mode_check
        CHECK (index_mode IN ('staged', 'immediate', 'deferred', 'brin')),
    ALTER COLUMN index_mode SET DEFAULT 'staged',
    ADD COLUMN stage_interval interval NOT NULL DEFAULT '15 minutes'
        CHECK (stage_interval BETWEEN '1 minute' AND '31 days'
               AND date_part('month', stage_interval) = 0
               AND date_part('year', stage_interval) = 0),
    ADD CONSTRAINT metric_settings_stage_divides
        CHECK (extract(epoch FROM partition_interval) % extract(epoch FROM stage_interval) = 0);

ALTER TABLE driftmirror.metric_partition
    ADD COLUMN stage_interval interval,
    ADD COLUMN sealed_upto timestamptz,
    ADD COLUMN leaves_upto timestamptz;

REVOKE ALL ON FUNCTION driftmirror._stage_leaves(timestamptz, timestamptz, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._seal_leaves(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._merge_partition(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._merge_staged(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._missing_leaves(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._make_leaves(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._merge_candidate(timestamptz) FROM PUBLIC;
