"""Design rules: predicates over a stored spec (a plain dict), built in or written in YAML.

A rule holds a clause of a small language (below), read from parsed YAML by `parse_rules` and
evaluated by walking the clause objects: nothing is ever handed to `eval` or `exec`.

    rule       := {name: NAME, description?: TEXT, <clause keys>}
    clause     := {all: [clause, ...]} | {any: [clause, ...]} | {not: clause}
                | {field: FIELD, index?: INT, OP: VALUE}          OP: eq ne lt le gt ge in
                | {non_decreasing: FIELD} | {non_increasing: FIELD} | {shared: FIELD}
                | {ratio_band: {field: FIELD, low: NUMBER, high: NUMBER}}

- `field` names a top-level spec field; a missing or null field makes the rule *missing* on that
  spec (left out of its comparison). The per-stage fields `group_widths` and `bottleneck_ratios`
  are also found under their singular names (`group_width`, `bottleneck_ratio`: ResNeXt, RegNet),
  as one value that holds for every stage.
- A comparison takes exactly one operator. `index` picks one stage of a per-stage list (negative
  counts from the end; a stage the model lacks makes the rule missing on it); a single value
  stands for every stage, so any index gives it. Without `index` a list compares as a whole
  (eq, ne, in only). lt/le/gt/ge take a number; `in` a list of allowed values.
- Stage quantifiers: `non_decreasing` (v[i+1] >= v[i]), `non_increasing`, `shared` (all equal),
  `ratio_band` (low <= v[i+1] / v[i] <= high for every i).
- A stage quantifier over a single value, or over a list of one stage, holds (or fails) by
  construction: the spec is *trivial* for it. `all`/`any`/`not` are trivial when every part is.
  Trivial specs are left out of the rule's comparison, and a rule trivial or missing on every
  spec of a study is reported as not testable there, never as a finding.
- `all` holds when every part holds, `any` when one does; a part missing on a spec makes the
  whole rule missing on it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from nas.errors import UserError

Status = Literal["satisfied", "violated", "trivial", "missing"]
STATUSES: tuple[Status, ...] = ("satisfied", "violated", "trivial", "missing")
Spec = Mapping[str, Any]

PER_STAGE_ALIASES = {"group_widths": "group_width", "bottleneck_ratios": "bottleneck_ratio"}
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge, "in": lambda value, allowed: value in allowed,
}
ORDERING = ("lt", "le", "gt", "ge")
QUANTIFIERS = ("non_decreasing", "non_increasing", "shared")
CLAUSES = ("all", "any", "not", *QUANTIFIERS, "ratio_band")
CLAUSE_HELP = ("all, any, not, non_decreasing, non_increasing, shared, ratio_band, "
               "or field + operator")
# Radosavovic et al. 2020 restrict RegNetX to w_m >= 2, and pycls samples w_m in [2, 3]
# (SAMPLERS.REGNET_SAMPLER.WM); the published RegNetX/Y stage widths grow by factors of 2 to 3.
WIDTH_BAND = (2.0, 3.0)
RATIO_SLACK = 1e-9  # 64 / 32 is exactly 2, but a float ratio from rounded widths may miss by ulps


class RuleError(UserError):
    """A user rule that cannot be read or applied; the message is one line naming the rule."""


class Missing(Exception):
    """A field (or stage) that a spec lacks; the rule does not apply to that spec."""


@dataclass(frozen=True)
class Outcome:
    """A clause's value on one spec, and whether the spec's form forced that value."""

    value: bool
    trivial: bool


class Clause(Protocol):
    """One node of a rule: evaluated on a spec, naming the fields it reads."""

    def evaluate(self, spec: Spec, rule: str) -> Outcome: ...

    def fields(self) -> tuple[str, ...]: ...


def lookup(spec: Spec, field: str) -> Any:
    """A spec field's value (a per-stage list's singular alias too); Missing when absent or null."""
    if spec.get(field) is not None:
        return spec[field]
    alias = PER_STAGE_ALIASES.get(field)
    if alias is not None and spec.get(alias) is not None:
        return spec[alias]
    raise Missing(field)


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def stage_values(spec: Spec, field: str, rule: str, numbers: bool) -> list[Any] | None:
    """A per-stage field as a list; None when it is a single value (the same in every stage)."""
    value = lookup(spec, field)
    if not isinstance(value, list):
        return None
    if numbers and not all(is_number(v) for v in value):
        raise RuleError(f"rule {rule}: {field} holds {value!r}, not numbers per stage")
    return value


@dataclass(frozen=True)
class Compare:
    """`field[index] OP value`."""

    field: str
    op: str
    value: Any
    index: int | None = None

    def evaluate(self, spec: Spec, rule: str) -> Outcome:
        value = lookup(spec, self.field)
        if isinstance(value, list) and self.index is not None:
            if not -len(value) <= self.index < len(value):
                raise Missing(f"{self.field}[{self.index}]")
            value = value[self.index]
        elif isinstance(value, list) and self.op in ORDERING:
            raise RuleError(f"rule {rule}: {self.field} is a per-stage list; give an index "
                            f"to use {self.op}")
        if self.op in ORDERING and not is_number(value):
            raise RuleError(f"rule {rule}: {self.field} is {value!r}, which {self.op} cannot "
                            f"compare with {self.value!r}")
        return Outcome(bool(OPERATORS[self.op](value, self.value)), trivial=False)

    def fields(self) -> tuple[str, ...]:
        return (self.field,)


@dataclass(frozen=True)
class Quantifier:
    """A relation between consecutive stages that must hold for every stage."""

    kind: str  # one of QUANTIFIERS
    field: str

    def evaluate(self, spec: Spec, rule: str) -> Outcome:
        values = stage_values(spec, self.field, rule, numbers=self.kind != "shared")
        if values is None or len(values) < 2:
            return Outcome(True, trivial=True)
        pairs = list(zip(values, values[1:]))
        if self.kind == "non_decreasing":
            return Outcome(all(b >= a for a, b in pairs), trivial=False)
        if self.kind == "non_increasing":
            return Outcome(all(b <= a for a, b in pairs), trivial=False)
        return Outcome(all(b == a for a, b in pairs), trivial=False)

    def fields(self) -> tuple[str, ...]:
        return (self.field,)


@dataclass(frozen=True)
class RatioBand:
    """low <= v[i+1] / v[i] <= high for every pair of consecutive stages."""

    field: str
    low: float
    high: float

    def inside(self, ratio: float) -> bool:
        return self.low - RATIO_SLACK <= ratio <= self.high + RATIO_SLACK

    def evaluate(self, spec: Spec, rule: str) -> Outcome:
        values = stage_values(spec, self.field, rule, numbers=True)
        if values is None:
            return Outcome(self.inside(1.0), trivial=True)  # the same value in every stage
        if len(values) < 2:
            return Outcome(True, trivial=True)
        ratios = [b / a if a > 0 else math.inf for a, b in zip(values, values[1:])]
        return Outcome(all(self.inside(r) for r in ratios), trivial=False)

    def fields(self) -> tuple[str, ...]:
        return (self.field,)


@dataclass(frozen=True)
class Combine:
    """`all` or `any` of several clauses."""

    kind: Literal["all", "any"]
    parts: tuple[Clause, ...]

    def evaluate(self, spec: Spec, rule: str) -> Outcome:
        outcomes = [p.evaluate(spec, rule) for p in self.parts]
        join = all if self.kind == "all" else any
        return Outcome(join(o.value for o in outcomes), all(o.trivial for o in outcomes))

    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for p in self.parts for f in p.fields()))


@dataclass(frozen=True)
class Negate:
    """`not` of one clause."""

    part: Clause

    def evaluate(self, spec: Spec, rule: str) -> Outcome:
        outcome = self.part.evaluate(spec, rule)
        return Outcome(not outcome.value, outcome.trivial)

    def fields(self) -> tuple[str, ...]:
        return self.part.fields()


@dataclass(frozen=True)
class Rule:
    """A named predicate over specs; a `builtin` one is reported, not refused, where a study
    lacks its fields."""

    name: str
    clause: Clause
    description: str = ""
    builtin: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        """The spec fields the rule reads."""
        return self.clause.fields()

    def status(self, spec: Spec | None) -> Status:
        """satisfied / violated; trivial when the spec's form decides it; missing when it lacks a
        field."""
        if not spec:
            return "missing"
        try:
            outcome = self.clause.evaluate(spec, self.name)
        except Missing:
            return "missing"
        if outcome.trivial:
            return "trivial"
        return "satisfied" if outcome.value else "violated"


def need_field(node: Mapping[str, Any], key: str, rule: str) -> str:
    """A clause entry that must name a field."""
    value = node.get(key)
    if not isinstance(value, str) or not value:
        raise RuleError(f"rule {rule}: {key} needs a field name, got {value!r}")
    return value


def need_number(value: Any, what: str, rule: str) -> float:
    """A clause entry that must be a number."""
    if not is_number(value):
        raise RuleError(f"rule {rule}: {what} needs a number, got {value!r}")
    return float(value)


def parse_compare(node: Mapping[str, Any], rule: str) -> Compare:
    """{field, index?, one operator}."""
    field = need_field(node, "field", rule)
    ops = [k for k in node if k not in ("field", "index")]
    unknown = [k for k in ops if k not in OPERATORS]
    if unknown:
        raise RuleError(f"rule {rule}: unknown operator {unknown[0]!r} on {field} "
                        f"(operators: {', '.join(OPERATORS)})")
    if len(ops) != 1:
        raise RuleError(f"rule {rule}: a comparison on {field} needs exactly one operator "
                        f"({', '.join(OPERATORS)}), got {len(ops)}")
    op, value = ops[0], node[ops[0]]
    index = node.get("index")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise RuleError(f"rule {rule}: index on {field} needs an integer, got {index!r}")
    if op in ORDERING:
        need_number(value, f"{op} on {field}", rule)
    if op == "in" and not isinstance(value, list):
        raise RuleError(f"rule {rule}: in on {field} needs a list of values, got {value!r}")
    if isinstance(value, dict) or (op == "in" and any(isinstance(v, dict) for v in value)):
        raise RuleError(f"rule {rule}: {op} on {field} compares with plain values, not a mapping")
    return Compare(field, op, value, index)


def parse_band(node: Any, rule: str) -> RatioBand:
    """{field, low, high} of a ratio band."""
    if not isinstance(node, dict) or set(node) != {"field", "low", "high"}:
        raise RuleError(f"rule {rule}: ratio_band needs {{field, low, high}}, got {node!r}")
    field = need_field(node, "field", rule)
    low = need_number(node["low"], "ratio_band low", rule)
    high = need_number(node["high"], "ratio_band high", rule)
    if not 0 < low <= high:
        raise RuleError(f"rule {rule}: ratio_band needs 0 < low <= high, got {low} and {high}")
    return RatioBand(field, low, high)


def parse_clause(node: Any, rule: str) -> Clause:
    """One clause of the rule language (module doc)."""
    if not isinstance(node, dict):
        raise RuleError(f"rule {rule}: a clause is a mapping ({CLAUSE_HELP}), got {node!r}")
    if "field" in node:
        return parse_compare(node, rule)
    kinds = [k for k in node if k in CLAUSES]
    if len(kinds) != 1 or len(node) != 1:
        extra = [k for k in node if k not in CLAUSES]
        what = f"unknown key {extra[0]!r}" if extra else f"{len(kinds)} clause keys"
        raise RuleError(f"rule {rule}: a clause has one of {CLAUSE_HELP}; got {what}")
    kind, value = kinds[0], node[kinds[0]]
    if kind in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise RuleError(f"rule {rule}: {kind} needs a non-empty list of clauses")
        return Combine(kind, tuple(parse_clause(v, rule) for v in value))  # type: ignore[arg-type]
    if kind == "not":
        return Negate(parse_clause(value, rule))
    if kind == "ratio_band":
        return parse_band(value, rule)
    return Quantifier(kind, need_field(node, kind, rule))


def parse_rule(node: Any, position: int) -> Rule:
    """One user rule: a name, an optional description, and one clause."""
    if not isinstance(node, dict):
        raise RuleError(f"rule #{position}: a rule is a mapping with a name, got {node!r}")
    name = node.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"rule #{position}: needs a name (a non-empty string)")
    description = node.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"rule {name}: description needs text, got {description!r}")
    body = {k: v for k, v in node.items() if k not in ("name", "description")}
    if not body:
        raise RuleError(f"rule {name}: has no clause ({CLAUSE_HELP})")
    return Rule(name, parse_clause(body, name), description)


def parse_rules(data: Any, builtin_names: Iterable[str] = ()) -> list[Rule]:
    """User rules from parsed YAML: `{rules: [...]}` or a bare list."""
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    if not isinstance(data, list):
        raise RuleError("rules: expected a list of rules (or a mapping with one key, rules)")
    reserved = set(builtin_names)
    taken = set(reserved)
    rules = []
    for position, node in enumerate(data, start=1):
        rule = parse_rule(node, position)
        if rule.name in taken:
            clash = "a built-in rule" if rule.name in reserved else "another rule"
            raise RuleError(f"rule {rule.name}: {clash} has this name")
        taken.add(rule.name)
        rules.append(rule)
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    """User rules from a YAML file (read with yaml.safe_load)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RuleError(f"{path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RuleError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', e)})") from e
    try:
        return parse_rules(data, (r.name for r in builtin_rules()))
    except RuleError as e:
        raise RuleError(f"{path}: {e}") from e


def builtin_rules(width_band: tuple[float, float] = WIDTH_BAND) -> list[Rule]:
    """The AnyNetX refinements of Radosavovic et al. 2020, and the RegNet width-ratio band."""
    low, high = width_band
    return [
        Rule("shared_bottleneck_ratio", Quantifier("shared", "bottleneck_ratios"),
             "every stage has the same bottleneck ratio (AnyNetX_B)", builtin=True),
        Rule("shared_group_width", Quantifier("shared", "group_widths"),
             "every stage has the same group width (AnyNetX_C)", builtin=True),
        Rule("increasing_widths", Quantifier("non_decreasing", "widths"),
             "stage widths never decrease (AnyNetX_D)", builtin=True),
        Rule("increasing_depths", Quantifier("non_decreasing", "depths"),
             "stage depths never decrease (AnyNetX_E)", builtin=True),
        Rule("width_ratio_band", RatioBand("widths", low, high),
             f"every w[i+1]/w[i] lies in [{low:g}, {high:g}] (RegNet: w_m >= 2)", builtin=True),
    ]


def check_fields(rules: Sequence[Rule], specs: Iterable[Spec | None]) -> None:
    """Refuse a user rule over a field that no spec of the study has (one line naming both)."""
    present: set[str] = set()
    for spec in specs:
        present.update(k for k, v in (spec or {}).items() if v is not None)
    known = present | {plural for plural, single in PER_STAGE_ALIASES.items() if single in present}
    for rule in rules:
        absent = [f for f in rule.fields if f not in known]
        if absent and not rule.builtin:
            listed = ", ".join(sorted(present)) or "none"
            raise RuleError(f"rule {rule.name}: no model in this study has field {absent[0]!r} "
                            f"(fields: {listed})")
