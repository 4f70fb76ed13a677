#!/usr/bin/env bash
# Make sure the system services the tests use are up; start them if they are
# down and this machine knows how; otherwise fail saying what to do.
# Engines the tests start themselves (NATS, a private PostgreSQL for outage
# tests) are not checked here; PostgreSQL and Redis are the machine's.
set -euo pipefail

dsn=${APPRUN_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}
hostport=${dsn#*://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
pg_host=${hostport%%:*}
pg_port=5432
[[ "$hostport" == *:* ]] && pg_port=${hostport##*:}

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$pg_host" -p "$pg_port" -t 2
  else
    (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null
  fi
}

if ! pg_up; then
  echo "PostgreSQL is not answering on $pg_host:$pg_port; trying to start it …" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    done
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  if ! pg_up; then
    echo "error: PostgreSQL is down on $pg_host:$pg_port and could not be started." >&2
    echo "hint: start it (pg_ctlcluster <version> main start), or set APPRUN_TEST_PG_DSN to a server with trust auth." >&2
    exit 1
  fi
  echo "PostgreSQL started." >&2
fi

# Redis: the shared rate-limit store's tests use it (127.0.0.1:6379 unless
# APPRUN_TEST_REDIS says host:port). Without it they would fail slowly (the
# limiter fails open), so check it up front.
redis_addr=${APPRUN_TEST_REDIS:-127.0.0.1:6379}
redis_host=${redis_addr%%:*}
redis_port=${redis_addr##*:}

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h "$redis_host" -p "$redis_port" ping 2>/dev/null)" = "PONG" ]
  else
    (exec 3<>"/dev/tcp/$redis_host/$redis_port") 2>/dev/null
  fi
}

if ! redis_up; then
  echo "Redis is not answering on $redis_host:$redis_port; trying to start it …" >&2
  if command -v redis-server >/dev/null 2>&1 && [ "$redis_host" = 127.0.0.1 ]; then
    # In-memory only, as the machine's own service runs: nothing is kept on disk.
    mkdir -p /tmp/apprun-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
      --dir /tmp/apprun-redis --logfile /tmp/apprun-redis/redis.log >&2 || true
  fi
  for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  if ! redis_up; then
    echo "error: Redis is down on $redis_host:$redis_port and could not be started." >&2
    echo "hint: start it (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''), or set APPRUN_TEST_REDIS=host:port." >&2
    exit 1
  fi
  echo "Redis started." >&2
fi

# The benchmark harness (and its smoke test) drives load with wrk and hey,
# from Debian's packages.
missing=()
for tool in wrk hey; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing the load generators ${missing[*]} (Debian packages) …" >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; } || true
  fi
  for tool in "${missing[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "error: $tool is not installed and could not be installed here." >&2
      echo "hint: sudo apt-get install -y wrk hey" >&2
      exit 1
    fi
  done
fi
