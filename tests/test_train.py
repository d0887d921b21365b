"""The shared training loop: it learns, restores the best epoch, takes any objective and learning-rate groups."""
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


class Pull(nn.Module):
    """A model with its own objective: pull a vector to a target. Its 'validation' is minus the distance."""

    def __init__(self, target):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.target = target

    def objective(self, batch):
        return ((self.w - self.target) ** 2).sum() * batch["image"].new_ones(()).mean()


def loader(n=64, seed=0, shuffle=True, noise=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if noise else x[:, :3].argmax(1)
    ds = [{"image": x[i], "label": y[i], "index": i} for i in range(n)]

    def collate(items):
        return {"image": torch.stack([i["image"] for i in items]), "label": torch.stack([i["label"] for i in items]),
                "index": torch.tensor([i["index"] for i in items])}

    return torch.utils.data.DataLoader(ds, batch_size=16, shuffle=shuffle, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(seed))


def test_lr_groups_by_name_prefix_longest_wins_and_frozen_left_out():
    model = nn.Sequential()
    model.add_module("encoder", nn.Linear(2, 2))
    model.add_module("encoder_head", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 2))
    model.head.bias.requires_grad_(False)
    groups = T.lr_groups(model, 1e-3, {"encoder": 5e-5, "encoder_head": {"lr": 0.1, "weight_decay": 0.0}})
    by_lr = {g["lr"]: g for g in groups}
    assert set(by_lr) == {1e-3, 5e-5, 0.1}
    assert {id(p) for p in by_lr[5e-5]["params"]} == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in by_lr[0.1]["params"]} == {id(p) for p in model.encoder_head.parameters()}
    assert by_lr[0.1]["weight_decay"] == 0.0
    assert [id(p) for p in by_lr[1e-3]["params"]] == [id(model.head.weight)]  # the frozen bias is left out


def test_fit_trains_on_the_models_own_objective_and_monitors_a_higher_is_better_measure():
    target = torch.tensor([1.0, -2.0, 0.5])
    model = Pull(target)
    seen = []

    def validate(m):
        seen.append(m.w.detach().clone())
        return {"closeness": -float(((m.w.detach() - target) ** 2).sum())}

    hist = T.fit(model, loader(64), None, epochs=6, lr=0.3, weight_decay=0.0, validate=validate,
                 monitor="closeness", patience=None, progress=False)
    assert hist.val["closeness"][-1] > hist.val["closeness"][0] and "loss" not in hist.val
    best = max(range(6), key=hist.val["closeness"].__getitem__)
    assert hist.best_epoch == best and torch.equal(model.w.detach(), seen[best])  # the best epoch is restored


def test_fit_learns_and_restores_best():
    vf.set_seed(0)
    model = Linear()
    hist = T.fit(model, loader(256), loader(128, seed=1, shuffle=False), epochs=8, lr=0.05, progress=False)
    assert hist.val_accuracy[-1] > 0.8 and hist.train_loss[-1] < hist.train_loss[0]
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
    assert not list(tmp_path.glob("*.tmp"))


def test_history_round_trips_through_a_dict():
    h = T.History(train_loss=[1.0, 0.5], val={"loss": [0.9, 0.7], "accuracy": [0.4, 0.6]}, best_epoch=1, seconds=3.0)
    again = T.History.from_dict(h.to_dict())
    assert again == h and again.val_loss == [0.9, 0.7] and again.val_accuracy == [0.4, 0.6]
    frame = again.as_frame()
    assert len(frame) == 6 and set(frame.metric) == {"loss", "accuracy"}


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
