-- 14_step_work_grants.sql: the worker reads, once per pass, which phases of
-- each due group's step have something to do (_step_work, new in 0.2.0,
-- from 13_worker.include); what 99_privileges.sql grants on it.
REVOKE ALL ON FUNCTION driftmirror._step_work(bigint[]) FROM PUBLIC;
