"""The agent: watches folders and keeps them synced into DeltaSpaces, with a socket API."""
