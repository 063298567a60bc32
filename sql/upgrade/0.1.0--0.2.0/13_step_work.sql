-- 13_step_work.sql: the worker reads, once per pass, which phases of each
-- due group's step have something to do (45_worker.sql).

-- _step_work: see sql/install/45_worker.sql
CREATE FUNCTION driftmirror._step_work(p_group_ids bigint[])
RETURNS TABLE (group_id bigint, promotions boolean, mirrors boolean, shift_plan boolean,
               routers boolean, scaling boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT g.id,
           EXISTS (SELECT FROM driftmirror._promotions_unfinished(g.id)),
           EXISTS (SELECT FROM driftmirror.mirror m WHERE m.group_id = g.id),
           EXISTS (SELECT FROM driftmirror.shift_plan sp
                    WHERE sp.group_id = g.id AND sp.state = 'running'),
           EXISTS (SELECT FROM driftmirror.router rt WHERE rt.group_id = g.id),
           EXISTS (SELECT FROM driftmirror.resource r
                    WHERE r.group_id = g.id AND r.options ? 'scale_metric'
                      AND r.options ? 'unit_capacity')
      FROM unnest(p_group_ids) AS g (id);
END
$$;
REVOKE ALL ON FUNCTION driftmirror._step_work(bigint[]) FROM PUBLIC;
