-- 30_groups.sql: the group API: dm_create_group, dm_alter_group, dm_drop_group.
--
-- Every API function is SECURITY DEFINER with a fixed search_path, executable
-- by driftmirror_admin only (see 99_privileges.sql), and changes nothing when
-- it raises an error.
--
-- Functions and their comments only, each CREATE OR REPLACE: the update
-- from 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/79_groups.include).

CREATE OR REPLACE FUNCTION driftmirror.dm_create_group(name text, options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    opts   jsonb;
    gid    bigint;
BEGIN
    PERFORM driftmirror._check_name('group', p_name);
    opts := driftmirror._validate_group_options(options);

    -- serialise creations of the same name without relying on the error text
    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.group:' || p_name));
    IF EXISTS (SELECT FROM driftmirror.resource_group g WHERE g.name = p_name) THEN
        RAISE EXCEPTION 'resource group "%" already exists', p_name
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO driftmirror.resource_group (name, options)
    VALUES (p_name, opts)
    RETURNING id INTO gid;

    PERFORM driftmirror._log_action(p_name, NULL, 'create_group', 'dm_create_group',
                                    jsonb_build_object('options', opts));
    RETURN gid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_create_group(text, jsonb) IS
    'Create a resource group; returns its id';

CREATE OR REPLACE FUNCTION driftmirror.dm_alter_group(name text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    gid    bigint;
    old    jsonb;
    merged jsonb;
BEGIN
    gid := driftmirror._group_id(p_name, true);
    IF options IS NULL THEN
        RAISE EXCEPTION 'group options must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'To reset an option to its default, set it to JSON null: ''{"interval": null}''.';
    END IF;
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'group options must be a JSON object, not %', jsonb_typeof(options)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT g.options INTO old FROM driftmirror.resource_group g WHERE g.id = gid;
    -- a JSON null resets a key to its default
    merged := driftmirror._validate_group_options(jsonb_strip_nulls(old || options));

    UPDATE driftmirror.resource_group g
       SET options = merged, updated_at = now()
     WHERE g.id = gid;

    -- a new interval takes effect at once
    IF driftmirror._opt_interval(driftmirror._effective_options('group', merged) -> 'interval')
       IS DISTINCT FROM
       driftmirror._opt_interval(driftmirror._effective_options('group', old) -> 'interval') THEN
        UPDATE driftmirror.group_state SET next_step_at = NULL WHERE group_id = gid;
    END IF;

    PERFORM driftmirror._log_action(p_name, NULL, 'alter_group', 'dm_alter_group',
                                    jsonb_build_object('old', old, 'new', merged));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_alter_group(text, jsonb) IS
    'Change group options: given keys are set, keys set to null return to their default';

CREATE OR REPLACE FUNCTION driftmirror.dm_drop_group(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_name ALIAS FOR $1;
    gid    bigint;
    nres   bigint;
    nmir   bigint;
BEGIN
    IF force IS NULL THEN
        RAISE EXCEPTION 'force must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    gid := driftmirror._group_id(p_name, true);
    PERFORM driftmirror._refuse_while_promoting(gid, p_name);

    PERFORM driftmirror._refuse_while_poolers_owed(format('resource group "%s"', p_name),
                                                   'dropping the group would forget it', gid);

    SELECT count(*) INTO nres FROM driftmirror.resource r WHERE r.group_id = gid;
    IF nres > 0 AND NOT force THEN
        RAISE EXCEPTION 'resource group "%" still has % resource(s)', p_name, nres
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Remove the resources first, or call dm_drop_group(name, force => true).';
    END IF;

    -- deleting the group cascades to its mirrors, whose delete trigger
    -- queues the drop of their replication objects on every node (see
    -- 65_mirror_cleanup.sql): the worker keeps retrying those after the group is gone
    SELECT count(*) INTO nmir FROM driftmirror.mirror m WHERE m.group_id = gid;
    -- edges first: the depends_on side of an edge does not cascade
    DELETE FROM driftmirror.resource_dependency d WHERE d.group_id = gid;
    DELETE FROM driftmirror.resource_group g WHERE g.id = gid;
    PERFORM driftmirror._log_action(p_name, NULL, 'drop_group', 'dm_drop_group',
                                    jsonb_build_object('force', force, 'resources', nres,
                                                       'mirrors', nmir));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_drop_group(text, boolean) IS
    'Drop a group; with force, also its resources and their mirrors (replication objects are dropped by the worker); refused while a promotion owes a pgbouncer router a RESUME';
