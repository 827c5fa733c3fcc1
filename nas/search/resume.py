"""Create a search study with its settings recorded, or resume one on its recorded settings:
another space, other objectives, another sampler or other admission settings are refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import optuna
from optuna.storages import BaseStorage
from pydantic import ValidationError

from nas import __version__
from nas.errors import UserError
from nas.search.fresh import architecture_key
from nas.search.request import ADMISSION_FIELDS, SearchRequest, settle, trial_settings
from nas.search.samplers import make_sampler
from nas.search.space import SAMPLING, SearchSpace
from nas.study import StudySettings, directions
from nas.study.outage import backend
from nas.study.pending import flush_pending
from nas.study.storage import GRACE_S, open_for_work, shared_cache

Notify = Callable[[str], None]
Prepare = Callable[[dict[str, Any]], None]


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
    for name in ("prescreen", "prescreen_proxy"):
        had, asked = getattr(recorded, name), getattr(req, name)
        if name in recorded.model_fields_set and req.prescreen is not None and had != asked:
            raise UserError(f"study {req.study_name} was created with --{name.replace('_', '-')}"
                            f" {had or 'none'}; this run asks for {asked}: leave it out to "
                            f"resume the study as it was, or use another --study")
    if recorded.sampler not in (None, req.sampler):  # a random study must stay random (EDFs)
        raise UserError(f"study {req.study_name} was created with --sampler {recorded.sampler}; "
                        f"this run asks for {req.sampler}: pass --sampler {recorded.sampler} "
                        f"or use another --study")


def load_existing(name: str, storage: Any) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def settings_of(req: SearchRequest, existing: optuna.Study | None) -> tuple[StudySettings,
                                                                            dict[str, Any]]:
    """The study's recorded settings (checked against the request) and those in force."""
    recorded = StudySettings.from_study(existing) if existing else StudySettings()
    if existing is not None:
        check_resume(req, recorded)
    return recorded, settle(req, req.study_name, recorded)


def storage_for(req: SearchRequest, notify: Notify | None, worker: bool,
                opened: BaseStorage | None = None) -> BaseStorage:
    """The study's storage, shared by every study object of this process (one cache of its
    trials), waiting out outages as the request says: `opened` (the one this process opened
    first, for a worker in the same process) with its policy updated, else a new one."""
    if opened is not None:
        policy = getattr(backend(opened), "retry", None)
        if policy is not None:
            policy.limit_s = req.storage_retry
            policy.notify = notify or policy.notify
        return shared_cache(opened)
    return open_for_work(req.storage_url, req.storage_retry, notify, worker)


def open_search_study(req: SearchRequest, notify: Notify | None = None, worker: bool = False,
                      prepare: Prepare | None = None, opened: BaseStorage | None = None,
                      ) -> tuple[optuna.Study, dict[str, Any]]:
    """Create or resume the study, and the settings in force; results held through an earlier
    storage outage are written first. `prepare(settings)` (loading the data) runs before a new
    study is created, so what it refuses leaves no study behind.

    Storage calls wait out outages up to `req.storage_retry` s, each outage announced once
    through `notify`; a worker (`worker`) also waits for its first connection. `opened`: the
    storage this process opened already (its cache of trials is reused).
    """
    # nas reports failed trials itself, with their reason; optuna's warnings carry tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = storage_for(req, notify, worker, opened)
    existing = load_existing(req.study_name, storage)
    recorded, settings = settings_of(req, existing)
    if prepare is not None:
        prepare(settings)
    if existing is None and (existing := load_existing(req.study_name, storage)) is not None:
        # another process (the same command on another machine) created the study while this
        # one loaded the data: resume theirs, on their settings
        recorded, theirs = settings_of(req, existing)
        if prepare is not None and theirs != settings:
            prepare(theirs)
        settings = theirs
    study = optuna.create_study(
        study_name=req.study_name, storage=storage, load_if_exists=True,
        directions=directions(req.objectives),
        sampler=make_sampler(req.sampler, sampler_seed(req, settings, existing),
                             architecture_key(req.space, sampling_of(recorded, existing))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    record_settings(study, req, recorded, settings, new=existing is None)
    flush_pending(study, req.storage_url)
    return study, settings


def sampling_of(recorded: StudySettings, existing: optuna.Study | None) -> int:
    """The sampling scheme: a resumed study keeps the one it was created with."""
    return recorded.sampling_scheme if existing is not None else SAMPLING


def sampler_seed(req: SearchRequest, settings: dict[str, Any],
                 existing: optuna.Study | None) -> int:
    """A resumed study or another worker must not replay the same sampler stream."""
    count = existing._storage.get_n_trials(existing._study_id) if existing else 0  # noqa: SLF001
    offset = count + 7919 * req.worker_index
    return (settings["seed"] if req.sampler_seed is None else req.sampler_seed) + offset


def record_settings(study: optuna.Study, req: SearchRequest, recorded: StudySettings,
                    settings: dict[str, Any], new: bool) -> None:
    """A new study records everything it was created with; a resumed one what it did not
    record yet (a study made by an older nas: its limits from now on) and the latest target.
    Workers (worker_index > 0) leave the record to the process that opened the study first."""
    if new:
        study.set_metric_names(list(req.objectives))
        StudySettings(
            space=req.space.name, space_hash=req.space.content_hash(),
            space_definition=req.space.model_dump(mode="json"), sampling=SAMPLING,
            objectives=list(req.objectives), sampler=req.sampler, nas_version=__version__,
            prescreen=req.prescreen,
            prescreen_proxy=req.prescreen_proxy if req.prescreen else None,
            train_config=asdict(trial_settings(req, settings).config), trials=req.trials,
            grace_s=GRACE_S,
            **settings,
        ).write(study)
        return
    missing = {k: settings[k] for k in ADMISSION_FIELDS if k not in recorded.model_fields_set}
    for key in ("data_fingerprint", "data_card"):  # an older study's data, from now on
        if getattr(recorded, key) is None and settings.get(key) is not None:
            missing[key] = settings[key]
    if "prescreen" not in recorded.model_fields_set and req.prescreen:  # an older study
        missing.update(prescreen=req.prescreen, prescreen_proxy=req.prescreen_proxy)
    if recorded.trials != req.trials:
        missing["trials"] = req.trials
    if missing:
        StudySettings(**missing).write(study)


__all__ = ["check_resume", "open_search_study", "same_space"]
