"""Image tools on numpy arrays: smear masks, tile grids, crops. No models, no slide handles."""
