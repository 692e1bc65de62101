"""JAX adapter (issue 5): not implemented yet; importing it says so."""
