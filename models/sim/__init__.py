"""numpy-only recommender simulator: users, items, MTL predictions and responses (no torch)."""

from models.sim.config import SimConfig
from models.sim.requests import rank_request, served_responses, write_example_request
from models.sim.simulator import Requests, Responses, Simulator

__all__ = [
    "Requests",
    "Responses",
    "SimConfig",
    "Simulator",
    "rank_request",
    "served_responses",
    "write_example_request",
]
