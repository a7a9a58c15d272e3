"""How long the HTML report takes on a large experiment, and how heavy the page is.

Targets: issue 3, 1,000 trials x 50 evaluations x 3 metrics in <= 10 s, and no plot with
50,000 SVG nodes; issue 14, 10,000 trials x 100 evaluations (3 M measurements) in <= 5 s and a
page of <= 5 MB (the "any trial" picker's curves past the best 200 trials are in shard files
beside the page, counted apart). The store is filled directly (no training), then ``tunebook
report``'s code path runs: load from SQLite, analysis and checks, HTML. With Chromium present,
the page is also opened headless to time the drawing and count SVG nodes per plot.
``--keep DIR`` fills the store once in DIR and reuses it on later runs.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

from tunebook.execution.runner import materialize
from tunebook.experiment import Experiment
from tunebook.report import write_report
from tunebook.store.sql import Store

CHROMIUM = Path("/usr/bin/chromium")


def fill(root: Path, trials: int, evals: int) -> Store:
    """An experiment of 2 studies x trials/2 with 3 metrics per evaluation."""
    exp = Experiment.from_dict({
        "name": "big", "goal": "report speed",
        "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": "val_loss"}, "max_train_steps": evals * 100,
        "eval_every": 100, "search": {"trials": trials // 2, "seed": 0},
        "scientific": {"arm": ["a", "b"]},
        "nuisance": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1, "scale": "log"},
                     "x": {"type": "float", "low": -1, "high": 1},
                     "act": {"type": "categorical", "values": ["relu", "gelu", "tanh"]}}})
    store = Store.at_root(root)
    studies, rows = materialize(exp)
    store.register(exp.name, exp.identity(), exp.to_dict(), studies, rows)
    rng = random.Random(0)
    exp_id = store.require_experiment("big").id
    trials = store.trials(exp_id)
    # Measurements through the bulk path, 100 trials per transaction (bench_ingest.py).
    for lo in range(0, len(trials), 100):
        batch: dict[int, list[tuple[int, str, float]]] = {}
        for t in trials[lo:lo + 100]:
            claimed = store.claim(exp_id, "bench")
            assert claimed is not None
            floor = 0.1 + abs(math.log10(t.params["learning_rate"]) + 2) / 5
            points = batch[claimed.id] = []
            for e in range(1, evals + 1):
                step = e * 100
                points += [(step, "train_loss", floor * 0.8 + 2 / e + rng.gauss(0, 0.01)),
                           (step, "val_loss", floor + 2 / e + rng.gauss(0, 0.02)),
                           (step, "grad_norm", abs(rng.gauss(1, 0.3)))]
        store.add_measurements_many(batch)
        for n, (tid, points) in enumerate(batch.items(), start=lo):
            status = "infeasible" if n % 17 == 0 else "completed"
            vals = [v for s, m, v in points if m == "val_loss"]
            best = min(range(len(vals)), key=vals.__getitem__)
            store.finish(tid, "bench", status, best_step=(best + 1) * 100,
                         best_value=vals[best], final_step=evals * 100, final_value=vals[-1])
    return store


def render(path: Path) -> tuple[float, int, int]:
    """Seconds to draw every plot in Chromium, the largest SVG (nodes), and all SVG nodes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('[data-plot]:not([data-rendered])')"
                               ".length === 0", timeout=120_000)
        seconds = time.perf_counter() - t0
        sizes = page.eval_on_selector_all(
            "svg", "els => els.map(e => e.getElementsByTagName('*').length)")
        browser.close()
    return seconds, max(sizes), sum(sizes)


def main() -> None:
    """Fill a store, time the report, print the result against the target."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--evals", type=int, default=50)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="fill the store in DIR and keep it; a later run with the same "
                             "DIR, --trials and --evals reuses it instead of filling again")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) if args.keep is None else args.keep / f"{args.trials}x{args.evals}"
        t0 = time.perf_counter()
        if (root / "filled").exists():
            store, fill_s = Store.at_root(root), None
        else:
            root.mkdir(parents=True, exist_ok=True)
            store = fill(root, args.trials, args.evals)
            fill_s = time.perf_counter() - t0
            (root / "filled").write_text("ok\n", encoding="utf-8")
        t0, c0 = time.perf_counter(), time.process_time()
        path, report = write_report(store, "big", root / "big.html")
        report_s, report_cpu = time.perf_counter() - t0, time.process_time() - c0
        size_mb = path.stat().st_size / 1e6
        folder = path.with_name(path.stem + ".files")
        shard_files = list(folder.glob("curves-*.js")) if folder.is_dir() else []
        shards_mb = sum(f.stat().st_size for f in shard_files) / 1e6
        target_s, target_mb = (5, 5) if args.trials * args.evals > 50_000 else (10, None)
        print(f"store filled: {args.trials} trials x {args.evals} evaluations x 3 metrics "
              f"({args.trials * args.evals * 3:,} measurements) "
              + ("reused" if fill_s is None else f"in {fill_s:.1f}s"))
        page_target = "" if target_mb is None else (
            f" (target <= {target_mb} MB: {'met' if size_mb <= target_mb else 'MISSED'})")
        # CPU time too: on a shared machine the wall clock counts the other processes' turns.
        print(f"report: {report_s:.2f}s, {report_cpu:.2f}s CPU (target <= {target_s} s: "
              f"{'met' if report_s <= target_s else 'MISSED'}), page {size_mb:.1f} MB"
              f"{page_target}, {len(shard_files)} curve shards {shards_mb:.1f} MB, "
              f"{len(report.findings)} findings")
        if CHROMIUM.exists():
            seconds, largest, total = render(path)
            print(f"chromium: all plots drawn in {seconds:.2f}s; largest plot {largest:,} SVG "
                  f"nodes (target < 50,000: {'met' if largest < 50_000 else 'MISSED'}), "
                  f"{total:,} in all")


if __name__ == "__main__":
    main()
