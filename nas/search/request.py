"""What a search is asked to do, checked before anything is opened, and the settings in force
once the study's recorded ones are taken into account."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas.errors import UserError
from nas.search.fidelity import Fidelity
from nas.search.objective import TrialSettings
from nas.search.samplers import check_sampler
from nas.search.space import SearchSpace
from nas.sizes import format_bytes
from nas.study import COSTS, StudySettings
from nas.study.outage import DEFAULT_RETRY_S
from nas.study.record import (
    BUDGET_FIELDS,
    DATA_FIELDS,
    FIDELITY_FIELDS,
    LIMIT_FIELDS,
    SCORES,
)
from nas.study.storage import default_storage, mask_url, sqlite_path
from nas.train import Budget, TrainConfig, search_budget

# Settings that decide which trials a study admits and how they are trained: a resume that
# leaves one out takes the recorded value, one that asks for another is refused.
ADMISSION_FIELDS = BUDGET_FIELDS + LIMIT_FIELDS + FIDELITY_FIELDS + DATA_FIELDS


@dataclass
class SearchRequest:
    """What the user asked for; None means: the study's recorded value, else the default."""

    space: SearchSpace
    trials: int | None  # the study's target of trained trials (nas.study.trained_count);
    # None: as many as `time_s` allows
    study: str | None = None
    storage: str | None = None
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "params")
    dataset: str | None = None  # a built-in dataset's name, or a folder or CSV/TSV of images
    data_dir: str | None = None  # where a built-in dataset's files are
    input_size: int | None = None  # the side images are prepared/resized to (None: chosen)
    channels: int | None = None  # user images: 1 or 3 (None: 3 when any has colour)
    augment: str | None = None  # none, flip, crop-flip (None: the data's default)
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
    min_epochs: int | None = None  # multi-fidelity: the first rung (nas.search.fidelity)
    eta: int | None = None
    brackets: int | None = None
    proxies: bool = True  # zero-cost proxies of each trained trial (nas.proxies)
    prescreen: int | None = None  # each trial trains the best of this many candidates ...
    prescreen_proxy: str = "naswot"  # ... by this proxy
    time_s: float | None = None  # the study's search time (--time): runs add up, overlaps once
    deadline: float | None = None  # time.time() at which this run's time is up (set by search)

    @property
    def study_name(self) -> str:
        return self.study or self.space.name

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage(self.study_name)


def check_request(req: SearchRequest) -> None:
    """Everything that can be refused before a storage is opened or a file written."""
    if req.trials is None and req.time_s is None:
        raise UserError("give --trials N, --time DURATION or both")
    if req.trials is not None and req.trials < 1:
        raise UserError(f"--trials must be at least 1, got {req.trials}")
    if req.time_s is not None and not req.time_s > 0:
        raise UserError(f"--time must be above zero, got {req.time_s:g} s")
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
    check_data(req)
    check_objectives(req.objectives)
    check_fidelity(req, req.epochs or search_budget(req.device)["epochs"])
    if req.prescreen is not None:
        if req.prescreen < 2:
            raise UserError(f"--prescreen draws K candidates per trial and trains the best: K "
                            f"must be at least 2, got {req.prescreen}")
        from nas.proxies import check_names

        try:
            check_names([req.prescreen_proxy])
        except UserError as e:
            raise UserError(f"--prescreen-proxy: {e}") from None
    req.space.check()


def check_fidelity(req: SearchRequest, epochs: int) -> Fidelity | None:
    """The request's multi-fidelity schedule at `epochs` (None: one fidelity); one line when
    it cannot be used."""
    if req.min_epochs is None:
        if req.eta is not None or req.brackets is not None:
            raise UserError("--eta and --brackets schedule rungs: give --min-epochs too")
        return None
    if not req.early_stop:
        raise UserError("--min-epochs stops trials at rungs: it cannot go with --no-early-stop")
    fidelity = Fidelity(req.min_epochs, epochs, req.eta or 3, req.brackets or 1)
    fidelity.check()
    return fidelity


def fidelity_of(settings: dict[str, Any]) -> Fidelity | None:
    """The schedule in force (None: every trial trains for `epochs`)."""
    if settings.get("min_epochs") is None:
        return None
    return Fidelity(settings["min_epochs"], settings["epochs"], settings["eta"] or 3,
                    settings["brackets"] or 1)


def check_data(req: SearchRequest) -> None:
    """The data options, cheaply (the images themselves are read when the study opens)."""
    from nas.data import check_source, is_builtin
    from nas.data.pipeline import AUGMENTS
    from nas.data.user import check_options

    if req.dataset is not None:
        check_source(req.dataset)
        if not is_builtin(req.dataset) and not Path(req.dataset).expanduser().exists():
            raise UserError(f"--data {req.dataset}: no such file or folder")
        if req.data_dir is not None and not is_builtin(req.dataset):
            raise UserError(f"--data-dir is for the built-in datasets; {req.dataset} is read "
                            f"as a folder or table of images")
    if req.data_dir is not None and not Path(req.data_dir).expanduser().is_dir():
        raise UserError(f"--data-dir {req.data_dir}: no such directory")
    check_options(req.input_size, req.channels)
    if req.augment is not None and req.augment not in AUGMENTS:
        raise UserError(f"--augment {req.augment}: one of {', '.join(AUGMENTS)}")


def same_data(recorded: str, asked: str) -> bool:
    """A user's images may lie at another path on another machine: the study holds them to
    their fingerprint instead, when the data loads; a built-in dataset by its name."""
    from nas.data import is_builtin

    return recorded == asked or not (is_builtin(recorded) or is_builtin(asked))


def check_objectives(objectives: tuple[str, ...]) -> None:
    """Accuracy first, then any of the costs, no repeats."""
    if not objectives or objectives[0] not in SCORES:
        raise UserError("--objectives must start with accuracy or balanced_accuracy, e.g. "
                        "accuracy,params")
    unknown = [o for o in objectives[1:] if o not in COSTS]
    if unknown or len(set(objectives)) != len(objectives):
        raise UserError(f"--objectives: costs are {', '.join(COSTS)}, each at most once; "
                        f"got {','.join(objectives)}")


def shown(name: str, value: Any) -> str:
    """A setting as a flag would give it: 'none' for no limit ('free': what the device has)."""
    if value is None:
        return "free" if name == "max_memory" else "none"
    return format_bytes(value) if name == "max_memory" else f"{value:g}" if isinstance(
        value, float) else str(value)


def settle(req: SearchRequest, study: str, recorded: StudySettings) -> dict[str, Any]:
    """The settings in force: what the study recorded (None: no limit), else the flag, else
    the device's default; a flag that differs from a recorded value is refused."""
    fallback = {"dataset": "fashion-mnist", "seed": 0, **search_budget(req.device),
                **dict.fromkeys(LIMIT_FIELDS + FIDELITY_FIELDS + DATA_FIELDS)}
    known = recorded.recorded(ADMISSION_FIELDS)
    out = {}
    for key in ADMISSION_FIELDS:
        asked = getattr(req, key)
        if key == "dataset" and known.get(key) and asked and same_data(known[key], asked):
            known = {**known, key: asked}  # this machine's path to the study's images
        if key in known and asked is not None and known[key] != asked:
            flag = f"--{key.replace('_', '-')}"
            raise UserError(f"study {study} was run with {flag} {shown(key, known[key])}, this "
                            f"run asks for {shown(key, asked)}: leave {flag} out to resume it "
                            f"as it was, or use another --study")
        out[key] = known[key] if key in known else asked if asked is not None else fallback[key]
    out["data_fingerprint"], out["data_card"] = recorded.data_fingerprint, recorded.data_card
    if out["min_epochs"] is not None:
        out["eta"], out["brackets"] = out["eta"] or 3, out["brackets"] or 1
        fidelity_of(out).check()  # the recorded epochs may not be the default
    elif req.eta is not None or req.brackets is not None:
        raise UserError(f"study {study} has one fidelity (no --min-epochs): --eta and "
                        f"--brackets do not apply")
    return out


def trial_settings(req: SearchRequest, settings: dict[str, Any]) -> TrialSettings:
    """What every trial of the search is held to, from the settings in force."""
    config = TrainConfig(seed=settings["seed"], augment=settings.get("augment"))
    if settings["lr"] is not None:
        config = replace(config, lr=settings["lr"])
    return TrialSettings(
        objectives=req.objectives,
        budget=Budget(epochs=settings["epochs"], subset=settings["subset"],
                      batch_size=settings["batch_size"]),
        config=config, dataset=settings["dataset"], device=req.device,
        max_params=settings["max_params"], max_macs=settings["max_macs"],
        max_memory=settings["max_memory"], early_stop=req.early_stop,
        checkpoint_dir=checkpoint_dir(req.storage_url, req.study_name), deadline=req.deadline,
        fidelity=fidelity_of(settings), proxies=req.proxies,
        input_size=settings.get("input_size"),
    )


def checkpoint_dir(url: str, study: str) -> Path:
    """Beside a SQLite study file, else under ./studies (per machine for remote storages)."""
    path = sqlite_path(url)
    base = path.parent if path is not None else Path("studies")
    return base / "checkpoints" / study


def describe_settings(settings: dict[str, Any], req: SearchRequest) -> str:
    """The settings in force, as one line: budget, limits (none: no limit), device, storage."""
    parts = [f"{k}={settings[k]}" for k in BUDGET_FIELDS + DATA_FIELDS
             if settings.get(k) is not None]
    limits = [f"{k}={shown(k, settings.get(k))}" for k in LIMIT_FIELDS]
    fidelity = fidelity_of(settings)
    schedule = [] if fidelity is None else [f"multi-fidelity: {fidelity.describe()}"]
    return " ".join(parts + limits + [f"device={req.device}",
                                      f"storage={mask_url(req.storage_url)}"] + schedule)


__all__ = ["ADMISSION_FIELDS", "SearchRequest", "check_fidelity", "check_objectives",
           "check_request", "checkpoint_dir", "describe_settings", "fidelity_of", "settle",
           "trial_settings"]
