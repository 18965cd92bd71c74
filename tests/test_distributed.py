"""Two gloo processes equal one process on the joined batch (learnable_fusion_loss.meta.distributed).

Each process holds half of every batch. The hypergradient (unrolled through
torch.func and higher, and the forward mode; SGD and Adam inner steps) and every
parameter of F, G and T after one meta step and one fusion step must equal the
single-process numbers on the concatenated batches, in float64. Before the inner
gradient was averaged inside the inner step, they differed by about 1 %.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from _tiny import TinyFusion
from learnable_fusion_loss.generators import ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.meta import FusionBatch, MetaLossLearner
from learnable_fusion_loss.tasks import ModuleTask

CASES = [("torch.func", "unrolled", "sgd"), ("torch.func", "unrolled", "adam"), (None, "forward", "sgd"),
         (None, "forward", "adam")]
if importlib.util.find_spec("higher") is not None:
    CASES.append(("higher", "unrolled", "sgd"))


def _learner(backend: str | None, mode: str, inner: str) -> MetaLossLearner:
    torch.manual_seed(0)
    fusion = TinyFusion(batch_norm=False).double()  # no batch statistics: exact parity (see the module)
    task_net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 1)).double()
    task = ModuleTask(task_net, nn.functional.mse_loss, torch.optim.Adam(task_net.parameters(), lr=1e-2))
    optimizer = (torch.optim.Adam(fusion.parameters(), lr=1e-2) if inner == "adam"
                 else torch.optim.SGD(fusion.parameters(), lr=0.5))
    return MetaLossLearner(fusion, LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1).double()), task,
                           optimizer, inner_backend=backend, hypergradient=mode, inner_optimizer=inner,
                           outer_lr=1e-2)


def _batch(seed: int, part: slice = slice(None)) -> FusionBatch:
    g = torch.Generator().manual_seed(seed)
    a, b = (torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    target = torch.randn(4, 2, 8, 8, generator=g, dtype=torch.float64)
    return FusionBatch(a=a[part], b=b[part], target=target[part])


def _run(part: slice) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for backend, mode, inner in CASES:
        key = f"{backend}/{mode}/{inner}"
        learner = _learner(backend, mode, inner)
        if inner == "adam":
            learner.fusion_step(_batch(9, part))  # give F's Adam a state
        out[f"{key}/hyper"] = torch.cat([g.flatten() for g in learner.hypergradient(_batch(1, part),
                                                                                    _batch(2, part)).grads])
        learner.meta_step(_batch(3, part), _batch(4, part))
        learner.fusion_step(_batch(5, part))
        for name, module in (("F", learner.fusion_net), ("G", learner.generator), ("T", learner.task.net)):
            out[f"{key}/{name}"] = torch.cat([p.detach().flatten() for p in module.parameters()])
    return out


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        share = 4 // world
        torch.save(_run(slice(rank * share, (rank + 1) * share)), Path(out_dir) / f"rank{rank}.pth")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict[str, torch.Tensor]]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pth") for r in (0, 1)]


def test_two_processes_equal_one_on_the_joined_batch(two_processes):
    single = _run(slice(None))
    for key, expected in single.items():
        for rank, results in enumerate(two_processes):
            got = results[key]
            error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-300))
            assert error <= 1e-10, f"{key}, rank {rank}: relative error {error:.2e}"
        assert expected.abs().max() > 0, key


def test_one_process_on_half_the_batch_differs(two_processes):
    """The check can fail: a single process on rank 0's half alone gives other numbers."""
    half = _run(slice(0, 2))
    key = "torch.func/unrolled/sgd/hyper"
    assert float((half[key] - two_processes[0][key]).abs().max()) > 1e-6 * float(half[key].abs().max())


def test_learn2learn_is_refused_on_several_processes(monkeypatch):
    pytest.importorskip("learn2learn")
    import learnable_fusion_loss.meta.inner as inner

    monkeypatch.setattr(inner, "world_size", lambda: 2)
    learner = _learner("learn2learn", "unrolled", "sgd")
    with pytest.raises(RuntimeError, match="learn2learn backend.*several"):
        learner.inner.adapt(learner.fusion_net, lambda m: m(_batch(1).a, _batch(1).b).mean(), 0.1)
