"""`TrainConfig`: every option of a training run, with the defaults of "Jacquard V2".

The paper trains a MobileNetV2 GG-CNN-style network for 100 epochs, batch 32, Adam at
learning rate 5e-4 with dropout 0.05 before the heads; those are the defaults here. The
config is stored with the model (`regrasp.learn.training.registry`) and with every checkpoint,
so a run can be reproduced and resumed from what the store holds. Values are validated
on construction (pydantic); an unknown field is refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from regrasp.grasp.maps import INPUT_SIZE, WIDTH_SCALE, decode_scale

Channels = Literal["depth", "rgb", "rgbd"]

#: Input channels of each channel choice (depth first, then R, G, B for "rgbd").
IN_CHANNELS: dict[str, int] = {"depth": 1, "rgb": 3, "rgbd": 4}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Frozen):
    """How images are divided into train / validation / test."""

    kind: Literal["object", "image"] = Field(
        "object",
        description="'object': an object's images stay together (Jacquard's harder, "
        "object-wise split); 'image': images are split independently.",
    )
    seed: int = Field(0, description="Seed of the split; the same seed gives the same split.")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of objects (or images) held out for validation."
    )
    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of objects (or images) held out for testing."
    )

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must leave images to train on (< 1)")
        return self


class AugmentConfig(_Frozen):
    """Random rotation and zoom applied to training images and their grasps alike."""

    enabled: bool = Field(True, description="Augment training images (never val/test).")
    rotation_degrees: float = Field(
        180.0,
        ge=0.0,
        le=180.0,
        description="Rotation drawn uniformly in [-r, r] degrees about the image centre.",
    )
    zoom: tuple[float, float] = Field(
        (0.9, 1.3),
        description="Scale factor range (low, high) about the centre: > 1 zooms in.",
    )

    @model_validator(mode="after")
    def _zoom_range(self) -> AugmentConfig:
        low, high = self.zoom
        if not 0.0 < low <= high:
            raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {self.zoom}")
        return self


class DecodeConfig(_Frozen):
    """How predicted maps become grasps (see `regrasp.grasp.maps.decode`); kept with the model."""

    k: int = Field(5, ge=1, description="Grasps returned per image, best first.")
    threshold: float = Field(0.1, description="Smallest smoothed quality of a peak.")
    sigma: float | None = Field(
        None,
        ge=0.0,
        description="Gaussian on quality, network px (None: GG-CNN's 2 at 300², scaled to "
        "the input size by `regrasp.grasp.maps.decode_scale`).",
    )
    min_distance: int | None = Field(
        None,
        ge=0,
        description="Peak separation, network px (None: GG-CNN's 20 at 300², scaled).",
    )
    jaw_ratio: float = Field(0.5, gt=0.0, description="Predicted jaw = opening × this.")

    def for_size(self, input_size: int) -> DecodeConfig:
        """This config with sigma and min_distance filled in for `input_size`² maps."""
        if self.sigma is not None and self.min_distance is not None:
            return self
        sigma, min_distance = decode_scale(input_size)
        return self.model_copy(
            update={
                "sigma": sigma if self.sigma is None else self.sigma,
                "min_distance": min_distance if self.min_distance is None else self.min_distance,
            }
        )


class TrainConfig(_Frozen):
    """One training run: network, optimisation, data, split, augmentation and runtime."""

    architecture: str = Field(
        "mobilenet_v2", description="Registered network name (`regrasp.learn.nets.NAMES`)."
    )
    epochs: int = Field(100, ge=1, description="Passes over the training images.")
    batch_size: int = Field(32, ge=1, description="Images per optimisation step (per process).")
    lr: float = Field(5e-4, gt=0.0, description="Adam learning rate.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout before the four heads.")
    optimizer: Literal["adam"] = Field("adam", description="Optimiser (the paper's Adam).")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine",
        description="'cosine': the learning rate decays from `lr` to lr/20 along a half "
        "cosine over the epochs (steadier last epochs, so the final model is not a noisy "
        "sample); 'constant': `lr` throughout (the paper).",
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        description="Optimiser steps over which the learning rate rises linearly to the "
        "schedule's value (0: none). Adam's first steps move every weight by about the "
        "full learning rate whatever its gradient; a warm-up keeps them from switching "
        "off whole ReLU layers (`bench/collapse.py`).",
    )
    input_size: int = Field(
        INPUT_SIZE, ge=16, description="Side of the square network input, pixels."
    )
    channels: Channels = Field("depth", description="Network input: depth, rgb or rgbd.")
    width_scale: float = Field(
        WIDTH_SCALE, gt=0.0, description="The width map holds opening / width_scale (net px)."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Data split.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Augmentation.")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="Map decoding.")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes (0: inline).")
    shards_in_memory: int = Field(
        4, ge=1, description="Cache shards shuffled together and held per worker (memory bound)."
    )
    seed: int = Field(0, description="Seed of weights, data order, augmentation and dropout.")
    max_images: int | None = Field(
        None, ge=1, description="Cap on training images, for quick runs (None: all)."
    )
    max_restarts: int = Field(
        2,
        ge=0,
        description="Fresh starts, each from new weights with its own seed, when an epoch "
        "leaves a dead model (non-finite loss or a constant quality map; "
        "`regrasp.learn.training.loop.collapse_reason`) before the run fails.",
    )
    amp: Literal["auto", "on", "off"] = Field(
        "auto", description="Mixed precision: 'auto' uses it on CUDA only."
    )
    keep_checkpoints: int = Field(
        2, ge=1, description="Most recent per-epoch checkpoints kept in the store."
    )
    exclude_image_ids: tuple[int, ...] = Field(
        (),
        description="Image ids never trained on (database ids): an "
        "out-of-fold round's held-out fold, a campaign's fixed test images. They leave the "
        "training part of the split only; validation and test are as the split made them.",
    )

    @field_validator("exclude_image_ids", mode="after")
    @classmethod
    def _ids_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # Sorted and unique, so two configs that exclude the same images compare (and are
        # stored) equal whatever order the caller used. Configs stored before ids were
        # ints hold decimal strings; pydantic reads those as the same ints.
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _decode_for_input_size(self) -> TrainConfig:
        # The stored config names the decode values the model was trained and scored
        # with, so a model decodes alike in evaluation, rounds and serving.
        object.__setattr__(self, "decode", self.decode.for_size(self.input_size))
        return self

    @property
    def in_channels(self) -> int:
        """Network input channels for `channels`."""
        return IN_CHANNELS[self.channels]
