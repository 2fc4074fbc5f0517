"""Endpoint base URLs (``friendsim.llm.urls``): credentials and bad ports are refused where
a URL enters (a provider spec, an endpoints file, an HTTP client), never at request time.

``friendsim run`` and ``friendsim run --estimate`` on such a config exit 2 with one line naming
the config key (or the endpoints file and line), create nothing, and never echo a password.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from friendsim.cli import main as cli_main
from friendsim.llm.endpoints import EndpointsFileError, parse_endpoints
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.http11 import HTTP11Client
from friendsim.llm.openai_provider import OpenAIChatLLM
from friendsim.runtime.config import ConfigError, load_config

PASSWORD = "URLPASS-SECRET-999"
CRED_URL = f"http://qauser:{PASSWORD}@127.0.0.1:18002/v1"


def experiment(tmp_path: Path, llm: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(
        '[experiment]\nname = "u"\nrounds = 1\nn_actions = 1\n[agents]\ncount = 2\n'
        f'policy = "llm"\n[llm]\nretries = 0\ntimeout_s = 1.0\n{llm}\n',
        encoding="utf-8",
    )
    return path


def run_cli(
    capsys: pytest.CaptureFixture[str], cfg: Path, out: Path, *extra: str
) -> tuple[int, str]:
    code = cli_main(["run", str(cfg), "--out", str(out), "--quiet", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_credentials_in_a_provider_url_are_refused_without_echoing_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = experiment(tmp_path, f'provider = "openai:{CRED_URL}#m"')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.key == "[llm].provider"
    assert PASSWORD not in str(info.value) and "api_key_env" in str(info.value)
    for extra in ((), ("--estimate",)):
        code, text = run_cli(capsys, cfg, tmp_path / "r", *extra)
        assert code == 2, text
        assert "[llm].provider" in text and "credentials" in text and "api_key_env" in text
        assert PASSWORD not in text and "Traceback" not in text
        assert not (tmp_path / "r").exists()


def test_credentials_in_an_endpoints_file_or_a_client_url_are_refused() -> None:
    with pytest.raises(EndpointsFileError) as info:
        parse_endpoints(f"http://a:1/v1\n{CRED_URL} weight=2\n", source="fleet.txt")
    assert "fleet.txt:2:" in str(info.value) and PASSWORD not in str(info.value)
    for make in (
        lambda: HTTP11Client(CRED_URL, headers={}),
        lambda: OpenAIChatLLM("m", base_url=CRED_URL, http_path="sdk"),
        lambda: OpenAIChatLLM("m", base_url=CRED_URL, http_path="httpcore"),
    ):
        with pytest.raises(ProviderConfigError) as err:
            make()
        assert "credentials" in str(err.value) and PASSWORD not in str(err.value)


def test_the_host_header_never_carries_userinfo() -> None:
    from friendsim.llm.urls import host_header

    assert host_header(urlsplit(CRED_URL)) == "127.0.0.1:18002"
    assert host_header(urlsplit("http://[::1]:8000/v1")) == "[::1]:8000"
    assert host_header(urlsplit("https://example.org/v1")) == "example.org"


BAD_PORTS = [
    ("http://127.0.0.1:99999/v1", "bad port '99999'"),
    ("http://a:abc/v1", "bad port 'abc'"),
    ("http://a:0/v1", "bad port '0'"),
    ("http://[::1/v1", "not a valid URL (Invalid IPv6 URL)"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_PORTS)
def test_a_bad_port_in_a_provider_spec_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, needle: str
) -> None:
    cfg = experiment(tmp_path, f'provider = "openai:http://b:1/v1,{url}#m"')
    for extra in ((), ("--estimate",)):
        code, text = run_cli(capsys, cfg, tmp_path / "r", *extra)
        assert code == 2, text
        assert "[llm].provider" in text and needle in text and "Traceback" not in text
        assert not (tmp_path / "r").exists()
    override = experiment(
        tmp_path,
        f'provider = "scripted"\n[[llm.overrides]]\nprovider = "openai:{url}#m"\nagents = ["u0"]',
    )
    with pytest.raises(ConfigError) as info:
        load_config(override)
    assert info.value.key == "[llm].overrides[0].provider" and needle in info.value.problem


@pytest.mark.parametrize(("url", "needle"), BAD_PORTS)
def test_a_bad_port_in_an_endpoints_file_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, needle: str
) -> None:
    (tmp_path / "fleet.txt").write_text(f"http://a:8000/v1\n{url} weight=2\n")
    cfg = experiment(tmp_path, 'provider = "openai:m"\nendpoints_file = "fleet.txt"')
    for extra in ((), ("--estimate",)):
        code, text = run_cli(capsys, cfg, tmp_path / "r", *extra)
        assert code == 2, text
        assert "[llm].endpoints_file" in text and "fleet.txt:2:" in text and needle in text
        assert "Traceback" not in text and not (tmp_path / "r").exists()
    with pytest.raises(ProviderConfigError, match="bad port"):
        HTTP11Client("http://a:70000/v1", headers={})
