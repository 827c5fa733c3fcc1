"""Search spaces as files: each spec dimension a range or a choice list; a trial -> a spec."""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field, ValidationError, model_validator

from nas.errors import SpecError, describe
from nas.families import FAMILIES, FamilySpec
from nas.families.base import stem as stem_stages
from nas.hashing import content_hash
from nas.io import parse_spec, read_document
from nas.resources import space_files
from nas.specs import MAX_INPUT_SIZE, Frozen, Pixels

if TYPE_CHECKING:  # `nas spaces` lists spaces without waiting for optuna
    import optuna

FAMILY_CLASSES = {f.model_fields["family"].default: f for f in FAMILIES}
Scalar = int | float | str | bool
RULES = ("shared", "increasing")
# Fields that came after studies were recorded: left out of the hash while at their default, so
# a space that does not use them keeps the hash its studies were created with, and they resume.
LATER_FIELDS: dict[str, Any] = {"shared": [], "increasing": [], "stage_weights": "equal"}
# Fields that change no sampled spec, so never part of the hash: a study resumes whatever they
# say (the shipped spaces gained `input_sizes` after studies of them were recorded).
UNHASHED = ("input_sizes",)
# The load check (SearchSpace.check_points): the points of a space it builds, at most about
# UNIFORM_LIMIT + RANDOM_POINTS + 2 of them (~0.1 ms each).
UNIFORM_LIMIT = 2048  # points whose stages all take the same values, all of them up to this
RANDOM_POINTS = 32  # seeded random points besides (stages that differ, continuous ranges)
GRID_LIMIT = 64  # a range with more values is tried at its ends and middle
CHECK_SIZE = 224  # input size of the check for a space that states no input_sizes
CHECK_DATA = {"in_channels": 3, "num_classes": 10}  # neither changes a network's validity
# How a space's dimensions become Optuna parameters. A study records the scheme it was created
# with and keeps it when resumed: Optuna refuses a parameter whose distribution changes kind.
#   1: every choice list is a categorical over its indices (studies that record no scheme).
#   2: a list of numbers is an integer over their ranks (0 = smallest), so that model-based
#      samplers see their order (groups 2 lies between 1 and 4); other lists stay categorical.
SAMPLING_SCHEMES = (1, 2)
SAMPLING = 2  # the scheme of new studies


def pick(weights: Sequence[float], u: float) -> int:
    """Index i with probability weights[i] / sum(weights) when u is uniform in [0, 1)."""
    target, total = u * sum(weights), 0.0
    for i, weight in enumerate(weights):
        total += weight
        if target < total:
            return i
    return len(weights) - 1  # u == 1.0


def non_decreasing(k: int, quantiles: Sequence[float]) -> list[int]:
    """Non-decreasing indices into k ordered values, one per quantile.

    With independent uniform quantiles every non-decreasing sequence (a multiset of
    len(quantiles) values) is equally likely: each index is drawn from its exact conditional
    distribution given the ones before, in proportion to the number of sequences that can
    follow it, C(k - j - 1 + rest, rest). Sorting independent draws would not be uniform:
    (a, b, c) would come six times as often as (a, a, a).
    """
    out, low = [], 0
    for i, u in enumerate(quantiles):
        rest = len(quantiles) - i - 1
        low += pick([math.comb(k - j - 1 + rest, rest) for j in range(low, k)], u)
        out.append(low)
    return out


@functools.lru_cache(maxsize=1024)
def ranked_choices(choices: tuple[Any, ...]) -> list[int] | None:
    """Indices of `choices` from the smallest value up, when every choice is a number (sorted
    once: a search asks for it for every trial, and FreshSampler for every stored trial)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in choices):
        return None
    return sorted(range(len(choices)), key=lambda i: choices[i])


class Dimension(Frozen):
    """One searched field: `low`..`high` (int or float, optionally log/step) or `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: tuple[Scalar | tuple[Scalar, ...], ...] | None = Field(default=None, min_length=1)
    per_stage: bool = Field(default=False, description="one value per stage (name_0, name_1..)")

    @model_validator(mode="after")
    def _range_or_choices(self) -> Dimension:
        has_range = self.low is not None or self.high is not None
        if has_range == (self.choices is not None):
            raise ValueError("give either low and high, or choices")
        if has_range:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.low > self.high:
                raise ValueError(f"inverted range: low {self.low} > high {self.high}")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
        return self

    @property
    def is_int(self) -> bool:
        ints = all(float(v).is_integer() for v in (self.low, self.high) if v is not None)
        return ints and (self.step is None or float(self.step).is_integer())

    @property
    def ranked(self) -> list[int] | None:
        """Indices of the choices from the smallest value up, when every choice is a number."""
        return None if self.choices is None else ranked_choices(self.choices)

    def suggest(self, trial: optuna.Trial, name: str, sampling: int = SAMPLING) -> Any:
        """Ask the trial for this dimension's value under `name` (see SAMPLING_SCHEMES)."""
        if self.choices is not None:
            ranked = self.ranked if sampling >= 2 else None
            if ranked is not None:
                return self.choices[ranked[trial.suggest_int(name, 0, len(ranked) - 1)]]
            index = trial.suggest_categorical(name, list(range(len(self.choices))))
            value = self.choices[index]
            return list(value) if isinstance(value, tuple) else value
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)  # type: ignore[arg-type]

    def grid(self) -> list[Any] | None:
        """The values in order for a finite dimension; None for a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))  # type: ignore[arg-type]
        if self.step is None:
            return None
        return [self.low + i * self.step for i in range(int(self.size()))]  # type: ignore[operator]

    def size(self) -> float:
        """Number of distinct values (inf for a continuous range)."""
        if self.choices is not None:
            return len(self.choices)
        if self.is_int:
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1  # type: ignore[arg-type]
        return math.inf if self.step is None else math.floor((self.high - self.low) / self.step) + 1  # type: ignore[operator]

    def nth(self, i: int) -> Any:
        """The i-th value of a finite dimension (a choice as the space file lists it)."""
        if self.choices is not None:
            value = self.choices[i]
            return list(value) if isinstance(value, tuple) else value
        if self.is_int:
            return int(self.low) + i * int(self.step or 1)  # type: ignore[arg-type]
        return self.low + i * self.step  # type: ignore[operator]

    def check_values(self) -> list[Any]:
        """The values the load check tries: all of them when there are at most GRID_LIMIT (or
        they are choices), else the ends and the middle of the range."""
        size = self.size()
        if self.choices is not None or size <= GRID_LIMIT:
            return [self.nth(i) for i in range(int(size))]
        if not math.isinf(size):
            return [self.nth(0), self.nth(int(size) // 2), self.nth(int(size) - 1)]
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        return [low, math.sqrt(low * high) if self.log else (low + high) / 2, high]

    def draw(self, rng: random.Random) -> Any:
        """A value at random (the load check's sampled points; log ranges log-uniformly)."""
        size = self.size()
        if not math.isinf(size):
            return self.nth(rng.randrange(int(size)))
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.log:
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.uniform(low, high)


class SearchSpace(Frozen):
    """A region of one family's design space, optionally with design rules.

    Rules name per-stage dimensions (a singular name such as `group_width` means
    `group_widths`): `shared` ones take one value for every stage, `increasing` ones never
    decrease from one stage to the next (the RegNet paper's AnyNet refinements). Rules hold by
    construction, never by rejecting samples, and keep random sampling uniform.

    Optuna parameters, the same set for every trial: a plain dimension is one parameter, a free
    per-stage one is `name_0` .. `name_{max-1}` (all drawn, the first n used), a shared one is
    `name`, an increasing one is `name_0_quantile` .. (`non_decreasing` turns them into a
    uniformly drawn sorted multiset), and a varying stage count is `num_stages`.

    What Optuna's RandomSampler is uniform over: for each stage count, over the points of the
    space with that count (log ranges log-uniformly). With `stage_weights: equal` (the default,
    as before rules existed) every stage count is equally likely, so each point of a count with
    fewer points is more likely. With `stage_weights: points` the count is drawn in proportion
    to its number of points (parameter `num_stages_quantile`), so every distinct point of the
    space is equally likely, as the EDFs of the RegNet paper assume.
    """

    name: str
    family: str
    description: str = ""
    fixed: dict[str, Any] = {}
    stages: tuple[int, int] | None = Field(default=None, description="[min, max] stage count")
    dimensions: dict[str, Dimension] = Field(min_length=1)
    shared: tuple[str, ...] = Field(default=(), description="per-stage, one value for all")
    increasing: tuple[str, ...] = Field(default=(), description="per-stage, non-decreasing")
    stage_weights: Literal["equal", "points"] = Field(
        default="equal", description="stage count drawn uniformly, or by its number of points"
    )
    input_sizes: tuple[Pixels, Pixels] | None = Field(
        default=None, description="[min, max] input size in pixels the space is for"
    )

    @model_validator(mode="before")
    @classmethod
    def _plural_rule_names(cls, data: Any) -> Any:
        """`shared: [group_width]` names the per-stage dimension `group_widths`."""
        if not isinstance(data, dict) or not isinstance(data.get("dimensions"), dict):
            return data
        dims, data = data["dimensions"], dict(data)
        for rule in RULES:
            if isinstance(data.get(rule), (list, tuple)):
                data[rule] = [f"{n}s" if isinstance(n, str) and n not in dims and f"{n}s" in dims
                              else n for n in data[rule]]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        if self.family not in FAMILY_CLASSES:
            raise ValueError(f"unknown family {self.family!r}; one of {', '.join(FAMILY_CLASSES)}")
        staged = [n for n, d in self.dimensions.items() if d.per_stage]
        if staged and self.stages is None:
            raise ValueError(f"per_stage dimensions {staged} need `stages: [min, max]`")
        if self.stages is not None and not 1 <= self.stages[0] <= self.stages[1]:
            raise ValueError(f"stages: need 1 <= min <= max, got {list(self.stages)}")
        both = set(self.fixed) & set(self.dimensions)
        if both:
            raise ValueError(f"{sorted(both)} are both fixed and searched")
        if self.input_sizes is not None and self.input_sizes[0] > self.input_sizes[1]:
            raise ValueError(f"input_sizes: need [min, max], got {list(self.input_sizes)}")
        self._check_rules(staged)
        return self

    def _check_rules(self, staged: list[str]) -> None:
        for rule in RULES:
            for name in getattr(self, rule):
                if name not in self.dimensions:
                    raise ValueError(f"{rule}: {name} is not a dimension of the space; "
                                     f"per-stage dimensions: {', '.join(staged) or 'none'}")
                if not self.dimensions[name].per_stage:
                    raise ValueError(f"{rule}: {name} is not a per-stage dimension; "
                                     f"per-stage dimensions: {', '.join(staged) or 'none'}")
        both = set(self.shared) & set(self.increasing)
        if both:
            raise ValueError(f"{', '.join(sorted(both))}: both shared and increasing")
        for name in self.increasing:
            dim, grid = self.dimensions[name], self.dimensions[name].grid()
            if grid is None or dim.log:
                raise ValueError(f"increasing: {name} needs a grid of values (choices, an int "
                                 "range or a step), not a continuous or log range")
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid)
            if not numbers or any(a >= b for a, b in zip(grid, grid[1:])):
                raise ValueError(f"increasing: {name}: choices must be numbers in increasing "
                                 "order")
        if self.stage_weights == "points" and math.isinf(self.stage_points(1)):
            raise ValueError("stage_weights: points needs finite per-stage dimensions")

    @property
    def family_class(self) -> type[FamilySpec]:
        return FAMILY_CLASSES[self.family]

    def content_hash(self) -> str:
        """Hash of the definition (fields added later left out while at their default, so older
        spaces keep theirs); studies are resumed only with the same hash."""
        data = self.model_dump(mode="json", exclude=set(UNHASHED))
        for key, default in LATER_FIELDS.items():
            if data[key] == default:
                del data[key]
        return content_hash(data)

    def stage_points(self, n: int) -> float:
        """Points of the per-stage dimensions with n stages, under the rules."""
        out: float = 1
        for name, d in self.dimensions.items():
            if not d.per_stage:
                continue
            if name in self.shared:
                out *= d.size()
            elif name in self.increasing:  # multisets of n values out of k
                out *= math.comb(int(d.size()) + n - 1, n)
            else:
                out *= d.size() ** n
        return out

    def size(self) -> float:
        """Distinct points under the rules (inf when a dimension is continuous)."""
        flat = math.prod(d.size() for d in self.dimensions.values() if not d.per_stage)
        if self.stages is None:
            return flat
        return flat * sum(self.stage_points(n) for n in range(self.stages[0], self.stages[1] + 1))

    def stage_count(self, trial: optuna.Trial) -> int:
        """The trial's number of stages (0 without per-stage dimensions); see the class doc."""
        if self.stages is None:
            return 0
        low, high = self.stages
        if low == high:
            return low
        if self.stage_weights == "equal":
            return trial.suggest_int("num_stages", low, high)
        u = trial.suggest_float("num_stages_quantile", 0.0, 1.0)
        return low + pick([self.stage_points(n) for n in range(low, high + 1)], u)

    def sample(self, trial: optuna.Trial, sampling: int = SAMPLING) -> dict[str, Any]:
        """Values of every dimension for a trial, per-stage ones as lists (see the class doc)."""
        n = self.stage_count(trial)
        slots = range(self.stages[1]) if self.stages else range(0)
        values: dict[str, Any] = {}
        for name, dim in self.dimensions.items():
            if not dim.per_stage:
                values[name] = dim.suggest(trial, name, sampling)
            elif name in self.shared:
                values[name] = [dim.suggest(trial, name, sampling)] * n
            elif name in self.increasing:
                grid = dim.grid() or []
                quantiles = [trial.suggest_float(f"{name}_{i}_quantile", 0.0, 1.0) for i in slots]
                values[name] = [grid[i] for i in non_decreasing(len(grid), quantiles[:n])]
            else:
                values[name] = [dim.suggest(trial, f"{name}_{i}", sampling) for i in slots][:n]
        return values

    def to_spec(self, values: dict[str, Any], data_fields: dict[str, int]) -> FamilySpec:
        """The spec for sampled values; `data_fields` sets in_channels/num_classes/input_size."""
        fields = {**data_fields, **self.fixed, **self.family_class.from_sample(values)}
        return parse_spec({"family": self.family, **fields}, f"space {self.name}")

    def suggest(self, trial: optuna.Trial, data_fields: dict[str, int],
                sampling: int = SAMPLING) -> FamilySpec:
        """Sample a trial's spec (under sampling scheme `sampling`, see SAMPLING_SCHEMES)."""
        return self.to_spec(self.sample(trial, sampling), data_fields)

    def corners(self) -> list[dict[str, Any]]:
        """The all-low and all-high points, to check a space file at load time."""
        out = []
        for pick in (0, -1):
            values: dict[str, Any] = {}
            n = self.stages[pick] if self.stages else 0
            for name, d in self.dimensions.items():
                v = d.choices[pick] if d.choices is not None else (d.low, d.high)[pick]
                v = list(v) if isinstance(v, tuple) else v
                v = int(v) if d.choices is None and d.is_int else v
                values[name] = [v] * n if d.per_stage else v
            out.append(values)
        return out

    def check(self) -> None:
        """Raises SpecError when the space names fields its family does not have.

        Specs invalid only for some samples are not refused here: those trials fail with
        reason invalid_spec and the search goes on.
        """
        known = set(self.family_class.model_fields)
        for values in self.corners():
            names = set(self.fixed) | set(self.family_class.from_sample(values))
            unknown = sorted(names - known)
            if unknown:
                raise SpecError(f"space {self.name}: {', '.join(unknown)}: not a field of "
                                f"family {self.family}")

    # The load check: points of the space built as specs (docs/spaces.md, "What is checked").

    def check_points(self, size: int | None = None) -> None:
        """Raises SpecError, naming the dimensions and values, when a checked point of the space
        gives no valid spec at `size` px (default: each end of input_sizes, else CHECK_SIZE).

        Checked: the corners, every point whose stages all take the same values when there are
        at most UNIFORM_LIMIT (else each corner with one dimension changed to each of its
        values), and RANDOM_POINTS seeded random points; every value of every dimension is in
        one of them. A point the check did not build can still be invalid: its trial fails with
        reason invalid_spec.
        """
        sizes = [size] if size is not None else list(dict.fromkeys(self.input_sizes or
                                                                     (CHECK_SIZE,)))
        for values in self.points_to_check():
            for px in sizes:
                problem = self.problem(values, px)
                if problem is not None:
                    raise SpecError(self.refusal(values, px, problem))

    def exactly_checked(self) -> bool:
        """Whether the check builds every point whose stages all take the same values."""
        return self.uniform_count() <= UNIFORM_LIMIT and all(
            len(d.check_values()) == d.size() for d in self.dimensions.values())

    def stage_counts(self) -> list[int]:
        """The stage counts the space allows ([0] without per-stage dimensions)."""
        return list(range(self.stages[0], self.stages[1] + 1)) if self.stages else [0]

    def uniform_count(self) -> int:
        """Points whose stages all take the same values, over the check's values."""
        return len(self.stage_counts()) * math.prod(
            len(d.check_values()) for d in self.dimensions.values())

    def points_to_check(self) -> Iterator[dict[str, Any]]:
        """The corners, the points whose stages agree (or one-dimension probes), random points."""
        yield from self.corners()
        if self.uniform_count() <= UNIFORM_LIMIT:
            names = list(self.dimensions)
            grids = [self.dimensions[n].check_values() for n in names]
            for n in self.stage_counts():
                for combo in itertools.product(*grids):
                    yield {name: [v] * n if self.dimensions[name].per_stage else v
                           for name, v in zip(names, combo)}
        else:
            for corner in self.corners():
                for name, d in self.dimensions.items():
                    for value in d.check_values():
                        yield self.with_value(corner, name, value)
        rng = random.Random(0)
        for _ in range(RANDOM_POINTS):
            yield self.random_point(rng)

    def with_value(self, values: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
        """The point with one dimension changed (in every stage, for a per-stage one)."""
        per_stage = self.dimensions[name].per_stage
        return {**values, name: [value] * point_stages(values) if per_stage else value}

    def with_stages(self, values: dict[str, Any], n: int) -> dict[str, Any]:
        """The point with n stages: per-stage lists cut, or extended with their last value."""
        return {name: (v[:n] + v[-1:] * (n - len(v)) if self.dimensions[name].per_stage else v)
                for name, v in values.items()}

    def random_point(self, rng: random.Random) -> dict[str, Any]:
        """A point drawn at random under the rules (not uniformly: for the check only)."""
        n = rng.choice(self.stage_counts())
        values: dict[str, Any] = {}
        for name, d in self.dimensions.items():
            if not d.per_stage:
                values[name] = d.draw(rng)
            elif name in self.shared:
                values[name] = [d.draw(rng)] * n
            else:
                drawn = [d.draw(rng) for _ in range(n)]
                values[name] = sorted(drawn) if name in self.increasing else drawn
        return values

    def problem(self, values: dict[str, Any], size: int) -> str | None:
        """Why the point gives no valid spec at `size` px, or None when it does."""
        try:
            self.to_spec(values, {**CHECK_DATA, "input_size": size})
        except SpecError as e:
            return str(e).removeprefix(f"space {self.name}: ")
        except (TypeError, ValueError, KeyError) as e:  # a family's from_sample, given odd values
            return f"{type(e).__name__}: {e}"
        return None

    def culprits(self, values: dict[str, Any], size: int) -> list[str]:
        """The dimensions (and `stages`) of an invalid point that some other value mends."""
        out = [name for name, d in self.dimensions.items()
               if any(self.problem(self.with_value(values, name, v), size) is None
                      for v in d.check_values())]
        n = point_stages(values)
        if any(self.problem(self.with_stages(values, m), size) is None
               for m in self.stage_counts() if m != n):
            out.append("stages")
        return out

    def refusal(self, values: dict[str, Any], size: int, problem: str) -> str:
        """One line: the space, the dimensions and values that give an invalid spec, why."""
        field = problem.split(":")[0].split(".")[0]  # the spec field a problem starts with
        if field in self.fixed:
            return f"space {self.name}: fixed {problem}"
        culprits = [field] if field in self.dimensions else self.culprits(values, size)
        shown = {name: show(values[name]) for name in values}
        shown["stages"] = str(point_stages(values))
        if culprits == ["stages"]:
            return f"space {self.name}: {shown['stages']} stages: {problem}"
        if len(culprits) == 1:
            name = culprits[0]
            return f"space {self.name}: dimension {name}, value {shown[name]}: {problem}"
        pairs = ", ".join(f"{name} {shown[name]}" for name in culprits or values)
        together = "together" if culprits else "(no single dimension mends it)"
        return f"space {self.name}: dimensions {pairs} {together}: {problem}"

    # Input sizes, and the stem that adapts a space to other sizes.

    def stem_kinds(self) -> tuple[str, ...]:
        """The stems the family offers (none for a family without a `stem` field)."""
        field = self.family_class.model_fields.get("stem")
        return get_args(field.annotation) if field is not None else ()

    def current_stem(self) -> str | None:
        """The stem every network of the space has (None: no stem field, or a searched one)."""
        field = self.family_class.model_fields.get("stem")
        if field is None or "stem" in self.dimensions:
            return None
        return str(self.fixed.get("stem", field.default))

    def sizes_with_stem(self, stem: str) -> tuple[int, int] | None:
        """input_sizes for another stem: sizes at which the stages see what they see now."""
        current = self.current_stem()
        if self.input_sizes is None or current is None:
            return None
        ratio = stem_factor(stem) / stem_factor(current)
        low, high = self.input_sizes
        return max(1, round(low * ratio)), min(MAX_INPUT_SIZE, round(high * ratio))

    def with_stem(self, stem: str) -> SearchSpace:
        """This space with `stem` in place of its stem (named `<name>-<stem>-stem`), its
        input_sizes scaled by the stems' downsampling; SpecError where the family cannot."""
        current, kinds = self.current_stem(), self.stem_kinds()
        if not kinds:
            raise SpecError(f"space {self.name}: family {self.family} has no stem to replace")
        if stem not in kinds:
            raise SpecError(f"--stem {stem}: the stems of family {self.family} are "
                            f"{', '.join(kinds)}")
        if current is None:
            raise SpecError(f"space {self.name} searches its stem: no --stem to fix")
        if stem == current:
            return self
        sizes = self.sizes_with_stem(stem)
        data = {**self.model_dump(mode="json"), "name": f"{self.name}-{stem}-stem",
                "fixed": {**self.fixed, "stem": stem}, "input_sizes": sizes,
                "description": f"{self.description} (with stem {stem})".lstrip()}
        space = SearchSpace.model_validate(data)
        space.check_points()
        return space

    def check_input_size(self, size: int) -> None:
        """Raises SpecError (one line) unless the space is for inputs of `size` px: within its
        input_sizes (else naming them, the stems and shipped spaces that take `size`), and every
        checked point valid at that size. A fixed input_size is the size its networks get."""
        if "input_size" in self.fixed:
            size = int(self.fixed["input_size"])
        if self.input_sizes is not None and not \
                self.input_sizes[0] <= size <= self.input_sizes[1]:
            low, high = self.input_sizes
            raise SpecError(f"space {self.name} is for inputs of {low}-{high} px (its "
                            f"input_sizes); the data is {size} px: {self.advice(size)}")
        self.check_points(size)

    def advice(self, size: int) -> str:
        """What a user whose data is `size` px can do instead: resize, a stem, other spaces."""
        options = [f"resize the images to {self.input_sizes[0]}-{self.input_sizes[1]} px"
                   ] if self.input_sizes else []
        for kind in self.stem_kinds():
            sizes = self.sizes_with_stem(kind) if kind != self.current_stem() else None
            if sizes is not None and sizes[0] <= size <= sizes[1]:
                options.append(f"pass --stem {kind} (the space then takes {sizes[0]}-"
                               f"{sizes[1]} px)")
        others = [name for name in shipped_spaces_for(size) if name != self.name]
        if others:
            options.append(f"use a space for {size} px ({', '.join(others)})")
        return ", ".join(options[:-1]) + (", or " if len(options) > 1 else "") + options[-1]


def point_stages(values: dict[str, Any]) -> int:
    """A point's number of stages: the length of its per-stage lists (0 without any)."""
    return next((len(v) for v in values.values() if isinstance(v, list)), 0)


def show(value: Any) -> str:
    """A value for a one-line message: a per-stage list whose stages agree as one value."""
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return f"{show(value[0])} (every stage)" if len(value) > 1 else show(value[0])
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def stem_factor(kind: str) -> int:
    """How many times a stem divides the input's side (simple: 2, imagenet: 4, small: 1)."""
    size = CHECK_SIZE
    for stage in stem_stages(kind, 8):  # type: ignore[arg-type]
        size = stage.out_size(size)
    return round(CHECK_SIZE / size)


def shipped_spaces_for(size: int) -> list[str]:
    """Shipped spaces whose input_sizes take `size` px (read without validating them)."""
    out = []
    for name, path in space_files().items():
        data = read_document(path)
        sizes = data.get("input_sizes") if isinstance(data, dict) else None
        if isinstance(sizes, list) and len(sizes) == 2 and sizes[0] <= size <= sizes[1]:
            out.append(name)
    return out


def load_space(source: str | Path, check: bool = True) -> SearchSpace:
    """A space from a shipped name or a YAML/JSON path, checked (`check` and `check_points`)
    unless `check` is False."""
    path = Path(source)
    if not (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
        files = space_files()
        if str(source) not in files:
            raise SpecError(f"{source}: neither a space file nor a shipped space; "
                            f"spaces: {', '.join(files)}")
        path = files[str(source)]
    data = read_document(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping")
    data.setdefault("name", path.stem)
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{path}: {describe(e)}") from None
    if check:
        space.check()
        space.check_points()
    return space
