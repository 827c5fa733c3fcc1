"""A search as work for the worker pool: each worker opens the study on its recorded settings,
loads the data, and runs trials until the study holds `--trials` trained trials."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.device import worker_device
from nas.pool import PoolStopped, Session, TrialEvent, run_pool
from nas.pool.trial_loop import fail_abandoned
from nas.pool.workers import RequestWork
from nas.search.data import load_search_data
from nas.search.fresh import architecture_key
from nas.search.objective import Objective, TrialFailure
from nas.search.request import SearchRequest, check_request, trial_settings
from nas.search.resume import open_search_study
from nas.search.space import SAMPLING, SearchSpace
from nas.study import StudySettings, study_trials, trained_count, trial_kind
from nas.study.record import (
    TrialRecord,
    invalid_point,
    record_part,
    search_spans,
    spent_seconds,
    write_search_span,
)

Notify = Callable[[str], None]
# A worker whose last this many trials trained nothing (all over the cost limits, or results
# reused because the space is exhausted) stops the search instead of spinning.
MAX_IDLE_TRIALS = 50


class IdleGuard:
    """Stops the search (PoolStopped) after `limit` trials in a row that trained no model, or
    at once when a trial reuses a result and every point of a finite space has been trained."""

    def __init__(self, study: str, space: SearchSpace | None = None, sampling: int = SAMPLING,
                 limit: int | None = None) -> None:
        self.limit = MAX_IDLE_TRIALS if limit is None else limit
        self.study, self.gated, self.reused = study, 0, 0
        self.space_size = math.inf if space is None else space.size()
        self.key = (lambda params: None) if space is None else architecture_key(space, sampling)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state.name == "FAIL":
            return  # failures have their own guard (--max-failures)
        record = TrialRecord.from_trial(trial)
        if record.is_trained and record.reused_from is None:
            self.gated = self.reused = 0
            return
        if record.reused_from is not None:
            self.reused += 1
            self.check_exhausted(study)
        else:
            self.gated += 1
        if self.gated + self.reused >= self.limit:
            raise PoolStopped(
                f"the last {self.gated + self.reused} trials of {self.study} trained no model "
                f"({self.gated} over the cost limits, {self.reused} reusing an architecture "
                f"already trained): the limits leave too little of the space, or the space is "
                f"exhausted; raise the limits or widen the space")

    def check_exhausted(self, study: optuna.Study) -> None:
        """Every point of the space trained, or failed as an invalid spec: nothing is left."""
        used = {self.key(t.trial.params) for t in study_trials(study)
                if (t.trained and not t.reused) or invalid_point(t.trial.user_attrs)}
        if len(used) >= self.space_size:
            raise PoolStopped(f"the space of {self.study} has {self.space_size:,.0f} point(s), "
                              f"every one trained or invalid: no new architecture is left for "
                              f"--trials; widen the space")


@dataclass
class SearchWork(RequestWork):
    """What each search worker does (picklable: spawned workers get a copy)."""

    req: SearchRequest
    noun: str = "trial"


    @property
    def stop_hint(self) -> str:
        return f". See `nas report --study {self.req.study_name}` and fix the space or budget"

    def for_worker(self, index: int) -> SearchWork:
        return replace(self, req=replace(self.req, device=worker_device(self.req.device, index),
                                         worker_index=index))

    def open_session(self, notify: Notify, worker: bool, opened: Any = None) -> Session:
        """Opens the study on its settings, loads the data, builds the trial objective."""
        req, loaded = self.req, {}

        def prepare(settings: dict[str, Any]) -> None:
            loaded["data"] = load_search_data(req, settings, req.device)

        study, settings = open_search_study(req, notify, worker, prepare=prepare, opened=opened)
        recorded = StudySettings.from_study(study)
        sampling = recorded.sampling_scheme  # old studies keep theirs
        objective = Objective(req.space, loaded["data"],
                              replace(trial_settings(req, settings), sampling=sampling))
        if recorded.prescreen:
            prescreen_with(study, objective, recorded.prescreen,
                           recorded.prescreen_proxy or req.prescreen_proxy,
                           architecture_key(req.space, sampling), settings["seed"])
        return Session(study, objective, req.storage_url, catch=(TrialFailure,),
                       done=lambda: finished(study, req),
                       callbacks=[IdleGuard(req.study_name, req.space, sampling)])


def prescreen_with(study: optuna.Study, objective: Objective, candidates: int, proxy: str,
                   key: Any, seed: int) -> None:
    """Each new trial draws `candidates` new architectures and trains the one `proxy` ranks
    best (FreshSampler's chooser; a sampler not wrapped in one is wrapped)."""
    from nas.search.fresh import FreshSampler, point_completer

    sampler = study.sampler
    if not isinstance(sampler, FreshSampler):
        sampler = study.sampler = FreshSampler(sampler, key, seed=seed + 104729)
    sampler.candidates = candidates
    sampler.choose = lambda points: objective.prescreen_choice(points, proxy)
    sampler.complete = point_completer(objective.space, objective.settings.sampling)


def finished(study: optuna.Study, req: SearchRequest) -> bool:
    """Whether a worker starts no more trials: the target reached or the time up."""
    if req.deadline is not None and time.time() >= req.deadline:
        return True
    return req.trials is not None and trained_count(study) >= req.trials


class SearchClock:
    """This run's share of the study's search time (--time): the time earlier runs spent (the
    union of their recorded spans) is deducted, and this run's span is recorded as it goes."""

    def __init__(self, study: optuna.Study, time_s: float | None) -> None:
        self.run = f"{socket.gethostname()}-{os.getpid()}-{time.time():.0f}"
        self.started, self.time_s = time.time(), time_s
        self.spent_before = spent_seconds(search_spans(study.user_attrs, but=self.run))
        self.recorded = 0.0

    @property
    def deadline(self) -> float | None:
        if self.time_s is None:
            return None
        return self.started + max(0.0, self.time_s - self.spent_before)

    def left(self) -> float | None:
        """Seconds of search time left to this run (None: no time limit)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.time())

    def record(self, study: optuna.Study, force: bool = False) -> None:
        """Writes this run's span (at most every 10 s unless `force`)."""
        now = time.time()
        if force or now - self.recorded >= 10:
            write_search_span(study, self.run, self.started, now)
            self.recorded = now


def enqueue_continuations(study: optuna.Study) -> list[int]:
    """Queues, once, a continuation of every trial cut by the time limit (same parameters;
    it resumes the cut trial's checkpoint where it is on this machine). Returns their numbers."""
    trials = study_trials(study)
    continued = {t.record.continues for t in trials if t.state.name != "FAIL"}
    cut = [t for t in trials if trial_kind(t) == "time_up"]
    for t in cut:
        root = t.record.continues if t.record.continues is not None else t.number
        if root in continued:
            continue
        continued.add(root)
        study.enqueue_trial(t.trial.params, user_attrs=record_part(continues=root).to_attrs(),
                            skip_if_exists=False)
    return [t.number for t in cut]


def search(req: SearchRequest, jobs: int = 1,
           on_start: Callable[[optuna.Study, dict[str, Any]], None] | None = None,
           on_event: Callable[[TrialEvent], None] | None = None,
           poll: Callable[[optuna.Study], None] | None = None,
           notify: Notify | None = None,
           clock: list[SearchClock] | None = None, progress: Any = None) -> optuna.Study:
    """Runs a search in `jobs` workers until the study holds `req.trials` trained trials or
    its search time (`req.time_s`) is spent; `clock` receives this run's SearchClock;
    `progress` is told how preparing user images goes (nas.data's callback)."""
    check_request(req)
    # the study is created (or resumed) here once, and the data found (or refused) before a new
    # study is created; this process only reads it afterwards (progress), so it does not wait
    # long on an outage (the workers do, and say so)
    study, settings = open_search_study(
        replace(req, storage_retry=min(req.storage_retry, 2.0)), notify=lambda text: None,
        prepare=lambda s: load_search_data(req, s, "cpu", progress))
    # trials whose worker died are failed (and their retries queued) now, even when the target
    # is already reached and no worker will ask for a trial: a rerun leaves nothing RUNNING
    fail_abandoned(study)
    timer = SearchClock(study, req.time_s)
    if clock is not None:
        clock.append(timer)
    if req.time_s is not None:
        StudySettings(time_s=req.time_s).write(study)
    if timer.left() != 0:
        enqueue_continuations(study)
    if on_start:
        on_start(study, settings)

    def polled(st: optuna.Study) -> None:
        timer.record(st)
        if poll is not None:
            poll(st)

    try:
        if timer.left() != 0:
            run_pool(SearchWork(replace(req, deadline=timer.deadline)), jobs, study,
                     poll=polled, notify=notify, on_event=on_event)
    finally:
        with contextlib.suppress(Exception):  # the storage may be what stopped the search
            timer.record(study, force=True)
    return study


__all__ = ["MAX_IDLE_TRIALS", "SearchWork", "search"]
