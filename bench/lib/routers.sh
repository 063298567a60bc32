# bench/lib/routers.sh: HAProxy and pgbouncer in front of two nodes, for
# bench/shift, bench/switchover (bench/lib/dm.sh) and demo/run.
#
# Sourced after test/lib/common.sh.  Provides
#   dm_haproxy_start DIR PORT SOCKET_A SOCKET_B
#       HAProxy as $DM_USER on 127.0.0.1:PORT, backend pg_read (roundrobin)
#       with server a -> SOCKET_A and b -> SOCKET_B (the nodes' Unix
#       sockets), its runtime API on DIR/haproxy.sock (level admin); PID in
#       DIR/haproxy.pid (dm_stop_pidfile), log DIR/haproxy.log.  Returns
#       once the runtime socket exists (at most 10 s; 1 if it never does)
#   dm_pgbouncer_conf DIR PORT USER DATABASES_FILE [POOL_MODE]
#       DIR/pgbouncer.ini from test/lib/pgbouncer.ini.in (the tests use the
#       same template): 127.0.0.1:PORT, no Unix socket, trust
#       authentication of USER (DIR/userlist.txt), USER its admin,
#       POOL_MODE pooling (default transaction), [databases] from %include
#       DATABASES_FILE (the file a pgbouncer router of driftmirror owns).
#       The caller starts it (its [pgbouncer] section is last: lines
#       appended go into it)

dm_haproxy_start() {
    local dir=$1 port=$2 a=$3 b=$4 _
    dm_as_user sh -c "cat > '$dir/haproxy.cfg'" <<EOC
global
    stats socket $dir/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 1m
    timeout server 1m
listen pg_read
    bind 127.0.0.1:$port
    balance roundrobin
    server a $a weight 100
    server b $b weight 100
EOC
    rm -f "$dir/haproxy.sock"
    dm_bg_as_user "$dir/haproxy.pid" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1
    for _ in $(seq 1 100); do
        [ -S "$dir/haproxy.sock" ] && return 0
        sleep 0.1
    done
    return 1
}

dm_pgbouncer_conf() {
    local dir=$1 port=$2 user=$3 include=$4 mode=${5:-transaction}
    dm_as_user sh -c "printf '\"%s\" \"\"\n' '$user' > '$dir/userlist.txt'"
    sed -e "s|@INCLUDE@|$include|" -e "s|@PORT@|$port|" -e "s|@AUTH_FILE@|$dir/userlist.txt|" \
        -e "s|@USER@|$user|" -e "s|@POOL_MODE@|$mode|" "$DM_ROOT/test/lib/pgbouncer.ini.in" |
        dm_as_user sh -c "cat > '$dir/pgbouncer.ini'"
}
