-- 30_fence_2pc.sql: the promotion guardrails refuse while the primary's
-- database has prepared transactions (the fence refuses COMMIT PREPARED).
-- _promotion_guardrails: compare what the driver read on both nodes with
-- the limits; store the figures; return NULL when every check passes, else
-- one reason per line, each with the figures compared
CREATE OR REPLACE FUNCTION driftmirror._promotion_guardrails(p_id bigint, o jsonb, n jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p        driftmirror.promotion;
    m        driftmirror.mirror;
    reasons  text[] := '{}';
    only_old text[];
    only_new text[];
    lag_b    bigint := (o ->> 'lag_bytes')::bigint;
    max_b    bigint;
    max_s    double precision;
    max_x    double precision;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    max_b := (p.options ->> 'promote_max_lag_bytes')::bigint;
    max_s := (p.options ->> 'promote_max_lag_seconds')::double precision;
    max_x := (p.options ->> 'promote_max_xact_seconds')::double precision;

    IF m.state <> 'mirroring' THEN
        reasons := reasons || format('mirror not in sync: its state is %s (%s)', m.state,
                                     coalesce(m.state_reason, 'no reason recorded'));
    END IF;
    IF NOT coalesce((o ->> 'slot_exists')::boolean, false) THEN
        reasons := reasons || format('mirror not in sync: its replication slot %s is missing on the primary',
                                     m.slot_name);
    END IF;
    IF NOT coalesce((n ->> 'sub_exists')::boolean, false) THEN
        reasons := reasons || format('mirror not in sync: subscription %s is missing on the mirror',
                                     m.subscription_name);
    ELSIF NOT (n ->> 'sub_enabled')::boolean THEN
        reasons := reasons || format('mirror not in sync: subscription %s is disabled', m.subscription_name);
    ELSIF NOT (n ->> 'worker_running')::boolean THEN
        reasons := reasons || 'mirror not in sync: its apply worker is not running'::text;
    END IF;
    IF coalesce((n ->> 'tables_not_ready')::integer, 0) > 0 THEN
        reasons := reasons || format('mirror not in sync: %s table(s) still in their initial copy',
                                     n ->> 'tables_not_ready');
    END IF;
    IF lag_b IS NOT NULL AND lag_b > max_b THEN
        reasons := reasons || format('replication lag %s bytes exceeds promote_max_lag_bytes %s',
                                     lag_b, max_b);
    END IF;
    IF m.lag_seconds IS NOT NULL AND m.lag_seconds > max_s THEN
        reasons := reasons || format('replication lag %s s exceeds promote_max_lag_seconds %s',
                                     round(m.lag_seconds::numeric, 3), max_s);
    END IF;
    -- an error stops the apply worker, which restarts 5 s later: errors
    -- count as current until the worker has run cleanly for 10 s since
    -- (a lost connection to the primary counts as an error too)
    IF coalesce((n ->> 'apply_errors')::bigint, 0) + coalesce((n ->> 'sync_errors')::bigint, 0) > 0
       AND coalesce((n ->> 'worker_uptime_seconds')::numeric, 0) < 10 THEN
        reasons := reasons || format('the mirror reports %s apply error(s) and %s sync error(s) and its apply worker has run only %s s since (less than 10 s; pg_stat_subscription_stats, reset with pg_stat_reset_subscription_stats once fixed)',
                                     coalesce(n ->> 'apply_errors', '0'), coalesce(n ->> 'sync_errors', '0'),
                                     coalesce(n ->> 'worker_uptime_seconds', '0'));
    END IF;
    IF coalesce((o ->> 'long_xacts')::integer, 0) > 0 THEN
        reasons := reasons || format('%s write transaction(s) on the primary older than promote_max_xact_seconds %s; the oldest has run %s s',
                                     o ->> 'long_xacts', max_x, o ->> 'oldest_write_xact_seconds');
    END IF;
    -- the fence refuses COMMIT PREPARED: a transaction prepared before it
    -- could only commit on the old primary, after the fence LSN, and be lost
    IF coalesce((o ->> 'prepared_xacts')::integer, 0) > 0 THEN
        reasons := reasons || format('%s prepared transaction(s) in the primary''s database, the oldest prepared %s s ago: the fence would refuse their COMMIT PREPARED; finish them (COMMIT PREPARED or ROLLBACK PREPARED) first',
                                     o ->> 'prepared_xacts', o ->> 'oldest_prepared_seconds');
    END IF;
    SELECT array_agg(x ORDER BY x) INTO only_old
      FROM (SELECT jsonb_array_elements_text(o -> 'schema') EXCEPT
            SELECT jsonb_array_elements_text(n -> 'schema')) d (x);
    SELECT array_agg(x ORDER BY x) INTO only_new
      FROM (SELECT jsonb_array_elements_text(n -> 'schema') EXCEPT
            SELECT jsonb_array_elements_text(o -> 'schema')) d (x);
    IF only_old IS NOT NULL OR only_new IS NOT NULL THEN
        reasons := reasons || format('DDL since the mirror was made: the schemas differ (only on the primary: %s; only on the mirror: %s)',
                                     coalesce(array_to_string(only_old[1:10], ', '), 'nothing'),
                                     coalesce(array_to_string(only_new[1:10], ', '), 'nothing'));
    END IF;

    UPDATE driftmirror.promotion
       SET guardrails = jsonb_build_object(
               'mirror_state', m.state,
               'lag_bytes', lag_b, 'max_lag_bytes', max_b,
               'lag_seconds', m.lag_seconds, 'max_lag_seconds', max_s,
               'apply_errors', n -> 'apply_errors', 'sync_errors', n -> 'sync_errors',
               'worker_running', n -> 'worker_running',
               'worker_uptime_seconds', n -> 'worker_uptime_seconds',
               'tables_not_ready', n -> 'tables_not_ready',
               'long_write_xacts', o -> 'long_xacts', 'max_xact_seconds', max_x,
               'oldest_write_xact_seconds', o -> 'oldest_write_xact_seconds',
               'prepared_xacts', o -> 'prepared_xacts',
               'oldest_prepared_seconds', o -> 'oldest_prepared_seconds',
               'schema_only_on_primary', to_jsonb(coalesce(only_old, '{}')),
               'schema_only_on_mirror', to_jsonb(coalesce(only_new, '{}')),
               'passed', cardinality(reasons) = 0,
               'reasons', to_jsonb(reasons))
     WHERE id = p_id;
    UPDATE driftmirror.promotion_step
       SET details = (SELECT guardrails FROM driftmirror.promotion WHERE id = p_id)
     WHERE promotion_id = p_id AND step = 'guardrails' AND outcome = 'running';
    RETURN CASE WHEN cardinality(reasons) > 0 THEN array_to_string(reasons, E'\n') END;
END
$$;
