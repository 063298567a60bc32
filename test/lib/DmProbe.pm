# DmProbe.pm: the write probe (bench/probe) in TAP tests.
#
# probe_build()                   compile bench/probe/probe.c into the test's
#                                 temporary directory; returns its path
# probe_start($probe, $conninfo, %opts)
#                                 start "probe run" in the background
#                                 (clients => 4, rate => 400); returns a handle
# probe_stop($h)                  stop it (SIGTERM) and return its summary line
# probe_check($probe, $h, $primary_ci, $other_ci)
#                                 run "probe check"; returns (exit code, summary)
# probe_setup($probe, $conninfo)  create the probe's table
package DmProbe;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(probe_build probe_start probe_stop probe_check probe_setup);

# probes still running when the test ends (it died): stop them, or they
# would go on trying to reconnect for ever
my @running;

END
{
	for my $h (@running)
	{
		next unless $h->{run} && $h->{run}->pumpable;
		eval { $h->{run}->kill_kill(grace => 2); };
	}
}

sub probe_build
{
	my $root = $ENV{DM_ROOT} or die "DM_ROOT is not set";
	my $out = PostgreSQL::Test::Utils::tempdir() . '/probe';
	my $inc = `pg_config --includedir`;
	my $lib = `pg_config --libdir`;
	chomp($inc, $lib);
	system('cc', '-O2', "-I$inc", '-o', $out, "$root/bench/probe/probe.c",
		"-L$lib", '-lpq', '-lpthread') == 0
	  or die "could not build the probe";
	return $out;
}

sub probe_setup
{
	my ($probe, $ci) = @_;
	system($probe, 'setup', '--conninfo', $ci) == 0 or die "probe setup failed";
}

sub probe_start
{
	my ($probe, $ci, %opts) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $h = { acks => "$dir/acks", out => '', err => '' };
	$h->{run} = IPC::Run::start(
		[ $probe, 'run', '--conninfo', $ci, '--acks', $h->{acks},
		  '--clients', $opts{clients} // 4, '--rate', $opts{rate} // 400 ],
		'>', \$h->{out}, '2>', \$h->{err});
	push @running, $h;
	return $h;
}

sub probe_stop
{
	my ($h) = @_;
	$h->{run}->signal('TERM');
	$h->{run}->finish;
	chomp(my $line = $h->{out});
	return $line;
}

sub probe_check
{
	my ($probe, $h, $primary, $other) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ($probe, 'check', '--acks', $h->{acks}, '--primary', $primary, '--wait', '120');
	push @cmd, ('--other', $other) if $other;
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my $rc = $? >> 8;
	chomp $out;
	diag($err) if $err;
	return ($rc, $out);
}

1;
