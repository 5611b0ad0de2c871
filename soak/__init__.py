"""The soak: mixed traffic on real processes while workers are killed (README "Reliability")."""
