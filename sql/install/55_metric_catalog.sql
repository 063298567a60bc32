-- 55_metric_catalog.sql: the metric store's tables: settings, the
-- metric-name dictionary, the time-partitioned raw table, the 5-minute and
-- 1-hour rollups, and the pull sources the worker polls.
--
-- Files of the metric store, one concern each:
--   55_metric_catalog.sql      tables and built-in rows (this file)
--   55_metric_collectors.sql   pull sources: configuration, polls, view
--   55_metric_ingest.sql       metric names and dm_ingest
--   55_metric_maintenance.sql  partitions, retention, rollups, maintenance
--   55_metric_views.sql        the views for people
--
-- Layout
--   driftmirror.metric      (ts, resource_id, metric_id, value), partitioned
--                           by range of ts; one partition per
--                           metric_settings.partition_interval (default one
--                           day, aligned on 2000-01-01 00:00 UTC).  Every
--                           closed partition has a btree on (resource_id,
--                           metric_id, ts) and a BRIN; see index_mode for
--                           when they are made:
--                           'staged' (default since 0.2.0): the partition
--                             is itself partitioned by range of ts into
--                             leaves of stage_interval (default 15
--                             minutes), named metric_sYYYYMMDD_HH24MI after
--                             their start, made as data or the time (an
--                             hour ahead) need them.  An open leaf has no index;
--                             once its end is rollup_delay past, the
--                             maintenance seals it (a sorted CREATE INDEX of
--                             the series btree); once the whole partition is
--                             that far past, the maintenance merges it: one
--                             plain table of the same rows sorted by
--                             series, with the btree and the BRIN on ts,
--                             swapped in for the partitioned one (at most
--                             one merge a pass).  Ingest pays no index
--                             entry per row; "one series" reads at most one
--                             stage_interval of all series unindexed.
--                           'immediate': btree and BRIN on ts
--                             from creation; every row pays both, and "one
--                             series" is an index range scan everywhere.
--                           'brin': an open partition has only a BRIN on
--                             (resource_id, metric_id, ts) (16 pages a
--                             range, summarised by the maintenance); the
--                             btree is built once the partition closes.
--                             Ingest pays no btree insertion per row, but
--                             reading one series of an open partition reads
--                             every series written between its rows.
--                           'deferred': no index until the partition closes.
--                           No foreign keys and
--                           no row or transition-table triggers: either would
--                           disable COPY's multi-row inserts.  Ids come from
--                           the catalog (dm_ingest, the collectors); rows
--                           COPYed with ids that name nothing are never shown
--                           (the views join the catalog) and are deleted when
--                           their partition closes.
--   driftmirror.metric_def  the dictionary: id, name, unit, description.
--   metric_5m, metric_1h    rollups: samples, avg, max, p95 per bucket.
--
-- Retention: partitions are shared by all groups.  A partition is dropped
-- once it is entirely older than the longest retention of any group; before
-- that, the rows of a group whose own (shorter) retention has passed are
-- deleted from it once, and the partition remembers which groups it has been
-- purged of.  Rows of resources that no longer exist go with their partition.

-- ---------------------------------------------------------------------
-- settings of the store (one row; not per group)
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_settings (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    partition_interval  interval NOT NULL DEFAULT '1 day'
                        CHECK (partition_interval BETWEEN '1 hour' AND '31 days'
                               AND date_part('month', partition_interval) = 0
                               AND date_part('year', partition_interval) = 0),
    premake             integer NOT NULL DEFAULT 3 CHECK (premake BETWEEN 1 AND 100),
    rollup_delay        interval NOT NULL DEFAULT '1 minute'
                        CHECK (rollup_delay BETWEEN '0' AND '1 day'),
    rollup_retention    interval NOT NULL DEFAULT '400 days'
                        CHECK (rollup_retention BETWEEN '1 day' AND '3650 days'),
    index_mode          text NOT NULL DEFAULT 'staged'
                        CHECK (index_mode IN ('staged', 'immediate', 'deferred', 'brin')),
    -- 0.2.0: the length of the leaves of a partition in index_mode 'staged'
    stage_interval      interval NOT NULL DEFAULT '15 minutes'
                        CHECK (stage_interval BETWEEN '1 minute' AND '31 days'
                               AND date_part('month', stage_interval) = 0
                               AND date_part('year', stage_interval) = 0),
    CONSTRAINT metric_settings_stage_divides
        CHECK (extract(epoch FROM partition_interval) % extract(epoch FROM stage_interval) = 0)
);
INSERT INTO driftmirror.metric_settings DEFAULT VALUES;
COMMENT ON TABLE driftmirror.metric_settings IS
    'Settings of the metric store: partition interval, partitions made ahead, rollup delay and retention';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_settings', '');

-- ---------------------------------------------------------------------
-- metric-name dictionary
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_def (
    id          smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    unit        text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE driftmirror.metric_def IS
    'Metric names: the raw table stores the id, people and the API use the name';

INSERT INTO driftmirror.metric_def (name, unit, description, builtin) VALUES
    ('pg.xacts_per_s', '1/s', 'committed and rolled-back transactions per second in the polled database', true),
    ('pg.tup_read_per_s', '1/s', 'tuples returned and fetched per second in the polled database', true),
    ('pg.tup_written_per_s', '1/s', 'tuples inserted, updated and deleted per second in the polled database', true),
    ('pg.connections_active', 'connections', 'client backends running a statement', true),
    ('pg.connections_total', 'connections', 'client backends connected', true),
    ('pg.cache_hit_ratio', 'ratio', 'shared-buffer hits / (hits + reads) since the previous poll, 0 to 1', true),
    ('pg.wal_bytes_per_s', 'B/s', 'WAL written per second (replayed, on a standby)', true),
    ('pg.database_size', 'B', 'size of the polled database', true),
    ('pg.replication_lag_bytes', 'B', 'primary: largest replay lag of its standbys; standby: received minus replayed', true),
    ('pg.replication_lag_seconds', 's', 'standby: time since the last replayed transaction was committed on the primary', true);

SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_def', 'WHERE NOT builtin');
-- (its identity sequence too: see 20_catalog.sql)
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.metric_def', 'id'), '');

-- ---------------------------------------------------------------------
-- raw metrics
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric (
    ts          timestamptz NOT NULL,
    resource_id bigint NOT NULL,
    metric_id   smallint NOT NULL,
    value       float8 NOT NULL
                CONSTRAINT metric_value_finite
                CHECK (value > '-Infinity'::float8 AND value < 'Infinity'::float8),
    CONSTRAINT metric_ids_positive CHECK (resource_id > 0 AND metric_id > 0)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE driftmirror.metric IS
    'Raw metric samples, range-partitioned by ts; write with dm_ingest or COPY (ids from dm_metric_names and dm_resources)';
-- Indexes are made per partition by _index_partition (see index_mode; in
-- 'staged', a sealed leaf has <leaf>_series, a merged partition both of
-- the first two below, made by _merge_partition):
--   <partition>_series  btree (resource_id, metric_id, ts), no deduplication
--                       (keys are unique): "the last N hours
--                       of one metric of one resource" is an index range scan
--                       in the partitions the ts condition keeps
--   <partition>_ts      BRIN (ts): time-range scans over all series (rollups)
--   <partition>_brin    BRIN (resource_id, metric_id, ts), pages_per_range 16,
--                       made with the partition in index_mode 'brin' (then
--                       there is no <partition>_ts: this one serves time
--                       ranges too).  While the partition is open, "one
--                       series" reads the block ranges whose summaries can
--                       hold it: few when a series' rows were written
--                       together (dm_ingest), every range of the time
--                       window when many series were written interleaved

-- the partitions the store made, with the groups already purged from each
CREATE TABLE driftmirror.metric_partition (
    name          text PRIMARY KEY,
    lo            timestamptz NOT NULL,
    hi            timestamptz NOT NULL,
    purged_groups bigint[] NOT NULL DEFAULT '{}',
    indexed       boolean NOT NULL DEFAULT false,
    checked       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- 0.2.0, index_mode 'staged': the length of its leaves while it is
    -- staged (NULL: a plain table), and how far its leaves are sealed
    stage_interval interval,
    sealed_upto   timestamptz,
    -- its leaves exist from lo up to there (made as data and time need them)
    leaves_upto   timestamptz,
    CHECK (hi > lo),
    UNIQUE (lo)
);
COMMENT ON TABLE driftmirror.metric_partition IS
    'Partitions of driftmirror.metric: bounds and the groups whose expired rows were deleted';
-- dumped with the partitions (which pg_dump dumps as ordinary tables: they
-- are created at run time, not by the extension script)
SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_partition', '');

-- ---------------------------------------------------------------------
-- rollups
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_5m (
    resource_id bigint NOT NULL,
    metric_id   smallint NOT NULL,
    bucket      timestamptz NOT NULL,
    samples     integer NOT NULL,
    avg         float8 NOT NULL,
    max         float8 NOT NULL,
    p95         float8 NOT NULL,
    PRIMARY KEY (resource_id, metric_id, bucket)
);
CREATE TABLE driftmirror.metric_1h (LIKE driftmirror.metric_5m INCLUDING ALL);
COMMENT ON TABLE driftmirror.metric_5m IS
    '5-minute rollups of driftmirror.metric: sample count, average, maximum, 95th percentile';
COMMENT ON TABLE driftmirror.metric_1h IS
    '1-hour rollups of driftmirror.metric: sample count, average, maximum, 95th percentile';

-- how far each rollup is complete: every bucket ending at or before the
-- watermark has been computed from the raw rows
CREATE TABLE driftmirror.metric_rollup_state (
    level       text PRIMARY KEY CHECK (level IN ('5m', '1h')),
    width       interval NOT NULL,
    tbl         name NOT NULL,
    max_span    interval NOT NULL,
    watermark   timestamptz,
    updated_at  timestamptz
);
INSERT INTO driftmirror.metric_rollup_state (level, width, tbl, max_span) VALUES
    ('5m', '5 minutes', 'metric_5m', '1 day'),
    ('1h', '1 hour', 'metric_1h', '7 days');

GRANT INSERT ON driftmirror.metric TO driftmirror_admin;

-- ---------------------------------------------------------------------
-- collectors (pull sources polled by the worker; 55_metric_collectors.sql)
-- ---------------------------------------------------------------------
CREATE TABLE driftmirror.metric_source (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id bigint NOT NULL REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('postgres', 'prometheus', 'influxdb')),
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (resource_id, kind)
);
CREATE INDEX ON driftmirror.metric_source (group_id);
COMMENT ON TABLE driftmirror.metric_source IS
    'Pull sources of metrics: a resource polled over libpq (postgres) or through the Prometheus HTTP API';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.metric_source', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.metric_source', 'id'), '');

-- what the worker last saw of each source
CREATE TABLE driftmirror.metric_source_state (
    source_id            bigint PRIMARY KEY
                         REFERENCES driftmirror.metric_source (id) ON DELETE CASCADE,
    last_poll_at         timestamptz,
    last_ok_at           timestamptz,
    last_error           text,
    last_error_at        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    rows_last_poll       integer NOT NULL DEFAULT 0,
    rows_total           bigint NOT NULL DEFAULT 0,
    watermarks           jsonb NOT NULL DEFAULT '{}',
    -- last_error without remote text (no host, port, URL or file name):
    -- what readers other than driftmirror_admin see (0.2.0)
    last_error_label     text
);
