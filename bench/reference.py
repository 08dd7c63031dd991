#!/usr/bin/env python3
"""PyTorch reference for `lethe bench encode --model DIR`.

    python bench/reference.py --model DIR [--batch 8] [--iters 20] [--warmup 5] [--threads N]
    python bench/reference.py --make-vit-b32 DIR      # random-init ViT-B/32 open_clip checkpoint
    python bench/reference.py --train-step STAGE --model DIR [--batch B] [--iters N]
    python bench/reference.py --unlearn-step lip|ga|cliperase --model DIR [--batch B] [--classes C]
        [--templates T] [--forget-images N] [--perturbations P]

--train-step times one step of a demo-training stage (the counterpart of `lethe bench train`)
on the open_clip architecture of DIR, freshly initialised: `attributes` (vision tower + four
linear heads on the L2-normalised embedding x sqrt(d), summed cross-entropy), `lit` (text
tower + logit scale, contrastive loss against fixed image embeddings) or `joint` (both towers,
contrastive). AdamW with CLIP's betas; batch-norm in training mode for `attributes` only.
Inputs are random tensors: rendering scenes is not timed here, while Lethe's figure includes it.
Prints {"stage", "batch", "seconds_per_step", ...}.

--unlearn-step times one step of an unlearning method (the counterpart of `lethe bench step`)
on DIR's weights, doing the work Lethe's step does: the class heads (C classes x T prompts
through the text tower, averaged per class), the method's loss on B forget images, backward
through every parameter, an AdamW update of every parameter (Lethe updates only the layers it
selects, which is less work), and the stop rule's check (zero-shot accuracy on N forget images,
without gradients). `lip`: each image with P Gaussian perturbations, loss
mean((|f(x) - f(x+e)| + |g(t) - f(x+e)|) / |e|); `ga`: minus the zero-shot cross-entropy;
`cliperase`: B forget and B retain image-caption pairs through both towers and the retain pairs
through a frozen copy of the model, loss 3 x mean forget similarity + the retain pairs'
contrastive loss + 3 x the KL divergences of both retrieval directions from the frozen
copy's, Adam (no weight decay); no per-step check (CLIPErase validates once an epoch, which
`lethe bench step`'s timed steps do not reach).

DIR is either a transformers CLIPModel folder (config.json + *.safetensors) or an
open_clip folder (open_clip_config.json + open_clip_model.safetensors); detected
automatically. The model is loaded in float32, eval mode. Images are random
[batch, 3, S, S] tensors (S from the config; preprocessing is NOT timed), texts are
"a photo of a {i}" tokenised with open_clip's SimpleTokenizer (context 77; padded
with 0 for open_clip, with 49407 for HF), and again as captions that fill the whole
context (LONG_CAPTION, cut at 77 tokens). Prints one JSON line:

    {"images_per_s": f, "texts_per_s": f, "full_texts_per_s": f, "batch": b, "threads": t, ...}

Requirements: tests/fixtures/requirements.txt.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

SOT, EOT = 49406, 49407


def detect_format(d: Path) -> str:
    if (d / "open_clip_config.json").is_file():
        return "open_clip"
    cfg = d / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("model_type") == "clip":
        return "hf"
    sys.exit(f"{d}: neither open_clip_config.json nor an HF CLIP config.json found")


def load_model(d: Path):
    fmt = detect_format(d)
    if fmt == "open_clip":
        import open_clip
        import safetensors.torch as st
        cfg = json.loads((d / "open_clip_config.json").read_text())["model_cfg"]
        model = open_clip.model.CLIP(**cfg)
        model.load_state_dict(st.load_file(str(d / "open_clip_model.safetensors")), strict=True)
        model = model.float().eval()
        size = cfg["vision_cfg"]["image_size"]
        ctx = cfg["text_cfg"].get("context_length", 77)
        encode_image = model.encode_image
        encode_text = model.encode_text
        pad = 0
    else:
        from transformers import CLIPModel
        model = CLIPModel.from_pretrained(str(d), dtype=torch.float32).eval()
        size = model.config.vision_config.image_size
        ctx = model.config.text_config.max_position_embeddings
        pad = EOT

        def encode_image(x):
            return model.visual_projection(model.vision_model(pixel_values=x).pooler_output)

        def encode_text(ids):
            return model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return fmt, model, size, ctx, pad, encode_image, encode_text


# A caption longer than any context, so that its tokens fill the text tower's whole input
# (`lethe bench encode` times the same one).
LONG_CAPTION = "a photo of a {} " + "very " * 80 + "big dog"


def tokenize(texts, ctx, pad):
    from open_clip.tokenizer import SimpleTokenizer
    ids = SimpleTokenizer()(texts, context_length=ctx)
    if pad != 0:
        for row in ids:
            n = int((row == EOT).nonzero()[0, 0]) + 1
            row[n:] = pad
    return ids


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_it(fn, arg, warmup, iters, device):
    for _ in range(warmup):
        fn(arg)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(arg)
    sync(device)
    return time.perf_counter() - t0


def bench(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    d = Path(args.model)
    fmt, model, size, ctx, pad, enc_img, enc_txt = load_model(d)
    model.to(device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, size, size, generator=g).to(device)
    ids = tokenize([f"a photo of a {i}" for i in range(args.batch)], ctx, pad).to(device)
    full_ids = tokenize([LONG_CAPTION.format(i) for i in range(args.batch)], ctx, pad).to(device)
    with torch.inference_mode():
        t_img = time_it(enc_img, images, args.warmup, args.iters, device)
        t_txt = time_it(enc_txt, ids, args.warmup, args.iters, device)
        t_full = time_it(enc_txt, full_ids, args.warmup, args.iters, device)
    n = args.batch * args.iters
    print(json.dumps({
        "images_per_s": n / t_img,
        "texts_per_s": n / t_txt,
        "full_texts_per_s": n / t_full,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "iters": args.iters,
        "format": fmt,
        "image_size": size,
        "device": str(device),
        "torch": torch.__version__,
    }))


VIT_B32_CFG = {
    "embed_dim": 512,
    "quick_gelu": True,  # as the OpenAI ViT-B/32 weights
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}


def make_vit_b32(out: Path):
    import open_clip
    import safetensors.torch as st
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**VIT_B32_CFG).float().eval()
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    st.save_file(sd, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": VIT_B32_CFG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711],
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }, indent=2) + "\n")
    n = sum(v.numel() for v in sd.values())
    print(json.dumps({"written": str(out), "params": n}))


ATTRIBUTE_CLASSES = (15, 10, 3, 4)


def train_step_bench(args):
    import open_clip
    if args.threads:
        torch.set_num_threads(args.threads)
    d = Path(args.model)
    cfg = json.loads((d / "open_clip_config.json").read_text())["model_cfg"]
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**cfg).float().to(device)
    size = cfg["vision_cfg"]["image_size"]
    ctx = cfg["text_cfg"]["context_length"]
    dim = cfg["embed_dim"]
    batch = args.batch
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=g).to(device)
    ids = tokenize([f"a photo of a red star number {i}" for i in range(batch)], ctx, 0).to(device)
    heads = torch.nn.ModuleList(torch.nn.Linear(dim, n) for n in ATTRIBUTE_CLASSES).to(device)
    labels = [torch.randint(0, n, (batch,), generator=g).to(device) for n in ATTRIBUTE_CLASSES]
    fixed = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1).to(device)
    eye = torch.arange(batch, device=device)

    def contrastive(img, txt):
        logits = model.logit_scale.exp() * torch.nn.functional.normalize(img, dim=-1) @ \
            torch.nn.functional.normalize(txt, dim=-1).T
        ce = torch.nn.functional.cross_entropy
        return (ce(logits, eye) + ce(logits.T, eye)) / 2

    if args.train_step == "attributes":
        params = list(model.visual.parameters()) + list(heads.parameters())
        model.visual.train()

        def loss_fn():
            feats = torch.nn.functional.normalize(model.encode_image(images), dim=-1) * dim ** 0.5
            return sum(torch.nn.functional.cross_entropy(h(feats), y) for h, y in zip(heads, labels))
    elif args.train_step == "lit":
        params = [p for n, p in model.named_parameters() if not n.startswith("visual.")]

        def loss_fn():
            return contrastive(fixed, model.encode_text(ids))
    else:
        params = list(model.parameters())
        model.visual.eval()  # running batch-norm statistics, as Lethe's joint stage

        def loss_fn():
            return contrastive(model.encode_image(images), model.encode_text(ids))
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05)

    def step(_):
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    seconds = time_it(step, None, args.warmup, args.iters, device) / args.iters
    print(json.dumps({"stage": args.train_step, "batch": batch, "seconds_per_step": seconds,
                      "threads": torch.get_num_threads(), "device": str(device),
                      "torch": torch.__version__}))


def unlearn_step_bench(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fmt, model, size, ctx, pad, enc_img, enc_txt = load_model(Path(args.model))
    model.to(device).train()
    g = torch.Generator().manual_seed(0)
    forget = torch.randn(args.forget_images, 3, size, size, generator=g).to(device)
    labels = torch.zeros(args.forget_images, dtype=torch.long, device=device)
    prompts = tokenize([f"a photo of a class {c} number {t}" for c in range(args.classes)
                        for t in range(args.templates)], ctx, pad).to(device)
    norm = torch.nn.functional.normalize
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=0.2)
    scale = 100.0

    def heads():
        per_prompt = norm(enc_txt(prompts), dim=-1).view(args.classes, args.templates, -1)
        return norm(per_prompt.mean(1), dim=-1)

    if args.unlearn_step == "cliperase":
        return cliperase_step_bench(args, model, size, ctx, pad, enc_img, enc_txt, device)

    def step(_):
        opt.zero_grad(set_to_none=True)
        h = heads()
        x = forget[:args.batch]
        if args.unlearn_step == "lip":
            n = args.perturbations
            clean = norm(enc_img(x), dim=-1)
            noise = torch.randn(args.batch * n, 3, size, size, device=device)
            perturbed = norm(enc_img(x.repeat_interleave(n, 0) + noise), dim=-1)
            text = h[labels[:args.batch]].repeat_interleave(n, 0)
            loss = (((clean.repeat_interleave(n, 0) - perturbed).norm(dim=-1)
                     + (text - perturbed).norm(dim=-1)) / noise.flatten(1).norm(dim=-1)).mean()
        else:
            logits = scale * norm(enc_img(x), dim=-1) @ h.T
            loss = -torch.nn.functional.cross_entropy(logits, labels[:args.batch])
        loss.backward()
        opt.step()
        with torch.no_grad():
            h = heads()
            hits = (norm(enc_img(forget), dim=-1) @ h.T).argmax(-1) == labels
            float(hits.float().mean())

    seconds = time_it(step, None, args.warmup, args.iters, device) / args.iters
    print(json.dumps({"method": args.unlearn_step, "batch": args.batch,
                      "forget_images": args.forget_images, "classes": args.classes,
                      "templates": args.templates, "seconds_per_step": seconds,
                      "threads": torch.get_num_threads(), "device": str(device),
                      "torch": torch.__version__}))


def cliperase_step_bench(args, model, size, ctx, pad, enc_img, enc_txt, device):
    import copy
    original = copy.deepcopy(model).eval()
    for p in original.parameters():
        p.requires_grad_(False)
    if hasattr(original, "encode_image"):
        orig_img, orig_txt = original.encode_image, original.encode_text
    else:
        orig_img = lambda x: original.visual_projection(original.vision_model(pixel_values=x).pooler_output)
        orig_txt = lambda ids: original.text_projection(original.text_model(input_ids=ids).pooler_output)
    g = torch.Generator().manual_seed(0)
    b = args.batch
    forget = torch.randn(b, 3, size, size, generator=g).to(device)
    retain = torch.randn(b, 3, size, size, generator=g).to(device)
    forget_captions = tokenize([f"a photo of a forgotten thing number {i}" for i in range(b)],
                               ctx, pad).to(device)
    retain_captions = tokenize([f"a photo of a kept thing number {i}" for i in range(b)],
                               ctx, pad).to(device)
    norm = torch.nn.functional.normalize
    f = torch.nn.functional
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    targets = torch.arange(b, device=device)

    def logits(img, txt, images, captions):
        return model.logit_scale.exp() * norm(img(images), dim=-1) @ norm(txt(captions), dim=-1).T

    def kl(original_logits, current_logits):
        p = f.log_softmax(original_logits, 1)
        return (p.exp() * (p - f.log_softmax(current_logits, 1))).sum(1).mean()

    def step(_):
        opt.zero_grad(set_to_none=True)
        forget_loss = (norm(enc_img(forget), dim=-1) * norm(enc_txt(forget_captions), dim=-1)).sum(1).mean()
        current = logits(enc_img, enc_txt, retain, retain_captions)
        retain_loss = (f.cross_entropy(current, targets) + f.cross_entropy(current.T, targets)) / 2
        with torch.no_grad():
            reference = logits(orig_img, orig_txt, retain, retain_captions)
        consistency = kl(reference, current) + kl(reference.T, current.T)
        (retain_loss + 3 * forget_loss + 3 * consistency).backward()
        opt.step()

    seconds = time_it(step, None, args.warmup, args.iters, device) / args.iters
    print(json.dumps({"method": "cliperase", "batch": b, "seconds_per_step": seconds,
                      "threads": torch.get_num_threads(), "device": str(device),
                      "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="HF CLIPModel dir or open_clip dir")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch default)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--make-vit-b32", metavar="DIR", help="write a random-init ViT-B/32 open_clip checkpoint and exit")
    ap.add_argument("--train-step", choices=["attributes", "lit", "joint"],
                    help="time one step of a demo-training stage on DIR's architecture")
    ap.add_argument("--unlearn-step", choices=["lip", "ga", "cliperase"],
                    help="time one unlearning step of a method on DIR's weights")
    ap.add_argument("--classes", type=int, default=10, help="classes of the zero-shot head")
    ap.add_argument("--templates", type=int, default=1, help="prompts per class")
    ap.add_argument("--forget-images", type=int, default=64, help="pictures the stop rule checks")
    ap.add_argument("--perturbations", type=int, default=25, help="noise draws per image (lip)")
    args = ap.parse_args()
    if args.unlearn_step:
        if not args.model:
            ap.error("--unlearn-step needs --model DIR")
        unlearn_step_bench(args)
        return
    if args.train_step:
        if not args.model:
            ap.error("--train-step needs --model DIR (an open_clip folder)")
        train_step_bench(args)
        return
    if args.make_vit_b32:
        make_vit_b32(Path(args.make_vit_b32))
        return
    if not args.model:
        ap.error("--model is required (or --make-vit-b32 DIR)")
    bench(args)


if __name__ == "__main__":
    main()
