-- 55_metric_views.sql: the views of the metric store for people:
-- dm_metric_names, dm_metrics, dm_metric_rollups, dm_metric_partitions.
-- Views and their comments only, each CREATE OR REPLACE: the update from
-- 0.1.0 pastes this file whole (sql/upgrade/0.1.0--0.2.0/44_metric_views.include).

-- ---------------------------------------------------------------------
-- views
-- ---------------------------------------------------------------------
CREATE OR REPLACE VIEW driftmirror.dm_metric_names AS
SELECT m.id, m.name, m.unit, m.description, m.builtin
  FROM driftmirror.metric_def m;
COMMENT ON VIEW driftmirror.dm_metric_names IS
    'Registered metric names with their ids (for COPY into driftmirror.metric) and units';

CREATE OR REPLACE VIEW driftmirror.dm_metrics AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       d.name AS metric,
       m.ts,
       m.value,
       d.unit
  FROM driftmirror.metric m
  JOIN driftmirror.resource r ON r.id = m.resource_id
  JOIN driftmirror.resource_group g ON g.id = r.group_id
  JOIN driftmirror.metric_def d ON d.id = m.metric_id;
COMMENT ON VIEW driftmirror.dm_metrics IS
    'Raw metric samples by group, resource and metric name';

CREATE OR REPLACE VIEW driftmirror.dm_metric_rollups AS
SELECT x.level, g.name AS group_name, r.name AS resource_name, d.name AS metric,
       x.bucket, x.samples, x.avg, x.max, x.p95
  FROM (SELECT '5m'::text AS level, * FROM driftmirror.metric_5m
        UNION ALL
        SELECT '1h'::text, * FROM driftmirror.metric_1h) x
  JOIN driftmirror.resource r ON r.id = x.resource_id
  JOIN driftmirror.resource_group g ON g.id = r.group_id
  JOIN driftmirror.metric_def d ON d.id = x.metric_id;
COMMENT ON VIEW driftmirror.dm_metric_rollups IS
    '5-minute and 1-hour rollups (samples, avg, max, p95) for model training';

CREATE OR REPLACE VIEW driftmirror.dm_metric_partitions AS
SELECT p.name, p.lo, p.hi,
       (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(t.relid))::bigint
          FROM pg_catalog.pg_partition_tree(format('driftmirror.%I', p.name)::regclass) t) AS bytes,
       p.purged_groups, p.created_at, p.stage_interval, p.sealed_upto
  FROM driftmirror.metric_partition p
 WHERE to_regclass(format('driftmirror.%I', p.name)) IS NOT NULL;
COMMENT ON VIEW driftmirror.dm_metric_partitions IS
    'Partitions of the raw metric table with their bounds and size (of all its leaves); stage_interval is set while a partition of index_mode staged is not yet merged';
