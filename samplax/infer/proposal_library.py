"""The meta_gibbs proposal library: find, load, match and train the learned block proposals of known motifs.

A library is a folder of data-only proposal files (``.npz`` with a JSON header, `samplax.kernels.meta_proposal`),
one per motif, named by `library_key`. The shipped library (``samplax/proposals``) is rebuilt with
``samplax proposals train`` (``python -m samplax.infer.method_gibbs train-library`` is the same command under its
old name, the one recorded in the shipped files' headers). A proposal is meta-trained as in Wang, Wu, Moore and
Russell (NeurIPS 2018): minimise -E log q(b | x) over blocks b and inputs x drawn by forward sampling the motif's
own sub-network with random local parameters.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplax.kernels import meta_proposal as mp
from samplax.models import motifs as motif_lib

__all__ = [
    "Proposal",
    "library_dir",
    "library_key",
    "library_entries",
    "train_motif_proposal",
    "resolve_proposals",
    "train_library",
    "add_train_arguments",
    "train_main",
    "DEFAULT_TRAINING",
    "TRAIN_COMMAND",
    "LIBRARY_DIR",
]

LIBRARY_DIR = pathlib.Path(__file__).resolve().parent.parent / "proposals"
DEFAULT_TRAINING = {
    "grid_block_3x3": {
        "num_steps": 20000,
        "batch_size": 256,
        "learning_rate": 1e-3,
        "hidden_sizes": [256, 256],
        "num_components": 12,
        "probability_floor": 1e-4,
        "seed": 0,
    },
    "two_means": {
        "num_steps": 8000,
        "batch_size": 256,
        "learning_rate": 1e-3,
        "hidden_sizes": [128, 128],
        "num_components": 8,
        "probability_floor": 1e-4,
        "seed": 0,
    },
}
# the command recorded in the shipped files' headers (`samplax proposals train` runs the same code)
TRAIN_COMMAND = "python -m samplax.infer.method_gibbs train-library"


def library_dir() -> pathlib.Path:
    """The folder of the shipped proposal library."""
    return LIBRARY_DIR


def library_key(signature: dict) -> str:
    """The file stem of a motif's proposal in a library: the motif name (plus the dimension for continuous motifs)."""
    return signature["name"] + (f"_{signature['dim']}d" if signature.get("kind") == "continuous" else "")


def library_entries(folder=None) -> dict:
    """{file stem: path} of the proposal files in a library folder (default: the shipped one)."""
    folder = pathlib.Path(folder) if folder is not None else LIBRARY_DIR
    return {path.stem: path for path in sorted(folder.glob("*.npz"))} if folder.is_dir() else {}


# =====================================================================================================================
# proposals: load, match, train
class Proposal(NamedTuple):
    """A loaded meta_gibbs proposal: the network's parameters and config, its file header, and where it came from."""

    params: dict
    config: mp.ProposalConfig
    header: dict
    source: str


def _motif_from_signature(signature: dict):
    if signature.get("kind") == "discrete":
        return motif_lib.DiscreteMotif(
            signature["name"],
            tuple(signature["block"]),
            tuple(signature["blanket"]),
            tuple((node, tuple(ps)) for node, ps in signature["parents"]),
        )
    if signature.get("kind") == "continuous" and signature.get("name") == "two_means":
        return motif_lib.TwoMeansMotif(dim=int(signature["dim"]))
    raise ValueError(f"unknown motif kind in a proposal signature: {signature!r}")


def _same_signature(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def train_motif_proposal(
    motif,
    key,
    *,
    num_steps: int,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    hidden_sizes=(128, 128),
    num_components: int = 8,
    probability_floor: float = 1e-4,
    eval_every: int | None = None,
    num_heldout: int = 64,
    progress=None,
):
    """Meta-train a proposal for ``motif`` from forward samples of its sub-network with random local parameters.

    Returns (params, config, history). Held-out data are drawn with a key the training never uses (other Theta);
    for discrete motifs the history also records the exact held-out KL(p(B | c) || q) and the stationary
    acceptance rate of independence MH (enumerating all block states).
    """
    key_init, key_train, key_heldout = jax.random.split(key, 3)
    if motif.kind == "discrete":
        config = mp.ProposalConfig(
            motif.num_inputs,
            num_discrete=motif.block_size,
            num_categories=2,
            hidden_sizes=tuple(hidden_sizes),
            num_components=num_components,
            probability_floor=probability_floor,
        )

        def sample_batch(k, n):
            x, block = motif.sample_training_batch(k, n)
            return x, mp.BlockValue(block, jnp.zeros((n, 0)))

        params = mp.init_params(key_init, config)
        if num_steps == 0:  # an untrained proposal: nothing to evaluate
            return params, config, mp.TrainingHistory([0], [float("nan")], [float("nan")], {})
        states = mp.discrete_block_states(motif.block_size)
        heldout_x, heldout_block = jax.jit(motif.sample_training_batch, static_argnums=1)(
            key_heldout, max(num_heldout, 256)
        )
        exact = jax.jit(motif.exact_log_conditional)(heldout_x[:num_heldout], states)

        def evaluate(params):
            kl, acceptance = mp.exact_kl_and_acceptance(params, config, heldout_x[:num_heldout], exact, states)
            return {"heldout_kl": kl, "heldout_acceptance": acceptance}

        validation = (heldout_x, mp.BlockValue(heldout_block, jnp.zeros((heldout_block.shape[0], 0))))
    else:
        config = mp.ProposalConfig(
            motif.num_inputs,
            num_discrete=0,
            num_real=motif.block_size,
            hidden_sizes=tuple(hidden_sizes),
            num_components=num_components,
            probability_floor=probability_floor,
        )

        def sample_batch(k, n):
            x, block = motif.sample_training_batch(k, n)
            return x, mp.BlockValue(jnp.zeros((n, 0), jnp.int32), block)

        # one batch of independent draws: 1536 set the input standardisation, 512 are held out
        pool_x, pool_block = jax.jit(motif.sample_training_batch, static_argnums=1)(key_heldout, 2048)
        params = mp.init_params(key_init, config, inputs=pool_x[:1536])
        if num_steps == 0:
            return params, config, mp.TrainingHistory([0], [float("nan")], [float("nan")], {})
        heldout_x, heldout_block = pool_x[1536:], pool_block[1536:]
        validation = (heldout_x, mp.BlockValue(jnp.zeros((512, 0), jnp.int32), heldout_block))
        evaluate = None
    params, history = mp.train(
        key_train,
        params,
        config,
        sample_batch,
        num_steps=num_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        validation=validation,
        eval_every=eval_every,
        evaluate=evaluate,
        progress=progress,
    )
    return params, config, history


def _load_file(path) -> Proposal:
    params, config, header = mp.load_proposal(path)
    if "motif" not in header:
        raise ValueError(f"{path}: the header has no motif signature")
    return Proposal(params, config, header, f"file:{path}")


def resolve_proposals(found: dict, option, *, key, training_steps: int, training_batch: int) -> tuple[dict, dict]:
    """{motif name: Proposal} for the motifs found in a model (``found``: name -> motif), and training records.

    option None: the shipped library, else train; "train": train every motif now; a .npz path: that proposal (its
    motif must be in the model); a folder: its proposals (at least one must match); a name: a shipped proposal.
    """
    chosen: dict[str, Proposal] = {}
    explicit: list[Proposal] = []
    if option is not None and option != "train":
        path = pathlib.Path(option)
        if path.is_file():
            explicit = [_load_file(path)]
        elif path.is_dir():
            explicit = [_load_file(p) for p in library_entries(path).values()]
            if not explicit:
                raise ValueError(f"proposals={option!r}: the folder holds no .npz proposal files")
        else:
            shipped = library_entries()
            if option not in shipped:
                raise ValueError(
                    f"proposals={option!r} is neither a file, a folder nor a shipped proposal; shipped: "
                    f"{sorted(shipped)} (or pass proposals='train' to train one now)"
                )
            explicit = [_load_file(shipped[option])]
        for proposal in explicit:
            matches = [
                name for name, motif in found.items() if _same_signature(motif.signature(), proposal.header["motif"])
            ]
            if matches:
                chosen[matches[0]] = proposal
        if not chosen:
            names = [library_key(p.header["motif"]) for p in explicit]
            raise ValueError(
                f"proposals={option!r}: its motif(s) {names} do not occur in this model; the model's motifs are "
                f"{[library_key(m.signature()) for m in found.values()] or 'none'}. Pass a proposal trained for one "
                "of them, or omit proposals= to use the shipped library (or train one)"
            )
    records = {}
    shipped = library_entries() if option != "train" else {}
    for name, motif in found.items():
        if name in chosen:
            continue
        entry = shipped.get(library_key(motif.signature()))
        if entry is not None:
            proposal = _load_file(entry)
            if _same_signature(proposal.header["motif"], motif.signature()):
                chosen[name] = Proposal(
                    proposal.params, proposal.config, proposal.header, f"library:{library_key(motif.signature())}"
                )
                continue
        settings = DEFAULT_TRAINING.get(
            motif.name if motif.kind == "continuous" else name, DEFAULT_TRAINING["grid_block_3x3"]
        )
        start = time.perf_counter()
        params, config, history = train_motif_proposal(
            motif,
            jax.random.fold_in(key, len(records)),
            num_steps=training_steps,
            batch_size=training_batch,
            learning_rate=settings["learning_rate"],
            hidden_sizes=settings["hidden_sizes"],
            num_components=settings["num_components"],
            probability_floor=settings["probability_floor"],
        )
        records[name] = {"seconds": time.perf_counter() - start, "history": history}
        chosen[name] = Proposal(params, config, {"motif": motif.signature()}, f"trained:{training_steps} steps")
    return chosen, records


# =====================================================================================================================
# the shipped library
def train_library(out_dir=None, *, steps: int | None = None, seed: int = 0, only=None, log=print) -> list[pathlib.Path]:
    """Train the shipped proposals (3 x 3 grid block, two means in 2-D) and write them to ``out_dir``."""
    out_dir = pathlib.Path(out_dir) if out_dir is not None else LIBRARY_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, motif in (
        ("grid_block_3x3", motif_lib.grid_block_motif(3, 3)),
        ("two_means_2d", motif_lib.TwoMeansMotif(dim=2)),
    ):
        if only and name not in only:
            continue
        settings = dict(DEFAULT_TRAINING[motif.name if motif.kind == "continuous" else name])
        if steps is not None:
            settings["num_steps"] = int(steps)
        settings["seed"] = int(seed)
        start = time.perf_counter()

        def progress(history, name=name):
            metrics = {k: round(v[-1], 4) for k, v in history.metrics.items()}
            log(
                f"[{name}] step {history.step[-1]}: train nll {history.train_nll[-1]:.4f}, held-out nll "
                f"{history.heldout_nll[-1]:.4f} {metrics}"
            )

        params, config, history = train_motif_proposal(
            motif,
            jax.random.key(seed),
            num_steps=settings["num_steps"],
            batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            hidden_sizes=settings["hidden_sizes"],
            num_components=settings["num_components"],
            probability_floor=settings["probability_floor"],
            eval_every=500,
            progress=progress,
        )
        header = {
            "motif": motif.signature(),
            "training": {
                **settings,
                "command": TRAIN_COMMAND,
                "seconds": round(time.perf_counter() - start, 1),
                "jax": jax.__version__,
                "history": {"step": history.step, "heldout_nll": history.heldout_nll, **history.metrics},
            },
        }
        path = out_dir / f"{name}.npz"
        mp.save_proposal(path, params, config, header)
        written.append(path)
        log(f"wrote {path}")
    return written


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``samplax proposals train`` (shared with the old ``method_gibbs train-library`` name)."""
    parser.add_argument("--out", default=None, help=f"output folder (default {LIBRARY_DIR})")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per proposal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="grid_block_3x3 and/or two_means_2d")
    return parser


def train_main(argv=None, prog: str = "samplax proposals train") -> int:
    """Train the shipped library from command-line arguments; returns the exit status."""
    args = add_train_arguments(
        argparse.ArgumentParser(prog=prog, description="train the shipped proposal library")
    ).parse_args(argv)
    train_library(args.out, steps=args.steps, seed=args.seed, only=args.only)
    return 0
