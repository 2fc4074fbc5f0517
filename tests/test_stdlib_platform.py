"""``friendsim.platform`` must never shadow the standard library's ``platform`` module."""

import importlib
import sys


def test_import_platform_reaches_stdlib() -> None:
    import platform

    assert platform.python_version() == ".".join(str(p) for p in sys.version_info[:3])
    assert "site-packages" not in (platform.__file__ or "")
    assert platform.__name__ == "platform"


def test_friendsim_platform_is_a_subpackage() -> None:
    mod = importlib.import_module("friendsim.platform")
    assert mod.__name__ == "friendsim.platform"
    import platform

    assert mod is not platform
