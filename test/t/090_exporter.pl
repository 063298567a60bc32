# 090_exporter.pl: driftmirror's state in Prometheus through a real
# postgres_exporter (Debian package prometheus-postgres-exporter) with the
# queries file of the tree (contrib/prometheus/queries.yaml), scraped by a
# real Prometheus, both on loopback.
#
# The exporter logs in as a plain member of driftmirror_monitor: it gets
# the group, mirror-less route and action series, the values follow the
# catalog, and no series carries an endpoint.
use strict;
use warnings;

use File::Path qw(make_path);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
my $prom_bin = '/usr/bin/prometheus';
plan skip_all => 'prometheus-postgres-exporter or prometheus is not installed'
  unless -x $exporter_bin && -x $prom_bin;

my $node = dm_node('exp');
my $base = PostgreSQL::Test::Utils::tempdir();
my $exp_port = PostgreSQL::Test::Cluster::get_free_port();
my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
my $queries = "$ENV{DM_ROOT}/contrib/prometheus/queries.yaml";
my $http = HTTP::Tiny->new(timeout => 10);

my ($exporter, $prom);
END
{
	local $?;
	for my $h ($exporter, $prom)
	{
		next unless $h;
		eval { $h->kill_kill(grace => 5); };
	}
}

$node->safe_psql('postgres', q{
	CREATE ROLE exporter LOGIN IN ROLE driftmirror_monitor, pg_monitor;
	SELECT driftmirror.dm_create_group('orders', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('orders', 'orders-db', 'postgres',
	                                   'host=/nonexistent/secret-socket dbname=orders');
	SELECT driftmirror.dm_create_group('search', '{"interval": "1s", "mode": "off"}');
});
# a scaled resource with a trained model: two days of 5-minute demand
$node->safe_psql('postgres', q{
	SELECT driftmirror.dm_create_group('shop', '{"interval": "1s", "mode": "off"}');
	SELECT driftmirror.dm_add_resource('shop', 'web', 'app', 'http://127.0.0.1:9/act',
	       options => '{"scale_metric": "requests", "unit_capacity": 100}');
	SELECT driftmirror.dm_register_metric('requests', '1/s', 'requests per second');
	SELECT driftmirror.dm_ingest('shop', 'web', 'requests', array_agg(ts ORDER BY ts),
	                             array_agg(100 + 50 * sin(extract(epoch FROM ts) / 86400 * 2 * pi()) ORDER BY ts))
	  FROM generate_series(date_bin('5 minutes', now(), '2000-01-01') - interval '2 days',
	                       date_bin('5 minutes', now(), '2000-01-01'), interval '5 minutes') ts;
	SELECT count(*) FROM driftmirror.dm_train('shop');
});
dm_wait_for($node,
	"SELECT count(*) = 3 FROM driftmirror.dm_status WHERE steps_ok > 0",
	't', 'the groups have had a step');

# every exporter view reads without error as the exporter's role
for my $v (split /\n/, $node->safe_psql('postgres', q{
	SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'driftmirror'::regnamespace
	   AND c.relname LIKE 'dm\_exporter\_%' ORDER BY 1}))
{
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM driftmirror.$v",
		connstr => $node->connstr('postgres') . ' user=exporter');
	is($ret, 0, "the exporter's role reads $v") or diag($err);
}

# --- the exporter, as the monitoring role, with the tree's queries file
my $dsn = sprintf('host=%s port=%d dbname=postgres user=exporter sslmode=disable',
	$node->host, $node->port);
$exporter = IPC::Run::start(
	[
		$exporter_bin, "--extend.query-path=$queries",
		"--web.listen-address=127.0.0.1:$exp_port",
		'--disable-default-metrics', '--disable-settings-metrics',
		'--log.level=warn'
	],
	'<', \undef, '>>', "$base/exporter.log", '2>>', "$base/exporter.log",
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

# scrape until the driftmirror families show up (the exporter reads the
# queries file at start)
my $metrics = '';
for my $i (1 .. 150)
{
	my $r = $http->get("http://127.0.0.1:$exp_port/metrics");
	$metrics = $r->{content} if $r->{success};
	last if $metrics =~ /^driftmirror_group_up\{/m
	  && $metrics =~ /^driftmirror_worker_loop_seconds(\{[^}]*\})? [0-9]/m;
	select(undef, undef, undef, 0.2);
}
like($metrics, qr/^driftmirror_group_up\{[^}]*group_name="orders"[^}]*\} 1$/m,
	'the exporter serves one series per group')
  or diag(slurp_file("$base/exporter.log"));
like($metrics, qr/^driftmirror_group_up\{[^}]*group_name="search"[^}]*mode="off"[^}]*\} 1$/m,
	'the group mode is a label');
like($metrics, qr/^driftmirror_group_resources\{[^}]*group_name="orders"[^}]*\} 1$/m,
	'the resource count of a group');
like($metrics, qr/^driftmirror_actions_total\{[^}]*kind="add_resource"[^}]*\} 1$/m,
	'actions are counted by kind');
like($metrics, qr/^driftmirror_model_backtest_mase\{[^}]*metric="requests"[^}]*resource_name="web"[^}]*\} [0-9.e+-]+$/m,
	'a model\'s backtest accuracy');
like($metrics, qr/^driftmirror_model_forecast\{[^}]*metric="requests"[^}]*\} [0-9.e+-]+$/m,
	'its forecast for now');
like($metrics, qr/^driftmirror_model_actual\{[^}]*metric="requests"[^}]*\} [0-9.e+-]+$/m,
	'beside the last value observed');
like($metrics, qr/^driftmirror_capacity_capacity\{[^}]*resource_name="web"[^}]*\} 1$/m,
	'the capacity of a scaled resource');
like($metrics, qr/^driftmirror_worker_loop_seconds(\{server="[^"]*"\})? [0-9.e+-]+$/m,
	'the worker\'s loop time');
like($metrics, qr/^driftmirror_worker_alive(\{server="[^"]*"\})? 1$/m, 'the worker is alive')
  or diag(join("\n", grep { /driftmirror_worker/ } split /\n/, $metrics));
unlike($metrics, qr/secret-socket|host=/, 'no endpoint in any series');
unlike($metrics, qr/error_detail|last_error/, 'no error text in any series');

# every metric the Grafana dashboard (docs/grafana/) plots is one the
# queries file defines
my %defined;
{
	my $family;
	for my $line (split /\n/, slurp_file($queries))
	{
		$family = $1 if $line =~ /^(driftmirror_\w+):/;
		$defined{"${family}_$1"} = 1
		  if $family && $line =~ /^\s+- (\w+): \{usage: (GAUGE|COUNTER)/;
	}
}
my $dashboard = slurp_file("$ENV{DM_ROOT}/docs/grafana/driftmirror.json");
my %plotted = map { $_ => 1 } ($dashboard =~ /\b(driftmirror_[a-z_]+)\b/g);
delete $plotted{driftmirror_json};
my @unknown = grep { !$defined{$_} } sort keys %plotted;
ok(keys(%plotted) >= 10 && !@unknown, 'the dashboard plots only metrics the queries file defines')
  or diag("unknown: @unknown");

# values follow the catalog
$node->safe_psql('postgres',
	"SELECT driftmirror.dm_add_resource('orders', 'orders-app', 'app', 'https://actuator.invalid/app')");
my $ok = 0;
for my $i (1 .. 150)
{
	my $r = $http->get("http://127.0.0.1:$exp_port/metrics");
	if ($r->{success}
		&& $r->{content} =~ /^driftmirror_group_resources\{[^}]*group_name="orders"[^}]*\} 2$/m)
	{
		$ok = 1;
		last;
	}
	select(undef, undef, undef, 0.2);
}
ok($ok, 'a new resource shows in the next scrape');

# --- a real Prometheus scraping the exporter
make_path("$base/prom-data");
PostgreSQL::Test::Utils::append_to_file("$base/prometheus.yml", qq{
global:
  # a scrape takes seconds on a loaded machine
  scrape_interval: 5s
  scrape_timeout: 5s
scrape_configs:
  - job_name: driftmirror
    static_configs:
      - targets: ['127.0.0.1:$exp_port']
});
$prom = IPC::Run::start(
	[
		$prom_bin, "--config.file=$base/prometheus.yml",
		"--storage.tsdb.path=$base/prom-data",
		"--web.listen-address=127.0.0.1:$prom_port", '--log.level=warn'
	],
	'<', \undef, '>>', "$base/prometheus.log", '2>>', "$base/prometheus.log");

my $answer = '';
for my $i (1 .. 300)
{
	my $r = $http->get("http://127.0.0.1:$prom_port/api/v1/query?query="
		  . 'driftmirror_group_resources%7Bgroup_name%3D%22orders%22%7D');
	$answer = $r->{content} if $r->{success};
	last if $answer =~ /"value":\[[0-9.]+,"2"\]/;
	select(undef, undef, undef, 0.2);
}
like($answer, qr/"value":\[[0-9.]+,"2"\]/,
	'Prometheus returns the series scraped from the exporter')
  or diag($http->get("http://127.0.0.1:$prom_port/api/v1/targets")->{content});
like($answer, qr/"job":"driftmirror"/, 'with the scrape job as a label');

$exporter->kill_kill(grace => 5);
$prom->kill_kill(grace => 5);
($exporter, $prom) = (undef, undef);

done_testing();
