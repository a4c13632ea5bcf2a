"""Checks of the estimator `ics_jax.ICS` on real files, for docs/estimator.md: its fit and load
times and test AUCs beside a one-class SVM (`detector_check`), and that it scores what the
experiment runner scores for the same config (`estimator_check`)."""
