"""The full conformance run: ``python -m tests.conformance.run`` (``make conformance``) from the repository root.

Two parts, both written to ``docs/conformance.md``:

1. The NUTS comparison. For every corpus model, samplax ``nuts`` and NumPyro's NUTS (vectorised chains) run with the
   entry's settings; every compared scalar component's mean must agree within 4 combined MCSE and its sd within
   15 % (`compare.compare`). The command exits non-zero if any enforced comparison fails or errors.
2. The method-support matrix. Every registered method (`samplax.infer.options.methods()`) runs on every corpus model
   at small settings and is classified: ``ok`` (ran; for methods that return posterior draws, the worst
   ``|mean - ref mean| / ref sd`` against the NumPyro reference of part 1 is shown), ``wrong`` (ran, but some
   component's mean misses the reference by more than 4 combined MCSE and more than 0.1 reference sd:
   `compare.matrix_figures`), ``refused`` (raised ``samplax.UnsupportedModelError`` before compiling) or ``error`` (any other
   exception, or no result within ``--cell-timeout`` seconds: a defect, recorded with its message). Each model's
   cells run in a worker process of their own, so that a cell that never returns cannot stop the run.

Options select models and methods (``--models``, ``--methods``, ``--tag``), skip a part (``--no-matrix``,
``--no-nuts``), restrict the matrix (``--matrix-tag``) and set its settings (``--matrix-chains``,
``--matrix-warmup``, ``--matrix-draws``). A run keeps what it has in ``--state`` (``.conformance/``) after every
model and cell; ``--resume`` carries on from there (a full run takes hours on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import pathlib
import platform
import sys
import time
import traceback
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import samplax  # noqa: E402  (before any JAX computation: it sizes XLA's CPU thread pool)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def unsupported_error_type():
    """``samplax.UnsupportedModelError`` if samplax defines it yet, else None."""
    try:
        return getattr(samplax, "UnsupportedModelError", None)
    except Exception:  # a lazy attribute hook that raises
        return None


def classify_exception(exc: BaseException, unsupported=None) -> tuple[str, str]:
    """``("refused", feature/method line)`` for an UnsupportedModelError, else ``("error", one-line message)``.

    Args:
        exc: the exception a method raised.
        unsupported: the UnsupportedModelError class (looked up when None).

    Returns:
        The status and a one-line description.
    """
    unsupported = unsupported_error_type() if unsupported is None else unsupported
    if isinstance(unsupported, type) and isinstance(exc, unsupported):
        feature = getattr(exc, "feature", None)
        return "refused", f"{feature}" if feature else one_line(exc)
    return "error", one_line(exc)


def one_line(exc: BaseException, width: int = 160) -> str:
    """The exception's type and the first line of its message, cut to ``width`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= width else line[: width - 1] + "…"


def classify_run(worst: float | None, bias_z: float | None = None) -> str:
    """``ok`` or ``wrong`` for a method that ran.

    Args:
        worst: its worst standardised mean error (None if not judged: no reference).
        bias_z: its worst mean error in combined MCSE over the components off by more than ``compare.MIN_BIAS``
            sds (`compare.matrix_figures`).

    Returns:
        ``wrong`` if a figure is not finite or ``bias_z`` exceeds ``compare.Z_MAX``, else ``ok``.
    """
    from .compare import Z_MAX

    if worst is None:
        return "ok"
    if not math.isfinite(worst) or bias_z is None or not math.isfinite(bias_z):
        return "wrong"
    return "wrong" if bias_z > Z_MAX else "ok"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def release_compiled_programs():
    """Drop every compiled program (samplax's, the bridge's and JAX's own caches) between two corpus models.

    LLVM maps each executable's code into memory, and one process holding the programs of some 30 models hits the
    kernel's limit on memory maps (``vm.max_map_count``, 65530 here): measured, "LLVM compilation error: Cannot
    allocate memory" at the 29th model with 21 GiB of memory free.
    """
    import gc

    import jax

    from samplax.infer.run import COMPILED
    from samplax.models import bridge

    COMPILED.clear()
    bridge.clear_compiled()
    jax.clear_caches()
    gc.collect()


def run_nuts_part(selected, references, log, results=None, progress=lambda: None) -> list[dict]:
    """Part 1: samplax nuts against NumPyro NUTS for each entry; fills ``references`` with NumPyro's samples.

    ``results`` (a list, filled and returned) and ``progress`` (called after each model) let the runner rewrite the
    page as it goes, so an interrupted run leaves its rows.
    """
    from . import compare

    results = [] if results is None else results
    done = {row["name"] for row in results}  # rows already there: a resumed run
    for entry in selected:
        if entry.name in done:
            continue
        row = {"name": entry.name, "entry": entry}
        try:
            data = entry.data()
            sites = compare.compared_sites(entry, data)
            ref = compare.numpyro_nuts(entry, data)
            references[entry.name] = (ref["samples"], sites)
            row.update(ref_seconds=ref["seconds"], ref_divergences=ref["divergences"], sites=sites)
        except Exception as exc:  # the corpus itself is broken: always a failure
            row.update(status="reference error", message=one_line(exc))
            results.append(row)
            log(f"[nuts] {entry.name}: NumPyro reference failed: {row['message']}")
            progress()
            continue
        try:
            fit = compare.samplax_fit(entry, data)
            row["seconds"] = fit["seconds"]
            cmp = compare.compare(fit["samples"], ref["samples"], sites, log_sites=entry.log_sites)
            row.update(status="pass" if cmp.passed else "fail", comparison=cmp)
        except Exception as exc:
            row.update(status="error", message=one_line(exc))
        results.append(row)
        log(
            f"[nuts] {entry.name}: {row['status']} "
            + (
                f"z={row['comparison'].worst_z:.2f} ({row['comparison'].worst_z_component}) "
                f"sd={row['comparison'].worst_sd:.3f} ({row['comparison'].worst_sd_component})"
                if "comparison" in row
                else row.get("message", "")
            )
        )
        progress()
        release_compiled_programs()
    return results


def run_matrix_cells(entry, methods, settings, emit) -> None:
    """Run every method on one entry in this process; ``emit(cell, samples)`` after each (samples None if none).

    ``cell`` holds ``method``, ``family``, ``status`` (``ran``, ``refused`` or ``error``), ``seconds`` and, unless it
    ran, ``message``.
    """
    from samplax.infer import options

    from . import compare

    unsupported = unsupported_error_type()
    data = entry.data()
    for method in methods:
        cell = {"method": method, "family": options.schema(method).family}
        start = time.perf_counter()
        samples = None
        try:
            samples = compare.samplax_fit(entry, data, method=method, **settings)["samples"]
            cell["status"] = "ran"
        except Exception as exc:
            status, message = classify_exception(exc, unsupported)
            cell.update(status=status, message=message)
            if status == "error" and os.environ.get("SAMPLAX_CONFORMANCE_TRACEBACK"):
                traceback.print_exc()
        cell["seconds"] = time.perf_counter() - start
        emit(cell, samples)
        release_compiled_programs()


def matrix_worker(name: str, methods: list[str], settings: dict, folder: str) -> int:
    """The child process of `run_matrix_part`: one JSON line per cell on stdout, samples in ``folder``."""
    import json

    import numpy as np

    from .corpus import CORPUS

    def emit(cell, samples):
        if samples is not None:
            np.savez(os.path.join(folder, f"{cell['method']}.npz"), **samples)
        print(CELL_PREFIX + json.dumps(cell), flush=True)

    entry = CORPUS[name]
    run_matrix_cells(entry, methods, settings, emit)
    return 0


CELL_PREFIX = "@@cell "


def run_matrix_part(
    selected,
    methods,
    references,
    settings,
    log,
    cells=None,
    progress=lambda: None,
    cell_timeout=300.0,
    jobs=1,
    page=None,
    reference_ready=lambda name: None,
) -> dict:
    """Part 2: every method on every entry at small settings; fills and returns ``{(model, method): cell}``.

    Each model's cells run in a child process (`matrix_worker`), so that a cell that never returns cannot stop the
    run: a cell with no result after ``cell_timeout`` seconds is recorded as an error, the child is killed (a stuck
    XLA program also blocks every later program of its process) and a new child takes the model's remaining methods.
    A child that dies records its current cell as an error with its exit status. ``jobs`` models run at once (one
    child each: XLA compiles a program on one core, so two jobs use a 2-core machine's cores). ``page`` is the lock
    held while ``cells`` change and ``progress`` runs; ``reference_ready(name)`` returns once part 1 has made (or
    failed to make) that model's reference, so that both parts can run at once.
    """
    import concurrent.futures
    import json
    import queue
    import subprocess
    import tempfile
    import threading

    import numpy as np

    from . import compare

    cells = {} if cells is None else cells
    page = threading.Lock() if page is None else page

    def run_entry(entry):
        remaining = [m for m in methods if (entry.name, m) not in cells]  # cells already there: a resumed run
        while remaining:
            with tempfile.TemporaryDirectory() as folder:
                command = [
                    sys.executable,
                    "-m",
                    "tests.conformance.run",
                    "--matrix-worker",
                    entry.name,
                    "--methods",
                    ",".join(remaining),
                    "--matrix-chains",
                    str(settings["chains"]),
                    "--matrix-warmup",
                    str(settings["warmup"]),
                    "--matrix-draws",
                    str(settings["draws"]),
                    "--worker-dir",
                    folder,
                ]
                child = subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
                )
                lines: queue.Queue = queue.Queue()

                def read(stream=child.stdout, lines=lines):
                    for line in stream:
                        lines.put(line)
                    lines.put(None)

                threading.Thread(target=read, daemon=True).start()
                tail: list[str] = []
                while remaining:
                    method = remaining[0]
                    restart = False
                    try:
                        line = lines.get(timeout=cell_timeout)
                    except queue.Empty:
                        restart = True
                        child.kill()
                        child.wait()
                        cell = {
                            "status": "error",
                            "message": f"no result within {cell_timeout:g} s (the process was stopped)",
                            "seconds": cell_timeout,
                        }
                    else:
                        if line is None:  # the child ended before reporting this cell
                            restart = True
                            status = child.wait()
                            detail = tail[-1].strip() if tail else ""
                            cell = {
                                "status": "error",
                                "message": f"the process ended with status {status}"
                                + (f": {detail}" if detail else ""),
                                "seconds": 0.0,
                            }
                        elif not line.startswith(CELL_PREFIX):
                            tail = (tail + [line])[-20:]
                            continue
                        else:
                            cell = json.loads(line[len(CELL_PREFIX) :])
                    reference_ready(entry.name)  # the NUTS part may still be making it (a pipelined run)
                    cell = _judge(cell, entry, method, references, folder, compare, np)
                    cell.pop("method", None)
                    with page:  # the page is rendered from `cells` by the other jobs too
                        cells[(entry.name, method)] = cell
                        progress()
                    remaining.pop(0)
                    figure = f" {cell['worst']:.2f}" if cell.get("worst") is not None else ""
                    log(
                        f"[matrix] {entry.name} x {method}: {cell['status']}{figure} ({cell['seconds']:.1f}s)"
                        + (f" {cell['message']}" if "message" in cell else "")
                    )
                    if restart:
                        break  # a new child takes the model's remaining methods
                if not restart:
                    child.wait(timeout=60)

    if jobs <= 1:
        for entry in selected:
            run_entry(entry)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(run_entry, entry) for entry in selected]:
                future.result()
    return cells


def _judge(cell, entry, method, references, folder, compare, np) -> dict:
    """Turn a child's ``ran`` into ``ok``/``wrong`` against the NumPyro reference (when part 1 made one)."""
    from samplax.infer import options

    cell.setdefault("family", options.schema(method).family)
    if cell["status"] != "ran":
        return cell
    worst = bias_z = None
    if entry.name in references:
        ref_samples, sites = references[entry.name]
        with np.load(os.path.join(folder, f"{method}.npz")) as stored:
            samples = {name: stored[name] for name in stored.files}
        missing = [s for s in sites if s not in samples]
        worst, bias_z = (
            (math.inf, math.inf)
            if missing
            else compare.matrix_figures(samples, ref_samples, sites, log_sites=entry.log_sites)
        )
    cell.update(status=classify_run(worst, bias_z), worst=worst, bias_z=bias_z)
    return cell


def save_state(folder: pathlib.Path, settings: dict, nuts_rows, references, cells, elapsed: float) -> None:
    """Write what a run has so far to ``folder``, so that ``--resume`` carries on from it.

    ``state.json`` holds the matrix settings, the NUTS rows (their comparisons as plain data), the matrix cells and
    the wall time so far; ``ref_<model>.npz`` holds NumPyro's reference draws of each model (written once).
    """
    import dataclasses
    import json

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for name, (samples, _sites) in list(references.items()):  # the NUTS part may be adding one
        path = folder / f"ref_{name}.npz"
        if not path.exists():
            np.savez(path, **samples)
    rows = []
    for row in nuts_rows:
        row = {k: v for k, v in row.items() if k != "entry"}
        if "comparison" in row:
            row["comparison"] = dataclasses.asdict(row["comparison"])
        rows.append(row)
    state = dict(
        settings=settings,
        elapsed=elapsed,
        nuts_rows=rows,
        cells=[dict(model=model, method=method, **cell) for (model, method), cell in cells.items()],
    )
    temporary = folder / "state.json.tmp"
    temporary.write_text(json.dumps(state))
    temporary.replace(folder / "state.json")  # atomic: a run killed while writing keeps the previous state


def load_state(folder: pathlib.Path, settings: dict) -> tuple[list, dict, dict, float]:
    """``(nuts_rows, references, cells, elapsed)`` saved by `save_state` (empty if there is none).

    Raises:
        SystemExit: the saved run used other matrix settings (its cells would not be comparable).
    """
    import json

    import numpy as np

    from .compare import Comparison
    from .corpus import CORPUS

    path = folder / "state.json"
    if not path.exists():
        return [], {}, {}, 0.0
    state = json.loads(path.read_text())
    if state["settings"] != settings:
        raise SystemExit(
            f"the run saved in {folder} used matrix settings {state['settings']}, not {settings}: "
            "resume with those settings or start afresh without --resume"
        )
    nuts_rows, references = [], {}
    for row in state["nuts_rows"]:
        if row["name"] not in CORPUS:
            continue
        row["entry"] = CORPUS[row["name"]]
        if "comparison" in row:
            row["comparison"] = Comparison(**row["comparison"])
        nuts_rows.append(row)
        reference = folder / f"ref_{row['name']}.npz"
        if "sites" in row and reference.exists():
            with np.load(reference) as stored:
                references[row["name"]] = ({k: stored[k] for k in stored.files}, row["sites"])
    cells = {(c.pop("model"), c.pop("method")): c for c in state["cells"]}
    return nuts_rows, references, cells, float(state["elapsed"])


def render(nuts_rows, cells, selected, matrix_models, methods, settings, command, elapsed, done=True) -> str:
    """The markdown page (``done=False``: a run still in progress, or interrupted, with the rows so far)."""
    import jax
    import numpyro

    from . import compare
    from .corpus import FEATURES

    lines = [
        "# Conformance: the NumPyro model corpus",
        "",
        "Generated by `make conformance` (`python -m tests.conformance.run`); do not edit by hand.",
        "",
        "The corpus (`tests/conformance/`) holds NumPyro models written the way NumPyro users write them: the "
        "models of NumPyro's own examples, posteriordb posteriors translated from their Stan code (Stan's "
        "implicit flat priors as `dist.ImproperUniform`), Inference Gym targets and a few user-style models. "
        "`make test` runs a quick subset (`tests/conformance/test_conformance.py`).",
        "",
        f"- Machine: {platform.node() or 'unknown'}, {platform.platform()}, {os.cpu_count()} CPUs, "
        f"JAX {jax.__version__} ({jax.default_backend()}), NumPyro {numpyro.__version__}, "
        f"Python {platform.python_version()}",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; wall time {elapsed / 60:.1f} min",
        "",
    ]
    if not done:
        lines += [
            f"**Partial page: the run was still going or was interrupted ({len(nuts_rows)} of {len(selected)} "
            f"NUTS comparisons, {len(cells)} of {len(matrix_models) * len(methods)} matrix cells).**",
            "",
        ]
    if nuts_rows:
        passed = sum(r["status"] == "pass" for r in nuts_rows)
        enforced = [r for r in nuts_rows if r["entry"].enforced]
        failed = [r for r in enforced if r["status"] != "pass"]
        lines += [
            "## samplax nuts against NumPyro NUTS",
            "",
            f"Same chains, warm-up and draws for both (NumPyro: `MCMC(NUTS(model), ..., "
            f'chain_method="vectorized")`, seed 0). Pass: every compared component\'s mean within '
            f"{compare.Z_MAX:g} combined MCSE (ArviZ) and sd within {compare.SD_RTOL:.0%}. "
            f"**{passed} of {len(nuts_rows)} pass; {len(failed)} enforced comparison(s) fail.**",
            "",
            "| model | source | C x (W + D) | components | worst mean z | worst sd ratio dev. | pass | "
            "samplax s | NumPyro s | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in nuts_rows:
            e = r["entry"]
            cmp = r.get("comparison")
            if cmp is not None:
                z = f"{cmp.worst_z:.2f} ({_escape(cmp.worst_z_component)})"
                sd = f"{cmp.worst_sd:.3f} ({_escape(cmp.worst_sd_component)})"
                comps = str(cmp.components)
            else:
                z = sd = comps = "-"
            status = r["status"] if e.enforced else f"{r['status']} (not enforced)"
            note = e.note
            if "message" in r:
                note = (note + "; " if note else "") + r["message"]
            lines.append(
                f"| {e.name} | {_escape(e.source)} | {e.chains} x ({e.warmup} + {e.draws}) | {comps} | "
                f"{z} | {sd} | {status} | {r.get('seconds', float('nan')):.1f} | "
                f"{r.get('ref_seconds', float('nan')):.1f} | {_escape(note)} |"
            )
        lines.append("")
    if cells:
        lines += [
            "## Method-support matrix",
            "",
            f"Every registered method on every model at chains={settings['chains']}, "
            f"warmup={settings['warmup']}, draws={settings['draws']}, seed 0. `ok x.xx`: ran, with the worst "
            f"`|mean - NumPyro mean| / NumPyro sd` over the compared components (short runs: a figure up to "
            f"about 0.3 can be Monte Carlo noise); `wrong x.xx (z y.y)`: ran, but some component's mean misses "
            f"NumPyro's by more than {compare.MIN_BIAS:g} NumPyro sd and more than {compare.Z_MAX:g} combined "
            "Monte Carlo standard errors (ArviZ's `mcse` of both runs; z is the worst such miss in MCSE), so the "
            "difference is bias, not noise; "
            "`refused`: raised `samplax.UnsupportedModelError` (the feature is shown); `error`: any other "
            "exception (a defect; the messages are listed below the table).",
            "",
        ]
        lines.append("| model | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---|" * len(methods))
        errors = []
        for entry in matrix_models:
            row = []
            for method in methods:
                cell = cells.get((entry.name, method))
                if cell is None:
                    row.append("")
                    continue
                text = cell["status"]
                if cell.get("worst") is not None:
                    text += f" {cell['worst']:.2f}" if math.isfinite(cell["worst"]) else " inf"
                    if cell["status"] == "wrong" and math.isfinite(cell.get("bias_z") or math.inf):
                        text += f" (z {cell['bias_z']:.1f})"
                if cell["status"] == "refused":
                    text += f" ({_escape(cell['message'])})"
                if cell["status"] == "error":
                    errors.append((entry.name, method, cell["message"]))
                    text += f" [{len(errors)}]"
                row.append(text)
            lines.append(f"| {entry.name} | " + " | ".join(row) + " |")
        lines.append("")
        totals = {s: sum(c["status"] == s for c in cells.values()) for s in ("ok", "wrong", "refused", "error")}
        lines.append("Totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()) + ".")
        lines.append("")
        if errors:
            lines += ["### Errors", ""]
            lines += [
                f"{i}. {name} x {method}: `{_escape(message)}`" for i, (name, method, message) in enumerate(errors, 1)
            ]
            lines.append("")
    lines += ["## The corpus", "", "| model | source | tags | features |", "|---|---|---|---|"]
    for entry in selected:
        lines.append(
            f"| {entry.name} | {_escape(entry.source)} | {', '.join(entry.tags)} | {', '.join(entry.features)} |"
        )
    lines += ["", "Features: " + "; ".join(f"`{k}`: {v}" for k, v in FEATURES.items()) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the selected parts, write the page, and return the exit status (1 if an enforced comparison fails)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated corpus names (default: all)")
    parser.add_argument("--tag", help="only models with this tag (quick, posteriordb, numpyro_example, ...)")
    parser.add_argument("--methods", help="comma-separated methods for the matrix (default: all registered)")
    parser.add_argument("--no-matrix", action="store_true", help="skip the method-support matrix")
    parser.add_argument("--matrix-tag", help="run the matrix only on the models with this tag")
    parser.add_argument(
        "--no-nuts", action="store_true", help="skip the NUTS comparison (the matrix then has no reference figures)"
    )
    parser.add_argument("--matrix-chains", type=int, default=2)
    parser.add_argument("--matrix-warmup", type=int, default=100)
    parser.add_argument("--matrix-draws", type=int, default=100)
    parser.add_argument(
        "--cell-timeout", type=float, default=300.0, help="seconds a matrix cell may run before it counts as an error"
    )
    parser.add_argument("--jobs", type=int, default=2, help="matrix models run at once (one worker process each)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "conformance.md"), help="the page to write")
    parser.add_argument(
        "--state", default=str(ROOT / ".conformance"), help="folder where the run keeps what it has (for --resume)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="carry on from the run saved in --state (same matrix settings)"
    )
    parser.add_argument("--matrix-worker", help=argparse.SUPPRESS)  # internal: run one model's cells (a child)
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    from .corpus import CORPUS, entries

    selected = entries(args.tag)
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in CORPUS]
        if unknown:
            parser.error(f"unknown models {unknown}; the corpus has {sorted(CORPUS)}")
        selected = [e for e in selected if e.name in names]
    from samplax.infer import options

    methods = options.methods()
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            parser.error(f"unknown methods {unknown}; registered: {methods}")
        methods = wanted

    settings = dict(chains=args.matrix_chains, warmup=args.matrix_warmup, draws=args.matrix_draws)
    if args.matrix_worker:
        return matrix_worker(args.matrix_worker, methods, settings, args.worker_dir)

    def log(message):
        print(message, flush=True)

    state = pathlib.Path(args.state)
    if args.resume:
        nuts_rows, references, cells, earlier = load_state(state, settings)
        log(f"resuming: {len(nuts_rows)} NUTS comparisons and {len(cells)} matrix cells from {state}")
    else:
        references, nuts_rows, cells, earlier = {}, [], {}, 0.0
    start = time.perf_counter() - earlier
    matrix_models = (
        [] if args.no_matrix else [e for e in selected if args.matrix_tag is None or args.matrix_tag in e.tags]
    )
    command = "python -m tests.conformance.run" + (
        "" if argv is None and len(sys.argv) <= 1 else " " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(done=False):
        save_state(state, settings, nuts_rows, references, cells, time.perf_counter() - start)
        out.write_text(
            render(
                nuts_rows,
                cells,
                selected,
                matrix_models,
                methods,
                settings,
                command,
                time.perf_counter() - start,
                done=done,
            )
        )

    # Both parts at once: the NUTS part (in this process) makes the references while the matrix's workers run, and
    # a matrix cell waits for its model's reference only to be judged. A 2-core machine's cores stay busy.
    import threading

    page = threading.Lock()
    finished = {e.name: threading.Event() for e in selected}

    def nuts_progress():
        with page:
            write()
            for row in nuts_rows:
                finished[row["name"]].set()

    nuts = None
    if not args.no_nuts:
        for row in nuts_rows:  # done in an earlier run
            finished[row["name"]].set()
        failure = []

        def run_nuts():
            try:
                run_nuts_part(selected, references, log, results=nuts_rows, progress=nuts_progress)
            except BaseException as exc:  # re-raised below, after the matrix
                failure.append(exc)
            finally:  # never leave a matrix cell waiting for a reference that will not come
                for event in finished.values():
                    event.set()

        nuts = threading.Thread(target=run_nuts)
        nuts.start()
    if matrix_models:
        run_matrix_part(
            matrix_models,
            methods,
            references,
            settings,
            log,
            cells=cells,
            progress=write,
            cell_timeout=args.cell_timeout,
            jobs=args.jobs,
            page=page,
            reference_ready=(lambda name: finished[name].wait()) if nuts is not None else (lambda name: None),
        )
    if nuts is not None:
        nuts.join()
        if failure:
            raise failure[0]
    write(done=True)
    log(f"wrote {out}")
    failed = [r["name"] for r in nuts_rows if r["entry"].enforced and r["status"] != "pass"]
    if failed:
        log(f"{len(failed)} NUTS comparison(s) failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
