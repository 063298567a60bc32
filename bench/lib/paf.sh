# bench/lib/paf.sh: the pg_auto_failover baseline of bench/switchover.
#
# Sourced by bench/switchover after test/lib/common.sh (and
# bench/lib/routers.sh).  Provides
#   paf_run DIR PORTBASE N_SWITCHOVERS RATE CLIENTS [pgbouncer]
# which starts a pg_auto_failover monitor and two nodes on loopback (as the
# unprivileged user, ports PORTBASE..PORTBASE+2), runs the probe against the
# formation's multi-host URI (or, with "pgbouncer", through a pgbouncer on
# 127.0.0.1:PORTBASE+3 in transaction pooling whose [databases] entry
# follows the formation's primary: see paf_pgbouncer_follow), performs N
# `pg_autoctl perform switchover` runs under that load, stops everything,
# and prints one line
#   LABEL: switchovers=N failed=F client_errors=E p50_ms=.. max_ms=.. lost=.. duplicated=.. identical=..
# (LABEL paf, or paf-pgbouncer) plus the probe's per-window lines.  Needs
# the Debian packages postgresql-15-auto-failover and pg-auto-failover-cli.

PAF_PACKAGES=(postgresql-$DM_PGVER-auto-failover pg-auto-failover-cli)

paf_ctl() {	# paf_ctl DIR ARGS...: pg_autoctl as the server user, with its own XDG dirs
    local dir=$1; shift
    dm_as_user env XDG_CONFIG_HOME="$dir/xdg/config" XDG_DATA_HOME="$dir/xdg/data" \
        XDG_RUNTIME_DIR="$dir/xdg/run" PGCONNECT_TIMEOUT=5 PGHOST=/tmp \
        pg_autoctl "$@"
}

paf_stop() {	# paf_stop DIR: stop the nodes and the monitor
    local dir=$1 d
    for d in node1 node2 monitor; do
        [ -d "$dir/$d" ] && paf_ctl "$dir" stop --pgdata "$dir/$d" --fast >/dev/null 2>&1
    done
    # pg_autoctl stop returns before the processes are gone: wait for them
    for d in node1 node2 monitor; do
        local i
        for i in $(seq 1 100); do
            [ -f "$dir/$d/postmaster.pid" ] || break
            sleep 0.1
        done
    done
    return 0
}

paf_wait_formation() {	# paf_wait_formation DIR: until one primary and one secondary
    local dir=$1 i out
    for i in $(seq 1 600); do
        out=$(paf_ctl "$dir" show state --pgdata "$dir/monitor" 2>/dev/null)
        if printf '%s\n' "$out" | grep -Eq '\|[[:space:]]+primary[[:space:]]+\|[[:space:]]+primary[[:space:]]*$' &&
           printf '%s\n' "$out" | grep -Eq '\|[[:space:]]+secondary[[:space:]]+\|[[:space:]]+secondary[[:space:]]*$'; then
            return 0
        fi
        sleep 0.5
    done
    printf '%s\n' "$out" >&2
    return 1
}

paf_primary_port() {	# paf_primary_port DIR: port of the current primary
    local dir=$1
    paf_ctl "$dir" show state --pgdata "$dir/monitor" 2>/dev/null |
        awk -F'|' '($6 ~ /primary/ && $7 ~ /primary/) || ($6 ~ /single/ && $7 ~ /single/) { split($3, a, ":"); gsub(/ /, "", a[2]); print a[2] }'
}

# paf_pgbouncer_follow DIR MONITOR_URI ADMIN_CI INCLUDE PORT: keep the
# "bench" entry of a pgbouncer on the formation's primary, as an operator
# would with pg_auto_failover, which does not drive pgbouncer itself: one
# monitor session polls pgautofailover.node every 50 ms (psql \watch), and
# when another node is primary (goal and reported state primary,
# wait_primary or single) the entry is rewritten, then RELOAD and
# RECONNECT bench.  No PAUSE: nothing tells the follower when a switchover
# starts.  Changes are logged to DIR/follow.log; paf_run stops it
# (DIR/follow.pid).
paf_pgbouncer_follow() {
    local dir=$1 monitor_uri=$2 admin=$3 include=$4 current=$5
    local q="SELECT nodeport FROM pgautofailover.node WHERE reportedstate IN ('primary', 'wait_primary', 'single') AND goalstate = reportedstate ORDER BY nodeid LIMIT 1"
    rm -f "$dir/follow.fifo"
    dm_as_user mkfifo "$dir/follow.fifo"
    (
        while read -r port; do
            { [ -n "$port" ] && [ "$port" != "$current" ]; } || continue
            printf '[databases]\nbench = host=/tmp port=%s dbname=bench\n' "$port" >"$include"
            dm_as_user psql -X -q -d "$admin" -c RELOAD -c "RECONNECT bench" >/dev/null 2>&1
            echo "$(date +%s%6N) bench now on port $port" >>"$dir/follow.log"
            current=$port
        done <"$dir/follow.fifo"
    ) &
    printf '%s \\watch 0.05\n' "$q" | dm_as_user sh -c "cat > '$dir/follow.sql'"
    # shellcheck disable=SC2016
    dm_bg_as_user "$dir/follow.pid" sh -c 'exec psql -X -q -At -d "$1" -f "$2" >"$3"' \
        sh "$monitor_uri" "$dir/follow.sql" "$dir/follow.fifo"
}

paf_run() {
    local dir=$1 base=$2 n=$3 rate=$4 clients=$5 via=${6:-}
    local mport=$base p1=$((base + 1)) p2=$((base + 2)) pgb=$((base + 3)) label=paf
    local pgctl=/usr/lib/postgresql/$DM_PGVER/bin/pg_ctl
    local probe=$DM_ROOT/bench/probe/probe
    local monitor_uri="postgres://autoctl_node@localhost:$mport/pg_auto_failover?sslmode=disable"

    paf_stop "$dir"
    dm_stop_pidfile "$dir/follow.pid"
    [ -f "$dir/pgb/pgbouncer.pid" ] && kill "$(cat "$dir/pgb/pgbouncer.pid")" 2>/dev/null
    rm -rf "$dir"
    dm_user_dir "$dir"
    dm_as_user mkdir -p "$dir/xdg/config" "$dir/xdg/data" "$dir/xdg/run"
    dm_as_user chmod 700 "$dir/xdg/run"

    dm_log "pg_auto_failover: monitor on $mport, nodes on $p1 and $p2"
    # pg_autoctl has no option for the socket directory and the packaged
    # default (/var/run/postgresql) is not the server user's: initialise the
    # monitor and the first node ourselves (pg_autoctl adopts an existing
    # data directory); the second node is a base backup of the first
    local d
    for d in monitor node1; do
        dm_as_user initdb -D "$dir/$d" -A trust -U "$DM_USER" >/dev/null || return 1
        printf "unix_socket_directories = '/tmp'\nlisten_addresses = 'localhost'\n" \
            >>"$dir/$d/postgresql.conf"
    done
    paf_ctl "$dir" create monitor --pgctl "$pgctl" --pgdata "$dir/monitor" --pgport "$mport" \
        --hostname localhost --auth trust --no-ssl --run >"$dir/monitor.log" 2>&1 &
    local i
    for i in $(seq 1 300); do
        dm_as_user psql -X -q -At "$monitor_uri" -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    for node in node1 node2; do
        local port=$p1
        [ "$node" = node2 ] && port=$p2
        paf_ctl "$dir" create postgres --pgctl "$pgctl" --pgdata "$dir/$node" --pgport "$port" \
            --hostname localhost --name "$node" --dbname bench --auth trust --no-ssl \
            --monitor "$monitor_uri" --run >"$dir/$node.log" 2>&1 &
        # the second node clones the first: start it once the first is primary
        if [ "$node" = node1 ]; then
            for i in $(seq 1 600); do
                paf_ctl "$dir" show state --pgdata "$dir/monitor" 2>/dev/null |
                    grep -Eq '\|[[:space:]]+single[[:space:]]+\|[[:space:]]+single[[:space:]]*$' && break
                sleep 0.5
            done
        fi
    done
    # pg_basebackup waits for a spread checkpoint on node1 (minutes): ask
    # for an immediate one, which makes the running checkpoint hurry
    for i in 1 2 3; do
        sleep 2
        dm_as_user psql -X -q -h /tmp -p "$p1" -d postgres -c CHECKPOINT >/dev/null 2>&1
    done
    if ! paf_wait_formation "$dir"; then
        echo "paf: the formation did not come up (logs in $dir)" >&2
        paf_stop "$dir"
        return 1
    fi

    local uri primary_ci standby_ci
    uri=$(paf_ctl "$dir" show uri --pgdata "$dir/monitor" --formation default 2>/dev/null | awk -F'|' '/formation/ {gsub(/^ +| +$/, "", $3); print $3}')
    [ -n "$uri" ] || uri="postgres://localhost:$p1,localhost:$p2/bench?target_session_attrs=read-write&sslmode=disable"
    uri="$uri&connect_timeout=2"
    local follow_reader=
    if [ "$via" = pgbouncer ]; then
        label=paf-pgbouncer
        dm_user_dir "$dir/pgb"
        printf '[databases]\nbench = host=/tmp port=%s dbname=bench\n' "$(paf_primary_port "$dir")" \
            | dm_as_user sh -c "cat > '$dir/pgb/bench.ini'"
        dm_pgbouncer_conf "$dir/pgb" "$pgb" "$DM_USER" "$dir/pgb/bench.ini"
        dm_as_user sh -c "printf 'pidfile = %s\nlogfile = %s\n' '$dir/pgb/pgbouncer.pid' '$dir/pgb/pgbouncer.log' >>'$dir/pgb/pgbouncer.ini'"
        dm_as_user pgbouncer -d "$dir/pgb/pgbouncer.ini" >/dev/null || return 1
        paf_pgbouncer_follow "$dir" "host=/tmp port=$mport dbname=pg_auto_failover user=$DM_USER" \
            "host=127.0.0.1 port=$pgb dbname=pgbouncer user=$DM_USER" \
            "$dir/pgb/bench.ini" "$(paf_primary_port "$dir")"
        follow_reader=$!
        uri="host=127.0.0.1 port=$pgb dbname=bench connect_timeout=2 user=$DM_USER"
    fi
    dm_log "pg_auto_failover: clients use $uri"

    dm_as_user "$probe" setup --conninfo "host=localhost port=$(paf_primary_port "$dir") dbname=bench user=$DM_USER" || return 1
    # synchronous replication needs the table on the standby too: wait for it
    sleep 1

    rm -f "$dir/acks" "$dir/windows"
    dm_as_user touch "$dir/acks"
    dm_as_user "$probe" run --conninfo "$uri" --clients "$clients" --rate "$rate" \
        --acks "$dir/acks" --pidfile "$dir/probe.pid" >"$dir/probe.out" 2>&1 &
    local probe_pid=$!
    sleep 5		# steady state before the first switchover

    local failed=0 k start end
    for k in $(seq 1 "$n"); do
        paf_wait_formation "$dir" || { failed=$((failed + 1)); continue; }
        sleep 3
        start=$(date +%s%6N)
        if ! paf_ctl "$dir" perform switchover --pgdata "$dir/monitor" --formation default \
                >>"$dir/switchover.log" 2>&1; then
            failed=$((failed + 1))
        fi
        end=$(date +%s%6N)
        # the pause may last beyond the command: clients still have to reconnect
        echo "$start $((end + 3000000)) paf-$k" >>"$dir/windows"
        dm_log "pg_auto_failover: switchover $k took $(( (end - start) / 1000 )) ms"
    done
    paf_wait_formation "$dir"
    sleep 3
    kill -TERM "$(cat "$dir/probe.pid")"
    wait "$probe_pid"
    grep -v '^WARNING\|^DETAIL\|^FATAL' "$dir/probe.out"

    local pport sport
    pport=$(paf_primary_port "$dir")
    sport=$p1
    [ "$pport" = "$p1" ] && sport=$p2
    dm_as_user "$probe" pause --acks "$dir/acks" --windows "$dir/windows" | tee "$dir/pause.out"
    dm_as_user "$probe" check --acks "$dir/acks" \
        --primary "host=localhost port=$pport dbname=bench user=$DM_USER" \
        --other "host=localhost port=$sport dbname=bench user=$DM_USER" --wait 60 | tee "$dir/check.out"
    if [ "$via" = pgbouncer ]; then
        dm_stop_pidfile "$dir/follow.pid"
        [ -n "$follow_reader" ] && wait "$follow_reader"
        [ -f "$dir/pgb/pgbouncer.pid" ] && kill "$(cat "$dir/pgb/pgbouncer.pid")" 2>/dev/null
        echo "pgbouncer follower: $(wc -l <"$dir/follow.log" 2>/dev/null || echo 0) changes of primary applied"
    fi
    paf_stop "$dir"

    local p50 max lost dup ident errors
    p50=$(awk '/^pause/ {print $3}' "$dir/pause.out")
    max=$(awk '/^pause/ {print $5}' "$dir/pause.out")
    lost=$(sed -n 's/.*lost=\([0-9]*\).*/\1/p' "$dir/check.out")
    dup=$(sed -n 's/.*duplicated=\([0-9]*\).*/\1/p' "$dir/check.out")
    ident=$(sed -n 's/.*identical=\([a-z/]*\).*/\1/p' "$dir/check.out")
    errors=$(sed -n 's/^run .* errors=\([0-9]*\).*/\1/p' "$dir/probe.out")
    echo "$label: switchovers=$n failed=$failed client_errors=$errors p50_ms=$p50 max_ms=$max lost=$lost duplicated=$dup identical=$ident"
}
