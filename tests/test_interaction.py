"""The interaction fusions against hand-computed cases, and XOR: what a product can fit and a sum cannot."""
import math

import pytest
import torch
from torch import nn

from visfuse_utils import interaction as I


def _set(linear: nn.Linear, weight, bias=None):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.zeros_like(linear.bias) if bias is None else torch.tensor(bias, dtype=torch.float32))


def test_bilinear_is_the_product_of_the_two_projections():
    fusion = I.BilinearFusion(2, 2, rank=2)
    _set(fusion.image_proj, [[1, 0], [0, 1]])
    _set(fusion.text_proj, [[1, 0], [0, 2]])
    out = fusion(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 1.0]]))
    assert torch.allclose(out, torch.tensor([[math.tanh(1) * math.tanh(0.5), 0.0]]))


def test_film_scales_and_shifts_the_image_features_by_the_note():
    fusion = I.FiLMFusion(1, 1, dim=1)
    _set(fusion.image_proj, [[1.0]])
    _set(fusion.film, [[2.0], [3.0]])  # gamma = 2 h_txt, beta = 3 h_txt
    out = fusion(torch.tensor([[2.0], [2.0]]), torch.tensor([[1.0], [-1.0]]))
    # (1 + 2) * 2 + 3 = 9;  relu((1 - 2) * 2 - 3) = relu(-5) = 0
    assert torch.allclose(out, torch.tensor([[9.0], [0.0]]))


class _Regions(nn.Module):
    """A stand-in image encoder whose feature map is given: 2 channels on a 2 x 2 grid."""

    def __init__(self, fmap):
        super().__init__()
        self.fmap = fmap

    def feature_map(self, images):
        return self.fmap


class _Words(nn.Module):
    """A stand-in text encoder whose token states are given."""

    def __init__(self, states):
        super().__init__()
        self.states = states

    def token_states(self, input_ids, attention_mask):
        return self.states


def test_cross_attention_with_flat_queries_reads_the_mean_region_and_ignores_padding():
    fmap = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]], [[0.0, 0.0], [4.0, 8.0]]]])  # 1 x 2 channels x 2 x 2
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])  # the third token is padding
    mask = torch.tensor([[1, 1, 0]])
    fusion = I.CrossAttentionFusion(image_channels=2, text_dim=2, dim=2, heads=1, grid=2)
    _set(fusion.regions, [[1, 0], [0, 1]])
    _set(fusion.words, [[1, 0], [0, 1]])
    attend = fusion.attend
    with torch.no_grad():
        fusion.region_pos.zero_()
        attend.in_proj_weight.copy_(torch.cat([torch.zeros(2, 2), torch.eye(2), torch.eye(2)]))  # q = 0: uniform
        attend.in_proj_bias.zero_()
        attend.out_proj.weight.copy_(torch.eye(2))
        attend.out_proj.bias.zero_()
    out = fusion(_Regions(fmap), _Words(words), {"image": None, "input_ids": None, "attention_mask": mask})
    region_mean = torch.tensor([4.0, 3.0])  # the mean of the four cells: (1+3+5+7)/4, (0+0+4+8)/4
    word_mean = torch.tensor([0.5, 0.5])  # the two real tokens only
    assert torch.allclose(out, torch.cat([word_mean, region_mean])[None])
    assert torch.allclose(fusion.last_weights, torch.full((1, 3, 4), 0.25))
    # with keys that align with a query, that word reads the region it matches most
    with torch.no_grad():
        attend.in_proj_weight[:2].copy_(10 * torch.eye(2))
    fusion(_Regions(fmap), _Words(words), {"image": None, "input_ids": None, "attention_mask": mask})
    assert fusion.last_weights[0, 0].argmax() == 3 and fusion.last_weights[0, 1].argmax() == 3  # cell (1, 1)


@pytest.mark.parametrize("kind, fits", [("sum", False), ("bilinear", True)])
def test_xor_a_sum_of_modality_scores_cannot_fit_it_a_product_can(kind, fits):
    """Image bit a, note bit b (coded -1/+1), label a XOR b: late fusion's sum f(a) + g(b) gets 3 of 4 at best."""
    torch.manual_seed(0)
    a = torch.tensor([[-1.0], [-1.0], [1.0], [1.0]])
    b = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]])
    y = torch.tensor([0, 1, 1, 0])
    if kind == "sum":
        image_head, text_head = nn.Linear(1, 2), nn.Linear(1, 2)
        params = [*image_head.parameters(), *text_head.parameters()]
        model = lambda: image_head(a) + text_head(b)  # noqa: E731 - late fusion's form
    else:
        fusion, head = I.BilinearFusion(1, 1, rank=4), nn.Linear(4, 2)
        params = [*fusion.parameters(), *head.parameters()]
        model = lambda: head(fusion(a, b))  # noqa: E731
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(500):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(), y)
        loss.backward()
        opt.step()
    right = (model().argmax(1) == y).sum().item()
    assert (right == 4) == fits and right >= 2
