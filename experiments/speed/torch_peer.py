"""The benchmark's yardstick: the default ICS network and iteration in PyTorch eager mode.

The same layers as `models.AlexNet` + `models.OneClassNet` (5x5 'same' convolutions, ReLU, 2x2
max pooling, dense layers, a classification and a distance head), and the same work per
iteration as `train.make_iteration`: closeness on `batch_size` typical pairs, the binary loss on
a half-typical, half-atypical batch, dispersion on `batch_size` atypical pairs, each one Adam
step with its own state, L2 on the convolution kernels in the loss.

`experiments.speed.bench` runs it as a subprocess, PyTorch from `pip install -e ".[bench]"`:

    python -m experiments.speed.torch_peer --settings='{"net": {}, "iteration": {},
        "num_typical": 600, "num_atypical": 66}'

and talks to it over stdin/stdout: it first prints its parameter count, then, for each line `N`
it reads, runs N iterations and prints their seconds. It imports no JAX.
"""

import json
import sys
import time


def make_net(conv_features=(32, 64, 96, 96, 64), dense_features=256, latent_dim=128,
             channels=1, image_size=28):
    """Returns the PyTorch module; `forward(x [B, C, H, W]) -> (logit [B], z [B, latent])`."""
    import torch
    from torch import nn

    c1, c2, c3, c4, c5 = conv_features
    side = image_size // 8  # three 2x2 poolings

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList([
                nn.Conv2d(channels, c1, 5, padding=2), nn.Conv2d(c1, c2, 5, padding=2),
                nn.Conv2d(c2, c3, 3, padding=1), nn.Conv2d(c3, c4, 3, padding=1),
                nn.Conv2d(c4, c5, 3, padding=1)])
            self.dense = nn.Linear(side * side * c5, dense_features)
            self.latent = nn.Linear(dense_features, latent_dim)
            self.classifier = nn.Linear(latent_dim, 1)
            self.distance_head = nn.Linear(latent_dim, 1)

        def forward(self, x):
            relu, pool = torch.relu, nn.functional.max_pool2d
            x = pool(relu(self.convs[0](x)), 2)
            x = pool(relu(self.convs[1](x)), 2)
            x = relu(self.convs[3](relu(self.convs[2](x))))
            x = pool(relu(self.convs[4](x)), 2)
            z = relu(self.latent(relu(self.dense(x.flatten(1)))))
            return self.classifier(z)[:, 0], z

    return Net()


def make_iteration(net, typical, atypical, *, batch_size=64, learning_rate=3e-4, b1=0.5,
                   weight_decay=1e-6):
    """Returns `iteration()`: one ICS iteration on random batches of the `[N, C, H, W]` tensors."""
    import torch
    import torch.nn.functional as F

    optimizers = [torch.optim.Adam(net.parameters(), learning_rate, betas=(b1, 0.999))
                  for _ in range(3)]
    half = batch_size // 2
    labels = (torch.arange(batch_size) >= half).float()

    def pairs(pool):
        i = torch.randint(0, len(pool), (batch_size,))
        j = (i + torch.randint(1, len(pool), (batch_size,))) % len(pool)
        _, z = net(torch.cat([pool[i], pool[j]]))
        return net.distance_head(z[:batch_size] - z[batch_size:])[:, 0]

    def losses(phase):
        if phase == 1:
            x = torch.cat([typical[torch.randint(0, len(typical), (half,))],
                           atypical[torch.randint(0, len(atypical), (batch_size - half,))]])
            return F.binary_cross_entropy_with_logits(net(x)[0], labels)
        d = pairs(typical if phase == 0 else atypical)
        return -F.logsigmoid(-d if phase == 0 else d).mean()

    def iteration():
        for phase, optimizer in enumerate(optimizers):
            l2 = sum((conv.weight ** 2).sum() for conv in net.convs)
            loss = losses(phase) + weight_decay * l2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return iteration


def serve(settings: dict) -> None:
    """Answers the benchmark: the parameter count, then seconds per line `N` of iterations."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(settings.get("threads", torch.get_num_threads()))
    net = make_net(**settings["net"])
    shape = (settings["net"].get("channels", 1), settings["net"].get("image_size", 28),
             settings["net"].get("image_size", 28))
    typical = torch.rand(settings["num_typical"], *shape)
    atypical = torch.rand(settings["num_atypical"], *shape)
    iteration = make_iteration(net, typical, atypical, **settings["iteration"])
    print(json.dumps({"params": sum(p.numel() for p in net.parameters()),
                      "torch": torch.__version__, "threads": torch.get_num_threads()}),
          flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        for _ in range(int(line)):
            iteration()
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":  # the flags only here: tests import this module beside others
    from absl import flags

    from experiments import cli

    _SETTINGS = flags.DEFINE_string("settings", None, "JSON: `net` (make_net's keyword "
                                    "arguments), `iteration` (make_iteration's), `num_typical`, "
                                    "`num_atypical`, `threads` (optional).")

    def main(argv: list[str]) -> None:
        del argv
        if _SETTINGS.value is None:
            raise cli.UsageError("give --settings JSON (experiments.speed.bench writes it)")
        serve(json.loads(_SETTINGS.value))

    cli.run_app(main)
