from __future__ import annotations

import math
from pathlib import Path

import pytest

from sim.analysis.compare import RunSummary, UnknownKpi
from sim.analysis.plan import (
    Slo,
    _search,
    capacity_value,
    parse_slo,
    plan,
    scenario_slos,
    station_scv,
    twin_guess,
)
from sim.analysis.stats import MeanCI
from sim.analysis.theory import mmc as mmc_theory
from sim.analysis.theory import smallest_servers
from sim.scenario import load_scenario
from tests.analysis._queues import mmc

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"
NAN = float("nan")

# --- objectives -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("page_p95<=100ms", Slo("page_p95", "latency.p95", "<=", 0.1, "100ms")),
        ("checkout_p95 <= 2s", Slo("checkout_p95", "checkout_latency.p95", "<=", 2.0, "2s")),
        ("payment_success>=0.97", Slo("payment_success", "payment_success", ">=", 0.97, "0.97")),
        ("payment_success=>97%", Slo("payment_success", "payment_success", ">=", 0.97, "97%")),
        ("app_wait=<5ms", Slo("app_wait", "wait.app", "<=", 0.005, "5ms")),
        ("latency.p99<=0.5", Slo("latency.p99", "latency.p99", "<=", 0.5, "0.5")),
        ("throughput>=120/min", Slo("throughput", "throughput", ">=", 2.0, "120/min")),
        ("conversion>=0.02", Slo("conversion", "conversion", ">=", 0.02, "0.02")),
    ],
)
def test_parse_slo(text, expected):
    assert parse_slo(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("page_p95", "is not of the form NAME<=VALUE"),
        ("page_p95<100ms", "use <= or >=, not '<'"),
        ("page_p95=100ms", "use <= or >=, not '='"),
        ("speed<=3", "unknown objective 'speed' (use one of: page_mean"),
        ("page_p95<=fast", "expected a duration"),
        ("payment_success>=lots", "could not convert"),
        ("payment_success>=inf", "the target must be a finite number"),
        ("conversion>=-0.5", "must not be negative"),
        ("payment_success>=1.5", "payment_success is a share (0 to 1, or 0 % to 100 %)"),
        ("conversion>=7", "no run reaches 7"),
        ("cache_hit_rate>=101%", "cache_hit_rate is a share"),
        ("utilisation.app.utilisation>=1.2", "utilisation.app.utilisation is a share"),
    ],
)
def test_parse_slo_rejects(text, message):
    with pytest.raises(ValueError) as err:
        parse_slo(text)
    assert message in str(err.value) and repr(text) in str(err.value)


def test_slo_met_uses_the_far_bound():
    below = Slo("page_p95", "latency.p95", "<=", 0.1)
    above = Slo("payment_success", "payment_success", ">=", 0.9)
    ci = MeanCI(0.09, 0.005, 0.085, 0.095, 5)
    assert (below.bound(ci), below.met(ci)) == (0.095, True)
    straddles = MeanCI(0.09, 0.02, 0.07, 0.11, 5)
    assert below.met(straddles) is False  # the mean meets it; the interval does not
    assert above.met(MeanCI(0.95, 0.04, 0.91, 0.99, 5)) is True
    assert above.met(MeanCI(0.95, 0.06, 0.89, 1.01, 5)) is False
    assert below.met(MeanCI(0.05, NAN, NAN, NAN, 1)) is None
    assert str(below) == "page_p95 <= 0.1s" and str(above) == "payment_success >= 0.9"
    assert below.is_time and not above.is_time


def test_scenario_slos_come_from_the_scenario():
    smoke = load_scenario(SMOKE)
    slos = scenario_slos(smoke)
    assert [(s.name, s.kpi, s.comparison) for s in slos] == [
        ("page_p95", "latency.p95", "<="),
        ("checkout_p95", "checkout_latency.p95", "<="),
        ("payment_success", "payment_success", ">="),
    ]
    assert [s.target for s in slos] == [
        smoke.slo.page_p95,
        smoke.slo.checkout_p95,
        smoke.slo.payment_success,
    ]
    custom = load_scenario(SMOKE, ["slo.page_p95=80ms", "slo.checkout_p95=1.5s"])
    assert [str(s) for s in scenario_slos(custom)][:2] == [
        "page_p95 <= 80ms",
        "checkout_p95 <= 1.5s",
    ]


# --- the twin -------------------------------------------------------------------------------------


def test_capacity_value():
    smoke = load_scenario(SMOKE)
    assert capacity_value(smoke, "stations.app.servers") == 4
    assert capacity_value(smoke, "payments.gateways.card-a.servers") == 4
    assert capacity_value(smoke, "stations.database.pool") == smoke.stations.database.pool
    assert capacity_value(smoke, "fulfilment.warehouses.east.workers") == 2
    assert parse_slo("payment_success>=100%").target == 1.0  # a share of 1 is reachable
    # the run's settings are integers of the scenario but not of the shop
    for path in ("seed", "replications"):
        with pytest.raises(ValueError, match=f"--size '{path}' is a setting of the run"):
            capacity_value(smoke, path)
    assert parse_slo("utilisation.app.utilisation<=1.2").target == 1.2  # always met: allowed
    for path in ("stations.app.service", "stations.app.cores", "stations.cache.policy"):
        with pytest.raises(ValueError, match=f"--size '{path}' is not an integer capacity"):
            capacity_value(smoke, path)


def test_station_scv():
    smoke = load_scenario(SMOKE)
    assert station_scv(smoke, "app") == pytest.approx(0.25, rel=0.01)  # lognormal, cv 0.5
    assert station_scv(smoke, "database") == pytest.approx(1.0)  # exponential
    assert station_scv(smoke, "cache") == 0.0  # constant
    assert station_scv(smoke, "gateway:card-a") > 1.0  # lognormal median 350 ms, p95 2 s
    assert station_scv(smoke, "warehouse:east") >= 0.0
    assert station_scv(smoke, "elsewhere") == 1.0


def _pilot(arrivals: int, elapsed: float, service: float, completions: int) -> list[RunSummary]:
    row = {
        "name": "app",
        "arrivals": arrivals,
        "elapsed": elapsed,
        "total_service": service,
        "completions": completions,
    }
    other = dict(row, name="database", arrivals=1)
    return [RunSummary("x", 1, i, {}, 0.0, False, False, (row, other), (), 0.0) for i in range(2)]


def test_twin_guess_from_a_wait_objective():
    scenario = mmc(150, 9)
    pilot = _pilot(3000, 20.0, 60.0, 3000)  # lambda 150/s, S 20 ms
    slos = [parse_slo("app_wait<=1.2ms"), parse_slo("page_p95<=100ms")]
    guess = twin_guess(scenario, "stations.app.servers", slos, pilot)
    assert (guess.station, guess.arrival_rate, guess.mean_service) == ("app", 150.0, 0.02)
    assert (guess.scv, guess.max_wait, guess.basis) == (1.0, 0.0012, "the app_wait objective")
    assert guess.servers == smallest_servers(150.0, 50.0, max_wait=0.0012) == 6
    assert guess.offered_load == pytest.approx(3.0)


def test_twin_guess_from_latency_and_variability():
    smoke = load_scenario(SMOKE)
    pilot = _pilot(3000, 20.0, 60.0, 3000)
    guess = twin_guess(smoke, "stations.app.servers", [parse_slo("page_p95<=20ms")], pilot)
    assert guess.max_wait == pytest.approx(0.002)
    assert guess.basis == "10% of the tightest latency objective (page_p95 <= 20ms)"
    # Allen-Cunneen: an scv of 0.25 halves... the M/M/c wait may be 2 / 1.25 times larger
    target = 0.002 * 2.0 / (1.0 + guess.scv)
    assert guess.servers == smallest_servers(150.0, 50.0, max_wait=target)
    fallback = twin_guess(smoke, "stations.app.servers", [parse_slo("conversion>=0.1")], pilot)
    assert (fallback.max_wait, fallback.basis) == (0.02, "one mean service time")


def test_twin_guess_without_data():
    scenario = mmc(150, 9)
    idle = twin_guess(scenario, "stations.app.servers", [parse_slo("app_wait<=1ms")], [])
    assert (idle.servers, idle.basis) == (None, "no traffic measured")
    elsewhere = twin_guess(scenario, "catalog.products", [parse_slo("app_wait<=1ms")], [])
    assert elsewhere.servers is None and elsewhere.station is None
    assert elsewhere.basis == "catalog.products is not a station" and math.isnan(
        elsewhere.offered_load
    )


# --- the search -----------------------------------------------------------------------------------


def test_search_finds_the_smallest_passing_value_in_few_steps():
    for threshold in range(1, 45):
        for start in range(1, 41):
            calls: list[int] = []

            def ok(c: int, t: int = threshold, calls: list[int] = calls) -> bool:
                calls.append(c)
                return c >= t

            answer = _search(ok, start, 1, 40)
            assert answer == (threshold if threshold <= 40 else None), (threshold, start)
            distance = abs(threshold - start) + 1
            assert len(calls) <= 2 * math.ceil(math.log2(distance + 1)) + 3, (threshold, start)


def test_search_reaches_the_lower_bound():
    assert _search(lambda c: True, 5, 3, 10) == 3
    assert _search(lambda c: c >= 3, 3, 3, 10) == 3


# --- the planner on an M/M/c station --------------------------------------------------------------

RATE, SERVICE, TARGET = 150.0, 0.02, 0.0015


def test_plan_matches_erlang_c_on_an_mmc_station():
    """The smallest c whose mean wait in queue is at most 1.5 ms: Erlang C says 6."""
    expected = smallest_servers(RATE, 1.0 / SERVICE, max_wait=TARGET)
    assert expected == 6
    assert mmc_theory(RATE, 1 / SERVICE, 5).wq > 1.5 * TARGET  # 2.36 ms: c = 5 misses clearly
    assert mmc_theory(RATE, 1 / SERVICE, 6).wq < 0.45 * TARGET  # 0.66 ms: c = 6 meets clearly
    scenario = mmc(RATE, 9, horizon=30.0, warmup=5.0)
    seen = []
    result = plan(
        scenario,
        "stations.app.servers",
        [parse_slo("app_wait<=1.5ms")],
        4,
        on_evaluation=lambda e: seen.append(e.capacity),
    )
    waits = {e.capacity: e.stats["app_wait"] for e in result.evaluations}
    message = f"answer {result.answer}, Erlang C {expected}; waits {waits}"
    assert result.answer == expected, message
    assert result.twin.servers == expected and result.start == expected
    assert seen == [9, 6, 5]  # the pilot, the twin's guess, one step down: no grid
    assert [e.step for e in result.evaluations] == [0, 1, 2]
    assert not result.evaluation(5).all_met and result.evaluation(6).all_met
    for c in (5, 6):  # the simulated waits agree with Erlang C
        ci = waits[c]
        assert ci.low * 0.7 <= mmc_theory(RATE, 1 / SERVICE, c).wq <= ci.high * 1.3, message
    assert result.monotone and result.runs == 12
    assert (result.base_capacity, result.lower, result.upper, result.replications) == (
        9,
        1,
        1024,
        4,
    )
    curve = result.curve()
    assert list(curve["capacity"]) == [5, 6, 9]
    assert list(curve["met"]) == ["no", "yes", "yes"]
    assert (curve["bound"] == curve["high"]).all()
    with pytest.raises(KeyError, match="capacity 7 was not evaluated"):
        result.evaluation(7)


def test_plan_reports_no_answer_within_the_bounds():
    scenario = mmc(20, 1, horizon=5.0)
    result = plan(
        scenario, "stations.app.servers", [parse_slo("page_mean<=5ms")], 2, lower=1, upper=3
    )
    assert result.answer is None
    capacities = [e.capacity for e in result.evaluations]
    assert capacities[0] == 1 and 3 in capacities  # the pilot and the upper bound
    assert len(capacities) <= 3
    assert result.curve()["met"].eq("no").all()


def test_plan_without_a_station_starts_at_the_scenario_value():
    scenario = mmc(20, 2, horizon=5.0)
    result = plan(scenario, "catalog.products", [parse_slo("throughput>=5/s")], 3, upper=4)
    assert result.twin.servers is None and result.start == 1
    assert result.answer == 1
    assert result.monotone


def test_plan_rejects_bad_requests():
    scenario = mmc(20, 2, horizon=5.0)
    slo = parse_slo("app_wait<=5ms")
    with pytest.raises(ValueError, match="at least one objective"):
        plan(scenario, "stations.app.servers", [], 2)
    with pytest.raises(ValueError, match="'app_wait' is given more than once"):
        plan(scenario, "stations.app.servers", [slo, slo], 2)
    with pytest.raises(ValueError, match="at least 2 replications"):
        plan(scenario, "stations.app.servers", [slo], 1)
    with pytest.raises(ValueError, match="1 <= min <= max"):
        plan(scenario, "stations.app.servers", [slo], 2, lower=5, upper=4)
    with pytest.raises(ValueError, match="not an integer capacity"):
        plan(scenario, "arrivals.rate", [slo], 2)
    with pytest.raises(UnknownKpi, match=r"--slo 'latency\.p96': no such KPI"):
        plan(scenario, "stations.app.servers", [parse_slo("latency.p96<=1s")], 2)
