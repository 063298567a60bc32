-- 40_metric_store_bounds.sql: the metric store takes only what it should.
-- Collected samples outside the group's retention or more than one day
-- ahead are dropped before the store makes partitions for them;
-- partitions made for data are bounded per call (_ensure_partitions gains
-- p_max; dm_create_partitions, an explicit request, passes none).
DROP FUNCTION driftmirror._ensure_partitions(timestamptz, timestamptz);
CREATE FUNCTION driftmirror._ensure_partitions(p_from timestamptz, p_to timestamptz,
                                               p_max integer DEFAULT 400)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    iv  interval;
    t   timestamptz;
    lo  timestamptz;
    hi  timestamptz;
    nm  text;
    n   integer := 0;
    cov timestamptz;
    mode text;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (
        WITH RECURSIVE walk (upto) AS (
            SELECT p.hi FROM driftmirror.metric_partition p
             WHERE p.lo <= p_from AND p.hi > p_from
            UNION ALL
            SELECT p.hi FROM walk w JOIN driftmirror.metric_partition p ON p.lo = w.upto
             WHERE w.upto <= p_to
        )
        SELECT FROM walk HAVING max(upto) > p_to) THEN
        NULL;                   -- something is missing: fall through
    ELSE
        RETURN 0;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('driftmirror.metric_partition'));
    SELECT s.partition_interval, s.index_mode INTO iv, mode FROM driftmirror.metric_settings s;
    -- refused up front when even the partitions already there leave too
    -- many to make (the loop below checks the exact count as it goes)
    IF p_max IS NOT NULL
       AND ceil(extract(epoch FROM p_to - p_from) / extract(epoch FROM iv)) + 1
           - (SELECT count(*) FROM driftmirror.metric_partition p WHERE p.hi > p_from AND p.lo <= p_to)
           > p_max THEN
        RAISE EXCEPTION 'the rows would need more than % new metric partitions', p_max
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('They span %s to %s.', p_from, p_to),
                  HINT = 'Create them first with dm_create_partitions(starts, ends), or ingest a shorter range.';
    END IF;
    t := p_from;
    WHILE t <= p_to LOOP
        SELECT p.hi INTO cov FROM driftmirror.metric_partition p
         WHERE p.lo <= t AND p.hi > t;
        IF FOUND THEN
            t := cov;
            CONTINUE;
        END IF;
        lo := date_bin(iv, t, timestamptz '2000-01-01 00:00:00+00');
        hi := lo + iv;
        lo := greatest(lo, (SELECT max(p.hi) FROM driftmirror.metric_partition p WHERE p.hi <= t));
        hi := least(hi, (SELECT min(p.lo) FROM driftmirror.metric_partition p WHERE p.lo > t));
        IF p_max IS NOT NULL AND n >= p_max THEN
            RAISE EXCEPTION 'the rows would need more than % new metric partitions', p_max
                USING ERRCODE = 'program_limit_exceeded',
                      DETAIL = format('They span %s to %s.', p_from, p_to),
                      HINT = 'Create them first with dm_create_partitions(starts, ends), or ingest a shorter range.';
        END IF;
        nm := 'metric_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
        EXECUTE format('CREATE TABLE driftmirror.%I PARTITION OF driftmirror.metric FOR VALUES FROM (%L) TO (%L)',
                       nm, lo, hi);
        EXECUTE format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', nm);
        INSERT INTO driftmirror.metric_partition (name, lo, hi) VALUES (nm, lo, hi);
        IF mode = 'immediate' THEN
            PERFORM driftmirror._index_partition(nm);
        ELSIF mode = 'brin' THEN
            PERFORM driftmirror._brin_partition(nm);
        END IF;
        n := n + 1;
        t := hi;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION driftmirror._ensure_partitions(timestamptz, timestamptz, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION driftmirror.dm_create_partitions(starts timestamptz, ends timestamptz)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF starts IS NULL OR ends IS NULL THEN
        RAISE EXCEPTION 'partition range bounds must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(starts) OR NOT isfinite(ends) OR ends < starts
       OR starts < now() - interval '3650 days' OR ends > now() + interval '400 days' THEN
        RAISE EXCEPTION 'invalid partition range from % to %', starts, ends
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The range must be finite, ordered, and within 3650 days before and 400 days after now.';
    END IF;
    RETURN driftmirror._ensure_partitions(starts, ends, NULL);
END
$$;

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
