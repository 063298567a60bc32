-- 36_endpoint_approvals.sql: who may name an endpoint (docs/operations.md,
-- "Security model"): the table endpoint_approval, the check
-- _check_endpoint_delegated that the resource, mirror and metric-source
-- APIs call, dm_approve_endpoint, dm_revoke_endpoint and the view
-- dm_endpoint_approvals.  New in 0.2.0: the update from 0.1.0 pastes this
-- file whole (sql/upgrade/0.1.0--0.2.0/20_endpoint_approvals.include).
--
-- The worker connects to endpoints with the server's own credentials (the
-- passfile of its operating-system user, peer or trust authentication on
-- its own socket) and sends an HTTP endpoint the bearer token of the file
-- its resource names.  So an endpoint is a delegation of those credentials:
-- a superuser may name any endpoint, and every endpoint a superuser sets is
-- recorded in endpoint_approval; a non-superuser (driftmirror_admin) may
-- name, and make driftmirror use, only endpoints recorded there.  The
-- check is by exact text.  Covered: postgres resource endpoints, mirror
-- endpoints and publisher_endpoint, HTTP endpoints of resources that carry a
-- bearer_token_file; dm_create_mirror, dm_sync_sequences and
-- dm_mirror_verify check both endpoints of the mirror they use.

-- _caller_is_superuser: the calling role (outside SECURITY DEFINER) is a
-- superuser
CREATE FUNCTION driftmirror._caller_is_superuser()
RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'driftmirror_caller_is_superuser';

CREATE TABLE driftmirror.endpoint_approval (
    endpoint     text PRIMARY KEY,
    approved_by  name NOT NULL,
    approved_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    via          text NOT NULL
);
COMMENT ON TABLE driftmirror.endpoint_approval IS
    'Endpoints a superuser approved (dm_approve_endpoint) or set: the only ones driftmirror_admin may name';
SELECT pg_catalog.pg_extension_config_dump('driftmirror.endpoint_approval', '');

-- _check_endpoint_delegated: raise insufficient_privilege unless the caller
-- is a superuser or the endpoint is approved.  p_via: when a superuser sets
-- the endpoint, record it as approved (by that function).
CREATE FUNCTION driftmirror._check_endpoint_delegated(p_what text, p_endpoint text,
                                                      p_via text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF driftmirror._caller_is_superuser() THEN
        IF p_via IS NOT NULL THEN
            INSERT INTO driftmirror.endpoint_approval (endpoint, approved_by, via)
            VALUES (p_endpoint, session_user, p_via)
            ON CONFLICT (endpoint) DO NOTHING;
        END IF;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM driftmirror.endpoint_approval a WHERE a.endpoint = p_endpoint) THEN
        RAISE EXCEPTION 'permission denied to use this % without a superuser''s approval', p_what
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The server reaches it with its own credentials (its passfile, peer or trust authentication, or a bearer token file); only endpoints a superuser set or approved may be named by other roles.',
                  HINT = 'Ask a superuser to run driftmirror.dm_approve_endpoint() with exactly this text.';
    END IF;
END
$$;

CREATE FUNCTION driftmirror.dm_approve_endpoint(endpoint text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_endpoint ALIAS FOR $1;
BEGIN
    IF NOT driftmirror._caller_is_superuser() THEN
        RAISE EXCEPTION 'only a superuser may approve endpoints'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_endpoint IS NULL THEN
        RAISE EXCEPTION 'endpoint must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- a URL (the HTTP rules) unless it is a postgres URI (a conninfo)
    PERFORM driftmirror._check_endpoint(CASE WHEN p_endpoint ~ '^[A-Za-z][A-Za-z0-9+.-]*://'
                                              AND p_endpoint !~ '^postgres(ql)?://'
                                             THEN 'web' ELSE 'postgres' END,
                                        p_endpoint);
    INSERT INTO driftmirror.endpoint_approval (endpoint, approved_by, via)
    VALUES (p_endpoint, session_user, 'dm_approve_endpoint')
    ON CONFLICT ON CONSTRAINT endpoint_approval_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- not tied to a group: group_name ''
    PERFORM driftmirror._log_action('', NULL, 'approve_endpoint', 'dm_approve_endpoint');
    RETURN true;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_approve_endpoint(text) IS
    'Superusers: let driftmirror_admin name this endpoint (exact text); returns false if it was approved already';

CREATE FUNCTION driftmirror.dm_revoke_endpoint(endpoint text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_endpoint ALIAS FOR $1;
BEGIN
    IF NOT driftmirror._caller_is_superuser() THEN
        RAISE EXCEPTION 'only a superuser may revoke endpoint approvals'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM driftmirror.endpoint_approval a WHERE a.endpoint = p_endpoint;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM driftmirror._log_action('', NULL, 'revoke_endpoint', 'dm_revoke_endpoint');
    RETURN true;
END
$$;
COMMENT ON FUNCTION driftmirror.dm_revoke_endpoint(text) IS
    'Superusers: withdraw an approval; non-superusers can no longer name the endpoint nor create, verify or sync mirrors through it';

CREATE VIEW driftmirror.dm_endpoint_approvals AS
SELECT CASE WHEN pg_catalog.pg_has_role(current_user, 'driftmirror_admin', 'USAGE')
            THEN a.endpoint END AS endpoint,
       a.approved_by, a.approved_at, a.via
  FROM driftmirror.endpoint_approval a;
COMMENT ON VIEW driftmirror.dm_endpoint_approvals IS
    'Endpoints driftmirror_admin may name; endpoint is null unless the reader is a driftmirror_admin';
