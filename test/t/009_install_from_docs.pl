# 009_install_from_docs.pl: docs/operations.md, "Installing, step by step",
# followed to the letter, so that the page cannot drift from the product.
#
# The test reads the blocks of that page marked <!-- doc-test: NAME --> and
# runs them on two clusters set up the way Debian sets them up: settings in
# conf.d/ (Debian's postgresql.conf includes it), local connections by the
# server's OS user, and over TCP nothing but the page's pg_hba.conf line,
# which asks for a password (scram-sha-256), found in the passfile the page
# writes (here named by PGPASSFILE in the servers' environment, Debian's
# /etc/postgresql/15/main/environment).  Only host names, ports and the
# network are replaced: db-a.internal and db-b.internal become 127.0.0.1 and
# the nodes' ports.  The private build stands in for `make install` (step 1),
# and postgresql-common's pg_createcluster cannot use it: the clusters are
# made by hand with the same settings.  The page's cron schedule (nightly)
# becomes every minute, and the job is scheduled as soon as its group exists
# so that the wait for the minute boundary overlaps the mirror's creation.
# On a build without output_plugin_libraries (before 15.19) its line is left
# out, as the page says.
use strict;
use warnings;

use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

# the marked blocks of the page
my $page = slurp_file("$ENV{DM_ROOT}/docs/operations.md");
my %block;
while ($page =~ /^<!-- doc-test: ([\w.-]+) -->\n```[\w]*\n(.*?)^```/msg)
{
	$block{$1} = $2;
}
for my $name (qw(settings role pg_hba pgpass control schema mirror cron promote drop))
{
	BAIL_OUT("docs/operations.md has no block marked <!-- doc-test: $name -->")
	  unless defined $block{$name};
}

my $a = PostgreSQL::Test::Cluster->new('db_a');
my $b = PostgreSQL::Test::Cluster->new('db_b');
my %port = (a => $a->port, b => $b->port);

# local_text(TEXT): the page's text with this machine's addresses; every
# host of the page must have been replaced
sub local_text
{
	my ($text) = @_;
	for my $n ('a', 'b')
	{
		$text =~ s/db-$n\.internal:5432/127.0.0.1:$port{$n}/g;
		$text =~ s/host=db-$n\.internal port=5432/host=127.0.0.1 port=$port{$n}/g;
		$text =~ s/-h db-$n\.internal -p 5432/-h 127.0.0.1 -p $port{$n}/g;
	}
	$text =~ s{\b\d+\.\d+\.\d+\.\d+/\d+\b}{127.0.0.1/32}g;
	BAIL_OUT("a host of docs/operations.md was not replaced:\n$text")
	  if $text =~ /\.internal/;
	return $text;
}

# step 3's passfile, in the servers' environment from their start on
my $pgpass = PostgreSQL::Test::Utils::tempdir() . '/pgpass';
open(my $fh, '>', $pgpass) or die "$pgpass: $!";
print $fh local_text($block{pgpass});
close($fh);
chmod(0600, $pgpass);
$ENV{PGPASSFILE} = $pgpass;

# step 2 and the pg_hba.conf line of step 3
my $settings = $block{settings};
$settings =~ s/^output_plugin_libraries\b.*\n//m
  unless dm_has_output_plugin_libraries();
for my $n ($a, $b)
{
	dm_init($n);
	make_path($n->data_dir . '/conf.d');
	PostgreSQL::Test::Utils::append_to_file($n->data_dir . '/conf.d/driftmirror.conf', $settings);
	$n->append_conf('postgresql.conf', "include_dir = 'conf.d'\nlisten_addresses = '127.0.0.1'\n");
	open(my $hba, '>', $n->data_dir . '/pg_hba.conf') or die $!;
	print $hba "local all all trust\n" . local_text($block{pg_hba});
	close($hba);
	$n->start;
	$n->safe_psql('postgres', $block{role});
}
is($a->safe_psql('postgres', 'SHOW shared_preload_libraries'), 'driftmirror, pg_cron',
	'the settings of step 2 are in force');
# the page's sizing of max_worker_processes: driftmirror's worker, two
# promotion drivers, pg_cron's launcher and running jobs, the logical
# replication launcher and workers, parallel query
is($a->safe_psql('postgres', q{
	SELECT 1 + 2 + 1 + current_setting('cron.max_running_jobs')::int
	       + 1 + current_setting('max_logical_replication_workers')::int
	       + current_setting('max_parallel_workers')::int
	       <= current_setting('max_worker_processes')::int}),
	't', 'step 2: max_worker_processes holds every worker the page counts');

# step 4
$a->safe_psql('postgres', $block{control});

# the application database on db-a, with data; step 5 copies its schema
$a->safe_psql('postgres', 'CREATE DATABASE orders');
$a->safe_psql('orders', q{
	CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2));
	INSERT INTO orders (customer, amount) SELECT 'c' || g, g FROM generate_series(1, 1000) g;
});
my ($out, $err);
my $ok = IPC::Run::run([ 'bash', '-e', '-o', 'pipefail', '-c', local_text($block{schema}) ],
	'>', \$out, '2>', \$err);
ok($ok, "step 5: the mirror database and its schema (over TCP with the passfile)") or diag($err);

$a->safe_psql('postgres', local_text($block{mirror}));

# step 7, early (see the header): scheduled every minute instead of nightly
my $cron = $block{cron};
ok($cron =~ s/'0 1 \* \* \*'/'* * * * *'/, 'the job of step 7 has the schedule the test changes');
$a->safe_psql('postgres', $cron);

dm_wait_for($a, "SELECT state IN ('mirroring', 'failed') FROM driftmirror.dm_mirror_status",
	't', 'step 5: the mirror settles');
is($a->safe_psql('postgres',
		"SELECT state || coalesce(' ' || last_error, '') FROM driftmirror.dm_mirror_status"),
	'mirroring', 'step 5: the mirror is mirroring');
$a->safe_psql('orders', "INSERT INTO orders (customer, amount) VALUES ('after', 1)");
ok($b->poll_query_until('orders', "SELECT count(*) = 1001 FROM orders"),
	'a write on db-a reaches the mirror on db-b');

# step 6
my $promoted = $a->safe_psql('postgres', $block{promote});
like($promoted, qr/^db\|host=127\.0\.0\.1 port=$port{b} dbname=orders user=replicator\|[0-9.]+$/,
	'step 6: db-b is the primary');
$b->safe_psql('orders', "INSERT INTO orders (customer, amount) VALUES ('promoted', 2)");
ok($a->poll_query_until('orders', "SELECT count(*) = 1002 FROM orders"),
	'a write on the new primary db-b reaches the old primary, its mirror now');
my ($rc) = $a->psql('orders', "INSERT INTO orders (customer, amount) VALUES ('old', 3)");
isnt($rc, 0, 'the old primary refuses client writes');

# step 7: the job ran (its first run; later ones find the event there)
dm_wait_for($a, q{
	SELECT count(*) >= 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	 WHERE j.jobname = 'orders-nightly-batch' AND d.status IN ('succeeded', 'failed')},
	't', 'step 7: the scheduled job ran');
is($a->safe_psql('postgres', q{
	SELECT d.status || coalesce(' ' || nullif(d.status, 'succeeded') || ': ' || d.return_message, '')
	  FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	 WHERE j.jobname = 'orders-nightly-batch' ORDER BY d.runid LIMIT 1}),
	'succeeded', 'step 7: its first run succeeded');
is($a->safe_psql('postgres', q{
	SELECT count(*) > 0 AND bool_and(a.actor = 'alice')
	  FROM driftmirror.dm_events e
	  JOIN driftmirror.dm_actions a ON a.kind = 'add_event' AND a.group_name = e.group_name
	 WHERE e.group_name = 'orders' AND e.name = 'nightly-batch'}),
	't', 'step 7: it recorded the event, as alice');

# step 8
$a->safe_psql('postgres', $block{drop});
dm_wait_for($a, 'SELECT count(*) = 0 FROM driftmirror.dm_mirror_cleanups', 't',
	'step 8: the queued drops are done');
for my $n ($a, $b)
{
	my $name = $n->name;
	is($n->safe_psql('orders', q{
		SELECT format('%s %s %s', (SELECT count(*) FROM pg_replication_slots),
		              (SELECT count(*) FROM pg_subscription), (SELECT count(*) FROM pg_publication))}),
		'0 0 0', "step 8: no slot, subscription or publication left on $name");
	($rc) = $n->psql('orders', "INSERT INTO orders (customer, amount) VALUES ('free', 4)");
	is($rc, 0, "step 8: no fence left on $name");
}
is($a->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0', 'step 8: no job left');
($rc, $out, $err) = $a->psql('postgres', 'DROP EXTENSION driftmirror');
is($rc, 0, 'step 8: DROP EXTENSION driftmirror') or diag($err);

$a->stop;
$b->stop;
done_testing();
