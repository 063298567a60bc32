# 023_metric_staged.pl: index_mode 'staged' under concurrent writers and
# the worker.
#
# Late rows for a closed staged partition are never lost around its merge:
# a writer holding the partition when the merge starts makes the merge give
# up (lock_timeout, 55P03) and leave everything as it was, its row copied by
# the next merge; a writer arriving while a merge holds driftmirror.metric
# waits, then writes into the merged table.  Then the worker's own
# maintenance seals and merges a staged partition by itself.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

# the worker stays idle until the last part
my $node = dm_node('staged', conf => "driftmirror.enabled = off\n"
	  . "driftmirror.metric_maintenance_interval = 1s");

$node->safe_psql('postgres', q{
	SELECT driftmirror.dm_create_group('g', '{"retention": "3650 days"}');
	SELECT driftmirror.dm_add_resource('g', 'db', 'postgres', 'host=/tmp dbname=x');
	SELECT driftmirror.dm_register_metric('m');
});
is($node->safe_psql('postgres', 'SELECT index_mode FROM driftmirror.metric_settings'),
	'staged', 'staged is the default');

# three days 200 days ago, each a staged partition with 2,000 rows
my $d = $node->safe_psql('postgres',
	"SELECT date_bin('1 day', now() - interval '200 days', timestamptz '2000-01-01 00:00:00+00')");
$node->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_partitions('$d', '$d'::timestamptz + interval '2 days 1 hour');
	SELECT driftmirror.dm_ingest('g', 'db', 'm',
	           array_agg('$d'::timestamptz + k * interval '1 day' + i * interval '30 seconds' ORDER BY i),
	           array_agg(i::float8 ORDER BY i))
	  FROM generate_series(0, 2) k, generate_series(1, 2000) i GROUP BY k;
});

sub day_rows
{
	my ($k) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) || '/' || sum(value) FROM driftmirror.metric
		 WHERE ts >= '$d'::timestamptz + $k * interval '1 day'
		   AND ts < '$d'::timestamptz + ($k + 1) * interval '1 day'});
}

sub layout
{
	my ($k) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT c.relkind::text || '/' || coalesce(p.stage_interval::text, 'plain')
		  FROM driftmirror.metric_partition p
		  JOIN pg_class c ON c.oid = format('driftmirror.%I', p.name)::regclass
		 WHERE p.lo = '$d'::timestamptz + $k * interval '1 day'});
}

is(layout(0), 'p/00:15:00', 'day 0 is staged');
is(day_rows(0), '2000/2001000', 'day 0 holds its rows');

# --- a writer holds day 0 (a late row, not committed): the merge gives up
my $writer = $node->background_psql('postgres');
$writer->query_safe(qq{BEGIN;
	SELECT driftmirror.dm_ingest('g', 'db', 'm', ARRAY['$d'::timestamptz + interval '3 hours 15 seconds'],
	                             ARRAY[100000]::float8[])});
my $res = $node->safe_psql('postgres', 'SELECT driftmirror._merge_staged(now())');
like($res, qr/"merge_skipped": ".*\(55P03\)"/, 'the merge gives up on a lock held by a writer')
  or diag($res);
like($res, qr/"partitions_merged": 0/, 'nothing was merged');
is(layout(0), 'p/00:15:00', 'day 0 is still staged');
$writer->query_safe('COMMIT');
is(day_rows(0), '2001/2101000', 'the late row is in day 0');
like($node->safe_psql('postgres', 'SELECT driftmirror._merge_staged(now())'),
	qr/"merge_rows": 2001/, 'the next merge copies it');
is(layout(0), 'r/plain', 'day 0 is one plain table');
is(day_rows(0), '2001/2101000', 'with every row');

# --- a writer arriving during a merge waits, then writes into the merged table
my $merger = $node->background_psql('postgres');
like($merger->query_safe('BEGIN; SELECT driftmirror._merge_staged(now())'),
	qr/"merge_rows": 2000/, 'day 1 merged, not committed');
$writer->query_until(qr/sent/, qq{\\echo sent
	SELECT driftmirror.dm_ingest('g', 'db', 'm', ARRAY['$d'::timestamptz + interval '1 day 5 hours 15 seconds'],
	                             ARRAY[200000]::float8[]);
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	 WHERE NOT l.granted AND a.query LIKE '%dm_ingest%' AND a.pid <> pg_backend_pid()}),
	'the writer waits for the merge');
$merger->query_safe('COMMIT');
$merger->quit;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity
	 WHERE query LIKE '%dm_ingest%' AND state = 'active' AND pid <> pg_backend_pid()}),
	'the writer went on');
$writer->quit;
is(layout(1), 'r/plain', 'day 1 is one plain table');
is(day_rows(1), '2001/2201000', 'with the late row written after the merge');

# --- the worker seals and merges day 2 by itself
$node->append_conf('postgresql.conf', 'driftmirror.enabled = on');
$node->reload;
dm_wait_for($node, qq{SELECT relkind = 'r' FROM pg_class
	 WHERE oid = (SELECT format('driftmirror.%I', name)::regclass FROM driftmirror.metric_partition
	               WHERE lo = '$d'::timestamptz + interval '2 days')}, 't',
	'the worker merges day 2');
is(layout(2), 'r/plain', 'day 2 is one plain table');
is(day_rows(2), '2000/2001000', 'with every row');
my $p2 = $node->safe_psql('postgres', qq{
	SELECT name FROM driftmirror.metric_partition WHERE lo = '$d'::timestamptz + interval '2 days'});
is($node->safe_psql('postgres', qq{
	SELECT string_agg(replace(indexname, '$p2', '<p>'), ', ' ORDER BY indexname)
	  FROM pg_indexes WHERE schemaname = 'driftmirror' AND tablename = '$p2'}),
	'<p>_series, <p>_ts', 'with the series btree and the BRIN');
# today's partition: its ended leaves get their btree from the worker
dm_wait_for($node, q{
	SELECT sealed_upto IS NOT NULL OR now() - lo < interval '16 minutes'
	  FROM driftmirror.metric_partition WHERE lo <= now() AND hi > now()}, 't',
	'the worker seals the ended leaves of the open partition');
ok($node->log_contains(qr/driftmirror: merged metric partition $p2 \(2000 rows\) in [\d.]+ ms/),
	'the worker logs its merge and its time');

$node->stop;
done_testing();
