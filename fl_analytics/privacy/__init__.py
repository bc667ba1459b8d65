"""Layer 3, privacy: sampling schemes (`sampling`), the mechanisms' registry
(`mechanisms`), their TFF aggregators (`aggregators`), dp_accounting events and
accounting (`accounting`), the privacy statement (`statement`), and the empirical audit
(`audit`, `canaries`). Imports data and tasks below it, never an engine or a run."""
