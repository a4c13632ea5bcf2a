"""ics-jax: deep one-class classification by intra-class splitting (Schlachter et al., 2019).

The pieces, one module each: `data` (datasets as arrays), `files` (raw file formats), `models`
(backbones, heads, the split autoencoder), `losses` (equations 2-4), `step` (the one update step
every network trains with), `autoencoder` (training the split autoencoder), `teacher` (the
transformation teacher), `sight` (the label-free checks of what each score sees), `split` (the
split), `train` (the ICS phases' losses), `seeds` (how the seeds run), `trainer` (a config's
networks trained), `checkpoint` (Orbax), `evaluate` (AUC), `workdir` (resuming a run),
`pipeline` (one experiment end to end), `detector` (the PyOD / scikit-learn contract every
detector keeps, save, load), `estimator` (`ICS`, `SplitScore`, `DeepSVDD`, `AutoencoderSSIM`,
`Teacher`), `xla` (compiler options). The paper's tables and sweeps are in `experiments/`.
"""

from ics_jax.config import default_config
from ics_jax.data import DataError, load_one_class
from ics_jax.estimator import ICS, AutoencoderSSIM, DeepSVDD, SplitScore, Teacher
from ics_jax.files import load_images
from ics_jax.pipeline import run_experiment

__all__ = ["ICS", "AutoencoderSSIM", "DataError", "DeepSVDD", "default_config", "load_images",
           "load_one_class", "run_experiment", "SplitScore", "Teacher"]
