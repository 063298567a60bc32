-- 55_metric_ingest.sql: metric names and the push path: _check_metric_name,
-- dm_register_metric, _ingest_target and dm_ingest (C, src/metric_ingest.c).

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
