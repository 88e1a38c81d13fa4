import pytest

TOY = """
[problem]
kind = "quadratic"
centres = [3.0, -3.0]
x0 = 1.0

[algorithm]
name = "clip21"
lr = 0.5
tau = 1.0

[run]
steps = 30
"""


@pytest.fixture
def toy_config(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY)
    return path
