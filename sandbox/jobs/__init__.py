"""Jobs: an analyst's script, queued, run sealed in a container, its DP outputs kept."""
