"""Layer 4, federated analytics: queries computed on the devices and released with DP
(`feature_usage`). Beside the engines, not above them: neither imports the other."""
