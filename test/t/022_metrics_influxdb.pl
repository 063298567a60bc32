# 022_metrics_influxdb.pl: the influxdb metric source against a real
# InfluxDB 1.x (Debian package "influxdb") on loopback.
#
# InfluxQL queries with $timeFilter are polled on the source's step: points
# arrive once (watermarks), empty intervals (null) store nothing, a query
# returning several series or refused by InfluxDB fails only its own source
# (the monitor sees a label without the server's text), bad configurations
# are refused, and when InfluxDB stops the source fails with back-off while
# another group carries on; collection resumes when it is back.
use strict;
use warnings;

use File::Path qw(make_path);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $influxd = '/usr/bin/influxd';
if (!-x $influxd)
{
	BAIL_OUT('influxd is not installed (test/run installs the influxdb package)') if $ENV{CI};
	plan skip_all => 'influxd is not installed';
}

my $ctl = dm_node('ctl');
my $base = PostgreSQL::Test::Utils::tempdir();
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $rpc_port = PostgreSQL::Test::Cluster::get_free_port();
my $iurl = "http://127.0.0.1:$http_port";
my $http = HTTP::Tiny->new(timeout => 5);

make_path("$base/influx");
PostgreSQL::Test::Utils::append_to_file("$base/influxdb.conf", qq{
reporting-disabled = true
bind-address = "127.0.0.1:$rpc_port"
[meta]
  dir = "$base/influx/meta"
[data]
  dir = "$base/influx/data"
  wal-dir = "$base/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$http_port"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
});

my $influx;
END { local $?; eval { $influx->kill_kill(grace => 5) if $influx; }; }

sub start_influx
{
	$influx = IPC::Run::start([ $influxd, '-config', "$base/influxdb.conf" ],
		'<', \undef, '>>', "$base/influxd.log", '2>>', "$base/influxd.log");
	my $up = 0;
	for (1 .. 300)
	{
		if (($http->get("$iurl/ping")->{status} // 0) == 204) { $up = 1; last; }
		select(undef, undef, undef, 0.1);
	}
	ok($up, 'influxd answers /ping') or diag(slurp_file("$base/influxd.log"));
}

sub influx_post
{
	my ($path, $body) = @_;
	my $r = $http->post("$iurl$path", { content => $body });
	die "InfluxDB $path: $r->{status} $r->{content}" unless $r->{success};
}

# write one point per second for the last SECONDS seconds, value = f(second)
sub write_points
{
	my ($seconds) = @_;
	my $now = time;
	my @lines;
	for my $s (reverse 1 .. $seconds)
	{
		my $t = $now - $s;
		push @lines, "cpu,host=a usage=" . ($t % 100) . " $t";
		push @lines, "cpu,host=b usage=7 $t";
	}
	influx_post('/write?db=app&precision=s', join("\n", @lines));
}

start_influx();
my $r = $http->post_form("$iurl/query", { q => 'CREATE DATABASE app' });
die "CREATE DATABASE: $r->{status} $r->{content}" unless $r->{success};
write_points(20);

# --- bad configurations are refused, nothing stored
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('ifx', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('ifx', 'tsdb', 'service', '$iurl');
	SELECT driftmirror.dm_add_resource('ifx', 'multi', 'service', '$iurl');
	SELECT driftmirror.dm_add_resource('ifx', 'broken', 'service', '$iurl');
});
for my $bad (
	[ qq{'{"url": "$iurl", "queries": {"a.b": "SELECT mean(usage) FROM cpu WHERE \$timeFilter"}}'},
		qr/needs a "database"/ ],
	[ qq{'{"url": "$iurl", "database": "app", "queries": {"a.b": "SELECT mean(usage) FROM cpu"}}'},
		qr/must contain \$timeFilter/ ],
	[ qq{'{"url": "$iurl", "database": "a b", "queries": {"a.b": "x \$timeFilter"}}'},
		qr/needs a "database"/ ],
	[ qq{'{"url": "$iurl", "database": "app", "queries": {"a.b": "x \$timeFilter"}, "bearer_token_file": "t"}'},
		qr/unknown influxdb metric source setting "bearer_token_file"/ ],
	[ qq{'{"url": "ftp://127.0.0.1/", "database": "app", "queries": {"a.b": "x \$timeFilter"}}'},
		qr/http or https/ ])
{
	my ($ret, $out, $err) = $ctl->psql('postgres',
		"SELECT driftmirror.dm_add_metric_source('ifx', 'tsdb', 'influxdb', $bad->[0])");
	like($err, $bad->[1], "refused: $bad->[1]");
}
is($ctl->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_metric_sources'), '0',
	'refused configurations stored nothing');

$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_metric_source('ifx', 'tsdb', 'influxdb', jsonb_build_object(
		'url', '$iurl', 'database', 'app',
		'queries', jsonb_build_object(
			'ifx.cpu_a', 'SELECT mean(usage) FROM cpu WHERE \$timeFilter AND host = ''a'' GROUP BY time(1s) fill(null)'),
		'units', '{"ifx.cpu_a": "percent"}'::jsonb,
		'step', '1s', 'lookback', '1 minute', 'timeout', '2s', 'max_backoff', '2s'));
	SELECT driftmirror.dm_add_metric_source('ifx', 'multi', 'influxdb', jsonb_build_object(
		'url', '$iurl', 'database', 'app',
		'queries', '{"ifx.by_host": "SELECT usage FROM cpu WHERE \$timeFilter GROUP BY host"}'::jsonb,
		'step', '1s', 'max_backoff', '2s'));
	SELECT driftmirror.dm_add_metric_source('ifx', 'broken', 'influxdb', jsonb_build_object(
		'url', '$iurl', 'database', 'app',
		'queries', '{"ifx.broken": "SELECT nosuchfunc(usage) FROM cpu WHERE \$timeFilter"}'::jsonb,
		'step', '1s', 'max_backoff', '2s'));
	SELECT driftmirror.dm_create_group('other', '{"interval": "1s"}');
});
is($ctl->safe_psql('postgres', "SELECT unit FROM driftmirror.dm_metric_names WHERE name = 'ifx.cpu_a'"),
	'percent', 'the query names are registered as metrics with their unit');

# --- points arrive, once
dm_wait_for($ctl,
	"SELECT count(*) >= 19 FROM driftmirror.dm_metrics WHERE metric = 'ifx.cpu_a'",
	't', 'the points of the lookback window arrive');
my $expected = $ctl->safe_psql('postgres', q{
	SELECT bool_and(value = (extract(epoch FROM ts)::bigint % 100))
	  FROM driftmirror.dm_metrics WHERE metric = 'ifx.cpu_a'});
is($expected, 't', 'each stored value is the one written for its second');
my $n = $ctl->safe_psql('postgres', "SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'ifx.cpu_a'");
my $polls = $ctl->safe_psql('postgres',
	"SELECT extract(epoch FROM last_poll_at) FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'");
dm_wait_for($ctl,
	"SELECT extract(epoch FROM last_poll_at) > $polls + 2 FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'",
	't', 'later polls happen');
my $n2 = $ctl->safe_psql('postgres', "SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'ifx.cpu_a'");
is($n2, $n, 'later polls store no point twice, and empty intervals (null) nothing');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT ts FROM driftmirror.dm_metrics WHERE metric = 'ifx.cpu_a'
	                       GROUP BY ts HAVING count(*) > 1) d}), '0', 'no duplicate timestamps');

# new points are picked up
write_points(2);
dm_wait_for($ctl,
	"SELECT count(*) > $n FROM driftmirror.dm_metrics WHERE metric = 'ifx.cpu_a'",
	't', 'new points arrive');

# --- a failing query fails its own source only
dm_wait_for($ctl,
	"SELECT last_error LIKE '%ifx.by_host%returned 2 series%' FROM driftmirror.dm_metric_sources WHERE resource_name = 'multi'",
	't', 'a query returning several series fails its source with a clear error');
dm_wait_for($ctl,
	"SELECT last_error LIKE '%InfluxDB answered: %nosuchfunc%' FROM driftmirror.dm_metric_sources WHERE resource_name = 'broken'",
	't', 'an InfluxQL error is the source\'s error, with InfluxDB\'s text for admins');
$ctl->safe_psql('postgres', 'CREATE ROLE watcher LOGIN IN ROLE driftmirror_monitor');
my $seen = $ctl->safe_psql('postgres',
	"SELECT last_error FROM driftmirror.dm_metric_sources WHERE resource_name = 'broken'",
	connstr => $ctl->connstr('postgres') . ' user=watcher');
like($seen, qr/InfluxDB answered with an error/, 'the monitor sees a label');
unlike($seen, qr/nosuchfunc|127\.0\.0\.1/, 'without the server\'s text or host');
is($ctl->safe_psql('postgres',
	"SELECT state FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'"),
	'ok', 'the good source stays ok');

# --- InfluxDB down: the source backs off, other groups carry on
$influx->kill_kill(grace => 5);
$influx = undef;
dm_wait_for($ctl,
	"SELECT state = 'failing' AND consecutive_failures >= 2 AND next_attempt_at > last_poll_at FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'",
	't', 'with InfluxDB down the source fails with back-off');
my $steps = $ctl->safe_psql('postgres', "SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'other'");
dm_wait_for($ctl,
	"SELECT steps_ok >= $steps + 3 FROM driftmirror.dm_status WHERE group_name = 'other'",
	't', 'another group keeps its steps meanwhile');
start_influx();
write_points(2);
dm_wait_for($ctl,
	"SELECT state = 'ok' FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'",
	't', 'collection resumes when InfluxDB is back');

done_testing();
