"""A cluster deployment's settings and topology: node lists in `LEADFLOW_AMQP_URL`, every
queue that holds work replicated, priorities as one quorum lane per level, and the
classic topology of earlier versions kept for brokers that have it."""

from __future__ import annotations

import pytest

from shared.config import EnvReader, load_common
from shared.errors import ConfigError
from shared.topology import Topology

NODES = "amqp://u:p@node1:5672/vh, amqp://u:p@node2:5672/vh,amqp://u:p@node3:5673/vh"


def test_the_amqp_url_may_list_a_clusters_nodes() -> None:
    settings = load_common("enricher", EnvReader({"LEADFLOW_AMQP_URL": NODES}))
    assert settings.amqp_urls == (
        "amqp://u:p@node1:5672/vh",
        "amqp://u:p@node2:5672/vh",
        "amqp://u:p@node3:5673/vh",
    )
    assert settings.amqp_url == "amqp://u:p@node1:5672/vh"
    assert settings.queue_type == "quorum"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("amqp://a:5672/,", "none empty"),
        ("amqp://a:5672/,redis://b", "amqp/amqps URL"),
        ("amqp://a:5672/,amqp://b:99999/", "valid port"),
    ],
)
def test_every_node_url_is_checked(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_common("router", EnvReader({"LEADFLOW_AMQP_URL": value}))
    assert str(error.value).startswith("LEADFLOW_AMQP_URL: expected")
    assert expected in str(error.value)


def test_production_refuses_guest_on_any_node() -> None:
    env = {
        "LEADFLOW_ENV": "production",
        "LEADFLOW_DATA_DIR": "/tmp/leadflow",
        "LEADFLOW_AMQP_URL": "amqp://svc:pw@node1/vh,amqp://guest:guest@node2/vh",
    }
    with pytest.raises(ConfigError, match="credentials other than guest"):
        load_common("router", EnvReader(env))


def test_queue_type_is_quorum_or_classic() -> None:
    classic = load_common("router", EnvReader({"LEADFLOW_QUEUE_TYPE": "classic"}))
    assert classic.queue_type == "classic"
    with pytest.raises(ConfigError, match="LEADFLOW_QUEUE_TYPE"):
        load_common("router", EnvReader({"LEADFLOW_QUEUE_TYPE": "mirrored"}))


def test_every_queue_that_holds_work_is_replicated() -> None:
    topology = Topology("lf")
    specs = [*topology.queues(), *topology.lane_specs("enrich", "acme")]
    for spec in specs:
        kind = spec.arguments.get("x-queue-type")
        assert kind in ("quorum", "stream"), spec.name
        assert "x-max-priority" not in spec.arguments, "3.10 quorum queues have no priorities"
        if "x-dead-letter-exchange" in spec.arguments:
            # A dead letter (a retry coming home, a poison message) survives a node down.
            assert spec.arguments["x-dead-letter-strategy"] == "at-least-once", spec.name
            assert spec.arguments["x-overflow"] == "reject-publish", spec.name
            assert "x-max-length" not in spec.arguments, "reject-publish must refuse nothing"
    names = {spec.name for spec in specs}
    assert {"lf.enrich.suspect", "lf.enrich.dead", "lf.tasks.retry.5s", "lf.control"} <= names


def test_a_lane_per_priority_level_routed_by_the_tasks_priority() -> None:
    topology = Topology("lf")
    assert topology.lane_queues("enrich", "acme") == [
        "lf.enrich.tenant.acme.high",
        "lf.enrich.tenant.acme",
        "lf.enrich.tenant.acme.low",
    ]
    bindings = {spec.name: spec.bindings for spec in topology.lane_specs("enrich", "acme")}
    assert bindings["lf.enrich.tenant.acme.high"] == (("lf.tasks", "task.enrich.acme.high"),)
    assert bindings["lf.enrich.tenant.acme"] == (("lf.tasks", "task.enrich.acme"),)
    assert topology.task_key("task.enrich.acme", "high") == "task.enrich.acme.high"
    assert topology.task_key("task.enrich.acme", "normal") == "task.enrich.acme"
    assert topology.task_key("task.enrich.acme", "low") == "task.enrich.acme.low"
    for name in topology.lane_queues("scrape", "acme"):
        assert topology.spec_of(name).name == name
    with pytest.raises(KeyError):
        topology.spec_of("lf.enrich.tenant.acme.urgent")


def test_the_classic_topology_of_earlier_versions_is_unchanged() -> None:
    topology = Topology("lf", "classic")
    assert topology.lane_queues("enrich", "acme") == ["lf.enrich.tenant.acme"]
    assert topology.task_key("task.enrich.acme", "high") == "task.enrich.acme"
    lane = topology.lane_spec("enrich", "acme")
    assert lane.arguments == {
        "x-max-priority": 3,
        "x-dead-letter-exchange": "lf.dead",
        "x-dead-letter-routing-key": "lf.enrich",
    }
    by_name = {spec.name: spec.arguments for spec in topology.queues()}
    assert by_name["lf.enrich.dead"] == {"x-queue-mode": "lazy"}
    assert by_name["lf.tasks.retry.5s"] == {
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "lf.tasks",
    }
    assert by_name["lf.router.events"]["x-queue-type"] == "quorum"  # quorum already
