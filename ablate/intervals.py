"""Intervals and tests for replicated runs: the mean of a configuration's replicates, differences
between configurations (bootstrap over replicates and evaluation samples) and paired tests.

Every interval is estimate +- q * SE at 95%, the normal-interval form ablate.metrics uses, with
q the Student t quantile on k - 1 degrees of freedom for k >= 2 replicates (few replicates make
the spread itself uncertain) and the normal quantile for one replicate. Intervals are clipped to
what the quantity can take (FID >= 0, a share in [0, 1]: the metric's declared range), and say
when they are uninformative: two replicates put t on one degree of freedom (q = 12.7), and an
interval that spans a bounded metric's whole range says nothing either.

Hand-written rather than scipy.stats.bootstrap: the two-level resampling (replicates, then each
value's own evaluation noise) and the pairing of replicates across trials by seed are not what
scipy's one-sample resampler does; the tests check the limiting cases against scipy's t tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ablate.metrics import Z_95

BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 0
EXACT_SIGN_FLIPS = 16
"""Up to this many replicates the sign-flip test enumerates every sign pattern."""

Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps values of shape (..., trials, replicates) to one number per leading index."""


UNINFORMATIVE_BELOW = 3
"""Fewer replicates than this (but more than one) give a t interval on one degree of freedom."""


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval, the standard error behind it, and why the interval
    says little (empty when it is informative)."""

    estimate: float
    low: float
    high: float
    se: float
    uninformative: str = ""

    @property
    def informative(self) -> bool:
        return not self.uninformative


@dataclass(frozen=True)
class Test:
    """A two-sided test of 'no difference': which test, its p-value, and the exact sign-flip
    p-value where the replicates are paired (no normality assumed; it cannot go below
    2 / 2^k, so three replicates never give p < 0.25)."""

    name: str
    p_value: float | None
    sign_flip_p: float | None = None


def quantile(replicates: int) -> float:
    """The 97.5% quantile behind a 95% interval from ``replicates`` values."""
    return float(stats.t.ppf(0.975, replicates - 1)) if replicates >= 2 else Z_95


def bounded(estimate: float, half: float, se: float, replicates: int, *,
            lowest: float = -math.inf, highest: float = math.inf) -> Interval:
    """estimate +- half, clipped to [lowest, highest] (never past the estimate itself, which an
    unbiased estimator may put outside), marked when it cannot inform."""
    low = min(estimate, max(lowest, estimate - half))
    high = max(estimate, min(highest, estimate + half))
    reason = ""
    if replicates == 1 and se == 0:
        reason = "no noise measured: one replicate, no evaluation interval"
    elif 2 <= replicates < UNINFORMATIVE_BELOW:
        reason = (f"{replicates} replicates: t on {replicates - 1} degree of freedom "
                  f"(x{quantile(replicates):.1f} the standard error)")
    elif math.isfinite(lowest) and math.isfinite(highest) and low <= lowest and high >= highest \
            and half > 0:
        reason = f"spans the whole range [{lowest:g}, {highest:g}]"
    return Interval(estimate, low, high, se, reason)


def mean_interval(values: np.ndarray, errors: np.ndarray, *, lowest: float = -math.inf,
                  highest: float = math.inf) -> Interval:
    """The mean of one configuration's replicate values, inside [lowest, highest].

    k >= 2: Student t over the replicates (their spread already holds each one's evaluation
    noise). k = 1: the value with its own evaluation standard error.
    """
    values = np.asarray(values, dtype=np.float64)
    k = len(values)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(k)) if k >= 2 else float(np.asarray(errors)[0])
    return bounded(mean, quantile(k) * se, se, k, lowest=lowest, highest=highest)


def bootstrap_interval(statistic: Statistic, values: np.ndarray, errors: np.ndarray, *,
                       paired: bool, draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED,
                       lowest: float = -math.inf, highest: float = math.inf) -> Interval:
    """A statistic of trials x replicates values, with a two-level bootstrap interval inside
    [lowest, highest] (what the statistic can take).

    Each draw resamples the replicates with replacement (one draw of replicate indices for
    every trial when they are paired by seed, one per trial otherwise) and then redraws each
    chosen value from its evaluation uncertainty, N(value, error^2), error being the standard
    error behind the metric's own bootstrap interval (0 for the training loss). The spread of
    the draws is scaled by k / (k - 1), the plug-in bias of a bootstrap variance over k
    replicates, so with negligible evaluation noise the interval is the (paired) t interval.
    Keeping evaluation noise on top of a replicate spread that already contains it makes the
    interval conservative.
    """
    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    trials, k = values.shape
    rng = np.random.default_rng(seed)
    if paired:
        index = np.broadcast_to(rng.integers(0, k, (draws, 1, k)), (draws, trials, k))
    else:
        index = rng.integers(0, k, (draws, trials, k))
    rows = np.arange(trials)[None, :, None]
    drawn = values[rows, index] + rng.standard_normal((draws, trials, k)) * errors[rows, index]
    spread = float(np.std(statistic(drawn), ddof=1))
    se = spread * math.sqrt(k / (k - 1)) if k >= 2 else spread
    estimate = float(statistic(values[None])[0])
    return bounded(estimate, quantile(k) * se, se, k, lowest=lowest, highest=highest)


def paired_test(differences: np.ndarray) -> Test:
    """Paired t-test of per-replicate differences (same seed on both sides), with the exact
    sign-flip test beside it."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return Test("none: one replicate", None)
    if np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else 0.0
    else:
        p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return Test("paired t", p, sign_flip_p(d))


def unpaired_test(a: np.ndarray, b: np.ndarray) -> Test:
    """Welch's t-test for replicates that do not share seeds."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return Test("none: one replicate", None)
    if np.var(a) == 0 and np.var(b) == 0:
        return Test("Welch t", 1.0 if a.mean() == b.mean() else 0.0)
    return Test("Welch t", float(stats.ttest_ind(a, b, equal_var=False).pvalue))


def sign_flip_p(differences: np.ndarray, *, draws: int = 20000,
                seed: int = BOOTSTRAP_SEED) -> float:
    """Two-sided p-value of the mean difference under random signs (exact for few replicates).

    Under 'no difference' with paired seeds each difference is as likely positive as negative;
    the p-value is the share of sign patterns whose |mean| reaches the observed one. Random
    patterns (many replicates) count the observed one too, (hits + 1) / (draws + 1), so the
    estimate is a valid p-value and never exactly 0 (Phipson and Smyth 2010).
    """
    d = np.asarray(differences, dtype=np.float64)
    k = len(d)
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if k <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=k)))
        return float(np.mean(np.abs(signs @ d) / k >= observed - tolerance))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), (draws, k))
    hits = int(np.sum(np.abs(signs @ d) / k >= observed - tolerance))
    return (hits + 1) / (draws + 1)


def rank_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and Kendall's tau-b between two scorings of the same configurations."""
    rho = float(stats.spearmanr(a, b).statistic)
    tau = float(stats.kendalltau(a, b).statistic)
    return rho, tau


def normal_test(interval: Interval, name: str = "z, eval noise") -> Test:
    """A z test of 'no difference' from an interval's standard error: with one replicate the
    only noise measured is the evaluation's, and this is the p-value its interval implies."""
    if interval.se <= 0 or not math.isfinite(interval.se):
        return Test("none: one replicate", None)
    return Test(name, float(2 * stats.norm.sf(abs(interval.estimate) / interval.se)))
