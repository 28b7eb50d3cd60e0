"""Bad input to the exporter's command line: one line naming what is wrong, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scalekeeper_celery_exporter.cli import main

from .conftest import process_env

BAD = [
    ([], {"BROKER_URL": "redis://127.0.0.1:1/0"}, "--app"),
    (["--app", "shop"], {}, "BROKER_URL is not set"),
    (["--app", "shop"], {"BROKER_URL": "http://127.0.0.1/"}, "scheme 'http'"),
    (["--app", "shop"], {"BROKER_URL": "redis://127.0.0.1:99999/0"}, "BROKER_URL: not a URL"),
    (["--app", "shop", "--port", "0"], {"BROKER_URL": "redis://127.0.0.1:1/0"}, "--port"),
    (["--app", "shop", "--port", "x"], {"BROKER_URL": "redis://127.0.0.1:1/0"}, "--port"),
    (["--app", "shop", "--rate-window", "0"], {"BROKER_URL": "redis://127.0.0.1:1/0"}, "--rate-window"),
    (["--app", "shop", "--queues", " , "], {"BROKER_URL": "redis://127.0.0.1:1/0"}, "--queues"),
    (["--app", "shop"], {"BROKER_URL": "redis://127.0.0.1:1/0", "QUEUES": ","}, "QUEUES"),
    (["--app", "shop", "--broker-url-env", "SECRET_URL"], {}, "SECRET_URL is not set"),
    (
        ["--app", "shop", "--redis-key-prefix", "ns1:"],
        {"BROKER_URL": "amqp://127.0.0.1/"},
        "--redis-key-prefix",
    ),
    (["--app", "shop"], {"BROKER_URL": "amqp://127.0.0.1/", "REDIS_KEY_PREFIX": "ns1:"}, "not a Redis URL"),
    (["--app", "shop", "--redis-key-prefix", "ns[12]:"], {"BROKER_URL": "redis://127.0.0.1:1/0"}, "glob"),
    (
        ["--app", "shop"],
        {"BROKER_URL": "redis://127.0.0.1:1/0", "REDIS_KEY_PREFIX": "ns*"},
        "REDIS_KEY_PREFIX: 'ns*'",
    ),
]


@pytest.mark.parametrize(("argv", "env", "needle"), BAD)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("BROKER_URL", "SECRET_URL", "QUEUES", "APP", "REDIS_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    for name, v in env.items():
        monkeypatch.setenv(name, v)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert needle in err and err.startswith("scalekeeper-celery-exporter: ")


def test_the_process_answers_bad_input_without_a_traceback() -> None:
    env = process_env("ftp://127.0.0.1/")
    r = subprocess.run(
        [sys.executable, "-m", "scalekeeper_celery_exporter", "--app", "shop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "scalekeeper-celery-exporter: BROKER_URL: scheme 'ftp' is not one of "
        "redis, rediss, amqp, amqps, pyamqp "
        "(see --help)"
    ]
