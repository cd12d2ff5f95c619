"""The DDP code path of the training loop (gloo on CPU): two ranks as real processes.

Apart from the unit tests of the loop because it starts processes
(`torch.multiprocessing.spawn`); it trains on the same cached dataset with the same config.
"""

from __future__ import annotations

import os

import pytest
import torch

from regrasp.learn.training.loop import load_latest_checkpoint
from regrasp.platform.store.objects import open_store
from tests.harness.ports import free_port
from tests.unit import test_training_loop as loop_tests

#: The unit tests' fixture: 16 synthetic images cached at 32 px in a `file://` store.
cached = loop_tests.cached


def _ddp_worker(rank: int, world: int, port: int, url: str, cached, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    result = loop_tests._run(cached, "ddp", config=loop_tests._config(epochs=1))
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    torch.save(result.history, os.path.join(out, f"history{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_distributed_data_parallel_on_cpu(cached, tmp_path) -> None:
    url, _, _ = cached
    port = free_port()
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, port, url, cached, str(tmp_path)), nprocs=2, join=True
    )
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)  # DDP kept the replicas identical
    store = open_store(url)
    checkpoint = load_latest_checkpoint(store, "ddp")
    assert checkpoint["epoch"] == 1
    assert all(torch.equal(a[k], checkpoint["model"][k]) for k in a)
    h0 = torch.load(tmp_path / "history0.pt", weights_only=True)
    h1 = torch.load(tmp_path / "history1.pt", weights_only=True)
    assert "val_accuracy" in h0[0] and "val_accuracy" not in h1[0]  # rank 0 evaluates
    assert h0[0]["train_loss"] == pytest.approx(h1[0]["train_loss"])  # averaged over ranks
