# DmHung.pm: a hung HTTP receiver for the TAP fault tests
# (test/lib/hung_http_receiver.py: reads each request, never answers, logs
# "request <method> <path>" and, once the client gives up, "closed"), or
# with DmHung->start('line') a hung line-protocol server (the same script:
# logs "request <first line>", then "closed" the same way), or with
# DmHung->start('pg') a hung PostgreSQL-protocol server
# (test/lib/hung_pg_server.py: logs the client in, never answers a query;
# logs "login", "query", "cancel").
#
#   my $h = DmHung->start;             # picks a free port
#   $h->url;                           # http://127.0.0.1:<port>
#   $h->seen(qr/^request POST \/x$/m); # waits (bounded) until the log matches
#   $h->log;                           # the log so far
#   $h->stop;                          # by its PID (also at the end)
package DmHung;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

my @started;
END { local $?; for my $h (@started) { eval { $h->stop; }; } }

sub start
{
	my ($class, $mode) = @_;
	my $self = bless {}, $class;
	my $base = PostgreSQL::Test::Utils::tempdir();

	$self->{port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{events} = "$base/events";
	$self->{run} = IPC::Run::start(
		($mode // '') eq 'pg'
		? [ 'python3', "$ENV{DM_ROOT}/test/lib/hung_pg_server.py", $self->{port}, $self->{events} ]
		: [ 'python3', "$ENV{DM_ROOT}/test/lib/hung_http_receiver.py", $self->{port}, $self->{events},
			$mode // () ],
		'<', \undef, '>>', "$base/out", '2>>', "$base/out");
	push @started, $self;
	return $self;
}

sub url { return 'http://127.0.0.1:' . $_[0]->{port}; }

sub port { return $_[0]->{port}; }

sub log
{
	my ($self) = @_;
	return -f $self->{events} ? slurp_file($self->{events}) : '';
}

# seen(REGEX): poll the log until REGEX matches, for at most the standard
# timeout; returns whether it did
sub seen
{
	my ($self, $re) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if $self->log =~ $re;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

sub stop
{
	my ($self) = @_;
	$self->{run}->kill_kill(grace => 5) if $self->{run};
	$self->{run} = undef;
}

1;
