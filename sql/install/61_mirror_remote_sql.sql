-- 61_mirror_remote_sql.sql: the SQL that mirrors run on the nodes: the C
-- entry that runs one statement on a node (_remote_value), what preflight
-- reads of a node, and the generators of the idempotent replication
-- commands, status reads and latency probe that _mirror_next hands to the
-- worker.  None of them writes the catalog.
--
-- The mirror catalog and the worker protocol: 60_mirror_catalog.sql.

-- ---- C helpers (remote_conn.c via mirror.c) ----

-- _remote_value: run one SQL text on a node and return the first column of
-- the first row (NULL if none).  node_session: first create
-- driftmirror_node there if missing and pass the write fence.
CREATE OR REPLACE FUNCTION driftmirror._remote_value(conninfo text, label text, sql text,
                                          node_session boolean DEFAULT false)
RETURNS text
LANGUAGE C
AS 'MODULE_PATHNAME', 'driftmirror_remote_value';

-- ---- names and node-side SQL ----

-- _node_facts_sql: what preflight needs to know about a node, as one jsonb
CREATE OR REPLACE FUNCTION driftmirror._node_facts_sql()
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
CREATE OR REPLACE FUNCTION driftmirror._node_role_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $sql$ SELECT $q$
SELECT pg_catalog.jsonb_build_object('user', rolname, 'superuser', rolsuper,
                                     'replication', rolreplication)::text
  FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user
$q$ $sql$;

-- _split_list: a comma-separated setting as a trimmed array
CREATE OR REPLACE FUNCTION driftmirror._split_list(p_list text)
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
CREATE OR REPLACE FUNCTION driftmirror._mirror_preflight(p_primary text, p_primary_label text,
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
CREATE OR REPLACE FUNCTION driftmirror._mirror_sub_sql(p_name text, p_conninfo text, p_pub text,
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
CREATE OR REPLACE FUNCTION driftmirror._mirror_pub_sql(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($f$DO $dm$ BEGIN
IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname OPERATOR(pg_catalog.=) %L) THEN
  CREATE PUBLICATION %I FOR ALL TABLES;
END IF; END $dm$ $f$, p_name, p_name)
$$;

CREATE OR REPLACE FUNCTION driftmirror._mirror_slot_sql(p_name text)
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
CREATE OR REPLACE FUNCTION driftmirror._mirror_traffic_sql()
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

-- _mirror_mirror_status_sql: what the worker reads on the mirror each step
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
CREATE OR REPLACE FUNCTION driftmirror._mirror_probe_sql(m driftmirror.mirror)
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
