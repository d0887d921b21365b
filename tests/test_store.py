"""The artifact store: reuse under the same result-relevant settings, retrain when one changes, refuse a bad file."""
import json

import pytest
import torch
from torch import nn

from visfuse_utils import data, recipes, store
from visfuse_utils.synthscan import make_synthscan


@pytest.fixture()
def build_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path))
    monkeypatch.delenv("VISFUSE_RETRAIN", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def splits():
    train_set, val_set, _ = data.split(make_synthscan(90, seed=0, image_size=16), seed=0)
    return train_set, val_set


def frozen_base_model():
    torch.manual_seed(0)  # build() must recreate frozen parts exactly
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model[0].requires_grad_(False)
    return model


def test_device_and_progress_reuse_a_stored_model_and_a_changed_setting_trains_anew(build_dir, splits, capsys):
    first, art = recipes.image_expert(*splits, seed=0, epochs=1, lr=1e-3, progress=False)
    assert not art.reused and "none stored yet" in capsys.readouterr().out
    # another device and a progress bar change nothing that is learnt: the stored model comes back. (No CUDA
    # here: had the store tried to train on "cuda", this call would fail.)
    again, art2 = recipes.image_expert(*splits, seed=0, epochs=1, lr=1e-3, device="cuda", progress=True)
    assert art2.reused and art2.key == art.key and "reused" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert art2.train_seconds == art.train_seconds > 0  # the original training time travels with the model
    # a result-relevant setting trains anew, and the line says which setting differs
    _, art3 = recipes.image_expert(*splits, seed=0, epochs=1, lr=2e-3, progress=False)
    assert not art3.reused and art3.key != art.key
    assert "lr 0.001 -> 0.002" in capsys.readouterr().out
    _, art4 = recipes.image_expert(*splits, seed=1, epochs=1, lr=1e-3, progress=False)
    assert not art4.reused
    assert len(store.stored("image_expert")) == 3


def test_other_data_trains_anew(build_dir, splits):
    _, art = recipes.image_expert(*splits, seed=0, epochs=1, progress=False)
    train_set, val_set = splits
    changed = train_set.subset(range(len(train_set)))
    changed.texts[0] += " edited"  # one note differs: another data set, another key
    _, art2 = recipes.image_expert(changed, val_set, seed=0, epochs=1, progress=False)
    assert not art2.reused and art2.config["data"]["train"] != art.config["data"]["train"]


def test_speed_only_settings_are_refused_in_a_config():
    with pytest.raises(ValueError, match="speed-only"):
        store.config_key({"lr": 1e-3, "device": "cuda"})
    with pytest.raises(ValueError, match="speed-only"):
        store.config_key({"inner": {"progress": True}})
    assert store.config_key({"a": 1, "b": [1, 2]}) == store.config_key({"b": [1, 2], "a": 1})


def test_only_what_training_changes_is_stored_and_it_reloads_exactly(build_dir):
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model[2].weight.add_(1.0)
        model.train()
        model(torch.randn(16, 4))  # updates the BatchNorm statistics
        return {"train_seconds": 1.5}

    trained, art = store.load_or_train("toy", {"recipe": "toy/1"}, frozen_base_model, train, verbose=False)
    saved = torch.load(build_dir / "artifacts" / f"toy-{art.key}.pt", weights_only=True)
    assert "0.weight" not in saved and "2.weight" in saved and "1.running_mean" in saved
    loaded, art2 = store.load_or_train("toy", {"recipe": "toy/1"}, frozen_base_model, train, verbose=False)
    assert art2.reused and calls == [1] and art2.train_seconds == 1.5
    x = torch.randn(5, 4)
    assert torch.equal(trained(x), loaded(x))


def test_a_changed_file_is_refused(build_dir):
    _, art = store.load_or_train("toy", {"recipe": "toy/1"}, frozen_base_model, lambda m: None, verbose=False)
    weights = build_dir / "artifacts" / f"toy-{art.key}.pt"
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(RuntimeError, match="sha256"):
        store.load_or_train("toy", {"recipe": "toy/1"}, frozen_base_model, lambda m: None, verbose=False)
    manifest = json.loads((build_dir / "artifacts" / f"toy-{art.key}.json").read_text())
    assert manifest["config"] == {"recipe": "toy/1"} and manifest["name"] == "toy"


def test_retrain_on_request(build_dir, monkeypatch):
    calls = []
    store.load_or_train("toy", {"recipe": "toy/1"}, frozen_base_model, lambda m: calls.append(1), verbose=False)
    monkeypatch.setenv("VISFUSE_RETRAIN", "1")
    _, art = store.load_or_train("toy", {"recipe": "toy/1"}, frozen_base_model, lambda m: calls.append(1),
                                 verbose=False)
    assert calls == [1, 1] and not art.reused and art.reason == "retrain requested"
