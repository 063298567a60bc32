# DmPair.pm: a primary and its mirror for the promotion tests.
#
# dm_pair(%opts) starts node "a" (control database postgres, and the
# primary database app) and node "b" (the mirror database app), creates the
# test schema on both (the probe's table, a serial table, a sequence),
# group "orders" (interval 1s, plus opts{group_options}), resource "db"
# and its mirror (opts{mirror_options}), and waits until the mirror is
# mirroring.  opts{extension_version}: the version of driftmirror created
# on node a (default: the current one).  Returns a hash:
#   a, b          the nodes
#   ca, cb        conninfo of app on a and on b
#   multihost     dm_route_multihost('orders', 'db')
#   probe         path of the compiled probe
# Helpers:
#   primary_of($p)     the node that is primary now (per dm_resources)
#   wait_mirroring($p) wait until the mirror is mirroring with a measured lag,
#                      within the promotion guardrails' defaults
#   writable($node)    whether a client can write app on that node
#   probe_verify($p, $probe)
#                      probe_check against the current primary and mirror
# Fault injection (driftmirror.promote_test_pause, on node a):
#   promote_pause($p, STEP, MS)        hold the next driver before STEP
#   promote_start($p, OPTIONS)         dm_promote('orders', 'db', OPTIONS) in
#                                      a background session; returns it
#   promote_wait_paused($p, STEP, WHAT) wait until the driver waits before
#                                      STEP, then reset the pause (so that
#                                      the next driver does not pause); the
#                                      waiting driver goes on waiting
#   promote_release($p)                end the wait of the paused driver now
#                                      (PAUSE_MS is only its bound): call it
#                                      once the test did what it paused for
#   promote_finish($session)           wait for that dm_promote; returns its
#                                      output and errors (VERBOSITY verbose)
#   promote_kill_driver($p, $session)  SIGKILL the promotion driver (node a
#                                      restarts after the crash: wait with
#                                      poll_query_until) and drop the session
#   last_promotion($p, COLUMN)         COLUMN (an expression) of the newest
#                                      row of driftmirror.promotion
package DmPair;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;

our @EXPORT = qw(dm_pair primary_of mirror_of wait_mirroring writable reads_to_mirror
  probe_verify promote_pause promote_start promote_wait_paused promote_release promote_finish);
# on request (some tests have their own last_promotion)
our @EXPORT_OK = qw(promote_kill_driver last_promotion);

sub conninfo
{
	my ($n, $db) = @_;
	return 'host=' . $n->host . ' port=' . $n->port . " dbname=$db";
}

sub dm_pair
{
	my (%opts) = @_;
	my $conf = "restart_after_crash = on\nlog_statement = none\n" . ($opts{conf} // '');
	my $a = dm_node('a', logical => 1, conf => $conf,
		extension_version => $opts{extension_version});
	my $b = dm_node('b', logical => 1, no_extension => 1, conf => $conf);
	my $p = { a => $a, b => $b };
	$p->{probe} = probe_build();

	for my $n ($a, $b)
	{
		$n->safe_psql('postgres', 'CREATE DATABASE app');
		$n->safe_psql('app', q{
			CREATE TABLE dm_probe (id bigserial PRIMARY KEY, client_id integer NOT NULL,
				seq bigint NOT NULL, payload text NOT NULL,
				created_at timestamptz NOT NULL DEFAULT now());
			CREATE TABLE orders (id serial PRIMARY KEY, note text NOT NULL);
			CREATE SEQUENCE invoice_no;
		});
	}
	$a->safe_psql('app', q{
		INSERT INTO orders (note) SELECT 'initial ' || g FROM generate_series(1, 100) g;
		SELECT setval('invoice_no', 500);
	});

	$p->{ca} = conninfo($a, 'app');
	$p->{cb} = conninfo($b, 'app');
	my $gopts = $opts{group_options} // '{}';
	my $mopts = $opts{mirror_options} // '{}';
	$a->safe_psql('postgres', qq{
		SELECT driftmirror.dm_create_group('orders', '{"interval": "1s"}'::jsonb || '$gopts'::jsonb);
		SELECT driftmirror.dm_add_resource('orders', 'db', 'postgres', '$p->{ca}');
		SELECT driftmirror.dm_create_mirror('orders', 'db', '$p->{cb}', '$mopts');
	});
	wait_mirroring($p) or BAIL_OUT('the mirror of the pair never reached mirroring');
	$p->{multihost} = $a->safe_psql('postgres',
		"SELECT driftmirror.dm_route_multihost('orders', 'db')");
	return $p;
}

# the node whose app database is the primary now
sub primary_of
{
	my ($p) = @_;
	my $ep = $p->{a}->safe_psql('postgres',
		"SELECT endpoint FROM driftmirror.dm_resources WHERE name = 'db'");
	return $ep eq $p->{ca} ? $p->{a} : $p->{b};
}

sub mirror_of
{
	my ($p) = @_;
	return primary_of($p) == $p->{a} ? $p->{b} : $p->{a};
}

sub wait_mirroring
{
	my ($p) = @_;
	my $ok = $p->{a}->poll_query_until('postgres', q{
		SELECT state = 'mirroring' AND lag_bytes IS NOT NULL AND lag_bytes < 16777216
		       AND coalesce(lag_seconds, 0) < 5
		       AND checked_at > now() - interval '5 seconds'
		  FROM driftmirror.dm_mirror_status});
	if (!$ok)
	{
		diag($p->{a}->safe_psql('postgres', 'SELECT * FROM driftmirror.dm_mirror_status'));
		return $ok;
	}
	# an apply worker that restarted after an error (a lost connection
	# counts) must run 10 s before promotion counts the errors as past
	my $m = mirror_of($p);
	return $m->poll_query_until('app', q{
		SELECT coalesce(bool_and(st.apply_error_count + st.sync_error_count = 0
		                         OR now() - a.backend_start > interval '10 seconds'), false)
		  FROM pg_stat_subscription w
		  JOIN pg_stat_activity a ON a.pid = w.pid
		  JOIN pg_stat_subscription_stats st ON st.subid = w.subid
		 WHERE w.relid IS NULL});
}

# writable(NODE): can a plain client write app there?
sub writable
{
	my ($n) = @_;
	my ($rc, $out, $err) = $n->psql('app',
		"SET default_transaction_read_only = off; INSERT INTO orders (note) VALUES ('writable?')");
	return $rc == 0 ? 1 : 0;
}

# reads_to_mirror(PAIR): the end of a read shift, set by hand (no traffic
# shifting yet): every read route goes to the mirror
sub reads_to_mirror
{
	my ($p) = @_;
	$p->{a}->safe_psql('postgres', q{
		SELECT driftmirror._set_route(r.group_id, r.id, 'read', m.mirror_endpoint, 100, 'test: reads shifted')
		  FROM driftmirror.resource r JOIN driftmirror.mirror m ON m.resource_id = r.id;
		SELECT driftmirror._set_route(r.group_id, r.id, 'read', r.endpoint, 0, 'test: reads shifted')
		  FROM driftmirror.resource r});
}

sub probe_verify
{
	my ($p, $probe) = @_;
	my ($primary, $mirror) = (primary_of($p), mirror_of($p));
	return probe_check($p->{probe}, $probe,
		'host=' . $primary->host . ' port=' . $primary->port . ' dbname=app',
		'host=' . $mirror->host . ' port=' . $mirror->port . ' dbname=app');
}

sub promote_pause
{
	my ($p, $step, $ms) = @_;
	$p->{a}->safe_psql('postgres', qq{ALTER SYSTEM SET driftmirror.promote_test_pause = '$step:$ms';
		SELECT pg_reload_conf()});
}

sub promote_start
{
	my ($p, $opts) = @_;
	$opts //= '{}';
	my $s = $p->{a}->background_psql('postgres', on_error_stop => 0);
	$s->query_until(qr/started/,
		"\\echo started\n\\set VERBOSITY verbose\n"
		  . "SELECT resource_name FROM driftmirror.dm_promote('orders', 'db', '$opts');\n"
		  . "\\echo finished\n\\warn finished\n");
	return $s;
}

sub promote_wait_paused
{
	my ($p, $step, $what) = @_;
	ok($p->{a}->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE query LIKE '%paused before step $step (test)'}), "$what: the driver waits before $step");
	$p->{a}->safe_psql('postgres',
		q{ALTER SYSTEM RESET driftmirror.promote_test_pause; SELECT pg_reload_conf()});
}

sub promote_release
{
	my ($p) = @_;
	$p->{a}->safe_psql('postgres',
		q{ALTER SYSTEM SET driftmirror.promote_test_pause = 'release'; SELECT pg_reload_conf()});
}

sub promote_finish
{
	my ($s) = @_;
	my $out = $s->query_until(qr/finished/, '');
	pump_until($s->{run}, $s->{timeout}, \$s->{stderr}, qr/finished/);
	$out .= $s->{stderr};
	eval { $s->quit; };
	return $out;
}

sub promote_kill_driver
{
	my ($p, $s) = @_;
	my $pid = $p->{a}->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror promotion'});
	kill 'KILL', $pid;
	eval { $s->quit; };
}

sub last_promotion
{
	my ($p, $col) = @_;
	return $p->{a}->safe_psql('postgres',
		"SELECT $col FROM driftmirror.promotion ORDER BY id DESC LIMIT 1");
}

1;
