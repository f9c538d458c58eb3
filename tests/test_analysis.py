"""The analysis against direct numpy computations on small inputs: effects as differences of
level means, bootstrap intervals over replicates and evaluation noise, paired and unpaired
tests, the sign-flip test, rank agreement and the loss-versus-quality flag, factor levels."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from optuna.distributions import FloatDistribution
from scipy import stats

from ablate.analysis import (
    Budget,
    MetricInfo,
    StudyData,
    TrialData,
    difference,
    effect,
    factor,
    finding,
    rank_checks,
    verdict,
)
from ablate.intervals import (
    EXACT_SIGN_FLIPS,
    Interval,
    bootstrap_interval,
    mean_interval,
    rank_agreement,
    sign_flip_p,
)

METRICS = [MetricInfo("loss", "minimize"), MetricInfo("fid", "minimize", lowest=0.0),
           MetricInfo("classifier_score", "maximize", lowest=1.0, highest=10.0)]


def trial(number: int, params: dict, values: dict[str, list[float]], *, seed: int = 0,
          errors: dict[str, list[float]] | None = None, baseline: str | None = None) -> TrialData:
    k = len(next(iter(values.values())))
    errors = errors or {}
    return TrialData(number, params, seed, k, baseline, Path("."), [],
                     {m: np.array(v, dtype=np.float64) for m, v in values.items()},
                     {m: np.array(errors.get(m, [0.0] * k), dtype=np.float64) for m in values})


def study_of(trials: list[TrialData], *, paired: bool = True) -> StudyData:
    return StudyData(None, None, trials, METRICS, len(trials[0].values["loss"]), paired)


def lr_param() -> SimpleNamespace:
    return SimpleNamespace(name="lr", key="run.lr",
                           distribution=FloatDistribution(1e-5, 1.0, log=True))


def random_study(k: int, seed: int = 1, *, paired: bool = True) -> StudyData:
    """Four configurations (lr x beta) with k replicates of loss, fid and classifier_score."""
    rng = np.random.default_rng(seed)
    trials = []
    for n, (lr, beta) in enumerate(itertools.product((1e-3, 1e-2), (0.02, 0.1))):
        values = {m.name: list(rng.normal(10 + 3 * (lr == 1e-2), 1.0, k)) for m in METRICS}
        trials.append(trial(n, {"lr": lr, "beta": beta}, values, seed=0 if paired else 10 * n,
                            baseline="base" if n == 0 else None))
    return study_of(trials, paired=paired)


def test_an_effect_is_the_difference_of_the_level_means_with_a_paired_t_test():
    data = random_study(k=6)
    f = factor(data, lr_param())
    assert [level.label for level in f.levels] == ["0.001", "0.01"] and f.reference == 0
    e = effect(data, f, 1, "fid")
    high = np.array([t.values["fid"] for t in data.trials if t.params["lr"] == 1e-2])
    low = np.array([t.values["fid"] for t in data.trials if t.params["lr"] == 1e-3])
    assert e.effect.estimate == pytest.approx(high.mean() - low.mean(), rel=1e-12)
    assert (e.level_mean, e.reference_mean) == pytest.approx((high.mean(), low.mean()))
    d = high.mean(axis=0) - low.mean(axis=0)  # per replicate: seeds pair the two sides
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert e.test.name == "paired t"
    assert e.test.p_value == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-9)
    assert (e.trials, e.reference_trials) == (2, 2)


def test_without_evaluation_noise_the_bootstrap_interval_is_the_paired_t_interval():
    data = random_study(k=10, seed=3)
    index = [0, 1], [2, 3]
    interval, _ = difference(data, *index, "loss")
    a = np.mean([data.trials[i].values["loss"] for i in index[0]], axis=0)
    b = np.mean([data.trials[i].values["loss"] for i in index[1]], axis=0)
    d = a - b
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert interval.estimate == pytest.approx(d.mean())
    assert interval.high - interval.estimate == pytest.approx(half, rel=0.1)


def test_with_one_replicate_the_interval_comes_from_the_evaluation_errors():
    data = study_of([trial(0, {"lr": 1e-3}, {m.name: [5.0] for m in METRICS},
                           errors={"fid": [1.0]}),
                     trial(1, {"lr": 1e-2}, {m.name: [7.0] for m in METRICS},
                           errors={"fid": [2.0]})])
    interval, test = difference(data, [1], [0], "fid")
    assert interval.estimate == 2.0
    assert interval.se == pytest.approx(math.sqrt(1.0 + 4.0), rel=0.05)
    assert interval.high - interval.estimate == pytest.approx(1.96 * interval.se, rel=1e-3)
    assert test.name == "z, eval noise"  # the p-value the interval implies
    assert test.p_value == pytest.approx(2 * stats.norm.sf(2.0 / interval.se), rel=1e-9)
    loss, loss_test = difference(data, [1], [0], "loss")
    assert (loss.low, loss.high) == (2.0, 2.0)
    assert loss_test.p_value is None and not loss.informative  # no noise measured: no test


def test_trials_with_their_own_seeds_are_compared_by_welch_s_test():
    data = random_study(k=5, seed=4, paired=False)
    _, test = difference(data, [2], [0], "fid")
    a, b = data.trials[2].values["fid"], data.trials[0].values["fid"]
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert test.name == "Welch t"
    assert test.p_value == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)


def test_the_sign_flip_test_counts_sign_patterns_as_extreme_as_the_data():
    d = np.array([0.5, 1.5, -0.25, 2.0])
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    extreme = sum(abs(np.dot(s, d)) >= abs(d.sum()) for s in patterns)
    assert sign_flip_p(d) == extreme / len(patterns)
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == 0.25  # three replicates: never below 1/4


def test_mean_interval_is_student_t_over_replicates():
    values = np.array([3.0, 5.0, 4.0, 6.0])
    interval = mean_interval(values, np.zeros(4))
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    assert (interval.low, interval.high) == pytest.approx((4.5 - half, 4.5 + half))


def test_rank_agreement_matches_numpy_spearman_and_kendall():
    a = np.array([0.3, 0.1, 0.9, 0.5, 0.7])
    b = np.array([2.0, 1.0, 3.0, 5.0, 4.0])
    ranks = [np.argsort(np.argsort(x)).astype(float) for x in (a, b)]
    spearman = np.corrcoef(*ranks)[0, 1]
    pairs = list(itertools.combinations(range(5), 2))
    kendall = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs) / len(pairs)
    assert rank_agreement(a, b) == pytest.approx((spearman, kendall))


def test_a_loss_that_ranks_configurations_unlike_fid_is_flagged():
    losses, fids = [1.0, 2.0, 3.0, 4.0], [40.0, 30.0, 20.0, 10.0]
    data = study_of([trial(n, {}, {"loss": [loss], "fid": [fid], "classifier_score": [fid]})
                     for n, (loss, fid) in enumerate(zip(losses, fids, strict=True))])
    notes: list[str] = []
    fid, score = rank_checks(data, notes)
    assert fid.flagged and fid.spearman == pytest.approx(-1.0)
    assert (fid.best_by_loss, fid.best_by_metric) == (0, 3)
    assert "the lowest loss picks trial 0, fid picks trial 3 (fid -30 [-30, -30] from the " \
           "loss's pick, unclear)" in fid.reason  # one replicate, no evaluation error: no noise
    assert not score.flagged and score.kendall == pytest.approx(1.0)  # higher score is better


def test_a_finely_searched_number_is_cut_into_three_ranges():
    values = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2]
    data = study_of([trial(n, {"lr": v}, {m.name: [float(n)] for m in METRICS},
                           baseline="base" if v == 2e-3 else None)
                     for n, v in enumerate(values)])
    f = factor(data, lr_param())
    assert [len(level.members) for level in f.levels] == [3, 2, 2]
    assert sorted(i for level in f.levels for i in level.members) == list(range(7))
    assert f.levels[f.reference].label == "0.001 to 0.002"
    assert f.log


def test_a_verdict_needs_an_interval_that_excludes_zero():
    assert verdict(Interval(-2.0, -3.0, -1.0, 0.5), "minimize") == "better"
    assert verdict(Interval(-2.0, -3.0, -1.0, 0.5), "maximize") == "worse"
    assert verdict(Interval(1.0, -0.5, 2.5, 0.8), "maximize") == "unclear"


def test_the_monte_carlo_sign_flip_p_value_counts_the_data_s_own_pattern():
    k = EXACT_SIGN_FLIPS + 4  # too many replicates to enumerate: random sign patterns
    d = np.full(k, 3.0)  # no random pattern reaches |mean| = 3 but the all-plus or all-minus
    p = sign_flip_p(d, draws=999)
    assert 0 < p <= 3 / 1000
    hits = np.sum(np.abs(np.random.default_rng(0).choice((1.0, -1.0), (999, k)) @ d) / k >= 3)
    assert p == (hits + 1) / 1000


def test_an_interval_stays_inside_what_the_metric_can_take():
    fids = np.array([[5.0, 900.0]])  # two replicates: t on one degree of freedom
    interval = mean_interval(fids[0], np.zeros(2), lowest=0.0)
    assert interval.low == 0.0 and interval.high > 900  # not the [-5300, 5800] of plain t
    assert interval.uninformative.startswith("2 replicates: t on 1 degree of freedom")
    boot = bootstrap_interval(lambda x: x.mean(axis=(-2, -1)), fids, np.zeros((1, 2)),
                              paired=True, lowest=0.0)
    assert boot.low == 0.0 and not boot.informative
    shares = mean_interval(np.array([0.1, 0.9, 0.5]), np.zeros(3), lowest=0.0, highest=1.0)
    assert (shares.low, shares.high) == (0.0, 1.0)
    assert shares.uninformative == "spans the whole range [0, 1]"
    three = mean_interval(np.array([3.0, 5.0, 4.0]), np.zeros(3), lowest=0.0)
    assert three.informative and three.low > 0


def test_an_estimate_outside_the_range_stays_inside_its_own_interval():
    kid = mean_interval(np.array([-0.5]), np.array([1.0]), lowest=0.0)  # unbiased KID < 0
    assert kid.low == -0.5 <= kid.estimate <= kid.high


def test_a_factor_is_not_credited_with_a_difference_it_shares_with_another():
    """At epoch 3 the only trials left change lr and beta together: the headline takes lr's
    effect from epoch 1, where the two vary apart, and calls it confounded where they don't."""
    beta = SimpleNamespace(name="beta", key="run.beta", distribution=FloatDistribution(0.01, 0.5))

    def budget(points: list[tuple[float, float]], epoch: int) -> Budget:
        trials = [trial(n, {"lr": lr, "beta": b},
                        {m.name: [10.0 + 30.0 * (lr == 1e-2)] for m in METRICS},
                        errors={m.name: [1.0] for m in METRICS},
                        baseline="base" if n == 0 else None)
                  for n, (lr, b) in enumerate(points)]
        data = StudyData(None, None, trials, METRICS, 1, True, epoch)
        factors = [f for p in (lr_param(), beta) if (f := factor(data, p)) is not None]
        effects = [effect(data, f, i, "fid") for f in factors
                   for i in range(len(f.levels)) if i != f.reference]
        return Budget(epoch, data, factors, {}, effects, {}, [], [])

    crossed = budget([(1e-3, 0.02), (1e-2, 0.02), (1e-3, 0.1), (1e-2, 0.1)], 1)
    together = budget([(1e-3, 0.02), (1e-2, 0.1), (1e-2, 0.1)], 3)
    lr = finding(lr_param(), [crossed, together], "fid")
    assert (lr.verdict, lr.budget.epoch) == ("clear", 1)
    alone = finding(lr_param(), [together], "fid")
    assert alone.verdict == "unclear" and "confounded with run.beta at epoch 3" in alone.summary
