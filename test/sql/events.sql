-- events: dm_add_event, dm_remove_event
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

SELECT dm_create_group('promo') > 0 AS created;
SELECT dm_add_resource('promo', 'db', 'postgres', 'dbname=promo') > 0 AS added;
SELECT dm_add_event('promo', 'black-friday', '2026-11-27 00:00+00', '2026-11-28 00:00+00',
                    '{"effect": 2.5, "window_before": "2 hours"}') > 0 AS added;
SELECT dm_add_event('promo', 'nightly-batch', '2026-11-28 02:00+00', '2026-11-28 03:00+00',
                    '{"resource": "db"}') > 0 AS added;
SELECT dm_add_event('promo', 'nightly-batch', '2026-11-29 02:00+00', '2026-11-29 03:00+00',
                    '{"resource": "db"}') > 0 AS added;
SELECT group_name, name, starts, ends, options FROM dm_events ORDER BY starts;

SELECT dm_add_event('promo', 'black-friday', '2026-11-27 00:00+00', '2026-11-28 00:00+00');
SELECT dm_add_event('promo', 'backwards', '2026-11-28 00:00+00', '2026-11-27 00:00+00');
SELECT dm_add_event('promo', 'forever', '2026-11-28 00:00+00', 'infinity');
SELECT dm_add_event('promo', 'nulls', NULL, '2026-11-27 00:00+00');
SELECT dm_add_event('promo', 'x', '2026-11-28 00:00+00', '2026-11-28 01:00+00', '{"resource": "nosuch"}');
SELECT dm_add_event('promo', 'x', '2026-11-28 00:00+00', '2026-11-28 01:00+00', '{"effect": "big"}');
SELECT dm_add_event('promo', 'x', '2026-11-28 00:00+00', '2026-11-28 01:00+00', '{"window_after": "-1 hour"}');
SELECT dm_add_event('nosuch', 'x', '2026-11-28 00:00+00', '2026-11-28 01:00+00');
SELECT count(*) AS events FROM dm_events;

SELECT dm_remove_event('promo', 'nightly-batch', '2026-11-28 02:00+00');
SELECT dm_remove_event('promo', 'black-friday');
SELECT dm_remove_event('promo', 'black-friday');
SELECT name, starts FROM dm_events ORDER BY starts;

SELECT dm_drop_group('promo', true);
SELECT count(*) AS events FROM event;
