"""The shared training loop: it learns, checkpoints round-trip, early stopping stops, runs repeat."""
import torch
from torch import nn

import visfuse_utils as vf
from visfuse_utils import train as T


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, batch):
        return self.lin(batch["image"])


def loader(n=64, seed=0, shuffle=True, noise=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if noise else x[:, :3].argmax(1)
    ds = [{"image": x[i], "label": y[i]} for i in range(n)]
    collate = lambda items: {"image": torch.stack([i["image"] for i in items]),  # noqa: E731
                             "label": torch.stack([i["label"] for i in items])}
    return torch.utils.data.DataLoader(ds, batch_size=16, shuffle=shuffle, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(seed))


def test_one_step_lowers_the_loss():
    vf.set_seed(0)
    model = Linear()
    batch = next(iter(loader(shuffle=False)))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = nn.functional.cross_entropy(model(batch), batch["label"])
    before.backward()
    opt.step()
    after = nn.functional.cross_entropy(model(batch), batch["label"])
    assert after < before


def test_fit_learns_and_restores_best(tmp_path):
    vf.set_seed(0)
    model = Linear()
    hist = T.fit(model, loader(256), loader(128, seed=1, shuffle=False), epochs=8, lr=0.05,
                 checkpoint=tmp_path / "best.pt", progress=False)
    assert hist.val_accuracy[-1] > 0.8 and hist.train_loss[-1] < hist.train_loss[0]
    assert (tmp_path / "best.pt").is_file() and not list(tmp_path.glob("*.tmp"))
    best = min(range(len(hist.val_loss)), key=hist.val_loss.__getitem__)
    assert hist.best_epoch == best
    probs, _ = T.predict(model, loader(128, seed=1, shuffle=False))
    val = nn.functional.nll_loss(torch.log(torch.tensor(probs)), torch.tensor(_)).item()
    assert abs(val - hist.val_loss[best]) < 1e-4  # the model holds the best epoch's weights


def test_checkpoint_roundtrip(tmp_path):
    a, b = Linear(), Linear()
    T.save_checkpoint(a, tmp_path / "m.pt")
    T.load_checkpoint(b, tmp_path / "m.pt")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_early_stopping_stops():
    vf.set_seed(0)
    # labels are noise: validation loss stops improving quickly
    hist = T.fit(Linear(), loader(64, noise=True), loader(64, seed=5, shuffle=False, noise=True), epochs=50,
                 lr=0.5, patience=2, progress=False)
    assert len(hist.train_loss) < 50
    assert len(hist.train_loss) - 1 - hist.best_epoch == 2


def test_deterministic_on_cpu():
    runs = []
    for _ in range(2):
        vf.set_seed(7)
        model = Linear()
        T.fit(model, loader(128), loader(64, seed=1, shuffle=False), epochs=2, progress=False)
        runs.append(model.lin.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])


def test_warmup_cosine_schedule():
    f = T.warmup_cosine(total_steps=100, warmup_steps=10)
    assert f(0) == 0.1 and f(9) == 1.0 and abs(f(10) - 1.0) < 1e-9 and f(100) < 1e-9
