"""Find a study from --study / --storage and their defaults, and open it for reading."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import optuna
from optuna.storages import RDBStorage

from nas.errors import UserError
from nas.study.storage import (
    default_storage,
    mask_url,
    open_existing,
    shared_cache,
    study_names,
)

CONFIRM_SUFFIX = ".confirm"


def confirm_name(study: str) -> str:
    """The name of a study's confirmation (`nas confirm`), in the same storage."""
    return f"{study}{CONFIRM_SUFFIX}"


def linked_confirmation(study: optuna.Study) -> optuna.Study | None:
    """The study's confirmation (`nas confirm`) in the same storage, if it has one."""
    try:
        return optuna.load_study(study_name=confirm_name(study.study_name),
                                 storage=study._storage)  # noqa: SLF001  the same storage
    except KeyError:
        return None


class StudyRef(NamedTuple):
    """A study name and the storage URL that holds it."""

    name: str
    url: str


def pick_study(names: list[str], url: str) -> str:
    """The only study in a storage; otherwise say which names there are."""
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError(f"{mask_url(url)}: holds no study")
    raise UserError(f"{mask_url(url)} holds {len(names)} studies ({', '.join(sorted(names))}); "
                    f"choose one with --study")


def locate_study(study: str | None, storage: str | None) -> StudyRef:
    """Resolve --study/--storage defaults: the only study of a storage, the only studies/*.db."""
    return locate_open(study, storage)[0]


def locate_open(study: str | None, storage: str | None) -> tuple[StudyRef, RDBStorage]:
    """`locate_study`, and the storage it opened to look (opening one costs about 0.3 s)."""
    if storage is None and study is None:
        found = sorted(Path("studies").glob("*.db"))
        if len(found) != 1:
            held = f"studies/ holds {', '.join(p.name for p in found)}" if found else \
                "no studies/*.db here"
            raise UserError(f"give --study (or --storage): {held}")
        storage = f"sqlite:///{found[0].as_posix()}"
    url = storage or default_storage(study or "")
    opened = open_existing(url)
    names = study_names(opened)
    if study is None:
        return StudyRef(pick_study(names, url), url), opened
    if study not in names:
        there = f"studies there: {', '.join(sorted(names))}" if names else "it holds no study"
        raise UserError(f"no study {study!r} in {mask_url(url)}; {there}")
    return StudyRef(study, url), opened


def load_study(ref: StudyRef) -> optuna.Study:
    """The study a located reference names, opened for reading."""
    return optuna.load_study(study_name=ref.name, storage=shared_cache(open_existing(ref.url)))


def open_located(study: str | None, storage: str | None) -> tuple[StudyRef, optuna.Study]:
    """locate_study then load_study, on one opened storage."""
    ref, opened = locate_open(study, storage)
    return ref, optuna.load_study(study_name=ref.name, storage=shared_cache(opened))


__all__ = ["StudyRef", "confirm_name", "load_study", "locate_study", "open_located", "pick_study"]
