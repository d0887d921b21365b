"""From notebook to cluster: the loop under Accelerate on 2 CPU processes, the command, resuming, lazy data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visfuse_utils import data as D
from visfuse_utils import lazydata, train_cli, userdata

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
CLI = ["-m", "visfuse_utils.train_cli", "--profile", "smoke", "--n-samples", "120", "--no-progress"]


def _run(args, tmp_path, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_fit_on_two_processes_equals_one_process_with_the_same_global_batch(tmp_path):
    """DDP averages the two halves' gradients: the same steps as one process on the whole batch, or as one
    process accumulating two half batches (float32 summation order aside: 1e-5)."""
    script = str(ROOT / "tests" / "ddp_fit.py")
    _run([sys.executable, script, "--batch", "16", "--out", str(tmp_path / "one")], tmp_path)
    _run(TORCHRUN + [script, "--batch", "8", "--out", str(tmp_path / "two")], tmp_path)
    _run([sys.executable, script, "--batch", "8", "--accumulate", "2", "--out", str(tmp_path / "acc")], tmp_path)
    _run(TORCHRUN + [script, "--batch", "8", "--objective", "--out", str(tmp_path / "own")], tmp_path)
    _run([sys.executable, script, "--batch", "8", "--out", str(tmp_path / "half")], tmp_path)
    one, two, acc, own, half = (_weights(tmp_path / k / "weights.pt") for k in ("one", "two", "acc", "own", "half"))
    runs = {k: json.loads((tmp_path / k / "run.json").read_text()) for k in ("one", "two")}
    for other in (two, acc, own):  # own: a model with its own objective() syncs through DDP as well
        assert all(torch.allclose(one[k], other[k], atol=1e-5) for k in one)
    assert max((one[k] - half[k]).abs().max() for k in one) > 1e-2  # half the batch alone: another result
    assert runs["two"]["processes"] == 2 and runs["two"]["seen"] == [144, 144]  # 96 rows x 3 epochs, halved
    assert runs["one"]["seen"] == [288]
    np.testing.assert_allclose(runs["one"]["history"]["val"]["loss"], runs["two"]["history"]["val"]["loss"],
                               rtol=1e-5)  # validation gathered from both processes, padding dropped


def test_command_on_two_processes_splits_the_data(tmp_path):
    out = tmp_path / "run"
    _run(TORCHRUN + CLI + ["--fusion", "concat", "--epochs", "1", "--batch-size", "16", "--out", str(out)], tmp_path)
    res = json.loads((out / "results" / "train_concat.json").read_text())
    meta, n_train = res["meta"], res["meta"]["n_train"]
    assert meta["processes"] == 2 and meta["global_batch"] == 32
    seen = meta["samples_per_process"]
    assert n_train <= sum(seen) < n_train + 32  # every sample once; the shorter shard evened out by repeats
    assert all(abs(s - n_train / 2) <= 16 for s in seen)
    assert 0 <= res["models"]["concat"]["accuracy"] <= 1 and (out / "model.pt").is_file()


def test_command_resumes_where_it_stopped(tmp_path):
    """Stopped after epoch 1 by its time limit, then resumed: the same weights as one uninterrupted run."""
    base = [sys.executable] + CLI + ["--fusion", "concat", "--freeze-text", "--epochs", "2"]
    _run(base + ["--out", str(tmp_path / "straight")], tmp_path)
    stopped = _run(base + ["--max-minutes", "0", "--out", str(tmp_path / "split")], tmp_path)
    assert "stopped after epoch 1" in stopped.stdout and not (tmp_path / "split" / "results").exists()
    refused = subprocess.run(base + ["--out", str(tmp_path / "split")], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    changed = subprocess.run(base + ["--lr", "0.01", "--resume", "--out", str(tmp_path / "split")], cwd=ROOT,
                             capture_output=True, text=True)
    assert changed.returncode != 0 and "'lr'" in changed.stderr
    _run(base + ["--resume", "--out", str(tmp_path / "split")], tmp_path)
    a, b = (_weights(tmp_path / k / "model.pt") for k in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((tmp_path / k / "results" / "train_concat.json").read_text())["meta"]["history"]
              for k in ("straight", "split"))
    assert ha["train_loss"] == hb["train_loss"] and len(hb["train_loss"]) == 2
    model, names = train_cli.load_model(tmp_path / "split")  # rebuilt from config.json, weights from model.pt
    assert names == ["normal", "benign", "malignant"]
    assert all(torch.equal(v, b[k]) for k, v in model.state_dict().items())


def test_command_help_and_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "visfuse_utils.train_cli", "--help"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0
    for option in ("--data", "--fusion", "--text-model", "--accumulate", "--mixed-precision", "--resume",
                   "--max-minutes", "torchrun", "accelerate launch"):
        assert option in out.stdout
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--batch-size", "0"])
    with pytest.raises(SystemExit):  # the label rule chooses SynthScan's labels; a CSV has its own
        train_cli.parse_args(["--data", "my.csv", "--rule", "consistency"])
    assert train_cli.parse_args(["--rule", "consistency"]).rule == "consistency"


@pytest.fixture()
def photo_csv(tmp_path):
    """Eighteen images of three sizes and modes, with notes and string labels."""
    rows = []
    for i in range(18):
        mode, size = [("RGB", (40, 30)), ("L", (20, 50)), ("RGBA", (16, 16))][i % 3]
        Image.new(mode, size, (20 * i, 200 - 10 * i, 90, 255)[: len(mode)] if mode != "L" else 25 * i).save(
            tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,note number {i},{['cat', 'dog', 'émeu'][i % 3]}")
    path = tmp_path / "data.csv"
    path.write_text("image,text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_lazy_csv_reads_what_load_csv_reads(photo_csv):
    eager = userdata.load_csv(photo_csv, image_size=24, channels=3)
    lazy = lazydata.read_csv(photo_csv, image_size=24, channels=3)
    assert lazy.class_names == eager.class_names and np.array_equal(lazy.labels, eager.labels)
    assert all(np.array_equal(lazy.image(i), eager.images[i]) for i in range(len(lazy)))
    parts = lazydata.split(lazy, seed=1)
    for view, ref in zip(parts, D.split(eager, seed=1)):
        assert view.texts == ref.texts and np.array_equal(view.image(0), ref.images[0])
    item = lazydata.LazyDataset(parts[0])[0]
    assert torch.equal(item["image"], D.MultimodalDataset(D.split(eager, seed=1)[0])[0]["image"])


def test_lazy_csv_errors_name_the_row(photo_csv):
    (photo_csv.parent / "im4.png").write_bytes(b"not a png")
    lazy = lazydata.read_csv(photo_csv)  # the table is sound; the bad file shows when it is read
    with pytest.raises(D.DataError, match=r"row 5 \(line 6\), column 'image'.*cannot be read as an image"):
        lazy.image(4)
    (photo_csv.parent / "im4.png").unlink()
    with pytest.raises(D.DataError, match=r"data.csv, row 5 \(line 6\), column 'image'.*does not exist"):
        lazydata.read_csv(photo_csv)


def test_datasets_bridge_built_locally(tmp_path, photo_csv):
    datasets = pytest.importorskip("datasets")
    eager = userdata.load_csv(photo_csv, image_size=24)
    names = sorted({"cat", "dog", "émeu"})
    ds = datasets.Dataset.from_dict(
        {"img": [str(photo_csv.parent / f"im{i}.png") for i in range(18)],
         "note": [f"note number {i}" for i in range(18)], "y": [names.index(["cat", "dog", "émeu"][i % 3])
                                                             for i in range(18)]},
        features=datasets.Features({"img": datasets.Image(), "note": datasets.Value("string"),
                                    "y": datasets.ClassLabel(names=names)}))
    ds.save_to_disk(str(tmp_path / "saved"))
    rows = lazydata.from_hf(lazydata.load_hf(str(tmp_path / "saved")), "img", "note", "y", image_size=24)
    assert rows.class_names == eager.class_names and np.array_equal(rows.labels, eager.labels)
    assert all(np.array_equal(rows.image(i), eager.images[i]) for i in range(18))
    batch = next(iter(lazydata.make_loader(rows, batch_size=4)))
    assert batch["image"].shape == (4, 1, 24, 24) and batch["label"].tolist() == eager.labels[:4].tolist()
    with pytest.raises(D.DataError, match=r"no column 'text'.*--text-col"):
        lazydata.from_hf(ds, "img", "text", "y")
    empty = ds.map(lambda r, i: {"note": "" if i == 2 else r["note"]}, with_indices=True)
    with pytest.raises(D.DataError, match=r"row 2, column 'note': the text is empty"):
        lazydata.from_hf(empty, "img", "note", "y")
    cats = ds.filter(lambda r: r["y"] == 0)
    with pytest.raises(D.DataError, match=r"'y' holds only one class \('cat'\).*add rows of another class"):
        lazydata.from_hf(cats, "img", "note", "y")


def test_large_profile_reports_claims_without_stopping():
    import visfuse_utils as vf

    assert vf.get_profile("large").n_samples > vf.get_profile("full").n_samples
    claim = vf.Claims("large")
    claim(False, "a sentence written from the full profile's numbers")
    assert claim.records == [{"text": "a sentence written from the full profile's numbers", "held": False}]
