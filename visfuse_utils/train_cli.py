"""Notebook 04's fusion training as a command: one CPU, one GPU or many, on SynthScan or your data.

The same three launch forms run the same code (``train.fit`` under an ``accelerate.Accelerator``)::

    python -m visfuse_utils.train_cli --data synthscan --fusion concat
    accelerate launch --multi_gpu --num_processes 4 -m visfuse_utils.train_cli --data my.csv --fusion concat
    torchrun --standalone --nproc_per_node 4 -m visfuse_utils.train_cli --data hf:./my_saved_dataset --fusion token

Each process reads its shard of every batch (data parallel, DDP); ``--batch-size`` is per process, so the
global batch is ``batch size x processes x accumulate``. A CSV or a ``datasets`` dataset is read lazily
(``lazydata``): images are opened in DataLoader workers, never held all at once. Unlike notebook 04, which
trains the experts and then fuses their frozen features (the economy of a 2-core CPU), the command trains
the chosen model end to end: a new CNN, and the pretrained text model at ``--text-lr``. After every epoch
``<out>/checkpoint.pt`` is written; ``--resume`` continues from it. The test split's metrics go to a results
file of the notebooks' schema, ``<out>/results/train_<fusion>.json``, and the best weights to ``<out>/model.pt``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import PROFILES, get_profile, set_seed
from .data import DataError
from .models import FUSIONS
from .pretrained import TextModelError

MODELS = ("image", "text") + FUSIONS  # the unimodal baselines of notebooks 02-03 and notebook 04's fusions
DEFAULT_TEXT_MODELS = {"large": "google-bert/bert-base-uncased"}  # else the course's MiniLM


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    intro, forms = __doc__.split("\n\n")[:2]
    p = argparse.ArgumentParser(prog="python -m visfuse_utils.train_cli", description=intro, formatter_class=_Help,
                                epilog=forms.replace("::", ":") + "\n" + __doc__.split("\n\n")[2].replace(
                                    "    ", "  "))
    d = p.add_argument_group("data")
    d.add_argument("--data", default="synthscan",
                   help="'synthscan', a CSV of image,text,label rows, or hf:NAME_OR_FOLDER (a datasets dataset: a "
                        "folder from save_to_disk, or a hub name while online)")
    d.add_argument("--image-root", help="folder the CSV's image paths are relative to (default: the CSV's folder)")
    d.add_argument("--image-col", default="image", help="image column (CSV: file paths; datasets: images or paths)")
    d.add_argument("--text-col", default="text", help="text column")
    d.add_argument("--label-col", default="label", help="label column (strings, integers or a ClassLabel)")
    d.add_argument("--hf-split", default="train", help="which split of a datasets dataset to read")
    d.add_argument("--channels", type=int, choices=(1, 3), default=1,
                   help="1: grayscale (as load_csv), 3: RGB; colour photographs need 3")
    d.add_argument("--n-samples", type=int, help="SynthScan size (default: the profile's)")
    d.add_argument("--rule", choices=("sum", "consistency"), default="sum",
                   help="SynthScan's label rule: the sum of image grade and note risk, or whether the scan shows the "
                        "finding the note claims (neither modality alone says anything)")
    d.add_argument("--image-size", type=int, help="image side in pixels (default: the profile's: 32 smoke, "
                                                  "64 full, 128 large)")
    d.add_argument("--workers", type=int, default=2, help="DataLoader worker processes reading images")
    m = p.add_argument_group("model")
    m.add_argument("--fusion", choices=MODELS, default="concat", help="model: a unimodal baseline or a fusion")
    m.add_argument("--text-model", help="hub id or folder of a BERT-family encoder (default: all-MiniLM-L6-v2; "
                                        "bert-base-uncased for the large profile)")
    m.add_argument("--freeze-text", action="store_true", help="keep the text model frozen (only the rest trains)")
    m.add_argument("--image-encoder", choices=("cnn", "efficientnet-lite0"), default="cnn",
                   help="cnn: a new SmallCNN trained with the rest; efficientnet-lite0: the ImageNet network, frozen "
                        "(offline weights, sha256 checked)")
    t = p.add_argument_group("training")
    t.add_argument("--profile", choices=PROFILES, help="sizes and epochs (default: $VISFUSE_PROFILE, else full)")
    t.add_argument("--epochs", type=int, help="epochs (default: the profile's finetune_epochs)")
    t.add_argument("--batch-size", type=int, default=32, help="samples per process per step")
    t.add_argument("--accumulate", type=int, default=1, help="batches per optimiser step (gradient accumulation)")
    t.add_argument("--lr", type=float, default=2e-3, help="learning rate of the CNN, fusion and head")
    t.add_argument("--text-lr", type=float, default=5e-5, help="learning rate of the pretrained text model")
    t.add_argument("--patience", type=int, default=3, help="epochs without a better validation loss before stopping")
    t.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"),
                   help="default: what `accelerate launch` was told, else bf16 (or fp16) on CUDA, else none")
    t.add_argument("--cpu", action="store_true", help="stay on the CPU even where a GPU is present")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the data order")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None,
                   help="run folder (default: build/train/<fusion> under the current folder)")
    o.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    o.add_argument("--max-minutes", type=float, help="stop after the epoch that ends past this many minutes (a "
                                                     "job's wall time); run again with --resume to continue")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "accumulate", "n_samples", "image_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.workers < 0:
        p.error(f"--workers must be 0 or more, got {args.workers}")
    if args.rule != "sum" and args.data.lower() != "synthscan":
        p.error(f"--rule {args.rule} chooses SynthScan's labels; {args.data} brings its own: leave --rule out")
    return args


def load_splits(args, profile):
    """(train, val, test) and a loader maker: in-memory SynthScan, or lazily read rows of a CSV or dataset."""
    from . import data, lazydata

    size = args.image_size or profile.image_size
    if args.data.lower() == "synthscan":
        full = data.load_data("synthscan", n=args.n_samples or profile.n_samples, seed=args.seed, image_size=size,
                              rule=args.rule)
        return data.split(full, seed=args.seed), data.make_loader
    if args.data.startswith("hf:"):
        ds = lazydata.load_hf(args.data[3:], split=args.hf_split)
        rows = lazydata.from_hf(ds, args.image_col, args.text_col, args.label_col, size, args.channels,
                                source=args.data[3:])
    else:
        rows = lazydata.read_csv(args.data, args.image_root, args.image_col, args.text_col, args.label_col, size,
                                 args.channels)

    def make_loader(part, tokenizer, batch_size, shuffle=False, seed=0, device=None):
        return lazydata.make_loader(part, tokenizer, batch_size, shuffle=shuffle, seed=seed, workers=args.workers,
                                    device=device)
    return lazydata.split(rows, seed=args.seed), make_loader


def build_model(kind: str, n_classes: int, channels: int, encoder, tokenizer, freeze_text: bool,
                image_encoder: str = "cnn"):
    """A fresh model of ``MODELS`` and its learning-rate groups' prefix for the text model (None: no text).

    ``image_encoder``: ``"cnn"`` a new SmallCNN that trains, or ``"efficientnet-lite0"`` the frozen ImageNet network.
    """
    from .models import ImageClassifier, SmallCNN, TextClassifier, TextEncoder, build_fusion_model
    from .pretrained import load_image_encoder

    images = SmallCNN(channels) if image_encoder == "cnn" else load_image_encoder(channels)
    if kind == "image":
        return ImageClassifier(images, n_classes), None
    if kind == "text":
        model, prefix = TextClassifier(TextEncoder(encoder), n_classes), "encoder"
    else:
        model = build_fusion_model(kind, encoder, n_classes, in_channels=channels, cls_id=tokenizer.cls_token_id,
                                   sep_id=tokenizer.sep_token_id, image_encoder=images)
        prefix = "text_encoder"
    if freeze_text:
        getattr(model, prefix).requires_grad_(False)
    return model, prefix


def mixed_precision(flag: str | None, cpu: bool) -> str:
    """``--mixed-precision``, else what ``accelerate launch`` set, else bf16 (fp16 without it) on CUDA, as
    ``train.fit`` does on its own; "no" elsewhere."""
    import torch

    if flag or os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return flag or os.environ["ACCELERATE_MIXED_PRECISION"]
    if cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def load_model(out: str | Path, device="cpu"):
    """``(model, class_names)`` of a finished run folder: the model rebuilt from its ``config.json``, the best
    weights from ``model.pt`` (``weights_only=True``). Its ``forward`` takes a batch of ``data.collate``."""
    from . import pretrained, train

    out = Path(out)
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results" / f"train_{config['fusion']}.json").read_text())
    meta = results["meta"]
    tokenizer, encoder = None, None
    if config["fusion"] != "image":
        tokenizer, encoder, _ = pretrained.load_text_model(meta["text_model"])
    channels = 1 if config["data"].lower() == "synthscan" else config["channels"]
    model, _ = build_model(config["fusion"], len(meta["class_names"]), channels, encoder, tokenizer, False,
                           config.get("image_encoder", "cnn"))
    return train.load_checkpoint(model, out / "model.pt", device).eval(), meta["class_names"]


def main(argv: list[str] | None = None) -> Path | None:
    """Train, evaluate on the test split and write the results; returns the results file (main process)."""
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from . import pretrained, train
    from .metrics import classification_metrics
    from .results import save_results

    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer ran before DataLoader workers fork
    profile = get_profile(args.profile)
    out = args.out or Path("build") / "train" / args.fusion
    checkpoint = out / "checkpoint.pt"
    started = time.perf_counter()
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1  # launched by torchrun or accelerate launch
    cpu = args.cpu or (several and not torch.cuda.is_available())  # CPU processes talk over gloo
    acc = Accelerator(cpu=cpu, mixed_precision=mixed_precision(args.mixed_precision, cpu),
                      gradient_accumulation_steps=args.accumulate,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("resume", "no_progress", "epochs", "workers", "out", "max_minutes")}
    config.update(profile=profile.name, processes=acc.num_processes)
    if checkpoint.exists() and not args.resume:
        raise SystemExit(f"{checkpoint} exists from an earlier run; pass --resume to continue it, or another --out.")
    if args.resume and checkpoint.exists():
        # runs from before --rule and --image-encoder existed used the sum rule and the CNN
        before = {"rule": "sum", "image_encoder": "cnn", **json.loads((out / "config.json").read_text())}
        changed = {k: (before.get(k), v) for k, v in config.items() if before.get(k) != v}
        if changed:
            raise SystemExit(f"--resume: these settings differ from the checkpoint's run {changed}; "
                             "use the same ones (only --epochs may grow), or another --out.")
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2))
    set_seed(args.seed)
    (train_set, val_set, test_set), make_loader = load_splits(args, profile)
    text_model = args.text_model or DEFAULT_TEXT_MODELS.get(profile.name, pretrained.DEFAULT_TEXT_MODEL)
    tokenizer, encoder = None, None
    if args.fusion != "image":
        tokenizer, encoder, how = pretrained.load_text_model(text_model)
        acc.print(f"text model {text_model} from the {how}")
    set_seed(args.seed)
    channels = 1 if args.data.lower() == "synthscan" else args.channels
    model, prefix = build_model(args.fusion, len(train_set.class_names), channels, encoder, tokenizer,
                                args.freeze_text, args.image_encoder)
    loaders = [make_loader(s, tokenizer, args.batch_size, shuffle=sh, seed=args.seed, device=acc.device)
               for s, sh in ((train_set, True), (val_set, False))]
    acc.print(f"{args.fusion} on {args.data}: {len(train_set)}/{len(val_set)}/{len(test_set)} train/val/test, "
              f"{acc.num_processes} process(es) on {acc.device}, global batch "
              f"{args.batch_size * acc.num_processes * args.accumulate}, mixed precision {acc.mixed_precision}")
    hist = train.fit(model, *loaders, epochs=args.epochs or profile.finetune_epochs, lr=args.lr,
                     lrs={prefix: args.text_lr} if prefix else None, patience=args.patience, accelerator=acc,
                     checkpoint=checkpoint, desc=args.fusion, progress=not args.no_progress,
                     time_limit=None if args.max_minutes is None else
                     60 * args.max_minutes - (time.perf_counter() - started))  # counted from the command's start
    if hist.stopped == "time limit":
        acc.print(f"stopped after epoch {len(hist.train_loss)} for --max-minutes {args.max_minutes}; the same "
                  "command with --resume continues from the checkpoint")
        return None
    test_loader = acc.prepare(make_loader(test_set, tokenizer, args.batch_size, device=acc.device))
    probs, labels, _ = train._predict(model, test_loader, acc.device, None, acc)
    seen = acc.gather(torch.tensor([hist.samples_seen], device=acc.device)).tolist()
    if not acc.is_main_process:
        return None
    train.save_checkpoint(model, out / "model.pt")
    metrics = classification_metrics(labels, probs)
    metrics.update(train_seconds=hist.seconds, samples_per_second=hist.samples_per_second * acc.num_processes,
                   epochs_run=len(hist.train_loss), best_epoch=hist.best_epoch + 1)
    meta = {"profile": profile.name, "data": args.data, "seed": args.seed, "device": str(acc.device),
            "class_names": list(train_set.class_names),
            "processes": acc.num_processes, "samples_per_process": seen, "global_batch":
            args.batch_size * acc.num_processes * args.accumulate, "mixed_precision": str(acc.mixed_precision),
            "text_model": text_model if prefix else None, "n_train": len(train_set), "n_test": len(test_set),
            "threads": torch.get_num_threads(), "history": hist.to_dict(), "command": " ".join(sys.argv)}
    path = save_results(f"train_{args.fusion}", {args.fusion: metrics}, meta=meta, folder=out / "results")
    print(f"test accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  -> {path}")
    return path


if __name__ == "__main__":
    try:
        main()
    except (DataError, TextModelError) as err:
        raise SystemExit(f"data error: {err}") from None
