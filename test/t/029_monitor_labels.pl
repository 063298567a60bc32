# 029_monitor_labels.pl: the monitor role sees states and labels, never
# hosts, ports, socket paths, token file names or raw libpq/libcurl text.
#
# A real pair (DmPair) whose mirror node is stopped, a group whose only
# node is stopped (postgres metric source), a Prometheus source whose server
# is gone (with a bearer_token_file): every error path fills its columns.
# Then a member of driftmirror_monitor reads every dm_* view, whole rows
# as JSON, and none of it names a host, a port, a path or the file; a
# member of driftmirror_admin reads the raw text (so the test sees the
# leak it looks for).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmPair;

my $p = dm_pair();
my ($a, $b) = ($p->{a}, $p->{b});

# a node that goes away, and a port where no HTTP server listens
my $c = dm_node('c', no_extension => 1);
my $dead_http = PostgreSQL::Test::Cluster::get_free_port();
my $cinfo = 'host=' . $c->host . ' port=' . $c->port . ' dbname=postgres';

make_path_secret($a);
$a->safe_psql('postgres', qq{
	CREATE ROLE watcher IN ROLE driftmirror_monitor;
	CREATE ROLE keeper IN ROLE driftmirror_admin;
	SELECT driftmirror.dm_add_metric_source('orders', 'db', 'postgres');
	SELECT driftmirror.dm_create_group('lost', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('lost', 'gone', 'postgres', '$cinfo');
	SELECT driftmirror.dm_add_metric_source('lost', 'gone', 'postgres', '{"max_backoff": "2s"}');
	SELECT driftmirror.dm_add_resource('lost', 'prom', 'service', 'http://127.0.0.1:$dead_http');
	SELECT driftmirror.dm_add_metric_source('lost', 'prom', 'prometheus', jsonb_build_object(
		'url', 'http://127.0.0.1:$dead_http', 'queries', '{"lost.up": "sum(up)"}'::jsonb,
		'step', '1s', 'max_backoff', '2s', 'bearer_token_file', 'watch_token_file'));
});
dm_wait_for($a, q{
	SELECT count(*) = 1 FROM driftmirror.dm_metric_sources WHERE resource_name = 'gone' AND state = 'ok'},
	't', 'the node of group lost is polled');

# the nodes fail
$c->stop;
$b->stop;
dm_wait_for($a, q{
	SELECT bool_and(state = 'failing') AND count(*) = 2
	  FROM driftmirror.dm_metric_sources WHERE group_name = 'lost'},
	't', 'both sources of group lost fail');
dm_wait_for($a, q{
	SELECT last_error IS NOT NULL FROM driftmirror.dm_mirror_status WHERE resource_name = 'db'},
	't', 'the mirror records the error of its stopped node');
dm_wait_for($a, q{
	SELECT state = 'degraded' FROM driftmirror.dm_status WHERE group_name = 'lost'},
	't', 'group lost is degraded');

# every dm_* view, whole rows as JSON, as one text
sub everything_as
{
	my ($role) = @_;
	my $views = $a->safe_psql('postgres', q{
		SELECT string_agg(format('%I', c.relname), ' ' ORDER BY c.relname)
		  FROM pg_class c
		 WHERE c.relnamespace = 'driftmirror'::regnamespace AND c.relkind = 'v'
		   AND c.relname ~ '^dm_'});
	my $text = '';
	for my $v (split / /, $views)
	{
		$text .= "$v: " . $a->safe_psql('postgres', qq{
			SET ROLE $role;
			SELECT coalesce(string_agg(row_to_json(v)::text, E'\\n'), '') FROM driftmirror.$v v});
		$text .= "\n";
	}
	return $text;
}

my @secrets = (
	[ 'socket directory of the stopped node', quotemeta($c->host) ],
	[ 'socket directory of the mirror node', quotemeta($b->host) ],
	[ 'port of the stopped node', '(?:port\W{1,3}|PGSQL\.)' . $c->port . '\b' ],
	[ 'port of the mirror node', '(?:port\W{1,3}|PGSQL\.)' . $b->port . '\b' ],
	[ 'the dead HTTP port', '\b' . $dead_http . '\b' ],
	[ 'a loopback address', '127\.0\.0\.1' ],
	[ 'the token file name', 'watch_token_file' ]);

my $admin = everything_as('keeper');
like($admin, qr/$secrets[0][1]|$secrets[2][1]/, 'the admin reads the raw error of the stopped node');
like($admin, qr/$secrets[4][1]/, 'the admin reads the raw error of the dead HTTP server');

my $monitor = everything_as('watcher');
for my $s (@secrets)
{
	unlike($monitor, qr/$s->[1]/, "the monitor does not see $s->[0]");
}
unlike($monitor, qr/Connection refused|No such file or directory|Is the server running/,
	'the monitor sees no raw libpq or libcurl text');

# but it sees labels
is($a->safe_psql('postgres', q{
	SET ROLE watcher;
	SELECT last_error FROM driftmirror.dm_metric_sources WHERE resource_name = 'gone'}),
	'connection failed', 'a failing postgres source is labelled');
like($a->safe_psql('postgres', q{
	SET ROLE watcher;
	SELECT last_error FROM driftmirror.dm_metric_sources WHERE resource_name = 'prom'}),
	qr/^query "lost.up": the server could not be reached or did not answer$/,
	'a failing prometheus source is labelled');
like($a->safe_psql('postgres', q{
	SET ROLE watcher;
	SELECT reason FROM driftmirror.dm_status WHERE group_name = 'lost'}),
	qr/metric source\(s\) failing; postgres source of resource "gone": connection failed/,
	'dm_status says which source fails and why, in labels');
like($a->safe_psql('postgres', q{
	SET ROLE watcher;
	SELECT last_error FROM driftmirror.dm_mirror_status WHERE resource_name = 'db'}),
	qr/^could not connect to node "orders\/db mirror": connection failed \(SQLSTATE 08[0-9A-Z]{3}\)$/,
	'the mirror error is a label: the node by name, the SQLSTATE class');

$a->stop;
done_testing();

sub make_path_secret
{
	my ($node) = @_;
	mkdir($node->data_dir . '/driftmirror_secrets');
	PostgreSQL::Test::Utils::append_to_file($node->data_dir . '/driftmirror_secrets/watch_token_file',
		"token-for-the-watch\n");
}
