-- 10_preflight.sql: the mirror preflight checks output_plugin_libraries only
-- on builds that have it (15.19 and later minor releases).
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
