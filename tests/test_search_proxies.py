"""Zero-cost proxies in a search: recorded on every trained trial, and --prescreen K trains the
candidate a proxy ranks best (the trained network's own proxy is the chosen candidate's)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import CliRunner

from nas.errors import UserError
from nas.proxies import ZERO_COST
from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search
from nas.study import StudySettings, study_trials

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not DEBIAN.is_dir(), reason="needs Fashion-MNIST")
trains = pytest.mark.slow


def request(tmp_path: Path, **kw: object) -> SearchRequest:
    fields: dict = {"space": load_space("resnext"), "trials": 3, "study": "p",
                    "storage": f"sqlite:///{tmp_path / 'p.db'}", "epochs": 1, "subset": 0.02,
                    "batch_size": 64, "device": "cpu", "sampler": "random", **kw}
    return SearchRequest(**fields)


@trains
def test_every_trained_trial_records_its_proxies_and_their_times(tmp_path: Path) -> None:
    study = search(request(tmp_path))
    trained = [t for t in study_trials(study) if t.trained and not t.reused]
    assert len(trained) == 3
    for t in trained:
        proxies, seconds = t.record.proxies or {}, t.record.proxy_seconds or {}
        assert set(seconds) == set(ZERO_COST) and all(s > 0 for s in seconds.values())
        assert set(proxies) <= set(ZERO_COST) and all(math.isfinite(v) for v in proxies.values())
        assert "synflow" in proxies and "naswot" in proxies


@trains
def test_no_proxies_leaves_them_out(tmp_path: Path) -> None:
    study = search(request(tmp_path, trials=1, proxies=False))
    assert all(t.record.proxies is None for t in study_trials(study))


@trains
def test_prescreen_trains_the_candidate_the_proxy_ranks_best(tmp_path: Path) -> None:
    study = search(request(tmp_path, prescreen=3, prescreen_proxy="naswot"))
    settings = StudySettings.from_study(study)
    assert (settings.prescreen, settings.prescreen_proxy) == (3, "naswot")
    screened = [t for t in study_trials(study) if t.record.prescreen]
    assert len(screened) >= 2, "every trial once the search space is known (not the first)"
    for t in screened:
        note = t.record.prescreen
        scores = note["scores"]
        assert note["proxy"] == "naswot" and len(scores) == 3 and note["seconds"] > 0
        best = max(range(3), key=lambda i: -math.inf if scores[i] is None else scores[i])
        assert note["chosen"] == best
        assert t.record.proxies["naswot"] == pytest.approx(scores[best], rel=1e-9), \
            "the trained network is the chosen candidate (same weights, same batch)"
    with pytest.raises(UserError, match="was created with --prescreen 3; this run asks for 5"):
        search(request(tmp_path, trials=4, prescreen=5))


@pytest.mark.parametrize("args,message", [
    (["--prescreen", "1"], "--prescreen draws K candidates per trial and trains the best: K "
                           "must be at least 2"),
    (["--prescreen", "4", "--prescreen-proxy", "flops"], "--prescreen-proxy: unknown proxy"),
])
def test_bad_prescreen_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                              run_nas: CliRunner) -> None:
    done = run_nas("search", "--space", "resnext", "--storage",
                   f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert done.code == 2 and len(done.err_lines) == 1 and message in done.err, done.err
    assert not (tmp_path / "x.db").exists()
