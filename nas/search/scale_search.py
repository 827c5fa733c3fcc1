"""`nas scale-search`: the small grid search of Tan & Le 2019 (section 3.3) for the compound
scaling constants: depth alpha, width beta and resolution gamma with alpha x beta^2 x gamma^2
close to 2 (each step of phi then about doubles the MACs), the base scaled at phi by each.

Each triple of the grid is one queued trial of the study, holding the scaled spec; workers
train them at the search budget (the worker pool, as `nas confirm`), a rerun queues only what
is missing, and the study records its base, phi and grid, refusing a rerun that asks for
others. The best triple (accuracy, then fewer MACs) implies the scaled family phi = 1..N.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import SpecError, UserError
from nas.hashing import content_hash
from nas.pool import Session, run_pool
from nas.pool.workers import RequestWork
from nas.search.objective import (
    TrialFailure,
    checkpoint_path,
    copy_result,
    find_reusable,
    guarded,
    objective_values,
    train_and_record,
)
from nas.search.request import checkpoint_dir
from nas.study import StudySettings, TrialRecord, study_trials, write_trial
from nas.study.outage import DEFAULT_RETRY_S
from nas.study.pending import flush_pending
from nas.study.record import record_part
from nas.study.storage import default_storage, mask_url, open_for_work, sqlite_path

TARGET = 2.0  # alpha x beta^2 x gamma^2: the MACs factor of one step of phi
# The default grid (START:STOP:STEP, inclusive): 61 triples within the default tolerance,
# the paper's (1.2, 1.1, 1.15) among them.
DEFAULT_GRID = {"alpha": "1.0:2.0:0.1", "beta": "1.0:1.5:0.05", "gamma": "1.0:1.5:0.05"}
DEFAULT_TOLERANCE = 0.1
OBJECTIVES = ["accuracy", "macs"]
DIGITS = 6  # grid values are rounded to this many decimals (1.15, not 1.1500000000000001)
MAX_GRID = 100_000  # candidate triples before the constraint
NAMES = ("alpha", "beta", "gamma")


@dataclass(frozen=True, order=True)
class Triple:
    """One point of the grid."""

    alpha: float
    beta: float
    gamma: float

    @property
    def product(self) -> float:
        """alpha x beta^2 x gamma^2: how much one step of phi multiplies the MACs."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def key(self) -> tuple[float, float, float]:
        return (round(self.alpha, DIGITS), round(self.beta, DIGITS), round(self.gamma, DIGITS))

    def text(self) -> str:
        return f"({self.alpha:g}, {self.beta:g}, {self.gamma:g})"

    def params(self) -> dict[str, float]:
        return dict(zip(NAMES, self.key))


def number(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or not value > 0:
        raise UserError(f"{flag}: {value:g} must be above 0")
    return value


def parse_values(text: str, flag: str) -> list[float]:
    """'1.1,1.2' or START:STOP:STEP (both ends included) -> the sorted distinct values, each
    above 0; UserError in one line otherwise."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise UserError(f"{flag} {text}: a range is START:STOP:STEP, e.g. 1.0:2.0:0.1")
        start, stop, step = (number(p, flag) for p in parts)
        if stop < start:
            raise UserError(f"{flag} {text}: the range ends below its start")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > 1000:
            raise UserError(f"{flag} {text}: {count} values; a step that gives at most 1000")
        values = [round(start + i * step, DIGITS) for i in range(count)]
    else:
        values = [number(p, flag) for p in text.split(",") if p.strip()]
        if not values:
            raise UserError(f"{flag}: give values, e.g. 1.1,1.2, or a range START:STOP:STEP")
    return sorted({round(v, DIGITS) for v in values})


def parse_triples(text: str) -> list[Triple]:
    """--grid 'A,B,G;A,B,G': explicit triples."""
    out = []
    for part in (p for p in text.split(";") if p.strip()):
        values = [number(v, "--grid") for v in part.split(",")]
        if len(values) != 3:
            raise UserError(f"--grid {part.strip()}: a triple is alpha,beta,gamma; separate "
                            f"triples with ';', e.g. '1.2,1.1,1.15;1.4,1.1,1.1'")
        out.append(Triple(*(round(v, DIGITS) for v in values)))
    if not out:
        raise UserError("--grid: give triples alpha,beta,gamma separated by ';'")
    return sorted(set(out))


def within(triple: Triple, tolerance: float) -> bool:
    return abs(triple.product - TARGET) <= tolerance + 1e-9


def spread(triples: list[Triple], points: int) -> list[Triple]:
    """`points` of the (sorted) triples, evenly spread: the middle one of each of `points`
    equal runs (all of them when there are no more)."""
    n = len(triples)
    if points >= n:
        return list(triples)
    return [triples[min(n - 1, int((i + 0.5) * n / points))] for i in range(points)]


@dataclass(frozen=True)
class Grid:
    """The triples a scale search trains, and how they were chosen."""

    triples: list[Triple]
    candidates: int  # on the grid before the constraint
    kept: int  # within the tolerance (before --points)
    tolerance: float


def make_grid(alphas: str | None = None, betas: str | None = None, gammas: str | None = None,
              grid: str | None = None, tolerance: float | None = None,
              points: int | None = None) -> Grid:
    """The triples within `tolerance` of alpha x beta^2 x gamma^2 = 2: of --grid's explicit
    triples, else of the product of the value lists (each defaulting to DEFAULT_GRID's),
    capped at `points` evenly spread; UserError when none is left."""
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if not math.isfinite(tolerance) or tolerance < 0:
        raise UserError(f"--tolerance must be 0 or more, got {tolerance:g}")
    if points is not None and points < 1:
        raise UserError(f"--points must be at least 1, got {points}")
    if grid is not None:
        if any(v is not None for v in (alphas, betas, gammas)):
            raise UserError("give --grid (explicit triples) or --alphas/--betas/--gammas, "
                            "not both")
        candidates = parse_triples(grid)
    else:
        lists = [parse_values(given or DEFAULT_GRID[name], f"--{name}s")
                 for name, given in zip(NAMES, (alphas, betas, gammas))]
        size = math.prod(len(v) for v in lists)
        if size > MAX_GRID:
            raise UserError(f"the grid has {size:,} triples; at most {MAX_GRID:,} (a coarser "
                            f"step, or fewer values)")
        candidates = [Triple(*t) for t in itertools.product(*lists)]
    kept = [t for t in candidates if within(t, tolerance)]
    if not kept:
        closest = min(candidates, key=lambda t: abs(t.product - TARGET))
        raise UserError(f"no triple of the grid has alpha x beta^2 x gamma^2 within "
                        f"{tolerance:g} of {TARGET:g} (of {len(candidates)}, the closest is "
                        f"{closest.text()} at {closest.product:.3f}); widen the grid or "
                        f"--tolerance")
    chosen = spread(kept, points) if points is not None else kept
    return Grid(chosen, len(candidates), len(kept), tolerance)


@dataclass
class ScaleRequest:
    """What the user asked for; None: what the study recorded, else the default."""

    study: str
    storage: str | None = None
    base: str | None = None  # a spec file or preset name
    phi: float | None = None
    alphas: str | None = None
    betas: str | None = None
    gammas: str | None = None
    grid: str | None = None
    tolerance: float | None = None
    points: int | None = None
    dataset: str | None = None  # a built-in dataset
    data_dir: str | None = None
    epochs: int | None = None
    subset: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    device: str = "cpu"
    threads: int = 1
    storage_retry: float = DEFAULT_RETRY_S
    max_failures: int = 5

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage(self.study)

    @property
    def grid_asked(self) -> bool:
        return any(v is not None for v in (self.alphas, self.betas, self.gammas, self.grid,
                                           self.tolerance, self.points))

    def check(self) -> None:
        """What can be refused before anything is opened."""
        if not self.study or not self.study.strip():
            raise UserError("--study: give the study's name")
        if self.phi is not None and (not math.isfinite(self.phi) or not self.phi > 0):
            raise UserError(f"--phi must be above 0, got {self.phi:g}")
        for name in ("epochs", "batch_size", "threads", "max_failures"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.subset is not None and not 0 < self.subset <= 1:
            raise UserError(f"--subset must be in (0, 1], got {self.subset:g}")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr:g}")
        if self.storage_retry < 0:
            raise UserError(f"--storage-retry must be 0 or more seconds, got "
                            f"{self.storage_retry:g}")
        if self.dataset is not None:
            from nas.data import is_builtin

            if not is_builtin(self.dataset):
                raise UserError(f"--dataset {self.dataset}: scale-search trains each triple at "
                                f"its own input size, so it takes a built-in dataset "
                                f"(fashion-mnist, mnist, cifar10), whose batches are resized "
                                f"to each network; your images are prepared at one size")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise UserError(f"--data-dir {self.data_dir}: no such directory")


@dataclass(frozen=True)
class ScalePlan:
    """The base, phi, triples and budget of a scale search, and each triple's scaled spec."""

    base_name: str
    base: dict[str, Any]  # the base spec (JSON)
    base_hash: str
    phi: float
    grid: Grid
    budget: dict[str, Any]  # dataset, epochs, subset, batch_size, lr, seed
    specs: dict[tuple[float, float, float], dict[str, Any]] = field(default_factory=dict)

    @property
    def triples(self) -> list[Triple]:
        return self.grid.triples

    def recorded(self) -> dict[str, Any]:
        """What the study records of the search (StudySettings.scale_search)."""
        return {"base_name": self.base_name, "base_hash": self.base_hash, "base": self.base,
                "phi": self.phi, "tolerance": self.grid.tolerance,
                "candidates": self.grid.candidates, "kept": self.grid.kept,
                "triples": [list(t.key) for t in self.triples]}

    def bounds(self) -> dict[str, tuple[float, float]]:
        """Each constant's range over the triples (the trials' Optuna distributions, so the
        report's importances and history can show them)."""
        return {name: (min(t.params()[name] for t in self.triples),
                       max(t.params()[name] for t in self.triples)) for name in NAMES}

    def config(self) -> Any:
        from nas.train import TrainConfig

        return TrainConfig(lr=self.budget["lr"], seed=self.budget["seed"])

    def train_budget(self) -> Any:
        from nas.train import Budget

        b = self.budget
        return Budget(epochs=b["epochs"], subset=b["subset"], batch_size=b["batch_size"])

    def budget_key(self) -> str:
        """As a search trial's: what a result depends on besides the architecture."""
        return content_hash({"dataset": self.budget["dataset"],
                             "budget": asdict(self.train_budget()),
                             "config": asdict(self.config())})


def recorded_settings(req: ScaleRequest) -> StudySettings | None:
    """The settings of the study if it exists (a SQLite file that does not exist is not made);
    UserError when the study exists but is not a scale search."""
    path = sqlite_path(req.storage_url)
    if path is not None and not path.is_file():
        return None
    storage = open_for_work(req.storage_url, min(req.storage_retry, 2.0))
    try:
        study = optuna.load_study(study_name=req.study, storage=storage)
    except KeyError:
        return None
    settings = StudySettings.from_study(study)
    if settings.scale_search is None:
        raise UserError(f"study {req.study} in {mask_url(req.storage_url)} is not a scale "
                        f"search (made by nas search or nas confirm); use another --study")
    return settings


def base_spec(req: ScaleRequest, recorded: dict[str, Any] | None) -> tuple[str, Any]:
    """The base spec (from --base, else the study's), checked to be scalable."""
    from nas.families.scaling import can_scale
    from nas.io import load_spec, parse_spec

    if req.base is not None:
        try:
            name, spec = req.base, load_spec(req.base)
        except SpecError as e:
            raise UserError(f"--base: {e}") from None
    elif recorded is not None:
        name, spec = recorded["base_name"], parse_spec(recorded["base"], "the study's base")
    else:
        raise UserError("give --base SPEC: the spec (file or preset) to scale, of the mbconv "
                        "or efficientnet family")
    if not can_scale(spec):
        raise UserError(f"--base {name}: family {spec.family} has no width_mult and depth_mult "
                        f"to scale; scale-search takes mbconv and efficientnet specs")
    return name, spec


def settle_budget(req: ScaleRequest, recorded: StudySettings | None) -> dict[str, Any]:
    """The budget in force: the flag, else the study's, else the search default of the
    device (`nas search`'s)."""
    from nas.train import search_budget

    defaults = {"dataset": "fashion-mnist", "seed": 0, **search_budget(req.device)}
    known = recorded.budget() if recorded is not None else {}
    return {k: getattr(req, k) if getattr(req, k) is not None else known.get(k, defaults[k])
            for k in ("dataset", "epochs", "subset", "batch_size", "lr", "seed")}


def check_data_fits(spec: Any, dataset: str) -> None:
    """The base's channels and classes must be the dataset's (one line otherwise)."""
    from nas.data import dataset_info

    info = dataset_info(dataset)
    if spec.in_channels != info.in_channels or spec.num_classes != info.num_classes:
        raise UserError(f"--base takes {spec.in_channels}-channel images in "
                        f"{spec.num_classes} classes; {info.name} has {info.in_channels} "
                        f"channel(s) and {info.num_classes} classes: set in_channels and "
                        f"num_classes in the spec")


def make_plan(req: ScaleRequest, recorded: StudySettings | None = None) -> ScalePlan:
    """Options left out take what the study recorded, else the defaults; every triple's
    scaled spec is made (and refused in one line when it is not valid); a rerun asking for
    another base, phi, grid or budget is refused."""
    from nas.families.scaling import Scaling, scale

    had = recorded.scale_search if recorded is not None else None
    name, base = base_spec(req, had)
    phi = req.phi if req.phi is not None else (had["phi"] if had else 1.0)
    if had is not None and not req.grid_asked:
        triples = [Triple(*t) for t in had["triples"]]
        grid = Grid(triples, had["candidates"], had["kept"], had["tolerance"])
    else:
        grid = make_grid(req.alphas, req.betas, req.gammas, req.grid, req.tolerance, req.points)
    budget = settle_budget(req, recorded)
    check_data_fits(base, budget["dataset"])
    specs = {}
    for t in grid.triples:
        try:
            scaled = scale(base, Scaling.compound(phi, t.alpha, t.beta, t.gamma))
        except SpecError as e:
            raise UserError(f"triple {t.text()} at phi {phi:g}: {e}") from None
        specs[t.key] = scaled.model_dump(mode="json")
    the_plan = ScalePlan(name, base.model_dump(mode="json"), base.content_hash(), phi, grid,
                         budget, specs)
    if recorded is not None:
        check_same(req.study, recorded, the_plan)
    return the_plan


def check_same(study: str, recorded: StudySettings, the_plan: ScalePlan) -> None:
    """A rerun must ask for the base, phi, grid and budget the study was made with."""
    had = recorded.scale_search or {}
    differ = []
    if had.get("base_hash") != the_plan.base_hash:
        differ.append(f"base {had.get('base_name')} (another network than "
                      f"{the_plan.base_name})")
    if had.get("phi") != the_plan.phi:
        differ.append(f"phi {had.get('phi'):g} (not {the_plan.phi:g})")
    if [tuple(t) for t in had.get("triples", [])] != [t.key for t in the_plan.triples]:
        differ.append(f"a grid of {len(had.get('triples', []))} triples (this run's has "
                      f"{len(the_plan.triples)}, not the same)")
    budget = recorded.budget()
    differ += [f"{k} {budget[k]} (not {v})" for k, v in the_plan.budget.items()
               if k in budget and budget[k] != v]
    if differ:
        raise UserError(f"study {study} was made with {'; '.join(differ)}: leave those options "
                        f"out to resume it as it was, or use another --study")


def open_scale_study(req: ScaleRequest, the_plan: ScalePlan, notify: Any = None,
                     worker: bool = False) -> optuna.Study:
    """Creates or opens the study (its settings written once), and writes results held
    through a storage outage."""
    from nas import __version__

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_for_work(req.storage_url, req.storage_retry, notify, worker)
    study = optuna.create_study(study_name=req.study, storage=storage, load_if_exists=True,
                                directions=["maximize", "minimize"])
    if StudySettings.from_study(study).scale_search is None:
        study.set_metric_names(OBJECTIVES)
        StudySettings(space=f"scale:{Path(the_plan.base_name).stem}", objectives=OBJECTIVES,
                      sampler="grid", nas_version=__version__, scale_search=the_plan.recorded(),
                      **the_plan.budget).write(study)
    flush_pending(study, req.storage_url)
    return study


def triple_of(record: TrialRecord) -> tuple[float, float, float] | None:
    s = record.scaling
    return None if s is None else (s["alpha"], s["beta"], s["gamma"])


def enqueue_missing(study: optuna.Study, the_plan: ScalePlan) -> int:
    """Queues the triples that are neither done nor queued nor running; returns how many."""
    from nas.io import parse_spec

    alive = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    have = {triple_of(t.record) for t in study_trials(study, alive)}
    added = 0
    for t in the_plan.triples:
        if t.key in have:
            continue
        spec = the_plan.specs[t.key]
        job = record_part(spec=spec, spec_hash=parse_spec(spec).content_hash(),
                          family=spec["family"], budget_key=the_plan.budget_key(),
                          scaling={**t.params(), "phi": the_plan.phi,
                                   "product": round(t.product, DIGITS)})
        study.enqueue_trial(params=t.params(), user_attrs=job.to_attrs(), skip_if_exists=False)
        added += 1
    return added


@dataclass
class ScaleObjective:
    """Trains one queued triple's scaled spec at the study's budget."""

    data: Any
    the_plan: ScalePlan
    device: str
    checkpoint_dir: Path | None

    def __call__(self, trial: optuna.Trial) -> Any:
        from nas.cost import MetaCost
        from nas.io import parse_spec
        from nas.train import latency_ms, seeded_build

        job = TrialRecord.from_trial(trial)
        if job.scaling is None or job.spec is None or job.spec_hash is None:
            raise TrialFailure("a queued trial without a triple")  # not made by scale-search
        for name, (low, high) in self.the_plan.bounds().items():
            trial.suggest_float(name, low, high)  # the queued value: shown by the report
        budget, config = self.the_plan.train_budget(), self.the_plan.config()
        spec = parse_spec(job.spec, f"trial {trial.number}")
        spec_hash = job.spec_hash

        def run() -> Any:
            costs = MetaCost(spec, budget.batch_size, config.optimizer)
            model = seeded_build(spec, config.seed)
            record = write_trial(trial, **costs.figures(measure_all=True), latency_ms=latency_ms(
                model, (spec.in_channels, spec.input_size, spec.input_size), self.device))

            def values(scored: Any) -> Any:
                return objective_values(OBJECTIVES, record, scored)

            reused = find_reusable(trial, spec_hash, self.the_plan.budget_key())
            if reused is not None:  # two triples that round to the same network
                copy_result(trial, reused)
                return values(reused.record)
            return train_and_record(trial, model.to(self.device), self.data, budget, config,
                                    checkpoint_path(trial, self.checkpoint_dir, spec_hash),
                                    None, values)

        return guarded(trial, run)


def load_plan_data(the_plan: ScalePlan, req: ScaleRequest, device: str) -> Any:
    from nas.data import load_data

    return load_data(the_plan.budget["dataset"], req.data_dir, device,
                     seed=the_plan.budget["seed"])


@dataclass
class ScaleWork(RequestWork):
    """What each worker does: queued triples of the study until none is left (picklable)."""

    req: ScaleRequest
    noun: str = "scale-search trial"

    @property
    def stop_hint(self) -> str:
        return f". See `nas report --study {self.req.study}`"


    def open_session(self, notify: Any, worker: bool, opened: Any = None) -> Session:
        req = self.req  # the study exists (scale_search made it): its recorded plan
        storage = open_for_work(req.storage_url, req.storage_retry, notify, worker)
        study = optuna.load_study(study_name=req.study, storage=storage)
        the_plan = make_plan(req, StudySettings.from_study(study))
        flush_pending(study, req.storage_url)
        data = load_plan_data(the_plan, req, req.device)
        objective = ScaleObjective(data, the_plan, req.device,
                                   checkpoint_dir(req.storage_url, req.study))
        return Session(study, objective, req.storage_url, catch=(TrialFailure,),
                       queue_only=True)


def scale_search(req: ScaleRequest, jobs: int = 1, notify: Any = None, on_event: Any = None,
                 poll: Any = None, on_start: Any = None) -> tuple[optuna.Study, ScalePlan]:
    """Plans (refusing what cannot be run before anything is written), queues the missing
    triples and trains them in `jobs` workers; returns the study and the plan."""
    req.check()
    recorded = recorded_settings(req)
    the_plan = make_plan(req, recorded)
    if recorded is None:  # a dataset that cannot be loaded is refused before the study is made
        load_plan_data(the_plan, req, "cpu")
    study = open_scale_study(req, the_plan, notify)
    queued = enqueue_missing(study, the_plan)
    if on_start:
        on_start(study, the_plan, queued)
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
        return study, the_plan  # all trained: a rerun reads the results, loads no data
    if recorded is not None:
        load_plan_data(the_plan, req, "cpu")  # a missing dataset is one line, before any worker
    # the workers find the study and its grid recorded: they resume it, whatever was asked
    run_pool(ScaleWork(req), jobs, study, poll=poll, notify=notify, on_event=on_event)
    return study, the_plan


def summarize(study: optuna.Study, the_plan: ScalePlan) -> dict[str, Any]:
    """One row per triple (its latest finished trial, a complete one first), the counts, and
    the best triple: the highest validation accuracy, then the fewest MACs."""
    rank = {TrialState.COMPLETE: 3, TrialState.RUNNING: 2, TrialState.WAITING: 1}
    latest: dict[Any, Any] = {}
    for t in study_trials(study):
        key = triple_of(t.record)
        old = latest.get(key)
        if old is None or (rank.get(t.state, 0), t.number) >= (rank.get(old.state, 0),
                                                               old.number):
            latest[key] = t
    rows = []
    for triple in the_plan.triples:
        t = latest.get(triple.key)
        r = t.record if t is not None else TrialRecord()
        spec = the_plan.specs[triple.key]
        rows.append({**triple.params(), "product": round(triple.product, DIGITS),
                     "trial": None if t is None else t.number,
                     "state": "MISSING" if t is None else t.state.name,
                     "reason": r.reason, "val_accuracy": r.val_accuracy, "params": r.params,
                     "macs": r.macs, "input_size": spec["input_size"],
                     "width_mult": spec["width_mult"], "depth_mult": spec["depth_mult"],
                     "hash": r.spec_hash, "reused_from": r.reused_from,
                     "wall_time_s": r.wall_time_s})
    done = [row for row in rows if row["state"] == "COMPLETE" and row["val_accuracy"] is not None]
    best = min(done, key=lambda row: (-row["val_accuracy"], row["macs"] or math.inf,
                                      row["trial"]), default=None)
    counts = {"triples": len(rows), "trained": len(done),
              "failed": sum(row["state"] == "FAIL" for row in rows),
              "not_done": len(rows) - len(done)}
    return {"study": study.study_name, "base": the_plan.base_name, "base_hash":
            the_plan.base_hash, "phi": the_plan.phi, "tolerance": the_plan.grid.tolerance,
            "target": TARGET, "candidates": the_plan.grid.candidates, "kept": the_plan.grid.kept,
            "budget": the_plan.budget, "counts": counts, "triples": rows, "best": best}


def family(the_plan: ScalePlan, best: dict[str, Any], up_to: int,
           costed: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The family the best triple implies, as EfficientNet's B1..B7 come from B0: the base
    scaled at phi = 0 (the base itself) .. `up_to`, each costed by `costed(spec)`; a phi whose
    spec is not valid ends the family with a note."""
    from nas.families.scaling import Scaling, scale
    from nas.io import parse_spec

    base = parse_spec(the_plan.base, "the base")
    out = []
    for phi in range(up_to + 1):
        try:
            spec = scale(base, Scaling.compound(phi, best["alpha"], best["beta"], best["gamma"]))
        except SpecError as e:
            return out, f"phi {phi}: {e}"
        out.append({"phi": phi, **costed(spec), "hash": spec.content_hash()})
    return out, None


__all__ = ["DEFAULT_GRID", "DEFAULT_TOLERANCE", "TARGET", "Grid", "ScaleObjective",
           "ScalePlan", "ScaleRequest", "ScaleWork", "Triple", "enqueue_missing", "family",
           "make_grid", "make_plan", "open_scale_study", "scale_search", "summarize"]
