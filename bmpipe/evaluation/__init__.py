"""Held-out evaluations of the models: each module scores one model and prints its figures against its targets."""
