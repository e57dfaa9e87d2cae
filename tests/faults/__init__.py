"""The fault suite: the whole pipeline under load and injected faults, then a checker."""
