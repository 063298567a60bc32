# 098_hung_actuator.pl: an HTTP actuator that never answers holds only its
# own group's step, never the other groups' (the actuator calls of the
# mirror phase run in the worker's I/O engine, src/io_engine.c).
#
# The actuator (test/lib/hung_http_receiver.py, standing in for an
# orchestrator's API that hangs) reads each request and never answers, and
# logs when the worker gives up on it (closes the connection).  With the
# mirror's actuator_timeout at its maximum (60 s), another group's steps go
# on while the create request is held: its heartbeats advance before the
# worker gives up on the request.  When the mirror phase made its actuator
# calls itself, the worker waited for the answer, so no other group's
# heartbeat came until the request had timed out.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmHung;
use DmTest;

my $node = dm_node('hung_act');
my $act = DmHung->start;

$node->safe_psql('postgres', q{SELECT driftmirror.dm_create_group('ticking', '{"interval": "1s"}')});
dm_wait_for($node, "SELECT steps_ok >= 2 FROM driftmirror.dm_status WHERE group_name = 'ticking'",
	't', 'the group steps');

$node->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('shop', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('shop', 'cache', 'cache', '@{[ $act->url ]}/shop');
	SELECT driftmirror.dm_create_mirror('shop', 'cache', NULL, '{"actuator_timeout": "60s"}');
});

# wait (bounded) until the worker's create request is stuck on the actuator
ok($act->seen(qr{^request POST /shop/mirrors$}m), 'the create request reached the actuator, which does not answer');

my $steps = $node->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'ticking'");
dm_wait_for($node,
	"SELECT steps_ok >= $steps + 3 FROM driftmirror.dm_status WHERE group_name = 'ticking'",
	't', 'the other group keeps stepping');
unlike($act->log, qr/^closed$/m,
	'and it did while the request was still held (the worker had not given up on it)');
is($node->safe_psql('postgres',
		"SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'shop'"),
	'creating', 'the mirror waits for its actuator');

# the worker gives up at the deadline and records the failure
dm_wait_for($node, q{
	SELECT last_error LIKE '%did not answer within 60000 ms%'
	  FROM driftmirror.dm_mirror_status WHERE group_name = 'shop'},
	't', 'after actuator_timeout the attempt is recorded as failed');
like($act->log, qr/^closed$/m, 'the worker closed the held connection');

$act->stop;
done_testing();
