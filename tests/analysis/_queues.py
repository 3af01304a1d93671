"""Tiny single-station scenarios for the what-if tests: Poisson sessions of one page at M/M/c.

The page ``visit`` is not a TPC-W page, so it has app factor 1, no database queries and no cache
look-ups: each session is exactly one customer of the app station, whose service is exponential.
"""

from __future__ import annotations

from typing import Any

from sim.scenario import Scenario, parse_scenario


def mmc_data(
    rate: float,
    servers: int,
    *,
    service: float = 0.02,
    horizon: float = 10.0,
    warmup: float | str = 0.0,
    name: str = "mmc",
) -> dict[str, Any]:
    """Return the data of a one-page shop: sessions at ``rate``/s, ``servers`` app servers."""
    return {
        "name": name,
        "seed": 11,
        "horizon": horizon,
        "warmup": warmup,
        "catalog": {"products": 1, "categories": 1},
        "population": {"users": 1, "returning_share": 0},
        "arrivals": {"rate": rate},
        "behavior": {
            "graph": {
                "start": "visit",
                "exit": "leave",
                "transitions": {"visit": {"leave": 1}},
                "think_time": {"constant": 0},
            }
        },
        "stations": {"app": {"servers": servers, "service": {"exponential": {"mean": service}}}},
    }


def mmc(rate: float, servers: int, **kwargs: Any) -> Scenario:
    """Return the validated one-page M/M/c scenario."""
    return parse_scenario(mmc_data(rate, servers, **kwargs))
