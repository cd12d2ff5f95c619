"""Models: networks, training, the trainer's job queue and worker, prediction.

- `nets`: the grasp networks (GG-CNN and the paper's backbones), by name;
- `training`: data loading, the training loop, evaluation, weight storage;
- `queue`: the trainer's job queue in the database (submit, claim, heartbeat);
- `worker`: what a trainer worker does with a claimed job (train, evaluate);
- `model_registry`: registered models and their aliases (`production`, `staging`);
- `predict`: maps → ranked grasps in the input image's pixels.

Only `nets`, `training` and `worker` import torch.
"""
