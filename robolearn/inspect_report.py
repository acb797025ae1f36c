"""What is in a demo folder, and how messy is it?

IRIS exists for suboptimal, multimodal demonstrations, so besides counts and ranges this
report looks for the signs of both before anyone trains on the data:

* suboptimality: spread of episode lengths (coefficient of variation), end-effector path
  length against the straight line from start to end and against the shortest path in the
  folder, and the share of steps spent standing still;
* multimodality: clusters of approach directions (k-means on the unit displacement over the
  first N steps; the cluster count is chosen by silhouette score, and one cluster is
  reported unless the split is clear).

``summarize`` returns plain numbers (also written as JSON); ``write_report`` adds a
markdown report and PNGs of trajectories and action histograms, and for every image key
(recorded camera) a contact sheet: a grid of frames, one row per episode (spread over the
folder), one column per moment (spread from the first to the last frame), at the recorded
pixels. Frames are read by random access (only the chunks that hold them are decoded), and
the statistics read only the low-dimensional keys, so a folder of long camera recordings is
inspected without decoding it whole.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data.format import DemoFormatError, DemoReader, Episode

POS_KEYS = ("robot0_eef_pos", "pos")


@dataclass
class InspectConfig:
    pos_key: str | None = None  # default: robot0_eef_pos, else pos
    approach_steps: int = 10  # displacement over the first N steps gives the approach direction
    max_clusters: int = 4
    min_silhouette: float = 0.5  # below this, report a single cluster
    still_speed: float = 1e-3  # per-step displacement under this counts as standing still
    seed: int = 0
    sheet_episodes: int = 6  # contact sheets: rows (episodes spread over the folder)
    sheet_frames: int = 8  # contact sheets: columns (frames spread over each episode)


@dataclass
class Summary:
    folder: str
    task: str
    control_hz: float
    episodes: int
    success_rate: float
    length_min: int
    length_median: float
    length_max: int
    length_mean: float
    length_cv: float
    action_min: list[float]
    action_max: list[float]
    action_mean: list[float]
    action_std: list[float]
    obs_ranges: dict[str, dict[str, list[float]]]
    pos_key: str | None = None
    path_length_median: float | None = None
    path_over_straight_median: float | None = None
    path_over_straight_max: float | None = None
    path_over_shortest_median: float | None = None
    still_fraction: float | None = None
    approach_clusters: int | None = None
    approach_cluster_sizes: list[int] = field(default_factory=list)
    approach_cluster_directions: list[list[float]] = field(default_factory=list)
    approach_silhouette: float | None = None
    #: Unsuccessful episodes per ``extra/failure_mode`` recorded by the operator ("unplanned" when
    #: it meant to succeed); empty when the folder records no failure modes.
    failure_modes: dict[str, int] = field(default_factory=dict)
    per_episode: list[dict[str, Any]] = field(default_factory=list)
    #: Image keys (recorded cameras) and their per-step shape [H, W, C].
    image_keys: dict[str, list[int]] = field(default_factory=dict)
    #: Image key -> contact-sheet PNG (file name in the report folder), written by ``write_report``.
    contact_sheets: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- clustering


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """k-means with k-means++ seeding; returns (labels, centres)."""
    n = x.shape[0]
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(x[rng.choice(n, p=p)])
    c = np.array(centres, dtype=np.float64)
    labels = np.zeros(n, int)
    for _ in range(iters):
        new = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                c[j] = x[labels == j].mean(0)
    return labels, c


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (1 = tight, well-separated clusters; ~0 = no structure)."""
    ks = np.unique(labels)
    if len(ks) < 2:
        return 0.0
    d = np.sqrt(((x[:, None, :] - x[None]) ** 2).sum(-1))
    s = np.zeros(len(x))
    for i in range(len(x)):
        own = labels == labels[i]
        if own.sum() <= 1:
            continue
        a = d[i, own].sum() / (own.sum() - 1)
        b = min(d[i, labels == k].mean() for k in ks if k != labels[i])
        s[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(s.mean())


def cluster_directions(dirs: np.ndarray, cfg: InspectConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Pick the cluster count by silhouette; one cluster unless some k >= 2 clears ``min_silhouette``."""
    rng = np.random.default_rng(cfg.seed)
    best = (np.zeros(len(dirs), int), dirs.mean(0, keepdims=True), 0.0)
    for k in range(2, min(cfg.max_clusters, len(dirs) - 1) + 1):
        labels, c = kmeans(dirs, k, rng)
        if len(np.unique(labels)) < k:
            continue
        s = silhouette(dirs, labels)
        if s >= cfg.min_silhouette and s > best[2]:
            best = (labels, c, s)
    return best


# ----------------------------------------------------------------------------- summary


def _pos_key(reader: DemoReader, cfg: InspectConfig) -> str | None:
    if cfg.pos_key:
        if cfg.pos_key not in reader.meta.obs_spec:
            raise DemoFormatError(reader.folder / "meta.json", "obs_spec", f"has no key {cfg.pos_key!r} (--pos-key); keys: {sorted(reader.meta.obs_spec)}")
        if reader.meta.obs_spec[cfg.pos_key].is_image:
            raise DemoFormatError(reader.folder / "meta.json", f"obs_spec.{cfg.pos_key}", "is an image key, not a position (--pos-key)")
        return cfg.pos_key
    return next((k for k in POS_KEYS if k in reader.meta.obs_spec), None)


def image_keys(reader: DemoReader) -> list[str]:
    return [k for k, spec in reader.meta.obs_spec.items() if spec.is_image]


def summarize(folder: str | os.PathLike, cfg: InspectConfig | None = None, progress: bool = True) -> tuple[Summary, list[Episode]]:
    from tqdm import tqdm

    cfg = cfg or InspectConfig()
    reader = DemoReader(folder)
    images = image_keys(reader)
    low_dim = [k for k in reader.meta.obs_spec if k not in images]
    eps = [reader.load(i, low_dim) for i in tqdm(reader.indices, desc="read", disable=not progress, unit="ep")]
    lengths = np.array([e.length for e in eps])
    acts = np.concatenate([e.actions for e in eps])
    obs_ranges = {}
    for k in low_dim:
        allv = np.concatenate([e.obs[k].reshape(e.obs[k].shape[0], -1) for e in eps]).astype(np.float64)
        obs_ranges[k] = {"min": allv.min(0).round(6).tolist(), "max": allv.max(0).round(6).tolist()}
    s = Summary(
        folder=str(folder),
        task=reader.meta.task,
        control_hz=reader.meta.control_hz,
        episodes=len(eps),
        success_rate=float(np.mean([e.success for e in eps])),
        length_min=int(lengths.min()),
        length_median=float(np.median(lengths)),
        length_max=int(lengths.max()),
        length_mean=float(lengths.mean()),
        length_cv=float(lengths.std() / lengths.mean()),
        action_min=acts.min(0).tolist(),
        action_max=acts.max(0).tolist(),
        action_mean=acts.mean(0).tolist(),
        action_std=acts.std(0).tolist(),
        obs_ranges=obs_ranges,
        image_keys={k: list(reader.meta.obs_spec[k].shape) for k in images},
    )
    per = [{"index": i, "length": e.length, "success": e.success} for i, e in zip(reader.indices, eps)]
    s.failure_modes = failure_mode_counts(eps)
    key = _pos_key(reader, cfg)
    if key is not None:
        s.pos_key = key
        paths, straights, still, dirs, dir_idx = [], [], [], [], []
        for j, e in enumerate(eps):
            p = e.obs[key].reshape(e.obs[key].shape[0], -1).astype(np.float64)
            step = np.linalg.norm(np.diff(p, axis=0), axis=1)
            paths.append(step.sum())
            straights.append(np.linalg.norm(p[-1] - p[0]))
            still.append(step < cfg.still_speed)
            n = min(cfg.approach_steps, len(p) - 1)
            d = p[n] - p[0]
            if np.linalg.norm(d) > 1e-9:
                dirs.append(d / np.linalg.norm(d))
                dir_idx.append(j)
        paths, straights = np.array(paths), np.array(straights)
        ratio = paths / np.maximum(straights, 1e-9)
        ok = np.array([e.success for e in eps])
        shortest = paths[ok].min() if ok.any() else paths.min()
        s.path_length_median = float(np.median(paths))
        s.path_over_straight_median = float(np.median(ratio))
        s.path_over_straight_max = float(ratio.max())
        s.path_over_shortest_median = float(np.median(paths / max(shortest, 1e-9)))
        s.still_fraction = float(np.concatenate(still).mean())
        for j, row in enumerate(per):
            row.update(path_length=float(paths[j]), path_over_straight=float(ratio[j]))
        if len(dirs) >= 3:
            labels, centres, sil = cluster_directions(np.array(dirs), cfg)
            # label clusters largest first so reports are stable
            order = np.argsort([-np.sum(labels == c) for c in range(len(centres))], kind="stable")
            remap = {int(old): new for new, old in enumerate(order)}
            labels = np.array([remap[int(l)] for l in labels])
            centres = centres[order]
            s.approach_clusters = int(len(centres))
            s.approach_cluster_sizes = [int(np.sum(labels == c)) for c in range(len(centres))]
            s.approach_cluster_directions = [(c / max(np.linalg.norm(c), 1e-9)).round(3).tolist() for c in centres]
            s.approach_silhouette = float(sil)
            for j, l in zip(dir_idx, labels):
                per[j]["approach_cluster"] = int(l)
    s.per_episode = per
    return s, eps


def failure_mode_counts(eps: list[Episode]) -> dict[str, int]:
    """How the unsuccessful episodes failed, by the operator's ``extra/failure_mode``."""
    if not any("failure_mode" in e.extra for e in eps):
        return {}
    counts: dict[str, int] = {}
    for e in eps:
        if not e.success:
            mode = str(e.extra.get("failure_mode", "")) or "unplanned"
            counts[mode] = counts.get(mode, 0) + 1
    return dict(sorted(counts.items()))


# ----------------------------------------------------------------------------- report


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def markdown(s: Summary) -> str:
    lines = [
        f"# Demo folder report: `{s.folder}`",
        "",
        f"- task **{s.task}**, {s.control_hz:g} Hz, **{s.episodes}** episodes, success rate **{s.success_rate:.1%}**",
        f"- episode length min / median / max: {s.length_min} / {s.length_median:g} / {s.length_max} "
        f"(mean {s.length_mean:.1f}, coefficient of variation {s.length_cv:.2f})",
        f"- behaviour policy (the recorded operator): {round(s.success_rate * s.episodes)} of {s.episodes} episodes "
        f"succeeded ({s.success_rate:.1%})"
        + (", failures by mode: " + ", ".join(f"{k} {v}" for k, v in s.failure_modes.items()) if s.failure_modes else ""),
        "",
        "## Actions",
        "",
        "| dim | min | max | mean | std |",
        "|---|---|---|---|---|",
    ]
    for d in range(len(s.action_min)):
        lines.append(f"| {d} | {s.action_min[d]:.3f} | {s.action_max[d]:.3f} | {s.action_mean[d]:.3f} | {s.action_std[d]:.3f} |")
    lines += ["", "## Observation ranges", "", "| key | min | max |", "|---|---|---|"]
    for k, r in s.obs_ranges.items():
        lines.append(f"| {k} | {_fmt(r['min'])} | {_fmt(r['max'])} |")
    if s.image_keys:
        lines += ["", "## Cameras", "", "| image key | H x W x C | contact sheet |", "|---|---|---|"]
        for k, shape in s.image_keys.items():
            lines.append(f"| {k} | {' x '.join(str(d) for d in shape)} | {s.contact_sheets.get(k, 'with --out')} |")
    lines += ["", "## Signs of suboptimality and multimodality", ""]
    if s.pos_key is None:
        lines.append(f"No position key ({' / '.join(POS_KEYS)}) in this folder: path and approach analysis skipped (use --pos-key).")
    else:
        lines += [
            f"- position key `{s.pos_key}`; median path length {_fmt(s.path_length_median)}",
            f"- path / straight line (start to end): median {_fmt(s.path_over_straight_median)}, max {_fmt(s.path_over_straight_max)}",
            f"- path / shortest successful path in the folder: median {_fmt(s.path_over_shortest_median)}",
            f"- share of steps standing still: {_fmt(s.still_fraction)}",
            f"- length spread (CV) {s.length_cv:.2f}: " + ("wide; expect detours, pauses or retries" if s.length_cv > 0.25 else "narrow"),
        ]
        if s.approach_clusters is not None:
            lines.append(
                f"- approach directions: **{s.approach_clusters}** cluster(s), sizes {s.approach_cluster_sizes}, "
                f"unit directions {s.approach_cluster_directions}, silhouette {_fmt(s.approach_silhouette)}"
                + (" (multimodal)" if s.approach_clusters > 1 else "")
            )
    lines += ["", "![trajectories](trajectories.png)", "", "![actions](actions.png)", ""]
    return "\n".join(lines)


def plot(s: Summary, eps: list[Episode], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if s.pos_key is not None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
        cmap = plt.get_cmap("tab10")
        for e, row in zip(eps, s.per_episode):
            p = e.obs[s.pos_key].reshape(e.obs[s.pos_key].shape[0], -1)
            c = cmap(row.get("approach_cluster", 0) % 10)
            ls = "-" if e.success else ":"
            axes[0].plot(p[:, 0], p[:, 1], ls, color=c, lw=0.8, alpha=0.7)
            axes[0].plot(p[0, 0], p[0, 1], "o", color=c, ms=3)
            if p.shape[1] > 2:
                axes[1].plot(np.arange(len(p)), p[:, 2], ls, color=c, lw=0.8, alpha=0.7)
            else:
                axes[1].plot(np.arange(len(p)), np.linalg.norm(p - p[-1], axis=1), ls, color=c, lw=0.8, alpha=0.7)
        axes[0].set(xlabel=f"{s.pos_key}[0]", ylabel=f"{s.pos_key}[1]", title="paths (colour = approach cluster, dotted = failed)")
        axes[0].set_aspect("equal", adjustable="datalim")
        axes[1].set(xlabel="step", ylabel=f"{s.pos_key}[2]" if eps[0].obs[s.pos_key].shape[-1] > 2 else "distance to end", title="over time")
        fig.tight_layout()
        path = out / "trajectories.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    acts = np.concatenate([e.actions for e in eps])
    A = acts.shape[1]
    cols = min(A, 4)
    rows = (A + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    for d in range(rows * cols):
        ax = axes[d // cols][d % cols]
        if d < A:
            ax.hist(acts[:, d], bins=40, color="tab:blue")
            ax.set_title(f"action[{d}]", fontsize=9)
        else:
            ax.axis("off")
    fig.tight_layout()
    path = out / "actions.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def contact_sheet(reader: DemoReader, key: str, episodes: list[int], lengths: list[int], frames: int, gap: int = 2) -> np.ndarray:
    """Frames of image ``key``: a row per episode in ``episodes`` (of ``lengths`` steps), ``frames``
    columns from its first observation to its last, ``gap`` white pixels between tiles."""
    h, w, c = reader.meta.obs_spec[key].shape
    rows = len(episodes)
    sheet = np.full((rows * h + (rows - 1) * gap, frames * w + (frames - 1) * gap, 3), 255, np.uint8)
    for r, (index, length) in enumerate(zip(episodes, lengths)):
        steps = np.linspace(0, length, frames).round().astype(np.int64)
        tiles = reader.frames(index, key, steps)
        if c == 1:
            tiles = np.repeat(tiles, 3, axis=-1)
        for j, tile in enumerate(tiles):
            sheet[r * (h + gap):r * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile[..., :3]
    return sheet


def write_contact_sheets(folder: str | os.PathLike, out: Path, s: Summary, cfg: InspectConfig) -> dict[str, str]:
    """One PNG per image key, ``contact_<key>.png`` (written atomically); -> key -> file name."""
    from PIL import Image  # matplotlib's own dependency

    reader = DemoReader(folder)
    count = min(cfg.sheet_episodes, len(s.per_episode))
    picks = np.linspace(0, len(s.per_episode) - 1, count).round().astype(int)
    rows = [s.per_episode[int(p)] for p in dict.fromkeys(picks.tolist())]
    written = {}
    for key in s.image_keys:
        sheet = contact_sheet(reader, key, [r["index"] for r in rows], [r["length"] for r in rows], cfg.sheet_frames)
        name = f"contact_{key}.png"
        tmp = out / f".{name}.tmp.png"
        Image.fromarray(sheet).save(tmp, format="PNG")
        os.replace(tmp, out / name)
        written[key] = name
    return written


def write_report(folder: str | os.PathLike, out: str | os.PathLike, cfg: InspectConfig | None = None, progress: bool = True) -> Summary:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg or InspectConfig()
    s, eps = summarize(folder, cfg, progress=progress)
    plot(s, eps, out)
    s.contact_sheets = write_contact_sheets(folder, out, s, cfg)
    (out / "report.md").write_text(markdown(s))
    (out / "summary.json").write_text(json.dumps(asdict(s), indent=2) + "\n")
    return s
