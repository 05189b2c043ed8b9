"""One small program per DVC stage: read params, call nads, write outs, log to MLflow."""
