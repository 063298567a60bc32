-- cron: pg_cron is preloaded beside driftmirror and jobs that call the
-- driftmirror API can be scheduled (that a scheduled job really runs is
-- checked in TAP, where waiting for the next minute is acceptable)
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
CREATE EXTENSION pg_cron;
SELECT dm_create_group('nightly') > 0 AS created;
SELECT cron.schedule('dm-nightly-event', '0 2 * * *',
    $$SELECT driftmirror.dm_add_event('nightly', 'batch', date_trunc('day', now()) + interval '2 hours',
                                       date_trunc('day', now()) + interval '3 hours')$$) > 0 AS scheduled;
SELECT jobname, schedule, database FROM cron.job ORDER BY jobid;
SELECT cron.unschedule('dm-nightly-event');
SELECT dm_drop_group('nightly');
DROP EXTENSION pg_cron;
