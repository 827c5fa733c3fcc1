"""The spec commands through the real `nas` entry point: summary, validate, presets, schema."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHIPPED_PRESETS, CliRunner

from nas.cost import estimate
from nas.families import FAMILIES
from nas.io import load_spec, preset_names, presets_dir
from nas.sizes import parse_size

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("name", "params", "gmacs"),
    [("vgg11", 132_863_336, 7.609), ("resnet18", 11_689_512, 1.814)],  # torchvision's figures
)
def test_summary_json_reports_torchvisions_numbers(
    run_nas: CliRunner, name: str, params: int, gmacs: float
) -> None:
    result = run_nas("summary", name, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["params"] == params
    assert report["macs"] == pytest.approx(gmacs * 1e9, rel=0.01)
    assert report["family"] == load_spec(name).family
    assert report["hash"] == load_spec(name).content_hash()
    assert report["input_shape"] == [1, 3, 224, 224]
    assert report["output_shape"] == [1, 1000]
    assert report["activations"] > 0
    assert report["peak_memory_bytes"] >= 4 * params
    stages = report["stages"]
    assert sum(s["params"] for s in stages) == params
    assert sum(s["macs"] for s in stages) == report["macs"]
    assert stages[-1]["kind"] == "head" and stages[-1]["output_shape"] == [1, 1000]
    assert [s["index"] for s in stages] == list(range(len(stages)))


def test_summary_table_shows_stages_and_totals(run_nas: CliRunner) -> None:
    result = run_nas("summary", "d2l_lenet_bn")
    assert result.code == 0, result.err
    # the book's LeNet with BN: 44,878 parameters, 281,640 multiply-adds (counted by hand)
    total = next(line for line in result.out.splitlines() if "total" in line)
    assert "44,878" in total and "281,640" in total and "1x10" in total
    for kind in ("conv", "pool", "head"):
        assert kind in result.out


def test_summary_input_size_override(run_nas: CliRunner) -> None:
    small = json.loads(run_nas("summary", "resnet18", "--input-size", "64", "--json").out)
    assert small["input_shape"] == [1, 3, 64, 64]
    assert small["params"] == 11_689_512  # global pooling: same weights at any size
    assert small["macs"] == pytest.approx(1.814e9 * (64 / 224) ** 2, rel=0.05)
    result = run_nas("summary", "d2l_lenet_bn", "--input-size", "8")
    assert result.code == 2
    assert result.err_lines == [
        "nas: error: --input-size 8: stage 2 (conv) gets a 2x2 input and its output "
        "collapses to 0x0: input_size 8 is too small"
    ]


# Bad spec files: (file name, content, words the one error line must contain).
BAD_FILES = [
    ("unknown_field.yaml", "family: vgg\nconv_arch: [[1, 8]]\ncolour: red\n",
     ["colour", "unknown field"]),
    ("wrong_type.yaml", "family: vgg\nconv_arch: [[1, 8]]\ninput_size: big\n",
     ["input_size", "valid integer"]),
    ("wrong_type.json", '{"family": "lenet", "widths": "wide"}', ["widths", "valid tuple"]),
    ("lengths.yaml", "family: resnet\ndepths: [2, 2]\nwidths: [8, 16, 32]\n",
     ["depths has 2", "widths has 3", "same length"]),
    ("collapse.yaml", "family: lenet\ninput_size: 8\n",
     ["input_size 8", "stage 2", "2x2", "too small"]),
    ("family.yaml", "family: mobilenet\n", ["family", "unknown", "mobilenet"]),
    ("groups.yaml", "family: resnext\ndepths: [1]\nwidths: [100]\ncardinality: 32\n",
     ["cardinality 32", "not divisible", "stage 0"]),
    ("zero.yaml", "family: densenet\nblock_sizes: [2, 0]\n", ["block_sizes.1", "greater than 0"]),
    ("syntax.yaml", "family: [vgg\n", ["not valid yaml"]),
    ("scalar.yaml", "42\n", ["expected a mapping", "int"]),
]


@pytest.mark.parametrize("command", ["summary", "validate"])
@pytest.mark.parametrize(("name", "text", "words"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_spec_file_is_one_line_naming_file_field_and_problem(
    run_nas: CliRunner, tmp_path: Path, command: str, name: str, text: str, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run_nas(command, str(path))
    assert result.code == 2
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith(f"nas: error: {path}: ")
    for word in words:
        assert word in line
    assert "Traceback" not in result.err


@pytest.mark.parametrize("command", ["summary", "validate"])
def test_missing_file_and_unknown_preset(run_nas: CliRunner, tmp_path: Path, command: str) -> None:
    missing = run_nas(command, str(tmp_path / "absent.yaml"))
    assert (missing.code, missing.err_lines) == (
        2, [f"nas: error: {tmp_path / 'absent.yaml'}: no such file"]
    )
    unknown = run_nas(command, "resnet19")
    assert unknown.code == 2 and len(unknown.err_lines) == 1
    assert "neither a spec file nor a preset" in unknown.err


def test_validate_prints_family_and_hash(run_nas: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text((presets_dir() / "resnet50.yaml").read_text())
    result = run_nas("validate", str(path))
    assert result.code == 0 and result.err == ""
    assert result.out == f"{path}: ok (resnet, hash {load_spec('resnet50').content_hash()})\n"


def test_yaml_python_tag_is_refused_by_the_real_command(tmp_path: Path) -> None:
    """A separate `python -m nas` process: exit 2, one line, no traceback, nothing executed."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    done = subprocess.run(
        [sys.executable, "-m", "nas", "validate", str(evil)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nas: error: {evil}: not valid yaml")
    assert not marker.exists()


def test_presets_lists_one_name_per_line(run_nas: CliRunner) -> None:
    result = run_nas("presets")
    assert result.code == 0
    lines = result.out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == preset_names()
    assert set(SHIPPED_PRESETS) <= set(names)
    for line, name in zip(lines, names):
        assert line[len(name):].strip(), f"{name} has no description"
        assert load_spec(name).family  # every listed name is loadable as a preset


def test_schema_is_json_schema_of_every_family(run_nas: CliRunner) -> None:
    result = run_nas("schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert schema["discriminator"]["propertyName"] == "family"
    tags = {f.model_fields["family"].default: f for f in FAMILIES}
    assert set(schema["discriminator"]["mapping"]) == set(tags)
    for tag, family in tags.items():
        ref = schema["discriminator"]["mapping"][tag].split("/")[-1]
        definition = schema["$defs"][ref]
        assert set(definition["properties"]) == set(family.model_fields)
        assert definition.get("additionalProperties") is False  # unknown fields are errors
    assert len(schema["oneOf"]) == len(tags)


def test_schema_out_writes_once_and_refuses_to_overwrite(
    run_nas: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "schema.json"
    first = run_nas("schema", "--out", str(out))
    assert first.code == 0, first.err
    written = out.read_text()
    assert json.loads(written)["discriminator"]["propertyName"] == "family"
    again = run_nas("schema", "--out", str(out))
    assert again.code == 2
    assert again.err_lines == [f"nas: error: {out}: already exists; not overwriting"]
    assert out.read_text() == written
    nowhere = run_nas("schema", "--out", str(tmp_path / "no" / "such" / "dir.json"))
    assert nowhere.code == 2 and len(nowhere.err_lines) == 1 and "cannot write" in nowhere.err


def test_an_unwritable_output_folder_is_one_line_not_a_traceback(
    run_nas: CliRunner, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    result = run_nas("train", "d2l_lenet_bn", "--out", str(blocker / "run"), "--epochs", "1")
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("nas: error: ")
    assert "Traceback" not in result.err and blocker.read_text() == "mine"


# Specs of absurd size a user tried: they once allocated hundreds of GB and ended in a traceback.
ABSURD = {
    "wide-vgg.yaml": ("{family: vgg, conv_arch: [[1, 200000]], in_channels: 1, num_classes: 10, "
                      "input_size: 28}", "conv_arch.0.1: at most 16384 channels"),
    "deep-resnet.yaml": ("{family: resnet, depths: [1000000], widths: [64], in_channels: 1, "
                         "num_classes: 10, input_size: 28}", "depths.0: at most 1024 blocks"),
}


# Runs a command and prints its exit code, wall time and peak RSS (from wait4: that child's
# own). Run in a fresh small interpreter, since a child forked from the pytest process shows
# pytest's RSS (over 1 GB with torch and models loaded) as its own peak.
MEASURE = """
import json, os, subprocess, sys, time
with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
    start = time.perf_counter()
    child = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"code": child.returncode, "seconds": time.perf_counter() - start,
                  "maxrss_kib": usage.ru_maxrss}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
@pytest.mark.parametrize("name", sorted(ABSURD))
def test_summary_of_an_absurd_spec_is_one_line_fast_and_small(tmp_path: Path, name: str) -> None:
    text, message = ABSURD[name]
    path = tmp_path / name
    path.write_text(text + "\n")
    out, err = tmp_path / "out", tmp_path / "err"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(out), str(err),
         sys.executable, "-m", "nas", "summary", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    figures = json.loads(done.stdout)
    assert figures["code"] == 2 and out.read_text() == ""
    assert err.read_text().splitlines() == [f"nas: error: {path}: {message}"]
    # a hang guard, not a speed target (about 1.3 s; building the model would take minutes)
    assert figures["seconds"] < 60, figures
    assert figures["maxrss_kib"] < 2**20, figures  # under 1 GiB


def test_summary_shows_memory_from_the_meta_estimate(run_nas: CliRunner) -> None:
    report = json.loads(run_nas("summary", "resnet_small", "--json", "--batch-size", "64",
                                "--optimizer", "adamw").out)
    est = estimate("resnet_small", batch_size=64, optimizer="adamw")
    assert report["training_memory"] == est.training.as_dict()
    assert report["training_memory"]["batch_size"] == 64 and report["params"] == est.cost.params
    assert report["memory_limit"]["source"] in ("available memory", "cgroup limit")
    text = run_nas("summary", "resnet_small").out
    assert "peak forward memory" in text and "training memory (sgd)" in text
    assert "at batch 256 (weights" in text and "memory limit" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "4096", "--max-memory", "100MB"],
         "d2l_lenet_bn: training needs 176.8 MiB at batch 4096 (weights 177.1 KiB, gradients "
         "175.3 KiB, optimiser 175.3 KiB, activations 176.3 MiB); limit 95.4 MiB "
         "(--max-memory); lower --batch-size or the spec's size"),
        (["--max-memory", "1MB"], "d2l_lenet_bn: training needs 11.5 MiB at batch 256"),
        (["--max-memory", "12XB"], "--max-memory 12XB: not a size above zero"),
        (["--max-memory", "0"], "--max-memory 0: not a size above zero"),
        (["--batch-size", "0"], "--batch-size 0: between 1 and 1048576"),
        (["--optimizer", "lion"], "unknown optimizer 'lion'; one of sgd, adamw"),
    ],
)
def test_summary_checks_a_training_configuration_in_one_line(
    run_nas: CliRunner, args: list[str], message: str
) -> None:
    result = run_nas("summary", "d2l_lenet_bn", *args)
    assert result.code == 2 and result.out == ""
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith(f"nas: error: {message}")


def test_summary_refuses_a_spec_whose_forward_cannot_fit_this_machine(
    run_nas: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "huge.yaml"  # within every field's bound, but a petabyte of weights
    path.write_text("{family: vgg, conv_arch: [[1, 16384]], in_channels: 1, input_size: 4096}\n")
    result = run_nas("summary", str(path))
    assert result.code == 2 and len(result.err_lines) == 1
    assert re.match(rf"nas: error: {re.escape(str(path))}: a forward of one image needs "
                    r"1\.0 PiB \(.* parameters\); limit .* \((available memory|cgroup limit)\); "
                    r"lower the spec's size$", result.err_lines[0]), result.err


def test_train_refuses_before_loading_data_or_writing(run_nas: CliRunner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_nas("train", "d2l_lenet_bn", "--max-memory", "1MB", "--out", str(run),
                     "--data-dir", str(tmp_path / "no-data-here"))
    assert result.code == 2 and result.out == ""
    assert result.err_lines == [
        "nas: error: d2l_lenet_bn: training needs 11.5 MiB at batch 256 (weights 177.1 KiB, "
        "gradients 175.3 KiB, optimiser 175.3 KiB, activations 11.0 MiB); limit 976.6 KiB "
        "(--max-memory); lower --batch-size or the spec's size"]
    assert not run.exists()
    bad = run_nas("train", "d2l_lenet_bn", "--max-memory", "lots", "--out", str(run))
    assert bad.code == 2 and bad.err_lines == [
        "nas: error: --max-memory lots: not a size above zero; e.g. 2GiB, 500MB, 1.5G or a "
        "number of bytes"]


@pytest.mark.parametrize(
    ("text", "size"),
    [("2GiB", 2 * 2**30), ("500MB", 500 * 10**6), ("1.5G", 3 * 2**29), (" 3 kib ", 3072),
     ("1024", 1024), (".5M", 2**19), ("2gb", 2 * 10**9), ("1TiB", 2**40),
     ("0", None), ("-1", None), ("2XB", None), ("", None), ("GiB", None), ("1e9", None),
     ("0.5", None), ("9" * 400, None)],
)
def test_sizes_parse_as_people_write_them(text: str, size: int | None) -> None:
    assert parse_size(text) == size


def test_summary_and_train_check_a_weights_file_in_one_line(run_nas: CliRunner,
                                                            tmp_path: Path) -> None:
    import torch
    import torchvision

    with torch.device("meta"):
        shapes = torchvision.models.resnet18().state_dict()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    good, short = tmp_path / "resnet18.pth", tmp_path / "short.pth"
    torch.save(state, good)
    torch.save(dict(list(state.items())[:-2]), short)  # no classifier
    fits = run_nas("summary", "resnet18", "--weights", str(good), "--json")
    assert fits.code == 0 and json.loads(fits.out)["weights"] == str(good)
    for spec, command in [("resnet18", "summary"), ("d2l_lenet_bn", "train")]:
        refused = run_nas(command, spec, "--weights", str(short if spec == "resnet18" else good),
                          *(["--out", str(tmp_path / "run")] if command == "train" else []))
        assert refused.code == 2 and len(refused.err_lines) == 1, refused.err
        assert "in the file" in refused.err
    assert not (tmp_path / "run" / "result.json").exists()
