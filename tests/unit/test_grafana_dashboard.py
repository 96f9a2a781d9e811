"""`deploy/grafana/leadflow-dashboard.json`: importable, and its PromQL asks only for the
metrics the services expose, with their labels and label values, so it cannot drift.

METRICS is the contract with the services' `/metrics`: a metric renamed or a label changed
there must be changed here and in the dashboard together.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "leadflow-dashboard.json"

# metric -> {label: its values, or None when open (queue names, routing keys, providers)}
MESSAGE_OUTCOMES = {"ack", "retry", "dead_letter", "requeue", "dropped", "quarantined", "split"}
METRICS: dict[str, dict[str, set[str] | None]] = {
    "leadflow_messages_consumed_total": {"queue": None, "outcome": MESSAGE_OUTCOMES},
    "leadflow_messages_published_total": {"routing_key": None},
    "leadflow_message_handle_seconds_bucket": {"queue": None, "le": None},
    "leadflow_lead_outcomes_total": {"status": {"enriched", "failed", "scraped"}},
    "leadflow_provider_calls_total": {
        "provider": None,
        "outcome": {"found", "not_found", "rejected", "unavailable", "cached"},
    },
    "leadflow_provider_call_seconds_bucket": {"provider": None, "le": None},
    "leadflow_source_requests_total": {
        "source": None,
        "outcome": {"ok", "rate_limited", "unavailable", "rejected"},
    },
    "leadflow_webhook_deliveries_total": {"outcome": {"delivered", "retry", "given_up"}},
    "leadflow_jobs": {"state": None},
    "leadflow_jobs_stalled": {},
    "leadflow_queue_messages_ready": {"queue": None},
    "leadflow_gateway_event_streams": {},
}
# Prometheus's own series for each target (1 when the scrape worked): not the services'.
PROMETHEUS_SERIES: dict[str, dict[str, set[str] | None]] = {"up": {}}
# Added by deploy/prometheus/prometheus.yml to every series.
TARGET_LABELS = {"job", "instance", "service"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset",
}  # fmt: skip
STRING = r'"(?:[^"\\]|\\.)*"'
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(rf"({NAME})\s*\{{([^}}]*)\}}")
MATCHER = re.compile(rf"({NAME})\s*(=~|!~|!=|=)\s*({STRING})")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords, labels)."""
    text = re.sub(STRING, '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = GROUPING.sub(" ", text)
    names = set()
    for match in re.finditer(rf"(?<![\w$.])({NAME})\s*(\()?", text):
        if match.group(2) is None and match.group(1) not in KEYWORDS:
            names.add(match.group(1))
    return names


def matchers(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher on a named selector."""
    for selector in SELECTOR.finditer(expr):
        for label, operator, quoted in MATCHER.findall(selector.group(2)):
            yield selector.group(1), label, operator, json.loads(quoted)


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for group in GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }


def problems(expr: str) -> list[str]:
    """What in `expr` the services' metrics do not offer; empty when all is known."""
    known = {**METRICS, **PROMETHEUS_SERIES}
    names = metric_names(expr)
    found = [f"unknown metric {name}" for name in sorted(names - set(known))]
    if not names:
        found.append("reads no metric")
    for metric, label, operator, value in matchers(expr):
        labels = known.get(metric, {})
        if label not in labels and label not in TARGET_LABELS:
            found.append(f"{metric} has no label {label}")
            continue
        allowed = labels.get(label)
        if allowed is None or "$" in value or operator in ("!=", "!~"):
            continue
        values = set(value.split("|")) if operator == "=~" else {value}
        found.extend(f"{metric}{{{label}}} is never {v!r}" for v in sorted(values - allowed))
    offered = {label for name in names for label in known.get(name, {})} | TARGET_LABELS
    found.extend(f"no metric here has label {label}" for label in grouping_labels(expr) - offered)
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def graph_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in graph_panels(dashboard)
        for target in panel["targets"]
    ]


# -- the checker itself must catch drift ---------------------------------------------------


def test_metric_names_skip_functions_labels_and_durations() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (queue, le) (rate(leadflow_message_handle_seconds_bucket"
        '{queue=~"$queue"}[$__rate_interval]))) / on(queue) group_left max(up{job="x"}) * 1e3'
    )
    assert metric_names(expr) == {"leadflow_message_handle_seconds_bucket", "up"}


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(leadflow_messages_consumed[5m])", "unknown metric leadflow_messages_consumed"),
        ('leadflow_jobs{status="running"}', "leadflow_jobs has no label status"),
        (
            'leadflow_provider_calls_total{outcome=~"found|timeout"}',
            "leadflow_provider_calls_total{outcome} is never 'timeout'",
        ),
        ("sum by (tenant) (leadflow_jobs)", "no metric here has label tenant"),
        ("vector(1)", "reads no metric"),
    ],
)
def test_drift_is_reported(expr: str, problem: str) -> None:
    assert problem in problems(expr)


def test_known_expressions_pass() -> None:
    assert problems('sum by (service) (leadflow_jobs{state="running", job="leadflow"})') == []


# -- the dashboard ------------------------------------------------------------------------


def test_every_query_reads_only_the_services_metrics(dashboard: dict[str, Any]) -> None:
    found = {f"{title}: {expr}": problems(expr) for title, expr in exprs(dashboard)}
    assert {query: p for query, p in found.items() if p} == {}


def test_every_service_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(expr) for _, expr in exprs(dashboard)))
    assert set(METRICS) - used == set()


def test_variables_read_only_the_services_metrics(dashboard: dict[str, Any]) -> None:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(rf"label_values\(({NAME}),\s*({NAME})\)", text)
        assert match, f"${variable['name']}: {text}"
        assert match.group(2) in METRICS[match.group(1)], text
        assert variable["datasource"] == DATASOURCE


def test_prometheus_datasource_is_a_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in graph_panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    """What Grafana's import needs: no instance id, a stable uid, panels laid on the grid."""
    assert dashboard["id"] is None
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in graph_panels(dashboard):
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_parses_every_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Each query as a recording rule: `promtool check rules` parses its PromQL."""
    grafana_variables = {"$__rate_interval": "1m", "$queue": ".*"}
    rules = []
    for index, (_, expr) in enumerate(exprs(dashboard)):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    rules_file = tmp_path / "rules.json"  # JSON is YAML
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
