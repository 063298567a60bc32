# 055_promote_actuator.pl: dm_promote switches mirrors of non-PostgreSQL
# resources through their HTTP actuator (test/lib/DmActuator.pm stands in
# for it; the contract is in docs/mirrors.md, "Promote").
#
# Covered: a group holding a postgres database and a cache that depends on
# it, promoted as a whole, in dependency order (the database first: step
# timestamps and the action log); one actuator resource promoted alone,
# with the routes flipped and the mirror's new endpoint recorded; the
# actuator answering "promoting" a few times, 500s, garbage (resent with the
# same idempotency key: one promotion per key at the actuator); refusals
# ("failed", 409, a guardrail) that change nothing; a hung actuator:
# promote_timeout, abort, rolled_back and the actuator back as before; the
# actuator down for the abort: failed with the reason, in dm_promotions and
# dm_status; the promotion worker killed (kill -9) while its request hangs:
# the main worker's recovery sends the same key again and finishes, or,
# when it comes after promote_timeout, aborts; bad input; no token in the
# log, the views or the action log.
use strict;
use warnings;

use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmActuator;
use DmTest;
use DmPair;

my $p = dm_pair();
my ($a, $b) = ($p->{a}, $p->{b});
my $act = DmActuator->new;
$act->start;
my $url = $act->url;
my $token = 'promote-secret-token-4b1d';

make_path($a->data_dir . '/driftmirror_secrets');
PostgreSQL::Test::Utils::append_to_file($a->data_dir . '/driftmirror_secrets/act_token', "$token\n");
my $log_offset = -s $a->logfile;

sub q1 { return $a->safe_psql('postgres', $_[0]); }

# mirror_ready(GROUP, RESOURCE): mirroring, status read fresh, endpoint known
sub mirror_ready
{
	my ($group, $res, $what) = @_;
	dm_wait_for($a, qq{
		SELECT state = 'mirroring' AND attempts = 0 AND mirror_endpoint IS NOT NULL
		       AND checked_at > now() - interval '2 seconds'
		  FROM driftmirror.dm_mirror_status WHERE group_name = '$group' AND resource_name = '$res'},
		't', $what);
}

# promote_err(SQL): (sqlstate, message) of a failing dm_promote
sub promote_err
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $a->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return ('none', $out) if $rc == 0;
	$err =~ /ERROR:\s+([0-9A-Z]{5}):\s+([^\n]*)/ or return ('?', $err);
	return ($1, $2);
}

sub steps
{
	my ($id) = @_;
	return q1(qq{SELECT string_agg(step || ':' || outcome, ',' ORDER BY seq)
		FROM driftmirror.dm_promotion_steps WHERE promotion_id = $id});
}

sub last_promotion
{
	my ($group, $cols) = @_;
	return q1(qq{SELECT $cols FROM driftmirror.dm_promotions WHERE group_name = '$group'
		ORDER BY id DESC LIMIT 1});
}

sub routes
{
	my ($group, $res) = @_;
	return q1(qq{SELECT string_agg(access || '=' || weight || '\@' || endpoint, ' '
	                              ORDER BY access, weight DESC, endpoint COLLATE "C")
		FROM driftmirror.dm_routes WHERE group_name = '$group' AND resource_name = '$res'});
}

# ---------------------------------------------------------------------
# a group: the database, and a cache that depends on it
# ---------------------------------------------------------------------
$act->configure('shop', token => $token);
q1(qq{
	SELECT driftmirror.dm_add_resource('orders', 'cache', 'cache', '$url/shop',
		depends_on => '{db}', options => '{"bearer_token_file": "act_token"}');
	SELECT driftmirror.dm_create_mirror('orders', 'cache', NULL, '{"max_backoff": "1s"}');
});
mirror_ready('orders', 'cache', 'the cache is mirrored through the actuator');
my $cache_mirror = q1(q{SELECT mirror_endpoint FROM driftmirror.dm_mirror_status WHERE resource_name = 'cache'});
my $cache_name = q1(q{SELECT actuator_name FROM driftmirror.dm_mirror_status WHERE resource_name = 'cache'});
is($cache_mirror, "$url/shop/instance/$cache_name", 'the actuator reported where the mirror is');

my ($rc, $out, $err) = $a->psql('postgres', q{
	SELECT resource_name, new_primary, pause_ms IS NULL, fence_lsn IS NULL
	  FROM driftmirror.dm_promote('orders') ORDER BY promotion_id});
is($rc, 0, 'dm_promote of the whole group succeeds');
is($out, "db|$p->{cb}|f|f\ncache|$cache_mirror|t|t",
	'both resources promoted, the database first; no pause or fence LSN for the cache');
is($err, '', 'no NOTICE about resources left as they are');
is(primary_of($p), $b, 'the database moved to b');
is(q1(q{
	SELECT (SELECT finished_at FROM driftmirror.dm_promotions WHERE resource_name = 'db')
	    <= (SELECT started_at FROM driftmirror.dm_promotions WHERE resource_name = 'cache')}),
	't', 'the cache promotion started after the database promotion had finished');
is(q1(q{
	SELECT string_agg(resource_name || ':' || kind, ',' ORDER BY id) FROM driftmirror.dm_actions
	 WHERE group_name = 'orders' AND kind IN ('promote_start', 'promote_done')}),
	'db:promote_start,db:promote_done,cache:promote_start,cache:promote_done',
	'the action log shows the order');
my $cache_pid = last_promotion('orders', 'id');
is(steps($cache_pid), 'guardrails:ok,actuator_switch:ok,flip:ok', 'the cache promotion steps');
is(last_promotion('orders', q{state || ' ' || kind || ' ' || (pause_ms IS NULL) || ' ' || (fence_lsn IS NULL)}),
	'done cache true true', 'recorded done, without pause and fence LSN');
is(q1(qq{SELECT driftmirror.dm_route('orders', 'cache', 'write') || ' ' || driftmirror.dm_route('orders', 'cache', 'read')}),
	"$cache_mirror $cache_mirror", 'dm_route sends writes and reads to the promoted cache');
is(routes('orders', 'cache'), "read=100\@$cache_mirror read=0\@$url/shop write=100\@$cache_mirror write=0\@$url/shop",
	'the route table: the new primary at 100, the old endpoint at 0');
is(q1(q{SELECT mirror_endpoint FROM driftmirror.dm_mirror_status WHERE resource_name = 'cache'}),
	"$url/shop/instance/origin", 'the mirror is where the actuator says it now is');
my $shop = $act->counters('shop');
is($shop->{promotions}, 1, 'the actuator made one promotion');
my @keys = keys %{ $shop->{promote_keys} };
is(scalar @keys, 1, 'with one key');
like($keys[0], qr/^dm-[0-9a-f]{32}-promote-$cache_pid$/, 'the key names the promotion');
is(join(',', map { $_ // 'null' } @{ $shop->{last_promote_body} }{qw(group resource kind mirror action promotion endpoint)}),
	"orders,cache,cache,$cache_name,promote,$cache_pid,$cache_mirror", 'the promote request body');
ok($shop->{auth_ok} > 0 && !$shop->{auth_bad}, 'every request carried the bearer token');

# ---------------------------------------------------------------------
# one resource alone: "promoting" twice, then promoted
# ---------------------------------------------------------------------
q1(qq{
	SELECT driftmirror.dm_create_group('solo', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('solo', 'c1', 'cache', '$url/solo');
	SELECT driftmirror.dm_create_mirror('solo', 'c1', NULL, '{"max_backoff": "1s", "actuator_timeout": "1s"}');
	SELECT driftmirror.dm_add_resource('solo', 'plain', 'web', '$url/plain');
});
mirror_ready('solo', 'c1', 'c1 is mirrored');
my $c1_name = q1(q{SELECT actuator_name FROM driftmirror.dm_mirror_status WHERE resource_name = 'c1'});
my $origin = "$url/solo/instance/origin";
my $c1_mirror = "$url/solo/instance/$c1_name";

$act->configure('solo', promote_mode => 'promoting', promote_times => 2);
is(q1(q{SELECT resource_name || ' ' || new_primary FROM driftmirror.dm_promote('solo', 'c1')}),
	"c1 $c1_mirror", 'dm_promote of one actuator resource returns the new primary');
my $solo = $act->counters('solo');
is(($solo->{promote_requests} // 0) . '/' . scalar(keys %{ $solo->{promote_keys} }) . '/' . ($solo->{promotions} // 0),
	'3/1/1', '"promoting" twice: three requests, one key, one promotion');
my $id = last_promotion('solo', 'id');
is(q1(qq{SELECT details ->> 'requests' FROM driftmirror.dm_promotion_steps
	WHERE promotion_id = $id AND step = 'actuator_switch'}), '3', 'the step log counts the requests');
is(routes('solo', 'c1'), "read=100\@$c1_mirror read=0\@$url/solo write=100\@$c1_mirror write=0\@$url/solo",
	'routes flipped');

# back, through 500s and garbage
mirror_ready('solo', 'c1', 'c1 is ready again after its promotion');
$act->configure('solo', promote_mode => 'status500', promote_times => 2);
is(q1(q{SELECT new_primary FROM driftmirror.dm_promote('solo', 'c1')}), $origin,
	'500 twice, then promoted: back to the first instance');
$solo = $act->counters('solo');
is(($solo->{promote_requests}) . '/' . scalar(keys %{ $solo->{promote_keys} }) . '/' . $solo->{promotions},
	'6/2/2', 'three more requests with one new key, one more promotion');
like(last_promotion('solo', q{steps::text}), qr/"last": "\\"promoted\\" \(HTTP 200\)"/, 'the last answer is in the step log');
mirror_ready('solo', 'c1', 'ready again');
$act->configure('solo', promote_mode => 'garbage', promote_times => 1);
is(q1(q{SELECT new_primary FROM driftmirror.dm_promote('solo', 'c1')}), $c1_mirror,
	'garbage once, then promoted');
is($act->counters('solo')->{promotions}, 3, 'one promotion per key');
is(routes('solo', 'c1'), "read=100\@$c1_mirror read=0\@$url/solo read=0\@$origin write=100\@$c1_mirror write=0\@$url/solo write=0\@$origin",
	'the routes follow every promotion');

# "promoted" without endpoints: the mirror's endpoint becomes the primary,
# and the mirror's new endpoint is unknown until a status poll says it
mirror_ready('solo', 'c1', 'ready before a bare answer');
$act->configure('solo', promote_mode => 'bare', promote_times => 1);
is(q1(q{SELECT new_primary FROM driftmirror.dm_promote('solo', 'c1')}), $origin,
	'a bare "promoted": the mirror\'s endpoint is the new primary');
is(q1(qq{SELECT driftmirror.dm_route('solo', 'c1', 'write')}), $origin, 'the routes follow');
mirror_ready('solo', 'c1', 'the next status poll says where the mirror now is');
is(q1(q{SELECT mirror_endpoint FROM driftmirror.dm_mirror_status WHERE resource_name = 'c1'}), $c1_mirror,
	'and it is recorded');

# ---------------------------------------------------------------------
# refusals change nothing
# ---------------------------------------------------------------------
mirror_ready('solo', 'c1', 'ready before the refusals');
my $routes_before = routes('solo', 'c1');
my $mirror_before = q1(q{SELECT mirror_endpoint FROM driftmirror.dm_mirror_status WHERE resource_name = 'c1'});
my $promotions_before = $act->counters('solo')->{promotions};
$act->configure('solo', promote_mode => 'failed', promote_times => undef);
my ($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'c1')});
is($code, '55000', '"state": "failed": refused with SQLSTATE 55000');
is($msg, 'the actuator refused the promotion of resource "c1" of group "solo" ("failed" (HTTP 200))',
	'the message says the actuator refused');
is(last_promotion('solo', 'state'), 'refused', 'recorded refused');
$id = last_promotion('solo', 'id');
is(steps($id), 'guardrails:ok,actuator_switch:refused', 'at the actuator_switch step');
is(last_promotion('solo', 'actuator_detail'), 'not now', 'the actuator\'s detail is kept (admins)');
$act->configure('solo', promote_mode => 'status409');
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'c1')});
is("$code $msg", '55000 the actuator refused the promotion of resource "c1" of group "solo" (HTTP 409)',
	'HTTP 409: refused');
is(routes('solo', 'c1'), $routes_before, 'the routes did not change');
is(q1(q{SELECT mirror_endpoint FROM driftmirror.dm_mirror_status WHERE resource_name = 'c1'}), $mirror_before,
	'nor the mirror');
is($act->counters('solo')->{promotions}, $promotions_before, 'and the actuator promoted nothing');

# a guardrail: the lag the actuator reports (0.5 s) against a limit
$act->configure('solo', promote_mode => 'ok');
my $requests_before = $act->counters('solo')->{promote_requests};
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'c1', '{"promote_max_lag_seconds": 0.1}')});
is("$code $msg", '55000 promotion of resource "c1" of group "solo" refused', 'a guardrail refuses');
$id = last_promotion('solo', 'id');
is(q1(qq{SELECT reason FROM driftmirror.dm_promotion_steps WHERE promotion_id = $id AND step = 'guardrails'}),
	'replication lag 0.500 s (as the actuator reports it) exceeds promote_max_lag_seconds 0.1',
	'with the figures compared');
is(last_promotion('solo', q{guardrails ->> 'lag_seconds'}), '0.5', 'the figures are stored');
is($act->counters('solo')->{promote_requests}, $requests_before, 'the actuator was not asked');

# ---------------------------------------------------------------------
# a hung actuator: timeout, abort, rolled back
# ---------------------------------------------------------------------
$act->configure('solo', promote_mode => 'hang', promote_times => undef);
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'c1', '{"promote_timeout": "2s"}')});
is("$code $msg",
	'57014 promotion of resource "c1" of group "solo" timed out in step actuator_switch; the actuator confirmed the abort and nothing changed',
	'a hung actuator: the promotion times out and is aborted');
$id = last_promotion('solo', 'id');
is(last_promotion('solo', 'state'), 'rolled_back', 'recorded rolled_back');
is(steps($id), 'guardrails:ok,actuator_switch:failed,abort:ok', 'steps: the switch failed, the abort worked');
like(q1(qq{SELECT reason FROM driftmirror.dm_promotion_steps WHERE promotion_id = $id AND step = 'actuator_switch'}),
	qr/^promote_timeout \(00:00:02\) passed without a definitive answer from the actuator \(last: no answer: node "solo\/c1 actuator" did not answer within \d+ ms\)$/,
	'the reason names the timeout and the last outcome');
$solo = $act->counters('solo');
my @akeys = keys %{ $solo->{abort_keys} };
like($akeys[0], qr/^dm-[0-9a-f]{32}-promote-$id-abort$/, 'the abort carries its own key');
is($solo->{last_abort_body}{action}, 'abort', 'and says "abort"');
is($solo->{undone}, 1, 'the actuator undid the promotion it had begun');
is(routes('solo', 'c1'), $routes_before, 'the routes did not change');
(my $pkey = $akeys[0]) =~ s/-abort$//;
is($solo->{log}[-1], "undone $c1_name $pkey", 'the actuator is back as it was');

# the actuator down for the abort: failed, the state unknown
mirror_ready('solo', 'c1', 'ready before the next timeout');
my $bg = $a->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
SELECT * FROM driftmirror.dm_promote('solo', 'c1', '{"promote_timeout": "3s", "promote_abort_timeout": "2s"}');
});
my $hung_before = $solo->{hung};
$act->wait_for('solo', sub { ($_[0]->{hung} // 0) > $hung_before }, 'the promote request hangs');
$act->stop;
dm_wait_for($a, q{SELECT state FROM driftmirror.dm_promotions WHERE group_name = 'solo' ORDER BY id DESC LIMIT 1},
	'failed', 'the actuator down for the abort: the promotion fails');
eval { $bg->quit; };
$id = last_promotion('solo', 'id');
is(last_promotion('solo', q{error || ' ' || error_sqlstate}),
	'promotion of resource "c1" of group "solo" timed out in step actuator_switch and the actuator did not confirm the abort; its state is unknown 57014',
	'with the reason');
like(q1(qq{SELECT reason FROM driftmirror.dm_promotion_steps WHERE promotion_id = $id AND step = 'abort'}),
	qr/^the actuator did not confirm the abort within promote_abort_timeout \(00:00:02\) \(last: no answer: could not reach node "solo\/c1 actuator"\); its state is unknown$/,
	'the abort step says why');
like(q1(q{SELECT reason FROM driftmirror.dm_status WHERE group_name = 'solo'}),
	qr/; promotion $id of resource "c1" failed: .* its state is unknown$/,
	'dm_status says so');
is(routes('solo', 'c1'), $routes_before, 'the routes did not change');
$act->start;
$act->configure('solo', promote_mode => 'ok', promote_times => undef);

# ---------------------------------------------------------------------
# the promotion worker killed while its request hangs
# ---------------------------------------------------------------------
q1(qq{
	SELECT driftmirror.dm_create_group('crash', '{"interval": "1s"}');
	SELECT driftmirror.dm_add_resource('crash', 'c2', 'app', '$url/crash');
	SELECT driftmirror.dm_create_mirror('crash', 'c2', NULL, '{"max_backoff": "1s", "actuator_timeout": "60s"}');
});
mirror_ready('crash', 'c2', 'c2 is mirrored');
my $c2_name = q1(q{SELECT actuator_name FROM driftmirror.dm_mirror_status WHERE resource_name = 'c2'});
$act->configure('crash', promote_mode => 'hang', promote_times => 1);
$bg = $a->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
SELECT * FROM driftmirror.dm_promote('crash', 'c2', '{"promote_timeout": "5min"}');
});
$act->wait_for('crash', sub { ($_[0]->{hung} // 0) == 1 }, 'the promote request hangs at the actuator');
ok($a->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'driftmirror promotion' AND query LIKE '%promote request 1 to the actuator'}),
	'the promotion worker waits for the answer');
# nothing pulls the mirror from under a promotion that is about to decide
for my $drop (q{SELECT driftmirror.dm_drop_mirror('crash', 'c2')},
	q{SELECT driftmirror.dm_remove_resource('crash', 'c2')},
	q{SELECT driftmirror.dm_drop_group('crash', true)})
{
	($code, $msg) = promote_err($drop);
	like("$code $msg", qr/^55006 resource "c2" of group "crash" is being promoted \(promotion \d+, state switching\)/,
		"refused while the promotion switches: $drop");
}
is(q1(q{SELECT count(*) FROM driftmirror.dm_mirror_status WHERE group_name = 'crash'}), '1',
	'the mirror is still there');
my $wpid = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror promotion'});
kill 'KILL', $wpid;
eval { $bg->quit; };
dm_wait_for($a, q{SELECT state FROM driftmirror.dm_promotions WHERE group_name = 'crash' ORDER BY id DESC LIMIT 1},
	'done', 'the main worker recovers the promotion and finishes it');
$id = last_promotion('crash', 'id');
is(steps($id), 'guardrails:ok,actuator_switch:interrupted,actuator_switch:ok,flip:ok',
	'the switch step was interrupted and resumed');
my $crash = $act->counters('crash');
is(($crash->{promote_requests}) . '/' . scalar(keys %{ $crash->{promote_keys} }) . '/' . $crash->{promotions},
	'2/1/1', 'the resend carried the same key: one promotion');
is(q1(q{SELECT driftmirror.dm_route('crash', 'c2', 'write')}), "$url/crash/instance/$c2_name",
	'the routes point at the new primary');
like(slurp_file($a->logfile, $log_offset), qr/recovering actuator promotion $id left in state switching/,
	'the recovery is logged');

# killed again mid-request, and the main worker only looks after the
# deadline (driftmirror.enabled off meanwhile): the recovery aborts
mirror_ready('crash', 'c2', 'c2 is ready again');
my $c2_routes = routes('crash', 'c2');
$act->configure('crash', promote_mode => 'hang', promote_times => undef);
$bg = $a->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, q{\echo started
SELECT * FROM driftmirror.dm_promote('crash', 'c2', '{"promote_timeout": "15s"}');
});
$act->wait_for('crash', sub { ($_[0]->{hung} // 0) == 2 }, 'the next promote request hangs');
q1(q{ALTER SYSTEM SET driftmirror.enabled = off; SELECT pg_reload_conf()});
ok($a->poll_query_until('postgres', q{SELECT state = 'disabled' FROM driftmirror.dm_status WHERE group_name = 'crash'}),
	'the worker has read its configuration: disabled');
$id = last_promotion('crash', 'id');
$wpid = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'driftmirror promotion'});
kill 'KILL', $wpid;
eval { $bg->quit; };
dm_wait_for($a, qq{SELECT clock_timestamp() > deadline FROM driftmirror.dm_promotions WHERE id = $id},
	't', 'the deadline passes while nobody drives the promotion');
is(last_promotion('crash', 'state'), 'switching', 'it is still recorded in switching');
q1(q{ALTER SYSTEM RESET driftmirror.enabled; SELECT pg_reload_conf()});
dm_wait_for($a, qq{SELECT state FROM driftmirror.dm_promotions WHERE id = $id},
	'rolled_back', 'the recovery finds the deadline passed, aborts, and the actuator confirms');
is(steps($id), 'guardrails:ok,actuator_switch:interrupted,actuator_switch:failed,abort:ok',
	'the steps: interrupted, timed out, aborted');
$crash = $act->counters('crash');
is(($crash->{promotions}) . '/' . ($crash->{undone} // 0), '2/1', 'the actuator undid the promotion it had begun');
is(routes('crash', 'c2'), $c2_routes, 'the routes did not change');

# ---------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'plain')});
is("$code $msg", '55000 resource "plain" of group "solo" has no mirror to promote', 'a resource without a mirror');
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'nope')});
is("$code $msg", '42704 resource "nope" does not exist in group "solo"', 'an unknown resource');
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('solo', 'c1', '{"promote_abort_timeout": "0s"}')});
is($code, '22023', 'a bad promote_abort_timeout');
q1(q{SELECT driftmirror.dm_create_group('empty', '{}'); SELECT driftmirror.dm_add_resource('empty', 'w', 'web', 'http://127.0.0.1:1/w')});
($code, $msg) = promote_err(q{SELECT * FROM driftmirror.dm_promote('empty')});
is("$code $msg", '55000 group "empty" has no resource with a mirror to promote', 'a group without mirrors');

# ---------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------
my $log = slurp_file($a->logfile, $log_offset);
unlike($log, qr/\Q$token\E/, 'the token is not in the server log');
is(q1(qq{SELECT count(*) FROM driftmirror.dm_actions WHERE inputs::text LIKE '%$token%' OR reason LIKE '%$token%'}),
	'0', 'nor in the action log');
is(q1(qq{SELECT count(*) FROM driftmirror.dm_promotions WHERE row_to_json(dm_promotions)::text LIKE '%$token%'}),
	'0', 'nor in dm_promotions');
q1('CREATE ROLE mon LOGIN IN ROLE driftmirror_monitor');
is(q1(q{SET ROLE mon; SELECT count(*) FROM driftmirror.dm_promotions
	WHERE old_primary IS NOT NULL OR new_primary IS NOT NULL OR actuator_detail IS NOT NULL}),
	'0', 'monitors see no endpoints or actuator details');

$act->stop;
done_testing();
