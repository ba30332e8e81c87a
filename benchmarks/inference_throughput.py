"""Fill-mask inference: zhbert vs the HF model over the same weights (and HF's pipeline).

    python -m benchmarks.inference_throughput --config seed [--quick] [--batches N]

Batches of 32 sentences of 48 characters, one [MASK] each. zhbert runs its own
model under torch.inference_mode and computes vocabulary logits only at the masked
slots (fill_mask_logits); HF's BertForMaskedLM runs the full (B, T, V) head.
The transformers fill-mask pipeline runs too, with a BertTokenizerFast over a
synthetic one-character-per-token vocabulary (random weights, so only speed and
agreement mean anything). Reports sentences/s and top-1 agreement over all masks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from benchmarks import common

VOCAB, CHARS, B = 10_000, 48, 32
FIRST_CHAR = 0x4E00  # token id i >= 5 is the CJK character FIRST_CHAR + i - 5


def make_batch(seed: int) -> dict[str, torch.Tensor]:
    """[CLS] 48 characters [SEP], one of them [MASK]: ids (B, 50) and positions (B, 1)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (B, CHARS + 2), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    positions = torch.randint(1, CHARS + 1, (B, 1), generator=g)
    ids.scatter_(1, positions, 4)
    return {"input_ids": ids, "positions": positions}


def texts(batch: dict[str, torch.Tensor]) -> list[str]:
    return ["".join("[MASK]" if t == 4 else chr(FIRST_CHAR + t - 5) for t in row[1:-1].tolist())
            for row in batch["input_ids"]]


def hf_tokenizer():
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(FIRST_CHAR + i) for i in range(VOCAB - 5)]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False)


def sides(cfg) -> dict:
    """name -> function(batch) -> top-1 ids (B,) at the masked slot."""
    from transformers import BertForMaskedLM, pipeline

    from zhbert.model import BertForPretraining

    torch.manual_seed(0)
    ours = BertForPretraining(cfg).eval()
    hf = BertForMaskedLM._from_config(cfg.to_hf_config(), attn_implementation="sdpa").eval()
    hf.load_state_dict(ours.state_dict(), strict=False)  # no pooler / NSP head in MaskedLM
    fill = pipeline("fill-mask", model=hf, tokenizer=hf_tokenizer(), device="cpu", top_k=1)

    def zhbert(b):
        ids = b["input_ids"]
        logits = ours.fill_mask_logits(ids, torch.zeros_like(ids), torch.ones_like(ids, dtype=torch.bool),
                                       b["positions"])
        return logits[:, 0].argmax(-1)

    def reference(b):
        logits = hf(input_ids=b["input_ids"]).logits  # (B, T, V)
        return logits.gather(1, b["positions"][:, :, None].expand(-1, -1, logits.shape[-1]))[:, 0].argmax(-1)

    def hf_pipeline(b):
        out = fill(texts(b), batch_size=B)
        return torch.tensor([o[0]["token"] for o in out])

    return {"zhbert": zhbert, "reference": reference, "pipeline": hf_pipeline}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=("tiny", "seed"), default="seed")
    p.add_argument("--batches", type=int, help="timed batches per side and round (default 4; --quick 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.batches or (2 if args.quick else 4)
    from zhbert.model import preset

    cfg = preset(args.config, VOCAB, max_position_embeddings=512)
    info = common.machine()
    batches = [make_batch(s) for s in range(n)]
    with torch.inference_mode():
        fns = sides(cfg)
        top1 = {k: torch.cat([f(b) for b in batches]) for k, f in fns.items()}  # also the warm-up
        secs = {k: [] for k in fns}
        for r in range(args.rounds):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                for b in batches:
                    t = time.perf_counter()
                    fns[k](b)
                    secs[k].append(time.perf_counter() - t)
    rows = [["side", "sentences/s", "best..worst batch", "top-1 agreement with zhbert"]]
    summary = {}
    for k, s in secs.items():
        sps = B / statistics.median(s)
        agree = (top1[k] == top1["zhbert"]).float().mean().item()
        summary[k] = {"sentences_per_s": sps, "top1_agreement": agree}
        rows.append([k, f"{sps:,.1f}", f"{B / min(s):,.1f}..{B / max(s):,.1f}",
                     f"{100 * agree:.1f}% of {len(top1[k])}"])
    ratio = summary["zhbert"]["sentences_per_s"] / summary["reference"]["sentences_per_s"]
    print(common.machine_line(info))
    print(f"config {args.config}, batch {B} x {CHARS} characters (+[CLS]/[SEP]), 1 mask each, "
          f"{args.rounds} rounds x {n} batches per side, median batch")
    print(common.table(rows))
    print(f"ratio: {ratio:.2f}")
    path = common.write_json(f"inference_throughput-{args.config}",
                             {"args": vars(args), "machine": info, "summary": summary, "ratio": ratio,
                              "batch_s": secs, "peak_rss_mb": common.peak_rss_mb()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
