# test/lib/common.sh: shell helpers shared by test/run, demo/run and bench/*.
#
# Sourced, not executed.  Provides:
#   dm_install_deps     apt-get the packages the build and tests need (root)
#   dm_build            build with warnings as errors (one make job a core)
#                       into a private copy of the PostgreSQL installation
#                       under .build/pg, so that nothing is installed
#                       system-wide and several checkouts never share an
#                       installed library
#   dm_ensure_user      the unprivileged OS user that runs the servers
#   dm_as_user CMD...   run a command as that user with the private PATH
#   dm_bg_as_user PIDFILE CMD...   start CMD in the background as that user,
#                       its own PID in PIDFILE; dm_stop_pidfile PIDFILE ends it
#
# PostgreSQL refuses to run as root, so servers always run as $DM_USER.

DM_ROOT=${DM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DM_PGVER=${DM_PGVER:-15}
DM_USER=${DM_USER:-dmtest}
DM_BUILD=$DM_ROOT/.build
DM_PGROOT=$DM_BUILD/pg
DM_PGBIN=$DM_PGROOT/usr/lib/postgresql/$DM_PGVER/bin
DM_PGXSDIR=$DM_PGROOT/usr/lib/postgresql/$DM_PGVER/lib/pgxs

# Debian packages: build tools, server and headers, libraries we link,
# pg_cron, and the TAP test modules' dependencies.
DM_PACKAGES=(
    build-essential make gcc pkg-config ca-certificates
    postgresql-$DM_PGVER postgresql-server-dev-$DM_PGVER postgresql-client-$DM_PGVER
    postgresql-$DM_PGVER-cron
    prometheus prometheus-postgres-exporter influxdb
    haproxy pgbouncer  # routers in front of the test clusters (065_routing.pl)
    libpq-dev libcurl4-openssl-dev
    libkrb5-dev  # gssapi headers: libpq/libpq-be.h (the fence's connection hook) needs them
    libipc-run-perl perl
    python3
)
DM_EXTRA_PACKAGES=${DM_EXTRA_PACKAGES:-}

dm_log() { printf '==> %s\n' "$*" >&2; }

dm_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

dm_install_deps() {
    local missing=() p
    # shellcheck disable=SC2206
    local all=("${DM_PACKAGES[@]}" $DM_EXTRA_PACKAGES)
    for p in "${all[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || dm_die "missing packages (${missing[*]}); run as root to install them"
    dm_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # do not let the packaged cluster start on its own: the tests start their own
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        DM_REMOVE_POLICY=1
    fi
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "${DM_REMOVE_POLICY:-}" ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

# dm_private_install: refresh .build/pg from the system installation.
# PostgreSQL finds its share and lib directories relative to its binaries, so
# the copy is a complete, relocated installation.
dm_private_install() {
    local sysbin=/usr/lib/postgresql/$DM_PGVER
    local sysshare=/usr/share/postgresql/$DM_PGVER
    [ -x "$sysbin/bin/postgres" ] || dm_die "PostgreSQL $DM_PGVER is not installed"
    rm -rf "$DM_PGROOT"
    mkdir -p "$DM_PGROOT/usr/lib/postgresql" "$DM_PGROOT/usr/share/postgresql" \
        "$DM_PGROOT/usr/include"
    cp -a "$sysbin" "$DM_PGROOT/usr/lib/postgresql/"
    cp -a "$sysshare" "$DM_PGROOT/usr/share/postgresql/"
    cp -a /usr/include/postgresql "$DM_PGROOT/usr/include/"
}

dm_build() {
    dm_private_install
    dm_log "building driftmirror (warnings are errors)"
    make -C "$DM_ROOT" -s clean PG_CONFIG="$DM_PGBIN/pg_config" >/dev/null
    make -C "$DM_ROOT" -s -j"$(nproc)" PG_CONFIG="$DM_PGBIN/pg_config" COPT='-Werror' \
        || dm_die "build failed"
    # bitcode a system-wide install of an older driftmirror left in the copy
    rm -rf "$DM_PGROOT/usr/lib/postgresql/$DM_PGVER/lib/bitcode/driftmirror"*
    make -C "$DM_ROOT" -s install PG_CONFIG="$DM_PGBIN/pg_config" >/dev/null \
        || dm_die "install into $DM_PGROOT failed"
    # no LLVM bitcode built or installed (the Makefile overrides with_llvm)
    if [ -n "$(find "$DM_ROOT/src" -name '*.bc' -print -quit)" ] \
        || [ -e "$DM_PGROOT/usr/lib/postgresql/$DM_PGVER/lib/bitcode/driftmirror" ]; then
        dm_die "LLVM bitcode was built or installed"
    fi
}

# dm_install_npm_tools: servers from the npm registry that tests start, into
# .build/npm (kept across builds): s3rver, an S3-compatible object store.
# Needs node and npm (the nodejs image's, or Debian's packages).
DM_NPM_TOOLS=(s3rver@3.7.1)
dm_install_npm_tools() {
    [ -x "$DM_BUILD/npm/node_modules/.bin/s3rver" ] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || { dm_log "npm missing: tests that need s3rver will skip"; return 0; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null \
            || { dm_log "could not install npm: tests that need s3rver will skip"; return 0; }
    fi
    dm_log "installing from npm: ${DM_NPM_TOOLS[*]}"
    mkdir -p "$DM_BUILD/npm"
    (cd "$DM_BUILD/npm" && npm install --no-audit --no-fund --silent --prefix . "${DM_NPM_TOOLS[@]}" >/dev/null) \
        || dm_log "npm install failed: tests that need s3rver will skip"
    chmod -R a+rX "$DM_BUILD/npm"
    return 0
}

dm_ensure_user() {
    if [ "$(id -u)" -ne 0 ]; then
        DM_USER=$(id -un)
        return 0
    fi
    id "$DM_USER" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$DM_USER"
}

# dm_user_dir DIR: create DIR writable by the server user
dm_user_dir() {
    mkdir -p "$1"
    [ "$(id -u)" -eq 0 ] && chown -R "$DM_USER" "$1"
    return 0
}

# dm_reexec_readable SCRIPT ARGS...: the servers run as $DM_USER, who must
# read the checkout.  If it cannot (a clone under /root, say), copy the
# checkout to a readable place and run SCRIPT from there instead.
dm_reexec_readable() {
    local script=$1; shift
    [ "$(id -u)" -eq 0 ] || return 0
    [ -n "${DM_REEXECED:-}" ] && return 0
    if runuser -u "$DM_USER" -- test -r "$DM_ROOT/Makefile" -a -x "$DM_ROOT/test" 2>/dev/null; then
        return 0
    fi
    local copy=/var/tmp/driftmirror-$(basename "$DM_ROOT")
    dm_log "$DM_USER cannot read $DM_ROOT; running from a copy in $copy"
    rm -rf "$copy"
    mkdir -p "$copy"
    (cd "$DM_ROOT" && tar --exclude=./.build -cf - .) | (cd "$copy" && tar -xf -)
    chmod -R a+rX "$copy"
    DM_REEXECED=1 DM_ROOT=$copy exec "$copy/$script" "$@"
}

# dm_output_plugin_conf: the postgresql.conf line that lets the driftmirror
# output plugin load, on builds that have output_plugin_libraries (15.19 and
# later minor releases); nothing on older ones, which load any plugin.
# postgres refuses to run as root, even to describe its settings: asked as
# root it would say nothing, and a 15.19+ node would get no such line.
dm_output_plugin_conf() {
    # grep reads everything (no -q): an early exit would kill postgres with
    # SIGPIPE, and under pipefail the test would then fail at random
    if dm_as_user "$DM_PGBIN/postgres" --describe-config 2>/dev/null | grep "^output_plugin_libraries"$'\t' >/dev/null; then
        echo "output_plugin_libraries = 'pgoutput, driftmirror'"
    fi
}

dm_as_user() {
    local path="$DM_PGBIN:$PATH"
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$DM_USER" -- env PATH="$path" HOME="$(getent passwd "$DM_USER" | cut -d: -f6)" "$@"
    else
        env PATH="$path" "$@"
    fi
}

# dm_bg_as_user PIDFILE CMD...: start CMD in the background as $DM_USER and
# write the PID of CMD itself (not of runuser, which does not pass signals on
# to its child) to PIDFILE, in a directory that user can write.  Returns
# once PIDFILE exists (at most 10 s), so a stop right after finds it.
dm_bg_as_user() {
    local pidfile=$1 _; shift
    rm -f "$pidfile"
    # shellcheck disable=SC2016
    dm_as_user sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" &
    for _ in $(seq 1 100); do
        [ -s "$pidfile" ] && return 0
        sleep 0.1
    done
    dm_die "could not start $1"
}

# dm_stop_pidfile PIDFILE: stop the process PIDFILE names, if it still runs:
# SIGTERM, then SIGKILL after 5 s; removes PIDFILE
dm_stop_pidfile() {
    local pidfile=$1 pid _
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    rm -f "$pidfile"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}
