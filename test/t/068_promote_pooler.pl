# 068_promote_pooler.pl: dm_promote drives the group's pgbouncer router in
# its flip.  A real pgbouncer (transaction pooling) in front of a primary
# and its mirror:
#   - a probe writing continuously through pgbouncer during dm_promote sees
#     no error at all, and every acknowledged write is on the new primary
#     exactly once (pgbouncer was paused before the fence, pointed at the
#     new primary and resumed after the flip); a second write pooler is
#     paused, switched and resumed with it;
#   - a client holding a transaction open through pgbouncer keeps PAUSE
#     from completing: the promotion times out, is rolled back and
#     pgbouncer is resumed (that client commits);
#   - the driver killed while pgbouncer is paused (before the fence): the
#     recovery worker rolls the promotion back and resumes pgbouncer;
#   - the router removed (dm_remove_router) while pgbouncer is paused, then
#     the driver killed: the promotion keeps what resuming it needs, and the
#     recovery resumes the removed router's pgbouncer;
#   - a promotion that ends failed with pgbouncer still paused (the driver
#     killed after the flip, the mirror dropped meanwhile): the recovery
#     ends it failed and resumes pgbouncer;
#   - an ended promotion that still records pgbouncer as paused (its driver
#     could not resume it): the worker's step resumes it.
# The step log records the pooler phases (PAUSE wait, switch and RESUME).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;
use DmPair qw(:DEFAULT promote_kill_driver last_promotion);
use DmRouters;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $p = dm_pair(conf => "driftmirror.router_files_directory = '$dir'\n");
my ($a, $b) = ($p->{a}, $p->{b});

open(my $inc, '>', "$dir/dm_app.ini") or die;
print $inc "[databases]\napp = host=" . $a->host . ' port=' . $a->port . " dbname=app\n";
close($inc);
my $bouncer = pgbouncer_start($dir, "$dir/dm_app.ini", 'transaction');
my $via_bouncer = "host=127.0.0.1 port=$bouncer->{port} dbname=app";

$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_router('orders', 'pool', 'pgbouncer', '$bouncer->{admin}',
		'{"database": "app", "databases_file": "dm_app.ini"}')});
dm_wait_for($a, q{SELECT bool_and(in_sync AND state = 'applied') FROM driftmirror.dm_routers},
	't', 'the pgbouncer router is applied');

# a second write pooler for the first switchover: PAUSE goes to both at
# once, both are switched and resumed
mkdir("$dir/second") or die;
open($inc, '>', "$dir/dm_app2.ini") or die;
print $inc "[databases]\napp = host=" . $a->host . ' port=' . $a->port . " dbname=app\n";
close($inc);
my $bouncer2 = pgbouncer_start("$dir/second", "$dir/dm_app2.ini", 'transaction');
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_router('orders', 'pool2', 'pgbouncer', '$bouncer2->{admin}',
		'{"database": "app", "databases_file": "dm_app2.ini"}')});
dm_wait_for($a, q{SELECT count(*) FILTER (WHERE in_sync AND state = 'applied') FROM driftmirror.dm_routers},
	'2', 'both pgbouncer routers are applied');

# SHOW DATABASES of pgbouncer (the first, or the one given): "paused port"
# of database app
sub bouncer_app
{
	my ($r) = @_;
	$r //= $bouncer;
	my @lines = split /\n/, `psql -X -A -F '|' -d '$r->{admin}' -c 'SHOW DATABASES' 2>/dev/null`;
	my @cols = split /\|/, shift(@lines) // '';
	my %i = map { $cols[$_] => $_ } 0 .. $#cols;
	for my $line (@lines)
	{
		my @f = split /\|/, $line;
		return "$f[$i{paused}] $f[$i{port}]" if @f && $f[0] eq 'app';
	}
	return 'none';
}

sub write_through_bouncer
{
	my ($note) = @_;
	my ($rc, $out, $err) = ('', '', '');
	IPC::Run::run([ 'psql', '-X', '-q', '-A', '-t', '-d', $via_bouncer, '-c',
		"INSERT INTO orders (note) VALUES ('$note') RETURNING current_setting('port')" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	chomp $out;
	return $? == 0 ? $out : "error: $err";
}

is(bouncer_app(), '0 ' . $a->port, 'pgbouncer points app at a, not paused');
is(bouncer_app($bouncer2), '0 ' . $a->port, 'the second pgbouncer too');

# ---- a switchover under write load through pgbouncer: no client error ----
ok(wait_mirroring($p), 'the mirror is in sync');
my $probe = probe_start($p->{probe}, $via_bouncer, clients => 4, rate => 200);
ok($a->poll_query_until('app', 'SELECT count(*) > 100 FROM dm_probe'), 'the probe writes through pgbouncer');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_promote('orders')});
is(primary_of($p), $b, 'b is the primary');
is(bouncer_app(), '0 ' . $b->port, 'the flip pointed pgbouncer at b and resumed it');
is(bouncer_app($bouncer2), '0 ' . $b->port, 'and the second pgbouncer');
is($a->safe_psql('postgres', q{
	SELECT string_agg(step || ' ' || coalesce(details ->> 'poolers_paused', details ->> 'poolers_switched'), ', ' ORDER BY seq)
	  FROM driftmirror.dm_promotion_steps
	 WHERE promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions) AND step IN ('fence', 'unfence')}),
	'fence 2, unfence 2', 'both poolers were paused, switched and resumed');
my $rows_b = $b->safe_psql('app', 'SELECT count(*) FROM dm_probe');
ok($b->poll_query_until('app', "SELECT count(*) > $rows_b + 100 FROM dm_probe"),
	'the probe goes on writing on b through pgbouncer');
my $summary = probe_stop($probe);
note("probe: $summary");
like($summary, qr/ errors=0\b/, 'the client through pgbouncer saw no error during the promotion');
ok(wait_mirroring($p), 'a mirrors b');
my ($rc, $check) = probe_verify($p, $probe);
note("check: $check");
is($rc, 0, 'every acknowledged write is on the new primary exactly once, both nodes identical');
like($check, qr/lost=0 duplicated=0 /, 'no lost or duplicated writes');
is($a->safe_psql('postgres', q{SELECT poolers_paused IS NULL FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	't', 'the promotion recorded no pooler left paused');
is($a->safe_psql('postgres', q{SELECT pause_ms IS NOT NULL FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	't', 'the write pause is measured');

# the rest with one pooler
$a->safe_psql('postgres', q{SELECT driftmirror.dm_remove_router('orders', 'pool2')});
router_stop($bouncer2);

# ---- PAUSE that cannot complete: rolled back by promote_timeout, resumed ----
my $held = IPC::Run::start([ 'psql', '-X', '-A', '-t', '-d', $via_bouncer ],
	'<', \my $hin, '>', \my $hout, '2>', \my $herr);
$hin = "BEGIN;\nSELECT 'in transaction';\n";
pump_until($held, IPC::Run::timeout(60), \$hout, qr/in transaction/)
  or die 'the holding client did not start its transaction';
my $s = promote_start($p, '{"promote_timeout": "3 s"}');
my $out = promote_finish($s);
like($out, qr/57014.*timed out in step fence/s, 'PAUSE held by an open transaction: the promotion times out in the fence step');
is($a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	'rolled_back', 'and is rolled back');
is(primary_of($p), $b, 'b stays the primary');
is(bouncer_app(), '0 ' . $b->port, 'pgbouncer is resumed, still on b');
$hin .= "INSERT INTO orders (note) VALUES ('held') RETURNING 'inserted';\nCOMMIT;\n\\q\n";
$held->finish;
like($hout, qr/inserted/, 'the client that held its transaction through pgbouncer commits');
is(write_through_bouncer('after timeout'), $b->port, 'a new write through pgbouncer lands on b');

# ---- the driver killed while pgbouncer is paused: recovery resumes it ----
ok(wait_mirroring($p), 'a mirrors b again');
promote_pause($p, 'fence', 120000);
$s = promote_start($p);
promote_wait_paused($p, 'fence', 'killed driver');
is(bouncer_app(), '1 ' . $b->port, 'pgbouncer is paused while the driver waits before the fence');
is($a->safe_psql('postgres', q{SELECT cardinality(poolers_paused) FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	'1', 'the promotion recorded the paused pooler');
my $pid = $a->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror promotion'});
kill 'KILL', $pid;
eval { $s->quit; };
ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM driftmirror.dm_promotions
	WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed')}), 'the promotion is finished');
is($a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	'rolled_back', 'the recovery rolled it back');
is(bouncer_app(), '0 ' . $b->port, 'the recovery resumed pgbouncer, still on b');
is($a->safe_psql('postgres', q{SELECT poolers_paused IS NULL FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	't', 'nothing is recorded paused any more');
is(write_through_bouncer('after recovery'), $b->port, 'a write through pgbouncer lands on b');

# the pooler phases are in the step log (bench/switchover prints them)
is($a->safe_psql('postgres', q{SELECT count(*) FROM driftmirror.dm_promotion_steps
	WHERE (step = 'fence' AND details ? 'pooler_pause_wait_ms')
	   OR (step = 'unfence' AND details ? 'pooler_switch_resume_ms' AND details ? 'pooler_hold_ms')}),
	'2', 'the first promotion recorded the PAUSE wait and the switch and RESUME times');

sub add_router
{
	$a->safe_psql('postgres', qq{
		SELECT driftmirror.dm_add_router('orders', 'pool', 'pgbouncer', '$bouncer->{admin}',
			'{"database": "app", "databases_file": "dm_app.ini"}')});
	dm_wait_for($a, q{SELECT bool_and(in_sync AND state = 'applied') FROM driftmirror.dm_routers},
		't', 'the pgbouncer router is applied again');
}

# ---- the router removed while pgbouncer is paused: still resumed ----
ok(wait_mirroring($p), 'a mirrors b again');
promote_pause($p, 'fence', 120000);
$s = promote_start($p);
promote_wait_paused($p, 'fence', 'router removed');
is(bouncer_app(), '1 ' . $b->port, 'pgbouncer is paused while the driver waits before the fence');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_remove_router('orders', 'pool')});
is(last_promotion($p, q{coalesce(cardinality(poolers_paused), 0) || ' ' || jsonb_array_length(poolers_removed) || ' '
	|| (poolers_removed -> 0 ->> 'name')}), '0 1 pool',
	'dm_remove_router moved the paused router to what the promotion must still resume');
like($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_actions WHERE kind = 'router_remove' ORDER BY id DESC LIMIT 1}),
	qr/router "pool" removed; promotion \d+ paused it and resumes it/, 'the action log says the removed router is still resumed');
promote_kill_driver($p, $s);
ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM driftmirror.dm_promotions
	WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed')}), 'the promotion is finished');
is(last_promotion($p, 'state'), 'rolled_back', 'the recovery rolled it back');
ok($a->poll_query_until('postgres', q{SELECT poolers_removed IS NULL FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	'the removed router is no longer owed a RESUME');
is(bouncer_app(), '0 ' . $b->port, 'the removed router\'s pgbouncer was resumed, still on b');
is(write_through_bouncer('after removal'), $b->port, 'a write through pgbouncer lands on b');

# ---- a promotion that ends failed with pgbouncer paused: resumed ----
add_router();
ok(wait_mirroring($p), 'a mirrors b again');
promote_pause($p, 'unfence', 120000);
$s = promote_start($p);
promote_wait_paused($p, 'unfence', 'failed promotion');
# (the worker's router phase may point it at the new primary already: the
# routes were flipped; it stays paused)
like(bouncer_app(), qr/^1 /, 'pgbouncer is paused while the driver waits after the flip');
is(last_promotion($p, 'cardinality(poolers_paused)'), '1', 'the promotion records the paused pooler');
# after the flip a drop is allowed: the operator gives up on the way back
$a->safe_psql('postgres', q{SELECT driftmirror.dm_drop_mirror('orders', 'db')});
promote_kill_driver($p, $s);
ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM driftmirror.dm_promotions
	WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed')}), 'the promotion has ended');
is(last_promotion($p, 'state || \' \' || error_sqlstate'), 'failed 55000', 'it ended failed: its mirror was dropped');
like(last_promotion($p, 'error'), qr/the mirror was dropped during the promotion \(in state unfencing\)/,
	'the error says why');
ok($a->poll_query_until('postgres', q{SELECT poolers_paused IS NULL FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	'the failed promotion no longer records a paused pooler');
like(bouncer_app(), qr/^0 /, 'pgbouncer was resumed: it serves again');
my ($out_sel, $err_sel) = ('', '');
IPC::Run::run([ 'psql', '-X', '-A', '-t', '-d', $via_bouncer, '-c', 'SELECT 42' ],
	'>', \$out_sel, '2>', \$err_sel, IPC::Run::timeout(60));
is($out_sel, "42\n", 'a query through pgbouncer is answered');
$a->safe_psql('postgres', q{ALTER SYSTEM RESET driftmirror.promote_test_pause; SELECT pg_reload_conf()});

# ---- an ended promotion still recording a paused pooler (as when its
# driver could not resume it): the worker's step resumes it ----
system('psql', '-X', '-q', '-d', $bouncer->{admin}, '-c', 'PAUSE app') == 0 or die 'PAUSE app';
like(bouncer_app(), qr/^1 /, 'pgbouncer paused by hand');
$a->safe_psql('postgres', q{UPDATE driftmirror.promotion SET poolers_paused =
	ARRAY[(SELECT id FROM driftmirror.router WHERE name = 'pool')]
	WHERE id = (SELECT max(id) FROM driftmirror.promotion)});
ok($a->poll_query_until('postgres', q{SELECT poolers_paused IS NULL FROM driftmirror.promotion ORDER BY id DESC LIMIT 1}),
	'the worker resumed the pooler an ended (failed) promotion still recorded, and cleared the record');
like(bouncer_app(), qr/^0 /, 'pgbouncer serves again');

router_stop($bouncer);
done_testing();
