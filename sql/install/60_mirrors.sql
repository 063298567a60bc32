-- 60_mirrors.sql: mirrors of PostgreSQL resources over logical replication,
-- and of cache, app, web and service resources through their HTTP actuator.
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

-- mirror figures recorded in the metric store (55_metrics.sql) at every
-- status refresh, as metrics of the primary resource
INSERT INTO driftmirror.metric_def (name, unit, description, builtin) VALUES
    ('mirror.lag_bytes', 'B', 'WAL of the primary not yet confirmed by its mirror (actuator mirrors: as the actuator reports it)', true),
    ('mirror.lag_seconds', 's', 'age of the oldest primary position its mirror has not confirmed (actuator mirrors: as the actuator reports it)', true),
    ('mirror.apply_errors', 'errors', 'apply errors of the mirror''s subscription so far (pg_stat_subscription_stats, cumulative)', true),
    ('mirror.rev_apply_errors', 'errors', 'two-way mirrors: apply errors of the primary''s subscription to the mirror so far (cumulative)', true),
    ('mirror.primary_latency_ms', 'ms', 'round trip of the latency probe on the primary, seen from the control node: median of 3 probes per refresh', true),
    ('mirror.mirror_latency_ms', 'ms', 'round trip of the same latency probe on the mirror, seen from the control node: median of 3 probes per refresh', true);

-- ---- C helpers (remote_conn.c via mirror.c) ----

-- _remote_value: run one SQL text on a node and return the first column of
-- the first row (NULL if none).  node_session: first create
-- driftmirror_node there if missing and pass the write fence.
CREATE FUNCTION driftmirror._remote_value(conninfo text, label text, sql text,
                                          node_session boolean DEFAULT false)
RETURNS text
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_remote_value';

-- ---- names and node-side SQL ----

-- _node_facts_sql: what preflight needs to know about a node, as one jsonb
CREATE FUNCTION driftmirror._node_facts_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $sql$ SELECT $q$
WITH rels AS (
    SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS name, c.relreplident
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND c.relpersistence OPERATOR(pg_catalog.=) 'p'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname OPERATOR(pg_catalog.!~) '^pg_toast'
)
SELECT pg_catalog.jsonb_build_object(
    'wal_level', pg_catalog.current_setting('wal_level'),
    'max_replication_slots', pg_catalog.current_setting('max_replication_slots')::int,
    'used_slots', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots),
    'max_wal_senders', pg_catalog.current_setting('max_wal_senders')::int,
    'used_wal_senders', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
                          WHERE backend_type OPERATOR(pg_catalog.=) 'walsender'),
    'output_plugin_libraries', (SELECT setting FROM pg_catalog.pg_settings
                                 WHERE name OPERATOR(pg_catalog.=) 'output_plugin_libraries'),
    'shared_preload_libraries', pg_catalog.current_setting('shared_preload_libraries'),
    'superuser', (SELECT rolsuper FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) current_user),
    'server_version_num', pg_catalog.current_setting('server_version_num')::int,
    'no_identity', (SELECT COALESCE(pg_catalog.jsonb_agg(r.name ORDER BY r.name), '[]')
                      FROM rels r
                     WHERE r.relreplident OPERATOR(pg_catalog.=) 'n'
                        OR (r.relreplident OPERATOR(pg_catalog.=) 'd' AND NOT EXISTS (
                               SELECT FROM pg_catalog.pg_index i
                                WHERE i.indrelid OPERATOR(pg_catalog.=) r.oid AND i.indisprimary))),
    'columns', (SELECT COALESCE(pg_catalog.jsonb_object_agg(t.name, t.cols), '{}')
                  FROM (SELECT r.name,
                               pg_catalog.jsonb_object_agg(a.attname,
                                   pg_catalog.format_type(a.atttypid, a.atttypmod)) AS cols
                          FROM rels r
                          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) r.oid
                         WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                         GROUP BY r.name) t))::text
$q$ $sql$;

-- _node_role_sql: the connection role of a node, as one jsonb: user,
-- superuser, replication (readable by any role)
CREATE FUNCTION driftmirror._node_role_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $sql$ SELECT $q$
SELECT pg_catalog.jsonb_build_object('user', rolname, 'superuser', rolsuper,
                                     'replication', rolreplication)::text
  FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user
$q$ $sql$;

-- _split_list: a comma-separated setting as a trimmed array
CREATE FUNCTION driftmirror._split_list(p_list text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(btrim(x, ' "')), '{}')
      FROM unnest(string_to_array(coalesce(p_list, ''), ',')) x
     WHERE btrim(x, ' "') <> ''
$$;

-- _mirror_preflight: check both nodes; returns the problems found, one
-- clear sentence each (empty when all is well).  Raises only if a node
-- cannot be reached (with the node named, never the conninfo).
CREATE FUNCTION driftmirror._mirror_preflight(p_primary text, p_primary_label text,
                                              p_mirror text, p_mirror_label text,
                                              p_two_way boolean)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    facts   jsonb[];
    f       jsonb;
    lbl     text;
    probs   text[] := '{}';
    need_slots integer;
    need_senders integer;
    t       text;
    c       text;
    pcols   jsonb;
    mcols   jsonb;
    i       integer;
BEGIN
    -- the connection role first: the facts query reads settings only a
    -- superuser (or pg_read_all_settings) may read, and everything the
    -- worker creates on the nodes needs a superuser
    FOR i IN 1..2 LOOP
        lbl := CASE i WHEN 1 THEN p_primary_label ELSE p_mirror_label END;
        f := driftmirror._remote_value(CASE i WHEN 1 THEN p_primary ELSE p_mirror END, lbl,
                                       driftmirror._node_role_sql())::jsonb;
        IF NOT coalesce((f ->> 'superuser')::boolean, false) THEN
            probs := probs || format('node "%s": the connection role %s is not a superuser%s; driftmirror creates publications, slots, subscriptions and the driftmirror_node extension with it: name a superuser in the endpoint (user=...), or run ALTER ROLE %s SUPERUSER on that node',
                                     lbl, quote_ident(f ->> 'user'),
                                     CASE WHEN (f ->> 'replication')::boolean THEN ' (it has REPLICATION, which is not enough)' ELSE '' END,
                                     quote_ident(f ->> 'user'));
        END IF;
    END LOOP;
    IF cardinality(probs) > 0 THEN
        RETURN probs;
    END IF;

    facts := ARRAY[driftmirror._remote_value(p_primary, p_primary_label, driftmirror._node_facts_sql())::jsonb,
                   driftmirror._remote_value(p_mirror, p_mirror_label, driftmirror._node_facts_sql())::jsonb];
    FOR i IN 1..2 LOOP
        f := facts[i];
        lbl := CASE i WHEN 1 THEN p_primary_label ELSE p_mirror_label END;
        IF f ->> 'wal_level' <> 'logical' THEN
            probs := probs || format('node "%s": wal_level is "%s", not "logical"', lbl, f ->> 'wal_level');
        END IF;
        need_slots := CASE WHEN i = 1 OR p_two_way THEN 2 ELSE 1 END;
        IF (f ->> 'max_replication_slots')::int - (f ->> 'used_slots')::int < need_slots THEN
            probs := probs || format('node "%s": only %s free replication slot(s) of max_replication_slots = %s; %s needed',
                                     lbl, (f ->> 'max_replication_slots')::int - (f ->> 'used_slots')::int,
                                     f ->> 'max_replication_slots', need_slots);
        END IF;
        need_senders := CASE WHEN i = 1 OR p_two_way THEN 2 ELSE 0 END;
        IF (f ->> 'max_wal_senders')::int - (f ->> 'used_wal_senders')::int < need_senders THEN
            probs := probs || format('node "%s": only %s free WAL sender(s) of max_wal_senders = %s; %s needed',
                                     lbl, (f ->> 'max_wal_senders')::int - (f ->> 'used_wal_senders')::int,
                                     f ->> 'max_wal_senders', need_senders);
        END IF;
        -- output_plugin_libraries exists from 15.19 on; older builds load any plugin
        IF f ->> 'output_plugin_libraries' IS NOT NULL
           AND NOT 'driftmirror' = ANY (driftmirror._split_list(f ->> 'output_plugin_libraries')) THEN
            probs := probs || format('node "%s": output_plugin_libraries (%s) does not list driftmirror',
                                     lbl, coalesce(nullif(f ->> 'output_plugin_libraries', ''), 'empty'));
        END IF;
        IF NOT 'driftmirror' = ANY (driftmirror._split_list(f ->> 'shared_preload_libraries')) THEN
            probs := probs || format('node "%s": driftmirror is not in shared_preload_libraries', lbl);
        END IF;
        IF NOT (f ->> 'superuser')::boolean THEN
            probs := probs || format('node "%s": the connection role is not a superuser', lbl);
        END IF;
        IF i = 1 OR p_two_way THEN
            FOR t IN SELECT jsonb_array_elements_text(f -> 'no_identity') LOOP
                probs := probs || format('node "%s": table %s has neither a primary key nor a replica identity',
                                         lbl, t);
            END LOOP;
        END IF;
    END LOOP;

    -- schema: every table and column of the primary exists on the mirror with
    -- the same type (in two-way mode also the other way round)
    FOR t, pcols IN SELECT key, value FROM jsonb_each(facts[1] -> 'columns') ORDER BY key LOOP
        mcols := facts[2] -> 'columns' -> t;
        IF mcols IS NULL THEN
            probs := probs || format('schema: table %s is missing on the mirror', t);
            CONTINUE;
        END IF;
        FOR c IN SELECT key FROM jsonb_each(pcols) ORDER BY key LOOP
            IF NOT mcols ? c THEN
                probs := probs || format('schema: column %s.%I (%s) is missing on the mirror',
                                         t, c, pcols ->> c);
            ELSIF mcols ->> c <> pcols ->> c THEN
                probs := probs || format('schema: column %s.%I is %s on the primary but %s on the mirror',
                                         t, c, pcols ->> c, mcols ->> c);
            END IF;
        END LOOP;
        IF p_two_way THEN
            FOR c IN SELECT key FROM jsonb_each(mcols) ORDER BY key LOOP
                IF NOT pcols ? c THEN
                    probs := probs || format('schema: column %s.%I exists only on the mirror (two-way mode)', t, c);
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    IF p_two_way THEN
        FOR t IN SELECT key FROM jsonb_each(facts[2] -> 'columns')
                  WHERE NOT facts[1] -> 'columns' ? key ORDER BY key LOOP
            probs := probs || format('schema: table %s exists only on the mirror (two-way mode)', t);
        END LOOP;
    END IF;
    RETURN probs;
END
$$;

-- _mirror_sub_sql: the idempotent CREATE SUBSCRIPTION run on the subscriber
CREATE FUNCTION driftmirror._mirror_sub_sql(p_name text, p_conninfo text, p_pub text,
                                            p_slot text, p_copy boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$DO $dm$ BEGIN
IF NOT EXISTS (SELECT FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
                WHERE s.subname OPERATOR(pg_catalog.=) %L AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) THEN
  CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I
    WITH (create_slot = false, slot_name = %L, copy_data = %s, enabled = true);
END IF; END $dm$ $f$, p_name, p_name, p_conninfo, p_pub, p_slot,
                  CASE WHEN p_copy THEN 'true' ELSE 'false' END)
$$;

-- _mirror_pub_sql / _mirror_slot_sql: idempotent publication and slot creation
CREATE FUNCTION driftmirror._mirror_pub_sql(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$DO $dm$ BEGIN
IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname OPERATOR(pg_catalog.=) %L) THEN
  CREATE PUBLICATION %I FOR ALL TABLES;
END IF; END $dm$ $f$, p_name, p_name)
$$;

CREATE FUNCTION driftmirror._mirror_slot_sql(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$SELECT pg_catalog.count(*) FROM (
  SELECT pg_catalog.pg_create_logical_replication_slot(%L, 'driftmirror')
   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots
                      WHERE slot_name OPERATOR(pg_catalog.=) %L)) s$f$, p_name, p_name)
$$;

-- _mirror_traffic_sql: the members of both status reads that count what
-- the node's database served (pg_stat_database: transactions, rollbacks),
-- for the drift phase's error rate (78_drift.sql)
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

-- _mirror_primary_status_sql: what the worker reads on the primary each step
CREATE FUNCTION driftmirror._mirror_primary_status_sql(m driftmirror.mirror)
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

-- _mirror_mirror_status_sql: what the worker reads on the mirror each step
CREATE FUNCTION driftmirror._mirror_mirror_status_sql(m driftmirror.mirror)
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

-- _mirror_probe_sql: the latency probe, the same text for both nodes: a
-- read of the first replicated table (byte order of its qualified name,
-- as the mirror reports them) that returns no row.
-- It takes the path of a client's read (parse, the table's lock, plan,
-- executor start, the answer) but no data page, so it costs the same on
-- both nodes whatever their tables hold; it waits like a client for a lock
-- that blocks reads (ACCESS EXCLUSIVE, as DDL or VACUUM FULL take).  Before
-- the mirror has reported its tables, or without tables: an empty SELECT.
-- Table names come from the mirror (regclass text): they are parsed and
-- quoted again, and anything else is not used.
CREATE FUNCTION driftmirror._mirror_probe_sql(m driftmirror.mirror)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     text;
    parts text[];
BEGIN
    IF jsonb_typeof(m.tables) = 'object' THEN
        SELECT min(k COLLATE "C") INTO t FROM jsonb_object_keys(m.tables) k;
    END IF;
    IF t IS NOT NULL THEN
        BEGIN
            parts := parse_ident(t);
        EXCEPTION WHEN invalid_parameter_value THEN
            parts := NULL;
        END;
        IF cardinality(parts) = 2 THEN
            RETURN format('SELECT FROM %I.%I WHERE false', parts[1], parts[2]);
        END IF;
    END IF;
    RETURN 'SELECT';
END
$$;

-- ---- the state machine ----

-- _mirror_set_state: change state and log the transition
CREATE FUNCTION driftmirror._mirror_set_state(m driftmirror.mirror, p_state text, p_reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.state = p_state THEN
        UPDATE driftmirror.mirror SET state_reason = p_reason WHERE id = m.id;
        RETURN;
    END IF;
    UPDATE driftmirror.mirror
       SET state = p_state, state_reason = p_reason, state_changed_at = now(),
           synced_at = CASE WHEN p_state = 'mirroring' THEN coalesce(synced_at, now()) ELSE synced_at END
     WHERE id = m.id;
    PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_' || p_state, p_reason,
                                    jsonb_build_object('from', m.state, 'to', p_state));
END
$$;

-- _mirror_due: the mirrors of a group the worker has work for
CREATE FUNCTION driftmirror._mirror_due(p_group_id bigint)
RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id FROM driftmirror.mirror
     WHERE group_id = p_group_id AND state <> 'failed'
       AND (retry_at IS NULL OR retry_at <= clock_timestamp())
     ORDER BY id
$$;

-- _actuator_token_file: the token file an actuator request of mirror m
-- uses: the one its resource names now (none once the option is removed),
-- or, once the resource is gone, the one recorded with the mirror
CREATE FUNCTION driftmirror._actuator_token_file(m driftmirror.mirror)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.id IS NULL THEN m.token_file ELSE r.options ->> 'bearer_token_file' END
      FROM (SELECT 1) one LEFT JOIN driftmirror.resource r ON r.id = m.resource_id
$$;

-- _mirror_next: the next remote action of a mirror in this step, recorded as
-- pending before it is returned; no row when there is nothing to do now.
-- node_session is true for every action: the worker's sessions pass the fence.
-- A postgres action has conninfo and sql; an HTTP actuator action (kinds
-- cache, app, web, service) has the http_* columns instead.  Status reads
-- (status_primary, status_mirror) also have probe_sql: the latency probe
-- the worker times on the same connection after the status query.
CREATE FUNCTION driftmirror._mirror_next(p_mirror_id bigint, p_step_started timestamptz)
RETURNS TABLE (action text, conninfo text, label text, sql text,
               http_method text, http_url text, http_body text, http_key text,
               http_token_file text, http_timeout_ms integer, probe_sql text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m       driftmirror.mirror;
    plabel  text;
    mlabel  text;
    eff     jsonb;
    base_url text;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id FOR UPDATE;
    IF NOT FOUND OR m.state = 'failed' THEN
        RETURN;
    END IF;

    IF m.kind <> 'postgres' THEN
        -- HTTP actuator: a failed request waits for its back-off
        IF m.retry_at IS NOT NULL AND m.retry_at > clock_timestamp() THEN
            RETURN;
        END IF;
        eff := driftmirror._effective_options('mirror', m.options);
        label := format('%s/%s actuator', m.group_name, m.resource_name);
        http_timeout_ms := (extract(epoch FROM driftmirror._opt_interval(eff -> 'actuator_timeout')) * 1000)::integer;
        -- the token file named by the resource now (it may have been changed)
        http_token_file := driftmirror._actuator_token_file(m);
        base_url := rtrim(m.primary_endpoint, '/') || '/mirrors';
        IF m.state = 'creating' THEN
            action := 'actuator_create';
            http_method := 'POST';
            http_url := base_url;
            http_body := jsonb_build_object('group', m.group_name, 'resource', m.resource_name,
                                            'kind', m.kind, 'mirror', m.actuator_name,
                                            'action', 'create', 'endpoint', m.mirror_endpoint,
                                            'options', coalesce(eff -> 'actuator_options', '{}'))::text;
            http_key := format('dm-%s-create-%s', m.actuator_key, m.actuator_generation);
            UPDATE driftmirror.mirror
               SET pending_action = action, pending_since = clock_timestamp(),
                   actuator_contacted = true, token_file = http_token_file
             WHERE id = m.id;
            RETURN NEXT;
            RETURN;
        END IF;
        -- provisioning, mirroring: one status poll per step, none while the
        -- mirror is being promoted (70_promotion.sql, 72_promotion_actuator.sql:
        -- an answer read before the switch must not land after it); the
        -- poll's start is kept in pending_since for _mirror_http_done
        IF (m.mirror_checked_at IS NULL OR m.mirror_checked_at < p_step_started)
           AND NOT EXISTS (SELECT FROM driftmirror.promotion p
                            WHERE p.mirror_id = m.id
                              AND p.state NOT IN ('done', 'rolled_back', 'refused', 'failed')) THEN
            action := 'actuator_status';
            http_method := 'GET';
            http_url := base_url || '/' || m.actuator_name;
            UPDATE driftmirror.mirror SET token_file = http_token_file, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
        END IF;
        RETURN;
    END IF;

    plabel := format('%s/%s primary', m.group_name, m.resource_name);
    mlabel := format('%s/%s mirror', m.group_name, m.resource_name);

    IF m.state = 'creating' THEN
        -- the fence comes first, so that no client writes into the mirror
        -- from the moment it starts receiving data
        action := CASE m.step
                  WHEN 'start' THEN CASE WHEN m.fence THEN 'fence' ELSE 'publication' END
                  WHEN 'fence' THEN 'publication'
                  WHEN 'publication' THEN 'slot'
                  WHEN 'slot' THEN 'subscription'
                  END;
        IF action IS NULL THEN
            PERFORM driftmirror._mirror_set_state(m, 'syncing', 'initial copy running');
            m.state := 'syncing';
        ELSE
            CASE action
            WHEN 'publication' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_pub_sql(m.publication_name);
            WHEN 'slot' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_slot_sql(m.slot_name);
            WHEN 'subscription' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_sub_sql(m.subscription_name, m.publisher_endpoint,
                                                   m.publication_name, m.slot_name, m.copy_data);
            WHEN 'fence' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := $q$SELECT driftmirror_node.fence_set('mirror')$q$;
            END CASE;
            UPDATE driftmirror.mirror SET pending_action = action, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    -- syncing / mirroring: read both sides once per step, each with the
    -- same latency probe
    IF m.primary_checked_at IS NULL OR m.primary_checked_at < p_step_started THEN
        action := 'status_primary'; conninfo := m.primary_endpoint; label := plabel;
        sql := driftmirror._mirror_primary_status_sql(m);
        probe_sql := driftmirror._mirror_probe_sql(m);
        RETURN NEXT;
        RETURN;
    END IF;
    IF m.mirror_checked_at IS NULL OR m.mirror_checked_at < p_step_started THEN
        action := 'status_mirror'; conninfo := m.mirror_endpoint; label := mlabel;
        sql := driftmirror._mirror_mirror_status_sql(m);
        probe_sql := driftmirror._mirror_probe_sql(m);
        RETURN NEXT;
        RETURN;
    END IF;

    -- two-way: the way back is made once the initial copy is done, so that
    -- copied rows are never decoded on the mirror
    IF m.state = 'syncing' AND m.two_way AND m.tables_ready = m.tables_total THEN
        action := CASE m.step
                  WHEN 'subscription' THEN 'rev_publication'
                  WHEN 'rev_publication' THEN 'rev_slot'
                  WHEN 'rev_slot' THEN 'rev_subscription'
                  END;
        IF action IS NOT NULL THEN
            CASE action
            WHEN 'rev_publication' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_pub_sql(m.rev_publication_name);
            WHEN 'rev_slot' THEN
                conninfo := m.mirror_endpoint; label := mlabel;
                sql := driftmirror._mirror_slot_sql(m.rev_slot_name);
            WHEN 'rev_subscription' THEN
                conninfo := m.primary_endpoint; label := plabel;
                sql := driftmirror._mirror_sub_sql(m.rev_subscription_name, m.mirror_endpoint,
                                                   m.rev_publication_name, m.rev_slot_name, false);
            END CASE;
            UPDATE driftmirror.mirror SET pending_action = action, pending_since = clock_timestamp()
             WHERE id = m.id;
            RETURN NEXT;
        END IF;
    END IF;
END
$$;

-- _mirror_store_metrics: record mirror figures as metrics of the primary
-- resource in the metric store (55_metrics.sql), through the collectors'
-- own path (_store_samples), in the caller's transaction: the one that
-- records the mirror's state.  p_values: {"metric name": number, ...};
-- nulls and non-finite values are skipped.  Does nothing when the metric
-- store is absent.
-- _mirror_json_float8: a JSON number as float8, NULL for anything else and
-- for numbers beyond a double (an actuator answering 1e400 must not make
-- the recording of its mirror fail: a plain ::float8 cast raises)
CREATE FUNCTION driftmirror._mirror_json_float8(p_value jsonb)
RETURNS float8
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(p_value) = 'number'
                     AND abs((p_value #>> '{}')::numeric) <= 1e300
                THEN (p_value #>> '{}')::float8 END
$$;

CREATE FUNCTION driftmirror._mirror_store_metrics(p_resource_id bigint, p_values jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts   timestamptz[];
    rids bigint[];
    mids smallint[];
    vals float8[];
BEGIN
    IF to_regprocedure('driftmirror._store_samples(timestamp with time zone[], bigint[], smallint[], double precision[])') IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(clock_timestamp()), array_agg(p_resource_id), array_agg(d.id),
           array_agg(driftmirror._mirror_json_float8(v.value))
      INTO ts, rids, mids, vals
      FROM jsonb_each(p_values) v
      JOIN driftmirror.metric_def d ON d.name = v.key
     WHERE driftmirror._mirror_json_float8(v.value) IS NOT NULL;
    IF ts IS NOT NULL THEN
        PERFORM driftmirror._store_samples(ts, rids, mids, vals);
    END IF;
END
$$;

-- _mirror_latency: the latency of a mirror against its primary over the
-- last p_window: the median of each node's samples (metrics
-- mirror.primary_latency_ms and mirror.mirror_latency_ms of the primary
-- resource, taken since latency_since), and their ratio mirror/primary with
-- both medians floored at 1 ms, so that sub-millisecond noise cannot make a
-- large ratio (two nodes both under 1 ms have ratio 1).  ratio is NULL
-- while either node has no sample in the window.  For auto-promotion (over
-- auto_promote_window) and any other gate that compares the two nodes.
CREATE FUNCTION driftmirror._mirror_latency(p_mirror_id bigint, p_window interval)
RETURNS TABLE (primary_ms double precision, mirror_ms double precision, ratio double precision,
               primary_samples integer, mirror_samples integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    floor_ms constant double precision := 1.0;
    rid   bigint;
    since timestamptz;
    pid   smallint := (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = 'mirror.primary_latency_ms');
    mid   smallint := (SELECT d.id FROM driftmirror.metric_def d WHERE d.name = 'mirror.mirror_latency_ms');
BEGIN
    SELECT m.resource_id, greatest(m.latency_since, clock_timestamp() - p_window)
      INTO rid, since
      FROM driftmirror.mirror m WHERE m.id = p_mirror_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x.value) FILTER (WHERE x.metric_id = pid),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY x.value) FILTER (WHERE x.metric_id = mid),
           count(*) FILTER (WHERE x.metric_id = pid),
           count(*) FILTER (WHERE x.metric_id = mid)
      INTO primary_ms, mirror_ms, primary_samples, mirror_samples
      FROM driftmirror.metric x
     WHERE x.resource_id = rid AND x.metric_id IN (pid, mid) AND x.ts >= since;
    IF primary_ms IS NOT NULL AND mirror_ms IS NOT NULL THEN
        ratio := greatest(mirror_ms, floor_ms) / greatest(primary_ms, floor_ms);
    END IF;
    RETURN NEXT;
END
$$;

-- _mirror_record_latency: record a node's latency sample (p_latency_ms, from
-- status_primary or status_mirror; NULL when none was taken) in the mirror
-- row and as a metric, a failed probe in latency_error ("primary: ..." or
-- "mirror: ...", until that node gives a sample), and, after the mirror's
-- read (the second of a step), refresh the ratio the row shows (over the
-- group's auto_promote_window).  A sample whose read began before
-- latency_since (p_read_started: an endpoint changed meanwhile, as a
-- promotion's flip does) may describe the other node and is dropped.
-- Called by _mirror_done after _mirror_record_status, in the same
-- transaction.
CREATE FUNCTION driftmirror._mirror_record_latency(p_mirror_id bigint, p_action text,
                                                   p_latency_ms double precision, p_probe_error text,
                                                   p_read_started timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m    driftmirror.mirror;
    side text := CASE p_action WHEN 'status_primary' THEN 'primary' ELSE 'mirror' END;
    win  interval;
    l    record;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id;
    IF NOT FOUND OR m.kind <> 'postgres' OR p_read_started < m.latency_since THEN
        RETURN;
    END IF;
    IF p_latency_ms >= 0 AND p_latency_ms < 'Infinity'::float8 THEN
        UPDATE driftmirror.mirror
           SET primary_latency_ms = CASE WHEN side = 'primary' THEN p_latency_ms ELSE primary_latency_ms END,
               mirror_latency_ms = CASE WHEN side = 'mirror' THEN p_latency_ms ELSE mirror_latency_ms END,
               latency_error = CASE WHEN starts_with(latency_error, side || ':') THEN NULL ELSE latency_error END
         WHERE id = m.id;
        PERFORM driftmirror._mirror_store_metrics(m.resource_id,
            jsonb_build_object(format('mirror.%s_latency_ms', side), p_latency_ms));
    ELSIF p_probe_error IS NOT NULL THEN
        UPDATE driftmirror.mirror
           SET latency_error = format('%s: %s', side, left(p_probe_error, 500))
         WHERE id = m.id;
    END IF;
    IF side = 'primary' AND m.latency_ratio IS NOT NULL THEN
        RETURN;
    END IF;
    win := driftmirror._opt_interval(driftmirror._effective_options('group',
               (SELECT g.options FROM driftmirror.resource_group g WHERE g.id = m.group_id))
           -> 'auto_promote_window');
    SELECT * INTO l FROM driftmirror._mirror_latency(m.id, win);
    UPDATE driftmirror.mirror
       SET latency_ratio = l.ratio,
           primary_latency_median_ms = l.primary_ms,
           mirror_latency_median_ms = l.mirror_ms,
           latency_samples = least(l.primary_samples, l.mirror_samples)
     WHERE id = m.id;
END
$$;

-- _mirror_latency_reset: BEFORE UPDATE trigger on mirror: when an endpoint
-- changes (a promotion swaps them), earlier latency samples describe other
-- nodes: start afresh
CREATE FUNCTION driftmirror._mirror_latency_reset()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.latency_since := clock_timestamp();
    NEW.primary_latency_ms := NULL;
    NEW.mirror_latency_ms := NULL;
    NEW.latency_ratio := NULL;
    NEW.primary_latency_median_ms := NULL;
    NEW.mirror_latency_median_ms := NULL;
    NEW.latency_samples := NULL;
    NEW.latency_error := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER mirror_latency_reset BEFORE UPDATE OF primary_endpoint, mirror_endpoint
    ON driftmirror.mirror
    FOR EACH ROW
    WHEN (OLD.primary_endpoint IS DISTINCT FROM NEW.primary_endpoint
          OR OLD.mirror_endpoint IS DISTINCT FROM NEW.mirror_endpoint)
    EXECUTE FUNCTION driftmirror._mirror_latency_reset();

-- _mirror_record_status: store what status_primary / status_mirror read
CREATE FUNCTION driftmirror._mirror_record_status(m driftmirror.mirror, p_action text, r jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total   integer;
    ready   integer;
    lagsec  double precision;
    probe   pg_lsn := m.lag_probe_lsn;
    probe_at timestamptz := m.lag_probe_at;
    errs    bigint;
    new_conflicts bigint := 0;
BEGIN
    IF p_action = 'status_primary' THEN
        IF NOT (r ->> 'slot_exists')::boolean THEN
            UPDATE driftmirror.mirror
               SET primary_checked_at = clock_timestamp(), lag_bytes = NULL, lag_seconds = NULL,
                   last_error = format('replication slot "%s" is missing on the primary', m.slot_name),
                   last_error_sqlstate = '55000', last_error_at = clock_timestamp()
             WHERE id = m.id;
            RETURN;
        END IF;
        -- lag in seconds: age of the oldest primary position (sampled once
        -- per step) the mirror has not confirmed yet; 0 once it has
        -- confirmed the previous sample (resolution: the group interval).
        -- A sample ahead of the primary's current position was taken on
        -- the other node (a status read that overlapped a promotion's flip):
        -- it would never be confirmed here, so sampling starts again.
        IF probe IS NOT NULL AND (r ->> 'now_lsn')::pg_lsn < probe THEN
            probe := NULL;
        END IF;
        IF probe IS NULL OR (r ->> 'confirmed_lsn')::pg_lsn >= probe THEN
            lagsec := CASE WHEN probe IS NULL THEN NULL ELSE 0 END;
            probe := (r ->> 'now_lsn')::pg_lsn;
            probe_at := clock_timestamp();
        ELSE
            lagsec := extract(epoch FROM clock_timestamp() - probe_at);
        END IF;
        errs := coalesce((r ->> 'rev_apply_errors')::bigint, 0) + coalesce((r ->> 'rev_sync_errors')::bigint, 0);
        IF errs > m.rev_apply_error_count + m.rev_sync_error_count THEN
            new_conflicts := errs - (m.rev_apply_error_count + m.rev_sync_error_count);
        END IF;
        UPDATE driftmirror.mirror
           SET primary_checked_at = clock_timestamp(),
               primary_fence = coalesce(r ->> 'fence', 'none'),
               slot_active = (r ->> 'slot_active')::boolean,
               lag_bytes = greatest((r ->> 'lag_bytes')::bigint, 0),
               lag_seconds = lagsec,
               lag_probe_lsn = probe,
               lag_probe_at = probe_at,
               rev_apply_error_count = coalesce((r ->> 'rev_apply_errors')::bigint, 0),
               rev_sync_error_count = coalesce((r ->> 'rev_sync_errors')::bigint, 0),
               conflicts = conflicts + new_conflicts,
               last_conflict_at = CASE WHEN new_conflicts > 0 THEN clock_timestamp() ELSE last_conflict_at END
         WHERE id = m.id;
        INSERT INTO driftmirror.mirror_sequence AS q (mirror_id, sequence_name, last_value, collected_at)
        SELECT m.id, s.key, (s.value #>> '{}')::bigint, clock_timestamp()
          FROM jsonb_each(r -> 'sequences') s
        ON CONFLICT (mirror_id, sequence_name) DO UPDATE
           SET last_value = excluded.last_value, collected_at = excluded.collected_at;
        DELETE FROM driftmirror.mirror_sequence q
         WHERE q.mirror_id = m.id AND NOT (r -> 'sequences') ? q.sequence_name;
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'mirror.lag_bytes', greatest((r ->> 'lag_bytes')::bigint, 0),
            'mirror.lag_seconds', lagsec,
            'mirror.rev_apply_errors', CASE WHEN m.two_way
                                            THEN coalesce((r ->> 'rev_apply_errors')::bigint, 0) END,
            'mirror.primary_xacts', r -> 'xacts', 'mirror.primary_rollbacks', r -> 'rollbacks'));
        IF new_conflicts > 0 THEN
            PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_conflict',
                format('%s new apply error(s) on the primary''s subscription %s (changes from the mirror); see the primary''s server log',
                       new_conflicts, m.rev_subscription_name),
                jsonb_build_object('apply_errors', r -> 'rev_apply_errors', 'sync_errors', r -> 'rev_sync_errors'),
                'conflict');
        END IF;
        RETURN;
    END IF;

    -- status_mirror
    IF NOT (r ->> 'sub_exists')::boolean THEN
        UPDATE driftmirror.mirror
           SET mirror_checked_at = clock_timestamp(),
               last_error = format('subscription "%s" is missing on the mirror', m.subscription_name),
               last_error_sqlstate = '55000', last_error_at = clock_timestamp()
         WHERE id = m.id;
        RETURN;
    END IF;
    SELECT count(*), count(*) FILTER (WHERE value #>> '{}' = 'ready')
      INTO total, ready FROM jsonb_each(r -> 'tables');
    errs := coalesce((r ->> 'apply_errors')::bigint, 0) + coalesce((r ->> 'sync_errors')::bigint, 0);
    IF errs > m.apply_error_count + m.sync_error_count THEN
        new_conflicts := errs - (m.apply_error_count + m.sync_error_count);
    END IF;
    UPDATE driftmirror.mirror
       SET mirror_checked_at = clock_timestamp(),
           mirror_fence = coalesce(r ->> 'fence', 'none'),
           tables_total = total, tables_ready = ready, tables = r -> 'tables',
           apply_error_count = coalesce((r ->> 'apply_errors')::bigint, 0),
           sync_error_count = coalesce((r ->> 'sync_errors')::bigint, 0),
           conflicts = conflicts + new_conflicts,
           last_conflict_at = CASE WHEN new_conflicts > 0 THEN clock_timestamp() ELSE last_conflict_at END,
           last_error = NULL, last_error_detail = NULL, last_error_sqlstate = NULL
     WHERE id = m.id;
    PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
        'mirror.apply_errors', coalesce((r ->> 'apply_errors')::bigint, 0),
        'mirror.mirror_xacts', r -> 'xacts', 'mirror.mirror_rollbacks', r -> 'rollbacks'));
    IF new_conflicts > 0 THEN
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_conflict',
            format('%s new apply error(s) on the mirror''s subscription %s; see the mirror''s server log',
                   new_conflicts, m.subscription_name),
            jsonb_build_object('apply_errors', r -> 'apply_errors', 'sync_errors', r -> 'sync_errors'),
            'conflict');
    END IF;

    IF m.state = 'syncing' THEN
        IF ready = total AND (NOT m.two_way OR m.step = 'rev_subscription') THEN
            PERFORM driftmirror._mirror_set_state(m, 'mirroring',
                format('initial copy of %s table(s) done; streaming changes', total));
        ELSE
            UPDATE driftmirror.mirror
               SET state_reason = format('initial copy: %s of %s table(s) ready', ready, total)
             WHERE id = m.id;
        END IF;
    ELSIF m.state = 'mirroring' THEN
        UPDATE driftmirror.mirror
           SET state_reason = CASE
                   WHEN NOT (r ->> 'sub_enabled')::boolean THEN 'the subscription on the mirror is disabled'
                   WHEN NOT (r ->> 'worker_running')::boolean OR NOT coalesce(m.slot_active, true)
                       THEN 'the mirror''s apply worker is not connected to the primary'
                   WHEN errs > 0 THEN format('streaming changes; %s apply error(s) so far', errs)
                   ELSE 'streaming changes' END
         WHERE id = m.id;
    END IF;
END
$$;

-- _mirror_http_done: the outcome of an HTTP actuator request (see the
-- contract in docs/mirrors.md, "HTTP actuator contract").  p_ok: an HTTP
-- answer arrived (p_status, p_body); otherwise p_error / p_detail say why
-- not.  A failure counts one attempt and backs the mirror off (2^(n-1)
-- seconds, at most max_backoff); while the mirror is not made yet
-- (creating, provisioning), max_attempts failures in a row mark it failed.
-- An actuator that no longer knows the mirror (404 or 410 to a status poll)
-- is asked to create it again under a new idempotency key (generation + 1).
CREATE FUNCTION driftmirror._mirror_http_done(m driftmirror.mirror, p_action text, p_ok boolean,
                                              p_status integer, p_body text,
                                              p_error text, p_detail text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    eff     jsonb := driftmirror._effective_options('mirror', m.options);
    maxa    integer := (eff ->> 'max_attempts')::integer;
    what    text := CASE p_action WHEN 'actuator_create' THEN 'POST /mirrors'
                                  ELSE format('GET /mirrors/%s', m.actuator_name) END;
    j       jsonb;
    st      text;
    err     text;
    errdet  text;
    sqlst   text := '58000';
    lost    boolean := false;
    n       integer;
    det     text;
BEGIN
    -- a status answer that overlapped a promotion of the mirror describes
    -- the mirror as it was before the switch: dropped, the next step asks
    -- again
    IF p_action = 'actuator_status' AND m.pending_since IS NOT NULL
       AND EXISTS (SELECT FROM driftmirror.promotion p
                    WHERE p.mirror_id = m.id
                      AND (p.finished_at IS NULL OR p.finished_at >= m.pending_since)) THEN
        UPDATE driftmirror.mirror SET pending_since = NULL WHERE id = m.id;
        RETURN;
    END IF;
    IF NOT p_ok THEN
        err := p_error;
        errdet := p_detail;
        sqlst := '08000';
    ELSIF p_action = 'actuator_status' AND p_status IN (404, 410) THEN
        lost := true;
        err := format('the actuator does not know mirror %s (HTTP %s to %s); creating it again',
                      m.actuator_name, p_status, what);
    ELSIF p_action = 'actuator_create' AND p_status = 409 THEN
        st := 'exists';
    ELSIF p_status NOT IN (200, 201, 202) THEN
        err := format('the actuator answered HTTP %s to %s', p_status, what);
        errdet := left(p_body, 500);
    ELSE
        BEGIN
            j := p_body::jsonb;
        EXCEPTION WHEN data_exception THEN
            j := NULL;
        END;
        IF jsonb_typeof(j) = 'object' AND jsonb_typeof(j -> 'state') = 'string' THEN
            st := j ->> 'state';
        END IF;
        IF st IS NULL OR st NOT IN ('creating', 'ready', 'failed') THEN
            st := NULL;
            err := format('the actuator''s answer to %s (HTTP %s) is not a JSON object with "state": "creating", "ready" or "failed"',
                          what, p_status);
            errdet := left(p_body, 500);
        END IF;
    END IF;

    IF err IS NOT NULL THEN
        -- a mirror lost after it was made starts counting afresh
        n := CASE WHEN lost AND m.state = 'mirroring' THEN 1 ELSE m.attempts + 1 END;
        UPDATE driftmirror.mirror
           SET attempts = n,
               retry_at = CASE WHEN lost THEN NULL
                               ELSE clock_timestamp()
                                    + least(make_interval(secs => power(2, least(n - 1, 20))),
                                            driftmirror._opt_interval(eff -> 'max_backoff')) END,
               mirror_checked_at = CASE WHEN p_action = 'actuator_status' THEN clock_timestamp()
                                        ELSE mirror_checked_at END,
               last_error = err, last_error_detail = errdet, last_error_sqlstate = sqlst,
               last_error_at = clock_timestamp()
         WHERE id = m.id;
        IF m.state IN ('creating', 'provisioning') AND n >= maxa THEN
            PERFORM driftmirror._mirror_set_state(m, 'failed',
                format('%s failed %s time(s) in a row: %s', what, n, err));
            RETURN;
        END IF;
        IF lost THEN
            UPDATE driftmirror.mirror
               SET actuator_generation = actuator_generation + 1, step = 'start',
                   actuator_state = NULL
             WHERE id = m.id;
            PERFORM driftmirror._mirror_set_state(m, 'creating', err);
        ELSIF m.state = 'mirroring' THEN
            UPDATE driftmirror.mirror
               SET state_reason = format('the actuator could not be asked for the mirror''s state (%s failure(s) in a row): %s', n, err)
             WHERE id = m.id;
        ELSE
            UPDATE driftmirror.mirror
               SET state_reason = format('%s failed (attempt %s of %s), will retry: %s', what, n, maxa, err)
             WHERE id = m.id;
        END IF;
        RETURN;
    END IF;

    -- an answer of the contract
    det := CASE WHEN j ? 'detail' THEN left(CASE jsonb_typeof(j -> 'detail') WHEN 'string' THEN j ->> 'detail'
                                                  ELSE (j -> 'detail')::text END, 1000) END;
    UPDATE driftmirror.mirror
       SET step = CASE WHEN p_action = 'actuator_create' THEN 'actuator_create' ELSE step END,
           pending_action = NULL, pending_since = NULL, attempts = 0, retry_at = NULL,
           mirror_checked_at = clock_timestamp(),
           actuator_state = coalesce(nullif(st, 'exists'), actuator_state),
           actuator_detail = CASE WHEN j IS NOT NULL THEN det ELSE actuator_detail END,
           mirror_endpoint = CASE WHEN jsonb_typeof(j -> 'endpoint') = 'string'
                                  THEN left(j ->> 'endpoint', 1000) ELSE mirror_endpoint END,
           lag_seconds = coalesce(driftmirror._mirror_json_float8(j -> 'lag_seconds'), lag_seconds),
           lag_bytes = CASE WHEN jsonb_typeof(j -> 'lag_bytes') = 'number'
                                 AND (j ->> 'lag_bytes')::numeric BETWEEN 0 AND 1e18
                            THEN (j ->> 'lag_bytes')::numeric::bigint ELSE lag_bytes END,
           last_error = CASE WHEN st = 'failed' THEN 'the actuator reports that the mirror failed' END,
           last_error_detail = CASE WHEN st = 'failed' THEN det END,
           last_error_sqlstate = CASE WHEN st = 'failed' THEN '58000' END,
           last_error_at = CASE WHEN st = 'failed' THEN clock_timestamp() ELSE last_error_at END
     WHERE id = m.id;
    IF p_action = 'actuator_create' THEN
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_step',
            format('the actuator accepted the mirror %s (%s)', m.actuator_name,
                   CASE st WHEN 'exists' THEN 'it exists already' ELSE st END),
            jsonb_build_object('step', p_action, 'status', p_status, 'generation', m.actuator_generation));
    END IF;
    IF j IS NOT NULL AND (j ? 'lag_seconds' OR j ? 'lag_bytes') THEN
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'mirror.lag_seconds', j -> 'lag_seconds', 'mirror.lag_bytes', j -> 'lag_bytes'));
    END IF;

    CASE st
    WHEN 'failed' THEN
        PERFORM driftmirror._mirror_set_state(m, 'failed', 'the actuator reports that the mirror failed');
    WHEN 'ready' THEN
        PERFORM driftmirror._mirror_set_state(m, 'mirroring', 'the actuator reports the mirror ready');
    ELSE                        -- creating, exists
        PERFORM driftmirror._mirror_set_state(m, 'provisioning',
            CASE st WHEN 'exists' THEN 'the actuator has the mirror already; waiting until it is ready'
                    ELSE 'the actuator is creating the mirror' END);
    END CASE;
END
$$;

-- _mirror_done: record the outcome of the action _mirror_next returned
-- (p_status: the HTTP status of an actuator's answer, p_result its body;
-- status reads: p_latency_ms the node's latency sample, p_probe_error why
-- the probe gave none, p_read_started when the read began)
CREATE FUNCTION driftmirror._mirror_done(p_mirror_id bigint, p_action text, p_ok boolean,
                                         p_result text, p_sqlstate text, p_error text,
                                         p_detail text DEFAULT NULL, p_status integer DEFAULT NULL,
                                         p_latency_ms double precision DEFAULT NULL,
                                         p_probe_error text DEFAULT NULL,
                                         p_read_started timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m   driftmirror.mirror;
    maxa integer;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;                 -- dropped meanwhile: the cleanup queue has it
    END IF;

    IF p_action IN ('actuator_create', 'actuator_status') THEN
        PERFORM driftmirror._mirror_http_done(m, p_action, p_ok, p_status, p_result, p_error, p_detail);
        RETURN;
    END IF;

    IF p_action IN ('status_primary', 'status_mirror') THEN
        IF p_ok THEN
            PERFORM driftmirror._mirror_record_status(m, p_action, p_result::jsonb);
            PERFORM driftmirror._mirror_record_latency(m.id, p_action, p_latency_ms, p_probe_error,
                                                       p_read_started);
        ELSE
            UPDATE driftmirror.mirror
               SET primary_checked_at = CASE WHEN p_action = 'status_primary' THEN clock_timestamp() ELSE primary_checked_at END,
                   mirror_checked_at = CASE WHEN p_action = 'status_mirror' THEN clock_timestamp() ELSE mirror_checked_at END,
                   last_error = p_error, last_error_detail = p_detail,
                   last_error_sqlstate = p_sqlstate, last_error_at = clock_timestamp()
             WHERE id = m.id;
        END IF;
        RETURN;
    END IF;

    IF p_ok THEN
        UPDATE driftmirror.mirror
           SET step = p_action, pending_action = NULL, pending_since = NULL, attempts = 0,
               last_error = NULL, last_error_detail = NULL, last_error_sqlstate = NULL
         WHERE id = m.id;
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_step',
                                        format('created %s', p_action),
                                        jsonb_build_object('step', p_action));
        RETURN;
    END IF;

    maxa := (driftmirror._effective_options('mirror', m.options) ->> 'max_attempts')::integer;
    UPDATE driftmirror.mirror
       SET attempts = attempts + 1, last_error = p_error, last_error_detail = p_detail,
           last_error_sqlstate = p_sqlstate, last_error_at = clock_timestamp()
     WHERE id = m.id;
    IF m.attempts + 1 >= maxa THEN
        PERFORM driftmirror._mirror_set_state(m, 'failed',
            format('step %s failed %s time(s): %s', p_action, m.attempts + 1, p_error));
    ELSE
        UPDATE driftmirror.mirror
           SET state_reason = format('step %s failed (attempt %s of %s), will retry: %s',
                                     p_action, m.attempts + 1, maxa, p_error)
         WHERE id = m.id;
    END IF;
END
$$;

-- ---- cleanup queue ----

-- _mirror_enqueue_cleanup: BEFORE DELETE trigger on mirror: queue the drop
-- of every object the mirror may have created, on every node
CREATE FUNCTION driftmirror._mirror_enqueue_cleanup()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror := OLD;
BEGIN
    IF m.kind = 'postgres' THEN
        INSERT INTO driftmirror.mirror_cleanup
            (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
        VALUES (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                'subscription', m.subscription_name, 1),
               (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                'slot', m.slot_name, 2),
               (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                'publication', m.publication_name, 3);
        IF m.two_way THEN
            INSERT INTO driftmirror.mirror_cleanup
                (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
            VALUES (m.group_name, m.resource_name, m.id, 'primary', m.primary_endpoint,
                    'subscription', m.rev_subscription_name, 1),
                   (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'slot', m.rev_slot_name, 2),
                   (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'publication', m.rev_publication_name, 3);
        END IF;
        IF m.fence THEN
            INSERT INTO driftmirror.mirror_cleanup
                (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority)
            VALUES (m.group_name, m.resource_name, m.id, 'mirror', m.mirror_endpoint,
                    'fence', NULL, 4);
        END IF;
    ELSIF m.actuator_contacted THEN
        -- an HTTP actuator was asked to create it: ask it to delete it
        INSERT INTO driftmirror.mirror_cleanup
            (group_name, resource_name, mirror_id, node, endpoint, what, object_name, priority,
             idempotency_key, token_file, timeout_ms)
        VALUES (m.group_name, m.resource_name, m.id, 'actuator', m.primary_endpoint,
                'actuator_mirror', m.actuator_name, 1, format('dm-%s-drop', m.actuator_key),
                CASE WHEN EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = m.resource_id)
                     THEN (SELECT r.options ->> 'bearer_token_file' FROM driftmirror.resource r
                            WHERE r.id = m.resource_id)
                     ELSE m.token_file END,
                (extract(epoch FROM driftmirror._opt_interval(
                    driftmirror._effective_options('mirror', m.options) -> 'actuator_timeout')) * 1000)::integer);
    END IF;
    PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_dropped',
        CASE WHEN m.kind = 'postgres' THEN 'mirror removed; dropping its replication objects on every node'
             WHEN m.actuator_contacted THEN 'mirror removed; asking the actuator to delete it'
             ELSE 'mirror removed before the actuator was asked to create it' END,
        jsonb_build_object('state', m.state, 'two_way', m.two_way));
    RETURN OLD;
END
$$;

CREATE TRIGGER mirror_cleanup BEFORE DELETE ON driftmirror.mirror
    FOR EACH ROW EXECUTE FUNCTION driftmirror._mirror_enqueue_cleanup();

-- _cleanup_sql: the idempotent remote statement of one cleanup row
CREATE FUNCTION driftmirror._cleanup_sql(c driftmirror.mirror_cleanup)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE c.what
    WHEN 'subscription' THEN format($f$DO $dm$ BEGIN
IF EXISTS (SELECT FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
            WHERE s.subname OPERATOR(pg_catalog.=) %L AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) THEN
  ALTER SUBSCRIPTION %I DISABLE;
  ALTER SUBSCRIPTION %I SET (slot_name = NONE);
  DROP SUBSCRIPTION %I;
END IF; END $dm$ $f$, c.object_name, c.object_name, c.object_name, c.object_name)
    WHEN 'slot' THEN format($f$DO $dm$ DECLARE p integer; BEGIN
FOR i IN 1..50 LOOP
  SELECT active_pid INTO p FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %L;
  EXIT WHEN p IS NULL;
  PERFORM pg_catalog.pg_terminate_backend(p);
  PERFORM pg_catalog.pg_sleep(0.1);
END LOOP;
IF EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %L) THEN
  PERFORM pg_catalog.pg_drop_replication_slot(%L);
END IF; END $dm$ $f$, c.object_name, c.object_name, c.object_name)
    WHEN 'publication' THEN format('DROP PUBLICATION IF EXISTS %I', c.object_name)
    WHEN 'fence' THEN $f$SELECT driftmirror_node.fence_clear()$f$
    END                         -- actuator_mirror: an HTTP DELETE, no SQL
$$;

-- _cleanup_due: cleanups whose next attempt is due, in dependency order
-- (subscriptions before the slots they use, publications last).  A
-- postgres row has conninfo and sql; an actuator row the http_* columns.
CREATE FUNCTION driftmirror._cleanup_due()
RETURNS TABLE (id bigint, conninfo text, label text, sql text,
               http_method text, http_url text, http_body text, http_key text,
               http_token_file text, http_timeout_ms integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id,
           CASE WHEN c.what <> 'actuator_mirror' THEN c.endpoint END,
           format('%s/%s %s', c.group_name, c.resource_name, c.node),
           driftmirror._cleanup_sql(c),
           CASE WHEN c.what = 'actuator_mirror' THEN 'DELETE' END,
           CASE WHEN c.what = 'actuator_mirror'
                THEN rtrim(c.endpoint, '/') || '/mirrors/' || c.object_name END,
           NULL::text,
           c.idempotency_key, c.token_file, c.timeout_ms
      FROM driftmirror.mirror_cleanup c
     WHERE c.next_attempt_at <= clock_timestamp()
     ORDER BY c.priority, c.id
     LIMIT 100
$$;

-- _cleanup_done: a cleanup succeeded (row removed) or failed (back-off).
-- For an actuator row p_ok means an HTTP answer arrived: 2xx, 404 and 410
-- (gone already) are success, anything else a failure.
CREATE FUNCTION driftmirror._cleanup_done(p_id bigint, p_ok boolean, p_sqlstate text, p_error text,
                                          p_detail text DEFAULT NULL, p_status integer DEFAULT NULL,
                                          p_body text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c driftmirror.mirror_cleanup;
BEGIN
    SELECT * INTO c FROM driftmirror.mirror_cleanup x WHERE x.id = p_id;
    IF p_ok AND c.what = 'actuator_mirror'
       AND NOT (p_status BETWEEN 200 AND 299 OR p_status IN (404, 410)) THEN
        p_ok := false;
        p_sqlstate := '58000';
        p_error := format('the actuator answered HTTP %s to DELETE /mirrors/%s', p_status, c.object_name);
        p_detail := left(p_body, 500);
    END IF;
    IF p_ok THEN
        DELETE FROM driftmirror.mirror_cleanup WHERE id = p_id RETURNING * INTO c;
        IF FOUND AND c.attempts > 0 THEN
            PERFORM driftmirror._log_action(c.group_name, c.resource_name, 'mirror_cleanup',
                format('dropped %s %s on the %s after %s failed attempt(s)',
                       c.what, coalesce(c.object_name, ''), c.node, c.attempts));
        END IF;
        RETURN;
    END IF;
    UPDATE driftmirror.mirror_cleanup
       SET attempts = attempts + 1,
           next_attempt_at = clock_timestamp()
                             + least(make_interval(secs => power(2, least(attempts, 6))), interval '60 seconds'),
           last_error = p_error, last_error_detail = p_detail, last_error_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO c;
    IF FOUND AND c.attempts = 1 THEN
        PERFORM driftmirror._log_action(c.group_name, c.resource_name, 'mirror_cleanup',
            format('could not drop %s %s on the %s, will retry: %s',
                   c.what, coalesce(c.object_name, ''), c.node, p_error),
            jsonb_build_object('sqlstate', p_sqlstate), 'pending');
    END IF;
END
$$;

-- ---- the API ----

-- _create_actuator_mirror: dm_create_mirror for kinds cache, app, web and
-- service: checks, then the mirror row (state creating).  The worker makes
-- every request to the actuator; this call makes none.
CREATE FUNCTION driftmirror._create_actuator_mirror(p_group text, p_resource text, p_endpoint text,
                                                    gid bigint, res driftmirror.resource, opts jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k    text;
    mid  bigint;
    base text;
BEGIN
    SELECT min(x) INTO k FROM jsonb_object_keys(opts) x
     WHERE x IN ('two_way', 'fence', 'copy_data', 'publisher_endpoint');
    IF k IS NOT NULL THEN
        RAISE EXCEPTION 'mirror option "%" applies to postgres resources only', k
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Mirrors of cache, app, web and service resources take max_attempts, actuator_timeout, max_backoff and actuator_options.';
    END IF;
    IF res.role <> 'primary' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is a mirror itself', p_resource, p_group
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the mirror's endpoint: asked for, or (NULL) chosen by the actuator
    IF p_endpoint IS NOT NULL THEN
        PERFORM driftmirror._check_endpoint(res.kind, p_endpoint);
        IF p_endpoint = res.endpoint THEN
            RAISE EXCEPTION 'the mirror endpoint is the endpoint of the primary'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    PERFORM driftmirror._group_id(p_group, true);
    IF NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = res.id) THEN
        RAISE EXCEPTION 'resource "%" does not exist in group "%"', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = res.id) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a mirror', p_resource, p_group
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with dm_drop_mirror.';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror_cleanup c
                WHERE c.group_name = p_group AND c.resource_name = p_resource) THEN
        RAISE EXCEPTION 'the previous mirror of resource "%" of group "%" is still being dropped',
                        p_resource, p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until dm_mirror_cleanups shows nothing for it.';
    END IF;

    base := format('dm_%s_%s', gid, res.id);
    INSERT INTO driftmirror.mirror AS m
        (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
         publisher_endpoint, mirror_endpoint, options, two_way, fence, copy_data,
         state_reason, actuator_name, actuator_key, token_file)
    VALUES (gid, res.id, p_group, p_resource, res.kind, res.endpoint, res.endpoint, p_endpoint,
            opts, false, false, false,
            'waiting for the worker to ask the actuator for a mirror',
            base, replace(pg_catalog.gen_random_uuid()::text, '-', ''),
            res.options ->> 'bearer_token_file')
    RETURNING m.id INTO mid;

    UPDATE driftmirror.group_state SET next_step_at = NULL WHERE group_id = gid;
    PERFORM driftmirror._log_action(p_group, p_resource, 'create_mirror', 'dm_create_mirror',
                                    jsonb_build_object('options', opts - 'actuator_options',
                                                       'actuator_options_set', opts ? 'actuator_options',
                                                       'kind', res.kind, 'actuator_name', base));
    RETURN mid;
END
$$;

CREATE FUNCTION driftmirror.dm_create_mirror("group" text, resource text, mirror_endpoint text DEFAULT NULL,
                                             options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    p_endpoint ALIAS FOR $3;
    gid     bigint;
    rid     bigint;
    res     driftmirror.resource;
    opts    jsonb;
    eff     jsonb;
    two_way boolean;
    fence   boolean;
    pub_ep  text;
    probs   text[];
    base    text;
    mid     bigint;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    SELECT * INTO res FROM driftmirror.resource r WHERE r.id = rid;
    opts := driftmirror._validate_options('mirror', options);
    IF res.kind <> 'postgres' THEN
        RETURN driftmirror._create_actuator_mirror(p_group, p_resource, p_endpoint, gid, res, opts);
    END IF;
    IF p_endpoint IS NULL THEN
        RAISE EXCEPTION 'mirror endpoint must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'A postgres mirror needs the connection string of the mirror database.';
    END IF;
    SELECT min(x) INTO base FROM jsonb_object_keys(opts) x
     WHERE x IN ('actuator_timeout', 'max_backoff', 'actuator_options');
    IF base IS NOT NULL THEN
        RAISE EXCEPTION 'mirror option "%" applies to mirrors of cache, app, web and service resources only', base
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    eff := driftmirror._effective_options('mirror', opts);
    two_way := (eff ->> 'two_way')::boolean;
    fence := coalesce((eff ->> 'fence')::boolean, NOT two_way);

    IF res.role <> 'primary' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is a mirror itself', p_resource, p_group
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM driftmirror._check_endpoint('postgres', p_endpoint);
    pub_ep := coalesce(eff ->> 'publisher_endpoint', res.endpoint);
    PERFORM driftmirror._check_endpoint('postgres', pub_ep);
    -- every node this mirror reaches with the servers' credentials
    PERFORM driftmirror._check_endpoint_delegated('primary endpoint', res.endpoint);
    PERFORM driftmirror._check_endpoint_delegated('mirror endpoint', p_endpoint, 'dm_create_mirror');
    PERFORM driftmirror._check_endpoint_delegated('publisher endpoint', pub_ep, 'dm_create_mirror');
    IF p_endpoint = res.endpoint THEN
        RAISE EXCEPTION 'the mirror endpoint is the endpoint of the primary'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = rid) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a mirror', p_resource, p_group
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with dm_drop_mirror.';
    END IF;

    IF EXISTS (SELECT FROM driftmirror.mirror_cleanup c
                WHERE c.group_name = p_group AND c.resource_name = p_resource) THEN
        RAISE EXCEPTION 'the previous mirror of resource "%" of group "%" is still being dropped',
                        p_resource, p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until dm_mirror_cleanups shows nothing for it.';
    END IF;

    -- preflight: read-only queries on both nodes, no lock held meanwhile
    probs := driftmirror._mirror_preflight(res.endpoint, format('%s/%s primary', p_group, p_resource),
                                           p_endpoint, format('%s/%s mirror', p_group, p_resource),
                                           two_way);
    IF cardinality(probs) > 0 THEN
        RAISE EXCEPTION 'cannot mirror resource "%" of group "%": % problem(s) found',
                        p_resource, p_group, cardinality(probs)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = array_to_string(probs, E'\n');
    END IF;

    -- now serialise with other changes to the group and re-check
    PERFORM driftmirror._group_id(p_group, true);
    IF NOT EXISTS (SELECT FROM driftmirror.resource r WHERE r.id = rid) THEN
        RAISE EXCEPTION 'resource "%" does not exist in group "%"', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror m WHERE m.resource_id = rid) THEN
        RAISE EXCEPTION 'resource "%" of group "%" already has a mirror', p_resource, p_group
            USING ERRCODE = 'duplicate_object';
    END IF;
    IF EXISTS (SELECT FROM driftmirror.mirror_cleanup c
                WHERE c.group_name = p_group AND c.resource_name = p_resource) THEN
        RAISE EXCEPTION 'the previous mirror of resource "%" of group "%" is still being dropped',
                        p_resource, p_group
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until dm_mirror_cleanups shows nothing for it.';
    END IF;

    base := format('dm_%s_%s', gid, rid);
    INSERT INTO driftmirror.mirror AS m
        (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
         publisher_endpoint, mirror_endpoint, options, two_way, fence, copy_data,
         state_reason, publication_name, slot_name, subscription_name,
         rev_publication_name, rev_slot_name, rev_subscription_name)
    VALUES (gid, rid, p_group, p_resource, res.kind, res.endpoint, pub_ep, p_endpoint, opts,
            two_way, fence, (eff ->> 'copy_data')::boolean,
            'waiting for the worker to create the replication objects',
            base, base, base,
            CASE WHEN two_way THEN base || '_rev' END,
            CASE WHEN two_way THEN base || '_rev' END,
            CASE WHEN two_way THEN base || '_rev' END)
    RETURNING m.id INTO mid;

    -- run the group's step at the worker's next pass
    UPDATE driftmirror.group_state SET next_step_at = NULL WHERE group_id = gid;
    PERFORM driftmirror._log_action(p_group, p_resource, 'create_mirror', 'dm_create_mirror',
                                    jsonb_build_object('options', opts - 'publisher_endpoint',
                                                       'publisher_endpoint_set', opts ? 'publisher_endpoint',
                                                       'two_way', two_way,
                                                       'fence', fence, 'objects', base));
    RETURN mid;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_create_mirror(text, text, text, jsonb) IS
    'Start mirroring a resource: postgres (both nodes checked; the worker creates the replication objects) or cache/app/web/service (the worker asks the HTTP actuator); see dm_mirror_status';

CREATE FUNCTION driftmirror.dm_drop_mirror("group" text, resource text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    gid bigint;
    rid bigint;
BEGIN
    gid := driftmirror._group_id(p_group, true);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    PERFORM driftmirror._refuse_while_promoting(gid, p_group, rid);
    -- the trigger queues the remote drops; the worker runs them
    DELETE FROM driftmirror.mirror m WHERE m.resource_id = rid;
    IF NOT FOUND THEN
        RAISE NOTICE 'resource "%" of group "%" has no mirror', p_resource, p_group;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_drop_mirror(text, text) IS
    'Drop the mirror of a resource: its subscriptions, slots, publications and fence are removed on every node by the worker (idempotent)';

-- _postgres_mirror: the mirror of a postgres resource; raises
-- undefined_object when it has none, wrong_object_type for other kinds
-- (their mirrors have no sequences or tables to read)
CREATE FUNCTION driftmirror._postgres_mirror(p_resource_id bigint, p_group text, p_resource text)
RETURNS driftmirror.mirror
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror x WHERE x.resource_id = p_resource_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" of group "%" has no mirror', p_resource, p_group
            USING ERRCODE = 'undefined_object';
    END IF;
    IF m.kind <> 'postgres' THEN
        RAISE EXCEPTION 'resource "%" of group "%" is a % resource, not postgres', p_resource, p_group, m.kind
            USING ERRCODE = 'wrong_object_type';
    END IF;
    RETURN m;
END
$$;

-- _check_mirror_delegated: the check of _check_endpoint_delegated
-- (35_resources.sql) on both endpoints of the postgres mirror of a resource,
-- for the calls that use an existing mirror (sequences, verify, promote);
-- nothing for other kinds (their tokens go only to approved URLs) or
-- without a mirror
CREATE FUNCTION driftmirror._check_mirror_delegated(p_resource_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m driftmirror.mirror;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror x WHERE x.resource_id = p_resource_id;
    IF FOUND AND m.kind = 'postgres' THEN
        PERFORM driftmirror._check_endpoint_delegated('primary endpoint', m.primary_endpoint);
        PERFORM driftmirror._check_endpoint_delegated('mirror endpoint', m.mirror_endpoint);
    END IF;
END
$$;

-- dm_sync_sequences: read every sequence of the primary now and set the
-- mirror's sequences to the same values; returns how many were set.  For
-- switchover (after the primary is fenced).  Talks to both nodes from the
-- calling transaction, with driftmirror's timeouts.
CREATE FUNCTION driftmirror.dm_sync_sequences("group" text, resource text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    gid bigint;
    rid bigint;
    m   driftmirror.mirror;
    seqs jsonb;
    setsql text;
    n   integer;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    m := driftmirror._postgres_mirror(rid, p_group, p_resource);
    PERFORM driftmirror._check_mirror_delegated(rid);
    seqs := driftmirror._remote_value(m.primary_endpoint, format('%s/%s primary', p_group, p_resource),
        $q$SELECT COALESCE(pg_catalog.jsonb_object_agg(
               pg_catalog.format('%I.%I', schemaname, sequencename),
               pg_catalog.jsonb_build_array(last_value, last_value IS NOT NULL)), '{}')::text
             FROM pg_catalog.pg_sequences$q$)::jsonb;
    SELECT count(*), string_agg(format('SELECT pg_catalog.setval(%L, %s, %s) FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%L)',
                                       s.key,
                                       coalesce((s.value ->> 0)::bigint, 1),
                                       CASE WHEN (s.value ->> 1)::boolean THEN 'true' ELSE 'false' END,
                                       s.key), '; ')
      INTO n, setsql
      FROM jsonb_each(seqs) s;
    IF n > 0 THEN
        PERFORM driftmirror._remote_value(m.mirror_endpoint, format('%s/%s mirror', p_group, p_resource),
                                          setsql, true);
    END IF;
    INSERT INTO driftmirror.mirror_sequence AS q (mirror_id, sequence_name, last_value, collected_at)
    SELECT m.id, s.key, (s.value ->> 0)::bigint, clock_timestamp() FROM jsonb_each(seqs) s
    ON CONFLICT (mirror_id, sequence_name) DO UPDATE
       SET last_value = excluded.last_value, collected_at = excluded.collected_at;
    PERFORM driftmirror._log_action(p_group, p_resource, 'sync_sequences', 'dm_sync_sequences',
                                    jsonb_build_object('sequences', n));
    RETURN n;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_sync_sequences(text, text) IS
    'Copy the current value of every sequence from the primary to the mirror';

-- dm_mirror_verify: compare every published table of the primary with the
-- mirror: row count and an md5 of the rows (the primary's columns, sorted).
-- This is how updates and deletes that found no row on the receiving side
-- are found: PostgreSQL 15 skips those silently (they are not apply errors).
-- Reads every table on both nodes from the calling transaction: run it when
-- the mirror has caught up and writes are quiet (under writes the two reads
-- see different moments and differ).
CREATE FUNCTION driftmirror.dm_mirror_verify("group" text, resource text)
RETURNS TABLE (table_name text, primary_rows bigint, mirror_rows bigint, matches boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_group ALIAS FOR $1;
    p_resource ALIAS FOR $2;
    gid     bigint;
    rid     bigint;
    m       driftmirror.mirror;
    facts   jsonb;
    q       text;
    pres    jsonb;
    mres    jsonb;
    bad     integer;
    n       integer;
BEGIN
    gid := driftmirror._group_id(p_group);
    rid := driftmirror._resource_id(gid, p_group, p_resource);
    m := driftmirror._postgres_mirror(rid, p_group, p_resource);
    PERFORM driftmirror._check_mirror_delegated(rid);
    facts := driftmirror._remote_value(m.primary_endpoint, format('%s/%s primary', p_group, p_resource),
                                       driftmirror._node_facts_sql())::jsonb;
    -- table names come from the node as format('%I.%I'): accept nothing else
    IF EXISTS (SELECT FROM jsonb_object_keys(facts -> 'columns') k
                WHERE k !~ '^("([^"]|"")+"|[a-z_][a-z0-9_$]*)\.("([^"]|"")+"|[a-z_][a-z0-9_$]*)$') THEN
        RAISE EXCEPTION 'unexpected table name from the primary'
            USING ERRCODE = 'data_exception';
    END IF;
    SELECT 'SELECT (' || coalesce(string_agg(format(
               'pg_catalog.jsonb_build_object(%L, (SELECT pg_catalog.jsonb_build_array(pg_catalog.count(*), '
               'pg_catalog.md5(COALESCE(pg_catalog.string_agg(ROW(%s)::text, E''\n'' ORDER BY ROW(%s)::text), ''''))) FROM %s x))',
               t.key, cl.cols, cl.cols, t.key), ' || ' ORDER BY t.key), '''{}''::jsonb') || ')::text'
      INTO q
      FROM jsonb_each(facts -> 'columns') t
      CROSS JOIN LATERAL (SELECT string_agg('x.' || quote_ident(c.key), ', ' ORDER BY c.key) AS cols
                            FROM jsonb_each(t.value) c) cl;
    pres := driftmirror._remote_value(m.primary_endpoint, format('%s/%s primary', p_group, p_resource), q)::jsonb;
    mres := driftmirror._remote_value(m.mirror_endpoint, format('%s/%s mirror', p_group, p_resource), q)::jsonb;

    SELECT count(*), count(*) FILTER (WHERE pres -> k IS DISTINCT FROM mres -> k)
      INTO n, bad FROM jsonb_object_keys(pres) k;
    PERFORM driftmirror._log_action(p_group, p_resource, 'mirror_verify',
        format('%s of %s table(s) differ between the primary and the mirror', bad, n),
        jsonb_build_object('tables', n, 'differ', bad),
        CASE WHEN bad > 0 THEN 'mismatch' ELSE 'done' END);

    RETURN QUERY
        SELECT k, (pres -> k ->> 0)::bigint, (mres -> k ->> 0)::bigint,
               pres -> k IS NOT DISTINCT FROM mres -> k
          FROM jsonb_object_keys(pres) k
         ORDER BY k;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_mirror_verify(text, text) IS
    'Compare row counts and checksums of every table between a primary and its mirror (heavy: reads every row)';

-- ---- views ----

-- raw error text (libpq, libcurl, the nodes' messages) only for admins;
-- others read labels (25_error_labels.sql): a reason quoting an error is cut
-- where the error starts and ends with the error's label instead
CREATE VIEW driftmirror.dm_mirror_status AS
SELECT m.group_name,
       m.resource_name,
       m.kind,
       m.state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN m.state_reason
            WHEN m.last_error IS NOT NULL AND strpos(m.state_reason, m.last_error) > 0
            THEN replace(m.state_reason, m.last_error, driftmirror._error_label(m.last_error_sqlstate))
            WHEN m.state_reason ~ '(failed|could not|error)'
            THEN split_part(m.state_reason, ': ', 1) || ': ' || driftmirror._error_label(m.last_error_sqlstate)
            ELSE m.state_reason END AS state_reason,
       m.two_way,
       m.fence,
       m.mirror_fence,
       m.primary_fence,
       m.slot_active,
       m.tables_total,
       m.tables_ready,
       CASE WHEN m.tables_total > 0
            THEN round(100.0 * m.tables_ready / m.tables_total, 1) END AS sync_pct,
       m.tables,
       m.lag_bytes,
       m.lag_seconds,
       round(m.primary_latency_ms::numeric, 3) AS primary_latency_ms,
       round(m.mirror_latency_ms::numeric, 3) AS mirror_latency_ms,
       round(m.latency_ratio::numeric, 2) AS latency_ratio,
       round(m.primary_latency_median_ms::numeric, 3) AS primary_latency_median_ms,
       round(m.mirror_latency_median_ms::numeric, 3) AS mirror_latency_median_ms,
       m.latency_samples,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN m.latency_error
            WHEN m.latency_error IS NOT NULL
            THEN split_part(m.latency_error, ':', 1) || ': probe failed' END AS latency_error,
       m.apply_error_count,
       m.sync_error_count,
       m.rev_apply_error_count,
       m.rev_sync_error_count,
       m.conflicts,
       m.last_conflict_at,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN m.last_error
            WHEN m.last_error IS NOT NULL
            -- our own sentences naming a node by its label, not its host
            THEN coalesce(substring(m.last_error from
                              '^(?:(?:could not connect to|no answer from) node "[^"]*"|the actuator reports that the mirror failed)'),
                          'step ' || m.step, 'mirror')
                 || ': ' || driftmirror._error_label(m.last_error_sqlstate) END AS last_error,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.last_error_detail END AS last_error_detail,
       m.last_error_sqlstate,
       m.last_error_at,
       greatest(m.primary_checked_at, m.mirror_checked_at) AS checked_at,
       m.step,
       m.pending_action,
       m.publication_name,
       m.slot_name,
       m.subscription_name,
       m.rev_publication_name,
       m.rev_slot_name,
       m.rev_subscription_name,
       m.attempts,
       m.retry_at AS next_attempt_at,
       m.actuator_name,
       m.actuator_state,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.actuator_detail END AS actuator_detail,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN m.mirror_endpoint END AS mirror_endpoint,
       (SELECT count(*) FROM driftmirror.mirror_sequence q WHERE q.mirror_id = m.id) AS sequences,
       m.created_at,
       m.state_changed_at,
       m.synced_at,
       m.id
  FROM driftmirror.mirror m;
COMMENT ON VIEW driftmirror.dm_mirror_status IS
    'Every mirror: state, initial copy progress, lag in bytes and seconds, latency of both nodes and their ratio, apply errors and conflicts, the HTTP actuator''s answers; endpoint and error text (which may name hosts) only for driftmirror_admin, labels for others';

CREATE VIEW driftmirror.dm_mirror_cleanups AS
SELECT c.group_name, c.resource_name, c.node, c.what, c.object_name, c.attempts,
       c.next_attempt_at,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE') THEN c.last_error
            WHEN c.last_error IS NOT NULL
            THEN format('dropping %s on the %s failed', c.what, c.node) END AS last_error,
       CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN c.last_error_detail END AS last_error_detail,
       c.last_error_at, c.created_at, c.id
  FROM driftmirror.mirror_cleanup c;
COMMENT ON VIEW driftmirror.dm_mirror_cleanups IS
    'Replication objects of dropped mirrors still to be removed from their nodes';

CREATE VIEW driftmirror.dm_mirror_sequences AS
SELECT m.group_name, m.resource_name, q.sequence_name, q.last_value, q.collected_at
  FROM driftmirror.mirror_sequence q
  JOIN driftmirror.mirror m ON m.id = q.mirror_id;
COMMENT ON VIEW driftmirror.dm_mirror_sequences IS
    'Last known value of every sequence of each mirrored primary';
