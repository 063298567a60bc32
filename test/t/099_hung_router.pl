# 099_hung_router.pl: a router that accepts connections and never answers
# holds only its own group's router update, never the other groups' steps
# or router updates (the router phase's conversations run in the worker's
# I/O engine: src/router_io.c, src/io_socket.c).
#
# Group "stuck" has a HAProxy router whose runtime API endpoint is a
# hostile socket server (test/lib/hung_http_receiver.py in its line mode)
# that reads the first command line and never answers, logging when the
# worker gives up (closes the connection).  Group "good" has a router on a real HAProxy.
# While the worker's conversation with the hung endpoint is held (its
# timeout 20 s), the good group's new router is applied (its weights read
# back from HAProxy itself), its heartbeats advance and a dm_shift of it
# goes through at once; then the hung one
# ends with a timeout error recorded in dm_routers, and the same worker
# goes on.  When the router phase talked to routers itself, the worker
# waited for the hung endpoint, so neither came until it had timed out.
# Both groups' mirrors are made by the test's HTTP actuator (DmActuator),
# which stands in for an orchestrator: the routers need a mirror to route.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmActuator;
use DmHung;
use DmRouters;
use DmTest;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $node = dm_node('hung_router');
my $act = DmActuator->new;
$act->start;
my $hung = DmHung->start('line');
# the healthy group's HAProxy: its servers only need to exist
my $hap = haproxy_start($dir, { a => $node, b => $node });

sub q1 { return $node->safe_psql('postgres', $_[0]); }

for my $g ('stuck', 'good')
{
	q1(qq{
		SELECT driftmirror.dm_create_group('$g', '{"interval": "1s"}');
		SELECT driftmirror.dm_add_resource('$g', 'cache', 'cache', '@{[ $act->url ]}/$g');
		SELECT driftmirror.dm_create_mirror('$g', 'cache');
	});
}
dm_wait_for($node, q{SELECT count(*) FROM driftmirror.dm_mirror_status WHERE state = 'mirroring'},
	'2', 'both mirrors are mirroring');
my $worker = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror'});
like($worker, qr/^\d+$/, 'the worker runs');

my $servers = '"backends": {"read": "pg_read"}, "servers": {"a": "primary", "b": "mirror"}';
q1(qq{SELECT driftmirror.dm_add_router('stuck', 'hung', 'haproxy', 'tcp:127.0.0.1:@{[ $hung->port ]}',
	'{$servers, "timeout": "20s"}')});
ok($hung->seen(qr{^request set server pg_read/a weight 100$}m),
	'the worker sent its first command to the hung router, which does not answer');

# the good group's new router is applied while the hung one is held
my $steps = q1("SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'good'");
q1(qq{SELECT driftmirror.dm_add_router('good', 'lb', 'haproxy', 'unix:$hap->{socket}', '{$servers, "timeout": "2s"}')});
dm_wait_for($node, q{SELECT state FROM driftmirror.dm_routers WHERE name = 'lb'},
	'applied', 'the healthy router is applied');
is_deeply(haproxy_weights($hap), { a => '100', b => '0/drain' },
	'HAProxy has its weights (read back from HAProxy): the mirror drains');
dm_wait_for($node,
	"SELECT steps_ok >= $steps + 3 FROM driftmirror.dm_status WHERE group_name = 'good'",
	't', 'the healthy group keeps stepping');
# dm_shift of the healthy group (its own worker: the same conversations,
# waited for in the I/O engine) is not held either: the lock is per group
my $res = $node->safe_psql('postgres', q{SELECT driftmirror.dm_shift('good', 25) ->> 'routers'});
like($res, qr/"router": "lb".*"applied": true/, 'dm_shift of the healthy group applies its router');
is_deeply(haproxy_weights($hap), { a => '75', b => '25' }, 'HAProxy weights 75/25 (read back from HAProxy)');
unlike($hung->log, qr/^closed$/m,
	'all while the hung router was still held (the worker had not given up on it)');
is(q1(q{SELECT state || ' ' || attempts FROM driftmirror.dm_routers WHERE name = 'hung'}),
	'new 0', 'the hung router is still pending');

# the worker gives up at the router's timeout and records it
dm_wait_for($node, q{
	SELECT state = 'failed' AND last_error LIKE '%HAProxy runtime API of router "hung" did not answer within 20000 ms%'
	  FROM driftmirror.dm_routers WHERE name = 'hung'},
	't', 'after its timeout the hung router is recorded as failed, with the reason');
ok($hung->seen(qr/^closed$/m), 'the worker closed the held connection');
is(q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror'}), $worker,
	'the same worker goes on');
$steps = q1("SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'good'");
dm_wait_for($node,
	"SELECT steps_ok >= $steps + 2 FROM driftmirror.dm_status WHERE group_name = 'good'",
	't', 'and the healthy group still steps');
is(q1(q{SELECT steps_failed FROM driftmirror.dm_status WHERE group_name = 'stuck'}),
	'0', 'the stuck group recorded no failed step: only its router failed');

$hung->stop;
router_stop($hap);
$act->stop;
done_testing();
