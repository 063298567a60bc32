-- 43_metric_ingest.sql: index_mode 'brin' of the metric store: an open
-- partition has only a BRIN on (resource_id, metric_id, ts), the series
-- btree is built when it closes (sql/install/55_metrics.sql).  The default
-- stays 'immediate'; existing partitions and settings are kept as they are.
-- _ensure_partitions makes the BRIN: 40_metric_store_bounds.sql.
ALTER TABLE driftmirror.metric_settings
    DROP CONSTRAINT metric_settings_index_mode_check,
    ADD CONSTRAINT metric_settings_index_mode_check
        CHECK (index_mode IN ('immediate', 'deferred', 'brin'));

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

REVOKE ALL ON FUNCTION driftmirror._brin_partition(text) FROM PUBLIC;

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


CREATE OR REPLACE FUNCTION driftmirror.dm_set_metric_settings(settings jsonb)
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

