# 059_promote_faults.pl: failure paths of promotion, under load, on real
# clusters.  Node a holds the control database; the primary alternates.
#
#   mirror down    the mirror stops during the promotion; the rollback
#                  cannot reach it: its slot and publication of the way
#                  back go to the cleanup queue, dropped once it is back
#   concurrent     two dm_promote calls on one group at once: one promotes,
#                  the other is refused with 55006 naming the running one
#   old down       the old primary (not the control node) stops during the
#                  promotion: the rollback retries it and finishes when it
#                  is back
#   error after    the old primary is down when the driver reaches the
#   the flip       reverse step (an error, not a kill): the caller is told,
#                  the main worker finishes once the node is back
#   new primary    the new primary crashes (immediate stop, restart)
#   crashes        after the flip, before and after its unfence
#   cancel         pg_cancel_backend of the caller: it gets 57014 saying the
#                  promotion goes on; the driver finishes it
#
# Each pause lasts until the test has reacted to it (a stop, a cancel) and
# releases it (promote_release); its length is only a bound, not an
# assertion.
# After each: the promotion's state is final and says why, exactly one node
# takes writes (the one the catalog names), the mirror mirrors again, and
# at the end every acknowledged write of the probe (writing through the
# multi-host string all along) is on the primary exactly once, both nodes
# are identical and exactly one replication slot is left.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;
use DmPair;

my $p = dm_pair();
my ($a, $b) = ($p->{a}, $p->{b});

my $probe = probe_start($p->{probe}, $p->{multihost}, clients => 2, rate => 100);
ok($a->poll_query_until('app', 'SELECT count(*) > 50 FROM dm_probe'), 'the probe writes');

sub last_promotion
{
	my ($cols) = @_;
	return $a->safe_psql('postgres', "SELECT $cols FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1");
}

# converged(WHAT, STATE, ERROR_RE, PRIMARY): the last promotion ended in
# STATE (its error matching ERROR_RE, or none), PRIMARY alone takes writes,
# the mirror mirrors, no slot of another direction is left over
sub converged
{
	my ($what, $state, $error_re, $primary) = @_;
	ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM driftmirror.dm_promotions
		WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed')}),
		"$what: the promotion ended");
	is(last_promotion('state'), $state, "$what: state $state");
	note("$what: error: " . last_promotion(q{coalesce(error, '(none)')}));
	if (defined $error_re)
	{
		like(last_promotion('error'), $error_re, "$what: the error says why");
	}
	is(primary_of($p), $primary, "$what: the catalog names the expected primary");
	my $other = $primary == $a ? $b : $a;
	ok(writable($primary), "$what: the primary takes writes");
	ok(!writable($other), "$what: the other node refuses writes");
	ok(wait_mirroring($p), "$what: the mirror mirrors");
	# the lag is measured against a primary position sampled at a status
	# read; one sampled before a node restarted is confirmed only once the
	# restarted apply worker has caught up, and until then the next
	# promotion's guardrail sees its age.  Wait until a sample taken after
	# the restart has been confirmed (lag 0).
	ok($a->poll_query_until('postgres',
			q{SELECT lag_seconds = 0 FROM driftmirror.dm_mirror_status}),
		"$what: the mirror has confirmed a recent primary position");
	ok($a->poll_query_until('postgres', 'SELECT count(*) = 0 FROM driftmirror.dm_mirror_cleanups'),
		"$what: no cleanup pending");
	my $slots = join('+', map { $_->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots') } ($a, $b));
	is($slots, $primary == $a ? '1+0' : '0+1', "$what: one slot, on the primary");
	note($a->safe_psql('postgres', q{SELECT string_agg(step || ':' || outcome || coalesce(' (' || reason || ')', ''), ' ' ORDER BY seq)
		FROM driftmirror.dm_promotion_steps WHERE promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}));
}

# ---- the mirror (b) is down during the rollback of a -> b
promote_pause($p, 'catch_up', 60000);
my $s = promote_start($p, '{"promote_timeout": "30 s"}');
promote_wait_paused($p, 'catch_up', 'mirror down');
$b->stop('immediate');
promote_release($p);
my $out = promote_finish($s);
like($out, qr/promotion failed and was rolled back/, 'mirror down: the caller is told it was rolled back');
is(last_promotion('state'), 'rolled_back', 'mirror down: rolled back while the mirror is down');
ok(writable($a), 'mirror down: the old primary takes writes again');
is($a->safe_psql('postgres', q{SELECT string_agg(what, ',' ORDER BY what) FROM driftmirror.dm_mirror_cleanups
	WHERE node = 'mirror'}), 'publication,slot',
	'mirror down: the slot and publication of the way back wait in the cleanup queue');
$b->start;
converged('mirror down', 'rolled_back', qr/node "orders\/db mirror \(new primary\)"/, $a);

# ---- two concurrent dm_promote calls on one group (a -> b)
my $recorded = $a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions');
promote_pause($p, 'reverse_slot', 60000);
my $s1 = promote_start($p);
my $s2 = promote_start($p);
promote_wait_paused($p, 'reverse_slot', 'concurrent');
# the driver of one call waits; the other call has returned
ok($a->poll_query_until('postgres', q{SELECT count(*) = 2 AND count(*) FILTER (WHERE state = 'active') = 1
	FROM pg_stat_activity WHERE query LIKE '%dm_promote(%' AND backend_type = 'client backend'
	AND pid <> pg_backend_pid()}), 'concurrent: both calls were made while one promotion runs');
promote_release($p);
my ($out1, $out2) = (promote_finish($s1), promote_finish($s2));
my @won = grep { /^db$/m && !/ERROR/ } ($out1, $out2);
my @lost = grep { /ERROR:  55006: group "orders" already has a promotion in progress \(id \d+\)/ } ($out1, $out2);
is(scalar @won, 1, 'concurrent: one call promotes') or diag("$out1\n----\n$out2");
is(scalar @lost, 1, 'concurrent: the other is refused with 55006 naming the running promotion');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions'), $recorded + 1,
	'concurrent: only one promotion was recorded');
converged('concurrent', 'done', undef, $b);

# ---- the old primary (b, not the control node) is down during the
# rollback of b -> a, longer than the driver's minute of retries: the
# promotion stays rolling_back, the main worker retries until b is back
promote_pause($p, 'catch_up', 60000);
$s = promote_start($p, '{"promote_timeout": "15 s"}');
promote_wait_paused($p, 'catch_up', 'old down');
$b->stop('immediate');
promote_release($p);
ok($a->poll_query_until('postgres', q{SELECT count(*) = 1 FROM driftmirror.dm_promotion_steps
	WHERE step = 'rollback' AND outcome = 'running'
	  AND promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}),
	'old down: the rollback runs while the old primary is down');
ok(!writable($a), 'old down: the mirror stays fenced meanwhile');
$out = promote_finish($s);
like($out, qr/promotion failed; its rollback is pending \(the worker retries\)/,
	'old down: after a minute the caller is told the rollback is pending');
is(last_promotion('state'), 'rolling_back', 'old down: the promotion stays rolling_back');
ok(!writable($a), 'old down: the mirror is still fenced');
$b->start;
converged('old down', 'rolled_back',
	qr/(old primary|timed out in step).*\(rolled back; the rollback was finished by a recovery/s, $b);

# ---- an error after the flip (b -> a): the old primary b is down when the
# driver reaches the reverse step
promote_pause($p, 'reverse', 60000);
$s = promote_start($p);
promote_wait_paused($p, 'reverse', 'error after the flip');
$b->stop('immediate');
promote_release($p);
$out = promote_finish($s);
like($out, qr/promotion flipped the routes but could not finish yet \(the worker retries\)/,
	'error after the flip: the caller is told the worker finishes it');
is(last_promotion('state'), 'reversing', 'error after the flip: the promotion waits in reversing');
ok(writable($a), 'error after the flip: the new primary takes writes meanwhile');
ok($a->poll_query_until('postgres', q{SELECT count(*) >= 1 FROM driftmirror.dm_promotion_steps
	WHERE step = 'reverse' AND outcome = 'failed'
	  AND promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}),
	'error after the flip: the failed step is in the step log');
$b->start;
converged('error after the flip', 'done', undef, $a);

# ---- the new primary (b) crashes after the flip and its unfence (a -> b),
# once it took writes
promote_pause($p, 'reverse', 60000);
$s = promote_start($p);
promote_wait_paused($p, 'reverse', 'new primary crashes after its unfence');
ok($b->poll_query_until('app', q{SELECT count(*) > 0 FROM dm_probe WHERE created_at > now() - interval '1 second'}),
	'new primary crashes after its unfence: the probe writes on it');
$b->stop('immediate');
$b->start;
promote_release($p);
$out = promote_finish($s);
note("caller: $out");
converged('new primary crashes after its unfence', 'done', undef, $b);

# ---- the caller is cancelled (b -> a): the driver finishes
promote_pause($p, 'catch_up', 60000);
$s = promote_start($p);
promote_wait_paused($p, 'catch_up', 'cancel');
$a->safe_psql('postgres', q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	WHERE query LIKE '%dm_promote(%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()});
$out = promote_finish($s);
promote_release($p);
like($out, qr/ERROR:  57014: canceling statement due to user request/, 'cancel: the caller gets 57014');
like($out, qr/promotion \d+ of resource "db" of group "orders" goes on in the background/,
	'cancel: the caller is told the promotion goes on');
converged('cancel', 'done', undef, $a);

# ---- the new primary (b) crashes after the flip, before its unfence (a -> b)
promote_pause($p, 'unfence', 60000);
$s = promote_start($p);
promote_wait_paused($p, 'unfence', 'new primary crashes');
$b->stop('immediate');
$b->start;
promote_release($p);
$out = promote_finish($s);
note("caller: $out");
converged('new primary crashes before its unfence', 'done', undef, $b);

# ---- nothing lost
my $summary = probe_stop($probe);
note("probe: $summary");
my ($rc, $check) = probe_verify($p, $probe);
note("check: $check");
is($rc, 0, 'every acknowledged row is on the primary exactly once, and both nodes are identical');

done_testing();
