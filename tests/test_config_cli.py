"""predis-server's command line and conf file, like redis-server's: precedence, fatal errors,
--version, logging, and graceful shutdown on SIGTERM and SHUTDOWN."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from servers import ROOT, free_port, predis_process

from predis_server.config import OPTIONS, Config, example_conf

CONF = os.path.join(ROOT, "conf", "predis.conf")


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "predis_server", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_example_conf_lists_every_option_and_matches_the_table():
    with open(CONF, encoding="utf-8") as handle:
        text = handle.read()
    assert text == example_conf(), "regenerate: python -m predis_server --example-conf > conf/predis.conf"
    for option in OPTIONS:
        assert f"\n{option.name} " in text or f"\n# {option.name} " in text, option.name
    config = Config()
    config.load_file(CONF)  # the example loads and sets every option to its default
    for option in OPTIONS:
        assert getattr(config, option.attr) == option.default, option.name


def test_conf_file_then_flags_take_precedence(tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text("hz 15\nmaxmemory 1mb\nmaxmemory-policy allkeys-lru\n")
    with predis_process("--hz", "20", conf=str(conf)) as server:
        client = redis.Redis(port=server.port, decode_responses=True)
        settings = client.config_get("*")
        assert settings["hz"] == "20"  # the flag wins over the file
        assert settings["maxmemory"] == str(1024 * 1024)
        assert settings["maxmemory-policy"] == "allkeys-lru"
        assert client.info("server")["config_file"] == str(conf)
        client.close()


@pytest.mark.parametrize("args,message", [
    (["--no-such-option", "1"], "Bad directive or wrong number of arguments"),
    (["--maxmemory", "lots"], "argument must be a memory value"),
    (["--port", "notaport"], "argument couldn't be parsed into an integer"),
])
def test_bad_option_is_a_fatal_error(args, message):
    result = run_cli(*args)
    assert result.returncode == 1
    assert "FATAL CONFIG FILE ERROR" in result.stderr and message in result.stderr


def test_bad_conf_file_line_is_fatal(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("port 7000\nbogus-directive yes\n")
    result = run_cli(str(conf))
    assert result.returncode == 1 and f"{conf}:2" in result.stderr


def test_version_and_help():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("Predis server v=")
    assert "Usage: predis-server" in run_cli("--help").stdout


def test_logfile_and_loglevel(tmp_path):
    verbose, silent = tmp_path / "verbose.log", tmp_path / "silent.log"
    with predis_process("--logfile", str(verbose), "--loglevel", "verbose") as server:
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.config_get("loglevel") == {"loglevel": "verbose"}
        assert client.config_get("logfile") == {"logfile": str(verbose)}
        client.close()
    assert "ready to accept connections" in verbose.read_text()
    with predis_process("--logfile", str(silent), "--loglevel", "nothing"):
        pass
    assert "ready to accept connections" not in silent.read_text()


def test_sigterm_shuts_down_gracefully_with_a_client_connected():
    with predis_process() as server:
        client = redis.Redis(port=server.port)
        client.set("k", "v")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0
        assert "ready to exit" in server.log
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        client.close()


def test_shutdown_command_exits_zero():
    with predis_process() as server:
        client = redis.Redis(port=server.port)
        client.shutdown()  # redis-py expects no reply: the server closes the connection
        assert server.process.wait(10) == 0
        client.close()


def test_shutdown_abort_and_bad_arguments_keep_running():
    port = free_port()
    with predis_process(port=port) as server:
        client = redis.Redis(port=port)
        with pytest.raises(redis.ResponseError, match="No shutdown in progress"):
            client.execute_command("SHUTDOWN", "ABORT")
        with pytest.raises(redis.ResponseError, match="syntax error"):
            client.execute_command("SHUTDOWN", "NOSAVE", "SAVE")
        time.sleep(0.1)
        assert server.process.poll() is None and client.ping()
        client.close()
