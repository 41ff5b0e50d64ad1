"""``rlreg analyze-diagnostics``: the user's ``analyze_diagnostics.py`` (seed 003) — α methods side by
side from the generate stage's ``generated.diagnostics.jsonl`` files.

Per source (a file, or a run: a generate stage run, its parent, or a spec name): α distribution
(token-level when the file has per-token arrays, else per-sample means), ESS_θ/ESS_t, KL(q‖π_θ),
KL(q‖π_t), the fraction of tokens with α outside [0.2, 0.8] (the seed's advice; a warning when any),
a per-sample table joined on ``sample_idx`` and one figure with four panels.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from registry.errors import InputDataError, RlregError, UsageError
from registry.jsonl import iter_jsonl

DIAG_ARTIFACT = "generate/generated.diagnostics.jsonl"
ALPHA_RANGE = (0.2, 0.8)
METRICS = ("alpha", "ess_ratio", "kl_theta", "kl_t")


@dataclass
class DiagSource:
    label: str
    rows: list[dict]
    origin: str
    run_id: str | None = None

    def values(self, name: str) -> list[float]:
        """Per-token values when the rows carry them, else the per-sample means."""
        tokens = [v for r in self.rows for v in (r.get("tokens") or {}).get(name, [])]
        vals = tokens or [r.get(f"{name}_mean") for r in self.rows]
        return [float(v) for v in vals if v is not None and math.isfinite(float(v))]

    @property
    def token_level(self) -> bool:
        return any(r.get("tokens") for r in self.rows)


def load_diagnostics_file(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: diagnostics file not found (the generate stage's generated.diagnostics.jsonl)")
    rows = []
    for line_no, row in iter_jsonl(path.read_text(encoding="utf-8"), str(path)):
        if not isinstance(row, dict) or "sample_idx" not in row or "alpha_mean" not in row:
            raise InputDataError(f"{path}: line {line_no}: needs `sample_idx` and `alpha_mean` (a generate "
                                 "stage diagnostics line)")
        rows.append(row)
    if not rows:
        raise InputDataError(f"{path}: no diagnostics lines")
    return rows


def load_run(ref: str, tracking_uri: str | None = None) -> DiagSource:
    """A generate stage run, a parent run with a generate child, or a spec name (latest parent)."""
    from analysis import runs as R

    client = R.get_client(tracking_uri)
    record = R.get_run(client, ref) if R.RUN_ID_RE.match(ref) else R.latest_parent(client, ref)
    if record.stage != "generate":
        kids = R.children(client, record)
        if "generate" not in kids:
            raise UsageError(f"run {record.run_id} ({ref}) has no generate stage (pick a spec whose pipeline "
                             "includes `generate`)")
        record = kids["generate"]
    data_id = R.data_run_id(record)
    with tempfile.TemporaryDirectory(prefix="rlreg-diag-") as tmp:
        try:
            local = R.download_artifact(client, data_id, DIAG_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise UsageError(f"run {data_id} has no {DIAG_ARTIFACT}") from None
        rows = load_diagnostics_file(local)
    method = record.params.get("generate.alpha_method") or client.get_run(data_id).data.params.get("generate.alpha_method")
    label = f"{record.spec or ref}" + (f" ({method})" if method else "")
    return DiagSource(label, rows, ref, run_id=record.run_id)


def summarize(src: DiagSource) -> dict[str, Any]:
    """Distribution of α, log10 ESS ratio and both KLs (std: sample std over the values — tokens or
    samples — as a spread, not an interval), and the fraction of α outside [0.2, 0.8]."""
    import numpy as np
    from scipy import stats

    out: dict[str, Any] = {"label": src.label, "samples": len(src.rows), "token_level": src.token_level}
    for name in METRICS:
        vals = np.asarray(src.values(name))
        if name == "ess_ratio" and vals.size:
            vals = np.log10(np.maximum(vals, 1e-12))
            name = "log10_ess_ratio"
        if not vals.size:
            continue
        q = stats.mstats.mquantiles(vals, [0.05, 0.5, 0.95], alphap=1, betap=1)  # numpy's default (type 7)
        out[name] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
                     "min": float(vals.min()), "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2]),
                     "max": float(vals.max()), "n": int(vals.size)}
    alphas = src.values("alpha")
    low, high = ALPHA_RANGE
    out["alpha_outside_range_fraction"] = (sum(1 for a in alphas if a < low or a > high) / len(alphas)) if alphas else None
    return out


def sample_table(sources: list[DiagSource]) -> list[dict[str, Any]]:
    """One row per sample_idx, columns ``<label>/<metric>_mean`` (joined on sample_idx)."""
    table: dict[int, dict[str, Any]] = {}
    for src in sources:
        for r in src.rows:
            row = table.setdefault(int(r["sample_idx"]), {"sample_idx": int(r["sample_idx"])})
            row[f"{src.label}/num_tokens"] = r.get("num_tokens")
            for name in METRICS:
                row[f"{src.label}/{name}_mean"] = r.get(f"{name}_mean")
    return [table[k] for k in sorted(table)]


def figure(sources: list[DiagSource]) -> Any:
    from matplotlib.figure import Figure

    from analysis.plots import COLORS

    fig = Figure(figsize=(16, 3.6))
    axes = fig.subplots(1, 4)
    titles = {"alpha": "α (weight on π_t)", "ess_ratio": "log10 ESS_θ/ESS_t", "kl_theta": "KL(q‖π_θ)",
              "kl_t": "KL(q‖π_t)"}
    for ax, name in zip(axes, METRICS):
        for i, src in enumerate(sources):
            vals = src.values(name)
            if name == "ess_ratio":
                vals = [math.log10(max(v, 1e-12)) for v in vals]
            if vals:
                ax.hist(vals, bins=40, alpha=0.5, color=COLORS[i % len(COLORS)], label=src.label, density=True)
        if name == "alpha":
            for edge in ALPHA_RANGE:
                ax.axvline(edge, color="gray", ls="--", lw=1)
        ax.set_title(titles[name], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.12, top=0.88, wspace=0.25)
    return fig


@click.command("analyze-diagnostics")
@click.argument("sources", nargs=-1, required=True)
@click.option("--labels", multiple=True, help="Labels in the order of SOURCES (comma-separated or repeated).")
@click.option("-o", "--output-dir", default="qstar_diagnostics", show_default=True, type=click.Path(file_okay=False),
              help="Writes summary.json, samples.csv and diagnostics.png here.")
@click.option("--log/--no-log", "log_metric", default=True, show_default=True,
              help="Log generate/alpha_outside_range_fraction onto each analysed run.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI).")
def analyze_diagnostics(sources, labels, output_dir, log_metric, as_json, tracking_uri):
    """Compare α methods: SOURCES are generate diagnostics files (.diagnostics.jsonl) or runs / spec names."""
    import csv

    try:
        loaded = [DiagSource(Path(s).parent.name or Path(s).stem, load_diagnostics_file(s), s)
                  if Path(s).suffix in (".jsonl", ".json") or Path(s).is_file() else load_run(s, tracking_uri)
                  for s in sources]
        names = [p.strip() for item in labels for p in item.split(",") if p.strip()]
        if names and len(names) != len(loaded):
            raise UsageError(f"--labels: {len(names)} labels for {len(loaded)} sources")
        for src, name in zip(loaded, names or [s.label for s in loaded]):
            src.label = name
        if len({s.label for s in loaded}) < len(loaded):
            for i, src in enumerate(loaded):
                src.label = f"{src.label} #{i + 1}"
        summary = [summarize(s) for s in loaded]
    except RlregError as exc:
        raise click.ClickException(exc.message) from None
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    rows = sample_table(loaded)
    with (out / "samples.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    figure(loaded).savefig(out / "diagnostics.png")
    for src, s in zip(loaded, summary):
        frac = s["alpha_outside_range_fraction"]
        if frac:
            click.echo(f"warning: {src.label}: {frac:.1%} of α values outside [{ALPHA_RANGE[0]}, {ALPHA_RANGE[1]}] "
                       "(one model dominates q* there)", err=True)
        if log_metric and src.run_id and frac is not None:
            from analysis.runs import get_client

            get_client(tracking_uri).log_metric(src.run_id, "generate/alpha_outside_range_fraction", frac)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(_table(summary))
    click.echo(f"wrote {out / 'summary.json'}, {out / 'samples.csv'} ({len(rows)} samples), {out / 'diagnostics.png'}")


def _table(summary: list[dict]) -> str:
    head = "| source | samples | α mean ± std | α p05–p95 | α outside [0.2, 0.8] | log10 ESS ratio | KL(q‖π_θ) | KL(q‖π_t) |"
    lines = [head, "|" + "---|" * 8]
    for s in summary:
        a, e, kt, kq = (s.get(k, {}) for k in ("alpha", "log10_ess_ratio", "kl_theta", "kl_t"))
        frac = s["alpha_outside_range_fraction"]
        lines.append(f"| {s['label']} | {s['samples']} | {a.get('mean', math.nan):.3f} ± {a.get('std', math.nan):.3f} "
                     f"| {a.get('p05', math.nan):.3f}–{a.get('p95', math.nan):.3f} | "
                     f"{'n/a' if frac is None else f'{frac:.1%}'} | {e.get('mean', math.nan):+.3f} | "
                     f"{kt.get('mean', math.nan):.4g} | {kq.get('mean', math.nan):.4g} |")
    return "\n".join(lines)
