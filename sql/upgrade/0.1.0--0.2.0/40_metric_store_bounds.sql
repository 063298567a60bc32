-- 40_metric_store_bounds.sql: the metric store takes only what it should.
-- Collected samples outside the group's retention or more than one day
-- ahead are dropped before the store makes partitions for them;
-- partitions made for data are bounded per call (_ensure_partitions gains
-- p_max; dm_create_partitions, an explicit request, passes none).  The new
-- _ensure_partitions and dm_create_partitions come with the metric code
-- (43_metric_code.include), once the old signature is gone.
DROP FUNCTION driftmirror._ensure_partitions(timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION driftmirror._store_samples(p_ts timestamptz[], p_rid bigint[],
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
