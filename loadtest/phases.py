"""The server's own phase timings (the `timings` of every rank answer) as custom Locust metrics.

Locust records whatever is fired on its `request` event; each phase becomes a row of request type
`server` in the stats, the CSV and the HTML report, beside the client-side latency of the same
requests, so a run shows how much of what the client waited was decode, compute, or neither
(network, queueing, encoding the answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the harness and the tests import this module; only Locust's processes load locust
    from locust.env import Environment

SERVER = "server"  # the request type of the phase rows; excluded from the summary's request totals
PHASES = ("decode_ms", "compute_ms", "total_ms")


def report_phases(environment: Environment, timings: dict[str, Any]) -> None:
    """Fire one Locust sample per server-reported phase of one rank answer."""
    for phase in PHASES:
        value = timings.get(phase)
        if isinstance(value, int | float):
            environment.events.request.fire(
                request_type=SERVER,
                name=phase,
                response_time=float(value),
                response_length=0,
                exception=None,
                context={},
            )
