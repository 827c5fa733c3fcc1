"""The typed record of a trial and of a study: the one place that knows Optuna's attribute keys.

Optuna stores user attributes as a string-keyed JSON bag; nas keeps that as the storage format
only. Writers go through `write_trial` / `StudySettings.write`, readers through
`TrialRecord.from_trial` / `StudySettings.from_study`; a misspelt field is a TypeError at once,
not a key that silently reads back as missing.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from pydantic import BaseModel, ConfigDict

# Objective name -> the record field holding its value (accuracy is maximised, costs minimised).
OBJECTIVE_FIELDS = {"accuracy": "val_accuracy", "balanced_accuracy": "val_balanced_accuracy",
                    "params": "params", "macs": "macs", "latency": "latency_ms"}
SCORES = ("accuracy", "balanced_accuracy")  # what a study maximises first: one of these
COSTS = ("params", "macs", "latency")
COST_LABELS = {"params": "parameters", "macs": "MACs", "latency": "latency (ms, batch 1)"}


class WorkerId(BaseModel):
    """The process running a trial, told apart from a later one with the same pid."""

    model_config = ConfigDict(frozen=True)

    host: str
    boot: str  # the kernel's boot id: a reboot ends every process
    namespace: str = ""  # the pid namespace (containers on one host share the boot id)
    pid: int
    started: int  # start time in clock ticks since boot (field 22 of /proc/<pid>/stat)
    since: float | None = None  # the same, in seconds since the epoch (shown on any machine)


# What a trial was asked to do (kept when it is retried); everything else is its outcome.
SAMPLED_FIELDS = ("spec", "spec_hash", "family", "budget_key", "source_trial", "group", "seed",
                  "continues", "bracket", "scaling")


class TrialRecord(BaseModel):
    """Everything nas records about one trial. Fields are None until the trial sets them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # what was sampled
    spec: dict[str, Any] | None = None  # the whole spec: any trial rebuilds without re-sampling
    spec_hash: str | None = None  # content hash of the lowered network
    family: str | None = None
    budget_key: str | None = None  # what a result depends on besides the architecture
    # cost, estimated on the meta device before training (per image at the spec's input size);
    # a trial refused by the gate has only the figures measured up to the limit it exceeded
    params: int | None = None
    macs: int | None = None
    activations: int | None = None
    peak_memory_bytes: int | None = None
    training_memory_bytes: int | None = None  # one step at the search's batch size (estimate)
    latency_ms: float | None = None  # measured on the real model: None for gated trials
    # training
    trained: bool | None = None  # False: gated or failed before training
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None  # mean per-class recall on validation
    curve: list[float | None] | None = None  # validation accuracy after each epoch
    loss_curve: list[float | None] | None = None
    wall_time_s: float | None = None
    images_per_second: float | None = None
    epochs_run: int | None = None
    steps: int | None = None
    seed: int | None = None
    device: str | None = None
    environment: dict[str, Any] | None = None
    stopped: str | None = None
    resumed_epochs: int | None = None
    # zero-cost proxies of the untrained network from one batch (nas.proxies), and their seconds
    proxies: dict[str, float] | None = None
    proxy_seconds: dict[str, float] | None = None
    # outcome
    reason: str | None = None  # why it failed, was stopped, gated or reused
    detail: str | None = None
    reused_from: int | None = None  # the trial whose training result this one reuses
    recovered_from: int | None = None  # a result held through a storage outage, of this trial
    worker: WorkerId | None = None  # who runs (or ran) it
    # a confirmation run: the search trial whose architecture it retrains, and why it was chosen
    source_trial: int | None = None
    group: Literal["front", "control"] | None = None
    # a trial cut by a search's time limit is continued, from its checkpoint, by a later trial
    # of the same architecture: that trial names the first one (whose checkpoint it resumes)
    continues: int | None = None
    bracket: int | None = None  # a multi-fidelity search's Hyperband bracket
    # --prescreen: the proxy, every candidate's score, the index trained, the seconds taken
    prescreen: dict[str, Any] | None = None
    # a scaling search's point (`nas scale-search`): alpha, beta, gamma, phi and the product
    # alpha x beta^2 x gamma^2 that the trial's spec (the base scaled by them) was made with
    scaling: dict[str, float] | None = None

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial | optuna.Trial) -> TrialRecord:
        """The record stored in a trial's user attributes."""
        return cls.model_validate(trial.user_attrs)

    def to_attrs(self) -> dict[str, Any]:
        """The fields this record sets, as Optuna user attributes (JSON values)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def objective(self, name: str) -> float | None:
        """The value of objective `name` (accuracy, params, macs, latency)."""
        value = getattr(self, OBJECTIVE_FIELDS[name])
        return None if value is None else float(value)

    @property
    def is_trained(self) -> bool:
        return bool(self.trained)


def record_part(**fields: Any) -> TrialRecord:
    """`fields` validated as record fields (a misspelt one is a TypeError)."""
    unknown = set(fields) - set(TrialRecord.model_fields)
    if unknown:
        raise TypeError(f"not TrialRecord fields: {', '.join(sorted(unknown))}")
    return TrialRecord(**fields)


def write_trial(trial: optuna.Trial, **fields: Any) -> TrialRecord:
    """Validates `fields` as record fields and stores them on the running trial."""
    part = record_part(**fields)
    for key, value in part.to_attrs().items():
        trial.set_user_attr(key, value)
    return part


def write_trial_attrs(storage: BaseStorage, trial_id: int, **fields: Any) -> TrialRecord:
    """As `write_trial`, for a trial known by its storage id (one this process does not run)."""
    part = record_part(**fields)
    for key, value in part.to_attrs().items():
        storage.set_trial_user_attr(trial_id, key, value)
    return part


TIME_UP = "time_up"  # the reason of a trial cut by the search's time limit


def trained_own_model(attrs: dict[str, Any]) -> bool:
    """Whether a trial's attributes say it trained a model of its own: not refused by the cost
    gate, not a copy of another trial's result, not cut by the time limit (its continuation
    counts instead): what a search's --trials counts. Read from the raw attributes: counting is
    done often and must not validate whole records."""
    return (bool(attrs.get("trained")) and attrs.get("reused_from") is None
            and not str(attrs.get("reason") or "").startswith(TIME_UP))


def invalid_point(attrs: dict[str, Any]) -> bool:
    """Whether a failed trial's attributes say its sampled point gives no valid network (it
    would fail again: a sampler should not propose it anew)."""
    return attrs.get("reason") == "invalid_spec"


# Search time: each run of a search records the span of wall-clock time it ran (its own key, so
# that runs on several machines never overwrite each other's); the time a study has been
# searched is the union of the spans, so runs at the same time count once.
SPAN_PREFIX = "search_span:"


def write_search_span(study: optuna.Study, run: str, start: float, end: float) -> None:
    """Records (or extends) run `run`'s span of search time (seconds since the epoch)."""
    study.set_user_attr(f"{SPAN_PREFIX}{run}", [start, end])


def search_spans(study_attrs: dict[str, Any], but: str = "") -> list[tuple[float, float]]:
    """The recorded spans of a study's runs (but run `but`'s)."""
    return [(float(v[0]), float(v[1])) for k, v in study_attrs.items()
            if k.startswith(SPAN_PREFIX) and k != f"{SPAN_PREFIX}{but}"]


def spent_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of the spans: time during which some run searched."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def sampled_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The part of a trial's attributes that says what it was asked to do (for its retry)."""
    return {k: v for k, v in attrs.items() if k in SAMPLED_FIELDS}


BUDGET_FIELDS = ("dataset", "epochs", "subset", "batch_size", "lr", "seed")
# Cost limits: which trials are admissible. Recorded (None: no limit) by studies made since
# nas 0.2; a study that does not record one takes the first value a run gives it.
LIMIT_FIELDS = ("max_params", "max_macs", "max_memory")
# The multi-fidelity schedule (nas.search.fidelity); min_epochs None: one fidelity for all.
FIDELITY_FIELDS = ("min_epochs", "eta", "brackets")
# How images become the networks' input: the side they are prepared (user data) or resized
# to, their channels, the augmentation (None in studies made before these were recorded: the
# dataset's default then).
DATA_FIELDS = ("input_size", "channels", "augment")


class StudySettings(BaseModel):
    """What a study was created with: space, objectives and the training budget of its trials."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    space: str | None = None
    space_hash: str | None = None
    space_definition: dict[str, Any] | None = None
    sampling: int | None = None  # how the space asks Optuna for values; None: scheme 1
    sampler: str | None = None  # its registered name; None in studies made before it was kept
    objectives: list[str] | None = None
    nas_version: str | None = None
    train_config: dict[str, Any] | None = None
    dataset: str | None = None
    epochs: int | None = None
    subset: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    max_params: int | None = None
    max_macs: int | None = None
    max_memory: int | None = None  # bytes per trial; None: what the device has free
    prescreen: int | None = None  # candidates per trial ranked by a proxy (None: off)
    prescreen_proxy: str | None = None
    min_epochs: int | None = None  # multi-fidelity: the first rung (None: one fidelity)
    eta: int | None = None
    brackets: int | None = None
    input_size: int | None = None
    channels: int | None = None
    augment: str | None = None
    data_fingerprint: str | None = None  # the images every trial was trained on
    data_card: dict[str, Any] | None = None  # classes (the label map), normalisation, counts
    trials: int | None = None  # the target of trained trials the latest run asked for
    time_s: float | None = None  # the search time (--time) the latest run asked for
    grace_s: int | None = None  # heartbeat age after which its workers fail a trial as stale
    # a confirmation study: its search study, what it retrains, and what it found
    source_study: str | None = None
    selection: dict[str, Any] | None = None
    confirm_summary: dict[str, Any] | None = None
    # a scaling search (`nas scale-search`): its base spec, phi, tolerance and grid of triples
    scale_search: dict[str, Any] | None = None

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudySettings:
        return cls.model_validate(study.user_attrs)

    def to_attrs(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, study: optuna.Study) -> None:
        """Stores the settings on the study."""
        for key, value in self.to_attrs().items():
            study.set_user_attr(key, value)

    def budget(self) -> dict[str, Any]:
        """The recorded training budget (dataset, epochs, subset, batch size, lr, seed)."""
        return {k: getattr(self, k) for k in BUDGET_FIELDS if getattr(self, k) is not None}

    def recorded(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The settings among `names` this study records, None (no limit) included: a field
        the study does not hold at all is left out."""
        return {k: getattr(self, k) for k in names if k in self.model_fields_set}

    @property
    def sampling_scheme(self) -> int:
        """The space's sampling scheme (nas.search.space.SAMPLING_SCHEMES); 1 when none is
        recorded, as in studies created before schemes were."""
        return self.sampling or 1

    def objective_names(self, count: int) -> list[str]:
        """The objectives, or `accuracy` per direction for a study nas did not create."""
        return list(self.objectives or ["accuracy"] * count)


def directions(objectives: tuple[str, ...] | list[str]) -> list[str]:
    """maximize for (balanced) accuracy, minimize for each cost."""
    return ["maximize" if o in SCORES else "minimize" for o in objectives]


__all__ = ["BUDGET_FIELDS", "COSTS", "COST_LABELS", "DATA_FIELDS", "FIDELITY_FIELDS",
           "LIMIT_FIELDS", "OBJECTIVE_FIELDS", "SCORES", "SPAN_PREFIX", "TIME_UP",
           "StudySettings", "TrialRecord", "WorkerId", "directions", "invalid_point",
           "sampled_attrs", "search_spans", "spent_seconds", "trained_own_model",
           "write_search_span", "write_trial", "write_trial_attrs"]
