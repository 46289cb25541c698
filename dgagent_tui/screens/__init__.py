"""The screens of dg-tui: one module per mode, plus the modals they share."""
