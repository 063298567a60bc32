# DmActuator.pm: a small HTTP actuator for the TAP tests, standing in for an
# orchestrator's API (the contract is in docs/mirrors.md, "HTTP actuator
# contract").  An IO::Socket::INET server in a child process; it keeps its
# state in a JSON file, so it can be stopped (the actuator is down) and
# started again, and counts everything per actuator (the first path
# segment of a resource's endpoint: http://127.0.0.1:<port>/<actuator>).
#
#   my $r = DmActuator->new;          # picks a free port
#   $r->start; $r->stop; $r->url;     # url: http://127.0.0.1:<port>
#   $r->configure('shop', mode => 'hang');   # per actuator, see below
#   my $c = $r->counters('shop');     # the counters of one actuator
#   $r->wait_for('shop', sub { $_[0]->{gets} >= 3 }, 'polled');
#
# A status poll reports the mirror's endpoint, state, lag_seconds 0.5 and a
# detail "poll <n>".
#
# Configuration of an actuator (configure merges keys):
#   token        the bearer token every request must carry (else 401)
#   ready_after  status polls answered "creating" before "ready" (0)
#   mode         create/status/delete: ok, hang, status500, garbage,
#                lose_once (the mirror is created, the answer is lost)
#   promote_mode what POST /mirrors/<m>/promote with "action": "promote"
#                gets, for the next promote_times requests (for ever when
#                promote_times is not set), then 'ok':
#                  ok         promoted at once: {"state": "promoted",
#                             "endpoint": <new primary>, "mirror_endpoint":
#                             <new mirror>}, the same answer for every
#                             resend of a key (one promotion per key)
#                  bare       the same without the endpoints
#                  promoting  {"state": "promoting"} (accepted, not done)
#                  failed     {"state": "failed", "detail": "not now"}
#                  status409  HTTP 409 (refused)
#                  status500  HTTP 500
#                  garbage    HTTP 200 with HTML
#                  hang       the promotion is made, then no answer at all
#   abort_mode   what "action": "abort" gets: ok ({"state": "aborted"},
#                a promotion made under the key is undone), status500,
#                status409, hang
# Counters: requests, auth_ok, auth_bad; creation: posts, keys{key},
# creates, last_body, mirrors{name}{polls, primary, mirror}; gets; deletes,
# delete_keys{key}; promotion: promote_requests, promote_keys{key},
# promotions (made), last_promote_body, aborts, abort_keys{key}, undone;
# log: one line per promotion made or undone, in order.
# Scaling (POST /mirrors/<m>/scale, "capacity"): scale_requests,
# scale_keys{key}, last_scale_body, capacity{mirror}, scale_log (one line
# "<mirror> <capacity> <key>" per change); configuration scale_mode: ok or
# status500.
package DmActuator;

use strict;
use warnings;

use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $json = JSON::PP->new->canonical;
my $http = HTTP::Tiny->new(timeout => 10);
my @started;

END { kill 'KILL', $_ for grep { defined } map { $_->{pid} } @started; }

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		port => $opts{port} // PostgreSQL::Test::Cluster::get_free_port(),
		dir => $opts{dir} // PostgreSQL::Test::Utils::tempdir(),
	}, $class;
	$self->{statefile} = "$self->{dir}/actuator.json";
	push @started, $self;
	return $self;
}

sub url { return 'http://127.0.0.1:' . $_[0]->{port}; }
sub port { return $_[0]->{port}; }

# read_request(SOCKET): (method, path, headers hashref, body), or () when
# the client went away
sub read_request
{
	my ($c) = @_;
	my $sel = IO::Select->new($c);
	my $buf = '';
	while ($buf !~ /\r\n\r\n/)
	{
		return () unless $sel->can_read(5);
		my $n = sysread($c, $buf, 65536, length $buf);
		return () unless $n;
	}
	my ($head, $body) = split /\r\n\r\n/, $buf, 2;
	my ($line, @lines) = split /\r\n/, $head;
	my ($method, $path) = split / /, $line;
	my %h;
	for (@lines)
	{
		my ($k, $v) = split /:\s*/, $_, 2;
		$h{ lc $k } = $v;
	}
	my $len = $h{'content-length'} // 0;
	while (length($body) < $len)
	{
		return () unless $sel->can_read(5);
		my $n = sysread($c, $body, $len - length($body), length $body);
		return () unless $n;
	}
	return ($method, $path, \%h, $body);
}

sub respond
{
	my ($c, $status, $body) = @_;
	my $text = { 200 => 'OK', 201 => 'Created', 202 => 'Accepted', 401 => 'Unauthorized',
		404 => 'Not Found', 409 => 'Conflict', 500 => 'Internal Server Error' }->{$status}
	  // 'Whatever';
	print $c "HTTP/1.1 $status $text\r\nContent-Type: application/json\r\n"
	  . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n$body";
	close($c);
}

# the mode of a promote or abort request: the configured one while
# <kind>_times lasts, then 'ok'
sub take_mode
{
	my ($cfg, $kind) = @_;
	my $mode = $cfg->{"${kind}_mode"} // 'ok';
	return 'ok' if $mode eq 'ok';
	my $times = $cfg->{"${kind}_times"};
	return $mode unless defined $times;
	if ($times <= 0)
	{
		delete $cfg->{"${kind}_mode"};
		delete $cfg->{"${kind}_times"};
		return 'ok';
	}
	$cfg->{"${kind}_times"} = $times - 1;
	return $mode;
}

# promote(ACTUATOR STATE, MIRROR NAME, KEY): make the promotion of KEY once
# (primary and mirror trade places) and keep its answer
sub promote
{
	my ($self, $ac, $act, $name, $key) = @_;
	return if $ac->{answers}{$key};
	my $m = $ac->{mirrors}{$name} //= {};
	$m->{primary} //= $self->url . "/$act/instance/origin";
	$m->{mirror} //= $self->url . "/$act/instance/$name";
	($m->{primary}, $m->{mirror}) = ($m->{mirror}, $m->{primary});
	$ac->{promotions}++;
	push @{ $ac->{log} }, "promoted $name $key";
	$ac->{answers}{$key} = {
		state => 'promoted', endpoint => $m->{primary}, mirror_endpoint => $m->{mirror} };
}

sub handle_promote
{
	my ($self, $c, $ac, $act, $name, $key, $body) = @_;
	my $cfg = $ac->{config};
	my $req = eval { $json->decode($body) } // {};
	if (($req->{action} // '') eq 'abort')
	{
		$ac->{aborts}++;
		$ac->{abort_keys}{$key}++;
		$ac->{last_abort_body} = $req;
		my $mode = take_mode($cfg, 'abort');
		if ($mode eq 'hang') { return 'hang'; }
		if ($mode eq 'status500') { respond($c, 500, 'internal error'); return; }
		if ($mode eq 'status409') { respond($c, 409, '{"error": "no"}'); return; }
		(my $pkey = $key) =~ s/-abort$//;
		my $done = $ac->{answers}{$pkey};
		if ($done && $done->{state} eq 'promoted' && !$ac->{undone_keys}{$pkey})
		{
			# undo the promotion made under that key
			my $m = $ac->{mirrors}{$name};
			($m->{primary}, $m->{mirror}) = ($m->{mirror}, $m->{primary});
			$ac->{undone}++;
			$ac->{undone_keys}{$pkey} = 1;
			push @{ $ac->{log} }, "undone $name $pkey";
		}
		$ac->{answers}{$pkey} = { state => 'failed', detail => 'aborted' };
		respond($c, 200, '{"state": "aborted"}');
		return;
	}

	$ac->{promote_requests}++;
	$ac->{promote_keys}{$key}++;
	$ac->{last_promote_body} = $req;
	my $mode = take_mode($cfg, 'promote');
	if ($mode eq 'hang')
	{
		# made, but the answer never comes
		$self->promote($ac, $act, $name, $key);
		return 'hang';
	}
	if ($mode eq 'status500') { respond($c, 500, 'internal error'); return; }
	if ($mode eq 'status409') { respond($c, 409, '{"error": "a promotion is not possible now"}'); return; }
	if ($mode eq 'garbage') { respond($c, 200, '<html>this is not an actuator</html>'); return; }
	if ($mode eq 'failed')
	{
		respond($c, 200, '{"state": "failed", "detail": "not now"}');
		return;
	}
	if ($mode eq 'promoting' && !$ac->{answers}{$key})
	{
		respond($c, 202, '{"state": "promoting", "detail": "switching"}');
		return;
	}
	$self->promote($ac, $act, $name, $key);
	my %answer = %{ $ac->{answers}{$key} };
	if ($mode eq 'bare') { delete @answer{qw(endpoint mirror_endpoint)}; }
	respond($c, 200, $json->encode(\%answer));
	return;
}

sub main
{
	my ($self) = @_;
	my $srv = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1', LocalPort => $self->{port}, Listen => 50,
		ReuseAddr => 1, Proto => 'tcp') or die "actuator cannot listen: $!";
	my $file = $self->{statefile};
	my $st = -e $file ? $json->decode(slurp_file($file)) : {};
	my @hung;
	$SIG{TERM} = sub { POSIX::_exit(0); };
	while (1)
	{
		my $c = $srv->accept or next;
		my ($method, $path, $h, $body) = read_request($c);
		next unless $method;
		if ($path eq '/_state')
		{
			respond($c, 200, $json->encode($st));
			next;
		}
		if ($path =~ m{^/_config/(\w+)$})
		{
			my $cfg = $json->decode($body);
			$st->{$1}{config}{$_} = $cfg->{$_} for keys %$cfg;
			respond($c, 200, '{}');
		}
		elsif ($path =~ m{^/(\w+)/mirrors(?:/(\w+))?(/promote|/scale)?$})
		{
			my ($act, $name, $promote) = ($1, $2, $3);
			my $ac = $st->{$act} //= {};
			my $cfg = $ac->{config} //= {};
			my $mode = $cfg->{mode} // 'ok';
			my $key = $h->{'idempotency-key'} // '';
			$ac->{requests}++;
			if (defined $cfg->{token})
			{
				if (($h->{authorization} // '') ne "Bearer $cfg->{token}")
				{
					$ac->{auth_bad}++;
					respond($c, 401, '{"error": "unauthorized"}');
					next;
				}
				$ac->{auth_ok}++;
			}
			if (($promote // '') eq '/scale' && $method eq 'POST' && defined $name)
			{
				# scale: one change per key; scale_mode status500 refuses
				$ac->{scale_requests}++;
				$ac->{scale_keys}{$key}++;
				$ac->{last_scale_body} = $json->decode($body);
				if (($cfg->{scale_mode} // 'ok') eq 'status500') { respond($c, 500, 'internal error'); }
				else
				{
					$ac->{capacity}{$name} = $ac->{last_scale_body}{capacity};
					push @{ $ac->{scale_log} }, "$name $ac->{last_scale_body}{capacity} $key";
					respond($c, 200, $json->encode({ state => 'scaled',
						capacity => $ac->{last_scale_body}{capacity} }));
				}
			}
			elsif ($promote && $method eq 'POST' && defined $name)
			{
				if (($self->handle_promote($c, $ac, $act, $name, $key, $body) // '') eq 'hang')
				{
					$ac->{hung}++;
					push @hung, $c;
					close(shift @hung) while @hung > 20;
				}
			}
			elsif ($mode eq 'hang')
			{
				$ac->{hung}++;
				push @hung, $c;
				close(shift @hung) while @hung > 20;
			}
			elsif ($method eq 'POST' && !defined $name && !$promote)
			{
				$ac->{posts}++;
				$ac->{keys}{$key}++;
				$ac->{last_body} = $json->decode($body);
				if ($mode eq 'status500') { respond($c, 500, 'internal error'); }
				elsif ($mode eq 'garbage') { respond($c, 200, '<html>this is not an actuator</html>'); }
				else
				{
					my $m = $ac->{last_body}{mirror};
					if (!$ac->{answers}{$key})
					{
						# a new request: create the mirror once
						$ac->{creates}++;
						$ac->{mirrors}{$m} = {
							polls => 0,
							primary => $self->url . "/$act/instance/origin",
							mirror => $self->url . "/$act/instance/$m" };
						$ac->{answers}{$key} = $json->encode({
							state => 'creating', detail => 'starting',
							endpoint => $ac->{mirrors}{$m}{mirror} });
					}
					if ($mode eq 'lose_once')
					{
						# created, but the answer is lost on the way
						$cfg->{mode} = 'ok';
						close($c);
					}
					else { respond($c, 201, $ac->{answers}{$key}); }
				}
			}
			elsif ($method eq 'GET' && defined $name && !$promote)
			{
				$ac->{gets}++;
				my $m = $ac->{mirrors}{$name};
				if (!$m) { respond($c, 404, '{"error": "no such mirror"}'); }
				else
				{
					$m->{polls}++;
					respond($c, 200, $json->encode({
						state => $m->{polls} > ($cfg->{ready_after} // 0) ? 'ready' : 'creating',
						endpoint => $m->{mirror}, lag_seconds => 0.5, detail => "poll $m->{polls}" }));
				}
			}
			elsif ($method eq 'DELETE' && defined $name && !$promote)
			{
				$ac->{deletes}++;
				$ac->{delete_keys}{$key}++;
				if (delete $ac->{mirrors}{$name}) { respond($c, 200, '{"state": "deleted"}'); }
				else { respond($c, 404, '{"error": "no such mirror"}'); }
			}
			else { respond($c, 404, '{}'); }
		}
		else { respond($c, 404, '{}'); }
		open(my $fh, '>', "$file.tmp") or die;
		print $fh $json->encode($st);
		close($fh);
		rename("$file.tmp", $file);
	}
}

sub start
{
	my ($self) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		eval { $self->main(); };
		POSIX::_exit(1);
	}
	$self->{pid} = $pid;
	for (1 .. 100)
	{
		my $r = $http->get($self->url . '/_state');
		return if $r->{success};
		select(undef, undef, undef, 0.1);
	}
	die 'the actuator did not start';
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
}

# counters(ACTUATOR): the counters and state of one actuator
sub counters
{
	my ($self, $act) = @_;
	my $r = $http->get($self->url . '/_state');
	die "actuator: $r->{status}" unless $r->{success};
	return $json->decode($r->{content})->{$act} // {};
}

sub configure
{
	my ($self, $act, %cfg) = @_;
	my $r = $http->post($self->url . "/_config/$act", { content => $json->encode(\%cfg) });
	die "actuator: $r->{status}" unless $r->{success};
}

# wait_for(ACTUATOR, CHECK, WHAT): poll until CHECK(counters) holds
sub wait_for
{
	my ($self, $act, $check, $what) = @_;
	for (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
	{
		return pass($what) if $check->($self->counters($act));
		select(undef, undef, undef, 0.1);
	}
	fail($what);
}

1;
