"""Every method a config can name (`config.method`), in one place: which network trains with
seeds, the classifier's phases, whether it needs the split and whether it has seeds. What the
baselines score is in `ics_jax/baselines.py`; the config keys each part reads, in
`ics_jax/workdir.py`'s rules, which read this table."""

import dataclasses

import ml_collections

from ics_jax import train


@dataclasses.dataclass(frozen=True)
class Method:
    """`network`: what trains with seeds through `trainer.train_states` ('classifier',
    'teacher' or None: a baseline of `baselines.method_scores`); `phases`: the classifier's
    iteration; `split`: whether it needs the typical / atypical split; `seeded`: whether its
    scores depend on the seed (else it runs once, whatever `num_seeds` says)."""

    network: str | None
    phases: tuple[str, ...] = ()
    split: bool = False
    seeded: bool = True


METHODS = {
    "ics": Method("classifier", train.PHASES, split=True),  # the paper's
    "nn_w_ics": Method("classifier", ("intra_class",), split=True),  # its binary phase alone
    "naive_nn": Method("classifier", (train.NORMAL_ONLY,)),  # every image typical
    "split": Method(None, split=True, seeded=False),  # the split's own score
    "ssim": Method(None, split=True, seeded=False),  # the split autoencoder's SSIM
    "teacher": Method("teacher"),  # the transformation teacher alone
    "ocsvm": Method(None, seeded=False),
    "iforest": Method(None),
    "dsvdd": Method(None),
    "imagenet_ocsvm": Method(None, seeded=False),
}
# The methods whose network trains with seeds (`trainer.make_trainer`), and the classifiers.
TRAINED = tuple(name for name, m in METHODS.items() if m.network)
CLASSIFIERS = tuple(name for name, m in METHODS.items() if m.network == "classifier")
SPLIT = tuple(name for name, m in METHODS.items() if m.split)


def reads_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` trains the transformation teacher: as its network, or for its split."""
    method = METHODS[config.method]
    return method.network == "teacher" or (method.split and config.split_by in ("teacher",
                                                                                 "auto"))
