"""Per-tenant models.

A tenant is an ACL user (``tenant-mode user``) or a key prefix (``tenant-mode prefix``: the
key up to its first ``:``). A tenant with at least ``min_events`` collected events gets its
own model, fine-tuned from the global champion's weights on that tenant's events only, and
registered under its own MLflow name (``models.registry.registered_name``); others are served
by the global model. Isolation is by construction: the training job is given the tenant's
id and keeps only rows whose collector ``tenant`` column equals it (``models.retrain``), and
a tenant's registered name is its own, so no alias of one tenant can point at another's
model.

The collector's ``tenant`` column is a 16-bit id; ``TenantDirectory`` maps names to ids
stably for the life of the server (and back, for reporting). Id 0 is "no tenant": its events
train only the global model.

Serving: ``MLOpsLoop.ranker_for_tenant(id)`` is the tenant's own champion (None: the global
model). Where the request's tenant comes from: ``MLOpsLoop.tenant_id(user, key)``, which the
access hook must call for each event (see docs/mlops.md, "Tenants", for the wiring status).
"""
from __future__ import annotations

import threading

import numpy as np


def tenant_name(mode: str, user: str | None, key: bytes) -> str:
    """The tenant a request belongs to under ``tenant-mode``."""
    if mode == "prefix":
        head, sep, _ = key.partition(b":")
        return head.decode("utf-8", "replace") if sep else ""
    return user or "default"


class TenantDirectory:
    def __init__(self, limit: int = 65535) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = [""]  # id 0: no tenant / the global model
        self.limit = limit
        self._lock = threading.Lock()

    def id_of(self, name: str) -> int:
        if not name:
            return 0
        found = self.ids.get(name)
        if found is not None:
            return found
        with self._lock:
            if name not in self.ids and len(self.names) <= self.limit:
                self.ids[name] = len(self.names)
                self.names.append(name)
            return self.ids.get(name, 0)

    def name_of(self, tenant_id: int) -> str:
        return self.names[tenant_id] if 0 <= tenant_id < len(self.names) else ""


def tenants_ready(events: dict[str, np.ndarray], min_events: int) -> list[int]:
    """Tenant ids (not 0) with at least ``min_events`` events: those worth their own model."""
    ids, counts = np.unique(events.get("tenant", np.zeros(0, np.uint16)), return_counts=True)
    return [int(t) for t, c in zip(ids, counts) if t != 0 and c >= min_events]
