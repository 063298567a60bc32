-- 55_metrics.sql: the metric store: the metric-name dictionary, the
-- time-partitioned raw table, partition maintenance and retention, the
-- 5-minute and 1-hour rollups, dm_ingest and the views for people.
--
-- Layout
--   driftmirror.metric      (ts, resource_id, metric_id, value), partitioned
--                           by range of ts; one partition per
--                           metric_settings.partition_interval (default one
--                           day, aligned on 2000-01-01 00:00 UTC).  Every
--                           closed partition has a btree on (resource_id,
--                           metric_id, ts) and a BRIN; see index_mode for
--                           when they are made:
--                           'immediate' (default): btree and BRIN on ts
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
    index_mode          text NOT NULL DEFAULT 'immediate'
                        CHECK (index_mode IN ('immediate', 'deferred', 'brin'))
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
-- Indexes are made per partition by _index_partition (see index_mode):
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

-- ---------------------------------------------------------------------
-- partitions
-- ---------------------------------------------------------------------

-- _index_partition: the indexes of one partition (idempotent): the series
-- btree, and a BRIN on ts unless the partition has its index_mode 'brin'
-- BRIN already
CREATE FUNCTION driftmirror._index_partition(p_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON driftmirror.%I (resource_id, metric_id, ts) WITH (deduplicate_items = off)',
                   p_name || '_series', p_name);
    IF to_regclass(format('driftmirror.%I', p_name || '_brin')) IS NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON driftmirror.%I USING brin (ts)',
                       p_name || '_ts', p_name);
    END IF;
    UPDATE driftmirror.metric_partition SET indexed = true WHERE name = p_name;
END
$$;

-- _brin_partition: the index an open partition has in index_mode 'brin'
CREATE FUNCTION driftmirror._brin_partition(p_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON driftmirror.%I USING brin (resource_id, metric_id, ts)'
                   ' WITH (pages_per_range = 16, autosummarize = on)',
                   p_name || '_brin', p_name);
END
$$;

-- _ensure_partitions: make sure partitions cover [p_from, p_to]; returns how
-- many it created.  Bounds are aligned on the partition interval; a range
-- next to an existing partition made with another interval is clipped to
-- fit.  Creations are serialised by an advisory lock; the common case (all
-- covered) takes no lock.  Data decide the range for the collectors and
-- dm_ingest: they pass no p_max and get at most 400 partitions made by one
-- call, an error beyond (nothing is made then: the error rolls back);
-- dm_create_partitions, an explicit request, passes its own bound.
CREATE FUNCTION driftmirror._ensure_partitions(p_from timestamptz, p_to timestamptz,
                                               p_max integer DEFAULT 400)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    iv  interval;
    t   timestamptz;
    lo  timestamptz;
    hi  timestamptz;
    nm  text;
    n   integer := 0;
    cov timestamptz;
    mode text;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (
        WITH RECURSIVE walk (upto) AS (
            SELECT p.hi FROM driftmirror.metric_partition p
             WHERE p.lo <= p_from AND p.hi > p_from
            UNION ALL
            SELECT p.hi FROM walk w JOIN driftmirror.metric_partition p ON p.lo = w.upto
             WHERE w.upto <= p_to
        )
        SELECT FROM walk HAVING max(upto) > p_to) THEN
        NULL;                   -- something is missing: fall through
    ELSE
        RETURN 0;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric_partition'));
    SELECT s.partition_interval, s.index_mode INTO iv, mode FROM driftmirror.metric_settings s;
    -- refused up front when even the partitions already there leave too
    -- many to make (the loop below checks the exact count as it goes)
    IF p_max IS NOT NULL
       AND ceil(extract(epoch FROM p_to - p_from) / extract(epoch FROM iv)) + 1
           - (SELECT count(*) FROM driftmirror.metric_partition p WHERE p.hi > p_from AND p.lo <= p_to)
           > p_max THEN
        RAISE EXCEPTION 'the rows would need more than % new metric partitions', p_max
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('They span %s to %s.', p_from, p_to),
                  HINT = 'Create them first with dm_create_partitions(starts, ends), or ingest a shorter range.';
    END IF;
    t := p_from;
    WHILE t <= p_to LOOP
        SELECT p.hi INTO cov FROM driftmirror.metric_partition p
         WHERE p.lo <= t AND p.hi > t;
        IF FOUND THEN
            t := cov;
            CONTINUE;
        END IF;
        lo := date_bin(iv, t, timestamptz '2000-01-01 00:00:00+00');
        hi := lo + iv;
        lo := greatest(lo, (SELECT max(p.hi) FROM driftmirror.metric_partition p WHERE p.hi <= t));
        hi := least(hi, (SELECT min(p.lo) FROM driftmirror.metric_partition p WHERE p.lo > t));
        IF p_max IS NOT NULL AND n >= p_max THEN
            RAISE EXCEPTION 'the rows would need more than % new metric partitions', p_max
                USING ERRCODE = 'program_limit_exceeded',
                      DETAIL = format('They span %s to %s.', p_from, p_to),
                      HINT = 'Create them first with dm_create_partitions(starts, ends), or ingest a shorter range.';
        END IF;
        nm := 'metric_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
        EXECUTE format('CREATE TABLE driftmirror.%I PARTITION OF driftmirror.metric FOR VALUES FROM (%L) TO (%L)',
                       nm, lo, hi);
        EXECUTE format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', nm);
        INSERT INTO driftmirror.metric_partition (name, lo, hi) VALUES (nm, lo, hi);
        IF mode = 'immediate' THEN
            PERFORM driftmirror._index_partition(nm);
        ELSIF mode = 'brin' THEN
            PERFORM driftmirror._brin_partition(nm);
        END IF;
        n := n + 1;
        t := hi;
    END LOOP;
    RETURN n;
END
$$;

-- _group_retention: the retention of every group, as intervals
CREATE FUNCTION driftmirror._group_retention()
RETURNS TABLE (group_id bigint, retention interval)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.id,
           driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'retention')
      FROM driftmirror.resource_group g
$$;

-- _metric_retention: drop partitions no group needs, purge expired rows of
-- groups with a shorter retention.  Returns (dropped, purged rows).
CREATE FUNCTION driftmirror._metric_retention(p_now timestamptz,
                                              OUT dropped integer, OUT purged bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keep   interval;
    p      driftmirror.metric_partition;
    g      record;
    n      bigint;
BEGIN
    dropped := 0;
    purged := 0;
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric_partition'));

    -- forget partitions dropped by hand
    DELETE FROM driftmirror.metric_partition mp
     WHERE to_regclass(format('driftmirror.%I', mp.name)) IS NULL;

    SELECT coalesce(max(r.retention),
                    driftmirror._opt_interval((SELECT o.default_value FROM driftmirror.option_def o
                                                WHERE o.scope = 'group' AND o.key = 'retention')))
      INTO keep FROM driftmirror._group_retention() r;

    FOR p IN SELECT * FROM driftmirror.metric_partition mp
              WHERE mp.hi <= p_now - keep ORDER BY mp.lo
    LOOP
        EXECUTE format('DROP TABLE driftmirror.%I', p.name);
        DELETE FROM driftmirror.metric_partition mp WHERE mp.name = p.name;
        dropped := dropped + 1;
    END LOOP;

    FOR g IN
        SELECT mp.name, r.group_id
          FROM driftmirror.metric_partition mp
          JOIN driftmirror._group_retention() r ON mp.hi <= p_now - r.retention
         WHERE NOT r.group_id = ANY (mp.purged_groups)
         ORDER BY mp.lo, r.group_id
    LOOP
        EXECUTE format('DELETE FROM driftmirror.%I m USING driftmirror.resource r
                         WHERE r.group_id = $1 AND m.resource_id = r.id', g.name)
          USING g.group_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        purged := purged + n;
        UPDATE driftmirror.metric_partition mp
           SET purged_groups = mp.purged_groups || g.group_id
         WHERE mp.name = g.name;
    END LOOP;
END
$$;

-- _metric_rollup: compute the closed buckets of one rollup level after its
-- watermark, at most max_span of raw data per call; returns the number of
-- bucket rows written.  Rows arriving later for buckets already rolled up
-- are not seen: call dm_rollup(from, to) after a backfill.
CREATE FUNCTION driftmirror._metric_rollup(p_level text, p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st     driftmirror.metric_rollup_state;
    delay  interval;
    w      timestamptz;
    upto   timestamptz;
    n      bigint;
BEGIN
    SELECT * INTO st FROM driftmirror.metric_rollup_state s WHERE s.level = p_level FOR UPDATE;
    SELECT s.rollup_delay INTO delay FROM driftmirror.metric_settings s;
    w := coalesce(st.watermark,
                  date_bin(st.width, (SELECT min(mp.lo) FROM driftmirror.metric_partition mp),
                           timestamptz '2000-01-01 00:00:00+00'));
    IF w IS NULL THEN
        RETURN 0;               -- no partitions yet
    END IF;
    upto := date_bin(st.width, p_now - delay, timestamptz '2000-01-01 00:00:00+00');
    upto := least(upto, w + st.max_span);
    IF upto <= w THEN
        RETURN 0;
    END IF;
    n := driftmirror._rollup_range(st, w, upto);
    UPDATE driftmirror.metric_rollup_state s
       SET watermark = upto, updated_at = clock_timestamp()
     WHERE s.level = p_level;
    RETURN n;
END
$$;

-- _rollup_range: (re)compute the buckets of one level in [p_from, p_to)
CREATE FUNCTION driftmirror._rollup_range(st driftmirror.metric_rollup_state,
                                          p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        INSERT INTO driftmirror.%1$I AS r (resource_id, metric_id, bucket, samples, avg, max, p95)
        SELECT m.resource_id, m.metric_id,
               date_bin($1, m.ts, timestamptz '2000-01-01 00:00:00+00'),
               count(*), avg(m.value), max(m.value),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY m.value)
          FROM driftmirror.metric m
         WHERE m.ts >= $2 AND m.ts < $3
         GROUP BY 1, 2, 3
        ON CONFLICT (resource_id, metric_id, bucket) DO UPDATE
           SET samples = excluded.samples, avg = excluded.avg,
               max = excluded.max, p95 = excluded.p95$q$, st.tbl)
      USING st.width, p_from, p_to;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- _metric_maintenance: everything the worker does on the store, in one
-- transaction: partitions ahead, retention, rollups.  Returns a summary.
CREATE FUNCTION driftmirror._metric_maintenance(p_now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s        driftmirror.metric_settings;
    created  integer;
    ret      record;
    r5       bigint;
    r1       bigint;
    rdel     bigint := 0;
    n        bigint;
    nm       text;
    orphans  bigint := 0;
    indexed  integer := 0;
    summarized bigint := 0;
BEGIN
    SELECT * INTO s FROM driftmirror.metric_settings;
    created := driftmirror._ensure_partitions(p_now, p_now + s.premake * s.partition_interval);
    SELECT * INTO ret FROM driftmirror._metric_retention(p_now);
    -- closed partitions: drop rows naming no resource or metric (COPY does
    -- not check ids), then index them if that was deferred
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE mp.hi <= p_now AND NOT mp.checked ORDER BY mp.lo LOOP
        EXECUTE format('DELETE FROM driftmirror.%I m
                         WHERE NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = m.resource_id)
                            OR NOT EXISTS (SELECT FROM driftmirror.metric_def d WHERE d.id = m.metric_id)', nm);
        GET DIAGNOSTICS n = ROW_COUNT;
        orphans := orphans + n;
        UPDATE driftmirror.metric_partition mp SET checked = true WHERE mp.name = nm;
    END LOOP;
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE mp.hi <= p_now AND NOT mp.indexed ORDER BY mp.lo LOOP
        PERFORM driftmirror._index_partition(nm);
        indexed := indexed + 1;
    END LOOP;
    -- open partitions with a BRIN: summarise the block ranges filled since
    -- the last pass (autosummarize also asks autovacuum to)
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE NOT mp.indexed
                 AND to_regclass(format('driftmirror.%I', mp.name || '_brin')) IS NOT NULL
               ORDER BY mp.lo LOOP
        summarized := summarized + brin_summarize_new_values(format('driftmirror.%I', nm || '_brin')::regclass);
    END LOOP;
    r5 := driftmirror._metric_rollup('5m', p_now);
    r1 := driftmirror._metric_rollup('1h', p_now);
    DELETE FROM driftmirror.metric_5m WHERE bucket < p_now - s.rollup_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    rdel := rdel + n;
    DELETE FROM driftmirror.metric_1h WHERE bucket < p_now - s.rollup_retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    rdel := rdel + n;
    RETURN jsonb_build_object('partitions_created', created,
                              'partitions_dropped', ret.dropped,
                              'rows_purged', ret.purged,
                              'orphan_rows_deleted', orphans,
                              'partitions_indexed', indexed,
                              'brin_ranges_summarized', summarized,
                              'rollup_5m_rows', r5,
                              'rollup_1h_rows', r1,
                              'rollup_rows_deleted', rdel);
END
$$;

CREATE FUNCTION driftmirror.dm_run_maintenance()
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    summary jsonb;
BEGIN
    summary := driftmirror._metric_maintenance(now());
    PERFORM driftmirror._log_action('', NULL, 'run_maintenance', 'dm_run_maintenance', summary);
    RETURN summary;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_run_maintenance() IS
    'Run the metric store maintenance now (the worker also runs it): partitions ahead, retention, rollups';

CREATE FUNCTION driftmirror.dm_create_partitions(starts timestamptz, ends timestamptz)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF starts IS NULL OR ends IS NULL THEN
        RAISE EXCEPTION 'partition range bounds must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(starts) OR NOT isfinite(ends) OR ends < starts
       OR starts < now() - interval '3650 days' OR ends > now() + interval '400 days' THEN
        RAISE EXCEPTION 'invalid partition range from % to %', starts, ends
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The range must be finite, ordered, and within 3650 days before and 400 days after now.';
    END IF;
    n := driftmirror._ensure_partitions(starts, ends, NULL);
    PERFORM driftmirror._log_action('', NULL, 'create_partitions', 'dm_create_partitions',
                                    jsonb_build_object('starts', starts, 'ends', ends, 'created', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_create_partitions(timestamptz, timestamptz) IS
    'Create the metric partitions covering a time range (before a COPY of old data); returns how many were created';

CREATE FUNCTION driftmirror.dm_rollup(starts timestamptz, ends timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st driftmirror.metric_rollup_state;
    n  bigint := 0;
BEGIN
    IF starts IS NULL OR ends IS NULL OR NOT isfinite(starts) OR NOT isfinite(ends) OR ends < starts THEN
        RAISE EXCEPTION 'invalid rollup range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Both bounds must be finite and not null, and ends must not be before starts.';
    END IF;
    FOR st IN SELECT * FROM driftmirror.metric_rollup_state ORDER BY width LOOP
        n := n + driftmirror._rollup_range(st,
                    date_bin(st.width, starts, timestamptz '2000-01-01 00:00:00+00'),
                    date_bin(st.width, ends, timestamptz '2000-01-01 00:00:00+00') + st.width);
    END LOOP;
    PERFORM driftmirror._log_action('', NULL, 'rollup', 'dm_rollup',
                                    jsonb_build_object('starts', starts, 'ends', ends, 'rows', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_rollup(timestamptz, timestamptz) IS
    'Recompute the 5-minute and 1-hour rollups of the buckets touching a time range (after a backfill)';

CREATE FUNCTION driftmirror.dm_set_metric_settings(settings jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION 'metric settings must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(settings) LOOP
        IF k NOT IN ('partition_interval', 'premake', 'rollup_delay', 'rollup_retention', 'index_mode') THEN
            RAISE EXCEPTION 'unknown metric setting "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known settings: partition_interval, premake, rollup_delay, rollup_retention, index_mode.';
        END IF;
    END LOOP;
    BEGIN
        UPDATE driftmirror.metric_settings s
           SET partition_interval = coalesce(driftmirror._opt_interval(settings -> 'partition_interval'),
                                             s.partition_interval),
               premake = coalesce((settings ->> 'premake')::integer, s.premake),
               rollup_delay = coalesce(driftmirror._opt_interval(settings -> 'rollup_delay'),
                                       s.rollup_delay),
               rollup_retention = coalesce(driftmirror._opt_interval(settings -> 'rollup_retention'),
                                           s.rollup_retention),
               index_mode = coalesce(settings ->> 'index_mode', s.index_mode);
    EXCEPTION WHEN check_violation OR data_exception OR syntax_error THEN
        RAISE EXCEPTION 'invalid metric settings %', settings
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'partition_interval: 1 hour to 31 days without months; premake: 1 to 100; rollup_delay: 0 to 1 day; rollup_retention: 1 to 3650 days; index_mode: brin, immediate or deferred.';
    END;
    PERFORM driftmirror._log_action('', NULL, 'set_metric_settings', 'dm_set_metric_settings',
                                    jsonb_build_object('settings', settings));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_set_metric_settings(jsonb) IS
    'Change metric store settings; partition_interval and index_mode apply to partitions created from now on';

-- ---------------------------------------------------------------------
-- names and ingest
-- ---------------------------------------------------------------------
CREATE FUNCTION driftmirror._check_metric_name(p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name IS NULL THEN
        RAISE EXCEPTION 'metric name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_name !~ '^[a-z_][a-z0-9_.:]{0,62}$' THEN
        RAISE EXCEPTION 'invalid metric name "%"', p_name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A metric name has 1 to 63 characters: lower-case letters, digits, "_", "." and ":", and starts with a letter or "_".';
    END IF;
END
$$;

CREATE FUNCTION driftmirror.dm_register_metric(name text, unit text DEFAULT '',
                                               description text DEFAULT '')
RETURNS smallint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    mid    smallint;
BEGIN
    PERFORM driftmirror._check_metric_name(p_name);
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric:' || p_name));
    IF EXISTS (SELECT FROM driftmirror.metric_def m WHERE m.name = p_name) THEN
        RAISE EXCEPTION 'metric "%" is already registered', p_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO driftmirror.metric_def (name, unit, description)
    VALUES (p_name, coalesce(unit, ''), coalesce(description, ''))
    RETURNING id INTO mid;
    PERFORM driftmirror._log_action('', NULL, 'register_metric', 'dm_register_metric',
                                    jsonb_build_object('name', p_name, 'id', mid, 'unit', coalesce(unit, '')));
    RETURN mid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_register_metric(text, text, text) IS
    'Register a metric name (with unit and description) so that it can be ingested; returns its id';

-- _ingest_target: resolve the names of a dm_ingest call; raises an error
-- naming the unknown one.  Also returns the accepted time range.
CREATE FUNCTION driftmirror._ingest_target(p_group text, p_resource text, p_metric text,
                                           OUT resource_id bigint, OUT metric_id smallint,
                                           OUT ts_min timestamptz, OUT ts_max timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid bigint;
    ret interval;
BEGIN
    gid := driftmirror._group_id(p_group, false);
    resource_id := driftmirror._resource_id(gid, p_group, p_resource);
    IF p_metric IS NULL THEN
        RAISE EXCEPTION 'metric name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT m.id INTO metric_id FROM driftmirror.metric_def m WHERE m.name = p_metric;
    IF metric_id IS NULL THEN
        RAISE EXCEPTION 'metric "%" is not registered', p_metric
            USING ERRCODE = 'undefined_object',
                  HINT = 'Register it first with dm_register_metric(name, unit, description); dm_metric_names lists the known names.';
    END IF;
    SELECT r.retention INTO ret FROM driftmirror._group_retention() r WHERE r.group_id = gid;
    ts_min := now() - ret;
    ts_max := now() + interval '1 day';
END
$$;

CREATE FUNCTION driftmirror.dm_ingest("group" text, resource text, metric text,
                                      ts timestamptz[], val float8[])
RETURNS bigint
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'driftmirror_dm_ingest';
COMMENT ON FUNCTION driftmirror.dm_ingest(text, text, text, timestamptz[], float8[]) IS
    'Store samples of one metric of one resource; checks every element first and writes all or nothing; returns rows written';

-- ---------------------------------------------------------------------
-- views
-- ---------------------------------------------------------------------
CREATE VIEW driftmirror.dm_metric_names AS
SELECT m.id, m.name, m.unit, m.description, m.builtin
  FROM driftmirror.metric_def m;
COMMENT ON VIEW driftmirror.dm_metric_names IS
    'Registered metric names with their ids (for COPY into driftmirror.metric) and units';

CREATE VIEW driftmirror.dm_metrics AS
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

CREATE VIEW driftmirror.dm_metric_rollups AS
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

CREATE VIEW driftmirror.dm_metric_partitions AS
SELECT p.name, p.lo, p.hi,
       pg_catalog.pg_total_relation_size(format('driftmirror.%I', p.name)::regclass) AS bytes,
       p.purged_groups, p.created_at
  FROM driftmirror.metric_partition p
 WHERE to_regclass(format('driftmirror.%I', p.name)) IS NOT NULL;
COMMENT ON VIEW driftmirror.dm_metric_partitions IS
    'Partitions of the raw metric table with their bounds and size';

GRANT INSERT ON driftmirror.metric TO driftmirror_admin;

-- _http_request: the HTTP layer from SQL (owner-only; tests and diagnosis)
CREATE FUNCTION driftmirror._http_request(method text, url text, req_body text DEFAULT NULL,
                                          timeout_ms integer DEFAULT 10000,
                                          max_retries integer DEFAULT 0,
                                          bearer_token text DEFAULT NULL,
                                          OUT ok boolean, OUT status integer,
                                          OUT body text, OUT error text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_http_request';

-- ---------------------------------------------------------------------
-- collectors (pull sources polled by the worker)
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

-- _source_config: check the configuration of a source; returns it with
-- the names of its metrics (registered on the way for prometheus queries)
CREATE FUNCTION driftmirror._source_config(p_kind text, p_resource_kind text, p_config jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k       text;
    v       jsonb;
    allowed text[];
    iv      interval;
    maxiv   interval;
BEGIN
    IF p_config IS NULL OR jsonb_typeof(p_config) <> 'object' THEN
        RAISE EXCEPTION 'metric source configuration must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_kind IS NULL THEN
        RAISE EXCEPTION 'metric source kind must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    CASE p_kind
    WHEN 'postgres' THEN
        allowed := '{timeout,max_backoff}';
        IF p_resource_kind <> 'postgres' THEN
            RAISE EXCEPTION 'a postgres metric source needs a postgres resource, not a % resource', p_resource_kind
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'prometheus' THEN
        allowed := '{url,queries,units,step,lookback,timeout,max_backoff,bearer_token_file}';
        IF p_config ? 'bearer_token' THEN
            RAISE EXCEPTION 'inline bearer_token is not accepted: give bearer_token_file'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A token stored in the catalog would be readable in pg_dump output and backups.',
                      HINT = 'Write the token to a file of the driftmirror_secrets directory of the data directory and give its name as bearer_token_file.';
        END IF;
    WHEN 'influxdb' THEN
        -- InfluxDB 1.x: InfluxQL over /query, no authentication yet
        allowed := '{url,database,queries,units,step,lookback,timeout,max_backoff}';
    ELSE
        RAISE EXCEPTION 'unknown metric source kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known kinds: postgres, prometheus, influxdb.';
    END CASE;

    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_config) e ORDER BY e.key LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown % metric source setting "%"', p_kind, k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Known settings: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k IN ('timeout', 'max_backoff', 'step', 'lookback') THEN
            BEGIN
                iv := driftmirror._opt_interval(v);
            EXCEPTION WHEN data_exception OR syntax_error THEN
                iv := NULL;
            END;
            maxiv := CASE k WHEN 'timeout' THEN interval '60 seconds'
                            WHEN 'lookback' THEN interval '1 day'
                            ELSE interval '1 hour' END;
            IF iv IS NULL OR iv < interval '1 second' OR iv > maxiv THEN
                RAISE EXCEPTION 'invalid value for metric source setting "%": %', k, v
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'The value must be an interval from 1 second to 60 seconds (timeout), 1 day (lookback) or 1 hour (step, max_backoff).';
            END IF;
        ELSIF k IN ('url', 'bearer_token_file') AND jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION 'metric source setting "%" must be a string', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    IF p_kind IN ('prometheus', 'influxdb') THEN
        IF NOT p_config ? 'url' THEN
            RAISE EXCEPTION 'a % metric source needs a "url"', p_kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = CASE p_kind
                             WHEN 'prometheus' THEN 'For example {"url": "http://127.0.0.1:9090", "queries": {"app.cpu": "sum(rate(process_cpu_seconds_total[1m]))"}}.'
                             ELSE 'For example {"url": "http://127.0.0.1:8086", "database": "telegraf", "queries": {"app.cpu": "SELECT mean(usage_user) FROM cpu WHERE $timeFilter GROUP BY time(10s) fill(none)"}}.' END;
        END IF;
        IF p_kind = 'influxdb' AND coalesce(p_config ->> 'database', '') !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$' THEN
            RAISE EXCEPTION 'an influxdb metric source needs a "database": a name of letters, digits, "_", "." or "-"'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM driftmirror._check_endpoint('web', p_config ->> 'url');
        IF jsonb_typeof(p_config -> 'queries') IS DISTINCT FROM 'object'
           OR NOT EXISTS (SELECT FROM jsonb_object_keys(p_config -> 'queries')) THEN
            RAISE EXCEPTION 'a % metric source needs "queries": an object of metric name to %', p_kind,
                            CASE p_kind WHEN 'prometheus' THEN 'PromQL' ELSE 'InfluxQL' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(p_config -> 'queries')) > 100 THEN
            RAISE EXCEPTION 'a % metric source has at most 100 queries', p_kind
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_config -> 'queries') e ORDER BY e.key LOOP
            PERFORM driftmirror._check_metric_name(k);
            IF jsonb_typeof(v) <> 'string' OR length(v #>> '{}') NOT BETWEEN 1 AND 4000 THEN
                RAISE EXCEPTION 'the % query of metric "%" must be a string of 1 to 4000 characters',
                                CASE p_kind WHEN 'prometheus' THEN 'PromQL' ELSE 'InfluxQL' END, k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            -- the collector puts the window it asks for where $timeFilter is
            IF p_kind = 'influxdb' AND strpos(v #>> '{}', '$timeFilter') = 0 THEN
                RAISE EXCEPTION 'the InfluxQL query of metric "%" must contain $timeFilter', k
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Write WHERE $timeFilter (or WHERE ... AND $timeFilter); the collector replaces it with the time window of each poll.';
            END IF;
            IF k LIKE 'pg.%' THEN
                RAISE EXCEPTION 'metric names starting with "pg." are reserved for the postgres collector'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF p_config ? 'units' AND jsonb_typeof(p_config -> 'units') <> 'object' THEN
            RAISE EXCEPTION 'metric source setting "units" must be an object of metric name to unit'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p_config ? 'bearer_token_file'
           AND (p_config ->> 'bearer_token_file') !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$' THEN
            RAISE EXCEPTION 'bearer_token_file must be a plain file name'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The file is read from the driftmirror_secrets directory of the data directory; no paths.';
        END IF;
        IF p_config ? 'bearer_token_file' THEN
            -- the token is sent to this URL: who may choose it (35_resources.sql)
            PERFORM driftmirror._check_endpoint_delegated('metric source URL', p_config ->> 'url');
        END IF;
        -- the query names become metric names
        INSERT INTO driftmirror.metric_def (name, unit, description)
        SELECT q.key, coalesce(p_config -> 'units' ->> q.key, ''),
               CASE p_kind WHEN 'prometheus' THEN 'Prometheus: ' ELSE 'InfluxDB: ' END
               || left(q.value #>> '{}', 200)
          FROM jsonb_each(p_config -> 'queries') q
        ON CONFLICT (name) DO NOTHING;
    END IF;
    RETURN p_config;
END
$$;

CREATE FUNCTION driftmirror.dm_add_metric_source("group" text, resource text, kind text,
                                                 config jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group    ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_kind     ALIAS FOR $3;
    gid        bigint;
    rid        bigint;
    rkind      text;
    cfg        jsonb;
    sid        bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT r.kind INTO rkind FROM driftmirror.resource r WHERE r.id = rid;
    cfg := driftmirror._source_config(p_kind, rkind, config);
    IF EXISTS (SELECT FROM driftmirror.metric_source s WHERE s.resource_id = rid AND s.kind = p_kind) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a % metric source', p_resource, p_group, p_kind
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Remove it first with dm_remove_metric_source.';
    END IF;
    INSERT INTO driftmirror.metric_source (group_id, resource_id, kind, config)
    VALUES (gid, rid, p_kind, cfg)
    RETURNING id INTO sid;
    INSERT INTO driftmirror.metric_source_state (source_id) VALUES (sid);
    PERFORM driftmirror._log_action(p_group, p_resource, 'add_metric_source', 'dm_add_metric_source',
                                    jsonb_build_object('kind', p_kind,
                                                       'config', cfg - 'bearer_token_file' - 'url'));
    RETURN sid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_add_metric_source(text, text, text, jsonb) IS
    'Have the worker poll a resource for metrics: kind postgres (libpq) or prometheus (query_range); returns the source id';

CREATE FUNCTION driftmirror.dm_remove_metric_source("group" text, resource text, kind text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group    ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_kind     ALIAS FOR $3;
    gid        bigint;
    rid        bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    DELETE FROM driftmirror.metric_source s WHERE s.resource_id = rid AND s.kind = p_kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no % metric source', p_resource, p_group, p_kind
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM driftmirror._log_action(p_group, p_resource, 'remove_metric_source',
                                    'dm_remove_metric_source', jsonb_build_object('kind', p_kind));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_remove_metric_source(text, text, text) IS
    'Stop polling a metric source; samples already stored stay';

-- _due_sources: sources of the given groups whose next attempt is due.
-- Runs in the worker's read transaction; the I/O happens after it.
CREATE FUNCTION driftmirror._due_sources(p_group_ids bigint[])
RETURNS TABLE (source_id bigint, resource_id bigint, kind text, endpoint text,
               config jsonb, interval_ms bigint, watermarks jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, s.resource_id, s.kind,
           CASE s.kind WHEN 'postgres' THEN r.endpoint ELSE s.config ->> 'url' END,
           s.config,
           (extract(epoch FROM driftmirror._opt_interval(
                driftmirror._effective_options('group', g.options) -> 'interval')) * 1000)::bigint,
           coalesce(st.watermarks, '{}')
      FROM driftmirror.metric_source s
      JOIN driftmirror.resource r ON r.id = s.resource_id
      JOIN driftmirror.resource_group g ON g.id = s.group_id
      LEFT JOIN driftmirror.metric_source_state st ON st.source_id = s.id
     WHERE s.group_id = ANY (p_group_ids)
       AND (st.next_attempt_at IS NULL OR st.next_attempt_at <= clock_timestamp())
     ORDER BY s.id
$$;

-- _store_samples: write collected samples; returns rows written.  Rows of
-- resources removed meanwhile are dropped, and so are rows outside what
-- dm_ingest accepts (older than the group's retention, later than now plus
-- one day): a source's data never decide which partitions exist beyond that.
CREATE FUNCTION driftmirror._store_samples(p_ts timestamptz[], p_rid bigint[],
                                           p_mid smallint[], p_val float8[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n   bigint;
    lo  timestamptz;
    hi  timestamptz;
    ts  timestamptz[];
    rid bigint[];
    mid smallint[];
    val float8[];
BEGIN
    IF cardinality(p_ts) = 0 THEN
        RETURN 0;
    END IF;
    SELECT array_agg(u.t), array_agg(u.rid), array_agg(u.mid), array_agg(u.v), min(u.t), max(u.t)
      INTO ts, rid, mid, val, lo, hi
      FROM unnest(p_ts, p_rid, p_mid, p_val) AS u (t, rid, mid, v)
      JOIN (SELECT r.id,
                   now() - driftmirror._opt_interval(
                       driftmirror._effective_options('group', g.options) -> 'retention') AS oldest
              FROM driftmirror.resource r
              JOIN driftmirror.resource_group g ON g.id = r.group_id
             WHERE r.id = ANY (p_rid)) k ON k.id = u.rid
     WHERE u.t >= k.oldest AND u.t <= now() + interval '1 day';
    IF ts IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM driftmirror._ensure_partitions(lo, hi);
    INSERT INTO driftmirror.metric (ts, resource_id, metric_id, value)
    SELECT u.t, u.rid, u.mid, u.v FROM unnest(ts, rid, mid, val) AS u (t, rid, mid, v);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- _record_polls: the outcome of one pass's polls.  A failure backs the
-- source off exponentially: its group's interval times 2^(failures-1), at
-- most max_backoff (default 60 s).  The first failure of a run and the
-- recovery are logged as actions.
CREATE FUNCTION driftmirror._record_polls(p_source bigint[], p_ok boolean[], p_error text[],
                                          p_rows integer[], p_watermarks jsonb[],
                                          p_label text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH u AS (
            SELECT * FROM unnest(p_source, p_ok, p_error, p_rows, p_watermarks, p_label)
                       AS u (source_id, ok, error, nrows, wm, label)
        ), upd AS (
            UPDATE driftmirror.metric_source_state st
               SET last_poll_at = clock_timestamp(),
                   last_ok_at = CASE WHEN u.ok THEN clock_timestamp() ELSE st.last_ok_at END,
                   last_error = CASE WHEN u.ok THEN st.last_error ELSE u.error END,
                   last_error_label = CASE WHEN u.ok THEN st.last_error_label ELSE u.label END,
                   last_error_at = CASE WHEN u.ok THEN st.last_error_at ELSE clock_timestamp() END,
                   consecutive_failures = CASE WHEN u.ok THEN 0 ELSE st.consecutive_failures + 1 END,
                   next_attempt_at = CASE WHEN u.ok THEN NULL
                       ELSE clock_timestamp() + least(
                            coalesce(driftmirror._opt_interval(s.config -> 'max_backoff'), interval '60 seconds'),
                            driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval')
                              * power(2, least(st.consecutive_failures, 20)))
                       END,
                   rows_last_poll = u.nrows,
                   rows_total = st.rows_total + u.nrows,
                   watermarks = coalesce(u.wm, st.watermarks)
              FROM u, driftmirror.metric_source s, driftmirror.resource_group g
             WHERE st.source_id = u.source_id AND s.id = u.source_id AND g.id = s.group_id
            RETURNING st.source_id, u.ok, u.error, u.label, st.consecutive_failures, s.kind,
                      s.resource_id, g.name AS group_name
        ), old AS (
            SELECT st.source_id, st.consecutive_failures AS old_failures
              FROM driftmirror.metric_source_state st
             WHERE st.source_id = ANY (p_source)
        )
        SELECT upd.*, old.old_failures, res.name AS resource_name
          FROM upd
          JOIN old ON old.source_id = upd.source_id
          JOIN driftmirror.resource res ON res.id = upd.resource_id
         WHERE (NOT upd.ok AND upd.consecutive_failures = 1)
            OR (upd.ok AND old.old_failures > 0)
    LOOP
        IF r.ok THEN
            PERFORM driftmirror._log_action(r.group_name, r.resource_name, 'metric_source_recovered',
                format('%s metric source polled again after %s failed poll(s)', r.kind, r.old_failures));
        ELSE
            PERFORM driftmirror._log_action(r.group_name, r.resource_name, 'metric_source_failed',
                format('%s metric source failed: %s', r.kind, r.error),
                jsonb_build_object('label', r.label), 'failed');
        END IF;
    END LOOP;
END
$$;

CREATE VIEW driftmirror.dm_metric_sources AS
SELECT g.name AS group_name,
       r.name AS resource_name,
       s.kind,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN s.config
            ELSE s.config - 'url' - 'bearer_token_file' END AS config,
       CASE WHEN st.last_poll_at IS NULL THEN 'pending'
            WHEN st.consecutive_failures > 0 THEN 'failing'
            ELSE 'ok' END AS state,
       st.last_poll_at,
       st.last_ok_at,
       -- raw text (libpq, libcurl, the server) names hosts: admins only
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN st.last_error ELSE st.last_error_label END AS last_error,
       st.last_error_at,
       coalesce(st.consecutive_failures, 0) AS consecutive_failures,
       st.next_attempt_at,
       coalesce(st.rows_last_poll, 0) AS rows_last_poll,
       coalesce(st.rows_total, 0) AS rows_total,
       s.id,
       s.created_at
  FROM driftmirror.metric_source s
  JOIN driftmirror.resource r ON r.id = s.resource_id
  JOIN driftmirror.resource_group g ON g.id = s.group_id
  LEFT JOIN driftmirror.metric_source_state st ON st.source_id = s.id;
COMMENT ON VIEW driftmirror.dm_metric_sources IS
    'Metric sources with their last poll, last error and next attempt; URLs, token file names and raw error text (a label instead) hidden from non-admins';
