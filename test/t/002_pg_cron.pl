# 002_pg_cron.pl: driftmirror driven from pg_cron.  A job scheduled every
# minute calls the API as a driftmirror_admin member; we wait for its first
# run (pg_cron 1.4 schedules by the minute, so this waits up to a minute).
# pg_cron's jobs run in background workers here: a job writing into a
# fenced database is refused like a client, while a read passes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $node = dm_node('cron', cron => 1);
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE ROLE ops LOGIN IN ROLE driftmirror_admin;
	GRANT USAGE ON SCHEMA cron TO ops;
	SELECT driftmirror.dm_create_group('orders');
});

# the job runs as the role that scheduled it
$node->safe_psql('postgres', q{
	SET ROLE ops;
	SELECT cron.schedule('dm-heartbeat-event', '* * * * *',
		$$SELECT driftmirror.dm_add_event('orders', 'cron-tick', date_trunc('minute', now()),
		                                   date_trunc('minute', now()) + interval '1 minute')$$);
});
# a job scheduled by a role without driftmirror_admin fails with a reason
$node->safe_psql('postgres', q{
	CREATE ROLE intruder LOGIN;
	GRANT USAGE ON SCHEMA cron TO intruder;
	SET ROLE intruder;
	SELECT cron.schedule('dm-intruder', '* * * * *',
		$$SELECT driftmirror.dm_drop_group('orders', true)$$);
});
# a fenced database: pg_cron's background workers are fenced like clients
$node->safe_psql('postgres', 'CREATE DATABASE fenced');
$node->safe_psql('fenced', q{
	CREATE EXTENSION driftmirror_node;
	CREATE TABLE t (id int PRIMARY KEY);
	SELECT driftmirror_node.fence_set('mirror');
});
$node->safe_psql('postgres', q{
	SELECT cron.schedule_in_database('dm-fenced-write', '* * * * *',
		$$INSERT INTO t VALUES (1)$$, 'fenced');
	SELECT cron.schedule_in_database('dm-fenced-read', '* * * * *',
		$$SELECT count(*) FROM t$$, 'fenced');
});
# the jobs run at the next minute boundary
dm_wait_for($node,
	"SELECT count(*) >= 1 FROM driftmirror.dm_events WHERE group_name = 'orders' AND name = 'cron-tick'",
	't', 'a pg_cron job called dm_add_event');
is($node->safe_psql('postgres',
	"SELECT actor FROM driftmirror.dm_actions WHERE kind = 'add_event' LIMIT 1"),
	'ops', 'the action log names the role that scheduled the job');

dm_wait_for($node,
	"SELECT count(*) >= 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'dm-intruder' AND d.status = 'failed' AND d.return_message LIKE '%permission denied%'",
	't', 'a job of a role without driftmirror_admin is refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM driftmirror.dm_groups"), '1',
	'and changed nothing');

dm_wait_for($node,
	"SELECT count(*) >= 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'dm-fenced-write' AND d.status = 'failed' AND d.return_message LIKE '%fenced by driftmirror%'",
	't', 'a pg_cron job cannot write into a fenced database');
is($node->safe_psql('fenced', 'SELECT count(*) FROM t'), '0', 'and wrote nothing');
dm_wait_for($node,
	"SELECT count(*) >= 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'dm-fenced-read' AND d.status = 'succeeded'",
	't', 'a pg_cron job reads a fenced database');

$node->stop;
done_testing();
