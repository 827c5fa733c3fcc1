"""A trial: sample a spec, gate on cost, reuse or train briefly, record everything."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from nas.cost import measure
from nas.data import DataSplits
from nas.errors import SpecError, Terminated, UserError
from nas.search.pruning import CostAwareHalving, Peer
from nas.search.space import SearchSpace
from nas.train import Budget, EpochStats, TrainConfig, fit, latency_ms, seeded_build

COSTS = ("params", "macs", "latency")
COST_ATTR = {"params": "params", "macs": "macs", "latency": "latency_ms"}


class TrialFailure(Exception):
    """A trial failed for a recorded reason; the study carries on."""


@dataclass(frozen=True)
class TrialSettings:
    """Everything a trial needs besides the space and the data."""

    objectives: tuple[str, ...]
    budget: Budget
    config: TrainConfig
    dataset: str
    device: str
    max_params: int | None = None
    max_macs: int | None = None
    early_stop: bool = True
    halving: CostAwareHalving = field(default_factory=CostAwareHalving)
    checkpoint_dir: Path | None = None

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def budget_key(self) -> str:
        """Identifies what a result depends on besides the architecture."""
        key = {"dataset": self.dataset, "budget": asdict(self.budget),
               "config": asdict(self.config)}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def directions(objectives: tuple[str, ...]) -> list[str]:
    """maximize for accuracy, minimize for each cost."""
    return ["maximize" if o == "accuracy" else "minimize" for o in objectives]


class Objective:
    """Callable for study.optimize: returns accuracy and costs in `settings.objectives` order."""

    def __init__(self, space: SearchSpace, data: DataSplits, settings: TrialSettings) -> None:
        self.space, self.data, self.settings = space, data, settings
        self.data_fields = {"in_channels": data.in_channels, "num_classes": data.num_classes,
                            "input_size": space.fixed.get("input_size", data.image_size)}

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            spec = self.space.suggest(trial, self.data_fields)
        except SpecError as e:
            fail(trial, "invalid_spec", str(e))
        trial.set_user_attr("spec", spec.model_dump(mode="json"))
        trial.set_user_attr("spec_hash", spec.content_hash())
        trial.set_user_attr("family", spec.family)
        trial.set_user_attr("budget_key", self.settings.budget_key())
        try:
            return self._run(trial, spec)
        except torch.OutOfMemoryError:
            release_memory()
            fail(trial, "oom", "out of memory; memory released")
        except UserError as e:
            fail(trial, "data_error", str(e))
        except KeyboardInterrupt as e:  # Optuna marks the trial FAIL; the trial says why
            with contextlib.suppress(Exception):
                trial.set_user_attr("reason", "terminated" if isinstance(e, Terminated)
                                    else "interrupted")
            raise
        raise AssertionError("unreachable")

    def _run(self, trial: optuna.Trial, spec: Any) -> float | tuple[float, ...]:
        s = self.settings
        model = seeded_build(spec, s.config.seed)  # as `nas train` builds it, for export
        cost = measure(model, spec.in_channels, spec.input_size).as_dict()
        cost["latency_ms"] = latency_ms(
            model, (1, spec.in_channels, spec.input_size, spec.input_size), s.device)
        for key, value in cost.items():
            trial.set_user_attr(key, value)
        over = self._gate(trial, cost)
        if over:
            trial.set_user_attr("trained", False)
            trial.set_user_attr("reason", over)
            return self._values(0.0, cost)
        reused = find_reusable(trial, spec.content_hash(), s.budget_key())
        if reused is not None:
            copy_result(trial, reused)
            return self._values(reused.user_attrs["val_accuracy"], cost)
        checkpoint = self._checkpoint(trial, spec.content_hash())
        result = fit(model.to(s.device), self.data, s.budget, s.config,
                     on_epoch=self._on_epoch(trial, cost), progress=False,
                     checkpoint_path=checkpoint)
        del model
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        self._record(trial, result)
        if result.stopped == "non_finite_loss":
            fail(trial, "non_finite_loss", "the loss became NaN or infinite")
        if result.stopped == "on_epoch":
            raise optuna.TrialPruned(trial.user_attrs.get("reason", "early_stopped"))
        return self._values(result.val_accuracy, cost)

    def _checkpoint(self, trial: optuna.Trial, spec_hash: str) -> Path | None:
        """Per-epoch checkpoint, named after the first try so a retried trial resumes it."""
        if self.settings.checkpoint_dir is None:
            return None
        first = first_try(trial)
        self.settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.checkpoint_dir / f"trial-{first}-{spec_hash}.pt"

    def _gate(self, trial: optuna.Trial, cost: dict[str, float]) -> str | None:
        """Sets the cost constraints (<= 0 feasible); a reason when over a limit."""
        reasons = []
        for name, limit in (("params", self.settings.max_params), ("macs", self.settings.max_macs)):
            if limit is None:
                continue
            trial.set_constraint(f"max_{name}", cost[name] - limit)
            if cost[name] > limit:
                reasons.append(f"{name} {cost[name]:,} > max {limit:,}")
        return f"over_budget: {'; '.join(reasons)}" if reasons else None

    def _values(self, accuracy: float, cost: dict[str, float]) -> float | tuple[float, ...]:
        out = [accuracy if o == "accuracy" else float(cost[COST_ATTR[o]])
               for o in self.settings.objectives]
        return out[0] if len(out) == 1 else tuple(out)

    def _on_epoch(self, trial: optuna.Trial, cost: dict[str, float]):  # noqa: ANN202
        curve: list[float] = []
        cost_name = next((o for o in self.settings.objectives if o != "accuracy"), "params")

        def on_epoch(stats: EpochStats) -> bool:
            curve.append(stats.val_accuracy)
            trial.set_user_attr("curve", curve)
            if not self.settings.early_stop or stats.epoch >= self.settings.budget.epochs:
                return False
            if not self.settings.multi:
                trial.report(stats.val_accuracy, stats.epoch)
                if trial.should_prune():
                    trial.set_user_attr("reason", f"pruned at epoch {stats.epoch} (median rule)")
                    return True
                return False
            peers = peer_curves(trial, COST_ATTR[cost_name])
            reason = self.settings.halving.decide(
                stats.epoch, stats.val_accuracy, cost[COST_ATTR[cost_name]], peers)
            if reason:
                trial.set_user_attr("reason", reason)
            return reason is not None

        return on_epoch

    def _record(self, trial: optuna.Trial, result: Any) -> None:
        r = result.as_dict()
        trial.set_user_attr("trained", True)
        for key in ("val_accuracy", "wall_time_s", "images_per_second", "epochs_run", "steps",
                    "seed", "device", "environment", "stopped"):
            trial.set_user_attr(key, r.get(key))
        trial.set_user_attr("resumed_epochs", result.resumed_from_epoch)
        trial.set_user_attr("curve", [e.val_accuracy for e in result.curve])
        trial.set_user_attr("loss_curve", [e.train_loss for e in result.curve])


def fail(trial: optuna.Trial, reason: str, detail: str) -> None:
    """Record why and fail the trial (the study goes on)."""
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("detail", detail[:500])
    raise TrialFailure(f"{reason}: {detail}")


def first_try(trial: optuna.Trial) -> int:
    """The number of the trial this one retries (heartbeat retry), else its own."""
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number == trial.number:
            return int(t.system_attrs.get("failed_trial", trial.number))
    return trial.number


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peer_curves(trial: optuna.Trial, cost_attr: str) -> list[Peer]:
    """Curves and costs of the study's other trained trials (finished or running)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    peers = []
    for t in trial.study.get_trials(deepcopy=False, states=states):
        curve = t.user_attrs.get("curve")
        if t.number != trial.number and curve and cost_attr in t.user_attrs:
            peers.append(Peer(float(t.user_attrs[cost_attr]), curve))
    return peers


def find_reusable(trial: optuna.Trial, spec_hash: str, budget_key: str) -> Any:
    """A COMPLETE trained trial of the same architecture, budget and seed, if any."""
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        if (a.get("spec_hash") == spec_hash and a.get("budget_key") == budget_key
                and a.get("trained") and "reused_from" not in a):
            return t
    return None


def copy_result(trial: optuna.Trial, source: Any) -> None:
    """Reuse a finished trial's training result, saying so."""
    for key in ("val_accuracy", "curve", "loss_curve", "wall_time_s", "images_per_second",
                "epochs_run", "steps", "seed", "device", "environment", "trained"):
        if key in source.user_attrs:
            trial.set_user_attr(key, source.user_attrs[key])
    trial.set_user_attr("reused_from", source.number)
    trial.set_user_attr("reason", f"reused: same architecture, budget and seed as trial "
                                  f"{source.number}")


__all__ = ["COSTS", "Objective", "TrialFailure", "TrialSettings", "directions"]
