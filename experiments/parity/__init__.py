"""Reference parity: golden outputs from the PyTorch implementations researchers know.

Each module here (other than `common`) builds one reference (torch.nn attention and
transformer layers, torchvision's ResNet-18, diffusers' schedulers, LeRobot's ACT, ...) with
weights and inputs derived from a seed by `common.seeded_array`, runs it, and returns the
outputs. `python -m experiments.parity` (under the `parity` extra) writes them to
`tests/fixtures/parity/<module>.npz`; the default tests rebuild the same weights and inputs
with numpy, run our JAX implementation and compare, so CI never needs PyTorch.
"""
