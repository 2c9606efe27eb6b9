"""predis-sim through the real libcachesim package: sane orderings and honest reporting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workloads.cli import sim_main
from workloads.generators import make_generator
from workloads.sim import DEFAULT_POLICIES, SimConfig, resolve_policy, simulate
from workloads.trace import write_trace

pytest.importorskip("libcachesim")


@pytest.fixture(scope="module")
def web_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "web.csv"
    write_trace(make_generator("web", objects=3000, seed=2).chunks(30_000), path, "csv")
    return path


def _hits(result: dict, policy: str) -> list[float]:
    row = next(r for r in result["policies"] if r["policy"] == policy)
    assert row["status"] == "ok", row
    return [row["results"][s]["hit_ratio"] for s in result["sizes"]]


def test_orderings_with_unit_sizes(web_trace: Path) -> None:
    sizes = ["0.01", "0.05", "0.1", "0.2"]
    result = simulate(SimConfig(trace=str(web_trace), sizes=sizes, ignore_obj_size=True,
                                policies=["LRU", "LFU", "ARC", "S3FIFO", "SIEVE", "Belady"]))
    assert result["converted_to_oracleGeneral"]
    assert result["n_requests"] == 30_000
    lru, belady = _hits(result, "LRU"), _hits(result, "Belady")
    # Belady is optimal with unit sizes: no policy beats it at any size.
    for row in result["policies"]:
        for i, s in enumerate(sizes):
            assert row["results"][s]["hit_ratio"] <= belady[i] + 1e-12, (row["policy"], s)
    assert all(b > a for a, b in zip(lru, belady))
    # LRU is a stack algorithm: more cache never hurts.
    assert lru == sorted(lru) and lru[0] < lru[-1]
    # Unit sizes: 1% of the footprint is 1% of the distinct objects.
    assert result["policies"][0]["results"]["0.01"]["cache_bytes"] == int(0.01 * result["n_objects"])


def test_byte_sizes_and_default_policy_set(web_trace: Path) -> None:
    result = simulate(SimConfig(trace=str(web_trace), sizes=["0.05", "512KiB"], warmup=0.1))
    names = [r["policy"] for r in result["policies"]]
    assert names == list(DEFAULT_POLICIES)
    row = result["policies"][0]
    assert row["results"]["512KiB"]["cache_bytes"] == 512 * 1024
    assert row["results"]["0.05"]["cache_bytes"] == int(0.05 * result["footprint_bytes"])
    assert result["warmup_requests"] == 3000
    for r in result["policies"]:
        assert r["status"] in ("ok", "error") or r["status"].startswith("missing")
        for v in r["results"].values():
            if "hit_ratio" in v:
                assert 0.0 <= v["hit_ratio"] <= 1.0 and 0.0 <= v["byte_hit_ratio"] <= 1.0
    belady, lru = _hits(result, "Belady"), _hits(result, "LRU")
    assert all(b >= a for a, b in zip(lru, belady))


def test_missing_policy_is_reported_not_faked(web_trace: Path) -> None:
    result = simulate(SimConfig(trace=str(web_trace), sizes=["0.1"], policies=["LRU", "NoSuchPolicy"]))
    row = result["policies"][1]
    assert row["status"].startswith("missing") and row["results"] == {}


def test_resolve_policy_aliases() -> None:
    assert resolve_policy("s3-fifo") == ("S3-FIFO", "S3FIFO")
    assert resolve_policy("w_tinylfu") == ("W-TinyLFU", "WTinyLFU")
    assert resolve_policy("sieve") == ("SIEVE", "Sieve")
    assert resolve_policy("BeladySize") == ("BeladySize", "BeladySize")


def test_oracle_general_input_used_directly(tmp_path: Path) -> None:
    path = tmp_path / "t.oracleGeneral"
    keys = np.tile(np.arange(10, dtype=np.uint64), 50)
    from workloads.trace import make_chunk
    write_trace([make_chunk(np.arange(500.0), 0, keys, 1)], path, "oracleGeneral")
    result = simulate(SimConfig(trace=str(path), sizes=["10B", "5B"], policies=["LRU", "Belady"]))
    assert not result["converted_to_oracleGeneral"]
    lru, belady = _hits(result, "LRU"), _hits(result, "Belady")
    assert lru[0] == pytest.approx(0.98)  # everything fits: only 10 cold misses
    assert lru[1] == 0.0  # a loop over 10 keys in an LRU of 5 never hits
    assert belady[1] > 0.4


def test_cli_prints_table_and_writes_json(web_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.json"
    md = tmp_path / "sim.md"
    rc = sim_main([str(web_trace), "--sizes", "0.05,0.1", "--policies", "LRU,SIEVE,Belady", "--json", str(out),
                   "--markdown", str(md)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| LRU |" in text and "| Belady |" in text and "0.05" in text
    data = json.loads(out.read_text())
    assert data["kind"] == "sim" and data["provenance"]["command"].startswith("predis-sim")
    assert md.read_text().count("\n| ") == 4  # header + three policies
