#!/usr/bin/env python3
"""Lethe against PyTorch, side by side: runs each benchmark of `lethe bench` and its
counterpart in bench/reference.py alternately (round after round, so both see the same
machine), and prints one Markdown table of the median times and their ratio.

    python bench/ratios.py --lethe target/release/lethe [--device cpu|gpu] [--threads 2]
        [--rounds 2] [--vit-b32 DIR] [--only encode,train,step] [--pictures N]
        [--step-model DIR] [--json-out FILE]

--vit-b32 DIR is an open_clip ViT-B/32 folder (made with `reference.py --make-vit-b32 DIR`
when missing). --pictures N gives the Lip and GA steps N forget pictures instead of the paper
recipe's 64 (each step checks its stop rule on all of them; CLIPErase's step uses its own
recipe's captioned pairs), and --step-model DIR another checkpoint for the unlearning steps
(e.g. assets/demo/shapes-vit), for slow machines. The ratio is PyTorch's time over Lethe's:
above 1, Lethe is faster. Lethe runs
with RAYON_NUM_THREADS and PyTorch with torch.set_num_threads set to --threads on the CPU.
Standard library only; the reference needs torch and open_clip (tests/fixtures/requirements.txt).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_json(cmd, env=None):
    """Runs cmd and returns the last JSON object it printed on stdout."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"{' '.join(map(str, cmd))} printed no JSON:\n{done.stdout[-2000:]}")
    return json.loads(lines[-1])


def cases(args, vit_b32):
    """(model, what, lethe command, reference command builder, how to read a time)."""
    dev = ["--device", args.device]
    torch_dev = ["--device", "cuda" if args.device == "gpu" else "cpu"]
    ref = [sys.executable, str(HERE / "reference.py"), "--threads", str(args.threads)] + torch_dev
    lethe = [args.lethe, "bench"]
    per_batch = lambda key, batch: lambda r: batch / r[key]
    step_time = lambda r: r["seconds_per_step"]
    out = []
    if "encode" in args.only:
        batch = 8
        common = ["--model", str(vit_b32), "--batch", str(batch)]
        for what, key in [(f"encode images (s/batch of {batch})", "images_per_s"),
                          (f"encode texts (s/batch of {batch})", "texts_per_s"),
                          (f"encode 77-token texts (s/batch of {batch})", "full_texts_per_s")]:
            out.append(("ViT-B/32", what, lethe + ["encode", "--json"] + common + dev,
                        lambda _l: ref + common + ["--iters", "10"], per_batch(key, batch),
                        per_batch(key, batch)))
    if "train" in args.only:
        for arch, folder in [("vit", "shapes-vit"), ("rn", "shapes-rn")]:
            for stage in ["attributes", "lit", "joint"]:
                model = ROOT / "assets" / "demo" / folder
                out.append((f"demo {arch}", f"train {stage}",
                            lethe + ["train", "--arch", arch, "--stage", stage, "--iters", "5",
                                     "--json"] + dev,
                            lambda l, s=stage, m=model: ref + [
                                "--train-step", s, "--model", str(m), "--batch", str(l["batch"]),
                                "--iters", "5"],
                            step_time, step_time))
    if "step" in args.only:
        recipe = ROOT / "recipes" / "forget-red-vit-paper.toml"
        if args.pictures:
            text = recipe.read_text() + f"\n[method.synthetic]\ncount = {args.pictures}\n"
            recipe = Path(tempfile.mkdtemp()) / "step.toml"
            recipe.write_text(text)
        step_model = Path(args.step_model) if args.step_model else vit_b32
        label = step_model.name if args.step_model else "ViT-B/32"
        # CLIPErase learns from captioned pictures, which the paper recipe does not name.
        pairs = ROOT / "recipes" / "forget-orange-fruit-vit-cliperase.toml"
        for method, batch, scenario in [("lip", 1, recipe), ("ga", 8, recipe),
                                        ("cliperase", 16, pairs)]:
            out.append((label, f"{method} step (batch {batch})",
                        lethe + ["step", "--recipe", str(scenario),
                                 "--model", str(step_model), "--method", method, "--batch",
                                 str(batch), "--iters", "3", "--json"] + dev,
                        lambda l, m=method: ref + [
                            "--unlearn-step", m, "--model", str(step_model), "--batch",
                            str(l["batch"]), "--classes", str(l["classes"]), "--templates",
                            str(l["templates"]), "--forget-images", str(l["forget_images"]),
                            "--iters", "3", "--warmup", "2"],
                        step_time, step_time))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lethe", required=True, help="the lethe binary (a release build)")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--vit-b32", default=str(Path.home() / ".cache" / "lethe-bench" / "vit-b32"))
    ap.add_argument("--only", default="encode,train,step")
    ap.add_argument("--step-model", help="checkpoint folder of the unlearning steps (default: ViT-B/32)")
    ap.add_argument("--pictures", type=int, help="forget pictures of the unlearning steps")
    ap.add_argument("--json-out", help="also write every measurement here, one JSON per line")
    args = ap.parse_args()
    args.only = set(args.only.split(","))
    vit_b32 = Path(args.vit_b32)
    if not (vit_b32 / "open_clip_model.safetensors").is_file():
        run_json([sys.executable, str(HERE / "reference.py"), "--make-vit-b32", str(vit_b32)])
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    rows = []
    log = open(args.json_out, "w") if args.json_out else None
    table = cases(args, vit_b32)
    times = {i: ([], []) for i in range(len(table))}
    for round_ in range(args.rounds):
        for i, (model, what, lethe_cmd, ref_cmd, lethe_time, ref_time) in enumerate(table):
            l = run_json(lethe_cmd, env)
            r = run_json(ref_cmd(l))
            times[i][0].append(lethe_time(l))
            times[i][1].append(ref_time(r))
            print(f"round {round_ + 1}: {model} {what}: lethe {lethe_time(l):.4f} s, "
                  f"pytorch {ref_time(r):.4f} s", file=sys.stderr)
            if log:
                log.write(json.dumps({"model": model, "what": what, "round": round_ + 1,
                                      "lethe": l, "pytorch": r}) + "\n")
                log.flush()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {args.device}, {args.threads} threads"
    print(f"| model | step | Lethe s | PyTorch s | Lethe ÷ PyTorch (speed) | machine |")
    print("|---|---|---|---|---|---|")
    for i, (model, what, *_rest) in enumerate(table):
        lt, rt = statistics.median(times[i][0]), statistics.median(times[i][1])
        print(f"| {model} | {what} | {lt:.4f} | {rt:.4f} | {rt / lt:.2f}× | {machine} |")


if __name__ == "__main__":
    main()
