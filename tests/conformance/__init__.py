"""Conformance kits for the seams an outside adapter plugs into."""
