"""`make bench`: how fast leadflow is, measured against what the broker itself can do.

Each scenario is a module with an async `run(config)` returning a `report.Scenario`; the
CLI (`python -m bench --only e2e,celery --leads 5000`) runs the chosen ones, prints a
table and writes `var/bench/<timestamp>.json` and `var/bench/latest.json`.

Scenarios: `broker` (raw aio-pika ceiling, 1-3 hops), `e2e` (all services, zero-latency
providers), `provider` (100 ms providers, against the ideal the code allows), `celery`
(a Celery peer doing the same per-lead work), `memory` (peak RSS, 10k vs 100k leads),
`gateway` (status latency under load, accept time) and `profile` (py-spy on each service).
"""
