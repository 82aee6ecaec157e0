"""sfsync emulator."""
