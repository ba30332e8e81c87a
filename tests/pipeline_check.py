"""The Hugging Face fill-mask pipeline on an exported model gives zhbert's own answers."""

from __future__ import annotations

import pytest


def assert_pipeline_agrees(export_dir, sentences, lm=None) -> None:
    """Top-5 tokens (pieces joined without spaces) and probabilities, sentence by sentence."""
    from transformers import pipeline

    from zhbert.fillmask import fill_mask, load_masked_lm
    lm = lm or load_masked_lm(export_dir, precision="fp32")
    ours = fill_mask(lm, sentences, top_k=5)
    fill = pipeline("fill-mask", model=str(export_dir), top_k=5)
    for sentence, masks in zip(sentences, ours):
        theirs = fill(sentence)
        assert [t for t, _ in masks[0]] == [r["token_str"].replace(" ", "") for r in theirs]
        assert [p for _, p in masks[0]] == pytest.approx([r["score"] for r in theirs], abs=1e-4)
