"""The built-in English corpus (`zhbert prepare builtin-en`, or `builtin --language en`).

Real English prose that a pip package ships, so the demo and the tests need no
download: gensim's test data holds

- ``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``: 206
  pages of an English Wikipedia dump (6 MB of XML), read by the ordinary dump
  reader (corpus.wiki), so English markup goes the same way as any dump;
- ``lee_background.cor``: the Lee corpus, 300 Australian news articles, one
  article per line.

Only the data files are read; gensim itself is never imported (find_spec).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator

from zhbert.corpus.document import Document
from zhbert.errors import UserError

SPEC = "builtin-en"
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
NEWS_FILE = "lee_background.cor"
FILES = (("wiki", WIKI_FILE), ("builtin-en", NEWS_FILE))  # (SourceInfo kind, file)


def data_dir() -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the built-in English corpus needs the gensim package (it ships the "
                        "text); pip install gensim, or name English corpus files instead")
    return Path(spec.submodule_search_locations[0]) / "test" / "test_data"


def files() -> list[tuple[str, Path]]:
    """(kind, path) of the corpus files; a UserError when one is missing."""
    out = []
    for kind, name in FILES:
        path = data_dir() / name
        if not path.is_file():
            raise UserError(f"the built-in English corpus file {path} is missing; reinstall gensim")
        out.append((kind, path))
    return out


def news_documents(path: Path) -> Iterator[Document]:
    """The Lee corpus: an article per line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield Document(f"builtin-en:lee#{lineno}", line.strip(), "builtin-en:lee", ("news",))
