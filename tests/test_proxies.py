"""Zero-cost proxies: each against an independent computation on a tiny network (finite
differences, closed forms, the papers' own formulas written with numpy), their invariances, and
that scoring a real network leaves it (and training after it) exactly as it was."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import UserError
from nas.io import load_spec, parse_spec
from nas.proxies import (
    PROXIES,
    ZERO_COST,
    best_index,
    compute_proxies,
    prescreen,
    proxy_batch,
    proxy_fields,
)


class Tiny(nn.Module):
    """conv -> BN -> ReLU -> conv (stride 2) -> ReLU -> global average -> linear."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(4, 5, bias=bias)
        self.act1, self.act2 = nn.ReLU(inplace=True), nn.ReLU()  # modules: NASWOT hooks them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn(self.conv1(x)))
        h = self.act2(self.conv2(h))
        return self.fc(h.mean((2, 3)))


def tiny(bias: bool = True, seed: int = 0) -> Tiny:
    """A float64 Tiny whose BN has non-trivial affine parameters and running statistics."""
    torch.manual_seed(seed)
    net = Tiny(bias).double()
    with torch.no_grad():
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.2, 0.2)
        net.bn.running_mean.uniform_(-0.1, 0.1)
    return net


def batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 5, (n,), generator=g))


def score(name: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return compute_proxies(net, x, y, [name])[name].value


def weights_of(net: Tiny) -> list[torch.Tensor]:
    return [net.conv1.weight.detach(), net.conv2.weight.detach(), net.fc.weight.detach()]


def central_differences(fn, tensor: torch.Tensor, h: float = 1e-6) -> torch.Tensor:  # noqa: ANN001
    """d fn() / d tensor, one element at a time (tensor changed in place and restored)."""
    grad = torch.zeros_like(tensor)
    flat, out = tensor.data.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        keep = flat[i].item()
        flat[i] = keep + h
        up = fn()
        flat[i] = keep - h
        down = fn()
        flat[i] = keep
        out[i] = (up - down) / (2 * h)
    return grad


def train_loss(net: Tiny, x: torch.Tensor, y: torch.Tensor) -> float:
    """The cross-entropy of the batch in train mode, on a throwaway copy (BN statistics)."""
    with torch.no_grad():
        return float(F.cross_entropy(copy.deepcopy(net).train()(x), y))


# synflow


def abs_network_sum(net: Tiny, shape: tuple[int, ...]) -> float:
    """R of synflow written out: |weights|, no batch norm, an all-ones image, summed output."""
    x = torch.ones((1, *shape), dtype=torch.float64)
    h = F.relu(F.conv2d(x, net.conv1.weight.abs(), padding=1))
    h = F.relu(F.conv2d(h, net.conv2.weight.abs(), stride=2, padding=1))
    bias = None if net.fc.bias is None else net.fc.bias.abs()
    return float(F.linear(h.mean((2, 3)), net.fc.weight.abs(), bias).sum())


def test_synflow_of_a_bias_free_network_is_layers_times_its_output() -> None:
    # each layer's weights enter a positive linear network once: sum(w dR/dw) = R per layer
    net = tiny(bias=False)
    x, y = batch()
    with torch.no_grad():
        expected = 3 * abs_network_sum(net, (1, 6, 6))
    assert score("synflow", net, x, y) == pytest.approx(expected, rel=1e-12)


def test_synflow_matches_finite_differences_weight_by_weight() -> None:
    net = tiny(bias=True)
    x, y = batch()
    with torch.no_grad():
        total = 0.0
        for w in weights_of(net):
            grad = central_differences(lambda: abs_network_sum(net, (1, 6, 6)), w)
            # R depends on |w|: d R / d|w| = sign(w) dR/dw, and |w| * |dR/d|w|| = |w dR/dw|
            total += float((w * grad).abs().sum())
    assert score("synflow", net, x, y) == pytest.approx(total, rel=1e-7)


def test_synflow_does_not_depend_on_the_data() -> None:
    net = tiny()
    a, b = batch(8, seed=1), batch(3, seed=2)
    assert score("synflow", net, *a) == score("synflow", net, *b)


def test_synflow_is_unchanged_by_moving_scale_between_layers() -> None:
    # rescaling one layer by c and the next by 1/c conserves synaptic flow (Tanaka et al.)
    net = tiny(bias=False)
    x, y = batch()
    moved = copy.deepcopy(net)
    with torch.no_grad():
        moved.conv1.weight.mul_(4.0)
        moved.conv2.weight.div_(4.0)
    assert score("synflow", moved, x, y) == pytest.approx(score("synflow", net, x, y), rel=1e-12)
    with torch.no_grad():
        moved.fc.weight.mul_(2.0)
    assert score("synflow", moved, x, y) == pytest.approx(2 * score("synflow", net, x, y),
                                                          rel=1e-12)


# snip and grad_norm


def test_snip_matches_finite_differences_weight_by_weight() -> None:
    net, (x, y) = tiny(), batch()
    expected = sum(float((w * central_differences(lambda: train_loss(net, x, y), w)).abs().sum())
                   for w in weights_of(net))
    assert score("snip", net, x, y) == pytest.approx(expected, rel=1e-6)


def test_grad_norm_matches_finite_differences_layer_by_layer() -> None:
    net, (x, y) = tiny(), batch()
    expected = sum(float(central_differences(lambda: train_loss(net, x, y), w).norm())
                   for w in weights_of(net))
    assert score("grad_norm", net, x, y) == pytest.approx(expected, rel=1e-6)


def test_snip_ignores_the_scale_of_a_conv_before_batch_norm_and_grad_norm_does_not() -> None:
    # train-mode BN undoes conv1's scale (exactly, but for its eps): the loss is the same,
    # dL/dw is 1/c as large
    net, (x, y) = tiny(), batch()
    net.bn.eps = 1e-14
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled.conv1.weight.mul_(5.0)
    assert score("snip", scaled, x, y) == pytest.approx(score("snip", net, x, y), rel=1e-9)
    assert score("grad_norm", scaled, x, y) < score("grad_norm", net, x, y)


# jacob_cov


def reference_jacob_cov(jacobian: np.ndarray) -> float:
    """zero-cost-nas's eval_score, as published: np.corrcoef, np.linalg.eig, k = 1e-5."""
    v, _ = np.linalg.eig(np.corrcoef(jacobian))
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)).real)


def test_jacob_cov_matches_the_reference_formula_on_a_finite_difference_jacobian() -> None:
    net, (x, y) = tiny(), batch()
    moved = x.clone()

    def outputs_sum() -> float:
        with torch.no_grad():
            return float(copy.deepcopy(net).train()(moved).sum())

    jacobian = central_differences(outputs_sum, moved)  # one input element at a time
    expected = reference_jacob_cov(jacobian.reshape(len(x), -1).numpy())
    assert score("jacob_cov", net, x, y) == pytest.approx(expected, rel=1e-6)


def test_jacob_cov_ignores_the_scale_of_the_last_layer() -> None:
    net, (x, y) = tiny(), batch()
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled.fc.weight.mul_(7.0)
        scaled.fc.bias.add_(3.0)
    assert score("jacob_cov", scaled, x, y) == pytest.approx(score("jacob_cov", net, x, y),
                                                             rel=1e-9)


# naswot


def binary_codes(net: Tiny, x: torch.Tensor) -> np.ndarray:
    """Each image's code: which units of each ReLU's input are positive (train-mode BN)."""
    with torch.no_grad():
        a1 = F.batch_norm(F.conv2d(x, net.conv1.weight, padding=1), None, None,
                          net.bn.weight, net.bn.bias, training=True, eps=net.bn.eps)
        a2 = F.conv2d(F.relu(a1), net.conv2.weight, stride=2, padding=1)
    return np.concatenate([(a > 0).reshape(len(x), -1).numpy() for a in (a1, a2)], axis=1)


def test_naswot_is_the_log_determinant_of_units_minus_hamming_distances() -> None:
    net, (x, y) = tiny(), batch()
    codes = binary_codes(net, x)
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    kernel = codes.shape[1] - hamming  # Mellor et al. 2021, eq. 2
    expected = float(np.log(abs(np.linalg.det(kernel.astype(float)))))
    assert score("naswot", net, x, y) == pytest.approx(expected, rel=1e-9)


def test_naswot_ignores_positive_scales_and_the_order_of_the_batch() -> None:
    net, (x, y) = tiny(), batch()
    base = score("naswot", net, x, y)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled.conv1.weight.mul_(3.0)
        scaled.conv2.weight.mul_(0.25)
    assert score("naswot", scaled, x, y) == pytest.approx(base, rel=1e-12)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    assert score("naswot", net, x[order], y[order]) == pytest.approx(base, rel=1e-12)


def test_naswot_is_nan_without_relus() -> None:
    lenet = load_spec("d2l_lenet_bn")  # sigmoid activations
    from nas.train import seeded_build

    model = seeded_build(lenet, 0)
    x, y = torch.randn(4, 1, 28, 28), torch.arange(4)
    assert math.isnan(score("naswot", model, x, y))
    fields = proxy_fields(compute_proxies(model, x, y, ["naswot", "snip"]))
    assert set(fields["proxies"]) == {"snip"}
    assert set(fields["proxy_seconds"]) == {"naswot", "snip"}


# the network and the RNG are left as they were


def small_vgg() -> object:
    """A VGG of the shipped space at 28 px, with batch norm and a dropout head."""
    return parse_spec({"family": "vgg", "in_channels": 1, "num_classes": 10, "input_size": 28,
                       "batch_norm": True, "hidden": [32], "dropout": 0.3,
                       "conv_arch": [[1, 8], [2, 16]]})


def model_state(model: nn.Module) -> dict[str, object]:
    """Everything training depends on: tensors, gradients, flags and modes."""
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "modes": [m.training for m in model.modules()],
            "dtypes": [p.dtype for p in model.parameters()]}


def same_state(a: dict[str, object], b: dict[str, object]) -> bool:
    def equal(u: object, v: object) -> bool:
        if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor):
            return u.dtype == v.dtype and torch.equal(u, v)
        if isinstance(u, dict) and isinstance(v, dict):
            return u.keys() == v.keys() and all(equal(u[k], v[k]) for k in u)
        if isinstance(u, list) and isinstance(v, list):
            return len(u) == len(v) and all(equal(p, q) for p, q in zip(u, v))
        return u == v

    return all(equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("source", ["resnext_small", "d2l_lenet_bn", "vgg"])
@pytest.mark.parametrize("training", [True, False])
def test_every_proxy_leaves_the_model_and_the_rng_as_they_were(source: str,
                                                                training: bool) -> None:
    from nas.train import seeded_build

    spec = small_vgg() if source == "vgg" else load_spec(source)
    model = seeded_build(spec, 0).train(training)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    F.cross_entropy(model.train()(x), y).backward()  # gradients a caller may hold
    model.train(training)
    next(model.parameters()).requires_grad_(False)  # a frozen tensor stays frozen
    before, rng = model_state(model), torch.get_rng_state()
    values = compute_proxies(model, x, y, list(PROXIES))
    assert same_state(model_state(model), before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.is_grad_enabled()
    assert set(values) == set(PROXIES) and all(v.seconds > 0 for v in values.values())
    again = compute_proxies(model, x, y, list(PROXIES))  # the same, dropout included
    np.testing.assert_equal([v.value for v in again.values()],
                            [v.value for v in values.values()])


@pytest.mark.slow
def test_training_after_the_proxies_is_the_training_without_them() -> None:
    from nas.data import load_data
    from nas.train import Budget, TrainConfig, fit, seeded_build

    data = load_data()
    spec = small_vgg()
    budget, config = Budget(epochs=1, subset=0.004, batch_size=64), TrainConfig(threads=1)
    plain, scored = seeded_build(spec, 0), seeded_build(spec, 0)
    x, y = proxy_batch(data, 28, 32)
    compute_proxies(scored, x, y, list(PROXIES))
    a, b = fit(plain, data, budget, config), fit(scored, data, budget, config)
    assert a.val_accuracy == b.val_accuracy
    for (name, u), v in zip(plain.state_dict().items(), scored.state_dict().values()):
        assert torch.equal(u, v), name


def test_baselines_are_nas_cost_counts() -> None:
    from nas.cost import measure
    from nas.train import seeded_build

    spec = load_spec("resnext_small")
    model = seeded_build(spec, 0)
    x, y = torch.randn(2, 1, 28, 28), torch.arange(2)
    got = compute_proxies(model, x, y, ["params", "macs"])
    cost = measure(model, 1, 28)
    assert (got["params"].value, got["macs"].value) == (cost.params, cost.macs)


def test_an_unknown_proxy_is_one_line() -> None:
    with pytest.raises(UserError, match="unknown proxy 'flops'; one of synflow, naswot"):
        compute_proxies(tiny(), *batch(), ["flops"])


def test_non_finite_scores_are_left_out_of_the_record_their_time_kept() -> None:
    from nas.proxies import ProxyValue

    fields = proxy_fields({"naswot": ProxyValue(math.nan, 0.5), "snip": ProxyValue(2.0, 0.1)})
    assert fields == {"proxies": {"snip": 2.0}, "proxy_seconds": {"naswot": 0.5, "snip": 0.1}}


# prescreen


def test_best_index_takes_the_highest_first_and_never_nan() -> None:
    assert best_index([1.0, 3.0, 3.0, 2.0]) == 1
    assert best_index([math.nan, -5.0, math.nan]) == 1
    assert best_index([math.nan, math.nan]) == 0


@pytest.mark.parametrize("proxy", ["params", "synflow"])
def test_prescreen_picks_the_candidate_the_proxy_ranks_best(proxy: str) -> None:
    from nas.train import seeded_build

    widths = [[8, 16], [16, 32], [4, 8]]
    candidates = [parse_spec({"family": "vgg", "in_channels": 1, "num_classes": 10,
                              "input_size": 28, "batch_norm": True, "hidden": [16],
                              "conv_arch": [[1, a], [1, b]]}) for a, b in widths]
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    picked = prescreen(candidates, proxy, x, y, seed=3)
    expected = [compute_proxies(seeded_build(s, 3), x, y, [proxy])[proxy].value
                for s in candidates]
    assert picked.values == expected
    assert picked.index == int(np.argmax(expected)) == 1  # the widest: most params and flow
    assert picked.seconds > 0 and picked.proxy == proxy


def test_every_zero_cost_proxy_is_registered() -> None:
    assert set(ZERO_COST) | {"params", "macs"} == set(PROXIES)


# nas proxies: the statistics on known inputs


def test_each_rho_is_scipys_spearman_with_ties_and_missing_values() -> None:
    from scipy import stats

    from nas.analysis.proxies import proxy_correlations

    rng = np.random.default_rng(0)
    acc = rng.uniform(0.5, 0.9, 30).round(2)  # ties in accuracy
    scores = {"params": rng.integers(1, 6, 30).astype(float),  # ties in a score
              "synflow": acc * 3 + rng.normal(0, 0.05, 30),
              "snip": np.where(np.arange(30) % 5 == 0, np.nan, rng.normal(size=30))}
    rows = {r.proxy: r for r in proxy_correlations(scores, acc, n_boot=200)}
    assert list(rows) == ["params", "synflow", "snip"]
    for name, values in scores.items():
        known = np.isfinite(values)
        expected = stats.spearmanr(values[known], acc[known]).statistic
        assert rows[name].rho == pytest.approx(expected, abs=1e-12)
        assert rows[name].n == known.sum()
    both = np.isfinite(scores["snip"])
    base = stats.spearmanr(scores["params"][both], acc[both]).statistic
    assert rows["snip"].versus_params == pytest.approx(rows["snip"].rho - base, abs=1e-12)


def test_the_interval_agrees_with_scipys_bootstrap() -> None:
    from scipy import stats

    from nas.analysis.proxies import proxy_correlations

    rng = np.random.default_rng(1)
    acc = rng.normal(size=40)
    score = acc + rng.normal(0, 1.0, 40)
    [_, row] = proxy_correlations({"params": rng.normal(size=40), "synflow": score}, acc,
                                  n_boot=5000)
    ref = stats.bootstrap((score, acc), lambda a, b: stats.spearmanr(a, b).statistic,
                          paired=True, vectorized=False, n_resamples=2000, method="percentile",
                          random_state=np.random.default_rng(2)).confidence_interval
    assert row.low == pytest.approx(ref.low, abs=0.05)
    assert row.high == pytest.approx(ref.high, abs=0.05)
    assert row.low < row.rho < row.high


def test_beats_params_only_when_the_paired_interval_excludes_zero() -> None:
    from nas.analysis.proxies import proxy_correlations

    rng = np.random.default_rng(3)
    acc = rng.normal(size=60)
    params = acc + rng.normal(0, 2.0, 60)  # a weak baseline
    scores = {"params": params, "same": params.copy(), "oracle": acc * 2 + 1,
              "inverse": -acc}
    rows = {r.proxy: r for r in proxy_correlations(scores, acc, n_boot=1000)}
    assert rows["params"].verdict == "baseline" and rows["params"].versus_params is None
    assert (rows["same"].versus_low, rows["same"].versus_high) == (0.0, 0.0)
    assert rows["same"].verdict == "not distinguishable from params"
    assert rows["oracle"].rho == 1.0 and rows["oracle"].versus_low > 0
    assert rows["oracle"].verdict == "beats params"
    assert rows["inverse"].verdict == "worse than params"


# nas proxies on a study


def attrs_of(spec: object, acc: float | None, proxies: dict[str, float] | None,
             **extra: object) -> dict[str, object]:
    from nas.cost import estimate
    from nas.study import TrialRecord

    cost = estimate(spec).cost
    return TrialRecord(spec=spec.model_dump(mode="json"), spec_hash=spec.content_hash(),
                       family=spec.family, params=cost.params, macs=cost.macs,
                       trained=acc is not None, val_accuracy=acc, epochs_run=1,
                       proxies=proxies, proxy_seconds=proxies and dict.fromkeys(proxies, 0.1),
                       **extra).to_attrs()


def tiny_specs(n: int, seed: int = 0) -> list[object]:
    """n distinct specs of the fault tests' tiny ResNeXt space (28 px, Fashion-MNIST)."""
    import optuna

    from nas.search.space import load_space

    space = load_space("tests/spaces/tiny_resnext.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fields = {"in_channels": 1, "num_classes": 10, "input_size": 28}
    specs: dict[str, object] = {}
    while len(specs) < n:
        spec = space.suggest(study.ask(), fields)
        specs.setdefault(spec.content_hash(), spec)
    return list(specs.values())


def write_trials(url: str, name: str, trials: list[dict[str, object]]) -> None:
    import optuna

    study = optuna.create_study(study_name=name, storage=url,
                                directions=["maximize", "minimize"])
    for attrs in trials:
        state = attrs.pop("state", optuna.trial.TrialState.COMPLETE)
        values = None if state != optuna.trial.TrialState.COMPLETE else \
            [attrs.get("val_accuracy") or 0.0, float(attrs["params"])]
        study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=attrs))


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    """A real small study: 10 tiny ResNeXts, proxies computed on the batch a trial would see,
    each then trained for one epoch on 1 % of Fashion-MNIST; plus trials that must not count
    (reused, failed, an architecture trained twice)."""
    from optuna.trial import TrialState

    from nas.data import load_data
    from nas.train import Budget, TrainConfig, fit, seeded_build

    data = load_data()
    x, y = proxy_batch(data, 28, 64)
    rows = []
    for spec in tiny_specs(10):
        model = seeded_build(spec, 0)
        fields = proxy_fields(compute_proxies(model, x, y))
        result = fit(model, data, Budget(epochs=1, subset=0.01, batch_size=64),
                     TrainConfig(threads=1))
        rows.append(attrs_of(spec, result.val_accuracy, fields["proxies"]))
    extra = [{**rows[0], "reused_from": 0}, {**rows[1], "val_accuracy": 0.01},
             {**rows[2], "state": TrialState.FAIL, "val_accuracy": None}]
    url = f"sqlite:///{tmp_path_factory.mktemp('proxies') / 'study.db'}"
    write_trials(url, "px", [dict(r) for r in rows + extra])
    return url, rows


@pytest.mark.slow
def test_nas_proxies_on_a_real_study_is_scipys_spearman_of_its_trials(
    trained_study: tuple[str, list[dict]], run_nas
) -> None:  # noqa: ANN001
    import json

    from scipy import stats

    url, rows = trained_study
    result = run_nas("proxies", "--study", "px", "--storage", url, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["trials"], report["evaluated"]) == (10, 10)
    acc = [r["val_accuracy"] for r in rows]
    got = {r["proxy"]: r for r in report["rows"]}
    assert set(got) == {"params", "macs", *ZERO_COST}
    for name in ZERO_COST:
        expected = stats.spearmanr([r["proxies"][name] for r in rows], acc).statistic
        assert got[name]["rho"] == pytest.approx(expected, abs=1e-12)
        assert got[name]["low"] <= got[name]["rho"] <= got[name]["high"]
        assert got[name]["median_seconds"] == pytest.approx(0.1)
    expected = stats.spearmanr([r["params"] for r in rows], acc).statistic
    assert got["params"]["rho"] == pytest.approx(expected, abs=1e-12)
    text = run_nas("proxies", "--study", "px", "--storage", url)
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0].startswith("study px: 10 evaluated trials with proxies (of 10); Spearman")
    assert any(line.startswith("params ") and "baseline" in line for line in lines)
    verdicts = [r["verdict"] for r in report["rows"] if r["verdict"] == "beats params"]
    statement = "beats params: " if verdicts else "no proxy beats params on this study"
    assert sum(line.startswith(statement) for line in lines) == 1


def test_nas_proxies_refuses_a_study_without_proxies_or_with_too_few(
    tmp_path: Path, run_nas  # noqa: ANN001
) -> None:
    specs = tiny_specs(9, seed=1)
    url = f"sqlite:///{tmp_path / 's.db'}"
    write_trials(url, "none", [attrs_of(s, 0.5 + 0.01 * i, None) for i, s in enumerate(specs)])
    write_trials(url, "few", [attrs_of(s, 0.5, {"synflow": float(i)})
                              for i, s in enumerate(specs[:5])])
    for study, message in [("none", "study none: none of its 9 evaluated trials records "
                                    "zero-cost proxies"),
                           ("few", "study few: 5 evaluated trials with proxies; at least 8")]:
        result = run_nas("proxies", "--study", study, "--storage", url)
        assert result.code == 2 and result.out == ""
        assert len(result.err_lines) == 1 and result.err_lines[0].startswith(
            f"nas: error: {message}")
    assert run_nas("proxies", "--study", "few", "--storage", url, "--n-boot", "5").code == 2


def test_nas_proxies_at_an_epoch_takes_every_trial_that_reached_it(tmp_path: Path,
                                                                   run_nas) -> None:  # noqa: ANN001
    import json

    from optuna.trial import TrialState
    from scipy import stats

    specs = tiny_specs(14, seed=2)
    rng = np.random.default_rng(4)
    rows = []
    for i, spec in enumerate(specs):
        early = rng.uniform(0.3, 0.6)
        row = attrs_of(spec, early + 0.2, {"synflow": float(rng.normal()), "snip": early})
        row["curve"] = [early, early + 0.1, early + 0.2]
        if i >= 8:  # stopped at a rung after its first epoch: no final accuracy
            row.update(state=TrialState.PRUNED, curve=[early], epochs_run=1,
                       reason="early_stopped: rung at epoch 1")
        rows.append(row)
    url = f"sqlite:///{tmp_path / 's.db'}"
    write_trials(url, "mf", [dict(r) for r in rows])
    final = json.loads(run_nas("proxies", "--study", "mf", "--storage", url, "--json").out)
    assert (final["epoch"], final["trials"]) == (None, 8)
    first = run_nas("proxies", "--study", "mf", "--storage", url, "--epoch", "1", "--json")
    report = json.loads(first.out)
    assert (report["epoch"], report["trials"]) == (1, 14)
    got = {r["proxy"]: r["rho"] for r in report["rows"]}
    early = [r["curve"][0] for r in rows]
    assert got["synflow"] == pytest.approx(
        stats.spearmanr([r["proxies"]["synflow"] for r in rows], early).statistic, abs=1e-12)
    assert got["snip"] == pytest.approx(1.0)  # the planted score is that accuracy
    text = run_nas("proxies", "--study", "mf", "--storage", url, "--epoch", "1").out
    assert text.startswith("study mf: 14 trials that reached epoch 1 with proxies (of 14); "
                           "Spearman's rho with validation accuracy after epoch 1")
    late = run_nas("proxies", "--study", "mf", "--storage", url, "--epoch", "4")
    assert (late.code, late.err_lines) == (2, ["nas: error: study mf: no trial reached epoch 4"])
    assert run_nas("proxies", "--study", "mf", "--storage", url, "--epoch", "0").code == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_proxies_run_there_and_agree_with_the_cpu() -> None:
    from nas.train import seeded_build

    spec = small_vgg().model_copy(update={"dropout": 0.0})  # the same masks on both devices
    model = seeded_build(spec, 0).cuda()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    before, rng = model_state(model), torch.cuda.get_rng_state()
    on_gpu = compute_proxies(model, x, y, list(PROXIES))  # the batch follows the model
    assert same_state(model_state(model), before)
    assert torch.equal(torch.cuda.get_rng_state(), rng)
    on_cpu = compute_proxies(model.cpu(), x, y, ["synflow", "snip", "grad_norm", "params"])
    for name, value in on_cpu.items():
        assert on_gpu[name].value == pytest.approx(value.value, rel=1e-2), name  # TF32 convs
