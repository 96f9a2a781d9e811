#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672: start the local one if it is
# installed, else the one in deploy/docker-compose.yml if Docker works, else say what to install.
#
#   devtools/ensure-rabbitmq.sh                # the broker (make test, make bench, CI)
#   devtools/ensure-rabbitmq.sh --management   # also its management UI (make run, make up)
#
# --management enables the rabbitmq_management plugin on the local node when it is not
# already and prints the UI's URL; it never fails the command (no rights, no
# rabbitmq-plugins, a remote broker: it says so and carries on). Tests never depend on it.
# RABBITMQ_NODE_PORT and RABBITMQ_MANAGEMENT_PORT change the ports checked (5672, 15672).
set -euo pipefail
cd "$(dirname "$0")/.."

BROKER_PORT="${RABBITMQ_NODE_PORT:-5672}"
MANAGEMENT_PORT="${RABBITMQ_MANAGEMENT_PORT:-15672}"
MANAGEMENT_URL="http://127.0.0.1:${MANAGEMENT_PORT}"
want_management=false
for arg in "$@"; do
  case "$arg" in
    --management) want_management=true ;;
    *) echo "usage: $0 [--management]" >&2; exit 2 ;;
  esac
done

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  for _ in $(seq 1 120); do
    if port_open "$BROKER_PORT"; then return 0; fi
    sleep 0.5
  done
  return 1
}

with_timeout() {
  local seconds=$1
  shift
  if command -v timeout >/dev/null 2>&1; then timeout "$seconds" "$@"; else "$@"; fi
}

show_management() {
  if port_open "$MANAGEMENT_PORT"; then
    echo "broker: management UI on $MANAGEMENT_URL (guest/guest in dev)"
  else
    echo "broker: the management plugin is on, but nothing answers on $MANAGEMENT_URL" \
      "(another management.tcp.port in the broker's config?)"
  fi
}

# Enable the management UI on the local node; a warning, never a failure, if it cannot be.
enable_management() {
  if port_open "$MANAGEMENT_PORT"; then
    show_management  # already on (or a broker from docker compose)
    return 0
  fi
  if ! command -v rabbitmq-plugins >/dev/null 2>&1; then
    echo "broker: no management UI (rabbitmq-plugins is not installed here)"
    return 0
  fi
  if rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
    show_management
    return 0
  fi
  echo "broker: enabling the management UI (rabbitmq-plugins enable rabbitmq_management)"
  local output
  if output=$(with_timeout 120 rabbitmq-plugins -q enable rabbitmq_management 2>&1); then
    show_management
  else
    echo "broker: could not enable the management UI, carrying on without it:" \
      "$(printf '%s\n' "$output" | grep -v '^\s*$' | tail -n 1)" >&2
    echo "broker: to enable it by hand: sudo rabbitmq-plugins enable rabbitmq_management" >&2
  fi
  return 0
}

if [ -n "${LEADFLOW_AMQP_URL:-}" ]; then
  echo "broker: using LEADFLOW_AMQP_URL (not starting a local one)"
  if $want_management; then
    echo "broker: management UI: see that broker's own (not managed from here)"
  fi
  exit 0
fi

started_with=""
if port_open "$BROKER_PORT"; then
  echo "broker: RabbitMQ is up on 127.0.0.1:$BROKER_PORT"
  started_with=local
elif command -v rabbitmq-server >/dev/null 2>&1; then
  echo "broker: starting the local rabbitmq-server"
  rabbitmq-server -detached
  if command -v rabbitmqctl >/dev/null 2>&1; then
    rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || true
  fi
  if ! wait_for_port; then
    echo "broker: rabbitmq-server did not open port $BROKER_PORT within 60s;" \
      "see its logs (/var/log/rabbitmq)" >&2
    exit 1
  fi
  echo "broker: RabbitMQ is up"
  started_with=local
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "broker: starting RabbitMQ with docker compose (deploy/docker-compose.yml)"
  docker compose -f deploy/docker-compose.yml up -d rabbitmq
  if ! wait_for_port; then
    echo "broker: the rabbitmq container did not open port $BROKER_PORT within 60s" >&2
    exit 1
  fi
  echo "broker: RabbitMQ is up"
  started_with=docker
else
  cat >&2 <<'MSG'
broker: RabbitMQ is not reachable on 127.0.0.1:5672 and cannot be started here.
Install one of:
  - Debian/Ubuntu: sudo apt-get install rabbitmq-server   (then re-run)
  - macOS:         brew install rabbitmq && brew services start rabbitmq
  - Docker:        a running Docker engine (deploy/docker-compose.yml starts RabbitMQ)
or point LEADFLOW_AMQP_URL at a broker you have.
MSG
  exit 1
fi

if $want_management; then
  if [ "$started_with" = docker ]; then
    show_management  # the rabbitmq:3.10-management image has the plugin on
  else
    enable_management
  fi
fi
