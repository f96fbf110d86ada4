"""gpu_lightning.py - PyTorch baselines for tests/bench/gpu_lightning.sh.

Prints rows in gpu_lightning.cu's format:
  torch-block256  the blockwise lightning attention of MiniMax's released model
                  code (block 256, fp32 state, matmuls in bf16 autocast-free
                  PyTorch), backward by autograd;
  sdpa-cudnn      scaled_dot_product_attention(is_causal=True) on the cuDNN
                  backend: softmax attention at the same shapes, for reference.
Times are medians of CUDA-event timings after warm-up; inputs are random.
TFLOP/s: linear-attention rows use the chunk-64 nominal count of
gpu_lightning.cu; the SDPA row counts causal softmax attention
(fwd 2 T^2 D per head, backward 2.5 x fwd). floor_x as in gpu_lightning.cu.
"""
import math
import sys

import torch
import torch.nn.functional as F

H, D = 16, 128
SHAPES = [(8, 2048), (4, 8192), (1, 32768)]
BLOCK = 256


def slopes(h_count, layer=0, layers=32):
    base = 2.0 ** (-8.0 / h_count)
    return torch.tensor([base ** (h + 1) * (1 - layer / (layers - 1) + 1e-5)
                         for h in range(h_count)], dtype=torch.float32)


def lightning_block(q, k, v, s):
    """q, k, v: [B, H, T, D] bf16; s: [H] fp32. As MiniMax's model code does it:
    intra-block (Q K^T .* decay) V plus inter-block (Q .* q_decay) KV."""
    b, h, n, d = q.shape
    e = v.shape[-1]
    s = s.to(q.device).reshape(1, h, 1, 1)
    arr = torch.arange(BLOCK, device=q.device, dtype=torch.float32) + 1
    q_decay = torch.exp(-s * arr.reshape(-1, 1))                 # [1,h,B,1]
    k_decay = torch.exp(-s * (BLOCK - arr.reshape(-1, 1)))       # [1,h,B,1]
    index = arr[:, None] - arr[None, :]
    s_index = s * index[None, None]
    s_index = torch.where(index >= 0, -s_index, float("-inf"))
    diag_decay = torch.exp(s_index)                               # [1,h,B,B]
    kv = torch.zeros(b, h, d, e, dtype=torch.float32, device=q.device)
    outs = []
    for i in range((n + BLOCK - 1) // BLOCK):
        si, ei = i * BLOCK, min((i + 1) * BLOCK, n)
        m = ei - si
        qi, ki, vi = q[:, :, si:ei], k[:, :, si:ei], v[:, :, si:ei]
        inter = torch.matmul((qi * q_decay[:, :, :m]).to(torch.float32), kv)
        qk = torch.matmul(qi, ki.transpose(-1, -2)).to(torch.float32) * diag_decay[:, :, :m, :m]
        intra = torch.matmul(qk, vi.to(torch.float32))
        outs.append((inter + intra).to(q.dtype))
        block_decay = torch.exp(-s * m)
        kv = block_decay * kv + torch.matmul(
            (ki * k_decay[:, :, -m:]).transpose(-1, -2).to(torch.float32), vi.to(torch.float32))
    return torch.cat(outs, dim=2)


def median_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def copy_bw():
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    t = median_ms(lambda: y.copy_(x), 10)
    return 2.0 * x.numel() / (t * 1e-3)


def main():
    if not torch.cuda.is_available():
        print("skipped: no GPU")
        return 0
    torch.manual_seed(0)
    bw = copy_bw()
    print(f"# torch {torch.__version__}, copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    sl = slopes(H)
    for (B, T) in SHAPES:
        shape = f"{B},{T},{H},{D}"
        tensor = B * T * H * D * 2
        floor_f, floor_b = 4 * tensor / bw * 1e3, 9 * tensor / bw * 1e3
        mk = lambda scale: (torch.rand(B, H, T, D, device="cuda", dtype=torch.bfloat16) * 2 - 1) * scale
        q, k, v, g = mk(0.5), mk(0.5), mk(1.0), mk(1.0)
        lin_flop = B * T * H * (4.0 * 64 * D + 4.0 * D * D)
        # blockwise, as MiniMax's model code
        qr, kr, vr = (x.clone().requires_grad_(True) for x in (q, k, v))
        reps = 5 if T >= 32768 else 10
        with torch.no_grad():
            tf = median_ms(lambda: lightning_block(q, k, v, sl), reps)

        def fb():
            out = lightning_block(qr, kr, vr, sl)
            out.backward(g)
        tb = median_ms(fb, max(3, reps // 2))
        print(f"{'torch-block256':<18} {shape:<16} {tf:9.3f} {tb:9.3f} {lin_flop / tf * 1e-9:9.1f} "
              f"{3 * lin_flop / tb * 1e-9:9.1f} {tf / floor_f:8.2f} {tb / floor_b:8.2f}", flush=True)
        del qr, kr, vr
        torch.cuda.empty_cache()
        # cuDNN softmax attention (causal)
        from torch.nn.attention import SDPBackend, sdpa_kernel
        qs, ks, vs = (x.clone().requires_grad_(True) for x in (q, k, v))
        sd_flop = B * H * 2.0 * T * T * D
        try:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                with torch.no_grad():
                    tf = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 10)

                def sfb():
                    out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)
                    out.backward(g)
                tb = median_ms(sfb, 10)
            print(f"{'sdpa-cudnn':<18} {shape:<16} {tf:9.3f} {tb:9.3f} {sd_flop / tf * 1e-9:9.1f} "
                  f"{3.5 * sd_flop / tb * 1e-9:9.1f} {tf / floor_f:8.2f} {tb / floor_b:8.2f}", flush=True)
        except RuntimeError as ex:
            print(f"# sdpa-cudnn {shape}: not run: {str(ex).splitlines()[0]}", flush=True)
        del qs, ks, vs, q, k, v, g
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
