-- 25_error_labels.sql: what the monitor role is told about an error.
--
-- Errors of remote nodes and HTTP servers come as raw text (libpq, libcurl,
-- the remote server's own message) that may name hosts, ports, socket
-- paths, URLs and file names.  That text is kept for driftmirror_admin; the
-- views give every other reader a label built from names driftmirror owns
-- (group, resource, node role, step) and the SQLSTATE, never the raw text.

-- _error_label: "<class> (SQLSTATE <code>)" for a SQLSTATE; 'error' for
-- none.  Pure: the views call it with the reader's rights, so the monitor
-- may execute it (99_privileges.sql).
CREATE FUNCTION driftmirror._error_label(p_sqlstate text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_sqlstate IS NULL OR p_sqlstate !~ '^[0-9A-Z]{5}$' THEN 'error'
           ELSE format('%s (SQLSTATE %s)',
                CASE left(p_sqlstate, 2)
                    WHEN '08' THEN 'connection failed'
                    WHEN '28' THEN 'authentication failed'
                    WHEN '3D' THEN 'database does not exist'
                    WHEN '42' THEN 'statement refused (syntax or access rule)'
                    WHEN '53' THEN 'insufficient resources'
                    WHEN '54' THEN 'program limit exceeded'
                    WHEN '55' THEN 'object not in the required state'
                    WHEN '57' THEN 'canceled or shut down (timeout, admin action)'
                    WHEN '58' THEN 'system or remote service error'
                    WHEN '22' THEN 'invalid data'
                    WHEN '23' THEN 'constraint violated'
                    WHEN '25' THEN 'invalid transaction state'
                    WHEN '40' THEN 'transaction rolled back'
                    WHEN '0A' THEN 'feature not supported'
                    WHEN 'P0' THEN 'error raised by a procedure'
                    WHEN 'XX' THEN 'internal error'
                    ELSE 'error'
                END, p_sqlstate)
           END
$$;
COMMENT ON FUNCTION driftmirror._error_label(text) IS
    'A label for an error: its SQLSTATE class in words and the code; what non-admins see instead of raw error text';
