"""Write-it-yourself cells: a student's function checked against the course's reference on fresh inputs.

The main notebooks mark a few cells where the idea is a few lines (softmax cross-entropy, Dice, InfoNCE, ...)
between ``# BEGIN SOLUTION`` and ``# END SOLUTION``; the student twins in ``notebooks/student/`` replace that block
by ``raise NotImplementedError(...)`` (``tests/student_twins.py`` writes them). The cell after it calls ``check``:
it runs the student's function and the reference on inputs drawn fresh each time and says whether they agree,
showing the first input where they do not, never the reference's code.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def check(candidate: Callable, reference: Callable, make_inputs: Callable[[np.random.Generator], tuple],
          n: int = 5, atol: float = 1e-6, seed: int | None = None) -> None:
    """Compare ``candidate(*inputs)`` with ``reference(*inputs)`` on ``n`` fresh input tuples; print the verdict.

    Outputs may be numbers, arrays, tensors or tuples of them; they agree within ``atol``. The verdict is printed,
    not returned, so that a notebook cell shows it and nothing else.
    """
    rng = np.random.default_rng(seed)
    for k in range(n):
        inputs = make_inputs(rng)
        try:
            got = candidate(*inputs)
        except NotImplementedError:
            print("Not written yet: fill in the cell above, then run this one again.")
            return
        want = reference(*inputs)
        if not _close(got, want, atol):
            print(f"✘ Case {k + 1} of {n} disagrees.\n  inputs: {_short(inputs)}\n  yours: {_short(got)}\n"
                  f"  expected: {_short(want)}")
            return
    print(f"✔ Your function agrees with the course's reference on {n} fresh inputs.")


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def _close(a, b, atol: float) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))
    x, y = _as_array(a), _as_array(b)
    return x.shape == y.shape and bool(np.allclose(x, y, atol=atol, rtol=1e-5, equal_nan=True))


def _short(x) -> str:
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(_short(v) for v in x) + ")"
    if isinstance(x, (torch.Tensor, np.ndarray)):
        arr = _as_array(x)
        text = np.array2string(arr.ravel()[:6], precision=4)
        return f"array shape {arr.shape}: {text}{' ...' if arr.size > 6 else ''}"
    return repr(x)
