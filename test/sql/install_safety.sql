-- install_safety: the install script resists a hostile search_path and a
-- schema planted by another role
\set SHOW_CONTEXT never
DROP EXTENSION driftmirror;
-- the schema outlives the extension (it is not a member); drop it too
DROP SCHEMA driftmirror;

-- a planted schema is refused
CREATE ROLE regress_dm_planter;
CREATE SCHEMA driftmirror AUTHORIZATION regress_dm_planter;
CREATE EXTENSION driftmirror;
DROP SCHEMA driftmirror;
DROP ROLE regress_dm_planter;

-- functions and operators planted earlier on the search_path are not used
CREATE SCHEMA evil;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'evil jsonb_typeof called'; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'evil now called'; END $$;
CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'evil = called'; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
SET search_path = evil, public;
CREATE EXTENSION driftmirror;
SELECT driftmirror.dm_create_group('safe', '{"interval": "5s"}') > 0 AS created;
SELECT name FROM driftmirror.dm_groups;
SELECT driftmirror.dm_drop_group('safe');
RESET search_path;
DROP SCHEMA evil CASCADE;
