-- groups: dm_create_group, dm_alter_group, dm_drop_group, option validation
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

-- create
SELECT dm_create_group('orders') > 0 AS created;
SELECT dm_create_group('billing', '{"interval": "30 seconds", "mode": "off", "headroom": 0.5}') > 0 AS created;
SELECT dm_create_group('search', '{"interval": 5, "auto_promote": true}') > 0 AS created;
SELECT name, options, resources FROM dm_groups ORDER BY name;
SELECT effective_options ->> 'interval' AS "interval", effective_options ->> 'mode' AS mode,
       effective_options ->> 'headroom' AS headroom
  FROM dm_groups WHERE name = 'billing';

-- bad names and duplicates
SELECT dm_create_group('orders');
SELECT dm_create_group(NULL);
SELECT dm_create_group('');
SELECT dm_create_group('has space');
SELECT dm_create_group('-leading-dash');
SELECT dm_create_group(repeat('x', 64));
SELECT dm_create_group('x'', ''y');

-- bad options: each names the key and value
SELECT dm_create_group('g1', NULL);
SELECT dm_create_group('g1', '[]');
SELECT dm_create_group('g1', '"interval"');
SELECT dm_create_group('g1', '{"intervall": "5s"}');
SELECT dm_create_group('g1', '{"interval": "-5 seconds"}');
SELECT dm_create_group('g1', '{"interval": "2 days"}');
SELECT dm_create_group('g1', '{"interval": "soon"}');
SELECT dm_create_group('g1', '{"interval": 0}');
SELECT dm_create_group('g1', '{"interval": true}');
SELECT dm_create_group('g1', '{"interval": 1e10}');
SELECT dm_create_group('g1', '{"mode": "turbo"}');
SELECT dm_create_group('g1', '{"mode": 1}');
SELECT dm_create_group('g1', '{"headroom": -0.1}');
SELECT dm_create_group('g1', '{"headroom": "0.1"}');
SELECT dm_create_group('g1', '{"min_capacity": 1.5}');
SELECT dm_create_group('g1', '{"min_capacity": 5, "max_capacity": 2}');
SELECT dm_create_group('g1', '{"lead_time": "2 hours", "forecast_horizon": "1 hour"}');
SELECT dm_create_group('g1', '{"auto_promote": "yes"}');
-- none of the failed calls left anything behind
SELECT count(*) AS groups FROM dm_groups;
SELECT kind, group_name FROM dm_actions WHERE group_name IN ('orders', 'billing', 'search', 'g1') ORDER BY id;

-- alter: merge, reset with null, validation of the merged result
SELECT dm_alter_group('billing', '{"interval": "1 minute", "drift_threshold": 0.3}');
SELECT options FROM dm_groups WHERE name = 'billing';
SELECT dm_alter_group('billing', '{"mode": null}');
SELECT options, effective_options ->> 'mode' AS mode FROM dm_groups WHERE name = 'billing';
SELECT dm_alter_group('billing', '{"max_capacity": 0, "min_capacity": 1}');
SELECT dm_alter_group('billing', '{"bogus": 1}');
SELECT dm_alter_group('billing', NULL);
SELECT dm_alter_group('billing', '[1]');
SELECT dm_alter_group('nosuch', '{}');
SELECT dm_alter_group(NULL, '{}');
SELECT options FROM dm_groups WHERE name = 'billing';

-- drop
SELECT dm_drop_group('search');
SELECT dm_drop_group('search');
SELECT dm_drop_group(NULL);
SELECT dm_drop_group('billing', NULL);
SELECT name FROM dm_groups ORDER BY name;
SELECT kind, group_name, outcome FROM dm_actions WHERE group_name IN ('orders', 'billing', 'search', 'g1') ORDER BY id;

-- the option catalogue documents itself
SELECT scope, key, type, default_value FROM dm_options WHERE scope = 'group' ORDER BY key;

SELECT dm_drop_group('billing');
SELECT dm_drop_group('orders');
