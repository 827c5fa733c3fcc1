"""Shared test helpers: a reproducible hypothesis profile, the CLI driver, small torch utilities,
and the rules that mark the slow tests (`make test-fast` runs the others)."""

from __future__ import annotations

import multiprocessing.process
import os
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

# Reproducible property tests: the same examples on every run and every machine.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", deadline=None)  # fresh random examples on each run
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# One intra-op thread: on a shared machine OpenMP threads that wait on busy cores made each
# convolution ~30 ms slower (a 96 px GoogLeNet forward 1.9 s instead of 0.06 s).
torch.set_num_threads(int(os.environ.get("NAS_TEST_THREADS", "1")))

# The shipped presets that existed when the spec/builder issue was closed; others may be added.
SHIPPED_PRESETS = (
    "d2l_alexnet", "d2l_densenet", "d2l_googlenet", "d2l_lenet_bn", "d2l_nin", "d2l_resnet18",
    "d2l_vgg11", "d2l_vgg11_small", "densenet121", "resnet18", "resnet50", "resnext50_32x4d",
    "vgg11", "vgg16",
)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    """Every test starts from the same torch RNG state and leaves grad mode as it found it."""
    torch.manual_seed(0)
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)


@dataclass(frozen=True)
class CliResult:
    """What one `nas` invocation did: exit code and the text on each stream."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


CliRunner = Callable[..., CliResult]


@pytest.fixture
def run_nas(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Runs `nas ARGS...` through the real entry point `nas.cli.main` in this process."""
    from nas.cli import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def count_params(model: nn.Module) -> int:
    """Number of parameters, counted independently of nas.cost."""
    return sum(p.numel() for p in model.parameters())


def state_shapes(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    """Shapes of every parameter and buffer of a state dict, in its order."""
    return [tuple(v.shape) for v in state.values()]


def randomise_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so that they change outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def copy_state_in_order(source: Mapping[str, torch.Tensor], target: nn.Module) -> None:
    """Loads `source`'s tensors into `target`'s parameters and buffers, position by position."""
    dst = target.state_dict()
    assert len(source) == len(dst), f"{len(source)} tensors in source, {len(dst)} in target"
    target.load_state_dict({k: v.clone() for k, v in zip(dst, source.values())}, strict=True)


# ---- the fast subset ------------------------------------------------------------------------
# `make test-fast` runs `-m "not slow and not postgres"`; `make test` runs everything. A test is
# slow when it trains, starts a search, a server or another process, or takes more than a few
# seconds. The rules below mark most by what they use; `watched` fails any other test that
# trains or starts a process, so a new one cannot slip into the fast subset unmarked.
SLOW_FIXTURES = {
    "no_leftover_processes": "real nas searches (tests/faultkit.py)",
    "data": "training on real Fashion-MNIST",
    "fashion_run": "a run trained on Fashion-MNIST (tests/test_predict.py)",
    "installed": "a wheel built and installed into a new virtual environment",
}
SLOW_MODULES = {
    "test_torchvision_exact.py": "torchvision's full-size models built and compared (3 minutes)",
    "test_packaging.py": "a wheel installed into a new virtual environment; nas in new processes",
    "test_output.py": "real nas commands in new processes, piped and on a terminal",
}
# module::function (every parameter), or module::function[id]: what no rule above covers
SLOW_TESTS = {
    "test_data_user.py::test_processes_starting_together_prepare_once": "three processes",
    "test_predict.py::test_predictions_read_images_as_training_read_them": "trains a run",
    "test_analyze.py::test_analyze_finds_the_planted_rule_and_ranks_it_first": "bootstraps",
    "test_analyze.py::test_report_and_analysis_import_no_torch": "a new process",
    "test_bench.py::test_bench_times_both_loops": "trains",
    "test_bench.py::test_cli_bench_json": "trains",
    "test_cli_spec.py::test_yaml_python_tag_is_refused_by_the_real_command": "`nas` process",
    "test_cli_spec.py::test_summary_of_an_absurd_spec_is_one_line_fast_and_small": "a process",
    "test_confirm.py::test_a_tiny_confirmation_runs_resumes_and_summarizes": "trains",
    "test_confirm.py::test_cli_json_holds_the_findings": "trains",
    "test_dashboard.py::test_dashboard_serves_the_study_and_its_trials": "a server",
    "test_families.py::test_specs_are_refused_or_build_forward_and_backward[nin]": "wide nets",
    "test_fresh.py::test_tpe_re_proposes_architectures_and_fresh_sampling_does_not": "TPE runs",
    "test_outage.py::test_a_worker_is_dead_only_when_that_is_certain": "a process",
    "test_outage.py::test_trials_of_dead_workers_are_failed_and_retried_at_once": "a process",
    "test_report.py::test_compare_overlays_edfs_with_counts_in_range": "three studies",
    "test_storage.py::test_opening_a_storage_again_keeps_the_locks_of_open_connections":
        "processes",
    "test_storage.py::test_workers_never_take_the_same_queued_trial_from_sqlite": "processes",
    "test_storage.py::test_processes_opening_a_new_sqlite_file_at_once_all_get_in": "processes",
    "test_train.py::test_cli_train_writes_a_run_and_refuses_to_overwrite": "trains",
    "test_trust.py::test_intervals_are_seeded_cover_the_truth_and_shrink_with_more_models":
        "a minute and a half of bootstrap intervals",
    "test_workers.py::test_a_worker_stopping_on_an_error_exits_2_through_a_sigterm": "a process",
    **{f"test_search.py::{name}": "searches" for name in (
        "test_every_family_searches_and_records_everything", "test_real_data_is_learned",
        "test_rerun_resumes_to_the_target", "test_resume_with_another_space_or_budget_is_refused",
        "test_same_architecture_and_budget_is_reused_not_retrained",
        "test_a_study_created_before_sampling_schemes_resumes_with_its_own",
        "test_a_new_study_records_the_current_scheme_and_samples_numbers_in_order",
        "test_by_default_trials_must_fit_the_devices_free_memory",
        "test_single_objective_search_uses_optunas_pruner",
        "test_cli_search_prints_budget_front_and_next_commands",
        "test_bad_search_input_is_one_line_exit_2_and_no_file",
        "test_a_foreign_database_is_refused_untouched",
        "test_study_records_can_be_read_by_plain_optuna")},
}
MAX_FAST_STEPS = 2  # optimiser steps a fast test may take (a cost measurement takes one)


def needs_postgres(item: pytest.Item) -> bool:
    """Skipped without a PostgreSQL server, or parametrised onto one."""
    reasons = " ".join(str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "POSTGRES" in reasons.upper() or "postgresql" in params.values()


def is_slow(item: pytest.Item) -> bool:
    """By fixture, module or name (the tables above)."""
    module = item.path.name
    name = f"{module}::{item.name}"
    return bool(SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ()))
                or module in SLOW_MODULES or name in SLOW_TESTS
                or name.split("[")[0] in SLOW_TESTS)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks by rule: `postgres` for the tests that need a server, `slow` by the tables."""
    for item in items:
        if needs_postgres(item):
            item.add_marker(pytest.mark.postgres)
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


def heavy(program: str) -> bool:
    """A program whose start makes a test slow: Python (nas, a search, a worker), a shell
    script, PostgreSQL. Not the small tools libraries run on their own (platform runs
    `uname -p` once, ctypes `ldconfig`)."""
    name = os.path.basename(program)
    return (program == sys.executable or name.startswith("python")
            or name in ("nas", "bash", "sh", "dash", "postgres", "pg_ctl", "initdb", "psql"))


class Activity:
    """What the running test has done that makes a test slow."""

    def __init__(self) -> None:
        self.steps, self.processes, self.watching = 0, [], False

    def audit(self, event: str, args: tuple) -> None:
        if not self.watching:
            return
        if event == "subprocess.Popen":
            argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1] or args[0]]
            if heavy(str(argv[0])):
                self.processes.append(" ".join(str(a) for a in argv)[:120])
        elif event == "os.fork":
            self.processes.append(event)

    def started(self, process: multiprocessing.process.BaseProcess) -> None:
        """multiprocessing's spawn raises no audit event: its start is wrapped instead."""
        if self.watching:
            self.processes.append(f"multiprocessing {process.name}")

    def step(self, optimizer: object, args: object, kwargs: object) -> None:
        if self.watching:
            self.steps += 1

    def findings(self) -> list[str]:
        found = [f"started a process ({p})" for p in self.processes[:3]]
        if self.steps > MAX_FAST_STEPS:
            found.append(f"trained ({self.steps} optimiser steps)")
        return found


ACTIVITY = Activity()
sys.addaudithook(ACTIVITY.audit)
register_optimizer_step_pre_hook(ACTIVITY.step)
_start_process = multiprocessing.process.BaseProcess.start


def _start_watched(self: multiprocessing.process.BaseProcess) -> None:
    ACTIVITY.started(self)
    _start_process(self)


multiprocessing.process.BaseProcess.start = _start_watched  # type: ignore[method-assign]


def watched(item: pytest.Item) -> Generator[None, object, object]:
    """Runs one phase of an unmarked test and fails it if it trained or started a process."""
    if item.get_closest_marker("slow") is not None:
        return (yield)
    ACTIVITY.steps, ACTIVITY.processes, ACTIVITY.watching = 0, [], True
    try:
        result = yield
    finally:
        ACTIVITY.watching = False
    if found := ACTIVITY.findings():
        pytest.fail(f"{item.nodeid} {', '.join(found)} but is not marked slow: mark it "
                    "@pytest.mark.slow, or give it a rule in tests/conftest.py", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from watched(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from watched(item))
