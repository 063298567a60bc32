-- 76_routing_plans.sql: shift plans: traffic moved to the mirror step by
-- step, each step held for a while and watched by gates, rolled back on
-- its own when a gate fails.
--
-- dm_shift_plan records a plan (validated, normalised); the worker runs it
-- as a phase of the group step (src/group_step.c -> _shift_plan_tick, one
-- transaction, no I/O): it sets the first step's shares, then at every
-- step of the group reads the gates of the current step (on the mirror
-- status the mirror phase just refreshed and the metric store), and
--   a gate fails          -> the shares go back to the last good step (the
--                            shares before the plan if none), writes to 0
--                            when the failure is an apply error (a
--                            conflict); the plan ends rolled_back
--   the hold has passed   -> the step is good; the next one starts, or the
--                            plan ends done
--   otherwise             -> the readings are kept (dm_shift_status)
-- Every step start, pass and rollback goes to the action log with its gate
-- readings (kind 'shift_step').  The router phase, right after, brings the
-- routers to the new shares.  The state lives in shift_plan, so a plan
-- survives a worker or server restart: the hold runs in wall-clock time
-- and continues where it was.
--
--   states: running -> done | rolled_back | aborted | failed; running <->
--   paused (the hold stops while paused: resuming moves step_started_at).
--
-- A gate that has no reading (no latency sample yet, no metric sample in
-- the step) holds the step: it neither passes nor fails it.

CREATE TABLE driftmirror.shift_plan (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id         bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    plan             jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'running'
                     CHECK (state IN ('running', 'paused', 'done', 'rolled_back', 'aborted', 'failed')),
    step             integer NOT NULL DEFAULT 0,
    good_step        integer NOT NULL DEFAULT 0,
    start_read_pct   integer NOT NULL,
    start_write_pct  integer NOT NULL,
    errors_at_start  bigint,
    step_started_at  timestamptz,
    paused_at        timestamptz,
    last_readings    jsonb,
    reason           text,
    requested_by     text NOT NULL DEFAULT session_user,
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz
);
CREATE UNIQUE INDEX shift_plan_one_active ON driftmirror.shift_plan (group_id)
    WHERE state IN ('running', 'paused');
COMMENT ON TABLE driftmirror.shift_plan IS
    'Shift plans: steps of traffic shares with holds and gates, run by the worker';

-- _shift_plan_normalize: validate a plan for a group and return it with
-- every step complete: {"steps": [{"read", "write", "hold", "gates"}]}.
-- Raises (22023, 55000, 42704) naming what is wrong.
CREATE FUNCTION driftmirror._shift_plan_normalize(p_group_id bigint, p_group text, p jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gate_keys constant text[] := ARRAY['max_lag_bytes', 'max_lag_seconds', 'max_apply_errors',
                                       'max_latency_ratio', 'metrics'];
    k      text;
    v      jsonb;
    st     jsonb;
    g      jsonb;
    gates  jsonb;
    hold   interval;
    rd     numeric;
    wr     numeric;
    i      integer := 0;
    out    jsonb := '[]';
    mt     jsonb;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
        RAISE EXCEPTION 'a shift plan must be a JSON object with "steps"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(p) LOOP
        IF k NOT IN ('steps', 'hold', 'gates') THEN
            RAISE EXCEPTION 'unknown shift plan key "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Keys: steps, hold (the default hold), gates (the default gates).';
        END IF;
    END LOOP;
    IF jsonb_typeof(p -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(p -> 'steps') NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'a shift plan needs "steps": an array of 1 to 100 steps'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.read_pct, s.write_pct INTO rd, wr FROM driftmirror.shift s WHERE s.group_id = p_group_id;
    rd := coalesce(rd, 0);
    wr := coalesce(wr, 0);
    FOR st IN SELECT x FROM jsonb_array_elements(p -> 'steps') x LOOP
        i := i + 1;
        IF jsonb_typeof(st) <> 'object' OR NOT (st ? 'read' OR st ? 'write') THEN
            RAISE EXCEPTION 'step % of the plan must be an object with "read" and/or "write"', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR k IN SELECT jsonb_object_keys(st) LOOP
            IF k NOT IN ('read', 'write', 'hold', 'gates') THEN
                RAISE EXCEPTION 'unknown key "%" in step % of the plan', k, i
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Keys of a step: read, write, hold, gates.';
            END IF;
        END LOOP;
        FOREACH k IN ARRAY ARRAY['read', 'write'] LOOP
            IF st ? k AND (jsonb_typeof(st -> k) <> 'number' OR (st ->> k)::numeric NOT BETWEEN 0 AND 100
                           OR (st ->> k)::numeric <> trunc((st ->> k)::numeric)) THEN
                RAISE EXCEPTION 'step %: "%" must be a whole percentage from 0 to 100', i, k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        rd := coalesce((st ->> 'read')::numeric, rd);
        wr := coalesce((st ->> 'write')::numeric, wr);
        v := coalesce(st -> 'hold', p -> 'hold', '"1 minute"');
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION 'step %: "hold" must be an interval', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            hold := (v #>> '{}')::interval;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
            RAISE EXCEPTION 'step %: "hold" must be an interval, not "%"', i, v #>> '{}'
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF hold NOT BETWEEN interval '1 second' AND interval '1 day' THEN
            RAISE EXCEPTION 'step %: "hold" must be between 1 second and 1 day', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        gates := coalesce(p -> 'gates', '{}') || coalesce(st -> 'gates', '{}');
        IF jsonb_typeof(gates) <> 'object' THEN
            RAISE EXCEPTION 'step %: "gates" must be an object', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR k, g IN SELECT * FROM jsonb_each(gates) LOOP
            IF NOT k = ANY (gate_keys) THEN
                RAISE EXCEPTION 'step %: unknown gate "%"', i, k
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Gates: %s.', array_to_string(gate_keys, ', '));
            END IF;
            IF k <> 'metrics' AND (jsonb_typeof(g) <> 'number' OR (g #>> '{}')::numeric < 0) THEN
                RAISE EXCEPTION 'step %: gate "%" must be a number of at least 0', i, k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF gates ? 'metrics' THEN
            IF jsonb_typeof(gates -> 'metrics') <> 'array' THEN
                RAISE EXCEPTION 'step %: gate "metrics" must be an array of {"metric", "resource", "max"}', i
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            FOR mt IN SELECT x FROM jsonb_array_elements(gates -> 'metrics') x LOOP
                IF jsonb_typeof(mt) <> 'object' OR jsonb_typeof(mt -> 'max') IS DISTINCT FROM 'number'
                   OR jsonb_typeof(mt -> 'metric') IS DISTINCT FROM 'string'
                   OR jsonb_typeof(mt -> 'resource') IS DISTINCT FROM 'string'
                   OR (SELECT count(*) FROM jsonb_object_keys(mt)) <> 3 THEN
                    RAISE EXCEPTION 'step %: each metric gate is {"metric": name, "resource": name, "max": number}', i
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                IF NOT EXISTS (SELECT FROM driftmirror.metric_def d WHERE d.name = mt ->> 'metric') THEN
                    RAISE EXCEPTION 'step %: metric "%" does not exist', i, mt ->> 'metric'
                        USING ERRCODE = 'undefined_object';
                END IF;
                PERFORM driftmirror._resource_id(p_group_id, p_group, mt ->> 'resource');
            END LOOP;
        END IF;
        -- apply errors are always watched: none allowed unless said
        gates := jsonb_build_object('max_apply_errors', 0) || gates;
        out := out || jsonb_build_object('read', rd::integer, 'write', wr::integer,
                                         'hold', hold::text, 'gates', gates);
    END LOOP;
    RETURN jsonb_build_object('steps', out);
END
$$;

-- _shift_plan_errors: apply and sync errors of the group's mirrors, both
-- directions (a conflict of a two-way mirror shows as an apply error)
CREATE FUNCTION driftmirror._shift_plan_errors(p_group_id bigint)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(m.apply_error_count + m.sync_error_count
                        + m.rev_apply_error_count + m.rev_sync_error_count), 0)::bigint
      FROM driftmirror.mirror m WHERE m.group_id = p_group_id
$$;

-- dm_shift_plan: record a plan for the group; the worker starts it at its
-- next step of the group.  Returns the plan's id.  Refused (nothing
-- recorded): a bad plan (22023), unknown group/metric/resource (42704), a
-- write share on a one-way mirror or no mirror (55000), a plan or a
-- promotion of the group in progress (55006).
CREATE FUNCTION driftmirror.dm_shift_plan("group" text, plan jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid  bigint;
    norm jsonb;
    m    record;
    sh   driftmirror.shift;
    id   bigint;
BEGIN
    gid := driftmirror._group_id($1, true);
    norm := driftmirror._shift_plan_normalize(gid, $1, $2);
    IF NOT EXISTS (SELECT FROM driftmirror.mirror mm WHERE mm.group_id = gid) THEN
        RAISE EXCEPTION 'group "%" has no mirror to shift traffic to', $1
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT FROM jsonb_array_elements(norm -> 'steps') s WHERE (s ->> 'write')::integer > 0) THEN
        FOR m IN SELECT * FROM driftmirror.mirror mm WHERE mm.group_id = gid AND NOT mm.two_way LOOP
            RAISE EXCEPTION 'the mirror of resource "%" is one-way: the plan''s write shares cannot apply to it', m.resource_name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'A write share needs a two-way mirror.';
        END LOOP;
    END IF;
    IF EXISTS (SELECT FROM driftmirror.shift_plan sp WHERE sp.group_id = gid AND sp.state IN ('running', 'paused')) THEN
        RAISE EXCEPTION 'group "%" already has a shift plan in progress', $1
            USING ERRCODE = 'object_in_use',
                  HINT = 'Abort it with dm_shift_abort first.';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.promotion p WHERE p.group_id = gid
                AND NOT driftmirror._promotion_is_final(p.state)) THEN
        RAISE EXCEPTION 'group "%" is being promoted', $1
            USING ERRCODE = 'object_in_use';
    END IF;
    SELECT * INTO sh FROM driftmirror.shift s WHERE s.group_id = gid;
    INSERT INTO driftmirror.shift_plan AS sp (group_id, plan, start_read_pct, start_write_pct, errors_at_start, reason)
    VALUES (gid, norm, coalesce(sh.read_pct, 0), coalesce(sh.write_pct, 0),
            driftmirror._shift_plan_errors(gid), 'waiting for the worker to start step 1')
    RETURNING sp.id INTO id;
    PERFORM driftmirror._log_action($1, NULL, 'shift_plan', format('shift plan %s recorded', id),
                                    jsonb_build_object('plan_id', id, 'plan', norm));
    RETURN id;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_shift_plan(text, jsonb) IS
    'Run a shift plan: steps of read/write shares, each held and gated, rolled back on a failed gate';

-- _shift_plan_active: the group's plan in progress, locked; raises 55000
-- without one
CREATE FUNCTION driftmirror._shift_plan_active(p_group text, p_states text[])
RETURNS driftmirror.shift_plan
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid bigint;
    sp  driftmirror.shift_plan;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    SELECT * INTO sp FROM driftmirror.shift_plan s
     WHERE s.group_id = gid AND s.state = ANY (p_states) FOR UPDATE;
    IF sp.id IS NULL THEN
        RAISE EXCEPTION 'group "%" has no shift plan %', p_group,
                        CASE WHEN p_states = ARRAY['running'] THEN 'running'
                             WHEN p_states = ARRAY['paused'] THEN 'paused' ELSE 'in progress' END
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN sp;
END
$$;

CREATE FUNCTION driftmirror.dm_shift_pause("group" text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp driftmirror.shift_plan;
BEGIN
    sp := driftmirror._shift_plan_active($1, ARRAY['running']);
    UPDATE driftmirror.shift_plan SET state = 'paused', paused_at = clock_timestamp(),
           reason = format('paused by %s in step %s', session_user, sp.step)
     WHERE id = sp.id;
    PERFORM driftmirror._log_action($1, NULL, 'shift_pause', format('shift plan %s paused in step %s', sp.id, sp.step),
                                    jsonb_build_object('plan_id', sp.id, 'step', sp.step));
    RETURN sp.id;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_shift_pause(text) IS
    'Pause the group''s shift plan: the shares stay, the hold stops';

CREATE FUNCTION driftmirror.dm_shift_resume("group" text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp driftmirror.shift_plan;
BEGIN
    sp := driftmirror._shift_plan_active($1, ARRAY['paused']);
    UPDATE driftmirror.shift_plan
       SET state = 'running', paused_at = NULL,
           step_started_at = step_started_at + (clock_timestamp() - sp.paused_at),
           reason = format('resumed by %s in step %s', session_user, sp.step)
     WHERE id = sp.id;
    PERFORM driftmirror._log_action($1, NULL, 'shift_resume', format('shift plan %s resumed in step %s', sp.id, sp.step),
                                    jsonb_build_object('plan_id', sp.id, 'step', sp.step));
    RETURN sp.id;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_shift_resume(text) IS
    'Resume the group''s paused shift plan where its hold stopped';

-- dm_shift_abort: end the plan and set the shares it started from (the
-- routers follow at the worker's next step of the group)
CREATE FUNCTION driftmirror.dm_shift_abort("group" text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp driftmirror.shift_plan;
BEGIN
    sp := driftmirror._shift_plan_active($1, ARRAY['running', 'paused']);
    UPDATE driftmirror.shift_plan
       SET state = 'aborted', finished_at = clock_timestamp(),
           reason = format('aborted by %s in step %s: shares back to %s%% of reads and %s%% of writes',
                           session_user, sp.step, sp.start_read_pct, sp.start_write_pct)
     WHERE id = sp.id;
    PERFORM driftmirror._shift_set($1, sp.start_read_pct, sp.start_write_pct,
                                   format('shift plan %s aborted', sp.id), sp.id);
    RETURN sp.id;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_shift_abort(text) IS
    'Abort the group''s shift plan and return to the shares it started from';

-- _shift_plan_readings: the gates of one step read now: the readings
-- (jsonb), the failures (one sentence each) and whether a gate has no
-- reading yet (holds the step)
CREATE FUNCTION driftmirror._shift_plan_readings(sp driftmirror.shift_plan, gates jsonb, hold interval,
                                                 OUT readings jsonb, OUT failures text[], OUT unmeasured text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m     record;
    lat   record;
    errs  bigint;
    mt    jsonb;
    val   double precision;
BEGIN
    readings := '{}';
    failures := '{}';
    unmeasured := '{}';
    errs := driftmirror._shift_plan_errors(sp.group_id) - coalesce(sp.errors_at_start, 0);
    readings := readings || jsonb_build_object('new_apply_errors', errs);
    IF errs > (gates ->> 'max_apply_errors')::bigint THEN
        failures := failures || format('%s new apply error(s) exceed max_apply_errors %s',
                                       errs, gates ->> 'max_apply_errors');
    END IF;
    FOR m IN SELECT * FROM driftmirror.mirror mm WHERE mm.group_id = sp.group_id AND mm.kind = 'postgres' ORDER BY mm.id LOOP
        readings := readings || jsonb_build_object(m.resource_name,
            jsonb_build_object('state', m.state, 'lag_bytes', m.lag_bytes, 'lag_seconds', m.lag_seconds));
        IF m.state <> 'mirroring' THEN
            failures := failures || format('the mirror of %s is %s', m.resource_name, m.state);
        END IF;
        IF gates ? 'max_lag_bytes' THEN
            IF m.lag_bytes IS NULL THEN
                unmeasured := unmeasured || format('lag of %s', m.resource_name);
            ELSIF m.lag_bytes > (gates ->> 'max_lag_bytes')::numeric THEN
                failures := failures || format('lag of %s %s bytes exceeds max_lag_bytes %s',
                                               m.resource_name, m.lag_bytes, gates ->> 'max_lag_bytes');
            END IF;
        END IF;
        IF gates ? 'max_lag_seconds' THEN
            IF m.lag_seconds IS NULL THEN
                unmeasured := unmeasured || format('lag of %s', m.resource_name);
            ELSIF m.lag_seconds > (gates ->> 'max_lag_seconds')::numeric THEN
                failures := failures || format('lag of %s %s s exceeds max_lag_seconds %s',
                                               m.resource_name, round(m.lag_seconds::numeric, 3), gates ->> 'max_lag_seconds');
            END IF;
        END IF;
        IF gates ? 'max_latency_ratio' THEN
            SELECT * INTO lat FROM driftmirror._mirror_latency(m.id, hold);
            readings := jsonb_set(readings, ARRAY[m.resource_name, 'latency_ratio'],
                                  coalesce(to_jsonb(round(lat.ratio::numeric, 2)), 'null'));
            IF lat.ratio IS NULL THEN
                unmeasured := unmeasured || format('latency ratio of %s', m.resource_name);
            ELSIF round(lat.ratio::numeric, 2) > (gates ->> 'max_latency_ratio')::numeric THEN
                failures := failures || format('latency ratio of %s %s exceeds max_latency_ratio %s',
                                               m.resource_name, round(lat.ratio::numeric, 2), gates ->> 'max_latency_ratio');
            END IF;
        END IF;
    END LOOP;
    FOR mt IN SELECT x FROM jsonb_array_elements(coalesce(gates -> 'metrics', '[]')) x LOOP
        SELECT max(mm.value) INTO val
          FROM driftmirror.metric mm
          JOIN driftmirror.resource r ON r.id = mm.resource_id
          JOIN driftmirror.metric_def d ON d.id = mm.metric_id
         WHERE r.group_id = sp.group_id AND r.name = mt ->> 'resource' AND d.name = mt ->> 'metric'
           AND mm.ts >= sp.step_started_at;
        readings := readings || jsonb_build_object(format('%s/%s', mt ->> 'resource', mt ->> 'metric'), val);
        IF val IS NULL THEN
            unmeasured := unmeasured || format('metric %s of %s', mt ->> 'metric', mt ->> 'resource');
        ELSIF val > (mt ->> 'max')::double precision THEN
            failures := failures || format('metric %s of %s reached %s, above %s',
                                           mt ->> 'metric', mt ->> 'resource', val, mt ->> 'max');
        END IF;
    END LOOP;
END
$$;

-- _shift_plan_tick: one step of the group's running plan (the worker's
-- phase, one transaction): start step 1, check the gates, roll back, move
-- on or finish.  Returns whether the shares changed.
CREATE FUNCTION driftmirror._shift_plan_tick(p_group_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp     driftmirror.shift_plan;
    g      text;
    cur    jsonb;
    nsteps integer;
    hold   interval;
    r      record;
    tr     integer;
    tw     integer;
    conflict boolean;
    drift  text;
BEGIN
    SELECT * INTO sp FROM driftmirror.shift_plan s
     WHERE s.group_id = p_group_id AND s.state = 'running' FOR UPDATE;
    IF sp.id IS NULL THEN
        RETURN false;
    END IF;
    SELECT name INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    nsteps := jsonb_array_length(sp.plan -> 'steps');

    BEGIN
        IF sp.step = 0 THEN
            cur := sp.plan -> 'steps' -> 0;
            PERFORM driftmirror._shift_set(g, (cur ->> 'read')::numeric, (cur ->> 'write')::numeric,
                                           format('shift plan %s step 1', sp.id), sp.id);
            UPDATE driftmirror.shift_plan
               SET step = 1, step_started_at = clock_timestamp(), last_readings = NULL,
                   reason = format('step 1 of %s: %s%% of reads, %s%% of writes, held %s',
                                   nsteps, cur ->> 'read', cur ->> 'write', cur ->> 'hold')
             WHERE id = sp.id;
            PERFORM driftmirror._log_action(g, NULL, 'shift_step',
                                            format('shift plan %s: step 1 of %s started', sp.id, nsteps),
                                            jsonb_build_object('plan_id', sp.id, 'step', 1, 'outcome', 'started')
                                            || (cur - 'gates') || jsonb_build_object('gates', cur -> 'gates'));
            RETURN true;
        END IF;

        cur := sp.plan -> 'steps' -> (sp.step - 1);
        hold := (cur ->> 'hold')::interval;
        SELECT * INTO r FROM driftmirror._shift_plan_readings(sp, cur -> 'gates', hold);

        IF cardinality(r.failures) > 0 THEN
            -- back to the last good step (before the plan: its start shares)
            IF sp.good_step = 0 THEN
                tr := sp.start_read_pct;
                tw := sp.start_write_pct;
            ELSE
                tr := (sp.plan -> 'steps' -> (sp.good_step - 1) ->> 'read')::integer;
                tw := (sp.plan -> 'steps' -> (sp.good_step - 1) ->> 'write')::integer;
            END IF;
            conflict := (r.readings ->> 'new_apply_errors')::bigint > 0;
            IF conflict THEN
                tw := 0;
            END IF;
            BEGIN
                PERFORM driftmirror._shift_set(g, tr, tw,
                                               format('shift plan %s rolled back from step %s', sp.id, sp.step), sp.id);
            EXCEPTION WHEN object_not_in_prerequisite_state THEN
                -- the mirror cannot take the good step's share any more
                -- (it stopped mirroring): everything back on the primary
                tr := 0;
                tw := 0;
                PERFORM driftmirror._shift_set(g, 0, 0,
                                               format('shift plan %s rolled back from step %s', sp.id, sp.step), sp.id);
            END;
            UPDATE driftmirror.shift_plan
               SET state = 'rolled_back', finished_at = clock_timestamp(), last_readings = r.readings,
                   reason = format('step %s failed its gates (%s): back to %s (%s%% of reads, %s%% of writes)',
                                   sp.step, array_to_string(r.failures, '; '),
                                   CASE WHEN sp.good_step = 0 THEN 'the shares before the plan'
                                        ELSE format('step %s', sp.good_step) END, tr, tw)
             WHERE id = sp.id;
            PERFORM driftmirror._log_action(g, NULL, 'shift_step',
                                            format('shift plan %s: step %s failed its gates, rolled back', sp.id, sp.step),
                                            jsonb_build_object('plan_id', sp.id, 'step', sp.step, 'outcome', 'rolled_back',
                                                               'failures', to_jsonb(r.failures), 'readings', r.readings,
                                                               'read', tr, 'write', tw, 'conflict', conflict),
                                            'failed');
            RETURN true;
        END IF;

        IF clock_timestamp() - sp.step_started_at < hold OR cardinality(r.unmeasured) > 0 THEN
            UPDATE driftmirror.shift_plan
               SET last_readings = r.readings,
                   reason = format('step %s of %s: %s%% of reads, %s%% of writes, held since %s for %s%s',
                                   sp.step, nsteps, cur ->> 'read', cur ->> 'write', sp.step_started_at, hold,
                                   CASE WHEN cardinality(r.unmeasured) > 0
                                        THEN format('; waiting for a reading of %s', array_to_string(r.unmeasured, ', '))
                                        ELSE '' END)
             WHERE id = sp.id;
            RETURN false;
        END IF;

        -- drift of a mirror held by _drift_step (78_drift.sql): the plan
        -- stays on this step until the drift and its forecast are back
        -- under drift_threshold
        SELECT string_agg(mm.resource_name || ': ' || s.reason, '; ') INTO drift
          FROM driftmirror.drift_state s JOIN driftmirror.mirror mm ON mm.id = s.mirror_id
         WHERE mm.group_id = p_group_id AND s.held;
        IF drift IS NOT NULL THEN
            UPDATE driftmirror.shift_plan
               SET last_readings = r.readings,
                   reason = format('step %s of %s: %s%% of reads, %s%% of writes, held by drift (%s)',
                                   sp.step, nsteps, cur ->> 'read', cur ->> 'write', drift)
             WHERE id = sp.id;
            RETURN false;
        END IF;

        -- the step held: it is good
        PERFORM driftmirror._log_action(g, NULL, 'shift_step',
                                        format('shift plan %s: step %s of %s held its gates for %s', sp.id, sp.step, nsteps, hold),
                                        jsonb_build_object('plan_id', sp.id, 'step', sp.step, 'outcome', 'passed',
                                                           'readings', r.readings, 'read', (cur ->> 'read')::integer,
                                                           'write', (cur ->> 'write')::integer));
        IF sp.step = nsteps THEN
            UPDATE driftmirror.shift_plan
               SET state = 'done', good_step = sp.step, finished_at = clock_timestamp(), last_readings = r.readings,
                   reason = format('done: %s%% of reads, %s%% of writes', cur ->> 'read', cur ->> 'write')
             WHERE id = sp.id;
            RETURN false;
        END IF;
        cur := sp.plan -> 'steps' -> sp.step;
        PERFORM driftmirror._shift_set(g, (cur ->> 'read')::numeric, (cur ->> 'write')::numeric,
                                       format('shift plan %s step %s', sp.id, sp.step + 1), sp.id);
        UPDATE driftmirror.shift_plan
           SET step = sp.step + 1, good_step = sp.step, step_started_at = clock_timestamp(),
               last_readings = r.readings,
               reason = format('step %s of %s: %s%% of reads, %s%% of writes, held %s',
                               sp.step + 1, nsteps, cur ->> 'read', cur ->> 'write', cur ->> 'hold')
         WHERE id = sp.id;
        PERFORM driftmirror._log_action(g, NULL, 'shift_step',
                                        format('shift plan %s: step %s of %s started', sp.id, sp.step + 1, nsteps),
                                        jsonb_build_object('plan_id', sp.id, 'step', sp.step + 1, 'outcome', 'started')
                                        || (cur - 'gates') || jsonb_build_object('gates', cur -> 'gates'));
        RETURN true;
    EXCEPTION WHEN object_in_use OR object_not_in_prerequisite_state THEN
        -- a promotion started, or the mirror stopped mirroring: the plan
        -- cannot go on; the shares stay as they are
        UPDATE driftmirror.shift_plan
           SET state = 'failed', finished_at = clock_timestamp(),
               reason = format('step %s could not set the shares: %s', sp.step, SQLERRM)
         WHERE id = sp.id;
        PERFORM driftmirror._log_action(g, NULL, 'shift_step',
                                        format('shift plan %s failed: %s', sp.id, SQLERRM),
                                        jsonb_build_object('plan_id', sp.id, 'step', sp.step, 'outcome', 'failed'),
                                        'failed');
        RETURN false;
    END;
END
$$;

CREATE VIEW driftmirror.dm_shift_status AS
SELECT g.name AS group_name,
       sp.id AS plan_id,
       sp.state,
       sp.step,
       jsonb_array_length(sp.plan -> 'steps') AS steps,
       (sp.plan -> 'steps' -> (sp.step - 1) ->> 'read')::integer AS step_read_pct,
       (sp.plan -> 'steps' -> (sp.step - 1) ->> 'write')::integer AS step_write_pct,
       (sp.plan -> 'steps' -> (sp.step - 1) ->> 'hold')::interval AS hold,
       sp.step_started_at,
       sp.good_step,
       sh.read_pct,
       sh.write_pct,
       sp.last_readings,
       sp.reason,
       sp.plan,
       sp.requested_by,
       sp.started_at,
       sp.finished_at
  FROM driftmirror.shift_plan sp
  JOIN driftmirror.resource_group g ON g.id = sp.group_id
  LEFT JOIN driftmirror.shift sh ON sh.group_id = sp.group_id;
COMMENT ON VIEW driftmirror.dm_shift_status IS
    'Shift plans: state, current step and its shares and hold, last good step, gate readings, reason';
