-- 45_worker.sql: functions the background worker calls.  Not for people:
-- executable by nobody but the owner (the worker runs as the bootstrap
-- superuser).
--
-- Functions only, each CREATE OR REPLACE: the update from 0.1.0 pastes this
-- file whole (sql/upgrade/0.1.0--0.2.0/13_worker.include).

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

-- _due_groups: groups whose monitoring step is due, most overdue first
CREATE OR REPLACE FUNCTION driftmirror._due_groups()
RETURNS TABLE (id bigint, name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.id, g.name
      FROM driftmirror.resource_group g
      LEFT JOIN driftmirror.group_state s ON s.group_id = g.id
     WHERE s.next_step_at IS NULL OR s.next_step_at <= clock_timestamp()
     ORDER BY s.next_step_at NULLS FIRST, g.id
$$;

-- _step_work: for each group of p_group_ids, which phases of its step have
-- something to do (the worker skips the others; see src/group_step.c).  One
-- set-based query per pass instead of one transaction per phase and group
-- that would only find no rows.  Columns:
--   promotions  an unfinished promotion (the promotion recovery phase)
--   mirrors     a mirror (the mirror, drift and auto-promotion phases)
--   shift_plan  a running shift plan
--   routers     a router
--   scaling     a resource with scale_metric and unit_capacity (forecasts
--               and scaling)
-- PL/pgSQL (its plan is kept between calls; and the routing tables it reads
-- are created after this file).
CREATE OR REPLACE FUNCTION driftmirror._step_work(p_group_ids bigint[])
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

-- _next_step_at: keep a steady cadence; after a late step, restart from now
CREATE OR REPLACE FUNCTION driftmirror._next_step_at(p_prev timestamptz, p_interval interval)
RETURNS timestamptz
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_prev + p_interval > clock_timestamp()
                THEN p_prev + p_interval
                ELSE clock_timestamp() + p_interval END
$$;

-- _step_heartbeat: the last phase of a successful step
CREATE OR REPLACE FUNCTION driftmirror._step_heartbeat(p_group_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g     driftmirror.resource_group;
    s     driftmirror.group_state;
    iv    interval;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    IF NOT FOUND THEN
        RETURN;                 -- dropped meanwhile
    END IF;
    iv := driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval');

    SELECT * INTO s FROM driftmirror.group_state WHERE group_id = p_group_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO driftmirror.group_state
            (group_id, last_step_at, last_heartbeat, next_step_at, steps_ok)
        VALUES (p_group_id, now(), clock_timestamp(), clock_timestamp() + iv, 1);
        RETURN;
    END IF;

    UPDATE driftmirror.group_state
       SET last_step_at = now(),
           last_heartbeat = clock_timestamp(),
           next_step_at = driftmirror._next_step_at(s.next_step_at, iv),
           steps_ok = s.steps_ok + 1,
           consecutive_failures = 0
     WHERE group_id = p_group_id;

    IF s.consecutive_failures > 0 THEN
        PERFORM driftmirror._log_action(g.name, NULL, 'step_recovered',
            format('monitoring step succeeded after %s failed step(s)', s.consecutive_failures),
            jsonb_build_object('last_error', s.last_error));
    END IF;
END
$$;

-- _step_failed: record a failed step; the first failure of a run is logged
-- as an action, the following ones only counted
CREATE OR REPLACE FUNCTION driftmirror._step_failed(p_group_id bigint, p_message text, p_sqlstate text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g     driftmirror.resource_group;
    s     driftmirror.group_state;
    iv    interval;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    iv := driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval');

    INSERT INTO driftmirror.group_state AS st
        (group_id, last_step_at, next_step_at, steps_failed, consecutive_failures,
         last_error, last_error_sqlstate, last_error_at)
    VALUES (p_group_id, now(), clock_timestamp() + iv, 1, 1,
            p_message, p_sqlstate, clock_timestamp())
    ON CONFLICT (group_id) DO UPDATE
       SET last_step_at = now(),
           next_step_at = driftmirror._next_step_at(st.next_step_at, iv),
           steps_failed = st.steps_failed + 1,
           consecutive_failures = st.consecutive_failures + 1,
           last_error = excluded.last_error,
           last_error_sqlstate = excluded.last_error_sqlstate,
           last_error_at = excluded.last_error_at
    RETURNING * INTO s;

    IF s.consecutive_failures = 1 THEN
        PERFORM driftmirror._log_action(g.name, NULL, 'step_failed',
            format('monitoring step failed: %s', p_message),
            jsonb_build_object('sqlstate', p_sqlstate), 'failed');
    END IF;
END
$$;
