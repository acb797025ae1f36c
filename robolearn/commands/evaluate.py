"""``robolearn eval RUN --episodes N --seed S --json OUT [--video DIR] [--workers W] [--ray auto|ADDRESS] [--perception marker]``."""
from __future__ import annotations

HELP = "roll a trained policy out closed-loop; writes metrics JSON and a PNG of the rollouts"


def add_arguments(p) -> None:
    p.add_argument("run", help="run folder or checkpoint folder")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", default=None, help="metrics JSON to write (PNG of rollouts beside it)")
    p.add_argument("--video", dest="video_dir", default=None, help="write one mp4 per episode into this folder")
    p.add_argument("--video-episodes", type=int, default=None, help="videos only for the first K episodes")
    p.add_argument("--workers", type=int, default=1, help="episodes run in this many worker processes")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run the episodes on a Ray cluster: auto (RAY_ADDRESS or a head started here, else a local "
                        "instance) or the head's address; --workers actors there; needs the distributed extra")
    p.add_argument("--horizon", type=int, default=None, help="override the task's episode horizon")
    p.add_argument("--perception", default=None, choices=["marker", "ground_truth"],
                   help="estimate the policy's 'object' from the task's 640x480 perception camera instead of the "
                        "simulator's state (marker: cv2.aruco on the rendered cube); errors go into the JSON")
    p.add_argument("--perception-hold-s", type=float, default=0.5,
                   help="with --perception: seconds a lost marker's last estimate is held before the arm holds "
                        "and the episode fails")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from pathlib import Path

    from robolearn.evaluate import evaluate_run

    json_out = args.json_out or str(Path(args.run) / "eval.json")
    s = evaluate_run(args.run, episodes=args.episodes, seed=args.seed, workers=args.workers, video_dir=args.video_dir,
                     horizon=args.horizon, video_episodes=args.video_episodes, progress=not args.quiet, json_out=json_out,
                     perception=args.perception, perception_hold_s=args.perception_hold_s, ray=args.ray)
    ok = s["successful_mean_length"]
    print(f"{s['algo']} on {s['task']}: success {s['success_rate']:.1%} over {s['episodes']} episodes, "
          f"mean length {s['mean_length']:.1f}" + (f" (successful {ok:.1f})" if ok else "")
          + f", {s['episodes_per_s']:.2f} episodes/s; wrote {json_out}" + (f" and {s['plot']}" if "plot" in s else ""))
    if "perception" in s:
        p = s["perception"]
        print(f"perception ({p['estimator']}): position error median {p['pos_err_mm_median']} mm, rotation "
              f"{p['rot_err_deg_median']} deg, {p['lost_frames']} of {p['frames']} frames without an estimate, "
              f"{p['lost_episodes']} episodes failed for a lost object")
    return 0
