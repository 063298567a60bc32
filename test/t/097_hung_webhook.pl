# 097_hung_webhook.pl: a notification webhook that never answers holds only
# the notifications, never the worker's loop (the posts run in the I/O
# engine, src/io_engine.c).
#
# The receiver (test/lib/hung_http_receiver.py, standing in for a chat or
# incident tool that hangs) reads each post and never answers, and logs
# when the worker gives up on it (closes the connection).  With
# notify_webhook_timeout at its maximum (60 s), another group's steps go on
# while the post is held: its heartbeats advance before the worker gives up
# on the post.  Before the engine carried the posts, the worker's pass
# waited for the answer, so no heartbeat came until the post had timed out.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $node = dm_node('hung_hook');
my $base = PostgreSQL::Test::Utils::tempdir();
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $events = "$base/events";
my $hook = IPC::Run::start(
	[ 'python3', "$ENV{DM_ROOT}/test/lib/hung_http_receiver.py", $port, $events ],
	'<', \undef, '>>', "$base/hook.out", '2>>', "$base/hook.out");
END { local $?; eval { $hook->kill_kill(grace => 5) if $hook; }; }

$node->safe_psql('postgres', q{SELECT driftmirror.dm_create_group('ticking', '{"interval": "1s"}')});
dm_wait_for($node, "SELECT steps_ok >= 2 FROM driftmirror.dm_status WHERE group_name = 'ticking'",
	't', 'the group steps');

$node->append_conf('postgresql.conf', qq{
driftmirror.notify_webhook_url = 'http://127.0.0.1:$port/driftmirror'
driftmirror.notify_webhook_timeout = 60s
});
$node->reload;
dm_wait_for($node, "SELECT current_setting('driftmirror.notify_webhook_url') <> ''", 't',
	'the webhook is configured');
$node->safe_psql('postgres', q{SELECT driftmirror.dm_create_group('announced', '{}')});

# wait (bounded) until the worker's post is stuck on the receiver
my $stuck = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	if (-f $events && slurp_file($events) =~ /^request POST \/driftmirror$/m)
	{
		$stuck = 1;
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($stuck, 'the post reached the receiver, which does not answer');

my $steps = $node->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'ticking'");
dm_wait_for($node,
	"SELECT steps_ok >= $steps + 3 FROM driftmirror.dm_status WHERE group_name = 'ticking'",
	't', 'the other group keeps stepping');
unlike(slurp_file($events), qr/^closed$/m,
	'and it did while the post was still held (the worker had not given up on it)');
is($node->safe_psql('postgres', q{
	SELECT count(*) > 0 AND sum(attempts) = 0 FROM driftmirror.notification_outbox}),
	't', 'the notifications are still queued, no attempt recorded yet');

# the worker gives up at the deadline, records the failure, keeps the entry
dm_wait_for($node, q{
	SELECT count(*) > 0 FROM driftmirror.notification_outbox
	 WHERE attempts >= 1 AND last_error IS NOT NULL},
	't', 'after the timeout the attempt is recorded as failed, the entry stays queued');
like(slurp_file($events), qr/^closed$/m, 'the worker closed the held connection');

$hook->kill_kill(grace => 5);
$hook = undef;
done_testing();
