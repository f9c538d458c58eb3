"""Sample-quality metrics: each statistic against a direct numpy computation, the bootstrap
interval, the ELBO's terms and its Monte Carlo sum, and sanity checks on real MNIST."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from ablate_builtins.linear import Linear
from ablate_builtins.metrics import (
    Manifolds,
    Precision,
    bound_terms,
    classifier_estimator,
    discretised_nll,
    fid_estimator,
    kid_estimator,
    manifolds,
    posterior_coefficients,
    precision_estimator,
    recall_estimator,
    reverse_variances,
)
from ablate_builtins.mnist import Mnist
from scipy.stats import norm
from typer.testing import CliRunner

from ablate.assembly import Assembly, assemble
from ablate.cli import app
from ablate.errors import ConfigError
from ablate.evaluation import evaluate, evaluate_samples, reported_keys
from ablate.features import load_cached, reference_embedding
from ablate.metrics import Estimator, bootstrap
from ablate.training import Trainer
from tests.conftest import tiny_config


def features(n: int, d: int = 6, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) * 1.3 + shift


def value(estimator: Estimator, key: str) -> float:
    return estimator.statistic(torch.arange(estimator.n))[key]


# ---------------------------------------------------------------------------------------------
# Statistics against numpy
# ---------------------------------------------------------------------------------------------


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_fid_matches_numpy_with_scipy_sqrtm():
    gen, ref = features(40, shift=0.3), features(60, seed=1)
    assert value(fid_estimator(gen, ref), "fid") == pytest.approx(
        numpy_fid(gen.numpy(), ref.numpy()), rel=1e-9)


def test_fid_replicate_is_the_fid_of_the_resampled_rows():
    gen, ref = features(30, shift=0.2), features(50, seed=1)
    indices = torch.tensor([0, 0, 3, 5, 5, 5, *range(6, 30)])
    assert fid_estimator(gen, ref).statistic(indices)["fid"] == pytest.approx(
        numpy_fid(gen[indices].numpy(), ref.numpy()), rel=1e-9)


def numpy_kid(g: np.ndarray, r: np.ndarray, degree: int = 3) -> float:
    d = g.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** degree  # noqa: E731
    m, n = len(g), len(r)
    k_gg, k_rr = k(g, g), k(r, r)
    within_g = (k_gg.sum() - np.trace(k_gg)) / (m * (m - 1))
    within_r = (k_rr.sum() - np.trace(k_rr)) / (n * (n - 1))
    return float(within_g + within_r - 2 * k(g, r).mean())


def test_kid_matches_the_unbiased_mmd_in_numpy_for_unequal_set_sizes():
    gen, ref = features(35, shift=0.4), features(80, seed=1)
    assert value(kid_estimator(gen, ref, 3), "kid") == pytest.approx(
        numpy_kid(gen.numpy(), ref.numpy()), rel=1e-9)


def test_kid_replicate_treats_repeated_rows_as_distinct_samples():
    gen, ref = features(20, shift=0.4), features(30, seed=1)
    indices = torch.tensor([1, 1, 1, 4, 7, 7, *range(8, 22)]) % 20
    assert kid_estimator(gen, ref, 3).statistic(indices)["kid"] == pytest.approx(
        numpy_kid(gen[indices].numpy(), ref.numpy()), rel=1e-9)


def numpy_radii(x: np.ndarray, k: int) -> np.ndarray:
    distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def numpy_coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    distances = np.sqrt(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    return distances <= radii[None, :]


def test_precision_and_recall_match_brute_force_knn_manifolds():
    gen, real = features(45, d=3, shift=0.8), features(45, d=3, seed=1)
    parts = manifolds(gen, real, k=3)
    g, r = gen.numpy(), real.numpy()
    precision = numpy_coverage(g, r, numpy_radii(r, 3)).any(1).mean()
    recall = numpy_coverage(r, g, numpy_radii(g, 3)).any(1).mean()
    assert 0 < precision < 1 and 0 < recall < 1
    assert value(precision_estimator(parts), "precision") == pytest.approx(precision)
    assert value(recall_estimator(parts), "recall") == pytest.approx(recall)


def test_recall_replicate_keeps_only_the_drawn_generated_balls():
    gen, real = features(30, d=3, shift=0.5), features(30, d=3, seed=1)
    g, r = gen.numpy(), real.numpy()
    indices = torch.tensor([2, 2, 9, 9, 9, 17] * 5)
    inside = numpy_coverage(r, g, numpy_radii(g, 3))[:, sorted(set(indices.tolist()))]
    assert recall_estimator(manifolds(gen, real, 3)).statistic(indices)["recall"] == (
        pytest.approx(inside.any(1).mean()))


def test_classifier_score_coverage_and_confidence_match_numpy():
    logits = features(40, d=4, seed=3) * 2
    p = torch.softmax(logits, 1).numpy()
    marginal = p.mean(0)
    score = np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean())
    histogram = np.bincount(p.argmax(1), minlength=4) / len(p)
    nonzero = histogram[histogram > 0]
    coverage = -(nonzero * np.log(nonzero)).sum() / np.log(4)
    got = classifier_estimator(logits).statistic(torch.arange(40))
    assert got["classifier_score"] == pytest.approx(score, rel=1e-9)
    assert got["class_coverage"] == pytest.approx(coverage, rel=1e-9)
    assert got["class_confidence"] == pytest.approx(p.max(1).mean(), rel=1e-9)


def test_classifier_score_is_the_class_count_for_confident_balanced_predictions():
    logits = 50 * F.one_hot(torch.arange(30) % 3, 3).double()
    got = classifier_estimator(logits).statistic(torch.arange(30))
    assert got["classifier_score"] == pytest.approx(3, rel=1e-6)
    assert got["class_coverage"] == pytest.approx(1)
    assert got["class_confidence"] == pytest.approx(1)


# ---------------------------------------------------------------------------------------------
# Bootstrap interval
# ---------------------------------------------------------------------------------------------


def test_bootstrap_interval_is_value_plus_minus_1_96_standard_errors_of_a_mean():
    inside = torch.arange(400) % 2 == 0  # precision 0.5: standard error sqrt(0.25 / 400)
    estimator = precision_estimator(manifolds_stub(inside))
    result = bootstrap(Precision(replicates=400), estimator, torch.Generator().manual_seed(0))
    got = result["precision"]
    assert got.value == 0.5 and got.n == 400
    assert (got.high - got.low) / 2 == pytest.approx(1.96 * 0.025, rel=0.15)


def manifolds_stub(inside: torch.Tensor) -> Manifolds:
    """Manifolds with the given precision indicators (recall is not looked at)."""
    return Manifolds(sample_in_real=inside, real_in_sample=torch.zeros(1, 1).to_sparse())


def test_bootstrap_interval_is_clipped_to_the_metric_range():
    inside = torch.ones(50, dtype=torch.bool)
    inside[0] = False
    estimator = precision_estimator(manifolds_stub(inside))
    got = bootstrap(Precision(), estimator, torch.Generator().manual_seed(0))["precision"]
    assert got.low < got.value < got.high == 1.0


# ---------------------------------------------------------------------------------------------
# ELBO
# ---------------------------------------------------------------------------------------------

DATA_RANGE = (-0.5, 0.5)


def linear_x0(scale: float):
    """A stand-in network whose x0 prediction is scale * z_t (any t)."""
    return lambda z_t, t: scale * z_t


def numpy_bound(x, alpha_bar, variances, t, noise, decoder_noise, scale):
    """The negative ELBO of Ho et al. (2020, eq. 5) written out per term with scipy."""
    T = len(alpha_bar)
    prev = np.concatenate([[1.0], alpha_bar[:-1]])
    beta = 1 - alpha_bar / prev
    beta_tilde = (1 - prev) / (1 - alpha_bar) * beta
    alpha = 1 - beta
    total = []
    for i in range(len(x)):
        m, s2 = np.sqrt(alpha_bar[-1]) * x[i], 1 - alpha_bar[-1]
        prior = (0.5 * (m**2 + s2 - 1 - np.log(s2))).sum()
        middle = 0.0
        for k in range(t.shape[1]):
            step = t[i, k]
            a, ap = alpha_bar[step - 1], prev[step - 1]
            z = np.sqrt(a) * x[i] + np.sqrt(1 - a) * noise[i, k]
            x0_hat = scale * z.astype(np.float32)
            mean_q = (np.sqrt(ap) * beta[step - 1] * x[i] + np.sqrt(alpha[step - 1]) * (1 - ap)
                      * z) / (1 - a)
            mean_p = (np.sqrt(ap) * beta[step - 1] * x0_hat + np.sqrt(alpha[step - 1])
                      * (1 - ap) * z) / (1 - a)
            vq, vp = beta_tilde[step - 1], variances[step - 1]
            middle += (0.5 * (np.log(vp / vq) + (vq + (mean_q - mean_p) ** 2) / vp - 1)).sum()
        middle *= (T - 1) / t.shape[1]
        z1 = np.sqrt(alpha_bar[0]) * x[i] + np.sqrt(1 - alpha_bar[0]) * decoder_noise[i]
        mean, std, half = scale * z1.astype(np.float32), np.sqrt(variances[0]), 1 / 255 / 2
        upper = np.where(x[i] >= 0.5 - half, 1.0, norm.cdf((x[i] + half - mean) / std))
        lower = np.where(x[i] <= -0.5 + half, 0.0, norm.cdf((x[i] - half - mean) / std))
        total.append(prior + middle - np.log(upper - lower).sum())
    return np.array(total)


def test_bound_terms_match_the_written_out_bound_for_given_draws():
    T, B, K = 6, 3, 2
    alpha_bar = Linear(beta_min=0.05, beta_max=0.4).alpha_bar(T)
    generator = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (B, 1, 3, 3), generator=generator) / 255 - 0.5).double()
    t = torch.randint(2, T + 1, (B, K), generator=generator)
    noise = torch.randn((B, K, 1, 3, 3), generator=generator)
    decoder_noise = torch.randn((B, 1, 3, 3), generator=generator)
    for variance in ("beta", "beta_tilde"):
        variances = reverse_variances(alpha_bar, variance)
        terms = bound_terms(linear_x0(0.9), x, alpha_bar, variances, DATA_RANGE, t, noise,
                            decoder_noise)
        expected = numpy_bound(x.numpy(), alpha_bar.numpy(), variances.numpy(), t.numpy(),
                               noise.double().numpy(), decoder_noise.double().numpy(), 0.9)
        np.testing.assert_allclose(terms.total().numpy(), expected, rtol=1e-5)


def test_monte_carlo_sum_over_t_is_unbiased():
    # With x0_hat = c z_t, E_eps L_{t-1} has a closed form; the estimator's mean must hit the
    # exact sum over t = 2..T.
    T, B, c = 8, 4000, 0.8
    alpha_bar = Linear(beta_min=0.05, beta_max=0.3).alpha_bar(T)
    variances = reverse_variances(alpha_bar, "beta")
    coef_x0, beta_tilde, _ = posterior_coefficients(alpha_bar)
    x = torch.full((B, 1, 1, 1), 0.3, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(2, T + 1, (B, 1), generator=generator)
    noise = torch.randn((B, 1, 1, 1, 1), generator=generator)
    terms = bound_terms(linear_x0(c), x, alpha_bar, variances, DATA_RANGE, t, noise,
                        torch.zeros(B, 1, 1, 1))
    steps = torch.arange(2, T + 1) - 1
    a = alpha_bar[steps]
    squared = coef_x0[steps] ** 2 * ((1 - c * a.sqrt()) ** 2 * 0.3**2 + c**2 * (1 - a))
    exact = (0.5 * (torch.log(variances[steps] / beta_tilde[steps])
                    + (beta_tilde[steps] + squared) / variances[steps] - 1)).sum()
    standard_error = terms.diffusion.std() / math.sqrt(B)
    assert abs(terms.diffusion.mean() - exact) < 4 * standard_error


def test_discretised_decoder_edge_bins_take_the_whole_tails():
    x = torch.tensor([[-0.5, 0.5]], dtype=torch.float64)
    nll = discretised_nll(x, x.clone(), torch.tensor(0.01, dtype=torch.float64), DATA_RANGE)
    assert float(nll) == pytest.approx(-2 * norm.logcdf(1 / 255 / 2 / 0.01), rel=1e-9)


@pytest.mark.parametrize("mean", [0.3, -0.3])
def test_discretised_decoder_stays_finite_far_in_either_tail(mean: float):
    # 300 standard deviations away, Phi(b) - Phi(a) underflows to 0 in float64.
    x = torch.zeros(1, 1, dtype=torch.float64)
    std = torch.tensor(0.001, dtype=torch.float64)
    nll = float(discretised_nll(x, torch.full_like(x, mean), std, DATA_RANGE))
    a, b = (-1 / 510 - abs(mean)) / 0.001, (1 / 510 - abs(mean)) / 0.001
    expected = -(norm.logcdf(b) + math.log1p(-math.exp(norm.logcdf(a) - norm.logcdf(b))))
    assert math.isfinite(nll) and nll == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# The evaluation API on real MNIST
# ---------------------------------------------------------------------------------------------

MNIST = Mnist()


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return MNIST.load("test").images.float() / 255


def fid_of(images: torch.Tensor) -> float:
    """FID of images in [0, 1] against the test split (the estimate alone: no bootstrap)."""
    reference = reference_embedding(MNIST, torch.device("cpu")).features.double()
    return value(fid_estimator(load_cached("mnist").embed(images).features.double(), reference),
                 "fid")


def test_fid_of_real_halves_is_near_zero_and_far_below_noise():
    # Random halves: MNIST's first 5000 test digits come from other writers than the last 5000.
    reference = reference_embedding(MNIST, torch.device("cpu")).features.double()
    order = torch.randperm(len(reference), generator=torch.Generator().manual_seed(0))
    halves = value(fid_estimator(reference[order[:5000]], reference[order[5000:]]), "fid")
    noise = torch.rand((1000, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert halves < 0.01 * fid_of(noise)


def test_fid_rises_monotonically_with_blur(test_images: torch.Tensor):
    images = test_images[:500]
    values = [fid_of(blur(images, sigma)) for sigma in (0.5, 1.0, 1.5, 2.5)]
    assert values == sorted(values) and values[0] < values[-1] / 4


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    offsets = torch.arange(-4, 5, dtype=torch.float32)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(images, kernel.view(1, 1, 1, 9), padding=(0, 4))
    return F.conv2d(blurred, kernel.view(1, 1, 9, 1), padding=(4, 0)).clamp(0, 1)


def test_evaluate_samples_reports_every_key_with_an_interval_on_real_digits():
    images = MNIST.load("train").images[:300].float() / 255
    values = evaluate_samples(images, MNIST, ["precision", "recall", "classifier_score"])
    assert list(values) == ["precision", "recall", "classifier_score", "class_coverage",
                            "class_confidence"]
    assert all(v.low <= v.value <= v.high and v.n == 300 for v in values.values())
    assert values["classifier_score"].value > 8.5 and values["class_coverage"].value > 0.95
    assert values["precision"].value > 0.6 and values["recall"].value > 0.6


def test_unknown_metric_names_the_installed_ones():
    with pytest.raises(ConfigError, match="unknown metric 'fld'.*did you mean 'fid'.*kid"):
        evaluate_samples(torch.rand(4, 1, 28, 28), MNIST, ["fld"])


def test_samples_outside_the_unit_range_are_refused():
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\]"):
        evaluate_samples(torch.rand(4, 1, 28, 28) - 0.5, MNIST, ["fid"])


def test_elbo_needs_the_model_not_only_samples():
    with pytest.raises(ConfigError, match="needs the trained model"):
        evaluate_samples(torch.rand(4, 1, 28, 28), MNIST, ["elbo"])


def test_reported_keys_say_which_direction_is_better():
    keys = reported_keys(["fid", "classifier_score"])
    assert {k: v.goal for k, v in keys.items()} == {
        "fid": "minimize", "classifier_score": "maximize", "class_coverage": "maximize",
        "class_confidence": "maximize"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    config = tiny_config(steps=1, grid_size=1)
    return Trainer(config, tmp_path_factory.mktemp("run") / "out").run().checkpoint


def untrained(**overrides) -> Assembly:
    return assemble(tiny_config(**overrides), (1, 28, 28), torch.device("cpu"))


def test_evaluate_scores_a_model_and_its_elbo():
    parts = untrained(T=5)
    values = evaluate(parts, ["classifier_score", "elbo"], 10, seed=3)
    assert values["elbo"].n == 10 and values["classifier_score"].n == 10
    assert 0 < values["elbo"].low <= values["elbo"].value <= values["elbo"].high
    assert evaluate(parts, ["classifier_score", "elbo"], 10, seed=3) == values


def test_elbo_on_a_cold_degradation_is_a_clear_error():
    parts = untrained(degradation={"name": "blur"})
    with pytest.raises(ConfigError, match="needs the gaussian degradation; this run uses 'blur'"):
        evaluate(parts, ["elbo"], 4)


def test_cli_evaluate_prints_a_table_and_writes_json(checkpoint: Path, tmp_path: Path):
    out = tmp_path / "values.json"
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), "--metrics",
                                      "precision,classifier_score", "-n", "16", "--json-out",
                                      str(out)])
    assert result.exit_code == 0, result.output
    assert "class_coverage" in result.output and "95% interval" in result.output
    record = json.loads(out.read_text())
    assert set(record["metrics"]) == {"precision", "classifier_score", "class_coverage",
                                      "class_confidence"}
    assert record["metrics"]["precision"]["n"] == 16


def test_cli_evaluate_with_an_unknown_metric_exits_2(checkpoint: Path):
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), "--metrics", "fid,nope"])
    assert result.exit_code == 2
    assert "unknown metric 'nope'" in result.output


def test_fid_of_non_finite_samples_is_nan_not_an_eigensolver_error():
    reference = torch.randn(40, 6, dtype=torch.float64)
    features = torch.randn(40, 6, dtype=torch.float64)
    features[3, 2] = math.nan
    statistic = fid_estimator(features, reference).statistic
    assert math.isnan(statistic(torch.arange(40))["fid"])
