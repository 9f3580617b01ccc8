"""DistributedDataParallel through ``torchrun``: 2 CPU processes on gloo train one sequential model.

The worker script is what a ``torchrun --nproc_per_node 2`` launch of any trainer does: each rank fits the
same family on the same data (:func:`models.sequential.distributed.join_process_group` joins the group
torchrun describes), and here each rank also dumps its weights so the test can compare them. After training,
both ranks must hold identical weights (DDP averages gradients, so replicas never diverge) and the loss of
the last epoch must be below the first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from safetensors.numpy import save_file
    from models import create_model
    from models.base import FitContext
    from models.sequential.distributed import is_primary_process
    from tests.models.test_sasrec import as_interactions, chain_sequences

    out = Path({out!r})
    rank = int(os.environ["RANK"])
    data = as_interactions(chain_sequences(120, 8))
    losses = []
    config = {{"hidden_size": 16, "max_len": 8, "batch_size": 16, "max_epochs": 3, "learning_rate": 0.01}}
    model = create_model("sasrec", config)
    model.fit(data, ctx=FitContext(seed=0, threads=1), on_epoch=lambda e, m: losses.append(m["loss"]))
    save_file(model._weights(), str(out / f"rank{{rank}}.safetensors"))
    world = int(os.environ["WORLD_SIZE"])
    (out / f"rank{{rank}}.json").write_text(json.dumps({{"losses": losses, "primary": is_primary_process(),
                                                        "world": world}}))
    """
)


def test_two_gloo_ranks_hold_identical_weights_and_the_loss_falls(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO), out=str(tmp_path)))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    assert [r["primary"] for r in reports] == [True, False], "only rank 0 may write outputs"
    assert reports[0]["losses"] == reports[1]["losses"], "the reported loss is the mean over ranks"
    losses = reports[0]["losses"]
    assert losses[-1] < losses[0], losses
    first, second = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
