-- 72_promotion_actuator.sql: promotion of mirrors of cache, app, web and
-- service resources through their HTTP actuator (contract in
-- docs/mirrors.md, "Promote"; behaviour in docs/promotion.md).
--
-- The same persisted promotion row and step log as PostgreSQL promotions
-- (70_promotion_*.sql), with states guardrails -> switching -> done, or
-- refused, or (promote_timeout passed) aborting -> rolled_back / failed /
-- done.  The driver (src/promote_actuator.c) is a generic executor, like
-- the mirrors' one: in one short transaction _promotion_actuator_next()
-- moves the state machine on (guardrails, deadlines) and returns the next
-- request, recorded in the step log before it is sent; the driver sends it
-- with no transaction open; _promotion_actuator_answer() records the answer
-- in another short transaction and says whether to send again ('retry') or
-- the promotion has ended (its final state).  Requests are idempotent (same
-- Idempotency-Key for every resend of one promotion), so a driver that dies
-- mid-request is replaced by a recovery worker that simply sends again:
--   promote  POST <endpoint>/mirrors/<mirror>/promote  key dm-<k>-promote-<id>
--   abort    POST <endpoint>/mirrors/<mirror>/promote  key dm-<k>-promote-<id>-abort
--            (body "action": "abort")
-- The answer "promoted" flips the routes, the mirror row and the promotion
-- (done) in one transaction.  The bearer token never enters the catalog:
-- the driver reads the resource's bearer_token_file per request.

-- _promotion_actuator_primary: where clients of a resource write now: the
-- write route with the highest weight, or the resource's endpoint without
-- one (what dm_route(..., 'write') answers)
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_primary(p_resource_id bigint)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT rt.endpoint FROM driftmirror.route rt
                      WHERE rt.resource_id = p_resource_id AND rt.access = 'write' AND rt.weight > 0
                      ORDER BY rt.weight DESC, rt.endpoint LIMIT 1),
                    (SELECT r.endpoint FROM driftmirror.resource r WHERE r.id = p_resource_id))
$$;

-- _promotion_actuator_guardrails: the checks of an actuator promotion, on
-- what the mirror phase last read from the actuator; stores the figures;
-- returns NULL when every check passes, else one reason per line
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_guardrails(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p       driftmirror.promotion;
    m       driftmirror.mirror;
    iv      interval;
    age_s   numeric;
    max_b   bigint;
    max_s   double precision;
    reasons text[] := '{}';
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    SELECT driftmirror._opt_interval(driftmirror._effective_options('group', g.options) -> 'interval')
      INTO iv FROM driftmirror.resource_group g WHERE g.id = p.group_id;
    max_b := (p.options ->> 'promote_max_lag_bytes')::bigint;
    max_s := (p.options ->> 'promote_max_lag_seconds')::double precision;
    age_s := round(extract(epoch FROM clock_timestamp() - m.mirror_checked_at)::numeric, 1);

    IF m.state <> 'mirroring' THEN
        reasons := reasons || format('mirror not in sync: its state is %s (%s)', m.state,
                                     coalesce(m.state_reason, 'no reason recorded'));
    END IF;
    IF m.mirror_checked_at IS NULL THEN
        reasons := reasons || 'the mirror''s status is not fresh: the actuator has not been asked for it since the mirror was made or last promoted'::text;
    ELSIF m.mirror_checked_at < clock_timestamp() - 3 * iv THEN
        reasons := reasons || format('the mirror''s status is not fresh: last asked %s s ago, more than 3 monitoring intervals (%s s)',
                                     age_s, round(extract(epoch FROM 3 * iv)::numeric, 1));
    ELSIF m.attempts > 0 THEN
        reasons := reasons || format('the mirror''s status is not fresh: the last %s request(s) to the actuator for it failed (%s)',
                                     m.attempts, coalesce(m.last_error, 'no error recorded'));
    END IF;
    IF m.lag_bytes IS NOT NULL AND m.lag_bytes > max_b THEN
        reasons := reasons || format('replication lag %s bytes (as the actuator reports it) exceeds promote_max_lag_bytes %s',
                                     m.lag_bytes, max_b);
    END IF;
    IF m.lag_seconds IS NOT NULL AND m.lag_seconds > max_s THEN
        reasons := reasons || format('replication lag %s s (as the actuator reports it) exceeds promote_max_lag_seconds %s',
                                     round(m.lag_seconds::numeric, 3), max_s);
    END IF;
    IF p.new_primary IS NULL THEN
        reasons := reasons || 'the mirror''s endpoint is unknown: the actuator has not said where clients reach it, so the routes could not be flipped'::text;
    END IF;

    UPDATE driftmirror.promotion
       SET guardrails = jsonb_build_object(
               'mirror_state', m.state,
               'status_age_seconds', age_s,
               'max_status_age_seconds', round(extract(epoch FROM 3 * iv)::numeric, 1),
               'failed_status_requests', m.attempts,
               'lag_bytes', m.lag_bytes, 'max_lag_bytes', max_b,
               'lag_seconds', m.lag_seconds, 'max_lag_seconds', max_s,
               'endpoint_known', p.new_primary IS NOT NULL,
               'passed', cardinality(reasons) = 0,
               'reasons', to_jsonb(reasons))
     WHERE id = p_id;
    UPDATE driftmirror.promotion_step
       SET details = (SELECT guardrails FROM driftmirror.promotion WHERE id = p_id)
     WHERE promotion_id = p_id AND step = 'guardrails' AND outcome = 'running';
    RETURN CASE WHEN cardinality(reasons) > 0 THEN array_to_string(reasons, E'\n') END;
END
$$;

-- _promotion_actuator_flip: THE commit point of an actuator promotion,
-- called in the transaction that records the answer "promoted" (j): the
-- routes (write and read) go to the new primary (the endpoint the actuator
-- reports, else the mirror's endpoint), every other route of the resource
-- to 0; the mirror row takes the mirror's new endpoint (NULL until the
-- actuator says) and its status is read afresh.  Returns what was set.
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_flip(p_id bigint, j jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p      driftmirror.promotion;
    new_ep text;
    mir_ep text;
    why    text := format('promotion %s', p_id);
    rt     record;
    zeroed integer := 0;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    PERFORM FROM driftmirror.mirror WHERE id = p.mirror_id FOR UPDATE;
    new_ep := coalesce(CASE WHEN jsonb_typeof(j -> 'endpoint') = 'string' THEN j ->> 'endpoint' END,
                       p.new_primary);
    mir_ep := CASE WHEN jsonb_typeof(j -> 'mirror_endpoint') = 'string' THEN j ->> 'mirror_endpoint' END;

    UPDATE driftmirror.promotion SET new_primary = new_ep WHERE id = p_id;
    UPDATE driftmirror.mirror
       SET mirror_endpoint = mir_ep,
           lag_bytes = NULL, lag_seconds = NULL,
           primary_checked_at = NULL, mirror_checked_at = NULL,
           state_reason = format('promoted by promotion %s', p_id)
     WHERE id = p.mirror_id;

    FOR rt IN SELECT r.access, r.endpoint FROM driftmirror.route r
               WHERE r.resource_id = p.resource_id AND r.weight > 0 AND r.endpoint <> new_ep
               ORDER BY 1, 2
    LOOP
        PERFORM driftmirror._set_route(p.group_id, p.resource_id, rt.access, rt.endpoint, 0, why);
        zeroed := zeroed + 1;
    END LOOP;
    IF p.old_primary <> new_ep THEN
        PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', p.old_primary, 0, why);
        PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', p.old_primary, 0, why);
    END IF;
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'write', new_ep, 100, why);
    PERFORM driftmirror._set_route(p.group_id, p.resource_id, 'read', new_ep, 100, why);
    PERFORM driftmirror._log_action(p.group_name, p.resource_name, 'promote_flip',
                                    'the actuator promoted the mirror; the routes point at the new primary',
                                    jsonb_build_object('promotion', p_id));
    RETURN jsonb_build_object('write', 100, 'read', 100, 'other_routes_set_to_0', zeroed,
                              'mirror_endpoint_known', mir_ep IS NOT NULL);
END
$$;

-- _promotion_actuator_next: in one transaction, move an actuator promotion
-- on (guardrails; promote_timeout -> abort; promote_abort_timeout ->
-- failed) and return the next request to send, counted in the step log
-- before it is sent.  No row: the promotion has ended.
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_next(p_id bigint)
RETURNS TABLE (action text, label text, http_method text, http_url text, http_body text,
               http_key text, http_token_file text, http_timeout_ms integer,
               remaining_ms integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p        driftmirror.promotion;
    m        driftmirror.mirror;
    refused  text;
    v_step   text;
    until    timestamptz;
    left_ms  double precision;
    max_ms   integer;
    last     text;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR driftmirror._promotion_is_final(p.state) THEN
        RETURN;
    END IF;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    IF NOT FOUND THEN
        -- a mirror cannot be dropped during its promotion (the row locks),
        -- but be definite about it
        PERFORM driftmirror._promotion_step(p_id, CASE p.state WHEN 'aborting' THEN 'abort'
                                                    WHEN 'switching' THEN 'actuator_switch'
                                                    ELSE 'guardrails' END,
                                            'failed', NULL, 'the mirror is gone');
        PERFORM driftmirror._promotion_finish(p_id, 'failed', 'the mirror was dropped during its promotion', '55000');
        RETURN;
    END IF;

    IF p.state = 'guardrails' THEN
        PERFORM driftmirror._promotion_step(p_id, 'guardrails', 'running');
        refused := driftmirror._promotion_actuator_guardrails(p_id);
        IF refused IS NOT NULL THEN
            PERFORM driftmirror._promotion_step(p_id, 'guardrails', 'refused', 'refused', refused);
            PERFORM driftmirror._promotion_finish(p_id, 'refused',
                format('promotion of resource "%s" of group "%s" refused', p.resource_name, p.group_name),
                '55000');
            RETURN;
        END IF;
        PERFORM driftmirror._promotion_step(p_id, 'guardrails', 'ok');
        PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'running', 'switching', NULL,
            jsonb_build_object('key', format('dm-%s-promote-%s', m.actuator_key, p_id), 'requests', 0));
        p.state := 'switching';
    END IF;

    IF p.state = 'switching' AND clock_timestamp() >= p.deadline THEN
        SELECT s.details ->> 'last' INTO last FROM driftmirror.promotion_step s
         WHERE s.promotion_id = p_id AND s.step = 'actuator_switch' AND s.outcome = 'running';
        PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'failed', NULL,
            format('promote_timeout (%s) passed without a definitive answer from the actuator (last: %s)',
                   driftmirror._opt_interval(p.options -> 'promote_timeout'),
                   coalesce(last, 'no request completed')));
        UPDATE driftmirror.promotion
           SET abort_deadline = clock_timestamp()
                                + driftmirror._opt_interval(p.options -> 'promote_abort_timeout')
         WHERE id = p_id
        RETURNING * INTO p;
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'running', 'aborting', NULL,
            jsonb_build_object('key', format('dm-%s-promote-%s-abort', m.actuator_key, p_id), 'requests', 0));
        p.state := 'aborting';
    END IF;

    IF p.state = 'aborting' AND clock_timestamp() >= p.abort_deadline THEN
        SELECT s.details ->> 'last' INTO last FROM driftmirror.promotion_step s
         WHERE s.promotion_id = p_id AND s.step = 'abort' AND s.outcome = 'running';
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'failed', NULL,
            format('the actuator did not confirm the abort within promote_abort_timeout (%s) (last: %s); its state is unknown',
                   driftmirror._opt_interval(p.options -> 'promote_abort_timeout'),
                   coalesce(last, 'no request completed')));
        PERFORM driftmirror._promotion_finish(p_id, 'failed',
            format('promotion of resource "%s" of group "%s" timed out in step actuator_switch and the actuator did not confirm the abort; its state is unknown',
                   p.resource_name, p.group_name),
            '57014');
        RETURN;
    END IF;

    IF p.state NOT IN ('switching', 'aborting') THEN
        RAISE EXCEPTION 'actuator promotion % is in state %', p_id, p.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- the request
    action := CASE p.state WHEN 'switching' THEN 'promote' ELSE 'abort' END;
    v_step := CASE p.state WHEN 'switching' THEN 'actuator_switch' ELSE 'abort' END;
    until := CASE p.state WHEN 'switching' THEN p.deadline ELSE p.abort_deadline END;
    left_ms := extract(epoch FROM until - clock_timestamp()) * 1000;
    remaining_ms := greatest(1, least(left_ms, 2000000000))::integer;
    max_ms := (extract(epoch FROM driftmirror._opt_interval(
                  driftmirror._effective_options('mirror', m.options) -> 'actuator_timeout')) * 1000)::integer;
    http_timeout_ms := greatest(100, least(max_ms, remaining_ms));
    label := format('%s/%s actuator', p.group_name, p.resource_name);
    http_method := 'POST';
    http_url := rtrim(m.primary_endpoint, '/') || '/mirrors/' || m.actuator_name || '/promote';
    http_body := jsonb_build_object('group', p.group_name, 'resource', p.resource_name,
                                    'kind', p.kind, 'mirror', m.actuator_name, 'action', action,
                                    'promotion', p_id, 'endpoint', p.new_primary)::text;
    http_key := format('dm-%s-promote-%s', m.actuator_key, p_id)
                || CASE action WHEN 'abort' THEN '-abort' ELSE '' END;
    -- the token file named by the resource now (it may have been changed)
    http_token_file := driftmirror._actuator_token_file(m);
    UPDATE driftmirror.promotion_step s
       SET details = s.details || jsonb_build_object(
               'key', http_key,
               'requests', coalesce((s.details ->> 'requests')::integer, 0) + 1,
               'sent_at', clock_timestamp())
     WHERE s.promotion_id = p_id AND s.step = v_step AND s.outcome = 'running';
    RETURN NEXT;
END
$$;

-- _promotion_actuator_answer: record the outcome of a request returned by
-- _promotion_actuator_next.  p_ok: an HTTP answer arrived (p_status,
-- p_body); otherwise p_error (names the actuator by label only) and
-- p_detail (libcurl's reason) say why not.  Returns 'retry' (send the same
-- request again, with the same key) or the promotion's final state
-- ('done', 'refused', 'rolled_back', 'failed').
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_answer(p_id bigint, p_action text, p_ok boolean,
                                                       p_status integer, p_body text,
                                                       p_error text, p_detail text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p     driftmirror.promotion;
    m     driftmirror.mirror;
    v_step text := CASE p_action WHEN 'promote' THEN 'actuator_switch' ELSE 'abort' END;
    what  text;
    j     jsonb;
    st    text;
    valid boolean := false;
    last  text;
    det   text;
    flip  jsonb;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'failed';
    END IF;
    IF p.state <> (CASE p_action WHEN 'promote' THEN 'switching' ELSE 'aborting' END) THEN
        -- moved on meanwhile (cannot happen with one driver): say where it is
        RETURN CASE WHEN driftmirror._promotion_is_final(p.state) THEN p.state
                    ELSE 'retry' END;
    END IF;
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p.mirror_id;
    what := format('POST /mirrors/%s/promote', m.actuator_name);

    IF p_ok AND p_status BETWEEN 200 AND 299 THEN
        BEGIN
            j := p_body::jsonb;
        EXCEPTION WHEN data_exception THEN
            j := NULL;
        END;
        IF jsonb_typeof(j) = 'object' AND jsonb_typeof(j -> 'state') = 'string' THEN
            st := j ->> 'state';
            valid := CASE p_action
                     WHEN 'promote' THEN st IN ('promoted', 'promoting', 'failed')
                     ELSE st IN ('aborted', 'failed', 'promoted', 'promoting') END;
            -- the endpoints, when given, must be usable as routes
            IF valid AND st = 'promoted' THEN
                valid := NOT EXISTS (
                    SELECT FROM (VALUES ('endpoint'), ('mirror_endpoint')) k (key)
                     WHERE j ? k.key
                       AND (jsonb_typeof(j -> k.key) <> 'string' OR j ->> k.key = ''
                            OR length(j ->> k.key) > 1000 OR j ->> k.key ~ '[[:cntrl:]]'));
            END IF;
        END IF;
        IF valid THEN
            last := format('"%s" (HTTP %s)', st, p_status);
            det := CASE WHEN j ? 'detail' THEN left(CASE jsonb_typeof(j -> 'detail')
                                                    WHEN 'string' THEN j ->> 'detail'
                                                    ELSE (j -> 'detail')::text END, 1000) END;
        ELSE
            st := NULL;
            last := format('an answer that is not the contract''s JSON (HTTP %s)', p_status);
            det := left(p_body, 500);
        END IF;
    ELSIF p_ok THEN
        last := format('HTTP %s', p_status);
        det := left(p_body, 500);
    ELSE
        last := format('no answer: %s', p_error);
        det := p_detail;
    END IF;

    UPDATE driftmirror.promotion SET actuator_detail = coalesce(det, actuator_detail) WHERE id = p_id;
    UPDATE driftmirror.promotion_step s
       SET details = s.details || jsonb_build_object('last', last, 'last_status', CASE WHEN p_ok THEN p_status END)
     WHERE s.promotion_id = p_id AND s.step = v_step AND s.outcome = 'running';

    IF p_action = 'promote' THEN
        IF st = 'promoted' THEN
            PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'ok', NULL,
                                                format('the actuator promoted the mirror (HTTP %s)', p_status));
            PERFORM driftmirror._promotion_step(p_id, 'flip', 'running');
            flip := driftmirror._promotion_actuator_flip(p_id, j);
            PERFORM driftmirror._promotion_step(p_id, 'flip', 'ok', NULL, NULL, flip);
            PERFORM driftmirror._promotion_finish(p_id, 'done');
            RETURN 'done';
        ELSIF st = 'failed' OR (p_ok AND p_status BETWEEN 400 AND 499) THEN
            PERFORM driftmirror._promotion_step(p_id, 'actuator_switch', 'refused', 'refused',
                format('the actuator refused the promotion: %s to %s; by the contract nothing changed',
                       last, what));
            PERFORM driftmirror._promotion_finish(p_id, 'refused',
                format('the actuator refused the promotion of resource "%s" of group "%s" (%s)',
                       p.resource_name, p.group_name, last),
                '55000');
            RETURN 'refused';
        END IF;
        RETURN 'retry';         -- promoting, 5xx, no answer, not the contract
    END IF;

    -- the abort
    IF st IN ('aborted', 'failed') THEN
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'ok', 'rolled_back',
            format('the actuator confirmed the abort (%s): nothing changed', last));
        PERFORM driftmirror._promotion_finish(p_id, 'rolled_back',
            format('promotion of resource "%s" of group "%s" timed out in step actuator_switch; the actuator confirmed the abort and nothing changed',
                   p.resource_name, p.group_name),
            '57014');
        RETURN 'rolled_back';
    ELSIF st = 'promoted' THEN
        -- too late: the switch happened; the catalog follows the actuator
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'failed', NULL,
            format('too late: the actuator had promoted the mirror already (HTTP %s); the routes follow it',
                   p_status));
        PERFORM driftmirror._promotion_step(p_id, 'flip', 'running');
        flip := driftmirror._promotion_actuator_flip(p_id, j);
        PERFORM driftmirror._promotion_step(p_id, 'flip', 'ok', NULL, NULL, flip);
        PERFORM driftmirror._promotion_finish(p_id, 'done',
            'promote_timeout passed, but the actuator had promoted the mirror: finished');
        RETURN 'done';
    ELSIF p_ok AND p_status BETWEEN 400 AND 499 THEN
        PERFORM driftmirror._promotion_step(p_id, 'abort', 'failed', NULL,
            format('the actuator refused the abort: %s to %s; its state is unknown', last, what));
        PERFORM driftmirror._promotion_finish(p_id, 'failed',
            format('promotion of resource "%s" of group "%s" timed out in step actuator_switch and the actuator refused the abort (%s); its state is unknown',
                   p.resource_name, p.group_name, last),
            '57014');
        RETURN 'failed';
    END IF;
    RETURN 'retry';             -- promoting, 5xx, no answer, not the contract
END
$$;

-- _promotion_actuator_recover: a recovery worker took over an actuator
-- promotion whose driver died.  In guardrails nothing was sent: it ends
-- rolled back.  Otherwise the step is resumed (the next request reuses the
-- key; past the deadline _promotion_actuator_next aborts).
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_recover(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p driftmirror.promotion;
BEGIN
    SELECT * INTO p FROM driftmirror.promotion WHERE id = p_id FOR UPDATE;
    IF p.state = 'guardrails' THEN
        UPDATE driftmirror.promotion_step
           SET outcome = 'interrupted', finished_at = clock_timestamp(),
               reason = 'the promotion was interrupted here'
         WHERE promotion_id = p_id AND outcome = 'running';
        PERFORM driftmirror._promotion_finish(p_id, 'rolled_back',
            'interrupted before the actuator was asked (driver, session or node failure); nothing changed',
            '57P01');
    ELSIF p.state IN ('switching', 'aborting') THEN
        -- a new step row (the old one ends 'interrupted'), same key
        PERFORM driftmirror._promotion_step(p_id,
            CASE p.state WHEN 'switching' THEN 'actuator_switch' ELSE 'abort' END,
            'running', NULL, 'resumed after an interruption',
            (SELECT jsonb_build_object('key', s.details -> 'key', 'requests', 0)
               FROM driftmirror.promotion_step s
              WHERE s.promotion_id = p_id AND s.outcome = 'running'));
    END IF;
END
$$;

-- _promotion_actuator_result: what dm_promote reports for an ended
-- actuator promotion: its state, the new primary, and for a failure the
-- error, its SQLSTATE and a detail (the reason of the step that failed,
-- and the actuator's last words)
CREATE OR REPLACE FUNCTION driftmirror._promotion_actuator_result(p_id bigint)
RETURNS TABLE (state text, new_primary text, error text, error_sqlstate text, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.state, p.new_primary, p.error, p.error_sqlstate,
           concat_ws(E'\n',
                     (SELECT s.reason FROM driftmirror.promotion_step s
                       WHERE s.promotion_id = p.id AND s.outcome IN ('refused', 'failed')
                       ORDER BY s.seq DESC LIMIT 1),
                     CASE WHEN p.state <> 'done' AND p.actuator_detail IS NOT NULL
                          THEN format('The actuator said: %s', p.actuator_detail) END)
      FROM driftmirror.promotion p
     WHERE p.id = p_id
$$;
