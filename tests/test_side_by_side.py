"""bench/side_by_side.py: the core placement and the round summary (the bench itself runs on
the device machine; a short real run checks that two servers are measured at once)."""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))

import side_by_side


def test_cpu_list_syntax():
    assert side_by_side.parse_cpu_list("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    assert side_by_side.parse_cpu_list("5") == {5}


def test_servers_get_whole_physical_cores_and_clients_the_rest():
    pairs = {c: {c, c ^ 1} for c in range(16)}  # hyperthread siblings 2k, 2k+1
    cores = side_by_side.pick_cores(list(range(16)), siblings=lambda c: pairs[c])
    assert [c["server"] for c in cores] == [{2}, {4}]
    assert cores[0]["client"] == {6, 7, 8, 9} and cores[1]["client"] == {10, 11, 12, 13}
    used = [cpu for c in cores for part in c.values() for cpu in part]
    assert len(used) == len(set(used)) and not {0, 1, 3, 5} & set(used)  # siblings of servers idle


def test_too_few_cpus_means_unpinned():
    assert side_by_side.pick_cores([0, 1]) is None
    assert side_by_side.pick_cores(list(range(8)), siblings=lambda c: {c}) is None  # 2 servers + 2x4 clients need 10


def test_summary_ratios_are_b_over_a_per_round():
    names = list(side_by_side.TESTS)
    rounds = []
    for a, b in ((100.0, 110.0), (200.0, 180.0), (100.0, 100.0)):
        row = {}
        for n in names:
            row.update({f"a_{n}_ops_per_s": a, f"b_{n}_ops_per_s": b, f"a_{n}_cpu_us": 2.0, f"b_{n}_cpu_us": 1.0})
        rounds.append(row)
    summary = side_by_side.summarise(rounds)
    ops = summary["set_P16_ops_per_s"]
    assert ops["ratios"] == [1.1, 0.9, 1.0]
    assert ops["median"] == 1.0 and ops["rounds_at_least_1"] == 2
    low, high = ops["interval_95"]
    assert 0.9 <= low <= ops["geometric_mean"] <= high <= 1.1
    assert summary["get_P16_cpu_us"]["geometric_mean"] == pytest.approx(0.5)


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark not installed")
def test_a_short_real_run_measures_both_servers(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "side_by_side.py")
    out = subprocess.run([sys.executable, script, "--pair", "cpu,cpu", "--rounds", "1", "--window", "0.3",
                          "--pin", "no", "--out", str(tmp_path), "--name", "aa",
                          "--b-args", "--gpu-sync-interval 5"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "aa.md").read_text()
    assert "| set_P16_ops_per_s | 1 |" in text and "| set_new_P16_ops_per_s | 1 |" in text
    assert "predis-cpu: main" in text and "predis-cpu --gpu-sync-interval 5: main" in text


def test_shared_layout_puts_both_servers_on_one_core():
    cores = [{"server": {2}, "client": {4, 5}}, {"server": {3}, "client": {6, 7}}]
    shared = side_by_side.placements("shared", cores, swap=True)
    assert shared["a"]["server"] == shared["b"]["server"] == {2}
    assert shared["a"]["client"] != shared["b"]["client"]
    apart = side_by_side.placements("apart", cores, swap=True)
    assert apart["a"] == cores[1] and apart["b"] == cores[0]
    assert side_by_side.placements("shared", None, swap=False) == {"a": None, "b": None}


def test_a_server_runs_from_another_revisions_tree():
    """--a-rev: the revision's tree comes from git archive, and its server runs from there
    (its working directory and imports), not from the working tree."""
    import redis
    from servers import predis_process
    from trees import extract_revision

    tree = extract_revision("HEAD", build=False)
    try:
        assert os.path.exists(os.path.join(tree, "predis_server", "server.py"))
        with predis_process("--save", "", tree=tree) as server:
            assert redis.Redis(port=server.port).ping()
            assert os.path.realpath(f"/proc/{server.process.pid}/cwd") == os.path.realpath(tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
