"""Layer 1: connecting to a Ray cluster, and a local cluster that is always stopped
(`ray_cluster`). What runs on the cluster lives with what it runs: client groups in
`fl_analytics.engines.ray_actors`, sweep points in `fl_analytics.sweeps.ray_launcher`."""
