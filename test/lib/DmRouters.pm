# DmRouters.pm: real routers in front of the test clusters (routing tests).
#
#   my $h = haproxy_start($dir, { a => $node_a, b => $node_b });
#       HAProxy with a runtime API socket ($h->{socket}) and a TCP frontend
#       on $h->{port} (backend pg_read, roundrobin) whose servers are the
#       nodes' unix sockets, every weight 100.
#   haproxy_cmd($h, 'show servers state pg_read')   one runtime API command
#   haproxy_weights($h)   { server => "weight/drain" } of backend pg_read
#   my $b = pgbouncer_start($dir, $include_file [, $pool_mode])
#       pgbouncer on 127.0.0.1:$b->{port} configured from
#       test/lib/pgbouncer.ini.in (the benchmarks' template too): trust
#       auth, admin user = us, [databases] from $include_file (%include),
#       pool_mode session unless given.
#   my $w = webhook_start($dir, $keyfile, $fail_first)   the receiver of
#       test/lib/webhook_receiver.py on $w->{port}; webhook_log($w) its
#       requests (one hash each).
#   router_stop($r)   stops any of them by PID.
# Everything started here is stopped by PID at exit at the latest.
package DmRouters;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IO::Socket::INET;
use IO::Socket::UNIX;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(haproxy_start haproxy_cmd haproxy_weights pgbouncer_start
  webhook_start webhook_log router_stop router_restart);

my @started;
END { router_stop($_) for @started; }

sub spawn
{
	my ($r) = @_;
	$r->{handle} = IPC::Run::start($r->{cmd}, '>', "$r->{log}.out", '2>', "$r->{log}.err");
	push @started, $r unless grep { $_ == $r } @started;
	return $r;
}

sub router_stop
{
	my ($r) = @_;
	return unless $r->{handle};
	$r->{handle}->signal('TERM');
	$r->{handle}->finish;
	$r->{handle} = undef;
}

sub router_restart
{
	my ($r) = @_;
	router_stop($r);
	spawn($r);
	$r->{ready}->($r) or BAIL_OUT("$r->{log} did not start again");
}

sub wait_until
{
	my ($check) = @_;
	for (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
	{
		return 1 if $check->();
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

sub haproxy_start
{
	my ($dir, $nodes) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $sock = "$dir/haproxy.sock";
	my $servers = join('', map {
		"    server $_ " . $nodes->{$_}->host . '/.s.PGSQL.' . $nodes->{$_}->port . " weight 100\n"
	} sort keys %$nodes);
	open(my $fh, '>', "$dir/haproxy.cfg") or die;
	print $fh <<"CFG";
global
    stats socket $sock mode 600 level admin
    stats timeout 10s
defaults
    mode tcp
    timeout connect 2s
    timeout client 1m
    timeout server 1m
listen pg_read
    bind 127.0.0.1:$port
    balance roundrobin
$servers
CFG
	close($fh);
	my $r = { cmd => [ 'haproxy', '-db', '-f', "$dir/haproxy.cfg" ], log => "$dir/haproxy",
		port => $port, socket => $sock };
	$r->{ready} = sub { wait_until(sub { defined eval { haproxy_cmd($r, 'show info') } }) };
	unlink $sock;
	spawn($r);
	$r->{ready}->($r) or BAIL_OUT('haproxy did not start');
	return $r;
}

sub haproxy_cmd
{
	my ($r, $cmd) = @_;
	my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $r->{socket}) or die "haproxy: $!";
	print $s "$cmd\n";
	local $/;
	my $out = <$s>;
	close($s);
	return $out;
}

# { server => "weight/drain" } from show servers state pg_read
sub haproxy_weights
{
	my ($r) = @_;
	my @lines = split /\n/, haproxy_cmd($r, 'show servers state pg_read');
	my ($hdr) = grep { /^# be_id/ } @lines;
	my @cols = split / /, substr($hdr, 2);
	my %idx = map { $cols[$_] => $_ } 0 .. $#cols;
	my %w;
	for my $l (grep { /^\d+ \S/ } @lines)
	{
		my @f = split / /, $l;
		$w{ $f[ $idx{srv_name} ] } = $f[ $idx{srv_uweight} ]
		  . (($f[ $idx{srv_admin_state} ] & 0x18) ? '/drain' : '');
	}
	return \%w;
}

sub pgbouncer_start
{
	my ($dir, $include, $pool_mode) = @_;
	$pool_mode //= 'session';
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $user = getpwuid($<);
	open(my $u, '>', "$dir/userlist.txt") or die;
	print $u qq{"$user" ""\n};
	close($u);
	# the template the benchmarks use too (bench/lib/routers.sh)
	my %fill = (INCLUDE => $include, PORT => $port, AUTH_FILE => "$dir/userlist.txt",
		USER => $user, POOL_MODE => $pool_mode);
	open(my $in, '<', dirname(__FILE__) . '/pgbouncer.ini.in') or die "pgbouncer.ini.in: $!";
	my $conf = do { local $/; <$in> };
	close($in);
	$conf =~ s/\@([A-Z_]+)\@/exists $fill{$1} ? $fill{$1} : die "pgbouncer.ini.in: \@$1\@"/ge;
	open(my $fh, '>', "$dir/pgbouncer.ini") or die;
	print $fh $conf;
	close($fh);
	my $r = { cmd => [ 'pgbouncer', "$dir/pgbouncer.ini" ], log => "$dir/pgbouncer",
		port => $port, admin => "host=127.0.0.1 port=$port dbname=pgbouncer user=$user" };
	$r->{ready} = sub {
		wait_until(sub { system('psql', '-X', '-q', '-d', $r->{admin}, '-c', 'SHOW VERSION',
					'-o', '/dev/null') == 0 });
	};
	spawn($r);
	$r->{ready}->($r) or BAIL_OUT('pgbouncer did not start');
	return $r;
}

sub webhook_start
{
	my ($dir, $keyfile, $fail_first) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $script = dirname(__FILE__) . '/webhook_receiver.py';
	my $r = { cmd => [ 'python3', $script, $port, "$dir/webhook.log", $keyfile, $fail_first ],
		log => "$dir/webhook", port => $port, requests => "$dir/webhook.log" };
	$r->{ready} = sub {
		wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") ? 1 : 0 });
	};
	spawn($r);
	$r->{ready}->($r) or BAIL_OUT('the webhook receiver did not start');
	return $r;
}

sub webhook_log
{
	my ($r) = @_;
	return [] unless -f $r->{requests};
	open(my $fh, '<', $r->{requests}) or die;
	my @req = map { decode_json($_) } grep { /\S/ } <$fh>;
	close($fh);
	return \@req;
}

1;
