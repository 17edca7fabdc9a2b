"""CI (.ci/cuda-build): the persistent path's cooperative kernels fit co-resident wherever the
heuristic can pick them. Reads `cuobjdump -res-usage` of the built extension on stdin; for each
SASS architecture (sm_80: the A100, sm_90: the H100) it checks every cooperative kernel
(run_cooperative_kernel<PersistentForward/Backward<...>>):

- no local memory (no spills), at most the registers the launch bounds promise and the static
  shared memory (kPersistentMaxRegisters, kPersistentStaticShared of csrc/cuda/plan.h, which
  the emulated residency assumes);
- every configuration csrc/cuda/plan.h accepts on that device (sizes and the kernels' variants,
  FMA and tensor-core, swept below; fits, as
  with the assumed registers, whether auto picks it or FASTRNN_CUDA_PATH=persistent forces it)
  stays co-resident with the kernels' real registers and static shared memory: blocks <=
  SMs x resident blocks per SM.

The bounds come from the extension itself (fastrnn._C._cuda_plan is cuda/plan.h): one source.
Prints a table; exits 1 on any failure.
"""

import re
import sys

import fastrnn
from fastrnn import _C

DEVICES = {"sm_80": "a100", "sm_90": "h100"}
MAX_REGISTERS = _C._cuda_persistent_max_registers
MAX_STATIC_SHARED = _C._cuda_persistent_static_shared


def kernels(text):
    """{arch: [(kind, registers, static shared, local)]} of the cooperative kernels."""
    found, arch, name = {}, None, None
    elf = False
    for line in text.splitlines():
        if line.startswith("Fatbin elf code"):
            elf = True
        elif line.startswith("Fatbin ptx code"):
            elf = False
        elif elf and line.startswith("arch = "):
            arch = line.split()[2]
        elif elf and "Function" in line:
            name = line.split()[1].rstrip(":") if "run_cooperative_kernel" in line else None
        elif elf and name and "REG:" in line:
            fields = dict(re.findall(r"(\w+):(\d+)", line))
            kind = "forward" if "PersistentForward" in name else "backward"
            cell = re.search(r"(Lstm|Gru|Rnn)Cell", name)
            print(f"{arch} {kind:8} {cell.group(0) if cell else '?':8} {products(name):12} "
                  f"REG {fields['REG']:>3} SHARED {fields['SHARED']:>5} LOCAL {fields['LOCAL']}")
            found.setdefault(arch, []).append(
                (kind, int(fields["REG"]), int(fields["SHARED"]), int(fields["LOCAL"])))
            name = None
    return found


def products(name):
    """The kernel's storage type and products, from its mangled Persistent*<Cell, Flags, T, Mma>."""
    if "8bfloat16E" in name:
        return "bf16 tensor"
    if "7float16E" in name:
        return "fp16 tensor"
    last = re.search(r"E([fd])([fv])E+vT_$", name)  # T, then Mma: float (TF32) or void
    labels = {("f", "f"): "tf32 tensor", ("f", "v"): "float fma", ("d", "v"): "double fma"}
    return labels.get(last.groups(), "?") if last else "?"


# (element_bytes, allow_tf32) of the kernels' variants: float32 and float64 FMA, bfloat16 and
# float16 on tensor cores (2-byte weights), float32 as TF32
VARIANTS = ((4, False), (8, False), (2, False), (4, True))


def sizes():
    """(mode, batch, hidden, proj_size, element_bytes, allow_tf32, backward) over the
    heuristic's range."""
    hiddens = [1, 7, 31, 64, 107, 108, 109, 133, 256, 511, 512, 768, 1000, 1024, 1536, 2048, 4096]
    for mode in ("lstm", "gru", "rnn_tanh"):
        for hidden in hiddens:
            projs = [0] + ([hidden // 4, hidden // 2] if mode == "lstm" and hidden >= 4 else [])
            for proj in projs:
                for batch in (1, 2, 4, 8, 16, 32, 64, 256):
                    for element_bytes, allow_tf32 in VARIANTS:
                        for backward in (False, True):
                            yield mode, batch, hidden, proj, element_bytes, allow_tf32, backward


def main():
    found = kernels(sys.stdin.read())
    ok = True
    if not found:
        print("residency: FAILED: no cooperative kernel in the extension")
        return 1
    print(f"{'arch':6} {'device':6} {'kernels':>7} {'max REG':>7} {'bound':>5} {'max static':>10} "
          f"{'LOCAL':>5} {'configs':>7} {'largest shared':>14} {'min headroom':>12}")
    for arch in sorted(found):
        device = DEVICES.get(arch)
        ks = found[arch]
        if device is None:
            print(f"residency: no device model for {arch}, skipped")
            continue
        worst = {kind: (max(r for k, r, _, _ in ks if k == kind),
                        max(s for k, _, s, _ in ks if k == kind)) for kind in {k for k, *_ in ks}}
        if set(worst) != {"forward", "backward"}:
            print(f"residency: FAILED: {arch} lacks forward or backward cooperative kernels")
            ok = False
            continue
        regs = max(r for _, r, _, _ in ks)
        static = max(s for _, _, s, _ in ks)
        local = max(lm for *_, lm in ks)
        if regs > MAX_REGISTERS or static > MAX_STATIC_SHARED or local:
            print(f"residency: FAILED: {arch}: {regs} registers (bound {MAX_REGISTERS}), "
                  f"{static} bytes of static shared memory (bound {MAX_STATIC_SHARED}), "
                  f"{local} bytes of local memory")
            ok = False
        checked, largest, headroom = 0, 0, None
        for mode, batch, hidden, proj, element_bytes, allow_tf32, backward in sizes():
            plan = _C._cuda_plan(mode, batch, hidden, proj, element_bytes, backward, device,
                                 allow_tf32=allow_tf32)
            if not plan["fits"]:
                continue
            r, s = worst["backward" if backward else "forward"]
            real = _C._cuda_plan(mode, batch, hidden, proj, element_bytes, backward, device,
                                 registers=r, static_shared=s, allow_tf32=allow_tf32)
            room = plan["sms"] * real["resident_per_sm"] - plan["blocks"]
            checked += 1
            largest = max(largest, plan["shared_bytes"] + s)
            headroom = room if headroom is None else min(headroom, room)
            if room < 0 or real["blocks"] != plan["blocks"]:
                print(f"residency: FAILED: {arch} {mode} B={batch} H={hidden} P={proj} "
                      f"{element_bytes}-byte{' TF32' if allow_tf32 else ''} "
                      f"{'backward' if backward else 'forward'}: "
                      f"{plan['blocks']} blocks, {real['resident_per_sm']} per SM resident")
                ok = False
        print(f"{arch:6} {device:6} {len(ks):7} {regs:7} {MAX_REGISTERS:5} {static:10} {local:5} "
              f"{checked:7} {largest:14} {headroom if headroom is not None else '-':>12}")
    print("residency:", "OK" if ok else "FAILED", f"(fastrnn {fastrnn.__version__})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
