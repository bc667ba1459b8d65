"""Layer 4, federated analytics: queries computed on the devices and released with DP
under a budget across queries (`queries`, `heavy_hitters`, `release`, `gather`,
`session`; accuracy against a central library: `accuracy`, `central`). Beside the
engines, not above them: neither imports the other."""
