-- mirror_actuator.sql: mirrors of cache, app, web and service resources
-- through their HTTP actuator: bad input of the API, and the state machine
-- driven by hand with the actuator's answers (the worker of this test
-- instance watches another database, so it sends nothing).
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT dm_create_group('ag', '{}') > 0 AS created;
SELECT dm_add_resource('ag', 'cache', 'cache', 'http://127.0.0.1:1/actuator/') > 0 AS added;
SELECT dm_add_resource('ag', 'web', 'web', 'http://127.0.0.1:1/web',
                       options => '{"bearer_token_file": "web_token"}') > 0 AS added;
SELECT dm_add_resource('ag', 'db', 'postgres', 'host=127.0.0.1 port=1 dbname=app') > 0 AS added;

-- the actuator's token: a plain file name, only for resources reached over HTTP
SELECT dm_add_resource('ag', 'x', 'app', 'http://127.0.0.1:1/x', options => '{"bearer_token_file": "../etc/passwd"}');
SELECT dm_add_resource('ag', 'x', 'app', 'http://127.0.0.1:1/x', options => '{"bearer_token_file": "/etc/passwd"}');
SELECT dm_add_resource('ag', 'x', 'app', 'http://127.0.0.1:1/x', options => '{"bearer_token_file": ".hidden"}');
SELECT dm_add_resource('ag', 'x', 'app', 'http://127.0.0.1:1/x', options => '{"bearer_token_file": 42}');
SELECT dm_add_resource('ag', 'x', 'postgres', 'host=127.0.0.1 dbname=x', options => '{"bearer_token_file": "tok"}');
SELECT dm_alter_resource('ag', 'web', options => '{"bearer_token_file": "a/b"}');
SELECT dm_alter_resource('ag', 'db', options => '{"bearer_token_file": "tok"}');
SELECT count(*) AS resources FROM dm_resources WHERE group_name = 'ag';

-- bad mirror options and endpoints
SELECT dm_create_mirror('ag', 'cache', NULL, '{"fence": true}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"publisher_endpoint": "host=x"}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"actuator_timeout": "500 ms"}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"actuator_timeout": "2 minutes"}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"max_backoff": 0}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"actuator_options": [1, 2]}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"actuator_options": "size=large"}');
SELECT dm_create_mirror('ag', 'cache', NULL, '{"max_attempts": 0}');
SELECT dm_create_mirror('ag', 'cache', 'ftp://127.0.0.1/cache');
SELECT dm_create_mirror('ag', 'cache', 'http://user:secret@127.0.0.1:2/cache');
SELECT dm_create_mirror('ag', 'cache', 'http://127.0.0.1:1/actuator/');
SELECT dm_create_mirror('ag', 'db', 'host=127.0.0.1 port=2 dbname=app', '{"actuator_timeout": "5s"}');
SELECT dm_create_mirror('ag', 'db');
SELECT count(*) AS mirrors FROM dm_mirror_status WHERE group_name = 'ag';

-- a good one: the actuator picks the mirror's endpoint
SELECT dm_create_mirror('ag', 'cache', options => '{"max_attempts": 4, "actuator_timeout": "3s", "actuator_options": {"size": "large"}}') > 0 AS created;
SELECT dm_create_mirror('ag', 'cache');
SELECT s.kind, s.state, s.state_reason, s.mirror_endpoint,
       s.actuator_name = format('dm_%s_%s', g.id, r.id) AS named, s.attempts, s.actuator_state
  FROM dm_mirror_status s
  JOIN resource_group g ON g.name = s.group_name
  JOIN resource r ON r.group_id = g.id AND r.name = s.resource_name
 WHERE s.group_name = 'ag';

-- the create request, recorded as pending before it is sent
CREATE TEMP TABLE req AS
SELECT * FROM driftmirror._mirror_next((SELECT id FROM dm_mirror_status WHERE resource_name = 'cache' AND group_name = 'ag'), now());
SELECT action, conninfo, sql, label, http_method, http_url, http_key ~ '^dm-[0-9a-f]{32}-create-0$' AS key_ok,
       http_token_file, http_timeout_ms,
       http_body::jsonb - 'mirror' AS body, http_body::jsonb ->> 'mirror' LIKE 'dm\_%' AS body_names_mirror
  FROM req;
SELECT pending_action FROM dm_mirror_status WHERE group_name = 'ag';

-- answers that are not the contract's: recorded, backed off, retried
CREATE FUNCTION pg_temp.answer(p_action text, p_ok boolean, p_status integer, p_body text,
                               p_error text DEFAULT NULL)
RETURNS TABLE (state text, attempts integer, backed_off boolean, last_error text,
               last_error_detail text, state_reason text)
LANGUAGE plpgsql AS $$
DECLARE
    mid bigint := (SELECT id FROM driftmirror.mirror WHERE group_name = 'ag' AND resource_name = 'cache');
BEGIN
    PERFORM driftmirror._mirror_done(mid, p_action, p_ok, p_body, NULL, p_error,
                                     CASE WHEN NOT p_ok THEN 'Failed to connect to 127.0.0.1 port 1' END,
                                     p_status);
    -- names carry ids, which depend on the tests run before: hide them
    RETURN QUERY SELECT m.state, m.attempts, m.retry_at > now(),
                        regexp_replace(m.last_error, 'dm_[0-9]+_[0-9]+', 'dm_G_R', 'g'),
                        m.last_error_detail,
                        regexp_replace(m.state_reason, 'dm_[0-9]+_[0-9]+', 'dm_G_R', 'g')
                   FROM driftmirror.mirror m WHERE m.id = mid;
END
$$;
SELECT * FROM pg_temp.answer('actuator_create', true, 200, '<html>not json</html>');
SELECT * FROM pg_temp.answer('actuator_create', true, 200, '{"state": "sleeping"}');
SELECT * FROM pg_temp.answer('actuator_create', true, 500, 'internal error');
-- while backed off, the worker has nothing to do for it
SELECT count(*) AS due FROM driftmirror._mirror_due((SELECT id FROM resource_group WHERE name = 'ag'));
SELECT count(*) AS next FROM driftmirror._mirror_next((SELECT id FROM driftmirror.mirror WHERE group_name = 'ag'), now());
UPDATE driftmirror.mirror SET retry_at = now() - interval '1 second' WHERE group_name = 'ag';
SELECT http_key = (SELECT http_key FROM req) AS same_key FROM driftmirror._mirror_next((SELECT id FROM driftmirror.mirror WHERE group_name = 'ag'), now());

-- accepted: provisioning, then ready (with the endpoint and lag it reports)
SELECT * FROM pg_temp.answer('actuator_create', true, 202, '{"state": "creating", "detail": "2 of 3 pods"}');
SELECT actuator_state, actuator_detail, step, pending_action FROM dm_mirror_status WHERE group_name = 'ag';
SELECT action, http_method, regexp_replace(http_url, 'dm_[0-9]+_[0-9]+', 'dm_G_R') AS http_url, http_body, http_key
  FROM driftmirror._mirror_next((SELECT id FROM driftmirror.mirror WHERE group_name = 'ag'), 'infinity');
SELECT * FROM pg_temp.answer('actuator_status', true, 200, '{"state": "ready", "endpoint": "redis://10.0.0.7:6379", "lag_seconds": 0.25}');
SELECT mirror_endpoint, lag_seconds, actuator_state FROM dm_mirror_status WHERE group_name = 'ag';
SELECT metric, value FROM dm_metrics WHERE group_name = 'ag' ORDER BY metric;
-- numbers beyond a double are no figures: ignored, the answer recorded
SELECT * FROM pg_temp.answer('actuator_status', true, 200, '{"state": "ready", "lag_seconds": 1e400, "lag_bytes": 1e400}');
SELECT state, lag_seconds, actuator_state FROM dm_mirror_status WHERE group_name = 'ag';
SELECT metric, count(*) AS samples, max(value) FROM dm_metrics WHERE group_name = 'ag' GROUP BY metric ORDER BY metric;
SELECT kind, regexp_replace(reason, 'dm_[0-9]+_[0-9]+', 'dm_G_R') AS reason
  FROM dm_actions WHERE group_name = 'ag' AND kind LIKE 'mirror%' ORDER BY id;

-- while mirroring, a failed poll is recorded but does not fail the mirror
SELECT * FROM pg_temp.answer('actuator_status', false, NULL, NULL, 'could not reach node "ag/cache actuator"');
SELECT * FROM pg_temp.answer('actuator_status', true, 503, 'busy');
SELECT * FROM pg_temp.answer('actuator_status', true, 200, '{"state": "ready"}');
-- an actuator that lost the mirror is asked again, with a new key
SELECT * FROM pg_temp.answer('actuator_status', true, 404, '');
SELECT http_key ~ '^dm-[0-9a-f]{32}-create-1$' AS new_key
  FROM driftmirror._mirror_next((SELECT id FROM driftmirror.mirror WHERE group_name = 'ag'), now());
-- an existing mirror (409) is polled
SELECT * FROM pg_temp.answer('actuator_create', true, 409, '{"error": "exists"}');
-- the actuator reports failure: the mirror fails, the detail only for admins
SELECT * FROM pg_temp.answer('actuator_status', true, 200, '{"state": "failed", "detail": "no capacity in zone b"}');

-- the monitoring role sees neither the token file nor endpoints nor details
CREATE ROLE dm_regress_amon IN ROLE driftmirror_monitor;
SET ROLE dm_regress_amon;
SELECT name, options FROM dm_resources WHERE group_name = 'ag' ORDER BY name;
SELECT state, last_error, last_error_detail, actuator_detail, mirror_endpoint FROM dm_mirror_status WHERE group_name = 'ag';
RESET ROLE;
DROP ROLE dm_regress_amon;
SELECT name, options FROM dm_resources WHERE group_name = 'ag' ORDER BY name;

-- drop: the actuator is asked to delete it, through the cleanup queue
SELECT dm_drop_mirror('ag', 'cache');
SELECT node, what, object_name LIKE 'dm\_%' AS named, attempts FROM dm_mirror_cleanups WHERE group_name = 'ag';
SELECT conninfo, sql, label, http_method, http_url ~ '^http://127.0.0.1:1/actuator/mirrors/dm_[0-9]+_[0-9]+$' AS url_ok,
       http_key ~ '^dm-[0-9a-f]{32}-drop$' AS key_ok, http_timeout_ms
  FROM driftmirror._cleanup_due() WHERE label LIKE 'ag/%';
SELECT dm_create_mirror('ag', 'cache');
SELECT driftmirror._cleanup_done(id, true, NULL, NULL, NULL, 500, 'oops') FROM driftmirror.mirror_cleanup WHERE group_name = 'ag';
SELECT attempts, regexp_replace(last_error, 'dm_[0-9]+_[0-9]+', 'dm_G_R') AS last_error, last_error_detail,
       next_attempt_at > now() AS backed_off
  FROM dm_mirror_cleanups WHERE group_name = 'ag';
SELECT state, regexp_replace(reason, 'dm_[0-9]+_[0-9]+', 'dm_G_R') AS reason FROM dm_status WHERE group_name = 'ag';
SELECT driftmirror._cleanup_done(id, true, NULL, NULL, NULL, 404, '') FROM driftmirror.mirror_cleanup WHERE group_name = 'ag';
SELECT count(*) AS cleanups FROM dm_mirror_cleanups WHERE group_name = 'ag';

-- a mirror the actuator was never asked for leaves nothing to delete
SELECT dm_create_mirror('ag', 'web', 'https://web-mirror.example.com/') > 0 AS created;
SELECT mirror_endpoint FROM dm_mirror_status WHERE resource_name = 'web';
SELECT dm_drop_mirror('ag', 'web');
SELECT count(*) AS cleanups FROM dm_mirror_cleanups WHERE group_name = 'ag';

-- max_attempts failures in a row while creating: failed
SELECT dm_create_mirror('ag', 'cache', options => '{"max_attempts": 2}') > 0 AS created;
SELECT * FROM pg_temp.answer('actuator_create', false, NULL, NULL, 'node "ag/cache actuator" did not answer within 3000 ms');
SELECT * FROM pg_temp.answer('actuator_create', true, 500, '');
SELECT count(*) AS due FROM driftmirror._mirror_due((SELECT id FROM resource_group WHERE name = 'ag'));

-- dm_promote switches actuator mirrors too (here it stops at the control
-- database check: the promotion itself runs in TAP 055)
SELECT * FROM dm_promote('ag');

-- what only postgres mirrors have: refused for the others, with 42809
\set VERBOSITY sqlstate
SELECT dm_sync_sequences('ag', 'cache');
SELECT * FROM dm_mirror_verify('ag', 'cache');
SELECT dm_route_multihost('ag', 'cache');
\set VERBOSITY terse

-- the action log keeps no actuator option of a mirror (they may hold
-- anything the actuator needs); it says one was given
SELECT inputs -> 'options' ? 'actuator_options' AS logged, inputs ->> 'actuator_options_set' AS given
  FROM dm_actions WHERE kind = 'create_mirror' AND resource_name = 'cache';

-- the mirror metric names
SELECT name, unit FROM dm_metric_names WHERE name LIKE 'mirror.%' ORDER BY name;

SELECT dm_drop_group('ag', true);
SELECT count(*) AS cleanups FROM dm_mirror_cleanups WHERE group_name = 'ag';
SELECT driftmirror._cleanup_done(id, true, NULL, NULL, NULL, 204, '') FROM driftmirror.mirror_cleanup WHERE group_name = 'ag';
