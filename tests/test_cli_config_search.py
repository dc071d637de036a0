"""Without -c, the boot partition's crowdsign.toml wins over /etc's, then the defaults."""

from __future__ import annotations

from pathlib import Path

from crowdsign import cli


def write(path: Path, zone: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[[zones]]\nname = "{zone}"\n'
                    'polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n')
    return path


def load(*argv: str):
    return cli.load_with_overrides(cli.build_parser().parse_args(["check", *argv]))


def test_boot_partition_then_etc_then_defaults(tmp_path, monkeypatch):
    boot = tmp_path / "boot" / "firmware" / "crowdsign.toml"
    etc = tmp_path / "etc" / "crowdsign" / "crowdsign.toml"
    monkeypatch.setattr(cli, "CONFIG_SEARCH_PATH", (boot, etc))
    assert load().path is None and load().zone_list()[0].name == "all"
    write(etc, "from_etc")
    assert load().zones[0].name == "from_etc"
    write(boot, "from_boot")
    assert load().zones[0].name == "from_boot"
    other = write(tmp_path / "other.toml", "explicit")
    assert load("-c", str(other)).zones[0].name == "explicit"


def test_the_search_path_is_the_boot_partition_then_etc():
    assert cli.CONFIG_SEARCH_PATH == (Path("/boot/firmware/crowdsign.toml"),
                                      Path("/etc/crowdsign/crowdsign.toml"))
