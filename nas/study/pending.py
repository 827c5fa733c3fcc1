"""Results held through a storage outage: a finished trial whose result could not be written is
kept on local disk, and the next run of the same study writes it before anything else.

Files live beside a SQLite study (`<db>.pending/`), or under `studies/pending/<storage hash>/`
for a server (per machine, as checkpoints are).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from pydantic import BaseModel

from nas.hashing import content_hash
from nas.study.outage import backend
from nas.study.record import TrialRecord, record_part
from nas.study.storage import mask_url, sqlite_path

log = logging.getLogger("nas.search")


class PendingResult(BaseModel):
    """What a finished trial would have told the storage."""

    study: str
    trial_id: int
    number: int
    state: str  # COMPLETE or PRUNED
    values: list[float] | None
    attrs: dict[str, Any]  # record fields not yet written (a TrialRecord's to_attrs())


def pending_dir(url: str) -> Path:
    path = sqlite_path(url)
    if path is not None:
        return path.with_name(path.name + ".pending")
    return Path("studies") / "pending" / content_hash(mask_url(url))


def save_pending(url: str, result: PendingResult) -> Path:
    """Writes the result atomically; returns its file."""
    folder = pending_dir(url)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{result.study}-trial-{result.number}.json"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def flush_pending(study: optuna.Study, url: str) -> list[int]:
    """Writes the study's held results (numbers returned) and removes their files.

    A trial still RUNNING gets its result as told; one already failed meanwhile (its worker
    was declared dead) is recorded again as a new finished trial, `recovered_from` it, so the
    result counts and a queued retry of it reuses the result instead of training again.
    """
    folder = pending_dir(url)
    if not folder.is_dir():
        return []
    written = []
    for file in sorted(folder.glob(f"{study.study_name}-trial-*.json")):
        result = PendingResult.model_validate_json(file.read_text(encoding="utf-8"))
        apply(study, result)
        file.unlink()
        written.append(result.number)
        log.warning("trial %d: wrote its result held during a storage outage", result.number)
    return written


def apply(study: optuna.Study, result: PendingResult) -> None:
    """Writes one held result."""
    storage = backend(study._storage)  # noqa: SLF001  trial ids are storage-level
    state = TrialState[result.state]
    values = result.values if state == TrialState.COMPLETE else None
    trial = storage.get_trial(result.trial_id)
    if trial.state == TrialState.RUNNING:
        for key, value in result.attrs.items():
            storage.set_trial_user_attr(result.trial_id, key, value)
        try:
            storage.set_trial_state_values(result.trial_id, state, values)
            return
        except UpdateFinishedTrialError:
            trial = storage.get_trial(result.trial_id)
    # the dead run's own record, less what marking it dead wrote, plus the held result
    kept = TrialRecord.from_trial(trial).model_dump(
        mode="json", exclude_unset=True, exclude={"reason", "detail", "worker"})
    attrs = {**kept, **result.attrs, **record_part(recovered_from=result.number).to_attrs()}
    study.add_trial(optuna.trial.create_trial(
        state=state, values=values, params=trial.params, distributions=trial.distributions,
        user_attrs=attrs, intermediate_values=trial.intermediate_values))


__all__ = ["PendingResult", "flush_pending", "pending_dir", "save_pending"]
