#!/usr/bin/env bash
# Make sure the machine's Redis and PostgreSQL answer; start them when they are down.
# Tests that need them fail loudly (never skip) if this could not bring them up.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! up 6379 && command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for _ in $(seq 1 30); do up 5432 && up 6379 && exit 0; sleep 1; done
echo "warning: PostgreSQL (5432) or Redis (6379) is not answering; service tests will fail" >&2
