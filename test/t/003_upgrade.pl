# 003_upgrade.pl: ALTER EXTENSION driftmirror UPDATE from every kept release.
#
# Then a running mirror (DmPair: two clusters, the control database on the
# primary's) made under 0.1.0 is updated in place: the update takes the
# catalog's locks for a moment while the worker steps and the subscription
# streams, and the mirror, its data and the worker's steps go on.
#
# A database gets the released 0.1.0 script (sql/old/), some data, and the
# update to the current version; another gets a fresh install.  The two
# catalogs must be the same: both schemas are dumped with pg_dump
# --schema-only after their objects are detached from the extension in
# these scratch databases (pg_dump leaves extension members out), and the
# dumps compared.  The data written before the update must still be there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmPair;

my $node = dm_node('upgrade', no_extension => 1);
my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'driftmirror'");

# the PGXN metadata names the version the control file installs
like(slurp_file("$ENV{DM_ROOT}/META.json"),
	qr/"file": "sql\/driftmirror--\Q$current\E\.sql",\s*"docfile": "README.md",\s*"version": "\Q$current\E"/,
	"META.json provides driftmirror $current");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE DATABASE updated');
$node->safe_psql('fresh', 'CREATE EXTENSION driftmirror');
$node->safe_psql('updated', "CREATE EXTENSION driftmirror VERSION '0.1.0'");
is($node->safe_psql('updated',
		"SELECT extversion FROM pg_extension WHERE extname = 'driftmirror'"),
	'0.1.0', 'the released 0.1.0 script installs');

# data written by 0.1.0
$node->safe_psql('updated', q{
	SELECT driftmirror.dm_create_group('orders', '{"interval": "30 seconds"}');
	SELECT driftmirror.dm_add_resource('orders', 'db', 'postgres', 'host=/tmp dbname=orders');
	SELECT driftmirror.dm_add_resource('orders', 'app', 'app', 'https://actuator.example/app',
	                                   depends_on => '{db}');
	SELECT driftmirror.dm_add_event('orders', 'sale', '2026-11-27', '2026-11-30');
	SELECT driftmirror.dm_register_metric('load', 'req/s', 'requests per second');
	SELECT driftmirror.dm_ingest('orders', 'db', 'load', ARRAY[now() - interval '1 minute', now()],
	                             ARRAY[1.5, 2.5]);
});

my ($ret, $out, $err) = $node->psql('updated', 'ALTER EXTENSION driftmirror UPDATE');
is($ret, 0, "ALTER EXTENSION driftmirror UPDATE from 0.1.0 to $current") or diag($err);
is($node->safe_psql('updated',
		"SELECT extversion FROM pg_extension WHERE extname = 'driftmirror'"),
	$current, "the extension is at $current");

is($node->safe_psql('updated', q{
	SELECT string_agg(format('%s/%s/%s', g.name, r.name, r.kind), ' ' ORDER BY r.name)
	  FROM driftmirror.dm_resources r JOIN driftmirror.dm_groups g ON g.name = r.group_name}),
	'orders/app/app orders/db/postgres', 'groups and resources survive the update');
is($node->safe_psql('updated', 'SELECT count(*) FROM driftmirror.dm_events'), '1',
	'events survive the update');
is($node->safe_psql('updated',
		"SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'load'"),
	'2', 'metrics survive the update');

# what pg_dump dumps of the extension's data (pg_extension_config_dump:
# tables and sequences, with their filters) is the same after the update
my $extconfig = q{
	SELECT string_agg(c.oid::regclass::text || coalesce(' ' || nullif(e.extcondition[c.n], ''), ''), ', '
	                  ORDER BY c.oid::regclass::text)
	  FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY AS c (oid, n)
	 WHERE e.extname = 'driftmirror'};
is($node->safe_psql('updated', $extconfig), $node->safe_psql('fresh', $extconfig),
	'the same tables and sequences are marked for pg_dump after the update');

# compare the catalogs
sub schema_dump
{
	my ($db) = @_;
	$node->safe_psql($db, q{
		DELETE FROM pg_depend
		 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'driftmirror')});
	# metric partitions are named after the day they hold: not compared
	my $file = $node->basedir . "/$db.sql";
	$node->command_ok(
		[ 'pg_dump', '--schema-only', '--no-owner', '--schema=driftmirror',
			'--exclude-table=driftmirror.metric_p*',
			'-f', $file, '-d', $node->connstr($db) ],
		"pg_dump of database $db");
	my $dump = slurp_file($file);
	# comments, and the random key of pg_dump's \restrict lines
	$dump =~ s/^--.*\n//mg;
	$dump =~ s/^\\(un)?restrict .*\n//mg;
	return $dump;
}
my $fresh = schema_dump('fresh');
my $updated = schema_dump('updated');
ok(length($fresh) > 10000, 'the dump of a fresh install holds the catalog');
if ($fresh eq $updated)
{
	pass('an updated 0.1.0 catalog equals a fresh install');
}
else
{
	my ($f, $u) = map { $node->basedir . "/$_.cmp" } qw(fresh updated);
	PostgreSQL::Test::Utils::append_to_file($f, $fresh);
	PostgreSQL::Test::Utils::append_to_file($u, $updated);
	my $diff = `diff -u $f $u | head -n 200`;
	fail('an updated 0.1.0 catalog equals a fresh install');
	diag($diff);
}

# a running mirror made under 0.1.0 survives the update
my $p = dm_pair(extension_version => '0.1.0');
my ($pa, $pb) = ($p->{a}, $p->{b});
is($pa->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'driftmirror'"),
	'0.1.0', 'the pair runs with the 0.1.0 catalog');
my $mirror_id = $pa->safe_psql('postgres', 'SELECT id FROM driftmirror.mirror');
$pa->safe_psql('app', "INSERT INTO orders (note) SELECT 'before ' || g FROM generate_series(1, 50) g");
($ret, $out, $err) = $pa->psql('postgres', 'ALTER EXTENSION driftmirror UPDATE');
is($ret, 0, 'ALTER EXTENSION driftmirror UPDATE with a mirror running') or diag($err);
is($pa->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'driftmirror'"),
	$current, "the control database is at $current");
$pa->safe_psql('app', "INSERT INTO orders (note) SELECT 'after ' || g FROM generate_series(1, 50) g");

my $steps = $pa->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'orders'");
dm_wait_for($pa, "SELECT steps_ok > $steps + 2 FROM driftmirror.dm_status WHERE group_name = 'orders'",
	't', 'the worker keeps stepping the group after the update');
ok(wait_mirroring($p), 'the mirror is still mirroring, with a fresh status');
is($pa->safe_psql('postgres', 'SELECT id FROM driftmirror.mirror'), $mirror_id,
	'it is the same mirror');
my $sum = q{SELECT count(*) || ' ' || md5(string_agg(id || note, ',' ORDER BY id)) FROM orders};
my $want = $pa->safe_psql('app', $sum);
like($want, qr/^200 /, 'the primary has the rows written before and after the update');
ok($pb->poll_query_until('app', $sum, $want),
	'the rows written before and after the update reach the mirror');
$pa->stop;
$pb->stop;

done_testing();
