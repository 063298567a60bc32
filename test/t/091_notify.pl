# 091_notify.pl: every action is announced on channel driftmirror_actions.
#
# A listening psql session (a plain login role with no driftmirror rights:
# PostgreSQL lets anyone LISTEN) receives one JSON payload per recorded
# action, for the API's changes and the worker's own decisions (a metric
# source failing), in commit order; an action rolled back is never
# announced; no payload carries a reason, inputs or an endpoint.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $node = dm_node('notify');
$node->safe_psql('postgres', 'CREATE ROLE listener LOGIN');

my ($in, $out, $err) = ('', '', '');
my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres') . ' user=listener' ],
	'<', \$in, '>', \$out, '2>', \$err, $timer);
END { local $?; eval { $listener->kill_kill(grace => 5) if $listener; }; }

$in .= "LISTEN driftmirror_actions;\nSELECT 'listening';\n";
$listener->pump until $out =~ /listening/ || $timer->is_expired;
ok(!$timer->is_expired, 'the listener is listening');

# wait_for(REGEX): poll the listener until REGEX matches what it printed
sub wait_for
{
	my ($re) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if $err =~ $re || $out =~ $re;
		$in .= "SELECT 1;\n";
		$listener->pump_nb;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

$node->safe_psql('postgres', q{
	SELECT driftmirror.dm_create_group('orders', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('orders', 'orders-db', 'postgres',
	                                   'host=/nonexistent/secret-socket dbname=orders');
});
ok(wait_for(qr/"kind": "add_resource"/), 'the listener hears the API changes');
my @payloads = ("$out\n$err" =~ /payload "(\{.*?\})" received/g);
is(scalar(grep { /"kind": "create_group"/ } @payloads), 1, 'one notification per action');
like((grep { /"kind": "add_resource"/ } @payloads)[0],
	qr/^\{"at": "[^"]+", "id": \d+, "kind": "add_resource", "actor": "\w+", "group": "orders", "outcome": "done", "resource": "orders-db"\}$/,
	'the payload: id, group, resource, kind, outcome, actor, time');
my ($first) = grep { /create_group/ } @payloads;
my ($second) = grep { /add_resource/ } @payloads;
my ($id1) = $first =~ /"id": (\d+)/;
my ($id2) = $second =~ /"id": (\d+)/;
ok($id1 < $id2 && index("$out\n$err", $first) < index("$out\n$err", $second),
	'in commit order');

# a rolled-back action is never announced
$node->psql('postgres', q{
	BEGIN;
	SELECT driftmirror.dm_create_group('ghost', '{}');
	ROLLBACK;
	SELECT driftmirror.dm_create_group('after-ghost', '{}');
});
ok(wait_for(qr/"group": "after-ghost"/), 'a later action is heard');
unlike("$out\n$err", qr/"group": "ghost"/, 'the rolled-back action was never announced');

# the worker's own decisions: a postgres metric source that cannot connect
$node->safe_psql('postgres',
	q{SELECT driftmirror.dm_add_metric_source('orders', 'orders-db', 'postgres', '{}')});
ok(wait_for(qr/"kind": "metric_source_failed"/),
	'a failing metric source, found by the worker, is announced');
unlike("$out\n$err", qr/secret-socket|host=|reason|inputs/,
	'no payload carries an endpoint, a reason or inputs');

$in .= "\\q\n";
$listener->finish;
done_testing();
