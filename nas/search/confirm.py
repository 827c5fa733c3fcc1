"""`nas confirm`: retrain a search's front, and a control group of other trained architectures
from the same study, at a larger budget with several seeds, into a linked study (`S.confirm`).

Each (architecture, seed) is one queued trial of the linked study, pointing at its source trial;
workers take trials from the queue (several processes, as `nas search`), a rerun enqueues only
what is missing, and dead workers, outages and held results are handled by the same trial loop.
What the runs say (rank agreement, seed noise, the confirmed front) is in `summarize`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import UserError
from nas.pool import Session, run_pool
from nas.pool.workers import RequestWork
from nas.search.objective import (
    TrialFailure,
    checkpoint_path,
    guarded,
    objective_values,
    train_and_record,
)
from nas.search.request import checkpoint_dir
from nas.study import (
    StudySettings,
    TrialRecord,
    study_front,
    study_trials,
    write_trial,
)
from nas.study.locate import StudyRef, confirm_name, linked_confirmation
from nas.study.outage import DEFAULT_RETRY_S
from nas.study.pending import flush_pending
from nas.study.record import record_part
from nas.study.storage import open_for_work

DEFAULT_TOP, DEFAULT_CONTROL = 5, 5
# The confirmation budget by device, when not given: more data and epochs than the search's
# (about 10 minutes for the defaults on a 2-core CPU; see README).
CONFIRM_BUDGET = {"cpu": {"epochs": 4, "subset": 0.5, "seeds": 2},
                  "cuda": {"epochs": 30, "subset": 1.0, "seeds": 3}}
COPIED_COSTS = ("params", "macs", "activations", "peak_memory_bytes", "latency_ms")


@dataclass
class ConfirmRequest:
    """What the user asked for; None: the default (or what the linked study recorded)."""

    source: StudyRef
    top: int | None = None
    control: int | None = None
    epochs: int | None = None
    subset: float | None = None
    seeds: int | None = None
    device: str = "cpu"
    threads: int = 1
    data_dir: str | None = None
    storage_retry: float = DEFAULT_RETRY_S
    max_failures: int = 5

    def check(self) -> None:
        for name in ("top", "seeds", "epochs", "threads", "max_failures"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name} must be at least 1, got {value}")
        if self.control is not None and self.control < 0:
            raise UserError(f"--control must be 0 or more, got {self.control}")
        if self.subset is not None and not 0 < self.subset <= 1:
            raise UserError(f"--subset must be in (0, 1], got {self.subset}")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise UserError(f"--data-dir {self.data_dir}: no such directory")


@dataclass(frozen=True)
class Plan:
    """Which architectures (source trial numbers) are retrained, with which seeds and budget."""

    front: list[int]
    control: list[int]
    seeds: list[int]
    budget: dict[str, Any]  # dataset, epochs, subset, batch_size, lr, seed (the split's)
    objectives: list[str]
    directions: list[str]
    specs: dict[int, TrialRecord] = field(default_factory=dict)  # source records by number
    # how the search's images became its networks' input (its input size, channels,
    # augmentation and the images' fingerprint): the confirmation trains on the same
    data: dict[str, Any] = field(default_factory=dict)

    def jobs(self) -> list[tuple[int, int, str]]:
        """(source trial, seed, group) of every run."""
        groups = [(n, "front") for n in self.front] + [(n, "control") for n in self.control]
        return [(n, seed, group) for n, group in groups for seed in self.seeds]

    def selection(self) -> dict[str, Any]:
        return {"front": self.front, "control": self.control, "seeds": self.seeds}


def recorded_confirmation(source: optuna.Study) -> StudySettings | None:
    """What an earlier `nas confirm` of `source` recorded (selection and budget), if any."""
    linked = linked_confirmation(source)
    recorded = None if linked is None else StudySettings.from_study(linked)
    return recorded if recorded is not None and recorded.source_study is not None else None


def with_recorded(req: ConfirmRequest, recorded: StudySettings) -> ConfirmRequest:
    """Options left out take what the linked study was created with, as `nas search` does:
    rerunning `nas confirm --study S` (or with --json) resumes or reads that confirmation."""
    selection = recorded.selection or {}
    top, control = req.top, req.control
    if (top is None) != (control is None):  # one of --top / --control given: the other as it was
        if top is None and selection.get("front") is not None:
            top = len(selection["front"])
        if control is None and selection.get("control") is not None:
            control = len(selection["control"])
    return replace(req, top=top, control=control, epochs=req.epochs or recorded.epochs,
                   subset=req.subset or recorded.subset,
                   seeds=req.seeds or len(selection.get("seeds") or []) or None)


def recorded_selection(source: optuna.Study, recorded: StudySettings,
                       trials: list[Any]) -> tuple[list[int], list[int]]:
    """The front and control group an earlier confirmation chose, checked against the study:
    each must still be an evaluated trial of it (else the study was made again since)."""
    selection = recorded.selection or {}
    front, control = list(selection["front"]), list(selection.get("control") or [])
    evaluated = {t.number for t in trials if t.evaluated}
    missing = [n for n in front + control if n not in evaluated]
    if missing:
        raise UserError(f"{confirm_name(source.study_name)} retrained trial {missing[0]}, which "
                        f"{source.study_name} no longer has as a trained trial (was the study "
                        f"made again?); delete {confirm_name(source.study_name)} to confirm "
                        f"this one")
    return front, control


def plan(source: optuna.Study, req: ConfirmRequest) -> Plan:
    """Chooses the front members and the control group; refuses what cannot be confirmed.
    Options left out take what an earlier confirmation of the study recorded."""
    settings = StudySettings.from_study(source)
    trials = study_trials(source)
    distinct = {t.record.spec_hash: t for t in reversed(trials) if t.evaluated}
    if not distinct:
        raise UserError(f"study {source.study_name} has no trained trial to confirm")
    recorded = recorded_confirmation(source)
    if recorded is not None:
        req = with_recorded(req, recorded)
        selection = recorded.selection or {}
        if req.top is None and req.control is None and selection.get("front") is not None:
            front, control = recorded_selection(source, recorded, trials)
            return make_plan(source, settings, req, front, control,
                             {t.number: t.record for t in trials})
    front = [t.number for t in study_front(source, top=len(trials))]
    top = req.top if req.top is not None else min(DEFAULT_TOP, len(front))
    if top > len(front):
        raise UserError(f"--top {top}: the front of {source.study_name} has "
                        f"{len(front)} distinct architecture(s)")
    chosen = front[:top]
    others = sorted(t.number for t in distinct.values() if t.number not in chosen)
    wanted = req.control if req.control is not None else min(DEFAULT_CONTROL, len(others))
    if wanted > len(others):
        raise UserError(f"--control {wanted}: {source.study_name} has only {len(others)} other "
                        f"trained architecture(s)")
    control = sorted(random.Random(settings.seed or 0).sample(others, wanted))
    return make_plan(source, settings, req, chosen, control, {t.number: t.record for t in trials})


def make_plan(source: optuna.Study, settings: StudySettings, req: ConfirmRequest,
              front: list[int], control: list[int], records: dict[int, TrialRecord]) -> Plan:
    defaults = CONFIRM_BUDGET["cuda" if req.device.startswith("cuda") else "cpu"]
    seeds = req.seeds or defaults["seeds"]
    base = settings.seed or 0
    budget = {"dataset": settings.dataset or "fashion-mnist",
              "epochs": req.epochs or defaults["epochs"],
              "subset": req.subset or defaults["subset"],
              "batch_size": settings.batch_size, "lr": settings.lr, "seed": base}
    objectives = settings.objective_names(len(source.directions))
    return Plan(front=front, control=control, seeds=[base + 1 + i for i in range(seeds)],
                budget=budget, objectives=objectives,
                directions=[d.name.lower() for d in source.directions],
                specs={n: records[n] for n in front + control},
                data={"input_size": settings.input_size, "channels": settings.channels,
                      "augment": settings.augment, "fingerprint": settings.data_fingerprint})


def open_confirm_study(source: optuna.Study, req: ConfirmRequest, the_plan: Plan,
                       ) -> optuna.Study:
    """Creates or resumes the linked study (refusing another selection or budget), writes
    results held through an outage, and queues every run not done, queued or running."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    name = confirm_name(source.study_name)
    study = optuna.create_study(study_name=name, storage=source._storage,  # noqa: SLF001
                                load_if_exists=True, directions=the_plan.directions)
    recorded = StudySettings.from_study(study)
    if recorded.source_study is None:
        study.set_metric_names(the_plan.objectives)
        settings = StudySettings.from_study(source)
        StudySettings(space=settings.space, space_hash=settings.space_hash,
                      objectives=the_plan.objectives, source_study=source.study_name,
                      selection=the_plan.selection(), **the_plan.budget).write(study)
    else:
        check_same(recorded, the_plan, name)
    flush_pending(study, req.source.url)
    return study


def check_same(recorded: StudySettings, the_plan: Plan, name: str) -> None:
    """A rerun must ask for what the linked study was created with."""
    asked = {**the_plan.budget, **the_plan.selection()}
    had = {**recorded.budget(), **(recorded.selection or {})}
    differ = [k for k in asked if had.get(k) != asked[k] and asked[k] is not None]
    if differ:
        shown = ", ".join(f"{k}={had.get(k)}" for k in differ)
        raise UserError(f"{name} was run with {shown}; ask for the same (or delete that study "
                        f"to confirm again with other settings)")


def enqueue_missing(study: optuna.Study, the_plan: Plan) -> int:
    """Queues the runs that are neither done nor queued nor running; returns how many."""
    alive = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    have = {(t.record.source_trial, t.record.seed) for t in study_trials(study, alive)}
    added = 0
    for number, seed, group in the_plan.jobs():
        if (number, seed) in have:
            continue
        source = the_plan.specs[number]
        job = record_part(spec=source.spec, spec_hash=source.spec_hash, family=source.family,
                          source_trial=number, seed=seed, group=group)
        study.enqueue_trial(params={}, user_attrs=job.to_attrs(), skip_if_exists=False)
        added += 1
    return added


@dataclass
class ConfirmObjective:
    """Trains one queued (architecture, seed) at the confirmation budget."""

    data: Any
    the_plan: Plan
    device: str
    checkpoint_dir: Path | None
    config: Any = None
    costs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> Any:
        from nas.io import parse_spec
        from nas.train import Budget, TrainConfig, seeded_build

        job = TrialRecord.from_trial(trial)
        if job.source_trial is None or job.seed is None or job.spec is None:
            raise TrialFailure("a queued trial without a job")  # not made by nas confirm
        source = self.the_plan.specs[job.source_trial]
        write_trial(trial, **source.model_dump(include=set(COPIED_COSTS), exclude_none=True))
        b = self.the_plan.budget
        budget = Budget(epochs=b["epochs"], subset=b["subset"], batch_size=b["batch_size"])
        config = replace(TrainConfig(lr=b["lr"], augment=self.the_plan.data.get("augment")),
                         seed=job.seed)

        def run() -> Any:
            model = seeded_build(parse_spec(job.spec, f"trial {trial.number}"), job.seed)
            name = f"{job.spec_hash}-s{job.seed}"
            return train_and_record(
                trial, model.to(self.device), self.data, budget, config,
                checkpoint_path(trial, self.checkpoint_dir, name), None,
                lambda result: objective_values(self.the_plan.objectives, source, result))

        return guarded(trial, run)


def load_plan_data(the_plan: Plan, req: ConfirmRequest, device: str) -> Any:
    """The search's data, as its study recorded it (user images: the same version, prepared
    at the same size, or a one-line refusal when they changed)."""
    from nas.data import is_builtin, load_data

    b, d = the_plan.budget, the_plan.data
    return load_data(b["dataset"], req.data_dir if is_builtin(b["dataset"]) else None, device,
                     seed=b["seed"], input_size=None if is_builtin(b["dataset"])
                     else d.get("input_size"), channels=d.get("channels"),
                     fingerprint=d.get("fingerprint"))


def open_source(req: ConfirmRequest, notify: Any = None, worker: bool = False) -> optuna.Study:
    """The search study to confirm, on a storage that waits out outages (the linked study is
    opened on the same storage)."""
    storage = open_for_work(req.source.url, req.storage_retry, notify, worker)
    return optuna.load_study(study_name=req.source.name, storage=storage)


@dataclass
class ConfirmWork(RequestWork):
    """What each confirmation worker does: queued runs of the linked study until none is left
    (picklable: spawned workers get a copy)."""

    req: ConfirmRequest
    noun: str = "confirmation run"
    stop_hint: str = ""


    def open_session(self, notify: Any, worker: bool, opened: Any = None) -> Session:
        """Opens the source and the linked study, loads the data, builds the run objective."""

        req = self.req
        source = open_source(req, notify, worker)
        the_plan = plan(source, req)
        study = open_confirm_study(source, req, the_plan)
        data = load_plan_data(the_plan, req, req.device)
        objective = ConfirmObjective(data, the_plan, req.device,
                                     checkpoint_dir(req.source.url, study.study_name))
        return Session(study, objective, req.source.url, catch=(TrialFailure,), queue_only=True)


def confirm(req: ConfirmRequest, jobs: int = 1, notify: Any = None, on_event: Any = None,
            poll: Any = None, on_start: Any = None) -> tuple[optuna.Study, Plan]:
    """Plans, queues and runs the confirmation (in `jobs` workers of the pool); returns the
    linked study and the plan (summarize them with nas.analysis.confirmation)."""

    req.check()
    source = open_source(req, notify)
    the_plan = plan(source, req)
    study = open_confirm_study(source, req, the_plan)
    enqueue_missing(study, the_plan)
    if on_start:
        on_start(study, the_plan)
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
        return study, the_plan  # all done: a rerun reads the findings, loads no data
    load_plan_data(the_plan, req, "cpu")
    run_pool(ConfirmWork(req), jobs, study, poll=poll, notify=notify, on_event=on_event)
    return study, the_plan


__all__ = ["CONFIRM_BUDGET", "ConfirmObjective", "ConfirmRequest", "ConfirmWork", "Plan",
           "confirm", "confirm_name", "enqueue_missing", "open_confirm_study", "plan"]
