-- 55_metric_collectors.sql: pull sources of metrics polled by the worker
-- (postgres, prometheus, influxdb; tables metric_source and
-- metric_source_state in 55_metric_catalog.sql): their configuration
-- check, dm_add_metric_source / dm_remove_metric_source, what the worker
-- asks (_due_sources) and records (_store_samples, _record_polls), the
-- view dm_metric_sources, and _http_request, the HTTP layer from SQL.

-- _http_request: the HTTP layer from SQL (owner-only; tests and diagnosis)
CREATE FUNCTION driftmirror._http_request(method text, url text, req_body text DEFAULT NULL,
                                          timeout_ms integer DEFAULT 10000,
                                          max_retries integer DEFAULT 0,
                                          bearer_token text DEFAULT NULL,
                                          OUT ok boolean, OUT status integer,
                                          OUT body text, OUT error text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_http_request';

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
