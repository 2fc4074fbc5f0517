"""Population sizes: one rule (:func:`friendsim.runtime.config.check_population`) for every entry
point that sizes a population — ``[agents].count``, ``add_agents`` interventions, sweep grids and
``friendsim personas generate --n``. A refused size exits 2 with one line naming the key or option
and the limit, no traceback, and nothing written; nothing is allocated to find out."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from friendsim.cli import main
from friendsim.runtime import assembly
from friendsim.runtime import config as runtime_config
from friendsim.runtime.config import (
    MAX_AGENTS,
    PEAK_BYTES_PER_AGENT,
    PEAK_BYTES_PER_PERSONA,
    ConfigError,
    check_population,
    check_run_population,
    machine_memory,
    parse_config,
)
from friendsim.sweep.config import SweepConfigError, load_sweep

ROOT = Path(__file__).resolve().parents[1]
LIMIT = f"{MAX_AGENTS:,}"  # as the messages write it: 10,000,000
GIB = 2**30


def _config(count: int, *, mode: str = "rounds", adds: tuple[int, ...] = ()) -> str:
    text = (
        f'[experiment]\nname = "big"\nmode = "{mode}"\nrounds = 3\n'
        f'[agents]\ncount = {count}\npolicy = "baseline"\n'
    )
    for i, n in enumerate(adds):
        text += f'[[interventions]]\nkind = "add_agents"\nwindow = {2 + i % 2}\ncount = {n}\n'
    return text


def _cfg(count: int, *, mode: str = "rounds", adds: tuple[int, ...] = ()) -> dict[str, object]:
    data: dict[str, object] = {
        "experiment": {"mode": mode, "rounds": 3},
        "agents": {"count": count, "policy": "baseline"},
    }
    if adds:
        data["interventions"] = [
            {"kind": "add_agents", "window": 2 + i % 2, "count": n} for i, n in enumerate(adds)
        ]
    return data


# --- the rule itself ---------------------------------------------------------------------


def test_the_limit_is_accepted_and_one_more_is_refused_without_allocating() -> None:
    tracemalloc.start()
    try:
        assert check_population(MAX_AGENTS) == MAX_AGENTS
        assert check_population(MAX_AGENTS - 1) == MAX_AGENTS - 1
        cfg = parse_config(_cfg(MAX_AGENTS - 1, adds=(1,)))  # the grown run at the limit
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cfg.agents.count == MAX_AGENTS - 1
    assert peak < 2 * 2**20  # validated, not built: ten million agents would be gigabytes
    with pytest.raises(ValueError, match=f"10,000,001 agents exceeds the limit of {LIMIT}"):
        check_population(MAX_AGENTS + 1)


@pytest.mark.parametrize("n", [0, -1, -(10**12)])
def test_zero_and_negative_populations_are_refused(n: int) -> None:
    with pytest.raises(ValueError, match=f"must be at least 1, got {n}"):
        check_population(n)


def test_the_memory_estimate_refuses_only_what_cannot_fit() -> None:
    each = PEAK_BYTES_PER_AGENT["rounds"]
    memory = 1000 * each
    assert check_population(1000, bytes_each=each, memory=memory) == 1000  # exactly fits
    with pytest.raises(ValueError) as err:
        check_population(1001, bytes_each=each, memory=memory)
    msg = str(err.value)
    assert "1,001 agents need about" in msg and "38 KiB per agent" in msg
    assert f"this machine's {memory / GIB:,.1f} GiB" in msg
    # without a machine figure (or a per-agent figure) only the fixed rules apply
    assert check_population(MAX_AGENTS, bytes_each=each, memory=None) == MAX_AGENTS
    assert check_population(MAX_AGENTS, memory=1) == MAX_AGENTS


PHYSICAL = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 writes for "no limit"


def _fake_system(
    root: Path, *, proc: str | None = None, files: dict[str, str | bytes] | None = None
) -> Path:
    """A fake ``/proc/self/cgroup`` (``proc``) and ``/sys/fs/cgroup`` files under ``root``."""
    if proc is not None:
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/self/cgroup").write_text(proc)
    for rel, content in (files or {}).items():
        file = root / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            file.write_bytes(content)
        else:
            file.write_text(content)
    return root


def test_machine_memory_without_cgroup_files_is_the_os_figure(tmp_path: Path) -> None:
    memory = machine_memory(root=tmp_path)  # nothing there: no /proc, no /sys
    assert memory == PHYSICAL > 0 and memory is not None and memory.source == "physical"
    real = machine_memory()  # this machine's, whatever its cgroups say
    assert real is not None and real <= PHYSICAL


V2 = "sys/fs/cgroup/ci.slice/job.scope/memory.max"
V1 = "sys/fs/cgroup/memory/memory.limit_in_bytes"


@pytest.mark.parametrize(
    ("proc", "files", "expected", "source"),
    [
        ("0::/ci.slice/job.scope\n", {V2: f"{GIB}\n"}, GIB, f"cgroup v2: /{V2}"),
        # a limit set on a parent slice binds the processes below it
        (
            "0::/ci.slice/job.scope\n",
            {V2: "max\n", "sys/fs/cgroup/ci.slice/memory.max": f"{2 * GIB}\n"},
            2 * GIB,
            "cgroup v2: /sys/fs/cgroup/ci.slice/memory.max",
        ),
        # a container's own cgroup mounted as the root (its /proc path not under the mount)
        ("0::/docker/abc\n", {"sys/fs/cgroup/memory.max": str(3 * GIB)}, 3 * GIB, None),
        ("0::/ci.slice/job.scope\n", {V2: "max\n", "sys/fs/cgroup/memory.max": "max"}, None, None),
        ("4:memory:/\n0::/\n", {V1: str(GIB // 2)}, GIB // 2, f"cgroup v1: /{V1}"),
        ("4:memory:/\n0::/\n", {V1: V1_UNLIMITED}, None, None),
        # garbage: not numbers, not text, a negative, a climbing path, a garbled /proc line
        ("0::/ci.slice/job.scope\n", {V2: "lots", V1: b"\xff\xfe"}, None, None),
        ("0::/../../../etc\n", {"etc/memory.max": str(GIB), V1: "-1"}, None, None),
        ("garbage", {V2: str(GIB)}, None, None),
        (None, {}, None, None),  # missing: no /proc, no /sys
    ],
    ids=[
        "v2-limited",
        "v2-parent-limited",
        "v2-root-file",
        "v2-max",
        "v1-limited",
        "v1-unlimited",
        "garbage",
        "climbing-path",
        "garbled-proc",
        "missing",
    ],
)
def test_machine_memory_is_the_smallest_of_physical_and_cgroup_limits(
    tmp_path: Path,
    proc: str | None,
    files: dict[str, str | bytes],
    expected: int | None,
    source: str | None,
) -> None:
    memory = machine_memory(root=_fake_system(tmp_path, proc=proc, files=files))
    assert memory is not None
    if expected is None:  # no limit that binds: the machine's own memory
        assert memory == PHYSICAL and memory.source == "physical"
    else:
        assert memory == expected and memory.source.startswith("cgroup")
        assert source is None or memory.source == source


def test_a_cgroup_limit_above_physical_memory_leaves_the_physical_figure(tmp_path: Path) -> None:
    root = _fake_system(
        tmp_path, proc="0::/\n", files={"sys/fs/cgroup/memory.max": str(PHYSICAL * 2)}
    )
    memory = machine_memory(root=root)
    assert memory == PHYSICAL and memory is not None and memory.source == "physical"


def test_a_refusal_under_a_cgroup_limit_names_the_limit_and_its_file(tmp_path: Path) -> None:
    root = _fake_system(tmp_path, proc="0::/ci.slice/job.scope\n", files={V2: str(GIB)})
    memory = machine_memory(root=root)
    with pytest.raises(ConfigError) as err:
        check_run_population(parse_config(_cfg(50_000)), source="x.toml", memory=memory)
    assert err.value.problem.endswith(
        f"more than this machine's memory limit of 1.0 GiB (cgroup v2: /{V2})"
    )
    assert "this machine's 1.0 GiB" not in err.value.problem


# --- configs: [agents].count, add_agents, the grown population -------------------------------


def test_config_count_over_the_limit_names_the_key_and_the_limit() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(MAX_AGENTS + 1), source="x.toml")
    assert err.value.key == "[agents].count"
    assert LIMIT in err.value.problem and "10,000,001" in err.value.problem
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(0), source="x.toml")
    assert err.value.key == "[agents].count" and "at least 1" in err.value.problem


@pytest.mark.parametrize("count", [0, MAX_AGENTS + 1])
def test_one_add_agents_count_is_checked_by_the_same_rule(count: int) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(5, adds=(count,)), source="x.toml")
    assert err.value.key == "[interventions][0]"
    assert "parameter count" in err.value.problem and "Value error" not in err.value.problem
    assert ("at least 1" if count == 0 else LIMIT) in err.value.problem


def test_a_population_grown_past_the_limit_is_blamed_on_the_add_agents_that_does_it() -> None:
    adds = (4_000_000, 4_000_000, 4_000_000)
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(1_000_000, adds=adds), source="x.toml")
    assert err.value.key == "[interventions][2].count"
    assert "13,000,000 agents ([agents].count and the add_agents up to this one)" in str(err.value)
    assert LIMIT in str(err.value)
    parse_config(_cfg(1_000_000, adds=adds[:2]))  # 9,000,000 in all: accepted


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
def test_the_memory_check_uses_the_modes_figure_and_the_grown_population(mode: str) -> None:
    each = PEAK_BYTES_PER_AGENT[mode]
    memory = 100_000 * each
    parse_config(_cfg(200_000, mode=mode))  # parsing never looks at the machine
    check_run_population(parse_config(_cfg(100_000, mode=mode)), memory=memory)
    with pytest.raises(ConfigError) as err:
        check_run_population(parse_config(_cfg(100_001, mode=mode)), source="x", memory=memory)
    assert err.value.key == "[agents].count" and f"{mode} mode" in err.value.problem
    with pytest.raises(ConfigError) as err:
        check_run_population(
            parse_config(_cfg(60_000, mode=mode, adds=(30_000, 20_000))), memory=memory
        )
    assert err.value.key == "[interventions][1].count"
    assert "110,000 agents" in err.value.problem and "GiB" in err.value.problem


# --- the command line ----------------------------------------------------------------------


def _limit_memory() -> (
    None
):  # should a refusal ever fail, the child dies of MemoryError, not the box
    resource.setrlimit(resource.RLIMIT_AS, (4 * GIB, 4 * GIB))


def _friendsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "friendsim", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        preexec_fn=_limit_memory,
    )


@pytest.mark.parametrize(
    ("command", "toml", "needle"),
    [
        ("run", _config(100_000_000), "[agents].count: 100,000,000 agents exceeds"),
        (
            "run",
            _config(6_000_000, adds=(3_000_000, 3_000_000)),
            "[interventions][1].count: 12,000,000 agents",
        ),
        ("run", _config(4, adds=(20_000_000,)), "[interventions][0]: intervention 'add_agents'"),
        ("run", _config(0), "[agents].count: must be at least 1, got 0"),
        (
            "sweep",
            _config(4) + '[sweep]\ngrid = { "agents.count" = [4, 20000000] }\n',
            '[sweep].grid."agents.count": cell agents.count-20000000: [agents].count 20,000,000',
        ),
    ],
)
def test_cli_refuses_a_population_over_the_limit_and_writes_nothing(
    tmp_path: Path, command: str, toml: str, needle: str
) -> None:
    (tmp_path / "big.toml").write_text(toml)
    proc = _friendsim(command, "big.toml", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"friendsim {command}: config error: big.toml: "), proc.stderr
    assert needle in proc.stderr
    assert (LIMIT in proc.stderr) or "at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml"]


@pytest.mark.parametrize(
    ("n", "problem"),
    [
        (
            "100000000",
            f"100,000,000 personas exceeds the limit of {LIMIT} personas (MAX_AGENTS: ten times "
            "the largest population friendsim documents, 1,000,000 agents)",
        ),
        ("0", "must be at least 1, got 0"),
        ("-5", "must be at least 1, got -5"),
    ],
)
def test_personas_generate_refuses_n_and_writes_nothing(
    tmp_path: Path, n: str, problem: str
) -> None:
    proc = _friendsim("personas", "generate", "--n", n, "--out", "p.jsonl", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"friendsim personas: --n {n}: {problem}\n"
    assert list(tmp_path.iterdir()) == []


def _main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def test_cli_refuses_what_does_not_fit_this_machines_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: GIB)
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(50_000))  # 50,000 x 38 KiB = 1.8 GiB > 1 GiB
    code, err = _main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert err == (
        f"friendsim run: config error: {cfg}: [agents].count: 50,000 agents need about 1.8 GiB "
        "of memory at their peak (50,000 x 38 KiB per agent, measured, rounds mode), more than "
        "this machine's 1.0 GiB\n"
    )
    sweep = tmp_path / "s.toml"
    sweep.write_text(_config(4) + '[sweep]\ngrid = { "agents.count" = [4, 50000] }\n')
    code, err = _main(["sweep", str(sweep), "--out", str(tmp_path / "sw"), "--jobs", "1"])
    assert code == 2 and '[sweep].grid."agents.count": cell agents.count-50000' in err
    assert "more than this machine's 1.0 GiB" in err
    n = GIB // PEAK_BYTES_PER_PERSONA + 1
    code, err = _main(["personas", "generate", "--n", str(n), "--out", str(tmp_path / "p.jsonl")])
    assert code == 2 and err.startswith(f"friendsim personas: --n {n}: {n:,} personas need")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "s.toml"]


def test_the_sweep_file_is_checked_against_memory_only_when_asked(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text(_config(4) + '[sweep]\ngrid = { "agents.count" = [4, 50000] }\n')
    assert len(load_sweep(sweep).cells()) == 2  # a Ray cluster elsewhere: no local figure
    with pytest.raises(SweepConfigError, match="more than this machine's"):
        load_sweep(sweep, memory=GIB)


def test_every_run_path_checks_memory_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assembly checks too, so the API, resumes, forks and sweep workers refuse alike."""
    monkeypatch.setattr(assembly, "machine_memory", lambda: 1024)
    cfg = parse_config(_cfg(6))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"\[agents\]\.count: 6 agents need about"):
        asyncio.run(assembly.run_experiment(cfg, out_dir=out))
    assert not out.exists()


def test_personas_generate_help_states_the_limit() -> None:
    out = io.StringIO()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):
        main(["personas", "generate", "--help"])
    assert f"1 to {LIMIT}" in " ".join(out.getvalue().split())


# --- sweeps: the runs that go together ----------------------------------------------------


def _sweep(tmp_path: Path, counts: tuple[int, ...], *, replications: int = 1) -> Path:
    sweep = tmp_path / "s.toml"
    grid = ", ".join(str(n) for n in counts)
    sweep.write_text(
        _config(counts[0]) + f'[sweep]\nreplications = {replications}\ngrid = {{ "agents.count" '
        f"= [{grid}] }}\n"
    )
    return sweep


def test_a_sweep_whose_parallel_runs_exceed_memory_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run fits alone (1 GiB, 20,000 x 38 KiB = 0.7 GiB), two at once do not."""
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: GIB)
    sweep = _sweep(tmp_path, (4, 20_000), replications=2)
    code, err = _main(["sweep", str(sweep), "--out", str(tmp_path / "sw"), "--jobs", "3"])
    assert code == 2
    assert err == (
        f"friendsim sweep: --jobs 3: sweep 'big' ({sweep}) runs 3 runs at once, and its 3 largest "
        "runs (2 x 20,000 + 4 agents) need about 1.4 GiB of memory at their peak together, more "
        "than this machine's 1.0 GiB; use --jobs 1 (or fewer)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]  # nothing written


def test_the_parallel_check_names_a_cgroup_limit_and_suggests_the_jobs_that_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    each = PEAK_BYTES_PER_AGENT["rounds"]
    limit = runtime_config.MachineMemory(2 * 1000 * each, "cgroup v2: /sys/fs/cgroup/memory.max")
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: limit)
    sweep = _sweep(tmp_path, (1000, 999, 998))
    code, err = _main(["sweep", str(sweep), "--out", str(tmp_path / "sw"), "--jobs", "4"])
    assert code == 2, err
    assert "runs 3 runs at once, and its 3 largest runs (1,000 + 999 + 998 agents)" in err
    assert "this machine's memory limit of 0.1 GiB (cgroup v2: /sys/fs/cgroup/memory.max)" in err
    assert err.endswith("; use --jobs 2 (or fewer)\n") and "Traceback" not in err


def test_a_sweep_that_fits_at_its_jobs_runs_and_a_finished_one_is_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly the two runs' estimate: ``--jobs 2`` (and more than there are runs) fits; once
    they completed, resuming the sweep with less memory runs nothing, so nothing is refused."""
    each = PEAK_BYTES_PER_AGENT["rounds"]
    memory = (3 + 4) * each
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: memory)
    sweep, out = _sweep(tmp_path, (3, 4)), tmp_path / "sw"
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: memory - 1)
    code, err = _main(["sweep", str(sweep), "--out", str(out), "--jobs", "2"])
    assert code == 2 and "(4 + 3 agents)" in err and not out.exists()  # one byte short
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: memory)
    code, err = _main(["sweep", str(sweep), "--out", str(out), "--jobs", "5"])
    assert code == 0, err
    monkeypatch.setattr(runtime_config, "machine_memory", lambda: 5 * each)
    code, err = _main(["sweep", str(sweep), "--out", str(out), "--jobs", "2", "--json"])
    assert code == 0, err  # both runs completed: none runs again
