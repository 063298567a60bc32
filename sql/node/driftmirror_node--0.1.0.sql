-- driftmirror_node: node-side controls of driftmirror, created by
-- dm_create_mirror in the application databases it manages (the primary's
-- and the mirror's).  Functions only, no tables: a FOR ALL TABLES
-- publication never picks anything of it up.  The fence itself lives in the
-- preloaded library and works without this extension; these functions are
-- how driftmirror (or a person) sets and lifts it over libpq.
\echo Use "CREATE EXTENSION driftmirror_node" to load this file. \quit

-- fence_set: fence the current database ('mirror' or 'switchover');
-- immediate, not rolled back with the transaction; returns the previous mode
CREATE FUNCTION driftmirror_node.fence_set(mode text)
RETURNS text
LANGUAGE C STRICT VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'driftmirror_fence_set';

-- fence_clear: lift the fence of the current database; returns the previous mode
CREATE FUNCTION driftmirror_node.fence_clear()
RETURNS text
LANGUAGE C STRICT VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'driftmirror_fence_clear';

-- fence_status: every fenced database of this node
CREATE FUNCTION driftmirror_node.fence_status(
    OUT dboid oid, OUT database name, OUT mode text, OUT since timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'driftmirror_fence_status';

-- session_bypass: this session is one of driftmirror's own and passes the
-- fence until it ends
CREATE FUNCTION driftmirror_node.session_bypass()
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'driftmirror_session_bypass';

REVOKE ALL ON SCHEMA driftmirror_node FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA driftmirror_node FROM PUBLIC;

DO $grants$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles
                WHERE rolname OPERATOR(pg_catalog.=) 'driftmirror_admin') THEN
        GRANT USAGE ON SCHEMA driftmirror_node TO driftmirror_admin;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA driftmirror_node TO driftmirror_admin;
    END IF;
END
$grants$;
