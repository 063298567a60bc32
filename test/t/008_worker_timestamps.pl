# 008_worker_timestamps.pl: the times the worker writes are the times things
# happened.
#
# A background worker has no client loop that sets the statement start
# time, and a transaction's now() is that time: unless the worker sets it
# before each transaction, now() stays at the worker's start.  The worker
# runs here for a few seconds before anything is created; then the
# mirror's state_changed_at and synced_at must not be older than the
# mirror, and a group's last_step_at must keep advancing, step by step.
# One cluster holds the primary (app) and the mirror (app_mirror).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $node = dm_node('stamps', logical => 1);

# let the worker's start lie well in the past
ok($node->poll_query_until('postgres', q{
	SELECT now() - backend_start > interval '3 seconds'
	  FROM pg_stat_activity WHERE backend_type = 'driftmirror'}),
	'the worker has been running for a while');
my $worker_start = $node->safe_psql('postgres',
	"SELECT backend_start FROM pg_stat_activity WHERE backend_type = 'driftmirror'");

for my $db ('app', 'app_mirror')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE TABLE t (id int PRIMARY KEY, v text)');
}
$node->safe_psql('app', "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g");

my $conn = 'host=' . $node->host . ' port=' . $node->port;
$node->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('stamps', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('stamps', 'db', 'postgres', '$conn dbname=app');
	SELECT driftmirror.dm_create_mirror('stamps', 'db', '$conn dbname=app_mirror');
});
dm_wait_for($node,
	"SELECT state IN ('mirroring', 'failed') FROM driftmirror.dm_mirror_status", 't',
	'the mirror settles');
is($node->safe_psql('postgres',
		"SELECT state || coalesce(' ' || last_error, '') FROM driftmirror.dm_mirror_status"),
	'mirroring', 'the mirror is mirroring');

# the mirror's row was created by this session, after the worker started
is($node->safe_psql('postgres', qq{
	SELECT format('%s %s %s', created_at > '$worker_start'::timestamptz + interval '3 seconds',
	              state_changed_at >= created_at, synced_at >= created_at)
	  FROM driftmirror.dm_mirror_status}),
	't t t', 'state_changed_at and synced_at are not older than the mirror');

# steps keep moving last_step_at (now() of the step's transaction)
my $step1 = $node->safe_psql('postgres', q{
	SELECT s.last_step_at FROM driftmirror.group_state s
	  JOIN driftmirror.resource_group g ON g.id = s.group_id WHERE g.name = 'stamps'});
cmp_ok($node->safe_psql('postgres',
		"SELECT '$step1'::timestamptz > '$worker_start'::timestamptz + interval '3 seconds'"),
	'eq', 't', 'last_step_at is the time of a step, not of the worker start');
dm_wait_for($node, qq{
	SELECT s.last_step_at > '$step1'::timestamptz + interval '900 milliseconds'
	  FROM driftmirror.group_state s
	  JOIN driftmirror.resource_group g ON g.id = s.group_id WHERE g.name = 'stamps'},
	't', 'last_step_at advances with the steps');

$node->stop;
done_testing();
