"""The inference replica's model cache, production follower and batch bookkeeping, alone."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from regrasp.platform.errors import InvalidInput, NotFound
from regrasp.serving.batching import BatchHistory, InFlight, batch_size
from regrasp.serving.models import ModelCache, ProductionFollower


@dataclass(frozen=True)
class Fake:
    name: str


def _cache(capacity: int, loads: list[str]) -> ModelCache[Fake]:
    def load(name: str) -> Fake:
        if name.startswith("missing"):
            raise NotFound(f"model {name!r} is not registered")
        loads.append(name)
        return Fake(name)

    return ModelCache(load, capacity=capacity)


def test_cache_is_lru_bounded_and_never_evicts_the_pinned_model():
    loads: list[str] = []
    cache = _cache(2, loads)
    cache.get("prod")
    cache.pin("prod")
    for name in ("a", "b", "a", "c"):
        cache.get(name)
    assert cache.names() == ["prod", "c"] and loads == ["prod", "a", "b", "a", "c"]
    cache.get("prod")
    assert loads.count("prod") == 1  # held, not reloaded
    with pytest.raises(NotFound):
        cache.get("missing-1")
    assert "missing-1" not in cache.names()
    with pytest.raises(InvalidInput):
        ModelCache(lambda n: Fake(n), capacity=0)


def test_concurrent_gets_of_one_model_load_it_once():
    loads: list[str] = []
    gate = threading.Event()

    def slow(name: str) -> Fake:
        gate.wait(5)
        loads.append(name)
        return Fake(name)

    cache: ModelCache[Fake] = ModelCache(slow, capacity=3)
    got: list[Fake] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("m"))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert loads == ["m"] and len(got) == 8 and len({id(g) for g in got}) == 1


def test_follower_switches_only_after_the_new_model_loaded():
    loads: list[str] = []
    cache = _cache(3, loads)
    alias: list[str | None] = [None]
    follower = ProductionFollower(cache, lambda: alias[0])
    follower.sync()
    assert follower.current is None and follower.ready  # nothing promoted: nothing to wait for
    alias[0] = "v1"
    follower.sync()
    assert follower.current == Fake("v1") and follower.ready
    alias[0] = "missing-v2"  # a promoted model that cannot load: keep serving v1, not ready
    follower.sync()
    assert follower.current == Fake("v1") and not follower.ready
    assert "cannot be served" in follower.error
    alias[0] = "v3"
    follower.sync()
    assert follower.current == Fake("v3") and follower.ready and follower.error is None
    for name in ("x", "y", "z"):
        cache.get(name)
    assert "v3" in cache.names()  # pinned
    pinned = ProductionFollower(cache, lambda: "v3", pinned="x")
    pinned.sync()
    assert pinned.current == Fake("x")


def test_batch_history_and_in_flight_export_prometheus_text():
    history = BatchHistory()
    for size in (1, 1, 2, 5):
        history.record(size)
    assert history.histogram() == {1: 2, 2: 1, 5: 1}
    text = history.prometheus()
    assert 'regrasp_inference_batch_size_bucket{le="1.0"} 2' in text
    assert 'regrasp_inference_batch_size_bucket{le="4.0"} 3' in text
    assert 'regrasp_inference_batch_size_bucket{le="+Inf"} 4' in text
    assert "regrasp_inference_batch_size_sum 9" in text
    load = InFlight()
    with load("predict"), load("predict"):
        assert load.counts()["predict"] == 2
        assert 'regrasp_inference_in_flight{kind="predict"} 2' in load.prometheus()
    assert load.counts() == {"predict": 0, "predict_stored": 0}


def test_batch_size_defaults_small_on_cpu_and_adaptive_on_cuda():
    assert batch_size(None, "cpu") == 2
    assert batch_size(None, "cuda:1") == 16
    assert batch_size(1, "cuda") == 1 and batch_size(8, "cpu") == 8


def test_replica_urls_expand_a_headless_service_to_every_pod(monkeypatch):
    import socket

    from regrasp.clients.inference import replica_urls

    pods = {"inference-batch": ["10.0.0.7", "10.0.0.5"], "single": ["10.0.0.9"]}

    def lookup(host, port, *args, **kwargs):  # the cluster DNS, as a headless Service answers
        if host not in pods:
            raise socket.gaierror(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in pods[host]]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    assert replica_urls(
        [
            "http://inference-batch:3000",
            "http://single:3000",
            "http://127.0.0.1:3001",
            "http://localhost:3002",
            "http://nowhere:3000",
            "http://127.0.0.1:3001",
        ]
    ) == [
        "http://10.0.0.5:3000",
        "http://10.0.0.7:3000",
        "http://single:3000",
        "http://127.0.0.1:3001",
        "http://localhost:3002",
        "http://nowhere:3000",
    ]
