"""Evaluation outputs: recovery ratios, ``results.json``, ``results.csv`` and ``report.md``.

Recovery of a metric M for a derainer under a rain condition::

    recovery = (M_derained − M_rainy) / (M_clean − M_rainy)

with ``M_rainy`` the identity derainer under that condition and ``M_clean`` the identity on the
clean images (the reference row): 1 = the rain's whole cost won back, 0 = nothing, < 0 = worse
than not deraining. It is ``None`` where it is undefined (clean = rainy, e.g. the clean condition,
or a metric missing). PSNR has no recovery: the reference's PSNR is infinite.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..imageio import write_bytes_atomic

RECOVERY_METRICS = ("map50_95", "map50", "miou", "ssim_y")
RESULTS_FORMAT = "taskderain.eval/1"
STAGE_NAMES = ("rain", "derain", "detect", "segment", "metrics")


def _number(value: Any) -> Optional[float]:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def recovery(derained: Any, rainy: Any, clean: Any, eps: float = 1e-12) -> Optional[float]:
    """``(derained − rainy) / (clean − rainy)``; None when a value is missing/NaN or clean ≈ rainy."""
    d, r, c = _number(derained), _number(rainy), _number(clean)
    if d is None or r is None or c is None or abs(c - r) <= eps:
        return None
    return (d - r) / (c - r)


def add_recovery(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Set ``record["recovery"] = {metric: ratio or None}`` on every record (in place; returned)."""
    reference = next((r for r in records if r.get("reference")), None)
    rainy = {r["condition"]: r for r in records if r["derainer_spec"]["name"] == "identity"
             and r["derainer_spec"]["weights"] is None}
    for record in records:
        base = rainy.get(record["condition"])
        out = {}
        for metric in RECOVERY_METRICS:
            if metric not in record or reference is None or base is None:
                continue
            clean = 1.0 if metric == "ssim_y" else reference.get(metric)  # SSIM of clean vs clean is 1
            out[metric] = recovery(record.get(metric), base.get(metric), clean)
        record["recovery"] = out
    return records


def _jsonable(value: Any) -> Any:
    """NaN / inf → None, recursively, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_results_json(path: Any, meta: Dict[str, Any], records: Sequence[Dict[str, Any]]) -> None:
    """``{"format", "meta", "records": [...]}`` as strict JSON (NaN/inf written as null), atomically."""
    payload = {"format": RESULTS_FORMAT, "meta": meta, "records": list(records)}
    write_bytes_atomic(path, json.dumps(_jsonable(payload), indent=2, allow_nan=False).encode())


def csv_rows(records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One flat row per record: scores, recovery ratios, seconds per image per stage."""
    rows = []
    for r in records:
        row = {"condition": r["condition"], "intensity": r["intensity"], "derainer": r["derainer"],
               "n_images": r["n_images"]}
        for key in ("psnr_y", "ssim_y", "map50_95", "map50", "map75", "miou", "pixel_acc"):
            if key in r:
                row[key] = _number(r[key])
        for key, value in r.get("recovery", {}).items():
            row[f"recovery_{key}"] = value
        for stage, seconds in r["time_per_image_s"].items():
            row[f"s_per_image_{stage}"] = round(seconds, 6)
        rows.append(row)
    return rows


def write_results_csv(path: Any, records: Sequence[Dict[str, Any]]) -> None:
    rows = csv_rows(records)
    columns: List[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    write_bytes_atomic(path, buffer.getvalue().encode())


def _fmt(value: Any, digits: int = 3, scale: float = 1.0) -> str:
    v = _number(value)
    return "—" if v is None else f"{v * scale:.{digits}f}"


def results_table(records: Sequence[Dict[str, Any]]) -> str:
    """The main markdown table (mAP in %, recovery as a ratio)."""
    seg = any("miou" in r for r in records)
    det = any("map50_95" in r for r in records)
    head = ["condition", "intensity", "derainer", "PSNR-Y (dB)", "SSIM-Y"]
    head += ["mAP50-95 (%)", "mAP50 (%)"] if det else []
    head += ["mIoU (%)"] if seg else []
    head += [f"recovery {m}" for m in (("mAP50-95", "mAP50") if det else ()) + (("mIoU",) if seg else ())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        psnr = "∞ (reference)" if r.get("reference") else _fmt(r.get("psnr_y"), 2)
        cells = [r["condition"], f"{r['intensity']:.2f}", r["derainer"], psnr,
                 "1 (reference)" if r.get("reference") else _fmt(r.get("ssim_y"), 4)]
        if det:
            cells += [_fmt(r.get("map50_95"), 1, 100), _fmt(r.get("map50"), 1, 100)]
        if seg:
            cells += [_fmt(r.get("miou"), 1, 100)]
        rec = r.get("recovery", {})
        cells += [_fmt(rec.get(m), 2) for m in (("map50_95", "map50") if det else ()) + (("miou",) if seg else ())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_class_table(records: Sequence[Dict[str, Any]], key: str, gt_counts: Optional[Dict[str, int]] = None) -> str:
    """Classes as rows, one column per (condition, derainer): AP@[.5:.95] (or IoU) in %."""
    classes: List[str] = []
    for r in records:
        classes.extend(c for c in r.get(key, {}) if c not in classes)
    if not classes:
        return ""
    if gt_counts:
        classes.sort(key=lambda c: (-gt_counts.get(c, 0), c))
    head = ["class"] + (["GT"] if gt_counts else []) + [f"{r['condition']} / {r['derainer']}" for r in records]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in classes:
        cells = [c] + ([str(gt_counts.get(c, 0))] if gt_counts else [])
        cells += [_fmt(r.get(key, {}).get(c), 1, 100) for r in records]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def head_table(records: Sequence[Dict[str, Any]], heads: Dict[str, Any]) -> str:
    """mAP50-95 / mIoU (%) of every head per (condition, derainer); empty with one head per task."""
    tasks = [h["task"] for h in heads.values()]
    if len(tasks) == len(set(tasks)):
        return ""
    names = list(heads)
    key = {"detection": "map50_95", "segmentation": "miou"}
    lines = ["| condition | derainer | " + " | ".join(f"{n} ({key[heads[n]['task']]})" for n in names) + " |",
             "|" + "---|" * (len(names) + 2)]
    for r in records:
        cells = []
        for n in names:
            value = (r.get("heads") or {}).get(n, {}).get(key[heads[n]["task"]])
            cells.append("—" if value is None else f"{100 * value:.1f}")
        lines.append(f"| {r['condition']} | {r['derainer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing_table(records: Sequence[Dict[str, Any]]) -> str:
    """Seconds per image per stage (as computed; cached results keep their original time)."""
    head = ["condition", "derainer"] + [f"{s} (s/img)" for s in STAGE_NAMES] + ["computed in this run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        per = r["time_per_image_s"]
        done = ", ".join(f"{k} {v}" for k, v in r.get("computed", {}).items() if v) or "nothing (all cached)"
        lines.append("| " + " | ".join([r["condition"], r["derainer"]] + [f"{per.get(s, 0.0):.3f}" for s in STAGE_NAMES]
                                       + [done]) + " |")
    return "\n".join(lines)


def render_report(meta: Dict[str, Any], records: Sequence[Dict[str, Any]], figures: Dict[str, str]) -> str:
    """The whole ``report.md``: setup, protocol, results, per-class tables, timing, figures."""
    d, s = meta["data"], meta["settings"]
    lines = ["# Evaluation report", "",
             "How much does rain cost the downstream tasks, and how much does each derainer win back?", "",
             "## Setup", "",
             f"- Data: `{d['source']}` [{d['split']}], {d['n_images']} images ({d['background_images']} without objects)"
             + (f", masks from `{d['masks']}` ({d['images_with_masks']} images with a mask)" if d.get("masks") else ""),
             f"- Detector: {meta.get('detector') or 'none'}",
             f"- Segmenter: {meta.get('segmenter') or 'none'}",
             *(["- Heads: " + "; ".join(f"`{n}` ({h['task']}): {h['description']}" for n, h in meta["heads"].items())]
               if len(meta.get("heads") or {}) > 1 else []),
             "- Derainers: " + "; ".join(
                 f"`{x['label']}`" + (f" = {x['name']} with `{x['weights']}` (sha256 {x['weights_sha256'][:12]})"
                                      if x["weights"] else (" (random weights: meaningless)" if x["random_weights"]
                                                            else "")) for x in meta["derainers"]),
             "- Rain conditions: " + ", ".join(f"{c['name']} ({c['intensity']:.2f})" for c in meta["conditions"])
             + f"; rain seed {s['seed']}", "",
             "## Protocol", ""]
    lines += [f"- {p}" for p in meta["protocol"]]
    lines += ["", "## Results", "", results_table(records), ""]
    extra = head_table(records, meta.get("heads") or {})
    if extra:
        lines += ["## Every head", "", "The results table shows the first head of each task; all of them here:", "",
                  extra, ""]
    ap = per_class_table(records, "per_class_ap", meta.get("gt_per_class"))
    if ap:
        lines += ["## Per-class AP@[.5:.95] (%)", "", ap, ""]
    iou = per_class_table(records, "per_class_iou")
    if iou:
        lines += ["## Per-class IoU (%)", "", iou, ""]
    lines += ["## Wall time per stage", "", timing_table(records), "",
              f"Total wall time of this run: {meta['wall_time_s']:.1f} s on {meta['device']}.", ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{title}]({name})" for title, name in figures.items()] + [""]
    return "\n".join(lines)
