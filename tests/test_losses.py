"""The hand-written losses agree with PyTorch, and their gradients with autograd."""
import torch
import torch.nn.functional as F

from visfuse_utils import losses as L


def test_softmax_cross_entropy_matches_torch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 3, generator=g) * 5
    y = torch.randint(0, 3, (16,), generator=g)
    assert torch.allclose(L.softmax_cross_entropy(z, y), F.cross_entropy(z, y), atol=1e-6)
    big = torch.tensor([[1000.0, 0.0, -1000.0]])  # stable: no overflow
    assert torch.isfinite(L.softmax_cross_entropy(big, torch.tensor([2])))


def test_gradient_formula_matches_autograd():
    z = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])
    L.softmax_cross_entropy(z, y).backward()
    assert torch.allclose(z.grad, L.softmax_cross_entropy_grad(z.detach(), y), atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: L.softmax_cross_entropy(t, y), (z.detach().requires_grad_(),))


def test_binary_is_the_two_class_case():
    z = torch.randn(32, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (32,))
    bce = L.binary_cross_entropy(z[:, 1] - z[:, 0], y.double())
    assert torch.allclose(bce, L.softmax_cross_entropy(z, y))
    assert torch.allclose(bce, F.binary_cross_entropy_with_logits(z[:, 1] - z[:, 0], y.double()))


def test_shape_errors_are_clear():
    import pytest

    with pytest.raises(ValueError, match="one class index per row"):
        L.softmax_cross_entropy(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
