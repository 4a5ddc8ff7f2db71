"""What a fit shows while it runs: its stages from the first second, and one line that stays when it ends.

MCMC methods (`samplax.infer.fit`)::

    with Progress(enabled=True, method="nuts", draws=1000, chains=4) as progress:
        with progress.stage("compiling"):      # "nuts: compiling 3 s", the seconds ticking
            ...
        with progress.stage("warm-up"):
            ...
        progress.sampled(100, stats)            # the bar advances between compiled chunks, with the running mean
                                                # acceptance and the divergence count
    # on exit: "nuts: 4 chains x 1000 draws in 6.1 s (compiling 4.9 s, warm-up 0.6 s, sampling 0.4 s); mean
    #           acceptance 0.87, 0 divergences"

Direct methods (smc, cmcd, mixflow, ...) run their optimisation, tempering or training loops as a few compiled
pieces (`pieces`) and report each piece with a counted loop of the fit's bar, found with `current()` (a disabled
`Progress` when no fit is showing one, so the code is the same with and without a bar)::

    bar = progress.current()
    plan = progress.pieces(num_steps, bar)           # [num_steps] without a bar, <= 20 equal pieces with one
    with bar.loop("training", total=num_steps) as loop:
        compiled = jax.jit(piece).lower(...).compile()
        loop.advance(0)                              # optional: the compiling clock stops here, not at piece 1
        for start, length in plan:
            state = compiled(state, start)           # a piece must not depend on how the loop is cut
            loop.advance(length, note=f"elbo {elbo:.1f}")
    # while it runs: "cmcd: training: compiling 2 s", then "cmcd: training 400/1000 [elbo -12.3]" with its bar
    # on exit of the fit: "cmcd: done in 4.0 s (training 1000 steps 3.1 s, compiling 0.8 s)"

`Progress.loop(name, total=None, unit="step")` yields a `Loop` whose ``advance(count, note=None)`` moves the bar by
``count`` (``total=None``: a loop of unknown length, e.g. adaptive tempering, shows the count and the note). Until its
first ``advance`` a loop shows "<name>: compiling" with the seconds ticking, and that time is reported as compiling
in the summary. Everything happens on the host between compiled calls: a stage's ticking clock is a thread that only
redraws the bar, never a callback from inside a compiled program.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import threading
import time

import numpy as np

__all__ = ["MAX_PIECES", "Loop", "Progress", "current", "pieces"]

TICK_SECONDS = 0.5
MAX_PIECES = 20  # pieces of a direct method's loop when a bar is shown: each costs one dispatch (~0.2 ms)

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("samplax_progress", default=None)


def current() -> Progress:
    """The innermost `Progress` being shown (entered with ``with``), else a disabled one whose calls do nothing."""
    progress = _CURRENT.get()
    return progress if progress is not None else Progress(False, "")


def pieces(total: int, progress: Progress | None = None, max_pieces: int = MAX_PIECES) -> list[tuple[int, int]]:
    """``(start, length)`` of the compiled pieces of a ``total``-step loop.

    One piece when ``progress`` is None or disabled (no dispatch spent on a bar nobody sees); otherwise at most
    ``max_pieces`` pieces of one length ``ceil(total / max_pieces)``, so one executable serves them all (the last piece
    is shorter: run it with the same length and skip the steps past ``total``, see `samplax.kernels.cmcd`).
    """
    total = int(total)
    if total <= 0:
        return []
    if progress is None or not progress.enabled:
        return [(0, total)]
    length = math.ceil(total / max(1, int(max_pieces)))
    return [(start, min(length, total - start)) for start in range(0, total, length)]


class Loop:
    """A counted loop shown on the fit's bar (see the module docstring); made by `Progress.loop`."""

    def __init__(self, progress: Progress, name: str, total: int | None, unit: str):
        self.progress, self.name, self.total, self.unit = progress, name, total, unit
        self.count = 0
        self.note = None
        self.started = time.perf_counter()
        self.compiled_at: float | None = None

    def advance(self, count: int = 1, note: str | None = None):
        """``count`` more steps done (0: compiled, nothing run yet); ``note`` (e.g. "elbo -12.3") is shown beside."""
        now = time.perf_counter()
        if self.compiled_at is None:
            self.compiled_at = now
        self.count += int(count)
        if note is not None:
            self.note = note
        bar = self.progress._bar
        if bar is not None:
            self.progress._describe(self.name)
            bar.set_postfix_str(self.note or "", refresh=False)
            bar.update(int(count))

    def _text(self, elapsed: float) -> str:
        if self.compiled_at is None:
            return f"{self.name}: compiling {elapsed:.0f} s"
        return self.name


class Progress:
    """A fit's progress display (a tqdm bar on stderr); with ``enabled=False`` every call does nothing."""

    def __init__(self, enabled: bool, method: str, draws: int | None = None, chains: int | None = None):
        self.enabled = bool(enabled)
        self.method = method
        self.draws = draws
        self.chains = chains
        self.seconds: dict[str, float] = {}
        self._loops: list[str] = []  # "training 1000 steps 3.1 s" for the summary
        self._accepted = 0.0
        self._count = 0
        self._divergences = 0
        self._bar = None
        self._token = None
        self._active: list = []  # stages and loops being shown, innermost last: only the innermost ticks
        self._parents: set[str] = set()  # stages that held other stages or loops: the summary shows their parts
        self._started = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.draws, desc=f"{self.method}: starting", unit="draw", leave=False, file=sys.stderr
            )
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, kind, error, traceback):
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        if self._bar is not None:
            self._bar.close()
            if kind is None:
                print(self.summary(), file=sys.stderr, flush=True)
        return False

    @contextlib.contextmanager
    def _ticking(self, item, text):
        """Redraw ``text(elapsed)`` every tick while ``item`` is the innermost thing shown."""
        start = time.perf_counter()
        for outer in self._active:
            if isinstance(outer, str):
                self._parents.add(outer)
        self._active.append(item)
        stop = threading.Event()
        ticker = None
        if self._bar is not None:
            self._describe(text(0.0))

            def tick():
                while not stop.wait(TICK_SECONDS):
                    if self._active and self._active[-1] is item:
                        self._describe(text(time.perf_counter() - start))

            ticker = threading.Thread(target=tick, name="samplax-progress", daemon=True)
            ticker.start()
        try:
            yield start
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            self._active.remove(item)

    @contextlib.contextmanager
    def stage(self, name: str):
        """Show ``name`` with its elapsed seconds while the block runs; add the time to ``seconds[name]``."""
        with self._ticking(name, lambda elapsed: f"{name} {elapsed:.0f} s") as start:
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @contextlib.contextmanager
    def loop(self, name: str, total: int | None = None, unit: str = "step"):
        """A counted loop of a direct method (see the module docstring): yields a `Loop` to ``advance``.

        The bar restarts at 0 of ``total`` (None: unknown length) for the loop. Its seconds before the first
        ``advance`` count as ``seconds["compiling"]``, the rest as ``seconds[name]``.
        """
        loop = Loop(self, name, None if total is None else int(total), unit)
        if self._bar is not None:
            self._bar.reset(total=loop.total)
            self._bar.total = loop.total  # reset(total=None) would keep the previous total
            self._bar.unit = unit
            self._bar.set_postfix_str("", refresh=False)
        try:
            with self._ticking(loop, loop._text):
                yield loop
        finally:
            if self._bar is not None:
                self._bar.refresh()  # the last advance may have come within tqdm's mininterval: show the final state
            end = time.perf_counter()
            compiled = loop.compiled_at if loop.compiled_at is not None else end
            if compiled > loop.started:
                self.seconds["compiling"] = self.seconds.get("compiling", 0.0) + compiled - loop.started
            self.seconds[name] = self.seconds.get(name, 0.0) + end - compiled
            self._parents.add(name)  # listed with its count in _loops instead
            self._loops.append(f"{name} {loop.count} {unit}{'s' if loop.count != 1 else ''} {end - compiled:.1f} s")

    def sampled(self, count: int, stats: dict | None = None):
        """``count`` more kept draws per chain; ``stats`` (chain, draw) arrays update the running figures."""
        stats = stats or {}
        if "acceptance_rate" in stats:
            values = np.asarray(stats["acceptance_rate"], dtype=float)
            self._accepted += float(np.nansum(values))
            self._count += int(np.isfinite(values).sum())
        if "diverging" in stats:
            self._divergences += int(np.asarray(stats["diverging"]).sum())
        if self._bar is not None:
            self._describe("sampling")
            if self._count:
                self._bar.set_postfix_str(self._figures(), refresh=False)
            self._bar.update(count)

    def _figures(self) -> str:
        figures = []
        if self._count:
            figures.append(f"mean acceptance {self._accepted / self._count:.2f}")
        figures.append(f"{self._divergences} divergence{'s' if self._divergences != 1 else ''}")
        return ", ".join(figures)

    def summary(self) -> str:
        """One line: what ran, how long each stage and loop took, and the running figures."""
        total = time.perf_counter() - self._started
        what = f"{self.chains} chains x {self.draws} draws" if self.chains and self.draws else "done"
        parts = self._loops + [
            f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items() if name not in self._parents
        ]
        line = f"{self.method}: {what} in {total:.1f} s" + (f" ({', '.join(parts)})" if parts else "")
        return line + (f"; {self._figures()}" if self._count or self._divergences else "")

    def _describe(self, text: str):
        self._bar.set_description_str(f"{self.method}: {text}", refresh=True)
