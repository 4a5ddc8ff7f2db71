"""Checkpoints of chunked runs: safe to resume, bound to what made them, and never a way to run code.

Checkpoint layout (a directory; no pickle anywhere, and nothing read from it names code to run):
    .samplax-checkpoint  marker with the format version, written first: samplax uses a folder only if it is
                      missing, empty or carries this marker, so it never overwrites files it did not write
    manifest.json     format version, method, options, seed, raw key data, chain count, device layout, chunking,
                      site shapes, fingerprints of the model (`model_record`) and of the data, a SHA-256 of every
                      file below, completed chunks, and ``settings_sha256`` over everything that must not change
    data.npz          the data the model was conditioned on
    warmup.npz        the chains' states and adapted parameters after warm-up
    chunk_00003.npz   the draws, sample statistics and log-likelihoods of chunk 3, and the states at its end
Every file is written to a temporary name, fsynced and renamed (then the folder is fsynced), and the manifest is
rewritten only after the chunk file it mentions exists, so a killed run leaves a consistent checkpoint. Reading
validates the manifest against an explicit schema (`validate_manifest`) and every file against its SHA-256. The
model is never named by the checkpoint except as a zoo name: the caller passes it to `samplax.resume`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import types
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer.run import device_layout, num_chunks_for
from samplax.models.bridge import Target, data_fingerprint

__all__ = [
    "Checkpoint",
    "CHECKPOINT_FORMAT_VERSION",
    "MARKER",
    "model_record",
    "model_fingerprint",
    "code_digest",
    "validate_manifest",
    "settings_digest",
    "atomic_write",
]

# 2: marker file, model fingerprint, per-file SHA-256, settings digest, a shorter last chunk instead of dropped draws
CHECKPOINT_FORMAT_VERSION = 2


# ---------------------------------------------------------------------------------------------------------------------
# fingerprints
def _hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _canonical(value) -> bytes:
    """One byte string per JSON value (key order and tuple/list spelling do not matter)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _constant_repr(value) -> str:
    # frozenset order follows string hashing, which changes between processes: sort it
    if isinstance(value, frozenset):
        return "frozenset(" + ",".join(sorted(_constant_repr(v) for v in value)) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(_constant_repr(v) for v in value) + ")"
    return repr(value)


def _hash_code(code: types.CodeType, digest) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())  # the same bytecode can call dist.Normal or dist.Cauchy
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(const, digest)
        else:
            digest.update(_constant_repr(const).encode())


_SIMPLE = (int, float, complex, str, bytes, bool, type(None))


def code_digest(function) -> str | None:
    """SHA-256 of a model function's code, best effort; None when Python gives no code object.

    Covers the bytecode, the names it uses, its constants (nested functions included) and plain scalar defaults and
    closure values (a model made by a factory with another prior scale). Bytecode differs between Python versions.
    """
    for _ in range(32):  # unwrap functools.partial and NumPyro handlers (seed, substitute, ...) down to the model
        inner = function.func if isinstance(function, functools.partial) else getattr(function, "fn", None)
        if getattr(function, "__code__", None) is not None or not callable(inner):
            break
        function = inner
    code = getattr(function, "__code__", None)
    if code is None:  # a callable object: its __call__
        call = getattr(type(function), "__call__", None)  # noqa: B004 - its code object, not whether it is callable
        code = getattr(call, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    digest = hashlib.sha256()
    _hash_code(code, digest)
    defaults = tuple(getattr(function, "__defaults__", None) or ())
    kwdefaults = getattr(function, "__kwdefaults__", None) or {}
    cells = []
    for cell in getattr(function, "__closure__", None) or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            cells.append(None)
    for value in (*defaults, *(kwdefaults[k] for k in sorted(kwdefaults)), *cells):
        digest.update((_constant_repr(value) if isinstance(value, _SIMPLE) else type(value).__name__).encode())
    return digest.hexdigest()


def model_record(target) -> dict:
    """What identifies the model of a Target.

    Its sites (name, shape, distribution), discrete, observed and deterministic sites, and the SHA-256 of its code
    (`code_digest`).
    """
    return {
        "sites": [[site.name, [int(n) for n in site.shape], site.distribution] for site in target.sites],
        "discrete_sites": [str(name) for name in target.discrete_sites],
        "observed": {str(name): [int(n) for n in np.shape(value)] for name, value in target.observed.items()},
        "deterministic": {str(name): [int(n) for n in shape] for name, shape in target.deterministic_shapes.items()},
        "code_sha256": code_digest(target.model),
        "python": "{}.{}".format(*sys.version_info[:2]),
    }


def model_fingerprint(record: dict) -> str:
    """SHA-256 of a `model_record` (the Python version is left out: it only explains a code difference)."""
    return _hex(_canonical({k: v for k, v in record.items() if k != "python"}))


# ---------------------------------------------------------------------------------------------------------------------
# the manifest schema
MARKER = ".samplax-checkpoint"
MUTABLE_FIELDS = ("completed_chunks", "warmup_done", "files", "settings_sha256")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK_FILE = re.compile(r"chunk_[0-9]{5}\.npz")
_ZOO_REF = re.compile(r"zoo:[A-Za-z0-9_]+")


def settings_digest(manifest: dict) -> str:
    """SHA-256 of every field that must not change during a run (all but `MUTABLE_FIELDS`)."""
    return _hex(_canonical({k: v for k, v in manifest.items() if k not in MUTABLE_FIELDS}))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape_ok(value) -> bool:
    return isinstance(value, list) and all(_is_int(n) and n >= 0 for n in value)


def _hex_ok(value) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _model_ok(value) -> bool:
    if not isinstance(value, dict) or set(value) != {
        "sites",
        "discrete_sites",
        "observed",
        "deterministic",
        "code_sha256",
        "python",
    }:
        return False
    sites_ok = isinstance(value["sites"], list) and all(
        isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and _shape_ok(s[1]) and isinstance(s[2], str)
        for s in value["sites"]
    )
    return (
        sites_ok
        and isinstance(value["discrete_sites"], list)
        and all(isinstance(s, str) for s in value["discrete_sites"])
        and all(
            isinstance(value[k], dict) and all(_shape_ok(v) for v in value[k].values())
            for k in ("observed", "deterministic")
        )
        and (value["code_sha256"] is None or _hex_ok(value["code_sha256"]))
        and isinstance(value["python"], str)
    )


def _layout_ok(value) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"platform", "local_devices", "processes"}
        and isinstance(value["platform"], str)
        and _is_int(value["local_devices"])
        and value["local_devices"] >= 1
        and _is_int(value["processes"])
        and value["processes"] >= 1
    )


def _files_ok(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(name, str)
        and (name in ("data.npz", "warmup.npz") or _CHUNK_FILE.fullmatch(name))
        and _hex_ok(digest)
        for name, digest in value.items()
    )


# field -> (what it must be, check); checked in this order after format_version
_SCHEMA: dict[str, tuple[str, Callable]] = {
    "method": ("a non-empty string", lambda v: isinstance(v, str) and v != ""),
    "options": ("an object", lambda v: isinstance(v, dict)),
    "chains": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "warmup": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "draws": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "seed": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "precision": ("'float32' or 'float64'", lambda v: v in ("float32", "float64")),
    "init": ("null, a string or an object", lambda v: v is None or isinstance(v, (str, dict))),
    "model_ref": (
        "null or 'zoo:NAME' (samplax never imports code named in a checkpoint: pass model= to resume)",
        lambda v: v is None or (isinstance(v, str) and _ZOO_REF.fullmatch(v) is not None),
    ),
    "thin": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "log_likelihood": ("true or false", lambda v: isinstance(v, bool)),
    "coords": ("null or an object", lambda v: v is None or isinstance(v, dict)),
    "dims": ("null or an object", lambda v: v is None or isinstance(v, dict)),
    "chunk_size": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "num_chunks": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "completed_chunks": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "warmup_done": ("true or false", lambda v: isinstance(v, bool)),
    "device_layout": ("an object {platform, local_devices >= 1, processes >= 1}", _layout_ok),
    "key_data": (
        "a non-empty list of integers in 0..2**32-1",
        lambda v: isinstance(v, list) and v != [] and all(_is_int(x) and 0 <= x < 2**32 for x in v),
    ),
    "data_fingerprint": ("a SHA-256 hex digest", _hex_ok),
    "model_fingerprint": ("a SHA-256 hex digest", _hex_ok),
    "model": ("an object {sites, discrete_sites, observed, deterministic, code_sha256, python}", _model_ok),
    "sites": ("an object {site name: shape}", lambda v: isinstance(v, dict) and all(_shape_ok(s) for s in v.values())),
    "files": ("an object {data.npz | warmup.npz | chunk_NNNNN.npz: SHA-256 hex digest}", _files_ok),
    "settings_sha256": ("a SHA-256 hex digest", _hex_ok),
}
MANIFEST_FIELDS = ("format_version",) + tuple(_SCHEMA)


def validate_manifest(manifest, source: str = "manifest.json") -> dict:
    """Check a checkpoint manifest against the schema; return it unchanged or raise a ValueError.

    Checks the format version, that every field is present and of its type and range, the cross-field ranges
    (chunk_size <= draws, num_chunks = ceil(draws / chunk_size), 0 <= completed_chunks <= num_chunks), that every
    completed file has a SHA-256, and that the settings still hash to ``settings_sha256`` (an edited seed or
    chunk_size is refused). Any input gives the manifest back or a ValueError naming ``source`` and the field.
    """
    if not isinstance(manifest, dict):
        raise ValueError(f"{source}: a checkpoint manifest must be a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION or not _is_int(version):
        raise ValueError(
            f"{source}: checkpoint format version {version!r} is not supported (this samplax reads and "
            f"writes version {CHECKPOINT_FORMAT_VERSION}). " + RERUN_ADVICE
        )
    unknown = sorted(str(k) for k in manifest if k not in MANIFEST_FIELDS)
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {unknown} in the checkpoint manifest")
    for field, (expected, check) in _SCHEMA.items():
        if field not in manifest:
            raise ValueError(f"{source}: field {field!r} is missing from the checkpoint manifest")
        if not check(manifest[field]):
            raise ValueError(f"{source}: field {field!r} must be {expected}, got {_short(manifest[field])}")
    draws, chunk_size = manifest["draws"], manifest["chunk_size"]
    if chunk_size > draws:
        raise ValueError(f"{source}: field 'chunk_size' ({chunk_size}) must be <= draws ({draws})")
    if manifest["num_chunks"] != num_chunks_for(draws, chunk_size):
        raise ValueError(
            f"{source}: field 'num_chunks' is {manifest['num_chunks']}, but {draws} draws in chunks of "
            f"{chunk_size} make {num_chunks_for(draws, chunk_size)}"
        )
    if manifest["completed_chunks"] > manifest["num_chunks"]:
        raise ValueError(
            f"{source}: field 'completed_chunks' must be in 0..{manifest['num_chunks']}, got "
            f"{manifest['completed_chunks']}"
        )
    if manifest["completed_chunks"] and not manifest["warmup_done"]:
        raise ValueError(
            f"{source}: field 'completed_chunks' is {manifest['completed_chunks']} but warm-up is not marked done"
        )
    needed = ["data.npz"] + (["warmup.npz"] if manifest["warmup_done"] else [])
    needed += [f"chunk_{i:05d}.npz" for i in range(manifest["completed_chunks"])]
    missing = [name for name in needed if name not in manifest["files"]]
    if missing:
        raise ValueError(f"{source}: field 'files' has no SHA-256 for {missing[:3]}")
    try:
        digest = settings_digest(manifest)
    except (TypeError, ValueError, RecursionError) as err:  # keys JSON cannot sort, nesting too deep
        raise ValueError(f"{source}: the checkpoint manifest cannot be hashed ({err})") from None
    if manifest["settings_sha256"] != digest:
        raise ValueError(
            f"{source}: the settings no longer match field 'settings_sha256': a setting (seed, "
            "chunk_size, options, ...) was edited after the checkpoint was written. " + RERUN_ADVICE
        )
    return manifest


RERUN_ADVICE = (
    "Rerun the fit with checkpoint= a new or empty directory (or delete this one) to start a fresh checkpoint."
)


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------------
# files
def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open a directory (Windows): the rename is what we have
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, payload: bytes) -> str:
    """Write ``payload`` to ``path`` atomically and durably; return its SHA-256.

    Temporary file in the same folder, fsync, rename over ``path``, fsync of the folder: a crash leaves either the
    old file or the new one, never a torn one.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(directory)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return _hex(payload)


def _npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _flatten(prefix: str, tree) -> dict:
    leaves = jax.tree.leaves(tree)
    return {f"{prefix}{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}


def _unflatten(prefix: str, archive, like, source: str):
    leaves, treedef = jax.tree.flatten(like)
    names = [f"{prefix}{i:04d}" for i in range(len(leaves))]
    missing = [name for name in names if name not in archive.files]
    if missing:
        raise ValueError(
            f"{source}: arrays {missing[:3]} are missing: the checkpoint was written for another model or method"
        )
    loaded = [archive[name] for name in names]
    for name, want, got in zip(names, leaves, loaded):
        if tuple(want.shape) != tuple(got.shape):
            raise ValueError(
                f"{source}: array {name} has shape {got.shape}, expected {want.shape}: the checkpoint "
                "was written for another model or chain count"
            )
    return jax.tree.unflatten(treedef, [jnp.asarray(x, dtype=w.dtype) for x, w in zip(loaded, leaves)])


class Checkpoint:
    """Read and write one checkpoint directory (see the module docstring for the layout).

    A folder is used only if it is missing, empty, or carries the `MARKER` file samplax writes first: a checkpoint
    never overwrites files it did not write. Every file's SHA-256 is kept in the manifest and checked when read.
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)

    @property
    def manifest_path(self):
        return os.path.join(self.path, "manifest.json")

    @property
    def marker_path(self):
        return os.path.join(self.path, MARKER)

    def exists(self) -> bool:
        """Whether the folder holds a samplax checkpoint with a manifest (refuses folders that are not ours)."""
        return self.check_folder() == "checkpoint"

    def check_folder(self) -> str:
        """Return "new" (missing, empty, or ours without a manifest yet) or "checkpoint"; anything else is a ValueError.

        Nothing is written: this runs before any compilation.
        """
        if not os.path.exists(self.path):
            return "new"
        if not os.path.isdir(self.path):
            raise ValueError(f"checkpoint path {self.path!r} is a file, not a directory; pass a new or empty directory")
        if not os.path.exists(self.marker_path):
            entries = os.listdir(self.path)
            if not entries:
                return "new"
            legacy = self._legacy_version()
            if legacy is not None:
                raise ValueError(
                    f"the checkpoint at {self.path!r} was written by an older samplax (format version "
                    f"{legacy}; this samplax reads version {CHECKPOINT_FORMAT_VERSION}) and cannot be "
                    "resumed. " + RERUN_ADVICE
                )
            raise ValueError(
                f"refusing to use {self.path!r} as a checkpoint directory: it is not empty "
                f"({_short(sorted(entries)[:5])}) and is not a samplax checkpoint (no {MARKER} file). "
                "samplax writes checkpoints only into a new or empty directory, so that it never "
                "overwrites your files; pick another directory"
            )
        self._check_marker()
        return "checkpoint" if os.path.exists(self.manifest_path) else "new"

    def _legacy_version(self):
        """The format version of a checkpoint written before markers existed (version 1), else None."""
        try:
            with open(self.manifest_path, encoding="utf-8") as handle:
                version = json.load(handle).get("format_version")
        except (OSError, ValueError, AttributeError, RecursionError):
            return None
        return version if _is_int(version) and version < CHECKPOINT_FORMAT_VERSION else None

    def _check_marker(self):
        try:
            with open(self.marker_path, encoding="utf-8") as handle:
                marker = json.load(handle)
            version = marker["format_version"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            raise ValueError(
                f"{self.marker_path!r} is not a samplax checkpoint marker (unreadable); " + RERUN_ADVICE
            ) from None
        if version != CHECKPOINT_FORMAT_VERSION or not _is_int(version):
            raise ValueError(
                f"the checkpoint at {self.path!r} has format version {version!r} (this samplax reads "
                f"version {CHECKPOINT_FORMAT_VERSION}). " + RERUN_ADVICE
            )

    def start(self, manifest: dict, data: dict) -> dict:
        """Claim the folder (marker first), store the data and write the first manifest; return the manifest."""
        if self.check_folder() != "new":
            raise ValueError(f"{self.path!r} already holds a checkpoint")
        os.makedirs(self.path, exist_ok=True)
        atomic_write(self.marker_path, _canonical({"format_version": CHECKPOINT_FORMAT_VERSION}))
        arrays = {k: np.asarray(v) for k, v in data.items() if v is not None}
        files = {"data.npz": atomic_write(os.path.join(self.path, "data.npz"), _npz_bytes(arrays))}
        manifest = dict(
            manifest, format_version=CHECKPOINT_FORMAT_VERSION, completed_chunks=0, warmup_done=False, files=files
        )
        self.write_manifest(manifest)
        return manifest

    def write_manifest(self, manifest: dict):
        manifest["settings_sha256"] = settings_digest(manifest)
        validate_manifest(manifest, self.manifest_path)  # never write what we would refuse to read
        atomic_write(self.manifest_path, json.dumps(manifest, indent=1).encode())

    def read_manifest(self) -> dict:
        """The validated manifest; a folder that is not a checkpoint, bad JSON or a schema error is a ValueError."""
        if self.check_folder() != "checkpoint":
            raise ValueError(f"no checkpoint at {self.path!r} (manifest.json missing)")
        try:
            with open(self.manifest_path, "rb") as handle:
                manifest = json.loads(handle.read().decode("utf-8"))
        except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(
                f"{self.manifest_path}: not a valid JSON checkpoint manifest ({err}). " + RERUN_ADVICE
            ) from None
        return validate_manifest(manifest, self.manifest_path)

    def _read_verified(self, manifest: dict, name: str):
        """The npz archive ``name``, after checking its SHA-256 against the manifest."""
        path = os.path.join(self.path, name)
        expected = manifest["files"].get(name)
        try:
            with open(path, "rb") as handle:
                payload = handle.read()
        except OSError as err:
            raise ValueError(f"checkpoint file {path} cannot be read ({err.strerror}). " + RERUN_ADVICE) from None
        if expected is None or _hex(payload) != expected:
            raise ValueError(
                f"checkpoint file {path} does not match the SHA-256 recorded in manifest.json: it was "
                "changed or damaged after samplax wrote it. " + RERUN_ADVICE
            )
        return np.load(io.BytesIO(payload), allow_pickle=False)

    def read_data(self, manifest: dict) -> dict:
        with self._read_verified(manifest, "data.npz") as archive:
            return {k: archive[k] for k in archive.files}

    def save_warmup(self, manifest: dict, states, params, extra: dict):
        payload = {
            **_flatten("state", states),
            **_flatten("param", params),
            **{f"extra_{k}": np.asarray(v) for k, v in extra.items()},
        }
        manifest["files"]["warmup.npz"] = atomic_write(os.path.join(self.path, "warmup.npz"), _npz_bytes(payload))
        manifest["warmup_done"] = True
        self.write_manifest(manifest)

    def load_warmup(self, manifest: dict, states_like, params_like):
        source = os.path.join(self.path, "warmup.npz")
        with self._read_verified(manifest, "warmup.npz") as archive:
            extra = {k[len("extra_") :]: archive[k] for k in archive.files if k.startswith("extra_")}
            return (
                _unflatten("state", archive, states_like, source),
                _unflatten("param", archive, params_like, source),
                extra,
            )

    @staticmethod
    def chunk_name(index: int) -> str:
        return f"chunk_{index:05d}.npz"

    def chunk_path(self, index: int) -> str:
        return os.path.join(self.path, self.chunk_name(index))

    def save_chunk(self, manifest: dict, index: int, states, host: dict):
        payload = {**_flatten("state", states), "groups": np.array(sorted(host), dtype=str)}
        for group, values in host.items():
            for name, value in values.items():
                payload[f"{group}/{name}"] = value
        # the chunk file (and its digest) exists before the manifest that counts it
        manifest["files"][self.chunk_name(index)] = atomic_write(self.chunk_path(index), _npz_bytes(payload))
        manifest["completed_chunks"] = index + 1
        self.write_manifest(manifest)

    def load_chunk(self, manifest: dict, index: int, length: int, states_like=None):
        """The host arrays of chunk ``index`` (``length`` draws each) and, given ``states_like``, its end states."""
        source = self.chunk_path(index)
        with self._read_verified(manifest, self.chunk_name(index)) as archive:
            host: dict = {str(group): {} for group in archive["groups"]}  # empty groups (no log-likelihood) too
            for key in archive.files:
                if "/" in key:
                    group, name = key.split("/", 1)
                    value = archive[key]
                    if value.ndim < 2 or value.shape[1] != length:
                        raise ValueError(
                            f"{source}: array {key} has shape {value.shape}, expected {length} draws per chain"
                        )
                    host.setdefault(group, {})[name] = value
            states = _unflatten("state", archive, states_like, source) if states_like is not None else None
        return states, host


def manifest_for(target: Target, settings: dict, chunk: int) -> dict:
    """Everything a checkpoint is bound to.

    The settings, the chunking, the device layout, the key, and fingerprints of the data and of the model (sites,
    distributions, code: `samplax.infer.checkpoint.model_record`).
    """
    record = model_record(target)
    return dict(
        settings,
        chunk_size=chunk,
        num_chunks=num_chunks_for(settings["draws"], chunk),
        device_layout=device_layout(),
        key_data=np.asarray(jax.random.key_data(jax.random.key(settings["seed"]))).tolist(),
        data_fingerprint=data_fingerprint(target.data),
        model_fingerprint=model_fingerprint(record),
        model=record,
        sites={site.name: list(site.shape) for site in target.sites},
    )


# compared in this order, so a different model is reported as such rather than by one of its consequences
_RESUME_FIELDS = (
    "model_fingerprint",
    "data_fingerprint",
    "method",
    "options",
    "chains",
    "warmup",
    "draws",
    "thin",
    "seed",
    "key_data",
    "precision",
    "chunk_size",
    "num_chunks",
    "sites",
    "device_layout",
    "init",
    "log_likelihood",
    "model_ref",
    "coords",
    "dims",
)


def check_resume(saved: dict, current: dict):
    """Refuse a checkpoint written by another model, data set, setting or device layout, naming what differs."""
    for field in _RESUME_FIELDS:
        was, now = saved.get(field), current.get(field)
        if json.dumps(was, sort_keys=True) == json.dumps(now, sort_keys=True):
            continue
        if field == "model_fingerprint":
            raise ValueError(
                f"the checkpoint was written by another model: 'model_fingerprint' was {was[:12]}... and "
                f"is now {now[:12]}... ({_model_difference(saved['model'], current['model'])}). Resume "
                "with the model that wrote it, or start a new checkpoint directory"
            )
        raise ValueError(
            f"the checkpoint does not match this run: '{field}' was {_short_value(was)} and is now "
            f"{_short_value(now)}. Resume with the same model, data and settings, or start a new checkpoint directory"
        )


def _model_difference(saved: dict, current: dict) -> str:
    """Which part of two `model_record`s differs, in words."""
    words = {
        "sites": "latent sites (name, shape, distribution)",
        "discrete_sites": "discrete sites",
        "observed": "observed sites",
        "deterministic": "deterministic sites",
    }
    for key, what in words.items():
        if json.dumps(saved.get(key), sort_keys=True) != json.dumps(current.get(key), sort_keys=True):
            return f"{what}: {_short_value(saved.get(key))} vs {_short_value(current.get(key))}"
    if saved.get("python") != current.get("python"):
        return (
            f"the model function's code hash differs; the checkpoint was written under Python {saved.get('python')}"
            f" and this is Python {current.get('python')}, whose bytecode differs"
        )
    return "same sites, but the model function's code (SHA-256 of its bytecode and constants) differs"


def _short_value(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
