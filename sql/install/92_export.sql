-- 92_export.sql: a group's configuration to and from S3-compatible object
-- storage: dm_export, dm_import.
--
-- The object is one JSON document:
--   {"format": "driftmirror.export", "format_version": 1,
--    "extension_version": "0.2.0", "exported_at": "...", "group": "orders",
--    "sha256": "<hex SHA-256 of the payload's text>", "payload": {...}}
-- The payload holds the group's options, its resources (endpoints, options,
-- dependencies), events, metric sources, routers and the current model of
-- each series (its method, grid, periods, accuracy and kept smoothing
-- parameters: forecasts apply them to the data, so the model row is the
-- whole model).  Keys are versioned: each export
-- writes a new object <prefix>/<group>/<UTC time>-<first 12 hex of sha256>.json
-- and never overwrites one.  dm_import refuses a document of another format,
-- or whose checksum does not match its payload, and recreates the group
-- through the ordinary API functions (so their validation and the endpoint
-- approvals of 35_resources.sql apply to the caller), in the caller's
-- transaction: an import that fails changes nothing.
--
-- Requests go through driftmirror._s3_request (object_store.c): only under
-- driftmirror.s3_endpoint, signed with the server's credentials, which
-- neither function shows.

CREATE FUNCTION driftmirror._s3_request(method text, url text, req_body text DEFAULT NULL,
                                        OUT status integer, OUT body text, OUT error text)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'driftmirror_s3_request';

-- _export_payload: the group's configuration as JSON (raises 42704 for an
-- unknown group)
CREATE FUNCTION driftmirror._export_payload(p_group text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'group', jsonb_build_object('name', g.name, 'options', g.options),
        'resources', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'name', r.name, 'kind', r.kind, 'endpoint', r.endpoint,
                       'options', r.options,
                       'depends_on', coalesce((SELECT jsonb_agg(dr.name ORDER BY dr.name)
                                                 FROM driftmirror.resource_dependency d
                                                 JOIN driftmirror.resource dr ON dr.id = d.depends_on_id
                                                WHERE d.resource_id = r.id), '[]'))
                   ORDER BY r.name)
              FROM driftmirror.resource r WHERE r.group_id = g.id), '[]'),
        'events', coalesce((
            SELECT jsonb_agg(jsonb_build_object('name', e.name, 'starts', e.starts,
                                                'ends', e.ends, 'options', e.options)
                   ORDER BY e.starts, e.name)
              FROM driftmirror.event e WHERE e.group_id = g.id), '[]'),
        'metric_sources', coalesce((
            SELECT jsonb_agg(jsonb_build_object('resource', r.name, 'kind', s.kind,
                                                'config', s.config)
                   ORDER BY r.name, s.kind)
              FROM driftmirror.metric_source s
              JOIN driftmirror.resource r ON r.id = s.resource_id
             WHERE s.group_id = g.id), '[]'),
        'routers', coalesce((
            SELECT jsonb_agg(jsonb_build_object('name', rt.name, 'kind', rt.kind,
                                                'endpoint', rt.endpoint,
                                                'options', rt.options || jsonb_build_object('resource', r.name))
                   ORDER BY rt.name)
              FROM driftmirror.router rt
              JOIN driftmirror.resource r ON r.id = rt.resource_id
             WHERE rt.group_id = g.id), '[]'),
        'models', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'resource', r.name, 'metric', d.name, 'unit', d.unit,
                       'metric_description', d.description,
                       'model', to_jsonb(m) - 'id' - 'group_id' - 'resource_id' - 'metric_id'
                                - 'rolling_mae' - 'rolling_points' - 'rolling_at')
                   ORDER BY r.name, d.name)
              FROM driftmirror.model m
              JOIN driftmirror.resource r ON r.id = m.resource_id
              JOIN driftmirror.metric_def d ON d.id = m.metric_id
             WHERE m.group_id = g.id
               AND m.version = (SELECT max(v.version) FROM driftmirror.model v
                                 WHERE v.resource_id = m.resource_id AND v.metric_id = m.metric_id)), '[]'))
      FROM driftmirror.resource_group g
     WHERE g.id = driftmirror._group_id(p_group, false)
$$;

-- _export_checksum: hex SHA-256 of a payload's canonical text
CREATE FUNCTION driftmirror._export_checksum(p_payload jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(convert_to(p_payload::text, 'UTF8')), 'hex')
$$;

CREATE FUNCTION driftmirror.dm_export("group" text, url text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    payload jsonb;
    sum     text;
    doc     jsonb;
    obj     text;
    res     record;
BEGIN
    IF url IS NULL OR url !~ '^https?://' THEN
        RAISE EXCEPTION 'export URL must be an http or https URL under driftmirror.s3_endpoint'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    payload := driftmirror._export_payload(p_group);
    sum := driftmirror._export_checksum(payload);
    doc := jsonb_build_object('format', 'driftmirror.export', 'format_version', 1,
                              'extension_version', (SELECT extversion FROM pg_extension
                                                     WHERE extname = 'driftmirror'),
                              'exported_at', clock_timestamp(), 'group', p_group,
                              'sha256', sum, 'payload', payload);
    obj := format('%s/%s/%s-%s.json', rtrim(url, '/'), p_group,
                  to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISSUS"Z"'),
                  left(sum, 12));
    res := driftmirror._s3_request('PUT', obj, doc::text);
    IF res.error IS NOT NULL OR res.status NOT BETWEEN 200 AND 299 THEN
        RAISE EXCEPTION 'could not export group "%"', p_group
            USING ERRCODE = 'connection_failure',
                  DETAIL = coalesce(res.error, format('the object store answered HTTP %s', res.status));
    END IF;
    -- the object's path only: the store's host is not for the monitor
    PERFORM driftmirror._log_action(p_group, NULL, 'export', 'dm_export',
                                    jsonb_build_object('object', regexp_replace(obj, '^https?://[^/]*', ''),
                                                       'sha256', sum));
    RETURN obj;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_export(text, text) IS
    'Write the group''s configuration to a new, versioned object under url; returns the object''s URL';

CREATE FUNCTION driftmirror.dm_import(url text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    res  record;
    doc  jsonb;
    p    jsonb;
    g    text;
    r    jsonb;
    x    jsonb;
    skipped text[] := '{}';
BEGIN
    IF url IS NULL OR url !~ '^https?://' THEN
        RAISE EXCEPTION 'import URL must be an http or https URL under driftmirror.s3_endpoint'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    res := driftmirror._s3_request('GET', url);
    IF res.error IS NOT NULL OR res.status NOT BETWEEN 200 AND 299 THEN
        RAISE EXCEPTION 'could not read the object to import'
            USING ERRCODE = 'connection_failure',
                  DETAIL = coalesce(res.error, format('the object store answered HTTP %s', res.status));
    END IF;
    BEGIN
        doc := res.body::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'the object is not a driftmirror export: not JSON'
            USING ERRCODE = 'data_corrupted';
    END;
    IF jsonb_typeof(doc) <> 'object' OR doc ->> 'format' IS DISTINCT FROM 'driftmirror.export'
       OR jsonb_typeof(doc -> 'payload') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'the object is not a driftmirror export'
            USING ERRCODE = 'data_corrupted';
    END IF;
    IF doc ->> 'format_version' IS DISTINCT FROM '1' THEN
        RAISE EXCEPTION 'unsupported export format version %', doc ->> 'format_version'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    p := doc -> 'payload';
    IF driftmirror._export_checksum(p) IS DISTINCT FROM doc ->> 'sha256' THEN
        RAISE EXCEPTION 'the export is corrupted: its checksum does not match its content'
            USING ERRCODE = 'data_corrupted';
    END IF;

    g := p -> 'group' ->> 'name';
    PERFORM driftmirror.dm_create_group(g, coalesce(p -> 'group' -> 'options', '{}'));
    -- resources first, then their dependencies (any order of the list)
    FOR r IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'resources', '[]')) LOOP
        PERFORM driftmirror.dm_add_resource(g, r ->> 'name', r ->> 'kind', r ->> 'endpoint',
                                            '{}', coalesce(r -> 'options', '{}'));
    END LOOP;
    FOR r IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'resources', '[]')) LOOP
        IF jsonb_array_length(coalesce(r -> 'depends_on', '[]')) > 0 THEN
            PERFORM driftmirror.dm_alter_resource(g, r ->> 'name', depends_on =>
                        ARRAY(SELECT jsonb_array_elements_text(r -> 'depends_on')));
        END IF;
    END LOOP;
    FOR x IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'events', '[]')) LOOP
        PERFORM driftmirror.dm_add_event(g, x ->> 'name', (x ->> 'starts')::timestamptz,
                                         (x ->> 'ends')::timestamptz, coalesce(x -> 'options', '{}'));
    END LOOP;
    FOR x IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'metric_sources', '[]')) LOOP
        PERFORM driftmirror.dm_add_metric_source(g, x ->> 'resource', x ->> 'kind',
                                                 coalesce(x -> 'config', '{}'));
    END LOOP;
    -- models: the metric registered if need be, the model row as it was
    -- (version 1 here), so that forecasts use the method chosen there
    FOR x IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'models', '[]')) LOOP
        IF NOT EXISTS (SELECT FROM driftmirror.metric_def d WHERE d.name = x ->> 'metric') THEN
            PERFORM driftmirror.dm_register_metric(x ->> 'metric', coalesce(x ->> 'unit', ''),
                                                   coalesce(x ->> 'metric_description', ''));
        END IF;
        INSERT INTO driftmirror.model
            (group_id, resource_id, metric_id, version, method, description, source, step,
             seasons, window_points, horizon_steps, train_start, train_end, train_points,
             events, backtest_points, backtest_mase, coverage80, coverage95, backtest_mae,
             reason, trained_at, params)
        SELECT gid.id, driftmirror._resource_id(gid.id, g, x ->> 'resource'),
               (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = x ->> 'metric'), 1,
               mr.method, mr.description, mr.source, mr.step, mr.seasons, mr.window_points,
               mr.horizon_steps, mr.train_start, mr.train_end, mr.train_points,
               coalesce(mr.events, '{}'), mr.backtest_points, mr.backtest_mase, mr.coverage80,
               mr.coverage95, mr.backtest_mae, mr.reason || ' (imported)', mr.trained_at,
               mr.params
          FROM (SELECT driftmirror._group_id(g, false) AS id) gid,
               jsonb_populate_record(NULL::driftmirror.model, x -> 'model') mr;
    END LOOP;
    -- routers route to a mirror: those whose resource has none yet wait
    -- for dm_create_mirror, and are named in a NOTICE
    FOR x IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'routers', '[]')) LOOP
        IF EXISTS (SELECT FROM driftmirror.mirror m
                    WHERE m.group_name = g AND m.resource_name = x -> 'options' ->> 'resource') THEN
            PERFORM driftmirror.dm_add_router(g, x ->> 'name', x ->> 'kind', x ->> 'endpoint',
                                              coalesce(x -> 'options', '{}'));
        ELSE
            skipped := skipped || (x ->> 'name');
        END IF;
    END LOOP;
    IF cardinality(skipped) > 0 THEN
        RAISE NOTICE 'router(s) % not recreated: their resource has no mirror here yet', array_to_string(skipped, ', ')
            USING HINT = 'Create the mirror with dm_create_mirror, then add the router with dm_add_router (its settings are in the export''s payload).';
    END IF;
    PERFORM driftmirror._log_action(g, NULL, 'import', 'dm_import',
                                    jsonb_build_object('object', regexp_replace(url, '^https?://[^/]*', ''),
                                                       'sha256', doc ->> 'sha256',
                                                       'exported_at', doc -> 'exported_at'));
    RETURN g;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_import(text) IS
    'Recreate a group from an export written by dm_export; refuses corrupted or foreign objects and changes nothing then';
