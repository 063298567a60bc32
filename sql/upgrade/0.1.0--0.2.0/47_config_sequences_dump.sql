-- 47_config_sequences_dump.sql: the identity sequences of the configuration
-- tables are dumped by pg_dump with their tables (20_catalog.sql,
-- 55_metric_catalog.sql, 74_routing.sql): without them a restored database
-- handed out the restored rows' ids again.  router is new in 0.2.0 (its
-- table and markings come with 74_routing.include).
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.resource_group', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.resource', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.event', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.metric_def', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('driftmirror.metric_source', 'id'), '');
