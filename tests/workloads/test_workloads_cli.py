"""predis-workload's interface: every KIND, every format, documented parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workloads.cli import workload_main
from workloads.generators import GENERATORS
from workloads.generators.base import param_fields
from workloads.readers import read_trace
from workloads.trace import concat


@pytest.mark.parametrize("kind", list(GENERATORS))
@pytest.mark.parametrize("fmt", ["txt", "csv", "oracleGeneral"])
def test_every_kind_every_format(kind: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"trace.{fmt}"
    assert workload_main([kind, "--requests", "2000", "--seed", "3", "--out", str(out), "--format", fmt]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["requests"] == 2000 and info["format"] == fmt
    back = concat(read_trace(out, fmt))
    assert len(back) == 2000
    if fmt == "oracleGeneral":
        assert out.stat().st_size == 24 * 2000


def test_same_seed_same_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for path, seed in ((a, "5"), (b, "5"), (c, "6")):
        assert workload_main(["web", "--requests", "1000", "--seed", seed, "--out", str(path)]) == 0
    capsys.readouterr()
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_help_documents_every_parameter(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        workload_main([kind, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for f in param_fields(GENERATORS[kind].Params):
        assert f"--{f.name.replace('_', '-')}" in text
        assert f.metadata.get("help"), f"{kind}.{f.name} has no help text"


def test_parameters_reach_the_generator_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.csv"
    assert workload_main(["web", "--requests", "20000", "--out", str(out), "--objects", "500",
                          "--write-fraction", "0.5", "--stats"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"]["objects"] == 500
    assert abs(info["stats"]["write_fraction"] - 0.5) < 0.03
    assert info["stats"]["distinct_keys"] <= 500 + 5
    trace = concat(read_trace(out))
    assert abs(float(np.mean(trace["op"] == 1)) - 0.5) < 0.03


def test_boolean_and_invalid_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d.txt"
    assert workload_main(["database", "--requests", "100", "--out", str(out), "--index-reads", "false"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["index_reads"] is False
    assert workload_main(["ml-training", "--requests", "10", "--out", str(out), "--shuffle", "bogus"]) == 2
    with pytest.raises(SystemExit):
        workload_main(["no-such-kind", "--requests", "10", "--out", str(out)])
