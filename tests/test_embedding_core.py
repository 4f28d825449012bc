"""The embedding principle's algebra (embedding_principle.txt Def. 5, Prop. 1, Lemma 1, Thm. 1, Lemma 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossatlas import embedding as emb

torch.set_num_threads(1)


def _random_problem(depth, width, activation, d_out, seed, output_bias=True):
    rng = np.random.default_rng(seed)
    widths = [2] + [width] * (depth - 1) + [d_out]
    net = emb.init_fcn(widths, activation, 0.8, seed, output_bias=output_bias)
    x = rng.normal(size=(7, 2))
    y = rng.normal(size=(7, d_out))
    return net, x, y


nets = st.tuples(st.integers(2, 4), st.integers(1, 4), st.sampled_from(["tanh", "sigmoid", "relu", "identity"]),
                 st.integers(1, 3), st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(nets, st.floats(-2.0, 3.0), st.data())
def test_one_step_embedding_preserves_output_risk_and_features(problem, delta, data):
    depth, width, activation, d_out, seed = problem
    net, x, y = _random_problem(depth, width, activation, d_out, seed)
    layer = data.draw(st.integers(1, depth - 1))
    neuron = data.draw(st.integers(0, width - 1))
    wide = emb.one_step_embedding(net, layer, neuron, delta)
    assert wide.widths[layer] == width + 1
    assert emb.num_parameters(wide) > emb.num_parameters(net)
    grid = np.random.default_rng(1).normal(size=(50, 2))  # every x, not only the training inputs
    scale = 1.0 + abs(delta)
    np.testing.assert_allclose(emb.forward(wide, grid), emb.forward(net, grid), atol=1e-13 * scale, rtol=0)
    np.testing.assert_allclose(emb.risk(wide, x, y), emb.risk(net, x, y), rtol=1e-12)
    # Prop. 1: the set of features of every layer is unchanged; the new neuron repeats neuron s.
    pairs = zip(emb.features(wide, grid), emb.features(net, grid), strict=True)
    for l, (f_wide, f_narrow) in enumerate(pairs, start=1):
        if l == layer:
            np.testing.assert_allclose(f_wide[:, :-1], f_narrow, atol=1e-14)
            np.testing.assert_allclose(f_wide[:, -1], f_narrow[:, neuron], atol=1e-14)
        else:
            np.testing.assert_allclose(f_wide, f_narrow, atol=1e-13 * scale)


@settings(max_examples=30, deadline=None)
@given(nets, st.floats(-1.0, 2.0))
def test_gradient_of_embedding_follows_lemma_1(problem, delta):
    """Lemma 1 at any point: the output-weight gradients of s and its copy equal the old one; the input-weight
    gradient of s splits into delta and 1 - delta. So a zero gradient maps to a zero gradient (Thm. 1)."""
    depth, width, activation, d_out, seed = problem
    net, x, y = _random_problem(depth, width, activation, d_out, seed)
    _, g = emb.risk_and_gradient(net, x, y)
    wide = emb.one_step_embedding(net, 1, 0, delta)
    _, gw = emb.risk_and_gradient(wide, x, y)
    gnet, gwide = net.with_arrays(g), wide.with_arrays(gw)
    np.testing.assert_allclose(gwide.weights[0][0], delta * gnet.weights[0][0], atol=1e-12)
    np.testing.assert_allclose(gwide.weights[0][-1], (1 - delta) * gnet.weights[0][0], atol=1e-12)
    np.testing.assert_allclose(gwide.weights[1][:, 0], gnet.weights[1][:, 0], atol=1e-12)
    np.testing.assert_allclose(gwide.weights[1][:, -1], gnet.weights[1][:, 0], atol=1e-12)
    bound = 2 * (1 + abs(delta) + abs(1 - delta)) * float(emb.gradient_norm(g)) + 1e-12
    assert float(emb.gradient_norm(gw)) <= bound


def test_gradient_matches_autograd():
    net, x, y = _random_problem(3, 3, "tanh", 2, 0)
    _, grads = emb.risk_and_gradient(net, x, y)
    flat = torch.tensor(emb.flatten(net), requires_grad=True)
    h = emb.hessian(net, x, y)  # exercises the torch forward; its gradient is checked by finite differences
    eps = 1e-6
    base = emb.flatten(net)
    numeric = []
    for i in range(base.size):
        e = np.zeros_like(base)
        e[i] = eps
        numeric.append((emb.risk(emb.unflatten(net, base + e), x, y) - emb.risk(emb.unflatten(net, base - e), x, y))
                       / (2 * eps))
    np.testing.assert_allclose(np.concatenate([g.ravel() for g in grads]), numeric, atol=1e-8)
    assert h.shape == (flat.numel(), flat.numel())
    np.testing.assert_allclose(h, h.T, atol=1e-12)


def test_hand_computed_two_layer_risk():
    # f(x) = 2 tanh(0.5 x + 0) with no output bias; x = [1, -1], y = [0, 0]: R = mean((2 tanh 0.5)^2)
    net = emb.FCN([np.array([[0.5]]), np.array([[2.0]])], [np.array([0.0]), None], "tanh")
    x = np.array([[1.0], [-1.0]])
    assert emb.risk(net, x, np.zeros((2, 1))) == pytest.approx((2 * np.tanh(0.5)) ** 2, rel=1e-15)


def _critical_point(seed=0):
    """A polished minimum of a width-2 tanh net on 16 points (Hessian positive definite at width 2)."""
    x = np.linspace(-1, 1, 16)[:, None]
    y = 0.6 * np.sin(2 * x) + 0.3 * x**2 - 0.2
    net = emb.init_fcn([1, 2, 1], "tanh", 0.5, seed)
    record = emb.train_full_batch(net, x, y, "adam", 0.02, 5000, 5000)
    net, history = emb.polish_critical_point(record.final, x, y)
    return net, x, y, history


def test_embedding_of_a_critical_point_is_critical_and_adds_zero_eigenvalues():
    net, x, y, history = _critical_point()
    assert history[-1] < 1e-12
    counts = []
    for steps in ([], [(1, 0, 0.5)], [(1, 0, 0.5), (1, 1, 0.3)]):
        wide = emb.multi_step_embedding(net, steps)
        _, g = emb.risk_and_gradient(wide, x, y)
        assert float(emb.gradient_norm(g)) < 1e-11  # Thm. 1
        lam = np.linalg.eigvalsh(emb.hessian(wide, x, y))
        counts.append(emb.spectrum_counts(lam, 1e-9, 1e-4))
    zeros = [c["n_zero"] for c in counts]
    assert zeros[1] >= zeros[0] + 1 and zeros[2] >= zeros[1] + 1  # Lemma 2: one more per step


def test_reduction_recovers_the_narrow_network():
    net, x, y = _random_problem(3, 3, "tanh", 2, 5, output_bias=False)
    steps = emb.embedding_steps(net.widths, [5, 3], deltas=[0.3, -0.4])
    wide = emb.multi_step_embedding(net, steps)
    assert wide.widths == [2, 5, 3, 2]
    sim = emb.cosine_similarity(emb.input_weights(wide, 1))
    groups, neglected = emb.group_neurons(sim, emb.neuron_amplitudes(wide, 1), 1 - 1e-12, 0.0)
    assert neglected == [] and len(groups) == 3
    groups = [sorted(g) for g in groups]  # keep the original neuron (lowest index) of each group
    groups.sort()
    reduced = emb.reduce_layer(wide, 1, groups, rule="sum")
    for a, b in zip(reduced.arrays(), net.arrays(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-14)


def test_homogeneous_reduction_is_exact_for_relu_rescaled_copies():
    net = emb.init_fcn([3, 2, 2], "relu", 1.0, 0)
    wide = emb.one_step_embedding(net, 1, 1, 0.25)
    wide.weights[0][-1] *= 3.0  # rescale the copy's input weights: (c w, a / c) is the same function for ReLU
    wide.biases[0][-1] *= 3.0
    wide.weights[1][:, -1] /= 3.0
    x = np.random.default_rng(0).normal(size=(20, 3))
    reduced = emb.reduce_layer(wide, 1, [[0], [1, 2]], rule="homogeneous")
    np.testing.assert_allclose(emb.forward(reduced, x), emb.forward(net, x), atol=1e-13)


def test_stacked_training_equals_training_alone():
    x = np.linspace(-1, 1, 5)[:, None]
    y = x**2
    stack = emb.init_trials([1, 3, 1], "tanh", 0.3, 7, trials=3)
    rec = emb.train_full_batch(stack, x, y, "gd", 0.1, 50, 25)
    alone = emb.train_full_batch(emb.init_fcn([1, 3, 1], "tanh", 0.3, [7, 2]), x, y, "gd", 0.1, 50, 25)
    np.testing.assert_allclose(rec.loss[:, 2], alone.loss, rtol=1e-12)
    np.testing.assert_allclose(emb.flatten(rec.final.member(2)), emb.flatten(alone.final), rtol=1e-12)


def test_find_stagnation_skips_the_initial_plateau():
    loss = np.concatenate([np.full(100, 1.0), np.linspace(1.0, 0.5, 50), np.full(200, 0.5),
                           np.linspace(0.5, 0.1, 50)])
    assert emb.find_stagnation(loss, window=10, rel_tol=1e-3, min_length=50) == (149, 341)
    assert emb.find_stagnation(loss, window=10, rel_tol=1e-3, min_length=50, skip_initial=False)[0] == 0
    assert emb.find_stagnation(np.linspace(1, 0, 100), 10, 1e-3, 20) is None


def test_spectrum_counts_by_hand():
    c = emb.spectrum_counts(np.array([-2.0, -1e-3, 1e-12, 0.5, 10.0]), 1e-9, 1e-3)
    assert (c["n_zero"], c["n_negative"], c["n_positive"], c["n_negative_significant"]) == (1, 2, 2, 1)
    assert c["zero_threshold"] == pytest.approx(1e-8)
