"""`make demo`: fit a built-in model with samplax's own MALA and with NUTS, print both summaries, write the report.

Run as ``python -m samplax.demo [--out DIR]``. The fits take well under two minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

import samplax
from samplax.models import zoo


def main(argv=None) -> int:
    """Fit eight schools with MALA and NUTS, print both summaries, save the MALA fit and its report under ``--out``.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="folder for the fit and the report")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    entry = zoo.get("eight_schools")
    data = entry.make_data()
    print(f"Model: eight_schools (non-centered) - {entry.description}\n")
    fits = {}
    # settings under which each showcased fit passes its own checks: MALA mixes more slowly per draw than NUTS (2000
    # draws per chain bring its R-hat and ESS within them); NUTS at the default 0.8 acceptance diverges a few times
    # in the funnel's neck even non-centred, and Stan's advice, a higher target, removes that
    settings = {"mala": dict(draws=2000), "nuts": dict(draws=1000, target_accept=0.95)}
    for method, extra in settings.items():
        start = time.perf_counter()
        fits[method] = samplax.fit(entry.model, data, method=method, chains=4, warmup=1000, seed=0, **extra)
        timing = fits[method].timing
        print(
            f"== {method}: {time.perf_counter() - start:.1f} s (compile {timing['compile_s']:.1f} s, sampling "
            f"{timing['sampling_s']:.2f} s)"
        )
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(fits[method].summary().round(3))
        problems = fits[method].warnings()
        print("checks: " + ("all passed" if not problems else f"{len(problems)} warning(s) above"))
        print()
    path = fits["mala"].save(os.path.join(args.out, "eight_schools_mala.nc"))
    print(f"saved {path}")
    try:
        report = fits["mala"].report(os.path.join(args.out, "eight_schools_mala.html"))
        print(f"report written to {os.path.abspath(report)} (open it in a browser)")
    except ImportError:
        print("(the HTML report is not available in this build)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
