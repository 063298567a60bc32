-- mirror_latency.sql: the latency of a mirror against its primary, and the
-- latency ratio gate of auto-promotion, on a mirror row made by hand.  The
-- worker of this test instance watches another database, so nothing here
-- happens on its own: samples go through the worker's own path
-- (_mirror_done, as src/mirror.c calls it after timing the probe), and the
-- other thresholds of auto-promotion are set by hand.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

-- the option: a number from 1 to 100, default 1.2
SELECT key, type, default_value, min_value, max_value FROM dm_options
 WHERE key = 'auto_promote_max_latency_ratio';
SELECT dm_create_group('lg', '{"auto_promote_max_latency_ratio": 0.5}');
SELECT dm_create_group('lg', '{"auto_promote_max_latency_ratio": 101}');
SELECT dm_create_group('lg', '{"auto_promote_max_latency_ratio": "fast"}');
SELECT count(*) AS groups FROM dm_groups WHERE name = 'lg';
-- null means the default, as for every option
SELECT dm_create_group('lg0', '{"auto_promote_max_latency_ratio": null}') > 0 AS created;
SELECT options FROM resource_group WHERE name = 'lg0';
SELECT dm_drop_group('lg0');

SELECT dm_create_group('lg', '{"interval": "10s", "auto_promote": true, "auto_promote_window": "1 minute",
                               "auto_promote_max_latency_ratio": 2}') > 0 AS created;
SELECT dm_alter_group('lg', '{"auto_promote_max_latency_ratio": 1000}');
SELECT dm_add_resource('lg', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;
INSERT INTO driftmirror.mirror
    (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
     publisher_endpoint, mirror_endpoint, two_way, fence, copy_data,
     publication_name, slot_name, subscription_name, state, step)
SELECT g.id, r.id, 'lg', 'db', 'postgres', r.endpoint, r.endpoint,
       'host=127.0.0.1 port=2 dbname=app', false, false, true,
       'dm_x', 'dm_x', 'dm_x', 'mirroring', 'subscription'
  FROM driftmirror.resource_group g JOIN driftmirror.resource r ON r.group_id = g.id
 WHERE g.name = 'lg';
SELECT id AS mid FROM driftmirror.mirror WHERE group_name = 'lg' \gset

-- no sample yet
SELECT primary_latency_ms, mirror_latency_ms, latency_ratio, latency_samples, latency_error
  FROM dm_mirror_status WHERE group_name = 'lg';

-- the probe: the same text for both status reads; an empty SELECT until the
-- mirror has reported its tables
SELECT action, probe_sql FROM _mirror_next(:mid, now());
UPDATE driftmirror.mirror SET primary_checked_at = clock_timestamp() WHERE id = :mid;
SELECT action, probe_sql FROM _mirror_next(:mid, now() - interval '1 hour');
UPDATE driftmirror.mirror SET primary_checked_at = NULL WHERE id = :mid;
-- then a read of the first table (byte order) that returns no row; names
-- from the node are parsed and quoted again, anything odd is not used
SELECT p AS tables, driftmirror._mirror_probe_sql(m)
  FROM (VALUES ('{"public.orders": "ready", "public.dm_probe": "ready"}'::jsonb),
               ('{"public.orders": "ready", "\"Odd Schema\".\"T\"\"x\"": "copying"}'),
               ('{"app.orders": "ready"}'),
               ('{"orders; DROP TABLE x": "ready"}'),
               ('{"a.b.c": "ready"}'),
               ('{}'), ('[]'), (NULL)) v (p),
       LATERAL (SELECT (jsonb_populate_record(x, jsonb_build_object('tables', v.p))) m
                  FROM driftmirror.mirror x WHERE x.id = :mid) s;
UPDATE driftmirror.mirror SET tables = '{"public.orders": "ready", "public.dm_probe": "ready"}' WHERE id = :mid;
SELECT action, probe_sql FROM _mirror_next(:mid, now());

-- samples: the primary first, then the mirror; the ratio needs both
SELECT _mirror_done(:mid, 'status_primary', true, '{"slot_exists": false}', NULL, NULL, NULL, NULL, 0.4, NULL);
SELECT primary_latency_ms, mirror_latency_ms, latency_ratio, latency_samples
  FROM dm_mirror_status WHERE group_name = 'lg';
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 0.3, NULL);
-- both under the 1 ms floor: ratio 1
SELECT primary_latency_ms, mirror_latency_ms, latency_ratio, primary_latency_median_ms,
       mirror_latency_median_ms, latency_samples
  FROM dm_mirror_status WHERE group_name = 'lg';
-- stored as metrics of the primary resource
SELECT metric, value, unit FROM dm_metrics WHERE group_name = 'lg' AND metric LIKE 'mirror.%latency%'
 ORDER BY ts, metric;
-- no sample: a failed status read, a probe that failed, values that are no latency
SELECT _mirror_done(:mid, 'status_mirror', false, NULL, '08006', 'could not connect to node "lg/db mirror"',
                    NULL, NULL, 99, NULL);
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, NULL,
                    'relation "public.dm_probe" does not exist');
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 'NaN', NULL);
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, -1, NULL);
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 'Infinity', NULL);
SELECT mirror_latency_ms, latency_samples, latency_error FROM dm_mirror_status WHERE group_name = 'lg';
SELECT count(*) AS latency_samples FROM dm_metrics WHERE group_name = 'lg' AND metric LIKE 'mirror.%latency%';

-- the mirror slows down: 5 ms against 0.4 ms is a ratio of 5 (the floor
-- counts 0.4 as 1), once 5 ms is the median of the mirror's samples
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 5, NULL);
SELECT mirror_latency_ms, latency_ratio, mirror_latency_median_ms, latency_error FROM dm_mirror_status WHERE group_name = 'lg';
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 5, NULL);
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 5, NULL);
SELECT mirror_latency_ms, latency_ratio, mirror_latency_median_ms, latency_samples FROM dm_mirror_status WHERE group_name = 'lg';
-- one spike does not move a median
SELECT _mirror_done(:mid, 'status_primary', true, '{"slot_exists": false}', NULL, NULL, NULL, NULL, 900, NULL);
SELECT _mirror_done(:mid, 'status_primary', true, '{"slot_exists": false}', NULL, NULL, NULL, NULL, 0.4, NULL);
SELECT primary_latency_ms, latency_ratio, primary_latency_median_ms FROM dm_mirror_status WHERE group_name = 'lg';
-- samples older than the window do not count
UPDATE driftmirror.mirror SET latency_since = latency_since - interval '1 hour' WHERE id = :mid;
SELECT _store_samples(array_agg(now() - interval '2 minutes' - g * interval '1 second'),
                      array_agg(m.resource_id), array_agg(d.id), array_agg(1000.0::float8))
  FROM driftmirror.mirror m, driftmirror.metric_def d, generate_series(1, 5) g
 WHERE m.id = :mid AND d.name = 'mirror.mirror_latency_ms';
SELECT round(ratio::numeric, 2) AS ratio, round(mirror_ms::numeric, 3) AS mirror_ms, mirror_samples
  FROM _mirror_latency(:mid, interval '1 minute');
SELECT round(ratio::numeric, 2) AS ratio, round(mirror_ms::numeric, 3) AS mirror_ms, mirror_samples
  FROM _mirror_latency(:mid, interval '1 hour');

-- auto-promotion: every other threshold holds (set by hand)
SELECT _set_route(g.id, r.id, 'read', m.mirror_endpoint, 100, 'test: reads shifted')
  FROM resource_group g JOIN resource r ON r.group_id = g.id JOIN mirror m ON m.resource_id = r.id
 WHERE g.name = 'lg';
-- check(): one evaluation (as the worker's step does); since when the
-- thresholds hold is shown as "since ..."
CREATE FUNCTION pg_temp.check() RETURNS TABLE (promote boolean, holding boolean, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    UPDATE driftmirror.mirror
       SET state = 'mirroring', lag_bytes = 0, lag_seconds = 0,
           primary_checked_at = clock_timestamp(), mirror_checked_at = clock_timestamp()
     WHERE group_name = 'lg';
    SELECT string_agg(c.reason, '; ') INTO r
      FROM driftmirror._auto_promote_check((SELECT id FROM driftmirror.resource_group WHERE name = 'lg')) c;
    RETURN QUERY
        SELECT r IS NOT NULL, a.holding_since IS NOT NULL,
               regexp_replace(coalesce(r, a.last_reason), 'since [^(]* \(', 'since ... (')
          FROM driftmirror.dm_auto_promotion a WHERE a.group_name = 'lg';
END
$$;
-- the mirror is slower than the limit allows: no window
SELECT * FROM pg_temp.check();
SELECT group_name, resource_name, holding_since, last_reason FROM dm_auto_promotion;
-- a higher limit lets it through: the window starts
SELECT dm_alter_group('lg', '{"auto_promote_max_latency_ratio": 5}');
SELECT * FROM pg_temp.check();
SELECT dm_alter_group('lg', '{"auto_promote_max_latency_ratio": 4.99}');
SELECT * FROM pg_temp.check();
-- fast again: more fast samples than slow ones in the window
SELECT dm_alter_group('lg', '{"auto_promote_max_latency_ratio": 2}');
SELECT count(_mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 0.5, NULL))
  FROM generate_series(1, 4);
SELECT mirror_latency_ms, latency_ratio, mirror_latency_median_ms FROM dm_mirror_status WHERE group_name = 'lg';
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check();
-- the window has passed (moved back by hand): promote, with the ratio in the reason
UPDATE auto_promote_state SET holding_since = holding_since - interval '2 minutes';
SELECT * FROM pg_temp.check();
SELECT reason, inputs - 'window' - 'holding_since' AS figures FROM dm_actions
 WHERE group_name = 'lg' AND kind = 'auto_promote' ORDER BY id DESC LIMIT 1;

-- an endpoint changes (a promotion swaps them): earlier samples describe
-- other nodes and no longer count
UPDATE driftmirror.mirror SET mirror_endpoint = 'host=127.0.0.1 port=3 dbname=app' WHERE id = :mid;
SELECT primary_latency_ms, mirror_latency_ms, latency_ratio, latency_samples, latency_error
  FROM dm_mirror_status WHERE group_name = 'lg';
SELECT ratio, primary_samples, mirror_samples FROM _mirror_latency(:mid, interval '1 hour');
-- a read that began before the change may have reached the other node: dropped
SELECT _mirror_done(:mid, 'status_mirror', true, '{"sub_exists": false}', NULL, NULL, NULL, NULL, 7, NULL,
                    now() - interval '1 minute');
SELECT mirror_latency_ms, latency_samples FROM dm_mirror_status WHERE group_name = 'lg';
SELECT _set_route(g.id, r.id, 'read', m.mirror_endpoint, 100, 'test: reads shifted')
  FROM resource_group g JOIN resource r ON r.group_id = g.id JOIN mirror m ON m.resource_id = r.id
 WHERE g.name = 'lg';
SELECT * FROM pg_temp.check();
SELECT _mirror_done(:mid, 'status_primary', true, '{"slot_exists": false}', NULL, NULL, NULL, NULL, 0.4, NULL);
SELECT * FROM pg_temp.check();
-- other updates keep the samples
UPDATE driftmirror.mirror SET state_reason = 'x' WHERE id = :mid;
SELECT primary_latency_ms FROM dm_mirror_status WHERE group_name = 'lg';

-- no mirror, no row
SELECT count(*) AS rows FROM _mirror_latency(-1, interval '1 hour');

SELECT dm_drop_group('lg', true);
-- the hand-made mirror's objects exist nowhere: forget their drops
SELECT count(*) AS cleanups FROM (SELECT _cleanup_done(id, true, NULL, NULL)
                                    FROM mirror_cleanup WHERE group_name = 'lg') s;
SELECT count(*) AS groups FROM dm_status WHERE group_name = 'lg';
