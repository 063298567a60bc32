# 030_fence_twoway.pl: the origin-filtering output plugin and the write fence,
# set up by hand (no catalog): two nodes replicating database "app" both ways
# through slots created with the "driftmirror" plugin.
#
# - two-way: writes on both sides converge and nothing loops (a looping
#   change would come back as a duplicate key and stop the apply worker);
# - the fence: a client cannot write on a fenced database whatever it sets
#   (default_transaction_read_only, transaction_read_only,
#   session_replication_role), neither DML, COPY, TRUNCATE, DDL, sequences,
#   large objects nor row locks; replication keeps applying; the control
#   database stays writable; the fence survives a restart; new sessions are
#   read-only by default; a driftmirror session passes; clearing lifts it
#   (with driftmirror.fence_durable off at once, the fence file
#   rewritten by the next fence_clear: a crash in between restarts fenced).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $a = dm_node('a', logical => 1);
my $b = dm_node('b', logical => 1);

my $schema = q{
	CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
	CREATE TABLE log (id bigint PRIMARY KEY, origin text NOT NULL);
	CREATE SEQUENCE s;
};
for my $n ($a, $b)
{
	$n->safe_psql('postgres', 'CREATE DATABASE app');
	$n->safe_psql('app', $schema);
	$n->safe_psql('app', q{
		CREATE PUBLICATION dm_pub FOR ALL TABLES;
		SELECT pg_create_logical_replication_slot('dm_slot_' || current_setting('cluster_name'), 'driftmirror');
	});
}
$a->safe_psql('app', q{
	INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 100) g;
	INSERT INTO log SELECT g, 'a' FROM generate_series(1, 100) g;
});

my $a_conn = 'host=' . $a->host . ' port=' . $a->port . ' dbname=app';
my $b_conn = 'host=' . $b->host . ' port=' . $b->port . ' dbname=app';
$b->safe_psql('app', qq{
	CREATE SUBSCRIPTION dm_sub CONNECTION '$a_conn' PUBLICATION dm_pub
	WITH (create_slot = false, slot_name = 'dm_slot_a', copy_data = true)});
$a->safe_psql('app', qq{
	CREATE SUBSCRIPTION dm_sub CONNECTION '$b_conn' PUBLICATION dm_pub
	WITH (create_slot = false, slot_name = 'dm_slot_b', copy_data = false)});

ok($b->poll_query_until('app',
	"SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'"),
	'initial copy A -> B done');

# writes on both sides
$a->safe_psql('app', q{
	INSERT INTO log SELECT g, 'a' FROM generate_series(101, 200) g;
	UPDATE t SET v = v || '+a' WHERE id <= 10;
});
$b->safe_psql('app', q{
	INSERT INTO log SELECT g, 'b' FROM generate_series(1001, 1100) g;
	UPDATE t SET v = v || '+b' WHERE id > 90;
	DELETE FROM t WHERE id BETWEEN 41 AND 50;
});

# caught_up(X): every change made on X so far has been confirmed by the
# other node's subscription
sub caught_up
{
	my ($node) = @_;
	my $name = $node->name;
	my $lsn = $node->safe_psql('app', 'SELECT pg_current_wal_lsn()');
	ok($node->poll_query_until('app',
		"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'dm_slot_$name'"),
		"node $name: the other side confirmed everything up to $lsn");
}
caught_up($a);
caught_up($b);
# the changes B applied from A are in B's WAL too: had they been sent back,
# A would have got a duplicate key; wait until A confirmed all of B's WAL
caught_up($b);
caught_up($a);

my $content = q{SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t;
	SELECT count(*), md5(string_agg(id || ':' || origin, ',' ORDER BY id)) FROM log};
is($b->safe_psql('app', $content), $a->safe_psql('app', $content),
	'both sides converge to the same content');
is($a->safe_psql('app', 'SELECT count(*) FROM log'), '300', 'no row duplicated');
for my $n ($a, $b)
{
	is($n->safe_psql('app',
		"SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats WHERE subname = 'dm_sub'"),
		'0', $n->name . ': no apply errors (nothing looped back)');
}
unlike(slurp_file($a->logfile) . slurp_file($b->logfile), qr/duplicate key value/,
	'no duplicate key error in either log');

# --- the fence on B's database app
$b->safe_psql('app', 'CREATE EXTENSION driftmirror_node');

# a write transaction already open when the fence comes up cannot commit
my $inflight = $b->background_psql('app', on_error_stop => 0);
$inflight->query_safe("BEGIN; INSERT INTO log VALUES (8888, 'in flight')");
is($b->safe_psql('app', "SELECT driftmirror_node.fence_set('mirror')"), 'none',
	'fence_set returns the previous mode');

my ($inflight_out, $inflight_ret) = $inflight->query('COMMIT');
ok($inflight_ret && $inflight->{stderr} =~ /fenced by driftmirror/,
	'a write transaction open before the fence cannot commit after it')
  or diag($inflight->{stderr});
$inflight->quit;
is($b->safe_psql('app', 'SELECT count(*) FROM log WHERE id = 8888'), '0',
	'and its row is gone');

# refused(NODE, SQL, NAME): SQL fails with SQLSTATE 25006
sub refused
{
	my ($node, $sql, $name) = @_;
	my ($ret, $out, $err) = $node->psql('app', "\\set VERBOSITY verbose\n$sql",
		on_error_stop => 1);
	ok($ret != 0 && $err =~ /ERROR:  25006/, "refused: $name")
	  or diag("ret=$ret stderr=$err");
}
refused($b, 'INSERT INTO t VALUES (5000, $$x$$)', 'INSERT');
refused($b, 'SET default_transaction_read_only = off; INSERT INTO t VALUES (5000, $$x$$)',
	'INSERT after SET default_transaction_read_only = off');
refused($b, 'BEGIN READ WRITE; SET transaction_read_only = off; UPDATE t SET v = $$y$$',
	'UPDATE in BEGIN READ WRITE after SET transaction_read_only = off');
refused($b, 'SET session_replication_role = replica; DELETE FROM t',
	'DELETE with session_replication_role = replica');
refused($b, "COPY t FROM STDIN;\n7000\tx\n\\.\n", 'COPY FROM');
refused($b, 'TRUNCATE t', 'TRUNCATE');
refused($b, 'CREATE TABLE u (x int)', 'CREATE TABLE');
refused($b, 'ALTER TABLE t ADD COLUMN w int', 'ALTER TABLE');
refused($b, 'DROP TABLE log', 'DROP TABLE');
refused($b, "SELECT nextval('s')", 'nextval');
refused($b, "SELECT setval('s', 100)", 'setval');
refused($b, 'SELECT lo_create(0)', 'lo_create');
refused($b, 'SELECT * FROM t WHERE id = 1 FOR UPDATE', 'SELECT FOR UPDATE');
refused($b, 'BEGIN; LOCK TABLE t IN EXCLUSIVE MODE; COMMIT', 'LOCK TABLE in EXCLUSIVE mode');
refused($b, 'DO $d$BEGIN INSERT INTO t VALUES (5001, $$x$$); END$d$', 'DO block');
refused($b, 'WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d',
	'data-modifying CTE');
refused($b, 'PREPARE p AS INSERT INTO t VALUES ($1, $$x$$); EXECUTE p(5002)',
	'prepared INSERT');
refused($b, 'ALTER DATABASE app RESET default_transaction_read_only',
	'ALTER DATABASE from the fenced database');

# a fast-path large object write (psql's \lo_import uses libpq's lo_* calls)
my $lofile = $b->basedir . '/lo.txt';
open(my $fh, '>', $lofile) or die;
print $fh "payload\n";
close($fh);
my ($ret, $out, $err) = $b->psql('app', "\\lo_import $lofile");
ok($ret != 0 && $err =~ /read-only|fenced/, 'refused: \lo_import (fast path)')
  or diag("ret=$ret out=$out err=$err");
is($b->safe_psql('app', 'SELECT count(*) FROM pg_largeobject_metadata'), '0',
	'no large object was created');

# what still works: reads, the control database
is($b->safe_psql('app', 'SELECT count(*) FROM t'), '90', 'reads work');
is($b->safe_psql('postgres', 'CREATE TABLE ctl (x int); INSERT INTO ctl VALUES (1) RETURNING x'), '1',
	'the control database on the same node stays writable');
is($b->safe_psql('app', 'SHOW default_transaction_read_only'), 'on',
	'new sessions of the fenced database are read-only by default');
is($b->safe_psql('postgres', 'SHOW default_transaction_read_only'), 'off',
	'other databases are not');
my ($ro_opt) = run_command([ 'psql', '-XAtq', '-d',
	$b->connstr('app') . " options='-c default_transaction_read_only=off'",
	'-c', 'SHOW default_transaction_read_only' ]);
is($ro_opt, 'on', 'a client asking for read-write at startup still starts read-only');
is($b->safe_psql('app', 'SELECT count(*) FROM pg_db_role_setting'), '0',
	'the fence writes no database setting into the catalog');

# replication keeps applying
$a->safe_psql('app', q{INSERT INTO t VALUES (500, 'from a'); UPDATE t SET v = 'a2' WHERE id = 1});
caught_up($a);
is($b->safe_psql('app', 'SELECT v FROM t WHERE id IN (1, 500) ORDER BY id'), "a2\nfrom a",
	'the apply worker writes through the fence');

# driftmirror's own sessions pass
is($b->safe_psql('app', q{
	SELECT driftmirror_node.session_bypass();
	INSERT INTO log VALUES (9999, 'bypass');
	SELECT count(*) FROM log WHERE id = 9999}), "\n1", 'a bypass session writes');
caught_up($b);

# the fence survives a restart
$b->restart;
refused($b, 'INSERT INTO t VALUES (5003, $$x$$)', 'INSERT after a restart');
is($b->safe_psql('app', 'SELECT database || $$:$$ || mode FROM driftmirror_node.fence_status()'),
	'app:mirror', 'fence_status after a restart');
$a->safe_psql('app', q{UPDATE t SET v = 'a3' WHERE id = 1});
caught_up($a);
is($b->safe_psql('app', 'SELECT v FROM t WHERE id = 1'), 'a3',
	'replication still applies after the restart');

# switching the mode, then clearing
is($b->safe_psql('app', "SELECT driftmirror_node.fence_set('switchover')"), 'mirror',
	'mode changed to switchover');
refused($b, 'INSERT INTO t VALUES (5004, $$x$$)', 'INSERT in switchover mode');
my ($r2, $o2, $e2) = $b->psql('app', "SELECT driftmirror_node.fence_set('off')");
like($e2, qr/invalid fence mode "off"/, 'an unknown mode is refused');
is($b->safe_psql('app', 'SELECT driftmirror_node.fence_clear()'), 'switchover',
	'fence_clear returns the previous mode');
is($b->safe_psql('app', 'SELECT driftmirror_node.fence_clear()'), 'none',
	'fence_clear is idempotent');
$b->safe_psql('app', q{INSERT INTO t VALUES (5005, 'b after fence')});
is($b->safe_psql('app', 'SHOW default_transaction_read_only'), 'off',
	'new sessions are read-write again');
# a lifted fence is published before it is written: it is written all the same
$b->restart;
is($b->safe_psql('app', 'SELECT count(*) FROM driftmirror_node.fence_status()'), '0',
	'the lifted fence stays lifted after a restart');
$b->safe_psql('app', q{INSERT INTO t VALUES (5006, 'b after restart')});

# driftmirror.fence_durable off (the promotion's unfence): the fence
# is lifted at once, the file still names the database, so a crash
# restarts it fenced (the safe side); the next fence_clear() writes it
$b->safe_psql('app', "SELECT driftmirror_node.fence_set('mirror')");
is($b->safe_psql('app', q{SELECT driftmirror_node.fence_clear()
	FROM (SELECT set_config('driftmirror.fence_durable', 'off', true) AS d) s}), 'mirror',
	'fence_clear without waiting for the file');
$b->safe_psql('app', q{INSERT INTO t VALUES (5007, 'b lifted, file stale')});
like(slurp_file($b->data_dir . '/driftmirror_fence'), qr/ mirror /, 'the fence file still names the database');
$b->stop('immediate');
$b->start;
refused($b, 'INSERT INTO t VALUES (5008, $$x$$)', 'INSERT after a crash with the file stale');
is($b->safe_psql('app', 'SELECT driftmirror_node.fence_clear()'), 'mirror', 'lifted again');
$b->safe_psql('app', "SELECT driftmirror_node.fence_set('mirror')");
$b->safe_psql('app', q{SELECT driftmirror_node.fence_clear()
	FROM (SELECT set_config('driftmirror.fence_durable', 'off', true) AS d) s});
is($b->safe_psql('app', 'SELECT driftmirror_node.fence_clear()'), 'none',
	'a second fence_clear, durable, has nothing to lift');
unlike(slurp_file($b->data_dir . '/driftmirror_fence'), qr/ mirror /, 'but it rewrote the fence file');
$b->stop('immediate');
$b->start;
$b->safe_psql('app', q{INSERT INTO t VALUES (5009, 'b after crash, file mended')});
# the same for a fence set (the promotion's fence of the old primary): in
# force at once, the file written by the same call made again
is($b->safe_psql('app', q{SELECT driftmirror_node.fence_set('switchover')
	FROM (SELECT set_config('driftmirror.fence_durable', 'off', true) AS d) s}), 'none',
	'fence_set without waiting for the file');
refused($b, 'INSERT INTO t VALUES (5010, $$x$$)', 'INSERT once fenced, the file not written yet');
unlike(slurp_file($b->data_dir . '/driftmirror_fence'), qr/ switchover /, 'the fence file does not name it yet');
is($b->safe_psql('app', "SELECT driftmirror_node.fence_set('switchover')"), 'switchover',
	'fence_set again, durable: nothing to change');
like(slurp_file($b->data_dir . '/driftmirror_fence'), qr/ switchover /, 'but the fence file names it now');
$b->stop('immediate');
$b->start;
refused($b, 'INSERT INTO t VALUES (5011, $$x$$)', 'INSERT after a crash: the fence was made durable');
$b->safe_psql('app', 'SELECT driftmirror_node.fence_clear()');
$b->safe_psql('app', 'CREATE ROLE fence_nobody');
my ($r3, $o3, $e3) = $b->psql('app', "SET ROLE fence_nobody; SET driftmirror.fence_durable = off");
like($e3, qr/permission denied to set parameter/, 'only a superuser sets driftmirror.fence_durable');

# non-superusers cannot touch the fence
$b->safe_psql('app', 'CREATE ROLE app_user LOGIN; GRANT ALL ON t TO app_user');
($r2, $o2, $e2) = $b->psql('app', "SET ROLE app_user; SELECT driftmirror_node.fence_clear()");
like($e2, qr/permission denied/, 'a plain role cannot call fence_clear');
($r2, $o2, $e2) = $b->psql('app', "SET ROLE app_user; SELECT driftmirror_node.session_bypass()");
like($e2, qr/permission denied/, 'a plain role cannot call session_bypass');

caught_up($b);
is($a->safe_psql('app', 'SELECT v FROM t WHERE id = 5005'), 'b after fence',
	'after clearing, B writes reach A again');
is($b->safe_psql('app', $content), $a->safe_psql('app', $content), 'still identical');

$b->safe_psql('app', 'DROP SUBSCRIPTION dm_sub');
$a->safe_psql('app', 'DROP SUBSCRIPTION dm_sub');
$a->stop;
$b->stop;
done_testing();
