"""The example's views, its tenant resolver and its embedded gateway."""
