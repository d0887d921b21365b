"""Hand-written losses and their gradients (derived in notebook 01; InfoNCE in notebook 06).

The fused model outputs logits z (one per class). Softmax turns them into
probabilities once, cross-entropy scores them, and the gradient with respect to the
logits is the famously simple softmax(z) - onehot(y), averaged over the batch.
"""
from __future__ import annotations

import torch


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be batch x classes, got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must hold one class index per row ({logits.shape[0]}), got {tuple(targets.shape)}")


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log softmax(z)_y, computed stably with log-sum-exp."""
    _check(logits, targets)
    log_norm = torch.logsumexp(logits, dim=1)
    picked = logits.gather(1, targets.long()[:, None]).squeeze(1)
    return (log_norm - picked).mean()


def softmax_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d(mean loss)/dz = (softmax(z) - onehot(y)) / N."""
    _check(logits, targets)
    probs = torch.softmax(logits, dim=1)
    onehot = torch.nn.functional.one_hot(targets.long(), logits.shape[1]).to(logits.dtype)
    return (probs - onehot) / logits.shape[0]


def binary_cross_entropy(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on one logit per sample: the two-class softmax case.

    With z = z1 - z0, softmax over two classes is sigmoid(z), so the loss is
    -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))] = softplus(z) - y z.
    """
    if logit.shape != target.shape:
        raise ValueError(f"logit {tuple(logit.shape)} and target {tuple(target.shape)} must have one shape")
    return (torch.nn.functional.softplus(logit) - target.to(logit.dtype) * logit).mean()


def info_nce(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of each batch is the positive of row i of the other.

    Embeddings are L2-normalised here; every other row in the batch is a negative.
    """
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image {tuple(image_emb.shape)} and text {tuple(text_emb.shape)} embeddings must match")
    img = torch.nn.functional.normalize(image_emb, dim=1)
    txt = torch.nn.functional.normalize(text_emb, dim=1)
    sim = img @ txt.T / temperature
    target = torch.arange(len(img), device=img.device)
    return (softmax_cross_entropy(sim, target) + softmax_cross_entropy(sim.T, target)) / 2
