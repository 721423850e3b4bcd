#!/usr/bin/env bash
# PostgreSQL 15 + pgvector for ragline's tests and for trying the postgres store locally:
# installs what is missing (Debian's PostgreSQL 15; pgvector 0.8 built from Debian trixie's
# source package, as ../shared/MODELS.md describes) and starts a server on 127.0.0.1.
#
#   scripts/postgres.sh          install if needed, start, print the DSN to use
#   scripts/postgres.sh stop     stop the server started here
#
# The server keeps its files in $RAGLINE_PG_DATA (default /tmp/ragline-pg-PORT, one server for
# every checkout on the machine: each test works in a schema of its own) and listens on
# 127.0.0.1:$RAGLINE_PG_PORT (default 54329) only. The role `ragline` gets the
# password in $RAGLINE_PG_PASSWORD (default "ragline-test": a local test server, nothing else).
set -euo pipefail

port="${RAGLINE_PG_PORT:-54329}"
data="${RAGLINE_PG_DATA:-/tmp/ragline-pg-$port}"
password="${RAGLINE_PG_PASSWORD:-ragline-test}"
bin=/usr/lib/postgresql/15/bin

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# initdb and postgres refuse to run as root: run them as the postgres user then.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-start}" = stop ]; then
    [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null
    exit 0
fi

install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x "$bin/postgres" ]; then
    echo "postgres.sh: installing PostgreSQL 15 from Debian's packages" >&2
    install postgresql-15
fi

if [ ! -f /usr/share/postgresql/15/extension/vector.control ]; then
    echo "postgres.sh: building pgvector from Debian trixie's source package" >&2
    if [ ! -f /usr/include/postgresql/15/server/postgres.h ] || ! command -v dpkg-source >/dev/null \
            || ! command -v gcc >/dev/null || ! command -v make >/dev/null; then
        install postgresql-server-dev-15 dpkg-dev make gcc
    fi
    list=/etc/apt/sources.list.d/ragline-trixie-src.sources
    if [ ! -f "$list" ]; then
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n' \
            | as_root tee "$list" >/dev/null
        as_root apt-get update -qq
    fi
    build="$(mktemp -d)"
    (cd "$build" && apt-get source -qq pgvector >/dev/null 2>&1)
    src="$(find "$build" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
    [ -n "$src" ] || { echo "postgres.sh: apt-get source pgvector gave nothing" >&2; exit 1; }
    make -s -C "$src" OPTFLAGS="" with_llvm=no >/dev/null
    as_root make -s -C "$src" OPTFLAGS="" with_llvm=no install >/dev/null
    rm -rf "$build"
fi

if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    chmod 700 "$data"
    pwfile="$(mktemp)"
    printf '%s\n' "$password" > "$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    as_owner "$bin/initdb" -D "$data" -U ragline --pwfile="$pwfile" --auth=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
fi

if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    if ! as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k /tmp" >/dev/null; then
        echo "postgres.sh: PostgreSQL did not start (is port $port taken? set RAGLINE_PG_PORT);" \
             "its log: $data/server.log" >&2
        tail -n 5 "$data/server.log" >&2 || true
        exit 1
    fi
fi

echo "postgresql://ragline@127.0.0.1:$port/postgres"
