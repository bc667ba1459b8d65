"""Layer 0, what every other layer stands on: the run directory's files (`rundir`), config
files and overrides (`config_files`), the scripts' shared flag handling (`cli`) and the
processes a run owns (`runtime`). Imports nothing else of fl_analytics."""
