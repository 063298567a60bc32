# 066_shift_plan.pl: shift plans run by the worker, with a real HAProxy
# following every step.
#
# Bad plans are refused with nothing recorded.  A plan 10 -> 25 -> 50 ->
# 100 % of reads: HAProxy's weights (read back from HAProxy) go through
# exactly those steps, every step is logged with its gate readings, and
# dm_shift is refused while it runs.  Under write load the mirror's
# subscription is disabled: the lag gate fails and the plan rolls back to
# the shares before it by itself.  A plan survives a restart of the
# control node (the worker and the server) and finishes.  Pause keeps the
# shares, resume continues, abort returns to the shares the plan started
# from.  A gate on a metric of the store holds the step without a sample
# and rolls it back when a sample crosses the threshold.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use DmTest;
use DmProbe;
use DmPair;
use DmRouters;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $p = dm_pair();
my ($a, $b) = ($p->{a}, $p->{b});
my $hap = haproxy_start($dir, { a => $a, b => $b });
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_router('orders', 'lb', 'haproxy', 'unix:$hap->{socket}',
		'{"backends": {"read": "pg_read"}, "servers": {"a": "primary", "b": "mirror"}}')});
dm_wait_for($a, q{SELECT in_sync AND state = 'applied' FROM driftmirror.dm_routers}, 't', 'the router is in sync');

sub refused
{
	my ($plan, $state, $what) = @_;
	my ($rc, $out, $err) = $a->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT driftmirror.dm_shift_plan('orders', '$plan')");
	like($err, qr/ERROR:  $state/, "$what ($state)");
}

# ---- bad plans: refused, nothing recorded ----
refused('[]', '22023', 'a plan that is not an object');
refused('{"steps": []}', '22023', 'no steps');
refused('{"steps": [{"read": 120}]}', '22023', 'a share above 100');
refused('{"steps": [{"read": 2.5}]}', '22023', 'a fractional share');
refused('{"steps": [{"read": 10, "speed": 1}]}', '22023', 'an unknown step key');
refused('{"steps": [{"read": 10}], "gates": {"max_fun": 1}}', '22023', 'an unknown gate');
refused('{"steps": [{"read": 10}], "hold": "soon"}', '22023', 'a hold that is not an interval');
refused('{"steps": [{"read": 10}], "hold": "0 s"}', '22023', 'a hold under a second');
refused('{"steps": [{"read": 10}], "gates": {"metrics": [{"metric": "no.such", "resource": "db", "max": 1}]}}',
	'42704', 'an unknown metric');
refused('{"steps": [{"read": 10}, {"write": 5}]}', '55000', 'a write share on a one-way mirror');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_shift_status'), '0', 'no plan was recorded');
my ($rc, $out, $err) = $a->psql('postgres', "SELECT driftmirror.dm_shift_pause('orders')");
like($err, qr/has no shift plan running/, 'nothing to pause');

# ---- a plan: HAProxy follows every step ----
my $plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 10}, {"read": 25}, {"read": 50}, {"read": 100}], "hold": "3 s",
	  "gates": {"max_lag_bytes": 16777216, "max_lag_seconds": 30}}')});
($rc, $out, $err) = $a->psql('postgres', "\\set VERBOSITY verbose\nSELECT driftmirror.dm_shift('orders', 5)");
like($err, qr/ERROR:  55006/, 'dm_shift is refused while a plan runs');
my @seen;
for (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
{
	my $w = haproxy_weights($hap)->{b};
	push @seen, $w if !@seen || $seen[-1] ne $w;
	last if $a->safe_psql('postgres', 'SELECT state FROM driftmirror.dm_shift_status') eq 'done'
	  && $w eq '100';
	select(undef, undef, undef, 0.1);
}
shift @seen if $seen[0] eq '0/drain';
is(join(' ', @seen), '10 25 50 100', 'HAProxy took the weights of every step in order');
is($a->safe_psql('postgres', q{SELECT state || ' ' || read_pct FROM driftmirror.dm_shift_status}), 'done 100',
	'the plan is done at 100 % of reads');
is($a->safe_psql('postgres', qq{SELECT string_agg((inputs ->> 'step') || ':' || (inputs ->> 'outcome'), ' ' ORDER BY id)
	FROM driftmirror.dm_actions WHERE kind = 'shift_step' AND (inputs ->> 'plan_id')::bigint = $plan}),
	'1:started 1:passed 2:started 2:passed 3:started 3:passed 4:started 4:passed', 'every step is logged');
is($a->safe_psql('postgres', qq{SELECT bool_and(inputs -> 'readings' -> 'db' ? 'lag_bytes')
	FROM driftmirror.dm_actions WHERE kind = 'shift_step' AND inputs ->> 'outcome' = 'passed'}),
	't', 'with the gate readings');
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route('orders', 'db', 'read', 'k1')
	= (SELECT driftmirror.dm_client_conninfo(mirror_endpoint) FROM driftmirror.mirror)}), 't',
	'client-side routes followed');

# ---- a gate fails under write load: the plan rolls back by itself ----
$a->safe_psql('postgres', q{SELECT driftmirror.dm_shift('orders', 0)});
ok(wait_mirroring($p), 'mirroring before the gated plan');
my $probe = probe_start($p->{probe}, $p->{multihost}, clients => 2, rate => 200);
$plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 25}, {"read": 50}], "hold": "10 minutes", "gates": {"max_lag_bytes": 300000}}')});
dm_wait_for($a, q{SELECT step = 1 FROM driftmirror.dm_shift_status WHERE state = 'running'}, 't', 'step 1 runs');
dm_wait_for($a, q{SELECT in_sync FROM driftmirror.dm_routers}, 't', 'HAProxy has step 1');
is(haproxy_weights($hap)->{b}, '25', 'HAProxy sends 25 % to the mirror');
my $sub = $a->safe_psql('postgres', 'SELECT subscription_name FROM driftmirror.mirror');
$b->safe_psql('app', qq{SELECT driftmirror_node.session_bypass(); ALTER SUBSCRIPTION "$sub" DISABLE});
dm_wait_for($a, q{SELECT state FROM driftmirror.dm_shift_status WHERE plan_id = (SELECT max(plan_id) FROM driftmirror.dm_shift_status)},
	'rolled_back', 'the lag gate failed and the plan rolled back by itself');
like($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_shift_status WHERE state = 'rolled_back'}),
	qr/step 1 failed its gates \(lag of db \d+ bytes exceeds max_lag_bytes 300000\): back to the shares before the plan/,
	'the reason names the gate and its reading');
is($a->safe_psql('postgres', q{SELECT read_pct FROM driftmirror.dm_shifts}), '0', 'the shares are back to 0');
dm_wait_for($a, q{SELECT in_sync FROM driftmirror.dm_routers}, 't', 'HAProxy has the rollback');
is(haproxy_weights($hap)->{b}, '0/drain', 'HAProxy drains the mirror again');
is($a->safe_psql('postgres', qq{SELECT outcome || ' ' || ((inputs -> 'readings' -> 'db' ->> 'lag_bytes')::bigint > 300000)
	FROM driftmirror.dm_actions WHERE kind = 'shift_step' AND inputs ->> 'outcome' = 'rolled_back'}),
	'failed true', 'the rollback is logged with its gate readings');
$b->safe_psql('app', qq{SELECT driftmirror_node.session_bypass(); ALTER SUBSCRIPTION "$sub" ENABLE});
my $summary = probe_stop($probe);
ok(wait_mirroring($p), 'the mirror catches up once its subscription is enabled');

# ---- a plan survives a restart of the control node ----
# (a is also the primary: its restart breaks the mirror's subscription
# connection, which pg_stat_subscription_stats counts as an apply error;
# the plan allows a few)
$plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 10}, {"read": 20}], "hold": "4 s", "gates": {"max_apply_errors": 5}}')});
dm_wait_for($a, q{SELECT step = 1 FROM driftmirror.dm_shift_status WHERE state = 'running'}, 't', 'step 1 of the next plan runs');
$a->restart;
dm_wait_for($a, qq{SELECT state FROM driftmirror.dm_shift_status WHERE plan_id = $plan}, 'done',
	'after the restart the plan went on and finished')
  or diag($a->safe_psql('postgres', qq{SELECT reason FROM driftmirror.dm_shift_status WHERE plan_id = $plan}));
dm_wait_for($a, q{SELECT in_sync FROM driftmirror.dm_routers}, 't', 'HAProxy is in sync');
is(haproxy_weights($hap)->{b}, '20', 'HAProxy at the last step');

# ---- pause, resume, abort ----
$plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 30}, {"read": 60}], "hold": "3 s"}')});
dm_wait_for($a, q{SELECT step = 1 FROM driftmirror.dm_shift_status WHERE state = 'running'}, 't', 'the plan runs');
my $paused_at = $a->safe_psql('postgres', q{SELECT clock_timestamp() FROM driftmirror.dm_shift_pause('orders')});
# the worker steps the group past the hold: a paused plan must not move on
dm_wait_for($a, qq{SELECT last_step_at > '$paused_at'::timestamptz + interval '4 s' FROM driftmirror.group_state},
	't', 'the worker stepped the group for longer than the hold');
is($a->safe_psql('postgres', qq{SELECT state || ' ' || step FROM driftmirror.dm_shift_status WHERE plan_id = $plan}),
	'paused 1', 'a paused plan stays in its step');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_resume('orders')});
dm_wait_for($a, qq{SELECT step = 2 FROM driftmirror.dm_shift_status WHERE plan_id = $plan}, 't', 'resumed, it goes on');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_abort('orders')});
is($a->safe_psql('postgres', qq{SELECT state || ' ' || read_pct FROM driftmirror.dm_shift_status WHERE plan_id = $plan}),
	'aborted 20', 'abort returns to the shares the plan started from');
dm_wait_for($a, q{SELECT in_sync FROM driftmirror.dm_routers}, 't', 'HAProxy follows the abort');
is(haproxy_weights($hap)->{b}, '20', 'HAProxy back at 20');

# ---- a gate on a metric of the store ----
$a->safe_psql('postgres', q{SELECT driftmirror.dm_register_metric('app.errors_per_s', '1/s', 'test: client errors')});
$plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 40}], "hold": "10 minutes",
	  "gates": {"metrics": [{"metric": "app.errors_per_s", "resource": "db", "max": 5}]}}')});
dm_wait_for($a, qq{SELECT reason LIKE '%waiting for a reading of metric app.errors_per_s of db%'
	FROM driftmirror.dm_shift_status WHERE plan_id = $plan AND state = 'running'},
	't', 'without a sample the metric gate holds the step and says so');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_ingest('orders', 'db', 'app.errors_per_s', ARRAY[clock_timestamp()], ARRAY[1.0])});
dm_wait_for($a, qq{SELECT last_readings ->> 'db/app.errors_per_s' FROM driftmirror.dm_shift_status WHERE plan_id = $plan},
	'1', 'a sample under the threshold is read');
is($a->safe_psql('postgres', qq{SELECT state FROM driftmirror.dm_shift_status WHERE plan_id = $plan}), 'running',
	'and the step goes on');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_ingest('orders', 'db', 'app.errors_per_s', ARRAY[clock_timestamp()], ARRAY[12.0])});
dm_wait_for($a, qq{SELECT state FROM driftmirror.dm_shift_status WHERE plan_id = $plan}, 'rolled_back',
	'a sample above the threshold rolls the plan back');
like($a->safe_psql('postgres', qq{SELECT reason FROM driftmirror.dm_shift_status WHERE plan_id = $plan}),
	qr/metric app\.errors_per_s of db reached 12, above 5\): back to the shares before the plan \(20% of reads/,
	'to the shares before the plan, naming the metric');

router_stop($hap);
done_testing();
