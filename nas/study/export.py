"""Export chosen trials as spec files, with a manifest holding the `nas train` command of each."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas import __version__
from nas.errors import UserError
from nas.io import parse_spec, save_spec
from nas.report.frames import BUDGET_KEYS, study_front
from nas.search.storage import mask_url

MANIFEST = "manifest.json"


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The trained, feasible, complete trial of highest validation accuracy (earliest on ties)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("trained") and all(v <= 0 for v in t.constraints.values())
            and t.user_attrs.get("val_accuracy") is not None]
    if not done:
        raise UserError(f"study {study.study_name} has no trained feasible trial yet")
    return max(done, key=lambda t: (t.user_attrs["val_accuracy"], -t.number))


def pick_numbers(study: optuna.Study, numbers: list[int]) -> list[FrozenTrial]:
    """The trials with these numbers, each with a spec to export."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    out = []
    for n in dict.fromkeys(numbers):
        if n not in trials:
            raise UserError(f"study {study.study_name} has no trial {n} "
                            f"(trials 0..{len(trials) - 1})")
        if "spec" not in trials[n].user_attrs:
            why = trials[n].user_attrs.get("reason", trials[n].state.name.lower())
            raise UserError(f"trial {n} has no spec to export ({why})")
        out.append(trials[n])
    return out


def select_trials(study: optuna.Study, pareto: bool, best: bool,
                  numbers: list[int]) -> tuple[str, list[FrozenTrial]]:
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


def trial_file(trial: FrozenTrial) -> str:
    """trial-0007-resnext-<spec hash>.yaml"""
    a = trial.user_attrs
    return f"trial-{trial.number:04d}-{a.get('family', 'spec')}-{a.get('spec_hash', 'nohash')}.yaml"


def train_command(spec_path: Path, budget: dict[str, Any], trial: FrozenTrial,
                  run_dir: Path) -> str:
    """The `nas train` command that repeats a trial: same budget, seed, device and CPU threads
    (the thread count changes summation order, and a short run amplifies the difference)."""
    threads = (trial.user_attrs.get("environment") or {}).get("threads")
    # search splits the data with the study's seed, so the retrain validates on the same images
    device = trial.user_attrs.get("device")
    settings = {**budget, "split_seed": budget.get("seed"), "device": device,
                "threads": threads if device == "cpu" else None}
    argv = ["nas", "train", str(spec_path)]
    for key, value in settings.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(argv + ["--out", str(run_dir)])


def manifest_entry(trial: FrozenTrial, file: str, command: str) -> dict[str, Any]:
    """What the manifest says about one exported trial."""
    a = trial.user_attrs
    keys = ("family", "spec_hash", "val_accuracy", "params", "macs", "latency_ms", "epochs_run",
            "device", "reused_from")
    return {"number": trial.number, "file": file, "state": trial.state.name,
            **{k: a.get(k) for k in keys}, "train_command": command}


def check_free(paths: list[Path]) -> None:
    """Refuses to overwrite any existing file (checked before anything is written)."""
    taken = [p for p in paths if p.exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise UserError(f"{taken[0]}: already exists{more}; not overwriting (use another --out)")


def export_trials(study: optuna.Study, trials: list[FrozenTrial], out: Path, selection: str,
                  storage_url: str) -> dict[str, Any]:
    """Writes each trial's spec and out/manifest.json; returns the manifest."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    files = [trial_file(t) for t in trials]
    check_free([out / f for f in files] + [out / MANIFEST])
    budget = {k: study.user_attrs.get(k) for k in BUDGET_KEYS}
    entries = []
    for trial, file in zip(trials, files):
        spec = parse_spec(trial.user_attrs["spec"], f"trial {trial.number}")
        save_spec(spec, out / file)
        command = train_command(out / file, budget, trial, out / "runs" / Path(file).stem)
        entries.append(manifest_entry(trial, file, command))
    manifest = {
        "study": study.study_name, "storage": mask_url(storage_url),
        "space": study.user_attrs.get("space"), "space_hash": study.user_attrs.get("space_hash"),
        "objectives": study.user_attrs.get("objectives"), "budget": budget,
        "nas_version": study.user_attrs.get("nas_version"), "exported_by": __version__,
        "selection": selection, "trials": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


__all__ = ["MANIFEST", "best_trial", "export_trials", "select_trials", "train_command"]
