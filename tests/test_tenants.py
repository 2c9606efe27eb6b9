"""Per-tenant models: who a request's tenant is, which tenants get a model, and isolation --
a tenant's model is trained on that tenant's events only (real training, real ONNX, real
MLflow registry)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from models.collector import COLUMNS
from models.keycodes import key_codes
from models.ranker import OnnxRanker
from models.retrain import tenant_events, train
from models.tenants import TenantDirectory, tenant_name, tenants_ready

pytest.importorskip("skl2onnx")

ALICE, BOB = 1, 2
N = 800  # events per tenant: enough for a model, small enough for a 2-core test machine


def segment(path: str, keys: list[bytes], tenants: list[int], start_us: int = 1_000_000) -> str:
    """One collector NPZ segment, as the exporter writes it."""
    n = len(keys)
    key_hash, prefix_hash, suffix = key_codes(keys)
    columns = {name: np.zeros(n, dtype=dtype) for name, dtype in COLUMNS.items()}
    columns.update(key_hash=key_hash, prefix_hash=prefix_hash, suffix=suffix,
                   ts=start_us + np.arange(n, dtype=np.int64) * 100, tenant=np.asarray(tenants, np.uint16))
    os.makedirs(path, exist_ok=True)
    np.savez(os.path.join(path, f"access-{start_us}-1-000001.npz"), **columns)
    return path


def interleave(alice: list[bytes], bob: list[bytes]) -> tuple[list[bytes], list[int]]:
    keys, owners = [], []
    for i in range(max(len(alice), len(bob))):
        for mine, owner in ((alice, ALICE), (bob, BOB)):
            if i < len(mine):
                keys.append(mine[i])
                owners.append(owner)
    return keys, owners


def alice_scans(n: int = N) -> list[bytes]:
    return [b"a:item:%d" % i for i in range(n)]


def bob_random(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [b"b:hot:%d" % i for i in rng.integers(40, size=n)]


def test_tenant_is_the_acl_user_or_the_key_prefix():
    assert tenant_name("user", "alice", b"b:item:1") == "alice"
    assert tenant_name("user", None, b"x") == "default"
    assert tenant_name("prefix", "alice", b"b:item:1") == "b"
    assert tenant_name("prefix", "alice", b"noprefix") == ""  # no tenant: the global model
    directory = TenantDirectory()
    ids = [directory.id_of(name) for name in ("alice", "bob", "alice", "")]
    assert ids == [1, 2, 1, 0] and directory.name_of(2) == "bob"


def test_only_tenants_with_enough_events_get_a_model():
    events = {"tenant": np.asarray([0] * 50 + [ALICE] * 30 + [BOB] * 10, dtype=np.uint16)}
    assert tenants_ready(events, 20) == [ALICE]  # never tenant 0, never one below the minimum
    assert tenants_ready(events, 5) == [ALICE, BOB]


def test_tenant_events_keep_only_that_tenant():
    keys, owners = interleave(alice_scans(100), bob_random(100, 1))
    events = {"tenant": np.asarray(owners, np.uint16), "key_hash": key_codes(keys)[0]}
    mine = tenant_events(events, ALICE)
    assert set(mine["tenant"].tolist()) == {ALICE} and len(mine["key_hash"]) == 100
    assert np.array_equal(mine["key_hash"], key_codes(alice_scans(100))[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Alice's model trained twice: next to Bob's random reads, and next to other data of Bob's."""
    base = tmp_path_factory.mktemp("tenants")
    out = {}
    for label, seed in (("with-bob-1", 1), ("with-bob-2", 2)):
        bob = bob_random(N, seed) if seed == 1 else [b"b:item:%d" % i for i in range(0, 2 * N, 2)]
        keys, owners = interleave(alice_scans(), bob)
        segments = segment(str(base / label / "segments"), keys, owners)
        out[label] = (segments, train([segments], str(base / label / "alice"), tenant=ALICE))
    return base, out


def test_a_tenants_training_rows_come_only_from_that_tenant(trained):
    base, runs = trained
    for segments, metrics in runs.values():
        assert metrics["row_tenants"] == [ALICE]
        assert metrics["events"] == N  # Alice's events, none of Bob's
    # the property itself: whatever Bob does, Alice's model is the same model
    one = (base / "with-bob-1" / "alice" / "model.onnx").read_bytes()
    two = (base / "with-bob-2" / "alice" / "model.onnx").read_bytes()
    assert one == two
    rng = np.random.default_rng(0)
    probe = rng.random((500, 9)).astype(np.float32) * 8
    a1 = OnnxRanker(str(base / "with-bob-1" / "alice")).score(probe)
    a2 = OnnxRanker(str(base / "with-bob-2" / "alice")).score(probe)
    assert np.array_equal(a1, a2)


def test_global_model_sees_every_tenant_and_differs(trained):
    base, runs = trained
    segments, _ = runs["with-bob-1"]
    metrics = train([segments], str(base / "global"))
    assert metrics["row_tenants"] == [ALICE, BOB] and metrics["events"] == 2 * N
    assert (base / "global" / "model.onnx").read_bytes() != \
        (base / "with-bob-1" / "alice" / "model.onnx").read_bytes()


def test_fine_tuning_starts_from_the_global_model_and_keeps_isolation(trained):
    import joblib

    base, runs = trained
    segments, _ = runs["with-bob-1"]
    train([segments], str(base / "global-ft"))
    metrics = train([segments], str(base / "alice-ft"), tenant=ALICE, base_model=str(base / "global-ft"))
    assert metrics["row_tenants"] == [ALICE] and metrics["base_model"] == str(base / "global-ft")
    tuned = joblib.load(base / "alice-ft" / "model.pkl")
    general = joblib.load(base / "global-ft" / "model.pkl")
    assert tuned.n_estimators == general.n_estimators + 20
    # the global model's trees are kept as they were; only the added ones saw Alice's data
    first = tuned.estimators_[0, 0].tree_
    assert np.array_equal(first.threshold, general.estimators_[0, 0].tree_.threshold)
    with open(base / "alice-ft" / "metrics.json", encoding="utf-8") as handle:
        assert json.load(handle)["row_tenants"] == [ALICE]


def test_tenant_model_is_registered_under_its_own_name(trained, tmp_path):
    pytest.importorskip("mlflow")
    from models.registry import CHAMPION, ModelRegistry

    base, _ = trained
    registry = ModelRegistry(str(tmp_path / "registry"))
    version = registry.register(str(base / "with-bob-1" / "alice"), tenant="alice", alias=None).version
    registry.promote(version, "alice")
    assert registry.alias_version(CHAMPION, "alice") == version
    assert registry.alias_version(CHAMPION) is None and registry.alias_version(CHAMPION, "bob") is None
    assert "model.pkl" in os.listdir(registry.fetch(version, "alice"))  # what fine-tuning needs


# -- serving: the access hook records each access's tenant, the prefetcher uses its model ---------

def _tenant_of(merged: dict[str, np.ndarray], keys: list[bytes]) -> set[int]:
    """The tenant ids the collector recorded for accesses of ``keys``."""
    mine = np.isin(merged["key_hash"], key_codes(keys)[0])
    assert mine.any(), "no recorded access of these keys"
    return set(merged["tenant"][mine].tolist())


def test_live_server_records_the_acl_user_or_key_prefix_as_tenant(tmp_path):
    import redis
    from servers import predis_process

    from models.collector import load_segments

    with predis_process("--collector-sampling", "1", "--collector-export-dir", str(tmp_path)) as server:
        admin = redis.Redis(port=server.port)
        for user in ("alice", "bob"):
            admin.acl_setuser(user, enabled=True, passwords=[f"+{user}-pw"], commands=["+@all"], keys=["*"])
        clients = {user: redis.Redis(port=server.port, username=user, password=f"{user}-pw")
                   for user in ("alice", "bob")}
        # tenant-mode user (the default): the same keys, told apart by who reads them
        shared = [b"shared:%d" % i for i in range(5)]
        alice_keys = [b"a:item:%d" % i for i in range(20)]
        bob_keys = [b"b:item:%d" % i for i in range(20)]
        for key in alice_keys:
            clients["alice"].get(key)
        clients["alice"].mget(shared)
        for key in bob_keys:
            clients["bob"].get(key)
        # tenant-mode prefix: one user, told apart by the key up to its first ':'
        admin.config_set("tenant-mode", "prefix")
        left = [b"left:%d" % i for i in range(20)]
        right = [b"right:%d" % i for i in range(20)]
        for a, b in zip(left, right):
            admin.get(a)
            admin.get(b)
        admin.mget([b"left:x", b"right:x", b"noprefix"])
        assert admin.info("prediction")["collector_events"] == 20 + 5 + 20 + 40 + 3
    merged = load_segments([str(tmp_path)])  # the exporter flushes at shutdown
    assert len(merged["key_hash"]) == 88
    alice, bob = _tenant_of(merged, alice_keys), _tenant_of(merged, bob_keys)
    assert len(alice) == 1 and len(bob) == 1 and alice != bob and 0 not in alice | bob
    assert _tenant_of(merged, shared) == alice  # MGET: each key is the reading user's
    by_prefix_left, by_prefix_right = _tenant_of(merged, left + [b"left:x"]), _tenant_of(merged, right + [b"right:x"])
    assert len(by_prefix_left) == 1 and len(by_prefix_right) == 1 and by_prefix_left != by_prefix_right
    assert not (by_prefix_left | by_prefix_right) & (alice | bob | {0})  # no longer the user's id
    assert _tenant_of(merged, [b"noprefix"]) == {0}  # no prefix: no tenant, the global model


class _ConstantRanker:
    def __init__(self, value: float) -> None:
        self.value = value
        self.version = f"const-{value}"

    def score(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), self.value, dtype=np.float32)


def test_prefetcher_scores_a_tenants_candidates_with_its_own_model():
    import asyncio
    from types import SimpleNamespace

    from models.prefetch import Prefetcher
    from models.ranker import RankerService

    loop = asyncio.new_event_loop()
    mlops = SimpleNamespace(abtest=None, watch=None, tenant_rankers={ALICE: _ConstantRanker(0.875)})
    mlops.ranker_for_tenant = mlops.tenant_rankers.get
    server = SimpleNamespace(loop=loop, mlops=mlops, keyspace=SimpleNamespace(maxmemory=0, dbs=[]))
    service = RankerService()
    service.active = _ConstantRanker(0.125)  # the global model
    prefetcher = Prefetcher(server, None, service)
    scored: dict[bytes, float] = {}
    prefetcher._act = lambda keys, dbs, scores, *rest: scored.update(zip(keys, scores.tolist()))
    # two sequential scans, one per tenant: each continuation is a candidate of its scan's tenant
    events = []
    for i in range(12):
        events.append((b"a:item:%d" % i, 0, 1, 0, 0, ALICE))
        events.append((b"b:item:%d" % i, 0, 1, 0, 0, BOB))
    try:
        for start in range(0, len(events), 4):
            prefetcher.tokens = 1.0  # this test is about who scores, not the CPU budget
            prefetcher.observe(events[start:start + 4])
            loop.run_until_complete(asyncio.sleep(0.05))  # the ranker thread answers on the loop
    finally:
        service.close()
        loop.close()
    alice = {s for k, s in scored.items() if k.startswith(b"a:")}
    bob = {s for k, s in scored.items() if k.startswith(b"b:")}
    assert alice == {0.875} and bob == {0.125}  # Bob has no model of his own: the global one
