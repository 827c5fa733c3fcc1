"""Open or resume a search study and run trials until its target of finished trials is reached."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from nas import __version__
from nas.errors import UserError
from nas.search.fresh import architecture_key
from nas.search.objective import Objective, TrialFailure, TrialSettings
from nas.search.samplers import check_sampler, make_sampler
from nas.search.space import SAMPLING, SearchSpace
from nas.search.trials import run_trials
from nas.sizes import format_bytes
from nas.study import COSTS, StudySettings, TrialRecord, directions, study_trials
from nas.study.outage import DEFAULT_RETRY_S, RetryPolicy
from nas.study.pending import flush_pending
from nas.study.storage import default_storage, mask_url, open_storage, sqlite_path
from nas.train import Budget, TrainConfig, search_budget

log = logging.getLogger("nas.search")
Notify = Callable[[str], None]


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
    sampler_seed: int | None = None  # None: the training seed (`seed`)
    max_params: int | None = None
    max_macs: int | None = None
    max_memory: int | None = None  # bytes per trial; None: what the device has free
    device: str = "cpu"
    early_stop: bool = True
    max_failures: int = 5
    worker_index: int = 0
    threads: int = 1
    storage_retry: float = DEFAULT_RETRY_S  # seconds a lost storage connection is waited for

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
    check_sampler(req.sampler)
    for name in ("max_failures", "threads"):
        if getattr(req, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if req.storage_retry < 0:
        raise UserError(f"--storage-retry must be 0 or more seconds, got {req.storage_retry:g}")
    for name in ("epochs", "batch_size", "max_params", "max_macs", "max_memory"):
        value = getattr(req, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if req.subset is not None and not 0 < req.subset <= 1:
        raise UserError(f"--subset is a fraction of the training split, in (0, 1]; "
                        f"got {req.subset:g}")
    if req.lr is not None and not req.lr > 0:
        raise UserError(f"--lr must be positive, got {req.lr:g}")
    if req.dataset is not None:
        from nas.data import dataset_info

        dataset_info(req.dataset)
    if req.data_dir is not None and not Path(req.data_dir).expanduser().is_dir():
        raise UserError(f"--data-dir {req.data_dir}: no such directory")
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


def settle(req: SearchRequest, recorded: StudySettings) -> dict[str, Any]:
    """Budget in force: explicit flags, else what the study recorded, else device defaults."""
    wanted = {"dataset": req.dataset, "epochs": req.epochs, "subset": req.subset,
              "batch_size": req.batch_size, "lr": req.lr, "seed": req.seed}
    fallback = {"dataset": "fashion-mnist", "seed": 0, **search_budget(req.device)}
    known = recorded.budget()
    out = {}
    for key, value in wanted.items():
        if value is not None and key in known and known[key] != value:
            raise UserError(f"study was run with {key}={known[key]}, this run asks for "
                            f"{key}={value}: use the same value or another --study")
        out[key] = value if value is not None else known.get(key, fallback[key])
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
        max_params=req.max_params, max_macs=req.max_macs, max_memory=req.max_memory,
        early_stop=req.early_stop,
        checkpoint_dir=checkpoint_dir(req),
    )


def checkpoint_dir(req: SearchRequest) -> Path:
    """Beside a SQLite study file, else under ./studies (per machine for remote storages)."""
    path = sqlite_path(req.storage_url)
    base = path.parent if path is not None else Path("studies")
    return base / "checkpoints" / req.study_name


def same_space(recorded: StudySettings, space: SearchSpace) -> bool:
    """Whether a study was created with this space (definitions compared as spaces, so that
    a hash written by an older nas still matches)."""
    if recorded.space_definition is None:
        return recorded.space_hash in (None, space.content_hash())
    try:
        old = SearchSpace.model_validate(recorded.space_definition)
    except ValidationError:
        return recorded.space_hash == space.content_hash()
    return old.content_hash() == space.content_hash()


def check_resume(req: SearchRequest, recorded: StudySettings) -> None:
    """Refuses to resume a study with another space, other objectives or another sampler."""
    if not same_space(recorded, req.space):
        raise UserError(
            f"study {req.study_name} was created with space {recorded.space} "
            f"(hash {recorded.space_hash}); this run asks for {req.space.name} "
            f"(hash {req.space.content_hash()}): use another --study")
    if recorded.objectives not in (None, list(req.objectives)):
        raise UserError(f"study {req.study_name} optimises {','.join(recorded.objectives)}; "
                        f"this run asks for {','.join(req.objectives)}: use another --study")
    if recorded.sampler not in (None, req.sampler):  # a random study must stay random (EDFs)
        raise UserError(f"study {req.study_name} was created with --sampler {recorded.sampler}; "
                        f"this run asks for {req.sampler}: pass --sampler {recorded.sampler} "
                        f"or use another --study")


def load_existing(name: str, storage: Any) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def open_search_study(req: SearchRequest, notify: Notify | None = None, worker: bool = False,
                      prepare: Callable[[dict[str, Any]], None] | None = None,
                      ) -> tuple[optuna.Study, dict[str, Any]]:
    """Create or resume the study; refuse a resume with another space or objectives. Results
    held through an earlier storage outage are written first. `prepare(budget)` (loading the
    data) runs before a new study is created, so what it refuses leaves no study behind.

    Storage calls wait out outages up to `req.storage_retry` s, each outage announced once
    through `notify`; a worker (`worker`) also waits for its first connection.
    """
    # nas reports failed trials itself, with their reason; optuna's warnings carry tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    policy = RetryPolicy(limit_s=req.storage_retry)
    if notify is not None:
        policy.notify = notify
    storage = open_storage(req.storage_url, retry=policy, wait_to_open=worker)
    existing = load_existing(req.study_name, storage)
    recorded = StudySettings.from_study(existing) if existing else StudySettings()
    if existing is not None:
        check_resume(req, recorded)
    budget = settle(req, recorded)
    if prepare is not None:
        prepare(budget)
    if existing is None and (existing := load_existing(req.study_name, storage)) is not None:
        # another process (the same command on another machine) created the study while this
        # one loaded the data: resume theirs, on their budget
        recorded = StudySettings.from_study(existing)
        check_resume(req, recorded)
        theirs = settle(req, recorded)
        if prepare is not None and theirs != budget:
            prepare(theirs)
        budget = theirs
    # a resumed study or another worker must not replay the same sampler stream
    offset = (len(existing.get_trials(deepcopy=False)) if existing else 0) + 7919 * req.worker_index
    sampler_seed = budget["seed"] if req.sampler_seed is None else req.sampler_seed
    sampling = recorded.sampling_scheme if existing is not None else SAMPLING
    study = optuna.create_study(
        study_name=req.study_name, storage=storage, load_if_exists=True,
        directions=directions(req.objectives),
        sampler=make_sampler(req.sampler, sampler_seed + offset,
                             architecture_key(req.space, sampling)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    if existing is None:
        study.set_metric_names(list(req.objectives))
        StudySettings(
            space=req.space.name, space_hash=req.space.content_hash(),
            space_definition=req.space.model_dump(mode="json"), sampling=SAMPLING,
            objectives=list(req.objectives), sampler=req.sampler,
            nas_version=__version__, train_config=asdict(trial_settings(req, budget).config),
            **budget,
        ).write(study)
    flush_pending(study, req.storage_url)
    return study, budget


class FailureGuard:
    """Trips after `limit` consecutive failed trials in this worker."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.count = self.count + 1 if trial.state == TrialState.FAIL else 0
        self.tripped = self.count >= self.limit


class SearchStopped(UserError):
    """Too many consecutive failures."""


def last_reason(study: optuna.Study) -> str:
    failed = study_trials(study, (TrialState.FAIL,))
    return (failed[-1].record.reason or "unknown") if failed else "unknown"


def run_search(
    req: SearchRequest, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    on_start: Callable[[optuna.Study, dict[str, Any]], None] | None = None,
    notify: Notify | None = None, worker: bool = False,
) -> optuna.Study:
    """Run trials until the study holds `req.trials` finished (complete or pruned) trials."""
    import torch

    from nas.data import load_data

    check_request(req)
    if not req.device.startswith("cuda"):
        torch.set_num_threads(req.threads)
    loaded: dict[str, Any] = {}

    def prepare(budget: dict[str, Any]) -> None:
        loaded["data"] = load_data(budget["dataset"], req.data_dir, req.device,
                                   seed=budget["seed"])

    study, budget = open_search_study(req, notify, worker, prepare=prepare)
    data = loaded["data"]
    sampling = StudySettings.from_study(study).sampling_scheme  # old studies keep theirs
    objective = Objective(req.space, data, replace(trial_settings(req, budget), sampling=sampling))
    gc.freeze()  # long-lived objects (torch, the data): the collection after each trial skips them
    if on_start:
        on_start(study, budget)
    guard = FailureGuard(req.max_failures)
    callbacks = [guard, on_trial] if on_trial else [guard]
    run_trials(study, objective, req.trials, callbacks, catch=(TrialFailure,),
               should_stop=lambda: guard.tripped, url=req.storage_url)
    if guard.tripped:
        raise SearchStopped(f"{guard.count} consecutive trials failed (last reason: "
                            f"{last_reason(study)}); stopping. See `nas report --study "
                            f"{req.study_name}` and fix the space or budget")
    return study


def describe_budget(budget: dict[str, Any], req: SearchRequest) -> str:
    parts = [f"{k}={v}" for k, v in budget.items() if v is not None]
    limits = [f"max_params={req.max_params:,}" if req.max_params else "",
              f"max_macs={req.max_macs:,}" if req.max_macs else "",
              f"max_memory={format_bytes(req.max_memory)}" if req.max_memory else ""]
    return " ".join(parts + [x for x in limits if x] + [f"device={req.device}",
                                                         f"storage={mask_url(req.storage_url)}"])


def trial_reason(trial: FrozenTrial) -> str:
    """Why a trial ended as it did (empty when it simply completed)."""
    return TrialRecord.from_trial(trial).reason or ""


__all__ = ["SearchRequest", "SearchStopped", "describe_budget", "open_search_study",
           "run_search", "trial_reason"]
