"""Export chosen trials as spec files, with a manifest holding the `nas train` command of each."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import optuna

from nas import __version__
from nas.errors import UserError
from nas.io import parse_spec, save_spec
from nas.study.queries import StudyTrial, best, study_front, study_trials
from nas.study.record import BUDGET_FIELDS, StudySettings
from nas.study.storage import mask_url

MANIFEST = "manifest.json"


def best_trial(study: optuna.Study) -> StudyTrial:
    """The trained, feasible, complete trial of highest validation accuracy (earliest on ties)."""
    found = best(study_trials(study))
    if found is None:
        raise UserError(f"study {study.study_name} has no trained feasible trial yet")
    return found


def pick_numbers(study: optuna.Study, numbers: list[int]) -> list[StudyTrial]:
    """The trials with these numbers, each with a spec to export."""
    trials = {t.number: t for t in study_trials(study)}
    out = []
    for n in dict.fromkeys(numbers):
        if n not in trials:
            raise UserError(f"study {study.study_name} has no trial {n} "
                            f"(trials 0..{len(trials) - 1})")
        if trials[n].record.spec is None:
            why = trials[n].record.reason or trials[n].state.name.lower()
            raise UserError(f"trial {n} has no spec to export ({why})")
        out.append(trials[n])
    return out


def select_trials(study: optuna.Study, pareto: bool, best: bool,
                  numbers: list[int]) -> tuple[str, list[StudyTrial]]:
    """The selection's name and trials: the Pareto front (default), the best, or by number."""
    if pareto + best + bool(numbers) > 1:
        raise UserError("choose one of --pareto, --best or --trial N")
    if numbers:
        return "trials", pick_numbers(study, numbers)
    if best or len(study.directions) == 1:
        return ("best" if best else "pareto"), [best_trial(study)]
    front = study_front(study)  # one trial per architecture
    if not front:
        raise UserError(f"study {study.study_name} has no trained feasible trial yet")
    return "pareto", sorted(front, key=lambda t: t.number)


def trial_file(trial: StudyTrial) -> str:
    """trial-0007-resnext-<spec hash>.yaml"""
    r = trial.record
    return f"trial-{trial.number:04d}-{r.family or 'spec'}-{r.spec_hash or 'nohash'}.yaml"


def data_flags(settings: StudySettings) -> dict[str, Any]:
    """The study's budget as `nas train` options (None where not recorded): your images as
    --data with their channels, and the augmentation the trials trained with."""
    budget = settings.model_dump(include=set(BUDGET_FIELDS))
    builtin = settings.data_card is None or settings.data_card.get("kind") == "builtin"
    if not builtin:
        budget["data"] = budget.pop("dataset")
        budget["channels"] = settings.channels
    if settings.augment is not None:
        budget["augment"] = settings.augment
    return budget


def train_command(spec_path: Path, budget: dict[str, Any], trial: StudyTrial,
                  run_dir: Path) -> str:
    """The `nas train` command that repeats a trial: same budget, seed, device and CPU threads
    (the thread count changes summation order, and a short run amplifies the difference)."""
    r = trial.record
    threads = (r.environment or {}).get("threads")
    # search splits the data with the study's seed, so the retrain validates on the same images
    settings = {**budget, "split_seed": budget.get("seed"), "device": r.device,
                "threads": threads if r.device == "cpu" else None}
    argv = ["nas", "train", str(spec_path)]
    for key, value in settings.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(argv + ["--out", str(run_dir)])


def manifest_entry(trial: StudyTrial, file: str, command: str) -> dict[str, Any]:
    """What the manifest says about one exported trial."""
    shown = trial.record.model_dump(include={
        "family", "spec_hash", "val_accuracy", "params", "macs", "latency_ms", "epochs_run",
        "device", "reused_from"})
    return {"number": trial.number, "file": file, "state": trial.state.name, **shown,
            "train_command": command}


def check_free(paths: list[Path]) -> None:
    """Refuses to overwrite any existing file (checked before anything is written)."""
    taken = [p for p in paths if p.exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise UserError(f"{taken[0]}: already exists{more}; not overwriting (use another --out, "
                        f"or --overwrite to replace the earlier export)")


def earlier_export(out: Path) -> list[Path]:
    """The files an earlier export wrote in `out`: the spec files its manifest lists, and the
    manifest. Nothing else (retrained runs, a user's files) is ever counted."""
    manifest = out / MANIFEST
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))["trials"]
        names = [entry["file"] for entry in listed]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{manifest}: not a manifest nas export wrote; not replacing it") from None
    files = [out / name for name in names
             if isinstance(name, str) and Path(name).name == name and name.endswith(".yaml")]
    return [f for f in files if f.is_file()] + [manifest]


def export_trials(study: optuna.Study, trials: list[StudyTrial], out: Path, selection: str,
                  storage_url: str, overwrite: bool = False) -> dict[str, Any]:
    """Writes each trial's spec and out/manifest.json; returns the manifest. An existing file is
    refused, unless `overwrite`: then the earlier export's files are removed (`earlier_export`)
    and files of the same name replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    files = [trial_file(t) for t in trials]
    if overwrite:
        for old in earlier_export(out):
            old.unlink()
    else:
        check_free([out / f for f in files] + [out / MANIFEST])
    settings = StudySettings.from_study(study)
    budget = data_flags(settings)
    entries = []
    for trial, file in zip(trials, files):
        spec = parse_spec(trial.record.spec, f"trial {trial.number}")
        save_spec(spec, out / file, overwrite=overwrite)
        command = train_command(out / file, budget, trial, out / "runs" / Path(file).stem)
        entries.append(manifest_entry(trial, file, command))
    manifest = {
        "study": study.study_name, "storage": mask_url(storage_url),
        "space": settings.space, "space_hash": settings.space_hash,
        "objectives": settings.objectives, "budget": budget,
        "nas_version": settings.nas_version, "exported_by": __version__,
        "selection": selection, "trials": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


__all__ = ["MANIFEST", "best_trial", "export_trials", "select_trials", "train_command"]
