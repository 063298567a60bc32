# 004_dump_restore.pl: a control database survives pg_dump and pg_restore.
#
# A DBA moves or restores the control database with pg_dump (custom
# format) and pg_restore.  driftmirror's configuration is extension data
# (tables marked with pg_extension_config_dump), so pg_restore first runs
# CREATE EXTENSION, which makes its own default rows, then copies the dumped
# rows in.  Checked here on a scratch database of one cluster: the restore
# reports no error; groups, resources and their dependencies, events,
# endpoint approvals, a user-registered metric, the metric store's settings
# (pg_restore used to fail on the settings row that CREATE EXTENSION makes
# and leave the defaults) and the metric samples are the same after it; and
# the restored database takes new objects (the identity sequences of the
# configuration tables go on after the restored rows).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $node = dm_node('dump');
my $dir = PostgreSQL::Test::Utils::tempdir;
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION driftmirror');
$node->safe_psql('src', q{
	SELECT driftmirror.dm_create_group('orders', '{"interval": "30 seconds"}');
	SELECT driftmirror.dm_create_group('search');
	SELECT driftmirror.dm_add_resource('orders', 'db', 'postgres', 'host=/tmp dbname=orders');
	SELECT driftmirror.dm_add_resource('orders', 'app', 'app', 'https://actuator.example/app',
	                                   depends_on => '{db}', options => '{"capacity": 3}');
	SELECT driftmirror.dm_add_resource('search', 'cache', 'cache', 'https://actuator.example/cache');
	SELECT driftmirror.dm_add_event('orders', 'sale', '2026-11-27', '2026-11-30');
	SELECT driftmirror.dm_approve_endpoint('https://actuator.example/other');
	SELECT driftmirror.dm_register_metric('checkout_rate', 'req/s', 'checkouts per second');
	SELECT driftmirror.dm_set_metric_settings('{"partition_interval": "12 hours", "premake": 5,
	                                            "rollup_retention": "90 days", "index_mode": "immediate"}');
	SELECT driftmirror.dm_ingest('orders', 'app', 'checkout_rate',
	                             ARRAY[now() - interval '2 minutes', now() - interval '1 minute', now()],
	                             ARRAY[1.5, 2.5, 3.5]);
});

# what must survive, read the same way on both sides
my %checks = (
	groups => q{SELECT string_agg(name || ' ' || options::text, '; ' ORDER BY name) FROM driftmirror.dm_groups},
	resources => q{SELECT string_agg(format('%s/%s %s %s %s', group_name, name, kind, endpoint, depends_on), '; '
	                      ORDER BY group_name, name) FROM driftmirror.dm_resources},
	events => q{SELECT string_agg(format('%s/%s %s %s', group_name, name, starts, ends), '; ' ORDER BY name)
	              FROM driftmirror.dm_events},
	approvals => q{SELECT string_agg(endpoint, '; ' ORDER BY endpoint) FROM driftmirror.endpoint_approval},
	metrics => q{SELECT string_agg(format('%s %s %s', name, unit, description), '; ' ORDER BY name)
	               FROM driftmirror.metric_def WHERE NOT builtin},
	settings => q{SELECT format('%s %s %s %s', partition_interval, premake, rollup_retention, index_mode)
	                FROM driftmirror.metric_settings},
	samples => q{SELECT count(*) || ' ' || sum(value) FROM driftmirror.dm_metrics WHERE metric = 'checkout_rate'},
);
my %before = map { $_ => $node->safe_psql('src', $checks{$_}) } keys %checks;
is($before{settings}, '12:00:00 5 90 days immediate', 'the source has changed settings');
is($before{samples}, '3 7.5', 'the source has three samples');

command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', "$dir/src.dump" ],
	'pg_dump of the control database');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'pg_restore', '-d', $node->connstr('dst'), "$dir/src.dump" ],
	'>', \$stdout, '2>', \$stderr, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
ok($ok, 'pg_restore exits 0');
is($stderr, '', 'pg_restore reports no error');

for my $what (sort keys %checks)
{
	is($node->safe_psql('dst', $checks{$what}), $before{$what}, "restored: $what");
}

# the restored database goes on: new rows get new ids
my ($rc, $out, $err) = $node->psql('dst', q{
	SELECT driftmirror.dm_create_group('billing');
	SELECT driftmirror.dm_add_resource('billing', 'db', 'postgres', 'host=/tmp dbname=billing');
	SELECT driftmirror.dm_add_event('billing', 'close', '2026-12-31', '2027-01-01');
	SELECT driftmirror.dm_register_metric('invoice_rate', 'req/s', 'invoices per second');});
is($rc, 0, 'the restored database takes a new group, resource, event and metric') or diag($err);
is($node->safe_psql('dst', q{SELECT count(*) FROM driftmirror.dm_resources}), '4',
	'four resources after the restore and one more');

done_testing();
