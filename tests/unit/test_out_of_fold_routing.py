"""Out-of-fold routing: every image is predicted by the one model that never trained on it."""

from __future__ import annotations

import numpy as np

from regrasp.refine.rounds.config import RoundConfig
from regrasp.refine.rounds.run import TrainingUnit
from regrasp.workflows.rounds.machine import unit_images, unit_train_config


def test_each_image_is_predicted_by_the_model_trained_without_it() -> None:
    images = np.arange(100, 400, 3, dtype=np.int64)
    config = RoundConfig(folds=3, fold_seed=5, train={"exclude_image_ids": [1, 2]})
    units = [TrainingUnit(fold=f, model_id=10 + f) for f in range(3)]

    predicted_by: dict[int, int] = {}
    for unit in units:
        excluded = set(unit_train_config(config, images, unit)["exclude_image_ids"])
        assert {1, 2} <= excluded  # the config's own exclusions stay
        trained_on = set(images.tolist()) - excluded
        for image in unit_images(images, config, unit).tolist():
            assert image not in trained_on  # never scored by a model that saw it
            assert image not in predicted_by  # and by exactly one model
            predicted_by[image] = unit.model_id
    assert sorted(predicted_by) == images.tolist()
    # Every model trains on the other folds: all it does not predict.
    for unit in units:
        excluded = set(unit_train_config(config, images, unit)["exclude_image_ids"])
        own = set(unit_images(images, config, unit).tolist())
        assert excluded == own | {1, 2}


def test_an_in_sample_round_predicts_every_image_with_its_one_model() -> None:
    images = np.arange(10, dtype=np.int64)
    config = RoundConfig()
    unit = TrainingUnit(fold=None, model_id=3)
    assert unit_images(images, config, unit).tolist() == images.tolist()
    assert "exclude_image_ids" not in unit_train_config(config, images, unit)
