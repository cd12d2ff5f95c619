"""Out-of-fold rounds: a fold's images never reach the model that predicts them.

`TrainConfig.exclude_image_ids` takes images out of the training part of the split (the
recorded split says so too), and a round with `folds=k` submits k train jobs to a real
trainer service (uvicorn on 127.0.0.1), each excluding exactly one fold; a trainer worker
runs them, and each registered model's training images are disjoint from its fold.
"""

from __future__ import annotations

import pytest

from regrasp.clients.trainer import TrainerClient
from regrasp.data import versions
from regrasp.data.ingest import import_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn.training.cache import build_cache, db_images
from regrasp.learn.training.config import TrainConfig
from regrasp.learn.training.loop import split_datasets
from regrasp.learn.training.splits import make_split
from regrasp.learn.worker import Worker
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
from regrasp.platform.store.db.tables import Model, RoundState
from regrasp.platform.store.objects import open_store
from regrasp.refine.rounds.config import RoundConfig
from regrasp.refine.rounds.run import load_run
from regrasp.workflows.rounds import machine
from services.trainer.app import create_app as create_trainer
from tests.harness.inprocess import serve

SERVICE_KEY = "oof-service-key-0123456789abcdef"
TRAIN = {
    "architecture": "ggcnn",
    "epochs": 1,
    "batch_size": 4,
    "input_size": 32,
    "num_workers": 0,
    "augment": {"enabled": False},
    "split": {"kind": "image", "val_fraction": 0.0, "test_fraction": 0.2},
}


@pytest.fixture
def world(database_url, file_store_url, tmp_path):
    generate_dataset(tmp_path / "synth", images=12, objects=4, size=64, workers=1, seed=3)
    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    store = open_store(file_store_url)
    with session_scope(engine) as s:
        dataset_id = import_jacquard(s, store, tmp_path / "synth", name="oof")
    yield engine, store, dataset_id, database_url, file_store_url, tmp_path
    engine.dispose()


def test_excluded_images_leave_only_the_training_part(world):
    engine, store, dataset_id, *_ = world
    with session_scope(engine) as s:
        sources = db_images(s, store, dataset_id=dataset_id, version=0)
    index = build_cache(store, sources, dataset="oof", version=0, channels="depth", size=32)
    ids = list(index.image_ids)
    split = make_split(ids, ids, kind="image", test_fraction=0.2, val_fraction=0.2)
    excluded = [int(i) for i in split.train[:3]] + [int(split.test[0])]
    config = TrainConfig(**TRAIN, exclude_image_ids=excluded)
    assert config.exclude_image_ids == tuple(sorted(excluded))

    train, val, test = split_datasets(config, store, index, split)
    assert set(train.image_ids) == set(split.train) - set(excluded)
    assert set(val.image_ids) == set(split.val) and set(test.image_ids) == set(split.test)


def test_out_of_fold_round_trains_each_model_without_its_fold(world):
    engine, store, dataset_id, database_url, store_url, tmp_path = world
    settings = Settings(
        database_url=database_url,
        object_store_url=store_url,
        data_dir=tmp_path / "data",
        service_api_key=SERVICE_KEY,
    )
    with serve(create_trainer(settings, engine=engine), "trainer") as url:
        bind = make_session_factory(engine)
        services = machine.Services(
            trainer_url=url, inference_urls=(), credential=SERVICE_KEY, poll_seconds=0.2
        )
        config = RoundConfig(train=TRAIN, folds=3, fold_seed=7)
        with session_scope(bind) as s:
            round_id = machine.create_round(s, dataset_id=dataset_id, version=0, config=config).id
            images = versions.images_at(s, dataset_id, 0)
        assert machine.advance(bind, round_id, services) == RoundState.training
        # One pass of the training step: submits the three jobs, sees them queued, stops.
        state = machine.advance(bind, round_id, services, should_stop=lambda: True)
        assert state == RoundState.training

        folds = machine.fold_of(images, folds=3, seed=7)
        with TrainerClient(url, credential=SERVICE_KEY) as trainer:
            submitted = trainer.list(kind="train").items
        assert len(submitted) == 3
        held_out = sorted(
            tuple(sorted(j.payload["config"]["exclude_image_ids"])) for j in submitted
        )
        assert held_out == sorted(tuple(sorted(images[folds == f].tolist())) for f in range(3))
        assert sorted(i for fold in held_out for i in fold) == sorted(images.tolist())

        worker = Worker(bind, store, worker_id="w-oof", poll_interval=0.1, device="cpu")
        assert worker.run(max_jobs=3) == 3
        assert machine.advance(bind, round_id, services) == RoundState.predicting

        with session_scope(bind) as s:
            rnd = machine._get(s, round_id)
            model_ids = [u.model_id for u in load_run(rnd).units]
            fold_of_unit = [u.fold for u in load_run(rnd).units]
            splits = {m: s.get(Model, m).split for m in model_ids}
        for model_id, fold in zip(model_ids, fold_of_unit, strict=True):
            fold_ids = set(images[folds == fold].tolist())
            trained = set(splits[model_id]["train"])
            assert trained and not trained & fold_ids
            # Everything outside the fold and the test part trained.
            outside = set(images.tolist()) - fold_ids - set(splits[model_id]["test"])
            assert trained == outside
