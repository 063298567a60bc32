-- 12_worker_cycle.sql: worker_state records the time between passes (the
-- exporter's driftmirror_worker_loop_seconds).
ALTER TABLE driftmirror.worker_state ADD COLUMN last_cycle_ms float8;

-- _worker_heartbeat: record one pass of the worker
CREATE OR REPLACE FUNCTION driftmirror._worker_heartbeat(p_pid integer, p_enabled boolean,
                                              p_naptime_ms integer, p_reloaded boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.worker_state AS w
        (pid, started_at, last_pass_at, passes, enabled, naptime_ms, reloaded_at)
    VALUES (p_pid, clock_timestamp(), clock_timestamp(), 1, p_enabled, p_naptime_ms,
            CASE WHEN p_reloaded THEN clock_timestamp() END)
    ON CONFLICT (singleton) DO UPDATE
       SET pid = excluded.pid,
           started_at = CASE WHEN w.pid = excluded.pid THEN w.started_at
                             ELSE excluded.started_at END,
           last_pass_at = excluded.last_pass_at,
           passes = CASE WHEN w.pid = excluded.pid THEN w.passes + 1 ELSE 1 END,
           enabled = excluded.enabled,
           naptime_ms = excluded.naptime_ms,
           reloaded_at = coalesce(excluded.reloaded_at, w.reloaded_at),
           last_cycle_ms = CASE WHEN w.pid = excluded.pid
                                THEN 1000 * extract(epoch FROM excluded.last_pass_at - w.last_pass_at)::float8
                           END
$$;
