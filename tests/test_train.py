"""nas.train: real learning, determinism, budgets, stops, checkpoints, latency, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nas.cli import main
from nas.data import load_data
from nas.device import DeviceError, resolve_device
from nas.io import load_spec
from nas.train import (
    Budget,
    FitResult,
    TrainConfig,
    TrainError,
    evaluate,
    fit,
    latency_ms,
    lr_factor,
    plan_steps,
    seeded_build,
    use_channels_last,
)
from nas.train.checkpoint import read_checkpoint

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST: "
                                "apt install dataset-fashion-mnist")
LENET = "d2l_lenet_bn"
TINY_RESNET = {"family": "resnet", "in_channels": 1, "num_classes": 10, "input_size": 32,
               "depths": [1, 1], "widths": [8, 16], "stem": "small", "stem_width": 8}


@pytest.fixture(scope="module")
def data():
    return load_data("fashion-mnist")


def quick(data, spec=LENET, budget: Budget | None = None, **config) -> FitResult:
    """A short fit on a small real slice (about 2,750 images, 1 epoch unless told)."""
    budget = budget or Budget(epochs=1, subset=0.05, batch_size=128)
    config.setdefault("seed", 0)
    return fit(seeded_build(spec, config["seed"]), data, budget, TrainConfig(**config))


def test_learns_real_fashion_mnist(data) -> None:
    budget = Budget(epochs=2, subset=0.1, batch_size=128)
    result = fit(seeded_build(LENET, 0), data, budget, TrainConfig(),
                 evaluate_test=True)
    assert result.val_accuracy > 0.75 and result.test_accuracy > 0.75  # chance is 0.10
    assert result.curve[-1].train_loss < result.curve[0].train_loss
    assert result.epochs_run == 2 and result.steps == 2 * (5500 // 128)
    assert result.stopped is None and result.images_per_second > 0
    assert result.peak_memory_bytes > 0 and result.memory_source == "cpu_estimate"


def test_same_seed_same_metrics_other_seed_differs(data) -> None:
    a, b = quick(data, seed=3), quick(data, seed=3)
    c = quick(data, seed=4)
    strip = [(s.train_loss, s.train_accuracy, s.val_accuracy) for s in a.curve]
    assert strip == [(s.train_loss, s.train_accuracy, s.val_accuracy) for s in b.curve]
    assert (c.curve[0].train_loss, c.val_accuracy) != (a.curve[0].train_loss, a.val_accuracy)


def test_fit_leaves_the_global_rng_alone(data) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    quick(data, budget=Budget(epochs=1, max_steps=2, batch_size=64))
    assert torch.equal(torch.rand(3), expected)


def test_on_epoch_sees_validation_and_stops(data) -> None:
    seen = []
    result = fit(seeded_build(LENET, 0), data, Budget(epochs=3, subset=0.02, batch_size=128),
                 TrainConfig(), on_epoch=lambda s: seen.append(s) or True)
    assert result.stopped == "on_epoch" and result.epochs_run == 1
    assert seen[0].epoch == 1 and seen[0].val_accuracy == result.val_accuracy


def test_step_cap_and_time_limit(data) -> None:
    capped = quick(data, budget=Budget(epochs=2, max_steps=5, batch_size=64))
    assert capped.stopped == "max_steps" and capped.steps == 5 and capped.epochs_run == 1
    exact = quick(data, budget=Budget(epochs=1, subset=0.01, max_steps=8, batch_size=64))
    assert exact.stopped is None and exact.steps == 8  # 550 // 64 = 8 steps: nothing cut
    timed = quick(data, budget=Budget(epochs=5, time_limit_s=1e-6, batch_size=64))
    assert timed.stopped == "time_limit" and timed.steps == 1
    assert 0 <= timed.val_accuracy <= 1


def test_non_finite_loss_stops_with_a_result(data) -> None:
    model = seeded_build(LENET, 0)
    model.head.register_forward_hook(lambda m, i, out: out * float("nan"))
    result = fit(model, data, Budget(epochs=2, subset=0.02), TrainConfig())
    assert result.stopped == "non_finite_loss" and result.steps == 1
    text = json.dumps(result.as_dict(), allow_nan=False)  # JSON-safe despite the NaN loss
    assert json.loads(text)["curve"][0]["train_loss"] is None


def test_checkpoint_resume_equals_an_uninterrupted_run(data, tmp_path: Path) -> None:
    budget = Budget(epochs=2, subset=0.03, batch_size=128)
    whole = fit(seeded_build(LENET, 1), data, budget, TrainConfig(seed=1))
    path = tmp_path / "ck.pt"
    first = fit(seeded_build(LENET, 1), data, budget, TrainConfig(seed=1),
                on_epoch=lambda s: True, checkpoint_path=path)
    assert first.stopped == "on_epoch" and path.exists()
    blob = read_checkpoint(path)  # plain tensors, dicts, lists and numbers, verified
    assert blob["state"]["epoch"] == 1
    resumed = fit(seeded_build(LENET, 99), data, budget, TrainConfig(seed=1),
                  checkpoint_path=path)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 2
    assert [s.val_accuracy for s in resumed.curve] == [s.val_accuracy for s in whole.curve]
    assert resumed.curve[1].train_loss == whole.curve[1].train_loss
    # another run's checkpoint is not resumed: tests/test_checkpoint.py


def test_resizes_to_the_spec_and_refuses_mismatches(data) -> None:
    budget = Budget(epochs=1, max_steps=2, batch_size=32)
    result = quick(data, TINY_RESNET, budget, augment=True, optimizer="adamw")
    assert result.steps == 2 and 0 <= result.val_accuracy <= 1
    rgb = {**TINY_RESNET, "in_channels": 3}
    with pytest.raises(TrainError, match="set in_channels: 1"):
        quick(data, rgb, budget)
    with pytest.raises(TrainError, match="set num_classes: 10"):
        quick(data, {**TINY_RESNET, "num_classes": 100}, budget)


def test_schedules_and_plan() -> None:
    assert lr_factor("onecycle", 0, 100) == pytest.approx(1 / 25)
    assert lr_factor("onecycle", 25, 100) == pytest.approx(1.0)
    assert lr_factor("onecycle", 99, 100) < 1e-3
    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 50, 100) == 0.5
    assert lr_factor("cosine", 0, 100, warmup=0.1) == pytest.approx(0.1)
    assert lr_factor("constant", 77, 100) == 1.0
    assert plan_steps(1000, Budget(epochs=3, batch_size=256)) == (3, 9)
    assert plan_steps(100, Budget(epochs=2, max_steps=1, batch_size=256)) == (1, 1)


def test_channels_last_by_default_only_where_it_pays() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    lenet, resnet = seeded_build(LENET), seeded_build("resnet_small")
    assert not use_channels_last(lenet, cpu, None)  # 6-channel convs: NCHW is faster on CPU
    assert use_channels_last(resnet, cpu, None) and use_channels_last(lenet, cuda, None)
    assert use_channels_last(lenet, cpu, True) and not use_channels_last(resnet, cpu, False)


def test_bad_values_are_user_errors(data) -> None:
    for budget in (Budget(epochs=0), Budget(subset=0), Budget(batch_size=0)):
        with pytest.raises(TrainError):
            quick(data, budget=budget)
    with pytest.raises(TrainError, match="unknown optimizer"):
        quick(data, optimizer="rmsprop")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_latency_and_environment(data) -> None:
    model = seeded_build(LENET, 0)
    ms = latency_ms(model, (1, 28, 28), "cpu", batch_size=4, warmup=2, repeats=5)
    assert ms > 0 and model.training
    env = quick(data, budget=Budget(epochs=1, max_steps=1, batch_size=32)).environment
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["threads"] >= 1


def cli(args: list[str]) -> int:
    """Exit code of `nas ARGS`."""
    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_train_writes_a_run_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", LENET, "--epochs", "1", "--subset", "0.05", "--batch-size", "128",
            "--out", str(out), "--no-progress", "--json"]
    assert cli(args) == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "result.json").read_text())
    assert saved == result
    for key in ("val_accuracy", "test_accuracy", "params", "macs", "latency_ms",
                "images_per_second", "seed", "curve", "environment"):
        assert key in saved
    assert saved["params"] == sum(p.numel() for p in seeded_build(LENET).parameters())
    assert not math.isnan(saved["test_accuracy"]) and saved["test_accuracy"] > 0.3
    assert load_spec(out / "spec.yaml") == load_spec(LENET)
    from safetensors.torch import load_file

    model = seeded_build(LENET, 5)
    model.load_state_dict(load_file(out / "model.safetensors"))
    # the saved weights are the trained ones: they give the recorded validation accuracy
    assert evaluate(model, load_data("fashion-mnist"), "val") == saved["val_accuracy"]
    assert not (out / "checkpoint.pt").exists()
    assert cli(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert cli([*args, "--overwrite"]) == 0


def test_cli_resumes_an_interrupted_run(data, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    budget = Budget(epochs=2, subset=0.02, batch_size=128)
    fit(seeded_build(LENET, 0), data, budget, TrainConfig(), on_epoch=lambda s: True,
        checkpoint_path=out / "checkpoint.pt")  # as if killed after epoch 1
    assert cli(["train", LENET, "--epochs", "2", "--subset", "0.02", "--batch-size", "128",
                "--out", str(out), "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resumed_from_epoch"] == 1 and result["epochs_run"] == 2
    model = seeded_build(LENET, 0)
    whole = fit(model, data, budget, TrainConfig(), evaluate_test=True)
    assert result["test_accuracy"] == whole.test_accuracy == evaluate(model, data, "test")


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    cases = [["--device", "tpu"], ["--dataset", "imagenet"], ["--optimizer", "lion"],
             ["--data-dir", str(tmp_path)]]
    for extra in cases:
        code = cli(["train", LENET, "--out", str(tmp_path / "x"), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("nas: error:") and err.count("\n") == 1, err
