-- 59_contract.sql: the contract between driftmirror's library and its SQL:
-- the state machines of mirrors and promotions in one place (which
-- promotion states are final, which transitions are allowed, the trigger
-- that refuses any other where a state is written), and the library's own
-- check of the columns it reads (_contract_problems, src/contract.c).
--
-- The single source of truth:
--   promotion_info              the composite type _promotion_info returns:
--                               what the promotion driver knows about its
--                               promotion, read by attribute name.
--   _promotion_is_final(state)  whether a promotion state ends a promotion
--                               (done, rolled_back, refused, failed); every
--                               "is this promotion over?" in SQL asks it,
--                               the partial index promotion_one_running
--                               included.  The C side (src/contract.c,
--                               DmPromotionStateIsFinal) keeps the same list,
--                               checked against this function by the
--                               pg_regress test contract.
--   _state_transitions()        every allowed change of state: machine
--                               (promotion, mirror), kind ('postgres', or
--                               'actuator' for resources switched through an
--                               HTTP actuator), from_state (NULL: the state
--                               a new row starts in), to_state.
--   _check_state_transition()   BEFORE trigger on promotion (INSERT, UPDATE
--                               OF state) and mirror (UPDATE OF state):
--                               a change not in _state_transitions() raises
--                               object_not_in_prerequisite_state and writes
--                               nothing.  Writing the same state again is no
--                               transition and always passes.  Mirror rows
--                               may be inserted in any state (test fixtures
--                               make mirrors without nodes); dm_create_mirror
--                               inserts them in creating.
--   _contract_problems()        the library's check (src/contract.c): the
--                               columns it reads from each function and
--                               composite type, by name and type, and its
--                               list of final states against
--                               _promotion_is_final; one line per
--                               difference, none when they agree.
--
-- New in 0.2.0: the update pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/21_contract.include).
--
-- Final states have no transition out of them; the pg_regress test contract
-- checks that too.  Trigger functions and these functions need no table, so
-- this file comes before the catalogs that use them (60_mirror_catalog.sql,
-- 70_promotion_catalog.sql).

-- promotion_info: what the promotion driver (src/promote_postgres.c) reads
-- about its promotion: _promotion_info (70_promotion_steps.sql) returns it,
-- the driver reads the attributes by name
CREATE TYPE driftmirror.promotion_info AS (
    id                 bigint,
    group_name         text,
    resource_name      text,
    state              text,
    old_primary        text,
    new_primary        text,
    old_publication    text,
    old_slot           text,
    old_subscription   text,
    new_publication    text,
    new_slot           text,
    new_subscription   text,
    two_way            boolean,
    mirror_fence       boolean,
    mirror_state       text,
    mirror_lag_seconds double precision,
    flipped            boolean,
    fence_lsn          pg_lsn,
    fenced_at          timestamptz,
    remaining_ms       bigint,
    max_lag_bytes      bigint,
    max_lag_seconds    numeric,
    max_xact_seconds   numeric,
    fence_grace_ms     bigint,
    sequence_gap       bigint
);
COMMENT ON TYPE driftmirror.promotion_info IS
    'What the promotion driver reads about its promotion (_promotion_info), by attribute name';

-- _promotion_is_final: true for a state that ends a promotion.  Inlined
-- into its callers and the index predicate (a single expression, no SET
-- clause); safe under any search_path (the operator and type are
-- qualified).
CREATE FUNCTION driftmirror._promotion_is_final(p_state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_state OPERATOR(pg_catalog.=) ANY ('{done,rolled_back,refused,failed}'::pg_catalog.text[])
$$;

-- _state_transitions: the allowed transitions of both state machines
CREATE FUNCTION driftmirror._state_transitions()
RETURNS TABLE (machine text, kind text, from_state text, to_state text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
    -- postgres promotions (src/promote_postgres.c): a failure or an
    -- interruption before the flip rolls back; after the flip the driver,
    -- or a recovery, finishes
    ('promotion', 'postgres', NULL, 'guardrails'),
    ('promotion', 'postgres', 'guardrails', 'reverse_slot'),
    ('promotion', 'postgres', 'guardrails', 'refused'),
    ('promotion', 'postgres', 'guardrails', 'rolling_back'),
    ('promotion', 'postgres', 'reverse_slot', 'fencing'),
    ('promotion', 'postgres', 'reverse_slot', 'rolling_back'),
    ('promotion', 'postgres', 'fencing', 'catching_up'),
    ('promotion', 'postgres', 'fencing', 'rolling_back'),
    ('promotion', 'postgres', 'catching_up', 'sequences'),
    ('promotion', 'postgres', 'catching_up', 'rolling_back'),
    ('promotion', 'postgres', 'sequences', 'unfencing'),
    ('promotion', 'postgres', 'sequences', 'rolling_back'),
    ('promotion', 'postgres', 'unfencing', 'reversing'),
    ('promotion', 'postgres', 'reversing', 'done'),
    ('promotion', 'postgres', 'rolling_back', 'rolled_back'),
    -- the mirror dropped after the flip or while rolling back (an operator
    -- giving up on the way back): the recovery ends it failed
    ('promotion', 'postgres', 'unfencing', 'failed'),
    ('promotion', 'postgres', 'reversing', 'failed'),
    ('promotion', 'postgres', 'rolling_back', 'failed'),
    -- actuator promotions (72_promotion_actuator.sql)
    ('promotion', 'actuator', NULL, 'guardrails'),
    ('promotion', 'actuator', 'guardrails', 'switching'),
    ('promotion', 'actuator', 'guardrails', 'refused'),
    ('promotion', 'actuator', 'guardrails', 'rolled_back'),
    ('promotion', 'actuator', 'guardrails', 'failed'),
    ('promotion', 'actuator', 'switching', 'done'),
    ('promotion', 'actuator', 'switching', 'refused'),
    ('promotion', 'actuator', 'switching', 'aborting'),
    ('promotion', 'actuator', 'switching', 'failed'),
    ('promotion', 'actuator', 'aborting', 'done'),
    ('promotion', 'actuator', 'aborting', 'rolled_back'),
    ('promotion', 'actuator', 'aborting', 'failed'),
    -- postgres mirrors (62_mirror_steps.sql to 64_mirror_outcome.sql):
    -- created, initial copy, streaming; a creation action failing
    -- max_attempts times marks the mirror failed
    ('mirror', 'postgres', NULL, 'creating'),
    ('mirror', 'postgres', 'creating', 'syncing'),
    ('mirror', 'postgres', 'creating', 'failed'),
    ('mirror', 'postgres', 'syncing', 'mirroring'),
    ('mirror', 'postgres', 'syncing', 'failed'),
    -- actuator mirrors: the actuator's answers move the mirror; one that no
    -- longer knows the mirror has it created again
    ('mirror', 'actuator', NULL, 'creating'),
    ('mirror', 'actuator', 'creating', 'provisioning'),
    ('mirror', 'actuator', 'creating', 'mirroring'),
    ('mirror', 'actuator', 'creating', 'failed'),
    ('mirror', 'actuator', 'provisioning', 'creating'),
    ('mirror', 'actuator', 'provisioning', 'mirroring'),
    ('mirror', 'actuator', 'provisioning', 'failed'),
    ('mirror', 'actuator', 'mirroring', 'creating'),
    ('mirror', 'actuator', 'mirroring', 'provisioning'),
    ('mirror', 'actuator', 'mirroring', 'failed')
$$;

-- _check_state_transition: BEFORE INSERT / UPDATE OF state trigger on
-- promotion and mirror (TG_ARGV[0]: the machine); refuses a change that
-- _state_transitions() does not list
CREATE FUNCTION driftmirror._check_state_transition()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_machine text := TG_ARGV[0];
    v_kind    text := CASE WHEN NEW.kind = 'postgres' THEN 'postgres' ELSE 'actuator' END;
    v_old     text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END;
    allowed   text;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state IS NOT DISTINCT FROM NEW.state THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT FROM driftmirror._state_transitions() t
                WHERE t.machine = v_machine AND t.kind = v_kind
                  AND t.from_state IS NOT DISTINCT FROM v_old AND t.to_state = NEW.state) THEN
        RETURN NEW;
    END IF;
    SELECT string_agg(t.to_state, ', ' ORDER BY t.to_state) INTO allowed
      FROM driftmirror._state_transitions() t
     WHERE t.machine = v_machine AND t.kind = v_kind AND t.from_state IS NOT DISTINCT FROM v_old;
    IF v_old IS NULL THEN
        RAISE EXCEPTION 'a new % cannot start in state %', v_machine, NEW.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('A new %s of kind %s starts in state %s.', v_machine, NEW.kind,
                                  coalesce(allowed, 'none'));
    END IF;
    RAISE EXCEPTION '% % cannot change from state % to state %', v_machine, NEW.id, v_old, NEW.state
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = CASE WHEN allowed IS NULL
                            THEN format('No transition leaves state %s for a %s of kind %s.',
                                        v_old, v_machine, NEW.kind)
                            ELSE format('From state %s a %s of kind %s may move to: %s.',
                                        v_old, v_machine, NEW.kind, allowed) END;
END
$$;

-- _contract_problems: what the library reads that the installed SQL does
-- not offer, or where they disagree ("SQLSTATE: message" per line)
CREATE FUNCTION driftmirror._contract_problems()
RETURNS SETOF text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'driftmirror_contract_problems';
