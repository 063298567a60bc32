# 040_mirror.pl: dm_create_mirror end to end, one-way.
#
# Node A holds the control database (postgres) and the primary (app); node
# B holds the mirror (app).  Writes run on the primary during the whole
# initial copy; the mirror ends with identical content (per-table md5 of
# ordered rows), the lag returns to zero, the mirror is fenced, sequences are
# tracked and synchronised, and dropping removes every slot, subscription,
# publication and the fence -- also when the mirror node is down at drop
# time.  Then every preflight failure and a schema mismatch.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $a = dm_node('a', logical => 1);
my $b = dm_node('b', logical => 1, no_extension => 1);

# wait_mirroring(WHAT): wait until the mirror is mirroring (or failed: then
# show why)
sub wait_mirroring
{
	my ($what) = @_;
	$a->poll_query_until('postgres',
		"SELECT state IN ('mirroring', 'failed') FROM driftmirror.dm_mirror_status");
	is($a->safe_psql('postgres', "SELECT state || coalesce(' ' || last_error, '') FROM driftmirror.dm_mirror_status"),
		'mirroring', $what);
}

sub conninfo { my ($n, $db) = @_; return 'host=' . $n->host . ' port=' . $n->port . " dbname=$db"; }

my $schema = q{
	CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
	CREATE TABLE items (id bigserial PRIMARY KEY, account int NOT NULL, amount numeric(12,2), at timestamptz NOT NULL DEFAULT now());
	CREATE TABLE ident (a int NOT NULL, b text NOT NULL);
	CREATE UNIQUE INDEX ident_a ON ident (a);
	ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_a;
	CREATE TABLE ctl (id int PRIMARY KEY DEFAULT 1, stop boolean NOT NULL);
	CREATE SEQUENCE counter;
};
for my $n ($a, $b)
{
	$n->safe_psql('postgres', 'CREATE DATABASE app');
	$n->safe_psql('app', $schema);
}
$a->safe_psql('app', q{
	INSERT INTO accounts SELECT g, g * 10, repeat('x', 50) FROM generate_series(1, 100000) g;
	INSERT INTO items (account, amount) SELECT g % 1000 + 1, g / 7.0 FROM generate_series(1, 100000) g;
	INSERT INTO ident SELECT g, 'v' || g FROM generate_series(1, 1000) g;
	INSERT INTO ctl (stop) VALUES (false);
	SELECT setval('counter', 41);
	CREATE PROCEDURE writer() LANGUAGE plpgsql AS $$
	DECLARE i int := 0;
	BEGIN
		LOOP
			i := i + 1;
			INSERT INTO items (account, amount) VALUES (i % 1000 + 1, i);
			UPDATE accounts SET balance = balance + 1 WHERE id = i % 100000 + 1;
			DELETE FROM ident WHERE a = i;
			PERFORM nextval('counter');
			COMMIT;
			EXIT WHEN (SELECT stop FROM ctl) AND i > 200;
			PERFORM pg_sleep(0.005);
		END LOOP;
	END $$;
});

my $primary = conninfo($a, 'app');
my $mirror = conninfo($b, 'app');
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('g', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('g', 'db', 'postgres', '$primary');
});

# writes run from before the mirror exists until after it is in sync
my $writer = $a->background_psql('app');
$writer->query_until(qr/started/, "\\echo started\nCALL writer();\n");

$a->safe_psql('postgres', "SELECT driftmirror.dm_create_mirror('g', 'db', '$mirror')");
is($a->safe_psql('postgres', 'SELECT state FROM driftmirror.dm_mirror_status'), 'creating',
	'a new mirror starts in state creating');
wait_mirroring('the mirror reaches state mirroring');
is($a->safe_psql('postgres',
	"SELECT tables_total || '/' || tables_ready || ' ' || sync_pct FROM driftmirror.dm_mirror_status"),
	'4/4 100.0', 'sync progress: every table ready');
like($a->safe_psql('postgres',
	"SELECT string_agg(kind, ',' ORDER BY id) FROM driftmirror.dm_actions WHERE kind LIKE 'mirror_%'"),
	qr/mirror_step,mirror_step,mirror_step,mirror_step,mirror_syncing,mirror_mirroring/,
	'each creation step and state change is in the action log');

# stop the writer and check the content
$a->safe_psql('app', 'UPDATE ctl SET stop = true');
$writer->query_safe('SELECT 1');
$writer->quit;
ok($a->safe_psql('app', 'SELECT count(*) > 100000 FROM items') eq 't', 'the writer wrote during the copy');

my $lsn = $a->safe_psql('app', 'SELECT pg_current_wal_lsn()');
ok($a->poll_query_until('app',
	"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name LIKE 'dm\\_%'"),
	'the mirror confirmed all changes');
my %checksum = (
	accounts => 'SELECT count(*), md5(string_agg(id || \':\' || balance || \':\' || note, \',\' ORDER BY id)) FROM accounts',
	items => 'SELECT count(*), md5(string_agg(id || \':\' || account || \':\' || amount || \':\' || at, \',\' ORDER BY id)) FROM items',
	ident => 'SELECT count(*), md5(string_agg(a || \':\' || b, \',\' ORDER BY a)) FROM ident',
	ctl => 'SELECT count(*), bool_and(stop) FROM ctl');
for my $t (sort keys %checksum)
{
	is($b->safe_psql('app', $checksum{$t}), $a->safe_psql('app', $checksum{$t}),
		"table $t: identical content on the mirror");
}
dm_wait_for($a, 'SELECT lag_seconds = 0 AND lag_bytes IS NOT NULL FROM driftmirror.dm_mirror_status',
	't', 'the lag returns to zero');
is($a->safe_psql('postgres',
	'SELECT apply_error_count + sync_error_count + conflicts FROM driftmirror.dm_mirror_status'),
	'0', 'no apply errors');

# the figures of every refresh are metrics of the primary resource, written
# in the transaction that records the mirror's state: the newest sample is
# what dm_mirror_status shows
dm_wait_for($a, q{
	SELECT count(DISTINCT metric) FROM driftmirror.dm_metrics
	 WHERE group_name = 'g' AND resource_name = 'db'
	   AND metric IN ('mirror.lag_bytes', 'mirror.lag_seconds', 'mirror.apply_errors')},
	'3', 'lag and apply errors are recorded as metrics while mirroring');
is($a->safe_psql('postgres', q{
	SELECT s.lag_seconds = (SELECT m.value FROM driftmirror.dm_metrics m
	                         WHERE m.metric = 'mirror.lag_seconds' ORDER BY m.ts DESC LIMIT 1)
	   AND s.lag_bytes = (SELECT m.value FROM driftmirror.dm_metrics m
	                       WHERE m.metric = 'mirror.lag_bytes' ORDER BY m.ts DESC LIMIT 1)
	   AND (SELECT max(m.value) FROM driftmirror.dm_metrics m WHERE m.metric = 'mirror.apply_errors') = 0
	  FROM driftmirror.dm_mirror_status s}),
	't', 'the newest lag samples are the lag dm_mirror_status shows');
dm_wait_for($a, q{
	SELECT count(*) >= 3 FROM driftmirror.dm_metrics WHERE metric = 'mirror.lag_bytes'},
	't', 'one sample per refresh');

# the mirror is fenced
my ($ret, $out, $err) = $b->psql('app',
	"\\set VERBOSITY verbose\nSET default_transaction_read_only = off; INSERT INTO accounts VALUES (0, 0, 'client')");
like($err, qr/25006/, 'a client cannot write on the mirror');
is($b->safe_psql('app', 'SELECT database || \':\' || mode FROM driftmirror_node.fence_status()'),
	'app:mirror', 'the mirror database is fenced in mode mirror');
is($a->safe_psql('postgres', 'SELECT mirror_fence || \':\' || primary_fence || \':\' || slot_active FROM driftmirror.dm_mirror_status'),
	'mirror:none:true', 'dm_mirror_status shows the fence of each side and the slot in use');

# sequences: tracked each step, synchronised on demand
my $seq = $a->safe_psql('app', 'SELECT last_value FROM counter');
dm_wait_for($a,
	"SELECT last_value = $seq FROM driftmirror.dm_mirror_sequences WHERE sequence_name = 'public.counter'",
	't', 'the primary\'s sequence values are tracked');
is($a->safe_psql('postgres', "SELECT driftmirror.dm_sync_sequences('g', 'db')"), '2',
	'dm_sync_sequences sets both sequences');
is($b->safe_psql('app', 'SELECT last_value FROM counter'), $seq,
	'the mirror\'s sequence has the primary\'s value');
is($b->safe_psql('app', 'SELECT last_value FROM items_id_seq'),
	$a->safe_psql('app', 'SELECT last_value FROM items_id_seq'), 'serial sequence too');

# --- drop with both nodes up
sub no_objects
{
	my ($what) = @_;
	is($a->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots')
		  . $b->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots'),
		'00', "$what: no replication slot on either node");
	is($b->safe_psql('app', 'SELECT count(*) FROM pg_subscription')
		  . $a->safe_psql('app', 'SELECT count(*) FROM pg_subscription'),
		'00', "$what: no subscription on either node");
	is($a->safe_psql('app', 'SELECT count(*) FROM pg_publication'),
		'0', "$what: no publication on the primary");
	is($b->safe_psql('app', 'SELECT count(*) FROM driftmirror_node.fence_status()'),
		'0', "$what: the mirror is no longer fenced");
}
is($a->safe_psql('postgres', "SELECT driftmirror.dm_drop_mirror('g', 'db')"), 't', 'dm_drop_mirror');
dm_wait_for($a, 'SELECT count(*) FROM driftmirror.dm_mirror_cleanups', '0',
	'the cleanups are done');
no_objects('drop with both nodes up');
($ret, $out, $err) = $a->psql('postgres', "SELECT driftmirror.dm_drop_mirror('g', 'db')");
like($err, qr/has no mirror/, 'dropping again is a notice, not an error');
$b->safe_psql('app', 'TRUNCATE accounts, items, ident, ctl');

# --- drop while the mirror node is down
$a->safe_psql('postgres', "SELECT driftmirror.dm_create_mirror('g', 'db', '$mirror')");
wait_mirroring('a new mirror reaches state mirroring');
$b->stop;
$a->safe_psql('postgres', "SELECT driftmirror.dm_drop_mirror('g', 'db')");
dm_wait_for($a,
	"SELECT count(*) FROM driftmirror.dm_mirror_cleanups WHERE node = 'mirror' AND attempts > 0 AND last_error LIKE '%could not connect to node \"g/db mirror\"%'",
	'2', 'the cleanups on the mirror node stay pending with the connection error');
dm_wait_for($a, "SELECT count(*) FROM pg_replication_slots", '0',
	'the slot on the primary is dropped at once');
like($a->safe_psql('postgres', "SELECT reason FROM driftmirror.dm_status WHERE group_name = 'g'"),
	qr/2 replication object\(s\) of dropped mirrors still to drop/, 'dm_status shows the pending cleanup');
$b->start;
dm_wait_for($a, 'SELECT count(*) FROM driftmirror.dm_mirror_cleanups', '0',
	'the pending cleanups finish once the node is back');
no_objects('drop with the mirror node down');

# --- preflight: every problem is reported, with a schema mismatch
my $c = dm_node('c', no_extension => 1,
	conf => "shared_preload_libraries = ''\nmax_replication_slots = 0");
$a->safe_psql('postgres', 'CREATE DATABASE app2');
$a->safe_psql('app2', q{
	CREATE TABLE nopk (x int);
	CREATE TABLE t2 (id int PRIMARY KEY, v text, w int);
});
$c->safe_psql('postgres', 'CREATE DATABASE app2');
$c->safe_psql('app2', 'CREATE TABLE t2 (id bigint PRIMARY KEY, v text)');
my $app2 = conninfo($a, 'app2');
my $capp2 = conninfo($c, 'app2');
$a->safe_psql('postgres', "SELECT driftmirror.dm_add_resource('g', 'bad', 'postgres', '$app2')");
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_create_mirror('g', 'bad', '$capp2')");
# builds before 15.19 have no output_plugin_libraries: one problem less
my $opl = dm_has_output_plugin_libraries();
my $nprobs = $opl ? 8 : 7;
like($err, qr/ERROR:  55000: cannot mirror resource "bad" of group "g": $nprobs problem\(s\) found/,
	'preflight refuses with the number of problems');
for my $p (
	qr/node "g\/bad mirror": wal_level is "minimal", not "logical"/,
	qr/node "g\/bad mirror": only 0 free replication slot\(s\) of max_replication_slots = 0; 1 needed/,
	($opl ? (qr/node "g\/bad mirror": output_plugin_libraries \(pgoutput, test_decoding\) does not list driftmirror/) : ()),
	qr/node "g\/bad mirror": driftmirror is not in shared_preload_libraries/,
	qr/node "g\/bad primary": table public.nopk has neither a primary key nor a replica identity/,
	qr/schema: table public.nopk is missing on the mirror/,
	qr/schema: column public.t2.w \(integer\) is missing on the mirror/,
	qr/schema: column public.t2.id is integer on the primary but bigint on the mirror/)
{
	like($err, $p, "preflight reports: $p");
}
is($a->safe_psql('postgres', "SELECT count(*) FROM driftmirror.mirror"), '0',
	'a refused mirror leaves nothing behind');

# an unreachable mirror
my $port = PostgreSQL::Test::Cluster::get_free_port();
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_create_mirror('g', 'db', 'host=" . $a->host . " port=$port dbname=app')");
like($err, qr/ERROR:  08001: could not connect to node "g\/db mirror"/, 'an unreachable mirror gives a clean error');
unlike($err, qr/port=$port/, 'without the connection string');

$a->stop;
$b->stop;
$c->stop;
done_testing();
