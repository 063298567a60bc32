# 001_worker.pl: the background worker.
#
# It starts with the server and shows up in pg_stat_activity; waits quietly
# while the extension is absent; records heartbeats per group on each
# group's interval; reloads settings on SIGHUP; is restarted after kill -9;
# and keeps serving other groups when one group's step fails.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;

# restart_after_crash: the test cluster defaults to off, the product to on
my $node = dm_node('worker', no_extension => 1, conf => 'restart_after_crash = on');

# --- the worker runs and waits quietly without the extension
dm_wait_for($node,
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'driftmirror'",
	't', 'worker visible in pg_stat_activity with backend type driftmirror');
my $pid_before = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror'");
my $log_offset = -s $node->logfile;

# let it run a number of passes (naptime 200ms) without the extension; the
# wait is bounded by counting its passes through pg_stat_activity's wait events
dm_wait_for($node,
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'driftmirror' AND wait_event_type = 'Extension'",
	't', 'worker idles in its latch wait');
$node->safe_psql('postgres', 'SELECT pg_sleep(1)');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/(ERROR|WARNING|FATAL).*driftmirror|driftmirror.*(ERROR|WARNING)/,
	'no errors or warnings while the extension is absent');

# creating the extension later is picked up by the same worker process
$node->safe_psql('postgres', 'CREATE EXTENSION driftmirror');
dm_wait_for($node, "SELECT pid = $pid_before FROM driftmirror.dm_worker",
	't', 'the same worker picks up the new extension');

# --- heartbeats per group
$node->safe_psql('postgres', q{
	SELECT driftmirror.dm_create_group('good', '{"interval": "1s"}');
	SELECT driftmirror.dm_create_group('other', '{"interval": 1}');
	SELECT driftmirror.dm_create_group('bad', '{"interval": "1s"}');
});
for my $g (qw(good other bad))
{
	dm_wait_for($node,
		"SELECT steps_ok >= 2 AND state = 'monitoring' FROM driftmirror.dm_status WHERE group_name = '$g'",
		't', "group $g gets heartbeats");
}

# --- a failing group does not stop the others.  A trigger stands in for any
# error raised inside one group's step: it fails every successful heartbeat
# of group "bad".
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.fail_bad_group() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.steps_ok > OLD.steps_ok AND
		   (SELECT name FROM driftmirror.resource_group WHERE id = NEW.group_id) = 'bad' THEN
			RAISE EXCEPTION 'injected failure for group bad' USING ERRCODE = 'P0001';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER fail_bad BEFORE UPDATE ON driftmirror.group_state
		FOR EACH ROW EXECUTE FUNCTION public.fail_bad_group();
});
dm_wait_for($node,
	"SELECT state = 'failing' AND consecutive_failures >= 2 AND last_error LIKE '%injected failure%' AND last_error_sqlstate = 'P0001' FROM driftmirror.dm_status WHERE group_name = 'bad'",
	't', 'the failing group is recorded as failing with its error');
my $good_before = $node->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'good'");
dm_wait_for($node,
	"SELECT steps_ok >= $good_before + 2 AND state = 'monitoring' FROM driftmirror.dm_status WHERE group_name = 'good'",
	't', 'other groups keep getting heartbeats meanwhile');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_actions WHERE group_name = 'bad' AND kind = 'step_failed'"),
	'1', 'the first failure of the run is in the action log once');
like(slurp_file($node->logfile, $log_offset),
	qr/monitoring step of group "bad" failed: injected failure/,
	'the failure is logged with the group name');

$node->safe_psql('postgres', 'DROP TRIGGER fail_bad ON driftmirror.group_state');
dm_wait_for($node,
	"SELECT state = 'monitoring' AND consecutive_failures = 0 FROM driftmirror.dm_status WHERE group_name = 'bad'",
	't', 'the group recovers once the error is gone');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM driftmirror.dm_actions WHERE group_name = 'bad' AND kind = 'step_recovered'"),
	'1', 'the recovery is in the action log');

# --- a statement that never ends is cut off by worker_statement_timeout:
# a trigger that sleeps stands in for a stuck statement in one group's step
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET driftmirror.worker_statement_timeout = '500ms';
	SELECT pg_reload_conf();
	CREATE FUNCTION public.stall_bad_group() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.steps_ok > OLD.steps_ok AND
		   (SELECT name FROM driftmirror.resource_group WHERE id = NEW.group_id) = 'bad' THEN
			PERFORM pg_sleep(30);
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER stall_bad BEFORE UPDATE ON driftmirror.group_state
		FOR EACH ROW EXECUTE FUNCTION public.stall_bad_group();
});
dm_wait_for($node,
	"SELECT state = 'failing' AND last_error_sqlstate = '57014' FROM driftmirror.dm_status WHERE group_name = 'bad'",
	't', 'a stuck statement in one group is cancelled by the statement timeout');
$good_before = $node->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'good'");
dm_wait_for($node,
	"SELECT steps_ok >= $good_before + 2 FROM driftmirror.dm_status WHERE group_name = 'good'",
	't', 'and the other groups carry on');
$node->safe_psql('postgres', q{
	DROP TRIGGER stall_bad ON driftmirror.group_state;
	ALTER SYSTEM RESET driftmirror.worker_statement_timeout;
	SELECT pg_reload_conf();
});
dm_wait_for($node,
	"SELECT state = 'monitoring' FROM driftmirror.dm_status WHERE group_name = 'bad'",
	't', 'the group recovers');

# --- SIGHUP reloads settings
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET driftmirror.naptime = '300ms';
	SELECT pg_reload_conf();
});
dm_wait_for($node,
	"SELECT naptime_ms = 300 AND reloaded_at IS NOT NULL FROM driftmirror.dm_worker",
	't', 'the worker applies a new naptime on reload');

$node->safe_psql('postgres', q{
	ALTER SYSTEM SET driftmirror.enabled = off;
	SELECT pg_reload_conf();
});
dm_wait_for($node,
	"SELECT bool_and(state = 'disabled') FROM driftmirror.dm_status",
	't', 'driftmirror.enabled = off pauses every group');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET driftmirror.enabled;
	SELECT pg_reload_conf();
});
dm_wait_for($node,
	"SELECT bool_and(state = 'monitoring') FROM driftmirror.dm_status",
	't', 'and on again resumes them');

# --- kill -9: the postmaster restarts everything, the worker comes back
my $pid = $node->safe_psql('postgres', 'SELECT pid FROM driftmirror.dm_worker');
kill 'KILL', $pid;
$node->poll_query_until('postgres', 'SELECT 1', '1');
dm_wait_for($node, "SELECT pid <> $pid AND passes > 2 FROM driftmirror.dm_worker",
	't', 'a new worker runs after kill -9');
my $ok_before = $node->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'good'");
dm_wait_for($node,
	"SELECT steps_ok > $ok_before FROM driftmirror.dm_status WHERE group_name = 'good'",
	't', 'and heartbeats continue');

# --- SIGTERM ends it cleanly (and the postmaster starts it again)
$pid = $node->safe_psql('postgres', 'SELECT pid FROM driftmirror.dm_worker');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
dm_wait_for($node, "SELECT pid <> $pid FROM driftmirror.dm_worker",
	't', 'worker restarted after SIGTERM');
unlike(slurp_file($node->logfile, $log_offset), qr/terminated by signal|server process .* was terminated/,
	'SIGTERM is a clean exit, not a crash');

# --- dropping the extension: the worker goes quiet again
$node->safe_psql('postgres', 'DROP EXTENSION driftmirror');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT pg_sleep(1)');
unlike(slurp_file($node->logfile, $log_offset), qr/WARNING|ERROR/,
	'no errors after the extension is dropped');

$node->stop;
done_testing();
