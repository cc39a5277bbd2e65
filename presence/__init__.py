"""presence layer."""
