# 081_drift.pl: drift of a mirror from its primary, forecast over the lead
# time, holds auto-promotion before the breach, with real clusters and a
# real, growing lag; and holds the next step of a shift plan.
#
# The group promotes automatically (window 1 minute, the shortest) once its
# mirror takes all reads; auto_promote_max_lag_seconds is 30, so drift.lag
# is the lag over 30 s and drift_threshold (1, the default) is a 30 s lag
# (auto_promote_max_latency_ratio is 10: the latency of two clusters on a
# loaded test machine must not count as drift here; its arithmetic is in
# pg_regress drift).  Before the
# reads move, a session on the mirror locks a row of orders (FOR UPDATE, as
# a long report would) and the primary updates that row: the apply worker
# waits behind the lock and the lag grows by a second every second.  Reads
# then move to the mirror by a shift plan (50 %, then 100 %).  The
# worker's drift phase stores drift.* each step and forecasts drift.score
# over lead_time (10 s): the forecast's upper bound crosses the threshold
# while the score is still under it, and in mode forecast_and_scale the
# drift holds auto-promotion and keeps the plan on step 1, with the reason
# in dm_auto_promotion, dm_shift_status, dm_status and dm_actions (kind
# 'drift', the forecast, bound and threshold in its inputs).  The lock is
# then released, the mirror catches up, the drift (and its forecast) goes
# back under 0.8 x the threshold, the hold is released (and not before:
# no release while the lag grows), the plan ends at 100 %
# of reads, and auto-promotion's window starts.  The mirror's resource has
# a scaling policy (an SQL actuator, no data for its demand metric): the
# drift scales it up by one instance, once in scale_cooldown.
#
# Then errors normalised by traffic: the mirror fails 40 transactions while
# both nodes serve only the worker's own reads and the applied changes, and
# its drift.error_rate (failed transactions per transaction beyond the
# primary's, per hundred) breaches the threshold and holds auto-promotion
# again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmPair;

my $p = dm_pair(group_options => '{"auto_promote": true, "auto_promote_window": "1 minute",
	"auto_promote_max_lag_seconds": 30, "auto_promote_max_latency_ratio": 10,
	"mode": "forecast_and_scale", "lead_time": "10 seconds"}');
my ($a, $b) = ($p->{a}, $p->{b});

# the resource has a scaling policy whose SQL actuator records its calls;
# its demand metric has no data, so no model: only drift can scale it
$a->safe_psql('postgres', q{
	CREATE TABLE public.scaled (capacity int, at timestamptz DEFAULT now());
	CREATE FUNCTION public.scale_it(g text, r text, c integer) RETURNS void LANGUAGE sql
	    AS $$ INSERT INTO public.scaled (capacity) VALUES (c) $$;
	SELECT driftmirror.dm_alter_resource('orders', 'db', options => '{"scale_metric": "pg.connections_active",
		"unit_capacity": 100, "scale_function": "public.scale_it"}');
});

# drift is measured and stored while the mirror keeps up
dm_wait_for($a, q{SELECT count(DISTINCT metric) = 5 FROM driftmirror.dm_metrics
	WHERE resource_name = 'db'
	  AND metric IN ('drift.lag', 'drift.latency', 'drift.apply_errors', 'drift.error_rate', 'drift.score')},
	't', 'the drift metrics are stored each step, the error rate per transaction of each node included');
dm_wait_for($a, q{SELECT decision = 'ok' AND NOT held AND upper IS NOT NULL FROM driftmirror.drift_state},
	't', 'a mirror that keeps up: no drift, and a forecast of the score');

# a real, growing lag: the apply worker waits for a row lock on the mirror
my $locker = $b->background_psql('app');
$locker->query_safe('SELECT driftmirror_node.session_bypass()');
$locker->query_safe('BEGIN; SELECT * FROM orders WHERE id = 1 FOR UPDATE');
$a->safe_psql('app', q{UPDATE orders SET note = 'changed while the mirror is locked' WHERE id = 1});
dm_wait_for($a, q{SELECT lag_seconds > 3 FROM driftmirror.dm_mirror_status}, 't', 'the lag grows');

# the forecast breaches the threshold before the drift does
dm_wait_for($a, q{SELECT count(*) > 0 FROM driftmirror.dm_actions WHERE kind = 'drift' AND outcome = 'held'},
	't', 'drift holds the mirror');
my $first = $a->safe_psql('postgres', q{SELECT format('%s %s %s %s %s', inputs ->> 'decision',
	(inputs ->> 'score')::float8 < 1, (inputs ->> 'forecast_upper')::float8 >= 1,
	inputs ->> 'threshold', inputs ->> 'bound')
	FROM driftmirror.dm_actions WHERE kind = 'drift' ORDER BY id LIMIT 1});
note('first drift decision: ' . $a->safe_psql('postgres',
	q{SELECT inputs FROM driftmirror.dm_actions WHERE kind = 'drift' ORDER BY id LIMIT 1}));
is($first, 'forecast_breach t t 1 95%',
	'the first decision is a forecast breach, taken while the score is under the threshold, with its inputs');
like($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_actions WHERE kind = 'drift' ORDER BY id LIMIT 1}),
	qr/^drift score [0-9.]+ is forecast to reach [0-9.]+ \(95% upper bound\) within the lead time, at or over drift_threshold 1$/,
	'the action says why');

# reads move to the mirror by a shift plan: step 1 starts, then drift holds
# the plan on it (its own gates allow a lag of 120 s)
my $plan = $a->safe_psql('postgres', q{SELECT driftmirror.dm_shift_plan('orders',
	'{"steps": [{"read": 50}, {"read": 100}], "hold": "2 s", "gates": {"max_lag_seconds": 120}}')});
dm_wait_for($a, qq{SELECT step = 1 AND state = 'running' AND reason ~ '^step 1 of 2: 50% of reads, 0% of writes, held by drift [(]db: drift score [0-9.]+ is (forecast to reach|at or over)'
	FROM driftmirror.dm_shift_status WHERE plan_id = $plan},
	't', 'the shift plan is held on step 1 by drift, and says so');
dm_wait_for($a, q{SELECT last_reason LIKE '%takes 50% of reads, not 100%; drift: drift score %'
	AND holding_since IS NULL FROM driftmirror.dm_auto_promotion},
	't', 'auto-promotion is held, with drift in its reason');
like($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_status WHERE group_name = 'orders'}),
	qr/; drift of resource "db": drift score [0-9.]+ is (forecast to reach|at or over)/, 'dm_status says it');
my $seen = $a->safe_psql('postgres', 'SELECT checked_at FROM driftmirror.dm_auto_promotion');
dm_wait_for($a, qq{SELECT checked_at > '$seen'::timestamptz + interval '3 seconds' FROM driftmirror.dm_auto_promotion},
	't', 'the worker keeps checking');
is($a->safe_psql('postgres', qq{SELECT step FROM driftmirror.dm_shift_status WHERE plan_id = $plan}),
	'1', 'the plan is still on step 1');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions'), '0', 'no promotion');
is($a->safe_psql('postgres', q{SELECT count(*) FROM driftmirror.dm_actions WHERE kind = 'drift' AND outcome <> 'held'}),
	'0', 'no release while the lag grows');
dm_wait_for($a, q{SELECT count(*) > 0 FROM public.scaled}, 't', 'drift scales the resource');
my $before = $a->safe_psql('postgres', 'SELECT max(id) FROM driftmirror.dm_actions');

# the lock goes: the mirror catches up, the drift and its forecast fall
$locker->query_safe('COMMIT');
$locker->quit;
dm_wait_for($a, qq{SELECT count(*) > 0 FROM driftmirror.dm_actions WHERE kind = 'drift' AND outcome = 'released' AND id > $before},
	't', 'the drift goes away and the hold is released');
note('release: ' . $a->safe_psql('postgres',
	q{SELECT inputs FROM driftmirror.dm_actions WHERE kind = 'drift' AND outcome = 'released' ORDER BY id LIMIT 1}));
is($a->safe_psql('postgres', q{SELECT (inputs ->> 'score')::float8 < 0.8 AND (inputs ->> 'forecast_upper')::float8 < 0.8
	FROM driftmirror.dm_actions WHERE kind = 'drift' AND outcome = 'released' ORDER BY id LIMIT 1}),
	't', 'released on a score and forecast under 0.8 x the threshold');
dm_wait_for($a, qq{SELECT state = 'done' AND read_pct = 100 FROM driftmirror.dm_shift_status WHERE plan_id = $plan},
	't', 'the plan goes on to its end');
unlike($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_status WHERE group_name = 'orders'}),
	qr/drift/, 'dm_status no longer mentions drift');
# the release lets auto-promotion start its window (the promotion at its
# end is auto-promotion's own, TAP 053: waiting for it here took a minute)
dm_wait_for($a, q{SELECT holding_since IS NOT NULL AND last_reason NOT LIKE '%drift%' FROM driftmirror.dm_auto_promotion},
	't', 'auto-promotion is no longer held: its window runs');

# drift scaled the mirror's resource: one instance more (no model of its
# demand: the demand policy alone holds), once in scale_cooldown (10
# minutes, longer than this test)
is($a->safe_psql('postgres', q{SELECT string_agg(capacity::text, ',' ORDER BY at) FROM public.scaled}),
	'2', 'drift scales the resource up by one instance through its SQL actuator, once per scale_cooldown');
like($a->safe_psql('postgres', q{SELECT format('%s %s %s %s', outcome, inputs ->> 'target', inputs ->> 'drift' IS NOT NULL, reason)
	FROM driftmirror.dm_actions WHERE kind = 'scale' ORDER BY id}),
	qr/^done 2 t drift of its mirror \(drift score [0-9.]+ is (forecast to reach|at or over) .*\): one more instance than the 1 planned/,
	'the scale action says it was drift, with the drift in its inputs');
is($a->safe_psql('postgres', q{SELECT capacity FROM driftmirror.resource WHERE name = 'db'}), '2',
	'the new capacity is recorded');

# errors per transaction: the mirror fails 40 of what it is asked, the
# primary none; the worker's own reads and the applied changes are the
# rest of both nodes' traffic over the window
my $before_errors = $a->safe_psql('postgres', 'SELECT max(id) FROM driftmirror.dm_actions');
my $rollbacks_before = $a->safe_psql('postgres', q{SELECT max(value) FROM driftmirror.dm_metrics
	WHERE resource_name = 'db' AND metric = 'mirror.mirror_rollbacks'});
$b->psql('app', "SELECT 1 / 0;\n" x 40, on_error_stop => 0);
dm_wait_for($a, qq{SELECT count(*) > 0 FROM driftmirror.dm_actions
	WHERE kind = 'drift' AND id > $before_errors AND outcome = 'held' AND inputs ->> 'decision' = 'breach'
	  AND (inputs ->> 'error_rate')::float8 >= 1},
	't', 'failed transactions on the mirror: drift.error_rate breaches and holds the mirror');
like($a->safe_psql('postgres', qq{SELECT format('%s %s', (inputs ->> 'error_rate')::float8 = (inputs ->> 'score')::float8, reason)
	FROM driftmirror.dm_actions WHERE kind = 'drift' AND id > $before_errors AND inputs ->> 'decision' = 'breach'
	ORDER BY id LIMIT 1}),
	qr/^t drift score [0-9.]+ is at or over drift_threshold 1$/, 'the error rate is the score, and the action says so');
is($a->safe_psql('postgres', qq{SELECT max(value) - $rollbacks_before >= 40 FROM driftmirror.dm_metrics
	WHERE resource_name = 'db' AND metric = 'mirror.mirror_rollbacks'}),
	't', 'the mirror\'s rollbacks are stored as its database counts them');
dm_wait_for($a, q{SELECT holding_since IS NULL AND last_reason LIKE '%drift: drift score %' FROM driftmirror.dm_auto_promotion},
	't', 'auto-promotion is held again, by the error rate');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions'), '0', 'no promotion');

done_testing();
