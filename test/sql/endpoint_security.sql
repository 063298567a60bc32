-- endpoint_security: the conninfo keyword allow-list, who may name an
-- endpoint (superusers, or approved endpoints for driftmirror_admin), and
-- routes without the administration role
SET search_path = driftmirror, public;
\set SHOW_CONTEXT never

SELECT dm_create_group('sec') > 0 AS created;

-- keywords that read a file of the server, change the remote session or
-- send the server's credentials elsewhere: refused, nothing added
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h dbname=d passfile=/tmp/evil');
SELECT dm_add_resource('sec', 'x', 'postgres', 'service=prod');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h sslkey=/var/lib/postgresql/key');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h sslcert=/etc/cert');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h sslpassword=x');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h sslrootcert=/etc/ca');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h sslcrl=/etc/crl');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h options=''-c default_transaction_read_only=on''');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h requirepeer=postgres');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h krbsrvname=evil');
SELECT dm_add_resource('sec', 'x', 'postgres', 'postgresql://h/d?passfile=/tmp/evil');
-- hostaddr next to host: the passfile is matched on host, the password sent to hostaddr
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=db.internal hostaddr=203.0.113.9 dbname=d');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=a,b hostaddr=,203.0.113.9 port=5432,5433 dbname=d');
-- a connection string hidden in dbname
SELECT dm_add_resource('sec', 'x', 'postgres', 'dbname=''host=h passfile=/tmp/evil''');
SELECT dm_add_resource('sec', 'x', 'postgres', 'dbname=postgresql://h/d');
-- values libpq would only check at connect time
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h sslmode=sometimes');
SELECT dm_add_resource('sec', 'x', 'postgres', 'host=h channel_binding=maybe');
-- the same check for mirror endpoints and publisher_endpoint
SELECT dm_add_resource('sec', 'db', 'postgres', 'host=/tmp port=1 dbname=app user=admin_role') > 0 AS added;
SELECT dm_create_mirror('sec', 'db', 'host=/tmp port=2 dbname=app servicefile=/tmp/s');
SELECT dm_create_mirror('sec', 'db', 'host=/tmp port=2 dbname=app', '{"publisher_endpoint": "host=x passfile=/tmp/p"}');
SELECT dm_alter_resource('sec', 'db', endpoint => 'host=a hostaddr=127.0.0.1');
SELECT count(*) AS resources FROM dm_resources WHERE group_name = 'sec';

-- allowed: hostaddr alone, multi-host lists, TLS and timeouts
SELECT dm_add_resource('sec', 'ok1', 'postgres', 'hostaddr=127.0.0.1 port=1 dbname=app') > 0 AS added;
SELECT dm_add_resource('sec', 'ok2', 'postgres',
    'host=a,b port=1,2 dbname=app user=r sslmode=verify-full channel_binding=require connect_timeout=5 target_session_attrs=read-write') > 0 AS added;

-- the superuser's endpoints are approved as they are set
SELECT endpoint, via FROM dm_endpoint_approvals
 WHERE endpoint IN ('host=/tmp port=1 dbname=app user=admin_role', 'hostaddr=127.0.0.1 port=1 dbname=app')
 ORDER BY endpoint;

-- a non-superuser admin may name only approved endpoints
CREATE ROLE regress_sec_admin IN ROLE driftmirror_admin;
CREATE ROLE regress_sec_monitor IN ROLE driftmirror_monitor;
SET ROLE regress_sec_admin;
SELECT dm_add_resource('sec', 'own', 'postgres', 'host=/var/run/postgresql dbname=secret user=postgres');
SELECT dm_alter_resource('sec', 'db', endpoint => 'host=/var/run/postgresql dbname=secret user=postgres');
SELECT dm_create_mirror('sec', 'db', 'host=/var/run/postgresql dbname=mine user=postgres');
SELECT dm_create_mirror('sec', 'db', 'host=/tmp port=1 dbname=app', '{"publisher_endpoint": "host=/var/run/postgresql dbname=secret"}');
-- a token file is sent to the endpoint: only to an approved one
SELECT dm_add_resource('sec', 'act', 'app', 'http://attacker.example/', '{}', '{"bearer_token_file": "prod_token"}');
SELECT dm_add_resource('sec', 'act', 'app', 'http://attacker.example/') > 0 AS added_without_token;
SELECT dm_alter_resource('sec', 'act', options => '{"bearer_token_file": "prod_token"}');
-- approving is for superusers
SELECT dm_approve_endpoint('host=/var/run/postgresql dbname=mine user=postgres');
SELECT dm_revoke_endpoint('host=/tmp port=1 dbname=app user=admin_role');
-- an approved endpoint may be named
SELECT dm_add_resource('sec', 'db2', 'postgres', 'hostaddr=127.0.0.1 port=1 dbname=app') > 0 AS added;
SELECT dm_alter_resource('sec', 'db2', endpoint => 'host=/tmp port=1 dbname=app user=admin_role');
SELECT count(*) AS resources FROM dm_resources WHERE group_name = 'sec';
RESET ROLE;

SELECT dm_approve_endpoint('host=/tmp port=9 dbname=mine');
SELECT dm_approve_endpoint('host=/tmp port=9 dbname=mine');
SELECT dm_approve_endpoint('host=/tmp passfile=/x');
SELECT dm_approve_endpoint('ftp://x/');
SELECT dm_approve_endpoint(NULL);
SET ROLE regress_sec_admin;
SELECT dm_add_resource('sec', 'mine', 'postgres', 'host=/tmp port=9 dbname=mine') > 0 AS added;
RESET ROLE;
SELECT dm_revoke_endpoint('host=/tmp port=9 dbname=mine');
SELECT dm_revoke_endpoint('host=/tmp port=9 dbname=mine');
SET ROLE regress_sec_admin;
SELECT dm_alter_resource('sec', 'mine', endpoint => 'host=/tmp port=9 dbname=mine');
RESET ROLE;

-- the monitor sees approvals without the endpoint text
SET ROLE regress_sec_monitor;
SELECT count(*) > 0 AS some, count(endpoint) AS visible FROM dm_endpoint_approvals;
RESET ROLE;

-- routes hand clients where to connect, never the administration role
SELECT dm_client_conninfo('host=/tmp port=5 dbname=app user=postgres application_name=x sslmode=require');
SELECT dm_client_conninfo('dbname=''my db'' host=h');
SELECT dm_route('sec', 'db', 'write');
SELECT dm_route('sec', 'ok2', 'read');
SELECT dm_route_multihost('sec', 'ok2');
SELECT dm_client_conninfo('host=h x=y');

-- the action log records approvals
SELECT kind, count(*) FROM dm_actions WHERE kind IN ('approve_endpoint', 'revoke_endpoint')
 GROUP BY kind ORDER BY kind;

-- every SECURITY DEFINER function of the schema has the fixed search_path
-- and is not executable by PUBLIC (operations.md, "Security model", point 9)
SELECT p.oid::regprocedure AS unsafe
  FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace AND p.prosecdef
   AND (NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
        OR has_function_privilege('public', p.oid, 'EXECUTE'))
 ORDER BY 1;
SELECT count(*) >= 25 AS checked FROM pg_proc p
 WHERE p.pronamespace = 'driftmirror'::regnamespace AND p.prosecdef;

SELECT dm_drop_group('sec', force => true);
DELETE FROM endpoint_approval;
DROP ROLE regress_sec_admin, regress_sec_monitor;
