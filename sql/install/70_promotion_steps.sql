-- 70_promotion_steps.sql: the promotion state machine's SQL side: the
-- order of a group's promotions, the checks before one starts, the start,
-- each step recorded and advanced (_promotion_step, _promotion_advance),
-- the guardrails, the flip of the catalog and routes (the commit point),
-- the end, and dm_promote (C, src/promote.c), the entry point.  States and
-- tables: 70_promotion_catalog.sql.

-- _promotion_order: the resources of a group that have a mirror (postgres
-- ones and those switched through an HTTP actuator), dependencies first
CREATE OR REPLACE FUNCTION driftmirror._promotion_order(p_group_id bigint)
RETURNS TABLE (resource_name text, depth integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d (id, depth) AS (
        SELECT r.id, 0 FROM driftmirror.resource r WHERE r.group_id = p_group_id
        UNION ALL
        SELECT dep.resource_id, d.depth + 1
          FROM d JOIN driftmirror.resource_dependency dep ON dep.depends_on_id = d.id
         WHERE d.depth < 100
    )
    SELECT r.name, max(d.depth)::integer
      FROM d JOIN driftmirror.resource r ON r.id = d.id
      JOIN driftmirror.mirror m ON m.resource_id = r.id
     GROUP BY r.name
     ORDER BY 2, 1
$$;

-- _refuse_while_promoting: raise object_in_use when a promotion of the
-- group (of one resource, when p_resource_id is given) is in a step bounded
-- by its deadline: before the flip, or while an actuator switches or
-- aborts.  dm_drop_mirror, dm_remove_resource and dm_drop_group call it,
-- so that a drop never pulls a mirror from under a promotion that is about
-- to decide.  After the flip (unfencing, reversing) and while rolling back,
-- a drop is allowed: those steps wait for a node that may be gone for good,
-- and dropping the mirror is how an operator gives up on the way back (the
-- promotion then ends failed, saying so).
CREATE OR REPLACE FUNCTION driftmirror._refuse_while_promoting(p_group_id bigint, p_group text,
                                                    p_resource_id bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion pr
     WHERE pr.group_id = p_group_id
       AND (p_resource_id IS NULL OR pr.resource_id = p_resource_id)
       AND pr.state IN ('guardrails', 'reverse_slot', 'fencing', 'catching_up', 'sequences',
                        'switching', 'aborting')
     ORDER BY pr.id DESC LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" is being promoted (promotion %, state %)',
                        p.resource_name, p_group, p.id, p.state
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('The promotion must finish or roll back first; its deadline is %s.',
                                  coalesce(p.abort_deadline, p.deadline)),
                  HINT = 'See dm_promotions, and try again once it has ended.';
    END IF;
END
$$;

-- _refuse_while_poolers_owed: raise object_in_use when a promotion of the
-- group (of one resource, when p_resource_id is given) still owes a
-- pgbouncer router a RESUME (promote_poolers.c): dropping the group or
-- removing the resource would delete that promotion or its routers by
-- cascade, the worker would never resume the pooler, and it would stay
-- paused.  p_object names what is dropped, p_loss what the drop would lose.
CREATE OR REPLACE FUNCTION driftmirror._refuse_while_poolers_owed(p_object text, p_loss text,
                                                       p_group_id bigint,
                                                       p_resource_id bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owed bigint[];
BEGIN
    SELECT array_agg(p.id ORDER BY p.id) INTO owed
      FROM driftmirror.promotion p
     WHERE p.group_id = p_group_id
       AND (p_resource_id IS NULL OR p.resource_id = p_resource_id)
       AND (p.poolers_paused IS NOT NULL OR p.poolers_removed IS NOT NULL);
    IF owed IS NOT NULL THEN
        RAISE EXCEPTION '% has a pgbouncer router still paused by a promotion', p_object
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Promotion %s must resume it first; %s.',
                                  array_to_string(owed, ', '), p_loss),
                  HINT = 'Wait for the worker to resume the pooler (it retries every step; see dm_promotions), '
                         'or make the pgbouncer reachable again so that it can; if it is gone for good, '
                         'give the RESUME up with dm_router_forget_pause(group, router).';
    END IF;
END
$$;

-- _promotion_options: the promotion options in effect: group defaults and
-- group options, overridden by the options of the call (promote_* keys only)
CREATE OR REPLACE FUNCTION driftmirror._promotion_options(p_group_id bigint, p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opts jsonb := driftmirror._validate_options('group', p_options);
    k    text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(opts) LOOP
        IF k NOT LIKE 'promote\_%' THEN
            RAISE EXCEPTION 'option "%" cannot be set for one promotion', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Only promote_* options can be passed to dm_promote; set others with dm_alter_group.';
        END IF;
    END LOOP;
    RETURN (SELECT driftmirror._effective_options('group', g.options) || opts
              FROM driftmirror.resource_group g WHERE g.id = p_group_id);
END
$$;

-- _promotion_flip_name: the other name of an alternating pair (x <-> x_rev)
CREATE OR REPLACE FUNCTION driftmirror._promotion_flip_name(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_name LIKE '%\_rev' THEN left(p_name, -4) ELSE p_name || '_rev' END
$$;

-- _promotion_start: record a new promotion of one resource (state
-- guardrails) and return its id.  Raises if the resource has no usable
-- mirror or the group already has a promotion running.
CREATE OR REPLACE FUNCTION driftmirror._promotion_start(p_group text, p_resource text, p_options jsonb,
                                             p_trigger text, p_reason text, p_pid integer,
                                             p_requested_by text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gid  bigint;
    rid  bigint;
    m    driftmirror.mirror;
    eff  jsonb;
    pid  bigint;
    run  bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT * INTO m FROM driftmirror.mirror WHERE resource_id = rid FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no mirror to promote', p_resource, p_group
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create one with dm_create_mirror.';
    END IF;
    SELECT id INTO run FROM driftmirror.promotion
     WHERE group_id = gid AND NOT driftmirror._promotion_is_final(state);
    IF run IS NOT NULL THEN
        RAISE EXCEPTION 'group "%" already has a promotion in progress (id %)', p_group, run
            USING ERRCODE = 'object_in_use',
                  HINT = 'See dm_promotions.';
    END IF;
    eff := driftmirror._promotion_options(gid, p_options);

    IF m.kind <> 'postgres' THEN
        -- switched through the HTTP actuator (72_promotion_actuator.sql)
        INSERT INTO driftmirror.promotion AS p
            (group_id, group_name, resource_id, resource_name, mirror_id, kind, trigger, reason,
             options, old_primary, new_primary, two_way, mirror_fence, deadline, worker_pid,
             requested_by)
        VALUES (gid, p_group, rid, p_resource, m.id, m.kind, p_trigger, p_reason, eff,
                driftmirror._promotion_actuator_primary(rid), m.mirror_endpoint, false, false,
                clock_timestamp() + driftmirror._opt_interval(eff -> 'promote_timeout'), p_pid,
                coalesce(p_requested_by, CASE p_trigger WHEN 'auto' THEN 'driftmirror worker' ELSE session_user END))
        RETURNING p.id INTO pid;
        PERFORM driftmirror._log_action(p_group, p_resource, 'promote_start', p_reason,
                                        jsonb_build_object('promotion', pid, 'trigger', p_trigger,
                                                           'kind', m.kind, 'options', eff));
        RETURN pid;
    END IF;

    INSERT INTO driftmirror.promotion AS p
        (group_id, group_name, resource_id, resource_name, mirror_id, trigger, reason, options,
         old_primary, new_primary, old_publication, old_slot, old_subscription,
         new_publication, new_slot, new_subscription,
         two_way, mirror_fence, deadline, worker_pid, requested_by)
    VALUES (gid, p_group, rid, p_resource, m.id, p_trigger, p_reason, eff,
            m.primary_endpoint, m.mirror_endpoint,
            m.publication_name, m.slot_name, m.subscription_name,
            coalesce(m.rev_publication_name, driftmirror._promotion_flip_name(m.publication_name)),
            coalesce(m.rev_slot_name, driftmirror._promotion_flip_name(m.slot_name)),
            coalesce(m.rev_subscription_name, driftmirror._promotion_flip_name(m.subscription_name)),
            m.two_way, m.fence,
            clock_timestamp() + driftmirror._opt_interval(eff -> 'promote_timeout'), p_pid,
            coalesce(p_requested_by, CASE p_trigger WHEN 'auto' THEN 'driftmirror worker' ELSE session_user END))
    RETURNING p.id INTO pid;
    PERFORM driftmirror._log_action(p_group, p_resource, 'promote_start', p_reason,
                                    jsonb_build_object('promotion', pid, 'trigger', p_trigger,
                                                       'options', eff));
    RETURN pid;
END
$$;

-- _promotion_info: what the driver needs to know about a promotion (no row
-- when there is no such promotion)
CREATE OR REPLACE FUNCTION driftmirror._promotion_info(p_id bigint)
RETURNS SETOF driftmirror.promotion_info
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.id, p.group_name, p.resource_name, p.state,
           p.old_primary, p.new_primary,
           p.old_publication, p.old_slot, p.old_subscription,
           p.new_publication, p.new_slot, p.new_subscription,
           p.two_way, p.mirror_fence,
           m.state AS mirror_state, m.lag_seconds AS mirror_lag_seconds,
           m.primary_endpoint = p.new_primary AS flipped,
           p.fence_lsn, p.fenced_at,
           greatest(0, extract(epoch FROM p.deadline - clock_timestamp()) * 1000)::bigint AS remaining_ms,
           (p.options ->> 'promote_max_lag_bytes')::bigint AS max_lag_bytes,
           (p.options ->> 'promote_max_lag_seconds')::numeric AS max_lag_seconds,
           (p.options ->> 'promote_max_xact_seconds')::numeric AS max_xact_seconds,
           (extract(epoch FROM driftmirror._opt_interval(p.options -> 'promote_fence_grace')) * 1000)::bigint
               AS fence_grace_ms,
           (p.options ->> 'promote_sequence_gap')::bigint AS sequence_gap
      FROM driftmirror.promotion p
      JOIN driftmirror.mirror m ON m.id = p.mirror_id
     WHERE p.id = p_id
$$;

-- _promotion_step: record a step.  outcome 'running' starts it (and moves
-- the promotion to p_state when given); anything else ends the step's
-- running row.  Returns nothing; the caller commits.
CREATE OR REPLACE FUNCTION driftmirror._promotion_step(p_id bigint, p_step text, p_outcome text,
                                            p_state text DEFAULT NULL, p_reason text DEFAULT NULL,
                                            p_details jsonb DEFAULT NULL, p_lsn pg_lsn DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_state IS NOT NULL THEN
        UPDATE driftmirror.promotion SET state = p_state WHERE id = p_id;
    END IF;
    IF p_outcome = 'running' THEN
        -- a step started again (after an interruption) closes its old row
        UPDATE driftmirror.promotion_step
           SET outcome = 'interrupted', finished_at = clock_timestamp(),
               reason = 'the promotion was interrupted here and resumed'
         WHERE promotion_id = p_id AND outcome = 'running';
        INSERT INTO driftmirror.promotion_step (promotion_id, seq, step, reason, details, lsn)
        SELECT p_id, coalesce(max(seq), 0) + 1, p_step, p_reason, coalesce(p_details, '{}'), p_lsn
          FROM driftmirror.promotion_step WHERE promotion_id = p_id;
    ELSE
        UPDATE driftmirror.promotion_step
           SET outcome = p_outcome, finished_at = clock_timestamp(),
               reason = coalesce(p_reason, reason),
               details = details || coalesce(p_details, '{}'),
               lsn = coalesce(p_lsn, lsn)
         WHERE promotion_id = p_id AND step = p_step AND outcome = 'running';
    END IF;
END
$$;

-- _promotion_set: store figures measured by the driver
CREATE OR REPLACE FUNCTION driftmirror._promotion_set(p_id bigint, p jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE driftmirror.promotion
       SET guardrails = coalesce(p -> 'guardrails', guardrails),
           fence_lsn = coalesce((p ->> 'fence_lsn')::pg_lsn, fence_lsn),
           confirmed_lsn = coalesce((p ->> 'confirmed_lsn')::pg_lsn, confirmed_lsn),
           sequences_synced = coalesce((p ->> 'sequences_synced')::integer, sequences_synced),
           fenced_at = coalesce((p ->> 'fenced_at')::timestamptz, fenced_at),
           unfenced_at = coalesce((p ->> 'unfenced_at')::timestamptz, unfenced_at),
           pause_ms = coalesce((p ->> 'pause_ms')::double precision, pause_ms),
           worker_pid = coalesce((p ->> 'worker_pid')::integer, worker_pid),
           attempts = attempts + coalesce((p ->> 'attempt')::integer, 0)
     WHERE id = p_id
$$;

-- _promotion_flip: THE commit point.  In one transaction: the mirror row
-- swaps primary and mirror (endpoints and the names of the replication
-- objects of the new direction), the resource points at its new primary,
-- the routes follow, and the promotion moves to 'unfencing'.  Idempotent.
CREATE OR REPLACE FUNCTION driftmirror._promotion_flip(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
    m driftmirror.mirror;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id FOR UPDATE;
    IF p.state <> 'sequences' THEN
        RAISE EXCEPTION 'promotion % cannot flip in state %', p_id, p.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE driftmirror.mirror
       SET primary_endpoint = p.new_primary,
           publisher_endpoint = p.new_primary,
           mirror_endpoint = p.old_primary,
           publication_name = p.new_publication,
           slot_name = p.new_slot,
           subscription_name = p.new_subscription,
           rev_publication_name = CASE WHEN m.two_way THEN p.old_publication END,
           rev_slot_name = CASE WHEN m.two_way THEN p.old_slot END,
           rev_subscription_name = CASE WHEN m.two_way THEN p.old_subscription END,
           lag_bytes = NULL, lag_seconds = NULL, lag_probe_lsn = NULL,
           primary_checked_at = NULL, mirror_checked_at = NULL,
           state_reason = format('promoted by promotion %s', p_id)
     WHERE id = m.id;
    UPDATE driftmirror.resource SET endpoint = p.new_primary, updated_at = now()
     WHERE id = p.resource_id;
    -- writes and reads (read shifting may change them later) to the new
    -- primary: what _set_route does for each of the four routes, in one
    -- statement (this transaction is inside the clients' write pause)
    WITH x (n, access, endpoint, weight) AS (
             VALUES (1, 'write', p.new_primary, 100), (2, 'write', p.old_primary, 0),
                    (3, 'read', p.new_primary, 100), (4, 'read', p.old_primary, 0)),
         routes AS (
             INSERT INTO driftmirror.route AS r (group_id, resource_id, access, endpoint, weight)
             SELECT p.group_id, p.resource_id, x.access, x.endpoint, x.weight FROM x ORDER BY x.n
             ON CONFLICT (resource_id, access, endpoint)
             DO UPDATE SET weight = EXCLUDED.weight, updated_at = clock_timestamp())
    INSERT INTO driftmirror.route_history (group_name, resource_name, access, endpoint, weight, reason)
    SELECT p.group_name, p.resource_name, x.access, x.endpoint, x.weight, format('promotion %s', p_id)
      FROM x ORDER BY x.n;
    UPDATE driftmirror.promotion SET state = 'unfencing' WHERE id = p_id;
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_flip',
                                    'routes and catalog point at the new primary',
                                    jsonb_build_object('promotion', p_id));
END
$$;

-- _promotion_finish: end a promotion in a terminal state
CREATE OR REPLACE FUNCTION driftmirror._promotion_finish(p_id bigint, p_state text, p_error text DEFAULT NULL,
                                              p_sqlstate text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
BEGIN
    UPDATE driftmirror.promotion
       SET state = p_state, finished_at = clock_timestamp(),
           error = coalesce(p_error, error), error_sqlstate = coalesce(p_sqlstate, error_sqlstate)
     WHERE id = p_id
    RETURNING * INTO p;
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_' || p_state,
                                    coalesce(p_error, p.reason),
                                    jsonb_build_object('promotion', p_id, 'pause_ms', p.pause_ms,
                                                       'fence_lsn', p.fence_lsn,
                                                       'trigger', p.trigger),
                                    p_state);
END
$$;

-- _promotions_unfinished: promotions of a group the main worker's recovery
-- looks at every step (_step_work, promote.c): those left unfinished, and
-- those that ended still owing a pgbouncer router a RESUME (poolers_paused
-- or poolers_removed set: promote_poolers.c; partial index
-- promotion_poolers_owed).  PL/pgSQL: in the update from 0.1.0 this file
-- comes before the column poolers_removed.
CREATE OR REPLACE FUNCTION driftmirror._promotions_unfinished(p_group_id bigint)
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.id FROM driftmirror.promotion p
     WHERE p.group_id = p_group_id
       AND (NOT driftmirror._promotion_is_final(p.state)
            OR p.poolers_paused IS NOT NULL OR p.poolers_removed IS NOT NULL)
     ORDER BY p.id;
END
$$;

-- dm_promote: promote the mirror of a resource (or of every mirrored
-- resource of the group, dependencies first) to primary: postgres mirrors
-- by switchover, the others through their HTTP actuator.  Returns one row
-- per resource promoted (pause_ms and fence_lsn NULL for actuator ones).
CREATE OR REPLACE FUNCTION driftmirror.dm_promote("group" text, resource text DEFAULT NULL,
                                       options jsonb DEFAULT '{}',
                                       OUT resource_name text, OUT new_primary text,
                                       OUT pause_ms double precision, OUT fence_lsn pg_lsn,
                                       OUT promotion_id bigint)
RETURNS SETOF record
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'driftmirror_dm_promote';
COMMENT ON FUNCTION driftmirror.dm_promote(text, text, jsonb) IS
    'Switch over: the mirror becomes the primary and the old primary its mirror (through the HTTP actuator for cache/app/web/service resources); returns the new primary, the write pause and the fence LSN';

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

-- _promotion_queue_cleanup: a rollback that could not reach the mirror
-- leaves the slot and publication made for the way back to the mirrors'
-- cleanup queue, which retries until they are gone
CREATE OR REPLACE FUNCTION driftmirror._promotion_queue_cleanup(p_id bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.mirror_cleanup
        (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
    SELECT p.group_name, p.resource_name, p.mirror_id, 'mirror', p.new_primary, w.what, w.name, w.prio
      FROM driftmirror.promotion p,
           LATERAL (VALUES ('slot', p.new_slot, 2), ('publication', p.new_publication, 3)) w (what, name, prio)
     WHERE p.id = p_id AND NOT p.two_way
$$;

-- _promotion_advance: one transaction per step boundary (fewer commits in
-- the write pause): store figures, end step p_done, flip if asked (the
-- commit point), start step p_next and move to p_next_state
CREATE OR REPLACE FUNCTION driftmirror._promotion_advance(p_id bigint, p_done text, p_lsn pg_lsn,
                                               p_details jsonb, p_figures jsonb,
                                               p_next text, p_next_state text, p_flip boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_figures IS NOT NULL THEN
        PERFORM driftmirror._promotion_set(p_id, p_figures);
    END IF;
    PERFORM driftmirror._promotion_step(p_id, p_done, 'ok', NULL, NULL, p_details, p_lsn);
    IF p_flip THEN
        PERFORM driftmirror._promotion_flip(p_id);
    END IF;
    IF p_next IS NOT NULL THEN
        PERFORM driftmirror._promotion_step(p_id, p_next, 'running', p_next_state);
    END IF;
END
$$;
