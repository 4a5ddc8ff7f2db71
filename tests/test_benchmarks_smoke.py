"""Smoke tests for the benchmark harness (`benchmarks.run`), its helpers (`benchmarks.common`) and the foundation
topic run at quick sizes into a temporary folder.

The quick run's timings mean nothing and are not asserted; what is checked is that the page is written with every
table and a verdict for every goal, that its ratios are the ones its own columns imply, that the SBC histograms
exist and are linked, and that the harness links pages, skips topics not written yet and reports failures. Every
other topic runs once in quick mode (all of them in one subprocess) and must write its page.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common, run  # noqa: E402


def _header_line(headers) -> str:
    return common.markdown_table(headers, []).splitlines()[0]


def _table_rows(text: str, headers) -> list[list[str]]:
    """The body rows of the Markdown table whose header line is ``headers``."""
    lines = text.splitlines()
    start = lines.index(_header_line(headers)) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x"))


# ------------------------------------------------------------------------------------------------ foundation page
@pytest.fixture(scope="module")
def foundation_run(tmp_path_factory):
    from benchmarks import foundation

    out = tmp_path_factory.mktemp("bench")
    page = foundation.main(out, quick=True)
    return foundation, page, page.read_text()


@pytest.mark.slow
def test_foundation_page_has_every_table_and_the_command(foundation_run):
    foundation, page, text = foundation_run
    assert page.name == "foundation.md" and page.exists()
    for headers in (
        foundation.NUTS_HEADERS,
        foundation.COMPILE_HEADERS,
        foundation.GRADIENT_HEADERS,
        foundation.BLACKJAX_HEADERS,
        foundation.SBC_HEADERS,
        ["goal", "measured", "verdict"],
    ):
        assert _header_line(headers) in text, headers
    assert "`python -m benchmarks.run --only foundation --quick`" in text
    assert "jax / jaxlib" in text and "cores" in text
    assert common.read_summary(page).endswith("SBC of nuts and mala.")


@pytest.mark.slow
def test_foundation_goals_each_have_a_verdict(foundation_run):
    """One verdict per goal: cold and warm per NUTS model, two for value_and_grad, one for BlackJAX."""
    foundation, _, text = foundation_run
    goals = _table_rows(text, ["goal", "measured", "verdict"])
    assert len(goals) == 2 * len(foundation.QUICK["nuts_models"]) + 2 + 1
    assert all(row[2] in ("**met**", "**not met**") for row in goals)


@pytest.mark.slow
def test_foundation_nuts_ratio_is_ess_per_second_over_ess_per_second(foundation_run):
    """ratio = (samplax ESS / samplax s) / (NumPyro ESS / NumPyro s), up to the table's 3 significant digits."""
    foundation, _, text = foundation_run
    rows = _table_rows(text, foundation.NUTS_HEADERS)
    assert [row[1].split()[0] for row in rows] == ["cold", "warm"] * len(foundation.QUICK["nuts_models"])
    for row in rows:
        seconds_s, seconds_n, ess_s, ess_n = map(_number, row[2:6])
        assert min(seconds_s, seconds_n, ess_s, ess_n) > 0
        assert _number(row[6]) == pytest.approx(ess_s / seconds_s, rel=0.01)
        assert _number(row[8]) == pytest.approx((ess_s / seconds_s) / (ess_n / seconds_n), rel=0.02)
        assert row[9] == common.yes_no(_number(row[8]) >= foundation.NUTS_GOAL)


@pytest.mark.slow
def test_foundation_mala_tables_cover_the_models(foundation_run):
    foundation, _, text = foundation_run
    gradient = _table_rows(text, foundation.GRADIENT_HEADERS)
    assert len(gradient) == 5 and gradient[0][2] == "1.00x"
    blackjax_rows = _table_rows(text, foundation.BLACKJAX_HEADERS)
    assert [row[0] for row in blackjax_rows] == list(foundation.QUICK["blackjax_models"])
    for row in blackjax_rows:
        scan_ratio, chunk_ratio = _number(row[4]), _number(row[6])
        assert min(_number(row[2]), _number(row[3]), _number(row[5]), scan_ratio, chunk_ratio) > 0
        assert row[8] == common.yes_no(scan_ratio <= foundation.BLACKJAX_GOAL)  # fit runs these draws as one chunk


@pytest.mark.slow
def test_foundation_sbc_histograms_are_written_and_linked(foundation_run):
    foundation, page, text = foundation_run
    rows = _table_rows(text, foundation.SBC_HEADERS)
    assert len(rows) == 2 * len(foundation.QUICK["sbc_models"])
    for row in rows:
        assert 0.0 <= _number(row[5]) <= 1.0  # min p-value
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(images) == len(rows)
    for name in images:
        assert (page.parent / name).stat().st_size > 1000


# ------------------------------------------------------------------------------------------------------- helpers
def test_markdown_table_checks_rows_and_escapes_pipes():
    table = common.markdown_table(["a", "b"], [["x|y", 1234567.0], [float("nan"), 0.000123456]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1,234,567 |", "| - | 0.000123 |"]
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        common.markdown_table(["a", "b"], [[1]])


def test_paired_ratio_is_the_median_of_per_round_ratios():
    assert common.paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 1.0]) == 3.0  # ratios 2, 3, 3
    with pytest.raises(ValueError, match="equally long"):
        common.paired_ratio([1.0], [1.0, 2.0])


def test_interleaved_medians_runs_round_robin_after_one_untimed_call():
    calls = []
    medians = common.interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] * 4
    assert set(medians) == {"a", "b"} and all(value >= 0 for value in medians.values())
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        common.interleaved_medians({"a": lambda: None}, 0)


def test_compile_meter_sees_a_fresh_compilation_and_cache_switch_restores():
    with common.CompileMeter() as meter:
        jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    assert meter.compiles >= 1 and any("lambda" in name for name, _ in meter.programs)
    previous = jax.config.jax_enable_compilation_cache
    with common.persistent_cache_disabled():
        assert jax.config.jax_enable_compilation_cache is False
    assert jax.config.jax_enable_compilation_cache == previous


# ------------------------------------------------------------------------------------------------------- harness
@pytest.fixture
def fake_topics(monkeypatch):
    """Three topics: one that writes a page, one whose module does not exist, one that raises."""
    ok = types.ModuleType("benchmarks.fake_ok")
    ok.__doc__ = "Fake topic docstring."
    ok.main = lambda out_dir, quick=False: common.write_page(
        out_dir, "fake_ok", "Fake", f"fake summary quick={quick}", "body"
    )
    broken = types.ModuleType("benchmarks.fake_broken")

    def broken_main(out_dir, quick=False):
        raise RuntimeError("deliberate failure")

    broken.main = broken_main
    monkeypatch.setitem(sys.modules, "benchmarks.fake_ok", ok)
    monkeypatch.setitem(sys.modules, "benchmarks.fake_broken", broken)
    monkeypatch.setattr(run, "TOPICS", ("fake_ok", "fake_missing", "fake_broken"))


def test_harness_writes_index_skips_missing_and_reports_failures(fake_topics, tmp_path):
    status = run.main(["--quick", "--out", str(tmp_path)])
    assert status == 1  # fake_broken failed
    index = (tmp_path / "index.md").read_text()
    assert "| [fake_ok](fake_ok.md) | fake summary quick=True | ok (quick) |" in index
    assert "| fake_missing |  | not written yet | - |" in index
    assert "| fake_broken |  | failed |" in index


def test_harness_only_keeps_earlier_pages_in_the_index(fake_topics, tmp_path):
    common.write_page(tmp_path, "fake_missing", "Old", "an earlier page", "body")
    assert run.main(["--only", "fake_ok", "--out", str(tmp_path)]) == 0
    index = (tmp_path / "index.md").read_text()
    assert "[fake_ok](fake_ok.md) | fake summary quick=False | ok |" in index
    assert "[fake_missing](fake_missing.md) | an earlier page | not run this time; page from an earlier run |" in index
    assert "fake_broken |  | not run this time |" in index


def test_harness_rejects_an_unknown_topic(fake_topics, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        run.main(["--only", "nonexistent", "--out", str(tmp_path)])
    assert error.value.code == 2
    assert (
        "unknown topic(s) ['nonexistent']; valid topics: fake_ok, fake_missing, fake_broken" in capsys.readouterr().err
    )


# Every topic but foundation, in one fresh process: a topic may set process-wide JAX state (x64, device flags for
# its own subprocesses), and one process pays the imports and JAX's start-up once instead of once per topic.
OTHER_TOPICS = tuple(topic for topic in run.TOPICS if topic != "foundation")
_RUN_OTHER_TOPICS = """
import sys
from pathlib import Path

from benchmarks import run

out = Path(sys.argv[1])
run.write_index(out, run.run_topics(tuple(sys.argv[2:]), out, quick=True), "smoke test")
"""


@pytest.fixture(scope="module")
def quick_topics(tmp_path_factory):
    """Run every other topic at quick sizes, one after the other in one subprocess (``benchmarks.run.run_topics``,
    without `benchmarks.run.main`'s switch that turns the persistent compilation cache off: the tests' cache serves
    a warm rerun); return the output folder and the subprocess's stderr (per-topic tracebacks and seconds)."""
    import os
    import subprocess

    out = tmp_path_factory.mktemp("topics")
    result = subprocess.run(
        [sys.executable, "-c", _RUN_OTHER_TOPICS, str(out), *OTHER_TOPICS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,  # a minute or two on a quiet machine; generous for a loaded one
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-3000:]  # run_topics reports a topic's failure in the index
    return out, result.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("topic", OTHER_TOPICS)
def test_every_topic_runs_in_quick_mode_and_writes_its_page(topic, quick_topics):
    """Each benchmark topic's quick run finishes without an error and writes its page with the summary line the
    index reads, so no benchmark rots between `make bench` runs. (The foundation topic runs in-process above.)"""
    out, stderr = quick_topics
    log = stderr[stderr.find(f"[benchmarks] {topic}: running") :]  # this topic's lines (and traceback) onwards
    status = re.search(rf"^\[benchmarks\] {topic}: (?!running)(.*)$", log, re.MULTILINE)
    assert status is not None and status.group(1).startswith("ok (quick) in "), log[: status.end() if status else 3000]
    page = out / f"{topic}.md"
    assert page.exists(), sorted(p.name for p in out.iterdir())
    assert common.read_summary(page), page.read_text()[:500]
    assert f"| [{topic}]({topic}.md) | " in (out / "index.md").read_text()
