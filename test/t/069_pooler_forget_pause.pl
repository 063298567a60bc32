# 069_pooler_forget_pause.pl: a pgbouncer router that a promotion paused
# and that is then gone for good (killed by PID, never restarted).  The
# RESUME the promotion owes it blocks dm_drop_group and dm_remove_resource
# (55006) and keeps the worker retrying; dm_router_forget_pause(group,
# router) gives it up explicitly:
#   - refused with nothing changed: NULL names (22004), an unknown group or
#     router (42704), a router nothing is owed to (55000), a promotion that
#     owes it and is being driven right now (55006);
#   - a promotion left in rolling_back by the vanished pooler (its
#     recovery cannot resume it): once the RESUME is given up, the recovery
#     finishes the rollback;
#   - a promotion that ended failed with the pooler still owed (the driver
#     killed after the flip, the mirror dropped): dm_remove_resource and
#     dm_drop_group refused; given up, recorded in the action log; then the
#     resource is removed and the group dropped.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmPair qw(:DEFAULT promote_kill_driver last_promotion);
use DmRouters;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $p = dm_pair(conf => "driftmirror.router_files_directory = '$dir'\n");
my ($a, $b) = ($p->{a}, $p->{b});

my $bouncer;

# a pgbouncer in front of the current primary, registered as router "pool"
sub start_bouncer
{
	my $primary = primary_of($p);
	open(my $inc, '>', "$dir/dm_app.ini") or die;
	print $inc "[databases]\napp = host=" . $primary->host . ' port=' . $primary->port . " dbname=app\n";
	close($inc);
	$bouncer = pgbouncer_start($dir, "$dir/dm_app.ini", 'transaction');
	$a->safe_psql('postgres', qq{
		SELECT driftmirror.dm_add_router('orders', 'pool', 'pgbouncer', '$bouncer->{admin}',
			'{"database": "app", "databases_file": "dm_app.ini"}')});
	dm_wait_for($a, q{SELECT bool_and(in_sync AND state = 'applied') FROM driftmirror.dm_routers},
		't', 'the pgbouncer router is applied');
}

# pgbouncer gone for good: SIGKILL by PID, not restarted
sub kill_bouncer
{
	my $pid = $bouncer->{handle}{KIDS}[0]{PID};
	ok(kill('KILL', $pid), "pgbouncer (pid $pid) killed");
	eval { $bouncer->{handle}->finish; };
	$bouncer->{handle} = undef;
}

# what a refusal must leave as it was
sub owed_state
{
	return $a->safe_psql('postgres', q{
		SELECT coalesce(string_agg(p.id || ':' || coalesce(p.poolers_paused::text, '-') || ':'
		                           || coalesce(p.poolers_removed::text, '-'), ' ' ORDER BY p.id), 'none')
		       || ' actions=' || (SELECT count(*) FROM driftmirror.dm_actions WHERE kind = 'router_forget_pause')
		       || ' routers=' || (SELECT count(*) FROM driftmirror.router)
		       || ' resources=' || (SELECT count(*) FROM driftmirror.resource)
		  FROM driftmirror.promotion p});
}

sub refused
{
	my ($sql, $state, $what) = @_;
	my $before = owed_state();
	my ($rc, $out, $err) = $a->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($rc, 0, "$what: refused");
	like($err, qr/ERROR:  $state:/, "$what: SQLSTATE $state") or diag($err);
	is(owed_state(), $before, "$what: nothing changed");
	return $err;
}

# dm_router_forget_pause('orders', 'pool') (as role, if given) until it
# is not refused for a promotion being driven (a recovery of the worker
# may hold the promotion's lock at that moment); its answer, or the error
sub forget_pause
{
	my ($role) = @_;
	my $sql = ($role ? "SET ROLE $role; " : '')
	  . q{SELECT driftmirror.dm_router_forget_pause('orders', 'pool')::text};
	for (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
	{
		my ($rc, $out, $err) = $a->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		return $out if $rc == 0;
		return "error: $err" unless $err =~ /ERROR:  55006:/;
		select(undef, undef, undef, 0.1);
	}
	return 'still refused with 55006';
}

start_bouncer();

# ---- bad input, before any pause ----
refused(q{SELECT driftmirror.dm_router_forget_pause(NULL, 'pool')}, '22004', 'NULL group');
refused(q{SELECT driftmirror.dm_router_forget_pause('orders', NULL)}, '22004', 'NULL router');
refused(q{SELECT driftmirror.dm_router_forget_pause('nosuch', 'pool')}, '42704', 'unknown group');
refused(q{SELECT driftmirror.dm_router_forget_pause('orders', 'nosuch')}, '42704', 'unknown router');
my $err = refused(q{SELECT driftmirror.dm_router_forget_pause('orders', 'pool')}, '55000',
	'a router no promotion owes a RESUME');
like($err, qr/no promotion of group "orders" owes router "pool" a RESUME/, 'the message says nothing is owed');

# ---- paused before the fence, pgbouncer killed, driver killed: the
# recovery cannot finish the rollback until the RESUME is given up ----
promote_pause($p, 'fence', 120000);
my $s = promote_start($p);
promote_wait_paused($p, 'fence', 'rolling back');
is(last_promotion($p, 'cardinality(poolers_paused)'), '1', 'the promotion recorded the paused pooler');
kill_bouncer();
$err = refused(q{SELECT driftmirror.dm_router_forget_pause('orders', 'pool')}, '55006',
	'the promotion that owes the RESUME is being driven');
like($err, qr/is being driven right now/, 'the message says the promotion is being driven');
my $first = last_promotion($p, 'id');
# (SIGKILL of a backend: the node restarts, poll_query_until waits for it)
promote_kill_driver($p, $s);
ok($a->poll_query_until('postgres', qq{SELECT state = 'rolling_back' AND EXISTS (
	SELECT FROM driftmirror.promotion_step WHERE promotion_id = $first AND step = 'rollback')
	FROM driftmirror.promotion WHERE id = $first}), 'the recovery started the rollback');
$a->wait_for_log(qr/pgbouncer router\(s\) paused by the promotion could not be resumed yet/);
is(last_promotion($p, 'state || \' \' || cardinality(poolers_paused)'), 'rolling_back 1',
	'the rollback cannot finish: the pooler is still owed its RESUME');
refused(q{SELECT driftmirror.dm_drop_group('orders', true)}, '55006', 'dm_drop_group while rolling back');

is(forget_pause(), "{$first}", 'dm_router_forget_pause gives up the RESUME the rolling-back promotion owed');
ok($a->poll_query_until('postgres', qq{SELECT state FROM driftmirror.promotion WHERE id = $first}, 'rolled_back'),
	'the recovery then finishes the rollback');
is(last_promotion($p, 'coalesce(poolers_paused::text, \'none\')'), 'none', 'nothing is owed any more');
like($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_actions
	WHERE kind = 'router_forget_pause' ORDER BY id DESC LIMIT 1}),
	qr/the RESUME that promotion $first owed pgbouncer router "pool" was given up/,
	'the action log records what was given up');
refused(q{SELECT driftmirror.dm_router_forget_pause('orders', 'pool')}, '55000', 'giving it up twice');

# ---- a promotion that ended failed still owing the RESUME ----
$a->safe_psql('postgres', q{SELECT driftmirror.dm_remove_router('orders', 'pool')});
start_bouncer();
ok(wait_mirroring($p), 'the mirror is in sync');
promote_pause($p, 'unfence', 120000);
$s = promote_start($p);
promote_wait_paused($p, 'unfence', 'failed promotion');
my $second = last_promotion($p, 'id');
is(last_promotion($p, 'cardinality(poolers_paused)'), '1', 'the promotion records the paused pooler');
kill_bouncer();
# after the flip a drop is allowed: the operator gives up on the way back
$a->safe_psql('postgres', q{SELECT driftmirror.dm_drop_mirror('orders', 'db')});
promote_kill_driver($p, $s);
ok($a->poll_query_until('postgres', qq{SELECT state FROM driftmirror.promotion WHERE id = $second}, 'failed'),
	'the promotion ended failed: its mirror was dropped');
is(last_promotion($p, 'cardinality(poolers_paused)'), '1', 'it still owes the vanished pgbouncer its RESUME');
$a->safe_psql('postgres', q{ALTER SYSTEM RESET driftmirror.promote_test_pause; SELECT pg_reload_conf()});

$err = refused(q{SELECT driftmirror.dm_remove_resource('orders', 'db')}, '55006',
	'dm_remove_resource with the RESUME owed');
like($err, qr/still paused by a promotion.*dm_router_forget_pause/s, 'the hint names dm_router_forget_pause');
refused(q{SELECT driftmirror.dm_drop_group('orders', true)}, '55006', 'dm_drop_group with the RESUME owed');

# the monitor cannot give it up; the admin role can
$a->safe_psql('postgres', q{CREATE ROLE dm_forget_monitor IN ROLE driftmirror_monitor;
	CREATE ROLE dm_forget_admin IN ROLE driftmirror_admin});
refused(q{SET ROLE dm_forget_monitor; SELECT driftmirror.dm_router_forget_pause('orders', 'pool')},
	'42501', 'the monitor role');

is(forget_pause('dm_forget_admin'), "{$second}", 'the admin role gives up the RESUME the failed promotion owed');
is($a->safe_psql('postgres', qq{SELECT coalesce(poolers_paused::text, 'none') || ' ' || state
	FROM driftmirror.promotion WHERE id = $second}), 'none failed', 'nothing is owed any more, the promotion stays failed');
is($a->safe_psql('postgres', q{SELECT inputs ->> 'router' || ' ' || (inputs -> 'promotions')::text
	FROM driftmirror.dm_actions WHERE kind = 'router_forget_pause' ORDER BY id DESC LIMIT 1}),
	"pool [$second]", 'the action log has the router and the promotion');

$a->safe_psql('postgres', q{SELECT driftmirror.dm_remove_resource('orders', 'db')});
is($a->safe_psql('postgres', q{SELECT count(*) FROM driftmirror.resource}), '0',
	'dm_remove_resource works now');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_drop_group('orders')});
is($a->safe_psql('postgres', q{SELECT count(*) FROM driftmirror.resource_group WHERE name = 'orders'}), '0',
	'dm_drop_group works now');

done_testing();
