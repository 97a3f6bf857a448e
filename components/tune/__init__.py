"""Hyperparameter search for the training step (Optuna)."""
