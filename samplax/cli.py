"""The `samplax` command line.

    samplax fit MODEL [--data data.json] [--method M] [--option key=value ...] [--chains C] [--draws D]
                [--warmup W] [--seed S] [--out fit.nc] [--report report.html] [--quiet]
    samplax zoo                     list the built-in models
    samplax methods [METHOD]        list the methods, or one method's options
    samplax report fit.nc --out report.html

MODEL is a zoo name or ``path/to/file.py:function``. The data file is a JSON object of arrays; a posteriordb-style
``{"data": {...}}`` wrapper is accepted. Exit codes: 0 success, 2 bad usage (unknown option, bad data, bad model
reference), 1 a fit that failed while running. Messages go to stderr; results to stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

__all__ = ["main", "build_parser", "load_model", "load_data"]


class UsageError(Exception):
    """Bad usage: reported on stderr with exit code 2."""


def load_model(reference: str):
    """A zoo name -> (model, default data); ``file.py:function`` -> (function, None)."""
    from samplax.models import zoo

    if ":" not in reference:
        if reference not in zoo.names():
            raise UsageError(f"unknown model {reference!r}: not a zoo name ({', '.join(zoo.names())}) and not "
                             "path/to/file.py:function")
        return zoo.get(reference).model, reference
    path, function = reference.rsplit(":", 1)
    if not os.path.isfile(path):
        raise UsageError(f"model file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"samplax_user_model_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file failed to import: say so plainly
        raise UsageError(f"importing {path!r} failed: {type(err).__name__}: {err}") from err
    if not hasattr(module, function):
        raise UsageError(f"{path!r} has no function {function!r}")
    return getattr(module, function), None


def load_data(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        with open(path) as handle:
            payload = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"data file {path!r} does not exist") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"data file {path!r} is not valid JSON: {err}") from None
    if isinstance(payload, dict) and set(payload) == {"data"} and isinstance(payload["data"], dict):
        payload = payload["data"]
    if not isinstance(payload, dict):
        raise UsageError(f"data file {path!r} must hold a JSON object of arrays")
    import numpy as np

    data = {}
    for key, value in payload.items():
        if isinstance(value, list):
            value = np.asarray(value)
            if value.dtype == object:
                raise UsageError(f"data '{key}' in {path!r} is ragged; give rectangular arrays")
        data[key] = value
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samplax", description="Fit NumPyro models with samplax's kernels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fit = sub.add_parser("fit", help="fit a model and save the InferenceData",
                         description="Fit MODEL (a zoo name or path/to/file.py:function) and save the draws.")
    fit.add_argument("model", metavar="MODEL", help="zoo name or path/to/file.py:function")
    fit.add_argument("--data", help="JSON object of arrays (posteriordb's {'data': ...} accepted)")
    fit.add_argument("--method", default="nuts", help="inference method (see `samplax methods`)")
    fit.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="a method option, repeatable (checked against the method's schema)")
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--warmup", type=int, default=1000)
    fit.add_argument("--draws", type=int, default=1000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--precision", choices=["float32", "float64"], default="float32")
    fit.add_argument("--checkpoint", help="checkpoint directory (resume with `samplax resume DIR`)")
    fit.add_argument("--checkpoint-every", type=int, help="draws per checkpointed chunk")
    fit.add_argument("--out", default="fit.nc", help="NetCDF output (default fit.nc)")
    fit.add_argument("--report", help="also write the HTML diagnostics report here")
    fit.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    fit.add_argument("--devices", type=int, help="emulate this many CPU devices")
    fit.add_argument("--coordinator", help="HOST:PORT of the coordination service (multi-process admm/dsgld)")
    fit.add_argument("--num-processes", type=int, help="processes in the job")
    fit.add_argument("--process-id", type=int, help="this process's id, 0 .. num-processes - 1")
    fit.add_argument("--heartbeat", type=float, help="seconds of silence before a peer counts as lost (default 30)")

    resume = sub.add_parser("resume", help="finish a checkpointed fit", description="Finish a checkpointed fit.")
    resume.add_argument("checkpoint", help="checkpoint directory")
    resume.add_argument("--out", default="fit.nc")
    resume.add_argument("--quiet", action="store_true")

    sub.add_parser("zoo", help="list the built-in models", description="List the built-in models.")

    methods = sub.add_parser("methods", help="list methods or one method's options",
                             description="List the methods, or the options of one method.")
    methods.add_argument("method", nargs="?")

    report = sub.add_parser("report", help="write the HTML report of a saved fit",
                            description="Write the self-contained HTML diagnostics report of a saved fit.")
    report.add_argument("fit", help="NetCDF file written by `samplax fit`")
    report.add_argument("--out", default="report.html")
    report.add_argument("--quiet", action="store_true")
    return parser


def _say(text: str, quiet: bool = False):
    if not quiet:
        print(text, file=sys.stderr)


def _run_fit(args) -> int:
    from samplax.infer import distributed

    try:  # before anything imports BlackJAX: that starts JAX's backend
        distributed.configure_from_cli(devices=args.devices, coordinator=args.coordinator,
                                       num_processes=args.num_processes, process_id=args.process_id,
                                       heartbeat=args.heartbeat)
    except ValueError as err:
        raise UsageError(str(err)) from None
    from samplax.infer.fit import fit as fit_model
    from samplax.infer.options import parse_cli_option, schema

    try:
        schema(args.method)
        options = dict(parse_cli_option(args.method, text) for text in args.option)
        model, zoo_name = load_model(args.model)
        data = load_data(args.data)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if data is None and zoo_name is not None:
        from samplax.models import zoo

        data = zoo.get(zoo_name).make_data()
    try:
        result = fit_model(model, data, method=args.method, chains=args.chains, warmup=args.warmup,
                           draws=args.draws, seed=args.seed, precision=args.precision, progress=not args.quiet,
                           checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, **options)
    except ValueError as err:  # raised before sampling: a usage problem
        raise UsageError(str(err)) from None
    return _finish(result, args.out, getattr(args, "report", None), args.quiet)


def _finish(result, out, report, quiet) -> int:
    import pandas as pd

    from samplax.infer import distributed

    if not distributed.is_output_process():  # in a multi-process job only process 0 writes and prints
        return 0
    result.save(out)
    if not quiet:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(result.summary())
        if result.log_evidence is not None:
            print(f"log evidence: {result.log_evidence.value:.4f} +/- {result.log_evidence.se:.4f}")
    _say(f"saved {out}", quiet)
    if report:
        result.report(report)
        _say(f"report written to {report}", quiet)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "zoo":
            from samplax.models import zoo

            for name, description in zoo.listing():
                print(f"{name:28s} {description}")
            return 0
        if args.command == "methods":
            from samplax.infer.options import methods, schema

            try:
                names = [args.method] if args.method else methods()
                print("\n".join(schema(name).describe() for name in names))
            except ValueError as err:
                raise UsageError(str(err)) from None
            return 0
        if args.command == "fit":
            return _run_fit(args)
        if args.command == "resume":
            from samplax.infer.fit import resume

            try:
                result = resume(args.checkpoint, progress=not args.quiet)
            except ValueError as err:
                raise UsageError(str(err)) from None
            return _finish(result, args.out, None, args.quiet)
        if args.command == "report":
            from samplax.infer.fit import load

            if not os.path.isfile(args.fit):
                raise UsageError(f"fit file {args.fit!r} does not exist")
            load(args.fit).report(args.out)
            _say(f"report written to {args.out}", args.quiet)
            return 0
    except UsageError as err:
        print(f"samplax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samplax: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a failure while running: exit 1 with the reason, not a bare trace
        print(f"samplax: error: the run failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
