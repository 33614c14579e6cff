"""bmpipe: whole-slide analysis of bone-marrow aspirate smears.

Layers depend only downward: slide I/O (``slide``) -> image tools (``imaging``, ``phantom``) ->
models (``nn``) -> pipeline stages (``stages``) -> flows, CLI and report.
"""

__version__ = "0.1.0"
