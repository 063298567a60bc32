-- dm_remove_resource refuses (55006) while a promotion of the resource still
-- owes one of its pgbouncer routers a RESUME (sql/install/35_resources.sql)
CREATE OR REPLACE FUNCTION driftmirror.dm_remove_resource("group" text, name text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_name  ALIAS FOR $2;
    gid     bigint;
    rid     bigint;
    users   text;
    owed    bigint[];
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_name);
    PERFORM driftmirror._refuse_while_promoting(gid, p_group, rid);

    -- the resource's routers go with it (ON DELETE CASCADE): a promotion
    -- that still owes one of them a RESUME (promote_poolers.c) could not
    -- find it any more, and the pooler would stay paused
    SELECT array_agg(p.id ORDER BY p.id) INTO owed
      FROM driftmirror.promotion p
     WHERE p.resource_id = rid
       AND (p.poolers_paused IS NOT NULL OR p.poolers_removed IS NOT NULL);
    IF owed IS NOT NULL THEN
        RAISE EXCEPTION 'resource "%" has a pgbouncer router still paused by a promotion', p_name
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Promotion %s must resume it first; removing the resource would lose the router.',
                                  array_to_string(owed, ', ')),
                  HINT = 'Wait for the worker to resume the pooler (it retries every step; see dm_promotions), '
                         'or make the pgbouncer reachable again so that it can; if it is gone for good, '
                         'give the RESUME up with dm_router_forget_pause(group, router).';
    END IF;

    SELECT string_agg(format('"%s"', r.name), ', ' ORDER BY r.name) INTO users
      FROM driftmirror.resource_dependency d
      JOIN driftmirror.resource r ON r.id = d.resource_id
     WHERE d.depends_on_id = rid;
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'resource "%" is a dependency of %', p_name, users
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Remove those resources or their dependency on it first.';
    END IF;

    DELETE FROM driftmirror.resource r WHERE r.id = rid;
    PERFORM driftmirror._log_action(p_group, p_name, 'remove_resource', 'dm_remove_resource');
END
$$;
