"""What a method panel is: a section of the report that appears when a method's records exist.

A panel module (one per method family, named after it) defines a ``render(context) -> str | None`` function that
returns the section's HTML, or None when the fit has none of the records it draws (the section is then left out),
and a ``PANEL`` that names it. ``stats`` and ``attrs`` list the ``sample_stats`` variables and root attrs the panel
reads: the "Other records" section summarises everything that no panel reads, so a record a method starts to store
shows up there until a panel claims it. To add a panel, write the module and add it to ``PANELS`` in
`samplax.infer.report.panels` (nothing registers itself on import).

Panels read the fit through `samplax.infer.report.context.Context` (``stat_values``, ``attr_array``, ``options``,
...), draw with `samplax.infer.report.figures` and escape every name from the model or file with
`samplax.infer.report.html.esc`. A panel that raises becomes an error note on the page, not a missing report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from samplax.infer.report.context import Context

__all__ = ["Panel"]


class Panel(NamedTuple):
    """A method panel: where it sits on the page, how it is drawn and which records it reads."""

    anchor: str  # the section's HTML id (also the key in PANELS)
    title: str  # the section's heading, naming the methods it serves
    render: Callable[[Context], str | None]  # the section's HTML, or None when its records are absent
    stats: frozenset = frozenset()  # sample_stats variables it reads
    attrs: frozenset = frozenset()  # root attrs it reads (``extra_*`` records)
