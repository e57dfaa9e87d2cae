"""Stream processors with exactly-once effects: projections, inbox, outbox, queries, replay."""

__all__: list[str] = []
