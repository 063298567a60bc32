# 053_auto_promote.pl: the worker promotes a mirror on its own when the
# group allows it and the thresholds hold for the whole window.
#
# With auto_promote on but the mirror taking no reads, nothing happens and
# dm_auto_promotion says why.  Once the mirror's read route has weight 100
# (the end of a read shift), the thresholds (lag, no new apply error, fresh
# status, latency ratio within the default 1.2) must hold for
# auto_promote_window (1 minute, the shortest allowed); then the worker
# promotes, dm_promotions records trigger 'auto' with the reason, and the
# action log has the decision with its figures.
# Afterwards reads route to the new primary, so it does not flip back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DmTest;
use DmProbe;
use DmPair;

my $p = dm_pair(group_options => '{"auto_promote": true, "auto_promote_window": "1 minute"}');
my ($a, $b) = ($p->{a}, $p->{b});

dm_wait_for($a, q{SELECT last_reason LIKE '%takes 0% of reads, not 100%' FROM driftmirror.dm_auto_promotion},
	't', 'without read traffic on the mirror, auto-promotion waits and says why');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions'), '0', 'no promotion yet');

# the end of a read shift: all reads on the mirror
reads_to_mirror($p);
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route('orders', 'db', 'read') = m.mirror_endpoint FROM driftmirror.mirror m}),
	't', 'dm_route sends reads to the mirror');

dm_wait_for($a, q{SELECT holding_since IS NOT NULL FROM driftmirror.dm_auto_promotion},
	't', 'the window starts once the thresholds hold');
my $probe = probe_start($p->{probe}, $p->{multihost}, clients => 2, rate => 100);

# the promotion comes after the window (at least a minute)
dm_wait_for($a, q{SELECT count(*) = 1 FROM driftmirror.dm_promotions WHERE state = 'done'},
	't', 'the worker promoted the mirror');
is($a->safe_psql('postgres', q{SELECT trigger || ' ' || (reason LIKE 'auto-promotion: for 00:01:00 the mirror took 100% of reads%')
	FROM driftmirror.dm_promotions}), 'auto true', 'recorded as an auto-promotion with its reason');
like($a->safe_psql('postgres', q{SELECT reason FROM driftmirror.dm_promotions}),
	qr/, latency ratio [0-9.]+ within 1\.2 \(median [0-9.]+ ms on the mirror, [0-9.]+ ms on the primary\)$/,
	'the latency ratio held the default limit under write load (056_mirror_latency.pl tests a slow mirror)');
is($a->safe_psql('postgres', q{SELECT finished_at IS NOT NULL FROM driftmirror.dm_promotions}),
	't', 'it finished');
is($a->safe_psql('postgres', q{SELECT count(*) FROM driftmirror.dm_actions WHERE kind = 'auto_promote'
	AND inputs ? 'lag_bytes' AND inputs ->> 'read_weight' = '100'}), '1', 'the decision and its figures are in the action log');
is(primary_of($p), $b, 'b is the primary');
ok(writable($b) && !writable($a), 'exactly one node takes writes');
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route('orders', 'db', 'read') = endpoint FROM driftmirror.dm_resources WHERE name = 'db'}),
	't', 'reads route to the new primary');

ok(wait_mirroring($p), 'the old primary mirrors the new one');
dm_wait_for($a, q{SELECT last_reason LIKE '%takes 0% of reads, not 100%' FROM driftmirror.dm_auto_promotion},
	't', 'no promotion back: the new mirror takes no reads');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_promotions'), '1', 'still one promotion');

my $summary = probe_stop($probe);
note("probe: $summary");
my ($rc, $check) = probe_check($p->{probe}, $probe, $p->{cb}, $p->{ca});
note("check: $check");
is($rc, 0, 'no acknowledged write lost, both nodes identical');

done_testing();
