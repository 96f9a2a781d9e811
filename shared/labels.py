"""Metric label values that could name a tenant, kept tenant-free by default.

A tenant's lane is a queue named after the tenant (`<p>.<kind>.tenant.<tenant>`), and
queue names are the `queue` label of the consumer and lag metrics. Tenant names are
customer data that a metrics system keeps, shows and ships elsewhere, so lanes are
labelled `<p>.<kind>.tenant.*` (summed over tenants) unless
`LEADFLOW_METRICS_TENANT_LABELS=true` asks for one series per tenant.
"""

from __future__ import annotations

from shared.topology import WORK_KINDS, Topology

ANY_TENANT = "*"


def queue_label(topology: Topology, queue: str, tenant_labels: bool) -> str:
    """The `queue` label value of `queue`: its name, with a lane's tenant masked unless
    `tenant_labels`."""
    if tenant_labels:
        return queue
    for kind in WORK_KINDS:
        lane_prefix = topology.lane_queue(kind, "")
        if queue.startswith(lane_prefix) and len(queue) > len(lane_prefix):
            return topology.lane_queue(kind, ANY_TENANT)
    return queue
