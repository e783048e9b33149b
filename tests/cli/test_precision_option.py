"""--precision on the command line, and what info says about it."""

from __future__ import annotations

import json

from support.cli_runs import run


def test_info_says_what_auto_picks_here_and_why(work):
    out = run(work, "info").stdout
    assert "precision: float32 (exact, the default); auto here:" in out
    report = json.loads(run(work, "info", "--json", "--precision", "auto").stdout)["precision"]
    assert report["asked"] == "auto" and report["used"] == report["auto"]
    assert report["auto"] in ("float32", "bfloat16") and report["auto_reason"]
    assert set(report["cpu_features"]) == {"amx", "avx512_bf16", "onednn"}


def test_a_bad_precision_is_refused_by_the_parser(work):
    out = run(work, "info", "--precision", "double", check=False)
    assert out.returncode == 2 and "invalid choice: 'double'" in out.stderr
