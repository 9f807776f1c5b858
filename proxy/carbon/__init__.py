"""Grid carbon intensity: providers behind one base class, and causal trailing statistics."""
