-- 93_influxdb_source.sql: metric sources of kind influxdb (InfluxDB 1.x,
-- InfluxQL with $timeFilter).  Comes after 41_monitor_labels.sql, which
-- also replaces _source_config: this is its final version.
ALTER TABLE driftmirror.metric_source DROP CONSTRAINT metric_source_kind_check;
ALTER TABLE driftmirror.metric_source
    ADD CONSTRAINT metric_source_kind_check CHECK (kind IN ('postgres', 'prometheus', 'influxdb'));


-- _source_config: check the configuration of a source; returns it with
-- the names of its metrics (registered on the way for prometheus queries)
CREATE OR REPLACE FUNCTION driftmirror._source_config(p_kind text, p_resource_kind text, p_config jsonb)
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
