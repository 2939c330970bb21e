"""A fault-variant plugin for the host tests: its import never finishes."""
import time

time.sleep(3600)
