"""A trial: sample a spec, gate on cost, reuse or train briefly, record everything.

Every attribute a trial stores goes through nas.study's TrialRecord (`write_trial`)."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import optuna
import torch
from optuna.trial import TrialState

from nas.cost import MetaCost, check_limits
from nas.data import DataSplits
from nas.device import memory_limit
from nas.errors import SpecError, Terminated, UserError
from nas.hashing import content_hash
from nas.pool.trial_loop import ResultHeld
from nas.search.fidelity import Fidelity, keeps_training, stop_reason
from nas.search.pruning import CostAwareHalving, Peer
from nas.search.space import SAMPLING, SearchSpace
from nas.study import COSTS, OBJECTIVE_FIELDS, StudyTrial, TrialRecord, study_trials, write_trial
from nas.study.outage import StorageBroken, StorageUnavailable, impatient
from nas.study.record import SCORES, TIME_UP, record_part
from nas.train import Budget, EpochStats, FitResult, TrainConfig, fit, latency_ms, seeded_build
from nas.train.checkpoint import CheckpointError

T = TypeVar("T")
log = logging.getLogger("nas.search")
PROXY_BATCH = 64  # images the zero-cost proxies see
RESULT_FIELDS = ("val_accuracy", "val_balanced_accuracy", "curve", "loss_curve", "wall_time_s",
                 "images_per_second", "epochs_run", "steps", "seed", "device", "environment",
                 "trained")


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
    max_memory: int | None = None  # per trial; None: what the device has free
    early_stop: bool = True
    halving: CostAwareHalving = field(default_factory=CostAwareHalving)
    checkpoint_dir: Path | None = None
    fidelity: Fidelity | None = None  # multi-fidelity rungs, replacing cost-aware halving
    proxies: bool = True  # zero-cost proxies of each trained trial, before training
    input_size: int | None = None  # the networks' input side (None: the space's, else data's)
    sampling: int = SAMPLING  # the study's sampling scheme: how the space asks the trial
    deadline: float | None = None  # time.time() when the search's time is up: trials stop

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def budget_key(self) -> str:
        """Identifies what a result depends on besides the architecture."""
        return content_hash({"dataset": self.dataset, "budget": asdict(self.budget),
                             "config": asdict(self.config)})

    @property
    def halving_cost(self) -> str:
        """The cost early stopping compares trials on: the first cost objective, else params."""
        return next((o for o in self.objectives if o not in SCORES), "params")


class Objective:
    """Callable for a study: returns accuracy and costs in `settings.objectives` order."""

    def __init__(self, space: SearchSpace, data: DataSplits, settings: TrialSettings) -> None:
        self.space, self.data, self.settings = space, data, settings
        self.batches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        size = settings.input_size or space.fixed.get("input_size", data.image_size)
        self.data_fields = {"in_channels": data.in_channels, "num_classes": data.num_classes,
                            "input_size": size}

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            spec = self.space.suggest(trial, self.data_fields, self.settings.sampling)
        except SpecError as e:
            fail(trial, "invalid_spec", str(e))
        write_trial(trial, spec=spec.model_dump(mode="json"), spec_hash=spec.content_hash(),
                    family=spec.family, budget_key=self.settings.budget_key())
        return guarded(trial, lambda: self._run(trial, spec))

    def _run(self, trial: optuna.Trial, spec: Any) -> float | tuple[float, ...]:
        s = self.settings
        costs = MetaCost(spec, s.budget.batch_size, s.config.optimizer)  # allocates nothing
        over = self._gate(trial, costs)
        if over:
            record = write_trial(trial, **costs.figures(), trained=False, reason=over)
            return self._values(record, None)
        model = seeded_build(spec, s.config.seed)  # as `nas train` builds it, for export
        record = write_trial(trial, **costs.figures(measure_all=True), latency_ms=latency_ms(
            model, (1, spec.in_channels, spec.input_size, spec.input_size), s.device))
        reused = find_reusable(trial, spec.content_hash(), s.budget_key())
        if reused is not None:
            copy_result(trial, reused)
            return self._values(record, reused.record)
        if s.proxies:
            self._record_proxies(trial, model, spec.input_size)
        checkpoint = checkpoint_path(trial, s.checkpoint_dir, spec.content_hash())
        cut: list[int] = []  # the epoch at which the time ran out, if it did
        return train_and_record(trial, model.to(s.device), self.data, s.budget, s.config,
                                checkpoint, self._on_epoch(trial, record, cut),
                                lambda result: self._values(record, result),
                                keep_checkpoint=lambda: bool(cut))

    def proxy_batch(self, input_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch every trial's zero-cost proxies see (one per input size)."""
        from nas.proxies import proxy_batch

        if input_size not in self.batches:
            self.batches[input_size] = proxy_batch(self.data, input_size, PROXY_BATCH,
                                                   self.settings.config.seed)
        return self.batches[input_size]

    def prescreen_choice(self, points: list[dict[str, Any]], proxy: str,
                         ) -> tuple[int, dict[str, Any]]:
        """Which candidate point (Optuna parameters) to train: the best by `proxy` of its
        untrained network on the proxy batch; an invalid point is never chosen unless all are."""
        from nas.proxies import prescreen

        start = time.perf_counter()
        specs: list[Any] = []
        for params in points:
            try:
                specs.append(self.space.suggest(optuna.trial.FixedTrial(params), self.data_fields,
                                                self.settings.sampling))
            except SpecError:
                specs.append(None)
        usable = [spec for spec in specs if spec is not None]
        if not usable:
            return 0, {"proxy": proxy, "scores": [None] * len(points), "chosen": 0,
                       "seconds": time.perf_counter() - start}
        x, y = self.proxy_batch(usable[0].input_size)
        result = prescreen(usable, proxy, x, y, seed=self.settings.config.seed,
                           device=self.settings.device)
        scores = iter(result.values)
        shown = [None if spec is None else next(scores) for spec in specs]
        chosen = [i for i, spec in enumerate(specs) if spec is not None][result.index]
        return chosen, {"proxy": proxy, "scores": [None if v is None or not math.isfinite(v)
                                                   else v for v in shown],
                        "chosen": chosen, "seconds": time.perf_counter() - start}

    def _record_proxies(self, trial: optuna.Trial, model: Any, input_size: int) -> None:
        """The zero-cost proxies of the untrained model (nas.proxies), with their times; a
        proxy that cannot be computed for this network is left out, never fails the trial."""
        from nas.proxies import compute_proxies, proxy_fields

        x, y = self.proxy_batch(input_size)
        try:
            values = compute_proxies(model, x, y, seed=self.settings.config.seed)
        except torch.OutOfMemoryError:
            release_memory()  # the proxies' copy of the model did not fit: train without
            return
        except (RuntimeError, ValueError) as e:  # a network a proxy cannot score
            log.debug("trial %d: zero-cost proxies not computed: %s", trial.number, e)
            return
        write_trial(trial, **proxy_fields(values))

    def _gate(self, trial: optuna.Trial, costs: MetaCost) -> str | None:
        """Sets the cost constraints (<= 0 feasible), checked on the meta estimate cheapest
        first; a reason when over a limit (memory: --max-memory, else the device's free).

        Every trial carries the same constraint keys: a limit not checked because an earlier
        one was exceeded counts as exceeded (inf), as the sampler sees its unmeasured cost."""
        s = self.settings
        memory = memory_limit(s.device, s.max_memory)
        checks = {c.name: c for c in check_limits(costs, s.max_params, s.max_macs, memory)}
        limits = {"params": s.max_params, "macs": s.max_macs, "memory": memory}
        have = trial.study._storage.get_trial(trial._trial_id).constraints  # noqa: SLF001
        for name in (n for n, limit in limits.items() if limit is not None):
            if f"max_{name}" in have:
                continue  # a retried trial carries its first try's (same spec, same figures)
            excess = checks[name].excess if name in checks else math.inf
            trial.set_constraint(f"max_{name}", float(excess))
        over = [c.text for c in checks.values() if c.excess > 0]
        return f"over_budget: {'; '.join(over)}" if over else None

    def _values(self, cost: TrialRecord, scored: Any) -> float | tuple[float, ...]:
        """Objective values: the scores of `scored` (a FitResult or a record with
        val_accuracy and val_balanced_accuracy; None: untrained, 0), then the costs; a cost a
        gated trial did not measure counts as infinite, so the sampler never takes it for a
        cheap point."""
        return objective_values(self.settings.objectives, cost, scored)

    def _on_epoch(self, trial: optuna.Trial, cost: TrialRecord, cut: list[int]):  # noqa: ANN202
        curve: list[float | None] = []
        s = self.settings

        def on_epoch(stats: EpochStats) -> bool:
            # a resumed run (a retry, a continuation) reports only the epochs it trains: the
            # ones before stay None until its result writes the whole curve
            curve.extend([None] * (stats.epoch - 1 - len(curve)))
            curve.append(stats.val_accuracy)
            write_trial(trial, curve=curve)
            if stats.epoch >= s.budget.epochs:
                return False
            if s.deadline is not None and time.time() >= s.deadline:
                cut.append(stats.epoch)
                write_trial(trial, reason=f"{TIME_UP}: the search's time ran out after epoch "
                                          f"{stats.epoch} of {s.budget.epochs}; the next run "
                                          f"of the search continues it from its checkpoint")
                return True
            if not s.early_stop:
                return False
            reason = self._stop_reason(trial, cost, stats)
            if reason:
                write_trial(trial, reason=reason)
            return reason is not None

        return on_epoch

    def _stop_reason(self, trial: optuna.Trial, cost: TrialRecord, stats: EpochStats,
                     ) -> str | None:
        """Why the trial stops after this epoch (None: it trains on): a multi-fidelity rung,
        else Optuna's median rule for one objective, else cost-aware halving."""
        s = self.settings
        if s.fidelity is not None:
            bracket = self.bracket(trial)
            if stats.epoch not in s.fidelity.rungs(bracket):
                return None
            me = [stats.val_accuracy, *(cost.objective(o) for o in s.objectives[1:])]
            peers = rung_results(trial, stats.epoch, bracket, s.objectives[1:])
            if keeps_training(me, peers, s.fidelity.eta):
                return None
            return stop_reason(stats.epoch, len(peers) + 1, s.fidelity.eta)
        if not s.multi:
            trial.report(stats.val_accuracy, stats.epoch)
            return f"pruned at epoch {stats.epoch} (median rule)" if trial.should_prune() \
                else None
        return s.halving.decide(stats.epoch, stats.val_accuracy,
                                cost.objective(s.halving_cost) or 0.0,
                                peer_curves(trial, s.halving_cost))

    def bracket(self, trial: optuna.Trial) -> int:
        """The trial's multi-fidelity bracket: recorded when it began (kept by its retries and
        continuations), else by its number."""
        recorded = TrialRecord.from_trial(trial).bracket
        if recorded is not None:
            return recorded
        assert self.settings.fidelity is not None
        bracket = self.settings.fidelity.bracket(trial.number)
        write_trial(trial, bracket=bracket)
        return bracket


def objective_values(objectives: Sequence[str], cost: TrialRecord, scored: Any,
                     ) -> float | tuple[float, ...]:
    """Values in `objectives` order: accuracy and balanced accuracy from `scored` (anything
    with val_accuracy and val_balanced_accuracy; None: untrained, 0), costs from `cost` (one
    not measured: inf)."""
    out = []
    for o in objectives:
        if o in SCORES:
            value = 0.0 if scored is None else getattr(scored, OBJECTIVE_FIELDS[o]) or 0.0
        else:
            value = cost.objective(o)
        out.append(math.inf if value is None else float(value))
    return out[0] if len(out) == 1 else tuple(out)


def guarded(trial: optuna.Trial, body: Callable[[], T]) -> T:
    """Runs a trial's body: what one trial can fail on (out of memory, a data error) fails it
    with a reason and the study goes on; what every trial would fail on (the storage, a disk
    that cannot take a checkpoint) propagates; an interrupt says why it ended."""
    try:
        return body()
    except (StorageUnavailable, StorageBroken, CheckpointError):
        raise  # not this trial's fault, and the next would fail alike: the search stops
    except torch.OutOfMemoryError:
        release_memory()
        fail(trial, "oom", "out of memory; memory released")
    except UserError as e:
        fail(trial, "data_error", str(e))
    except KeyboardInterrupt as e:  # the trial is told FAIL; it says why
        with contextlib.suppress(Exception), impatient(trial.study._storage):  # noqa: SLF001
            write_trial(trial, reason="terminated" if isinstance(e, Terminated)
                        else "interrupted")
        raise
    raise AssertionError("unreachable")


def train_and_record(trial: optuna.Trial, model: Any, data: DataSplits, budget: Budget,
                     config: TrainConfig, checkpoint: Path | None,
                     on_epoch: Callable[[EpochStats], bool] | None,
                     values_of: Callable[[FitResult], Any],
                     keep_checkpoint: Callable[[], bool] = lambda: False) -> Any:
    """Trains, records the result (kept on disk if the storage cannot take it) and returns the
    trial's values; a stopped run is pruned, a non-finite loss fails the trial. The checkpoint
    is removed once the result is recorded, unless `keep_checkpoint()` (a run to continue)."""
    result = fit(model, data, budget, config, on_epoch=on_epoch, checkpoint_path=checkpoint)
    del model
    if result.stopped == "non_finite_loss":
        record_result(trial, result)
        fail(trial, "non_finite_loss", "the loss became NaN or infinite")
    pruned = result.stopped == "on_epoch"
    values = None if pruned else values_of(result)
    try:
        record_result(trial, result)
    except (StorageUnavailable, StorageBroken) as e:  # the result is kept, not thrown away
        state = TrialState.PRUNED if pruned else TrialState.COMPLETE
        raise ResultHeld(e, state, values, result_fields(result).to_attrs()) from None
    if checkpoint is not None and not keep_checkpoint():
        checkpoint.unlink(missing_ok=True)
    if pruned:
        raise optuna.TrialPruned(TrialRecord.from_trial(trial).reason or "early_stopped")
    return values


def checkpoint_path(trial: optuna.Trial, folder: Path | None, name: str) -> Path | None:
    """Per-epoch checkpoint, named after the first try so a retried trial resumes it."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"trial-{first_try(trial)}-{name}.pt"


def result_fields(result: FitResult) -> TrialRecord:
    """A finished fit's figures as record fields."""
    r = result.as_dict()
    return record_part(trained=True, **{k: r.get(k) for k in (
        "val_accuracy", "val_balanced_accuracy", "wall_time_s", "images_per_second",
        "epochs_run", "steps", "seed", "device", "environment", "stopped")},
        resumed_epochs=result.resumed_from_epoch,
        curve=[e.val_accuracy for e in result.curve],
        loss_curve=[e.train_loss for e in result.curve])


def record_result(trial: optuna.Trial, result: FitResult) -> None:
    """A finished fit's figures on the trial."""
    write_trial(trial, **result_fields(result).to_attrs())


def fail(trial: optuna.Trial, reason: str, detail: str) -> None:
    """Record why and fail the trial (the study goes on)."""
    write_trial(trial, reason=reason, detail=detail[:500])
    raise TrialFailure(f"{reason}: {detail}")


def first_try(trial: optuna.Trial) -> int:
    """The trial whose checkpoint this one resumes: the one it continues (cut by the time
    limit), else the one it retries (a dead worker's), else itself."""
    continues = TrialRecord.from_trial(trial).continues
    if continues is not None:
        return continues
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number == trial.number:
            return int(t.system_attrs.get("failed_trial", trial.number))
    return trial.number


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def rung_results(trial: optuna.Trial, epoch: int, bracket: int, costs: tuple[str, ...],
                 ) -> list[list[float]]:
    """(accuracy at `epoch`, costs) of the other trials of `bracket` that reached it."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    out = []
    for t in study_trials(trial.study, states):
        r = t.record
        if t.number == trial.number or (r.bracket or 0) != bracket or not r.curve \
                or len(r.curve) < epoch or r.curve[epoch - 1] is None:
            continue
        values = [r.objective(c) for c in costs]
        out.append([float(r.curve[epoch - 1]), *(math.inf if v is None else v for v in values)])
    return out


def peer_curves(trial: optuna.Trial, cost: str) -> list[Peer]:
    """Curves and costs of the study's other trained trials (finished or running)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    peers = []
    for t in study_trials(trial.study, states):
        value = t.record.objective(cost)
        if t.number != trial.number and t.record.curve and value is not None:
            peers.append(Peer(value, list(t.record.curve)))
    return peers


def find_reusable(trial: optuna.Trial, spec_hash: str, budget_key: str) -> StudyTrial | None:
    """A COMPLETE trained trial of the same architecture, budget and seed, if any."""
    for t in study_trials(trial.study, (TrialState.COMPLETE,)):
        r = t.record
        if (r.spec_hash == spec_hash and r.budget_key == budget_key and r.is_trained
                and not t.reused):
            return t
    return None


def copy_result(trial: optuna.Trial, source: StudyTrial) -> None:
    """Reuse a finished trial's training result, saying so."""
    shown = source.record.model_dump(include=set(RESULT_FIELDS), exclude_none=True)
    write_trial(trial, **shown, reused_from=source.number,
                reason=f"reused: same architecture, budget and seed as trial {source.number}")


__all__ = ["COSTS", "OBJECTIVE_FIELDS", "Objective", "TrialFailure", "TrialSettings"]
