"""dasslite.results.compare on fixture result trees: layout, best marks with ties, missing cells, the Average's datasets,
the Δ column, every format (the LaTeX compiled where a TeX is installed), the plot, and the sweep's hook."""
import csv
import io
import os
import shutil
import subprocess

import pytest

from dasslite.results import compare as C
from dasslite import results as R
from dasslite import sweep as S
from tests.test_results import b2n_dir, fs_dir, make_transfer_tree, record, write_run
from tests.test_sweep import fake_repo  # noqa: F401 (fixture)

H = R.harmonic_mean


def h_cell(base, new):
    """The H cell of runs made by ``b2n(..., base, new)`` with seeds 1 and 2: H of the means ± std of per-seed H."""
    per_seed = [H(base + s, new + s) for s in (1, 2)]
    return f"{H(base + 1.5, new + 1.5):.2f} ± {abs(per_seed[0] - per_seed[1]) / 2:.2f}"


def b2n(root, trainer, cfg, ds, base=None, new=None, seeds=(1, 2)):
    """Runs of one method on one dataset: Base = base + seed, New = new + seed (None: no such runs)."""
    for seed in seeds:
        if base is not None:
            write_run(b2n_dir(root, "train_base", ds, seed, trainer, cfg), None,
                      record(base + seed, "base", seed, trainer=trainer))
        if new is not None:
            write_run(b2n_dir(root, "test_new", ds, seed, trainer, cfg), None,
                      record(new + seed, "new", seed, trainer=trainer))


@pytest.fixture
def tree(tmp_path):
    """CoOp/c on caltech101, dtd, eurosat; MoCoOp/m on dtd (Base tied with CoOp) and eurosat (New tied);
    CoOp/c2 on dtd with Base only (its New never ran)."""
    b2n(tmp_path, "CoOp", "c", "caltech101", 90, 70)
    b2n(tmp_path, "CoOp", "c", "dtd", 80, 50)
    b2n(tmp_path, "CoOp", "c", "eurosat", 85, 60)
    b2n(tmp_path, "MoCoOp", "m", "dtd", 80, 55)
    b2n(tmp_path, "MoCoOp", "m", "eurosat", 88, 60)
    b2n(tmp_path, "CoOp", "c2", "dtd", 70, None, seeds=(1,))
    return tmp_path


def test_layout_names_missing_cells_and_no_common_average(tree):
    (cmp,) = C.compare("base2new", str(tree))
    assert [m.label for m in cmp.methods] == ["CoOp (c)", "CoOp (c2)", "MoCoOp"]  # a trainer's two recipes apart
    assert cmp.rows == ["caltech101", "dtd", "eurosat"]  # the papers' order
    assert cmp.average_rows == [] and "Average: none: no dataset is complete for every shown method." in cmp.notes
    rows = C.grid(cmp, C.TERMINAL)
    assert rows[1] == ["dtd", "81.50 ± 0.50 *", "51.50 ± 0.50", h_cell(80, 50), "71.00 ± 0.00", "missing",
                       "missing", "81.50 ± 0.50 *", "56.50 ± 0.50 *", h_cell(80, 55) + " *"]
    assert rows[-1] == ["Average (0/3)"] + ["missing"] * 9  # never an average of different datasets
    miss = C.missing_cells(cmp)
    assert "CoOp (c2) / dtd / New: not run (no such folder)" in miss
    assert "CoOp (c2) / dtd / H: H needs both Base and New: New missing" in miss
    assert "MoCoOp / caltech101 / Base: no runs of MoCoOp / m" in miss
    assert "CoOp (c2) / eurosat / Base: no runs of CoOp / c2" in miss


def test_best_with_ties_average_over_common_datasets_and_delta(tree):
    (cmp,) = C.compare("base2new", str(tree), trainers=["MoCoOp", "CoOp/c"], baseline="CoOp")
    assert [m.label for m in cmp.methods] == ["MoCoOp", "CoOp"]  # the order asked for; one CoOp recipe left
    assert cmp.average_rows == ["dtd", "eurosat"]
    assert any(n.startswith("Average: over the 2 of 3 datasets every shown method has (dtd, eurosat); not "
                            "averaged: caltech101") for n in cmp.notes)
    rows = {r[0]: r[1:] for r in C.grid(cmp, C.TERMINAL)}
    # MoCoOp: Base New H Δ | CoOp: Base New H
    h_mo, h_co = H(81.5, 56.5), H(81.5, 51.5)
    assert rows["dtd"] == ["81.50 ± 0.50 *", "56.50 ± 0.50 *", h_cell(80, 55) + " *", f"{h_mo - h_co:+.2f}",
                           "81.50 ± 0.50 *", "51.50 ± 0.50", h_cell(80, 50)]
    assert rows["eurosat"][1] == rows["eurosat"][5] == "61.50 ± 0.50 *"  # a tie: both marked
    assert rows["caltech101"] == ["missing"] * 4 + ["91.50 ± 0.50", "71.50 ± 0.50", h_cell(90, 70)]
    base_mo, new_mo, base_co, new_co = (81.5 + 89.5) / 2, (56.5 + 61.5) / 2, (81.5 + 86.5) / 2, (51.5 + 61.5) / 2
    assert rows["Average (2/3)"] == [f"{base_mo:.2f} *", f"{new_mo:.2f} *", f"{H(base_mo, new_mo):.2f} *",
                                     f"{H(base_mo, new_mo) - H(base_co, new_co):+.2f}", f"{base_co:.2f}",
                                     f"{new_co:.2f}", f"{H(base_co, new_co):.2f}"]
    with pytest.raises(C.CompareError, match="--trainers KgCoOp: no such method .* there are: CoOp \\(c\\), "
                                             "CoOp \\(c2\\), MoCoOp"):
        C.compare("base2new", str(tree), trainers=["KgCoOp"])
    with pytest.raises(C.CompareError, match="--baseline CoOp: it names 2 methods"):
        C.compare("base2new", str(tree), baseline="CoOp")


def test_paper_columns_beside_ours(tree):
    (cmp,) = C.compare("base2new", str(tree), trainers=["CoOp/c", "MoCoOp"], paper=R.load_paper())
    headers = [f"{m.label} {C._sub_label(cmp, k, x, C.MARKDOWN)}" for m, k, x in C._columns(cmp)]
    assert headers[3:6] == ["CoOp paper Base", "CoOp paper New", "CoOp paper H"]
    rows = {r[0]: r[1:] for r in C.grid(cmp, C.MARKDOWN)}
    assert rows["dtd"][3:6] == ["80.17", "47.54", "59.67"] and rows["dtd"][9:] == ["81.94", "60.99", "69.93"]
    b, n = (80.17 + 91.54) / 2, (47.54 + 54.44) / 2  # the paper's dtd and eurosat rows: the Average's datasets
    assert rows["Average (2/3)"][3:6] == [f"{b:.2f}†", f"{n:.2f}†", f"{H(b, n):.2f}†"]
    assert rows["caltech101"][9:] == ["98.43", "94.87", "96.61"]  # published even where our run is missing


def test_formats_markdown_csv_latex(tree, tmp_path):
    (cmp,) = C.compare("base2new", str(tree), trainers=["CoOp/c", "MoCoOp"], baseline="CoOp")
    md = C.format_comparison(cmp, C.MARKDOWN)
    assert md.startswith("### Base-to-new, shots 16") and "| Dataset " in md and "MoCoOp Δ H" in md
    assert "| **81.50** ± 0.50 |" in md and "Missing cells (shown as missing, never averaged):" in md
    lines = list(csv.DictReader(io.StringIO(C.csv_text([cmp]))))
    by = {(r["dataset"], r["method"], r["metric"]): r for r in lines}
    assert len(lines) == 4 * 2 * 3
    assert by[("eurosat", "CoOp", "new")]["best"] == by[("eurosat", "MoCoOp", "new")]["best"] == "1"
    assert by[("eurosat", "CoOp", "base")]["best"] == "0" and by[("eurosat", "CoOp", "base")]["mean"] == "86.5000"
    assert by[("caltech101", "MoCoOp", "h")]["missing_reason"] == "no runs of MoCoOp / m"
    assert by[("caltech101", "MoCoOp", "h")]["mean"] == ""
    assert float(by[("dtd", "MoCoOp", "h")]["delta_vs_baseline"]) == pytest.approx(H(81.5, 56.5) - H(81.5, 51.5),
                                                                                   abs=1e-4)
    assert by[("Average", "CoOp", "base")]["n"] == "2"
    tex = C.latex(cmp)
    assert r"\begin{tabular}{l ccc cccc}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r" & \multicolumn{3}{c}{CoOp} & \multicolumn{4}{c}{MoCoOp} \\" in tex
    assert r"\cmidrule(lr){2-4} \cmidrule(lr){5-8}" in tex and r"$\Delta$ H" in tex
    assert r"\textbf{81.50}{\scriptsize$\pm$0.50}" in tex and r"86.50{\scriptsize$\pm$0.50}" in tex
    body = tex[tex.index(r"\begin{tabular}"):]
    assert body.index(r"\midrule", body.index("eurosat &")) < body.index("Average (2/3) &")
    assert "caltech101 & 91.50{" in tex and tex.split("caltech101 & ")[1].split(r" \\")[0].endswith(
        "& -- & -- & -- & --")
    # a name with LaTeX specials is escaped
    cmp.methods[1].label = "MoCoOp_v2 & 50%"
    assert r"\multicolumn{4}{c}{MoCoOp\_v2 \& 50\%}" in C.latex(cmp)
    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex: the LaTeX structure was checked, not compiled (apt-get install texlive-latex-base "
                    "texlive-latex-recommended)")
    (tmp_path / "table.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{table.tex}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_cli_files_and_plot(tree, tmp_path, capsys):
    out = tmp_path / "files"
    argv = ["compare", "base2new", str(tree), "--trainers", "CoOp/c", "MoCoOp", "--baseline", "CoOp",
            "--markdown", str(out / "t.md"), "--csv", str(out / "t.csv"), "--latex", str(out / "t.tex"),
            "--plot", str(out / "h.png")]
    assert R.main(argv) == 0
    text = capsys.readouterr().out
    assert "Base-to-new, shots 16" in text and "81.50 ± 0.50 *" in text and "Plot written to" in text
    assert (out / "t.md").read_text().startswith("### ") and (out / "t.csv").read_text().startswith("comparison,")
    assert r"\toprule" in (out / "t.tex").read_text()
    png = (out / "h.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert R.main(["compare", "base2new", str(tree), "--format", "latex"]) == 0
    assert r"\begin{tabular}" in capsys.readouterr().out
    assert R.main(["compare", "base2new", str(tree), "--baseline", "Nope"]) == 1
    assert "--baseline Nope: no such method" in capsys.readouterr().err
    assert R.main(["compare", "base2new", str(tmp_path / "nothing")]) == 1
    assert "no complete runs under" in capsys.readouterr().err


def test_fewshot_comparison_primary_is_the_largest_shot_count(tmp_path):
    for trainer, offset in (("CoOp", 0.0), ("LASP", 2.0)):
        for ds in ("dtd", "eurosat"):
            for k in (1, 16):
                for seed in (1, 2):
                    write_run(fs_dir(tmp_path, ds, k, seed, trainer, "c"), None,
                              record(50.0 + k + offset + seed, "all", seed, num_shots=k, trainer=trainer))
    (cmp,) = C.compare("fewshot", str(tmp_path), baseline="CoOp")
    assert [m.label for m in cmp.metrics] == ["1 shot", "16 shots"] and cmp.primary == "shots_16"
    rows = {r[0]: r[1:] for r in C.grid(cmp, C.TERMINAL)}
    assert rows["dtd"] == ["52.50 ± 0.50", "67.50 ± 0.50", "54.50 ± 0.50 *", "69.50 ± 0.50 *", "+2.00"]
    assert rows["Average"] == ["52.50", "67.50", "54.50 *", "69.50 *", "+2.00"]


def test_dg_comparison_targets_average_and_paper(tmp_path):
    targets = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    make_transfer_tree(tmp_path, "dg", targets, "MoCoOp", "m", base=70.0)
    make_transfer_tree(tmp_path, "dg", targets[:3], "CoOp", "c", base=60.0)
    (cmp,) = C.compare("dg", str(tmp_path), paper=R.load_paper())
    assert cmp.rows == ["imagenet"] + targets and cmp.row_label("imagenet") == "imagenet (source)"
    assert cmp.average_rows == targets[:3]  # the source is no target; imagenet_r: CoOp has none
    rows = {r[0]: r[1:] for r in C.grid(cmp, C.TERMINAL)}
    # target i: base - 10 (i + 1) + 2 seed over seeds 1, 2 -> base - 10 (i + 1) + 3
    assert rows["imagenetv2"] == ["53.00 ± 1.00", "64.20", "63.00 ± 1.00 *", "61.31"]
    assert rows["imagenet_r"][0] == "missing" and rows["imagenet_r"][2] == "33.00 ± 1.00"
    assert rows["Average (3/4)"][0] == "43.00" and rows["Average (3/4)"][2] == "53.00 *"
    assert rows["Average (3/4)"][3] == f"{(61.31 + 46.5 + 48.97) / 3:.2f}†"


def test_sweep_prints_the_comparison_when_several_methods_ran(tmp_path, capsys):
    b2n(tmp_path, "MoCoOp", "m", "eurosat", 88, 60, seeds=(1,))
    out = io.StringIO()
    assert not C.print_if_several("base2new", str(tmp_path / "base2new"), out, shots=[16], datasets=["eurosat"])
    b2n(tmp_path, "CoOp", "c", "eurosat", 85, 60, seeds=(1,))
    assert C.print_if_several("base2new", str(tmp_path / "base2new"), out, shots=[16], datasets=["eurosat"],
                              seeds=[1])
    text = out.getvalue()
    assert "side by side (python -m dasslite.results compare base2new" in text and "89.00 *" in text
    assert not C.print_if_several("base2new", str(tmp_path / "base2new"), io.StringIO(), shots=[4])  # none at 4
    silent = io.StringIO()
    assert not C.print_if_several("osr", str(tmp_path), silent) and silent.getvalue() == ""  # no adapter (yet)


def test_a_sweep_prints_the_comparison_once_a_second_method_has_runs(fake_repo, capsys):  # noqa: F811
    env = {**os.environ, "DATA": str(fake_repo.data)}
    env.pop("GPUS", None)
    argv = ["base2new", "--repo-root", str(fake_repo.repo), "--output", str(fake_repo.out), "--dataset", "eurosat",
            "--seeds", "1"]
    assert S.main(argv + ["--trainer", "CoOp"], environ=env) == 0
    assert "side by side" not in capsys.readouterr().out  # one method so far
    assert S.main(argv + ["--trainer", "ZeroshotCLIP"], environ=env) == 0
    out = capsys.readouterr().out
    assert f"Methods under {fake_repo.out / 'base2new'}, side by side" in out
    # the fake train.py gives every trainer Base 81 / New 61 on seed 1: a tie, both marked
    assert out.count("81.00 *") == 2 and "Recipes: CoOp: vit_b16_ctxv1; ZeroshotCLIP: vit_b16" in out
