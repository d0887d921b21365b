import os, time, sys, torch, numpy as np, torch.nn as nn
os.environ.setdefault("VISFUSE_BUILD", "/work/main/build")
import visfuse_utils as vf
from visfuse_utils import data, pretrained, recipes, synthscan
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import LoraConfig, get_peft_model
torch.manual_seed(0)
N1, N2, BS, K = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 4
profile = vf.get_profile("full")
d = data.load_data("synthscan", n=profile.n_samples, seed=0, image_size=profile.image_size)
tr, va, te = data.split(d, seed=0)
tok_t, enc, _ = pretrained.load_text_model(pretrained.DEFAULT_TEXT_MODEL)
ex = recipes.experts(tr, va, tok_t, enc, text_model=pretrained.DEFAULT_TEXT_MODEL, profile=profile, seed=0, progress=False)
cnn = ex.image.encoder.eval()
def grid(ds):
    with torch.no_grad():
        fm = cnn.feature_map(torch.as_tensor(ds.images).float())
        return fm.amax((2, 3))  # B x C: the CNN's own global max pool
t = time.time(); Ftr, Fte = grid(tr), grid(te); print("features", Ftr.shape, round(time.time() - t, 1))
out = "/work/main/build/llm/smollm2-135m-instruct-fp32"
tok = AutoTokenizer.from_pretrained(out); lm = AutoModelForCausalLM.from_pretrained(out)
lm.requires_grad_(False)
D = lm.config.hidden_size
scale = lm.get_input_embeddings().weight.detach().pow(2).mean().sqrt().item()
print("embedding rms", scale)
class Proj(nn.Module):
    def __init__(s_):
        super().__init__(); s_.net = nn.Sequential(nn.LayerNorm(Ftr.shape[-1]), nn.Linear(Ftr.shape[-1], D), nn.GELU(), nn.Linear(D, K * D))
    def forward(s_, f):
        y = s_.net(f).view(len(f), K, D)
        return y / y.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6) * scale
proj = Proj()
prompt = tok("Findings:", return_tensors="pt").input_ids[0]
def batch_inputs(model, F, caps):
    B = len(caps)
    tgt = [tok(" " + c + tok.eos_token).input_ids for c in caps]
    L = max(map(len, tgt))
    ids = torch.full((B, len(prompt) + L), tok.pad_token_id); lab = torch.full_like(ids, -100); att = torch.zeros_like(ids)
    for i, tt in enumerate(tgt):
        ids[i, :len(prompt)] = prompt; ids[i, len(prompt):len(prompt) + len(tt)] = torch.tensor(tt)
        lab[i, len(prompt):len(prompt) + len(tt)] = torch.tensor(tt); att[i, :len(prompt) + len(tt)] = 1
    emb = model.get_input_embeddings()(ids)
    pre = proj(F)
    x = torch.cat([pre, emb], 1); a = torch.cat([torch.ones(B, K, dtype=att.dtype), att], 1)
    l = torch.cat([torch.full((B, K), -100), lab], 1)
    return x, a, l
def key_clause(c):
    f = finding(c)
    return {"none": "No focal lesion.", "smooth": "A lesion with a smooth border.", "irregular": "A lesion with an irregular border."}.get(f, c)
def train(model, params, steps, lr, short=False):
    opt = torch.optim.AdamW(params, lr=lr); g = torch.Generator().manual_seed(0); t = time.time()
    for s in range(steps):
        idx = torch.randint(len(tr), (BS,), generator=g)
        x, a, l = batch_inputs(model, Ftr[idx], [key_clause(tr.captions[i]) if short else tr.captions[i] for i in idx])
        loss = model(inputs_embeds=x, attention_mask=a, labels=l).loss
        opt.zero_grad(); loss.backward(); opt.step()
        if s % 25 == 0: print(s, round(loss.item(), 3), round(time.time() - t, 1), flush=True)
    print("steps/s", steps / (time.time() - t))
def finding(c):
    c = c.lower()
    if "no focal lesion" in c: return "none"
    a = synthscan.caption_attributes(c)
    return a["border"] or ("irregular" if "irregular" in c else "smooth" if "smooth" in c else "?")
@torch.no_grad()
def evaluate(model, F, ds, n=300, shuffle=False, none=False, maxnew=40):
    model.eval(); outs = []; t = time.time()
    for s in range(0, n, 50):
        f = F[s:s + 50]
        if shuffle: f = f[torch.randperm(len(f), generator=torch.Generator().manual_seed(s))]
        emb = model.get_input_embeddings()(prompt.expand(len(f), -1))
        x = emb if none else torch.cat([proj(f), emb], 1)
        g = model.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long), max_new_tokens=maxnew, do_sample=False, pad_token_id=tok.pad_token_id)
        outs += tok.batch_decode(g, skip_special_tokens=True)
    print("gen s", round(time.time() - t, 1))
    truth = [finding(c) for c in ds.captions[:n]]; pred = [finding(o) for o in outs]
    acc = np.mean([p == q for p, q in zip(pred, truth)])
    attrs = {k: np.mean([synthscan.caption_attributes(o.lower())[k] == synthscan.caption_attributes(c.lower())[k] for o, c in zip(outs, ds.captions[:n])]) for k in synthscan.CAPTION_ATTRIBUTES}
    print("finding acc", round(acc, 3), {k: round(v, 2) for k, v in attrs.items()}); print(outs[:3], ds.captions[:3])
    model.train(); return acc
print("threads", torch.get_num_threads())
train(lm, list(proj.parameters()), N1, 1e-3, short=True)
peft = get_peft_model(lm, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0))
CLS = [tok(" " + c).input_ids[0] for c in d.class_names]
def diag_inputs(model, F, idx, ds, with_target=True):
    B = len(idx); seqs, labs = [], []
    for i in idx:
        p = tok("Note: " + ds.texts[i] + "\nDiagnosis:").input_ids
        t = tok(" " + ds.class_names[ds.labels[i]] + "." + tok.eos_token).input_ids if with_target else []
        seqs.append(p + t); labs.append([-100] * len(p) + t)
    L = max(map(len, seqs))
    ids = torch.full((B, L), tok.pad_token_id); lab = torch.full_like(ids, -100); att = torch.zeros_like(ids)
    for j, (sq, lb) in enumerate(zip(seqs, labs)):
        ids[j, :len(sq)] = torch.tensor(sq); lab[j, :len(sq)] = torch.tensor(lb); att[j, :len(sq)] = 1
    x = torch.cat([proj(F), model.get_input_embeddings()(ids)], 1)
    a = torch.cat([torch.ones(B, K, dtype=att.dtype), att], 1); l = torch.cat([torch.full((B, K), -100), lab], 1)
    return x, a, l, att.sum(1) + K - 1
opt = torch.optim.AdamW([{"params": [p for p in peft.parameters() if p.requires_grad], "lr": 5e-4},
                         {"params": list(proj.parameters()), "lr": 1e-4}]); g = torch.Generator().manual_seed(1); t = time.time()
for s in range(N2):
    idx = torch.randint(len(tr), (BS,), generator=g).tolist()
    x, a, l, _ = diag_inputs(peft, Ftr[idx], idx, tr)
    loss = peft(inputs_embeds=x, attention_mask=a, labels=l).loss
    opt.zero_grad(); loss.backward(); opt.step()
    if s % 25 == 0: print(s, round(loss.item(), 3), round(time.time() - t, 1), flush=True)
print("diag train s", round(time.time() - t, 1))
@torch.no_grad()
def diag_acc(F, shuffle=False):
    peft.eval(); pred = []
    for s0 in range(0, len(te), 50):
        idx = list(range(s0, min(s0 + 50, len(te)))); f = F[idx]
        if shuffle: f = f[torch.randperm(len(f), generator=torch.Generator().manual_seed(s0))]
        x, a, _, last = diag_inputs(peft, f, idx, te, with_target=False)
        logits = peft(inputs_embeds=x, attention_mask=a).logits
        pred += logits[torch.arange(len(idx)), last][:, CLS].argmax(1).tolist()
    peft.train(); return np.mean(np.array(pred) == te.labels)
print("diagnosis acc", diag_acc(Fte), "shuffled image", diag_acc(Fte, shuffle=True))
