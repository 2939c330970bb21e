"""A fault-variant plugin for the host tests: its import fails."""
raise ImportError("this plugin cannot be imported")
