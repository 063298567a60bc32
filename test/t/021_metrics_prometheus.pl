# 021_metrics_prometheus.pl: the prometheus metric collector against a
# real Prometheus (Debian package "prometheus") on loopback, scraping
# itself every second.
#
# Samples arrive once per step without duplicates; a query returning
# several series and a server answering garbage are recorded as errors and
# store nothing; bearer tokens come from files only (an inline one is
# refused) and never show in views, the action log or the server log; when Prometheus stops, the source fails with backoff while
# other groups carry on, and collection resumes when it is back.
#
# A broken Prometheus (test/lib/hostile_prometheus.py) answers points at
# 1e300, 1e400, 40 days ago, 1970, next month and values beyond a double:
# those points are dropped, no partition is made for them, and the good
# points of the same answers are stored; a source whose samples the store
# refuses fails on its own (with backoff) while the others are stored.
use strict;
use warnings;

use File::Path qw(make_path);
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $prom_bin = '/usr/bin/prometheus';
plan skip_all => 'prometheus is not installed' unless -x $prom_bin;

my $ctl = dm_node('ctl');
my $base = PostgreSQL::Test::Utils::tempdir();
my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
my $junk_port = PostgreSQL::Test::Cluster::get_free_port();
my $hostile_port = PostgreSQL::Test::Cluster::get_free_port();

# --- Prometheus: a temporary config and storage, scraping itself
make_path("$base/prom-data");
PostgreSQL::Test::Utils::append_to_file("$base/prometheus.yml", qq{
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ['127.0.0.1:$prom_port']
});

my ($prom, $junk, $hostile);
# never leave the helper servers behind, even when the test dies midway
END
{
	for my $h ($prom, $junk, $hostile)
	{
		next unless $h;
		eval { $h->kill_kill(grace => 5); };
	}
}

sub start_prometheus
{
	$prom = IPC::Run::start(
		[
			$prom_bin, "--config.file=$base/prometheus.yml",
			"--storage.tsdb.path=$base/prom-data",
			"--web.listen-address=127.0.0.1:$prom_port",
			'--log.level=warn'
		],
		'>>', "$base/prometheus.log", '2>>', "$base/prometheus.log");
	dm_wait_for($ctl, qq{
		SELECT (driftmirror._http_request('GET', 'http://127.0.0.1:$prom_port/-/ready', NULL, 1000)).status = 200},
		't', 'Prometheus is ready');
}
start_prometheus();

# --- the HTTP layer (src/http.c) on its own, through _http_request
is($ctl->safe_psql('postgres', q{
	SELECT ok::text || ' ' || error FROM driftmirror._http_request('GET', 'file:///etc/passwd')}),
	'false URL scheme not allowed: only http and https', 'only http and https');
is($ctl->safe_psql('postgres', q{
	SELECT error FROM driftmirror._http_request('GET', 'http://user:pw@127.0.0.1:1/')}),
	'URL must not contain credentials', 'no credentials in URLs');
is($ctl->safe_psql('postgres', qq{
	SELECT ok AND status = 200 AND body LIKE '%prometheus_build_info%'
	  FROM driftmirror._http_request('GET', 'http://127.0.0.1:$prom_port/metrics')}),
	't', 'a GET returns status and body');
$ctl->safe_psql('postgres', q{
	ALTER SYSTEM SET driftmirror.http_max_response_size = '16kB'; SELECT pg_reload_conf();});
dm_wait_for($ctl, "SELECT current_setting('driftmirror.http_max_response_size') = '16kB'", 't',
	'size cap reloaded');
is($ctl->safe_psql('postgres', qq{
	SELECT ok::text || ' ' || error FROM driftmirror._http_request('GET', 'http://127.0.0.1:$prom_port/metrics')}),
	'false response larger than 16384 bytes', 'answers above the size cap are refused');
$ctl->safe_psql('postgres', q{
	ALTER SYSTEM RESET driftmirror.http_max_response_size; SELECT pg_reload_conf();});
# a listening socket nobody accepts from: the request is sent, never answered
my $mute = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "cannot listen: $!";
my $mute_port = $mute->sockport;
like($ctl->safe_psql('postgres', qq{
	SELECT ok::text || ' ' || error FROM driftmirror._http_request('GET', 'http://127.0.0.1:$mute_port/', NULL, 300)}),
	qr/^false .*timed out/i, 'a request without an answer ends at its timeout');
my ($rc, $out, $err) = $ctl->psql('postgres', qq{
	SET statement_timeout = '300ms';
	SELECT * FROM driftmirror._http_request('GET', 'http://127.0.0.1:$mute_port/', NULL, 60000)});
like($err, qr/canceling statement due to statement timeout/, 'a waiting request is interruptible');
like($ctl->safe_psql('postgres', qq{
	SELECT ok::text || ' ' || error FROM driftmirror._http_request('GET', 'http://127.0.0.1:$mute_port/', NULL, 300, 2)}),
	qr/^false .*timed out/i, 'retries end with the last error');
close($mute);

# --- a plain HTTP server answering garbage at the API path
make_path("$base/junk/api/v1");
PostgreSQL::Test::Utils::append_to_file("$base/junk/api/v1/query_range",
	"<html>this is not the Prometheus API</html>\n");
$junk = IPC::Run::start(
	[ 'python3', '-m', 'http.server', $junk_port, '--bind', '127.0.0.1', '--directory', "$base/junk" ],
	'>', "$base/junk.log", '2>&1');

# a token file in the data directory's driftmirror_secrets
make_path($ctl->data_dir . '/driftmirror_secrets');
PostgreSQL::Test::Utils::append_to_file($ctl->data_dir . '/driftmirror_secrets/prom_token',
	"file-token-0123456789\n");

my $purl = "http://127.0.0.1:$prom_port";
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('prom', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('prom', 'tsdb', 'service', '$purl');
	SELECT driftmirror.dm_add_metric_source('prom', 'tsdb', 'prometheus', jsonb_build_object(
		'url', '$purl',
		'queries', jsonb_build_object(
			'prom.up', 'sum(up)',
			'prom.head_series', 'sum(prometheus_tsdb_head_series)'),
		'units', '{"prom.head_series": "series"}'::jsonb,
		'step', '1s', 'timeout', '2s', 'max_backoff', '2s',
		'bearer_token_file', 'prom_token'));
	SELECT driftmirror.dm_add_resource('prom', 'multi', 'service', '$purl');
	SELECT driftmirror.dm_add_metric_source('prom', 'multi', 'prometheus', jsonb_build_object(
		'url', '$purl',
		'queries', '{"prom.requests": "prometheus_http_requests_total"}'::jsonb,
		'step', '1s', 'max_backoff', '2s'));
	SELECT driftmirror.dm_create_group('junk', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('junk', 'web', 'service', 'http://127.0.0.1:$junk_port');
	SELECT driftmirror.dm_add_metric_source('junk', 'web', 'prometheus', jsonb_build_object(
		'url', 'http://127.0.0.1:$junk_port',
		'queries', '{"junk.value": "sum(up)"}'::jsonb,
		'step', '1s', 'max_backoff', '2s',
		'bearer_token_file', 'prom_token'));
	SELECT driftmirror.dm_create_group('other', '{"interval": "1s"}');
});
# the statements above are in the log (log_statement = all): look after them
my $log_offset = -s $ctl->logfile;

# --- bad configurations are refused
for my $bad (
	[ q{'{"queries": {"a.b": "up"}}'}, qr/needs a "url"/ ],
	[ q{'{"url": "ftp://127.0.0.1/", "queries": {"a.b": "up"}}'}, qr/http or https/ ],
	[ qq{'{"url": "$purl", "queries": {}}'}, qr/needs "queries"/ ],
	[ qq{'{"url": "$purl", "queries": {"Bad Name": "up"}}'}, qr/invalid metric name/ ],
	[ qq{'{"url": "$purl", "queries": {"a.b": "up"}, "bearer_token_file": "../etc/passwd"}'}, qr/plain file name/ ],
	[ qq{'{"url": "$purl", "queries": {"a.b": "up"}, "bearer_token": "refused-inline-token"}'},
		qr/inline bearer_token is not accepted: give bearer_token_file/ ],
	[ qq{'{"url": "$purl", "queries": {"a.b": "up"}, "colour": "blue"}'}, qr/unknown prometheus metric source setting "colour"/ ])
{
	my ($rc, $out, $err) = $ctl->psql('postgres',
		"SELECT driftmirror.dm_add_metric_source('other', 'x', 'prometheus', $bad->[0])");
	# resource x does not exist: add it first so that only the config is wrong
	$ctl->safe_psql('postgres',
		"SELECT driftmirror.dm_add_resource('other', 'x', 'service', 'http://127.0.0.1:1/')")
	  if $err =~ /resource "x" does not exist/;
	($rc, $out, $err) = $ctl->psql('postgres',
		"SELECT driftmirror.dm_add_metric_source('other', 'x', 'prometheus', $bad->[0])");
	like($err, $bad->[1], "refused: $bad->[0]");
}

# --- samples arrive, one per step, no duplicates
dm_wait_for($ctl, q{
	SELECT count(*) >= 5 AND min(value) = 1 AND max(value) = 1 FROM driftmirror.dm_metrics
	 WHERE group_name = 'prom' AND metric = 'prom.up'},
	't', 'sum(up) of Prometheus scraping itself arrives');
dm_wait_for($ctl, q{
	SELECT count(*) >= 3 AND max(value) > 0 FROM driftmirror.dm_metrics
	 WHERE metric = 'prom.head_series'},
	't', 'a second query of the same source arrives');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) = count(DISTINCT ts) FROM driftmirror.dm_metrics WHERE metric = 'prom.up'}),
	't', 'no sample is stored twice');
is($ctl->safe_psql('postgres', q{
	SELECT unit FROM driftmirror.dm_metric_names WHERE name = 'prom.head_series'}),
	'series', 'query names are registered as metrics with their units');

# --- several series, garbage: errors, nothing stored
dm_wait_for($ctl, q{
	SELECT state = 'failing' AND last_error LIKE '%returned % series; aggregate it to one%'
	  FROM driftmirror.dm_metric_sources WHERE resource_name = 'multi'},
	't', 'a query returning several series is an error');
dm_wait_for($ctl, q{
	SELECT state = 'failing' AND last_error LIKE '%not a JSON object%'
	  FROM driftmirror.dm_metric_sources WHERE group_name = 'junk'},
	't', 'a server answering garbage is an error');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_metrics WHERE metric IN ('prom.requests', 'junk.value')}),
	'0', 'nothing is stored from them');
dm_wait_for($ctl, q{
	SELECT consecutive_failures >= 3 FROM driftmirror.dm_metric_sources WHERE group_name = 'junk'},
	't', 'and they are retried');

# --- tokens stay secret
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.metric_source WHERE config::text LIKE '%refused-inline-token%'}),
	'0', 'an inline token is never stored');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_actions WHERE inputs::text LIKE '%secret-token%' OR inputs::text LIKE '%prom_token%'}),
	'0', 'and tokens and token file names are absent from the action log');

# --- a broken Prometheus: bad points dropped, a refused source fails alone
$hostile = IPC::Run::start(
	[ 'python3', "$ENV{DM_ROOT}/test/lib/hostile_prometheus.py", $hostile_port ],
	'>', "$base/hostile.log", '2>&1');
my $hurl = "http://127.0.0.1:$hostile_port";
dm_wait_for($ctl, qq{
	SELECT (driftmirror._http_request('GET', '$hurl/api/v1/query_range?query=good&start=0&end=0&step=1', NULL, 1000)).status = 200},
	't', 'the broken Prometheus answers');
# the store refuses the value 666 (a stand-in for any storage error)
$ctl->safe_psql('postgres', qq{
	ALTER TABLE driftmirror.metric ADD CONSTRAINT test_refuse_666 CHECK (value <> 666);
	SELECT driftmirror.dm_create_group('hostile', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('hostile', 'exporter', 'service', '$hurl');
	SELECT driftmirror.dm_add_metric_source('hostile', 'exporter', 'prometheus', jsonb_build_object(
		'url', '$hurl', 'step', '1s', 'max_backoff', '2s',
		'queries', '{"h.good": "good", "h.e300": "ts_1e300", "h.e400": "ts_1e400",
		             "h.old": "ts_old", "h.epoch": "ts_1970", "h.future": "ts_future",
		             "h.junk": "val_junk"}'::jsonb));
	SELECT driftmirror.dm_add_resource('hostile', 'refuser', 'service', '$hurl');
	SELECT driftmirror.dm_add_metric_source('hostile', 'refuser', 'prometheus', jsonb_build_object(
		'url', '$hurl', 'step', '1s', 'max_backoff', '2s',
		'queries', '{"h.refused": "refused"}'::jsonb));
});
my $before = $ctl->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'prom.up'");
dm_wait_for($ctl, q{
	SELECT count(DISTINCT metric) = 6 AND bool_and(value = 7) AND min(ts) > now() - interval '1 hour'
	  FROM driftmirror.dm_metrics WHERE resource_name = 'exporter'},
	't', 'the good points of answers holding 1e300, 1e400, old and future points are stored');
dm_wait_for($ctl, q{
	SELECT state = 'ok' AND rows_total > 0 FROM driftmirror.dm_metric_sources
	 WHERE resource_name = 'exporter'},
	't', 'and the source is ok');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'h.junk'}),
	'0', 'values beyond a double, NaN and infinities are not stored');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_metric_partitions
	 WHERE lo < now() - interval '2 days' OR lo > now() + interval '10 days'}),
	'0', 'no partition is made for points outside the window');
dm_wait_for($ctl, q{
	SELECT state = 'failing' AND consecutive_failures >= 2 AND next_attempt_at IS NOT NULL
	       AND last_error LIKE 'storing the samples failed:%test_refuse_666%'
	  FROM driftmirror.dm_metric_sources WHERE resource_name = 'refuser'},
	't', 'a source whose samples the store refuses fails on its own, backed off');
dm_wait_for($ctl, qq{
	SELECT count(*) >= $before + 3 FROM driftmirror.dm_metrics WHERE metric = 'prom.up'},
	't', 'meanwhile the real Prometheus source is still stored');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'h.refused'}),
	'0', 'nothing of the refused source is stored');
$ctl->safe_psql('postgres', q{
	SELECT driftmirror.dm_drop_group('hostile', true);
	ALTER TABLE driftmirror.metric DROP CONSTRAINT test_refuse_666;});
$hostile->signal('TERM');
$hostile->finish;

# --- Prometheus stops: the source fails with backoff, others carry on
my $other_ok = $ctl->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'other'");
$prom->signal('TERM');
$prom->finish;
dm_wait_for($ctl, q{
	SELECT state = 'failing' AND last_error LIKE '%onnect%' AND next_attempt_at IS NOT NULL
	  FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'},
	't', 'a stopped Prometheus is reported');
dm_wait_for($ctl, q{
	SELECT state = 'degraded' AND reason LIKE '%prometheus source of resource%'
	  FROM driftmirror.dm_status WHERE group_name = 'prom'},
	't', 'dm_status shows the group degraded');
dm_wait_for($ctl, qq{
	SELECT steps_ok >= $other_ok + 3 AND state = 'monitoring'
	  FROM driftmirror.dm_status WHERE group_name = 'other'},
	't', 'other groups keep their heartbeats');

# --- back: collection resumes
my $up_rows = $ctl->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'prom.up'");
start_prometheus();
dm_wait_for($ctl, qq{
	SELECT s.state = 'ok'
	       AND (SELECT count(*) FROM driftmirror.dm_metrics WHERE metric = 'prom.up') >= $up_rows + 3
	  FROM driftmirror.dm_metric_sources s WHERE s.resource_name = 'tsdb'},
	't', 'collection resumes when Prometheus is back');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) = count(DISTINCT ts) FROM driftmirror.dm_metrics WHERE metric = 'prom.up'}),
	't', 'still no duplicates after the outage');

# --- a missing token file is an error naming the file, not its content
unlink($ctl->data_dir . '/driftmirror_secrets/prom_token');
dm_wait_for($ctl, q{
	SELECT last_error LIKE 'could not read bearer_token_file "prom_token"%'
	  FROM driftmirror.dm_metric_sources WHERE resource_name = 'tsdb'},
	't', 'a missing token file is reported');

my $log = slurp_file($ctl->logfile, $log_offset);
unlike($log, qr/inline-secret-token-42|file-token-0123456789/, 'no token in the server log');
unlike($log, qr/metric collection failed|server process .* was terminated/,
	'no collection phase failed, no crash');

$prom->signal('TERM');
$prom->finish;
$junk->signal('TERM');
$junk->finish;
$ctl->stop;
done_testing();
