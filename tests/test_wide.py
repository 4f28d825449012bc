"""Members as channel groups of one wide network (lossatlas.wide): each member trains exactly as it does alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lossatlas import optim, wide
from lossatlas import training as T
from lossatlas.models import MODELS

torch.set_num_threads(1)

# float64: grouped vs dense kernels sum in another order. After 3 steps: ~1e-16 relative, but deep nets with
# BN on tiny batches amplify it, by how much depends on the CPU's kernels (ResNet-50: 1.6e-11 on one conv weight
# on an AMD EPYC). A layout mistake is off by 1e-3 or more.
TOL = 1e-10  # relative to the tensor's largest magnitude (at least 1)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) <= TOL * max(1.0, float(b.abs().max()))

# One small instance of every family in the registry, on 8×8 single-channel inputs (1-D nets: signals of 16).
ARCHS = {
    "mlp_bn_bias": {"model": "mlp", "hidden": [8, 6], "batchnorm": True, "bias": [True, False, True]},
    "mlp_offset_bn_dropout": {"model": "mlp", "hidden": [8], "batchnorm": True, "bn_scale_offset": 0.5,
                              "dropout_p": 0.5},
    "fc1_tanh": {"model": "mlp", "hidden": [], "activation": "tanh"},
    "tiny_cnn": {"model": "tiny_cnn", "channels": [4, 4, 8, 8], "pool_after": [1, 3], "batchnorm": True,
                 "hidden": [8]},
    "tiny_resnet": {"model": "tiny_resnet", "channels": 4, "blocks": 2},
    "resnet18": {"model": "resnet", "depth": 18, "width": 2},  # strided blocks with projection shortcuts
    "resnet50": {"model": "resnet", "depth": 50, "width": 2},  # bottlenecks
    "vgg11_bn": {"model": "vgg", "depth": 11, "width": 1 / 64, "batchnorm": True},
    "st_vgg_keras_same": {"model": "st_vgg", "variant": "small", "channels": [4, 4], "kernels": [2, 2],
                          "dense": 8},  # 2×2 'same' padding = ZeroPad2d, dropout after pools and dense
    "st_vgg_linear": {"model": "st_vgg", "variant": "small", "channels": [4, 4], "dense": 8, "linear": True},
    "st_vgg_elu": {"model": "st_vgg", "variant": "small", "channels": [4, 4], "dense": 8, "activation": "elu"},
    "mnist_arch": {"model": "mnist_arch"},
    "conv3_firstbias": {"model": "conv3_firstbias", "filters": 3, "kernel": 3},
    "conv5_bn": {"model": "conv5_bn", "channels": [4, 4, 4, 4], "strides": [1, 1, 2, 2], "padding": 1},
    "mpo_cnn_bn_batch_stats": {"model": "mpo_cnn", "channels": [4, 4], "batchnorm": True, "bn_scale_offset": 0.5,
                               "bn_running_stats": False, "pool": 2, "hidden": 8, "maxpool": True},
    "cnn1d": {"model": "cnn1d", "channels": [4, 4], "kernels": [5, 3]},  # strided, padded: 16→7→4
    "cnn1d_bn_unpadded": {"model": "cnn1d", "channels": [4, 3], "kernels": [3, 2], "stride": 1, "padding": 0,
                          "batchnorm": True},
}
SIGNAL_SHAPE = (1, 16)


def input_shape(arch: dict) -> tuple[int, ...]:
    return SIGNAL_SHAPE if arch["model"] == "cnn1d" else (1, 8, 8)


def members(arch: dict, seeds: list[int], dtype=torch.float64) -> list[nn.Module]:
    spec = {"architecture": {"name": "t", **arch}, "dropout": True, "init": {"scheme": "default"}}
    return [T.build_member(spec, input_shape(arch), 3, s, torch.device("cpu"), dtype) for s in seeds]


def train_steps(group, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """SGD with momentum on ``batches`` ((G, B, *input shape) inputs, (G, B) labels); the per-step losses."""
    optimizer = optim.make_optimizer(group.parameters(), {"name": "sgd", "lr": 0.1, "momentum": 0.9}, 0.1)
    group.train()
    losses = []
    for x, y in batches:
        loss = optim.batch_loss("ce", group.forward(x), y, 3)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def test_every_registry_family_is_covered():
    assert {a["model"] for a in ARCHS.values()} | {"densenet"} == set(MODELS)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_wide_members_train_exactly_as_alone(name):
    arch, seeds = ARCHS[name], [3, 1, 4]
    assert wide.unsupported_layers(members(arch, seeds[:1])[0]) == []
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(3, 6, *input_shape(arch), generator=gen, dtype=torch.float64),
                torch.randint(0, 3, (3, 6), generator=gen)) for _ in range(3)]
    group = T.WideGroup(members(arch, seeds), seeds, input_shape(arch))
    wide_losses = torch.stack(train_steps(group, batches))
    stacked = group.state()
    for g, seed in enumerate(seeds):
        alone = T.SingleGroup(members(arch, [seed])[0], seed)
        alone_losses = torch.stack(train_steps(alone, [(x[g:g + 1], y[g:g + 1]) for x, y in batches]))
        assert close(wide_losses[:, g], alone_losses[:, 0])
        state = alone.state()
        assert stacked.keys() == state.keys()
        for key, value in state.items():
            assert stacked[key][g].shape == value[0].shape, key
            assert close(stacked[key][g], value[0]), (name, key)
    # the members really are different networks, and training moved them
    first = next(k for k, v in stacked.items() if v.is_floating_point() and v[0].numel() > 1)
    assert float((stacked[first][0] - stacked[first][1]).abs().max()) > 1e-3
    assert float((stacked[first][0] - members(arch, seeds[:1])[0].state_dict()[first]).abs().max()) > 1e-6


def test_state_round_trip_and_batchnorm_buffers():
    arch, seeds = ARCHS["tiny_resnet"], [0, 1]
    group = T.WideGroup(members(arch, seeds), seeds, (1, 8, 8))
    state = {k: v.clone() for k, v in group.state().items()}  # state() views the live tensors
    assert state["0.weight"].shape == (2, 4, 1, 3, 3) and state["1.num_batches_tracked"].tolist() == [0, 0]
    x = torch.randn(2, 5, 1, 8, 8, dtype=torch.float64)
    train_steps(group, [(x, torch.zeros(2, 5, dtype=torch.int64))])
    moved = group.state()
    assert moved["1.num_batches_tracked"].tolist() == [1, 1]
    assert not torch.equal(moved["1.running_mean"], state["1.running_mean"])
    other = T.WideGroup(members(arch, seeds), seeds, (1, 8, 8))
    other.load_state(moved)
    assert all(torch.equal(other.state()[k], v) for k, v in moved.items())


def test_unsupported_layers_are_named_and_train_otherwise():
    dense = members({"model": "densenet", "depth": 121, "growth_rate": 2, "bn_size": 1}, [0], torch.float32)[0]
    bad = wide.unsupported_layers(dense)
    assert bad and all("DenseLayer" in b for b in bad)
    with pytest.raises(ValueError, match="DenseLayer"):
        wide.widen([dense, dense])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert T.choose_stacking("auto", dense, 4, cpu) == "loop"  # convolutions under vmap: slower than a loop
    assert T.choose_stacking("auto", dense, 4, cuda) == "vmap"
    assert T.choose_stacking("always", dense, 4, cpu) == "vmap"
    mlp = members(ARCHS["mlp_bn_bias"], [0])[0]
    assert T.choose_stacking("auto", mlp, 4, cpu) == "wide"
    assert T.choose_stacking("auto", mlp, 1, cpu) == "loop"
    assert T.choose_stacking("never", mlp, 4, cpu) == "loop"
    with pytest.raises(ValueError, match="vectorize"):
        T.choose_stacking("sometimes", mlp, 4, cpu)
    drop2d = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout2d(0.5), nn.Flatten(), nn.Linear(72, 3))
    assert wide.unsupported_layers(drop2d) == ["Dropout2d at '1'"]
    assert T.choose_stacking("auto", drop2d, 4, cpu) == "loop"  # its masks would come from a shared RNG


def test_kernel_l2_penalty_of_a_wide_group_is_the_members_sum():
    from lossatlas.wide import kernel_l2_penalty, kernel_weights

    group = members(ARCHS["st_vgg_elu"], [0, 1, 2])
    wide_group = wide.widen(group)
    with torch.no_grad():
        alone = sum(float(kernel_l2_penalty(kernel_weights(m), 5e-3)) for m in group)
        assert float(kernel_l2_penalty(kernel_weights(wide_group), 5e-3)) == pytest.approx(alone, rel=1e-12)
    assert any(isinstance(m, nn.ELU) for m in wide_group.modules())
