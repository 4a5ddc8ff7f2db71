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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="folder for the fit and the report")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    entry = zoo.get("eight_schools")
    data = entry.make_data()
    print(f"Model: eight_schools (non-centered) - {entry.description}\n")
    fits = {}
    for method in ("mala", "nuts"):
        start = time.perf_counter()
        fits[method] = samplax.fit(entry.model, data, method=method, chains=4, warmup=1000, draws=1000, seed=0)
        print(f"== {method}: {time.perf_counter() - start:.1f} s (compile {fits[method].timing['compile_s']:.1f} s)")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(fits[method].summary().round(3))
        print()
    path = fits["mala"].save(os.path.join(args.out, "eight_schools_mala.nc"))
    print(f"saved {path}")
    try:
        report = fits["mala"].report(os.path.join(args.out, "eight_schools_mala.html"))
        print(f"report written to {report}")
    except ImportError:
        print("(the HTML report is not available in this build)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
