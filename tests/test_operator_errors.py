"""Operator mistakes get one clear line, a non-zero exit and never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from msi_tui.broker.local import free_port
from tests.helpers import cli


def assert_clean_error(result, *fragments: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    err = result.stderr.strip()
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize("spelling", ["--chunk-size", "--chunk_size"])
def test_chunk_size_must_be_a_power_of_two(tmp_path: Path, spelling: str) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    assert_clean_error(cli("upload-file", str(f), spelling, "1000"), "power of two", "1000")


def test_chunk_size_zero_is_refused(tmp_path: Path) -> None:
    assert_clean_error(cli("upload", str(tmp_path), "--headless", "--chunk-size", "0"), "power of two")


def test_missing_file(tmp_path: Path) -> None:
    assert_clean_error(cli("upload-file", str(tmp_path / "nope.trc")), "no such file", "nope.trc")


def test_missing_folder(tmp_path: Path) -> None:
    assert_clean_error(cli("upload", str(tmp_path / "gone"), "--headless"), "does not exist", "gone")


def test_file_and_folder_commands_swapped(tmp_path: Path) -> None:
    f = tmp_path / "trace.trc"
    f.write_bytes(b"x")
    assert_clean_error(cli("upload-file", str(tmp_path)), "is a folder", f"msi-tui upload {tmp_path}")
    assert_clean_error(cli("upload", str(f), "--headless"), "is a file", f"msi-tui upload-file {f}")


def test_unreachable_broker_fails_within_15_seconds(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    started = time.monotonic()
    result = cli("upload-file", str(f), "--bootstrap", f"127.0.0.1:{free_port()}", timeout=60)
    elapsed = time.monotonic() - started
    assert_clean_error(result, "cannot reach Kafka")
    assert elapsed < 15, f"took {elapsed:.1f} s"
    # The producer, made before the check to connect meanwhile, is not heard from.
    assert "Kafka unreachable" not in result.stdout + result.stderr


def test_unreachable_broker_for_reconstruct(tmp_path: Path) -> None:
    result = cli("reconstruct", str(tmp_path / "out"), "--headless", "--bootstrap", f"127.0.0.1:{free_port()}",
                 timeout=60)
    assert_clean_error(result, "cannot reach Kafka")


def test_unset_variable_in_config_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSI_TEST_UNSET_PASSWORD", raising=False)
    config = tmp_path / "secure.config"
    config.write_text("[broker]\nbootstrap.servers = 127.0.0.1:1\nsasl.password = ${MSI_TEST_UNSET_PASSWORD}\n")
    f = tmp_path / "x"
    f.write_bytes(b"x")
    assert_clean_error(cli("upload-file", str(f), "--config", str(config)), "$MSI_TEST_UNSET_PASSWORD", "not set")


def test_unknown_config_name(tmp_path: Path) -> None:
    result = cli("reconstruct", str(tmp_path), "--headless", "--config", "no_such_cluster")
    assert_clean_error(result, "no_such_cluster")


def test_unknown_option_is_refused() -> None:
    assert_clean_error(cli("upload-file", "x", "--n-thread", "3"), "unrecognized arguments")


def test_output_folder_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_clean_error(cli("reconstruct", str(blocker / "out"), "--headless"), "cannot write to output folder")


def test_every_command_explains_its_options() -> None:
    for command in ([], ["upload-file"], ["upload"], ["reconstruct"], ["demo"], ["broker"]):
        result = cli(*command, "--help")
        assert result.returncode == 0
        text = result.stdout
        for option in ("--config", "--bootstrap", "--topic"):
            if command != ["broker"]:
                assert option in text
        if command in (["upload-file"], ["upload"]):
            assert "16384" in text and "power of two" in text and "--chunk_size" in text
        if command == ["upload"]:
            assert "3000" in text and "--queue_max_size" in text and "-1" in text
        if command == ["reconstruct"]:
            assert "--group-id" in text and "msi-tui-reconstruct" in text


def test_seed_entry_points_take_seed_options(tmp_path: Path) -> None:
    import subprocess
    import sys

    for module in ("upload_data_file", "upload_data_files_added_to_directory", "reconstruct_data_files"):
        result = subprocess.run([sys.executable, "-m", f"msi_tui.{module}", "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "--n_threads" in result.stdout


# Option values refused at start, before any broker connection: (command, option, value, what the message says).
BAD_VALUES = [
    ("reconstruct", "--group-id", "", "not be empty"),
    ("reconstruct", "--group_id", "   ", "only spaces"),
    ("upload-file", "--n-threads", "10000", "from 1 to 64"),
    ("upload", "--n_threads", "0", "from 1 to 64"),
    ("reconstruct", "--n-threads", "65", "from 1 to 64"),
    ("demo", "--n-threads", "10000", "from 1 to 64"),
    (None, "--n-threads", "-3", "from 1 to 64"),
    ("upload-file", "--chunk-size", "67108864", "33554432 or less"),
    ("upload", "--chunk_size", "1073741824", "33554432 or less"),
    ("upload", "--quiet-seconds", "-1", "0 or more"),
    ("upload", "--quiet-seconds", "nan", "0 or more"),
    ("upload", "--update-seconds", "0", "or -1"),
    ("reconstruct", "--update_seconds", "-2", "or -1"),
    ("upload-file", "--queue-max-size", "0", "at least 1"),
    ("upload", "--partitions", "0", "at least 1"),
    ("reconstruct", "--partitions", "-1", "at least 1"),
]


def assert_one_line_naming(result, option: str, value: str, *fragments: str) -> None:
    err = assert_clean_error(result, *fragments)
    assert len(err.splitlines()) == 1, err
    assert option.replace("_", "-") in err, err
    assert (value if value.strip() else repr(value)) in err, err


@pytest.mark.parametrize(("command", "option", "value", "says"), BAD_VALUES,
                         ids=[f"{c}{o}={v!r}" for c, o, v, _ in BAD_VALUES])
def test_bad_option_value_is_one_line(tmp_path: Path, command: str | None, option: str, value: str, says: str) -> None:
    target = {"upload-file": tmp_path / "x.trc", "upload": tmp_path, "reconstruct": tmp_path / "out",
              "demo": tmp_path / "demo"}
    (tmp_path / "x.trc").write_bytes(b"x")
    args = [command, str(target[command])] if command else []
    assert_one_line_naming(cli(*args, option, value, timeout=30), option, value, says)


def test_seed_entry_points_check_options_too(tmp_path: Path) -> None:
    import subprocess
    import sys

    for module, option, value in (("upload_data_file", "--n_threads", "10000"),
                                  ("upload_data_files_added_to_directory", "--quiet_seconds", "-5"),
                                  ("reconstruct_data_files", "--group_id", "")):
        result = subprocess.run([sys.executable, "-m", f"msi_tui.{module}", str(tmp_path), option, value],
                                capture_output=True, text=True, timeout=30)
        assert_one_line_naming(result, option, value)


def test_chunk_size_bound_follows_the_configs_message_max_bytes(tmp_path: Path) -> None:
    from msi_tui.engine.config import ClusterConfig
    from msi_tui.errors import OperatorError
    from msi_tui.options import check_chunk_size

    config = tmp_path / "small.config"
    config.write_text("[broker]\nbootstrap.servers = 127.0.0.1:1\n[producer]\nmessage.max.bytes = 1000000\n")
    result = cli("upload-file", str(tmp_path), "--config", str(config), "--chunk-size", "1048576", timeout=30)
    assert_one_line_naming(result, "--chunk-size", "1048576", "message.max.bytes 1000000", "524288 or less")
    small = ClusterConfig("small", str(config), producer={"message.max.bytes": "1000000"})
    check_chunk_size(524288, small)  # fits with its headers
    check_chunk_size(33554432, ClusterConfig("default", ""))  # msi-tui raises message.max.bytes itself
    with pytest.raises(OperatorError):
        check_chunk_size(1 << 26, ClusterConfig("default", ""))  # larger than librdkafka's whole queue


def test_help_states_the_ranges() -> None:
    for command in ("upload-file", "upload", "reconstruct", "demo"):
        assert "1 to 64" in cli(command, "--help").stdout
    assert "at most 33554432" in " ".join(cli("upload-file", "--help").stdout.split())
