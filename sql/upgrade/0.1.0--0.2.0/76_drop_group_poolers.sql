-- 76_drop_group_poolers.sql: dm_drop_group refuses while a promotion of
-- the group still owes a pgbouncer router a RESUME (deleting the group
-- would delete the promotion, and the pooler would stay paused).  PL/pgSQL:
-- the columns it reads are added by 77_promotion_poolers.sql and
-- 78_pooler_resume.sql.

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
    owed   bigint[];
BEGIN
    IF force IS NULL THEN
        RAISE EXCEPTION 'force must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    gid := driftmirror._group_id(p_name, true);
    PERFORM driftmirror._refuse_while_promoting(gid, p_name);

    -- a promotion that still owes a pgbouncer router a RESUME
    -- (promote_poolers.c) would be deleted with the group, and the worker
    -- would never resume it: the pooler would stay paused
    SELECT array_agg(p.id ORDER BY p.id) INTO owed
      FROM driftmirror.promotion p
     WHERE p.group_id = gid
       AND (p.poolers_paused IS NOT NULL OR p.poolers_removed IS NOT NULL);
    IF owed IS NOT NULL THEN
        RAISE EXCEPTION 'resource group "%" has a pgbouncer router still paused by a promotion', p_name
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Promotion %s must resume it first; dropping the group would forget it.',
                                  array_to_string(owed, ', ')),
                  HINT = 'Wait for the worker to resume the pooler (it retries every step; see dm_promotions), '
                         'or make the pgbouncer reachable again so that it can; if it is gone for good, '
                         'give the RESUME up with dm_router_forget_pause(group, router).';
    END IF;

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
