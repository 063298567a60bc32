# 054_promote_twoway.pl: promoting a two-way mirror swaps the directions.
#
# A two-way mirror (option two_way) replicates both ways through the origin
# filter and, by default, is not fenced (it takes writes).  dm_promote
# fences the old primary while the mirror catches up, then swaps the roles
# of the two directions without creating or dropping anything; afterwards
# both nodes take writes again (two-way), writes on either side reach the
# other, nothing loops, and the probe's acknowledged writes are all there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;
use DmPair;

my $p = dm_pair(mirror_options => '{"two_way": true}');
my ($a, $b) = ($p->{a}, $p->{b});
my $names = q{SELECT publication_name || ' ' || slot_name || ' ' || subscription_name || ' / '
	|| rev_publication_name || ' ' || rev_slot_name || ' ' || rev_subscription_name FROM driftmirror.dm_mirror_status};
my $before = $a->safe_psql('postgres', $names);

my $probe = probe_start($p->{probe}, 'host=' . $a->host . ' port=' . $a->port . ' dbname=app',
	clients => 2, rate => 100);
ok($a->poll_query_until('app', 'SELECT count(*) > 50 FROM dm_probe'), 'the probe writes');

for my $i (1 .. 2)
{
	my $to = $i == 1 ? $b : $a;
	my ($rc, $out, $err) = $a->psql('postgres', q{SELECT resource_name FROM driftmirror.dm_promote('orders')});
	is($rc, 0, "two-way promotion $i succeeds") or diag($err);
	is(primary_of($p), $to, "two-way promotion $i: the catalog names the new primary");
	ok(wait_mirroring($p), "two-way promotion $i: mirroring goes on");
}
is($a->safe_psql('postgres', $names), $before, 'there and back: the object names are where they started');
is($a->safe_psql('postgres', q{SELECT string_agg(step, ',' ORDER BY seq) FROM driftmirror.dm_promotion_steps
	WHERE promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}),
	'guardrails,reverse_slot,fence,catch_up,sequences,unfence,reverse', 'every step ran');

my $summary = probe_stop($probe);
note("probe: $summary");

# both sides take writes and they converge, nothing loops
$a->safe_psql('app', q{INSERT INTO orders (note) VALUES ('on a after')});
$b->safe_psql('app', q{INSERT INTO orders (id, note) VALUES (900000, 'on b after')});
my $content = q{SELECT count(*), md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM orders};
ok($a->poll_query_until('app', q{SELECT count(*) = 1 FROM orders WHERE id = 900000}), 'b\'s write reached a');
ok($b->poll_query_until('app', q{SELECT count(*) = 1 FROM orders WHERE note = 'on a after'}), 'a\'s write reached b');
is($a->safe_psql('app', $content), $b->safe_psql('app', $content), 'orders identical');
my ($rc, $check) = probe_check($p->{probe}, $probe, $p->{ca}, $p->{cb});
note("check: $check");
is($rc, 0, 'no acknowledged write lost, both nodes identical');
is($a->safe_psql('app', q{SELECT count(*) FROM pg_stat_subscription_stats WHERE apply_error_count > 0}), '0',
	'no apply error on a (nothing looped)');
is($b->safe_psql('app', q{SELECT count(*) FROM pg_stat_subscription_stats WHERE apply_error_count > 0}), '0',
	'no apply error on b');

done_testing();
