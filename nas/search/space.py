"""Search spaces as files: each spec dimension a range or a choice list; a trial -> a spec."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from pydantic import Field, ValidationError, model_validator

from nas.errors import SpecError, describe
from nas.families import FAMILIES, FamilySpec
from nas.hashing import content_hash
from nas.io import parse_spec, read_document
from nas.resources import space_files
from nas.specs import Frozen

FAMILY_CLASSES = {f.model_fields["family"].default: f for f in FAMILIES}
Scalar = int | float | str | bool


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

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask the trial for this dimension's value under `name`."""
        if self.choices is not None:
            index = trial.suggest_categorical(name, list(range(len(self.choices))))
            value = self.choices[index]
            return list(value) if isinstance(value, tuple) else value
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)  # type: ignore[arg-type]

    def size(self) -> float:
        """Number of distinct values (inf for a continuous range)."""
        if self.choices is not None:
            return len(self.choices)
        if self.is_int:
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1  # type: ignore[arg-type]
        return math.inf if self.step is None else math.floor((self.high - self.low) / self.step) + 1  # type: ignore[operator]


class SearchSpace(Frozen):
    """A region of one family's design space."""

    name: str
    family: str
    description: str = ""
    fixed: dict[str, Any] = {}
    stages: tuple[int, int] | None = Field(default=None, description="[min, max] stage count")
    dimensions: dict[str, Dimension] = Field(min_length=1)

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
        return self

    @property
    def family_class(self) -> type[FamilySpec]:
        return FAMILY_CLASSES[self.family]

    def content_hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))

    def size(self) -> float:
        """Distinct points (inf when a dimension is continuous)."""
        flat = math.prod(d.size() for d in self.dimensions.values() if not d.per_stage)
        if self.stages is None:
            return flat
        per = math.prod(d.size() for d in self.dimensions.values() if d.per_stage)
        return flat * sum(per**n for n in range(self.stages[0], self.stages[1] + 1))

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """A fixed set of Optuna parameters: every per-stage slot is sampled, then truncated."""
        values: dict[str, Any] = {}
        n = 0
        if self.stages is not None:
            low, high = self.stages
            n = trial.suggest_int("num_stages", low, high) if low < high else low
        for name, dim in self.dimensions.items():
            if dim.per_stage:
                slots = [dim.suggest(trial, f"{name}_{i}") for i in range(self.stages[1])]  # type: ignore[index]
                values[name] = slots[:n]
            else:
                values[name] = dim.suggest(trial, name)
        return values

    def to_spec(self, values: dict[str, Any], data_fields: dict[str, int]) -> FamilySpec:
        """The spec for sampled values; `data_fields` sets in_channels/num_classes/input_size."""
        fields = {**data_fields, **self.fixed, **self.family_class.from_sample(values)}
        return parse_spec({"family": self.family, **fields}, f"space {self.name}")

    def suggest(self, trial: optuna.Trial, data_fields: dict[str, int]) -> FamilySpec:
        """Sample a trial's spec."""
        return self.to_spec(self.sample(trial), data_fields)

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


def load_space(source: str | Path) -> SearchSpace:
    """A space from a shipped name or a YAML/JSON path."""
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
        return SearchSpace.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{path}: {describe(e)}") from None
