"""Ray Serve deployments: thin shells that own Ray concerns; the work lives elsewhere."""
