# 042_mirror_actuator.pl: mirrors of non-PostgreSQL resources through
# their HTTP actuator, against the small HTTP actuator of test/lib
# (DmActuator.pm: an IO::Socket::INET server in a child process) standing
# in for an orchestrator's API.  It keeps its state in a file, so it can be
# stopped and started again, and counts requests, distinct idempotency
# keys, creations and deletions per actuator (the first path segment).
#
# Covered: create -> provisioning -> mirroring with the bearer token from
# a file; an answer lost after the creation (the retry reuses the key, no
# second creation); the actuator down during the create, then back; an
# actuator answering 500 (failed after max_attempts, one key) or garbage
# (retried, then fine); a hung actuator (timeout, other groups carry on);
# drop while the actuator is down (pending, retried, done); lag reported by
# the actuator stored as a metric; no token in views, the action log or
# the server log.
use strict;
use warnings;

use File::Path qw(make_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmActuator;
use DmTest;

my $ctl = dm_node('ctl');
my $receiver = DmActuator->new;
my $port = $receiver->port;
my $token = 'act-secret-token-7f3a9c';
my $json = JSON::PP->new->canonical;

sub start_receiver { $receiver->start; }
sub stop_receiver { $receiver->stop; }

# the receiver's counters of one actuator
sub act { return $receiver->counters(@_); }
sub configure { $receiver->configure(@_); }

# wait_act(ACT, CHECK, WHAT): poll the receiver until CHECK(counters) holds
sub wait_act { $receiver->wait_for(@_); }

sub mirror_row
{
	my ($group, $cols) = @_;
	return $ctl->safe_psql('postgres',
		"SELECT $cols FROM driftmirror.dm_mirror_status WHERE group_name = '$group'");
}

start_receiver();
my $url = "http://127.0.0.1:$port";

make_path($ctl->data_dir . '/driftmirror_secrets');
PostgreSQL::Test::Utils::append_to_file($ctl->data_dir . '/driftmirror_secrets/act_token', "$token\n");

# ---------------------------------------------------------------------
# create -> ready, with the token; the first answer is lost
# ---------------------------------------------------------------------
configure('good', token => $token, ready_after => 2, mode => 'lose_once');
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('other', '{"interval": "1s"}');
	SELECT driftmirror.dm_create_group('good', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('good', 'cache', 'cache', '$url/good',
		options => '{"bearer_token_file": "act_token"}');
	SELECT driftmirror.dm_create_mirror('good', 'cache',
		options => '{"max_backoff": "1s", "actuator_options": {"size": "small"}}');
});
my $log_offset = -s $ctl->logfile;
dm_wait_for($ctl, "SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'good'",
	'mirroring', 'the mirror is ready at the actuator: mirroring');
my $good = act('good');
is($good->{creates}, 1, 'the actuator created the mirror once');
is($good->{posts}, 2, 'the create request was sent again after its answer was lost');
is(scalar keys %{ $good->{keys} }, 1, 'with the same idempotency key');
like((keys %{ $good->{keys} })[0], qr/^dm-[0-9a-f]{32}-create-0$/, 'key derived from the mirror and the action');
ok($good->{auth_ok} >= 4 && !$good->{auth_bad}, 'every request carried the bearer token from the file');
is($json->encode([ @{ $good->{last_body} }{qw(group resource kind action options)} ]),
	'["good","cache","cache","create",{"size":"small"}]', 'the create request body');
like(mirror_row('good', "mirror_endpoint || ' ' || actuator_state || ' ' || actuator_detail"),
	qr{^http://127\.0\.0\.1:$port/good/instance/dm_\d+_\d+ ready poll \d+$},
	'dm_mirror_status shows the endpoint and state the actuator reported');
is($ctl->safe_psql('postgres', q{
	SELECT string_agg(kind, ',' ORDER BY id) FROM driftmirror.dm_actions
	 WHERE group_name = 'good' AND kind LIKE 'mirror%'}),
	'mirror_step,mirror_provisioning,mirror_mirroring', 'the steps are in the action log');
dm_wait_for($ctl, q{
	SELECT count(*) > 0 AND min(value) = 0.5 FROM driftmirror.dm_metrics
	 WHERE group_name = 'good' AND resource_name = 'cache' AND metric = 'mirror.lag_seconds'},
	't', 'the lag the actuator reports is stored as a metric of the resource');

# ---------------------------------------------------------------------
# the actuator is down during the create, then back
# ---------------------------------------------------------------------
stop_receiver();
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('down', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('down', 'svc', 'service', '$url/down');
	SELECT driftmirror.dm_create_mirror('down', 'svc', NULL, '{"max_attempts": 100, "max_backoff": "2s"}');
});
dm_wait_for($ctl, q{
	SELECT state = 'creating' AND attempts >= 2 AND last_error = 'could not reach node "down/svc actuator"'
	       AND last_error_detail LIKE '%onnect%' AND next_attempt_at IS NOT NULL
	  FROM driftmirror.dm_mirror_status WHERE group_name = 'down'},
	't', 'an actuator that is down: each failed attempt recorded and backed off');
start_receiver();
dm_wait_for($ctl, "SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'down'",
	'mirroring', 'the mirror is made once the actuator is back');
my $down = act('down');
is($down->{creates} . '/' . scalar(keys %{ $down->{keys} }), '1/1', 'one creation, one key');
is(mirror_row('down', 'attempts::text || coalesce(last_error, \'\')'), '0', 'the error is cleared');
is(mirror_row('good', 'state'), 'mirroring', 'the other mirror stayed mirroring through the outage');

# ---------------------------------------------------------------------
# 500s: recorded, retried, failed after max_attempts
# ---------------------------------------------------------------------
configure('bad', mode => 'status500');
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('bad', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('bad', 'app', 'app', '$url/bad');
	SELECT driftmirror.dm_create_mirror('bad', 'app', NULL, '{"max_attempts": 3, "max_backoff": "1s"}');
});
dm_wait_for($ctl, "SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'bad'",
	'failed', 'an actuator answering 500: failed after max_attempts');
is(mirror_row('bad', "attempts || ' ' || last_error || ' ' || last_error_detail"),
	'3 the actuator answered HTTP 500 to POST /mirrors internal error', 'the error and the answer are recorded');
my $bad = act('bad');
is(($bad->{posts} // 0) . '/' . scalar(keys %{ $bad->{keys} }) . '/' . ($bad->{creates} // 0), '3/1/0',
	'three attempts with one key, nothing created');
like(mirror_row('bad', 'state_reason'), qr/^POST \/mirrors failed 3 time\(s\) in a row/, 'the reason says why');

# ---------------------------------------------------------------------
# garbage: recorded, retried, then fine
# ---------------------------------------------------------------------
configure('junk', mode => 'garbage');
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('junk', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('junk', 'web', 'web', '$url/junk');
	SELECT driftmirror.dm_create_mirror('junk', 'web', NULL, '{"max_attempts": 100, "max_backoff": "1s"}');
});
dm_wait_for($ctl, q{
	SELECT attempts >= 2 AND last_error LIKE '%is not a JSON object with "state"%'
	       AND last_error_detail LIKE '<html>%'
	  FROM driftmirror.dm_mirror_status WHERE group_name = 'junk'},
	't', 'an answer that is not the contract\'s JSON is recorded and retried');
configure('junk', mode => 'ok');
dm_wait_for($ctl, "SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'junk'",
	'mirroring', 'and the mirror is made once the actuator answers properly');
is(act('junk')->{creates}, 1, 'created once');

# ---------------------------------------------------------------------
# a hung actuator: timeout, the other groups carry on
# ---------------------------------------------------------------------
configure('hung', mode => 'hang');
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('hung', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('hung', 'cache', 'cache', '$url/hung');
	SELECT driftmirror.dm_create_mirror('hung', 'cache', NULL,
		'{"actuator_timeout": "1s", "max_attempts": 100, "max_backoff": "2s"}');
});
dm_wait_for($ctl, q{
	SELECT attempts >= 2 AND last_error = 'node "hung/cache actuator" did not answer within 1000 ms'
	  FROM driftmirror.dm_mirror_status WHERE group_name = 'hung'},
	't', 'a hung actuator: the request times out, recorded and retried');
my $other_ok = $ctl->safe_psql('postgres',
	"SELECT steps_ok FROM driftmirror.dm_status WHERE group_name = 'other'");
dm_wait_for($ctl, qq{
	SELECT steps_ok >= $other_ok + 3 FROM driftmirror.dm_status WHERE group_name = 'other'},
	't', 'other groups keep their steps while it hangs');
my $good_gets = act('good')->{gets};
wait_act('good', sub { $_[0]->{gets} >= $good_gets + 3 }, 'other actuators are still polled');
dm_wait_for($ctl, q{SELECT state = 'mirroring' AND last_error IS NULL
	FROM driftmirror.dm_mirror_status WHERE group_name = 'good'},
	't', 'other mirrors keep being refreshed');
configure('hung', mode => 'ok');
dm_wait_for($ctl, "SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'hung'",
	'mirroring', 'the mirror is made once the actuator answers again');
my $hung = act('hung');
is(($hung->{creates} // 0) . '/' . scalar(keys %{ $hung->{keys} }), '1/1', 'one creation, one key');

# ---------------------------------------------------------------------
# a token file that cannot be read
# ---------------------------------------------------------------------
$ctl->safe_psql('postgres', qq{
	SELECT driftmirror.dm_create_group('notok', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('notok', 'app', 'app', '$url/notok',
		options => '{"bearer_token_file": "no_such_file"}');
	SELECT driftmirror.dm_create_mirror('notok', 'app', NULL, '{"max_attempts": 2, "max_backoff": "1s"}');
});
dm_wait_for($ctl, "SELECT state FROM driftmirror.dm_mirror_status WHERE group_name = 'notok'",
	'failed', 'a missing token file fails the mirror after max_attempts');
like(mirror_row('notok', 'last_error'), qr/^could not read bearer_token_file "no_such_file"/,
	'naming the file');
ok(!act('notok')->{requests}, 'no request was sent without its token');

# ---------------------------------------------------------------------
# drop while the actuator is down: pending, retried, done
# ---------------------------------------------------------------------
stop_receiver();
$ctl->safe_psql('postgres', "SELECT driftmirror.dm_drop_mirror('good', 'cache')");
dm_wait_for($ctl, q{
	SELECT attempts > 0 AND last_error = 'could not reach node "good/cache actuator"' AND node = 'actuator'
	  FROM driftmirror.dm_mirror_cleanups WHERE group_name = 'good'},
	't', 'the drop stays pending while the actuator is down');
like($ctl->safe_psql('postgres', "SELECT reason FROM driftmirror.dm_status WHERE group_name = 'good'"),
	qr/1 replication object\(s\) of dropped mirrors still to drop/, 'dm_status shows it');
my ($rc, $out, $err) = $ctl->psql('postgres', "SELECT driftmirror.dm_create_mirror('good', 'cache')");
like($err, qr/is still being dropped/, 'a new mirror waits for it');
start_receiver();
dm_wait_for($ctl, "SELECT count(*) FROM driftmirror.dm_mirror_cleanups", '0',
	'the drop is done once the actuator is back');
$good = act('good');
is(scalar keys %{ $good->{mirrors} }, 0, 'the actuator deleted the mirror');
is($good->{deletes}, 1, 'with one DELETE');
like((keys %{ $good->{delete_keys} })[0], qr/^dm-[0-9a-f]{32}-drop$/, 'carrying the drop key');
# dropping a whole group asks for the deletes too
$ctl->safe_psql('postgres', "SELECT driftmirror.dm_drop_group('junk', true)");
dm_wait_for($ctl, "SELECT count(*) FROM driftmirror.dm_mirror_cleanups", '0',
	'dropping a group deletes its actuator mirrors');
is(scalar keys %{ act('junk')->{mirrors} }, 0, 'gone at the actuator');

# ---------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------
# (read the log first: the statements below name the token)
my $log = slurp_file($ctl->logfile, $log_offset);
unlike($log, qr/\Q$token\E/, 'the token is not in the server log');
unlike($log, qr/monitoring step of group .* failed|server process .* was terminated/,
	'no failed step, no crash');
$ctl->safe_psql('postgres', 'CREATE ROLE mon LOGIN IN ROLE driftmirror_monitor');
is($ctl->safe_psql('postgres', q{
	SET ROLE mon;
	SELECT count(*) FROM driftmirror.dm_resources WHERE options ? 'bearer_token_file'}),
	'0', 'the monitor role does not see the token file');
is($ctl->safe_psql('postgres', q{
	SET ROLE mon;
	SELECT count(*) FROM driftmirror.dm_mirror_status
	 WHERE mirror_endpoint IS NOT NULL OR actuator_detail IS NOT NULL OR last_error_detail IS NOT NULL}),
	'0', 'nor endpoints and details');
is($ctl->safe_psql('postgres', qq{
	SELECT count(*) FROM driftmirror.dm_actions WHERE inputs::text LIKE '%$token%' OR reason LIKE '%$token%'}),
	'0', 'the token is not in the action log');

stop_receiver();
$ctl->stop;
done_testing();
