"""Model registry: every architecture builds and trains at each input shape it supports, exact parameter
counts, seed-pure initialisation, the dropout switch and the forward order of ``parametrised_layers``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossatlas.models import (
    MODELS,
    OffsetBatchNorm1d,
    OffsetBatchNorm2d,
    _conv_bn_act,
    build_model,
    count_parameters,
    initialize,
    parametrised_layers,
)

torch.set_num_threads(1)

TINY = (1, 8, 8)
CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)
IMAGENET = (3, 224, 224)
MNIST1D = (1, 40)

# Every registry entry (paper-size settings, plus the tiny settings the default config uses on 8×8 digits)
# with the input shapes it supports.
CASES: list[tuple[str, dict, list[tuple[int, ...]]]] = [
    ("fc1", {"model": "mlp", "hidden": []}, [TINY, CIFAR, MNIST, (64,)]),
    ("mlp1024x2_bn", {"model": "mlp", "hidden": [1024, 1024], "batchnorm": True}, [TINY, CIFAR, MNIST]),
    ("mlp_tanh_bias_first", {"model": "mlp", "hidden": [16, 16], "activation": "tanh",
                             "bias": [True, False, False], "dropout_p": 0.1}, [TINY, (64,)]),
    ("mlp_sigmoid", {"model": "mlp", "hidden": [2], "activation": "sigmoid"}, [(4,)]),
    ("vgg11_bn", {"model": "vgg", "depth": 11, "batchnorm": True}, [TINY, CIFAR, MNIST]),
    ("vgg16", {"model": "vgg", "depth": 16}, [TINY, CIFAR, MNIST]),
    ("resnet18", {"model": "resnet", "depth": 18}, [TINY, CIFAR, MNIST]),
    ("resnet50", {"model": "resnet", "depth": 50}, [TINY, CIFAR, MNIST, IMAGENET]),
    ("densenet121", {"model": "densenet", "depth": 121}, [TINY, CIFAR, MNIST, IMAGENET]),
    ("st_vgg", {"model": "st_vgg"}, [TINY, CIFAR, MNIST]),
    ("st_vgg_small", {"model": "st_vgg", "variant": "small"}, [TINY, CIFAR, MNIST]),
    ("st_vgg_linear", {"model": "st_vgg", "linear": True}, [TINY, CIFAR, MNIST]),
    ("st_vgg_tiny", {"model": "st_vgg", "channels": [8, 8, 16, 16], "dense": 64}, [TINY]),
    ("mnist_arch", {"model": "mnist_arch"}, [TINY, CIFAR, MNIST]),
    ("conv3_24", {"model": "conv3_firstbias", "filters": 24}, [CIFAR, MNIST]),
    ("conv3_tiny", {"model": "conv3_firstbias", "filters": 8, "kernel": 3}, [TINY, CIFAR]),
    ("conv5_bn", {"model": "conv5_bn"}, [CIFAR, MNIST]),
    ("conv5_bn_tiny", {"model": "conv5_bn", "channels": [8, 16, 16, 32], "padding": 1}, [TINY, CIFAR]),
    ("mpo_cnn", {"model": "mpo_cnn"}, [TINY, CIFAR, MNIST]),
    ("mpo_cnn6_bn", {"model": "mpo_cnn", "channels": [8, 8, 32, 32, 64, 64], "batchnorm": True,
                     "bn_scale_offset": 0.5}, [TINY, CIFAR, MNIST]),
    ("mpo_cnn_tiny", {"model": "mpo_cnn", "channels": [4, 8, 16], "pool": 2, "hidden": 32,
                      "maxpool": True, "batchnorm": True, "bn_running_stats": False}, [TINY]),
    ("tiny_cnn", {"model": "tiny_cnn", "channels": [16, 16, 32, 32], "pool_after": [1, 3]}, [TINY, CIFAR]),
    ("tiny_cnn_bn", {"model": "tiny_cnn", "channels": [8, 16], "batchnorm": True, "pool_after": [0],
                     "hidden": [32]}, [TINY]),
    ("tiny_resnet", {"model": "tiny_resnet", "channels": 16, "blocks": 2}, [TINY, CIFAR]),
    ("tiny_resnet_nobn", {"model": "tiny_resnet", "channels": 8, "blocks": 1, "batchnorm": False}, [TINY]),
    # real data: MNIST-5k through the 2-D families above; MNIST-1D signals (C, L)
    ("resnet18_narrow", {"model": "resnet", "depth": 18, "width": 8}, [MNIST]),
    ("cnn1d", {"model": "cnn1d"}, [MNIST1D, (2, 64)]),
    ("cnn1d_bn", {"model": "cnn1d", "channels": [8, 16], "kernels": [3, 3], "stride": 1, "padding": 0,
                  "batchnorm": True}, [MNIST1D]),
    ("mlp_mnist1d", {"model": "mlp", "hidden": [100, 100]}, [MNIST1D]),
]


def test_cases_cover_the_whole_registry():
    assert {arch["model"] for _, arch, _ in CASES} == set(MODELS)


def _forward_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the Linear/Conv layers in the order a forward pass calls them."""
    calls: list[str] = []
    names = {id(m): name for name, m in model.named_modules()}
    hooks = [m.register_forward_hook(lambda mod, _i, _o: calls.append(names[id(mod)]))
             for _, m in parametrised_layers(model)]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return calls, out


@pytest.mark.parametrize(("label", "arch", "shape"),
                         [(label, arch, shape) for label, arch, shapes in CASES for shape in shapes],
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else
                         (v if isinstance(v, str) else ""))
def test_builds_runs_forward_backward_in_layer_order(label, arch, shape):
    num_classes = 7
    model = build_model({"name": label, **arch}, shape, num_classes)
    initialize(model, {"scheme": "xavier"}, torch.Generator().manual_seed(0))
    model.train()
    batch = 1 if shape == IMAGENET else 3  # BN1d in train mode needs more than one example
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    order, logits = _forward_order(model, x)
    assert logits.shape == (batch, num_classes)
    assert torch.isfinite(logits).all()
    assert order == [name for name, _ in parametrised_layers(model)]
    F.cross_entropy(logits, torch.arange(batch) % num_classes).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_conv_models_reject_tabular_input_and_too_small_images():
    with pytest.raises(ValueError, match="needs image input"):
        build_model({"model": "tiny_cnn"}, (64,), 10)
    with pytest.raises(ValueError, match="too small"):
        build_model({"name": "g11", "model": "conv3_firstbias"}, TINY, 10)
    with pytest.raises(ValueError, match=r"needs 1-D signal input \(C, L\)"):
        build_model({"model": "cnn1d"}, MNIST, 10)
    with pytest.raises(ValueError, match="image input"):
        build_model({"model": "st_vgg"}, MNIST1D, 10)


# --------------------------------------------------------------------------------------- parameter counts

def test_normalized_loss_appendix_g1_parameter_counts_are_exact():
    # normalized_loss_linear.txt App. G.1.1 / G.1.2.
    assert count_parameters(build_model({"model": "conv3_firstbias", "filters": 24}, CIFAR, 10)) == 154_464
    assert count_parameters(build_model({"model": "conv3_firstbias", "filters": 34}, MNIST, 10)) == 165_784


@pytest.mark.parametrize(("arch", "shape", "num_classes", "expected"), [
    # Published counts of the reference implementations (torchvision on ImageNet-1k; Keras mnist_cnn;
    # kuangliu/pytorch-cifar on CIFAR-10).
    ({"model": "resnet", "depth": 18}, IMAGENET, 1000, 11_689_512),
    ({"model": "resnet", "depth": 50}, IMAGENET, 1000, 25_557_032),
    ({"model": "densenet", "depth": 121}, IMAGENET, 1000, 7_978_856),
    ({"model": "vgg", "depth": 11}, IMAGENET, 1000, 132_863_336),
    ({"model": "vgg", "depth": 16}, IMAGENET, 1000, 138_357_544),
    ({"model": "vgg", "depth": 16, "batchnorm": True}, IMAGENET, 1000, 138_365_992),
    ({"model": "resnet", "depth": 18}, CIFAR, 10, 11_173_962),
    ({"model": "densenet", "depth": 121}, CIFAR, 10, 6_956_298),
    ({"model": "mnist_arch"}, MNIST, 10, 1_199_882),
    # Derived by hand from created_equal.txt Supp. A with 'same' padding: convs 3·9·32+32 + 32·9·32+32 +
    # 32·9·64+64 + 64·9·64+64 + 64·9·128+128 + 128·9·128+128 + 128·4·256+256 + 256·4·256+256 = 680,736,
    # Dense 1,024·512+512 = 524,800, Dense 512·10+10 = 5,130.
    ({"model": "st_vgg"}, CIFAR, 10, 680_736 + 524_800 + 5_130),
    # MPO App. B: convs 3·9·8+8 + 8·9·32+32 + 32·9·64+64 = 21,056; 1,024·128+128 = 131,200; 128·10+10 = 1,290.
    ({"model": "mpo_cnn"}, CIFAR, 10, 21_056 + 131_200 + 1_290),
    # MNIST-1D paper's CNN: convs 1·5·25+25 + 25·3·25+25 + 25·3·25+25 = 3,950; 40→19→10→5, 125·10+10 = 1,260.
    ({"model": "cnn1d"}, MNIST1D, 10, 3_950 + 1_260),
])
def test_parameter_counts_match_reference_implementations(arch, shape, num_classes, expected):
    with torch.device("meta"):  # no memory, no initialisation: counting only
        model = build_model(arch, shape, num_classes)
    assert count_parameters(model) == expected


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for _, m in parametrised_layers(model) if isinstance(m, nn.Linear)]


def test_paper_layer_geometry():
    flat = {  # in_features of the first Linear layer = flatten size
        "st_vgg": ({"model": "st_vgg"}, CIFAR, 1024),  # 'same' padding: 32→16→8→4→2, 256·2·2
        "small_st_vgg": ({"model": "st_vgg", "variant": "small"}, CIFAR, 4096),  # 64·8·8
        "mnist_arch": ({"model": "mnist_arch"}, MNIST, 9216),  # 28→26→24→12, 64·12·12
        "mpo": ({"model": "mpo_cnn", "channels": [8, 8, 32, 32, 64, 64]}, MNIST, 1024),  # 64·4·4
        "conv5_bn": ({"model": "conv5_bn"}, CIFAR, 4608),  # 32→30→28→13→6, 128·6·6
    }
    for label, (arch, shape, expected) in flat.items():
        assert _linears(build_model(arch, shape, 10))[0].in_features == expected, label
    assert count_parameters(build_model({"model": "conv5_bn"}, CIFAR, 10)) == 176_842


def test_auto_stem_and_head_follow_input_size():
    with torch.device("meta"):
        first = {shape: parametrised_layers(build_model({"model": "resnet", "depth": 18}, shape, 10))[0][1]
                 for shape in (CIFAR, IMAGENET)}
        vgg_in = build_model({"model": "vgg", "depth": 11}, IMAGENET, 10)
        vgg_cifar = build_model({"model": "vgg", "depth": 11, "head": "cifar"}, (3, 64, 64), 10)
    assert first[CIFAR].kernel_size == (3, 3) and first[CIFAR].stride == (1, 1)
    assert first[IMAGENET].kernel_size == (7, 7) and first[IMAGENET].stride == (2, 2)
    assert [m.out_features for m in _linears(vgg_in)] == [4096, 4096, 10]
    assert [m.in_features for m in _linears(vgg_cifar)] == [512 * 2 * 2]


def test_keras_same_padding_puts_the_extra_zero_row_bottom_right():
    conv_layers = _conv_bn_act(1, 1, 2, padding="same", bias=False, activation="identity")
    block = nn.Sequential(*conv_layers)
    conv = [m for m in block if isinstance(m, nn.Conv2d)][0]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        x = torch.zeros(1, 1, 3, 3)
        x[0, 0, 2, 2] = 1.0  # bottom-right pixel
        out = block(x)
    # Output (i, j) = Σ w[a, b] x[i + a, j + b] (TensorFlow 'same': pad 0 top/left, 1 bottom/right).
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0].tolist() == [[0, 0, 0], [0, 4, 3], [0, 2, 1]]


# --------------------------------------------------------------------------------------- small nets by hand

def test_fc1_is_multinomial_logistic_regression():
    model = build_model({"model": "mlp", "hidden": []}, TINY, 10)
    (linear,) = [m for _, m in parametrised_layers(model)]
    x = torch.randn(5, *TINY)
    assert torch.equal(model(x), x.reshape(5, 64) @ linear.weight.T + linear.bias)


def test_mlp_hidden_layers_bias_flags_and_identity_activation():
    arch = {"model": "mlp", "hidden": [3, 4], "activation": "identity", "bias": [True, False, True]}
    model = build_model(arch, (2,), 5)
    layers = [m for _, m in parametrised_layers(model)]
    assert [(m.in_features, m.out_features) for m in layers] == [(2, 3), (3, 4), (4, 5)]
    assert [m.bias is not None for m in layers] == [True, False, True]
    x = torch.randn(6, 2, dtype=torch.float64)
    model = model.double()
    w1, w2, w3 = (m.weight for m in layers)
    expected = ((x @ w1.T + layers[0].bias) @ w2.T) @ w3.T + layers[2].bias
    assert torch.allclose(model(x), expected, atol=1e-12)
    with pytest.raises(ValueError, match="bias lists 2 values"):
        build_model({"model": "mlp", "hidden": [3, 4], "bias": [True, False]}, (2,), 5)


def test_mlp_batchnorm_sits_between_linear_and_activation():
    model = build_model({"model": "mlp", "hidden": [8], "batchnorm": True}, (4,), 3)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear"]


def test_offset_batchnorm_uses_gamma_plus_offset():
    bn = OffsetBatchNorm2d(3, offset=0.5)
    initialize(nn.Sequential(bn), {}, torch.Generator().manual_seed(3))
    gamma = bn.weight.detach().clone()
    assert gamma.abs().max() <= 0.5 and gamma.std() > 0  # U[-0.5, 0.5] (loss_patterns_mpo.txt App. C)
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.randn(4, 3, 5, 5, dtype=torch.float32)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    scale, shift = (gamma + 0.5).view(1, 3, 1, 1), bn.bias.view(1, 3, 1, 1)
    expected = (x - mean) / torch.sqrt(var + bn.eps) * scale + shift
    assert torch.allclose(bn(x), expected, atol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    bn.eval()  # running statistics after one batch: momentum 0.1 from (0, 1)
    running_var = 0.9 + 0.1 * x.var(dim=(0, 2, 3), keepdim=True)  # unbiased, as PyTorch
    expected_eval = (x - 0.1 * mean) / torch.sqrt(running_var + bn.eps) * scale + shift
    assert torch.allclose(bn(x), expected_eval, atol=1e-5)


# --------------------------------------------------------------------------------------- initialisation

def _init_state(arch: dict, init: dict, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    model = build_model(arch, TINY, 10).to(dtype)
    initialize(model, init, torch.Generator().manual_seed(seed))
    return {k: v.clone() for k, v in model.state_dict().items()}


SMALL_BN_CNN = {"model": "tiny_cnn", "channels": [4, 8], "batchnorm": True, "pool_after": [0], "hidden": [16]}


@pytest.mark.parametrize("init", [{"scheme": "default"}, {"scheme": "xavier"},
                                  {"scheme": "gaussian", "std": 0.1, "scale": 0.01}])
def test_initialisation_is_a_pure_function_of_the_seed(init):
    torch.manual_seed(123)
    a = _init_state(SMALL_BN_CNN, init, seed=7)
    torch.manual_seed(999)  # the global RNG must not matter
    torch.rand(1000)
    b = _init_state(SMALL_BN_CNN, init, seed=7)
    c = _init_state(SMALL_BN_CNN, init, seed=8)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    # float64 members start from the same draws (up to float32 rounding)
    d = _init_state(SMALL_BN_CNN, init, seed=7, dtype=torch.float64)
    floats = [k for k in a if a[k].is_floating_point()]
    assert all(torch.allclose(a[k].double(), d[k], rtol=1e-6, atol=1e-12) for k in floats)


def test_build_model_leaves_the_global_rng_alone_and_is_deterministic():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    m1 = build_model({"model": "mlp", "hidden": [8]}, TINY, 3)
    assert torch.equal(torch.get_rng_state(), state)
    m2 = build_model({"model": "mlp", "hidden": [8]}, TINY, 3)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))


def test_xavier_bounds_and_zero_biases():
    model = build_model({"model": "conv3_firstbias", "filters": 16, "kernel": 3}, TINY, 10)
    initialize(model, {"scheme": "xavier"}, torch.Generator().manual_seed(0))
    for name, layer in parametrised_layers(model):
        w = layer.weight
        fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= bound, name
        assert w.abs().max() > 0.8 * bound, name  # actually spread over the interval
        if layer.bias is not None:
            assert torch.count_nonzero(layer.bias) == 0, name


def test_default_scheme_uses_pytorch_bounds():
    model = build_model({"model": "mlp", "hidden": [200]}, (50,), 10)
    initialize(model, {"scheme": "default"}, torch.Generator().manual_seed(0))
    for _, layer in parametrised_layers(model):
        bound = 1 / math.sqrt(layer.in_features)
        for t in (layer.weight, layer.bias):
            assert t.abs().max() <= bound and t.abs().max() > 0.9 * bound


def test_gaussian_per_layer_std_and_global_scale():
    arch = {"model": "mlp", "hidden": [300, 300], "bias": [True, False, False]}
    init = {"scheme": "gaussian", "std_per_layer": [0.5, 0.05, 0.2]}
    model = build_model(arch, (200,), 100)
    initialize(model, init, torch.Generator().manual_seed(0))
    layers = [m for _, m in parametrised_layers(model)]
    for layer, std in zip(layers, init["std_per_layer"], strict=True):
        assert abs(layer.weight.std().item() / std - 1) < 0.03  # ≥ 30,000 draws per layer
    assert torch.count_nonzero(layers[0].bias) == 0
    scaled = build_model(arch, (200,), 100)
    initialize(scaled, {**init, "scale": 1e-3}, torch.Generator().manual_seed(0))
    for layer, small in zip(layers, (m for _, m in parametrised_layers(scaled)), strict=True):
        assert torch.equal(small.weight, layer.weight * 1e-3)


@pytest.mark.parametrize(("init", "message"), [
    ({"scheme": "gaussian", "std_per_layer": [0.1, 0.1]}, "has 3 parametrised layers"),
    ({"scheme": "gaussian"}, "exactly one of"),
    ({"scheme": "gaussian", "std": 0.1, "std_per_layer": [0.1, 0.1, 0.1]}, "exactly one of"),
    ({"scheme": "xavier", "std": 0.1}, "only apply to scheme gaussian"),
    ({"scheme": "he"}, "init.scheme"),
    ({"scheme": "default", "sigma": 1.0}, "unknown key"),
])
def test_bad_init_is_rejected_clearly(init, message):
    model = build_model({"model": "mlp", "hidden": [4, 4]}, (3,), 2)
    with pytest.raises(ValueError, match=message):
        initialize(model, init, torch.Generator().manual_seed(0))


def test_batchnorm_is_reset_by_initialize():
    model = build_model(SMALL_BN_CNN, TINY, 10)
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][0]
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(1.0)
        bn.running_mean.fill_(2.0)
    initialize(model, {"scheme": "gaussian", "std": 0.1, "scale": 0.5}, torch.Generator().manual_seed(0))
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0) and torch.all(bn.running_mean == 0)


# ----------------------------------------------------------------------------------- dropout, layers, errors

@pytest.mark.parametrize(("arch", "shape", "n_dropout"), [
    ({"model": "st_vgg"}, CIFAR, 5),  # 0.25 after each of 4 pools + 0.5 after Dense(512)
    ({"model": "st_vgg", "variant": "small", "linear": True}, CIFAR, 3),
    ({"model": "mnist_arch"}, MNIST, 2),
    ({"model": "mlp", "hidden": [16, 16], "dropout_p": 0.2}, TINY, 2),
    ({"model": "vgg", "depth": 11, "width": 0.125}, (3, 96, 96), 2),  # ImageNet head
])
def test_dropout_switch(arch, shape, n_dropout):
    with_dropout = build_model(arch, shape, 10)
    without = build_model(arch, shape, 10, dropout=False)
    assert sum(isinstance(m, nn.Dropout) for m in with_dropout.modules()) == n_dropout
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())
    assert count_parameters(with_dropout) == count_parameters(without)
    x = torch.randn(2, *shape)
    without.train()
    assert torch.equal(without(x), without(x))  # train mode is deterministic without dropout
    with_dropout.train()
    assert not torch.equal(with_dropout(x), with_dropout(x))


def test_parametrised_layers_names_kinds_and_residual_order():
    layers = parametrised_layers(build_model({"model": "conv3_firstbias"}, CIFAR, 10))
    assert [type(m).__name__ for _, m in layers] == ["Conv2d", "Conv2d", "Linear"]
    assert [m.bias is not None for _, m in layers] == [True, False, False]
    resnet18 = build_model({"model": "resnet", "depth": 18}, CIFAR, 10)
    names = [name for name, _ in parametrised_layers(resnet18)]
    assert len(names) == 1 + 16 + 3 + 1  # stem, 8 blocks × 2 convs, 3 projection shortcuts, classifier
    assert names[:8] == ["0", "3.conv1", "3.conv2", "4.conv1", "4.conv2",
                         "5.conv1", "5.conv2", "5.shortcut.0"]
    assert names[-1] == "13"


def test_build_model_rejects_unknown_models_and_options():
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        build_model({"name": "a", "model": "alexnet"}, CIFAR, 10)
    with pytest.raises(ValueError, match=r"architecture 'wide'.*no option\(s\) \['widht'\]"):
        build_model({"name": "wide", "model": "resnet", "depth": 18, "widht": 2}, CIFAR, 10)
    with pytest.raises(ValueError, match="vgg depth"):
        build_model({"model": "vgg", "depth": 12}, CIFAR, 10)
    with pytest.raises(ValueError, match="unknown activation"):
        build_model({"model": "mlp", "hidden": [3], "activation": "swish"}, (2,), 2)


def test_mlp_offset_batchnorm_uses_gamma_plus_offset():
    model = build_model({"model": "mlp", "hidden": [4], "batchnorm": True, "bn_scale_offset": 0.5}, (3,), 2)
    initialize(model, {"scheme": "default"}, torch.Generator().manual_seed(0))
    bn = model[2]
    assert isinstance(bn, OffsetBatchNorm1d) and bn.offset == 0.5
    assert float(bn.weight.abs().max()) <= 0.5 and float(bn.weight.std()) > 0  # γ ~ U[-0.5, 0.5]
    x = torch.randn(16, 4)
    bn.train()
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps) * (bn.weight + 0.5) + bn.bias
    assert torch.allclose(bn(x), expected, atol=1e-5)


def test_architecture_schema_lists_exactly_each_models_options():
    """schemas/architecture.schema.yaml (start-up validation, torch-free) matches the registry's signatures."""
    import inspect
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "schemas" / "architecture.schema.yaml").read_text())
    assert set(schema["properties"]["model"]["anyOf"][0]["enum"]) == set(MODELS)
    by_model = {rule["if"]["properties"]["model"]["const"]: rule["then"] for rule in schema["allOf"]}
    assert set(by_model) == set(MODELS)
    for name, fn in MODELS.items():
        params = {p.name: p for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY}
        assert set(by_model[name]["properties"]) - {"model"} == set(params), name
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        assert set(by_model[name].get("required", [])) == required, name


def test_st_vgg_elu_and_kernel_l2_penalty():
    # The authors' st-VGG (GuyHacohen/curriculum_learning): ELU activations, Keras L2 5e-3 on every kernel.
    from lossatlas.wide import kernel_l2_penalty, kernel_weights

    torch.manual_seed(0)
    model = build_model({"model": "st_vgg", "variant": "small", "channels": [4, 4], "dense": 8,
                         "activation": "elu"}, (3, 8, 8), 5)
    kinds = {type(m) for m in model.modules()}
    assert nn.ELU in kinds and nn.ReLU not in kinds
    linear = build_model({"model": "st_vgg", "variant": "small", "channels": [4, 4], "dense": 8,
                          "activation": "elu", "linear": True}, (3, 8, 8), 5)
    assert nn.ELU not in {type(m) for m in linear.modules()}  # the linear st-VGG stays linear
    kernels = kernel_weights(model)
    assert [tuple(w.shape) for w in kernels] == [(4, 3, 3, 3), (4, 4, 3, 3), (8, 64), (5, 8)]
    penalty = kernel_l2_penalty(kernel_weights(model), 5e-3)
    expected = 5e-3 * sum(float((w.detach() ** 2).sum()) for w in kernels)
    assert float(penalty) == pytest.approx(expected, rel=1e-6)
    penalty.backward()
    for name, p in model.named_parameters():
        if name.endswith("weight"):  # the kernels: gradient 2 · 5e-3 · w
            torch.testing.assert_close(p.grad, 0.01 * p.detach())
        else:  # biases carry no penalty
            assert p.grad is None or float(p.grad.abs().max()) == 0.0


def test_gaussian_init_with_default_bias_keeps_pytorchs_bias_draw():
    # Liao et al.'s code redraws only the weights N(0, σ²); the first layer's bias keeps PyTorch's U(±1/√fan_in).
    arch = {"model": "conv3_firstbias", "filters": 16, "kernel": 3}
    zero = _init_state(arch, {"scheme": "gaussian", "std": 0.05}, seed=3)
    kept = _init_state(arch, {"scheme": "gaussian", "std": 0.05, "bias": "default"}, seed=3)
    biases = [k for k in kept if k.endswith("bias")]
    assert len(biases) == 1  # bias in the first layer only
    fan_in = TINY[0] * 3 * 3
    b = kept[biases[0]]
    assert float(b.abs().max()) <= 1 / math.sqrt(fan_in) and float(b.abs().min()) > 0
    assert float(zero[biases[0]].abs().max()) == 0.0
    weights = torch.cat([v.flatten() for k, v in kept.items() if k.endswith("weight")])
    assert float(weights.std()) == pytest.approx(0.05, rel=0.1)
    with pytest.raises(ValueError, match="only apply to scheme gaussian"):
        _init_state(arch, {"scheme": "default", "bias": "default"}, seed=3)
