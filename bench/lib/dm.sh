# bench/lib/dm.sh: the driftmirror side of bench/switchover.
#
# Sourced by bench/switchover after test/lib/common.sh (and after dm_build);
# sources bench/lib/routers.sh.
# Provides
#   dm_switchover_run DIR PORTBASE N_SWITCHOVERS RATE CLIENTS [pgbouncer]
# which starts two nodes (PORTBASE: control database + primary database
# "bench"; PORTBASE+1: the mirror), mirrors "bench" with dm_create_mirror,
# runs the probe through dm_route_multihost's multi-host string (or, with
# "pgbouncer", through a pgbouncer on 127.0.0.1:PORTBASE+2 in transaction
# pooling, registered as the group's pgbouncer router, which dm_promote
# pauses, switches and resumes), performs N `SELECT dm_promote('bench')`
# under that load (alternating directions), and prints
#   LABEL: switchovers=N failed=F client_errors=E p50_ms=.. max_ms=.. lost=.. duplicated=.. identical=..
# (LABEL dm, or dm-pgbouncer; client_errors: the probe's failed attempts)
# plus the probe's per-window lines and dm_promote's own pause figures and
# per-step timings (through pgbouncer also the pooler phases the step log
# records: PAUSE wait, switch + RESUME, PAUSE-to-RESUME hold).

source "$DM_ROOT/bench/lib/routers.sh"

dm_bench_node() {	# dm_bench_node DIR PORT
    local dir=$1 port=$2
    dm_as_user initdb -D "$dir" -A trust -U "$DM_USER" >/dev/null || return 1
    cat >>"$dir/postgresql.conf" <<EOF
port = $port
unix_socket_directories = '/tmp'
listen_addresses = ''
shared_preload_libraries = 'driftmirror'
driftmirror.database = 'postgres'
driftmirror.naptime = 200ms
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_worker_processes = 20
$(dm_output_plugin_conf)
EOF
    dm_as_user pg_ctl -D "$dir" -l "$dir.log" -w start >/dev/null
}

dm_bench_pgbouncer() {	# dm_bench_pgbouncer DIR PRIMARY_PORT PORT
    local dir=$1 pa=$2 port=$3
    dm_user_dir "$dir/router"
    dm_as_user sh -c "printf '[databases]\nbench = host=/tmp port=$pa dbname=bench\n' >'$dir/router/bench.ini'"
    dm_pgbouncer_conf "$dir" "$port" "$DM_USER" "$dir/router/bench.ini"
    dm_as_user sh -c "printf 'pidfile = %s\nlogfile = %s\n' '$dir/pgbouncer.pid' '$dir/pgbouncer.log' >>'$dir/pgbouncer.ini'"
    dm_as_user pgbouncer -d "$dir/pgbouncer.ini" >/dev/null || return 1
    dm_bench_psql "$pa" postgres "ALTER SYSTEM SET driftmirror.router_files_directory = '$dir/router'" || return 1
    dm_bench_psql "$pa" postgres "SELECT pg_reload_conf()" >/dev/null
}

dm_bench_psql() {	# dm_bench_psql PORT DB SQL
    dm_as_user psql -X -q -At -h /tmp -p "$1" -d "$2" -v ON_ERROR_STOP=1 -c "$3"
}

dm_switchover_run() {
    local dir=$1 base=$2 n=$3 rate=$4 clients=$5 via=${6:-}
    local pa=$base pb=$((base + 1)) pgb=$((base + 2)) label=dm
    local probe=$DM_ROOT/bench/probe/probe
    local ca="host=/tmp port=$pa dbname=bench"
    local cb="host=/tmp port=$pb dbname=bench"

    for d in a b; do
        [ -f "$dir/$d/postmaster.pid" ] && dm_as_user pg_ctl -D "$dir/$d" -m fast stop >/dev/null 2>&1
    done
    [ -f "$dir/pgbouncer.pid" ] && kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null
    rm -rf "$dir"
    dm_user_dir "$dir"
    dm_log "driftmirror: primary+control on $pa, mirror on $pb"
    dm_bench_node "$dir/a" "$pa" || return 1
    dm_bench_node "$dir/b" "$pb" || return 1
    if [ "$via" = pgbouncer ]; then
        label=dm-pgbouncer
        dm_bench_pgbouncer "$dir" "$pa" "$pgb" || return 1
    fi
    dm_bench_psql "$pa" postgres "CREATE EXTENSION driftmirror" || return 1
    for p in "$pa" "$pb"; do
        dm_bench_psql "$p" postgres "CREATE DATABASE bench"
        dm_bench_psql "$p" bench "CREATE TABLE public.dm_probe (id bigserial PRIMARY KEY, client_id integer NOT NULL, seq bigint NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
    done
    dm_bench_psql "$pa" postgres "
        SELECT driftmirror.dm_create_group('bench', '{\"interval\": \"1s\"}');
        SELECT driftmirror.dm_add_resource('bench', 'db', 'postgres', '$ca');
        SELECT driftmirror.dm_create_mirror('bench', 'db', '$cb');" >/dev/null || return 1

    local mirroring_sql="SELECT state = 'mirroring' AND lag_bytes IS NOT NULL AND lag_bytes < 16777216 AND checked_at > now() - interval '5 seconds' FROM driftmirror.dm_mirror_status"
    dm_wait_mirroring() {
        local i
        for i in $(seq 1 600); do
            [ "$(dm_bench_psql "$pa" postgres "$mirroring_sql")" = t ] && return 0
            sleep 0.2
        done
        return 1
    }
    dm_wait_mirroring || { echo "dm: the mirror did not reach mirroring" >&2; return 1; }

    local uri
    if [ "$via" = pgbouncer ]; then
        dm_bench_psql "$pa" postgres "SELECT driftmirror.dm_add_router('bench', 'pool', 'pgbouncer',
            'host=127.0.0.1 port=$pgb dbname=pgbouncer user=$DM_USER',
            '{\"database\": \"bench\", \"databases_file\": \"bench.ini\"}')" >/dev/null || return 1
        uri="host=127.0.0.1 port=$pgb dbname=bench connect_timeout=2 user=$DM_USER"
    else
        uri=$(dm_bench_psql "$pa" postgres "SELECT driftmirror.dm_route_multihost('bench', 'db')")
        uri="$uri connect_timeout=2 user=$DM_USER"
    fi
    dm_log "driftmirror: clients use $uri"

    rm -f "$dir/acks" "$dir/windows"
    dm_as_user touch "$dir/acks"
    dm_as_user "$probe" run --conninfo "$uri" --clients "$clients" --rate "$rate" \
        --acks "$dir/acks" --pidfile "$dir/probe.pid" >"$dir/probe.out" 2>&1 &
    local probe_pid=$!
    sleep 5

    local failed=0 k start end out
    for k in $(seq 1 "$n"); do
        dm_wait_mirroring || { failed=$((failed + 1)); continue; }
        sleep 3
        start=$(date +%s%6N)
        if ! out=$(dm_bench_psql "$pa" postgres "SELECT round(pause_ms::numeric, 1) FROM driftmirror.dm_promote('bench')" 2>&1); then
            failed=$((failed + 1))
            echo "dm: promotion $k failed: $out" >&2
        fi
        end=$(date +%s%6N)
        echo "$start $((end + 3000000)) dm-$k" >>"$dir/windows"
        dm_log "driftmirror: promotion $k took $(( (end - start) / 1000 )) ms (fence to unfence: $out ms)"
    done
    dm_wait_mirroring
    sleep 3
    kill -TERM "$(cat "$dir/probe.pid")"
    wait "$probe_pid"
    grep -v '^WARNING\|^DETAIL\|^FATAL' "$dir/probe.out"

    local primary_ci mirror_ci
    primary_ci="$(dm_bench_psql "$pa" postgres "SELECT endpoint FROM driftmirror.dm_resources WHERE name = 'db'") user=$DM_USER"
    if [ "${primary_ci%% user=*}" = "$ca" ]; then mirror_ci="$cb user=$DM_USER"; else mirror_ci="$ca user=$DM_USER"; fi
    dm_as_user "$probe" pause --acks "$dir/acks" --windows "$dir/windows" | tee "$dir/pause.out"
    dm_as_user "$probe" check --acks "$dir/acks" --primary "$primary_ci" --other "$mirror_ci" \
        --wait 60 | tee "$dir/check.out"
    echo "dm_promote's own figures (fence to unfence, ms) and mean step times:"
    dm_bench_psql "$pa" postgres "SELECT string_agg(round(pause_ms)::text, ' ' ORDER BY id) FROM driftmirror.dm_promotions"
    dm_bench_psql "$pa" postgres "SELECT step || ' ' || round(avg(ms), 1) || ' ms' FROM driftmirror.dm_promotion_steps GROUP BY step ORDER BY min(seq)"
    if [ "$via" = pgbouncer ]; then
        echo "pgbouncer phases (ms; mean, then each switchover): PAUSE wait before the fence; switch and RESUME after the unfence; hold = PAUSE sent to RESUME answered:"
        dm_bench_psql "$pa" postgres "SELECT k || ' ' || round(avg((details ->> k)::numeric), 1) || ' ms: ' || string_agg(round((details ->> k)::numeric, 1)::text, ' ' ORDER BY promotion_id)
            FROM driftmirror.dm_promotion_steps, LATERAL jsonb_object_keys(details) k
            WHERE k LIKE 'pooler%ms' GROUP BY k ORDER BY k"
    fi

    for d in a b; do
        dm_as_user pg_ctl -D "$dir/$d" -m fast stop >/dev/null 2>&1
    done
    [ -f "$dir/pgbouncer.pid" ] && kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null

    local p50 max lost dup ident errors
    p50=$(awk '/^pause/ {print $3}' "$dir/pause.out")
    max=$(awk '/^pause/ {print $5}' "$dir/pause.out")
    lost=$(sed -n 's/.*lost=\([0-9]*\).*/\1/p' "$dir/check.out")
    dup=$(sed -n 's/.*duplicated=\([0-9]*\).*/\1/p' "$dir/check.out")
    ident=$(sed -n 's/.*identical=\([a-z/]*\).*/\1/p' "$dir/check.out")
    errors=$(sed -n 's/^run .* errors=\([0-9]*\).*/\1/p' "$dir/probe.out")
    echo "$label: switchovers=$n failed=$failed client_errors=$errors p50_ms=$p50 max_ms=$max lost=$lost duplicated=$dup identical=$ident"
}
