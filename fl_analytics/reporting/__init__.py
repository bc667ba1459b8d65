"""Layer 5, reading finished runs: run and sweep summaries (`report`, `summary`), the
figures (`plots`) and the committed reference results (`reference`). Imports no
TensorFlow and nothing that trains."""
