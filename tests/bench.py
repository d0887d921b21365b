"""`make bench`: throughput figures for docs/benchmarks.md (never asserted in tests).

Prints one line per measurement; `--quick` shrinks every size, to check the script
itself in seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import time

import numpy as np
import torch

import visfuse_utils as vf
from visfuse_utils import data, interpret, models, pretrained, store, synthscan, train

from bench_scale import bench_scale


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_generation(n: int) -> None:
    torch.set_num_threads(1)
    secs = timed(lambda: synthscan.make_synthscan(n, seed=0, image_size=64), repeat=2)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"synthscan generation: {n} samples (64 px) in {secs:.2f} s = {n / secs:,.0f} samples/s (1 thread)")


def _train_throughput(model, loader, device) -> float:
    hist = train.fit(model, loader, loader, epochs=1, lr=1e-4, device=device, progress=False)
    return len(loader.dataset) / hist.seconds  # includes the validation pass over the same data


def bench_training(n: int, device) -> None:
    d = synthscan.make_synthscan(n, seed=0, image_size=64)
    tok, enc, how = pretrained.load_text_model()
    vf.set_seed(0)
    cnn = _train_throughput(models.ImageClassifier(models.SmallCNN(), 3), data.make_loader(d, None, 64, True), device)
    print(f"CNN training: {cnn:,.0f} samples/s (SmallCNN, 64 px, batch 64, train + eval pass)")
    loader = data.make_loader(d, tok, 32, True)
    txt = _train_throughput(models.TextClassifier(models.TextEncoder(enc), 3), loader, device)
    print(f"text model training: {txt:,.1f} samples/s (MiniLM-L6 from {how}, batch 32, full fine-tuning)")
    for kind in ("concat", "token"):
        _, enc_k, _ = pretrained.load_text_model()
        fus = _train_throughput(models.build_fusion_model(kind, enc_k, 3), loader, device)
        print(f"fusion training ({kind}): {fus:,.1f} samples/s = {fus / txt:.2f} x the text-only model")


def benchmark_ig(model: torch.nn.Module, tokenizer, samples, n: int = 8, n_steps: int = 50,
                 device="cpu") -> dict[str, float]:
    """Attributions per second for image IG (black baseline), text LIG and IG on word presence,
    on ``n`` of ``samples`` (a ``MultimodalData``).

    For ``make bench``: ``data`` is a ``MultimodalData``; the model is used as it is (trained
    or not: the cost does not depend on the weights).
    """
    from captum.attr import IntegratedGradients

    model = model.to(device).eval()
    ex = interpret.FusionExplainer(model, tokenizer)
    ds = data.MultimodalDataset(samples.subset(np.arange(min(n, len(samples)))), tokenizer)
    batch = data.collate([ds[i] for i in range(len(ds))], pad_id=ex.pad_id)
    images, ids, mask = (batch[k].to(ex.device) for k in ("image", "input_ids", "attention_mask"))
    targets = batch["label"].to(ex.device)
    start = time.perf_counter()
    IntegratedGradients(ex.image_forward).attribute(
        images, baselines=ex.blank_value, target=targets, n_steps=n_steps,
        additional_forward_args=(ids, mask, ex.text_features(ids, mask)),
        internal_batch_size=ex.internal_batch_size)
    image_rate = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    ex.explain_texts(list(ds.data.texts), images, targets.tolist(), "lig", n_steps=n_steps, progress=False)
    text_rate = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    ex.explain_texts(list(ds.data.texts), images, targets.tolist(), "presence", n_steps=n_steps, progress=False)
    presence_rate = len(images) / (time.perf_counter() - start)
    return {"image_ig_per_s": image_rate, "text_lig_per_s": text_rate, "text_presence_ig_per_s": presence_rate,
            "n_steps": n_steps, "device": str(ex.device)}


def bench_attribution(n: int, steps: int, device) -> None:
    d = synthscan.make_synthscan(max(n, 8), seed=0, image_size=64)
    tok, enc, _ = pretrained.load_text_model()
    for kind in ("concat", "token"):
        model = models.build_fusion_model(kind, enc, 3)
        model.text_encoder.requires_grad_(kind == "token")  # as notebook 04 trains them
        r = benchmark_ig(model, tok, d, n=n, n_steps=steps, device=device)
        print(f"attribution ({kind} fusion, {steps} steps): image IG {r['image_ig_per_s']:.2f} /s, "
              f"text LIG {r['text_lig_per_s']:.2f} /s, text IG on word presence {r['text_presence_ig_per_s']:.2f} /s")


def bench_store(n: int, epochs: int) -> None:
    """What reusing a stored model costs against training it: notebook 03's text expert, then notebook 04's
    concat fusion head (only its head is stored), in a throw-away store."""
    import tempfile

    from visfuse_utils import recipes

    tr, va, _ = data.split(synthscan.make_synthscan(n, seed=0, image_size=64), seed=0)
    tok, enc, _ = pretrained.load_text_model()
    profile = vf.get_profile("smoke")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VISFUSE_BUILD"] = tmp
        for label in ("trained", "reused"):
            start = time.perf_counter()
            txt, txt_art = recipes.text_expert(tr, va, tok, enc, text_model="default", seed=0, epochs=epochs,
                                               progress=False)
            mid = time.perf_counter()
            img, img_art = recipes.image_expert(tr, va, seed=0, epochs=epochs, progress=False)
            ex = recipes.Experts(img, txt, img_art, txt_art)
            start_fusion = time.perf_counter()
            _, fus_art = recipes.fusion("concat", ex, tr, va, tok, enc, profile=profile, seed=0, progress=False)
            end = time.perf_counter()
            size = {p.name.split("-")[0]: p.stat().st_size / 2**20 for p in store.artifacts_dir().glob("*.pt")}
            print(f"store ({label}): text expert {mid - start:.2f} s, concat fusion {end - start_fusion:.2f} s "
                  f"(stored: text expert {size['text_expert']:.1f} MiB, fusion head {size['fusion_concat']:.2f} MiB)")
        del os.environ["VISFUSE_BUILD"]


def bench_llm(steps: int, n_reports: int, device) -> None:
    """Notebook 07's decoder: training samples/s of a caption step (projector + LoRA everywhere, batch 16) and of a
    diagnosis step (LoRA on the upper half, batch 8), generation tokens/s in float32 and int8, peak memory."""
    import copy
    import resource

    from visfuse_utils import llm, recipes

    d = synthscan.make_synthscan(max(64, n_reports), seed=0, image_size=64)
    vf.set_seed(0)
    model = recipes.writer_model(llm.DEFAULT_LLM, 128)
    tokenizer = model.tokenizer
    feats = torch.randn(len(d), 128)
    captions = llm.PromptSet(tokenizer, feats, [model.image_prompt(recipes.FINDINGS_PROMPT)] * len(d),
                             [" " + c for c in d.captions])
    notes = llm.PromptSet(tokenizer, feats, [model.image_prompt(recipes.DIAGNOSIS_PROMPT.format(t)) for t in d.texts],
                          [f" {d.class_names[y]}." for y in d.labels])
    h = llm.train_stage(model, captions, captions.head(16), steps=steps, batch_size=16, lr=1e-4, device=device,
                        progress=False)
    print(f"LLM caption training: {h.samples_per_second:.1f} samples/s (SmolLM2-135M, projector + LoRA "
          f"r16 on all 30 layers, batch 16, {steps} steps)")
    recipes.with_diagnosis_adapter(model, 15)
    h = llm.train_stage(model, notes, notes.head(8), steps=steps, batch_size=8, lr=1e-4, device=device,
                        progress=False)
    print(f"LLM diagnosis training: {h.samples_per_second:.1f} samples/s (LoRA r16 on layers 15-29, projector "
          f"frozen, batch 8, notes of {np.mean([len(tokenizer(t).input_ids) for t in d.texts]):.0f} tokens)")
    model.lm.set_adapter("default")
    plain = copy.deepcopy(model).cpu()
    plain.lm = plain.lm.merge_and_unload()
    prompts = [model.image_prompt(recipes.FINDINGS_PROMPT)] * n_reports
    for name, pattern in (("float32", None), ("int8, every linear layer", r"."),
                          ("int8, MLP gate and up projections", r"(gate|up)_proj$")):
        m = copy.deepcopy(plain)
        if pattern:
            chosen = {n: torch.ao.quantization.default_dynamic_qconfig for n, mod in m.lm.named_modules()
                      if isinstance(mod, torch.nn.Linear) and re.search(pattern, n)}
            m.lm = torch.ao.quantization.quantize_dynamic(m.lm, chosen, dtype=torch.qint8)
        m.eval()
        llm.write(m, feats[:8], prompts[:8], max_new_tokens=8)  # warm-up
        secs = timed(lambda m=m: llm.write(m, feats[:n_reports], prompts, max_new_tokens=40, min_new_tokens=40))
        print(f"LLM generation ({name}): {n_reports * 40 / secs:.0f} tokens/s ({n_reports} reports of 40 tokens, "
              "batches of 100, greedy)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"LLM peak resident memory of this process: {peak:,.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, only to check the script runs")
    ap.add_argument("--only", choices=["llm", "scale"], help="run only this benchmark")
    args = ap.parse_args()
    device = vf.get_device()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only == "llm":
        bench_llm(2 if args.quick else 10, 8 if args.quick else 100, device)
        return
    if args.only == "scale":
        bench_scale(args.quick)
        return
    bench_generation(200 if args.quick else 10_000)
    bench_training(64 if args.quick else 512, device)
    bench_attribution(2 if args.quick else 16, 4 if args.quick else 50, device)
    bench_store(60 if args.quick else 512, 1)
    bench_llm(2 if args.quick else 10, 8 if args.quick else 100, device)
    bench_scale(args.quick)


if __name__ == "__main__":
    main()
