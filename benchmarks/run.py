"""Run the benchmark topics side by side and write their pages plus an index.

    python -m benchmarks.run                      # every topic, full sizes, into docs/benchmarks/
    python -m benchmarks.run --quick              # tiny sizes (< 1 minute per topic): a smoke test, not numbers
    python -m benchmarks.run --only foundation    # some topics only; the index still lists the others' pages

A topic is a module `benchmarks/<topic>.py` with ``main(out_dir: pathlib.Path, quick: bool = False) -> Path`` that
writes ``out_dir/<topic>.md``. A topic whose module does not exist yet is skipped with a message; a topic that
raises is reported (traceback on stderr, "failed" in the index) and the others still run; the exit status is 1 if
any topic failed. The index (``out_dir/index.md``) links every page with a one-line summary: the page's
``<!-- summary: ... -->`` line (see `benchmarks.common.write_page`), else the first line of the topic module's
docstring.

JAX's persistent compilation cache is switched off for the whole run, so that "cold" timings include compilation
as they do for a user with JAX's defaults (the Makefile exports JAX_COMPILATION_CACHE_DIR for the tests).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks import common

__all__ = ["TOPICS", "main", "run_topics", "write_index"]

# In the order they are run and listed.
TOPICS = ("foundation", "graph_hom", "bplmc", "deconvolution", "admm", "mixflow", "cmcd", "meta_gibbs")
DEFAULT_OUT = Path("docs/benchmarks")


def _load(topic: str):
    """The topic's module, or None when `benchmarks/<topic>.py` does not exist (yet)."""
    name = f"benchmarks.{topic}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None
        raise
    if not callable(getattr(module, "main", None)):
        raise AttributeError(f"{name} has no main(out_dir, quick=False); every topic module must define one")
    return module


def _docstring_line(module) -> str:
    doc = (getattr(module, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def run_topics(topics, out_dir: Path, quick: bool) -> list[dict]:
    """Run each topic's ``main``; return one record per topic: name, status, page, seconds, summary."""
    records = []
    for topic in topics:
        record = {"topic": topic, "status": "", "page": None, "seconds": None, "summary": ""}
        try:
            module = _load(topic)
        except Exception:  # an import error inside an existing topic module is that topic's failure
            traceback.print_exc()
            record["status"] = "failed (import)"
            records.append(record)
            continue
        if module is None:
            print(f"[benchmarks] {topic}: benchmarks/{topic}.py does not exist yet, skipped", file=sys.stderr)
            record["status"] = "not written yet"
            records.append(record)
            continue
        record["summary"] = _docstring_line(module)
        print(f"[benchmarks] {topic}: running{' (quick)' if quick else ''} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            page = Path(module.main(Path(out_dir), quick=quick))
        except Exception:
            traceback.print_exc()
            record["status"] = "failed"
        else:
            record["status"] = "ok" + (" (quick)" if quick else "")
            record["page"] = page
            record["summary"] = common.read_summary(page) or record["summary"]
        record["seconds"] = time.perf_counter() - start
        print(f"[benchmarks] {topic}: {record['status']} in {record['seconds']:.1f} s", file=sys.stderr, flush=True)
        records.append(record)
    return records


def write_index(out_dir: Path, records: list[dict], command: str) -> Path:
    """Write ``out_dir/index.md``: every known topic, with its page (from this run or an earlier one)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    this_run = {record["topic"]: record for record in records}
    rows = []
    for topic in TOPICS + tuple(t for t in this_run if t not in TOPICS):
        record = this_run.get(topic)
        page = out_dir / f"{topic}.md"
        if record is not None and record["page"] is not None:
            page = Path(record["page"])
        has_page = page.exists()
        link = f"[{topic}]({page.name})" if has_page else topic
        if record is None:
            status = "not run this time" + ("; page from an earlier run" if has_page else "")
            summary = common.read_summary(page) if has_page else ""
            seconds = None
        else:
            status = record["status"] + ("; page from an earlier run" if record["page"] is None and has_page else "")
            summary = record["summary"] or (common.read_summary(page) if has_page else "")
            seconds = record["seconds"]
        rows.append([link, summary or "", status, "-" if seconds is None else f"{seconds:.0f} s"])
    info = common.machine_info()
    body = [
        "# Benchmarks",
        "",
        "Each topic runs its methods side by side in one process and writes its own page with the measured numbers, "
        "the machine and the command. Regenerate everything with `make bench` (`python -m benchmarks.run`).",
        "",
        common.markdown_table(["topic", "summary", "status", "time"], rows),
        "",
        f"Last command: `{command}` on {info['date']}, {info['processor']} ({info['cores']}), jax {info['jax / jaxlib']}.",
        "",
    ]
    path = out_dir / "index.md"
    path.write_text("\n".join(body))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test; the numbers mean little)")
    parser.add_argument("--only", nargs="+", metavar="TOPIC", help=f"run only these topics (of {', '.join(TOPICS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    topics = TOPICS
    if args.only:
        unknown = [t for t in args.only if t not in TOPICS]
        if unknown:
            parser.error(f"unknown topic(s) {unknown}; valid topics: {', '.join(TOPICS)}")
        topics = tuple(t for t in TOPICS if t in args.only)
    command = (
        "python -m benchmarks.run"
        + (" --quick" if args.quick else "")
        + (f" --only {' '.join(topics)}" if args.only else "")
        + (f" --out {args.out}" if args.out != DEFAULT_OUT else "")
    )
    with common.persistent_cache_disabled():
        records = run_topics(topics, args.out, args.quick)
    index = write_index(args.out, records, command)
    print(f"[benchmarks] index: {index}", file=sys.stderr)
    return 1 if any(r["status"].startswith("failed") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
