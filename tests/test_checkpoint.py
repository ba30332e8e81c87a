import json

import torch

from zhbert.checkpoint import (apply_retention, latest_valid_checkpoint, list_checkpoints,
                               load_checkpoint, save_checkpoint, verify_checkpoint)
from zhbert.history import HistoryWriter, iter_records, rewrite_for_resume


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.out = torch.nn.Linear(4, 10)
        self.out.weight = self.emb.weight  # tied, like BERT's decoder


def _trained():
    torch.manual_seed(0)
    m = Tied()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    for _ in range(3):
        loss = m.out(m.emb(torch.tensor([1, 2, 3]))).logsumexp(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return m, opt


def test_roundtrip_restores_weights_and_optimizer(tmp_path):
    m, opt = _trained()
    path = save_checkpoint(tmp_path, 3, m, opt, {"data": {"epoch": 0, "position": 96}})
    assert verify_checkpoint(path) is None
    m2 = Tied()
    opt2 = torch.optim.AdamW(m2.parameters(), lr=0.1)
    state = load_checkpoint(path, m2, opt2)
    assert state["step"] == 3 and state["data"] == {"epoch": 0, "position": 96}
    assert torch.equal(m2.emb.weight, m.emb.weight) and m2.out.weight is m2.emb.weight
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"]) for k in s1)
    # every file with the same mode as state.json (safetensors' writer makes 0600 files)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert set(modes.values()) == {modes["state.json"]}, modes


def test_corrupt_checkpoint_is_skipped(tmp_path):
    m, opt = _trained()
    save_checkpoint(tmp_path, 2, m, opt, {})
    newest = save_checkpoint(tmp_path, 4, m, opt, {})
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(data))
    assert "checksum" in verify_checkpoint(newest)
    seen = []
    ref = latest_valid_checkpoint(tmp_path, warn=seen.append)
    assert ref.step == 2 and "step_00000004" in seen[0]


def test_retention_keeps_last_and_every(tmp_path):
    m, opt = _trained()
    for step in (1, 2, 3, 4, 5, 6):
        save_checkpoint(tmp_path, step, m, opt, {})
    apply_retention(tmp_path, keep_last=2, keep_every=3)
    assert [r.step for r in list_checkpoints(tmp_path)] == [3, 5, 6]


def test_history_partial_line_and_truncate(tmp_path):
    p = tmp_path / "history.jsonl"
    w = HistoryWriter(p)
    w.write({"type": "header", "schema": "zhbert-history", "version": 1})
    for s in (10, 20, 30):
        w.write({"type": "train", "step": s, "loss": 1.0 / s})
    w.close()
    with open(p, "a") as f:
        f.write('{"type": "train", "st')  # a record being written
    assert [r.get("step") for r in iter_records(p)] == [None, 10, 20, 30]
    assert rewrite_for_resume(p, 20)[0] == 1
    assert [r.get("step") for r in iter_records(p)] == [None, 10, 20]
    assert json.loads(p.read_text().splitlines()[0])["schema"] == "zhbert-history"
