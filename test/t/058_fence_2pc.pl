# 058_fence_2pc.pl: the fence and two-phase commit, and the commands a fenced
# database refuses up front.
#
# With max_prepared_transactions > 0 a transaction can be PREPAREd before
# the fence and COMMIT PREPARED after it: that commit would land on the old
# primary after the fence LSN and be lost by a promotion.  So:
#  - a fenced database refuses COMMIT PREPARED (25006); ROLLBACK PREPARED
#    passes; PREPARE TRANSACTION is refused, also of a transaction that
#    wrote before the fence, and of a read-only one; driftmirror's own
#    sessions pass;
#  - dm_promote refuses while the primary's database has prepared
#    transactions (state refused, the reason and the count in
#    dm_promotions), and a transaction prepared between the guardrails and
#    the fence rolls the promotion back; either way, once committed, the
#    prepared write reaches the mirror (nothing is lost);
#  - rewrites and their siblings are refused before they start, with 25006
#    and a message naming the command (VACUUM FULL, CLUSTER, REINDEX,
#    ANALYZE, REFRESH MATERIALIZED VIEW, ALTER TABLE, TRUNCATE, LOCK,
#    nextval/setval, large objects); VACUUM FULL does not even wait for its
#    lock; plain VACUUM passes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmPair;

my $p = dm_pair(conf => "max_prepared_transactions = 10\n");
my ($a, $b) = ($p->{a}, $p->{b});

# sql_error(NODE, DB, SQL): (sqlstate, message) of a statement expected to fail
sub sql_error
{
	my ($node, $db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql");
	my ($state) = $err =~ /ERROR:  ([0-9A-Z]{5}):/;
	return ($state // ($rc == 0 ? 'ok' : 'unknown'), $err);
}

# ---- the fence itself, on a database of its own (node a, database fx)
$a->safe_psql('postgres', 'CREATE DATABASE fx');
$a->safe_psql('fx', q{
	CREATE EXTENSION driftmirror_node;
	CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g;
	CREATE INDEX t_v ON t (v);
	CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t;
	CREATE SEQUENCE s;
	-- prepared transactions keep their locks: on a table of their own
	CREATE TABLE p2 (id int PRIMARY KEY, v text NOT NULL);
	BEGIN; INSERT INTO p2 VALUES (2001, 'prepared, committed while fenced'); PREPARE TRANSACTION 'fx_commit';
	BEGIN; INSERT INTO p2 VALUES (2002, 'prepared, rolled back while fenced'); PREPARE TRANSACTION 'fx_rollback';
	BEGIN; INSERT INTO p2 VALUES (2003, 'prepared, committed by driftmirror'); PREPARE TRANSACTION 'fx_bypass';
});
my $filenode = $a->safe_psql('fx', q{SELECT pg_relation_filenode('t')});

# a transaction that wrote before the fence and prepares after it
my $early = $a->background_psql('fx', on_error_stop => 0);
$early->query_safe(q{BEGIN; INSERT INTO t VALUES (2004, 'wrote before the fence')});

$a->safe_psql('fx', q{SELECT driftmirror_node.fence_set('switchover')});

my ($state, $err) = sql_error($a, 'fx', q{COMMIT PREPARED 'fx_commit'});
is($state, '25006', 'COMMIT PREPARED is refused in a fenced database');
like($err, qr/cannot execute COMMIT PREPARED in database "fx": it is fenced by driftmirror/,
	'COMMIT PREPARED: the message says why');
is($a->safe_psql('fx', q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'fx_commit'}), '1',
	'COMMIT PREPARED: the transaction stays prepared');
is($a->safe_psql('fx', 'SELECT count(*) FROM p2 WHERE id = 2001'), '0',
	'COMMIT PREPARED: its write is not visible');
($state, $err) = sql_error($a, 'fx',
	q{SET default_transaction_read_only = off; SET session_replication_role = replica; COMMIT PREPARED 'fx_commit'});
is($state, '25006', 'COMMIT PREPARED is refused whatever the client sets');

$a->safe_psql('fx', q{ROLLBACK PREPARED 'fx_rollback'});
is($a->safe_psql('fx', q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'fx_rollback'}), '0',
	'ROLLBACK PREPARED passes');

($state, $err) = sql_error($a, 'fx', q{BEGIN; INSERT INTO t VALUES (2005, 'x'); PREPARE TRANSACTION 'fx_new'});
is($state, '25006', 'PREPARE TRANSACTION of a write is refused');
($state, $err) = sql_error($a, 'fx', q{BEGIN; SELECT count(*) FROM t; PREPARE TRANSACTION 'fx_read'});
is($state, '25006', 'PREPARE TRANSACTION of a read-only transaction is refused too');
like($err, qr/cannot execute PREPARE TRANSACTION in database "fx"/, 'PREPARE TRANSACTION: the message says why');
my $out = $early->query(q{PREPARE TRANSACTION 'fx_early'});
is($a->safe_psql('fx', q{SELECT count(*) FROM pg_prepared_xacts WHERE gid IN ('fx_early', 'fx_new', 'fx_read')}), '0',
	'PREPARE TRANSACTION of a transaction that wrote before the fence is refused');
$early->quit;
is($a->safe_psql('fx', q{SELECT count(*) FROM t WHERE id IN (2004, 2005)}), '0',
	'PREPARE TRANSACTION: nothing written');

$a->safe_psql('fx', q{SELECT driftmirror_node.session_bypass(); COMMIT PREPARED 'fx_bypass'});
is($a->safe_psql('fx', 'SELECT count(*) FROM p2 WHERE id = 2003'), '1',
	"driftmirror's own session may COMMIT PREPARED");

# rewrites and their siblings: refused before they start, naming the command
my @refused = (
	['VACUUM FULL t',                                      qr/VACUUM FULL/],
	['VACUUM (FULL, VERBOSE) t',                           qr/VACUUM FULL/],
	['VACUUM FULL',                                        qr/VACUUM FULL/],
	['VACUUM ANALYZE t',                                   qr/ANALYZE/],
	['ANALYZE t',                                          qr/ANALYZE/],
	['CLUSTER t USING t_pkey',                             qr/CLUSTER/],
	['REINDEX TABLE t',                                    qr/REINDEX/],
	['REINDEX INDEX t_v',                                  qr/REINDEX/],
	['REINDEX TABLE CONCURRENTLY t',                       qr/REINDEX/],
	['REFRESH MATERIALIZED VIEW mv',                       qr/REFRESH MATERIALIZED VIEW/],
	['ALTER TABLE t ALTER COLUMN v TYPE varchar(100)',     qr/ALTER TABLE/],
	['TRUNCATE t',                                         qr/TRUNCATE/],
	['LOCK TABLE t IN ACCESS EXCLUSIVE MODE',              qr/LOCK TABLE/],
	[q{SELECT nextval('s')},                               qr/nextval\(\)/],
	[q{SELECT setval('s', 42)},                            qr/setval\(\)/],
	['CREATE INDEX t_v2 ON t (v)',                         qr/CREATE INDEX/],
	[q{SELECT lo_from_bytea(0, '\x00')},                   qr/lo_from_bytea|writing transaction/],
	[q{SELECT pg_logical_emit_message(true, 'p', 'x')},    qr/pg_logical_emit_message|writing transaction/],
);
for my $r (@refused)
{
	my ($sql, $names) = @$r;
	my $wrapped = $sql =~ /^(VACUUM|REINDEX TABLE CONCURRENTLY)/ ? $sql
	  : "BEGIN; SET LOCAL transaction_read_only = off; $sql; COMMIT";
	($state, $err) = sql_error($a, 'fx', "SET default_transaction_read_only = off; $wrapped");
	is($state, '25006', "fenced: $sql is refused with 25006");
	like($err, $names, "fenced: $sql: the message names the command");
}
is($a->safe_psql('fx', q{SELECT pg_relation_filenode('t')}), $filenode, 'no rewrite happened');
is($a->safe_psql('fx', q{SELECT count(*) FROM pg_largeobject_metadata}), '0', 'no large object made');

# up front: VACUUM FULL does not wait for its lock (the apply worker would
# wait behind it) before it is refused
my $reader = $a->background_psql('fx');
$reader->query_safe(q{BEGIN; LOCK TABLE t IN ACCESS SHARE MODE});
($state, $err) = sql_error($a, 'fx', q{SET lock_timeout = '10s'; VACUUM FULL t});
is($state, '25006', 'VACUUM FULL is refused before it asks for its lock');
$reader->query_safe('COMMIT');
$reader->quit;

$a->safe_psql('fx', 'VACUUM t');
pass('plain VACUUM passes');
$a->safe_psql('fx', q{SELECT driftmirror_node.session_bypass(); VACUUM FULL t; REINDEX TABLE t});
isnt($a->safe_psql('fx', q{SELECT pg_relation_filenode('t')}), $filenode,
	"driftmirror's own session may rewrite");

$a->safe_psql('fx', q{SELECT driftmirror_node.fence_clear()});
$a->safe_psql('fx', q{COMMIT PREPARED 'fx_commit'});
is($a->safe_psql('fx', 'SELECT count(*) FROM p2 WHERE id = 2001'), '1',
	'unfenced: COMMIT PREPARED works again');

# ---- promotion and prepared transactions
# promote(OPTIONS): run dm_promote; returns (sqlstate, message + detail)
sub promote
{
	my ($opts) = @_;
	$opts //= '{}';
	return sql_error($a, 'postgres', "SELECT * FROM driftmirror.dm_promote('orders', 'db', '$opts')");
}

sub last_promotion
{
	my ($col) = @_;
	return $a->safe_psql('postgres', "SELECT $col FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1");
}

# not_lost(GID, NOTE): commit a prepared transaction where it can commit,
# then its row must reach both nodes
sub not_lost
{
	my ($gid, $note, $what) = @_;
	$a->safe_psql('app', "COMMIT PREPARED '$gid'");
	ok($b->poll_query_until('app', "SELECT count(*) = 1 FROM orders WHERE note = '$note'"),
		"$what: the prepared write, committed, reached the mirror");
}

# 1. prepared before dm_promote: refused by the guardrails
$a->safe_psql('app', q{BEGIN; INSERT INTO orders (note) VALUES ('prepared 1'); PREPARE TRANSACTION 'app_1'});
($state, $err) = promote();
is($state, '55000', 'a prepared transaction on the primary: promotion refused');
like($err, qr/1 prepared transaction\(s\) in the primary's database/, 'the reason counts them');
is(last_promotion('state'), 'refused', 'recorded as refused');
is(last_promotion(q{guardrails ->> 'prepared_xacts'}), '1', 'the figure is recorded');
is(primary_of($p), $a, 'a is still the primary');
not_lost('app_1', 'prepared 1', 'refused');
ok(wait_mirroring($p), 'the mirror mirrors');

# 2. prepared after the guardrails, before the fence: rolled back
promote_pause($p, 'fence', 60000);
my $caller = promote_start($p, '{"promote_timeout": "120 s"}');
promote_wait_paused($p, 'fence', 'prepared before the fence');
$a->safe_psql('app', q{BEGIN; INSERT INTO orders (note) VALUES ('prepared 2'); PREPARE TRANSACTION 'app_2'});
promote_release($p);
ok($a->poll_query_until('postgres', q{SELECT count(*) = 0 FROM driftmirror.dm_promotions
	WHERE state NOT IN ('done', 'rolled_back', 'refused', 'failed')}), 'the promotion ended');
like(promote_finish($caller), qr/promotion failed and was rolled back: 1 prepared transaction/,
	'prepared before the fence: the caller is told');
is(last_promotion('state'), 'rolled_back', 'prepared before the fence: rolled back');
like(last_promotion('error'), qr/1 prepared transaction\(s\) in the primary's database/,
	'the error says why');
is(primary_of($p), $a, 'a is still the primary');
ok(writable($a), 'a takes writes');
ok(!writable($b), 'b refuses writes');
not_lost('app_2', 'prepared 2', 'rolled back');
is($b->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots'), '0',
	'no slot left on the mirror');

# 3. none prepared: the promotion goes through
ok(wait_mirroring($p), 'the mirror mirrors again');
($state, $err) = promote();
is($state, 'ok', 'without prepared transactions the promotion succeeds') or diag($err);
is(primary_of($p), $b, 'b is the primary');

done_testing();
