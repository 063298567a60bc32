-- resources: dm_add_resource, dm_alter_resource, dm_remove_resource,
-- endpoints, kinds and the dependency graph
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

SELECT dm_create_group('shop') > 0 AS created;
SELECT dm_add_resource('shop', 'db', 'postgres', 'host=127.0.0.1 port=5432 dbname=shop') > 0 AS added;
SELECT dm_add_resource('shop', 'cache', 'cache', 'http://127.0.0.1:8081/cache', '{db}') > 0 AS added;
SELECT dm_add_resource('shop', 'app', 'app', 'https://actuator.example/app', '{db,cache}',
                       '{"capacity": 3, "description": "checkout service"}') > 0 AS added;
SELECT dm_add_resource('shop', 'web', 'web', 'http://127.0.0.1:8082/', '{app}') > 0 AS added;
SELECT dm_add_resource('shop', 'replica', 'postgres', 'host=replica.example dbname=shop', '{}',
                       '{"role": "mirror"}') > 0 AS added;
SELECT group_name, name, kind, endpoint, role, capacity, depends_on
  FROM dm_resources ORDER BY name;

-- unknown group, duplicate, bad names, kinds, NULLs
SELECT dm_add_resource('nosuch', 'x', 'app', 'http://h/');
SELECT dm_add_resource('shop', 'db', 'postgres', 'host=h');
SELECT dm_add_resource('shop', 'bad name', 'app', 'http://h/');
SELECT dm_add_resource('shop', NULL, 'app', 'http://h/');
SELECT dm_add_resource('shop', 'x', 'mainframe', 'http://h/');
SELECT dm_add_resource('shop', 'x', NULL, 'http://h/');
SELECT dm_add_resource('shop', 'x', 'app', NULL);
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', NULL);
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{}', NULL);

-- endpoints: conninfo for postgres, http(s) URLs otherwise, never a password
SELECT dm_add_resource('shop', 'x', 'postgres', '');
SELECT dm_add_resource('shop', 'x', 'postgres', 'host=h password=secret');
SELECT dm_add_resource('shop', 'x', 'postgres', 'postgresql://u:secret@h/db');
SELECT dm_add_resource('shop', 'x', 'postgres', 'hots=h');
SELECT dm_add_resource('shop', 'x', 'postgres', 'host=''unterminated');
SELECT dm_add_resource('shop', 'x', 'app', 'ftp://h/');
SELECT dm_add_resource('shop', 'x', 'app', 'file:///etc/passwd');
SELECT dm_add_resource('shop', 'x', 'app', 'https://user:pw@h/');
SELECT dm_add_resource('shop', 'x', 'app', 'http:///nohost');
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/a b');

-- dependencies: unknown, self, repeated, null element
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{nosuch}');
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{x}');
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{db,db}');
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', ARRAY['db', NULL]);

-- resource options
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{}', '{"role": "standby"}');
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{}', '{"capacity": -1}');
SELECT dm_add_resource('shop', 'x', 'app', 'http://h/', '{}', '{"weight": 5}');

-- nothing was added by the failures
SELECT count(*) AS resources FROM dm_resources;

-- cycles through dm_alter_resource are refused and change nothing
SELECT dm_alter_resource('shop', 'db', depends_on => '{web}');
SELECT dm_alter_resource('shop', 'cache', depends_on => '{app}');
SELECT dm_alter_resource('shop', 'db', depends_on => '{db}');
SELECT name, depends_on FROM dm_resources ORDER BY name;

-- alter: endpoint, options merge, dependencies replaced
SELECT dm_alter_resource('shop', 'app', endpoint => 'https://actuator.example/app/v2',
                         options => '{"capacity": 4, "description": null}');
SELECT dm_alter_resource('shop', 'web', depends_on => '{app,cache}');
SELECT name, endpoint, capacity, options, depends_on FROM dm_resources
 WHERE name IN ('app', 'web') ORDER BY name;
SELECT dm_alter_resource('shop', 'app', endpoint => 'ftp://nope');
SELECT dm_alter_resource('shop', 'db', endpoint => 'host=h password=x');
SELECT dm_alter_resource('shop', 'nosuch', endpoint => 'http://h/');
SELECT dm_alter_resource('shop', 'app', options => '{"capacity": "many"}');
SELECT name, endpoint, capacity FROM dm_resources WHERE name IN ('app', 'db') ORDER BY name;

-- remove: refused while others depend on it
SELECT dm_remove_resource('shop', 'db');
SELECT dm_remove_resource('shop', 'nosuch');
SELECT dm_remove_resource('nosuch', 'db');
SELECT dm_remove_resource('shop', 'web');
SELECT dm_remove_resource('shop', 'web');
SELECT name FROM dm_resources ORDER BY name;

-- re-adding a removed resource, then a cycle through it is still refused
SELECT dm_add_resource('shop', 'web', 'web', 'http://127.0.0.1:8082/', '{app}') > 0 AS added;
SELECT dm_alter_resource('shop', 'db', depends_on => '{web}');

-- a group with resources needs force to drop; force removes everything
SELECT dm_drop_group('shop');
SELECT count(*) AS resources FROM dm_resources;
SELECT dm_drop_group('shop', force => true);
SELECT count(*) AS resources FROM dm_resources;
SELECT count(*) AS edges FROM resource_dependency;
