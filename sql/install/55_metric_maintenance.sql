-- 55_metric_maintenance.sql: partitions of the raw metric table (created
-- ahead, indexed, dropped by retention), the 5-minute and 1-hour rollups,
-- the maintenance pass the worker runs, and the functions that do each by
-- hand (dm_run_maintenance, dm_create_partitions, dm_rollup,
-- dm_set_metric_settings).  Layout and retention rules:
-- 55_metric_catalog.sql.  Functions and their comments only, each CREATE OR
-- REPLACE: the update from 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/43_metric_code.include).

-- ---------------------------------------------------------------------
-- partitions
-- ---------------------------------------------------------------------

-- _index_partition: the indexes of one partition (idempotent): the series
-- btree, and a BRIN on ts unless the partition has its index_mode 'brin'
-- BRIN already
CREATE OR REPLACE FUNCTION driftmirror._index_partition(p_name text)
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
CREATE OR REPLACE FUNCTION driftmirror._brin_partition(p_name text)
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

-- _stage_leaves: the leaves of a staged partition [p_lo, p_hi): the
-- p_stage grid (aligned on 2000-01-01 00:00 UTC) clipped to the partition,
-- each named after its start in UTC (stage intervals are whole minutes or
-- more, so names are unique)
CREATE OR REPLACE FUNCTION driftmirror._stage_leaves(p_lo timestamptz, p_hi timestamptz,
                                          p_stage interval)
RETURNS TABLE (name text, lo timestamptz, hi timestamptz)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'metric_s' || to_char(greatest(g, p_lo) AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI'),
           greatest(g, p_lo), least(g + p_stage, p_hi)
      FROM generate_series(date_bin(p_stage, p_lo, timestamptz '2000-01-01 00:00:00+00'),
                           p_hi - interval '1 microsecond', p_stage) g
     ORDER BY g
$$;

-- _missing_leaves: the staged partitions overlapping [p_from, p_to] whose
-- leaves do not reach p_to yet (metric_partition.leaves_upto: a staged
-- partition has its leaves from its start up to there), with how far they
-- must reach (PL/pgSQL: the update from 0.1.0 creates it before the columns
-- it reads)
CREATE OR REPLACE FUNCTION driftmirror._missing_leaves(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (name text, upto timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.name, least(p_to, p.hi - interval '1 microsecond')
      FROM driftmirror.metric_partition p
     WHERE p.stage_interval IS NOT NULL AND p.lo <= p_to AND p.hi > p_from
       AND coalesce(p.leaves_upto, p.lo) <= least(p_to, p.hi - interval '1 microsecond')
       AND to_regclass(format('driftmirror.%I', p.name)) IS NOT NULL
     ORDER BY p.lo;
END
$$;

-- _make_leaves: create the leaves of the staged partition p_name from where
-- they end up to the one holding p_upto, owner-only like the partitions.
-- A leaf is never scanned in parallel (parallel_workers = 0): it is small,
-- and its estimates before autovacuum's first ANALYZE made the planner start
-- workers for "one series", 8 ms of start-up for a query of 0.2 ms
CREATE OR REPLACE FUNCTION driftmirror._make_leaves(p_name text, p_upto timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p    driftmirror.metric_partition;
    leaf record;
BEGIN
    SELECT * INTO STRICT p FROM driftmirror.metric_partition mp WHERE mp.name = p_name FOR UPDATE;
    FOR leaf IN SELECT * FROM driftmirror._stage_leaves(p.lo, p.hi, p.stage_interval) l
                 WHERE l.hi > coalesce(p.leaves_upto, p.lo) AND l.lo <= p_upto LOOP
        EXECUTE format('CREATE TABLE driftmirror.%I PARTITION OF driftmirror.%I FOR VALUES FROM (%L) TO (%L)'
                       ' WITH (parallel_workers = 0)', leaf.name, p_name, leaf.lo, leaf.hi);
        EXECUTE format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', leaf.name);
        UPDATE driftmirror.metric_partition mp SET leaves_upto = leaf.hi WHERE mp.name = p_name;
    END LOOP;
END
$$;

-- _merge_candidate: the staged partition the maintenance at p_now merges:
-- the oldest whose end is rollup_delay (the grace late rows get) before
-- p_now; NULL if none
CREATE OR REPLACE FUNCTION driftmirror._merge_candidate(p_now timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT mp.name
              FROM driftmirror.metric_partition mp, driftmirror.metric_settings s
             WHERE mp.stage_interval IS NOT NULL AND mp.hi <= p_now - s.rollup_delay
             ORDER BY mp.lo LIMIT 1);
END
$$;

-- _seal_leaves: give every leaf of a staged partition whose end is
-- rollup_delay (the grace late rows get) before p_now its series btree, by
-- a sorted CREATE INDEX; returns how many leaves it sealed.  Leaves are
-- sealed in time order, as far as they are made: metric_partition.sealed_upto
-- says how far.  The
-- build holds a SHARE lock on the leaf: a late row for it waits until the
-- maintenance commits, then pays a normal btree insertion.  The partition
-- this pass merges (_merge_candidate) is skipped: the merge builds its
-- btree anyway (only a backlog has leaves left unsealed there).
CREATE OR REPLACE FUNCTION driftmirror._seal_leaves(p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    upto timestamptz;
    p    driftmirror.metric_partition;
    leaf record;
    n    integer := 0;
BEGIN
    SELECT p_now - s.rollup_delay INTO upto FROM driftmirror.metric_settings s;
    FOR p IN SELECT * FROM driftmirror.metric_partition mp
              WHERE mp.stage_interval IS NOT NULL
                AND coalesce(mp.sealed_upto, mp.lo) < least(mp.hi, upto)
                AND mp.name IS DISTINCT FROM driftmirror._merge_candidate(p_now)
              ORDER BY mp.lo LOOP
        FOR leaf IN SELECT * FROM driftmirror._stage_leaves(p.lo, p.hi, p.stage_interval) l
                     WHERE l.hi > coalesce(p.sealed_upto, p.lo) AND l.hi <= upto
                       AND l.hi <= coalesce(p.leaves_upto, p.lo) LOOP
            -- (a leaf dropped by hand has nothing to seal)
            IF to_regclass(format('driftmirror.%I', leaf.name)) IS NOT NULL THEN
                EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON driftmirror.%I (resource_id, metric_id, ts) WITH (deduplicate_items = off)',
                               leaf.name || '_series', leaf.name);
                n := n + 1;
            END IF;
            UPDATE driftmirror.metric_partition mp SET sealed_upto = leaf.hi WHERE mp.name = p.name;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;

-- _merge_partition: replace the staged partition p_name, once closed, by one
-- plain table holding the same rows sorted by (resource_id, metric_id, ts),
-- with the series btree and the BRIN on ts built after the copy; returns the
-- rows copied, or NULL if p_name is not a staged partition.  The partition
-- and its leaves are locked against writes (SHARE) for the copy, reads go
-- on; the swap (DETACH, DROP, RENAME, ATTACH) takes an ACCESS EXCLUSIVE
-- lock on driftmirror.metric, held until the caller commits.  A lock not
-- granted within lock_timeout raises lock_not_available (55P03): the caller
-- catches it and tries again on its next pass, so a writer holding the
-- partition is never waited for long, and a late row written before the
-- copy is copied, one written after the swap goes into the new table.  The
-- bound CHECK made with the table lets ATTACH skip its validating scan.
CREATE OR REPLACE FUNCTION driftmirror._merge_partition(p_name text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '500ms'
AS $$
DECLARE
    p   driftmirror.metric_partition;
    tmp text := p_name || '_merge';
    wm  text := current_setting('work_mem');
    n   bigint;
BEGIN
    SELECT * INTO p FROM driftmirror.metric_partition mp WHERE mp.name = p_name FOR UPDATE;
    IF NOT FOUND OR p.stage_interval IS NULL
       OR to_regclass(format('driftmirror.%I', p_name)) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('LOCK TABLE driftmirror.%I IN SHARE MODE', p_name);
    EXECUTE format('CREATE TABLE driftmirror.%I (LIKE driftmirror.metric INCLUDING CONSTRAINTS,'
                   ' CONSTRAINT %I CHECK (ts >= %L AND ts < %L))',
                   tmp, tmp || '_bound', p.lo, p.hi);
    -- the sort may use what an index build may
    PERFORM set_config('work_mem', current_setting('maintenance_work_mem'), true);
    EXECUTE format('INSERT INTO driftmirror.%I (ts, resource_id, metric_id, value)'
                   ' SELECT m.ts, m.resource_id, m.metric_id, m.value FROM driftmirror.%I m'
                   ' ORDER BY m.resource_id, m.metric_id, m.ts', tmp, p_name);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('work_mem', wm, true);
    EXECUTE format('CREATE INDEX %I ON driftmirror.%I (resource_id, metric_id, ts) WITH (deduplicate_items = off)',
                   p_name || '_series', tmp);
    EXECUTE format('CREATE INDEX %I ON driftmirror.%I USING brin (ts)', p_name || '_ts', tmp);
    EXECUTE format('ALTER TABLE driftmirror.metric DETACH PARTITION driftmirror.%I', p_name);
    EXECUTE format('DROP TABLE driftmirror.%I', p_name);
    EXECUTE format('ALTER TABLE driftmirror.%I RENAME TO %I', tmp, p_name);
    EXECUTE format('ALTER TABLE driftmirror.metric ATTACH PARTITION driftmirror.%I FOR VALUES FROM (%L) TO (%L)',
                   p_name, p.lo, p.hi);
    EXECUTE format('ALTER TABLE driftmirror.%I DROP CONSTRAINT %I', p_name, tmp || '_bound');
    EXECUTE format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', p_name);
    UPDATE driftmirror.metric_partition mp
       SET stage_interval = NULL, sealed_upto = NULL, indexed = true
     WHERE mp.name = p_name;
    RETURN n;
END
$$;

-- _merge_staged: merge the oldest staged partition whose end is
-- rollup_delay before p_now (_merge_candidate; at most one a call: the work
-- of one maintenance pass stays bounded).  Returns partitions_merged, merge_rows,
-- merge_ms, and merge_skipped: the error that made it give up (a lock not
-- granted, a deadlock), the partition then left as it was for the next
-- pass.  The merge's time is also logged.
CREATE OR REPLACE FUNCTION driftmirror._merge_staged(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nm  text;
    n   bigint;
    t0  timestamptz := clock_timestamp();
    ms  numeric;
BEGIN
    nm := driftmirror._merge_candidate(p_now);
    IF nm IS NULL THEN
        RETURN jsonb_build_object('partitions_merged', 0);
    END IF;
    BEGIN
        n := driftmirror._merge_partition(nm);
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN jsonb_build_object('partitions_merged', 0,
                                  'merge_skipped', format('%s: %s (%s)', nm, SQLERRM, SQLSTATE));
    END;
    IF n IS NULL THEN
        RETURN jsonb_build_object('partitions_merged', 0);  -- merged meanwhile, or dropped
    END IF;
    ms := round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1);
    RAISE LOG 'driftmirror: merged metric partition % (% rows) in % ms', nm, n, ms;
    RETURN jsonb_build_object('partitions_merged', 1, 'merged_partition', nm,
                              'merge_rows', n, 'merge_ms', ms);
END
$$;

-- _ensure_partitions: make sure partitions cover [p_from, p_to]; returns how
-- many it created.  Bounds are aligned on the partition interval; a range
-- next to an existing partition made with another interval is clipped to
-- fit.  Creations are serialised by an advisory lock; the common case (all
-- covered) takes no lock.  Data decide the range for the collectors and
-- dm_ingest: they pass no p_max and get at most 400 partitions made by one
-- call, an error beyond (nothing is made then: the error rolls back);
-- dm_create_partitions, an explicit request, passes its own bound.  In
-- index_mode 'staged' a partition is made partitioned, and its leaves
-- (_make_leaves) as far as a range ensured with p_leaves reaches into it:
-- the maintenance makes the partitions ahead without (a leaf costs every
-- query of driftmirror.metric some planning time, an empty one too), and
-- the leaves of the next hour.
CREATE OR REPLACE FUNCTION driftmirror._ensure_partitions(p_from timestamptz, p_to timestamptz,
                                               p_max integer DEFAULT 400,
                                               p_leaves boolean DEFAULT true)
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
    stage interval;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RETURN 0;
    END IF;
    IF EXISTS (
        WITH RECURSIVE walk (upto) AS (
            SELECT p.hi FROM driftmirror.metric_partition p
             WHERE p.lo <= p_from AND p.hi > p_from
            UNION ALL
            SELECT p.hi FROM walk w JOIN driftmirror.metric_partition p ON p.lo = w.upto
             WHERE w.upto <= p_to
        )
        SELECT FROM walk HAVING max(upto) > p_to)
       AND NOT (p_leaves AND EXISTS (SELECT FROM driftmirror._missing_leaves(p_from, p_to))) THEN
        RETURN 0;               -- nothing is missing
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric_partition'));
    SELECT s.partition_interval, s.index_mode, s.stage_interval INTO iv, mode, stage
      FROM driftmirror.metric_settings s;
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
        EXECUTE format('CREATE TABLE driftmirror.%I PARTITION OF driftmirror.metric FOR VALUES FROM (%L) TO (%L)%s',
                       nm, lo, hi, CASE WHEN mode = 'staged' THEN ' PARTITION BY RANGE (ts)' ELSE '' END);
        EXECUTE format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', nm);
        INSERT INTO driftmirror.metric_partition (name, lo, hi, stage_interval)
        VALUES (nm, lo, hi, CASE WHEN mode = 'staged' THEN stage END);
        IF mode = 'immediate' THEN
            PERFORM driftmirror._index_partition(nm);
        ELSIF mode = 'brin' THEN
            PERFORM driftmirror._brin_partition(nm);
        END IF;
        n := n + 1;
        t := hi;
    END LOOP;
    IF p_leaves THEN
        PERFORM driftmirror._make_leaves(l.name, l.upto) FROM driftmirror._missing_leaves(p_from, p_to) l;
    END IF;
    RETURN n;
END
$$;

-- _group_retention: the retention of every group, as intervals
CREATE OR REPLACE FUNCTION driftmirror._group_retention()
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
CREATE OR REPLACE FUNCTION driftmirror._metric_retention(p_now timestamptz,
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
CREATE OR REPLACE FUNCTION driftmirror._metric_rollup(p_level text, p_now timestamptz)
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
CREATE OR REPLACE FUNCTION driftmirror._rollup_range(st driftmirror.metric_rollup_state,
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
-- transaction: partitions ahead, retention, rollups, the leaves to seal and
-- the partition to merge of index_mode 'staged'.  Returns a summary.
CREATE OR REPLACE FUNCTION driftmirror._metric_maintenance(p_now timestamptz DEFAULT now())
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
    sealed   integer;
    merged   jsonb;
    found_any boolean;
    orphan   constant text := 'NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = m.resource_id)'
                              ' OR NOT EXISTS (SELECT FROM driftmirror.metric_def d WHERE d.id = m.metric_id)';
BEGIN
    SELECT * INTO s FROM driftmirror.metric_settings;
    created := driftmirror._ensure_partitions(p_now, p_now + s.premake * s.partition_interval, 400, false)
               + driftmirror._ensure_partitions(p_now, p_now + interval '1 hour');
    SELECT * INTO ret FROM driftmirror._metric_retention(p_now);
    -- closed partitions: drop rows naming no resource or metric (COPY does
    -- not check ids), then index them if that was deferred.  Looked for
    -- first: there are seldom any, and a DELETE that finds none scans a
    -- partition of many leaves (staged) several times slower than a SELECT
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE mp.hi <= p_now AND NOT mp.checked ORDER BY mp.lo LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM driftmirror.%I m WHERE %s)', nm, orphan) INTO found_any;
        IF found_any THEN
            EXECUTE format('DELETE FROM driftmirror.%I m WHERE %s', nm, orphan);
            GET DIAGNOSTICS n = ROW_COUNT;
            orphans := orphans + n;
        END IF;
        UPDATE driftmirror.metric_partition mp SET checked = true WHERE mp.name = nm;
    END LOOP;
    FOR nm IN SELECT mp.name FROM driftmirror.metric_partition mp
               WHERE mp.hi <= p_now AND NOT mp.indexed AND mp.stage_interval IS NULL
               ORDER BY mp.lo LOOP
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
    -- staged partitions: seal the leaves that ended, merge one closed
    -- partition; last, since the merge's lock on driftmirror.metric is held
    -- until the commit
    sealed := driftmirror._seal_leaves(p_now);
    merged := driftmirror._merge_staged(p_now);
    RETURN merged || jsonb_build_object('partitions_created', created,
                              'partitions_dropped', ret.dropped,
                              'rows_purged', ret.purged,
                              'orphan_rows_deleted', orphans,
                              'partitions_indexed', indexed,
                              'brin_ranges_summarized', summarized,
                              'rollup_5m_rows', r5,
                              'rollup_1h_rows', r1,
                              'rollup_rows_deleted', rdel,
                              'leaves_sealed', sealed);
END
$$;

CREATE OR REPLACE FUNCTION driftmirror.dm_run_maintenance()
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

CREATE OR REPLACE FUNCTION driftmirror.dm_create_partitions(starts timestamptz, ends timestamptz)
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

CREATE OR REPLACE FUNCTION driftmirror.dm_rollup(starts timestamptz, ends timestamptz)
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

CREATE OR REPLACE FUNCTION driftmirror.dm_set_metric_settings(settings jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     text;
    piv   interval;
    stage interval;
BEGIN
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION 'metric settings must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(settings) LOOP
        IF k NOT IN ('partition_interval', 'premake', 'rollup_delay', 'rollup_retention', 'index_mode',
                     'stage_interval') THEN
            RAISE EXCEPTION 'unknown metric setting "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known settings: partition_interval, premake, rollup_delay, rollup_retention, index_mode, stage_interval.';
        END IF;
    END LOOP;
    BEGIN
        SELECT coalesce(driftmirror._opt_interval(settings -> 'partition_interval'), s.partition_interval),
               coalesce(driftmirror._opt_interval(settings -> 'stage_interval'), s.stage_interval)
          INTO piv, stage FROM driftmirror.metric_settings s;
    EXCEPTION WHEN data_exception OR syntax_error THEN
        piv := NULL;            -- reported below
    END;
    -- (a stage_interval out of its range is refused by the UPDATE below)
    IF stage >= interval '1 minute' AND date_part('month', stage) = 0 AND date_part('year', stage) = 0
       AND extract(epoch FROM piv) % extract(epoch FROM stage) <> 0 THEN
        RAISE EXCEPTION 'stage_interval % does not divide partition_interval %', stage, piv
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A partition of index_mode staged is cut into leaves of stage_interval: a whole number of them must fill it.',
                  HINT = 'Choose a stage_interval such as 15 minutes or 1 hour, or change both settings in one call.';
    END IF;
    BEGIN
        UPDATE driftmirror.metric_settings s
           SET partition_interval = coalesce(driftmirror._opt_interval(settings -> 'partition_interval'),
                                             s.partition_interval),
               premake = coalesce((settings ->> 'premake')::integer, s.premake),
               rollup_delay = coalesce(driftmirror._opt_interval(settings -> 'rollup_delay'),
                                       s.rollup_delay),
               rollup_retention = coalesce(driftmirror._opt_interval(settings -> 'rollup_retention'),
                                           s.rollup_retention),
               index_mode = coalesce(settings ->> 'index_mode', s.index_mode),
               stage_interval = coalesce(driftmirror._opt_interval(settings -> 'stage_interval'),
                                         s.stage_interval);
    EXCEPTION WHEN check_violation OR data_exception OR syntax_error THEN
        RAISE EXCEPTION 'invalid metric settings %', settings
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'partition_interval: 1 hour to 31 days without months; premake: 1 to 100; rollup_delay: 0 to 1 day; rollup_retention: 1 to 3650 days; index_mode: staged, immediate, brin or deferred; stage_interval: 1 minute to 31 days without months, dividing partition_interval.';
    END;
    PERFORM driftmirror._log_action('', NULL, 'set_metric_settings', 'dm_set_metric_settings',
                                    jsonb_build_object('settings', settings));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_set_metric_settings(jsonb) IS
    'Change metric store settings; partition_interval, index_mode and stage_interval apply to partitions created from now on';
