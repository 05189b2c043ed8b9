"""One small program per DVC stage: read params, call nads, write outs, log to MLflow."""

import nads  # noqa: F401  (first: its arithmetic settings must precede numpy and torch)
