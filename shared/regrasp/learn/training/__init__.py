"""Training of the grasp networks: splits, the decoded-tensor cache, data, loop, evaluation.

Import the submodule you need; this package imports nothing on its own, so that
`regrasp.learn.training.registry` (what inference needs to load a registered model) stays cheap:

- `config`: `TrainConfig`, every option of a training run with the paper's defaults;
- `splits`: object-wise and image-wise splits, deterministic by seed;
- `cache`: decode + resize every image once into sharded `.npz` in the object store;
- `augment`, `data`: consistent rotation/zoom of inputs and grasps, torch datasets;
- `loop`: `train` with checkpoints, resume, AMP and DistributedDataParallel;
- `evaluate`: the Jacquard rectangle metric on a model's top-1 predictions;
- `registry`: store a trained model with its metadata; `load_registered` loads it back.
"""
