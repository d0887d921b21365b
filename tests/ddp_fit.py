"""``train.fit`` under an Accelerator, launched alone or by torchrun: the 2-process test's worker.

Trains a small deterministic model (no dropout, no batch norm: the result depends only on the data order and
the gradient) on fixed data with a per-process batch of ``--batch``, then the main process writes the final
weights, the history and how many samples each process saw to ``--out``.
"""
import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from visfuse_utils import set_seed, train


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, batch):
        return self.body(batch["x"])


class OwnObjective(Net):
    """The same model with the loss as its own ``objective`` (as notebook 06's and 07's models have)."""

    def objective(self, batch):
        return torch.nn.functional.cross_entropy(self(batch), batch["label"])


class Rows(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, :3] * torch.tensor([1.0, -1.0, 0.5])).argmax(1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "label": self.y[i], "index": i}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--objective", action="store_true", help="train through the model's own objective()")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    acc = Accelerator(cpu=True, gradient_accumulation_steps=args.accumulate)
    set_seed(0)
    model = OwnObjective() if args.objective else Net()
    loader = torch.utils.data.DataLoader(Rows(96, 0), batch_size=args.batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    val = torch.utils.data.DataLoader(Rows(40, 1), batch_size=args.batch)
    hist = train.fit(model, loader, val, epochs=args.epochs, lr=0.05, patience=None, accelerator=acc,
                     progress=False)
    seen = acc.gather(torch.tensor([hist.samples_seen])).tolist()
    if acc.is_main_process:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.out / "weights.pt")
        (args.out / "run.json").write_text(json.dumps({"history": hist.to_dict(), "seen": seen,
                                                       "processes": acc.num_processes}))


if __name__ == "__main__":
    main()
