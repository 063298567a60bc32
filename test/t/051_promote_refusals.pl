# 051_promote_refusals.pl: guardrails refuse with their reasons and figures,
# and a promotion that fails or times out before the flip rolls back.
#
# Each refusal: dm_promote fails with SQLSTATE 55000 and a detail naming the
# check and the figures compared; dm_promotions records state 'refused'
# with the figures; nothing changed (the primary takes writes, the mirror
# does not).  Checks: mirror not in sync (subscription disabled) together
# with the lag in bytes; a long-running write transaction on the primary;
# apply errors on the mirror; DDL on the primary since the mirror was made.
# Rollback: the driver is held up after the fence (fault injection) past
# promote_timeout: the old primary is unfenced again,
# the mirror stays fenced, the slot made for the way back is gone, and
# acknowledged writes made through the multi-host string are all there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use DmTest;
use DmProbe;
use DmPair;

my $p = dm_pair();
my ($a, $b) = ($p->{a}, $p->{b});

# promote(OPTIONS): run dm_promote; returns (sqlstate, message + detail)
sub promote
{
	my ($opts) = @_;
	$opts //= '{}';
	my ($rc, $out, $err) = $a->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT * FROM driftmirror.dm_promote('orders', 'db', '$opts')");
	my ($state) = $err =~ /ERROR:  ([0-9A-Z]{5}):/;
	return ($state // ($rc == 0 ? 'ok' : 'unknown'), $err);
}

sub unchanged
{
	my ($what) = @_;
	is(primary_of($p), $a, "$what: a is still the primary");
	ok(writable($a), "$what: a still takes writes");
	ok(!writable($b), "$what: the mirror still refuses writes");
	is($a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
		'refused', "$what: recorded as refused");
	is($b->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots'), '0',
		"$what: no slot left on the mirror");
}

# reset_errors: once the apply worker runs again, reset its error counts
# (a failed worker's error reaches the statistics when it exits: reset
# until the count stays at zero)
sub reset_errors
{
	my $sub = $a->safe_psql('postgres', 'SELECT subscription_name FROM driftmirror.dm_mirror_status');
	$b->poll_query_until('app', qq{SELECT s.apply_error_count = 0 FROM pg_stat_subscription_stats s
		CROSS JOIN LATERAL (SELECT pg_stat_reset_subscription_stats(s.subid)) r WHERE s.subname = '$sub'})
	  or diag('apply errors could not be reset');
}

# --- mirror not in sync, and lag in bytes
my $sub = $a->safe_psql('postgres', 'SELECT subscription_name FROM driftmirror.dm_mirror_status');
$b->safe_psql('app', "SELECT driftmirror_node.session_bypass(); ALTER SUBSCRIPTION $sub DISABLE");
$a->safe_psql('app', q{INSERT INTO orders (note) SELECT 'lag ' || g FROM generate_series(1, 2000) g});
my ($state, $err) = promote('{"promote_max_lag_bytes": 1000}');
is($state, '55000', 'not in sync: refused with SQLSTATE 55000');
like($err, qr/refused/, 'not in sync: says refused');
like($err, qr/mirror not in sync: subscription \S+ is disabled/, 'not in sync: names the disabled subscription');
like($err, qr/replication lag \d+ bytes exceeds promote_max_lag_bytes 1000/, 'lag: figures compared');
like($a->safe_psql('postgres', q{SELECT guardrails ->> 'lag_bytes' FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	qr/^\d+$/, 'lag: the figure is recorded in dm_promotions');
unchanged('not in sync');
$b->safe_psql('app', "SELECT driftmirror_node.session_bypass(); ALTER SUBSCRIPTION $sub ENABLE");
ok(wait_mirroring($p), 'the mirror catches up again');

# --- a long-running write transaction on the primary
my $long = $a->background_psql('app');
$long->query_safe(q{BEGIN; INSERT INTO orders (note) VALUES ('long transaction')});
($state, $err) = promote('{"promote_max_xact_seconds": 0}');
is($state, '55000', 'long transaction: refused');
like($err, qr/1 write transaction\(s\) on the primary older than promote_max_xact_seconds 0; the oldest has run [0-9.]+ s/,
	'long transaction: figures compared');
unchanged('long transaction');
$long->query_safe('COMMIT');
$long->quit;

# --- apply errors on the mirror: a row only the mirror has collides
$b->safe_psql('app', q{SELECT driftmirror_node.session_bypass();
	INSERT INTO orders (id, note) VALUES (100000, 'only on the mirror')});
$a->safe_psql('app', q{INSERT INTO orders (id, note) VALUES (100000, 'collides')});
$b->poll_query_until('app',
	"SELECT apply_error_count > 0 FROM pg_stat_subscription_stats WHERE subname = '$sub'")
  or diag('no apply error seen');
($state, $err) = promote();
is($state, '55000', 'apply errors: refused');
like($err, qr/the mirror reports [1-9]\d* apply error\(s\) and 0 sync error\(s\) and its apply worker has run only [0-9.]+ s since/,
	'apply errors: figures');
unchanged('apply errors');
$b->safe_psql('app', q{SELECT driftmirror_node.session_bypass();
	DELETE FROM orders WHERE id = 100000});
$b->poll_query_until('app', q{SELECT count(*) = 1 FROM orders WHERE id = 100000 AND note = 'collides'})
  or diag('the collision was not resolved');
reset_errors();
ok(wait_mirroring($p), 'the mirror applies again');

# --- DDL since the mirror was made
$a->safe_psql('app', 'ALTER TABLE orders ADD COLUMN extra integer');
($state, $err) = promote();
is($state, '55000', 'DDL: refused');
like($err, qr/DDL since the mirror was made: the schemas differ \(only on the primary: public\.orders\.extra integer; only on the mirror: nothing\)/,
	'DDL: lists the difference');
unchanged('DDL');
$b->safe_psql('app', 'SELECT driftmirror_node.session_bypass(); ALTER TABLE orders ADD COLUMN extra integer');
# the rows written meanwhile (writable() above) failed to apply until now
$a->safe_psql('app', q{INSERT INTO orders (note) VALUES ('after the DDL')});
$b->poll_query_until('app', q{SELECT count(*) = 1 FROM orders WHERE note = 'after the DDL'})
  or diag('the mirror did not apply after the DDL');
reset_errors();
ok(wait_mirroring($p), 'the mirror applies again after the DDL');

# --- bad options
($state, $err) = promote('{"interval": "5s"}');
is($state, '22023', 'a non-promotion option is refused');
($state, $err) = promote('{"promote_timeout": "0 seconds"}');
is($state, '22023', 'an out-of-range promote_timeout is refused');
my ($rc, $out, $e2) = $a->psql('postgres', q{SELECT * FROM driftmirror.dm_promote('nosuch')});
like($e2, qr/resource group "nosuch" does not exist/, 'unknown group');

# --- an API call holding its group's lock does not stall the worker's
# mirror step (the status it records references the group: with a FOR
# UPDATE group lock the worker waited on it, and dm_promote, which takes
# the group lock then the mirror's row, deadlocked against it in CI)
{
	my ($in, $out, $err) = ('', '', '');
	my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	my $hold = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $a->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err, $timer);
	$in .= "BEGIN;\nSELECT driftmirror.dm_alter_group('orders', '{}');\nSELECT 'held';\n";
	$hold->pump until $out =~ /held/ || $err ne '' || $timer->is_expired;
	my $since = $a->safe_psql('postgres', 'SELECT clock_timestamp()');
	# with the lock held: the worker waited here until the poll timed out
	my $seen = $a->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM driftmirror.mirror
		WHERE primary_checked_at > '$since' AND mirror_checked_at > '$since'});
	$in .= "COMMIT;\n";
	$hold->finish;
	ok($seen, 'the worker records mirror status while an API call holds the group lock');
}

# --- timeout before the flip rolls back, under load
my $probe = probe_start($p->{probe}, $p->{multihost}, clients => 4, rate => 200);
ok($a->poll_query_until('app', 'SELECT count(*) > 100 FROM dm_probe'), 'the probe writes');
# the driver is held up after the fence (fault injection) beyond the timeout;
# meanwhile another session tries to drop the mirror
$a->safe_psql('postgres', q{ALTER SYSTEM SET driftmirror.promote_test_pause = 'catch_up:4000'; SELECT pg_reload_conf()});
my ($dout, $derr) = ('', '');
my $dropper = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $a->connstr('postgres'), '-c', q{DO $d$
	BEGIN
		FOR i IN 1 .. 600 LOOP
			EXIT WHEN EXISTS (SELECT FROM driftmirror.dm_promotions WHERE state = 'catching_up');
			PERFORM pg_sleep(0.05);
		END LOOP;
		PERFORM driftmirror.dm_drop_mirror('orders', 'db');
		RAISE NOTICE 'dropped';
	EXCEPTION WHEN OTHERS THEN
		RAISE NOTICE 'refused %: %', SQLSTATE, SQLERRM;
	END $d$} ],
	'>', \$dout, '2>', \$derr, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
($state, $err) = promote('{"promote_timeout": "3 seconds"}');
$dropper->finish;
like($derr, qr/refused 55006: resource "db" of group "orders" is being promoted \(promotion \d+, state catching_up\)/,
	'a drop of the mirror during the promotion is refused');
$a->safe_psql('postgres', q{ALTER SYSTEM RESET driftmirror.promote_test_pause; SELECT pg_reload_conf()});
is($state, '57014', 'timeout: fails with query_canceled');
like($err, qr/promotion failed and was rolled back: promotion of resource "db" of group "orders" timed out in step catch_up/,
	'timeout: names the step');
is($a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	'rolled_back', 'timeout: recorded as rolled back');
is($a->safe_psql('postgres', q{SELECT string_agg(step || ':' || outcome, ',' ORDER BY seq) FROM driftmirror.dm_promotion_steps
	WHERE promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}),
	'guardrails:ok,reverse_slot:ok,fence:ok,catch_up:failed,rollback:ok', 'timeout: the step log shows the rollback');
is(primary_of($p), $a, 'timeout: a is still the primary');
ok(writable($a), 'timeout: a takes writes again');
ok(!writable($b), 'timeout: the mirror stayed fenced');
is($b->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots'), '0',
	'timeout: the slot made for the way back is dropped');
ok($a->poll_query_until('app', 'SELECT count(*) > 50 FROM dm_probe WHERE created_at > now() - interval \'1 second\''),
	'timeout: the probe writes again');
ok(wait_mirroring($p), 'timeout: mirroring goes on');
my $summary = probe_stop($probe);
note("probe: $summary");
my ($crc, $check) = probe_check($p->{probe}, $probe, $p->{ca}, $p->{cb});
note("check: $check");
is($crc, 0, 'timeout: no acknowledged write lost, both nodes identical');

# --- the promotion worker's own statements in the control database obey
# driftmirror.worker_statement_timeout (0.1.0 armed it only in the main
# worker): a session holding the mirror's row makes the driver's first
# statement wait; it is cancelled after 1 s (57014), not by the driver's
# 10 s lock_timeout (55P03)
$a->safe_psql('postgres', q{ALTER SYSTEM SET driftmirror.worker_statement_timeout = '1s'; SELECT pg_reload_conf()});
$a->poll_query_until('postgres', q{SELECT current_setting('driftmirror.worker_statement_timeout') = '1s'})
  or diag('worker_statement_timeout was not reloaded');
my $holder = $a->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT 1 FROM driftmirror.mirror FOR UPDATE});
($state, $err) = promote();
$holder->query_safe('ROLLBACK');
$holder->quit;
$a->safe_psql('postgres', q{ALTER SYSTEM RESET driftmirror.worker_statement_timeout; SELECT pg_reload_conf()});
is($state, '57014', 'a stuck control-database statement of the promotion worker is cancelled by worker_statement_timeout')
  or diag($err);
like($err, qr/canceling statement due to statement timeout/, 'and says so');
is(primary_of($p), $a, 'statement timeout: a is still the primary');
ok(writable($a), 'statement timeout: a still takes writes');

# the promotion works once the obstacle is gone
($state, $err) = promote();
is($state, 'ok', 'a promotion without obstacles succeeds') or diag($err);
is(primary_of($p), $b, 'b is the primary now');

done_testing();
