"""Evaluation agrees with regrasp.grasp.metrics image by image; registered models load and agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from regrasp.grasp.maps import encode
from regrasp.grasp.metrics import is_success
from regrasp.learn import nets
from regrasp.learn.training.config import DecodeConfig, TrainConfig
from regrasp.learn.training.data import CachedGraspDataset
from regrasp.learn.training.evaluate import evaluate, predict_top_k
from regrasp.learn.training.loop import metadata_for
from regrasp.learn.training.registry import load_registered, read_metadata, register_model
from regrasp.platform.errors import NotFound
from regrasp.platform.store import keys
from regrasp.platform.store.objects import open_store
from tests.harness.training import synthetic_cache

SIZE = 64
DECODE = DecodeConfig(min_distance=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    url, index, _ = synthetic_cache(
        tmp_path_factory.mktemp("evaluate"), images=10, objects=5, seed=4, size=SIZE, image_size=128
    )
    return CachedGraspDataset(open_store(url), index)


class _Oracle(torch.nn.Module):
    """Outputs the target maps of given grasps, with some images' angles spoilt."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps = maps
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor):
        return tuple(self.maps[:, i : i + 1] for i in range(4))


def test_evaluation_agrees_with_is_success_image_by_image(dataset) -> None:
    torch.manual_seed(0)
    model = nets.build("ggcnn", 1, dropout=0.0)
    result = evaluate(model, dataset, decode_config=DECODE, batch_size=3)
    assert len(result.success) == len(dataset) == len(result.image_ids)
    _check_against_metrics(model, dataset, result)


def test_target_maps_decode_to_successes(dataset) -> None:
    # The maps painted from an image's own labels decode to grasps that mostly match them
    # (not always: overlapping rectangles repaint each other, and jaw = opening / 2).
    targets = [encode(dataset.sample(i)[1], size=SIZE).as_array() for i in range(len(dataset))]
    model = _Oracle(torch.from_numpy(np.stack(targets)))
    result = evaluate(model, dataset, decode_config=DECODE, batch_size=len(dataset))
    assert result.accuracy >= 0.7
    _check_against_metrics(model, dataset, result)


def _check_against_metrics(model, dataset, result) -> None:
    model.eval()
    for i in range(len(dataset)):
        x, _, box = dataset.sample(i)
        if isinstance(model, _Oracle):
            maps = model.maps
            model.maps = maps[i : i + 1]
        ((grasps, scores),) = predict_top_k(model, x[None], letterboxes=[box], decode_config=DECODE)
        if isinstance(model, _Oracle):
            model.maps = maps
        expected = is_success(grasps, dataset.ground_truth(i))
        assert bool(result.success[i]) == expected, i
        assert bool(result.predicted[i]) == (len(grasps) > 0)
        if len(grasps):
            np.testing.assert_allclose(result.top1[i], grasps[0])
            assert np.all(np.diff(scores) <= 0)


def test_registered_model_loads_and_predicts_the_same(dataset, tmp_path) -> None:
    store = open_store(f"file://{tmp_path / 'objects'}")
    config = TrainConfig(architecture="ggcnn2", input_size=SIZE, dropout=0.1, decode=DECODE)
    torch.manual_seed(1)
    model = nets.build("ggcnn2", 1, dropout=0.1).eval()
    meta = metadata_for(
        config, dataset="syn", dataset_version=0, split=None, metrics={"val_accuracy": 0.5}
    )
    register_model(store, "m1", model=model, metadata=meta)
    assert store.exists(keys.weights_key("m1")) and store.exists(keys.metadata_key("m1"))
    loaded, stored = load_registered(store, "m1", device="cpu")
    assert not loaded.training
    assert stored["architecture"] == "ggcnn2" and stored["input_size"] == SIZE
    assert stored["weights_key"] == keys.weights_key("m1")
    assert stored["torch_version"] == torch.__version__
    assert read_metadata(store, "m1") == stored
    assert (stored["name"], stored["model_id"]) == ("m1", None)  # no session: no row
    x = torch.from_numpy(np.stack([dataset.sample(i)[0] for i in range(3)]))
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(NotFound):
        load_registered(store, "absent", device="cpu")


def test_metadata_of_the_first_format_reads_with_an_int_model_id(tmp_path) -> None:
    # Format 1 kept the store name under "model_id" and the row id under "db_model_id".
    store = open_store(f"file://{tmp_path / 'objects'}")
    old = {"format": 1, "model_id": "7", "db_model_id": 7, "architecture": "ggcnn"}
    store.put_bytes(keys.metadata_key("7"), json.dumps(old).encode())
    meta = read_metadata(store, "7")
    assert (meta["name"], meta["model_id"]) == ("7", 7) and "db_model_id" not in meta
    unregistered = {"format": 1, "model_id": "bench", "architecture": "ggcnn"}
    store.put_bytes(keys.metadata_key("bench"), json.dumps(unregistered).encode())
    assert (read_metadata(store, "bench")["name"], read_metadata(store, "bench")["model_id"]) == (
        "bench",
        None,
    )
