"""Source loading (files, joins, derived columns) and the stream emulator."""
