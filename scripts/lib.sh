# Shared by scripts/demo and scripts/test: installing PostgreSQL when missing, and running
# PostgreSQL's programs as the `postgres` user when we are root (PostgreSQL refuses root).

# Installs Debian packages that are missing; uses sudo only when not root.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
