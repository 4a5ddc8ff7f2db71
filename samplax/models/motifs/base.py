"""What every motif is: the interface the meta_gibbs method and the proposal library rely on.

A motif is a small pattern with a block B (proposed jointly) and its conditioning set C (B's Markov blanket), declared
once with the way its local parameters Theta are read from the model. A motif is a frozen dataclass with:

* ``kind`` (``"discrete"`` or ``"continuous"``) and ``name``;
* ``num_inputs`` (the length of the proposal's input x = (Theta, c)) and ``block_size``;
* ``signature()``: a JSON record that identifies the motif in a saved proposal library (it includes
  `MOTIF_VERSION`: bump it when the meaning of a signature's fields changes, so old libraries are refused);
* ``match(view)``: every instance of the motif in a `samplax.models.motifs.model_view.ModelView`;
* ``sample_training_batch(key, batch_size)``: ``(x, block)`` pairs drawn from the motif's own sub-network with random
  local parameters (the meta-training data).

`MotifLike` states this as a `typing.Protocol`, for type checkers and readers.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MOTIF_VERSION", "MotifLike"]

MOTIF_VERSION = 1


class MotifLike(Protocol):
    """The interface every motif implements (see the module docstring)."""

    name: str
    kind: str

    @property
    def num_inputs(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    def signature(self) -> dict: ...

    def match(self, view: Any) -> list: ...

    def sample_training_batch(self, key: Any, batch_size: int) -> Any: ...
