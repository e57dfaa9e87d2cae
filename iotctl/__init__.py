"""``iotctl``: the one command-line composition root of the platform (``iotctl.main``).

It reads settings, applies the local stack's conveniences (credentials of the dev stack when
a command points at it) and hands plain settings to the packages below; nothing imports it.
"""

__all__: list[str] = []
