"""Open or resume a study and run trials until its target of finished trials is reached."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from nas import __version__
from nas.data import load_data
from nas.errors import Terminated, UserError
from nas.search.objective import (
    COSTS,
    Objective,
    TrialFailure,
    TrialSettings,
    directions,
)
from nas.search.space import SearchSpace
from nas.search.storage import default_storage, mask_url, open_storage, sqlite_path
from nas.train import Budget, TrainConfig

log = logging.getLogger("nas.search")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SAMPLERS = ("tpe", "nsga2", "random", "gp")
# Measured on a 2-core CPU: a mid-size ResNeXt at 28 px reaches ~0.86 val accuracy in ~14 s.
CPU_BUDGET = {"epochs": 2, "subset": 0.25, "batch_size": 128, "lr": 0.2}
GPU_BUDGET = {"epochs": 10, "subset": 1.0, "batch_size": 256, "lr": 0.4}


@dataclass
class SearchRequest:
    """What the user asked for; None means: the study's recorded value, else the default."""

    space: SearchSpace
    trials: int
    study: str | None = None
    storage: str | None = None
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "params")
    dataset: str | None = None
    data_dir: str | None = None
    epochs: int | None = None
    subset: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    max_params: int | None = None
    max_macs: int | None = None
    device: str = "cpu"
    early_stop: bool = True
    max_failures: int = 5
    worker_index: int = 0
    threads: int = 1

    @property
    def study_name(self) -> str:
        return self.study or self.space.name

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage(self.study_name)


def check_request(req: SearchRequest) -> None:
    """Everything that can be refused before a storage is opened or a file written."""
    if req.trials < 1:
        raise UserError(f"--trials must be at least 1, got {req.trials}")
    if req.sampler not in SAMPLERS:
        raise UserError(f"--sampler {req.sampler}: one of {', '.join(SAMPLERS)}")
    for name in ("max_failures", "threads"):
        if getattr(req, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    check_objectives(req.objectives)
    req.space.check()


def check_objectives(objectives: tuple[str, ...]) -> None:
    """Accuracy first, then any of the costs, no repeats."""
    if not objectives or objectives[0] != "accuracy":
        raise UserError("--objectives must start with accuracy, e.g. accuracy,params")
    unknown = [o for o in objectives[1:] if o not in COSTS]
    if unknown or len(set(objectives)) != len(objectives):
        raise UserError(f"--objectives: costs are {', '.join(COSTS)}, each at most once; "
                        f"got {','.join(objectives)}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler by name, seeded; TPE is multivariate and lies about running trials."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=10)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    raise UserError(f"--sampler {name}: one of {', '.join(SAMPLERS)}")


def settle(req: SearchRequest, recorded: dict[str, Any]) -> dict[str, Any]:
    """Budget in force: explicit flags, else what the study recorded, else device defaults."""
    defaults = GPU_BUDGET if req.device.startswith("cuda") else CPU_BUDGET
    wanted = {"dataset": req.dataset, "epochs": req.epochs, "subset": req.subset,
              "batch_size": req.batch_size, "lr": req.lr, "seed": req.seed}
    fallback = {"dataset": "fashion-mnist", "seed": 0, **defaults}
    out = {}
    for key, value in wanted.items():
        if value is not None and key in recorded and recorded[key] != value:
            raise UserError(f"study was run with {key}={recorded[key]}, this run asks for "
                            f"{key}={value}: use the same value or another --study")
        out[key] = value if value is not None else recorded.get(key, fallback[key])
    return out


def trial_settings(req: SearchRequest, budget: dict[str, Any]) -> TrialSettings:
    config = TrainConfig(seed=budget["seed"])
    if budget["lr"] is not None:
        config = replace(config, lr=budget["lr"])
    return TrialSettings(
        objectives=req.objectives,
        budget=Budget(epochs=budget["epochs"], subset=budget["subset"],
                      batch_size=budget["batch_size"]),
        config=config, dataset=budget["dataset"], device=req.device,
        max_params=req.max_params, max_macs=req.max_macs, early_stop=req.early_stop,
        checkpoint_dir=checkpoint_dir(req),
    )


def checkpoint_dir(req: SearchRequest) -> Path:
    """Beside a SQLite study file, else under ./studies (per machine for remote storages)."""
    path = sqlite_path(req.storage_url)
    base = path.parent if path is not None else Path("studies")
    return base / "checkpoints" / req.study_name


def open_study(req: SearchRequest) -> tuple[optuna.Study, dict[str, Any]]:
    """Create or resume the study; refuse a resume with another space or objectives."""
    # nas reports failed trials itself, with their reason; optuna's warnings carry tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(req.storage_url)
    try:
        existing = optuna.load_study(study_name=req.study_name, storage=storage)
    except KeyError:
        existing = None
    recorded = existing.user_attrs if existing else {}
    if existing is not None:
        if recorded.get("space_hash") not in (None, req.space.content_hash()):
            raise UserError(
                f"study {req.study_name} was created with space {recorded.get('space')} "
                f"(hash {recorded.get('space_hash')}); this run asks for {req.space.name} "
                f"(hash {req.space.content_hash()}): use another --study")
        if recorded.get("objectives") not in (None, list(req.objectives)):
            raise UserError(f"study {req.study_name} optimises {','.join(recorded['objectives'])}"
                            f"; this run asks for {','.join(req.objectives)}: use another --study")
    budget = settle(req, recorded)
    # a resumed study or another worker must not replay the same sampler stream
    offset = (len(existing.get_trials(deepcopy=False)) if existing else 0) + 7919 * req.worker_index
    study = optuna.create_study(
        study_name=req.study_name, storage=storage, load_if_exists=True,
        directions=directions(req.objectives),
        sampler=make_sampler(req.sampler, budget["seed"] + offset),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    if existing is None:
        study.set_metric_names(list(req.objectives))
        config = asdict(trial_settings(req, budget).config)
        for key, value in {"space": req.space.name, "space_hash": req.space.content_hash(),
                           "space_definition": req.space.model_dump(mode="json"),
                           "objectives": list(req.objectives), "nas_version": __version__,
                           "train_config": config, **budget}.items():
            study.set_user_attr(key, value)
    return study, budget


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class FailureGuard:
    """Stops the study after `limit` consecutive failed trials in this worker."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.count = self.count + 1 if trial.state == TrialState.FAIL else 0
        if self.count >= self.limit:
            self.tripped = True
            study.stop()


def run_search(
    req: SearchRequest, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    on_start: Callable[[optuna.Study, dict[str, Any]], None] | None = None,
) -> optuna.Study:
    """Run trials until the study holds `req.trials` finished (complete or pruned) trials."""
    check_request(req)
    study, budget = open_study(req)
    if not req.device.startswith("cuda"):
        torch.set_num_threads(req.threads)
    data = load_data(budget["dataset"], req.data_dir, req.device, seed=budget["seed"])
    objective = Objective(req.space, data, trial_settings(req, budget))
    if on_start:
        on_start(study, budget)
    guard = FailureGuard(req.max_failures)
    callbacks = [MaxTrialsCallback(req.trials, states=FINISHED), guard]
    if on_trial:
        callbacks.append(on_trial)
    while finished(study) < req.trials and not guard.tripped:
        try:
            study.optimize(objective, callbacks=callbacks, catch=(TrialFailure,),
                           gc_after_trial=True)
            break
        except (UpdateFinishedTrialError, ValueError) as e:
            if isinstance(e, ValueError) and not str(e).startswith("Cannot tell a"):
                raise
            # Another worker declared this worker's live trial stale (its heartbeat was late)
            # and failed it; its retry runs elsewhere, so drop ours and carry on.
            log.warning("a running trial was failed by another worker as stale (%s); "
                        "continuing with a new trial", e)
    if guard.tripped:
        raise SearchStopped(f"{guard.count} consecutive trials failed (last reason: "
                            f"{last_reason(study)}); stopping. See `nas report --study "
                            f"{req.study_name}` and fix the space or budget")
    return study


class SearchStopped(UserError):
    """Too many consecutive failures."""


def last_reason(study: optuna.Study) -> str:
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return failed[-1].user_attrs.get("reason", "unknown") if failed else "unknown"


def front(study: optuna.Study, top: int = 10) -> list[FrozenTrial]:
    """The Pareto front (feasible, trained trials), or the best `top` for a single objective."""
    if len(study.directions) > 1:
        trials = [t for t in study.best_trials if t.user_attrs.get("trained")]
        return unique_architectures(sorted(trials, key=lambda t: (-t.values[0], t.number)))
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("trained")]
    return unique_architectures(sorted(done, key=lambda t: (-t.value, t.number)))[:top]


def unique_architectures(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The first trial of each architecture (reused results repeat their source's values)."""
    seen: set[str] = set()
    out = []
    for t in trials:
        key = t.user_attrs.get("spec_hash", str(t.number))
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def describe_budget(budget: dict[str, Any], req: SearchRequest) -> str:
    parts = [f"{k}={v}" for k, v in budget.items() if v is not None]
    limits = [f"max_params={req.max_params:,}" if req.max_params else "",
              f"max_macs={req.max_macs:,}" if req.max_macs else ""]
    return " ".join(parts + [x for x in limits if x] + [f"device={req.device}",
                                                         f"storage={mask_url(req.storage_url)}"])


def worker_device(device: str, index: int) -> str:
    """Workers rotate over the visible GPUs; CPU workers share the CPU."""
    if device == "cuda" and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return device


def die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (even by SIGKILL): no orphan workers."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise Terminated()


def _worker(req: SearchRequest, index: int, parent: int) -> None:
    """One worker process with its own storage connection."""
    signal.signal(signal.SIGTERM, raise_terminated)
    req = replace(req, device=worker_device(req.device, index), worker_index=index)
    try:
        die_with_parent(parent)
        run_search(req)
    except Terminated:
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except UserError as e:
        print(f"nas: worker {index}: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def stop_all(procs: list[mp.Process]) -> None:
    """SIGTERM to the workers still running (each fails its trial and exits), then waits."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join()


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def auto_jobs(device: str) -> int:
    """One worker per GPU; on CPU one single-threaded worker per core (at most 4).

    Small networks use several cores poorly within one batch, and OpenMP threads stall badly
    when the machine is shared; separate processes keep every core busy instead.
    """
    if device.startswith("cuda"):
        return max(1, torch.cuda.device_count()) if device == "cuda" else 1
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def run_workers(
    req: SearchRequest, jobs: int, poll: Callable[[optuna.Study], None] | None = None,
    on_start: Callable[[optuna.Study, dict[str, Any]], None] | None = None,
) -> optuna.Study:
    """N worker processes on one study; `--trials` stays the study's total."""
    check_request(req)
    study, budget = open_study(req)  # created here once, so workers only resume it
    load_data(budget["dataset"], req.data_dir, "cpu", seed=budget["seed"])  # fail here, once
    if on_start:
        on_start(study, budget)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(req, i, os.getpid()), daemon=False)
             for i in range(jobs)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            if poll:
                poll(study)
            if any(p.exitcode == 2 for p in procs):  # a worker stopped on an error: all stop
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        stop_all(procs)
        raise
    stop_all(procs)
    codes = [p.exitcode for p in procs]
    if poll:
        poll(study)
    if 2 in codes:
        worker = codes.index(2)
        raise SearchStopped(f"worker {worker} stopped on an error (last failure: "
                            f"{last_reason(study)}); the other workers were stopped too. "
                            f"See `nas report --study {req.study_name}`, fix the cause and "
                            f"re-run the same command")
    if any(codes):
        raise SearchStopped(f"workers exited with codes {codes}; re-run the same command "
                            f"to resume the study")
    return study


__all__ = ["SearchRequest", "SearchStopped", "front", "run_search", "run_workers"]
