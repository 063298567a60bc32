-- 12_worker_cycle.sql: worker_state records the time between passes (the
-- exporter's driftmirror_worker_loop_seconds), which _worker_heartbeat
-- writes (13_worker.include).
ALTER TABLE driftmirror.worker_state ADD COLUMN last_cycle_ms float8;
