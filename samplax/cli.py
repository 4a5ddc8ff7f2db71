"""The `samplax` command line.

    samplax fit MODEL [--data data.json] [--method M] [--option key=value ...] [--chains C] [--draws D]
                [--warmup W] [--seed S] [--coords coords.json] [--dims dims.json] [--out fit.nc]
                [--report report.html] [--var-names a,b] [--summary-rows N] [--quiet]
    samplax zoo                     list the built-in models
    samplax methods [METHOD]        list the methods, or one method's options
    samplax resume DIR [--model MODEL] [--out fit.nc]   finish a checkpointed fit
    samplax report fit.nc --out report.html [--var-names a,b]

MODEL is a zoo name or ``path/to/file.py:function``. The data file is a JSON object of arrays; a posteriordb-style
``{"data": {...}}`` wrapper is accepted. The coords file is ArviZ's ``coords`` as a JSON object (dimension name -> list
of labels), the dims file ArviZ's ``dims`` (site name -> list of dimension names); both go to `samplax.fit`.

After a fit, the summary table lists latent sites first, then deterministic ones (functions of the latent sites,
reported but not judged), and shows at most ``--summary-rows`` rows (default 40; 0 shows all) with a note saying how
many were left out. ``--var-names a,b`` keeps only those sites in the summary, the convergence warnings and the report.
Convergence warnings (latent sites only) are printed on stderr as ``samplax: warning: ...``.

Exit codes: 0 success, 2 bad usage (unknown option, bad data, coords or dims file, bad model reference, unknown
``--var-names``), 1 a fit that failed while running. Messages go to stderr; results (the summary) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import warnings

__all__ = ["main", "build_parser", "load_model", "load_data", "load_coords", "load_dims", "parse_var_names"]

SUMMARY_ROWS = 40  # rows of the summary printed after a fit, unless --summary-rows says otherwise


class UsageError(Exception):
    """Bad usage: reported on stderr with exit code 2."""


def load_model(reference: str):
    """A zoo name -> (model, default data); ``file.py:function`` -> (function, None)."""
    from samplax.models import zoo

    if ":" not in reference:
        if reference not in zoo.names():
            raise UsageError(
                f"unknown model {reference!r}: not a zoo name ({', '.join(zoo.names())}) and not "
                "path/to/file.py:function"
            )
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


def _read_json(path: str, what: str):
    """The JSON value in ``path``; a missing, unreadable or invalid file is a UsageError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{what} {path!r} does not exist") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{what} {path!r} is not valid JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} {path!r} is not valid JSON (not UTF-8 text): {err}") from None
    except OSError as err:
        raise UsageError(f"{what} {path!r} cannot be read: {err.strerror or err}") from None


def load_data(path: str | None) -> dict | None:
    """The model's data from a JSON object of arrays (posteriordb's ``{"data": {...}}`` wrapper accepted)."""
    if path is None:
        return None
    payload = _read_json(path, "data file")
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


def _load_mapping(path: str | None, what: str, keys: str, values: str, example: str, valid) -> dict | None:
    """A JSON object of ``keys`` -> list of ``values`` from ``path``; each list checked with ``valid``."""
    if path is None:
        return None
    payload = _read_json(path, f"{what} file")
    if not isinstance(payload, dict):
        raise UsageError(
            f"{what} file {path!r} must hold a JSON object of {keys} -> list of {values}, for example "
            f"{example}; got a JSON {_json_type(payload)}"
        )
    for name, entries in payload.items():
        if not isinstance(entries, list) or not all(valid(entry) for entry in entries):
            raise UsageError(
                f"{what} file {path!r}: the entry {name!r} must be a list of {values}, for example "
                f"{example}; got {_short_json(entries)}"
            )
    return payload


def load_coords(path: str | None) -> dict | None:
    """ArviZ ``coords`` from a JSON object: dimension name -> list of labels (strings or numbers)."""
    return _load_mapping(
        path,
        "coords",
        "dimension name",
        "labels (strings or numbers)",
        '{"school": ["Choate", "Deerfield"]}',
        _is_label,
    )


def load_dims(path: str | None) -> dict | None:
    """ArviZ ``dims`` from a JSON object: site name -> list of dimension names."""
    return _load_mapping(
        path,
        "dims",
        "site name",
        "dimension names (strings)",
        '{"theta": ["school"]}',
        lambda entry: isinstance(entry, str),
    )


def _is_label(value) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _json_type(value) -> str:
    for kind, name in ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean"), ((int, float), "number")):
        if isinstance(value, kind):
            return name
    return "null"


def _short_json(value, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_var_names(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (spaces around names ignored); None stays None."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError(
            f"--var-names expects site names separated by commas, for example --var-names mu,tau; got {text!r}"
        )
    return names


def _summary_rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows (0 for all), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of rows >= 0 (0 for all), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``samplax`` command line and its subcommands (fit, report, zoo, methods, ...)."""
    parser = argparse.ArgumentParser(prog="samplax", description="Fit NumPyro models with samplax's kernels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fit = sub.add_parser(
        "fit",
        help="fit a model and save its draws (ArviZ NetCDF)",
        description="Fit MODEL (a zoo name or path/to/file.py:function) and save the draws.",
    )
    fit.add_argument("model", metavar="MODEL", help="zoo name or path/to/file.py:function")
    fit.add_argument("--data", help="JSON object of arrays (posteriordb's {'data': ...} accepted)")
    fit.add_argument(
        "--coords", metavar="FILE.json", help="ArviZ coords: JSON object of dimension name -> list of labels"
    )
    fit.add_argument(
        "--dims", metavar="FILE.json", help="ArviZ dims: JSON object of site name -> list of dimension names"
    )
    fit.add_argument("--method", default="nuts", help="inference method (see `samplax methods`)")
    fit.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option, repeatable (checked against the method's schema)",
    )
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--warmup", type=int, default=1000)
    fit.add_argument("--draws", type=int, default=1000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--precision", choices=["float32", "float64"], default="float32")
    fit.add_argument("--checkpoint", help="checkpoint directory (resume with `samplax resume DIR`)")
    fit.add_argument("--checkpoint-every", type=int, help="draws per checkpointed chunk")
    fit.add_argument("--out", default="fit.nc", help="NetCDF output (default fit.nc)")
    fit.add_argument("--report", help="also write the HTML diagnostics report here")
    fit.add_argument(
        "--var-names",
        metavar="A,B",
        help="only these sites (comma-separated) in the summary, the warnings and the report",
    )
    fit.add_argument(
        "--summary-rows",
        type=_summary_rows,
        default=SUMMARY_ROWS,
        metavar="N",
        help=f"print at most N rows of the summary (default {SUMMARY_ROWS}; 0 prints all)",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    fit.add_argument("--devices", type=int, help="emulate this many CPU devices")
    fit.add_argument("--coordinator", help="HOST:PORT of the coordination service (multi-process admm/dsgld)")
    fit.add_argument("--num-processes", type=int, help="processes in the job")
    fit.add_argument("--process-id", type=int, help="this process's id, 0 .. num-processes - 1")
    fit.add_argument("--heartbeat", type=float, help="seconds of silence before a peer counts as lost (default 30)")

    resume = sub.add_parser(
        "resume",
        help="finish a checkpointed fit",
        description="Finish a checkpointed fit. Nothing in the checkpoint names code to run: pass "
        "the model unless it was a zoo model.",
    )
    resume.add_argument("checkpoint", help="checkpoint directory")
    resume.add_argument(
        "--model",
        metavar="MODEL",
        help="the model that wrote the checkpoint: zoo name or path/to/file.py:function (needed "
        "unless it was a zoo model)",
    )
    resume.add_argument("--out", default="fit.nc")
    resume.add_argument("--quiet", action="store_true")

    sub.add_parser("zoo", help="list the built-in models", description="List the built-in models.")

    methods = sub.add_parser(
        "methods",
        help="list methods or one method's options",
        description="List the methods, or the options of one method.",
    )
    methods.add_argument("method", nargs="?")

    report = sub.add_parser(
        "report",
        help="write the HTML report of a saved fit",
        description="Write the self-contained HTML diagnostics report of a saved fit.",
    )
    report.add_argument("fit", help="NetCDF file written by `samplax fit`")
    report.add_argument("--out", default="report.html")
    report.add_argument("--var-names", metavar="A,B", help="only these sites (comma-separated) in the report")
    report.add_argument("--quiet", action="store_true")

    proposals = sub.add_parser(
        "proposals",
        help="the meta_gibbs proposal library",
        description="Manage the library of learned meta_gibbs block proposals.",
    )
    proposals_sub = proposals.add_subparsers(dest="proposals_command", metavar="ACTION")
    proposals_sub.required = True
    train = proposals_sub.add_parser(
        "train",
        help="train the shipped proposal library",
        description="Meta-train the shipped proposals (3 x 3 grid block, two means in "
        "2-D) and write them as data-only .npz files.",
    )
    train.add_argument("--out", default=None, help="output folder (default: the shipped library, samplax/proposals)")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps per proposal")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--only", nargs="*", default=None, help="grid_block_3x3 and/or two_means_2d")
    return parser


def _say(text: str, quiet: bool = False):
    if not quiet:
        print(text, file=sys.stderr)


def _run_fit(args) -> int:
    from samplax.infer import distributed

    try:  # before anything imports BlackJAX: that starts JAX's backend
        distributed.configure_from_cli(
            devices=args.devices,
            coordinator=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            heartbeat=args.heartbeat,
        )
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
    _check_outputs(args.out, args.report)  # before fitting: a long run must not end in an unwritable path
    labels = {"coords": load_coords(args.coords), "dims": load_dims(args.dims)}
    labels = {name: value for name, value in labels.items() if value is not None}
    var_names = parse_var_names(args.var_names)
    if data is None and zoo_name is not None:
        from samplax.models import zoo

        data = zoo.get(zoo_name).make_data()
    try:
        with _convergence_warnings_held():
            result = fit_model(
                model,
                data,
                method=args.method,
                chains=args.chains,
                warmup=args.warmup,
                draws=args.draws,
                seed=args.seed,
                precision=args.precision,
                progress=not args.quiet,
                checkpoint=args.checkpoint,
                checkpoint_every=args.checkpoint_every,
                **labels,
                **options,
            )
    except ValueError as err:  # raised before sampling: a usage problem
        raise UsageError(str(err)) from None
    return _finish(result, args.out, args.report, args.quiet, var_names=var_names, summary_rows=args.summary_rows)


def _check_outputs(out, report):
    """Check that --out and --report are writable files, raising a UsageError before any fitting or compiling.

    Writable means: the folder exists and is writable, and the path is not a directory.
    """
    from samplax.infer.fit import check_output_path

    for flag, path in (("--out", out), ("--report", report)):
        if path is None:
            continue
        try:
            check_output_path(path, f"the {flag} file")
        except ValueError as err:
            raise UsageError(str(err)) from None


@contextlib.contextmanager
def _convergence_warnings_held():
    """Fit's own ConvergenceWarnings are not shown in here: `_finish` prints them, filtered by --var-names."""
    from samplax.infer.fit import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _finish(result, out, report, quiet, *, var_names=None, summary_rows=SUMMARY_ROWS) -> int:
    from samplax.infer import diagnostics, distributed
    from samplax.infer.report import write_report

    if not distributed.is_output_process():  # in a multi-process job only process 0 writes and prints
        return 0
    result.save(out)
    _say(f"saved {out}", quiet)
    try:
        diagnostics.site_roles(result.idata, var_names=var_names)
    except ValueError as err:
        raise UsageError(
            f"--var-names: {err}; the fit was saved to {out!r} (summarise it with `samplax report "
            f"{out} --var-names ...`)"
        ) from None
    for message in diagnostics.convergence_warnings(result.idata, var_names=var_names):
        print(f"samplax: warning: {message}", file=sys.stderr)
    if not quiet:
        print_summary(result, var_names=var_names, max_rows=summary_rows)
        if result.log_evidence is not None:
            print(f"log evidence: {result.log_evidence.value:.4f} +/- {result.log_evidence.se:.4f}")
    if report:
        write_report(result, report, var_names=var_names)
        _say(f"report written to {report}", quiet)
    return 0


def print_summary(result, *, var_names=None, max_rows=SUMMARY_ROWS, file=None) -> None:
    """Print the summary of a Fit: latent sites, then deterministic ones under their own heading.

    At most ``max_rows`` rows (0: all) with a note on how many were left out and how to see them, then the one line
    about deterministic sites (`diagnostics.deterministic_note`).
    """
    import pandas as pd

    from samplax.infer import arviz_compat, diagnostics

    file = sys.stdout if file is None else file
    table = diagnostics.summary(
        result.idata, sampling_seconds=(result.timing or {}).get("sampling_s"), var_names=var_names
    )
    latent, deterministic = diagnostics.site_roles(result.idata, var_names=var_names)
    posterior = arviz_compat.group(result.idata, "posterior")
    latent_rows = sum(
        int(posterior[name].size // (posterior.sizes["chain"] * posterior.sizes["draw"])) for name in latent
    )
    if latent_rows > len(table):  # ArviZ left some sites out (non-numeric): no split we can trust
        latent_rows = len(table)
    shown = len(table) if not max_rows else min(max_rows, len(table))
    parts = [("", table.iloc[: min(shown, latent_rows)])] if latent_rows else []
    if shown > latent_rows:
        parts.append(
            (
                "deterministic sites (functions of the latent sites: reported, not judged):",
                table.iloc[latent_rows:shown],
            )
        )
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", None):
        for heading, part in parts:
            if heading:
                print(heading, file=file)
            print(part, file=file)
    if shown < len(table):
        left_deterministic = len(table) - max(shown, latent_rows)
        detail = f", {left_deterministic} of them deterministic" if deterministic and left_deterministic else ""
        example = ",".join((latent or deterministic)[:2])
        pick = f", --var-names {example} picks sites" if var_names is None else ""
        print(
            f"... {len(table) - shown} of {len(table)} rows left out{detail}: --summary-rows 0 prints them all{pick}.",
            file=file,
        )
    note = diagnostics.deterministic_note(result.idata, var_names=var_names)
    if note:
        print(note, file=file)


def main(argv=None) -> int:
    """Run the ``samplax`` command line.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, non-zero on a usage error or a failed run.
    """
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

            _check_outputs(args.out, None)
            model = load_model(args.model)[0] if args.model else None
            try:
                with _convergence_warnings_held():
                    result = resume(args.checkpoint, model=model, progress=not args.quiet)
            except ValueError as err:
                raise UsageError(str(err)) from None
            return _finish(result, args.out, None, args.quiet)
        if args.command == "proposals":
            from samplax.infer.proposal_library import train_library

            train_library(args.out, steps=args.steps, seed=args.seed, only=args.only)
            return 0
        if args.command == "report":
            from samplax.infer.fit import load
            from samplax.infer.report import write_report

            var_names = parse_var_names(args.var_names)
            if not os.path.isfile(args.fit):
                raise UsageError(f"fit file {args.fit!r} does not exist")
            loaded = load(args.fit)
            try:
                write_report(loaded, args.out, var_names=var_names)
            except ValueError as err:  # unknown --var-names, or an output path that cannot be written
                raise UsageError(str(err)) from None
            _say(f"report written to {args.out}", args.quiet)
            return 0
    except UsageError as err:
        print(f"samplax: error: {err}", file=sys.stderr)
        from samplax.infer.distributed import exit_if_failed, report_failure  # peers of a job exit with it too

        report_failure(f"usage error: {err}")
        exit_if_failed(2)
        return 2
    except KeyboardInterrupt:
        print("samplax: interrupted", file=sys.stderr)
        from samplax.infer.distributed import exit_if_failed, report_failure

        report_failure("interrupted")
        exit_if_failed(130)
        return 130
    except Exception as err:  # a failure while running: exit 1 with the reason, not a bare trace
        print(f"samplax: error: the run failed: {type(err).__name__}: {err}", file=sys.stderr)
        from samplax.infer.distributed import exit_if_failed, report_failure

        report_failure(err)
        exit_if_failed(1)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
