# 091_notify.pl: every action is announced on channel driftmirror_actions,
# and sent to the notification webhook when one is set.
#
# A listening psql session (a plain login role with no driftmirror rights:
# PostgreSQL lets anyone LISTEN) receives one JSON payload per recorded
# action, for the API's changes and the worker's own decisions (a metric
# source failing), in commit order; an action rolled back is never
# announced; no payload carries a reason, inputs or an endpoint.
#
# The webhook (test/lib/webhook_receiver.py on loopback, standing in for a
# chat or incident tool): each action arrives signed, with its reason, once
# per idempotency key although the receiver refuses the first attempt; while
# the receiver is down the actions wait in the queue and the worker keeps
# stepping the groups; they arrive when it is back.
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
$listener = undef;

# --- the notification webhook
use File::Path qw(make_path);
my $base = PostgreSQL::Test::Utils::tempdir();
my $hook_port = PostgreSQL::Test::Cluster::get_free_port();
my $hook_log = "$base/hook.log";
make_path($node->data_dir . '/driftmirror_secrets');
PostgreSQL::Test::Utils::append_to_file($node->data_dir . '/driftmirror_secrets/hook_key', "hook-key-42\n");
PostgreSQL::Test::Utils::append_to_file("$base/hook_key", "hook-key-42\n");
my $hook;
sub start_hook
{
	$hook = IPC::Run::start(
		[ 'python3', "$ENV{DM_ROOT}/test/lib/webhook_receiver.py", $hook_port, $hook_log, "$base/hook_key", 1 ],
		'<', \undef, '>>', "$base/hook.out", '2>>', "$base/hook.out");
}
END { local $?; eval { $hook->kill_kill(grace => 5) if $hook; }; }
start_hook();
$node->append_conf('postgresql.conf', qq{
driftmirror.notify_webhook_url = 'http://127.0.0.1:$hook_port/driftmirror'
driftmirror.notify_webhook_hmac_key_file = 'hook_key'
driftmirror.notify_webhook_timeout = 500ms
});
$node->reload;
dm_wait_for($node, "SELECT current_setting('driftmirror.notify_webhook_url') <> ''", 't',
	'the webhook is configured');
$node->safe_psql('postgres', q{SELECT driftmirror.dm_create_group('hooked', '{"interval": "1s"}')});
my $delivered = 0;
for (1 .. 600)
{
	if (-f $hook_log && slurp_file($hook_log) =~ /"applied": true.*"group": "hooked"|"group": "hooked".*"applied": true/)
	{
		$delivered = 1;
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($delivered, 'the action reaches the webhook after one refused attempt');
my @hooked = grep { /"group": "hooked"/ && /"kind": "create_group"/ } split /\n/, slurp_file($hook_log);
is(scalar(@hooked), 2, 'sent twice: refused once, then accepted');
my %keys = map { /"key": "([^"]+)"/ ? ($1 => 1) : () } @hooked;
is(scalar(keys %keys), 1, 'both attempts carry the same idempotency key');
ok((grep { /"signature_ok": true/ } @hooked) == 2, 'both are signed with the key file');
like($hooked[-1], qr/"reason": "dm_create_group"/, 'the webhook gets the reason too');
dm_wait_for($node, 'SELECT count(*) = 0 FROM driftmirror.notification_outbox', 't',
	'the queue empties once delivered');

# the receiver down: actions wait, the groups go on
$hook->kill_kill(grace => 5);
$hook = undef;
$node->safe_psql('postgres', q{SELECT driftmirror.dm_create_group('while-down', '{}')});
dm_wait_for($node,
	"SELECT attempts >= 2 AND last_error IS NOT NULL FROM driftmirror.notification_outbox o JOIN driftmirror.action a ON a.id = o.action_id WHERE a.group_name = 'while-down'",
	't', 'with the receiver down the notification is retried with back-off');
my $steps = $node->safe_psql('postgres', "SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'hooked'");
dm_wait_for($node, "SELECT steps_ok >= $steps + 3 FROM driftmirror.dm_status WHERE group_name = 'hooked'",
	't', 'the worker keeps stepping the groups meanwhile');
start_hook();
dm_wait_for($node,
	"SELECT count(*) = 0 FROM driftmirror.notification_outbox o JOIN driftmirror.action a ON a.id = o.action_id WHERE a.group_name = 'while-down'",
	't', 'the waiting notification is delivered when the receiver is back');
like(slurp_file($hook_log), qr/"group": "while-down"/, 'and the receiver has it');
done_testing();
