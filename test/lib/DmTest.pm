# DmTest.pm: helpers shared by driftmirror's TAP tests (test/t/*.pl).
#
# dm_node(NAME, %opts) starts a PostgreSQL::Test::Cluster node with the
# driftmirror library preloaded and the extension created in the postgres
# database (its control database), unless told otherwise:
#   logical      => 1   wal_level = logical, WAL senders and slots, and
#                       output_plugin_libraries listing driftmirror
#   cron         => 1   also preload pg_cron (cron.database_name = postgres)
#   no_extension => 1   do not CREATE EXTENSION
#   extension_version => '0.1.0'   CREATE EXTENSION ... VERSION (upgrade tests)
#   conf         => '...' extra postgresql.conf lines
#
# dm_init(NODE, %params) is NODE->init(%params) with the data directory
# copied from one initdb made per test run (initdb costs a second or two of
# CPU a node; a copy a fraction of that).  Only a plain initdb (no extra
# arguments) is replaced: the copy is what that initdb would write.
package DmTest;

use strict;
use warnings;

use Exporter 'import';
use Fcntl qw(:flock);
use File::Path ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(dm_node dm_init dm_wait_for dm_has_output_plugin_libraries);

# dm_has_output_plugin_libraries(): whether this server build has the
# output_plugin_libraries setting (PostgreSQL 15.19 and later minor releases)
my $has_opl;
sub dm_has_output_plugin_libraries
{
	$has_opl = (`postgres --describe-config 2>/dev/null` =~ /^output_plugin_libraries\t/m) ? 1 : 0
	  unless defined $has_opl;
	return $has_opl;
}

# initdb_template(INITDB): the directory made once per test run (under
# tmp_check, which test/run empties) by INITDB, the caller's initdb.  Test
# files running at the same time make it under a lock, and only a complete
# one (marked done) is used.
sub initdb_template
{
	my ($initdb) = @_;
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/initdb_template";
	return "$dir/pgdata" if -e "$dir/done";
	open(my $lock, '>', "$dir.lock") or die "$dir.lock: $!";
	flock($lock, LOCK_EX) or die "$dir.lock: $!";
	unless (-e "$dir/done")
	{
		File::Path::rmtree($dir);
		mkdir($dir) or die "$dir: $!";
		$initdb->('initdb', '-D', "$dir/pgdata", '-A', 'trust', '-N');
		PostgreSQL::Test::Utils::append_to_file("$dir/done", '');
	}
	close($lock);
	return "$dir/pgdata";
}

sub dm_init
{
	my ($node, %params) = @_;
	my $initdb = \&PostgreSQL::Test::Utils::system_or_bail;
	no warnings 'redefine';
	# Cluster::init runs initdb -D DATADIR -A trust -N [extra...] through
	# this function; everything else it runs passes through unchanged
	local *PostgreSQL::Test::Utils::system_or_bail = sub {
		return $initdb->(@_)
		  unless @_ == 6 && join(' ', @_[0, 1, 3, 4, 5]) eq 'initdb -D -A trust -N';
		return $initdb->('cp', '-RPp', initdb_template($initdb), $_[2]);
	};
	$node->init(%params);
	return;
}

sub dm_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	dm_init($node, allows_streaming => $opts{logical} ? 'logical' : 0);

	my $preload = $opts{cron} ? 'driftmirror, pg_cron' : 'driftmirror';
	my $conf = qq{
shared_preload_libraries = '$preload'
driftmirror.database = 'postgres'
driftmirror.naptime = 200ms
log_min_messages = info
};
	$conf .= qq{
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
max_logical_replication_workers = 10
max_worker_processes = 30
} if $opts{logical};
	$conf .= "output_plugin_libraries = 'pgoutput, driftmirror'\n"
	  if $opts{logical} && dm_has_output_plugin_libraries();
	# jobs run in background workers: test clusters listen on a Unix socket
	# only, where pg_cron's default libpq connection to localhost fails
	$conf .= "cron.database_name = 'postgres'\ncron.use_background_workers = on\n"
	  . "max_worker_processes = 32\n"
	  if $opts{cron};
	$conf .= $opts{conf} . "\n" if $opts{conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->start;

	$node->safe_psql('postgres', 'CREATE EXTENSION driftmirror'
		  . ($opts{extension_version} ? " VERSION '$opts{extension_version}'" : ''))
	  unless $opts{no_extension};
	return $node;
}

# dm_wait_for(NODE, SQL, EXPECTED, WHAT): poll until SQL returns EXPECTED
# (default 't'); fails the test with WHAT after the standard timeout.
sub dm_wait_for
{
	my ($node, $sql, $expected, $what) = @_;
	$expected = 't' unless defined $expected;
	ok($node->poll_query_until('postgres', $sql, $expected), $what);
}

1;
