-- 78_pooler_resume.sql: a promotion never leaves a pgbouncer router paused
-- (issue 11): a router removed while a promotion had it paused stays owed
-- a RESUME (the promotion keeps what resuming it needs); the worker's step
-- looks for ended promotions that still owe one.  dm_remove_router itself
-- comes from 74_routing.include.

ALTER TABLE driftmirror.promotion ADD COLUMN poolers_removed jsonb;

CREATE INDEX promotion_poolers_owed ON driftmirror.promotion (group_id)
    WHERE poolers_paused IS NOT NULL OR poolers_removed IS NOT NULL;

-- _step_work: see sql/install/45_worker.sql (promotions that owe a RESUME)
CREATE OR REPLACE FUNCTION driftmirror._step_work(p_group_ids bigint[])
RETURNS TABLE (group_id bigint, promotions boolean, mirrors boolean, shift_plan boolean,
               routers boolean, scaling boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT g.id,
           EXISTS (SELECT FROM driftmirror._promotions_unfinished(g.id))
           OR EXISTS (SELECT FROM driftmirror.promotion p
                       WHERE p.group_id = g.id
                         AND (p.poolers_paused IS NOT NULL OR p.poolers_removed IS NOT NULL)),
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
