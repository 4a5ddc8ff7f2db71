"""What a fit shows while it runs: its stages from the first second, and one line that stays when it ends.

    with Progress(enabled=True, method="nuts", draws=1000, chains=4) as progress:
        with progress.stage("compiling"):      # "nuts: compiling 3 s", the seconds ticking
            ...
        with progress.stage("warm-up"):
            ...
        progress.sampled(100, stats)            # the bar advances between compiled chunks, with the running mean
                                                # acceptance and the divergence count
    # on exit: "nuts: 4 chains x 1000 draws in 6.1 s (compiling 4.9 s, warm-up 0.6 s, sampling 0.4 s); mean
    #           acceptance 0.87, 0 divergences"

Everything happens on the host between compiled calls: a stage's ticking clock is a thread that only redraws the bar,
never a callback from inside a compiled program.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import numpy as np

__all__ = ["Progress"]

TICK_SECONDS = 0.5


class Progress:
    """A fit's progress display (a tqdm bar on stderr); with ``enabled=False`` every call does nothing."""

    def __init__(self, enabled: bool, method: str, draws: int | None = None, chains: int | None = None):
        self.enabled = bool(enabled)
        self.method = method
        self.draws = draws
        self.chains = chains
        self.seconds: dict[str, float] = {}
        self._accepted = 0.0
        self._count = 0
        self._divergences = 0
        self._bar = None
        self._started = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.draws, desc=f"{self.method}: starting", unit="draw", leave=False,
                             file=sys.stderr)
        return self

    def __exit__(self, kind, error, traceback):
        if self._bar is not None:
            self._bar.close()
            if kind is None:
                print(self.summary(), file=sys.stderr, flush=True)
        return False

    @contextlib.contextmanager
    def stage(self, name: str):
        """Show ``name`` with its elapsed seconds while the block runs; add the time to ``seconds[name]``."""
        start = time.perf_counter()
        stop = threading.Event()
        ticker = None
        if self._bar is not None:
            self._describe(f"{name} 0 s")

            def tick():
                while not stop.wait(TICK_SECONDS):
                    self._describe(f"{name} {time.perf_counter() - start:.0f} s")

            ticker = threading.Thread(target=tick, name="samplax-progress", daemon=True)
            ticker.start()
        try:
            yield
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

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
        """One line: what ran, how long each stage took, and the running figures."""
        total = time.perf_counter() - self._started
        what = f"{self.chains} chains x {self.draws} draws" if self.chains and self.draws else "done"
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        line = f"{self.method}: {what} in {total:.1f} s" + (f" ({stages})" if stages else "")
        return line + (f"; {self._figures()}" if self._count or self._divergences else "")

    def _describe(self, text: str):
        self._bar.set_description_str(f"{self.method}: {text}", refresh=True)
