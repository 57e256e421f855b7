"""The line a mesh file's ConfigError points at: its table, then its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator import load_config
from mesh_common.errors import ConfigError
from mesh_common.toml_lines import line_of

TEXT = """\
[aggregator]
interval_seconds = 1.0   # comment

[[services]]
name = "alpha"
port = 9001
type = "core"

[[services]]
name = "bravo"
port = 9002
type = "data"
instances = ["10.0.0.5:18009"]
"""


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "mesh.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value


@pytest.mark.parametrize(
    ("change", "line", "location"),
    [
        (("port = 9001", "port = 70000"), 6, ("services", 0, "port")),
        (('type = "data"', 'type = "two words"'), 12, ("services", 1, "type")),
        (('["10.0.0.5:18009"]', '["10.0.0.5"]'), 13, ("services", 1, "instances")),
        (('name = "bravo"', 'name = "bravo"\ncolour = "red"'), 11, ("services", 1, "colour")),
        (
            ("interval_seconds = 1.0", 'interval_seconds = "1"'),
            2,
            ("aggregator", "interval_seconds"),
        ),
        (('name = "bravo"', 'name = "alpha"'), 10, ("services", 1, "name")),
    ],
)
def test_the_error_of_a_key_points_at_its_line(
    tmp_path: Path, change: tuple[str, str], line: int, location: tuple[object, ...]
) -> None:
    text = TEXT.replace(*change)
    error = error_of(tmp_path, text)
    assert error.location == location
    assert line_of(text, error.location) == line


def test_a_missing_key_points_at_its_table(tmp_path: Path) -> None:
    text = TEXT.replace("port = 9001\n", "")
    error = error_of(tmp_path, text)
    assert error.location == ("services", 0)
    assert line_of(text, error.location) == 4
