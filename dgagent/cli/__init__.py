"""The dg-agent command line."""
