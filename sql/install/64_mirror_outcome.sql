-- 64_mirror_outcome.sql: the outcome of a mirror action the worker ran:
-- _mirror_done (postgres actions and the entry point the worker calls) and
-- _mirror_http_done (HTTP actuator requests): state changes, attempts,
-- back-off.
--
-- The mirror catalog and the worker protocol: 60_mirror_catalog.sql.

-- _mirror_http_done: the outcome of an HTTP actuator request (see the
-- contract in docs/mirrors.md, "HTTP actuator contract").  p_ok: an HTTP
-- answer arrived (p_status, p_body); otherwise p_error / p_detail say why
-- not.  A failure counts one attempt and backs the mirror off (2^(n-1)
-- seconds, at most max_backoff); while the mirror is not made yet
-- (creating, provisioning), max_attempts failures in a row mark it failed.
-- An actuator that no longer knows the mirror (404 or 410 to a status poll)
-- is asked to create it again under a new idempotency key (generation + 1).
CREATE OR REPLACE FUNCTION driftmirror._mirror_http_done(m driftmirror.mirror, p_action text, p_ok boolean,
                                              p_status integer, p_body text,
                                              p_error text, p_detail text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    eff     jsonb := driftmirror._effective_options('mirror', m.options);
    maxa    integer := (eff ->> 'max_attempts')::integer;
    what    text := CASE p_action WHEN 'actuator_create' THEN 'POST /mirrors'
                                  ELSE format('GET /mirrors/%s', m.actuator_name) END;
    j       jsonb;
    st      text;
    err     text;
    errdet  text;
    sqlst   text := '58000';
    lost    boolean := false;
    n       integer;
    det     text;
BEGIN
    -- a status answer that overlapped a promotion of the mirror describes
    -- the mirror as it was before the switch: dropped, the next step asks
    -- again
    IF p_action = 'actuator_status' AND m.pending_since IS NOT NULL
       AND EXISTS (SELECT FROM driftmirror.promotion p
                    WHERE p.mirror_id = m.id
                      AND (p.finished_at IS NULL OR p.finished_at >= m.pending_since)) THEN
        UPDATE driftmirror.mirror SET pending_since = NULL WHERE id = m.id;
        RETURN;
    END IF;
    IF NOT p_ok THEN
        err := p_error;
        errdet := p_detail;
        sqlst := '08000';
    ELSIF p_action = 'actuator_status' AND p_status IN (404, 410) THEN
        lost := true;
        err := format('the actuator does not know mirror %s (HTTP %s to %s); creating it again',
                      m.actuator_name, p_status, what);
    ELSIF p_action = 'actuator_create' AND p_status = 409 THEN
        st := 'exists';
    ELSIF p_status NOT IN (200, 201, 202) THEN
        err := format('the actuator answered HTTP %s to %s', p_status, what);
        errdet := left(p_body, 500);
    ELSE
        BEGIN
            j := p_body::jsonb;
        EXCEPTION WHEN data_exception THEN
            j := NULL;
        END;
        IF jsonb_typeof(j) = 'object' AND jsonb_typeof(j -> 'state') = 'string' THEN
            st := j ->> 'state';
        END IF;
        IF st IS NULL OR st NOT IN ('creating', 'ready', 'failed') THEN
            st := NULL;
            err := format('the actuator''s answer to %s (HTTP %s) is not a JSON object with "state": "creating", "ready" or "failed"',
                          what, p_status);
            errdet := left(p_body, 500);
        END IF;
    END IF;

    IF err IS NOT NULL THEN
        -- a mirror lost after it was made starts counting afresh
        n := CASE WHEN lost AND m.state = 'mirroring' THEN 1 ELSE m.attempts + 1 END;
        UPDATE driftmirror.mirror
           SET attempts = n,
               retry_at = CASE WHEN lost THEN NULL
                               ELSE clock_timestamp()
                                    + least(make_interval(secs => power(2, least(n - 1, 20))),
                                            driftmirror._opt_interval(eff -> 'max_backoff')) END,
               mirror_checked_at = CASE WHEN p_action = 'actuator_status' THEN clock_timestamp()
                                        ELSE mirror_checked_at END,
               last_error = err, last_error_detail = errdet, last_error_sqlstate = sqlst,
               last_error_at = clock_timestamp()
         WHERE id = m.id;
        IF m.state IN ('creating', 'provisioning') AND n >= maxa THEN
            PERFORM driftmirror._mirror_set_state(m, 'failed',
                format('%s failed %s time(s) in a row: %s', what, n, err));
            RETURN;
        END IF;
        IF lost THEN
            UPDATE driftmirror.mirror
               SET actuator_generation = actuator_generation + 1, step = 'start',
                   actuator_state = NULL
             WHERE id = m.id;
            PERFORM driftmirror._mirror_set_state(m, 'creating', err);
        ELSIF m.state = 'mirroring' THEN
            UPDATE driftmirror.mirror
               SET state_reason = format('the actuator could not be asked for the mirror''s state (%s failure(s) in a row): %s', n, err)
             WHERE id = m.id;
        ELSE
            UPDATE driftmirror.mirror
               SET state_reason = format('%s failed (attempt %s of %s), will retry: %s', what, n, maxa, err)
             WHERE id = m.id;
        END IF;
        RETURN;
    END IF;

    -- an answer of the contract
    det := CASE WHEN j ? 'detail' THEN left(CASE jsonb_typeof(j -> 'detail') WHEN 'string' THEN j ->> 'detail'
                                                  ELSE (j -> 'detail')::text END, 1000) END;
    UPDATE driftmirror.mirror
       SET step = CASE WHEN p_action = 'actuator_create' THEN 'actuator_create' ELSE step END,
           pending_action = NULL, pending_since = NULL, attempts = 0, retry_at = NULL,
           mirror_checked_at = clock_timestamp(),
           actuator_state = coalesce(nullif(st, 'exists'), actuator_state),
           actuator_detail = CASE WHEN j IS NOT NULL THEN det ELSE actuator_detail END,
           mirror_endpoint = CASE WHEN jsonb_typeof(j -> 'endpoint') = 'string'
                                  THEN left(j ->> 'endpoint', 1000) ELSE mirror_endpoint END,
           lag_seconds = coalesce(driftmirror._mirror_json_float8(j -> 'lag_seconds'), lag_seconds),
           lag_bytes = CASE WHEN jsonb_typeof(j -> 'lag_bytes') = 'number'
                                 AND (j ->> 'lag_bytes')::numeric BETWEEN 0 AND 1e18
                            THEN (j ->> 'lag_bytes')::numeric::bigint ELSE lag_bytes END,
           last_error = CASE WHEN st = 'failed' THEN 'the actuator reports that the mirror failed' END,
           last_error_detail = CASE WHEN st = 'failed' THEN det END,
           last_error_sqlstate = CASE WHEN st = 'failed' THEN '58000' END,
           last_error_at = CASE WHEN st = 'failed' THEN clock_timestamp() ELSE last_error_at END
     WHERE id = m.id;
    IF p_action = 'actuator_create' THEN
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_step',
            format('the actuator accepted the mirror %s (%s)', m.actuator_name,
                   CASE st WHEN 'exists' THEN 'it exists already' ELSE st END),
            jsonb_build_object('step', p_action, 'status', p_status, 'generation', m.actuator_generation));
    END IF;
    IF j IS NOT NULL AND (j ? 'lag_seconds' OR j ? 'lag_bytes') THEN
        PERFORM driftmirror._mirror_store_metrics(m.resource_id, jsonb_build_object(
            'mirror.lag_seconds', j -> 'lag_seconds', 'mirror.lag_bytes', j -> 'lag_bytes'));
    END IF;

    CASE st
    WHEN 'failed' THEN
        PERFORM driftmirror._mirror_set_state(m, 'failed', 'the actuator reports that the mirror failed');
    WHEN 'ready' THEN
        PERFORM driftmirror._mirror_set_state(m, 'mirroring', 'the actuator reports the mirror ready');
    ELSE                        -- creating, exists
        PERFORM driftmirror._mirror_set_state(m, 'provisioning',
            CASE st WHEN 'exists' THEN 'the actuator has the mirror already; waiting until it is ready'
                    ELSE 'the actuator is creating the mirror' END);
    END CASE;
END
$$;

-- _mirror_done: record the outcome of the action _mirror_next returned
-- (p_status: the HTTP status of an actuator's answer, p_result its body;
-- status reads: p_latency_ms the node's latency sample, p_probe_error why
-- the probe gave none, p_read_started when the read began)
CREATE OR REPLACE FUNCTION driftmirror._mirror_done(p_mirror_id bigint, p_action text, p_ok boolean,
                                         p_result text, p_sqlstate text, p_error text,
                                         p_detail text DEFAULT NULL, p_status integer DEFAULT NULL,
                                         p_latency_ms double precision DEFAULT NULL,
                                         p_probe_error text DEFAULT NULL,
                                         p_read_started timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m   driftmirror.mirror;
    maxa integer;
BEGIN
    SELECT * INTO m FROM driftmirror.mirror WHERE id = p_mirror_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;                 -- dropped meanwhile: the cleanup queue has it
    END IF;

    IF p_action IN ('actuator_create', 'actuator_status') THEN
        PERFORM driftmirror._mirror_http_done(m, p_action, p_ok, p_status, p_result, p_error, p_detail);
        RETURN;
    END IF;

    IF p_action IN ('status_primary', 'status_mirror') THEN
        IF p_ok THEN
            PERFORM driftmirror._mirror_record_status(m, p_action, p_result::jsonb);
            PERFORM driftmirror._mirror_record_latency(m.id, p_action, p_latency_ms, p_probe_error,
                                                       p_read_started);
        ELSE
            UPDATE driftmirror.mirror
               SET primary_checked_at = CASE WHEN p_action = 'status_primary' THEN clock_timestamp() ELSE primary_checked_at END,
                   mirror_checked_at = CASE WHEN p_action = 'status_mirror' THEN clock_timestamp() ELSE mirror_checked_at END,
                   last_error = p_error, last_error_detail = p_detail,
                   last_error_sqlstate = p_sqlstate, last_error_at = clock_timestamp()
             WHERE id = m.id;
        END IF;
        RETURN;
    END IF;

    IF p_ok THEN
        UPDATE driftmirror.mirror
           SET step = p_action, pending_action = NULL, pending_since = NULL, attempts = 0,
               last_error = NULL, last_error_detail = NULL, last_error_sqlstate = NULL
         WHERE id = m.id;
        PERFORM driftmirror._log_action(m.group_name, m.resource_name, 'mirror_step',
                                        format('created %s', p_action),
                                        jsonb_build_object('step', p_action));
        RETURN;
    END IF;

    maxa := (driftmirror._effective_options('mirror', m.options) ->> 'max_attempts')::integer;
    UPDATE driftmirror.mirror
       SET attempts = attempts + 1, last_error = p_error, last_error_detail = p_detail,
           last_error_sqlstate = p_sqlstate, last_error_at = clock_timestamp()
     WHERE id = m.id;
    IF m.attempts + 1 >= maxa THEN
        PERFORM driftmirror._mirror_set_state(m, 'failed',
            format('step %s failed %s time(s): %s', p_action, m.attempts + 1, p_error));
    ELSE
        UPDATE driftmirror.mirror
           SET state_reason = format('step %s failed (attempt %s of %s), will retry: %s',
                                     p_action, m.attempts + 1, maxa, p_error)
         WHERE id = m.id;
    END IF;
END
$$;
