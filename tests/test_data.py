import json

import numpy as np
import pytest
import torch

from zhbert.data import (DataConfig, build_eval_set, build_instances, instance_stats, make_batch,
                         truncate_lengths)
from zhbert.loader import LengthWarmupLoader, PretrainingLoader
from zhbert.datadir import SplitArrays, new_manifest, open_data_dir, write_manifest, write_split
from zhbert.errors import UserError
from zhbert.vocab import SPECIAL_TOKENS, Vocab

V = 1005  # vocab size: 5 specials + 1000 characters


def make_data_dir(out, n_sentences=3000, mean_doc_sentences=12, mean_sentence=35,
                  word_boundaries=True, seed=0):
    """A synthetic data directory with lognormal sentence and geometric document lengths."""
    rng = np.random.default_rng(seed)
    vocab = Vocab(SPECIAL_TOKENS + tuple(chr(0x4E00 + i) for i in range(V - 5)))
    out.mkdir(parents=True, exist_ok=True)
    vocab.save(out / "vocab.txt")
    splits = {}
    for name in ("train", "validation"):
        lens = np.clip(rng.lognormal(np.log(mean_sentence), 0.5, n_sentences), 2, 300).astype(np.int64)
        sent = np.concatenate([[0], np.cumsum(lens)])
        doc_lens = rng.geometric(1 / mean_doc_sentences, n_sentences)
        cuts = np.cumsum(doc_lens)
        docs = np.concatenate([[0], cuts[cuts < n_sentences], [n_sentences]])
        toks = rng.integers(5, V, int(sent[-1])).astype(np.uint16)
        ws = (rng.random(len(toks)) < 0.6).astype(np.uint8) if word_boundaries else None
        write_split(out, name, SplitArrays(toks, sent, docs, ws))
        splits[name] = {"documents": len(docs) - 1, "sentences": n_sentences, "tokens": len(toks)}
    write_manifest(out, new_manifest({}, [], vocab, splits, word_boundaries))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("data"))


def doc_of(split, offsets):
    s = np.searchsorted(split.sentences, offsets, side="right") - 1
    return np.searchsorted(split.documents, s, side="right") - 1


def balanced(labels):
    # label share within 4 standard errors of 1/2
    return abs(labels.mean() - 0.5) < 4 * 0.5 / np.sqrt(len(labels))


def test_config():
    assert DataConfig().max_predictions == 20
    assert DataConfig(max_len=100).max_predictions == 15  # no 15.000000000000002 -> 16
    for bad in ({"objective": "nsp"}, {"mask_prob": 0.0}, {"max_len": 4}, {"short_seq_prob": 2.0}):
        with pytest.raises(UserError):
            DataConfig(**bad)


def test_truncate_lengths_matches_googles_loop():
    def google(la, lb, m):
        while la + lb > m:
            if la > lb:
                la -= 1
            else:
                lb -= 1
        return la, lb
    for m in (5, 8, 125):
        for la in range(0, 140, 3):
            for lb in range(0, 140, 7):
                assert truncate_lengths(la, lb, m) == google(la, lb, m), (la, lb, m)


@pytest.mark.parametrize("objective", ["mlm+nsp", "mlm+sop", "mlm"])
def test_batch_layout_matches_instances(data, objective):
    cfg = DataConfig(objective=objective, max_len=64)
    dd = open_data_dir(data)
    split = dd.split("train")
    rows = build_instances(split, cfg, epoch=0)[:64]
    batch = make_batch(split, rows, np.arange(64), 0, cfg, cfg.seed, V, dd.vocab.mask_id)
    T, M = 64, cfg.max_predictions
    assert batch["input_ids"].shape == (64, T) and batch["mlm_positions"].shape == (64, M)
    assert batch["attention_mask"].dtype == torch.bool
    assert ("nsp_labels" in batch) == (objective != "mlm")
    ids = batch["input_ids"].numpy().copy()
    for i, (a_lo, a_hi, b_lo, b_hi, label) in enumerate(rows.tolist()):
        pos, lab = batch["mlm_positions"][i].numpy(), batch["mlm_labels"][i].numpy()
        real = lab != -100
        ids[i, pos[real]] = lab[real]  # unmask: the row must be the instance's tokens
        la, lb = a_hi - a_lo, b_hi - b_lo
        if lb:
            want = [2, *split.tokens[a_lo:a_hi], 3, *split.tokens[b_lo:b_hi], 3]
            types = [0] * (la + 2) + [1] * (lb + 1)
            assert batch["nsp_labels"][i] == label
        else:
            want, types = [2, *split.tokens[a_lo:a_hi], 3], [0] * (la + 2)
        n = len(want)
        assert n <= T and ids[i, :n].tolist() == want and not ids[i, n:].any()
        assert batch["token_type_ids"][i].tolist() == types + [0] * (T - n)
        assert batch["attention_mask"][i].tolist() == [True] * n + [False] * (T - n)
        assert (pos[~real] == 0).all() and (np.diff(pos[real]) > 0).all()


def test_masking_statistics(data):
    cfg = DataConfig(max_len=64)
    loader = PretrainingLoader(data, cfg=cfg, batch_size=100)
    masked = cand = to_mask = to_random = kept = 0
    for _ in range(12):
        b = next(loader)
        ids, att = b["input_ids"], b["attention_mask"]
        special = (ids == 2) | (ids == 3) | ~att
        pos, lab = b["mlm_positions"], b["mlm_labels"]
        real = lab != -100
        assert real.sum(1).min() >= 1 and real.sum(1).max() <= cfg.max_predictions
        got = torch.gather(ids, 1, pos)[real]
        assert not torch.gather(special, 1, pos)[real].any()  # never [CLS]/[SEP]/[PAD]
        assert (lab[real] >= 5).all()
        # [MASK] (the vocab's id 4) appears only where a token is predicted
        mask_at = torch.zeros_like(ids, dtype=torch.bool)
        mask_at.scatter_(1, pos, real)
        assert not ((ids == 4) & ~mask_at).any()
        masked += int(real.sum())
        cand += int((~special).sum())
        to_mask += int((got == 4).sum())
        kept += int((got == lab[real]).sum())
        rand = got[(got != 4) & (got != lab[real])]
        assert ((rand >= 5) & (rand < V)).all()
        to_random += len(rand)
    assert abs(masked / cand - 0.15) < 0.01
    assert abs(to_mask / masked - 0.8) < 0.02
    assert abs(to_random / masked - 0.1) < 0.015
    assert abs(kept / masked - 0.1) < 0.015


def test_masked_positions_are_a_uniform_subset_of_the_candidates():
    """mask_batch's choice: round(15% of 40 candidates) = 6 per row, every candidate
    equally likely (chi-square over 20,000 samples), the 80/10/10 split, random tokens
    spread over the regular ids; different samples and epochs mask differently."""
    from scipy.stats import chisquare

    from zhbert.data import mask_batch

    cfg, T, N = DataConfig(max_len=64), 64, 20_000
    cand = np.zeros((N, T), bool)
    cand[:, 5:45] = True
    ids = np.tile(np.arange(T, dtype=np.int64) + 100, (N, 1))
    pos, lab = mask_batch(ids, cand, cfg, 1000, 4, 42, 0, np.arange(N))
    real = lab != -100
    assert (real.sum(1) == 6).all() and ((pos[real] >= 5) & (pos[real] < 45)).all()
    assert (np.diff(pos[:, :6], axis=1) > 0).all() and (pos[:, 6:] == 0).all()  # ascending, then empty
    assert chisquare(np.bincount(pos[real], minlength=45)[5:]).pvalue > 1e-3
    got = ids[np.arange(N)[:, None], pos][real]
    share = [(got == 4).mean(), (got == lab[real]).mean()]
    assert abs(share[0] - 0.8) < 0.01 and abs(share[1] - 0.1) < 0.01
    rand = got[(got != 4) & (got != lab[real])]
    assert rand.min() >= 5 and rand.max() < 1000 and len(np.unique(rand)) > 900
    again, _ = mask_batch(ids.copy(), cand, cfg, 1000, 4, 42, 1, np.arange(N))
    assert (again != pos).any(1).mean() > 0.99  # re-masked in the next epoch
    other, _ = mask_batch(ids.copy(), cand, cfg, 1000, 4, 42, 0, np.arange(N) + 1)
    assert np.array_equal(other[:-1], pos[1:])  # keyed by the sample's index alone


def test_nsp_pairs(data):
    split = open_data_dir(data).split("train")
    inst = build_instances(split, DataConfig(objective="mlm+nsp"), epoch=0)
    assert balanced(inst[:, 4]) and len(inst) > 500
    a_doc, a_last = doc_of(split, inst[:, 0]), doc_of(split, inst[:, 1] - 1)
    b_doc, b_last = doc_of(split, inst[:, 2]), doc_of(split, inst[:, 3] - 1)
    assert (a_doc == a_last).all() and (b_doc == b_last).all()  # segments never span documents
    pos, neg = inst[:, 4] == 0, inst[:, 4] == 1
    assert (a_doc[pos] == b_doc[pos]).all() and (inst[pos, 2] >= inst[pos, 1]).all()
    # a positive B follows A; only truncation (of at most one overshooting sentence) leaves a gap
    gap = inst[pos, 2] - inst[pos, 1]
    assert gap.max() <= np.diff(split.sentences).max() and np.mean(gap == 0) > 0.25
    assert (a_doc[neg] != b_doc[neg]).all()
    # the true continuation of a negative is put back: its own text still covers most tokens
    own = np.zeros(len(split.tokens), bool)
    for a_lo, a_hi, b_lo, b_hi, label in inst.tolist():
        own[a_lo:a_hi] = True
        own[b_lo:b_hi] |= label == 0
    assert own.mean() > 0.8
    lengths = (inst[:, 1] - inst[:, 0]) + (inst[:, 3] - inst[:, 2])
    assert lengths.max() <= 125 and (inst[:, 1] > inst[:, 0]).all() and (inst[:, 3] > inst[:, 2]).all()


def test_sop_swaps(data):
    split = open_data_dir(data).split("train")
    inst = build_instances(split, DataConfig(objective="mlm+sop"), epoch=0)
    assert balanced(inst[:, 4])
    assert (doc_of(split, inst[:, 0]) == doc_of(split, inst[:, 2])).all()
    ordered, swapped = inst[inst[:, 4] == 0], inst[inst[:, 4] == 1]
    assert (ordered[:, 2] >= ordered[:, 1]).all()
    assert (swapped[:, 0] >= swapped[:, 3]).all()  # A comes after B in the text


def test_single_sentence_documents_make_both_labels(tmp_path):
    out = make_data_dir(tmp_path / "d", n_sentences=800, mean_doc_sentences=1)
    split = open_data_dir(out).split("train")
    assert split.num_documents == split.num_sentences
    inst = build_instances(split, DataConfig(objective="mlm+nsp"), epoch=0)
    assert len(inst) >= 0.9 * split.num_documents
    assert balanced(inst[:, 4])


def test_determinism_and_dynamic_masking(data):
    cfg = DataConfig(max_len=64)
    a = PretrainingLoader(data, cfg=cfg, batch_size=8)
    b = PretrainingLoader(data, cfg=cfg, batch_size=8)
    for _ in range(3):
        x, y = next(a), next(b)
        assert all(torch.equal(x[k], y[k]) for k in x)
    split = open_data_dir(data).split("train")
    rows = build_instances(split, cfg, epoch=0)[:16]
    e0 = make_batch(split, rows, np.arange(16), 0, cfg, 42, V, 4)
    e1 = make_batch(split, rows, np.arange(16), 1, cfg, 42, V, 4)
    assert not torch.equal(e0["mlm_positions"], e1["mlm_positions"])  # re-masked each epoch
    assert not np.array_equal(build_instances(split, cfg, 0), build_instances(split, cfg, 1))
    assert np.array_equal(build_instances(split, cfg, 1), build_instances(split, cfg, 1))


def _take(loader, n):
    return [next(loader) for _ in range(n)]


def _same(xs, ys):
    return len(xs) == len(ys) and all(all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(xs, ys))


def test_resume_across_epoch_boundary(data):
    cfg = DataConfig(max_len=64, objective="mlm+sop")
    full = PretrainingLoader(data, split="validation", cfg=cfg, batch_size=64)
    per_epoch = full.steps_in_epoch()
    k = per_epoch - 2  # resume two batches before the epoch ends
    _take(full, k)
    state = json.loads(json.dumps(full.state_dict()))
    rest = _take(full, 5)
    assert full.epoch == 1
    resumed = PretrainingLoader(data, split="validation", cfg=cfg, batch_size=64)
    resumed.load_state_dict(state)
    assert _same(_take(resumed, 5), rest)
    with pytest.raises(UserError, match="different data settings"):
        PretrainingLoader(data, split="validation", cfg=DataConfig(max_len=32)).load_state_dict(state)


def test_ddp_sharding_equals_single_process(data):
    cfg = DataConfig(max_len=48)
    one = _take(PretrainingLoader(data, cfg=cfg, batch_size=8), 4)
    r0 = _take(PretrainingLoader(data, cfg=cfg, batch_size=4, rank=0, world_size=2), 4)
    r1 = _take(PretrainingLoader(data, cfg=cfg, batch_size=4, rank=1, world_size=2), 4)
    merged = [{k: torch.cat([a[k], b[k]]) for k in a} for a, b in zip(r0, r1)]
    assert _same(merged, one)


def test_workers_match_in_process_and_resume(data):
    cfg = DataConfig(max_len=48)
    ref = _take(PretrainingLoader(data, cfg=cfg, batch_size=16), 7)
    loader = PretrainingLoader(data, cfg=cfg, batch_size=16, num_workers=2)
    assert _same(_take(loader, 4), ref[:4])
    state = loader.state_dict()
    loader.close()
    resumed = PretrainingLoader(data, cfg=cfg, batch_size=16, num_workers=2)
    resumed.load_state_dict(state)
    assert _same(_take(resumed, 3), ref[4:])
    resumed.close()


def _warmup_loader(data, short_batches=3):
    short = PretrainingLoader(data, cfg=DataConfig(max_len=32), batch_size=16)
    full = PretrainingLoader(data, cfg=DataConfig(max_len=64), batch_size=8)
    return LengthWarmupLoader(short, full, short_batches)


def test_length_warmup_switches_length_and_resumes_in_either_phase(data):
    ref = _take(_warmup_loader(data), 6)
    # the short phase: twice the sequences of half the length, then the full loader's own batches
    assert [tuple(b["input_ids"].shape) for b in ref] == [(16, 32)] * 3 + [(8, 64)] * 3
    assert [b["mlm_positions"].shape[1] for b in ref] == [5] * 3 + [10] * 3  # ceil(0.15 T)
    assert _same(ref[3:], _take(PretrainingLoader(data, cfg=DataConfig(max_len=64), batch_size=8), 3))
    for k in (2, 3, 4):  # resume inside the short phase, at the switch, after it
        loader = _warmup_loader(data)
        _take(loader, k)
        state = json.loads(json.dumps(loader.state_dict()))
        resumed = _warmup_loader(data)
        resumed.load_state_dict(state)
        assert _same(_take(resumed, 6 - k), ref[k:]), k
    masks = [b["attention_mask"] for b in ref[:4]]  # what `loader` served (k = 4)
    assert loader.padding_fraction == pytest.approx(
        1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks))
    with pytest.raises(UserError, match="warm-up"):
        _warmup_loader(data, short_batches=5).load_state_dict(state)
    with pytest.raises(UserError, match="different data settings"):
        PretrainingLoader(data, cfg=DataConfig(max_len=64)).load_state_dict(state)


def test_eval_set_is_fixed(data):
    a = build_eval_set(data, cfg=DataConfig(max_len=64), max_sequences=100, batch_size=32)
    b = build_eval_set(data, cfg=DataConfig(max_len=64, seed=7), max_sequences=100, batch_size=32)
    assert [len(x["input_ids"]) for x in a] == [32, 32, 32, 4]
    assert _same(a, b)  # independent of the training seed
    c = build_eval_set(data, cfg=DataConfig(max_len=64), max_sequences=100, seed=5, batch_size=32)
    assert not _same(a, c)


def test_whole_word_masking_masks_complete_words(data):
    cfg = DataConfig(max_len=64, whole_word=True)
    dd = open_data_dir(data)
    split = dd.split("train")
    rows = build_instances(split, cfg, epoch=0)[:200]
    batch = make_batch(split, rows, np.arange(200), 0, cfg, 42, V, 4)
    masked_tokens = multi_token_words = 0
    for i, (a_lo, a_hi, b_lo, b_hi, _) in enumerate(rows.tolist()):
        starts = np.zeros(64, bool)  # word starts by position, segments start words
        starts[1:1 + a_hi - a_lo] = split.word_starts[a_lo:a_hi]
        starts[2 + a_hi - a_lo:2 + a_hi - a_lo + b_hi - b_lo] = split.word_starts[b_lo:b_hi]
        starts[[1, 2 + a_hi - a_lo]] = True
        n = 3 + (a_hi - a_lo) + (b_hi - b_lo)
        starts[[0, 1 + a_hi - a_lo, n - 1]] = True  # [CLS]/[SEP] are their own words
        word = np.cumsum(starts)
        lab = batch["mlm_labels"][i].numpy()
        pos = batch["mlm_positions"][i].numpy()[lab != -100]
        for w in np.unique(word[pos]):  # every word touched is masked entirely
            members = np.flatnonzero(word[:n] == w)
            assert set(members) <= set(pos)
            multi_token_words += len(members) > 1
        masked_tokens += len(pos)
    assert abs(masked_tokens / 200 / (0.15 * 58) - 1) < 0.15
    assert multi_token_words > 200


def test_padding_low_on_realistic_documents(tmp_path):
    out = make_data_dir(tmp_path / "d", n_sentences=4000, mean_doc_sentences=30)
    loader = PretrainingLoader(out, cfg=DataConfig(), batch_size=64)
    stats = instance_stats(loader._stream.instances(0), 128)
    assert stats["padding_fraction"] < 0.10
    _take(loader, 10)
    assert loader.padding_fraction < 0.10
    assert abs(loader.padding_fraction - stats["padding_fraction"]) < 0.03


def test_user_errors(tmp_path, data):
    plain = make_data_dir(tmp_path / "plain", n_sentences=200, word_boundaries=False)
    with pytest.raises(UserError, match="word boundaries"):
        PretrainingLoader(plain, cfg=DataConfig(whole_word=True))
    one_doc = SplitArrays(np.arange(5, 65, dtype=np.uint16), np.array([0, 30, 60]), np.array([0, 2]), None)
    with pytest.raises(UserError, match="2 documents"):
        build_instances(one_doc, DataConfig(), epoch=0)
    assert len(build_instances(one_doc, DataConfig(objective="mlm+sop", max_len=16), epoch=0)) > 0
    with pytest.raises(UserError, match="global batch"):
        next(PretrainingLoader(plain, split="validation", batch_size=100_000))


def _per_row_reference(split, rows, indices, epoch, cfg, seed, vocab_size, mask_id):
    """make_batch as it was before the batch-wide layout: one row at a time (the
    vectorised version must give the same batches for the same seed), each row masked on
    its own (so a sample's masking is the same in any batch)."""
    from zhbert.data import mask_batch, mask_row, masking_rng
    B, T, M = len(rows), cfg.max_len, cfg.max_predictions
    ids, types = np.zeros((B, T), np.int64), np.zeros((B, T), np.int64)
    positions, labels = np.zeros((B, M), np.int64), np.full((B, M), -100, np.int64)
    ws = split.word_starts if cfg.whole_word else None
    for i, (a_lo, a_hi, b_lo, b_hi, _) in enumerate(rows.tolist()):
        la, lb = a_hi - a_lo, b_hi - b_lo
        ids[i, 0] = 2
        ids[i, 1:1 + la] = split.tokens[a_lo:a_hi]
        ids[i, 1 + la] = 3
        cand = np.arange(1, 1 + la)
        if lb:
            ids[i, 2 + la:2 + la + lb] = split.tokens[b_lo:b_hi]
            ids[i, 2 + la + lb] = 3
            types[i, 2 + la:3 + la + lb] = 1
            cand = np.concatenate([cand, np.arange(2 + la, 2 + la + lb)])
        starts = None
        if ws is not None:
            starts = np.concatenate([ws[a_lo:a_hi], ws[b_lo:b_hi]]).astype(bool)
            starts[0] = True
            if lb:
                starts[la] = True
        if ws is None:  # a batch of this one row: its masking must not depend on the batch
            at = np.zeros((1, T), bool)
            at[0, cand] = True
            pos, lab = mask_batch(ids[i:i + 1], at, cfg, vocab_size, mask_id, seed, epoch,
                                  indices[i:i + 1])
            pos, lab = pos[0][lab[0] != -100], lab[0][lab[0] != -100]
        else:
            pos, lab = mask_row(ids[i], cand, cfg, vocab_size, mask_id,
                                masking_rng(seed, epoch, int(indices[i])), starts)
        positions[i, :len(pos)], labels[i, :len(lab)] = pos, lab
    lb_all = rows[:, 3] - rows[:, 2]
    lengths = 2 + (rows[:, 1] - rows[:, 0]) + np.where(lb_all > 0, lb_all + 1, 0)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": np.arange(T) < lengths[:, None],
            "mlm_positions": positions, "mlm_labels": labels}


@pytest.mark.parametrize("objective,whole_word,max_len", [
    ("mlm+nsp", False, 64), ("mlm+sop", True, 128), ("mlm", False, 32), ("mlm", True, 64)])
def test_batch_wide_layout_gives_the_per_row_batches(data, objective, whole_word, max_len):
    cfg = DataConfig(max_len=max_len, objective=objective, whole_word=whole_word, short_seq_prob=0.3)
    split = open_data_dir(data).split("train")
    rows = build_instances(split, cfg, epoch=1)[:96]
    idx = np.arange(500, 596)
    got = make_batch(split, rows, idx, 1, cfg, 42, V, 4)
    want = _per_row_reference(split, rows, idx, 1, cfg, 42, V, 4)
    assert (want["attention_mask"].sum(1) < max_len).any()  # padded rows are covered
    for key, value in want.items():
        np.testing.assert_array_equal(got[key].numpy(), value, err_msg=key)


def test_loader_workers_auto_on_cuda_only(monkeypatch):
    from zhbert.loader import loader_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert loader_workers(-1, "cpu") == 0
    assert loader_workers(-1, "cuda", local_world=1) == 4
    assert loader_workers(-1, "cuda", local_world=8) == 1  # 2 cores a rank: one for the loop
    assert loader_workers(3, "cuda") == 3 and loader_workers(0, "cuda") == 0  # explicit wins


def test_pin_memory_pins_batches_in_process_and_asks_the_dataloader(data, monkeypatch):
    """No CUDA here: Tensor.pin_memory is patched to record the call (the real one needs
    an accelerator); with workers the DataLoader is asked to pin."""
    import zhbert.loader as data_mod

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t, *a, **k: pinned.append(1) or t.clone())
    cfg = DataConfig(max_len=32)
    ref = _take(PretrainingLoader(data, cfg=cfg, batch_size=4), 2)
    got = _take(PretrainingLoader(data, cfg=cfg, batch_size=4, pin_memory=True), 2)
    assert _same(got, ref) and len(pinned) == 2 * len(ref[0])
    seen = {}
    real_loader = torch.utils.data.DataLoader

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_loader(*args, **{**kwargs, "pin_memory": False})

    monkeypatch.setattr(data_mod.torch.utils.data, "DataLoader", spy)
    loader = PretrainingLoader(data, cfg=cfg, batch_size=4, num_workers=1, pin_memory=True)
    assert _same(_take(loader, 2), ref)
    loader.close()
    assert seen["pin_memory"] is True


def test_ranks_of_a_node_build_each_epoch_once(data, tmp_path, monkeypatch):
    """Two ranks and their loader workers share one build of each epoch through the cache
    directory, and get the batches they get without it."""
    import zhbert.loader as data_mod

    builds = []
    real = data_mod.build_instances
    monkeypatch.setattr(data_mod, "build_instances",
                        lambda *a, **k: builds.append(a[2]) or real(*a, **k))
    cfg = DataConfig(max_len=32)
    plain = [_take(PretrainingLoader(data, cfg=cfg, batch_size=8, rank=r, world_size=2), 3)
             for r in range(2)]
    n_plain = len(builds)
    builds.clear()
    cache = tmp_path / "cache"
    cached = [_take(PretrainingLoader(data, cfg=cfg, batch_size=8, rank=r, world_size=2,
                                      cache_dir=cache), 3) for r in range(2)]
    assert n_plain == 2 and builds == [0]  # one build of epoch 0 for both ranks
    assert all(_same(a, b) for a, b in zip(plain, cached))
    assert [p.name for p in cache.glob("*.npy")] and not list(cache.glob("*.tmp"))


def test_instance_cache_keeps_two_epochs_and_falls_back_without_a_disk(tmp_path):
    from zhbert.instance_cache import cached_epoch

    for epoch in range(4):
        got = cached_epoch(lambda: np.full((3, 5), epoch), {"k": 1}, epoch, tmp_path)
        assert (np.asarray(got) == epoch).all()
    assert sorted(p.name.rsplit("-e", 1)[1] for p in tmp_path.glob("*.npy")) == ["2.npy", "3.npy"]
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    got = cached_epoch(lambda: np.ones((2, 5)), {"k": 2}, 0, blocked / "cache")  # mkdir fails
    assert got.shape == (2, 5)


def test_a_loader_drops_its_shared_cache_files(data, tmp_path):
    cfg = DataConfig(max_len=32)
    other = PretrainingLoader(data, cfg=DataConfig(max_len=48), batch_size=4, cache_dir=tmp_path)
    loader = PretrainingLoader(data, cfg=cfg, batch_size=4, cache_dir=tmp_path)
    _take(other, 1), _take(loader, 1)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    loader.drop_shared_cache()
    assert len(list(tmp_path.glob("*.npy"))) == 1  # another run's files stay
    PretrainingLoader(data, cfg=cfg, batch_size=4).drop_shared_cache()  # no cache: nothing to do


def test_held_out_set_is_masked_at_bert_rate_whatever_the_training_rate(synthetic_data):
    """A run training at 30% masking is scored on the same held-out task as one at 15%."""
    from zhbert.data import EVAL_MASK_PROB, DataConfig, build_eval_set

    base = build_eval_set(synthetic_data, "validation", DataConfig(max_len=32), max_sequences=40)
    high = build_eval_set(synthetic_data, "validation", DataConfig(max_len=32, mask_prob=0.3),
                          max_sequences=40)
    assert EVAL_MASK_PROB == 0.15 and len(base) == len(high)
    for a, b in zip(base, high):
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]), key
