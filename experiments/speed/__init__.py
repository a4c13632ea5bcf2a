"""The throughput benchmark of docs/speed.md: the ICS training as a run does it (`bench`), the
share of wall time spent in compiled programs from a profiler trace (`busy`), and the PyTorch
eager peer it is measured against (`torch_peer`)."""
