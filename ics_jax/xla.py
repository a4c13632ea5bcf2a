"""`jax.jit` with the XLA options this project measured, and nothing else.

On the CPU, XLA's default YNNPACK convolution kernels ran the ICS iteration at 0.66x the speed
of XLA's Eigen convolutions, which use every core (docs/speed.md), so CPU programs are compiled
with YNNPACK fusions off. Other backends get no options. The choice is made when a program is
first called, never at import: `jax.distributed.initialize` must come before any backend is
touched.
"""

import functools

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options() -> dict:
    """Returns the XLA compiler options for the default backend (a fresh dict)."""
    return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit_now(fn, **kwargs):
    """Returns `jax.jit(fn, **kwargs)` compiled with `compiler_options()`, chosen now: for code
    that runs after the backend is set up (the seeds' runners), with no wrapper between the
    caller and `fn`."""
    return jax.jit(fn, compiler_options=compiler_options(), **kwargs)


def jit(fn=None, **kwargs):
    """Returns `jax.jit(fn, **kwargs)` compiled with `compiler_options()`, built at the first
    call (or `.lower`); usable as a decorator, `@jit` or `@jit(static_argnums=0)`. Called while
    another program is traced, it is plain `jax.jit` (options belong to the outer program)."""
    if fn is None:
        return functools.partial(jit, **kwargs)

    @functools.cache
    def build():
        return jit_now(fn, **kwargs)

    @functools.wraps(fn)
    def call(*args, **kw):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kw))):
            return jax.jit(fn, **kwargs)(*args, **kw)  # inside another program: part of it
        return build()(*args, **kw)

    call.lower = lambda *args, **kw: build().lower(*args, **kw)
    return call
