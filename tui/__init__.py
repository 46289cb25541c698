"""dg-tui, the terminal UI that talks to the agent over its socket (arrives with the TUI issue)."""
