-- 70_promotion_catalog.sql: promotion (switchover) of a mirror to primary,
-- and the routes clients use to find the primary: options and tables.
--
-- Files of promotion and routes, one concern each:
--   70_promotion_catalog.sql   options, tables, states (this file)
--   70_promotion_steps.sql     the state machine's SQL side and dm_promote
--   70_promotion_views.sql     dm_promotions, dm_promotion_steps
--   70_routes.sql              route functions, dm_route, dm_routes
--   71_auto_promotion.sql      auto-promotion
--   72_promotion_actuator.sql  promotion through an HTTP actuator
-- 70_promotion_steps.sql and 72_promotion_actuator.sql hold only code that
-- can run again (CREATE OR REPLACE FUNCTION): the 0.1.0--0.2.0 update
-- pastes them whole (sql/upgrade/0.1.0--0.2.0/25_promotion_code.include).
-- Keep it so: options, tables and types here, and a function whose
-- arguments or result change is dropped in a fragment before the include.
-- The include runs early in the update: a LANGUAGE sql function there that
-- reads a column or calls a function new in 0.2.0 fails at creation unless
-- a fragment numbered below 25 adds it first; PL/pgSQL is checked only when
-- it runs.
--
-- dm_promote (C, src/promote.c) starts a dynamic background worker
-- (src/promote_driver.c, over promote_postgres.c and promote_actuator.c)
-- that drives one promotion per resource as a
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

-- actuator promotions (72_promotion_actuator.sql)
INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('group', 'promote_abort_timeout', 'interval', '"10 seconds"', '1 second', '1 hour', NULL,
     'actuator promotions: how long the abort of a timed-out promotion is retried before the promotion is recorded as failed with the actuator''s state unknown');

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
    WHERE NOT driftmirror._promotion_is_final(state);
-- promotions that still owe a pgbouncer router a RESUME (almost always
-- none): the worker's step looks for them (_step_work)
CREATE INDEX promotion_poolers_owed ON driftmirror.promotion (group_id)
    WHERE poolers_paused IS NOT NULL OR poolers_removed IS NOT NULL;
COMMENT ON TABLE driftmirror.promotion IS
    'Promotions (switchovers): one row per resource promoted, with its persisted state';
-- a new promotion starts in guardrails and moves only as
-- 59_contract.sql allows
CREATE TRIGGER promotion_state_transition BEFORE INSERT OR UPDATE OF state ON driftmirror.promotion
    FOR EACH ROW EXECUTE FUNCTION driftmirror._check_state_transition('promotion');

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


-- auto-promotion (71_auto_promotion.sql): per mirror, since when its
-- thresholds hold
CREATE TABLE driftmirror.auto_promote_state (
    mirror_id      bigint PRIMARY KEY REFERENCES driftmirror.mirror (id) ON DELETE CASCADE,
    holding_since  timestamptz,
    errors_at_start bigint,
    last_reason    text,
    checked_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
