"""The method panels of the report, in page order: each appears when its method's records exist.

One module per method family, each exporting ``PANEL`` (a `samplax.infer.report.panels.base.Panel`); this dict is
the whole registry, built by explicit imports (no module registers itself). To add a panel: write
``panels/<method>.py`` with ``render`` and ``PANEL`` (see `base` and `admm` for a small example) and add it here.
"""

from __future__ import annotations

from samplax.infer.report.panels import admm, bplmc, evidence, gibbs, mixflow, sampler
from samplax.infer.report.panels.base import Panel

__all__ = ["PANELS", "Panel"]

PANELS: dict[str, Panel] = {
    panel.anchor: panel
    for panel in (
        sampler.PANEL,  # every Markov chain method
        evidence.PANEL,  # smc, cmcd, mcd, ula, ais and variational methods
        mixflow.PANEL,
        admm.PANEL,  # admm, dsgld
        bplmc.PANEL,  # bplmc, myula
        gibbs.PANEL,  # gibbs, block_gibbs, meta_gibbs
    )
}
