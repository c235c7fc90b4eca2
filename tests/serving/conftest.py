import pytest

from serving.tokens import KEY_ENV
from tests.serving.registry_fixture import write_registry


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory):
    return write_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def token_key(monkeypatch):
    key = "test-key-" + "0123456789abcdef" * 2
    monkeypatch.setenv(KEY_ENV, key)
    return key.encode()
