"""What every process of the platform agrees on: the Avro serde and schema registry, the
topic catalog, Kafka client settings, the device-id grammar and key-to-partition mapping, and
how a time reads in JSON (``times``).

It imports no other package of the project; every other package may import it.
"""

__all__: list[str] = []
