"""--out with --force replaces only what zhbert wrote there before (outputs.check_out). A
newcomer's `prepare --force` and `export --force` deleted a training run, a folder of
unrelated files and the corpus file being read, each named by mistake as --out."""

import json
import shutil

from test_prepare import ARTICLE
from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main


def _run(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_prepare_force_keeps_a_folder_it_did_not_write(tmp_path, capsys):
    (tmp_path / "ok.txt").write_text(ARTICLE)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("important")
    rc, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(home), "--force",
                   "--workers", "1")
    assert rc == 2 and f"--out {home} exists and is not an earlier zhbert data directory" in err
    assert (home / "thesis.tex").read_text() == "important"


def test_prepare_force_keeps_the_folder_of_its_own_source(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text(ARTICLE)
    rc, _ = _run(capsys, "prepare", str(src / "ok.txt"), "--out", str(src), "--force", "--workers", "1")
    assert rc == 2 and (src / "ok.txt").read_text() == ARTICLE
    # an earlier data directory is replaceable, but not while it holds the file being read
    out = tmp_path / "data"
    assert _run(capsys, "prepare", str(src / "ok.txt"), "--out", str(out), "--workers", "1")[0] == 0
    (out / "more.txt").write_text(ARTICLE)
    rc, err = _run(capsys, "prepare", str(out / "more.txt"), "--out", str(out), "--force", "--workers", "1")
    assert rc == 2 and "holds the corpus file" in err and (out / "more.txt").read_text() == ARTICLE
    assert _run(capsys, "prepare", str(src / "ok.txt"), "--out", str(out), "--force", "--workers", "1")[0] == 0


def test_prepare_and_export_force_keep_a_run(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (tmp_path / "ok.txt").write_text(ARTICLE)
    before = _tree(run)
    rc, err = _run(capsys, "export", str(run), "--out", str(run), "--force")
    assert rc == 2 and "not an earlier zhbert export" in err
    for out in (run, run / "checkpoints"):
        rc, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(out), "--force",
                       "--workers", "1")
        assert rc == 2 and "not an earlier zhbert data directory" in err
    assert _tree(run) == before


def test_a_run_given_as_data_names_the_data_directory_it_was_trained_on(trained_run, capsys):
    """The old message advised `zhbert prepare SOURCES --out RUN`: replacing the run."""
    rc, err = _run(capsys, "data", "report", str(trained_run))
    data_dir = json.loads((trained_run / "config.json").read_text())["data"]["dir"]
    assert rc == 2 and "is a training run, not a data directory" in err and data_dir in err
    assert "--out" not in err
