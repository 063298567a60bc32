-- mirror_lag_probe.sql: the lag in seconds of a postgres mirror, on a mirror
-- row made by hand, through the worker's own recording path
-- (_mirror_record_status, as src/mirror.c calls it after a status read of
-- the primary).  A lag sample is a position of the primary; one ahead of the
-- primary's current position was taken on the other node (a status read
-- that overlapped a promotion's flip) and would never be confirmed: it is
-- dropped, so lag_seconds does not grow for ever and hold promotions off.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT dm_create_group('lp', '{"interval": "10s"}') > 0 AS created;
SELECT dm_add_resource('lp', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;
INSERT INTO driftmirror.mirror
    (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
     publisher_endpoint, mirror_endpoint, two_way, fence, copy_data,
     publication_name, slot_name, subscription_name, state, step)
SELECT g.id, r.id, 'lp', 'db', 'postgres', r.endpoint, r.endpoint,
       'host=127.0.0.1 port=2 dbname=app', false, false, true,
       'dm_x', 'dm_x', 'dm_x', 'mirroring', 'subscription'
  FROM driftmirror.resource_group g JOIN driftmirror.resource r ON r.group_id = g.id
 WHERE g.name = 'lp';
SELECT id AS mid FROM driftmirror.mirror WHERE group_name = 'lp' \gset

-- read(now_lsn, confirmed_lsn): one status read of the primary
CREATE FUNCTION pg_temp.read(p_now text, p_confirmed text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM driftmirror._mirror_record_status(m, 'status_primary', jsonb_build_object(
        'slot_exists', true, 'slot_active', true, 'fence', 'none', 'lag_bytes', 0,
        'now_lsn', p_now, 'confirmed_lsn', p_confirmed, 'sequences', '{}'::jsonb))
      FROM driftmirror.mirror m WHERE m.id = (SELECT id FROM driftmirror.mirror WHERE group_name = 'lp');
    RETURN (SELECT format('lag_seconds %s, sample %s',
                          CASE WHEN lag_seconds IS NULL THEN 'null'
                               WHEN lag_seconds = 0 THEN '0' ELSE 'measured' END,
                          lag_probe_lsn)
              FROM driftmirror.mirror WHERE group_name = 'lp');
END $$;

-- the first read takes a sample; the next ones measure its age until the
-- mirror confirms it
SELECT pg_temp.read('0/5000000', '0/4000000') AS first_read;
SELECT pg_temp.read('0/6000000', '0/4000000') AS not_confirmed_yet;
SELECT pg_temp.read('0/6100000', '0/6000000') AS confirmed;
-- a sample of the other node (ahead of this primary): dropped, sampling
-- starts again on this primary
SELECT pg_temp.read('0/1000000', '0/0F00000') AS sample_of_the_other_node;
SELECT pg_temp.read('0/1100000', '0/1000000') AS measured_again;

-- the hand-made mirror has no nodes to clean up
DELETE FROM driftmirror.mirror WHERE group_name = 'lp';
SELECT dm_drop_group('lp', force => true);
DELETE FROM driftmirror.mirror_cleanup WHERE group_name = 'lp';
