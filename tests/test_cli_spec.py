"""The spec commands through the real `nas` entry point: summary, validate, presets, schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHIPPED_PRESETS, CliRunner

from nas.families import FAMILIES
from nas.io import load_spec, preset_names, presets_dir

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
