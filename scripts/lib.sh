# Shared by scripts/demo and scripts/test: installing PostgreSQL when missing, and running
# PostgreSQL's programs as the `postgres` user when we are root (PostgreSQL refuses root).

pg_tools=(initdb pg_ctl postgres psql pgbench pg_dump pg_checksums pg_amcheck)

# Whether some /usr/lib/postgresql/<major> (or $LIFEBOAT_PG_BIN) has every tool and amcheck.
postgres_ready() {
    local bin major tool
    if [[ -n "${LIFEBOAT_PG_BIN:-}" ]]; then
        bin="$LIFEBOAT_PG_BIN"
    else
        bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null |
            sort -V | tail -n 1)"
        [[ -n "$bin" ]] || return 1
        major="$(basename "$(dirname "$bin")")"
        [[ -f "/usr/share/postgresql/$major/extension/amcheck.control" ]] || return 1
    fi
    for tool in "${pg_tools[@]}"; do
        [[ -x "$bin/$tool" ]] || return 1
    done
}

install_postgres() {
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "error: PostgreSQL is not installed and sudo is not available" >&2
            echo "hint: as root, run: apt-get install postgresql postgresql-contrib" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "==> installing PostgreSQL (postgresql, postgresql-contrib)"
    # The tests make their own clusters: do not let the package create and start one on 5432.
    ${sudo[@]+"${sudo[@]}"} mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = off" |
        ${sudo[@]+"${sudo[@]}"} tee /etc/postgresql-common/createcluster.d/lifeboat-tests.conf \
            >/dev/null
    ${sudo[@]+"${sudo[@]}"} apt-get update -qq
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null
    if ! postgres_ready; then
        echo "error: PostgreSQL still lacks one of: ${pg_tools[*]} or the amcheck extension" >&2
        exit 1
    fi
}

# The PostgreSQL server and contrib programs (pgbench, pg_amcheck) of the newest installed major.
pg_bin_dir() {
  if [ -n "${LIFEBOAT_PG_BIN:-}" ]; then echo "$LIFEBOAT_PG_BIN"; return; fi
  local newest
  newest=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
  [ -n "$newest" ] && echo "/usr/lib/postgresql/$newest/bin"
}

# Runs a command as postgres when root, as ourselves otherwise.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
