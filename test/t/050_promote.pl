# 050_promote.pl: dm_promote under load, there and back five times.
#
# The probe writes through the libpq multi-host string that
# dm_route_multihost returns (target_session_attrs=read-write) during ten
# promotions (a -> b -> a ...).  After each one: exactly one node takes
# writes, dm_route('write') names the new primary, serial inserts succeed on
# the new primary (sequences were synchronised), the mirror is mirroring
# again.  At the end every acknowledged row is on the primary exactly once
# and both nodes hold identical content.  dm_promotions has the step log.
# Then a commit acknowledged with synchronous_commit = off just before the
# fence reaches the new primary.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;
use DmPair;

# shared_buffers above the test default (1MB), where evicting a dirty
# buffer flushes the WAL before it often enough to hide an unflushed commit
my $p = dm_pair(conf => "shared_buffers = 16MB\n");
my ($a, $b) = ($p->{a}, $p->{b});

is(primary_of($p), $a, 'a is the primary at first');
ok(writable($a) && !writable($b), 'before: a writable, the mirror b is not');
like($p->{multihost}, qr/^host=\S+,\S+ port=\d+,\d+ dbname=app target_session_attrs=read-write$/,
	'dm_route_multihost lists both nodes');

my $probe = probe_start($p->{probe}, $p->{multihost}, clients => 4, rate => 400);
# let the probe get going
ok($a->poll_query_until('app', 'SELECT count(*) > 200 FROM dm_probe'), 'the probe writes');

my $round = 0;
for my $i (1 .. 10)
{
	my $from = primary_of($p);
	my $to = $from == $a ? $b : $a;
	my $res = $a->safe_psql('postgres',
		q{SELECT resource_name || '|' || (new_primary IS NOT NULL) || '|' || (pause_ms >= 0) || '|' || (fence_lsn IS NOT NULL)
		  FROM driftmirror.dm_promote('orders')});
	is($res, 'db|true|true|true', "promotion $i: dm_promote returns the new primary, pause and fence LSN");
	is(primary_of($p), $to, "promotion $i: the mirror is the primary now");
	ok(writable($to), "promotion $i: the new primary takes writes");
	ok(!writable($from), "promotion $i: the old primary refuses writes");
	is($a->safe_psql('postgres', "SELECT driftmirror.dm_route('orders', 'db', 'write') = endpoint FROM driftmirror.dm_resources WHERE name = 'db'"),
		't', "promotion $i: dm_route('write') names the new primary");
	# serial columns and sequences on the new primary
	my ($rc, $out, $err) = $to->psql('app',
		"INSERT INTO orders (note) VALUES ('after promotion $i') RETURNING id > 100");
	is($rc, 0, "promotion $i: serial insert succeeds on the new primary") or diag($err);
	my $inv = $to->safe_psql('app', "SELECT nextval('invoice_no') > 500");
	is($inv, 't', "promotion $i: sequence continues above the old primary's value");
	ok(wait_mirroring($p), "promotion $i: the old primary mirrors the new one");
}

my $summary = probe_stop($probe);
note("probe: $summary");
my $primary = primary_of($p);
my $mirror = mirror_of($p);
my ($rc, $check) = probe_check($p->{probe}, $probe,
	'host=' . $primary->host . ' port=' . $primary->port . ' dbname=app',
	'host=' . $mirror->host . ' port=' . $mirror->port . ' dbname=app');
note("check: $check");
is($rc, 0, 'every acknowledged row is on the primary exactly once, and both nodes are identical');
like($check, qr/lost=0 duplicated=0 .* identical=yes/, 'no lost or duplicated writes');

my $content = q{SELECT count(*), md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM orders};
$a->poll_query_until('app', $content, $b->safe_psql('app', $content))
  or diag('orders differ');
is($a->safe_psql('app', $content), $b->safe_psql('app', $content), 'orders identical on both nodes');

is($a->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE state = 'done') || '/' || count(*)
	  FROM driftmirror.dm_promotions}), '10/10', 'ten promotions done');
is($a->safe_psql('postgres', q{
	SELECT string_agg(step, ',' ORDER BY seq) FROM driftmirror.dm_promotion_steps
	 WHERE promotion_id = (SELECT max(id) FROM driftmirror.dm_promotions)}),
	'guardrails,reverse_slot,fence,catch_up,sequences,unfence,reverse',
	'the step log lists every step');
is($a->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_promotion_steps WHERE outcome <> 'ok'}), '0',
	'every step ended ok');
# the driver rehearses the pause's transactions (the flip among them) and
# rolls them back: nothing of it stays
is($a->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM driftmirror.dm_actions WHERE kind = 'promote_flip')
	       || ' ' || (SELECT count(*) FROM driftmirror.route_history WHERE reason LIKE 'promotion %')
	       || ' ' || (SELECT count(*) FROM driftmirror.dm_promotion_steps WHERE step = 'sequences')}),
	'10 40 10', 'one flip action, four route changes and one sequences step per promotion');
note($a->safe_psql('postgres', q{
	SELECT string_agg(round(pause_ms)::text, ' ' ORDER BY id) FROM driftmirror.dm_promotions}));

# no replication slot is left behind: one slot for the one direction
my $slots = $a->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots')
  + $b->safe_psql('app', 'SELECT count(*) FROM pg_replication_slots');
is($slots, 1, 'exactly one replication slot remains (the current direction)');

# A commit acknowledged with synchronous_commit = off just before the fence
# is on the new primary: the fence LSN is the end of a commit of the
# driver's own that flushes all WAL before it, not merely the position
# flushed so far (a commit that only took a transaction id, such as
# SELECT txid_current(), is not flushed).  The control database is on a,
# so this is checked on a switchover away from b, whose WAL writer is
# slowed down so that nothing else flushes the client's commit record.
$a->safe_psql('postgres', q{SELECT driftmirror.dm_promote('orders')});
is(primary_of($p), $b, 'async commit: b is the primary');
ok(wait_mirroring($p), 'async commit: a mirrors b');
$b->safe_psql('postgres', q{ALTER SYSTEM SET wal_writer_delay = '10s'; SELECT pg_reload_conf()});
# an asynchronous commit first wakes a hibernating WAL writer, which then
# sleeps for the new delay (a WAL writer that was not hibernating sleeps it
# since the reload); a synchronous commit flushes it: the next asynchronous
# commit stays unflushed for seconds
$b->safe_psql('app', q{SET synchronous_commit = off; INSERT INTO orders (note) VALUES ('wakes the WAL writer')});
$b->safe_psql('app', q{SET synchronous_commit = on; INSERT INTO orders (note) VALUES ('flushed')});
my $async = $b->safe_psql('app', q{
	SET synchronous_commit = off;
	INSERT INTO orders (note) VALUES ('committed asynchronously before the fence');
	SELECT pg_current_wal_insert_lsn() || ' ' || pg_current_wal_flush_lsn()});
note("async commit: inserted up to, flushed up to: $async");
$async =~ s/ .*//;
# (the guardrail on the lag's age is not what is tested: the slow WAL
# writer may age the worker's last lag sample)
$a->safe_psql('postgres', q{SELECT driftmirror.dm_promote('orders', options => '{"promote_max_lag_seconds": 3600}')});
is(primary_of($p), $a, 'async commit: a is the primary again');
is($a->safe_psql('app', q{SELECT count(*) FROM orders WHERE note = 'committed asynchronously before the fence'}),
	'1', 'async commit: the row committed with synchronous_commit = off is on the new primary');
is($a->safe_psql('postgres', qq{
	SELECT fence_lsn >= '$async'::pg_lsn FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	't', 'async commit: the fence LSN is past the commit acknowledged before the fence');
$b->safe_psql('postgres', q{ALTER SYSTEM RESET wal_writer_delay; SELECT pg_reload_conf()});
ok(wait_mirroring($p), 'async commit: b mirrors a');
$a->poll_query_until('app', $content, $b->safe_psql('app', $content))
  or diag('orders differ');
is($a->safe_psql('app', $content), $b->safe_psql('app', $content), 'async commit: orders identical on both nodes');

# A client holding a write transaction when the old primary is fenced gets
# promote_fence_grace to finish, then its session is ended: the promotion
# goes on (one round trip found a writer: the driver waits, then ends it),
# and the row it never committed is on neither node.
my $writer = $a->background_psql('app', on_error_stop => 0);
$writer->query_safe(q{BEGIN; INSERT INTO orders (note) VALUES ('never committed')});
$a->safe_psql('postgres', q{SELECT driftmirror.dm_promote('orders')});
is(primary_of($p), $b, 'open writer: b is the primary');
is($a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_promotions ORDER BY id DESC LIMIT 1}),
	'done', 'open writer: the promotion is done');
ok($a->poll_query_until('app', q{SELECT count(*) = 0 FROM pg_stat_activity
	WHERE datname = 'app' AND backend_xid IS NOT NULL AND backend_type = 'client backend'}),
	'open writer: its session was ended');
is($b->safe_psql('app', q{SELECT count(*) FROM orders WHERE note = 'never committed'}), '0',
	'open writer: its uncommitted row is not on the new primary');
ok(wait_mirroring($p), 'open writer: a mirrors b');
$writer->quit;

done_testing();
