-- 40_events.sql: the event API: dm_add_event, dm_remove_event.
--
-- Events are external factors (campaigns, batch jobs, holidays) that the
-- forecasting models use as regressors.

CREATE FUNCTION driftmirror.dm_add_event("group" text, name text,
                                         starts timestamptz, ends timestamptz,
                                         options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    gid     bigint;
    eid     bigint;
    opts    jsonb;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    PERFORM driftmirror._check_name('event', p_name);
    IF starts IS NULL OR ends IS NULL THEN
        RAISE EXCEPTION 'event start and end must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(starts) OR NOT isfinite(ends) THEN
        RAISE EXCEPTION 'event start and end must be finite'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ends < starts THEN
        RAISE EXCEPTION 'event "%" ends before it starts', p_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    opts := driftmirror._validate_options('event', options);
    IF opts ? 'resource' THEN
        PERFORM driftmirror._resource_id(gid, p_group, opts ->> 'resource');
    END IF;
    IF EXISTS (SELECT FROM driftmirror.event e
                WHERE e.group_id = gid AND e.name = p_name AND e.starts = $3) THEN
        RAISE EXCEPTION 'event "%" starting at % already exists in group "%"', p_name, $3, p_group
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO driftmirror.event (group_id, name, starts, ends, options)
    VALUES (gid, p_name, $3, $4, opts)
    RETURNING id INTO eid;
    PERFORM driftmirror._log_action(p_group, NULL, 'add_event', 'dm_add_event',
                                    jsonb_build_object('event', p_name, 'starts', $3,
                                                       'ends', $4, 'options', opts));
    RETURN eid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_add_event(text, text, timestamptz, timestamptz, jsonb) IS
    'Record an external event (campaign, batch job, holiday) used as a forecasting regressor';

CREATE FUNCTION driftmirror.dm_remove_event("group" text, name text,
                                            starts timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    gid     bigint;
    n       integer;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    PERFORM driftmirror._check_name('event', p_name);
    DELETE FROM driftmirror.event e
     WHERE e.group_id = gid AND e.name = p_name
       AND ($3 IS NULL OR e.starts = $3);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION 'event "%" does not exist in group "%"', p_name, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM driftmirror._log_action(p_group, NULL, 'remove_event', 'dm_remove_event',
                                    jsonb_build_object('event', p_name, 'removed', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_remove_event(text, text, timestamptz) IS
    'Remove an event (every occurrence of the name, or the one starting at starts)';
