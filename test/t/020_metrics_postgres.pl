# 020_metrics_postgres.pl: the postgres metric collector.
#
# A control node polls a second PostgreSQL node over libpq.  Rates appear
# after two polls; a counter reset gives no negative rate; a node that
# hangs (its backend stopped with SIGSTOP) hits the poll deadline without
# delaying other groups; a stopped node is reported in dm_metric_sources and
# dm_status and the other groups keep their heartbeats; when it is back the
# source recovers and collection resumes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $ctl = dm_node('ctl');
my $remote = PostgreSQL::Test::Cluster->new('remote');
dm_init($remote, allows_streaming => 1);
$remote->start;
# a streaming standby of the remote node: replication lag on both sides
$remote->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($remote, 'b', has_streaming => 1);
$standby->start;

my $rconn = sprintf('host=%s port=%d dbname=postgres', $remote->host, $remote->port);
my $cconn = sprintf('host=%s port=%d dbname=postgres', $ctl->host, $ctl->port);
my $sconn = sprintf('host=%s port=%d dbname=postgres', $standby->host, $standby->port);

$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('pg', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('pg', 'remote', 'postgres', '$rconn');
	SELECT driftmirror.dm_add_metric_source('pg', 'remote', 'postgres', '{"timeout": "2s", "max_backoff": "2s"}');
	SELECT driftmirror.dm_create_group('self', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('self', 'ctl', 'postgres', '$cconn');
	SELECT driftmirror.dm_add_metric_source('self', 'ctl', 'postgres');
	SELECT driftmirror.dm_create_group('plain', '{"interval": "1s"}');
	SELECT driftmirror.dm_create_group('replica', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('replica', 'standby', 'postgres', '$sconn');
	SELECT driftmirror.dm_add_metric_source('replica', 'standby', 'postgres');
});

# bad configurations are refused
my ($rc, $out, $err) = $ctl->psql('postgres',
	"SELECT driftmirror.dm_add_metric_source('pg', 'remote', 'postgres', '{\"timeout\": \"2 hours\"}')");
like($err, qr/already has a postgres metric source|invalid value for metric source setting "timeout"/,
	'a second source or a bad timeout is refused');
($rc, $out, $err) = $ctl->psql('postgres',
	"SELECT driftmirror.dm_add_metric_source('self', 'ctl', 'snmp')");
like($err, qr/unknown metric source kind "snmp"/, 'unknown kinds are refused');

# --- samples arrive, rates after two polls
dm_wait_for($ctl, q{
	SELECT count(DISTINCT metric) >= 7 FROM driftmirror.dm_metrics
	 WHERE group_name = 'pg' AND resource_name = 'remote'},
	't', 'the remote node is polled: sizes, connections and rates');
$remote->safe_psql('postgres',
	'CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 50000); SELECT count(*) FROM t;');
dm_wait_for($ctl, q{
	SELECT max(value) > 0 FROM driftmirror.dm_metrics
	 WHERE group_name = 'pg' AND metric = 'pg.tup_written_per_s'},
	't', 'rows written on the remote node show up as a write rate');
is($ctl->safe_psql('postgres', q{
	SELECT bool_and(value > 1000000) FROM driftmirror.dm_metrics
	 WHERE group_name = 'pg' AND metric = 'pg.database_size'}),
	't', 'database size in bytes');
is($ctl->safe_psql('postgres', q{
	SELECT bool_and(value BETWEEN 0 AND 1) FROM driftmirror.dm_metrics
	 WHERE metric = 'pg.cache_hit_ratio'}),
	't', 'cache hit ratio between 0 and 1');

# --- replication lag: bytes on the primary (it has a standby), bytes and
# seconds on the standby
$remote->wait_for_catchup($standby);
dm_wait_for($ctl, q{
	SELECT count(*) > 0 AND bool_and(value >= 0) FROM driftmirror.dm_metrics
	 WHERE group_name = 'pg' AND metric = 'pg.replication_lag_bytes'},
	't', 'the primary reports the replay lag of its standby');
dm_wait_for($ctl, q{
	SELECT count(DISTINCT metric) = 2 FROM driftmirror.dm_metrics
	 WHERE group_name = 'replica' AND metric LIKE 'pg.replication_lag_%'},
	't', 'the standby reports lag in bytes and seconds');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_metrics
	 WHERE group_name = 'self' AND metric LIKE 'pg.replication_lag_%'}),
	'0', 'a node without standbys reports no lag');
$ctl->safe_psql('postgres', "SELECT driftmirror.dm_remove_metric_source('replica', 'standby', 'postgres')");
$standby->stop;

# --- a counter reset: no negative rate
$remote->safe_psql('postgres', 'SELECT pg_stat_reset()');
my $n = $ctl->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_metrics WHERE group_name = 'pg' AND metric = 'pg.xacts_per_s'");
dm_wait_for($ctl, qq{
	SELECT count(*) >= $n + 3 FROM driftmirror.dm_metrics
	 WHERE group_name = 'pg' AND metric = 'pg.xacts_per_s'},
	't', 'rates continue after pg_stat_reset');
is($ctl->safe_psql('postgres', q{
	SELECT count(*) FROM driftmirror.dm_metrics
	 WHERE metric LIKE '%per_s' AND value < 0}),
	'0', 'no negative rate across the counter reset');

# --- a hung node: its backend stops answering; the poll hits its deadline
my $bpid = $remote->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE application_name = 'driftmirror collector'");
like($bpid, qr/^\d+$/, 'the collector keeps one connection open to the remote node');
my $self_rows = $ctl->safe_psql('postgres',
	"SELECT rows_total FROM driftmirror.dm_metric_sources WHERE group_name = 'self'");
kill 'STOP', $bpid;
dm_wait_for($ctl, q{
	SELECT state = 'failing' AND last_error LIKE 'no answer within 2000 ms%'
	  FROM driftmirror.dm_metric_sources WHERE group_name = 'pg'},
	't', 'a hung node fails its poll at the deadline');
dm_wait_for($ctl, qq{
	SELECT rows_total > $self_rows FROM driftmirror.dm_metric_sources WHERE group_name = 'self'},
	't', 'the other source kept collecting meanwhile');
kill 'CONT', $bpid;
dm_wait_for($ctl, q{
	SELECT state = 'ok' FROM driftmirror.dm_metric_sources WHERE group_name = 'pg'},
	't', 'the source recovers on a new connection');

# --- a stopped node
$remote->stop('fast');
my %before = map { split /\|/ } split /\n/, $ctl->safe_psql('postgres',
	"SELECT group_name, steps_ok FROM driftmirror.dm_status WHERE group_name IN ('self', 'plain')");
$self_rows = $ctl->safe_psql('postgres',
	"SELECT rows_total FROM driftmirror.dm_metric_sources WHERE group_name = 'self'");
dm_wait_for($ctl, q{
	SELECT state = 'failing' AND consecutive_failures >= 2 AND next_attempt_at IS NOT NULL
	  FROM driftmirror.dm_metric_sources WHERE group_name = 'pg'},
	't', 'the stopped node is reported as failing, with a next attempt');
dm_wait_for($ctl, q{
	SELECT state = 'degraded' AND reason LIKE '%postgres source of resource "remote"%'
	  FROM driftmirror.dm_status WHERE group_name = 'pg'},
	't', 'dm_status shows the group degraded with the error');
dm_wait_for($ctl, qq{
	SELECT bool_and(steps_ok >= CASE group_name WHEN 'self' THEN $before{self} ELSE $before{plain} END + 3
	                AND state = 'monitoring')
	  FROM driftmirror.dm_status WHERE group_name IN ('self', 'plain')},
	't', 'other groups keep their heartbeats');
dm_wait_for($ctl, qq{
	SELECT rows_total > $self_rows + 10 FROM driftmirror.dm_metric_sources WHERE group_name = 'self'},
	't', 'and their collection');
is($ctl->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_actions WHERE group_name = 'pg' AND kind = 'metric_source_failed'"),
	'2', 'each failure run is logged once (hang, then stop)');

# --- back: collection resumes
my $pg_rows = $ctl->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_metrics WHERE group_name = 'pg'");
$remote->start;
dm_wait_for($ctl, qq{
	SELECT s.state = 'ok' AND (SELECT count(*) FROM driftmirror.dm_metrics WHERE group_name = 'pg') > $pg_rows
	  FROM driftmirror.dm_metric_sources s WHERE s.group_name = 'pg'},
	't', 'collection resumes when the node is back');
dm_wait_for($ctl, q{
	SELECT state = 'monitoring' FROM driftmirror.dm_status WHERE group_name = 'pg'},
	't', 'and the group is no longer degraded');
is($ctl->safe_psql('postgres',
	"SELECT count(*) >= 2 FROM driftmirror.dm_actions WHERE group_name = 'pg' AND kind = 'metric_source_recovered'"),
	't', 'recoveries are logged');

# --- the monitor role sees sources without endpoints; removal stops polling
$ctl->safe_psql('postgres', q{
	CREATE ROLE mon LOGIN IN ROLE driftmirror_monitor;
});
is($ctl->safe_psql('postgres', q{
	SET ROLE mon; SELECT count(*) FROM driftmirror.dm_metric_sources WHERE config ? 'url'}),
	'0', 'the monitor reads the sources view');
$ctl->safe_psql('postgres', "SELECT driftmirror.dm_remove_metric_source('pg', 'remote', 'postgres')");
is($ctl->safe_psql('postgres', "SELECT count(*) FROM driftmirror.dm_metric_sources WHERE group_name = 'pg'"),
	'0', 'the source is gone');

unlike(slurp_file($ctl->logfile), qr/metric collection failed|metric store maintenance failed/,
	'no collection phase or maintenance failed');
$remote->stop;
$ctl->stop;
done_testing();
