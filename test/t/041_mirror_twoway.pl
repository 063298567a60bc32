# 041_mirror_twoway.pl: two-way mirrors, conflicts, and crash recovery of
# mirror creation.
#
# - two-way: writes on both sides converge, nothing loops (no apply errors,
#   no duplicates), both directions use driftmirror-plugin slots, the mirror
#   is not fenced; a deliberate conflict in each direction (a row that exists
#   only on the receiving side, made there through a replication origin so
#   it is not sent) is reported in dm_mirror_status and the action log;
#   dropping removes both directions' objects.
# - kill -9 of the worker while it creates the subscription on the mirror
#   (held up by a lock on pg_subscription): the restarted worker finishes
#   the creation, with exactly one subscription and one slot.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $a = dm_node('a', logical => 1, conf => 'restart_after_crash = on');
my $b = dm_node('b', logical => 1, no_extension => 1);

sub conninfo { my ($n, $db) = @_; return 'host=' . $n->host . ' port=' . $n->port . " dbname=$db"; }

my $schema = q{
	CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
	CREATE TABLE log (id bigint PRIMARY KEY, src text NOT NULL);
};
for my $n ($a, $b)
{
	$n->safe_psql('postgres', 'CREATE DATABASE app');
	$n->safe_psql('app', $schema);
}
$a->safe_psql('app', q{
	INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 1000) g;
	INSERT INTO log SELECT g, 'a' FROM generate_series(1, 1000) g;
});
my $primary = conninfo($a, 'app');
my $mirror = conninfo($b, 'app');
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('g', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('g', 'db', 'postgres', '$primary');
	SELECT driftmirror.dm_create_mirror('g', 'db', '$mirror', '{"two_way": true}');
});

sub wait_state
{
	my ($want, $what) = @_;
	$a->poll_query_until('postgres',
		"SELECT bool_and(state IN ('$want', 'failed')) FROM driftmirror.dm_mirror_status");
	is($a->safe_psql('postgres',
		"SELECT string_agg(state || coalesce(' ' || last_error, ''), ',') FROM driftmirror.dm_mirror_status"),
		$want, $what);
}
wait_state('mirroring', 'the two-way mirror reaches state mirroring');

is($a->safe_psql('app', "SELECT string_agg(slot_name || ':' || plugin, ',') FROM pg_replication_slots"),
	'dm_1_1:driftmirror', 'the primary\'s slot uses the driftmirror plugin');
is($b->safe_psql('app', "SELECT string_agg(slot_name || ':' || plugin, ',') FROM pg_replication_slots"),
	'dm_1_1_rev:driftmirror', 'the mirror\'s slot too');
is($a->safe_psql('app', 'SELECT subname FROM pg_subscription'), 'dm_1_1_rev',
	'the primary subscribes to the mirror');
is($b->safe_psql('app', 'SELECT count(*) FROM driftmirror_node.fence_status()'), '0',
	'a two-way mirror is not fenced');

# caught_up(NODE, SLOT): everything written on NODE so far is confirmed
sub caught_up
{
	my ($node, $slot) = @_;
	my $lsn = $node->safe_psql('app', 'SELECT pg_current_wal_lsn()');
	ok($node->poll_query_until('app',
		"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = '$slot'"),
		$node->name . ": $slot confirmed up to $lsn");
}
sub both_caught_up
{
	caught_up($a, 'dm_1_1');
	caught_up($b, 'dm_1_1_rev');
	caught_up($a, 'dm_1_1');
}

# writes on both sides
$a->safe_psql('app', q{
	INSERT INTO log SELECT g, 'a' FROM generate_series(1001, 2000) g;
	UPDATE t SET v = v || '+a' WHERE id <= 100;
	DELETE FROM t WHERE id BETWEEN 901 AND 950;
});
$b->safe_psql('app', q{
	INSERT INTO log SELECT g, 'b' FROM generate_series(100001, 101000) g;
	UPDATE t SET v = v || '+b' WHERE id BETWEEN 101 AND 200;
	DELETE FROM t WHERE id BETWEEN 951 AND 1000;
	INSERT INTO t VALUES (5000, 'b new');
});
both_caught_up();
my $converged_at = $a->safe_psql('postgres', 'SELECT clock_timestamp()');
my $content = q{SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t;
	SELECT count(*), md5(string_agg(id || ':' || src, ',' ORDER BY id)) FROM log};
is($b->safe_psql('app', $content), $a->safe_psql('app', $content), 'both sides converge');
is($a->safe_psql('app', 'SELECT count(*) FROM log'), '3000', 'no row duplicated or lost');
dm_wait_for($a, qq{SELECT primary_checked_at > '$converged_at' AND mirror_checked_at > '$converged_at'
	AND apply_error_count + sync_error_count + rev_apply_error_count + rev_sync_error_count + conflicts = 0
	FROM driftmirror.mirror}, 't', 'no apply errors in either direction, read after both sides converged: nothing looped');

# a deliberate conflict primary -> mirror: row 7000 exists only on the mirror
# (written under a replication origin, so the origin filter does not send it)
$b->safe_psql('app', q{
	SELECT pg_replication_origin_create('test_local');
	SELECT pg_replication_origin_session_setup('test_local');
	INSERT INTO t VALUES (7000, 'only on b');
});
$a->safe_psql('app', q{INSERT INTO t VALUES (7000, 'from a')});
dm_wait_for($a, 'SELECT apply_error_count > 0 AND conflicts > 0 FROM driftmirror.dm_mirror_status',
	't', 'a colliding insert on the mirror is counted as a conflict');
like($a->safe_psql('postgres',
	"SELECT reason FROM driftmirror.dm_actions WHERE kind = 'mirror_conflict' ORDER BY id LIMIT 1"),
	qr/new apply error\(s\) on the mirror's subscription dm_1_1/, 'and logged as an action');
like(slurp_file($b->logfile), qr/duplicate key value violates unique constraint "t_pkey"/,
	'the mirror\'s log has the apply error');
# resolve: remove the local row the same way; the apply worker then succeeds
$b->safe_psql('app', q{
	SELECT pg_replication_origin_session_setup('test_local');
	DELETE FROM t WHERE id = 7000;
});
ok($b->poll_query_until('app', "SELECT v = 'from a' FROM t WHERE id = 7000"),
	'after the conflict is resolved the change applies');

# and mirror -> primary
$a->safe_psql('app', q{
	SELECT pg_replication_origin_create('test_local');
	SELECT pg_replication_origin_session_setup('test_local');
	INSERT INTO t VALUES (7001, 'only on a');
});
$b->safe_psql('app', q{INSERT INTO t VALUES (7001, 'from b')});
dm_wait_for($a, 'SELECT rev_apply_error_count > 0 FROM driftmirror.dm_mirror_status',
	't', 'a colliding insert on the primary is counted too');
like($a->safe_psql('postgres',
	"SELECT string_agg(reason, ' | ') FROM driftmirror.dm_actions WHERE kind = 'mirror_conflict'"),
	qr/on the primary's subscription dm_1_1_rev/, 'and logged as an action');
is($a->safe_psql('postgres', q{
	SELECT (SELECT max(value) FROM driftmirror.dm_metrics WHERE metric = 'mirror.apply_errors') > 0
	   AND (SELECT max(value) FROM driftmirror.dm_metrics WHERE metric = 'mirror.rev_apply_errors') > 0}),
	't', 'the apply errors of both directions are recorded as metrics');
$a->safe_psql('app', q{
	SELECT pg_replication_origin_session_setup('test_local');
	DELETE FROM t WHERE id = 7001;
});
ok($a->poll_query_until('app', "SELECT v = 'from b' FROM t WHERE id = 7001"),
	'resolved on the primary too');
both_caught_up();
is($b->safe_psql('app', $content), $a->safe_psql('app', $content), 'both sides converge again');

# an update whose row is missing on the other side: PostgreSQL 15 skips it
# without an error; dm_mirror_verify finds the difference
is($a->safe_psql('postgres', "SELECT count(*) FROM driftmirror.dm_mirror_verify('g', 'db') WHERE NOT matches"),
	'0', 'dm_mirror_verify: every table matches');
$b->safe_psql('app', q{
	SELECT pg_replication_origin_session_setup('test_local');
	DELETE FROM t WHERE id = 10;
});
$a->safe_psql('app', q{UPDATE t SET v = 'changed on a' WHERE id = 10});
caught_up($a, 'dm_1_1');
is($b->safe_psql('app', 'SELECT count(*) FROM t WHERE id = 10'), '0',
	'the update of a missing row was skipped on the mirror');
is($a->safe_psql('postgres', "SELECT table_name || ' ' || primary_rows || ' ' || mirror_rows FROM driftmirror.dm_mirror_verify('g', 'db') WHERE NOT matches"),
	'public.t 903 902', 'dm_mirror_verify reports the table that differs');
like($a->safe_psql('postgres', "SELECT outcome || ': ' || reason FROM driftmirror.dm_actions WHERE kind = 'mirror_verify' ORDER BY id DESC LIMIT 1"),
	qr/^mismatch: 1 of 2 table\(s\) differ/, 'and logs it');
$a->safe_psql('app', q{DELETE FROM t WHERE id = 10});
both_caught_up();

# drop: both directions' objects go
$a->safe_psql('postgres', "SELECT driftmirror.dm_drop_mirror('g', 'db')");
dm_wait_for($a, 'SELECT count(*) FROM driftmirror.dm_mirror_cleanups', '0', 'cleanups done');
is(join(',', map { $_->safe_psql('app',
	'SELECT (SELECT count(*) FROM pg_replication_slots)::text || (SELECT count(*) FROM pg_subscription) || (SELECT count(*) FROM pg_publication)') } ($a, $b)),
	'000,000', 'no slot, subscription or publication left on either node');

# --- kill -9 of the worker while it creates the subscription
for my $n ($a, $b)
{
	$n->safe_psql('postgres', 'CREATE DATABASE app2');
	$n->safe_psql('app2', $schema);
}
$a->safe_psql('app2', q{INSERT INTO t SELECT g, 'x' FROM generate_series(1, 500) g});
my $locker = $b->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE pg_catalog.pg_subscription IN ACCESS EXCLUSIVE MODE');
my ($p2, $m2) = (conninfo($a, 'app2'), conninfo($b, 'app2'));
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_resource('g', 'db2', 'postgres', '$p2');
	SELECT driftmirror.dm_create_mirror('g', 'db2', '$m2');
});
dm_wait_for($a, "SELECT pending_action FROM driftmirror.dm_mirror_status", 'subscription',
	'the worker is creating the subscription');
ok($b->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'driftmirror' AND wait_event_type = 'Lock'"),
	'held up by the lock on the mirror');
my $pid = $a->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror'");
kill 'KILL', $pid;
ok($a->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'driftmirror' AND pid <> $pid"),
	'the worker is restarted after kill -9');
is($a->safe_psql('postgres', 'SELECT state || \':\' || pending_action FROM driftmirror.dm_mirror_status'),
	'creating:subscription', 'the interrupted action is still recorded as pending');
$locker->query_safe('COMMIT');
$locker->quit;
wait_state('mirroring', 'the restarted worker finishes the creation');
is($b->safe_psql('app2', "SELECT count(*) FROM pg_subscription WHERE subname LIKE 'dm\\_%'"), '1',
	'exactly one subscription on the mirror');
is($a->safe_psql('app2', "SELECT count(*) FROM pg_replication_slots"), '1',
	'exactly one slot on the primary');
ok($b->poll_query_until('app2', 'SELECT count(*) = 500 FROM t'), 'the data arrived');

$a->safe_psql('postgres', "SELECT driftmirror.dm_drop_group('g', force => true)");
dm_wait_for($a, 'SELECT count(*) FROM driftmirror.dm_mirror_cleanups', '0',
	'dm_drop_group(force) cleans up the mirrors too');
is($a->safe_psql('app2', 'SELECT count(*) FROM pg_replication_slots') .
	$b->safe_psql('app2', 'SELECT count(*) FROM pg_subscription'), '00', 'no slot or subscription left');

$a->stop;
$b->stop;
done_testing();
