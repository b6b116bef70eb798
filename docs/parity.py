"""Print how closely tinycnn_xp reproduces the chapter's 80-epoch run, on every installed backend.

    python docs/parity.py

The reference numbers come from running the chapter's own notebook code (NumPy float64);
they are stored in tests/chapter24_reference_history.json.
"""

import json
import sys
from pathlib import Path

import numpy as np

import tinycnn_xp as tc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import backends  # noqa: E402

REFERENCE = json.loads((ROOT / "tests" / "chapter24_reference_history.json").read_text())
data = tc.make_dataset_bundle()
for name in backends.MODULES:
    backend = backends.load(name)
    reason = backend.unavailable()
    if reason:
        print(f"{name:17s} skipped: {reason}")
        continue
    backend.namespace()  # its settings first (JAX: float64 on)
    model = tc.TinyCNN(seed=42)
    history = model.fit(*(backend.asarray(a) for a in data[:4]), verbose=False)
    worst_history = max(np.abs(np.array(history[k]) - REFERENCE[k]).max()
                        for k in tc.METRICS)
    final = [(model.conv.weights, "final_conv_weights"), (model.conv.bias, "final_conv_bias"),
             (model.dense.bias, "final_dense_bias")]
    worst_weights = max(np.abs(tc.to_numpy(a) - REFERENCE[k]).max() for a, k in final)
    print(f"{name:17s} max |history - chapter| = {worst_history:.1e}   "
          f"max |final weights - chapter| = {worst_weights:.1e}   "
          f"final val_acc = {history['val_acc'][-1]:.1%}   weights on {model.conv.weights.device!r}")
