-- 96_ecosystem_grants.sql: what 99_privileges.sql grants on the objects of
-- 95_ecosystem.include (the exporter views are for driftmirror_monitor).
REVOKE ALL ON FUNCTION driftmirror._notify_action() FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._notify_due(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION driftmirror._notify_done(bigint, boolean, text) FROM PUBLIC;
REVOKE ALL ON driftmirror.notification_outbox FROM PUBLIC;
DO $grants$
DECLARE
    v text;
BEGIN
    FOREACH v IN ARRAY ARRAY['dm_exporter_groups', 'dm_exporter_mirrors', 'dm_exporter_routes',
                             'dm_exporter_actions', 'dm_exporter_worker', 'dm_exporter_promotions',
                             'dm_exporter_models', 'dm_exporter_capacity', 'dm_exporter_shifts',
                             'dm_exporter_shift_plans']
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON driftmirror.%I FROM PUBLIC', v);
        EXECUTE pg_catalog.format('GRANT SELECT ON driftmirror.%I TO driftmirror_monitor', v);
    END LOOP;
END
$grants$;
