"""ics-jax: deep one-class classification by intra-class splitting (Schlachter et al., 2019).

The pieces, one module each: `data` (datasets as arrays), `models` (backbones, heads, the split
autoencoder), `losses` (equations 2-4), `split` (SSIM split), `train` (the phase-switched step),
`loops` and `seeds` (how steps and seeds are run), `checkpoint` (Orbax), `evaluate` (AUC),
`pipeline` (one experiment end to end), `paper` (the paper's Table 1).
"""

from ics_jax.config import default_config
from ics_jax.data import DataError, load_one_class
from ics_jax.pipeline import run_experiment

__all__ = ["DataError", "default_config", "load_one_class", "run_experiment"]
