-- metrics.sql: the metric store: ingest, bad input, partitions, retention,
-- rollups, the COPY path.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
SET client_min_messages = warning;

-- the default layout of a fresh install: index_mode 'staged' (its own
-- section below); the sections before it run on it too
SELECT index_mode, stage_interval FROM metric_settings;

SELECT dm_create_group('m_short', '{"retention": "2 days"}') > 0 AS ok;
SELECT dm_create_group('m_long', '{"retention": "3650 days"}') > 0 AS ok;
SELECT dm_add_resource('m_short', 'db', 'postgres', 'host=/tmp dbname=x') > 0 AS ok;
SELECT dm_add_resource('m_long', 'db', 'postgres', 'host=/tmp dbname=y') > 0 AS ok;
SELECT dm_register_metric('app.requests_per_s', '1/s', 'requests served per second') > 0 AS ok;

-- metric names: registered or refused
SELECT dm_register_metric('app.requests_per_s');
SELECT dm_register_metric('Bad Name');
SELECT name, unit, builtin FROM dm_metric_names WHERE name LIKE 'pg.%' OR name LIKE 'app.%' ORDER BY name;

-- good ingest: 60 samples, one a minute, ending 2 minutes ago
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 array_agg(date_trunc('minute', now()) - make_interval(mins => 61 - i) ORDER BY i),
                 array_agg(i::float8 ORDER BY i))
  FROM generate_series(1, 60) i;
SELECT count(*), min(value), max(value), sum(value)
  FROM dm_metrics WHERE group_name = 'm_long' AND metric = 'app.requests_per_s';
-- incremental rollups: the maintenance computes the closed buckets after its
-- watermark (here as if it ran ten minutes from now)
SELECT (_metric_maintenance(now() + interval '10 minutes') ->> 'rollup_5m_rows')::int > 0 AS rolled_up;
-- one pass rolls up at most max_span (a day) after the watermark, which
-- starts at the first partition's day: when the hour of samples began the
-- day before (a run soon after midnight), the next pass rolls up the rest
SELECT _metric_maintenance(now() + interval '10 minutes') IS NOT NULL AS next_pass;
SELECT sum(samples) AS samples_in_5m_buckets, max(max) AS max
  FROM dm_metric_rollups WHERE group_name = 'm_long' AND level = '5m';
SELECT watermark > now() AS watermark_moved FROM metric_rollup_state WHERE level = '5m';
-- empty arrays write nothing
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', '{}', '{}');

-- bad input: each kind names the first bad element, and writes nothing
CREATE TEMP TABLE before AS SELECT count(*) AS n FROM metric;
\set VERBOSITY default
SELECT dm_ingest('nope', 'db', 'app.requests_per_s', ARRAY[now()], ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'nope', 'app.requests_per_s', ARRAY[now()], ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.request_per_s', ARRAY[now()], ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest(NULL, 'db', 'app.requests_per_s', ARRAY[now()], ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', NULL, ARRAY[now()], ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', NULL, ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', ARRAY[now()], NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', ARRAY[now(), now()], ARRAY[1.0]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', '{{2020-01-01,2020-01-02}}'::timestamptz[], '{{1,2}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now() - interval '1 minute', now(), now()], ARRAY[1, 'NaN', 'Infinity']::float8[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now() - interval '1 minute', now(), now()], ARRAY[1, '-Infinity', 'NaN']::float8[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now(), NULL, now()], ARRAY[1, 2, NULL]::float8[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now(), now()], ARRAY[1, NULL]::float8[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- data decide partitions only within a bound: 3,000 days at once are refused
-- (nothing made), dm_create_partitions is the way for such a backfill
SELECT count(*) AS partitions_before FROM driftmirror.metric_partition \gset
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now() - interval '3000 days', now()], ARRAY[1, 2]::float8[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) - :partitions_before AS partitions_made FROM driftmirror.metric_partition;
-- timestamps out of bounds (the error shows the value: check the code only)
DO $$
BEGIN
    PERFORM driftmirror.dm_ingest('m_long', 'db', 'app.requests_per_s',
        ARRAY[now(), now() + interval '2 days'], ARRAY[1.0, 2.0]);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING '% %', SQLSTATE, regexp_replace(SQLERRM, ': .*', ': ...');
END $$;
DO $$
BEGIN
    PERFORM driftmirror.dm_ingest('m_short', 'db', 'app.requests_per_s',
        ARRAY[now(), now() - interval '3 days'], ARRAY[1.0, 2.0]);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING '% %', SQLSTATE, regexp_replace(SQLERRM, ': .*', ': ...');
END $$;
DO $$
BEGIN
    PERFORM driftmirror.dm_ingest('m_long', 'db', 'app.requests_per_s',
        ARRAY['-infinity'::timestamptz], ARRAY[1.0]);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING '% %', SQLSTATE, regexp_replace(SQLERRM, ': .*', ': ...');
END $$;
-- a bad element after good ones leaves nothing behind
SELECT (SELECT count(*) FROM metric) = n AS nothing_written FROM before;

-- the COPY path: ids from the views; bad rows refused by the table
SELECT dm_run_maintenance() ? 'partitions_created' AS maintained;
CREATE TEMP TABLE ids AS
SELECT (SELECT id FROM dm_resources WHERE group_name = 'm_short' AND name = 'db') AS rid,
       (SELECT id FROM dm_resources WHERE group_name = 'm_long' AND name = 'db') AS lrid,
       (SELECT id FROM dm_metric_names WHERE name = 'app.requests_per_s') AS mid;
-- COPY through a server-side file (as the superuser running this test)
CREATE FUNCTION pg_temp.copy_rows(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    f text := format('/tmp/dm_regress_metrics_%s.copy', pg_backend_pid());
BEGIN
    EXECUTE format('COPY (%s) TO %L', q, f);
    EXECUTE format('COPY driftmirror.metric (ts, resource_id, metric_id, value) FROM %L', f);
    RETURN 'copied';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || regexp_replace(SQLERRM, 'metric_[ps][0-9]+_[0-9]+', 'metric_p...');
END $$;
SELECT pg_temp.copy_rows(format('SELECT now() - interval ''10 minutes'', %s, %s, 7.5', rid, mid)) FROM ids;
SELECT pg_temp.copy_rows(format('SELECT now() - interval ''10 minutes'', %s, %s, ''NaN''::float8', rid, mid)) FROM ids;
SELECT pg_temp.copy_rows(format('SELECT now() - interval ''10 minutes'', %s, %s, ''-Infinity''::float8', rid, mid)) FROM ids;
SELECT pg_temp.copy_rows(format('SELECT now() - interval ''10 minutes'', %s, %s, NULL::float8', rid, mid)) FROM ids;
SELECT pg_temp.copy_rows(format('SELECT now() - interval ''10 minutes'', -1, %s, 1.0', mid)) FROM ids;
SELECT pg_temp.copy_rows(format('SELECT now() + interval ''300 days'', %s, %s, 1.0', rid, mid)) FROM ids;
-- ids are not looked up at COPY time (that would cost COPY its multi-row
-- inserts): a row naming no metric is stored, never shown, and deleted when
-- its partition closes
SELECT dm_create_partitions(now() - interval '3 days', now()) >= 0 AS made;
SELECT pg_temp.copy_rows(format('SELECT now() - interval ''3 days'', %s, 32000, 1.0', lrid)) FROM ids;
SELECT count(*) AS orphans_stored FROM metric WHERE metric_id = 32000;
SELECT count(*) AS orphans_shown FROM dm_metrics WHERE group_name = 'm_long' AND ts < now() - interval '2 days';
SELECT (dm_run_maintenance() ->> 'orphan_rows_deleted')::int AS orphans_deleted;
SELECT count(*) AS orphans_left FROM metric WHERE metric_id = 32000;
DO $$
BEGIN
    -- the program reads what COPY writes: a program that exits first
    -- (rm alone) can break COPY's pipe
    EXECUTE format('COPY (SELECT 1) TO PROGRAM %L',
                   format('cat >/dev/null; rm -f /tmp/dm_regress_metrics_%s.copy', pg_backend_pid()));
END $$;
SELECT count(*) FROM dm_metrics WHERE group_name = 'm_short';

-- partitions: made ahead by maintenance, named by their start
SELECT dm_run_maintenance() ? 'partitions_created';
SELECT count(*) >= 4 AS ahead FROM dm_metric_partitions WHERE hi > now();
SELECT bool_and(hi - lo = interval '1 day') AS daily,
       bool_and(to_char(lo AT TIME ZONE 'UTC', 'HH24:MI') = '00:00') AS aligned
  FROM dm_metric_partitions;
-- tomorrow's is staged: no index of its own, and leaves (96 of 15 minutes
-- for a whole day) as far as data or dm_create_partitions need them, or an
-- hour ahead (not today's: a run just before midnight UTC may have merged it
-- already, the passes above running ten minutes ahead)
SELECT dm_create_partitions(now() + interval '1 day', now() + interval '1 day') AS made;
SELECT date_bin('1 day', now() + interval '1 day', timestamptz '2000-01-01 00:00:00+00') AS d1 \gset
SELECT dm_create_partitions(:'d1'::timestamptz + interval '23 hours 50 minutes',
                            :'d1'::timestamptz + interval '23 hours 50 minutes') AS made;
SELECT p.stage_interval, count(*) FILTER (WHERE t.isleaf) AS leaves,
       (SELECT count(*) FROM pg_indexes WHERE schemaname = 'driftmirror' AND tablename = p.name) AS indexes
  FROM dm_metric_partitions p, pg_partition_tree(format('driftmirror.%I', p.name)::regclass) t
 WHERE p.lo <= now() + interval '1 day' AND p.hi > now() + interval '1 day'
 GROUP BY p.name, p.stage_interval;
-- the partitions made ahead by the maintenance have no leaves until then
SELECT count(*) AS leafless_ahead FROM _missing_leaves(now() + interval '2 days', now() + interval '2 days');
SELECT leaves_upto IS NULL AS leafless FROM metric_partition WHERE lo <= now() + interval '2 days' AND hi > now() + interval '2 days';
-- "last hour of one metric of one resource" uses the series index (of the
-- leaves the maintenance sealed, or of yesterday's merged partition)
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    t text := '';
BEGIN
    FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        t := t || r || E'\n';
    END LOOP;
    RETURN t;
END $$;
SET enable_seqscan = off;
SELECT rid, mid FROM ids \gset
SELECT pg_temp.plan_of(format('SELECT * FROM driftmirror.metric WHERE resource_id = %s AND metric_id = %s AND ts > now() - interval ''1 hour''', :rid, :mid))
       ~ '(using|Scan on) metric_[ps]\S*_series' AS uses_series_index;
RESET enable_seqscan;

-- retention: rows of the 2-day group are purged from a 5-day-old partition
-- the 3650-day group still needs; the partition goes once no group needs it
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now() - interval '5 days', now() - interval '5 days' + interval '1 minute'],
                 ARRAY[1.0, 2.0]);
SELECT rid, mid FROM ids \gset
INSERT INTO metric VALUES (now() - interval '5 days', :rid, :mid, 3.0);
SELECT group_name, count(*) FROM dm_metrics WHERE ts < now() - interval '4 days' GROUP BY 1 ORDER BY 1;
SELECT (dm_run_maintenance() ->> 'rows_purged')::int AS purged;
SELECT group_name, count(*) FROM dm_metrics WHERE ts < now() - interval '4 days' GROUP BY 1 ORDER BY 1;
SELECT (dm_run_maintenance() ->> 'rows_purged')::int AS purged_again;
SELECT count(*) AS old_partitions FROM dm_metric_partitions WHERE hi < now() - interval '4 days';
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', ARRAY[now() - interval '40 days'], ARRAY[4.0]);
SELECT count(*) AS partitions_40_days_old FROM dm_metric_partitions WHERE hi < now() - interval '35 days';
SELECT (dm_run_maintenance() ->> 'partitions_dropped')::int AS dropped;
SELECT dm_alter_group('m_long', '{"retention": "2 days"}');
-- other groups of this database keep at most the default 30 days
SELECT max(retention) <= interval '30 days' AS at_most_30_days FROM _group_retention();
SELECT (dm_run_maintenance() ->> 'partitions_dropped')::int >= 1 AS dropped;
SELECT count(*) AS partitions_40_days_old FROM dm_metric_partitions WHERE hi < now() - interval '35 days';
SELECT count(*) AS rows_40_days_old FROM metric WHERE ts < now() - interval '35 days';

-- rollups: 5-minute and 1-hour buckets with avg, max and p95
SELECT dm_rollup(now() - interval '2 hours', now()) > 0 AS rolled;
SELECT level, sum(samples) AS samples, max(max) AS max
  FROM dm_metric_rollups WHERE group_name = 'm_long' AND bucket > now() - interval '3 hours'
 GROUP BY level ORDER BY level;
SELECT avg, max, p95 FROM dm_metric_rollups
 WHERE group_name = 'm_long' AND level = '5m' AND samples = 5 ORDER BY bucket LIMIT 1 \gset r_
SELECT :r_max - :r_avg = 2 AS avg_ok, round((:r_max - :r_p95)::numeric, 6) = 0.2 AS p95_ok;

-- settings
SELECT dm_set_metric_settings('{"partition_interval": "1 month"}');
SELECT dm_set_metric_settings('{"premake": 0}');
SELECT dm_set_metric_settings('{"chunk": 1}');
SELECT dm_set_metric_settings('{"index_mode": "later"}');
SELECT dm_set_metric_settings('{"premake": 4}');
SELECT premake FROM metric_settings;
SELECT dm_set_metric_settings('{"premake": 3}');
-- deferred indexes: a new partition has none until it is closed
SELECT dm_set_metric_settings('{"index_mode": "deferred"}');
SELECT dm_create_partitions(now() + interval '20 days', now() + interval '20 days') AS made;
SELECT indexed FROM metric_partition WHERE lo <= now() + interval '20 days' AND hi > now() + interval '20 days';
SELECT count(*) AS indexes FROM pg_indexes
 WHERE schemaname = 'driftmirror'
   AND tablename = (SELECT name FROM metric_partition WHERE lo <= now() + interval '20 days' AND hi > now() + interval '20 days');
SELECT (_metric_maintenance(now() + interval '22 days') ->> 'partitions_indexed')::int >= 1 AS indexed_when_closed;
SELECT count(*) AS indexes FROM pg_indexes
 WHERE schemaname = 'driftmirror'
   AND tablename = (SELECT name FROM metric_partition WHERE lo <= now() + interval '20 days' AND hi > now() + interval '20 days');
SELECT dm_set_metric_settings('{"index_mode": "immediate"}');
SELECT dm_create_partitions(now() + interval '30 days', now() + interval '30 days') AS made;
SELECT string_agg(replace(indexname, name, '<p>'), ', ' ORDER BY indexname) AS immediate_indexes
  FROM metric_partition, pg_indexes
 WHERE schemaname = 'driftmirror' AND tablename = name
   AND lo <= now() + interval '30 days' AND hi > now() + interval '30 days';

-- index_mode 'brin': a partition has only its BRIN until the maintenance
-- indexes it (once closed); the same query finds the same rows before and
-- after, through the BRIN, then through the btree.  Rows dm_ingest writes
-- into an indexed partition are found through the btree as well.
SELECT dm_set_metric_settings('{"index_mode": "brin"}');
SELECT dm_alter_group('m_long', '{"retention": "3650 days"}');
SELECT date_trunc('day', now() - interval '100 days') AS d100 \gset
SELECT lrid AS rid, mid FROM ids \gset
-- one series by dm_ingest, two more (ids naming nothing) in the same
-- partition through COPY's path (INSERT): 3,000 points each, 10 s apart
CREATE FUNCTION pg_temp.fill_day(d timestamptz, rid bigint, mid integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT driftmirror.dm_ingest('m_long', 'db', 'app.requests_per_s',
                                 array_agg(d + i * interval '10 seconds' ORDER BY i),
                                 array_agg(i::float8 ORDER BY i))
      INTO n FROM generate_series(0, 2999) i;
    INSERT INTO driftmirror.metric
    SELECT d + i * interval '10 seconds', r, mid, i
      FROM generate_series(0, 2999) i, unnest(ARRAY[rid + 1000, rid + 2000]) r;
    RETURN n;
END $$;
SELECT pg_temp.fill_day(:'d100', :rid, :mid) AS written;
SELECT name AS p100 FROM metric_partition WHERE lo <= :'d100' AND hi > :'d100' \gset
SELECT string_agg(replace(indexname, :'p100', '<p>'), ', ' ORDER BY indexname) AS open_indexes
  FROM pg_indexes WHERE schemaname = 'driftmirror' AND tablename = :'p100';
\set q100 'SELECT count(*), sum(value) FROM driftmirror.metric WHERE resource_id = ' :rid ' AND metric_id = ' :mid ' AND ts >= ' :'d100' '::timestamptz + interval ''3 hours'' AND ts < ' :'d100' '::timestamptz + interval ''5 hours'''
SET enable_seqscan = off;
SELECT pg_temp.plan_of(:'q100') ~ format('Scan on %s_brin', :'p100') AS open_uses_brin;
:q100;
SELECT (_metric_maintenance(now()) ->> 'partitions_indexed')::int >= 1 AS indexed_when_closed;
SELECT string_agg(replace(indexname, :'p100', '<p>'), ', ' ORDER BY indexname) AS closed_indexes
  FROM pg_indexes WHERE schemaname = 'driftmirror' AND tablename = :'p100';
-- (the btree alone: a BRIN is only read through bitmap scans)
SET enable_bitmapscan = off;
SELECT pg_temp.plan_of(:'q100') ~ format('(using|Scan on) %s_series', :'p100') AS closed_uses_series;
:q100;
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 array_agg(:'d100'::timestamptz + interval '4 hours' + i * interval '10 seconds' + interval '5 seconds' ORDER BY i),
                 array_agg(1000::float8 ORDER BY i))
  FROM generate_series(1, 10) i;
:q100;
RESET enable_seqscan;
RESET enable_bitmapscan;
DELETE FROM metric WHERE ts >= :'d100' AND ts < :'d100'::timestamptz + interval '1 day';
SELECT dm_set_metric_settings('{"index_mode": "immediate"}');

-- index_mode 'staged': a partition is cut into leaves of stage_interval;
-- the maintenance seals a leaf (its series btree) once its end is
-- rollup_delay (1 minute) past, and merges a closed partition into one
-- plain table sorted by series.  Times are passed as p_now: all of it
-- happens on one day 200 days ago.
SELECT dm_set_metric_settings('{"index_mode": "staged"}');
SELECT date_bin('1 day', now() - interval '200 days', timestamptz '2000-01-01 00:00:00+00') AS d200 \gset
SELECT dm_create_partitions(:'d200', :'d200') AS made;
SELECT name AS p200 FROM metric_partition WHERE lo = :'d200' \gset
SELECT stage_interval, sealed_upto IS NULL AS unsealed, indexed FROM metric_partition WHERE name = :'p200';
\set leaves200 'SELECT count(*) AS leaves, count(DISTINCT c.relname) AS names, bool_and(c.relname ~ ''^metric_s[0-9]{8}_[0-9]{4}$'') AS named_by_start, (SELECT leaves_upto - lo FROM driftmirror.metric_partition WHERE name = ' :'p200' ') AS leaves_upto FROM pg_partition_tree(format(''driftmirror.%I'', ' :'p200' ')::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf AND t.level = 1'
-- the leaf of the range asked for
:leaves200;
-- three series as in the brin section (8 h 20 min each): the leaves they
-- need are made (34, up to 08:15 - 08:30)
SELECT pg_temp.fill_day(:'d200', :rid, :mid) AS written;
:leaves200;
SELECT count(*) AS open_leaf_indexes FROM pg_indexes
 WHERE schemaname = 'driftmirror' AND tablename LIKE 'metric_s%'
   AND tablename IN (SELECT relid::regclass::text FROM pg_partition_tree(format('driftmirror.%I', :'p200')::regclass));
\set q200 'SELECT count(*), sum(value) FROM driftmirror.metric WHERE resource_id = ' :rid ' AND metric_id = ' :mid ' AND ts >= ' :'d200' '::timestamptz + interval ''1 hour'' AND ts < ' :'d200' '::timestamptz + interval ''3 hours'''
:q200;
-- sealing as if at 02:00: the leaves ended by 01:59 (seven) get their
-- btree, the others not; a second pass seals nothing more
SELECT _seal_leaves(:'d200'::timestamptz + interval '2 hours') AS sealed;
SELECT _seal_leaves(:'d200'::timestamptz + interval '2 hours') AS sealed_again;
SELECT sealed_upto - lo AS sealed_upto FROM metric_partition WHERE name = :'p200';
SELECT count(*) AS sealed_leaves,
       min(substr(i.indexname, 18)) AS first, max(substr(i.indexname, 18)) AS last
  FROM pg_partition_tree(format('driftmirror.%I', :'p200')::regclass) t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_indexes i ON i.schemaname = 'driftmirror' AND i.tablename = c.relname
 WHERE t.isleaf;
-- the series of a sealed leaf is read through its btree, the same rows
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT pg_temp.plan_of(:'q200') ~ 'Index Scan using metric_s\d+_0100_series' AS sealed_uses_series;
:q200;
RESET enable_seqscan;
RESET enable_bitmapscan;
-- a late row into a sealed leaf (01:30:05) and one into an open one
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[:'d200'::timestamptz + interval '90 minutes 5 seconds',
                       :'d200'::timestamptz + interval '10 hours'], ARRAY[1000, 2000]::float8[]);
:q200;
SELECT count(*) AS n, sum(value) AS s FROM metric
 WHERE ts >= :'d200' AND ts < :'d200'::timestamptz + interval '1 day' \gset before_
-- no merge while the partition is open, nor within rollup_delay of its end
SELECT _merge_staged(:'d200'::timestamptz + interval '1 day') AS not_yet;
SELECT _merge_staged(:'d200'::timestamptz + interval '1 day 1 minute') - 'merge_ms' - 'merged_partition' AS merged,
       _merge_staged(:'d200'::timestamptz + interval '1 day 1 minute') ->> 'partitions_merged' AS merged_again;
-- one plain table of the same rows, sorted by series, with the usual indexes
SELECT c.relkind, (SELECT count(*) FROM pg_partition_tree(c.oid)) AS tables,
       (SELECT count(*) FROM pg_class l WHERE l.relname LIKE 'metric_s' || to_char(:'d200'::timestamptz AT TIME ZONE 'UTC', 'YYYYMMDD') || '%') AS leaves_left,
       pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES FROM (%L) TO (%L)', :'d200'::timestamptz,
                                                   :'d200'::timestamptz + interval '1 day') AS same_bounds
  FROM pg_class c WHERE c.oid = format('driftmirror.%I', :'p200')::regclass;
SELECT stage_interval, sealed_upto, indexed FROM metric_partition WHERE name = :'p200';
SELECT string_agg(replace(indexname, :'p200', '<p>'), ', ' ORDER BY indexname) AS merged_indexes
  FROM pg_indexes WHERE schemaname = 'driftmirror' AND tablename = :'p200';
SELECT string_agg(conname, ', ' ORDER BY conname) AS merged_checks
  FROM pg_constraint WHERE conrelid = format('driftmirror.%I', :'p200')::regclass;
SELECT count(*) = :before_n AS same_count, sum(value) = :before_s AS same_sum FROM metric
 WHERE ts >= :'d200' AND ts < :'d200'::timestamptz + interval '1 day';
-- in heap order, the rows of a series follow each other (two changes of
-- series for three series)
SELECT count(*) FILTER (WHERE resource_id <> prev) AS series_changes
  FROM (SELECT resource_id, lag(resource_id) OVER (ORDER BY ctid) AS prev
          FROM driftmirror.:"p200") x;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT pg_temp.plan_of(:'q200') ~ format('Index Scan using %s_series', :'p200') AS merged_uses_series;
RESET enable_seqscan;
RESET enable_bitmapscan;
:q200;
-- a late row after the merge goes into the merged table
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[:'d200'::timestamptz + interval '2 hours 5 seconds'], ARRAY[3000]::float8[]);
:q200;
DELETE FROM metric WHERE ts >= :'d200' AND ts < :'d200'::timestamptz + interval '1 day';

-- stage_interval: must divide partition_interval; a bad one changes nothing
\set VERBOSITY default
SELECT dm_set_metric_settings('{"stage_interval": "7 minutes"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT dm_set_metric_settings('{"stage_interval": "30 seconds"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_set_metric_settings('{"stage_interval": "1 mon"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_set_metric_settings('{"stage_interval": "soon"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_set_metric_settings('{"partition_interval": "3 hours", "stage_interval": "2 hours"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT dm_set_metric_settings('{"partition_interval": "1 hour 10 minutes"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT partition_interval, stage_interval, index_mode FROM metric_settings;
SELECT dm_set_metric_settings('{"partition_interval": "6 hours", "stage_interval": "1 hour"}');
SELECT partition_interval, stage_interval FROM metric_settings;
SELECT dm_set_metric_settings('{"partition_interval": "1 day", "stage_interval": "15 minutes"}');

-- dm_ingest evaluates CHECK constraints beyond the store's own, and goes
-- through COPY when a partition has row triggers (which fire)
ALTER TABLE metric ADD CONSTRAINT metric_not_4242 CHECK (value <> 4242);
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s', ARRAY[now(), now() - interval '1 second'], ARRAY[1, 4242]::float8[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
ALTER TABLE metric DROP CONSTRAINT metric_not_4242;
CREATE TEMP TABLE fired (ts timestamptz);
CREATE FUNCTION pg_temp.note_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.fired VALUES (NEW.ts);
    RETURN NEW;
END $$;
CREATE TRIGGER note_row BEFORE INSERT ON metric FOR EACH ROW EXECUTE FUNCTION pg_temp.note_row();
SELECT dm_ingest('m_long', 'db', 'app.requests_per_s',
                 ARRAY[now() - interval '2 seconds', now() - interval '1 second'], ARRAY[41, 42]::float8[]);
SELECT count(*) AS trigger_fired FROM fired;
DROP TRIGGER note_row ON metric;
SELECT count(*) AS stored FROM metric m, ids WHERE m.resource_id = ids.lrid AND m.value IN (41, 42, 4242);
DELETE FROM metric m USING ids WHERE m.resource_id = ids.lrid AND m.value IN (41, 42);

-- metric sources: configuration checks (the collectors themselves are
-- tested with real servers in test/t/020 and 021)
SELECT dm_add_metric_source('m_long', 'db', 'snmp');
SELECT dm_add_metric_source('m_long', 'db', 'postgres', '{"interval": "1s"}');
SELECT dm_add_metric_source('m_long', 'db', 'postgres', '{"timeout": "5 minutes"}');
SELECT dm_add_metric_source('m_long', 'db', 'postgres', '[]');
SELECT dm_add_metric_source('m_long', 'db', 'prometheus', '{"queries": {"a.b": "up"}}');
SELECT dm_add_metric_source('m_long', 'db', 'prometheus', '{"url": "http://u:p@h/", "queries": {"a.b": "up"}}');
SELECT dm_add_metric_source('m_long', 'db', 'prometheus', '{"url": "http://h/", "queries": {"pg.up": "up"}}');
SELECT dm_add_metric_source('m_long', 'db', 'prometheus', '{"url": "http://h/", "queries": {"a.b": 5}}');
SELECT dm_add_metric_source('m_long', 'db', 'prometheus', '{"url": "http://h/", "queries": {"a.b": "up"}, "bearer_token_file": "/etc/passwd"}');
SELECT dm_add_metric_source('m_long', 'db', 'postgres', '{"timeout": "3s"}') > 0 AS added;
SELECT dm_add_metric_source('m_long', 'db', 'postgres');
SELECT dm_add_resource('m_long', 'web', 'web', 'http://127.0.0.1:9/') > 0 AS ok;
SELECT dm_add_metric_source('m_long', 'web', 'postgres');
SELECT dm_add_metric_source('m_long', 'web', 'prometheus',
    '{"url": "http://127.0.0.1:9/", "queries": {"web.rps": "sum(rate(x[1m]))"}, "units": {"web.rps": "1/s"}, "bearer_token": "s3cret"}') > 0 AS added;
SELECT dm_add_metric_source('m_long', 'web', 'prometheus',
    '{"url": "http://127.0.0.1:9/", "queries": {"web.rps": "sum(rate(x[1m]))"}, "units": {"web.rps": "1/s"}, "bearer_token_file": "s3cret_file"}') > 0 AS added;
SELECT name, unit FROM dm_metric_names WHERE name = 'web.rps';
SELECT resource_name, kind, state, config FROM dm_metric_sources WHERE group_name = 'm_long' ORDER BY 1, 2;
SELECT count(*) AS secrets_in_action_log FROM dm_actions WHERE inputs::text LIKE '%s3cret%';
SELECT dm_remove_metric_source('m_long', 'web', 'postgres');
SELECT dm_remove_metric_source('m_long', 'web', 'prometheus');
SELECT dm_remove_resource('m_long', 'web');

SELECT dm_drop_group('m_short', true);
SELECT dm_drop_group('m_long', true);
