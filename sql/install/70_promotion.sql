-- 70_promotion.sql: promotion (switchover) of a mirror to primary, and the
-- routes clients use to find the primary.
--
-- dm_promote (C, src/promote.c) starts a dynamic background worker
-- (src/promote_worker.c) that drives one promotion per resource as a
-- persisted state machine and waits for it.  The worker commits every state
-- change here BEFORE it acts on a node, each action is idempotent, and a
-- promotion left unfinished (worker, session or node killed) is picked up by
-- the main worker's group step, which rolls it back if the routes had not
-- been flipped yet and finishes it otherwise.
--
--   states (promotion.state), in order:
--     guardrails   checks, nothing changed yet                 -> refused
--     reverse_slot slot (+ publication) for the way back created on the
--                  mirror, before the fence (its changes are filtered out)
--     fencing      old primary fenced, write sessions drained
--     catching_up  waiting for the mirror to confirm the fence LSN
--     sequences    sequences copied to the mirror with a gap
--     --- commit point: _promotion_flip swaps the catalog and the routes
--     unfencing    new primary unfenced, pause recorded
--     reversing    old primary subscribes to the new one, old direction retired
--     done
--   on failure or timeout before the flip: rolling_back -> rolled_back
--   (the mirror stays fenced, the old primary is unfenced).
--
--   Mirrors of cache, app, web and service resources (kind <> 'postgres')
--   are switched through their HTTP actuator instead (driver
--   src/promote_actuator.c, functions in 72_promotion_actuator.sql):
--     guardrails   checks on the catalog, nothing changed yet  -> refused
--     switching    the promote request is being sent (recorded before the
--                  first one); the answer "promoted" flips the routes and
--                  ends in done, in one transaction
--     aborting     promote_timeout passed without a definitive answer: the
--                  abort is being sent -> rolled_back (confirmed), or
--                  failed (not confirmed: the actuator's state is unknown)
--   The replication-object columns are NULL for these, and so are the
--   pause and the fence LSN.
--
-- Only one unfinished promotion per group (partial unique index).  Tables
-- are owner-only; dm_promotions / dm_promotion_steps / dm_routes are the
-- public views (endpoints redacted for non-admins).

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('group', 'promote_max_lag_bytes', 'integer', '16777216', '0', '1000000000000', NULL,
     'dm_promote refuses when the mirror is further behind than this many bytes of WAL'),
    ('group', 'promote_max_lag_seconds', 'number', '10', '0', '3600', NULL,
     'dm_promote refuses when the mirror''s measured lag is longer than this'),
    ('group', 'promote_max_xact_seconds', 'number', '30', '0', '86400', NULL,
     'dm_promote refuses while a write transaction on the primary is older than this'),
    ('group', 'promote_fence_grace', 'interval', '"200 milliseconds"', '0', '1 minute', NULL,
     'how long sessions holding a write transaction may finish after the fence before they are ended'),
    ('group', 'promote_sequence_gap', 'integer', '1000', '0', '1000000000', NULL,
     'how many values each sequence skips on the new primary (safety gap)');

CREATE TABLE driftmirror.promotion (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id          bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    group_name        text NOT NULL,
    resource_id       bigint NOT NULL,
    resource_name     text NOT NULL,
    mirror_id         bigint NOT NULL,
    kind              text NOT NULL DEFAULT 'postgres',
    trigger           text NOT NULL CHECK (trigger IN ('manual', 'auto')),
    reason            text NOT NULL,
    options           jsonb NOT NULL,
    state             text NOT NULL DEFAULT 'guardrails'
                      CHECK (state IN ('guardrails', 'fencing', 'catching_up', 'sequences',
                                       'reverse_slot', 'unfencing', 'reversing', 'done',
                                       'rolling_back', 'rolled_back', 'refused', 'failed',
                                       'switching', 'aborting')),
    -- actuator promotions: old_primary is where clients wrote before (the
    -- write route, or the resource's endpoint without one), new_primary the
    -- mirror's endpoint (NULL if unknown: refused), replaced by the
    -- endpoint the actuator reports when it has promoted
    old_primary       text NOT NULL,
    new_primary       text,
    -- replication objects of the old direction (old primary -> mirror), as
    -- they were when the promotion started: after the flip the mirror row
    -- names the new ones (postgres promotions only)
    old_publication   text,
    old_slot          text,
    old_subscription  text,
    -- replication objects of the new direction (new primary -> old primary)
    new_publication   text,
    new_slot          text,
    new_subscription  text,
    two_way           boolean NOT NULL,
    mirror_fence      boolean NOT NULL,
    guardrails        jsonb,
    fence_lsn         pg_lsn,
    confirmed_lsn     pg_lsn,
    sequences_synced  integer,
    fenced_at         timestamptz,
    unfenced_at       timestamptz,
    pause_ms          double precision,
    deadline          timestamptz NOT NULL,
    -- actuator promotions: until when the abort is retried, and the
    -- actuator's last words (libcurl's reason or its answer: may name
    -- hosts, shown to admins only)
    abort_deadline    timestamptz,
    actuator_detail   text,
    worker_pid        integer,
    attempts          integer NOT NULL DEFAULT 0,
    error             text,
    error_sqlstate    text,
    requested_by      text NOT NULL DEFAULT session_user,
    started_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at       timestamptz,
    -- pgbouncer routers (ids) the driver PAUSEd (recorded before each
    -- PAUSE) and has not RESUMEd yet: the flip, a rollback or a recovery
    -- resumes them and clears this (promote_poolers.c)
    poolers_paused    bigint[],
    -- pgbouncer routers removed (dm_remove_router) while recorded in
    -- poolers_paused: [{name, endpoint, database, timeout}], what resuming
    -- them needs; cleared as each resumes (promote_poolers.c)
    poolers_removed   jsonb,
    CHECK (kind <> 'postgres' OR (new_primary IS NOT NULL
                                  AND old_publication IS NOT NULL AND old_slot IS NOT NULL
                                  AND old_subscription IS NOT NULL AND new_publication IS NOT NULL
                                  AND new_slot IS NOT NULL AND new_subscription IS NOT NULL)),
    CHECK (kind = 'postgres' OR state NOT IN ('fencing', 'catching_up', 'sequences', 'reverse_slot',
                                              'unfencing', 'reversing', 'rolling_back')),
    CHECK (kind <> 'postgres' OR state NOT IN ('switching', 'aborting'))
);
CREATE UNIQUE INDEX promotion_one_running ON driftmirror.promotion (group_id)
    WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed');
COMMENT ON TABLE driftmirror.promotion IS
    'Promotions (switchovers): one row per resource promoted, with its persisted state';

CREATE TABLE driftmirror.promotion_step (
    promotion_id  bigint NOT NULL REFERENCES driftmirror.promotion (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    step          text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    lsn           pg_lsn,
    outcome       text NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'ok', 'failed', 'refused', 'interrupted')),
    reason        text,
    details       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (promotion_id, seq)
);
COMMENT ON TABLE driftmirror.promotion_step IS
    'Step log of every promotion: step, start, end, LSN, outcome, reason';

-- routes: where clients of a resource should go, per access kind
CREATE TABLE driftmirror.route (
    group_id     bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id  bigint NOT NULL REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    access       text NOT NULL CHECK (access IN ('read', 'write')),
    endpoint     text NOT NULL,
    weight       integer NOT NULL CHECK (weight BETWEEN 0 AND 100),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (resource_id, access, endpoint)
);
COMMENT ON TABLE driftmirror.route IS
    'Routes: per resource and access kind, the endpoints clients use and their weights';

CREATE TABLE driftmirror.route_history (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name    text NOT NULL,
    resource_name text NOT NULL,
    access        text NOT NULL,
    endpoint      text NOT NULL,
    weight        integer NOT NULL,
    reason        text NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- _set_route: set one route's weight and record it in the history
CREATE FUNCTION driftmirror._set_route(p_group_id bigint, p_resource_id bigint, p_access text,
                                       p_endpoint text, p_weight integer, p_reason text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO driftmirror.route AS r (group_id, resource_id, access, endpoint, weight)
    VALUES (p_group_id, p_resource_id, p_access, p_endpoint, p_weight)
    ON CONFLICT (resource_id, access, endpoint)
    DO UPDATE SET weight = EXCLUDED.weight, updated_at = clock_timestamp();
    INSERT INTO driftmirror.route_history (group_name, resource_name, access, endpoint, weight, reason)
    SELECT g.name, r.name, p_access, p_endpoint, p_weight, p_reason
      FROM driftmirror.resource r JOIN driftmirror.resource_group g ON g.id = r.group_id
     WHERE r.id = p_resource_id;
$$;

-- _multihost: a libpq multi-host conninfo from several conninfos (C)
CREATE FUNCTION driftmirror._multihost(endpoints text[], target_session_attrs text)
RETURNS text
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'driftmirror_multihost';

-- _route_endpoint: an endpoint of a resource as routes hand it to
-- application clients: for postgres resources without the administration
-- role (dm_client_conninfo); clients add their own user=
CREATE FUNCTION driftmirror._route_endpoint(p_resource_id bigint, p_endpoint text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.kind = 'postgres' THEN driftmirror.dm_client_conninfo(p_endpoint)
                ELSE p_endpoint END
      FROM driftmirror.resource r WHERE r.id = p_resource_id
$$;

-- _route_pick: the endpoint (as stored) of the node a client of a
-- resource should use for an access kind, chosen by weight among its
-- routes (dm_shift sets them; a promotion moves them to the new primary).
-- With a key the choice is stable: a point in [0, 1) from the key's hash,
-- the primary's share first, so a key stays on its node at a given share
-- and, as the mirror's share grows, only keys move to the mirror (none
-- come back).  Without a key: reads at random by weight, writes to the
-- endpoint with the largest write share (the primary on a tie): a write
-- share only ever applies to keyed writes, so that no row has two
-- writers.  With no route recorded, the resource's endpoint (its primary).
CREATE FUNCTION driftmirror._route_pick(p_resource_id bigint, p_access text, p_key text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prim   text;
    total  bigint;
    pick   double precision;
    ep     text;
BEGIN
    IF p_access IS NULL OR p_access NOT IN ('read', 'write') THEN
        RAISE EXCEPTION 'invalid access kind "%"', p_access
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''read'' or ''write''.';
    END IF;
    SELECT r.endpoint INTO prim FROM driftmirror.resource r WHERE r.id = p_resource_id;
    SELECT sum(rt.weight) INTO total FROM driftmirror.route rt
     WHERE rt.resource_id = p_resource_id AND rt.access = p_access AND rt.weight > 0;
    IF total IS NULL THEN
        RETURN prim;
    END IF;
    IF p_key IS NULL AND p_access = 'write' THEN
        SELECT rt.endpoint INTO ep FROM driftmirror.route rt
         WHERE rt.resource_id = p_resource_id AND rt.access = 'write' AND rt.weight > 0
         ORDER BY rt.weight DESC, rt.endpoint IS DISTINCT FROM prim, rt.endpoint
         LIMIT 1;
        RETURN ep;
    END IF;
    IF p_key IS NULL THEN
        pick := random() * total;
    ELSE
        -- a stable point in [0, total) from the key
        pick := (('x' || substr(md5(p_key), 1, 8))::bit(32)::bigint % 1000000) / 1000000.0 * total;
    END IF;
    SELECT w.endpoint INTO ep
      FROM (SELECT rt.endpoint,
                   sum(rt.weight) OVER (ORDER BY rt.endpoint IS DISTINCT FROM prim, rt.endpoint) AS upto
              FROM driftmirror.route rt
             WHERE rt.resource_id = p_resource_id AND rt.access = p_access AND rt.weight > 0) w
     WHERE w.upto > pick
     ORDER BY w.upto
     LIMIT 1;
    RETURN ep;
END
$$;

-- dm_route: the endpoint a client of a resource should use (_route_pick),
-- as clients get it (_route_endpoint)
CREATE FUNCTION driftmirror.dm_route("group" text, resource text, access text DEFAULT 'read',
                                     key text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
BEGIN
    rid := driftmirror._resource_id(driftmirror._group_id($1), $1, $2);
    RETURN driftmirror._route_endpoint(rid, driftmirror._route_pick(rid, $3, $4));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route(text, text, text, text) IS
    'The endpoint (conninfo) a client of a resource should use for reads or writes';

-- dm_route_multihost: a libpq multi-host string listing first the node
-- dm_route picks for this access and key, then the other(s).  For writes
-- with target_session_attrs=read-write: clients using it follow a
-- promotion on their own (the fenced node reports read-only); for reads
-- with target_session_attrs=any.  With the defaults: the primary first.
CREATE FUNCTION driftmirror.dm_route_multihost("group" text, resource text,
                                               access text DEFAULT 'write', key text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid   bigint;
    first text;
    eps   text[];
BEGIN
    rid := driftmirror._resource_id(driftmirror._group_id($1), $1, $2);
    IF (SELECT r.kind FROM driftmirror.resource r WHERE r.id = rid) <> 'postgres' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is not a postgres resource: a libpq multi-host string needs one', $2, $1
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Use dm_route() or dm_routes for other kinds.';
    END IF;
    first := driftmirror._route_pick(rid, $3, $4);
    SELECT ARRAY[first] || coalesce(array_agg(e.ep ORDER BY e.ord) FILTER (WHERE e.ep IS DISTINCT FROM first), '{}')
      INTO eps
      FROM driftmirror.resource r,
           LATERAL (SELECT r.endpoint, 0
                    UNION ALL
                    SELECT m.mirror_endpoint, 1 FROM driftmirror.mirror m
                     WHERE m.resource_id = r.id AND m.mirror_endpoint IS NOT NULL) e (ep, ord)
     WHERE r.id = rid;
    RETURN driftmirror.dm_client_conninfo(
        driftmirror._multihost(eps, CASE $3 WHEN 'read' THEN 'any' ELSE 'read-write' END));
END
$$;
COMMENT ON FUNCTION driftmirror.dm_route_multihost(text, text, text, text) IS
    'A libpq multi-host conninfo: the node dm_route picks first, then the other; read-write for writes';

-- _promotion_order: the resources of a group that have a mirror (postgres
-- ones and those switched through an HTTP actuator), dependencies first
CREATE FUNCTION driftmirror._promotion_order(p_group_id bigint)
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
CREATE FUNCTION driftmirror._refuse_while_promoting(p_group_id bigint, p_group text,
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

-- _promotion_options: the promotion options in effect: group defaults and
-- group options, overridden by the options of the call (promote_* keys only)
CREATE FUNCTION driftmirror._promotion_options(p_group_id bigint, p_options jsonb)
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
CREATE FUNCTION driftmirror._promotion_flip_name(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_name LIKE '%\_rev' THEN left(p_name, -4) ELSE p_name || '_rev' END
$$;

-- _promotion_start: record a new promotion of one resource (state
-- guardrails) and return its id.  Raises if the resource has no usable
-- mirror or the group already has a promotion running.
CREATE FUNCTION driftmirror._promotion_start(p_group text, p_resource text, p_options jsonb,
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
     WHERE group_id = gid AND state NOT IN ('done', 'rolled_back', 'refused', 'failed');
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

-- _promotion_info: what the driver needs to know about a promotion, as jsonb
CREATE FUNCTION driftmirror._promotion_info(p_id bigint)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'group', p.group_name, 'resource', p.resource_name, 'state', p.state,
        'old_primary', p.old_primary, 'new_primary', p.new_primary,
        'old_publication', p.old_publication, 'old_slot', p.old_slot,
        'old_subscription', p.old_subscription,
        'new_publication', p.new_publication, 'new_slot', p.new_slot,
        'new_subscription', p.new_subscription,
        'two_way', p.two_way, 'mirror_fence', p.mirror_fence,
        'mirror_state', m.state, 'mirror_lag_seconds', m.lag_seconds,
        'flipped', m.primary_endpoint = p.new_primary,
        'fence_lsn', p.fence_lsn, 'fenced_at', p.fenced_at,
        'remaining_ms', greatest(0, extract(epoch FROM p.deadline - clock_timestamp()) * 1000)::bigint,
        'max_lag_bytes', p.options -> 'promote_max_lag_bytes',
        'max_lag_seconds', p.options -> 'promote_max_lag_seconds',
        'max_xact_seconds', p.options -> 'promote_max_xact_seconds',
        'fence_grace_ms', (extract(epoch FROM driftmirror._opt_interval(p.options -> 'promote_fence_grace')) * 1000)::bigint,
        'sequence_gap', p.options -> 'promote_sequence_gap')
      FROM driftmirror.promotion p
      JOIN driftmirror.mirror m ON m.id = p.mirror_id
     WHERE p.id = p_id
$$;

-- _promotion_step: record a step.  outcome 'running' starts it (and moves
-- the promotion to p_state when given); anything else ends the step's
-- running row.  Returns nothing; the caller commits.
CREATE FUNCTION driftmirror._promotion_step(p_id bigint, p_step text, p_outcome text,
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
CREATE FUNCTION driftmirror._promotion_set(p_id bigint, p jsonb)
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
CREATE FUNCTION driftmirror._promotion_flip(p_id bigint)
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
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', p.new_primary, 100,
                                   format('promotion %s', p_id));
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', p.old_primary, 0,
                                   format('promotion %s', p_id));
    -- reads follow the primary; read shifting may change them later
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', p.new_primary, 100,
                                   format('promotion %s', p_id));
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', p.old_primary, 0,
                                   format('promotion %s', p_id));
    UPDATE driftmirror.promotion SET state = 'unfencing' WHERE id = p_id;
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_flip',
                                    'routes and catalog point at the new primary',
                                    jsonb_build_object('promotion', p_id));
END
$$;

-- _promotion_finish: end a promotion in a terminal state
CREATE FUNCTION driftmirror._promotion_finish(p_id bigint, p_state text, p_error text DEFAULT NULL,
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

-- _promotions_unfinished: promotions of a group left unfinished (the main
-- worker's recovery looks for them every step)
CREATE FUNCTION driftmirror._promotions_unfinished(p_group_id bigint)
RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id FROM driftmirror.promotion
     WHERE group_id = p_group_id AND state NOT IN ('done', 'rolled_back', 'refused', 'failed')
     ORDER BY id
$$;

-- dm_promote: promote the mirror of a resource (or of every mirrored
-- resource of the group, dependencies first) to primary: postgres mirrors
-- by switchover, the others through their HTTP actuator.  Returns one row
-- per resource promoted (pause_ms and fence_lsn NULL for actuator ones).
CREATE FUNCTION driftmirror.dm_promote("group" text, resource text DEFAULT NULL,
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

CREATE VIEW driftmirror.dm_promotions AS
SELECT p.id, p.group_name, p.resource_name, p.trigger, p.reason, p.state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.old_primary END AS old_primary,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.new_primary END AS new_primary,
       p.pause_ms, p.fence_lsn, p.confirmed_lsn, p.sequences_synced, p.guardrails,
       -- raw error text (hosts, ports) only for admins; others read labels
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN p.error
            WHEN p.error IS NOT NULL THEN driftmirror._error_label(p.error_sqlstate) END AS error,
       p.error_sqlstate, p.requested_by, p.started_at, p.finished_at,
       (SELECT jsonb_agg(jsonb_build_object('step', s.step, 'started', s.started_at,
                                            'finished', s.finished_at, 'lsn', s.lsn,
                                            'outcome', s.outcome,
                                            'reason', CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                                                                OR s.outcome IN ('ok', 'running')
                                                           THEN s.reason ELSE s.outcome END,
                                            'details', CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                                                            THEN s.details END) ORDER BY s.seq)
          FROM driftmirror.promotion_step s WHERE s.promotion_id = p.id) AS steps,
       p.kind, p.deadline, p.abort_deadline,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN p.actuator_detail END AS actuator_detail
  FROM driftmirror.promotion p;
COMMENT ON VIEW driftmirror.dm_promotions IS
    'Every promotion with its state, pause, fence LSN and step log';

CREATE VIEW driftmirror.dm_promotion_steps AS
SELECT p.group_name, p.resource_name, s.promotion_id, s.seq, s.step, s.started_at,
       s.finished_at, round(extract(epoch FROM s.finished_at - s.started_at)::numeric * 1000, 1) AS ms,
       s.lsn, s.outcome,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
                 OR s.outcome IN ('ok', 'running')
            THEN s.reason ELSE s.outcome END AS reason,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN s.details END AS details
  FROM driftmirror.promotion_step s
  JOIN driftmirror.promotion p ON p.id = s.promotion_id;
COMMENT ON VIEW driftmirror.dm_promotion_steps IS
    'The step log of every promotion, one row per step';

CREATE VIEW driftmirror.dm_routes AS
SELECT g.name AS group_name, r.name AS resource_name, rt.access,
       CASE WHEN NOT pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN NULL
            WHEN r.kind OPERATOR(pg_catalog.=) 'postgres' THEN driftmirror.dm_client_conninfo(rt.endpoint)
            ELSE rt.endpoint END AS endpoint,
       rt.weight, rt.updated_at
  FROM driftmirror.route rt
  JOIN driftmirror.resource r ON r.id = rt.resource_id
  JOIN driftmirror.resource_group g ON g.id = rt.group_id;
COMMENT ON VIEW driftmirror.dm_routes IS
    'Routes per resource and access kind; endpoint (without user=) is null unless the reader is a driftmirror_admin';

-- _promotion_guardrails: compare what the driver read on both nodes with
-- the limits; store the figures; return NULL when every check passes, else
-- one reason per line, each with the figures compared
CREATE FUNCTION driftmirror._promotion_guardrails(p_id bigint, o jsonb, n jsonb)
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
CREATE FUNCTION driftmirror._promotion_queue_cleanup(p_id bigint)
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

-- ---- auto-promotion ----
--
-- With the group option auto_promote, the worker promotes a mirror on its
-- own once, for auto_promote_window without interruption: the mirror takes
-- all read traffic (its read route has weight 100: the last step of a
-- blue/green read shift), it is mirroring with fresh status, its lag is
-- within auto_promote_max_lag_bytes and auto_promote_max_lag_seconds, no
-- apply error appeared, and its latency ratio (_mirror_latency over
-- auto_promote_window: median mirror latency / median primary latency,
-- both floored at 1 ms, rounded to 2 decimals) is at most
-- auto_promote_max_latency_ratio.  While no latency sample of both nodes
-- exists the ratio is "not measured yet" and the window does not start.
-- After the promotion the routes send reads to the new primary, so the
-- condition does not hold for the old one: no ping-pong.

CREATE TABLE driftmirror.auto_promote_state (
    mirror_id      bigint PRIMARY KEY REFERENCES driftmirror.mirror (id) ON DELETE CASCADE,
    holding_since  timestamptz,
    errors_at_start bigint,
    last_reason    text,
    checked_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- _auto_promote_check: evaluate the thresholds of every mirror of a group
-- (called by the worker each group step); returns the resources to promote
-- now, after logging the decision with its figures in the action log
CREATE FUNCTION driftmirror._auto_promote_check(p_group_id bigint)
RETURNS TABLE (resource_id bigint, reason text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       driftmirror.resource_group;
    eff     jsonb;
    m       driftmirror.mirror;
    st      driftmirror.auto_promote_state;
    win     interval;
    iv      interval;
    errs    bigint;
    weight  integer;
    fails   text[];
    figures jsonb;
    lat     record;
    ratio   numeric;
    maxratio numeric;
    latency text;
BEGIN
    SELECT * INTO g FROM driftmirror.resource_group WHERE id = p_group_id;
    eff := driftmirror._effective_options('group', g.options);
    IF NOT coalesce((eff ->> 'auto_promote')::boolean, false) THEN
        DELETE FROM driftmirror.auto_promote_state s
         USING driftmirror.mirror mm WHERE mm.id = s.mirror_id AND mm.group_id = p_group_id;
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM driftmirror.promotion p WHERE p.group_id = p_group_id
                AND p.state NOT IN ('done', 'rolled_back', 'refused', 'failed')) THEN
        RETURN;
    END IF;
    win := driftmirror._opt_interval(eff -> 'auto_promote_window');
    iv := driftmirror._opt_interval(eff -> 'interval');
    maxratio := (eff ->> 'auto_promote_max_latency_ratio')::numeric;

    FOR m IN SELECT * FROM driftmirror.mirror mm
              WHERE mm.group_id = p_group_id AND mm.kind = 'postgres' ORDER BY mm.id
    LOOP
        errs := m.apply_error_count + m.sync_error_count;
        SELECT rt.weight INTO weight FROM driftmirror.route rt
         WHERE rt.resource_id = m.resource_id AND rt.access = 'read' AND rt.endpoint = m.mirror_endpoint;
        SELECT * INTO st FROM driftmirror.auto_promote_state s WHERE s.mirror_id = m.id;
        fails := '{}';
        IF coalesce(weight, 0) < 100 THEN
            fails := fails || format('the mirror takes %s%% of reads, not 100%%', coalesce(weight, 0));
        END IF;
        IF m.state <> 'mirroring' THEN
            fails := fails || format('the mirror is %s', m.state);
        END IF;
        IF greatest(m.primary_checked_at, m.mirror_checked_at) IS NULL
           OR least(m.primary_checked_at, m.mirror_checked_at) < clock_timestamp() - 3 * iv THEN
            fails := fails || 'the mirror''s status is not fresh'::text;
        END IF;
        IF m.lag_bytes IS NULL OR m.lag_bytes > (eff ->> 'auto_promote_max_lag_bytes')::bigint THEN
            fails := fails || format('lag %s bytes exceeds auto_promote_max_lag_bytes %s',
                                     coalesce(m.lag_bytes::text, 'unknown'), eff ->> 'auto_promote_max_lag_bytes');
        END IF;
        IF m.lag_seconds IS NULL OR m.lag_seconds > (eff ->> 'auto_promote_max_lag_seconds')::double precision THEN
            fails := fails || format('lag %s s exceeds auto_promote_max_lag_seconds %s',
                                     coalesce(round(m.lag_seconds::numeric, 3)::text, 'unknown'),
                                     eff ->> 'auto_promote_max_lag_seconds');
        END IF;
        IF driftmirror._drift_hold(m.id) IS NOT NULL THEN
            fails := fails || driftmirror._drift_hold(m.id);
        END IF;
        IF st.holding_since IS NOT NULL AND errs > st.errors_at_start THEN
            fails := fails || format('%s new apply error(s) during the window', errs - st.errors_at_start);
        END IF;
        -- latency: medians of the window's samples, ratio to 2 decimals
        SELECT * INTO lat FROM driftmirror._mirror_latency(m.id, win);
        ratio := round(lat.ratio::numeric, 2);
        latency := format('median %s ms on the mirror, %s ms on the primary',
                          trim_scale(round(lat.mirror_ms::numeric, 3)),
                          trim_scale(round(lat.primary_ms::numeric, 3)));
        IF ratio IS NULL THEN
            fails := fails || format('latency ratio not measured yet (no latency sample of the %s)',
                                     CASE WHEN lat.mirror_ms IS NULL AND lat.primary_ms IS NULL THEN 'mirror and the primary'
                                          WHEN lat.mirror_ms IS NULL THEN 'mirror' ELSE 'primary' END);
        ELSIF ratio > maxratio THEN
            fails := fails || format('latency ratio %s exceeds auto_promote_max_latency_ratio %s (%s)',
                                     trim_scale(ratio), trim_scale(maxratio), latency);
        END IF;
        figures := jsonb_build_object('read_weight', weight, 'lag_bytes', m.lag_bytes,
                                      'lag_seconds', m.lag_seconds, 'apply_errors', errs,
                                      'window', win::text,
                                      'latency_ratio', ratio,
                                      'max_latency_ratio', maxratio,
                                      'primary_latency_ms', round(lat.primary_ms::numeric, 3),
                                      'mirror_latency_ms', round(lat.mirror_ms::numeric, 3),
                                      'primary_latency_samples', lat.primary_samples,
                                      'mirror_latency_samples', lat.mirror_samples);

        IF cardinality(fails) > 0 THEN
            INSERT INTO driftmirror.auto_promote_state AS s (mirror_id, holding_since, errors_at_start, last_reason, checked_at)
            VALUES (m.id, NULL, NULL, array_to_string(fails, '; '), clock_timestamp())
            ON CONFLICT (mirror_id) DO UPDATE
               SET holding_since = NULL, errors_at_start = NULL,
                   last_reason = EXCLUDED.last_reason, checked_at = EXCLUDED.checked_at;
            CONTINUE;
        END IF;
        IF st.holding_since IS NULL THEN
            INSERT INTO driftmirror.auto_promote_state AS s (mirror_id, holding_since, errors_at_start, last_reason, checked_at)
            VALUES (m.id, clock_timestamp(), errs,
                    format('thresholds hold; window started (latency ratio %s)', trim_scale(ratio)),
                    clock_timestamp())
            ON CONFLICT (mirror_id) DO UPDATE
               SET holding_since = EXCLUDED.holding_since, errors_at_start = EXCLUDED.errors_at_start,
                   last_reason = EXCLUDED.last_reason, checked_at = EXCLUDED.checked_at;
            CONTINUE;
        END IF;
        IF clock_timestamp() - st.holding_since < win THEN
            UPDATE driftmirror.auto_promote_state s
               SET last_reason = format('thresholds hold since %s (latency ratio %s)', st.holding_since, trim_scale(ratio)),
                   checked_at = clock_timestamp()
             WHERE s.mirror_id = m.id;
            CONTINUE;
        END IF;

        -- held for the whole window: promote
        UPDATE driftmirror.auto_promote_state s
           SET holding_since = NULL, errors_at_start = NULL,
               last_reason = 'promotion started', checked_at = clock_timestamp()
         WHERE s.mirror_id = m.id;
        resource_id := m.resource_id;
        reason := format('auto-promotion: for %s the mirror took 100%% of reads, lag %s bytes and %s s within %s bytes and %s s, no new apply error, latency ratio %s within %s (%s)',
                         win, m.lag_bytes, round(m.lag_seconds::numeric, 3),
                         eff ->> 'auto_promote_max_lag_bytes', eff ->> 'auto_promote_max_lag_seconds',
                         trim_scale(ratio), trim_scale(maxratio), latency);
        PERFORM driftmirror._log_action(g.name, m.resource_name, 'auto_promote', reason,
                                        figures || jsonb_build_object('holding_since', st.holding_since));
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE VIEW driftmirror.dm_auto_promotion AS
SELECT mm.group_name, mm.resource_name, s.holding_since, s.last_reason, s.checked_at
  FROM driftmirror.auto_promote_state s
  JOIN driftmirror.mirror mm ON mm.id = s.mirror_id;
COMMENT ON VIEW driftmirror.dm_auto_promotion IS
    'Auto-promotion: per mirror, since when its thresholds hold, or why they do not';

-- _promotion_start_auto: record an auto-promotion of a resource (its reason
-- is the last auto_promote decision in the action log)
CREATE FUNCTION driftmirror._promotion_start_auto(p_resource_id bigint, p_pid integer)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT driftmirror._promotion_start(g.name, r.name, '{}', 'auto',
               coalesce((SELECT a.reason FROM driftmirror.action a
                          WHERE a.group_name = g.name AND a.resource_name = r.name
                            AND a.kind = 'auto_promote'
                          ORDER BY a.id DESC LIMIT 1), 'auto-promotion'),
               p_pid)
      FROM driftmirror.resource r JOIN driftmirror.resource_group g ON g.id = r.group_id
     WHERE r.id = p_resource_id
$$;

-- _promotion_advance: one transaction per step boundary (fewer commits in
-- the write pause): store figures, end step p_done, flip if asked (the
-- commit point), start step p_next and move to p_next_state
CREATE FUNCTION driftmirror._promotion_advance(p_id bigint, p_done text, p_lsn pg_lsn,
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
