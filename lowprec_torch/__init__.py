"""PyTorch adapter (issue 6): not implemented yet; importing it says so."""
