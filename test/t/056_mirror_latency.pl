# 056_mirror_latency.pl: the latency of a mirror against its primary, and
# auto-promotion's latency ratio gate, with real clusters and a real
# slowdown.
#
# The worker times the same probe on both nodes at every status read (a
# read of the first replicated table that returns no row): the latency
# columns of dm_mirror_status and the metrics mirror.primary_latency_ms /
# mirror.mirror_latency_ms fill.  Then a maintenance session on the mirror
# holds an ACCESS EXCLUSIVE lock on that table (as VACUUM FULL would), so the mirror's probe waits like any
# client read until driftmirror.latency_probe_timeout (300 ms here) cancels
# it: the mirror's samples are 300 ms against well under a millisecond on
# the primary, the median ratio over auto_promote_window exceeds
# auto_promote_max_latency_ratio (2), and auto-promotion holds off with that
# reason although the mirror takes all reads.  Once the lock is released
# the fast samples outnumber the slow ones, the window (1 minute) starts,
# and the worker promotes with the ratio in the recorded reason.  After the
# promotion the samples of the old pair no longer count.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;
use DmPair;

my $p = dm_pair(
	group_options => '{"auto_promote": true, "auto_promote_window": "1 minute", "auto_promote_max_latency_ratio": 2}',
	conf => "driftmirror.latency_probe_timeout = 300ms\n");
my ($a, $b) = ($p->{a}, $p->{b});

# the measurement
dm_wait_for($a, q{SELECT primary_latency_ms > 0 AND mirror_latency_ms > 0 AND latency_ratio > 0
	AND latency_samples > 0 FROM driftmirror.dm_mirror_status},
	't', 'both nodes have latency samples and a ratio');
dm_wait_for($a, q{SELECT count(DISTINCT metric) = 2 AND bool_and(value > 0 AND unit = 'ms')
	FROM driftmirror.dm_metrics
	WHERE resource_name = 'db' AND metric IN ('mirror.primary_latency_ms', 'mirror.mirror_latency_ms')},
	't', 'the samples are stored as metrics of the primary resource');
is($a->safe_psql('postgres', q{SELECT driftmirror._mirror_probe_sql(m) FROM driftmirror.mirror m}),
	'SELECT FROM public.dm_probe WHERE false', 'the probe reads the first replicated table');
is($a->safe_psql('postgres', q{SELECT latency_error IS NULL FROM driftmirror.dm_mirror_status}),
	't', 'no probe failed');
dm_wait_for($a, q{SELECT last_reason LIKE '%takes 0% of reads, not 100%' AND last_reason NOT LIKE '%latency%'
	FROM driftmirror.dm_auto_promotion},
	't', 'the latency ratio passes while both nodes are fast (only the reads are missing)');

# a real slowdown: client reads of the table wait for a lock on the mirror,
# held by a maintenance session (VACUUM FULL or ALTER TABLE take the same
# lock; the mirror is fenced, so the session passes the fence as a DBA's
# maintenance would)
my $locker = $b->background_psql('app');
$locker->query_safe('SELECT driftmirror_node.session_bypass()');
$locker->query_safe('BEGIN; LOCK TABLE public.dm_probe IN ACCESS EXCLUSIVE MODE');
dm_wait_for($a, q{SELECT mirror_latency_ms >= 300 FROM driftmirror.dm_mirror_status},
	't', 'the mirror\'s probe waits for the lock until its deadline');
dm_wait_for($a, q{SELECT latency_ratio > 2 FROM driftmirror.dm_mirror_status},
	't', 'once slow samples are the majority of the window, the ratio exceeds the limit');

# the end of a read shift: all reads on the mirror
reads_to_mirror($p);
dm_wait_for($a, q{SELECT last_reason ~ '^latency ratio [0-9.]+ exceeds auto_promote_max_latency_ratio 2 [(]median [0-9.]+ ms on the mirror, [0-9.]+ ms on the primary[)]$'
	FROM driftmirror.dm_auto_promotion},
	't', 'auto-promotion holds off, and the latency ratio is the only reason');
my $seen = $a->safe_psql('postgres', 'SELECT checked_at FROM driftmirror.dm_auto_promotion');
dm_wait_for($a, qq{SELECT checked_at > '$seen'::timestamptz + interval '3 seconds' FROM driftmirror.dm_auto_promotion},
	't', 'the worker keeps checking');
is($a->safe_psql('postgres', q{SELECT holding_since IS NULL AND last_reason LIKE 'latency ratio % exceeds %'
	FROM driftmirror.dm_auto_promotion}), 't', 'the window does not start while the mirror is slow');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions'), '0', 'no promotion');

# fast again
$locker->query_safe('COMMIT');
$locker->quit;
dm_wait_for($a, q{SELECT holding_since IS NOT NULL AND last_reason ~ '^thresholds hold.*[(]latency ratio [0-9.]+[)]$'
	FROM driftmirror.dm_auto_promotion},
	't', 'fast again: the window starts');
note($a->safe_psql('postgres', q{SELECT format('latency now: primary %s ms, mirror %s ms; window medians %s / %s ms, ratio %s over %s samples',
	primary_latency_ms, mirror_latency_ms, primary_latency_median_ms, mirror_latency_median_ms, latency_ratio, latency_samples)
	FROM driftmirror.dm_mirror_status}));

# the promotion comes after the window (at least a minute)
dm_wait_for($a, q{SELECT count(*) = 1 FROM driftmirror.dm_promotions WHERE state = 'done'},
	't', 'the worker promoted the mirror');
my $reason = $a->safe_psql('postgres', 'SELECT reason FROM driftmirror.dm_promotions');
note("reason: $reason");
like($reason, qr/^auto-promotion: for 00:01:00 the mirror took 100% of reads, .*, latency ratio [0-9.]+ within 2 \(median [0-9.]+ ms on the mirror, [0-9.]+ ms on the primary\)$/,
	'the recorded reason has the latency ratio');
is($a->safe_psql('postgres', q{SELECT trigger FROM driftmirror.dm_promotions}), 'auto', 'an auto-promotion');
is($a->safe_psql('postgres', q{SELECT (inputs ->> 'latency_ratio')::numeric <= 2
	AND (inputs ->> 'max_latency_ratio')::numeric = 2
	AND (inputs ->> 'mirror_latency_samples')::int > 0 AND (inputs ->> 'primary_latency_samples')::int > 0
	FROM driftmirror.dm_actions WHERE kind = 'auto_promote'}), 't', 'the decision\'s figures hold the ratio and its samples');
is(primary_of($p), $b, 'b is the primary');

# the pair is reversed: the earlier samples describe other roles and no
# longer count; new ones arrive
ok(wait_mirroring($p), 'the old primary mirrors the new one');
dm_wait_for($a, q{SELECT primary_latency_ms > 0 AND mirror_latency_ms > 0 AND latency_ratio IS NOT NULL
	AND latency_samples > 0 FROM driftmirror.dm_mirror_status},
	't', 'latency is measured again for the new pair');
is($a->safe_psql('postgres', q{SELECT l.primary_samples + l.mirror_samples < (SELECT count(*) FROM driftmirror.dm_metrics
	WHERE metric IN ('mirror.primary_latency_ms', 'mirror.mirror_latency_ms'))
	FROM driftmirror.mirror m, driftmirror._mirror_latency(m.id, interval '1 hour') l}),
	't', 'samples from before the promotion are left out of the ratio');
dm_wait_for($a, q{SELECT last_reason LIKE '%takes 0% of reads, not 100%' FROM driftmirror.dm_auto_promotion},
	't', 'no promotion back: the new mirror takes no reads');

done_testing();
