"""gpu_policy_loss.py - the straightforward PyTorch baseline for issue 9.

FP32 logits materialised, log_softmax, gather, ratio, clamp (CISPO: capped
ratio under stop-gradient), backward to X and W; TF32 off and on. Same sizes
and the same row format as gpu_policy_loss.cu:
  ROW|pytorch|V|mode|ms|peak GiB|TFLOP/s|logp err|extra GiB
Also prints the card's measured matmul ceilings (8192^3 fp32 with TF32 off
and on, bf16): CEIL|name|TFLOP/s.
"""
import torch

N, D, NSAMPLE = 16384, 1024, 512


def ceiling(dtype, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    for _ in range(2):
        a @ b
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(6):
        e0.record()
        a @ b
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1))
    ts.sort()
    return 2 * 8192**3 / (ts[len(ts) // 2] * 1e-3) / 1e12


def bench(V, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(V)
    X = torch.randn(N, D, device="cuda").to(torch.bfloat16).requires_grad_()
    W = (torch.randn(V, D, device="cuda") * (2.0 / D**0.5)).requires_grad_()
    y = torch.randint(V, (N,), device="cuda")
    adv = torch.randn(N, device="cuda")
    mask = torch.ones(N, device="cuda")
    cap = 1.0 + 4.0  # CISPO, eps_high = 4
    with torch.no_grad():
        lp0 = torch.log_softmax(X.float() @ W.t(), -1).gather(1, y[:, None]).squeeze(1)
        shift = torch.tensor([(-2.0 if t % 7 == 0 else 0.1 * ((t % 5) - 2)) for t in range(N)], device="cuda")
        old = lp0 + shift
        del lp0

    def step():
        X.grad = None
        W.grad = None
        logits = X.float() @ W.t()
        lp = torch.log_softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
        ratio = torch.exp(lp - old)
        w = torch.clamp(ratio, max=cap).detach()
        loss = -(w * adv * lp * mask).sum() / mask.sum()
        loss.backward()
        return lp.detach()

    step()
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    reps = 6 if V > 65536 else 10
    for _ in range(reps):
        e0.record()
        lp = step()
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1))
    peak = torch.cuda.max_memory_allocated()
    ts.sort()
    med = 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
    tflops = 6.0 * N * V * D / (med * 1e-3) / 1e12
    idx = torch.tensor([i * N // NSAMPLE + (i * 37) % (N // NSAMPLE) for i in range(NSAMPLE)], device="cuda")
    with torch.no_grad():
        ref = torch.log_softmax(X[idx].double() @ W.double().t(), -1).gather(1, y[idx][:, None]).squeeze(1)
        err = ((lp[idx].double() - ref).abs() / ref.abs()).max().item()
    mode = "fp32 (TF32 on)" if tf32 else "fp32 (TF32 off)"
    print(f"ROW|pytorch|{V}|{mode}|{med:.2f}|{peak / 2**30:.3f}|{tflops:.1f}|{err:.2e}|-|-", flush=True)
    del X, W, y, adv, mask, old
    torch.cuda.empty_cache()


def main():
    if not torch.cuda.is_available():
        print("gpu_policy_loss.py: skipped: no CUDA device")
        return
    print(f"CEIL|fp32 matmul, TF32 off (measured)|{ceiling(torch.float32, False):.1f}", flush=True)
    print(f"CEIL|fp32 matmul, TF32 on (measured)|{ceiling(torch.float32, True):.1f}", flush=True)
    print(f"CEIL|bf16 matmul (measured)|{ceiling(torch.bfloat16, False):.1f}", flush=True)
    torch.cuda.empty_cache()
    for V in (32768, 131072):
        for tf32 in (False, True):
            bench(V, tf32)


if __name__ == "__main__":
    main()
