"""Statistical quality of drift detection: false alarms on stationary traffic, delay after a shift.

Streams come from the workload generators (``workloads.generators``, the same ones behind
``predis-workload web/gaming``); keys are formatted as the replay client sends them
(``key_bytes``) and go through the collector's key codes, the serving candidate generator
and the one feature function (``models.drift.features_from_events``), exactly as the
server's drift monitor sees them. Each check compares one window of ``--window`` accesses
with the reference window (the model's training window), as the monitor does.

* stationary: after the reference window, ``--checks`` further windows of the same workload
  (several seeds); the false-alarm rate is alarms / checks (target <= 1%), warnings reported.
* shift: reference on workload A, then windows of workload B; the detection delay is the
  number of checks after the switch until the first alarm (target: 1 or 2).

    .venv/bin/python bench/drift_quality.py --out bench/results/drift
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.drift import DriftChecker, DriftThresholds, ReferenceDistribution, features_from_events  # noqa: E402
from models.keycodes import key_codes  # noqa: E402
from workloads.generators import make_generator  # noqa: E402
from workloads.origin import key_bytes  # noqa: E402
from workloads.trace import OP_GET  # noqa: E402

PREFIX = b"obj:"
WORKLOAD_PARAMS = {"web": {"objects": 20_000}, "gaming": {}, "database": {}, "hft": {}}


def event_windows(kind: str, seed: int, window: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless windows of ``window`` GETs of one workload, as collector event columns."""
    gen = make_generator(kind, seed=seed, **WORKLOAD_PARAMS.get(kind, {}))
    buffered: list[np.ndarray] = []
    have = 0
    for chunk in gen.chunks(10**12, chunk_size=16384):
        keys = chunk["key"][chunk["op"] == OP_GET]
        buffered.append(keys)
        have += len(keys)
        while have >= window:
            allkeys = np.concatenate(buffered)
            part, rest = allkeys[:window], allkeys[window:]
            buffered, have = [rest], len(rest)
            key_hash, prefix_hash, suffix = key_codes([key_bytes(int(k), PREFIX) for k in part.tolist()])
            yield {"key_hash": key_hash, "prefix_hash": prefix_hash, "suffix": suffix}


def stationary(kind: str, seed: int, checks: int, window: int, thresholds: DriftThresholds) -> dict:
    windows = event_windows(kind, seed, window)
    next(windows)  # let the workload settle (sessions, hot sets) before the training window
    reference = ReferenceDistribution.from_features(features_from_events(next(windows)))
    checker = DriftChecker(reference, thresholds, seed=seed)
    levels = []
    max_psi = []
    for _ in range(checks):
        report = checker.check(features_from_events(next(windows)))
        levels.append(report.level)
        max_psi.append(report.max_psi)
    return {"workload": kind, "seed": seed, "checks": checks, "alarms": levels.count("alarm"),
            "warnings": levels.count("warn"), "insufficient": levels.count("insufficient"),
            "max_psi_p50": float(np.median(max_psi)), "max_psi_max": float(np.max(max_psi))}


def shift(before: str, after: str, seed: int, checks: int, window: int, thresholds: DriftThresholds) -> dict:
    windows_a = event_windows(before, seed, window)
    next(windows_a)
    reference = ReferenceDistribution.from_features(features_from_events(next(windows_a)))
    checker = DriftChecker(reference, thresholds, seed=seed)
    pre = checker.check(features_from_events(next(windows_a))).level  # one more window of A
    windows_b = event_windows(after, seed, window)
    levels, drifted = [], []
    for _ in range(checks):
        report = checker.check(features_from_events(next(windows_b)))
        levels.append(report.level)
        drifted.append(report.drifted)
    delay = next((i + 1 for i, lv in enumerate(levels) if lv == "alarm"), None)
    return {"before": before, "after": after, "seed": seed, "level_before_switch": pre,
            "levels_after_switch": levels, "detection_delay_checks": delay,
            "first_alarm_features": drifted[delay - 1] if delay else []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/drift")
    ap.add_argument("--window", type=int, default=8000, help="accesses per check window")
    ap.add_argument("--checks", type=int, default=100, help="stationary checks per workload and seed")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workloads", default="web,gaming,hft")
    ap.add_argument("--periodic", default="database",
                    help="workloads with phases longer than a window (database range scans): reported "
                         "apart, not counted as stationary")
    ap.add_argument("--shifts", default="web:gaming,gaming:web,web:hft,hft:gaming")
    args = ap.parse_args(argv)
    thresholds = DriftThresholds(min_samples=2000)
    started = time.time()
    results: dict = {"thresholds": thresholds.__dict__, "window_accesses": args.window,
                     "machine": f"{_cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, "
                                f"Python {platform.python_version()}",
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "command": " ".join(["python", "bench/drift_quality.py",
                                          *(argv if argv is not None else sys.argv[1:])]),
                     "stationary": [], "shift": [], "periodic": []}
    for kind in args.workloads.split(","):
        for seed in range(1, args.seeds + 1):
            row = stationary(kind, seed, args.checks, args.window, thresholds)
            results["stationary"].append(row)
            print(json.dumps(row), flush=True)
    for kind in filter(None, args.periodic.split(",")):
        row = stationary(kind, 1, max(5, args.checks // 5), args.window, thresholds)
        results["periodic"].append(row)
        print(json.dumps(row), flush=True)
    for pair in args.shifts.split(","):
        before, after = pair.split(":")
        for seed in range(1, args.seeds + 1):
            row = shift(before, after, seed, 3, args.window, thresholds)
            results["shift"].append(row)
            print(json.dumps(row), flush=True)
    total_checks = sum(r["checks"] for r in results["stationary"])
    total_alarms = sum(r["alarms"] for r in results["stationary"])
    delays = [r["detection_delay_checks"] for r in results["shift"]]
    results["summary"] = {
        "stationary_checks": total_checks, "false_alarms": total_alarms,
        "false_alarm_rate": total_alarms / max(1, total_checks),
        "warnings_rate": sum(r["warnings"] for r in results["stationary"]) / max(1, total_checks),
        "detection_delays": delays,
        "detected_within_two_checks": sum(1 for d in delays if d is not None and d <= 2) / max(1, len(delays)),
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(results["summary"]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "drift_quality.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    with open(os.path.join(args.out, "drift_quality.md"), "w") as handle:
        handle.write(_markdown(results))
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _markdown(results: dict) -> str:
    summary = results["summary"]
    delays = [d for d in summary["detection_delays"] if d is not None]
    lines = [
        "# Drift detection quality", "",
        f"- date: {results['date']}", f"- machine: {results['machine']}",
        f"- command: `{results['command']}`",
        f"- window: {results['window_accesses']} accesses a check; thresholds: {results['thresholds']}", "",
        "| measure | result | target |", "|---|---|---|",
        f"| false alarms on stationary workloads | {summary['false_alarms']} of "
        f"{summary['stationary_checks']} checks ({summary['false_alarm_rate']:.2%}) | <= 1% |",
        f"| warnings on stationary workloads | {summary['warnings_rate']:.2%} of checks | |",
        f"| pattern switches detected within two checks | {summary['detected_within_two_checks']:.0%} "
        f"({len(delays)} of {len(summary['detection_delays'])} detected; delays {summary['detection_delays']}) "
        "| all |",
        "", "Periodic workloads (phases longer than a window, reported apart):", "",
    ]
    for row in results["periodic"]:
        lines.append(f"- {row['workload']}: {row['alarms']} alarms in {row['checks']} checks")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
