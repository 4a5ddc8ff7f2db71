"""The HTML diagnostics report: one self-contained page that says whether a fit's draws can be trusted.

    fit.report("report.html")                                        # from Python
    write_report(samplax.load("fit.nc"), "report.html")              # from a saved fit (what the command line does)

The page reads top to bottom:

1. the verdict in plain words, from `diagnostics.convergence_warnings` (Stan's advice: each problem with its next step),
   which judges latent sites only; deterministic sites (functions of the latent ones, `diagnostics.site_roles`) get the
   one informational line of `diagnostics.deterministic_note`;
2. the checks behind it, against the Stan/ArviZ thresholds: R-hat <= 1.01, bulk and tail ESS >= 400, no divergent
   transition after warm-up, E-BFMI >= 0.3 (when ``sample_stats.energy`` exists). Weighted and i.i.d. draws
   (``attrs["draws_kind"]`` in {"weighted", "iid"} or ``sample_stats.log_weight``) are independent repeats, not Markov
   chains, so R-hat is not used: weighted draws are judged by the importance weights' ESS ``(sum w)^2 / sum w^2``
   (>= 400) and Pareto k-hat (<= 0.7, Vehtari et al. 2024);
3. the summary table (`diagnostics.summary`: mean, sd, HDI, MCSE, bulk/tail ESS, R-hat, bulk ESS per second), latent
   sites first, each of their cells that fails a threshold marked; deterministic sites follow, their cells that would
   fail marked as a note, not a failure;
4. plots: trace, rank, a pair plot of the most correlated parameters with divergent draws marked, the energy plot;
5. method panels (`panels/`, one module per method family), each shown when its records exist (names listed in
   docs/report.md): sampler statistics, importance
   weights and evidence (smc, cmcd, ais), ELBO (variational methods), ELBO against flow length and numerical health
   (mixflow), consensus residuals (admm), smoothing and envelope gradients (bplmc, myula), acceptance per block
   (gibbs, meta_gibbs), and any other record a method stores;
6. the run: method, options, timing, versions.

``var_names`` restricts the page to those sites (verdict, checks, table and plots); the checks of the whole run
(divergences, E-BFMI, importance weights) still apply. Only ``fit.idata``, ``fit.timing``, ``fit.log_evidence``,
``fit.elbo``, ``fit.method`` and ``fit.options`` are read, so a fit loaded from NetCDF (no model attached) reports
exactly like the original.

Safety and size: every name that comes from the model or the file (site names, coordinates, attrs, options, warning
texts that quote them) is HTML-escaped, and dollar signs are escaped before matplotlib sees them (no mathtext).
Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas (no pyplot state, the user's backend untouched)
and embedded as base64 PNG data URIs; the page has inline CSS, no JavaScript and no network access. Plots are
thinned (<= 1000 draws and <= 8 chains each, <= 8 parameters in trace and rank plots, <= 4 in the pair plot, vector
sites flattened to their scalar coordinates and the problematic ones shown first); the verdict, the checks and the
table use every draw.

Modules, one idea each: `context` (the fit, the sites shown and their scores, the thresholds), `checks` (the verdict
and the checks), `summary` (the table), `plots` (trace, rank, pair, energy), `panels/` (one module per method family
and the `PANELS` registry), `records` (other records), `html` (escaping, number text, the page shell and CSS),
`figures` (matplotlib without pyplot, PNG data URIs) and `page` (`render_report`, `write_report`). The report never
imports `samplax.infer.fit`: it reads a Fit, or an InferenceData's attrs the way `samplax.load` does.
"""

from samplax.infer.report.page import render_report, write_report
from samplax.infer.report.panels import PANELS

__all__ = ["PANELS", "render_report", "write_report"]
