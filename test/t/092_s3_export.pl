# 092_s3_export.pl: dm_export and dm_import against a real S3-compatible
# server (s3rver, from the npm registry, installed by test/run into
# .build/npm) on loopback, with signed requests.  s3rver checks the form
# of an AWS Signature Version 4 header and its access key id, not the
# signature itself (its v4 verification is unimplemented): the signature is
# libcurl's; what is tested here is that every request carries one with
# the configured key id, and that the secret never shows.
#
# A group's configuration goes out as a new versioned object per export
# and comes back into another cluster; an object that is corrupted, foreign
# or out of the configured store is refused and changes nothing; the
# credentials never show in views, errors or the server log; an admin
# cannot point the server's credentials elsewhere; pg_cron schedules
# exports.
use strict;
use warnings;

use File::Path qw(make_path);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $s3rver = "$ENV{DM_ROOT}/.build/npm/node_modules/.bin/s3rver";
if (!-x $s3rver)
{
	# CI must run it: a missing server is a failure there, a skip elsewhere
	BAIL_OUT('s3rver is not installed (test/run installs it from npm)') if $ENV{CI};
	plan skip_all => 's3rver is not installed (test/run installs it from npm)';
}

my $base = PostgreSQL::Test::Utils::tempdir();
my $s3_port = PostgreSQL::Test::Cluster::get_free_port();
my $store = "http://127.0.0.1:$s3_port/dm-backups";
# s3rver's built-in key id is S3RVER; the secret is not checked by it, so a
# distinctive one shows whether it ever leaks
my $secret = 'sEcReT-7f3a9c-never-in-a-log';

make_path("$base/s3");
my $s3 = IPC::Run::start(
	[
		'node', $s3rver, '-d', "$base/s3", '-a', '127.0.0.1', '-p', $s3_port,
		'--configure-bucket', 'dm-backups'
	],
	'<', \undef, '>>', "$base/s3rver.log", '2>>', "$base/s3rver.log");
END { local $?; eval { $s3->kill_kill(grace => 5) if $s3; }; }

my $http = HTTP::Tiny->new(timeout => 5);
my $up = 0;
for (1 .. 300)
{
	my $r = $http->get("http://127.0.0.1:$s3_port/");
	if ($r->{status} && $r->{status} != 599) { $up = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($up, 's3rver is up') or diag(slurp_file("$base/s3rver.log"));

# a node with the store configured: endpoint and key id in the settings,
# the secret in a file of $PGDATA/driftmirror_secrets
sub store_node
{
	my ($name, %opts) = @_;
	my $node = dm_node($name, %opts);
	make_path($node->data_dir . '/driftmirror_secrets');
	PostgreSQL::Test::Utils::append_to_file(
		$node->data_dir . '/driftmirror_secrets/s3_secret', "$secret\n");
	chmod 0600, $node->data_dir . '/driftmirror_secrets/s3_secret';
	$node->append_conf('postgresql.conf', qq{
driftmirror.s3_endpoint = '$store'
driftmirror.s3_access_key_id = 'S3RVER'
driftmirror.s3_secret_access_key_file = 's3_secret'
});
	$node->reload;
	return $node;
}

my $a = store_node('a', cron => 1);
my $b = store_node('b');

$a->safe_psql('postgres', q{
	SELECT driftmirror.dm_create_group('orders', '{"interval": "30 seconds", "mode": "forecast_only"}');
	SELECT driftmirror.dm_add_resource('orders', 'orders-db', 'postgres', 'host=/tmp port=5999 dbname=orders');
	SELECT driftmirror.dm_add_resource('orders', 'orders-app', 'app', 'http://127.0.0.1:9/orders-app',
	                                   depends_on => '{orders-db}');
	SELECT driftmirror.dm_add_event('orders', 'black-friday', '2026-11-27', '2026-11-30',
	                                '{"effect": 2.5}');
	SELECT driftmirror.dm_add_metric_source('orders', 'orders-db', 'postgres', '{}');
	-- a model: two days of 5-minute demand, trained
	SELECT driftmirror.dm_register_metric('requests', '1/s', 'requests per second');
	SELECT driftmirror.dm_ingest('orders', 'orders-app', 'requests', array_agg(ts ORDER BY ts),
	                             array_agg(100 + 50 * sin(extract(epoch FROM ts) / 86400 * 2 * pi()) ORDER BY ts))
	  FROM generate_series(date_bin('5 minutes', now(), '2000-01-01') - interval '2 days',
	                       date_bin('5 minutes', now(), '2000-01-01'), interval '5 minutes') ts;
	SELECT count(*) FROM driftmirror.dm_train('orders');
});

# --- export: a new versioned object each time
my $obj1 = $a->safe_psql('postgres', "SELECT driftmirror.dm_export('orders', '$store/prod')");
like($obj1, qr{^\Q$store\E/prod/orders/\d{8}T\d{12}Z-[0-9a-f]{12}\.json$},
	'dm_export returns the versioned object URL');
my $obj2 = $a->safe_psql('postgres', "SELECT driftmirror.dm_export('orders', '$store/prod')");
isnt($obj2, $obj1, 'a second export writes a new object');
like($http->get($obj1)->{content}, qr/"format": "driftmirror.export"/,
	'the object is in the store');

# --- import into another cluster
is($b->safe_psql('postgres', "SELECT driftmirror.dm_import('$obj1')"), 'orders',
	'dm_import recreates the group');
my $q = q{
	SELECT g.name || ' ' || (g.options ->> 'mode') || ' | '
	       || (SELECT string_agg(r.name || ':' || r.kind || ':' || r.endpoint || ':'
	                             || array_to_string(r.depends_on, ','), ' ' ORDER BY r.name)
	             FROM driftmirror.dm_resources r WHERE r.group_name = g.name) || ' | '
	       || (SELECT string_agg(e.name || ':' || (e.options ->> 'effect'), ' ') FROM driftmirror.dm_events e) || ' | '
	       || (SELECT string_agg(kind, ' ') FROM driftmirror.dm_metric_sources)
	  FROM driftmirror.dm_groups g};
is($b->safe_psql('postgres', $q), $a->safe_psql('postgres', $q),
	'the imported group equals the exported one (options, resources, dependencies, events, sources)');
my $mq = q{SELECT resource_name || ' ' || metric || ' ' || method || ' ' || array_to_string(seasons, ',')
	          || ' ' || step || ' ' || round(backtest_mase::numeric, 6) FROM driftmirror.dm_models};
is($b->safe_psql('postgres', $mq), $a->safe_psql('postgres', $mq),
	'the model comes back: method, periods, grid and accuracy');
like($b->safe_psql('postgres', q{SELECT version || ' ' || reason FROM driftmirror.dm_models}),
	qr/^1 .*\(imported\)$/, 'as version 1 of this cluster, marked imported');
# with data here, it forecasts without a training of its own
$b->safe_psql('postgres', q{
	SELECT driftmirror.dm_ingest('orders', 'orders-app', 'requests', array_agg(ts ORDER BY ts),
	                             array_agg(100 + 50 * sin(extract(epoch FROM ts) / 86400 * 2 * pi()) ORDER BY ts))
	  FROM generate_series(date_bin('5 minutes', now(), '2000-01-01') - interval '2 days',
	                       date_bin('5 minutes', now(), '2000-01-01'), interval '5 minutes') ts});
is($b->safe_psql('postgres', q{SELECT count(*) > 0 FROM driftmirror.dm_model_forecast('orders', 'orders-app', 'requests', '1 hour')}),
	't', 'the imported model forecasts on the new cluster\'s data');
($_ = $b->safe_psql('postgres',
		"SELECT inputs ->> 'object' FROM driftmirror.dm_actions WHERE kind = 'import'"));
unlike($_, qr/127\.0\.0\.1/, 'the action log names the object, not the store\'s host');

# importing again: the group exists, nothing changes
my ($ret, $out, $err) = $b->psql('postgres', "SELECT driftmirror.dm_import('$obj1')");
like($err, qr/resource group "orders" already exists/, 'a second import of the same group is refused');

# --- refused objects change nothing
sub put_raw
{
	my ($key, $body) = @_;
	# written through the server's own signed PUT (the owner-only request function)
	$a->safe_psql('postgres',
		"SELECT status FROM driftmirror._s3_request('PUT', '$store/$key', \$body\$$body\$body\$)");
}
my $orig = $a->safe_psql('postgres',
	"SELECT body FROM driftmirror._s3_request('GET', '$obj1')");
(my $tampered = $orig) =~ s{port=5999}{port=6000};
is(put_raw('prod/orders/tampered.json', $tampered), '200', 'a tampered copy is stored');
put_raw('prod/orders/foreign.json', '{"format": "someone-else", "payload": {}}');
put_raw('prod/orders/garbage.json', 'not json at all');
# a router needs a mirror: one exported beside a resource without a mirror
# here is not recreated, and the import says so
my $with_router = $a->safe_psql('postgres', q{
	WITH p AS (SELECT jsonb_set(driftmirror._export_payload('orders'), '{routers}',
	                            '[{"name": "lb", "kind": "webhook", "endpoint": "http://127.0.0.1:9/lb",
	                               "options": {"resource": "orders-db"}}]') AS payload)
	SELECT jsonb_build_object('format', 'driftmirror.export', 'format_version', 1, 'group', 'orders',
	                          'sha256', driftmirror._export_checksum(payload), 'payload', payload)
	  FROM p});
is(put_raw('prod/orders/with-router.json', $with_router), '200', 'an export with a router is stored');
$b->safe_psql('postgres', "SELECT driftmirror.dm_drop_group('orders', true)");
($ret, $out, $err) = $b->psql('postgres', "SELECT driftmirror.dm_import('$store/prod/orders/with-router.json')");
like($err, qr/NOTICE:  router\(s\) lb not recreated: their resource has no mirror here yet/,
	'a router whose resource has no mirror here is named in a NOTICE');
is($b->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_resources'), '2',
	'the rest of the group is imported');
$b->safe_psql('postgres', "SELECT driftmirror.dm_drop_group('orders', true)");
my $before = $b->safe_psql('postgres',
	'SELECT (SELECT count(*) FROM driftmirror.dm_groups) || \'/\' || (SELECT count(*) FROM driftmirror.dm_resources)');
for my $case (
	[ 'tampered', qr/ERROR:  XX001: the export is corrupted: its checksum does not match/ ],
	[ 'foreign', qr/ERROR:  XX001: the object is not a driftmirror export/ ],
	[ 'garbage', qr/ERROR:  XX001: the object is not a driftmirror export: not JSON/ ],
	[ 'missing', qr/ERROR:  08006: could not read the object to import/ ])
{
	($ret, $out, $err) = $b->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT driftmirror.dm_import('$store/prod/orders/$case->[0].json')");
	like($err, $case->[1], "a $case->[0] object is refused");
}
is($b->safe_psql('postgres',
	'SELECT (SELECT count(*) FROM driftmirror.dm_groups) || \'/\' || (SELECT count(*) FROM driftmirror.dm_resources)'),
	$before, 'refused imports changed nothing');

# --- only the configured store, for anyone
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_export('orders', 'http://127.0.0.1:$s3_port/other-bucket')");
like($err, qr/ERROR:  42501: object URL is not under driftmirror.s3_endpoint/,
	'an export outside the configured store is refused');
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_import('$store/prod/../x.json')");
like($err, qr/ERROR:  22023: invalid object URL/, 'dot segments are refused');

# a non-superuser admin: may export and import, never read the credentials
$a->safe_psql('postgres', 'CREATE ROLE ops LOGIN IN ROLE driftmirror_admin');
($ret, $out, $err) = $a->psql('postgres', 'SHOW driftmirror.s3_access_key_id',
	connstr => $a->connstr('postgres') . ' user=ops');
like($err, qr/must be superuser|permission denied/, 'the access key id is hidden from the admin');
($ret, $out, $err) = $a->psql('postgres', "SELECT driftmirror._s3_request('GET', '$obj1')",
	connstr => $a->connstr('postgres') . ' user=ops');
like($err, qr/permission denied for function _s3_request/, 'the raw request function is owner-only');
like($a->safe_psql('postgres', "SELECT driftmirror.dm_export('orders', '$store/ops')",
		connstr => $a->connstr('postgres') . ' user=ops'),
	qr{/ops/orders/}, 'an admin exports through the API');

# wrong credentials: a clear error without the secret
$a->append_conf('postgresql.conf', "driftmirror.s3_access_key_id = 'NOSUCHKEY'\n");
$a->reload;
dm_wait_for($a, "SELECT current_setting('driftmirror.s3_access_key_id') = 'NOSUCHKEY'", 't',
	'the new key id is in effect');
($ret, $out, $err) = $a->psql('postgres', "SELECT driftmirror.dm_export('orders', '$store/prod')");
like($err, qr/could not export group "orders"\nDETAIL:  the object store answered HTTP 403/,
	'a refused key id is an error with the HTTP status');
$a->append_conf('postgresql.conf', "driftmirror.s3_access_key_id = 'S3RVER'\n");
$a->reload;

# --- a scheduled export through pg_cron (1.4 schedules by the minute)
$a->safe_psql('postgres', qq{
	CREATE EXTENSION pg_cron;
	SELECT cron.schedule('export-orders', '* * * * *',
	                     \$\$SELECT driftmirror.dm_export('orders', '$store/cron')\$\$)});
dm_wait_for($a,
	"SELECT count(*) >= 1 FROM driftmirror.dm_actions WHERE kind = 'export' AND inputs ->> 'object' LIKE '%/cron/orders/%'",
	't', 'pg_cron runs the export on its schedule');
$a->safe_psql('postgres', "SELECT cron.unschedule('export-orders')");

my $logs = slurp_file($a->logfile) . slurp_file($b->logfile);
unlike($logs . slurp_file("$base/s3rver.log"), qr/\Q$secret\E/,
	'the secret never shows in the server logs');

done_testing();
