"""benchmarks.inference_throughput compares sides that read the same input: zhbert's
fill-mask path gets the benchmark's texts as they are (their random CJK characters are
not run through OpenCC's t2s, which would change ~11% of them and add its time)."""

import torch

from benchmarks.inference_throughput import VOCAB, make_batch, sides
from zhbert import fillmask
from zhbert.model import preset


def test_zhbert_side_encodes_the_texts_the_reference_reads(monkeypatch):
    seen = []
    encode = fillmask.encode_masked
    monkeypatch.setattr(fillmask, "encode_masked", lambda vocab, s, *a: seen.append(s) or encode(vocab, s, *a))
    torch.manual_seed(0)
    fns = sides(preset("tiny", VOCAB, max_position_embeddings=512), ["fp32"], None)
    batch = make_batch(0)
    ours, ref = fns["zhbert", "fp32"](batch), fns["reference", "fp32"](batch)
    assert seen == batch["texts"]
    assert ours.shape == ref.shape == (len(batch["texts"]),)
