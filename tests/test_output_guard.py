"""--force (and analyze, compare, sweep report, which always replace their --out) replaces a
folder only where its marker file is zhbert's by content, not by name (outputs.output_kind):
`prepare --out scratch/webapp --force` deleted a web app's folder for its manifest.json, and
a downloaded Hugging Face model folder holds model.safetensors as an export does."""

import json

import pytest
from test_prepare import ARTICLE
from test_report import write_history
from test_sweep import _args, _space
from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main
from zhbert.sweep import command


def _prepare(request, tmp_path):
    (tmp_path / "ok.txt").write_text(ARTICLE)
    return ["prepare", str(tmp_path / "ok.txt"), "--workers", "1", "--force"]


def _export(request, tmp_path):
    return ["export", str(request.getfixturevalue("trained_run")), "--force"]


def _analyze(request, tmp_path):
    return ["analyze", str(write_history(tmp_path / "h" / "history.jsonl", n=30)), "--n-boot", "0"]


def _compare(request, tmp_path):
    return ["compare", *(str(write_history(tmp_path / r / "history.jsonl", n=20, run=r).parent)
                         for r in ("a", "b"))]


def _sweep(request, tmp_path):
    return ["sweep", str(_space(tmp_path)), "--data", str(request.getfixturevalue("synthetic_data")),
            "--trials", "1", "--steps", "2", "--force"]


def _sweep_report(request, tmp_path):
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), request.getfixturevalue("synthetic_data"),
                                         tmp_path / "s", trials=1, steps=2))
    return ["sweep", "report", str(sweep_dir)]


# what each command calls its output, its marker, the command (less --out), and a file of
# the marker's name another program wrote there
KINDS = {
    "data": ("zhbert data directory", "manifest.json", _prepare,
             json.dumps({"name": "Web app", "start_url": "/", "display": "standalone"})),
    "export": ("zhbert export", "model.safetensors", _export, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "),
    "analysis": ("zhbert analysis", "analysis.json", _analyze, json.dumps({"schema": "other-tool"})),
    "comparison": ("zhbert comparison", "comparison.json", _compare, json.dumps({"runs": []})),
    "sweep": ("zhbert sweep", "sweep.json", _sweep, json.dumps({"objective": "acc", "trials": 3})),
    "sweep report": ("zhbert sweep report", "sweep_report.json", _sweep_report,
                     json.dumps({"spec": {"name": "x"}, "trials": []})),
}


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def _refused(capsys, argv, out, what, marker):
    capsys.readouterr()  # what building the fixtures said
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"--out {out} exists and is not an earlier {what} (the file {out / marker} is not" in err
    assert "choose a new or empty directory" in err


@pytest.mark.parametrize("kind", KINDS)
def test_a_foreign_file_of_the_markers_name_is_not_replaced(request, tmp_path, capsys, kind):
    what, marker, argv, foreign = KINDS[kind]
    argv = argv(request, tmp_path)
    out = tmp_path / "webapp"
    out.mkdir()
    _write(out / marker, foreign)
    (out / "index.html").write_text("<h1>mine</h1>")
    if kind == "export":  # a downloaded Hugging Face model's files beside its weights
        (out / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
        (out / "README.md").write_text("# bert-base-chinese\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _refused(capsys, [*argv, "--out", str(out)], out, what, marker)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("content", [b"\xff\xfe{\x00", b'{"format": "zhbert-da', b"[]"])
def test_an_unreadable_marker_is_not_replaced(tmp_path, capsys, content):
    argv = _prepare(None, tmp_path)
    out = tmp_path / "data"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    _refused(capsys, [*argv, "--out", str(out)], out, "zhbert data directory", "manifest.json")
    assert (out / "manifest.json").read_bytes() == content


@pytest.mark.parametrize("kind", KINDS)
def test_an_earlier_output_is_still_replaced(request, tmp_path, capsys, kind):
    what, marker, argv, _ = KINDS[kind]
    argv = [*argv(request, tmp_path), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    (tmp_path / "out" / "stale.txt").write_text("from before")
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / marker).exists()
    if kind != "sweep":  # a sweep starts over inside its folder (study.start_over)
        assert not (tmp_path / "out" / "stale.txt").exists()


def test_an_export_from_before_config_json_named_its_language_is_replaced(trained_run, tmp_path):
    """Exports before the tokenizer work have no zhbert_language: their model card tells."""
    out = tmp_path / "model"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    del cfg["zhbert_language"]
    (out / "config.json").write_text(json.dumps(cfg))
    assert main(["export", str(trained_run), "--out", str(out), "--force"]) == 0
    assert "zhbert_language" in json.loads((out / "config.json").read_text())


def test_a_zhbert_sweep_json_this_zhbert_cannot_read_is_started_over_with_force(
        tmp_path, synthetic_data, capsys):
    """Its keys say zhbert's (study.is_spec_json) though its space is unreadable: resuming it
    is one message that names --force, and --force starts the sweep over there."""
    out = tmp_path / "s"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"space": [], "identity": "x", "study_name": "s",
                                                "objective": "acc"}))
    assert main(["sweep", str(out)]) == 2
    assert "start the sweep again with --force" in capsys.readouterr().err
    _, spec = command.prepare(_args(_space(tmp_path), synthetic_data, out, trials=1, steps=2, force=True))
    assert json.loads((out / "sweep.json").read_text())["identity"] == spec.identity()


def test_prepare_takes_an_empty_folder_without_force(tmp_path, capsys):
    """check_out's advice is "choose a new or empty directory"; prepare then refused the empty
    one: "already exists; pass --force"."""
    (tmp_path / "ok.txt").write_text(ARTICLE)
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "ok.txt"), "--workers", "1", "--out", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "manifest.json").is_file()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert main(["prepare", str(tmp_path / "ok.txt"), "--workers", "1", "--out", str(tmp_path / "full")]) == 2
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
