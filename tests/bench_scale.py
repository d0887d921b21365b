"""`make bench` (or `python tests/bench_scale.py`): the scale-out figures of docs/benchmarks.md.

1. Peak memory of reading N image files (a CSV of PNGs) through the in-memory loader (``userdata.load_csv``,
   every image in one array) against the lazy one (``lazydata.read_csv``, images opened when asked for), each
   in a fresh process that builds its loader and reads one epoch; DataLoader workers 0, so one process holds it
   all.
2. Training throughput of the command (``train_cli``) alone and as 2 processes under torchrun (gloo, CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_files(folder: Path, n: int, size: int) -> Path:
    """``n`` PNG scans (SynthScan's, ``n // 10`` distinct ones each written 10 times) and their CSV; reused."""
    import numpy as np
    from PIL import Image

    from visfuse_utils.synthscan import synthscan_cached

    csv = folder / f"scans_{n}_{size}.csv"
    if csv.is_file():
        return csv
    distinct = synthscan_cached(max(10, n // 10), seed=0, image_size=size)
    (folder / "png").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        k = i % len(distinct)
        name = f"png/{size}_{i:06d}.png"
        Image.fromarray(np.asarray(distinct.images[k, 0])).save(folder / name)
        rows.append((name, distinct.texts[k].replace('"', "'"), distinct.class_names[distinct.labels[k]]))
    csv.write_text("image,text,label\n" + "".join(f'{a},"{b}",{c}\n' for a, b, c in rows), encoding="utf-8")
    return csv


def read_once(kind: str, csv: str, size: int) -> None:
    """One epoch through a loader of ``kind`` ("in-memory" or "lazy"); prints seconds and peak RSS as JSON."""
    from visfuse_utils import data, lazydata, userdata

    start = time.perf_counter()
    if kind == "in-memory":
        loader = data.make_loader(userdata.load_csv(csv, image_size=size), None, 256, shuffle=True)
    else:
        loader = lazydata.make_loader(lazydata.read_csv(csv, image_size=size), None, 256, shuffle=True)
    n = sum(len(b["label"]) for b in loader)
    print(json.dumps({"kind": kind, "samples": n, "seconds": time.perf_counter() - start,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10}))


def bench_memory(n: int, size: int) -> None:
    """Both loaders on n // 10 and n files: the in-memory one grows with the data, the lazy one stays flat."""
    folder = Path(os.environ.get("VISFUSE_BENCH_FILES", Path(tempfile.gettempdir()) / "visfuse_bench_files"))
    for count in (n // 10, n):
        start = time.perf_counter()
        csv = write_files(folder, count, size)
        print(f"{count:,} PNG files of {size}x{size} px in {folder} (written or reused in "
              f"{time.perf_counter() - start:.0f} s)")
        for kind in ("in-memory", "lazy"):
            out = subprocess.run([sys.executable, __file__, "--read-once", kind, str(csv), str(size)], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {kind:>9} loader, one epoch of {r['samples']:,} images: {r['seconds']:.1f} s, "
                  f"peak resident memory {r['peak_mib']:,.0f} MiB")


def bench_processes(n_samples: int, epochs: int) -> None:
    import torch

    common = ["-m", "visfuse_utils.train_cli", "--profile", "full", "--n-samples", str(n_samples), "--fusion",
              "concat", "--epochs", str(epochs), "--batch-size", "32", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (1, 2):
            launch = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                          "--standalone", "--nproc_per_node", "2"]
            env = dict(os.environ) if procs == 1 else {**os.environ, "OMP_NUM_THREADS": "1"}
            out = Path(tmp) / str(procs)
            subprocess.run(launch + common + ["--out", str(out)], cwd=ROOT, env=env, check=True,
                           capture_output=True)
            res = json.loads((out / "results" / "train_concat.json").read_text())
            m = res["models"]["concat"]
            threads = torch.get_num_threads() if procs == 1 else 1
            print(f"train_cli concat, {procs} process(es) x {threads} thread(s), global batch "
                  f"{res['meta']['global_batch']}: {m['samples_per_second']:.1f} samples/s "
                  f"({m['train_seconds']:.0f} s for {epochs} epoch(s) of {res['meta']['n_train']})")


def bench_scale(quick: bool = False) -> None:
    bench_memory(400 if quick else 20_000, 32 if quick else 128)
    bench_processes(120 if quick else 1000, 1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--read-once", nargs=3, metavar=("KIND", "CSV", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.read_once:
        read_once(args.read_once[0], args.read_once[1], int(args.read_once[2]))
    else:
        bench_scale(args.quick)
