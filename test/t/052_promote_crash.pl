# 052_promote_crash.pl: promotions interrupted at each kind of step, under
# load, converge to exactly one writable primary with nothing lost.
#
# Fault injection (driftmirror.promote_test_pause) holds the promotion
# driver before a step, visibly in pg_stat_activity (the pause's length is
# a bound: a driver that lives on is released once the fault is in place);
# then one of:
#   worker   kill -9 of the promotion worker (node a, which holds the
#            control database and here the old primary, restarts after the
#            crash): before the flip it is rolled back, after it finished
#   session  the session that called dm_promote is terminated: the worker
#            carries on and finishes
#   control  node a (control database and old primary) stops immediately
#            and starts again
#   old      the old primary (node b, not the control node) stops
#            immediately and starts again while the driver waits
# After each: no unfinished promotion, the expected outcome, exactly one
# node takes writes and it is the primary the catalog names, and the mirror
# mirrors again.  At the end every acknowledged write of the probe (writing
# through the multi-host string all along) is on the primary exactly once
# and both nodes are identical.
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

my $probe = probe_start($p->{probe}, $p->{multihost}, clients => 4, rate => 200);
ok($a->poll_query_until('app', 'SELECT count(*) > 100 FROM dm_probe'), 'the probe writes');

# interrupt(STEP, HOW, PAUSE_MS, EXPECTED_STATE, EXPECTED_PRIMARY, ...):
# the expected outcome, or several (state, primary) pairs when the fault can
# land on either side of a step and each outcome is safe
sub interrupt
{
	my ($step, $how, $pause, %expected) = @_;
	my ($expect, $expect_primary);
	my $what = "$how killed before $step";

	$a->safe_psql('postgres', qq{ALTER SYSTEM SET driftmirror.promote_test_pause = '$step:$pause';
		SELECT pg_reload_conf()});
	my $caller = $a->background_psql('postgres', on_error_stop => 0);
	$caller->query_until(qr/started/,
		"\\echo started\nSELECT * FROM driftmirror.dm_promote('orders');\n");
	ok($a->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE query LIKE '%paused before step $step (test)'}), "$what: the driver waits before $step");
	$a->safe_psql('postgres', q{ALTER SYSTEM RESET driftmirror.promote_test_pause; SELECT pg_reload_conf()});

	if ($how eq 'worker')
	{
		my $pid = $a->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror promotion'});
		kill 'KILL', $pid;
	}
	elsif ($how eq 'session')
	{
		$a->safe_psql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE query LIKE '%dm_promote(%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()});
	}
	elsif ($how eq 'control')
	{
		$a->stop('immediate');
		$a->start;
	}
	elsif ($how eq 'old')
	{
		$b->stop('immediate');
		$b->start;
	}
	# the driver lives on after these two: it goes on now
	promote_release($p) if $how eq 'session' || $how eq 'old';
	eval { $caller->quit; };

	ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM driftmirror.dm_promotions
		WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed')}),
		"$what: the promotion is finished or rolled back");
	my $state = $a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1});
	($expect, $expect_primary) = exists $expected{$state} ? ($state, $expected{$state}) : (join(' or ', sort keys %expected), undef);
	is($state, $expect, "$what: outcome $expect");
	$expect_primary //= (values %expected)[0];
	is(primary_of($p), $expect_primary, "$what: the catalog names the expected primary");
	my $other = $expect_primary == $a ? $b : $a;
	ok(writable($expect_primary), "$what: the primary takes writes");
	ok(!writable($other), "$what: the other node refuses writes");
	ok(wait_mirroring($p), "$what: the mirror mirrors again");
	note($a->safe_psql('postgres', q{SELECT string_agg(step || ':' || outcome, ' ' ORDER BY seq)
		FROM driftmirror.dm_promotion_steps WHERE promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}));
}

# a -> b, worker killed after the fence: rolled back, a stays the primary
interrupt('catch_up', 'worker', 60000, 'rolled_back', $a);
# a -> b, worker killed after the flip: finished, b is the primary
interrupt('unfence', 'worker', 60000, 'done', $b);
# b -> a, the calling session killed: the worker finishes
interrupt('sequences', 'session', 60000, 'done', $a);
# a -> b, the control node (also the old primary) restarted after the fence
interrupt('catch_up', 'control', 60000, 'rolled_back', $a);
# a -> b, the control node restarted after the unfence: finished
interrupt('reverse', 'control', 60000, 'done', $b);
# b -> a, the old primary b (not the control node) restarted while the
# driver waits after the fence: rolled back when the old primary's fence
# file was not confirmed before it went down (the flip waits for that
# confirmation), finished when its answer had arrived (b then restarts
# fenced by its file); both leave one writable primary, nothing lost
interrupt('catch_up', 'old', 60000, rolled_back => $b, done => $a);

my $summary = probe_stop($probe);
note("probe: $summary");
my $primary = primary_of($p);
my $mirror = mirror_of($p);
my ($rc, $check) = probe_check($p->{probe}, $probe,
	'host=' . $primary->host . ' port=' . $primary->port . ' dbname=app',
	'host=' . $mirror->host . ' port=' . $mirror->port . ' dbname=app');
note("check: $check");
is($rc, 0, 'every acknowledged row is on the primary exactly once, and both nodes are identical');

my $slots = $a->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots')
  + $b->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots');
is($slots, 1, 'exactly one replication slot remains')
  or diag($a->safe_psql('app', 'SELECT slot_name, active FROM pg_replication_slots'), "\n",
	$b->safe_psql('app', 'SELECT slot_name, active FROM pg_replication_slots'));

done_testing();
