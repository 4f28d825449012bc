"""Every metric against a value computed by hand on a tiny fixed network and batch."""

from __future__ import annotations

import math

import pytest
import torch

from lossatlas import metrics as M

# Two examples, three classes. Logits chosen so the softmax is easy to write down:
# example 0: z = (ln 2, ln 1, ln 1) -> p = (0.5, 0.25, 0.25), label 0 (correct)
# example 1: z = (0, ln 3, 0)      -> p = (0.2, 0.6, 0.2),   label 2 (wrong; predicted 1)
LOGITS = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, math.log(3.0), 0.0]], dtype=torch.float64)
LABELS = torch.tensor([0, 2])
PROBS = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]], dtype=torch.float64)


def test_softmax_and_true_class_probability():
    probs = M.softmax(LOGITS)
    torch.testing.assert_close(probs, PROBS, rtol=0, atol=1e-15)
    torch.testing.assert_close(M.true_class_probability(probs, LABELS), torch.tensor([0.5, 0.2], dtype=torch.float64))


def test_cross_entropy_is_minus_log_true_class_probability():
    torch.testing.assert_close(M.cross_entropy(LOGITS, LABELS),
                               torch.tensor([math.log(2.0), math.log(5.0)], dtype=torch.float64))


def test_squared_error_sums_over_classes():
    # (0.5-1)² + 0.25² + 0.25² = 0.375 ; 0.2² + 0.6² + (0.2-1)² = 1.04. A mean over classes would give /3.
    torch.testing.assert_close(M.squared_error(PROBS, LABELS), torch.tensor([0.375, 1.04], dtype=torch.float64))


def test_zero_one_error_and_prediction():
    assert M.predicted_label(PROBS).tolist() == [0, 1]
    assert M.zero_one_error(PROBS, LABELS).tolist() == [0.0, 1.0]


def test_ties_go_to_the_first_maximal_class():
    tied = torch.tensor([[0.4, 0.4, 0.2]])
    assert M.predicted_label(tied).tolist() == [0]


@pytest.mark.parametrize(("p", "expected"), [
    (1, [0.5 + 0.25 + 0.25, 0.2 + 0.6 + 0.8]),
    (2, [math.sqrt(0.375), math.sqrt(1.04)]),
    (0.5, [(math.sqrt(0.5) + 2 * math.sqrt(0.25)) ** 2, (math.sqrt(0.2) + math.sqrt(0.6) + math.sqrt(0.8)) ** 2]),
    (3, [(0.125 + 2 * 0.25**3) ** (1 / 3), (0.008 + 0.216 + 0.512) ** (1 / 3)]),
    ("inf", [0.5, 0.8]),
])
def test_lp_error(p, expected):
    torch.testing.assert_close(M.lp_error(PROBS, LABELS, p), torch.tensor(expected, dtype=torch.float64))


def test_lp_names_and_validation():
    assert [M.p_name(p) for p in (1, 2.0, 0.5, "inf", float("inf"))] == ["1", "2", "0.5", "inf", "inf"]
    assert M.summary_names([1, "inf"]) == ["ce", "mse", "err01", "acc", "lp_1", "lp_inf"]
    with pytest.raises(ValueError, match="p > 0"):
        M.lp_error(PROBS, LABELS, 0)


def test_raw_squared_error():
    out = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(M.raw_squared_error(out, target), torch.tensor([5.0, 5.0]))


def test_weight_norms_of_a_layer_include_its_bias():
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -4.0]]))
        layer.bias.fill_(12.0)
    assert M.frobenius_norm(layer.parameters()) == pytest.approx(13.0)
    assert M.l1_norm(layer.parameters()) == pytest.approx(19.0)
    assert M.norm_product([13.0, 2.0, 0.5]) == pytest.approx(13.0)


def test_layer_norms_of_equal_the_scalar_norms_exactly():
    g = torch.Generator().manual_seed(0)
    layers = [[torch.randn(5, 3, generator=g), torch.randn(5, generator=g)], [torch.randn(2, 5, 3, 3, generator=g)],
              []]
    fro, l1 = M.layer_norms_of(layers)
    assert fro == [M.frobenius_norm(layer) for layer in layers]
    assert l1 == [M.l1_norm(layer) for layer in layers]
