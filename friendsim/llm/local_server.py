"""llama-cpp-python's OpenAI-compatible server, loading models as the ``local`` provider does.

``python -m friendsim.llm.local_server --model PATH [options of python -m llama_cpp.server]``
serves a GGUF file (the embedded model: ``friendsim.llm.local_models.locate("smollm2")``) on an
OpenAI-compatible endpoint, so a run can reach the local model over real HTTP
(``openai:http://127.0.0.1:PORT/v1#MODEL``). It is ``python -m llama_cpp.server`` with the
weights in llama.cpp's plain CPU layout (:func:`friendsim.llm.local.plain_weight_layout`): the
server's own loader would put them in AMX tiles where the CPU reports AMX, which kills the
process on virtual machines that report AMX without running it.
"""

from __future__ import annotations

import runpy

from friendsim.llm.local import _import_llama_cpp, plain_weight_layout


def main() -> None:
    """Run ``llama_cpp.server`` (its own command line) with the plain weight layout."""
    llama_cpp = _import_llama_cpp()
    with plain_weight_layout(llama_cpp):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
