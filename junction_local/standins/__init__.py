"""Local stand-ins of the systems Junction integrates, speaking their documented APIs."""
