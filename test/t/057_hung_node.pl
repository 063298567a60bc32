# 057_hung_node.pl: one hung node freezes nothing but its own group.
#
# The mirror of group "orders" (a real pair, a -> b) is pointed at a hostile
# server (test/lib/hung_pg_server.py) that completes the login and then
# never answers, and that accepts cancel requests and holds them open (a
# PostgreSQL 15 PQcancel waits for such a server forever).  The server is
# named "localhost", so the connection also goes through the worker's own
# name resolution.  Then, with real clusters:
#   - the worker keeps talking to the hung node (new logins keep coming),
#     never sends it a cancel request, and records a timeout as the
#     mirror's error;
#   - group "live", on the real node a, keeps beating meanwhile;
#   - pg_terminate_backend ends the worker while it waits on the hung node,
#     and the postmaster starts a new one, which beats again;
#   - a promotion of "orders" (towards the hung mirror) ends by its
#     promote_timeout, rolled back, with a reason naming the step and the
#     node, and the old primary takes writes again.
# No assertion depends on timing: every wait is for a condition, bounded by
# the standard test timeout.  On 0.1.0 the worker froze in PQcancel at the
# first timeout, so the heartbeats stopped, the worker ignored
# pg_terminate_backend, and dm_promote never returned.
use strict;
use warnings;

use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DmTest;
use DmPair;

my $p = dm_pair(conf => "driftmirror.remote_timeout = 2s\ndriftmirror.connect_timeout = 2s\n");
my ($a, $b) = ($p->{a}, $p->{b});

# the hostile server
my $hport = PostgreSQL::Test::Cluster::get_free_port();
my $events = "$PostgreSQL::Test::Utils::tmp_check/hung_events_$hport";
unlink $events;
my ($hout, $herr) = ('', '');
my $hung = IPC::Run::start(
	[ 'python3', "$FindBin::RealBin/../lib/hung_pg_server.py", $hport, $events ],
	'>', \$hout, '2>', \$herr);
# stopped by its PID even when the test dies half-way (a psql timeout, say)
END { $hung->kill_kill if $hung && $hung->pumpable; }

# count(EVENT): how many times the hostile server saw EVENT
sub count_events
{
	my ($what) = @_;
	open(my $fh, '<', $events) or return 0;
	my $n = grep { /^\Q$what\E\b/ } <$fh>;
	close($fh);
	return $n;
}

# wait_events(EVENT, N): poll until the server saw EVENT N times (bounded)
sub wait_events
{
	my ($what, $n) = @_;
	my $max = $PostgreSQL::Test::Utils::timeout_default * 10;
	for (my $i = 0; $i < $max; $i++)
	{
		return 1 if count_events($what) >= $n;
		usleep(100_000);
	}
	return 0;
}

ok(wait_events('listening', 1), 'the hostile server listens') or diag($herr);

# group "live": a group on the real node a, beating every second
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('live', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('live', 'live_db', 'postgres', '$p->{ca}');
});
dm_wait_for($a, q{SELECT steps_ok > 0 FROM driftmirror.dm_status WHERE group_name = 'live'},
	't', 'the live group beats');

# the mirror of "orders" is now the hung node
my $hung_conninfo = "host=localhost port=$hport dbname=app";
$a->safe_psql('postgres', qq{UPDATE driftmirror.mirror SET mirror_endpoint = '$hung_conninfo'});

ok(wait_events('query', 1), 'the worker logs in to the hung node and sends it a command');
dm_wait_for($a, q{SELECT last_error LIKE '%timed out after%' AND last_error_sqlstate = '57014'
	FROM driftmirror.mirror}, 't', 'the status read of the hung mirror ends at its deadline');
ok(wait_events('login', 3), 'the worker comes back to the hung node at later steps: it is not stuck');

my $beats = $a->safe_psql('postgres',
	q{SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'live'});
my $logins = count_events('login');
dm_wait_for($a, qq{SELECT steps_ok >= $beats + 5 FROM driftmirror.dm_status WHERE group_name = 'live'},
	't', 'the live group keeps beating while the hung node hangs');
ok(wait_events('login', $logins + 2), 'meanwhile the worker keeps trying the hung node');
is(count_events('cancel'), 0, 'no cancel request was sent (a hung cancel cannot hold the worker)');

# pg_terminate_backend while the worker waits on the hung node
my $pid = $a->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror'});
ok($pid =~ /^\d+$/, 'the worker runs');
# a request to the hung node is in flight once it sees a new login
$logins = count_events('login');
ok(wait_events('login', $logins + 1), 'the worker is talking to the hung node');
dm_wait_for($a, qq{SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $pid},
	't', 'the worker waits');
is($a->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'terminate the worker');
dm_wait_for($a, qq{SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid},
	't', 'the worker ends at pg_terminate_backend');
dm_wait_for($a, qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'driftmirror' AND pid <> $pid},
	't', 'the postmaster starts a new worker');
$beats = $a->safe_psql('postgres',
	q{SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'live'});
dm_wait_for($a, qq{SELECT steps_ok >= $beats + 3 FROM driftmirror.dm_status WHERE group_name = 'live'},
	't', 'the new worker beats');

# a promotion towards the hung mirror ends by its promote_timeout
my ($rc, $out, $err) = $a->psql('postgres',
	q{SELECT * FROM driftmirror.dm_promote('orders', 'db', '{"promote_timeout": "6s"}')},
	timeout => $PostgreSQL::Test::Utils::timeout_default);
isnt($rc, 0, 'the promotion fails');
like($err, qr/promotion failed and was rolled back: promotion of resource "db" of group "orders" timed out in step guardrails: command on node "orders\/db mirror \(new primary\)" timed out after \d+ ms/,
	'the caller is told: promote_timeout, the step, the node that did not answer');
is($a->safe_psql('postgres', q{SELECT state || ' ' || error_sqlstate FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	'rolled_back 57014', 'recorded as rolled back by a timeout');
like($a->safe_psql('postgres', q{SELECT error FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	qr/^promotion of resource "db" of group "orders" timed out in step guardrails: /,
	'the recorded reason names the step');
is(primary_of($p), $a, 'a is still the primary');
ok(writable($a), 'a takes writes');
is(count_events('cancel'), 0, 'the promotion sent no cancel request either');

$hung->kill_kill;
done_testing();
