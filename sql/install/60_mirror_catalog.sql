-- 60_mirror_catalog.sql: mirrors of PostgreSQL resources over logical
-- replication, and of cache, app, web and service resources through their
-- HTTP actuator: the mirror options, the tables and the mirror metrics.
--
-- Files of the mirror feature, one concern each:
--   60_mirror_catalog.sql     options, tables, metric names (this file)
--   61_mirror_remote_sql.sql  the SQL run on the nodes, and preflight
--   62_mirror_steps.sql       state changes and the next action of a mirror
--   63_mirror_status.sql      status reads recorded, metrics, latency
--   64_mirror_outcome.sql     the outcome of an action (_mirror_done)
--   65_mirror_cleanup.sql     the queue of remote drops
--   66_mirror_api.sql         dm_create_mirror, dm_drop_mirror and friends
--   67_mirror_views.sql       dm_mirror_status and the other views
-- 61 to 66 hold only code that can run again (CREATE OR REPLACE FUNCTION
-- and TRIGGER): the 0.1.0--0.2.0 update pastes them whole
-- (sql/upgrade/0.1.0--0.2.0/23_mirror_code.include), so a change there
-- needs no copy in an upgrade fragment.  Keep it so: tables and their
-- columns here (with ALTER TABLE in a fragment), and a function whose
-- arguments or result change is dropped in a fragment before the include.
-- The include runs early in the update: a LANGUAGE sql function there that
-- reads a column or calls a function new in 0.2.0 fails at creation unless
-- a fragment numbered below 23 adds it first; PL/pgSQL is checked only when
-- it runs.
--
-- Interfaces other features build on (promotion in particular):
--
--   Objects on the nodes, names derived from ids (dm_<group id>_<resource id>):
--     primary:  publication  <base>      FOR ALL TABLES
--               slot         <base>      plugin driftmirror (origin filter)
--     mirror:   subscription <base>      create_slot = false, slot_name = <base>,
--                                        copy_data = true
--     two-way (option two_way), created once the initial copy is done:
--     mirror:   publication  <base>_rev  FOR ALL TABLES
--               slot         <base>_rev  plugin driftmirror
--     primary:  subscription <base>_rev  copy_data = false
--     Both application databases get the extension driftmirror_node (the
--     fence controls, no tables); the mirror's database is fenced in mode
--     'mirror' (option fence, default true for one-way, false for two-way)
--     before anything else is created.
--   Creation actions, in order (mirror.step = the last one done):
--     fence (if fenced), publication, slot, subscription; then, once every
--     table is ready, two-way only: rev_publication, rev_slot,
--     rev_subscription.
--
--   Table driftmirror.mirror (one row per mirrored resource):
--     id, group_id, resource_id, group_name, resource_name, kind,
--     primary_endpoint (conninfo of the primary when the mirror was made),
--     mirror_endpoint, options, two_way, fence, state
--     ('creating' -> 'syncing' -> 'mirroring', or 'failed'), step (the last
--     action done), pending_action (the action started and not yet recorded:
--     set BEFORE the action, so a crash leaves it to be redone; every action
--     is idempotent), the object names (publication_name, slot_name,
--     subscription_name, rev_*), and the status the worker refreshes each
--     group step: tables_total, tables_ready, tables (jsonb), lag_bytes,
--     lag_seconds, apply_error_count, sync_error_count, rev_apply_error_count,
--     rev_sync_error_count, conflicts, primary_fence and mirror_fence (the
--     fence mode each application database reports: none, mirror,
--     switchover), slot_active, last_error, checked_at.
--   Table driftmirror.mirror_sequence: last_value of every sequence of the
--     primary (refreshed each step; dm_sync_sequences copies fresh values).
--   Table driftmirror.mirror_cleanup: remote drops still to do; rows are
--     queued by a trigger whenever a mirror row is deleted (dm_drop_mirror,
--     dm_remove_resource, dm_drop_group cascades alike), retried by the
--     worker with back-off until they succeed.  Nothing is forgotten
--     silently: dm_status and dm_mirror_cleanups show what is pending.
--
--   Protocol between the worker (C, src/mirror.c) and this file: the worker
--   asks _mirror_next(id, step_started) for the next remote action of a
--   mirror (one short transaction; the action is recorded as pending before
--   it is returned), runs it over libpq outside any transaction, and records
--   the outcome with _mirror_done(...) in another short transaction.  The
--   same for cleanups with _cleanup_due() / _cleanup_done().
--
--   HTTP actuator mirrors (kind <> 'postgres'; contract in docs/mirrors.md,
--   "HTTP actuator contract"): the same protocol, with actions
--   actuator_create (POST <endpoint>/mirrors, Idempotency-Key
--   dm-<actuator_key>-create-<actuator_generation>) and actuator_status
--   (GET <endpoint>/mirrors/<actuator_name>), returned in the http_* columns
--   of _mirror_next and interpreted by _mirror_http_done from the HTTP
--   status and body.  States creating -> provisioning -> mirroring, or
--   failed.  primary_endpoint holds the actuator URL; mirror_endpoint is
--   what the actuator reports (NULL until then, unless asked for); the
--   replication-object columns stay NULL.  A failure counts in attempts and
--   sets retry_at (back-off); _mirror_due skips the mirror until then.  A
--   drop queues one cleanup row (node 'actuator', what 'actuator_mirror':
--   DELETE with key dm-<actuator_key>-drop) if the actuator was ever asked
--   (actuator_contacted).  The bearer token never enters the catalog: only
--   the name of its file (resource option bearer_token_file, copied to
--   token_file) is kept, and the worker reads the file per request.
--
--   Metrics: each status refresh stores mirror.lag_bytes,
--   mirror.lag_seconds, mirror.apply_errors, mirror.rev_apply_errors (two-way)
--   and the traffic counters of each node's database (pg_stat_database:
--   mirror.primary_xacts / mirror.mirror_xacts, commits plus rollbacks,
--   and mirror.primary_rollbacks / mirror.mirror_rollbacks; the drift
--   phase, 78_drift.sql, normalises by them) of the primary resource via
--   _mirror_store_metrics, in the transaction of _mirror_done.
--
--   Latency (postgres mirrors): each status read comes with a probe
--   statement (_mirror_probe_sql, the same text for both nodes: a read of
--   the first replicated table that returns no row), which the worker runs
--   three times on the status read's connection and times; the median is
--   the node's sample, passed to _mirror_done as p_latency_ms and recorded
--   by _mirror_record_latency: columns primary_latency_ms /
--   mirror_latency_ms, metrics mirror.primary_latency_ms /
--   mirror.mirror_latency_ms (of the primary resource).  The ratio
--   mirror/primary is _mirror_latency(mirror id, window): the median of
--   each node's samples in the window, both floored at 1 ms, divided; the
--   row keeps it for the group's auto_promote_window (latency_ratio,
--   *_latency_median_ms, latency_samples).  Samples from before
--   latency_since (reset whenever an endpoint of the mirror changes, as a
--   promotion does) do not count.

INSERT INTO driftmirror.option_def
    (scope, key, type, default_value, min_value, max_value, allowed, description)
VALUES
    ('mirror', 'two_way', 'boolean', 'false', NULL, NULL, NULL,
     'also replicate from the mirror back to the primary (both through the origin filter)'),
    ('mirror', 'fence', 'boolean', NULL, NULL, NULL, NULL,
     'fence the mirror database against client writes (default: true for one-way, false for two-way)'),
    ('mirror', 'copy_data', 'boolean', 'true', NULL, NULL, NULL,
     'copy the existing data to the mirror before streaming changes'),
    ('mirror', 'publisher_endpoint', 'text', NULL, NULL, NULL, NULL,
     'conninfo the mirror uses to reach the primary, when it differs from the primary resource''s endpoint'),
    ('mirror', 'max_attempts', 'integer', '5', '1', '1000', NULL,
     'failed attempts of one creation action before the mirror is marked failed'),
    ('mirror', 'actuator_timeout', 'interval', '"10 seconds"', '1 second', '60 seconds', NULL,
     'HTTP actuator mirrors: deadline of one request to the actuator'),
    ('mirror', 'max_backoff', 'interval', '"60 seconds"', '1 second', '1 hour', NULL,
     'HTTP actuator mirrors: longest wait before a failed request is tried again'),
    ('mirror', 'actuator_options', 'object', NULL, NULL, NULL, NULL,
     'HTTP actuator mirrors: a JSON object passed as is in the "options" member of the create request'),
    ('resource', 'bearer_token_file', 'text', NULL, NULL, NULL, NULL,
     'resources reached over HTTP: file of the data directory''s driftmirror_secrets directory holding the actuator''s bearer token');

CREATE TABLE driftmirror.mirror (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id            bigint NOT NULL REFERENCES driftmirror.resource_group (id) ON DELETE CASCADE,
    resource_id         bigint NOT NULL UNIQUE REFERENCES driftmirror.resource (id) ON DELETE CASCADE,
    group_name          text NOT NULL,
    resource_name       text NOT NULL,
    kind                text NOT NULL,
    primary_endpoint    text NOT NULL,
    publisher_endpoint  text NOT NULL,
    mirror_endpoint     text,
    options             jsonb NOT NULL DEFAULT '{}',
    two_way             boolean NOT NULL,
    fence               boolean NOT NULL,
    copy_data           boolean NOT NULL,
    state               text NOT NULL DEFAULT 'creating'
                        CHECK (state IN ('creating', 'syncing', 'provisioning', 'mirroring', 'failed')),
    state_reason        text,
    step                text NOT NULL DEFAULT 'start',
    pending_action      text,
    pending_since       timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    publication_name    text,
    slot_name           text,
    subscription_name   text,
    rev_publication_name  text,
    rev_slot_name       text,
    rev_subscription_name text,
    tables_total        integer,
    tables_ready        integer,
    tables              jsonb,
    lag_bytes           bigint,
    lag_seconds         double precision,
    lag_probe_lsn       pg_lsn,
    lag_probe_at        timestamptz,
    primary_latency_ms  double precision,
    mirror_latency_ms   double precision,
    latency_ratio       double precision,
    primary_latency_median_ms double precision,
    mirror_latency_median_ms  double precision,
    latency_samples     integer,
    latency_since       timestamptz NOT NULL DEFAULT now(),
    latency_error       text,
    apply_error_count   bigint NOT NULL DEFAULT 0,
    sync_error_count    bigint NOT NULL DEFAULT 0,
    rev_apply_error_count bigint NOT NULL DEFAULT 0,
    rev_sync_error_count  bigint NOT NULL DEFAULT 0,
    conflicts           bigint NOT NULL DEFAULT 0,
    primary_fence       text,
    mirror_fence        text,
    slot_active         boolean,
    last_conflict_at    timestamptz,
    primary_checked_at  timestamptz,
    mirror_checked_at   timestamptz,
    last_error          text,
    last_error_detail   text,
    last_error_sqlstate text,
    last_error_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    state_changed_at    timestamptz NOT NULL DEFAULT now(),
    synced_at           timestamptz,
    -- HTTP actuator mirrors (kinds cache, app, web, service)
    actuator_name       text,
    actuator_key        text,
    actuator_generation integer NOT NULL DEFAULT 0,
    actuator_state      text,
    actuator_detail     text,
    actuator_contacted  boolean NOT NULL DEFAULT false,
    token_file          text,
    retry_at            timestamptz,
    UNIQUE (group_id, resource_id),
    CHECK (kind <> 'postgres' OR (mirror_endpoint IS NOT NULL AND publication_name IS NOT NULL
                                  AND slot_name IS NOT NULL AND subscription_name IS NOT NULL)),
    CHECK (kind = 'postgres' OR (actuator_name IS NOT NULL AND actuator_key IS NOT NULL)),
    CHECK (state <> 'syncing' OR kind = 'postgres'),
    CHECK (state <> 'provisioning' OR kind <> 'postgres')
);
COMMENT ON TABLE driftmirror.mirror IS
    'Mirrors: a primary resource, its mirror, the replication objects and their state';
-- only the transitions of 59_contract.sql
CREATE TRIGGER mirror_state_transition BEFORE UPDATE OF state ON driftmirror.mirror
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION driftmirror._check_state_transition('mirror');

CREATE TABLE driftmirror.mirror_sequence (
    mirror_id     bigint NOT NULL REFERENCES driftmirror.mirror (id) ON DELETE CASCADE,
    sequence_name text NOT NULL,
    last_value    bigint,
    collected_at  timestamptz NOT NULL,
    PRIMARY KEY (mirror_id, sequence_name)
);
COMMENT ON TABLE driftmirror.mirror_sequence IS
    'Last value of every sequence of a mirrored primary, for switchover';

CREATE TABLE driftmirror.mirror_cleanup (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name      text NOT NULL,
    resource_name   text NOT NULL,
    mirror_id       bigint NOT NULL,
    node            text NOT NULL CHECK (node IN ('primary', 'mirror', 'actuator')),
    endpoint        text NOT NULL,
    what            text NOT NULL CHECK (what IN ('subscription', 'slot', 'publication', 'fence',
                                                  'actuator_mirror')),
    object_name     text,
    priority        integer NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_error_detail text,
    last_error_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- actuator_mirror rows: DELETE <endpoint>/mirrors/<object_name>
    idempotency_key text,
    token_file      text,
    timeout_ms      integer
);
CREATE INDEX ON driftmirror.mirror_cleanup (next_attempt_at);
COMMENT ON TABLE driftmirror.mirror_cleanup IS
    'Replication objects still to drop on a node (retried by the worker until done)';

-- mirror figures recorded in the metric store (55_metric_*.sql) at every
-- status refresh, as metrics of the primary resource
INSERT INTO driftmirror.metric_def (name, unit, description, builtin) VALUES
    ('mirror.lag_bytes', 'B', 'WAL of the primary not yet confirmed by its mirror (actuator mirrors: as the actuator reports it)', true),
    ('mirror.lag_seconds', 's', 'age of the oldest primary position its mirror has not confirmed (actuator mirrors: as the actuator reports it)', true),
    ('mirror.apply_errors', 'errors', 'apply errors of the mirror''s subscription so far (pg_stat_subscription_stats, cumulative)', true),
    ('mirror.rev_apply_errors', 'errors', 'two-way mirrors: apply errors of the primary''s subscription to the mirror so far (cumulative)', true),
    ('mirror.primary_latency_ms', 'ms', 'round trip of the latency probe on the primary, seen from the control node: median of 3 probes per refresh', true),
    ('mirror.mirror_latency_ms', 'ms', 'round trip of the same latency probe on the mirror, seen from the control node: median of 3 probes per refresh', true);
