import glob, time
import numpy as np
import dubprep.stages.backends.dfn3_spatial as m
from evalst import run, sdr
GROUPS = {"front": (2, 0, 1), "all": (2, 0, 1, 4, 5)}
def evaluate51(label, **consts):
    for k, v in consts.items(): setattr(m, k.upper(), v)
    rows = []; t = time.time()
    for path in sorted(glob.glob("/tmp/spbench/clips51/clip*.npz")):
        z = np.load(path)
        mix, dial = z["mix"], z["dialogue"]
        me = mix - dial
        out = {}
        dx = np.zeros_like(mix); dx[:, 0], dx[:, 1], dx[:, 2] = z["dL"], z["dR"], z["dC"]; out["dfn3 front"] = dx
        dx = np.zeros_like(mix); dx[:, 2] = z["dC"]; out["dfn3 center"] = dx
        for name, group in GROUPS.items():
            dx = np.zeros_like(mix)
            dx[:, list(group)] = run(mix[:, list(group)], z["dC"][:, None], False)
            out["spatial " + name] = dx
        rows.append({k: (sdr(dial, v), sdr(me, mix - v)) for k, v in out.items()})
    print(f"== {label} ({time.time()-t:.0f}s)")
    for k in rows[0]:
        print(f"  {k:16s} D " + " ".join(f"{r[k][0]:6.2f}" for r in rows) + f" | mean {np.mean([r[k][0] for r in rows]):6.2f}   ME mean {np.mean([r[k][1] for r in rows]):6.2f}", flush=True)
