# 065_routing.pl: routers follow dm_shift: a real HAProxy (runtime API),
# a real pgbouncer (admin console + its included [databases] file) and a
# loopback webhook receiver, in front of a real primary and its mirror.
#
# Bad input is refused with its SQLSTATE and nothing changes (shares
# outside 0-100 or fractional, unknown groups and routers, bad router
# options, a write share on a one-way mirror).  Then reads move 0 -> 25 ->
# 100 -> 0: HAProxy's weights (read back from HAProxy itself) and the
# connections it hands out follow, pgbouncer points at the node with the
# larger read share, dm_route follows with a stable choice per key, and
# the webhook receiver gets each change signed, retried after a 503 with
# the same idempotency key and applied once per key.  HAProxy down: the
# shift still sets the routes, reports the router failed (the monitor sees
# no raw error); back up, the worker brings it up to date by itself.  A
# promotion moves the routes; the worker re-applies the routers.  A
# pgbouncer console that logs in and never answers (test/lib/
# hung_pg_server.py) ends in the router's timeout, recorded.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use DmTest;
use DmHung;
use DmPair;
use DmRouters;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $p = dm_pair(conf => "driftmirror.router_files_directory = '$dir'\n");
my ($a, $b) = ($p->{a}, $p->{b});

# the routers
my $hap = haproxy_start($dir, { a => $a, b => $b });
open(my $inc, '>', "$dir/dm_databases.ini") or die;
print $inc "[databases]\napp_ro = host=" . $a->host . ' port=' . $a->port . " dbname=app\n";
close($inc);
my $bouncer = pgbouncer_start($dir, "$dir/dm_databases.ini");
mkdir($a->data_dir . '/driftmirror_secrets');
PostgreSQL::Test::Utils::append_to_file($a->data_dir . '/driftmirror_secrets/hook.key', "s3cret\n");
PostgreSQL::Test::Utils::append_to_file("$dir/hook.key", "s3cret\n");
my $hook = webhook_start($dir, "$dir/hook.key", 1);

# which node serves a connection (port of the server)
sub served_by
{
	my ($connstr, $n) = @_;
	my %count = (a => 0, b => 0);
	for (1 .. $n)
	{
		my $port = `psql -X -A -t -d '$connstr' -c "SELECT current_setting('port')"`;
		chomp $port;
		$count{ $port eq $a->port ? 'a' : $port eq $b->port ? 'b' : 'other' }++;
	}
	return \%count;
}
my $via_haproxy = "host=127.0.0.1 port=$hap->{port} dbname=app";
my $via_bouncer = "host=127.0.0.1 port=$bouncer->{port} dbname=app_ro";

sub refused
{
	my ($sql, $state, $what) = @_;
	my ($rc, $out, $err) = $a->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	like($err, qr/ERROR:  $state/, "$what ($state)");
}

my $routes_before = $a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.route');

# ---- bad input: refused, nothing changed ----
refused(q{SELECT driftmirror.dm_add_router('orders', 'r1', 'nginx', 'x')}, '22023', 'unknown kind');
refused(q{SELECT driftmirror.dm_add_router('nope', 'r1', 'webhook', 'http://127.0.0.1:1/')}, '42704', 'unknown group');
refused(q{SELECT driftmirror.dm_add_router('orders', 'r1', 'haproxy', 'unix:/tmp/x.sock', '{"backends": {"read": "b"}}')},
	'22023', 'haproxy without servers');
refused(q{SELECT driftmirror.dm_add_router('orders', 'r1', 'haproxy', 'unix:/tmp/x.sock',
	'{"backends": {"read": "b"}, "servers": {"a": "leader"}}')}, '22023', 'a server that is neither primary nor mirror');
refused(q{SELECT driftmirror.dm_add_router('orders', 'r1', 'webhook', 'http://127.0.0.1:1/', '{"colour": "red"}')},
	'22023', 'unknown option');
refused(q{SELECT driftmirror.dm_add_router('orders', 'r1', 'pgbouncer', 'host=127.0.0.1 password=x dbname=pgbouncer',
	'{"database": "app", "databases_file": "f"}')}, '22023', 'a password in an endpoint');
refused(q{SELECT driftmirror.dm_remove_router('orders', 'nope')}, '42704', 'removing an unknown router');
refused(q{SELECT driftmirror.dm_shift('orders', 101)}, '22023', 'a share above 100');
refused(q{SELECT driftmirror.dm_shift('orders', -1)}, '22023', 'a negative share');
refused(q{SELECT driftmirror.dm_shift('orders', 12.5)}, '22023', 'a fractional share');
refused(q{SELECT driftmirror.dm_shift('nope', 10)}, '42704', 'shifting an unknown group');
refused(q{SELECT driftmirror.dm_shift('orders', 10, 5)}, '55000', 'a write share on a one-way mirror');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_routers'), '0', 'no router was added');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.dm_shifts'), '0', 'no share was set');
is($a->safe_psql('postgres', 'SELECT count(*) FROM driftmirror.route'), $routes_before, 'no route changed');

# ---- the routers ----
$a->safe_psql('postgres', qq{
	SELECT driftmirror.dm_add_router('orders', 'lb', 'haproxy', 'unix:$hap->{socket}',
		'{"backends": {"read": "pg_read"}, "servers": {"a": "primary", "b": "mirror"}, "timeout": "2s"}');
	SELECT driftmirror.dm_add_router('orders', 'pool', 'pgbouncer', '$bouncer->{admin}',
		'{"database": "app_ro", "access": "read", "databases_file": "dm_databases.ini"}');
	SELECT driftmirror.dm_add_router('orders', 'mesh', 'webhook', 'http://127.0.0.1:$hook->{port}/hook',
		'{"hmac_key_file": "hook.key", "retries": 3, "timeout": "2s"}');
});
refused(qq{SELECT driftmirror.dm_add_router('orders', 'lb', 'webhook', 'http://127.0.0.1:1/')}, '42710', 'a duplicate router name');

# new routers are brought to the current shares (all on the primary) by the worker
dm_wait_for($a, q{SELECT bool_and(in_sync AND state = 'applied') FROM driftmirror.dm_routers},
	't', 'the worker brings new routers to the current shares');
is_deeply(haproxy_weights($hap), { a => '100', b => '0/drain' }, 'HAProxy: the mirror drains');

# ---- 25 % of reads ----
my $res = decode_json($a->safe_psql('postgres', q{SELECT driftmirror.dm_shift('orders', 25)}));
is_deeply([ map { "$_->{router}:" . ($_->{applied} ? 'applied' : 'failed') } @{ $res->{routers} } ],
	[ 'lb:applied', 'mesh:applied', 'pool:applied' ], 'dm_shift applied 25 % through every router');
is("$res->{read_pct}/$res->{write_pct}", '25/0', 'and returns the shares applied');
is_deeply(haproxy_weights($hap), { a => '75', b => '25' }, 'HAProxy weights 75/25 (read back from HAProxy)');
my $c = served_by($via_haproxy, 20);
ok($c->{a} > $c->{b} && $c->{b} > 0, "through HAProxy both nodes serve, the primary more (a $c->{a}, b $c->{b})");
is(served_by($via_bouncer, 3)->{a}, 3, 'pgbouncer stays on the primary, which has the larger read share');

# key-affine choice: a key stays on its node, and growing the share only moves keys to the mirror
my $keys_on_mirror = sub {
	$a->safe_psql('postgres', q{
		SELECT string_agg(k::text, ',' ORDER BY k) FROM generate_series(1, 200) k
		 WHERE driftmirror.dm_route('orders', 'db', 'read', k::text)
		       = (SELECT driftmirror.dm_client_conninfo(mirror_endpoint) FROM driftmirror.mirror)});
};
my @at25 = split /,/, $keys_on_mirror->();
ok(@at25 > 20 && @at25 < 80, 'about a quarter of the keys read from the mirror (' . scalar(@at25) . ' of 200)');
is($keys_on_mirror->(), join(',', @at25), 'the same keys again (stable per key)');
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route('orders', 'db', 'write') = driftmirror.dm_client_conninfo(endpoint) FROM driftmirror.dm_resources WHERE name = 'db'}),
	't', 'writes stay on the primary');

# ---- 100 % ----
$res = decode_json($a->safe_psql('postgres', q{SELECT driftmirror.dm_shift('orders', 100)}));
ok(!grep({ !$_->{applied} } @{ $res->{routers} }), 'dm_shift applied 100 % through every router');
is_deeply(haproxy_weights($hap), { a => '0/drain', b => '100' }, 'HAProxy: all reads on the mirror');
is(served_by($via_haproxy, 6)->{b}, 6, 'through HAProxy only the mirror serves');
is(served_by($via_bouncer, 3)->{b}, 3, 'pgbouncer points app_ro at the mirror');
my %at100 = map { $_ => 1 } split /,/, ($keys_on_mirror->() // '');
is(scalar(keys %at100), 200, 'every key reads from the mirror');
is($a->safe_psql('postgres', q{SELECT driftmirror.dm_route_multihost('orders', 'db', 'read') LIKE '%target_session_attrs=any%'}),
	't', 'a read multi-host string');

# ---- the webhook: signed, retried with the same key, applied once per change ----
my $log = webhook_log($hook);
my %per_key;
push @{ $per_key{ $_->{key} } }, $_ for @$log;
ok(scalar(keys %per_key) >= 3, 'the receiver saw the changes (' . scalar(keys %per_key) . ' keys)');
ok(!grep({ !$_->{signature_ok} } @$log), 'every request carries a valid HMAC signature');
ok(!grep({ scalar(grep { $_->{applied} } @{ $per_key{$_} }) != 1 } keys %per_key),
	'each idempotency key was applied exactly once');
ok(!grep({ $per_key{$_}[0]{status} != 503 || @{ $per_key{$_} } != 2 } keys %per_key),
	'each change was retried after the 503 with the same key');
my %change_ids = map { $_->{body}{change_id} => $_->{key} } @$log;
is(scalar(keys %change_ids), scalar(keys %per_key), 'one key per change');

# ---- HAProxy down: the routes move, the router is reported failed ----
router_stop($hap);
$res = decode_json($a->safe_psql('postgres', q{SELECT driftmirror.dm_shift('orders', 0)}));
my ($lb) = grep { $_->{router} eq 'lb' } @{ $res->{routers} };
ok(!$lb->{applied} && $lb->{error} =~ /HAProxy runtime API/, 'the shift reports HAProxy failed, with the reason');
is($a->safe_psql('postgres', q{SELECT state FROM driftmirror.dm_routers WHERE name = 'lb'}), 'failed', 'dm_routers says failed');
is(served_by($via_bouncer, 2)->{a}, 2, 'the other routers followed (pgbouncer back on the primary)');
$a->safe_psql('postgres', q{CREATE ROLE watcher IN ROLE driftmirror_monitor});
is($a->safe_psql('postgres', q{SET ROLE watcher;
	SELECT coalesce(endpoint, 'hidden') || ' ' || coalesce(options::text, 'hidden') || ' ' || last_error
	  FROM driftmirror.dm_routers WHERE name = 'lb'}),
	'hidden hidden the router could not be updated (details for admins)', 'the monitor sees no endpoint, option or raw error');
is($a->safe_psql('postgres', q{SELECT has_function_privilege('watcher', 'driftmirror.dm_shift(text, numeric, numeric)', 'EXECUTE')
	OR has_function_privilege('watcher', 'driftmirror.dm_add_router(text, text, text, text, jsonb)', 'EXECUTE')}),
	'f', 'the monitor cannot shift or add routers');

router_restart($hap);	# starts with its configured weights (100/100)
dm_wait_for($a, q{SELECT in_sync AND state = 'applied' FROM driftmirror.dm_routers WHERE name = 'lb'},
	't', 'the worker brings HAProxy up to date once it is back');
is_deeply(haproxy_weights($hap), { a => '100', b => '0/drain' }, 'HAProxy: all reads back on the primary');
is(served_by($via_haproxy, 4)->{a}, 4, 'through HAProxy only the primary serves');

# ---- a promotion moves the routes: the worker re-applies the routers around the new primary ----
ok(wait_mirroring($p), 'the mirror is in sync before the promotion');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_promote('orders')});
is(primary_of($p), $b, 'b is the primary');
dm_wait_for($a, qq{SELECT bool_and(CASE name WHEN 'lb' THEN last_change -> 'servers' @> '[{"server": "b", "weight": 100}, {"server": "a", "weight": 0}]'
                                           WHEN 'pool' THEN last_change ->> 'target' = '$p->{cb}' ELSE true END)
                     FROM driftmirror.dm_routers},
	't', 'after the promotion the worker points HAProxy and pgbouncer at the new primary');
is_deeply(haproxy_weights($hap), { a => '0/drain', b => '100' }, 'HAProxy: reads on the new primary');
is(served_by($via_bouncer, 2)->{b}, 2, 'pgbouncer: reads on the new primary');

# ---- a pgbouncer console that logs in and never answers: a timeout, nothing else held ----
my $hung_console = DmHung->start('pg');
$a->safe_psql('postgres', qq{SELECT driftmirror.dm_add_router('orders', 'stuckpool', 'pgbouncer',
	'host=127.0.0.1 port=@{[ $hung_console->port ]} dbname=pgbouncer',
	'{"database": "app_ro", "access": "read", "databases_file": "dm_stuck.ini", "timeout": "1s"}')});
ok($hung_console->seen(qr/^query$/m), 'the worker logs in to a hung pgbouncer console and sends its statement');
dm_wait_for($a, q{
	SELECT state = 'failed' AND last_error LIKE 'command on node "pgbouncer router stuckpool" timed out after 1000 ms%'
	  FROM driftmirror.dm_routers WHERE name = 'stuckpool'},
	't', 'the hung console ends in a timeout recorded as the router\'s error');
is($a->safe_psql('postgres', q{SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM driftmirror.dm_routers
	WHERE name <> 'stuckpool'}), 'lb:applied,mesh:applied,pool:applied', 'the other routers stay applied');
$a->safe_psql('postgres', q{SELECT driftmirror.dm_remove_router('orders', 'stuckpool')});
$hung_console->stop;

# ---- removal ----
$a->safe_psql('postgres', q{SELECT driftmirror.dm_remove_router('orders', 'mesh')});
is($a->safe_psql('postgres', q{SELECT string_agg(name, ',' ORDER BY name) FROM driftmirror.dm_routers}), 'lb,pool',
	'a removed router is gone');

router_stop($_) for ($hap, $bouncer, $hook);
done_testing();
