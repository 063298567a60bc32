-- 87_drift_traffic.sql: the status reads of both nodes also return the
-- traffic counters of their database (pg_stat_database: transactions and
-- rollbacks), which _mirror_record_status (31_mirror_lag_probe.sql)
-- stores as metrics and the drift phase (78_drift.sql) normalises by.

-- _mirror_traffic_sql: new, as in sql/install/60_mirrors.sql
CREATE FUNCTION driftmirror._mirror_traffic_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT $f$  'xacts', (SELECT d.xact_commit OPERATOR(pg_catalog.+) d.xact_rollback FROM pg_catalog.pg_stat_database d
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()),
  'rollbacks', (SELECT d.xact_rollback FROM pg_catalog.pg_stat_database d
                 WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()),$f$
$$;
REVOKE ALL ON FUNCTION driftmirror._mirror_traffic_sql() FROM PUBLIC;

-- _mirror_primary_status_sql: as in sql/install/60_mirrors.sql
CREATE OR REPLACE FUNCTION driftmirror._mirror_primary_status_sql(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$SELECT pg_catalog.jsonb_build_object(
%s
  'now_lsn', pg_catalog.pg_current_wal_lsn(),
  'slot_exists', s.slot_name IS NOT NULL,
  'slot_active', s.active,
  'confirmed_lsn', s.confirmed_flush_lsn,
  'lag_bytes', pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
  'fence', (SELECT f.mode FROM driftmirror_node.fence_status() f
             WHERE f.dboid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                                   WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())),
  'sequences', (SELECT COALESCE(pg_catalog.jsonb_object_agg(
                    pg_catalog.format('%%I.%%I', q.schemaname, q.sequencename), q.last_value), '{}')
                  FROM pg_catalog.pg_sequences q),
  'rev_apply_errors', (SELECT apply_error_count FROM pg_catalog.pg_stat_subscription_stats
                        WHERE subname OPERATOR(pg_catalog.=) %L),
  'rev_sync_errors', (SELECT sync_error_count FROM pg_catalog.pg_stat_subscription_stats
                       WHERE subname OPERATOR(pg_catalog.=) %L))::text
FROM (SELECT 1) one
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name OPERATOR(pg_catalog.=) %L$f$,
        driftmirror._mirror_traffic_sql(),
        coalesce(m.rev_subscription_name, ''), coalesce(m.rev_subscription_name, ''), m.slot_name)
$$;

-- _mirror_mirror_status_sql: as in sql/install/60_mirrors.sql
CREATE OR REPLACE FUNCTION driftmirror._mirror_mirror_status_sql(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$SELECT pg_catalog.jsonb_build_object(
%s
  'sub_exists', s.oid IS NOT NULL,
  'sub_enabled', s.subenabled,
  'fence', (SELECT f.mode FROM driftmirror_node.fence_status() f
             WHERE f.dboid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                                   WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())),
  'tables', (SELECT COALESCE(pg_catalog.jsonb_object_agg(r.srrelid::pg_catalog.regclass::text,
                      CASE r.srsubstate WHEN 'i' THEN 'init' WHEN 'd' THEN 'copying' WHEN 'f' THEN 'copied'
                                        WHEN 's' THEN 'synced' WHEN 'r' THEN 'ready' ELSE r.srsubstate::text END), '{}')
               FROM pg_catalog.pg_subscription_rel r WHERE r.srsubid OPERATOR(pg_catalog.=) s.oid),
  'apply_errors', st.apply_error_count,
  'sync_errors', st.sync_error_count,
  'worker_running', EXISTS (SELECT FROM pg_catalog.pg_stat_subscription w
                             WHERE w.subid OPERATOR(pg_catalog.=) s.oid AND w.pid IS NOT NULL AND w.relid IS NULL),
  'last_msg', (SELECT pg_catalog.max(w.last_msg_receipt_time) FROM pg_catalog.pg_stat_subscription w
                WHERE w.subid OPERATOR(pg_catalog.=) s.oid))::text
FROM (SELECT 1) one
LEFT JOIN pg_catalog.pg_subscription s ON s.subname OPERATOR(pg_catalog.=) %L
     AND s.subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                           WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid OPERATOR(pg_catalog.=) s.oid$f$,
        driftmirror._mirror_traffic_sql(), m.subscription_name)
$$;
