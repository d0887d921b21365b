"""SynthScan's clinical notes: the sentences, how a note is assembled, and its evidence spans.

A note opens with a line (age, sex, reason), then, in random order: the two risk cues (affirmed
when the latent says so, else negated or not mentioned), 0-2 irrelevant sentences and sometimes a
filler. Under the ``consistency`` label rule a referral sentence states a lesion finding right after
the opening; it is then the note's only evidence (``synthscan.make_synthscan``).
"""
from __future__ import annotations

import numpy as np

_GROWTH_YES = [
    "The lump has grown rapidly over the past {m} months.",
    "The patient reports that the mass has enlarged noticeably since the last visit.",
    "A marked increase in size over {m} months is described.",
    "The lesion is reported to be growing quickly.",
]
_GROWTH_NO = [
    "No change in size since the last visit.",
    "The lesion has not grown over the past {m} months.",
    "Denies any recent growth of the lump.",
    "Size reported as stable for {m} months.",
]
_FAMILY_YES = [
    "Mother was diagnosed with cancer at {a2}.",
    "There is a strong family history of malignancy.",
    "Two first-degree relatives had cancer.",
    "Father was treated for a malignant tumour at {a2}.",
]
_FAMILY_NO = [
    "No family history of cancer.",
    "Family history is unremarkable.",
    "Denies any cancer in the family.",
    "No relatives with malignant disease.",
]
# The cue sentences of the notes, by cue and polarity (notebook 03 reads them; the generator picks one at random).
CUE_TEMPLATES = {"growth": {"affirmed": _GROWTH_YES, "negated": _GROWTH_NO},
                 "family": {"affirmed": _FAMILY_YES, "negated": _FAMILY_NO}}
_OPENINGS = [
    "{age}-year-old {sex} referred for imaging.",
    "{age}-year-old {sex} presenting for a routine scan.",
    "Patient, {sex}, aged {age}, seen for follow-up imaging.",
    "{age}-year-old {sex} sent by the GP for a scan.",
]
_IRRELEVANT = [
    "Allergic to penicillin.",
    "Works as a {job}.",
    "Drinks {k} cups of coffee a day.",
    "Takes {drug} for blood pressure.",
    "Came to the appointment with {rel}.",
    "Blood pressure {bp}/{bp2} mmHg.",
    "Non-smoker.",
    "Reports mild fatigue after a busy week.",
]
_FILLER = [
    "Vitals within normal limits.",
    "Patient is in good spirits.",
    "Scan requested to complete the work-up.",
    "Consent obtained.",
]
_JOBS = ["teacher", "nurse", "carpenter", "driver", "chef", "engineer", "farmer", "clerk"]
_DRUGS = ["amlodipine", "ramipril", "losartan", "bisoprolol"]
_RELS = ["her daughter", "his son", "a friend", "her husband", "his wife"]
# What the referral letter claims the scan shows (the consistency rule): four phrasings per grade.
CLAIMS = [
    ["The referral letter reports no visible lesion.", "Referral states that no lesion was seen.",
     "According to the referral, the skin is clear of lesions.", "The GP found no lesion."],
    ["The referral letter describes a smooth, well-defined lesion.",
     "Referral states a round lesion with an even edge.",
     "According to the referral, the lesion has a regular border.", "The GP describes a smooth lesion."],
    ["The referral letter describes an irregular lesion.", "Referral states a lesion with a ragged edge.",
     "According to the referral, the lesion has an uneven border.", "The GP describes an irregular lesion."],
]


def write_notes(rng: np.random.Generator, text_risk: np.ndarray):
    """Clinical notes with their evidence spans (the risk-cue sentences) and the text latents."""
    n = len(text_risk)
    growth = np.zeros(n, np.int64)  # 1 affirmed, 0 negated, -1 not mentioned
    family = np.zeros(n, np.int64)
    notes, spans = [], []
    for i in range(n):
        b = int(text_risk[i])
        yes = {0: (), 1: (("growth",) if rng.random() < 0.5 else ("family",)), 2: ("growth", "family")}[b]
        fmt = dict(m=int(rng.integers(2, 13)), a2=int(rng.integers(38, 80)), age=int(rng.integers(24, 86)),
                   sex=["woman", "man"][int(rng.integers(2))], job=_JOBS[int(rng.integers(len(_JOBS)))],
                   k=int(rng.integers(1, 6)), drug=_DRUGS[int(rng.integers(len(_DRUGS)))],
                   rel=_RELS[int(rng.integers(len(_RELS)))], bp=int(rng.integers(105, 160)),
                   bp2=int(rng.integers(65, 95)))
        sentences: list[tuple[str, bool]] = []  # (sentence, is evidence)
        for cue, yes_t, no_t, store in (("growth", _GROWTH_YES, _GROWTH_NO, growth),
                                        ("family", _FAMILY_YES, _FAMILY_NO, family)):
            if cue in yes:
                store[i] = 1
                sentences.append((yes_t[int(rng.integers(len(yes_t)))].format(**fmt), True))
            elif rng.random() < 0.7:
                store[i] = 0
                sentences.append((no_t[int(rng.integers(len(no_t)))].format(**fmt), True))
            else:
                store[i] = -1
        n_irr = int(rng.integers(0, 3))
        for j in rng.choice(len(_IRRELEVANT), n_irr, replace=False):
            sentences.append((_IRRELEVANT[int(j)].format(**fmt), False))
        if rng.random() < 0.5:
            sentences.append((_FILLER[int(rng.integers(len(_FILLER)))], False))
        order = rng.permutation(len(sentences))
        text = _OPENINGS[int(rng.integers(len(_OPENINGS)))].format(**fmt)
        text = text[0].upper() + text[1:]
        note_spans = []
        for j in order:
            sent, is_evidence = sentences[int(j)]
            start = len(text) + 1
            text += " " + sent
            if is_evidence:
                note_spans.append((start, start + len(sent)))
        notes.append(text)
        spans.append(sorted(note_spans))
    return notes, spans, {"text_risk": text_risk.astype(np.int64), "growth_cue": growth, "family_cue": family}


def add_claims(rng: np.random.Generator, notes: list[str], claimed_grade: np.ndarray):
    """Each note with a referral sentence claiming ``claimed_grade`` after its opening line, and that sentence's
    span (the note's evidence under the consistency rule)."""
    out, spans = [], []
    for note, grade in zip(notes, claimed_grade):
        phrasings = CLAIMS[int(grade)]
        claim = phrasings[int(rng.integers(len(phrasings)))]
        cut = note.index(". ") + 1 if ". " in note else len(note)  # after the opening line
        out.append(f"{note[:cut]} {claim}{note[cut:]}")
        spans.append([(cut + 1, cut + 1 + len(claim))])
    return out, spans
