"""pcam_core: point-supervised semantic segmentation (McEver & Manjunath, "PCAMs").

One module per concept of the method; the Snakemake rules in ``workflow/`` call these
through the ``pcam`` command (see ``pcam_core.cli``).
"""

__version__ = "0.1.0"
