"""`nas proxies`: does a zero-cost proxy rank the study's architectures better than params?"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated

import typer

from nas.cli.app import app
from nas.cli.study_cmds import StorageOpt, StudyOpt
from nas.errors import UserError

if TYPE_CHECKING:
    from nas.analysis.proxies import ProxyCorrelation, ProxyReport


def signed(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.3f}"


def interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or math.isnan(low):
        return "-"
    return f"[{low:+.3f}, {high:+.3f}]"


def row_line(r: ProxyCorrelation, width: int) -> str:
    seconds = "-" if r.median_seconds is None else f"{r.median_seconds:.3f}"
    return (f"{r.proxy:<{width}}  {r.n:>4}  {signed(r.rho):>7}  {interval(r.low, r.high):<17}  "
            f"{signed(r.versus_params):>12}  {interval(r.versus_low, r.versus_high):<17}  "
            f"{seconds:>8}  {r.verdict}")


def report_lines(report: ProxyReport) -> list[str]:
    """The table, then the plain statement of which proxies beat params."""
    level = f"{report.confidence:.0%}"
    width = max(len("proxy"), *(len(r.proxy) for r in report.rows))
    which, when = ("evaluated trials", "") if report.epoch is None else (
        f"trials that reached epoch {report.epoch}", f" after epoch {report.epoch}")
    lines = [f"study {report.study}: {report.trials} {which} with proxies (of "
             f"{report.evaluated}); Spearman's rho with validation accuracy{when}, {level} "
             f"bootstrap intervals ({report.n_boot} resamples, seed {report.seed})",
             f"{'proxy':<{width}}  {'n':>4}  {'rho':>7}  {level + ' interval':<17}  "
             f"{'rho - params':>12}  {level + ' interval':<17}  {'median s':>8}  verdict"]
    lines += [row_line(r, width) for r in report.rows]
    beat = [r.proxy for r in report.rows if r.verdict == "beats params"]
    lines.append(f"beats params: {', '.join(beat)}" if beat else
                 "no proxy beats params on this study (the interval of rho - rho(params) "
                 "includes 0 or lies below it)")
    lines.append("rho is signed: each score is used as 'higher is better' (as --prescreen uses "
                 "it); 'rho - params' is paired: rho(proxy) - rho(params) on the same "
                 "resamples.")
    return lines


def as_json(report: ProxyReport) -> str:
    """The report as one JSON object; NaN as null."""
    data = report.model_dump(mode="json")
    for row in data["rows"]:
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
    return json.dumps(data)


@app.command()
def proxies(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    epoch: Annotated[int | None, typer.Option(
        help="Correlate with validation accuracy after this epoch, over every trial that "
             "reached it (stopped early after it or not: one rung of a multi-fidelity study). "
             "Default: final accuracy of the trials trained to the full budget.")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Spearman's rho of each zero-cost proxy with accuracy; does it beat params?"""
    from nas.analysis.proxies import analyse_proxies
    from nas.study import open_located

    if n_boot < 100:
        raise UserError(f"--n-boot {n_boot}: at least 100 resamples")
    if epoch is not None and epoch < 1:
        raise UserError(f"--epoch {epoch}: at least 1")
    _, loaded = open_located(study, storage)
    report = analyse_proxies(loaded, epoch, n_boot=n_boot, seed=seed)
    print(as_json(report) if json_out else "\n".join(report_lines(report)))


__all__ = ["proxies"]
