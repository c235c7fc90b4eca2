"""A stateful fake of the Chameleon (OpenStack + Blazar) HTTP APIs, for offline tests and the bench.

Start it with ``FakeChameleon().start()``; point the real python-chi at it with ``fake.env()``.
"""

from tests.fake_chameleon.server import FakeChameleon, FakeConfig

__all__ = ["FakeChameleon", "FakeConfig"]
