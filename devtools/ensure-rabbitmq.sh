#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672: start the local one if it is
# installed, else the one in deploy/docker-compose.yml if Docker works, else say what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

wait_for_port() {
  for _ in $(seq 1 120); do
    if port_open; then return 0; fi
    sleep 0.5
  done
  return 1
}

if [ -n "${LEADFLOW_AMQP_URL:-}" ]; then
  echo "broker: using LEADFLOW_AMQP_URL (not starting a local one)"
  exit 0
fi
if port_open; then
  echo "broker: RabbitMQ is up on 127.0.0.1:5672"
  exit 0
fi
if command -v rabbitmq-server >/dev/null 2>&1; then
  echo "broker: starting the local rabbitmq-server"
  rabbitmq-server -detached
  if command -v rabbitmqctl >/dev/null 2>&1; then
    rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || true
  fi
  wait_for_port && { echo "broker: RabbitMQ is up"; exit 0; }
  echo "broker: rabbitmq-server did not open port 5672 within 60s; see its logs (/var/log/rabbitmq)" >&2
  exit 1
fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "broker: starting RabbitMQ with docker compose (deploy/docker-compose.yml)"
  docker compose -f deploy/docker-compose.yml up -d rabbitmq
  wait_for_port && { echo "broker: RabbitMQ is up"; exit 0; }
  echo "broker: the rabbitmq container did not open port 5672 within 60s" >&2
  exit 1
fi
cat >&2 <<'MSG'
broker: RabbitMQ is not reachable on 127.0.0.1:5672 and cannot be started here.
Install one of:
  - Debian/Ubuntu: sudo apt-get install rabbitmq-server   (then re-run)
  - macOS:         brew install rabbitmq && brew services start rabbitmq
  - Docker:        a running Docker engine (deploy/docker-compose.yml starts RabbitMQ)
or point LEADFLOW_AMQP_URL at a broker you have.
MSG
exit 1
