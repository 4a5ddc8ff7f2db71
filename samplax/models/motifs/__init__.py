"""Motifs on NumPyro models, and the factor-graph view that Gibbs-type samplers run on.

A bridge extension (like `samplax.models.bridge`, it traces the model; nothing outside `models` does):

* `compile_model(target)` reads the model's dependency graph once (`numpyro.infer.inspect.get_model_relations`) and
  turns every factor that depends only on scalar discrete sites into a table, by evaluating the model's own
  log-probabilities at a few "probe" assignments (factors whose scopes do not overlap are probed together, so a
  20 x 20 grid needs about 70 evaluations). The result, a `ModelView`, gives the tables as arrays, the Markov
  blanket of every variable, and the whole log joint (for the sites whose factors are not tables: continuous
  sites, and discrete sites with a continuous child).
* A motif is a small pattern with a block B (proposed jointly) and its conditioning set C (B's Markov blanket),
  declared once with the way its local parameters Theta are read from the model. `DiscreteMotif` is a pattern of
  binary nodes matched against the dependency graph (`networkx` subgraph matching, then the exact-blanket check:
  every block and child node has exactly the pattern's parents, and the blanket of the block's image is the image of
  the pattern's blanket); Theta is every conditional table inside the motif, read P(x = 1 | parents) in pattern
  order. `grid_block_motif(3, 3)` is the paper's "diamond": a 3 x 3 block of a binary grid network with its
  14-node blanket. `TwoMeansMotif` is the open-universe mixture's motif: two component means given the data and
  the other means.
* Every motif can forward-sample its own sub-network with random local parameters (the meta-training data) and,
  when it is discrete, enumerate the exact block conditional (for held-out KL checks).

Signatures (`Motif.signature()`) are JSON records that identify a motif in a saved proposal library.

Modules: `sites` (reading NumPyro sites), `model_view` (`compile_model`, `ModelView`: the shared machinery), `finish`
(`finish_with_discrete`), `base` (what every motif implements, `MOTIF_VERSION`), one module per motif
(`discrete` with `grid_block`, and `two_means`), and `known` (the motifs looked for, in order). The names below are
re-exported here, so ``from samplax.models.motifs import ...`` keeps working.
"""

from samplax.models.motifs.base import MOTIF_VERSION, MotifLike
from samplax.models.motifs.discrete import DiscreteInstance, DiscreteMotif
from samplax.models.motifs.finish import finish_with_discrete
from samplax.models.motifs.grid_block import grid_block_motif
from samplax.models.motifs.known import known_motifs
from samplax.models.motifs.model_view import MAX_TABLE_SIZE, ModelView, compile_model
from samplax.models.motifs.two_means import (
    FEATURE_EXPLAINED_SCALE,
    FEATURE_KMEANS_ITERATIONS,
    TRAINING_MAX_COMPONENTS,
    TRAINING_MAX_POINTS,
    TwoMeansInstance,
    TwoMeansMotif,
    two_means_features,
)

__all__ = [
    "ModelView",
    "compile_model",
    "DiscreteMotif",
    "DiscreteInstance",
    "grid_block_motif",
    "TwoMeansMotif",
    "TwoMeansInstance",
    "two_means_features",
    "MOTIF_VERSION",
    "MotifLike",
    "known_motifs",
    "finish_with_discrete",
    "MAX_TABLE_SIZE",
    "FEATURE_EXPLAINED_SCALE",
    "FEATURE_KMEANS_ITERATIONS",
    "TRAINING_MAX_COMPONENTS",
    "TRAINING_MAX_POINTS",
]
