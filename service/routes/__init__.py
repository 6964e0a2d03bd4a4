"""HTTP routes, one module per group; each only translates between HTTP and the domain."""
