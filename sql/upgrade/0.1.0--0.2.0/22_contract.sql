-- 22_contract.sql: the typed contract between the library and the SQL
-- (sql/install/59_contract.sql, 70_promotion_catalog.sql): the state
-- transition triggers, the index of running promotions asking
-- _promotion_is_final, and the old _promotion_info, which returned jsonb
-- (read by the library as a hand-joined string): the promotion code
-- (25_promotion_code.include) creates the new one, returning the type
-- promotion_info of 59_contract.sql.

REVOKE ALL ON FUNCTION driftmirror._promotion_is_final(text), driftmirror._state_transitions(),
    driftmirror._check_state_transition(), driftmirror._contract_problems() FROM PUBLIC;

-- only the transitions of 59_contract.sql
CREATE TRIGGER mirror_state_transition BEFORE UPDATE OF state ON driftmirror.mirror
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION driftmirror._check_state_transition('mirror');
CREATE TRIGGER promotion_state_transition BEFORE INSERT OR UPDATE OF state ON driftmirror.promotion
    FOR EACH ROW EXECUTE FUNCTION driftmirror._check_state_transition('promotion');

DROP INDEX driftmirror.promotion_one_running;
CREATE UNIQUE INDEX promotion_one_running ON driftmirror.promotion (group_id)
    WHERE NOT driftmirror._promotion_is_final(state);

DROP FUNCTION driftmirror._promotion_info(bigint);
