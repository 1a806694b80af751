"""The train stage: the K sweep, the choice of K, the fitted model and its tables."""
