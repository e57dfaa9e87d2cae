"""Replay: rebuild projections from the log into a shadow store, verify, swap; copy a slice;
move a consumer group forward."""
