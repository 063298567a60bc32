# 067_shift_writes.pl: write shares on a two-way mirror.
#
# A write share is accepted on a two-way mirror.  dm_route(..., 'write',
# key) sends about that share of the keys to the mirror, the same node for
# the same key, and keyless writes stay on the primary; rows written by
# key through those routes reach both nodes.  A plan with a write step
# meets a conflict (the same key written on both nodes): the first apply
# error fails its gate and the plan goes back to its last good step with
# writes at 0.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use DmTest;
use DmPair;

my $p = dm_pair(mirror_options => '{"two_way": true}');
my ($a, $b) = ($p->{a}, $p->{b});

my $res = decode_json($a->safe_psql('postgres', q{SELECT driftmirror.dm_shift('orders', 100, 20)}));
is("$res->{read_pct}/$res->{write_pct}", '100/20', 'a write share is accepted on a two-way mirror');

my $on_mirror = $a->safe_psql('postgres', q{
	SELECT string_agg(k::text, ',' ORDER BY k) FROM generate_series(1, 300) k
	 WHERE driftmirror.dm_route('orders', 'db', 'write', 'customer-' || k)
	       = (SELECT driftmirror.dm_client_conninfo(mirror_endpoint) FROM driftmirror.mirror)});
my @keys = split /,/, $on_mirror;
ok(@keys > 30 && @keys < 90, 'about a fifth of the keys write to the mirror (' . scalar(@keys) . ' of 300)');
is($a->safe_psql('postgres', q{
	SELECT string_agg(k::text, ',' ORDER BY k) FROM generate_series(1, 300) k
	 WHERE driftmirror.dm_route('orders', 'db', 'write', 'customer-' || k)
	       = (SELECT driftmirror.dm_client_conninfo(mirror_endpoint) FROM driftmirror.mirror)}),
	$on_mirror, 'the same keys again: one writer per key');
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route('orders', 'db', 'write')
	= driftmirror.dm_client_conninfo(endpoint) FROM driftmirror.dm_resources WHERE name = 'db'}),
	't', 'keyless writes stay on the primary');

# write a few keys through their route (multi-host string, the key's node first)
for my $k (1 .. 10)
{
	my $ci = $a->safe_psql('postgres', qq{SELECT driftmirror.dm_route_multihost('orders', 'db', 'write', 'customer-$k')});
	my $n = (grep { $_ == $k } @keys) ? 'mirror' : 'primary';
	PostgreSQL::Test::Utils::system_or_bail('psql', '-X', '-q', '-d', $ci, '-c',
		"INSERT INTO orders (id, note) VALUES (1000 + $k, 'customer-$k via $n')");
}
my $where = q{SELECT string_agg(note, ',' ORDER BY id) FROM orders WHERE id BETWEEN 1001 AND 1010};
ok($a->poll_query_until('app', qq{SELECT count(*) = 10 FROM orders WHERE id BETWEEN 1001 AND 1010})
	&& $b->poll_query_until('app', qq{SELECT count(*) = 10 FROM orders WHERE id BETWEEN 1001 AND 1010}),
	'rows written through the key routes reach both nodes');
is($a->safe_psql('app', $where), $b->safe_psql('app', $where), 'and both nodes have the same rows');
like($a->safe_psql('app', $where), qr/via mirror/, 'some were written on the mirror');

# ---- a conflict during a write step: back to the last good step, writes to 0 ----
$a->safe_psql('postgres', q{SELECT driftmirror.dm_shift('orders', 0, 0)});
ok(wait_mirroring($p), 'mirroring before the plan');
my $plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 100, "write": 5, "hold": "3 s"}, {"write": 10, "hold": "10 minutes"}]}')});
dm_wait_for($a, qq{SELECT step = 2 FROM driftmirror.dm_shift_status WHERE plan_id = $plan AND state = 'running'},
	't', 'step 1 held; the write share grows in step 2');
# the same key written on both nodes: a's row is written under a
# replication origin (the origin filter keeps it from b, as if the two
# writes had crossed), b's row replicates and a's apply worker fails on it
$a->safe_psql('app', q{
	SELECT pg_replication_origin_create('test_crossed_write');
	SELECT pg_replication_origin_session_setup('test_crossed_write');
	INSERT INTO orders (id, note) VALUES (999999, 'written on a')});
$b->safe_psql('app', q{INSERT INTO orders (id, note) VALUES (999999, 'written on b')});
dm_wait_for($a, qq{SELECT state FROM driftmirror.dm_shift_status WHERE plan_id = $plan}, 'rolled_back',
	'the conflict failed the gate and the plan rolled back by itself');
is($a->safe_psql('postgres', q{SELECT read_pct || '/' || write_pct FROM driftmirror.dm_shifts}), '100/0',
	'back to the last good step (100 % of reads) with writes at 0');
like($a->safe_psql('postgres', qq{SELECT reason FROM driftmirror.dm_shift_status WHERE plan_id = $plan}),
	qr/new apply error\(s\) exceed max_apply_errors 0/, 'the reason names the conflict');
is($a->safe_psql('postgres', q{SELECT inputs ->> 'conflict' FROM driftmirror.dm_actions
	WHERE kind = 'shift_step' AND inputs ->> 'outcome' = 'rolled_back'}), 'true', 'logged as a conflict');
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route('orders', 'db', 'write', 'customer-1')
	= driftmirror.dm_client_conninfo(endpoint) FROM driftmirror.dm_resources WHERE name = 'db'}),
	't', 'every key writes to the primary again');

done_testing();
