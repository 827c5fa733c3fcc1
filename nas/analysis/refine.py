"""Refine a search space with the design rules that help, as the RegNet paper refines AnyNetX.

A rule that helps (its interval above 0) and has a space-rule form becomes a rule of the space:
`shared: FIELD` for `{shared: FIELD}` (the shared bottleneck ratio and group width), and
`increasing: FIELD` for `{non_decreasing: FIELD}` (widths and depths), or several for an `all` of
them. Sampling then keeps to the rule by construction (nas.search.space). A helping rule is not
applied when another helping rule contradicts it (`non_increasing` and `non_decreasing` on the
same field), when it has no space-rule form (a ratio band, a comparison, `any`, `not`), or when
the space cannot take it (no such per-stage dimension, a range `increasing` cannot walk); each
is listed with its reason, for the comment at the top of the written file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml
from pydantic import ValidationError

from nas.analysis.compare import RuleEffects
from nas.analysis.rules import Combine, Quantifier, Rule
from nas.errors import SpecError, UserError, describe

if TYPE_CHECKING:  # nas.search imports Optuna: only when a space is checked or written
    from nas.search.space import SearchSpace

SPACE_RULES = {"shared": "shared", "non_decreasing": "increasing"}
DIRECTIONS = {"non_decreasing": "non-decreasing", "non_increasing": "non-increasing"}


class Refinement(NamedTuple):
    """A refined space definition, the rules applied to it and the helping rules left out."""

    definition: dict[str, Any]
    applied: list[tuple[str, str, str]]  # (rule, space rule kind, dimension)
    left_out: list[tuple[str, str]]  # (rule, why it was not applied)


def clauses(rule: Rule) -> tuple[Any, ...]:
    """The parts of a rule: those of a top-level `all`, else the clause itself."""
    clause = rule.clause
    if isinstance(clause, Combine) and clause.kind == "all":
        return clause.parts
    return (clause,)


def space_form(rule: Rule) -> list[tuple[str, str]] | None:
    """The space rules (kind, field) a rule amounts to, or None when it has no such form."""
    out = []
    for part in clauses(rule):
        if not isinstance(part, Quantifier) or part.kind not in SPACE_RULES:
            return None
        out.append((SPACE_RULES[part.kind], part.field))
    return out


def monotone(rule: Rule) -> set[tuple[str, str]]:
    """(field, direction) of each non-decreasing / non-increasing part of a rule."""
    return {(p.field, p.kind) for p in clauses(rule)
            if isinstance(p, Quantifier) and p.kind in DIRECTIONS}


def contradiction(rule: Rule, others: Sequence[Rule]) -> str | None:
    """Why another helping rule contradicts this one (opposite order on a field), or None."""
    for field, kind in monotone(rule):
        opposite = "non_increasing" if kind == "non_decreasing" else "non_decreasing"
        for other in others:
            if other.name != rule.name and (field, opposite) in monotone(other):
                return (f"contradicted: {other.name} ({DIRECTIONS[opposite]} {field}) "
                        f"helps too")
    return None


def dimension(definition: dict[str, Any], field: str) -> str | None:
    """The per-stage dimension a rule field names (`group_widths` or `group_width`)."""
    dims = definition.get("dimensions") or {}
    for name in (field, field.removesuffix("s"), f"{field}s"):
        if (dims.get(name) or {}).get("per_stage"):
            return name
    return None


def with_rule(definition: dict[str, Any], kind: str, dim: str) -> dict[str, Any]:
    """The definition with one more space rule (shared replaces increasing: it implies it)."""
    shared = [d for d in definition.get("shared") or [] if d != dim]
    increasing = [d for d in definition.get("increasing") or [] if d != dim]
    (shared if kind == "shared" else increasing).append(dim)
    return {**definition, "shared": shared, "increasing": increasing}


def apply_rule(definition: dict[str, Any], rule: Rule, form: list[tuple[str, str]],
               ) -> tuple[dict[str, Any], list[tuple[str, str]], str | None]:
    """The definition with a rule's space rules, the (kind, dimension) added, or why not."""
    from nas.search.space import SearchSpace

    added, out = [], definition
    for kind, field in form:
        dim = dimension(out, field)
        if dim is None:
            return definition, [], f"the space has no per-stage dimension {field}"
        if dim in (out.get("shared") or []):
            continue  # already shared: increasing is implied, shared holds
        if kind == "increasing" and dim in (out.get("increasing") or []):
            continue
        out = with_rule(out, kind, dim)
        added.append((kind, dim))
    try:
        SearchSpace.model_validate(out)
    except ValidationError as e:
        return definition, [], f"the space cannot take it: {describe(e)}"
    return out, added, None


def refine_space(definition: dict[str, Any], effects: RuleEffects, rules: Sequence[Rule],
                 name: str) -> Refinement:
    """The space `definition` (as a study records it) with the helping rules applied."""
    by_name = {r.name: r for r in rules}
    helping = [by_name[n] for n in effects.table.loc[effects.table["verdict"] == "helps", "rule"]
               if n in by_name]
    out = {**definition, "name": name}
    applied: list[tuple[str, str, str]] = []
    left_out: list[tuple[str, str]] = []
    for rule in helping:
        form = space_form(rule)
        why = contradiction(rule, helping)
        if why is None and form is None:
            why = "no space-rule form (only shared and non_decreasing fields have one)"
        if why is None:
            out, added, why = apply_rule(out, rule, form or [])
            applied += [(rule.name, kind, dim) for kind, dim in added]
            if why is None and not added:
                why = "the space already has it"
        if why is not None:
            left_out.append((rule.name, why))
    kept = [(r, kind, dim) for r, kind, dim in applied if dim in out.get(kind, [])]
    left_out += [(r, f"implied by shared: {dim}") for r, kind, dim in applied
                 if (r, kind, dim) not in kept]
    rules_text = ", ".join(f"{kind} {dim}" for _, kind, dim in kept)
    out["description"] = f"{definition.get('name', 'a space')} refined by nas refine: {rules_text}"
    return Refinement(out, kept, left_out)


def effect_text(effects: RuleEffects, rule: str) -> str:
    """'effect +0.0123 [0.0040, 0.0210]' for one rule of the table."""
    row = effects.table.set_index("rule").loc[rule]
    return f"effect {row['effect']:+.4f} [{row['low']:.4f}, {row['high']:.4f}]"


def compact(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition without the default entries of each dimension (None, false)."""
    dims = {name: {k: v for k, v in d.items() if v is not None and v is not False}
            for name, d in (definition.get("dimensions") or {}).items()}
    return {**definition, "dimensions": dims}


def space_text(refinement: Refinement, effects: RuleEffects, source: str) -> str:
    """The refined space as YAML, a comment on top saying where it came from and what was left."""
    stamp = dt.date.today().isoformat()
    lines = [f"# Refined by `nas refine` on {stamp} from {source}: the design rules that helped",
             f"# there ({effects.statistic} error at matched {effects.cost}, "
             f"{effects.confidence:.0%} bootstrap interval above 0), applied as space rules:"]
    lines += [f"#   {kind}: {dim}  <- {rule}, {effect_text(effects, rule)}"
              for rule, kind, dim in refinement.applied]
    if refinement.left_out:
        lines.append("# Rules that helped but are not applied here:")
        lines += [f"#   {rule} ({effect_text(effects, rule)}): {why}"
                  for rule, why in refinement.left_out]
    body = yaml.safe_dump(compact(refinement.definition), sort_keys=False, width=100)
    return "\n".join(lines) + "\n" + body


def refuse_existing(path: Path) -> None:
    """Refuse an --out that exists, or that is not a YAML file name."""
    if path.exists():
        raise UserError(f"{path}: already exists; not overwriting (choose another --out)")
    if path.suffix not in (".yaml", ".yml"):
        raise UserError(f"{path}: give a .yaml file name for the space")


def write_space(text: str, path: Path) -> SearchSpace:
    """Writes a refined space file, refusing to overwrite; loads it back to check it."""
    from nas.search.space import load_space

    refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as f:  # "x": never overwrite, even in a race
            f.write(text)
    except FileExistsError:
        raise UserError(f"{path}: already exists; not overwriting (choose another --out)") from None
    try:
        return load_space(path)
    except SpecError:
        path.unlink()
        raise


__all__ = ["Refinement", "refine_space", "refuse_existing", "space_form", "space_text",
           "write_space"]
