"""Which corpus files zhbert reads, told by their names: the kind of each (which reader)
and its compression (which opener). ``zhbert.corpus.sources`` reads them; ``prepare``
lists them in its help and errors (``file_types``). Also which files a source directory
contributes (``expand_directory``) and what is said of the rest (``left_out_note``), the
files refused when named (``not_read``: archives), and how a file name that is not
UTF-8 is shown (``shown``)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

# suffix -> kind: picks the reader, and is the list of files a directory contributes
KINDS = {".txt": "text", ".jsonl": "jsonl", ".json": "json", ".xml": "wiki", ".parquet": "parquet",
         ".csv": "csv", ".tsv": "tsv"}
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": zstandard.open}
DECOMPRESSORS = {".gz": "gunzip", ".bz2": "bunzip2", ".xz": "unxz", ".zst": "unzstd"}  # the shell's name
# what reading a damaged compressed stream raises (zstandard.ZstdError is not an OSError)
DAMAGE = (EOFError, OSError, lzma.LZMAError, zstandard.ZstdError)
# archives, and the command that unpacks each (GNU tar unpacks a compressed .tar too):
# named as a source, an archive's bytes would be read as text
ARCHIVES = {".zip": "unzip {path} -d DIR", ".tar": "tar xf {path} -C DIR",
            ".tgz": "tar xzf {path} -C DIR", ".7z": "7z x {path} -oDIR", ".rar": "unrar x {path} DIR/"}
SURROGATES = re.compile("[\ud800-\udfff]")  # in a str, never text: no UTF-8 encodes them


def file_types() -> str:
    """'.txt .jsonl ..., optionally .gz ...': the files read, from the tables that choose the reader."""
    return f"{' '.join(KINDS)}, optionally {' '.join(OPENERS)}"


def _suffixes(path: Path) -> tuple[str | None, str | None]:
    """'a.jsonl.zst' -> ('.jsonl', '.zst'): the suffix that names the format, and the compression."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in OPENERS else None
    return (suffixes[-1] if suffixes else None), compression


def split_suffix(path: Path) -> tuple[str | None, str | None]:
    """'a.jsonl.zst' -> ('jsonl', '.zst'); kind None when the name says nothing."""
    suffix, compression = _suffixes(path)
    return KINDS.get(suffix), compression


def not_read(path: Path) -> str | None:
    """Why a file named as a source is refused, with the fix, completing "<path> ...":
    archives, whose bytes read as text would go into the training text. None for any other
    file."""
    suffix = _suffixes(path)[0]
    if suffix in ARCHIVES:
        return (f"is a {suffix[1:]} archive, and archives are not read: unpack it "
                f"(`{ARCHIVES[suffix].format(path=path)}`) and give the folder DIR")
    return None


def shown(text: str) -> str:
    """``text`` as valid text for JSON and any terminal: the undecodable bytes of a file name
    (Python's surrogate escapes, e.g. a GBK name from a Windows zip) as \\xNN, any other lone
    surrogate as \\uNNNN. The same bytes always read the same, so a name makes a stable id."""
    def escape(m: re.Match) -> str:
        c = ord(m.group())
        return f"\\x{c - 0xdc00:02x}" if 0xdc80 <= c <= 0xdcff else f"\\u{c:04x}"
    return SURROGATES.sub(escape, text)


@dataclass
class Listing:
    """A source directory's files as ``expand_directory`` sorts them out, each list sorted."""

    files: list[Path] = field(default_factory=list)         # corpus files, told by their names
    others: list[Path] = field(default_factory=list)        # files whose names are no corpus type
    linked_dirs: list[Path] = field(default_factory=list)   # links to folders: not followed
    broken_links: list[Path] = field(default_factory=list)  # links to nothing
    outputs: list[tuple[Path, str]] = field(default_factory=list)  # zhbert's folders, what each is
    hidden: list[Path] = field(default_factory=list)        # hidden folders, hidden corpus files
    datasets: list[Path] = field(default_factory=list)      # saved Hugging Face datasets below


def is_saved_dataset(path: Path) -> bool:
    """A folder ``datasets.Dataset.save_to_disk`` wrote: a state.json listing its Arrow
    shards (``_data_files``), or a dataset_dict.json naming its splits. Any state.json alone
    would make a folder of text files (another program's state) vanish from a corpus."""
    from zhbert.outputs import json_object  # (it imports nothing of the corpus)
    if not path.is_dir():
        return False
    return ("_data_files" in json_object(path / "state.json")
            or "splits" in json_object(path / "dataset_dict.json"))


def expand_directory(directory: Path) -> Listing:
    """The files under a directory, recursively, in a stable order; the name picks the
    reader, and guessing a format is no reader. Never read: anything hidden below the
    directory (.git, .ipynb_checkpoints, .Trash-1000 hold copies and metadata; the directory
    itself the user named), zhbert's own folders (``zhbert_output``) and links to folders (a
    link may loop back into the tree). A link to a file is read where it points."""
    found = Listing()
    for top, dirs, names in os.walk(directory):  # followlinks=False: linked folders unvisited
        top = Path(top)
        if what := zhbert_output(top):
            found.outputs.append((top, what))
            dirs.clear()
            continue
        if top != directory and is_saved_dataset(top):  # its .json files are no corpus
            found.datasets.append(top)
            dirs.clear()
            continue
        visible = [d for d in dirs if not d.startswith(".")]
        found.hidden += [top / d for d in dirs if d.startswith(".")]
        found.hidden += [top / n for n in names if n.startswith(".") and split_suffix(Path(n))[0]]
        found.linked_dirs += [top / d for d in visible if (top / d).is_symlink()]
        dirs[:] = [d for d in visible if not (top / d).is_symlink()]
        for path in (top / n for n in names if not n.startswith(".")):
            if path.is_file():
                (found.files if split_suffix(path)[0] else found.others).append(path)
            elif not path.exists():  # a FIFO or socket is no file either: left out quietly
                found.broken_links.append(path)
    for part in (found.files, found.others, found.linked_dirs, found.broken_links, found.outputs,
                 found.hidden, found.datasets):
        part.sort()
    return found


def zhbert_output(folder: Path) -> str | None:
    """What ``folder`` is if zhbert wrote it or it holds a model, None for any other folder:
    read as corpus, a data directory's vocab.txt, a run's history.jsonl and a model's
    vocab.txt would train a model on zhbert's output. Told by content: a manifest.json
    alone may be a web app's."""
    # imported here: they load the training code, which listing a folder needs nowhere else
    import zhbert.datadir  # noqa: F401  (registers how a data directory's manifest is known)
    from zhbert.outputs import is_output
    from zhbert.run import DATA_MANIFEST, EXPORT_MARKER, is_run_dir

    if is_output(folder, DATA_MANIFEST):
        return "a zhbert data directory (zhbert prepare)"
    if is_run_dir(folder):
        return "a zhbert training run"
    if (folder / EXPORT_MARKER).is_file():  # any Hugging Face model's weights: no corpus either
        return f"a model (it holds {EXPORT_MARKER})"
    return None


def _few(paths: list[Path]) -> str:
    return ", ".join(map(str, paths[:3])) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'s' * (len(items) > 1)}"


def left_out_note(directory: Path, found: Listing) -> str | None:
    """What to say of what ``expand_directory`` did not take, None if nothing: named directly,
    such a file is read as text, so leaving it out of a directory silently hides text the
    user meant to give. Hidden folders and hidden files named as corpus (``.draft.txt``) are
    named too; other hidden files (``.DS_Store``, ``.gitignore``) are left out quietly."""
    rel = [p.relative_to(directory) for p in found.others]
    refused = [r for r in rel if not_read(r)]
    plain = [r for r in rel if not not_read(r)]
    notes = []
    if plain:
        notes.append(f"left out {_count(plain, 'file')} whose names are no corpus file type "
                     f"({_few(plain)}; read: {file_types()}): to include a text file, rename it "
                     "to .txt or name it as a source of its own (read as plain text)")
    if refused:
        notes.append(f"left out {_few(refused)}: archives are not read (name one as a "
                     "source to be told how to convert it)")
    if found.linked_dirs:
        notes.append(f"left out {_count(found.linked_dirs, 'link')} to a folder "
                     f"({_few([p.relative_to(directory) for p in found.linked_dirs])}), not followed "
                     "as a link may loop back into the tree: name the folder as a source of its own")
    if found.broken_links:
        notes.append(f"left out {_count(found.broken_links, 'broken link')} "
                     f"({_few([p.relative_to(directory) for p in found.broken_links])}): "
                     "the file it points to does not exist")
    if found.hidden:
        folders = [p for p in found.hidden if p.is_dir()]
        files = [p for p in found.hidden if not p.is_dir()]
        counts = [_count(kind, f"hidden {noun}") for kind, noun in ((folders, "folder"), (files, "file")) if kind]
        notes.append(f"left out {' and '.join(counts)} "
                     f"({_few([p.relative_to(directory) for p in found.hidden])}): names starting "
                     "with '.' are not read (copies and metadata, as in .git or "
                     ".ipynb_checkpoints): name one as a source of its own to read it")
    notes += [f"left out {path}: it is {what}, output rather than corpus" for path, what in found.outputs]
    notes += [f"{d} is a saved Hugging Face dataset: name it as a source of its own"
              for d in found.datasets]
    return "; ".join(notes) or None


def open_stream(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a stream."""
    opener = OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")
