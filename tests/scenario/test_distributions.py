from __future__ import annotations

import decimal
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sim.scenario.distributions import (
    Z95,
    Constant,
    Empirical,
    Exponential,
    LogNormal,
    Normal,
    Uniform,
    distribution,
)

# Sample-mean tolerance: with n draws the standard error of the mean is sd / sqrt(n) =
# mean * sqrt(scv / n). Five standard errors bound a false failure at about 6e-7 per check for
# any seed (the seeds are fixed, so the tests are deterministic anyway).
N = 200_000
SIGMAS = 5.0


def assert_sample_mean(dist, seed=1, n=N):
    xs = dist.sample_many(np.random.default_rng(seed), n)
    assert xs.shape == (n,)
    assert xs.dtype == np.float64
    se = math.sqrt(dist.variance / n)
    assert abs(xs.mean() - dist.mean) <= SIGMAS * se + 1e-15
    return xs


def lognormal_sigma(median, p95):
    return math.log(p95 / median) / Z95


CASES = [
    ({"constant": "0.3ms"}, 0.0003, 0.0),
    ({"exponential": {"mean": "5ms"}}, 0.005, 1.0),
    ({"uniform": {"low": "1ms", "high": "3ms"}}, 0.002, (0.002**2 / 12) / 0.002**2),
    ({"lognormal": {"mean": "20ms", "cv": 0.5}}, 0.02, 0.25),
    (
        {"lognormal": {"median": "350ms", "p95": "2s"}},
        0.35 * math.exp(lognormal_sigma(0.35, 2.0) ** 2 / 2),
        math.expm1(lognormal_sigma(0.35, 2.0) ** 2),
    ),
    ({"empirical": ["1ms", "2ms", "5ms"]}, 0.008 / 3, None),
    ({"normal": {"mean": 0, "sd": 1}}, math.sqrt(2 / math.pi), math.pi / 2 - 1),
]


@pytest.mark.parametrize(("spec", "mean", "scv"), CASES)
def test_each_distribution_has_its_exact_mean_and_scv(spec, mean, scv):
    dist = distribution(spec)
    assert dist.mean == pytest.approx(mean, rel=1e-12)
    if scv is not None:
        assert dist.scv == pytest.approx(scv, rel=1e-12, abs=1e-15)
    assert dist.variance == pytest.approx(dist.scv * dist.mean**2, rel=1e-12)


@pytest.mark.parametrize(("spec", "mean", "scv"), CASES)
def test_each_distribution_samples_its_mean(spec, mean, scv):
    assert_sample_mean(distribution(spec))


def test_empirical_moments_are_those_of_its_values():
    dist = distribution({"empirical": [1, 2, 5]})
    assert dist.mean == pytest.approx(8 / 3)
    variance = ((1 - 8 / 3) ** 2 + (2 - 8 / 3) ** 2 + (5 - 8 / 3) ** 2) / 3
    assert dist.scv == pytest.approx(variance / (8 / 3) ** 2)
    xs = dist.sample_many(np.random.default_rng(3), 1000)
    assert set(xs.tolist()) == {1.0, 2.0, 5.0}


def test_exponential_cap_clamps_and_has_the_exact_capped_mean():
    # TPC-W think time: exponential with mean 7 s, capped at 70 s.
    dist = distribution({"exponential": {"mean": "7s", "cap": "70s"}})
    assert dist.mean == pytest.approx(7 * (1 - math.exp(-10)), rel=1e-12)
    second = 2 * 49 * (1 - math.exp(-10) * 11)
    assert dist.scv == pytest.approx(second / dist.mean**2 - 1, rel=1e-9)
    xs = assert_sample_mean(dist)
    assert xs.max() <= 70.0
    tight = distribution({"exponential": {"mean": 7, "cap": 1}})
    xs = assert_sample_mean(tight)
    assert xs.max() == 1.0
    assert tight.mean == pytest.approx(7 * (1 - math.exp(-1 / 7)), rel=1e-12)


def test_capped_lognormal_and_normal_match_simulation():
    for spec in (
        {"lognormal": {"median": "350ms", "p95": "2s", "cap": "3s"}},
        {"lognormal": {"mean": 1, "cv": 2, "cap": 0.5}},
        {"normal": {"mean": 1, "sd": 2, "cap": 2}},
        {"normal": {"mean": 20, "sd": 5, "cap": 22}},
    ):
        dist = distribution(spec)
        xs = assert_sample_mean(dist, n=400_000)
        cap = spec[next(iter(spec))]["cap"]
        assert xs.max() <= distribution({"constant": cap}).mean
        sample_scv = xs.var() / xs.mean() ** 2
        assert sample_scv == pytest.approx(dist.scv, rel=0.03)


def test_truncated_normal_mean_is_the_truncated_mean():
    dist = distribution({"normal": {"mean": "20ms", "sd": "5ms"}})
    alpha = -4.0  # (0 - 20) / 5
    phi = math.exp(-alpha * alpha / 2) / math.sqrt(2 * math.pi)
    kept = 1 - 0.5 * math.erfc(-alpha / math.sqrt(2))
    assert dist.mean == pytest.approx(0.02 + 0.005 * phi / kept, rel=1e-12)
    xs = assert_sample_mean(dist)
    assert xs.min() >= 0.0


def test_normal_single_samples_are_never_negative():
    dist = distribution({"normal": {"mean": 0, "sd": 1}})
    rng = np.random.default_rng(5)
    xs = [dist.sample(rng) for _ in range(2000)]
    assert min(xs) >= 0.0
    assert abs(np.mean(xs) - dist.mean) <= SIGMAS * math.sqrt(dist.variance / 2000)


def test_lognormal_parameters():
    dist = distribution({"lognormal": {"median": "350ms", "p95": "2s"}})
    assert isinstance(dist, LogNormal)
    assert dist.mu == pytest.approx(math.log(0.35))
    assert dist.sigma == pytest.approx(math.log(2 / 0.35) / 1.6448536269514722)
    xs = dist.sample_many(np.random.default_rng(11), N)
    assert np.median(xs) == pytest.approx(0.35, rel=0.02)
    assert np.quantile(xs, 0.95) == pytest.approx(2.0, rel=0.03)


def test_sampling_with_the_same_seed_is_deterministic():
    for spec, _, _ in CASES:
        dist = distribution(spec)
        a = dist.sample_many(np.random.default_rng(42), 50)
        b = dist.sample_many(np.random.default_rng(42), 50)
        assert np.array_equal(a, b)
        r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
        assert [dist.sample(r1) for _ in range(20)] == [dist.sample(r2) for _ in range(20)]


def test_sample_returns_python_floats_drawn_from_the_given_generator():
    for spec, _, _ in CASES:
        dist = distribution(spec)
        assert type(dist.sample(np.random.default_rng(0))) is float
    exp = distribution({"exponential": {"mean": 1}})
    rng = np.random.default_rng(7)
    first = exp.sample(rng)
    assert exp.sample(rng) != first  # the generator advanced


def test_bare_values_are_constants_and_kinds_are_classes():
    assert distribution("20ms") == Constant(value=0.02)
    assert distribution(3) == Constant(value=3.0)
    assert isinstance(distribution({"exponential": {"mean": 1}}), Exponential)
    assert isinstance(distribution({"uniform": {"low": 1, "high": 1}}), Uniform)
    assert isinstance(distribution({"normal": {"mean": 1, "sd": 1}}), Normal)
    assert isinstance(distribution({"empirical": [1]}), Empirical)
    assert distribution({"uniform": {"low": 2, "high": 2}}).scv == 0.0
    assert distribution({"constant": 0}).scv == 0.0
    assert distribution({"uniform": {"low": 0, "high": 0}}).scv == 0.0
    assert distribution({"empirical": [0, 0]}).scv == 0.0
    assert distribution(0).sample_many(np.random.default_rng(0), 3).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "spec",
    [
        {"constant": "0.3ms"},
        {"exponential": {"mean": "5ms", "cap": 1}},
        {"uniform": {"low": "1ms", "high": "3ms"}},
        {"normal": {"mean": "20ms", "sd": "5ms", "cap": "1s"}},
        {"lognormal": {"mean": "20ms", "cv": 0.5}},
        {"lognormal": {"median": "350ms", "p95": "2s", "cap": "20s"}},
        {"empirical": [1, 2, 5]},
    ],
)
def test_dump_parses_back_to_an_equal_distribution_and_pickles(spec):
    dist = distribution(spec)
    dumped = dist.model_dump()
    assert list(dumped) == [next(iter(spec))]
    again = distribution(dumped)
    assert again == dist
    assert hash(again) == hash(dist)
    assert pickle.loads(pickle.dumps(dist)) == dist
    assert pickle.loads(pickle.dumps(dist)).mean == dist.mean


def test_empirical_equality_compares_values():
    assert distribution({"empirical": [1, 2]}) != distribution({"empirical": [1, 3]})
    assert distribution({"empirical": [1]}) != distribution({"constant": 1})


def errors_of(spec):
    with pytest.raises(ValidationError) as info:
        distribution(spec)
    return [(tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("spec", "loc", "message"),
    [
        (
            {"lognormal": {"mean": 1}},
            ("lognormal",),
            "give either mean and cv, or median and p95 (got mean)",
        ),
        (
            {"lognormal": {}},
            ("lognormal",),
            "give either mean and cv, or median and p95 (got none)",
        ),
        (
            {"lognormal": {"mean": 1, "cv": 1, "median": 1}},
            ("lognormal",),
            "give either mean and cv, or median and p95 (got cv, mean, median)",
        ),
        (
            {"lognormal": {"median": 2, "p95": 1}},
            ("lognormal",),
            "p95 (1) must exceed the median (2)",
        ),
        (
            {"lognormal": {"median": 1e-300, "p95": 1e9}},
            ("lognormal",),
            "parameters too extreme: the mean or variance is not finite",
        ),
        (
            {"lognormal": {"median": 1e-100, "p95": 1e9}},
            ("lognormal",),
            "parameters too extreme: the mean or variance is not finite",
        ),
        (
            {"normal": {"mean": -1, "sd": 1}},
            ("normal", "mean"),
            "value must not be negative, got -1",
        ),
        ({"normal": {"mean": 1, "sd": 0}}, ("normal", "sd"), "Input should be greater than 0"),
        ({"uniform": {"low": 3, "high": 1}}, ("uniform",), "low (3) must not exceed high (1)"),
        ({"empirical": []}, ("empirical",), "must list between 1 and 10000 values, got 0"),
        (
            {"empirical": list(range(10_001))},
            ("empirical",),
            "must list between 1 and 10000 values, got 10001",
        ),
        ({"empirical": "1ms"}, ("empirical",), "expected a list of values, got '1ms'"),
        (
            {"empirical": [1, "x"]},
            ("empirical",),
            "value 1: expected a number or a duration such as '20ms', got 'x'",
        ),
        (
            {"constant": "x"},
            ("constant",),
            "expected a number or a duration such as '20ms', got 'x'",
        ),
        ({"constant": "-1s"}, ("constant",), "value must not be negative, got '-1s'"),
        (
            {"gamma": 1},
            (),
            "unknown distribution 'gamma' (use one of constant, exponential, uniform, normal, "
            "lognormal, empirical)",
        ),
        (
            {"exponential": {"mean": 1}, "uniform": {}},
            (),
            "a distribution has exactly one key (constant, exponential, uniform, normal, "
            "lognormal, empirical), got exponential, uniform",
        ),
        (
            [1],
            (),
            "expected a distribution (a mapping with one key: constant, exponential, uniform, "
            "normal, lognormal, empirical), got [1]",
        ),
        (
            {"exponential": {"mean": 1, "sd": 2}},
            ("exponential", "sd"),
            "Extra inputs are not permitted",
        ),
        ({"exponential": {"mean": 0}}, ("exponential", "mean"), "Input should be greater than 0"),
        (
            {"exponential": {"mean": 1, "cap": 0}},
            ("exponential", "cap"),
            "Input should be greater than 0",
        ),
    ],
)
def test_bad_distributions_are_rejected_at_their_key(spec, loc, message):
    assert errors_of(spec) == [(loc, message)]


def test_direct_construction_needs_one_form_and_values():
    with pytest.raises(ValidationError):
        Empirical(points=())
    with pytest.raises(ValidationError):
        LogNormal.model_validate({"mean": 1})
    assert LogNormal.model_validate({"mean": 1, "cv": 1}).mean == pytest.approx(1.0)


def test_a_lognormal_with_no_spread_is_a_constant():
    dist = distribution({"lognormal": {"mean": 2, "cv": 1e-200}})
    assert dist.sigma == 0.0
    assert dist.mean == pytest.approx(2.0)
    assert dist.scv == 0.0
    capped = distribution({"lognormal": {"mean": 2, "cv": 1e-200, "cap": 1}})
    assert capped.mean == 1.0


def test_a_parsed_distribution_passes_through():
    dist = distribution({"exponential": {"mean": 1}})
    assert distribution(dist) is dist


@pytest.mark.parametrize(
    ("spec", "mean", "scv"),
    [
        (3.157700985225623e-229, 3.157700985225623e-229, 0.0),
        (5e-324, 5e-324, 0.0),
        ({"exponential": {"mean": 1e-300}}, 1e-300, 1.0),
        ({"uniform": {"low": 1e-300, "high": 3e-300}}, 2e-300, 1.0 / 12.0),
        ({"empirical": [1e-300, 3e-300]}, 2e-300, 0.25),
    ],
)
def test_tiny_values_keep_exact_moments_where_squares_underflow(spec, mean, scv):
    # mean * mean underflows to 0 below about 1e-162: the SCV is computed as ratios instead
    dist = distribution(spec)
    assert dist.mean == pytest.approx(mean, rel=1e-12)
    assert dist.scv == pytest.approx(scv, rel=1e-9)


EXTREME = st.one_of(
    st.sampled_from([0.0, 5e-324, 1e-308, 1e-300, 1e-162, 1e-150, 1e-9, 1.0, 1e9, 1e9 - 1]),
    st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["exponential", "uniform", "normal", "lognormal", "lognormal-p95"]),
    a=EXTREME,
    b=EXTREME,
    cap=st.one_of(st.none(), EXTREME),
)
def test_extreme_parameters_give_finite_moments_or_a_clear_refusal(kind, a, b, cap):
    spec = {
        "exponential": {"mean": a},
        "uniform": {"low": min(a, b), "high": max(a, b)},
        "normal": {"mean": a, "sd": b},
        "lognormal": {"mean": a, "cv": b},
        "lognormal-p95": {"median": a, "p95": b},
    }[kind]
    if cap is not None and kind != "uniform":
        spec["cap"] = cap
    try:
        dist = distribution({kind.split("-")[0]: spec})
    except ValidationError as exc:  # refused with a message, never another exception
        assert all(error["msg"] for error in exc.errors())
        return
    assert math.isfinite(dist.mean) and dist.mean >= 0.0
    assert math.isfinite(dist.scv) and dist.scv >= 0.0
    assert math.isfinite(dist.variance) and dist.variance >= 0.0


@pytest.mark.parametrize("ratio", [1e-16, 1e-12, 1e-6, 9.99e-4, 1.001e-3, 0.5, 2.0, 50.0])
def test_a_capped_exponential_has_its_exact_scv_even_when_the_cap_is_tiny(ratio):
    # the exact SCV of min(X, c), X exponential with mean 1: 2 g / b**2 - 1 with
    # b = 1 - e^-c and g = 1 - e^-c (1 + c), in 60-digit decimal arithmetic
    decimal.getcontext().prec = 60
    c = decimal.Decimal(ratio)
    b = 1 - (-c).exp()
    g = 1 - (-c).exp() * (1 + c)
    dist = distribution({"exponential": {"mean": 1, "cap": ratio}})
    assert dist.mean == pytest.approx(float(b), rel=1e-12)
    assert dist.scv == pytest.approx(float(2 * g / b / b - 1), rel=1e-6, abs=1e-15)
