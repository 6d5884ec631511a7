import pytest


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "agent.db")
