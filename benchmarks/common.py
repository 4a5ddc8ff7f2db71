"""Helpers shared by the benchmark topics: timing, compile accounting, machine info and Markdown pages.

Timing rules every topic follows:

* wall time is `time.perf_counter()` around a call that ends with `jax.block_until_ready` (or a host copy), so
  asynchronous dispatch never hides work;
* steady-state timings (`median_seconds`) run the compiled function once untimed, then several timed repeats, and
  report the median; competing implementations are interleaved repeat by repeat (`interleaved_times`), so a load
  spike on a shared machine hits both sides instead of one, and their ratio is the median of the per-round ratios
  (`paired_ratio`);
* compilation is counted with JAX's public monitoring events (`CompileMeter`): how many XLA programs were compiled,
  and the seconds spent tracing, lowering and compiling them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

__all__ = [
    "CompileMeter",
    "block",
    "timed",
    "median_seconds",
    "interleaved_times",
    "interleaved_medians",
    "paired_ratio",
    "machine_info",
    "machine_markdown",
    "markdown_table",
    "fmt",
    "yes_no",
    "command_for",
    "persistent_cache_disabled",
    "write_page",
    "read_summary",
]

_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_BACKEND_EVENT = "/jax/core/compile/backend_compile_duration"


# --------------------------------------------------------------------------------------------------------- timing
def quiet_fit(model, data, **settings):
    """``samplax.fit`` as the benchmarks run it: no progress bar, no convergence warnings (the pages report the
    diagnostics themselves)."""
    import samplax

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samplax.fit(model, data, progress=False, **settings)


def block(tree):
    """Wait for every array in ``tree`` (device work finished) and return it."""
    return jax.block_until_ready(tree)


def timed(fn: Callable, *args, **kwargs):
    """``(result, seconds)`` of one call, waiting for device work to finish."""
    start = time.perf_counter()
    result = block(fn(*args, **kwargs))
    return result, time.perf_counter() - start


def median_seconds(fn: Callable, repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``fn()`` over ``repeats`` timed calls, after one untimed call (compile, caches)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    block(fn())
    times = [timed(fn)[1] for _ in range(repeats)]
    return statistics.median(times), times


def interleaved_times(fns: dict[str, Callable], repeats: int) -> dict[str, list[float]]:
    """Seconds of each ``fn()`` in ``fns`` per repeat, timed round-robin (A B C A B C ...) after one untimed call each.

    Interleaving spreads slow periods of a shared machine over every competitor instead of biasing one of them, and
    lets `paired_ratio` compare the calls of the same round.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    for fn in fns.values():
        block(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn)[1])
    return times


def interleaved_medians(fns: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median seconds of each ``fn()`` in ``fns``, timed round-robin (see `interleaved_times`)."""
    return {name: statistics.median(values) for name, values in interleaved_times(fns, repeats).items()}


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]``: the ratio of two interleaved timings.

    Timings taken in the same round share the machine's load, so their ratio is steadier than a ratio of medians.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio needs two equally long, non-empty lists of timings from the same rounds")
    return statistics.median(a / b for a, b in zip(numerator, denominator))


class CompileMeter:
    """Count XLA compilations and the seconds spent tracing, lowering and compiling while the block runs.

        with CompileMeter() as meter:
            samplax.fit(...)
        meter.compiles, meter.backend_seconds, meter.trace_seconds, meter.lower_seconds
        meter.programs        # [(name of the jitted function, XLA compile seconds), ...] in compile order

    Uses JAX's public `jax.monitoring` duration events; a compilation served from the persistent cache still
    counts as a compile event but takes little time.
    """

    def __init__(self):
        self.compiles = 0
        self.backend_seconds = 0.0
        self.trace_seconds = 0.0
        self.lower_seconds = 0.0
        self.programs: list[tuple[str, float]] = []

    def _listen(self, event: str, duration: float, **kwargs):
        if event == _BACKEND_EVENT:
            self.compiles += 1
            self.backend_seconds += duration
            self.programs.append((str(kwargs.get("fun_name", "?")), duration))
        elif event == _TRACE_EVENT:
            self.trace_seconds += duration
        elif event == _LOWER_EVENT:
            self.lower_seconds += duration

    @property
    def seconds(self) -> float:
        """Tracing + lowering + XLA compilation, in seconds."""
        return self.trace_seconds + self.lower_seconds + self.backend_seconds

    def largest(self, count: int = 3) -> str:
        """The ``count`` slowest compiled programs as "name 1.2 s, ..."."""
        slowest = sorted(self.programs, key=lambda item: -item[1])[:count]
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in slowest) or "none"

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return False


@contextlib.contextmanager
def persistent_cache_disabled():
    """Turn JAX's persistent compilation cache off inside the block, and restore the previous setting after.

    A cold timing must include compilation, as it does for a user with JAX's defaults; the Makefile and the test
    configuration point JAX_COMPILATION_CACHE_DIR at a cache that would otherwise serve it from disk. JAX decides
    once per process whether the cache is used, so the decision is reset on the way in and on the way out.
    """
    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    _reset_cache_decision()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)
        _reset_cache_decision()


def _reset_cache_decision():
    try:  # private, but the only way to make JAX re-read the setting within a process
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - a future JAX without it
        pass


# --------------------------------------------------------------------------------------------------- the machine
def machine_info() -> dict:
    """What the numbers were measured on: processor, cores, load, library versions, JAX devices."""
    import blackjax
    import jaxlib
    import numpyro

    from samplax.infer import arviz_compat

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "unknown"
    devices = jax.devices()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "processor": cpu,
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "load average (1, 5, 15 min) at start": load,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "jax / jaxlib": f"{jax.__version__} / {jaxlib.__version__}",
        "jax devices": f"{len(devices)} x {devices[0].platform} ({devices[0].device_kind})",
        "numpyro": numpyro.__version__,
        "blackjax": getattr(blackjax, "__version__", "unknown"),
        "arviz": arviz_compat.ARVIZ_VERSION,
        "numpy": np.__version__,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"),
    }


def machine_markdown(info: dict) -> str:
    return markdown_table(["", ""], [[key, value] for key, value in info.items()])


# ------------------------------------------------------------------------------------------------------ Markdown
def fmt(value, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant digits, thousands without exponent, NaN as a dash."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not np.isfinite(value):
        return "-"
    if value != 0 and (abs(value) >= 10**digits):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def yes_no(met: bool | None) -> str:
    """A goal's verdict in a table: **met** / **not met** / n/a."""
    if met is None:
        return "n/a"
    return "**met**" if met else "**not met**"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table; cells that are not strings go through `fmt`."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells (one per header {list(headers)})")

    def cell(value):
        text = value if isinstance(value, str) else fmt(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_for(topic: str, quick: bool) -> str:
    """The shell command that regenerates a topic's page."""
    return f"python -m benchmarks.run --only {topic}" + (" --quick" if quick else "")


def write_page(out_dir: Path, topic: str, title: str, summary: str, body: str) -> Path:
    """Write ``out_dir/<topic>.md``: a title, the one-line summary (read by the index) and the body."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{topic}.md"
    text = f"# {title}\n\n<!-- summary: {summary} -->\n{summary}\n\n{body.strip()}\n"
    path.write_text(text)
    return path


def read_summary(page: Path) -> str | None:
    """The one-line summary a page carries in ``<!-- summary: ... -->``, or None."""
    try:
        for line in Path(page).read_text().splitlines():
            line = line.strip()
            if line.startswith("<!-- summary:") and line.endswith("-->"):
                return line[len("<!-- summary:") : -len("-->")].strip()
    except OSError:
        return None
    return None


def topic_cli(main: Callable, doc: str | None):
    """``python -m benchmarks.<topic> [--quick] [--out DIR]``: run one topic's ``main`` from the shell."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    print(main(args.out, quick=args.quick))
