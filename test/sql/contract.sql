-- contract.sql: the typed contract between driftmirror's library and its SQL
-- (sql/install/59_contract.sql, src/contract.c): the composite type and the
-- named result columns the library reads, the final promotion states, the
-- allowed transitions of promotions and mirrors, and the refusal of any
-- other.  No node is reached: promotions and mirrors are rows made here.
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY default

-- the library agrees with the installed SQL: no difference
SELECT * FROM _contract_problems();

-- what the promotion driver reads: driftmirror.promotion_info, by name
SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
 WHERE a.attrelid = 'driftmirror.promotion_info'::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;
SELECT pg_get_function_result('_promotion_info(bigint)'::regprocedure) AS promotion_info;

-- the named result columns of the other functions the library reads
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS result
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace
   AND p.proname IN ('_mirror_next', '_cleanup_due', '_promotion_actuator_next',
                     '_promotion_actuator_result', '_due_sources', '_ingest_target',
                     '_router_work', '_notify_due', '_forecast_step', '_due_groups',
                     '_step_work')
 ORDER BY 1::text;

-- a broken contract is reported with the object, the column and the reader
ALTER TYPE promotion_info RENAME ATTRIBUTE sequence_gap TO gap;
SELECT * FROM _contract_problems();
ALTER TYPE promotion_info RENAME ATTRIBUTE gap TO sequence_gap;
SELECT count(*) AS problems FROM _contract_problems();

-- the final promotion states: asked of one function
SELECT s.state, _promotion_is_final(s.state) AS final
  FROM (SELECT DISTINCT to_state FROM _state_transitions() WHERE machine = 'promotion') s (state)
 ORDER BY 1;
SELECT _promotion_is_final(NULL) AS null_is_final, _promotion_is_final('bogus') AS bogus_is_final;
-- ... final exactly when nothing leaves the state (either machine, either kind)
SELECT t.machine, t.to_state AS state
  FROM (SELECT DISTINCT machine, to_state FROM _state_transitions()) t
 WHERE (t.machine = 'promotion' AND _promotion_is_final(t.to_state))
       = EXISTS (SELECT FROM _state_transitions() o
                  WHERE o.machine = t.machine AND o.from_state = t.to_state)
   AND t.machine = 'promotion'
 ORDER BY 1, 2;
SELECT DISTINCT t.to_state AS mirror_states_without_way_out
  FROM _state_transitions() t
 WHERE t.machine = 'mirror'
   AND NOT EXISTS (SELECT FROM _state_transitions() o WHERE o.machine = 'mirror' AND o.from_state = t.to_state)
 ORDER BY 1;
-- ... the index of running promotions asks it too, and no function of the
-- extension lists the final states on its own
SELECT pg_get_indexdef('driftmirror.promotion_one_running'::regclass) AS one_running;
SELECT p.proname
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace
   AND p.prosrc ~ $re$state\s+(NOT\s+)?IN\s*\(\s*'(done|rolled_back|refused|failed)'$re$
 ORDER BY 1;

-- every state the tables accept has its transitions, and no more
SELECT c.conrelid::regclass AS tbl, s.state,
       EXISTS (SELECT FROM _state_transitions() t
                WHERE t.machine = c.conrelid::regclass::text AND t.to_state = s.state) AS in_transitions
  FROM pg_constraint c,
       LATERAL regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m,
       LATERAL (SELECT m[1]) s (state)
 WHERE c.conrelid IN ('driftmirror.promotion'::regclass, 'driftmirror.mirror'::regclass)
   AND c.contype = 'c' AND pg_get_constraintdef(c.oid) ~ '^CHECK \(\(state = ANY'
 ORDER BY 1::text, 2;

-- the transition table
SELECT machine, kind, coalesce(from_state, '(new)') AS from_state,
       string_agg(to_state, ', ' ORDER BY to_state) AS to_states
  FROM _state_transitions()
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, min(CASE WHEN from_state IS NULL THEN 0 ELSE 1 END), 3;

-- fixtures: a group, a postgres resource and an app resource with mirrors
-- made as rows (no node exists)
SELECT dm_create_group('ct', '{}') > 0 AS created;
SELECT dm_add_resource('ct', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;
SELECT dm_add_resource('ct', 'web', 'web', 'http://127.0.0.1:1/web') > 0 AS added;
INSERT INTO mirror
    (group_id, resource_id, group_name, resource_name, kind, primary_endpoint,
     publisher_endpoint, mirror_endpoint, two_way, fence, copy_data,
     publication_name, slot_name, subscription_name, state, step)
SELECT g.id, r.id, 'ct', 'db', 'postgres', r.endpoint, r.endpoint,
       'host=127.0.0.1 port=2 dbname=app', false, false, true,
       'dm_ct', 'dm_ct', 'dm_ct', 'creating', 'start'
  FROM resource_group g JOIN resource r ON r.group_id = g.id
 WHERE g.name = 'ct' AND r.name = 'db';
SELECT dm_create_mirror('ct', 'web') > 0 AS mirrored;
SELECT resource_name, kind, state FROM mirror WHERE group_name = 'ct' ORDER BY 1;

-- mirrors: allowed steps pass, others are refused with 55000 and change
-- nothing
UPDATE mirror SET state = 'mirroring' WHERE group_name = 'ct' AND resource_name = 'db';
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT _mirror_set_state(m, 'syncing', 'initial copy running') FROM mirror m
 WHERE group_name = 'ct' AND resource_name = 'db';
SELECT _mirror_set_state(m, 'mirroring', 'copied') FROM mirror m
 WHERE group_name = 'ct' AND resource_name = 'db';
SELECT _mirror_set_state(m, 'creating', 'again') FROM mirror m
 WHERE group_name = 'ct' AND resource_name = 'db';
\echo sqlstate :LAST_ERROR_SQLSTATE
UPDATE mirror SET state = 'provisioning' WHERE group_name = 'ct' AND resource_name = 'db';
\echo sqlstate :LAST_ERROR_SQLSTATE
-- the same state again is no transition
UPDATE mirror SET state = 'mirroring', state_reason = 'still' WHERE group_name = 'ct' AND resource_name = 'db';
-- an actuator mirror may come back to provisioning, and fail; failed is final
UPDATE mirror SET state = 'mirroring' WHERE group_name = 'ct' AND resource_name = 'web';
UPDATE mirror SET state = 'provisioning' WHERE group_name = 'ct' AND resource_name = 'web';
UPDATE mirror SET state = 'failed' WHERE group_name = 'ct' AND resource_name = 'web';
UPDATE mirror SET state = 'creating' WHERE group_name = 'ct' AND resource_name = 'web';
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT resource_name, state, state_reason FROM mirror WHERE group_name = 'ct' ORDER BY 1;

-- promotions: a new one starts in guardrails and nowhere else
INSERT INTO promotion (group_id, group_name, resource_id, resource_name, mirror_id, trigger, reason,
                       options, state, old_primary, new_primary, old_publication, old_slot,
                       old_subscription, new_publication, new_slot, new_subscription,
                       two_way, mirror_fence, deadline)
SELECT m.group_id, 'ct', m.resource_id, 'db', m.id, 'manual', 'test', '{}', 'done',
       m.primary_endpoint, m.mirror_endpoint, 'a', 'a', 'a', 'b', 'b', 'b', false, false, now()
  FROM mirror m WHERE m.group_name = 'ct' AND m.resource_name = 'db';
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT _promotion_start('ct', 'db', '{}', 'manual', 'contract test', 0) AS pid \gset
SELECT state FROM promotion WHERE id = :pid;
SELECT id = :pid AS info_of_the_promotion, group_name, resource_name, state, new_primary,
       two_way, mirror_state, flipped, remaining_ms > 0 AS time_left, max_lag_bytes,
       max_lag_seconds, max_xact_seconds, fence_grace_ms, sequence_gap
  FROM _promotion_info(:pid);
SELECT count(*) AS no_such_promotion FROM _promotion_info(-1);
-- skipping a step, or finishing before the flip, is refused
SELECT _promotion_step(:pid, 'fence', 'running', 'fencing');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT _promotion_step(:pid, 'reverse_slot', 'running', 'reverse_slot');
SELECT _promotion_finish(:pid, 'done');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- the way back, then nothing: rolled_back is final
SELECT _promotion_step(:pid, 'rollback', 'running', 'rolling_back', 'test');
SELECT _promotion_finish(:pid, 'rolled_back', 'test');
SELECT _promotion_step(:pid, 'guardrails', 'running', 'guardrails');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT state, finished_at IS NOT NULL AS finished FROM promotion WHERE id = :pid;
SELECT count(*) AS unfinished FROM _promotions_unfinished((SELECT id FROM resource_group WHERE name = 'ct'));
-- an actuator promotion has its own states: postgres ones are refused
SELECT _promotion_start('ct', 'web', '{}', 'manual', 'contract test', 0) AS wid \gset
SELECT _promotion_step(:wid, 'fence', 'running', 'fencing');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT _promotion_step(:wid, 'actuator_switch', 'running', 'switching');
SELECT _promotion_finish(:wid, 'done');
SELECT state FROM promotion WHERE id = :wid;

SELECT dm_drop_group('ct', force => true);
