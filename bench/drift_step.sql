-- bench/drift_step.sql: the cost of the worker's drift phase per mirror
-- and step, beside the auto-promotion check of the same mirrors (the
-- baseline: a phase that already runs each step).
--
-- Run it in a scratch database where driftmirror is created and that the
-- worker does not watch (not driftmirror.database):
--   psql -X -d scratch -v mirrors=20 -v steps=100 -f bench/drift_step.sql
-- It makes group bench_drift with :mirrors hand-made mirror rows in state
-- mirroring (no node behind them: the phases read the catalog), 60 stored
-- drift scores per mirror (a full forecast window), times :steps calls of
-- each phase, prints ms per mirror and step, and drops the group.
\set ON_ERROR_STOP on
\if :{?mirrors} \else \set mirrors 20 \endif
\if :{?steps} \else \set steps 100 \endif
SET client_min_messages = warning;

SELECT driftmirror.dm_create_group('bench_drift', '{"interval": "10s", "auto_promote": true,
    "mode": "forecast_and_scale", "lead_time": "5 minutes"}') IS NOT NULL AS created \gset
SELECT count(driftmirror.dm_add_resource('bench_drift', 'db' || i, 'postgres',
                                         format('host=127.0.0.1 port=%s dbname=app', 20000 + i)))
  FROM generate_series(1, :mirrors) i \gset
INSERT INTO driftmirror.mirror
    (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
     publisher_endpoint, mirror_endpoint, two_way, fence, copy_data,
     publication_name, slot_name, subscription_name, state, step,
     lag_seconds, lag_bytes, primary_checked_at, mirror_checked_at)
SELECT g.id, r.id, g.name, r.name, 'postgres', r.endpoint, r.endpoint,
       replace(r.endpoint, 'port=2', 'port=3'), false, false, true,
       'dm_b' || r.id, 'dm_b' || r.id, 'dm_b' || r.id, 'mirroring', 'subscription',
       0.5, 1024, clock_timestamp(), clock_timestamp()
  FROM driftmirror.resource_group g JOIN driftmirror.resource r ON r.group_id = g.id
 WHERE g.name = 'bench_drift';
-- a full window of scores (a slow ramp with noise), 10 s apart
SELECT driftmirror._store_samples(array_agg(now() - (60 - k) * interval '10 seconds'),
                                  array_agg(r.id), array_agg(d.id),
                                  array_agg((0.01 * k + 0.02 * random())::float8))
  FROM driftmirror.resource r
  JOIN driftmirror.resource_group g ON g.id = r.group_id AND g.name = 'bench_drift'
  CROSS JOIN generate_series(0, 59) k
  CROSS JOIN driftmirror.metric_def d
 WHERE d.name = 'drift.score' \gset
SELECT id AS gid FROM driftmirror.resource_group WHERE name = 'bench_drift' \gset

SELECT set_config('bench.gid', :'gid', false), set_config('bench.mirrors', :'mirrors', false),
       set_config('bench.steps', :'steps', false) \gset
CREATE TEMP TABLE bench_result (phase text, ms_per_mirror_step numeric);
DO $$
DECLARE
    gid   bigint := current_setting('bench.gid')::bigint;
    n     integer := current_setting('bench.mirrors')::integer;
    steps integer := current_setting('bench.steps')::integer;
    ph    record;
    t0    timestamptz;
BEGIN
    FOR ph IN SELECT * FROM (VALUES ('drift (_drift_step)', '_drift_step'),
                                    ('baseline: auto-promotion (_auto_promote_check)', '_auto_promote_check')) v(label, fn)
    LOOP
        EXECUTE format('SELECT count(*) FROM driftmirror.%I($1)', ph.fn) USING gid;     -- warm caches
        t0 := clock_timestamp();
        FOR i IN 1 .. steps LOOP
            EXECUTE format('SELECT count(*) FROM driftmirror.%I($1)', ph.fn) USING gid;
        END LOOP;
        INSERT INTO bench_result VALUES (ph.label,
            round((extract(epoch FROM clock_timestamp() - t0) * 1000 / steps / n)::numeric, 3));
    END LOOP;
END
$$;
SELECT :mirrors AS mirrors, :steps AS steps, phase, ms_per_mirror_step FROM bench_result;
SELECT driftmirror.dm_drop_group('bench_drift', force => true) IS NOT NULL AS dropped \gset
