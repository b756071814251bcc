#!/usr/bin/env python3
"""Reference values for tests/core/test_torch_generator.cpp (torch_cpu_generator).

Prints torch.randn draws of a CPU generator after torch.manual_seed(seed), as C++ literals.
The float32 values of the n >= 16 path depend on the kernel torch dispatches to: run with
ATEN_CPU_CAPABILITY=default for the scalar normal_fill that diffuse ports bit for bit; the
AVX2 kernel (the default on x86 machines with AVX2) differs by up to ~2e-6 (see the test).

    ATEN_CPU_CAPABILITY=default python3 tests/python/torch_randn_reference.py
"""
import torch


def show(name, values, dtype):
    if dtype == torch.float64:
        items = [repr(float(v)) for v in values]
    else:
        items = [repr(float(v)) + "f" for v in values]
    print(f"// {name}")
    for k in range(0, len(items), 4):
        print("    " + ", ".join(items[k:k + 4]) + ",")


def main():
    print("// torch", torch.__version__, "cpu capability:", torch.backends.cpu.get_cpu_capability()
          if hasattr(torch.backends, "cpu") and hasattr(torch.backends.cpu, "get_cpu_capability") else "(see ATEN_CPU_CAPABILITY)")
    for dtype in (torch.float64, torch.float32):
        tag = "f64" if dtype == torch.float64 else "f32"
        # seed 0, n = 16: one full Box-Muller block
        torch.manual_seed(0)
        show(f"{tag} seed 0 randn(16)", torch.randn(16, dtype=dtype).tolist(), dtype)
        # seed 0, consecutive n < 16 calls, then n = 20 (n % 16 != 0) and n = 3 again
        torch.manual_seed(0)
        seq = []
        for n in (3, 5, 1, 20, 3):
            seq += torch.randn(n, dtype=dtype).tolist()
        show(f"{tag} seed 0 randn(3), randn(5), randn(1), randn(20), randn(3)", seq, dtype)
        # seed 42, n = 37: indices 0, 15, 16, 20, 31, 32, 36
        torch.manual_seed(42)
        v = torch.randn(37, dtype=dtype).tolist()
        show(f"{tag} seed 42 randn(37) at 0, 15, 16, 20, 31, 32, 36", [v[i] for i in (0, 15, 16, 20, 31, 32, 36)], dtype)
        # seed 2**32 + 7 equals seed 7 (mt19937 sees the low 32 bits)
        torch.manual_seed(2**32 + 7)
        a = torch.randn(16, dtype=dtype)
        torch.manual_seed(7)
        b = torch.randn(16, dtype=dtype)
        print(f"// {tag} seed 2**32 + 7 == seed 7: {bool(torch.equal(a, b))}")
    # sum and sum of squares of 50 consecutive randn(4, 3, 8, 8) float32 draws (the DDPM oracle's stream)
    torch.manual_seed(0)
    s = 0.0
    s2 = 0.0
    for _ in range(50):
        z = torch.randn(4, 3, 8, 8, dtype=torch.float32).double()
        s += float(z.sum())
        s2 += float((z * z).sum())
    print(f"// f32 seed 0, 50 x randn(4,3,8,8): sum {s!r}, sum of squares {s2!r}")


if __name__ == "__main__":
    main()
