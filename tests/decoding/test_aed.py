from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.decoding import (
    DecodeContext,
    aed,
    aed_merge,
    competitive_index,
    next_token_logits,
    nucleus_size,
    sample_text,
)
from alignkit.decoding.aed import SAFETY_PROMPT, AEDProcessor, calibrate_threshold

PROMPTS = ["hi", "tell me more"]


def test_nucleus_index_and_merge_by_hand():
    z = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    # masses before each sorted token: 0, .5, .8, .95
    assert nucleus_size(z, 0.3).item() == 1
    assert nucleus_size(z, 0.7).item() == 2
    assert nucleus_size(z, 0.9).item() == 3
    assert nucleus_size(z, 1.0).item() == 4
    assert competitive_index(z[None], threshold=2.0, top_p=0.9).tolist() == [1.5]
    # L = (1 - w) L_model + w L_post, per row
    got = aed_merge(
        torch.tensor([[2.0, 0.0], [2.0, 0.0]]),
        torch.tensor([[0.0, 4.0], [0.0, 4.0]]),
        torch.tensor([0.25, 1.0]),
    )
    assert got.tolist() == [[1.5, 1.0], [0.0, 4.0]]
    with pytest.raises(ValueError, match="top_p"):
        nucleus_size(z, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        competitive_index(z, 0.0)


def _proc(model, tok, **kw):
    base = dict(max_weight=0.8, threshold=10.0, top_p=0.9, decay=0.5, position=10**9, truncate=64)
    base.update(kw)
    return AEDProcessor(
        model,
        tok,
        strategy=base.pop("strategy", "interrupt"),
        safety_prompt=SAFETY_PROMPT,
        pad_token_id=0,
        **base,
    )


def test_interrupt_weights_by_hand(aligned, tok):
    wide = torch.zeros(1, 128)  # uniform: S = ceil(0.9 * 128) = 116 >= threshold 10
    peaked = torch.full((1, 128), -30.0)
    peaked[0, 5] = 0.0  # S = 1
    p = _proc(aligned, tok)
    ws = []
    for z in (wide, peaked, peaked, wide):
        ws.append(float(p.weight(z, z)))
        p.step += 1
    assert ws == pytest.approx([0.8, 0.4, 0.2, 0.8])
    # steps t <= position are defended (official Weight.update: `if step > position: ATTACK = False`)
    p = _proc(aligned, tok, position=1)
    ws = []
    for z in (wide, wide, wide, wide):
        ws.append(float(p.weight(z, z)))
        p.step += 1
    assert ws == pytest.approx([0.8, 0.8, 0.4, 0.2])
    # sigmoid strategy: w = max_weight * sigmoid(S_orig - S_post - S_t) = 0.8 * sigmoid(116 - 1 - 10)
    p = _proc(aligned, tok, strategy="sigmoid")
    assert float(p.weight(wide, peaked)) == pytest.approx(0.8 / (1 + math.exp(-105.0)))
    # topp_weight6 reads neither position nor decay: past `position` the sigmoid weight is unchanged
    p = _proc(aligned, tok, strategy="sigmoid", position=0)
    p.step = 50
    assert float(p.weight(wide, peaked)) == pytest.approx(0.8 / (1 + math.exp(-105.0)))
    with pytest.raises(ValueError, match="strategy"):
        _proc(aligned, tok, strategy="nope")


def _official_update(strategy, steps, s_ori, s_ae, bias, max_weight=0.95, decay=0.9, position=30):
    """GIGABaozi/AED utilz.py ``Weight.update`` (judge_attack ``topp_num``: flag = S >= bias), restated."""
    w, out = 0.01, []  # init_weight 0.01 is never read by these two strategies' first flagged step
    for step, (a, b) in enumerate(zip(s_ori, s_ae, strict=True)):
        attack = a >= bias and not step > position
        if strategy == "sudden_interrupt":
            w = max_weight if attack else w * decay
        else:  # topp_weight6
            w = torch.sigmoid(torch.tensor(a - b) - bias).item()
        out.append(w)
    return out


def test_weights_equal_the_official_update(aligned, tok):
    """Both strategies against the restated official ``Weight.update`` on a sequence of nucleus sizes."""

    def logits_with_nucleus(k):  # k equal tokens, the rest negligible: S = ceil(0.9 k) for top_p 0.9
        z = torch.full((1, 128), -60.0)
        z[0, :k] = 0.0
        return z

    ks, kps = [40, 3, 60, 2, 50, 1], [1, 30, 2, 40, 1, 1]
    s = [int(nucleus_size(logits_with_nucleus(k), 0.9)) for k in ks]
    sp = [int(nucleus_size(logits_with_nucleus(k), 0.9)) for k in kps]
    for strategy, ours, kw in (
        ("topp_weight6", "sigmoid", {"max_weight": 1.0}),
        ("sudden_interrupt", "interrupt", {"max_weight": 0.95, "decay": 0.9, "position": 3}),
    ):
        p = _proc(aligned, tok, strategy=ours, threshold=20.0, top_p=0.9, **kw)
        got = []
        for k, kp in zip(ks, kps, strict=True):
            got.append(float(p.weight(logits_with_nucleus(k), logits_with_nucleus(kp))))
            p.step += 1
        want = _official_update(strategy, len(ks), s, sp, 20, **{k: v for k, v in kw.items()})
        if strategy == "sudden_interrupt":
            want = [0.0 if i == 0 and s[0] < 20 else w for i, w in enumerate(want)]
        assert got == pytest.approx(want, abs=1e-6), strategy


def test_defaults_are_the_official_defence_settings_and_calibration_is_never_the_prompts(
    aligned, tok, monkeypatch
):
    import sys

    aed_module = sys.modules[
        "alignkit.decoding.aed"
    ]  # the package attribute `aed` is the registered component

    d = ak.get("aed").defaults
    assert (d["strategy"], d["top_p"], d["decay"], d["position"], d["truncate"]) == (
        "sigmoid",
        0.9,
        0.9,
        30,
        0,
    )
    seen = []
    real = aed_module.calibrate_threshold
    monkeypatch.setattr(
        aed_module, "calibrate_threshold", lambda m, t, texts, p: seen.append(texts) or real(m, t, texts, p)
    )
    greedy = DecodeContext(sampling=dict(max_new_tokens=1, temperature=0.0))
    aed(aligned, tok, PROMPTS, greedy)
    assert seen[-1] == list(aed_module.CALIBRATION_PROMPTS) and not set(PROMPTS) & set(seen[-1])
    ctx = DecodeContext(
        sampling=dict(max_new_tokens=1, temperature=0.0), extra={"calibration_texts": ["a b"]}
    )
    aed(aligned, tok, PROMPTS, ctx)
    assert seen[-1] == ["a b"]
    assert len(aed_module.CALIBRATION_PROMPTS) >= 10


def test_strength_zero_is_the_plain_model(aligned, tok, sampling):
    ctx = DecodeContext(sampling=sampling)
    assert aed(aligned, tok, PROMPTS, ctx, max_weight=0.0) == sample_text(aligned, tok, PROMPTS, **sampling)


def test_full_weight_is_the_model_under_the_safety_prompt(aligned, tok):
    # threshold below 1 flags every step (S >= 1), so w_t = max_weight = 1: the post-alignment logits alone,
    # i.e. the model on SAFETY_PROMPT + the whole context (truncate covers it). One token: the tiny model's
    # ids >= len(tok) do not survive the decode/re-encode round trip of the re-formatted context.
    prompts = ["hi", "tell me more", "x", "What now?"]
    greedy = dict(max_new_tokens=1, temperature=0.0)
    got = aed(
        aligned,
        tok,
        prompts,
        DecodeContext(sampling=greedy),
        max_weight=1.0,
        threshold=0.5,
        truncate=None,
        strategy="interrupt",
    )
    assert got == sample_text(aligned, tok, [SAFETY_PROMPT + p for p in prompts], **greedy)
    # processor level, on a left-padded two-row batch: merged logits == the model on the wrapped text
    p = _proc(aligned, tok, max_weight=1.0, threshold=0.5, truncate=10_000)
    rows = [tok("ab")["input_ids"], tok("hello")["input_ids"]]
    ids = torch.tensor([[0] * (len(rows[1]) - len(rows[0])) + rows[0], rows[1]])
    scores = next_token_logits(aligned, ids, 0)
    out = p(ids, scores.clone())
    for i, text in enumerate(["ab", "hello"]):
        want = next_token_logits(aligned, torch.tensor([tok(SAFETY_PROMPT + text)["input_ids"]]), 0)[0]
        assert torch.allclose(out[i], want, atol=1e-5)
    # a half weight is seeded (same output twice) and lies strictly between the ends in logit space
    half = _proc(aligned, tok, max_weight=0.5, threshold=0.5)
    mid = half(ids, scores.clone())
    assert torch.allclose(mid, 0.5 * scores + 0.5 * out, atol=1e-5)


def test_calibration_and_registration(aligned, tok):
    s_t = calibrate_threshold(aligned, tok, ["hello there", "ok"], top_p=0.9)
    with torch.no_grad():
        z = [
            aligned(input_ids=torch.tensor([tok(t)["input_ids"]])).logits[0, -1]
            for t in ("hello there", "ok")
        ]
    assert s_t == max(int(nucleus_size(x, 0.9)) for x in z)
    c = ak.get("aed")
    assert c.kind == "decoder" and c.defaults["max_weight"] == 1.0 and "w_t" in c.formula
    with pytest.raises(ValueError, match="texts"):
        calibrate_threshold(aligned, tok, [])


def test_post_context_is_the_last_truncate_prompt_tokens_plus_the_generation(aligned, tok):
    # official construct_ae_context: tokens from (prompt length - truncate) onwards, so the window grows
    p = _proc(aligned, tok, truncate=2)
    ids = torch.tensor([tok("hello")["input_ids"] + tok("xy", add_special_tokens=False)["input_ids"]])
    p.step = 2  # two tokens ("xy") generated so far
    want = next_token_logits(aligned, torch.tensor([tok(SAFETY_PROMPT + "loxy")["input_ids"]]), 0)
    assert torch.allclose(p.post_logits(ids), want, atol=1e-5)
    # truncate 0 (the official defence()): only the generated tokens; None: the whole prompt
    p0 = _proc(aligned, tok, truncate=0)
    p0.step = 2
    want0 = next_token_logits(aligned, torch.tensor([tok(SAFETY_PROMPT + "xy")["input_ids"]]), 0)
    assert torch.allclose(p0.post_logits(ids), want0, atol=1e-5)
    with pytest.raises(ValueError, match="truncate"):
        _proc(aligned, tok, truncate=-1)
