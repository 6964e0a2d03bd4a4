"""The service's own routes, one module per group; each only translates between HTTP and the
predictor (or the app's state)."""
